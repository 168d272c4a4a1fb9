"""`shipyard models ...` commands: list, show, register, alias, unalias, rollback,
archive, restore."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from shipyard.cli._register import register_command
from shipyard.cli._common import (console, fmt_num, fmt_time, fmt_when, json_option,
                                  open_workspace, print_json, record)
from shipyard.cli._tables import Col, choose, columns_option, fit, print_table

if TYPE_CHECKING:
    from shipyard.registry import ModelVersion

app = typer.Typer(
    help="Registered models: versions, aliases (champion, challenger, ...), rollback, "
         "archive and lineage. Refs: NAME (newest READY version), NAME@latest, NAME@N, "
         "NAME@ALIAS. Every change is recorded in the audit log; set SHIPYARD_ACTOR to "
         "name who acts (default: the OS user).",
    no_args_is_help=True,
)

REASON = typer.Option("--reason", "-r", help="Why (recorded in the audit log).")
STATUS_STYLE = {"READY": "green", "ARCHIVED": "dim"}
METRIC_COLUMNS = 2


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _escape(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _version_json(v: ModelVersion, **extra: object) -> dict:
    return record(v, ref=v.ref, **extra)


MODEL_COLUMNS = {col.name: col for col in (
    Col("name", lambda m: _escape(m.name)),
    Col("latest", lambda m: str(m.latest_version), justify="right", whole=True),
    Col("versions", lambda m: str(m.num_versions), justify="right", whole=True),
    Col("aliases", lambda m: ", ".join(f"{a}→{v}" for a, v in m.aliases.items()) or "-"),
    Col("created", lambda m: fmt_when(m.created_at), whole=True),
    Col("updated", lambda m: fmt_when(m.updated_at), whole=True),
    Col("description", lambda m: _escape(m.description or "")),
)}
MODEL_DEFAULT = ("name", "latest", "aliases", "updated", "description")


@app.command("list")
def list_models(
    columns: Annotated[Optional[str], columns_option(MODEL_COLUMNS, MODEL_DEFAULT)] = None,
    as_json: Annotated[bool, json_option("Print the models as a JSON list.")] = False,
    every: Annotated[bool, typer.Option(
        "--all", help="Include RAG prompt templates (registered as models named "
                      "`prompt.<name>`, see `ws.rag.prompts`).")] = False,
) -> None:
    """List registered models with their newest version and aliases."""
    from shipyard.names import PROMPT_PREFIX as PREFIX

    models = open_workspace().models.list()
    prompts = [] if every else [m for m in models if m.name.startswith(PREFIX)]
    models = [m for m in models if every or not m.name.startswith(PREFIX)]
    if as_json:
        print_json([record(m) for m in models])
        return
    cols, explicit = choose(columns, MODEL_COLUMNS, MODEL_DEFAULT)
    if not models:
        console.print("no models registered yet (register one with `shipyard models register`)"
                      + (f"; {len(prompts)} prompt template(s) hidden (--all)" if prompts else ""))
        return
    print_table(console, models, cols, title=f"{len(models)} model{'s' if len(models) != 1 else ''}",
                optional=("updated", "description"), explicit=explicit)
    if prompts:
        console.print(f"{len(prompts)} RAG prompt template(s) not shown: --all lists them")


VERSION_COLUMNS = {col.name: col for col in (
    Col("version", lambda v: str(v.version), whole=True),
    Col("status", lambda v: _status(v.status), whole=True),
    Col("aliases", lambda v: ", ".join(v.aliases) or "-"),
    Col("created", lambda v: fmt_when(v.created_at), whole=True),
    Col("run", lambda v: v.run_id[:8], whole=True),
    Col("dataset", lambda v: _escape(v.dataset_version or "-")),
    Col("by", lambda v: _escape(v.created_by or "-")),
    Col("model", lambda v: v.artifact_digest[:12], whole=True),
    Col("description", lambda v: _escape(v.description or "")),
)}
VERSION_DEFAULT = ("version", "status", "aliases", "created", "run", "dataset")
VERSION_MORE = (", metrics.<key> (or just the key); the default adds 2 metrics, held-out "
                "test scores first")


def _metric_col(key: str) -> Col:
    return Col(f"metrics.{key}", lambda v: fmt_num(v.metrics.get(key)), header=key,
               justify="right", whole=True)


def _version_metric(name: str, versions: list[ModelVersion]) -> Col | None:
    key = name.removeprefix("metrics.")
    if any(key in v.metrics for v in versions):
        return _metric_col(key)
    if name.startswith("metrics."):
        keys = sorted({k for v in versions for k in v.metrics})
        raise typer.BadParameter(f"no version has metric {key!r} (metrics: "
                                 f"{', '.join(keys) or 'none'})", param_hint="'--columns'")
    return None


def _headline_metrics(versions: list[ModelVersion], limit: int = METRIC_COLUMNS) -> list[str]:
    """The metrics worth a column: the test score of the metric training
    optimised (``test.roc_auc`` beside ``best.roc_auc``), other test scores,
    then plain names, each by how many versions have it."""
    from collections import Counter

    present = Counter(k for v in versions for k in v.metrics)
    tuned = {k.removeprefix("best.") for k in present if k.startswith("best.")}

    def rank(key: str) -> tuple:
        test = key.startswith("test.")
        return (not (test and key.removeprefix("test.") in tuned), not test, "." in key,
                -present[key])

    return sorted(present, key=rank)[:limit]


@app.command()
def show(
    ref: Annotated[str, typer.Argument(
        help="A model NAME (all its versions) or a version ref: NAME@N, NAME@ALIAS, "
             "NAME@latest.")],
    columns: Annotated[Optional[str], columns_option(
        VERSION_COLUMNS, VERSION_DEFAULT, VERSION_MORE + " (a NAME only)")] = None,
    as_json: Annotated[bool, json_option(
        "Print the versions and alias moves (a NAME), or the version with its lineage "
        "(a ref), as JSON.")] = False,
) -> None:
    """Show a model's versions (aliases, metrics, lineage), or one version in detail."""
    ws = open_workspace()
    if "@" in ref:
        _show_version(ws, ref, as_json)
        return
    versions = ws.models.versions(ref)
    history = ws.models.alias_history(ref)
    if as_json:
        print_json({"name": ref, "versions": [_version_json(v) for v in versions],
                    "alias_history": [record(e) for e in history]})
        return
    metrics = [_metric_col(k) for k in _headline_metrics(versions)]
    cols, explicit = choose(columns, VERSION_COLUMNS, VERSION_DEFAULT,
                            dynamic=lambda name: _version_metric(name, versions),
                            more=VERSION_MORE)
    if not explicit:
        cols += metrics
    optional = [c.name for c in metrics[:0:-1]] + ["dataset", "run", "created"] + \
        [c.name for c in metrics[:1]]
    print_table(console, versions, cols, title=f"model {ref}", optional=optional,
                explicit=explicit)
    if history:
        _print_history(history[-10:], title="alias moves (latest 10)")


