"""The ``shipyard`` command. Commands are thin: parse, call the library, render.

Heavy libraries (pandas, pyarrow, ...) are imported inside commands so that
``shipyard --help`` answers at once.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from shipyard.cli._audit import app as audit_app
from shipyard.cli._common import (console, follow_columns, err_console, json_option, open_workspace, print_json,
                                  record, set_home, state)
from shipyard.cli._data import app as data_app
from shipyard.cli._deploy import deploy_command
from shipyard.cli._evaluate import evaluate_command
from shipyard.cli._models import app as models_app
from shipyard.cli._monitor import app as monitor_app
from shipyard.cli._predict import build_command, predict_command
from shipyard.cli._promote import promote_command
from shipyard.cli._rag import app as rag_app
from shipyard.cli._runs import app as runs_app
from shipyard.cli._serve import keys_app, serve_command
from shipyard.cli._train import reproduce_command, train_command
from shipyard.cli._ui import ui_command

app = typer.Typer(
    name="shipyard",
    help="Shipyard: data, training, tracking, evaluation, registry and serving for ML, "
         "embedded by default (SQLite + a local folder).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.command("train")(train_command)
app.command("reproduce")(reproduce_command)
app.command("evaluate")(evaluate_command)
app.command("promote")(promote_command)
app.command("serve")(serve_command)
app.command("predict")(predict_command)
app.command("build")(build_command)
app.add_typer(keys_app, name="keys")
app.command("deploy")(deploy_command)
app.add_typer(monitor_app, name="monitor")
app.add_typer(rag_app, name="rag")
app.command("ui")(ui_command)


@app.callback()
def _root(
    home: Annotated[Optional[str], typer.Option(
        "--home", envvar="SHIPYARD_HOME",
        help="Workspace folder (default ./.shipyard). SHIPYARD_DB_URL and SHIPYARD_ARTIFACTS "
             "override the database and artifact store inside it.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    set_home(home)
    state["debug"] = debug
    follow_columns()


@app.command()
def demo(
    rows: Annotated[Optional[int], typer.Option(help="Use only the first N rows (faster).")] = None,
) -> None:
    """Run the main job end to end on the embedded workspace.

    Ingest the Adult census dataset, validate and version it, record a tracked
    run, tune two model families and register the winner, promote, serve and
    monitor it; then ingest BBC News articles, answer questions with cited
    sources and score BM25, dense and hybrid retrieval."""
    from shipyard.demo import run_demo

    run_demo(open_workspace(), console=console, rows=rows)


@app.command()
def gc(
    grace: Annotated[float, typer.Option(
        help="Keep unreferenced blobs younger than this many seconds (a writer may not "
             "have committed its record yet).")] = 3600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go.")] = False,
    as_json: Annotated[bool, json_option(
        "Print the report (scanned, referenced, deleted digests, freed bytes) as JSON.")
    ] = False,
) -> None:
    """Delete artifact blobs that no dataset version, run or model references."""
    from shipyard.cli._common import fmt_bytes

    ws = open_workspace()
    report = ws.gc(grace_seconds=grace, dry_run=dry_run)
    if as_json:
        print_json(record(report, dry_run=dry_run))
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"scanned {report.scanned} blobs, {report.referenced} referenced; "
                  f"{verb} {len(report.deleted)} ({fmt_bytes(report.freed_bytes)}); "
                  f"kept {report.kept_young} younger than {grace:g}s")


@app.command()
def info(
    as_json: Annotated[bool, json_option("Print the same facts as JSON.")] = False,
) -> None:
    """Show where the workspace lives and what it holds."""
    from rich.table import Table

    from shipyard.cli._tables import fit

    ws = open_workspace()
    if as_json:
        print_json({"home": str(ws.settings.home), "database": ws.db.safe_url,
                    "schema": ws.db.current_revision(), "artifacts": ws.artifacts.url,
                    "encryption": "AES-256-GCM" if ws.artifacts.encrypted else None,
                    "counts": ws.counts()})
        return
    table = Table(show_header=False, box=None)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")  # paths and URLs wrap, never cut
    table.add_row("home", str(ws.settings.home))
    table.add_row("database", ws.db.safe_url)
    table.add_row("schema", ws.db.current_revision() or "-")
    table.add_row("artifacts", ws.artifacts.url)
    table.add_row("encryption", "AES-256-GCM" if ws.artifacts.encrypted else "off")
    for label, count in ws.counts().items():
        table.add_row(label, str(count))
    fit(table, console)
    console.print(table)


@app.command("new-key")
def new_key() -> None:
    """Print a new random AES-256 key for SHIPYARD_ENCRYPTION_KEY (base64).

    Keep it safe: encrypted artifacts cannot be read without it."""
    import base64
    import os

    typer.echo(base64.b64encode(os.urandom(32)).decode())


def main() -> None:
    """Entry point: run the app; print Shipyard errors without a traceback."""
    from shipyard.errors import ShipyardError

    try:
        app()  # standalone: click handles usage errors (exit 2) and Ctrl-C itself
    except ShipyardError as exc:
        if state["debug"]:
            raise
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
