"""``shipyard train`` and ``shipyard reproduce``: parse, call shipyard.train, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from shipyard.cli._common import console, open_workspace


def train_command(
    project: Annotated[Path, typer.Argument(help="The project file (shipyard.yaml).")] = Path(
        "shipyard.yaml"),
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume",
        help="Continue searches an interrupted run left, or start them over.")] = True,
    n_jobs: Annotated[Optional[int], typer.Option(
        "--n-jobs", min=1, help="Trials in parallel (default: train.search.n_jobs).")] = None,
    executor: Annotated[Optional[str], typer.Option(
        help="Where trials run: local or ray (default: train.search.executor).")] = None,
) -> None:
    """Tune every candidate of a project file and store the best model, all tracked.

    Each candidate's Optuna study lives in the workspace DB, so an interrupted
    search resumes where it stopped. The best candidate is refit on
    train+validation and scored once on the test rows."""
    from shipyard.project import load_project
    from shipyard.train import train_project

    train_project(open_workspace(), load_project(project), console=console, resume=resume, n_jobs=n_jobs,
                  executor=executor)


def reproduce_command(
    run_id: Annotated[str, typer.Argument(help="A training's study run id (or a prefix).")],
    tolerance: Annotated[float, typer.Option(
        help="Relative and absolute tolerance for metrics.")] = 1e-9,
) -> None:
    """Re-run a training from its record; exit non-zero if anything differs."""
    from rich.markup import escape
    from rich.table import Table

    from shipyard.train import reproduce

    report = reproduce(open_workspace(), run_id, tolerance=tolerance)
    table = Table(title=f"reproducing {report.run_id[:8]} as {report.reproduced_run_id[:8]}")
    for col in ("", "item", "recorded", "reproduced"):
        table.add_column(col, overflow="fold")
    for item in report.items:
        table.add_row("[green]✓[/]" if item.ok else "[red]✗[/]", item.name,
                      escape(_fmt(item.expected)), escape(_fmt(item.actual)))
    console.print(table)
    if not report.ok:
        console.print(f"[red]{len(report.differences)} difference(s)[/]")
        raise typer.Exit(1)
    console.print("[green]reproduced: every item matches[/]")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return "-" if value is None else str(value)
