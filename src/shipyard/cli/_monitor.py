"""``shipyard monitor MODEL``: check a window of a served model's traffic
(drift, data quality, performance), store the report, fire or resolve its
alerts; ``--every`` repeats until Ctrl-C. ``shipyard monitor alerts``: the
alert history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from shipyard.cli._common import (
    console,
    err_console,
    fmt_num,
    fmt_when,
    json_option,
    open_workspace,
    print_json,
    record,
    stdout_reserved,
)
from shipyard.cli._tables import fit

if TYPE_CHECKING:
    from shipyard.monitor import MonitorCheck

#: Most drift rows printed; the rest are counted (``--json`` has them all).
MAX_DRIFT_ROWS = 25


class _CheckByDefault(TyperGroup):
    """``shipyard monitor MODEL ...`` means ``shipyard monitor check MODEL ...``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_CheckByDefault, no_args_is_help=True, help=(
    "Watch a served model: drift, data quality, performance, alerts. "
    "`shipyard monitor MODEL` is `shipyard monitor check MODEL`."))


@app.command("check")
def check_command(
    model: Annotated[str, typer.Argument(help="The model name (e.g. fraud).")],
    version: Annotated[int | None, typer.Option(
        "--version", min=1, help="Only requests answered by this version.")] = None,
    role: Annotated[str | None, typer.Option(
        "--role", help="Only requests in this rollout role: primary, candidate or shadow.")
    ] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Window start: a duration back from now (90s, 10m, 1h, 7d) or an ISO "
                        "time; default: the policy's window.")] = None,
    every: Annotated[str | None, typer.Option(
        "--every", help="Check again every this long (10m, 1h) until Ctrl-C; each check "
                        "covers --since (default: the interval).")] = None,
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", help="Thresholds and alert rules: the monitor: section of this "
                         "shipyard.yaml (or a file holding only that section).")] = None,
    project: Annotated[Path | None, typer.Option(
        "--project", help="The project file whose monitor: section to use (default: "
                          "./shipyard.yaml when it exists).")] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Write the HTML monitor page here (rewritten after each check).")
    ] = None,
    as_json: Annotated[bool, json_option(
        "Print the check (report, rule outcomes, alert changes, alerts firing) as JSON on "
        "stdout and nothing else there; with --every, one JSON document per line.")] = False,
) -> None:
    """Check a window of MODEL's logged traffic against its reference.

    Drift per column and of the whole dataset, data quality, realized and
    estimated performance. The report is stored (ws.monitor.reports) and the
    policy's alert rules fire or resolve, delivered to the log, the workspace
    DB, the audit log and webhooks. The policy is the monitor: section of
    --project (or --policy), else of ./shipyard.yaml when there is one.

    Examples:

      shipyard monitor fraud --since 1h

      shipyard monitor fraud --every 10m --project deploy/shipyard.yaml --json
    """
    from shipyard.errors import ConfigError, MonitorError
    from shipyard.monitor import check_policy, parse_duration

    interval = None
    if every is not None:
        try:
            interval = parse_duration(every)
        except ValueError as exc:
            raise ConfigError(f"--every: {exc}") from exc
    if policy_file is not None and project is not None:
        raise ConfigError("give --policy or --project, not both (they name the same file)")
    policy = check_policy(_policy_of(policy_file or project))
    ws = open_workspace()
    window = since if since is not None else (every if every is not None else None)
    checks = 0
    stop = _StopOnInterrupt() if interval is not None else None
    try:
        while stop is None or not stop.requested:
            try:
                with stdout_reserved(as_json):
                    result = ws.monitor.check(model, version=version, role=role, since=window,
                                              policy=policy)
                    if html is not None:
                        html.write_text(ws.monitor.html(model, report_id=result.report.id),
                                        encoding="utf-8")
            except MonitorError as exc:
                if interval is None:
                    raise
                err_console.print(f"[yellow]{time.strftime('%H:%M:%S')}[/] no report: "
                                  f"{exc.message}", highlight=False)
            else:
                checks += 1
                if as_json:
                    _print_check_json(result, compact=interval is not None)
                else:
                    _render(result, html)
            if interval is None:
                return
            stop.wait(interval)
    except KeyboardInterrupt:  # a second Ctrl-C during a check
        pass
    finally:
        if stop is not None:
            stop.restore()
    err_console.print(f"stopped after {checks} check{'s' if checks != 1 else ''}")


