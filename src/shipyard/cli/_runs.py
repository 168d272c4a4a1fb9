"""`shipyard runs ...` commands: list, show, compare, experiments, gc."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from shipyard.cli._common import console, fmt_bytes, fmt_num, fmt_time, open_workspace

FILTER_HELP = (
    "Filter syntax: \"metrics.auc > 0.9 and params.model = 'lgbm'\".\n\n"
    "Fields: metrics.<key> (the latest value), params.<key>, tags.<key>, and the attributes "
    "status, name, experiment, run_id, parent_id, start_time, end_time, seed, wall_seconds "
    "(also as attributes.<name>). Quote keys with dots or spaces in backticks: "
    "metrics.`val.auc`.\n\n"
    "Operators: = != < <= > >=, LIKE 'pat%' (case-sensitive), ILIKE (not), IN ('a', 'b'), "
    "NOT IN, IS NULL, IS NOT NULL; combine with AND, OR, NOT and parentheses. Strings in "
    "single or double quotes. A param compared with a number compares numerically "
    "(params.lr < 0.01); times take epoch seconds or ISO dates (start_time >= '2026-11-01')."
)

app = typer.Typer(
    help="Tracked runs: list and search them, show one, compare several, end orphans.",
    no_args_is_help=True,
)

STATUS_STYLE = {"RUNNING": "cyan", "FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}
LOWER_IS_BETTER = ("loss", "error", "err", "rmse", "mse", "mae", "mape", "logloss",
                   "perplexity", "latency", "time", "seconds")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _metric_columns(runs, order_by: list[str], filter: str | None, limit: int = 4) -> list[str]:
    """The metrics worth a column: those sorted or filtered on, then the most common."""
    from collections import Counter

    wanted: list[str] = []
    texts = list(order_by) + ([filter] if filter else [])
    present = Counter(k for r in runs for k in r.metrics)
    for key in present:
        if any(f"metrics.{key}" in t or f"metrics.`{key}`" in t for t in texts):
            wanted.append(key)
    for key, _ in present.most_common():
        if len(wanted) >= limit:
            break
        if key not in wanted:
            wanted.append(key)
    return wanted[:limit]


@app.command("list", help=f"List runs, newest first, or as sorted.\n\n{FILTER_HELP}")
def list_runs(
    experiment: Annotated[Optional[list[str]], typer.Option(
        "--experiment", "-e", help="Only runs of this experiment (repeatable).")] = None,
    filter: Annotated[Optional[str], typer.Option(
        "--filter", "-f", help="Filter expression (see above).")] = None,
    order_by: Annotated[Optional[list[str]], typer.Option(
        "--order-by", "-o", help="Sort key, e.g. 'metrics.auc DESC' or 'params.lr' "
                                 "(repeatable).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many runs.")] = 50,
    status: Annotated[Optional[str], typer.Option(
        help="Only runs in this status (RUNNING, FINISHED, FAILED, KILLED).")] = None,
    top_level: Annotated[bool, typer.Option(
        "--top-level", help="Hide nested runs (trials).")] = False,
) -> None:
    from rich.table import Table

    ws = open_workspace()
    order = list(order_by or [])
    kwargs = {"parent": None} if top_level else {}
    runs = ws.runs.search(filter, experiment=experiment or None, order_by=order or None,
                          limit=limit, status=status, **kwargs)
    if not runs:
        console.print("no runs match")
        return
    metrics = _metric_columns(runs, order, filter)
    table = Table(title=f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
    for col in ("id", "experiment", "name", "status", "start", "duration"):
        table.add_column(col, no_wrap=col in ("id", "status", "start"))
    for key in metrics:
        table.add_column(key, justify="right")
    for r in runs:
        name = ("  " if r.parent_id else "") + (r.name or "-")
        table.add_row(r.short_id, r.experiment, name, _status(r.status), fmt_time(r.start_time),
                      _duration(r.duration), *(fmt_num(r.metrics.get(k)) for k in metrics))
    console.print(table)


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (>= 6 chars).")]
         ) -> None:
    """Show one run: attributes, params, metrics, tags, inputs, artifacts, environment."""
    from rich.table import Table

    ws = open_workspace()
    r = ws.runs.get(run_id)
    attrs = Table(title=f"Run {r.id}", show_header=False, box=None)
    for label, value in (
            ("experiment", r.experiment), ("name", r.name or "-"), ("status", _status(r.status)),
            ("parent", r.parent_id or "-"), ("start", fmt_time(r.start_time)),
            ("end", fmt_time(r.end_time)), ("wall time", _duration(r.wall_seconds)),
            ("cpu time", _duration(r.cpu_seconds)),
            ("peak memory", "-" if r.peak_memory_mb is None
             else f"{r.peak_memory_mb:,.0f} MB (process peak)"),
            ("seed", fmt_num(r.seed)), ("inputs", ", ".join(ws.runs.inputs(r.id)) or "-")):
        attrs.add_row(f"[bold]{label}", str(value))
    console.print(attrs)
    if r.error:
        console.print(f"[red bold]error:[/] {r.error}", highlight=False)
    for title, items in (("params", r.params), ("metrics (latest)", r.metrics), ("tags", r.tags)):
        if items:
            t = Table(title=title, show_header=False)
            t.add_column("key", style="bold")
            t.add_column("value", justify="right" if title.startswith("metrics") else "left")
            for k, v in items.items():
                t.add_row(k, fmt_num(v))
            console.print(t)
    artifacts = ws.runs.artifacts(r.id)
    if artifacts:
        t = Table(title="artifacts")
        t.add_column("path")
        t.add_column("size", justify="right")
        t.add_column("digest")
        for a in artifacts:
            t.add_row(a.path, fmt_bytes(a.size_bytes), a.digest[:12])
        console.print(t)
    env = ws.runs.environment(r.id)
    if env:
        git = env.get("git") or {}
        py = env.get("python", {})
        plat = env.get("platform", {})
        cpu = env.get("cpu", {})
        t = Table(title="environment", show_header=False, box=None)
        t.add_row("[bold]python", f"{py.get('implementation', '')} {py.get('version', '')}")
        t.add_row("[bold]platform", str(plat.get("platform", "-")))
        t.add_row("[bold]cpu", f"{cpu.get('count', '-')} x {cpu.get('model') or '-'}")
        t.add_row("[bold]host", str(env.get("hostname", "-")))
        t.add_row("[bold]git", f"{git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}"
                  if git.get("commit") else "-")
        t.add_row("[bold]packages", f"{len(env.get('packages', {}))} installed")
        console.print(t)


def _lower_is_better(key: str, minimize: list[str]) -> bool:
    if key in minimize:
        return True
    low = key.lower()
    return any(word in low for word in LOWER_IS_BETTER)


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids or unique prefixes.")],
    minimize: Annotated[Optional[list[str]], typer.Option(
        "--minimize", help="Metric where lower is better (repeatable). By default lower is "
                           "better for names with loss, error, rmse, mae, ... ")] = None,
) -> None:
    """Runs side by side: differing params in yellow, the best value of each metric in bold green."""
    from rich.table import Table

    ws = open_workspace()
    frame = ws.runs.compare(run_ids)
    table = Table(title=f"{frame.shape[1]} runs")
    table.add_column("field", no_wrap=True)
    for rid in frame.columns:
        table.add_column(rid[:8], justify="right")
    current = None
    for field, row in frame.iterrows():
        values = list(row)
        section, key = field.split(".", 1)
        if section != current:
            if current is not None:
                table.add_section()
            table.add_row(f"[bold]{section}", *([""] * len(values)))
            current = section
        cells = [fmt_num(v) for v in values]
        if section == "attributes":
            if key in ("start_time", "end_time"):
                cells = [fmt_time(v) for v in values]
            elif key in ("wall_seconds", "cpu_seconds"):
                cells = [_duration(v) for v in values]
            elif key == "status":
                cells = [_status(v) for v in values]
        elif section in ("params", "tags"):
            if len({v for v in values}) > 1:
                cells = [f"[yellow]{c}[/]" for c in cells]
        elif section == "metrics":
            numbers = [v for v in values if isinstance(v, float) and not math.isnan(v)]
            if len(numbers) > 1 and len(set(numbers)) > 1:
                best = (min if _lower_is_better(key, minimize or []) else max)(numbers)
                cells = [f"[bold green]{c}[/]" if v == best else c for v, c in zip(values, cells)]
        table.add_row(f"  {key}", *cells)
    console.print(table)


@app.command()
def experiments() -> None:
    """List experiments and their number of runs."""
    from rich.table import Table

    ws = open_workspace()
    table = Table(title="experiments")
    for col in ("name", "runs", "created"):
        table.add_column(col, justify="right" if col == "runs" else "left")
    for e in ws.runs.experiments():
        table.add_row(e.name, str(e.num_runs), fmt_time(e.created_at))
    console.print(table)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only report which runs would be marked KILLED.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print every running run checked, with its verdict, as JSON.")] = False,
) -> None:
    """Mark KILLED the running runs whose process is gone (a killed training, a crashed script).

    Each run's recorded process (host, pid and start time) is checked on this
    host. Runs recorded on another host are left alone, since their processes
    cannot be seen from here: run this there."""
    import dataclasses
    import json

    from rich.markup import escape
    from rich.table import Table

    checks = open_workspace().runs.reap_orphans(dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
        return
    if not checks:
        console.print("no running runs")
        return
    gone = [c for c in checks if c.verdict == "gone"]
    if gone:
        table = Table(title="would be marked KILLED" if dry_run else "marked KILLED")
        for col in ("id", "experiment", "name", "reason"):
            table.add_column(col, no_wrap=col == "id", overflow="fold")
        for c in gone:
            name = ("  " if c.parent_id else "") + (c.name or "-")
            table.add_row(c.run_id[:8], c.experiment, escape(name), escape(c.reason))
        console.print(table)
    counts = {v: [c for c in checks if c.verdict == v]
              for v in ("gone", "alive", "other-host", "unrecorded")}
    verb = "would mark" if dry_run else "marked"
    killed = len(gone) if dry_run else sum(c.killed for c in gone)
    lines = [f"{verb} {killed} run{'s' if killed != 1 else ''} KILLED"]
    if counts["alive"]:
        lines.append(f"{len(counts['alive'])} still running (their process is alive)")
    if counts["other-host"]:
        hosts = sorted({c.host for c in counts["other-host"]})
        lines.append(f"{len(counts['other-host'])} left alone: recorded on another host "
                     f"({', '.join(hosts)}); run `shipyard runs gc` there")
    if counts["unrecorded"]:
        lines.append(f"{len(counts['unrecorded'])} left alone: no process recorded")
    console.print("; ".join(lines), highlight=False)
