"""`shipyard data ...` commands: register, list, show, profile and compare datasets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from shipyard.cli._common import console, fmt_bytes, fmt_num, fmt_time, open_workspace

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
    version = ws.datasets.register(name, src, expectations=exps, force=force,
                                   parents=parent or None, transform=transform,
                                   description=description)
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


@app.command("list")
def list_() -> None:
    """List datasets with their latest version."""
    from rich.table import Column, Table

    ws = open_workspace()
    summaries = ws.datasets.list()
    if not summaries:
        console.print("no datasets yet; add one with `shipyard data add NAME FILE`")
        return
    table = Table(Column("name", no_wrap=True), "latest", "versions", "rows", "columns",
                  "updated", "description")
    for s in summaries:
        table.add_row(s.name, f"@{s.latest_version}", str(s.num_versions), f"{s.num_rows:,}",
                      str(s.num_columns), fmt_time(s.updated_at), escape(s.description or ""))
    console.print(table)


@app.command("versions")
def versions(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """List every version of dataset NAME."""
    from rich.table import Column, Table

    ws = open_workspace()
    # Refs are what users copy into the next command: never cut them.
    table = Table(Column("version", no_wrap=True, min_width=8), "rows", "cols", "size",
                  "content", "created", "by", "checks", "parents")
    for v in ws.datasets.versions(name):
        table.add_row(v.ref, f"{v.num_rows:,}", str(v.num_columns), fmt_bytes(v.size_bytes),
                      v.content_hash[:12], fmt_time(v.created_at), escape(v.created_by or "-"),
                      _checks_cell(v), ", ".join(v.parents) or "-")
    console.print(table)


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="Version: NAME, NAME@latest or NAME@N.")]
         ) -> None:
    """Show one version: metadata, schema, validation and lineage."""
    from rich.table import Table

    ws = open_workspace()
    v = ws.datasets.get(ref)
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
    children = ws.datasets.children(v)
    meta.add_row("children", ", ".join(c.ref for c in children) or "-")
    meta.add_row("validation", _checks_cell(v))
    console.print(meta)

    schema = Table("column", "type", "arrow type", "missing", title="schema",
                   title_justify="left")
    columns = v.profile.get("columns", {})
    for col in v.schema:
        missing = columns.get(col["name"], {}).get("missing")
        schema.add_row(escape(col["name"]), col["type"], col["arrow_type"], fmt_num(missing))
    console.print(schema)

    report = v.validation_report
    if report is not None and not report.passed:
        console.print(escape(str(report)), highlight=False)


@app.command("profile")
def profile(ref: Annotated[str, typer.Argument(help="Version: NAME, NAME@latest or NAME@N.")]
            ) -> None:
    """Show per-column statistics of a version."""
    from rich.table import Table

    ws = open_workspace()
    v = ws.datasets.get(ref)
    p = v.profile
    table = Table("column", "type", "count", "missing", "distinct", "mean", "std", "min",
                  "median", "max", "top values",
                  title=f"{v.ref}: {p['num_rows']:,} rows, {p['num_columns']} columns, "
                        f"{p['missing_cells']:,} missing cells", title_justify="left")
    for name, c in p["columns"].items():
        median = (c.get("quantiles") or {}).get("p50")
        top = ", ".join(f"{t['value']} ({t['count']})" for t in c.get("top", [])[:3])
        table.add_row(escape(name), c["dtype"], f"{c['count']:,}", f"{c['missing']:,}",
                      f"{c['distinct']:,}", fmt_num(c.get("mean")), fmt_num(c.get("std")),
                      fmt_num(c.get("min")), fmt_num(median), fmt_num(c.get("max")), escape(top))
    console.print(table)


@app.command("diff")
def diff(
    ref_a: Annotated[str, typer.Argument(help="The older version, e.g. adult@2.")],
    ref_b: Annotated[str, typer.Argument(help="The newer version, e.g. adult@3.")],
) -> None:
    """Compare two versions: schema changes, rows, and per-column statistics."""
    from rich.table import Table

    ws = open_workspace()
    d = ws.datasets.diff(ref_a, ref_b)
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
    console.print(table)


def _checks_cell(v: DatasetVersion) -> str:
    report = v.validation_report
    if report is None:
        return "no expectations"
    if report.passed:
        return f"{len(report.results)} checks passed"
    text = f"{len(report.failures)} of {len(report.results)} checks failed"
    return text + (" (forced)" if v.forced else "")
