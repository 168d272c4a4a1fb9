"""`shipyard models ...` commands: list, show, register, alias, unalias, rollback,
archive, restore."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from shipyard.cli._common import console, fmt_num, fmt_time, open_workspace

app = typer.Typer(
    help="Registered models: versions, aliases (champion, challenger, ...), rollback, "
         "archive and lineage. Refs: NAME (newest READY version), NAME@latest, NAME@N, "
         "NAME@ALIAS. Every change is recorded in the audit log; set SHIPYARD_ACTOR to "
         "name who acts (default: the OS user).",
    no_args_is_help=True,
)

REASON = typer.Option("--reason", "-r", help="Why (recorded in the audit log).")
STATUS_STYLE = {"READY": "green", "ARCHIVED": "dim"}
METRIC_COLUMNS = 3


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


@app.command("list")
def list_models() -> None:
    """List registered models with their newest version and aliases."""
    from rich.markup import escape
    from rich.table import Table

    models = open_workspace().models.list()
    if not models:
        console.print("no models registered yet (register one with `shipyard models register`)")
        return
    table = Table(title=f"{len(models)} model{'s' if len(models) != 1 else ''}")
    for col in ("name", "latest", "versions", "aliases", "updated", "description"):
        table.add_column(col, justify="right" if col in ("latest", "versions") else "left")
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in m.aliases.items()) or "-"
        table.add_row(m.name, str(m.latest_version), str(m.num_versions), aliases,
                      fmt_time(m.updated_at), escape(m.description or ""))
    console.print(table)


@app.command()
def show(ref: Annotated[str, typer.Argument(
        help="A model NAME (all its versions) or a version ref: NAME@N, NAME@ALIAS, "
             "NAME@latest.")]) -> None:
    """Show a model's versions (aliases, metrics, lineage), or one version in detail."""
    ws = open_workspace()
    if "@" in ref:
        _show_version(ws, ref)
        return
    from collections import Counter

    from rich.table import Table

    versions = ws.models.versions(ref)
    counts = Counter(k for v in versions for k in v.metrics)
    metrics = [k for k, _ in counts.most_common(METRIC_COLUMNS)]
    table = Table(title=f"model {ref}")
    for col in ("version", "status", "aliases", "run", "dataset", "created", "by"):
        table.add_column(col, no_wrap=col in ("version", "run", "created"))
    for key in metrics:
        table.add_column(key, justify="right")
    for v in versions:
        table.add_row(str(v.version), _status(v.status), ", ".join(v.aliases) or "-",
                      v.run_id[:8], v.dataset_version or "-", fmt_time(v.created_at),
                      v.created_by or "-", *(fmt_num(v.metrics.get(k)) for k in metrics))
    console.print(table)
    history = ws.models.alias_history(ref)
    if history:
        _print_history(history[-10:], title="alias moves (latest 10)")


def _show_version(ws, ref: str) -> None:
    import json

    from rich.markup import escape
    from rich.table import Table

    v = ws.models.get(ref)
    lineage = ws.models.lineage(v)
    attrs = Table(title=f"{v.ref}", show_header=False, box=None)
    for label, value in (
            ("status", _status(v.status)), ("aliases", ", ".join(v.aliases) or "-"),
            ("run", v.run_id), ("model digest", v.artifact_digest),
            ("blobs", str(len(v.blob_digests))),
            ("trained on", ", ".join(lineage.dataset_versions) or "-"),
            ("lineage", escape(str(lineage))),
            ("created", f"{fmt_time(v.created_at)} by {v.created_by or '-'}"),
            ("description", escape(v.description or "-"))):
        attrs.add_row(f"[bold]{label}", str(value))
    console.print(attrs)
    for title, items in (("metrics (at registration)", v.metrics), ("tags", v.tags)):
        if items:
            t = Table(title=title, show_header=False)
            t.add_column("key", style="bold")
            t.add_column("value", justify="right" if title.startswith("metrics") else "left")
            for k, val in items.items():
                t.add_row(escape(k), escape(fmt_num(val)))
            console.print(t)
    if v.signature:
        console.print("[bold]signature")
        console.print_json(json.dumps(v.signature))


def _print_history(events, *, title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title)
    for col in ("when", "alias", "event", "from", "to", "actor", "reason"):
        t.add_column(col)
    for e in events:
        t.add_row(fmt_time(e.ts), e.alias, e.event, fmt_num(e.previous_version),
                  fmt_num(e.version), escape(e.actor), escape(e.reason or ""))
    console.print(t)


@app.command()
def register(
    name: Annotated[str, typer.Argument(help="Model name (created on first use).")],
    run_id: Annotated[str, typer.Argument(help="The training run (id or unique prefix).")],
    description: Annotated[Optional[str], typer.Option(help="What this version is.")] = None,
    reason: Annotated[Optional[str], REASON] = None,
) -> None:
    """Register the model a training run produced as the next version of NAME.

    The run must carry the `model.digest` tag and the `model/signature.json`
    artifact (Shipyard's training writes both)."""
    v = open_workspace().models.register(name, run_id, description=description, reason=reason)
    verb = "registered" if v.new else "already registered as"
    console.print(f"{verb} [bold]{v.ref}[/] (run {v.run_id[:8]}, model {v.artifact_digest[:12]})")


@app.command()
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(
        metavar="ALIAS", help="Alias to set or move, e.g. champion ('latest' is reserved).")],
    version: Annotated[int, typer.Argument(help="Version number it should point at.")],
    reason: Annotated[Optional[str], REASON] = None,
) -> None:
    """Point ALIAS of NAME at VERSION (moving it if it is already set)."""
    v = open_workspace().models.set_alias(name, alias_name, version, reason=reason)
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
) -> None:
    """Move ALIAS back to the version that held it before its latest move.

    Works like undo: rolling back again goes one holder further back
    (3 → 2 → 1), never back and forth."""
    ws = open_workspace()
    before = ws.models.get(f"{name}@{alias_name}")
    v = ws.models.rollback(name, alias_name, reason=reason)
    console.print(f"{name}@{alias_name}: {before.ref} → [bold]{v.ref}[/]")


@app.command()
def archive(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number to archive.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Archive it even if aliases point at it, removing them.")] = False,
    reason: Annotated[Optional[str], REASON] = None,
) -> None:
    """Archive a version: kept and loadable as NAME@N, but no alias, never `latest`.

    A version an alias points at is archived only with --force, which removes
    the alias."""
    v = open_workspace().models.archive(name, version, force=force, reason=reason)
    console.print(f"{v.ref} is {_status(v.status)}")


@app.command()
def restore(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Archived version number to make READY.")],
    reason: Annotated[Optional[str], REASON] = None,
) -> None:
    """Make an archived version READY again."""
    v = open_workspace().models.restore(name, version, reason=reason)
    console.print(f"{v.ref} is {_status(v.status)}")
