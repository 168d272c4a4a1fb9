"""`shipyard audit ...` commands: list, verify, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from shipyard.cli._common import (console, err_console, fmt_when, json_option, open_workspace,
                                  print_json, record)
from shipyard.cli._tables import Col, choose, columns_option, print_table

app = typer.Typer(
    help="The tamper-evident audit log: every registry change and dataset registration, "
         "hash-chained. Set SHIPYARD_AUDIT_KEY on every writer to key the chain (HMAC).",
    no_args_is_help=True,
)


def _escape(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _details(entry) -> str:
    import json

    return _escape(json.dumps(entry.details, separators=(", ", "="))) if entry.details else ""


AUDIT_COLUMNS = {col.name: col for col in (
    Col("seq", lambda e: str(e.seq), justify="right", whole=True),
    Col("when", lambda e: fmt_when(e.ts), whole=True),
    Col("actor", lambda e: _escape(e.actor)),
    Col("action", lambda e: e.action),
    Col("object", lambda e: _escape(e.object)),
    Col("reason", lambda e: _escape(e.reason or "")),
    Col("details", _details),
    Col("hash", lambda e: e.hash[:12], whole=True),
)}
AUDIT_DEFAULT = ("seq", "when", "actor", "action", "object", "reason")


@app.command("list")
def list_entries(
    object: Annotated[Optional[str], typer.Option(
        "--object", "-o", help="Only entries about TYPE or TYPE:ID, e.g. model:fraud, "
                               "dataset:adult.")] = None,
    action: Annotated[Optional[str], typer.Option(
        "--action", "-a", help="Only this action or those under it, e.g. model.alias.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0,
                                       help="Only the newest N entries.")] = 50,
    columns: Annotated[Optional[str], columns_option(AUDIT_COLUMNS, AUDIT_DEFAULT)] = None,
    as_json: Annotated[bool, json_option(
        "Print the entries (details and hashes included) as a JSON list.")] = False,
) -> None:
    """List audit entries, oldest first (the newest N)."""
    object_type = object_id = None
    if object:
        object_type, _, object_id = object.partition(":")
        object_id = object_id or None
    entries = open_workspace().audit.entries(object_type, object_id, action=action, limit=limit)
    if as_json:
        print_json([record(e, object=e.object) for e in entries])
        return
    cols, explicit = choose(columns, AUDIT_COLUMNS, AUDIT_DEFAULT)
    if not entries:
        console.print("no audit entries match")
        return
    print_table(console, entries, cols,
                title=f"{len(entries)} audit entr{'ies' if len(entries) != 1 else 'y'}",
                optional=("seq", "actor"), explicit=explicit)


@app.command()
def verify(
    as_json: Annotated[bool, json_option(
        "Print the verdict (ok, entries checked, head hash, the broken entry) as JSON; "
        "the exit status is the same.")] = False,
) -> None:
    """Check the whole hash chain; exit 1 naming the first broken entry.

    Prints the head hash: keep it somewhere else to detect later truncation."""
    result = open_workspace().audit.verify()
    if as_json:
        print_json(record(result))
        if not result.ok:
            raise typer.Exit(1)
        return
    if result.ok:
        console.print(f"[green]ok[/] {result}")
        return
    err_console.print(f"[bold red]audit chain broken[/] at seq {result.broken_seq}: "
                      f"{result.problem}", highlight=False)
    raise typer.Exit(1)


@app.command()
def export(file: Annotated[Path, typer.Argument(
        help="Where to write the entries, one JSON object a line (.jsonl).",
        dir_okay=False)]) -> None:
    """Export every entry as JSON lines, in seq order (verifiable offline with
    shipyard.security.verify_chain(read_jsonl(FILE)))."""
    count = open_workspace().audit.export_jsonl(file)
    console.print(f"wrote {count} entr{'ies' if count != 1 else 'y'} to {file}")
