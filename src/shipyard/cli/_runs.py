"""`shipyard runs ...` commands: list, show, compare, experiments, gc."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from shipyard.cli._common import (console, fmt_bytes, fmt_num, fmt_time, fmt_when, json_option,
                                  open_workspace, print_json, record)
from shipyard.cli._tables import Col, choose, columns_option, fit, print_table

if TYPE_CHECKING:
    from shipyard.tracking import RunInfo

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
METRIC_COLUMNS = 3
TIMINGS = ("seconds", "time", "latency", "memory")


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


def _escape(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


RUN_COLUMNS = {col.name: col for col in (
    Col("id", lambda r: r.short_id, whole=True),
    Col("experiment", lambda r: _escape(r.experiment)),
    Col("name", lambda r: ("  " if r.parent_id else "") + _escape(r.name or "-")),
    Col("status", lambda r: _status(r.status), whole=True),
    Col("start", lambda r: fmt_when(r.start_time), whole=True),
    Col("end", lambda r: fmt_when(r.end_time), whole=True),
    Col("duration", lambda r: _duration(r.duration), justify="right", whole=True),
    Col("parent", lambda r: (r.parent_id or "-")[:8], whole=True),
    Col("seed", lambda r: fmt_num(r.seed), justify="right", whole=True),
)}
RUN_DEFAULT = ("id", "experiment", "name", "status", "start", "duration")
RUN_MORE = (", metrics.<key> (or just the key), params.<key>, tags.<key>; the default adds "
            "up to 3 metrics, those in --order-by and --filter first")


def _metric_col(key: str) -> Col:
    return Col(f"metrics.{key}", lambda r: fmt_num(r.metrics.get(key)), header=key,
               justify="right", whole=True)


def _run_col(name: str, runs: list[RunInfo]) -> Col | None:
    """``metrics.K`` (or a bare metric key), ``params.K`` or ``tags.K`` of these runs."""
    section, dot, key = name.partition(".")
    if dot and section in ("metrics", "params", "tags"):
        keys = sorted({k for r in runs for k in getattr(r, section)})
        if key not in keys:
            shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
            raise typer.BadParameter(
                f"no run listed has {section[:-1]} {key!r} ({section} here: {shown or 'none'})",
                param_hint="'--columns'")
        if section == "metrics":
            return _metric_col(key)
        return Col(name, lambda r: _escape(_short(getattr(r, section).get(key, "-"))))
    if any(name in r.metrics for r in runs):
        return _metric_col(name)
    return None


def _short(value: str) -> str:
    """A param in a table: ``0.08690152650329905`` as ``0.0869`` (exact in --json)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 8 else f"{number:.4g}"


