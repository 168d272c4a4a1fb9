"""`shipyard audit ...` commands: list, verify, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from shipyard.cli._common import console, err_console, fmt_time, open_workspace

app = typer.Typer(
    help="The tamper-evident audit log: every registry change and dataset registration, "
         "hash-chained. Set SHIPYARD_AUDIT_KEY on every writer to key the chain (HMAC).",
    no_args_is_help=True,
)


@app.command("list")
def list_entries(
    object: Annotated[Optional[str], typer.Option(
        "--object", "-o", help="Only entries about TYPE or TYPE:ID, e.g. model:fraud, "
                               "dataset:adult.")] = None,
    action: Annotated[Optional[str], typer.Option(
        "--action", "-a", help="Only this action or those under it, e.g. model.alias.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0,
                                       help="Only the newest N entries.")] = 50,
) -> None:
    """List audit entries, oldest first (the newest N)."""
    import json

    from rich.markup import escape
    from rich.table import Table

    object_type = object_id = None
    if object:
        object_type, _, object_id = object.partition(":")
        object_id = object_id or None
    entries = open_workspace().audit.entries(object_type, object_id, action=action, limit=limit)
    if not entries:
        console.print("no audit entries match")
        return
    table = Table(title=f"{len(entries)} audit entr{'ies' if len(entries) != 1 else 'y'}")
    for col in ("seq", "when", "actor", "action", "object", "reason", "details"):
        table.add_column(col, justify="right" if col == "seq" else "left",
                         no_wrap=col in ("seq", "when"), overflow="fold")
    for e in entries:
        details = json.dumps(e.details, separators=(", ", "=")) if e.details else ""
        table.add_row(str(e.seq), fmt_time(e.ts), escape(e.actor), e.action,
                      escape(e.object), escape(e.reason or ""), escape(details))
    console.print(table)


@app.command()
def verify() -> None:
    """Check the whole hash chain; exit 1 naming the first broken entry.

    Prints the head hash: keep it somewhere else to detect later truncation."""
    result = open_workspace().audit.verify()
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
