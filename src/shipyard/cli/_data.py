"""`shipyard data ...` commands: register, list, show, profile and compare datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from shipyard.cli._common import (console, fmt_bytes, fmt_num, fmt_time, fmt_when, json_option,
                                  open_workspace, print_json, record, stdout_reserved)
from shipyard.cli._tables import Col, choose, columns_option, fit, print_table

if TYPE_CHECKING:
    from shipyard.data import DatasetVersion

app = typer.Typer(
    help="Datasets: register validated, versioned snapshots from files, SQL and HTTP APIs; "
         "list, show, profile and compare their versions. Versions are referred to as "
         "NAME@N, NAME@latest or just NAME.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. adult (a letter, then letters, "
                                             "digits, '_', '.', '-').")],
    source: Annotated[str, typer.Argument(
        help="A file (.csv, .tsv, .parquet, .json, .jsonl; .gz allowed for CSV/TSV), an "
             "http(s) URL of a paged JSON API, or with --query a SQLAlchemy database URL.")],
    expectations: Annotated[Optional[str], typer.Option(
        "--expectations", "-e", metavar="FILE",
        help="YAML or JSON file with a list of expectations, e.g. "
             "[{column: age, range: {min: 0, max: 120}}, {rows: {min: 1}}].")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Register even if expectations fail; the version is marked forced.")
    ] = False,
    description: Annotated[Optional[str], typer.Option(help="What this version is.")] = None,
    transform: Annotated[Optional[str], typer.Option(
        help="How it was made (free text or a code reference).")] = None,
    parent: Annotated[Optional[list[str]], typer.Option(
        "--parent", metavar="REF", help="A version this one derives from (repeatable).")] = None,
    query: Annotated[Optional[str], typer.Option(
        help="SQL query to run; SOURCE is then a SQLAlchemy URL "
             "(sqlite:///file.db, postgresql://user:pass@host/db).")] = None,
    records: Annotated[Optional[str], typer.Option(
        help="HTTP: dotted path to the list of records in each page; '' when the page is "
             "the list.")] = "items",
    next_key: Annotated[Optional[str], typer.Option(
        "--next", help="HTTP: dotted path to the next page's URL; '' to ignore.")] = "next",
    page_param: Annotated[Optional[str], typer.Option(
        help="HTTP: query parameter holding the page number, to page by number.")] = None,
    max_pages: Annotated[int, typer.Option(help="HTTP: refuse to read more pages.")] = 1000,
    header: Annotated[Optional[list[str]], typer.Option(
        "--header", "-H", metavar="'KEY: VALUE'",
        help="HTTP: a request header (repeatable); credentials are never recorded.")] = None,
    as_json: Annotated[bool, json_option(
        "Print the version (ref, content hash, shape, validation, ...) as JSON; `new` is "
        "false when the content was registered already.")] = False,
) -> None:
    """Register a new version of dataset NAME from SOURCE.

    Identical content returns the existing version instead of a new one. If the
    data fails its expectations nothing is registered (unless --force).
    """
    from shipyard.data import HttpJsonSource, SqlSource, load_expectations
    from shipyard.errors import ConfigError

    src: object = source
    if query is not None:
        src = SqlSource(source, query)
    elif source.lower().startswith(("http://", "https://")):
        headers = {}
        for item in header or []:
            key, sep, value = item.partition(":")
            if not sep or not key.strip():
                raise ConfigError(f"--header {item!r} is not 'KEY: VALUE'")
            headers[key.strip()] = value.strip()
        src = HttpJsonSource(source, records=records or None, next=next_key or None,
                             page_param=page_param, max_pages=max_pages,
                             headers=headers or None)
    exps = load_expectations(expectations) if expectations else None
    ws = open_workspace()
    with stdout_reserved(as_json):
        version = ws.datasets.register(name, src, expectations=exps, force=force,
                                       parents=parent or None, transform=transform,
                                       description=description)
    if as_json:
        print_json(_version_json(version))
        return
    shape = (f"{version.num_rows:,} rows x {version.num_columns} columns, "
             f"{fmt_bytes(version.size_bytes)}")
    if not version.new:
        console.print(f"[bold]{version.ref}[/] already holds this content ({shape}); "
                      "no new version")
        return
    console.print(f"registered [bold]{version.ref}[/] ({shape}), "
                  f"content {version.content_hash[:12]}")
    report = version.validation_report
    if report is not None:
        if version.forced:
            console.print(f"[yellow]warning:[/] registered with --force although "
                          f"{escape(str(report))}", highlight=False)
        else:
            console.print(f"expectations: {escape(str(report))}", highlight=False)


def _version_json(v: DatasetVersion, *, full: bool = True) -> dict:
    """A version as JSON; its profile is `data profile --json`'s, and a
    listing leaves out the schema, source and validation details too."""
    data = record(v, ref=v.ref)
    data.pop("profile")
    if not full:
        for key in ("schema", "source", "expectations", "validation"):
            data.pop(key)
        data["checks"] = _checks_cell(v)
    return data


DATASET_COLUMNS = {col.name: col for col in (
    Col("name", lambda s: escape(s.name)),
    Col("latest", lambda s: f"@{s.latest_version}", whole=True),
    Col("versions", lambda s: str(s.num_versions), justify="right", whole=True),
    Col("rows", lambda s: f"{s.num_rows:,}", justify="right", whole=True),
    Col("columns", lambda s: str(s.num_columns), justify="right", whole=True),
    Col("created", lambda s: fmt_when(s.created_at), whole=True),
    Col("updated", lambda s: fmt_when(s.updated_at), whole=True),
    Col("description", lambda s: escape(s.description or "")),
)}
DATASET_DEFAULT = ("name", "latest", "rows", "columns", "updated", "description")


@app.command("list")
def list_(
    columns: Annotated[Optional[str], columns_option(DATASET_COLUMNS, DATASET_DEFAULT)] = None,
    as_json: Annotated[bool, json_option(
        "Print the datasets, with their latest version, as a JSON list.")] = False,
) -> None:
    """List datasets with their latest version."""
    ws = open_workspace()
    summaries = ws.datasets.list()
    if as_json:
        print_json([record(s, ref=s.ref) for s in summaries])
        return
    cols, explicit = choose(columns, DATASET_COLUMNS, DATASET_DEFAULT)
    if not summaries:
        console.print("no datasets yet; add one with `shipyard data add NAME FILE`")
        return
    print_table(console, summaries, cols, optional=("updated", "description"),
                explicit=explicit)


VERSION_COLUMNS = {col.name: col for col in (
    # Refs are what users copy into the next command: never cut them.
    Col("version", lambda v: v.ref, whole=True),
    Col("rows", lambda v: f"{v.num_rows:,}", justify="right", whole=True),
    Col("cols", lambda v: str(v.num_columns), justify="right", whole=True),
    Col("size", lambda v: fmt_bytes(v.size_bytes), justify="right", whole=True),
    Col("content", lambda v: v.content_hash[:12], whole=True),
    Col("created", lambda v: fmt_when(v.created_at), whole=True),
    Col("by", lambda v: escape(v.created_by or "-")),
    Col("checks", lambda v: _checks_cell(v)),
    Col("parents", lambda v: ", ".join(v.parents) or "-"),
    Col("description", lambda v: escape(v.description or "")),
    Col("transform", lambda v: escape(v.transform or "")),
)}
VERSION_DEFAULT = ("version", "rows", "cols", "size", "created", "checks", "parents")


@app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    columns: Annotated[Optional[str], columns_option(VERSION_COLUMNS, VERSION_DEFAULT)] = None,
    as_json: Annotated[bool, json_option("Print the versions as a JSON list.")] = False,
) -> None:
    """List every version of dataset NAME."""
    ws = open_workspace()
    found = ws.datasets.versions(name)
    if as_json:
        print_json([_version_json(v, full=False) for v in found])
        return
    cols, explicit = choose(columns, VERSION_COLUMNS, VERSION_DEFAULT)
    print_table(console, found, cols, optional=("size", "parents", "checks", "created"),
                explicit=explicit)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="Version: NAME, NAME@latest or NAME@N.")],
    as_json: Annotated[bool, json_option(
        "Print the version (metadata, schema, source, validation, lineage) as JSON.")] = False,
) -> None:
    """Show one version: metadata, schema, validation and lineage."""
    from rich.table import Table

    ws = open_workspace()
    v = ws.datasets.get(ref)
    children = ws.datasets.children(v)
    if as_json:
        print_json({**_version_json(v), "children": [c.ref for c in children]})
        return
    meta = Table(show_header=False, box=None, title=f"[bold]{v.ref}[/]", title_justify="left")
    meta.add_column("field", no_wrap=True)
    meta.add_column("value", overflow="fold")  # digests and paths are copied whole
    meta.add_row("rows x columns", f"{v.num_rows:,} x {v.num_columns}")
    meta.add_row("snapshot", f"{v.snapshot_digest} ({fmt_bytes(v.size_bytes)} parquet)")
    meta.add_row("content hash", v.content_hash)
    meta.add_row("source", escape("\n".join(
        f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
        for key, value in v.source.items())))
    meta.add_row("created", f"{fmt_time(v.created_at)} by {escape(v.created_by or '-')}")
    for label, value in (("description", v.description), ("transform", v.transform)):
        if value:
            meta.add_row(label, escape(value))
    meta.add_row("parents", ", ".join(v.parents) or "-")
    meta.add_row("children", ", ".join(c.ref for c in children) or "-")
    meta.add_row("validation", _checks_cell(v))
    _print_fitted(meta)

    schema = Table("column", "type", "arrow type", "missing", title="schema",
                   title_justify="left")
    columns = v.profile.get("columns", {})
    for col in v.schema:
        missing = columns.get(col["name"], {}).get("missing")
        schema.add_row(escape(col["name"]), col["type"], escape(col["arrow_type"]),
                       fmt_num(missing))
    _print_fitted(schema)

    report = v.validation_report
    if report is not None and not report.passed:
        console.print(escape(str(report)), highlight=False)


def _print_fitted(table) -> None:
    fit(table, console)
    console.print(table)


def _stat(key: str) -> Callable[[tuple[str, dict]], str]:
    return lambda item: fmt_num(item[1].get(key))


def _count(key: str) -> Callable[[tuple[str, dict]], str]:
    return lambda item: f"{item[1][key]:,}"


def _top(item: tuple[str, dict]) -> str:
    return escape(", ".join(f"{t['value']} ({t['count']})" for t in item[1].get("top", [])[:3]))


PROFILE_COLUMNS = {col.name: col for col in (
    Col("column", lambda item: escape(item[0])),
    Col("type", lambda item: item[1]["dtype"], whole=True),
    Col("count", _count("count"), justify="right", whole=True),
    Col("missing", _count("missing"), justify="right", whole=True),
    Col("distinct", _count("distinct"), justify="right", whole=True),
    Col("mean", _stat("mean"), justify="right", whole=True),
    Col("std", _stat("std"), justify="right", whole=True),
    Col("min", _stat("min"), justify="right", whole=True),
    Col("median", lambda item: fmt_num((item[1].get("quantiles") or {}).get("p50")),
        justify="right", whole=True),
    Col("max", _stat("max"), justify="right", whole=True),
    Col("top", _top, header="top values"),
)}
PROFILE_DEFAULT = ("column", "type", "missing", "distinct", "mean", "min", "max", "top")


@app.command("profile")
def profile(
    ref: Annotated[str, typer.Argument(help="Version: NAME, NAME@latest or NAME@N.")],
    columns: Annotated[Optional[str], columns_option(PROFILE_COLUMNS, PROFILE_DEFAULT)] = None,
    as_json: Annotated[bool, json_option(
        "Print the profile (every statistic of every column) as JSON.")] = False,
) -> None:
    """Show per-column statistics of a version."""
    ws = open_workspace()
    v = ws.datasets.get(ref)
    p = v.profile
    if as_json:
        print_json({"ref": v.ref, **p})
        return
    cols, explicit = choose(columns, PROFILE_COLUMNS, PROFILE_DEFAULT)
    print_table(console, list(p["columns"].items()), cols,
                title=f"{v.ref}: {p['num_rows']:,} rows, {p['num_columns']} columns, "
                      f"{p['missing_cells']:,} missing cells",
                optional=("top", "distinct", "mean", "max", "min"), explicit=explicit,
                title_justify="left")


@app.command("diff")
def diff(
    ref_a: Annotated[str, typer.Argument(help="The older version, e.g. adult@2.")],
    ref_b: Annotated[str, typer.Argument(help="The newer version, e.g. adult@3.")],
    as_json: Annotated[bool, json_option(
        "Print the changes (schema, rows, per-column statistics) as JSON.")] = False,
) -> None:
    """Compare two versions: schema changes, rows, and per-column statistics."""
    from rich.table import Table

    ws = open_workspace()
    d = ws.datasets.diff(ref_a, ref_b)
    if as_json:
        print_json(d.to_dict())
        return
    console.print(f"[bold]{d.a}[/] -> [bold]{d.b}[/]: rows {d.rows_before:,} -> "
                  f"{d.rows_after:,} ({d.rows_delta:+,})")
    if d.same_content:
        console.print("identical content")
        return
    rows = d.table()
    if not rows:
        console.print("no schema or statistics changes")
        return
    table = Table("column", "change", "before", "after", "delta")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    _print_fitted(table)


def _checks_cell(v: DatasetVersion) -> str:
    report = v.validation_report
    if report is None:
        return "no expectations"
    if report.passed:
        return f"{len(report.results)} checks passed"
    text = f"{len(report.failures)} of {len(report.results)} checks failed"
    return text + (" (forced)" if v.forced else "")