def _show_version(ws, ref: str, as_json: bool) -> None:
    import json

    from rich.table import Table

    v = ws.models.get(ref)
    lineage = ws.models.lineage(v)
    if as_json:
        print_json(_version_json(v, lineage=record(lineage)))
        return
    attrs = Table(title=f"{v.ref}", show_header=False, box=None)
    for label, value in (
            ("status", _status(v.status)), ("aliases", ", ".join(v.aliases) or "-"),
            ("run", v.run_id), ("model digest", v.artifact_digest),
            ("blobs", str(len(v.blob_digests))),
            ("trained on", ", ".join(lineage.dataset_versions) or "-"),
            ("lineage", _escape(lineage)),
            ("created", f"{fmt_time(v.created_at)} by {_escape(v.created_by or '-')}"),
            ("description", _escape(v.description or "-"))):
        attrs.add_row(f"[bold]{label}", str(value))
    _print_fitted(attrs)
    for title, items in (("metrics (at registration)", v.metrics), ("tags", v.tags)):
        if items:
            t = Table(title=title, show_header=False)
            t.add_column("key", style="bold")
            t.add_column("value", justify="right" if title.startswith("metrics") else "left")
            for k, val in items.items():
                t.add_row(_escape(k), _escape(fmt_num(val)))
            _print_fitted(t)
    if v.signature:
        console.print("[bold]signature")
        console.print_json(json.dumps(v.signature))


