"""``shipyard train`` and ``shipyard reproduce``: parse, call the workspace, render."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from shipyard.cli._common import (console, json_option, open_workspace, print_json, record,
                                  stdout_reserved)
from shipyard.cli._tables import fit

if TYPE_CHECKING:
    from shipyard.train import ReproReport, TrainResult


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
    as_json: Annotated[bool, json_option(
        "Print the result as JSON on stdout (study_run_id, model_digest, best_candidate, "
        "best_score, test_metrics, candidates, ...); progress goes to stderr.")] = False,
) -> None:
    """Tune every candidate of a project file and store the best model, all tracked.

    Each candidate's Optuna study lives in the workspace DB, so an interrupted
    search resumes where it stopped. The best candidate is refit on
    train+validation and scored once on the test rows."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    ws = open_workspace()
    with stdout_reserved(as_json), Progress(
            "[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False) as bars:
        tasks: dict[str, Any] = {}

        def progress(candidate: str, done: int, total: int) -> None:
            if candidate not in tasks:
                tasks[candidate] = bars.add_task(candidate, total=total)
            bars.update(tasks[candidate], completed=done, total=total)

        result = ws.train(project, progress=progress, resume=resume, n_jobs=n_jobs,
                          executor=executor)
    if as_json:
        print_json(train_json(result))
        return
    from shipyard.train import print_result

    print_result(result, console)


def train_json(result: TrainResult) -> dict[str, Any]:
    """What scripts chain on: the study run (for ``reproduce`` and ``models
    register``), the model digest, the winner and its scores."""
    return {
        "study_run_id": result.study_run_id, "final_run_id": result.final_run_id,
        "experiment": result.experiment, "dataset": result.dataset_ref,
        "model_digest": result.model_digest, "metric": result.metric,
        "direction": result.direction, "best_candidate": result.best_candidate,
        "best_score": result.best_score, "best_params": result.best_params,
        "test_metrics": result.test_metrics, "cost": result.cost,
        "candidates": [record(c) for c in result.candidates],
    }


def reproduce_command(
    run_id: Annotated[str, typer.Argument(help="A training's study run id (or a prefix).")],
    tolerance: Annotated[float, typer.Option(
        help="Relative and absolute tolerance for metrics.")] = 1e-9,
    as_json: Annotated[bool, json_option(
        "Print the comparison as JSON (ok, reproduced_run_id, every item); the exit "
        "status is the same.")] = False,
) -> None:
    """Re-run a training from its record; exit non-zero if anything differs."""
    from rich.markup import escape
    from rich.table import Table

    with stdout_reserved(as_json):
        report = open_workspace().reproduce(run_id, tolerance=tolerance)
    if as_json:
        print_json(reproduce_json(report))
        if not report.ok:
            raise typer.Exit(1)
        return
    table = Table(title=f"reproducing {report.run_id[:8]} as {report.reproduced_run_id[:8]}")
    for col in ("", "item", "recorded", "reproduced"):
        table.add_column(col)
    for item in report.items:
        table.add_row("[green]✓[/]" if item.ok else "[red]✗[/]", escape(item.name),
                      escape(_fmt(item.expected)), escape(_fmt(item.actual)))
    fit(table, console)
    console.print(table)
    if not report.ok:
        console.print(f"[red]{len(report.differences)} difference(s)[/]")
        raise typer.Exit(1)
    console.print("[green]reproduced: every item matches[/]")


def reproduce_json(report: ReproReport) -> dict[str, Any]:
    return {**record(report), "ok": report.ok,
            "differences": [item.name for item in report.differences]}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return "-" if value is None else str(value)