def _metric_keys(runs: list[RunInfo], order_by: list[str], filter: str | None,
                 limit: int = METRIC_COLUMNS) -> list[str]:
    """The metrics worth a column: those sorted or filtered on, then the most
    common, plain names (``auc``) before namespaced ones (``cost.co2e_g``) and
    scores before timings (``fit_seconds``)."""
    from collections import Counter

    texts = list(order_by) + ([filter] if filter else [])
    present = Counter(k for r in runs for k in r.metrics)
    wanted = [key for key in present
              if any(f"metrics.{key}" in t or f"metrics.`{key}`" in t for t in texts)]
    ranked = sorted(present, key=lambda k: ("." in k, any(w in k for w in TIMINGS),
                                            -present[k]))
    wanted += [key for key in ranked if key not in wanted]
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
    columns: Annotated[Optional[str], columns_option(RUN_COLUMNS, RUN_DEFAULT, RUN_MORE)
                       ] = None,
    as_json: Annotated[bool, json_option(
        "Print the runs (every attribute, param, metric and tag) as a JSON list.")] = False,
) -> None:
    ws = open_workspace()
    order = list(order_by or [])
    kwargs = {"parent": None} if top_level else {}
    runs = ws.runs.search(filter, experiment=experiment or None, order_by=order or None,
                          limit=limit, status=status, **kwargs)
    if as_json:
        print_json([record(r, duration=r.duration) for r in runs])
        return
    if not runs:
        console.print("no runs match")
        return
    metrics = [_metric_col(k) for k in _metric_keys(runs, order, filter)]
    one_experiment = len({r.experiment for r in runs}) == 1
    default = [n for n in RUN_DEFAULT if not (one_experiment and n == "experiment")]
    cols, explicit = choose(columns, RUN_COLUMNS, default,
                            dynamic=lambda name: _run_col(name, runs), more=RUN_MORE)
    if not explicit:
        cols += metrics
    title = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
    if one_experiment:
        title += f" of {runs[0].experiment}"
    optional = [c.name for c in metrics[:0:-1]] + ["duration", "start"] + \
        [c.name for c in metrics[:1]] + ["experiment"]
    print_table(console, runs, cols, title=title, optional=optional, explicit=explicit)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (>= 6 chars).")],
    as_json: Annotated[bool, json_option(
        "Print the run (attributes, params, metrics, tags, inputs, artifacts, environment) "
        "as JSON.")] = False,
) -> None:
    """Show one run: attributes, params, metrics, tags, inputs, artifacts, environment."""
    from rich.table import Table

    ws = open_workspace()
    r = ws.runs.get(run_id)
    inputs = ws.runs.inputs(r.id)
    artifacts = ws.runs.artifacts(r.id)
    env = ws.runs.environment(r.id)
    if as_json:
        print_json(record(r, duration=r.duration, inputs=inputs,
                          artifacts=[record(a) for a in artifacts], environment=env or None))
        return
    attrs = Table(title=f"Run {r.id}", show_header=False, box=None)
    for label, value in (
            ("experiment", _escape(r.experiment)), ("name", _escape(r.name or "-")),
            ("status", _status(r.status)),
            ("parent", r.parent_id or "-"), ("start", fmt_time(r.start_time)),
            ("end", fmt_time(r.end_time)), ("wall time", _duration(r.wall_seconds)),
            ("cpu time", _duration(r.cpu_seconds)),
            ("peak memory", "-" if r.peak_memory_mb is None
             else f"{r.peak_memory_mb:,.0f} MB (process peak)"),
            ("seed", fmt_num(r.seed)), ("inputs", ", ".join(inputs) or "-")):
        attrs.add_row(f"[bold]{label}", str(value))
    _print_fitted(attrs)
    if r.error:
        console.print(f"[red bold]error:[/] {_escape(r.error)}", highlight=False)
    for title, items in (("params", r.params), ("metrics (latest)", r.metrics), ("tags", r.tags)):
        if items:
            t = Table(title=title, show_header=False)
            t.add_column("key", style="bold")
            t.add_column("value", justify="right" if title.startswith("metrics") else "left")
            for k, v in items.items():
                t.add_row(_escape(k), _escape(fmt_num(v)))
            _print_fitted(t)
    if artifacts:
        t = Table(title="artifacts")
        t.add_column("path")
        t.add_column("size", justify="right", no_wrap=True)
        t.add_column("digest", no_wrap=True)
        for a in artifacts:
            t.add_row(_escape(a.path), fmt_bytes(a.size_bytes), a.digest[:12])
        _print_fitted(t)
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
        _print_fitted(t)


def _print_fitted(table) -> None:
    fit(table, console)
    console.print(table)


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
    as_json: Annotated[bool, json_option(
        "Print {run id: {field: value}} as JSON (missing values as null).")] = False,
) -> None:
    """Runs side by side: differing params in yellow, the best value of each metric in bold green."""
    from rich.table import Table

    ws = open_workspace()
    frame = ws.runs.compare(run_ids)
    if as_json:
        print_json({rid: dict(frame[rid].items()) for rid in frame.columns})
        return
    table = Table(title=f"{frame.shape[1]} runs")
    table.add_column("field")
    for rid in frame.columns:
        table.add_column(rid[:8], justify="right", min_width=8)
    current = None
    for field, row in frame.iterrows():
        values = list(row)
        section, key = field.split(".", 1)
        if section != current:
            if current is not None:
                table.add_section()
            table.add_row(f"[bold]{section}", *([""] * len(values)))
            current = section
        cells = [_escape(fmt_num(v)) for v in values]
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
        table.add_row(f"  {_escape(key)}", *cells)
    _print_fitted(table)


EXPERIMENT_COLUMNS = {col.name: col for col in (
    Col("name", lambda e: _escape(e.name)),
    Col("runs", lambda e: str(e.num_runs), justify="right", whole=True),
    Col("created", lambda e: fmt_when(e.created_at), whole=True),
    Col("id", lambda e: str(e.id), justify="right", whole=True),
)}
EXPERIMENT_DEFAULT = ("name", "runs", "created")


@app.command()
def experiments(
    columns: Annotated[Optional[str], columns_option(EXPERIMENT_COLUMNS, EXPERIMENT_DEFAULT)
                       ] = None,
    as_json: Annotated[bool, json_option("Print the experiments as a JSON list.")] = False,
) -> None:
    """List experiments and their number of runs."""
    ws = open_workspace()
    found = ws.runs.experiments()
    if as_json:
        print_json([record(e) for e in found])
        return
    cols, explicit = choose(columns, EXPERIMENT_COLUMNS, EXPERIMENT_DEFAULT)
    print_table(console, found, cols, title="experiments", explicit=explicit)


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
    from rich.markup import escape
    from rich.table import Table

    checks = open_workspace().runs.reap_orphans(dry_run=dry_run)
    if as_json:
        print_json([record(c) for c in checks])
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
            table.add_row(c.run_id[:8], escape(c.experiment), escape(name), escape(c.reason))
        _print_fitted(table)
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