class _StopOnInterrupt:
    """Ctrl-C (SIGINT) asks the loop to stop after the check in progress, so
    a check is never cut off inside a library call or a write; a second
    Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        import signal
        import threading

        self.requested = False
        self._event = threading.Event()
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._event.set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    def restore(self) -> None:
        import signal

        signal.signal(signal.SIGINT, self._previous)


def _policy_of(path: Path | None) -> Any:
    """The monitor: section of ``path``, else of ./shipyard.yaml when it
    exists; says on stderr which file was used."""
    from shipyard.project import load_section

    if path is None:
        path = Path("shipyard.yaml")
        if not path.is_file():
            return None
        if not _has_section(path, "monitor"):
            err_console.print(f"policy: {path} has no monitor: section; default thresholds, "
                              "no alert rules", highlight=False, markup=False, soft_wrap=True)
            return None
    section, _ = load_section(path, "monitor")
    # The path stays whole (to copy) and is not read as Rich markup.
    err_console.print(f"policy: the monitor: section of {path}", highlight=False,
                      markup=False, soft_wrap=True)
    return section


def _has_section(path: Path, name: str) -> bool:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True  # let load_section name the problem
    return not isinstance(data, dict) or name in data


def _check_json(result: MonitorCheck) -> dict[str, Any]:
    return {"verdict": result.verdict, "report": record(result.report),
            "outcomes": [o.to_dict() for o in result.outcomes],
            "changes": [record(a) for a in result.changes],
            "firing": [record(a) for a in result.firing]}


def _print_check_json(result: MonitorCheck, *, compact: bool) -> None:
    if not compact:
        print_json(_check_json(result))
        return
    import json

    from shipyard.data import jsonable

    typer.echo(json.dumps(jsonable(_check_json(result)), ensure_ascii=False, allow_nan=False))


# ---------------------------------------------------------------- render
_TONE = {"ok": "green", "warning": "yellow", "alert": "bold red"}


def _render(result: MonitorCheck, html: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    stored, report = result.report, result.report.report
    where = " ".join(filter(None, [stored.model,
                                   f"v{stored.version}" if stored.version else None,
                                   stored.role]))
    tone = _TONE.get(stored.verdict, "bold")
    console.print(f"[bold]{escape(where)}[/]: window {fmt_when(stored.window_start)} – "
                  f"{fmt_when(stored.window_end)}, {stored.rows:,} rows; verdict "
                  f"[{tone}]{stored.verdict}[/] (report {stored.id})")
    for why in report.get("reasons") or []:
        console.print(f"  - {escape(str(why))}")
    drift = report.get("drift") or {}
    if drift:
        ordered = sorted(drift.items(), key=lambda kv: (not kv[1].get("drifted"),
                                                         kv[1].get("p_adjusted") or 1.0))
        table = Table(title="drift per column (drifted first)")
        for col, justify in (("column", "left"), ("test", "left"), ("statistic", "right"),
                             ("adjusted p", "right"), ("effect", "right"),
                             ("drifted", "left")):
            table.add_column(col, justify=justify, no_wrap=col != "column")
        for name, d in ordered[:MAX_DRIFT_ROWS]:
            effect = fmt_num(d.get("effect"))
            if d.get("effect_name"):
                effect += f" {d['effect_name']}"
            table.add_row(escape(str(name)), escape(str(d.get("test") or "-")),
                          fmt_num(d.get("statistic")), fmt_num(d.get("p_adjusted")),
                          escape(effect),
                          "[bold red]yes[/]" if d.get("drifted") else "[green]no[/]")
        fit(table, console)
        console.print(table)
        if len(ordered) > MAX_DRIFT_ROWS:
            console.print(f"... and {len(ordered) - MAX_DRIFT_ROWS} more columns (--json has "
                          "them all)")
    dd = report.get("dataset_drift") or {}
    if dd:
        verdict = "[bold red]drift[/]" if dd.get("drifted") else "[green]no drift[/]"
        console.print(f"dataset: {verdict}; share of drifted columns "
                      f"{fmt_num(dd.get('share'))}")
    failed = {k: q for k, q in (report.get("quality") or {}).items()
              if isinstance(q, dict) and q.get("failed")}
    if failed:
        console.print("quality: " + "; ".join(
            f"[red]{escape(str(k))}[/] {fmt_num(q.get('value'))} > {fmt_num(q.get('threshold'))}"
            for k, q in failed.items()))
    elif report.get("quality"):
        console.print(f"quality: [green]{len(report['quality'])} checks passed[/]")
    perf = report.get("performance") or {}
    figures = [f"{kind} {escape(str(m))} {fmt_num(v.get('value'))}"
               for kind in ("realized", "estimated")
               for m, v in (perf.get(kind) or {}).items() if isinstance(v, dict)]
    if figures:
        console.print("performance: " + ", ".join(figures))
    for alert in result.changes:
        word = "[bold red]FIRING[/]" if alert.firing else "[green]resolved[/]"
        reason = (alert.details.get("resolved_by") or alert.details).get("reason")
        sent = ", ".join(f"{escape(d['webhook'])} {d['status']}" for d in alert.deliveries
                         if d["state"] == alert.state)
        console.print(f"alert {word} {escape(alert.rule)}: {escape(str(reason))}"
                      + (f" (webhooks: {sent})" if sent else ""))
    still = [a.rule for a in result.firing if a.id not in {c.id for c in result.changes}]
    if still:
        console.print(f"still firing: {escape(', '.join(still))}")
    if html is not None:
        console.print(f"HTML monitor page written to {escape(str(html))}")


# ---------------------------------------------------------------- alerts
@app.command("alerts")
def alerts_command(
    model: Annotated[str | None, typer.Argument(
        help="Only this model's alerts (default: every model's).")] = None,
    state: Annotated[str | None, typer.Option(
        "--state", help="Only firing or only resolved alerts.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest this many.")] = 50,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """The alert history, newest first: which rule fired on which model,
    when, why, whether it resolved, and how each webhook delivery went."""
    from rich.markup import escape

    from shipyard.cli._tables import Col, print_table

    alerts = open_workspace().monitor.alerts(model, state=state, limit=limit)
    if as_json:
        print_json([record(a) for a in alerts])
        return
    if not alerts:
        console.print("no alerts" + (f" of {escape(model)}" if model else ""))
        return
    cols = [
        Col("id", lambda a: str(a.id), justify="right", whole=True),
        Col("model", lambda a: escape(a.model)),
        Col("rule", lambda a: escape(a.rule)),
        Col("state", lambda a: "[bold red]firing[/]" if a.firing else "[green]resolved[/]",
            whole=True),
        Col("fired", lambda a: fmt_when(a.fired_at), whole=True),
        Col("resolved", lambda a: fmt_when(a.resolved_at), whole=True),
        Col("why", lambda a: escape(str(a.details.get("reason") or ""))),
        Col("webhooks", lambda a: ", ".join(f"{d['state']} {escape(d['webhook'])} {d['status']}"
                                            for d in a.deliveries) or "-"),
    ]
    print_table(console, alerts, cols, title="alerts (newest first)",
                optional=("webhooks", "resolved", "why", "model"))


# --------------------------------------------------------------- retrain
@app.command("retrain")
def retrain_command(
    model: Annotated[str, typer.Argument(help="The served model's name (e.g. fraud).")],
    project: Annotated[Path, typer.Option(
        "--project", help="The project file it was trained from.")] = Path("shipyard.yaml"),
    on_alert: Annotated[bool, typer.Option(
        "--on-alert", help="Retrain only when MODEL's newest monitor report is an alert or "
                           "one of its alerts is firing (for a schedule).")] = False,
    since: Annotated[str | None, typer.Option(
        "--since", help="Use the labelled predictions of this window: a duration back from "
                        "now (7d) or an ISO time; default since the last retrain that promoted.")] = None,
    min_labels: Annotated[int, typer.Option(
        "--min-labels", min=1, help="Fewest labelled rows to retrain on.")] = 200,
    holdout_share: Annotated[float, typer.Option(
        "--holdout-share", help="Share of the labelled requests held out to judge "
                                "candidate and champion on.")] = 0.3,
    holdout: Annotated[str | None, typer.Option(
        "--holdout", help="A dataset version whose rows join the holdout (e.g. the test "
                          "set; it must not overlap the traffic).")] = None,
    trials: Annotated[int | None, typer.Option(
        "--trials", min=1, help="Override the project's search trials per candidate.")
    ] = None,
    base_rows: Annotated[int | None, typer.Option(
        "--base-rows", min=1, help="Train on a seeded sample of this many rows of the "
                                   "project's dataset (plus the feedback): quicker, and the "
                                   "feedback weighs more.")] = None,
    candidate: Annotated[list[str] | None, typer.Option(
        "--candidate", help="Search only this candidate of the project (repeatable), e.g. "
                            "the champion's model family.")] = None,
    canary_weight: Annotated[float, typer.Option(
        "--canary-weight", help="Percent of requests the candidate answers in its canary.")
    ] = 20.0,
    canary_requests: Annotated[int, typer.Option(
        "--canary-requests", min=1, help="Candidate requests the canary is judged on.")
    ] = 50,
    canary_timeout: Annotated[str, typer.Option(
        "--canary-timeout", help="Longest wait for them (90s, 10m); then it is rolled back.")
    ] = "10m",
    as_json: Annotated[bool, json_option(
        "Print the outcome (steps, gates, canary, dataset and model refs) as JSON on stdout "
        "and nothing else there.")] = False,
) -> None:
    """Retrain MODEL from its labelled feedback; promote only a better model.

    The labelled predictions become a dataset version (lineage to the
    prediction log), the project file retrains on its data plus them, the
    candidate is judged against the champion on the same held-out rows by
    the project's gates (paired test), rolled out as a canary when MODEL has
    a deployment, then promoted, or refused / rolled back. Every step is in
    the audit log (`shipyard audit list --object retrain:MODEL`); the outcome is a
    run of experiment retrain. Exit status 0 when promoted (or nothing to do),
    1 when refused or rolled back.

    Examples:

      shipyard monitor retrain fraud --project shipyard.yaml

      shipyard monitor retrain fraud --on-alert --json   # hourly, from cron
    """
    from shipyard.errors import ConfigError
    from shipyard.monitor import parse_duration

    try:
        timeout = parse_duration(canary_timeout)
    except ValueError as exc:
        raise ConfigError(f"--canary-timeout: {exc}") from exc
    ws = open_workspace()

    def progress(step: str, detail: str) -> None:
        if not as_json:
            from rich.markup import escape

            err_console.print(f"[dim]{escape(step)}[/] {escape(detail)}", highlight=False)

    with stdout_reserved(as_json):
        result = ws.retrain(model, project=project, on_alert=on_alert, since=since,
                            min_labels=min_labels, holdout_share=holdout_share,
                            holdout=holdout, trials=trials, candidates=candidate or None,
                            base_rows=base_rows,
                            canary_weight=canary_weight,
                            canary_requests=canary_requests, canary_timeout=timeout,
                            progress=progress)
    if as_json:
        print_json(result.to_dict())
    else:
        _render_retrain(result)
    if result.outcome in ("refused", "rolled_back"):
        raise typer.Exit(1)


_OUTCOME_TONE = {"promoted": "bold green", "refused": "bold red", "rolled_back": "bold red",
                 "unchanged": "yellow", "skipped": "yellow"}


def _render_retrain(result: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"retrain of {escape(result.model)}")
    table.add_column("step", no_wrap=True)
    table.add_column("what happened", overflow="fold")
    for action, detail in result.steps:
        table.add_row(escape(action.removeprefix("retrain.")), escape(detail))
    fit(table, console)
    console.print(table)
    if result.gates is not None:
        gates = Table(title="gates on the holdout")
        for col in ("gate", "verdict", "observed", "threshold"):
            gates.add_column(col, justify="right" if col in ("observed", "threshold")
                             else "left", no_wrap=col != "gate")
        for check in result.gates.checks:
            gates.add_row(escape(check.name), "[green]pass[/]" if check.passed
                          else "[red]FAIL[/]", fmt_num(check.observed),
                          fmt_num(check.threshold))
        fit(gates, console)
        console.print(gates)
    tone = _OUTCOME_TONE.get(result.outcome, "bold")
    console.print(f"[{tone}]{result.outcome}[/]: {escape(result.reason)}")
    if result.run_id:
        console.print(f"recorded as run {result.run_id[:12]} (experiment retrain)")