def _print_fitted(table) -> None:
    fit(table, console)
    console.print(table)


def _print_history(events, *, title: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    for col in ("when", "alias", "event", "from", "to", "actor", "reason"):
        t.add_column(col, no_wrap=col in ("when", "from", "to"))
    for e in events:
        t.add_row(fmt_when(e.ts), _escape(e.alias), e.event, fmt_num(e.previous_version),
                  fmt_num(e.version), _escape(e.actor), _escape(e.reason or ""))
    _print_fitted(t)


app.command("register")(register_command)


@app.command()
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(
        metavar="ALIAS", help="Alias to set or move, e.g. champion ('latest' is reserved).")],
    version: Annotated[int, typer.Argument(help="Version number it should point at.")],
    reason: Annotated[Optional[str], REASON] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Move it even if the new version needs input columns the current "
                        "one does not take (its clients would be refused); audited.")] = False,
    as_json: Annotated[bool, json_option(
        "Print the version the alias now points at as JSON, with `alias`.")] = False,
) -> None:
    """Point ALIAS of NAME at VERSION (moving it if it is already set).

    A move that makes an input column required which the current version does
    not take is refused unless --force: clients of the alias do not send it."""
    ws = open_workspace()
    v = ws.models.set_alias(name, alias_name, version, reason=reason, force=force)
    _warn_new_columns(ws, name)
    if as_json:
        print_json(_version_json(v, alias=alias_name))
        return
    console.print(f"{name}@{alias_name} → [bold]{v.ref}[/]")


@app.command()
def unalias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to remove.")],
    reason: Annotated[Optional[str], REASON] = None,
) -> None:
    """Remove ALIAS from NAME (its rollback history is cleared)."""
    open_workspace().models.remove_alias(name, alias_name, reason=reason)
    console.print(f"removed {name}@{alias_name}")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to move back.")],
    reason: Annotated[Optional[str], REASON] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Move it even if the new version needs input columns the current "
                        "one does not take (its clients would be refused); audited.")] = False,
    as_json: Annotated[bool, json_option(
        "Print the version the alias now points at as JSON, with `alias` and `previous` "
        "(the ref it left).")] = False,
) -> None:
    """Move ALIAS back to the version that held it before its latest move.

    Works like undo: rolling back again goes one holder further back
    (3 → 2 → 1), never back and forth."""
    ws = open_workspace()
    before = ws.models.get(f"{name}@{alias_name}")
    v = ws.models.rollback(name, alias_name, reason=reason, force=force)
    _warn_new_columns(ws, name)
    if as_json:
        print_json(_version_json(v, alias=alias_name, previous=before.ref))
        return
    console.print(f"{name}@{alias_name}: {before.ref} → [bold]{v.ref}[/]")


@app.command()
def archive(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number to archive.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Archive it even if aliases point at it, removing them.")] = False,
    reason: Annotated[Optional[str], REASON] = None,
    as_json: Annotated[bool, json_option("Print the archived version as JSON.")] = False,
) -> None:
    """Archive a version: kept and loadable as NAME@N, but no alias, never `latest`.

    A version an alias points at is archived only with --force, which removes
    the alias."""
    v = open_workspace().models.archive(name, version, force=force, reason=reason)
    if as_json:
        print_json(_version_json(v))
        return
    console.print(f"{v.ref} is {_status(v.status)}")


@app.command()
def restore(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Archived version number to make READY.")],
    reason: Annotated[Optional[str], REASON] = None,
    as_json: Annotated[bool, json_option("Print the restored version as JSON.")] = False,
) -> None:
    """Make an archived version READY again."""
    v = open_workspace().models.restore(name, version, reason=reason)
    if as_json:
        print_json(_version_json(v))
        return
    console.print(f"{v.ref} is {_status(v.status)}")


def _warn_new_columns(ws, name: str) -> None:
    """Say loudly (on stderr) when the move just made needed --force."""
    from shipyard.cli._common import err_console

    entries = ws.audit.entries("model", name, limit=1)
    added = (entries[-1].details or {}).get("new_required_columns") if entries else None
    if added:
        err_console.print(f"[bold yellow]warning:[/] clients must now send column(s) "
                          f"{', '.join(map(repr, added))}; requests without them are refused")
