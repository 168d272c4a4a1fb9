"""``shipyard evaluate``: parse, call shipyard.evaluate, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli._common import console, json_option, open_workspace, stdout_reserved
from shipyard.cli._tables import fit


def evaluate_command(
    model_ref: Annotated[str, typer.Argument(help="Model version: fraud@7, fraud@champion.")],
    dataset_ref: Annotated[str, typer.Argument(help="Held-out dataset version: adult@3.")],
    target: Annotated[str | None, typer.Option(
        help="Target column (default: the one the model's signature records).")] = None,
    sensitive: Annotated[list[str] | None, typer.Option(
        "--sensitive", help="A sensitive column to measure fairness over (repeatable).")] = None,
    slice_: Annotated[list[str] | None, typer.Option(
        "--slice", help="A column to slice metrics by (repeatable).")] = None,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    card: Annotated[Path | None, typer.Option(help="Write the model card here.")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json-file", help="Write the JSON report here.")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain/--no-explain", help="Compute SHAP global importance.")] = True,
    robustness: Annotated[bool, typer.Option(
        "--robustness/--no-robustness", help="Run the robustness checks.")] = True,
    n_bootstrap: Annotated[int, typer.Option(
        "--n-bootstrap", min=0, help="Bootstrap resamples for the intervals.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    as_json: Annotated[bool, json_option(
        "Print the whole report as JSON on stdout (as --json-file writes it) instead of "
        "the summary.")] = False,
) -> None:
    """Evaluate a model version on a dataset version: metrics with confidence
    intervals, slices, fairness, explanations, robustness and latency; the
    report is stored as artifacts of a run in the 'evaluation' experiment."""
    from shipyard.evaluate import SECTIONS

    sections = [s for s in SECTIONS if (explain or s != "explanations")
                and (robustness or s != "robustness")]
    with stdout_reserved(as_json):
        report = open_workspace().evaluate(
            model_ref, dataset_ref, target=target, sensitive=sensitive or (),
            slices=slice_ or (), sections=sections, n_bootstrap=n_bootstrap, seed=seed)
        for path, text in ((html, report.to_html() if html else None),
                           (card, report.model_card() if card else None),
                           (json_out, report.to_json() if json_out else None)):
            if path is not None:
                path.write_text(text, encoding="utf-8")
    if as_json:
        typer.echo(report.to_json())  # strict JSON already: no NaN
        return
    print_report(report)
    for path in (html, card, json_out):
        if path is not None:
            console.print(f"wrote {path}")


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def print_report(report) -> None:
    """A Rich summary: metrics with intervals, fairness gaps, flagged slices,
    latency."""
    from rich.markup import escape
    from rich.table import Table

    h = report.headline
    console.print(f"[bold]{escape(report.model.get('ref', 'model'))}[/] on "
                  f"{escape(report.dataset.get('ref', 'data'))}: {report.task}, "
                  f"{report.n_rows} rows; [bold]{h['metric']} {_fmt(h['value'])}[/]")
    table = Table(title="metrics")
    for col in ("metric", "value", f"{round(report.bootstrap['confidence'] * 100)}% interval"):
        table.add_column(col)
    for name, m in report.metrics.items():
        interval = "-" if m["ci_low"] is None else f"[{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]"
        table.add_row(escape(name), _fmt(m["value"]), interval)
    fit(table, console)
    console.print(table)
    for col, f in ((report.fairness or {}).get("features") or {}).items():
        ci = f.get("ci") or {}
        gaps = ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" + (
            f" [{_fmt(ci[k]['ci_low'])}, {_fmt(ci[k]['ci_high'])}]"
            if (ci.get(k) or {}).get("ci_low") is not None else "")
            for k, v in f.items() if k not in ("groups", "ci"))
        console.print(f"fairness by {escape(col)}: {gaps}")
    flagged = (report.slices or {}).get("flagged") or []
    for f in flagged:
        console.print(f"[red]flagged slice[/] {escape(str(f['column']))}={escape(f['group'])} "
                      f"({f['rows']} rows): {_fmt(f['value'])} ({f['gap']:+.3g})")
    if report.slices and not flagged:
        console.print("[green]no slice is flagged[/]")
    if report.operational:
        o = report.operational
        console.print(f"latency: single row p50 {o['single_row']['p50_ms']:.2f} ms, p99 "
                      f"{o['single_row']['p99_ms']:.2f} ms; batch of {o['batch']['rows']} "
                      f"{o['batch']['p50_ms']:.1f} ms ({o['batch']['rows_per_second']:,.0f} "
                      "rows/s)")
    for name, why in report.skipped.items():
        console.print(f"[yellow]skipped {name}[/]: {escape(why)}")
    if report.run_id:
        console.print(f"recorded as run {report.run_id[:8]} (experiment evaluation)")
