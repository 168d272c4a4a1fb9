"""Runs: experiments, the run list (filter, sort, columns, keyset pages), run
detail with curves and artifacts, and comparison of up to 500 runs."""

from __future__ import annotations

import json
import mimetypes
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from shipyard.ui._lttb import MAX_POINTS, lttb
from shipyard.ui._paging import PREFIXES, Sort, after, decode_token, encode_token, literal

if TYPE_CHECKING:
    from shipyard.tracking import RunInfo

router = APIRouter()

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_FILTER = 4000
MAX_COLUMNS = 40
MAX_COMPARE = 500
#: Attribute columns of the run list: id → header.
ATTRIBUTE_COLUMNS = {"name": "name", "experiment": "experiment", "status": "status",
                     "start_time": "started", "end_time": "ended", "duration": "duration",
                     "cpu_seconds": "CPU s", "peak_memory_mb": "peak MB", "parent": "parent"}
DEFAULT_ATTRIBUTES = ("name", "experiment", "status", "start_time", "duration")
#: Previews of artifacts: files over this size are not previewed (images:
#: four times it), except text and JSON, of which only a head is read:
#: ``PREVIEW_TEXT_BYTES``, shown up to ``PREVIEW_TEXT_CHARS`` characters.
PREVIEW_MAX_BYTES = 5 * 1024 * 1024
PREVIEW_TEXT_BYTES = 64 * 1024
PREVIEW_TEXT_CHARS = 64 * 1024
TEXT_SUFFIXES = {".txt", ".md", ".log", ".csv", ".tsv", ".yaml", ".yml", ".py", ".toml",
                 ".ini", ".cfg", ".jsonl", ".sql", ".xml"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}
_HEX_ID = re.compile(r"[0-9a-f]{6,32}")
#: Served artifacts never run scripts, even when opened directly.
SANDBOX_CSP = ("sandbox; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; "
               "font-src data:")


def _ui(request: Request):
    return request.app.state.ui


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _text(value: str | None, limit: int = MAX_FILTER) -> str:
    return (value or "").strip()[:limit]


# ------------------------------------------------------------ columns
@dataclass(frozen=True)
class Column:
    """One column of the run list: ``metrics.auc``, ``params.lr``, ``status``..."""

    id: str

    @property
    def kind(self) -> str:
        head, dot, _ = self.id.partition(".")
        return head if dot and head in PREFIXES else "attributes"

    @property
    def key(self) -> str:
        return self.id.partition(".")[2] if self.kind != "attributes" else self.id

    @property
    def header(self) -> str:
        return ATTRIBUTE_COLUMNS.get(self.id, self.key)

    @property
    def sortable(self) -> str | None:
        """The sort field of this column (duration sorts by wall time)."""
        if self.kind != "attributes":
            return self.id
        return {"duration": "wall_seconds", "parent": None}.get(self.id, self.id)

    def value(self, run: RunInfo) -> Any:
        if self.kind != "attributes":
            return getattr(run, self.kind).get(self.key)
        if self.id == "duration":
            return run.duration
        if self.id == "parent":
            return run.parent_id
        return getattr(run, self.id)

    @classmethod
    def parse(cls, text: str) -> Column | None:
        if text in ATTRIBUTE_COLUMNS:
            return cls(text)
        kind, dot, key = text.partition(".")
        if dot and kind in PREFIXES and key and len(key) <= 250 and key.isprintable():
            return cls(text)
        return None


def _picked(chosen: list[str]) -> list[Column]:
    """The valid columns the user chose, in order, without repeats."""
    picked = [c for c in (Column.parse(x) for x in chosen[:MAX_COLUMNS]) if c is not None]
    return list(dict.fromkeys(picked))


def _columns(picked: list[Column], keys: dict[str, list[str]]) -> tuple[list[Column],
                                                                         list[Column]]:
    """The columns shown (chosen, or a default from the page's keys) and the
    columns offered by the picker."""
    offered = [Column(a) for a in ATTRIBUTE_COLUMNS]
    offered += [Column(f"{kind}.{k}") for kind in ("metrics", "params", "tags")
                for k in keys.get(kind, [])[:200]]
    offered += [c for c in picked if c not in offered]
    if not picked:
        picked = [Column(a) for a in DEFAULT_ATTRIBUTES]
        picked += [Column(f"metrics.{k}") for k in keys.get("metrics", [])[:4]]
        picked += [Column(f"params.{k}") for k in keys.get("params", [])[:3]]
    return picked, offered


def _fetched(columns: list[Column], sort: Sort) -> list[str]:
    """What the search reads: the shown params/metrics/tags, and the sort key
    (the next page's token holds the last run's value of it)."""
    wanted = [c.id for c in columns if c.kind != "attributes"]
    if sort.kind != "attributes":
        wanted.append(sort.field)
    return list(dict.fromkeys(wanted))


# -------------------------------------------------------------- search
@dataclass
class RunQuery:
    """The run list's query parameters, cleaned."""

    experiment: str
    filter: str
    sort: Sort
    columns: list[str]
    limit: int
    page_token: str

    @classmethod
    def from_request(cls, request: Request) -> RunQuery:
        q = request.query_params
        return cls(experiment=_text(q.get("experiment"), 200), filter=_text(q.get("filter")),
                   sort=Sort.parse(q.get("sort"), q.get("dir")),
                   columns=q.getlist("col")[:MAX_COLUMNS],
                   limit=_int(q.get("limit"), PAGE_SIZE, 1, MAX_PAGE_SIZE),
                   page_token=_text(q.get("page_token"), 4000))

    def params(self, **changes: Any) -> dict[str, Any]:
        base = {"experiment": self.experiment, "filter": self.filter,
                "sort": self.sort.field, "dir": "desc" if self.sort.desc else "asc",
                "col": self.columns, "limit": self.limit if self.limit != PAGE_SIZE else None}
        base.update(changes)
        return base


@dataclass
class RunPage:
    """One page of the run list: its runs, the token of the next page, a
    filter error to show inline, a note (a stale page link)."""

    runs: list
    next_token: str | None = None
    error: str | None = None
    note: str | None = None


def search_page(ws, query: RunQuery, columns: list[str] | None = None) -> RunPage:
    """One page of runs, reading only ``columns`` (see ``Runs.search``; None:
    every value); a filter that does not parse gives no runs and its message,
    never an exception."""
    from shipyard.errors import FilterSyntaxError, TrackingError

    condition = query.filter
    note = None
    if query.page_token:
        cursor = decode_token(query.page_token, query.sort)
        if cursor is None:
            note = "that page link is not valid for this sort order; showing the first page"
        else:
            cont = after(query.sort, *cursor)
            condition = f"({condition}) and {cont}" if condition else cont
    kwargs = {"experiment": query.experiment or None, "order_by": [query.sort.order_by]}
    try:
        runs = ws.runs.search(condition or None, limit=query.limit + 1, columns=columns,
                              **kwargs)
    except (FilterSyntaxError, TrackingError) as exc:
        message = str(exc)
        if condition != query.filter:  # name the user's own text, not ours
            try:
                ws.runs.search(query.filter or None, limit=0, **kwargs)
            except (FilterSyntaxError, TrackingError) as own:
                message = str(own)
        return RunPage([], error=message, note=note)
    token = encode_token(query.sort, runs[query.limit - 1]) if len(runs) > query.limit else None
    return RunPage(runs[:query.limit], token, note=note)


@router.get("/runs")
def runs_page(request: Request) -> Response:
    ui = _ui(request)
    query = RunQuery.from_request(request)
    picked = _picked(query.columns)
    page = search_page(ui.ws, query, _fetched(picked, query.sort))
    # The picker offers the keys of this page's runs, read without their values.
    keys = ui.ws.runs.keys([r.id for r in page.runs], limit=200) if page.runs else {}
    shown, offered = _columns(picked, keys)
    if not picked and page.runs:  # default columns, known only now: read their values
        wanted = _fetched(shown, query.sort)
        if wanted:
            ids = ", ".join(literal(r.id) for r in page.runs)
            filled = {r.id: r for r in ui.ws.runs.search(f"id in ({ids})", limit=None,
                                                         columns=wanted)}
            page.runs = [filled.get(r.id, r) for r in page.runs]
    context = dict(query=query, page=page, runs=page.runs, columns=shown, offered=offered,
                   chosen={c.id for c in shown}, active="runs")
    if request.headers.get("hx-request") == "true" and \
            request.headers.get("hx-history-restore-request") != "true":
        return ui.page(request, "runs_results.html", headers={"vary": "HX-Request"}, **context)
    return ui.page(request, "runs.html", experiments=ui.ws.runs.experiments(),
                   headers={"vary": "HX-Request"}, **context)


@router.get("/experiments")
def experiments_page(request: Request) -> Response:
    ui = _ui(request)
    return ui.page(request, "experiments.html", experiments=ui.ws.runs.experiments(),
                   active="runs")


# -------------------------------------------------------------- detail
def _artifact_kind(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix in (".html", ".htm"):
        return "html"
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix == ".json":
        return "json"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return "binary"


COST_METRICS = ("cost.cpu_seconds", "cost.energy_kwh", "cost.co2e_g")


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> Response:
    ui = _ui(request)
    ws = ui.ws
    run = ws.runs.get(run_id[:64])
    artifacts = ws.runs.artifacts(run.id)
    children = ws.runs.search(parent=run.id, limit=101)
    environment = ws.runs.environment(run.id)
    cost = {k: run.metrics[k] for k in COST_METRICS if k in run.metrics}
    curves = [k for k in run.metrics if k not in COST_METRICS]
    prefetch(ui, run, curves[:PREFETCH_CURVES])
    return ui.page(request, "run.html", run=run, artifacts=[
        (a, _artifact_kind(a.path)) for a in artifacts], children=children[:100],
        more_children=len(children) > 100, inputs=ws.runs.inputs(run.id),
        environment=environment, cost=cost, curves=curves[:200],
        more_curves=max(0, len(curves) - 200), active="runs")


def _json(data: Any) -> Response:
    """JSON with NaN as null (orjson does that, and serialises numpy fast)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson comes with the ui extra
        import math

        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if hasattr(v, "tolist"):
                return clean(v.tolist())
            return v
        return Response(json.dumps(clean(data)), media_type="application/json")
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


@router.get("/runs/{run_id}/curve")
def run_curve(request: Request, run_id: str, key: str = "", points: str = "") -> Response:
    """One metric of one run, downsampled with LTTB: ``{key, x, y, total, shown}``."""
    ui = _ui(request)
    n = _int(points, MAX_POINTS, 3, MAX_POINTS)
    run = ui.ws.runs.get(run_id[:64])
    xs, ys, total = downsampled(ui, run, key[:250], n)
    return _json({"key": key, "x": _compact(xs), "y": ys, "total": total,
                  "shown": int(len(xs))})


#: Downsampled curves of ended runs kept in memory (their points no longer change).
CURVE_CACHE = 2048
#: A long curve is read as the envelope of this many step ranges per point
#: drawn (each range's lowest and highest point, found by the database), then
#: cut with LTTB: a million points cost the database one pass over its index
#: instead of a million rows sent to Python.
ENVELOPE_PER_POINT = 2


def _cached(ui, cache_key):
    with ui.curves_lock:
        cached = ui.curves.get(cache_key)
        if cached is not None:
            ui.curves.move_to_end(cache_key)
        return cached


def _keep(ui, run: RunInfo, cache_key, result) -> None:
    if run.end_time is not None:  # a run that has ended logs nothing more
        with ui.curves_lock:
            ui.curves[cache_key] = result
            while len(ui.curves) > CURVE_CACHE:
                ui.curves.popitem(last=False)


#: The first curves of an ended run's page are read while the browser loads
#: the page, so its curve requests find them done or under way.
PREFETCH_CURVES = 4


def prefetch(ui, run: RunInfo, keys: list[str]) -> None:
    """Start reading the default-size curves ``keys`` of ``run`` (ended runs
    only: their curves are cached) in the background."""
    if run.end_time is None:
        return
    for key in keys:
        cache_key = (run.id, key, MAX_POINTS)
        with ui.curves_lock:
            if cache_key in ui.curves or cache_key in ui.curves_pending:
                continue
            future: Future = Future()
            ui.curves_pending[cache_key] = future
        threading.Thread(target=_read_ahead, args=(ui, run, key, cache_key, future),
                         daemon=True, name="shipyard-ui-prefetch").start()


def _read_ahead(ui, run: RunInfo, key: str, cache_key, future: Future) -> None:
    try:
        future.set_result(_downsample(ui, run, key, MAX_POINTS))
    except BaseException as exc:  # the request that waits re-raises it
        future.set_exception(exc)
    finally:
        with ui.curves_lock:
            ui.curves_pending.pop(cache_key, None)


def downsampled(ui, run: RunInfo, key: str, n: int):
    """``(x, y, total points)`` of ``run``'s metric ``key`` cut to ``n`` points
    with LTTB (long curves read as their envelope first). Ended runs' results
    are kept in memory."""
    cache_key = (run.id, key, n)
    cached = _cached(ui, cache_key)
    if cached is not None:
        return cached
    with ui.curves_lock:
        pending = ui.curves_pending.get(cache_key)
    if pending is not None:
        return pending.result()
    return _downsample(ui, run, key, n)


def _downsample(ui, run: RunInfo, key: str, n: int):
    cache_key = (run.id, key, n)
    series = ui.ws.runs.metric_series(run.id, key, envelope=ENVELOPE_PER_POINT * n)
    xs, ys = lttb(series.steps.astype("float64"), series.values, n)
    result = (xs, ys, series.total)
    _keep(ui, run, cache_key, result)
    return result


def downsampled_many(ui, runs: list[RunInfo], key: str, n: int) -> dict[str, tuple]:
    """:func:`downsampled` for many runs, their points read in a few queries."""
    found, todo = {}, []
    for run in runs:
        cached = _cached(ui, (run.id, key, n))
        if cached is not None:
            found[run.id] = cached
        else:
            todo.append(run)
    if todo:
        read = ui.ws.runs.metric_series_many([r.id for r in todo], key,
                                             envelope=ENVELOPE_PER_POINT * n)
        for run in todo:
            series = read.get(run.id)
            if series is None:
                continue
            xs, ys = lttb(series.steps.astype("float64"), series.values, n)
            found[run.id] = (xs, ys, series.total)
            _keep(ui, run, (run.id, key, n), found[run.id])
    return found


@router.get("/runs/{run_id}/artifacts/{path:path}")
def run_artifact(request: Request, run_id: str, path: str) -> Response:
    """A logged file, streamed in chunks (a big file is never held in
    memory): images and HTML inline (sandboxed: no script runs), text as
    text, anything else as a download."""
    from starlette.responses import StreamingResponse

    artifact, chunks = _ui(request).ws.runs.stream_artifact(run_id[:64], path)
    kind = _artifact_kind(path)
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    headers = {"content-security-policy": SANDBOX_CSP, "x-content-type-options": "nosniff"}
    if kind == "image":
        media = IMAGE_TYPES[suffix]
    elif kind == "html":
        media = "text/html; charset=utf-8"
    elif kind in ("text", "json"):
        media = "text/plain; charset=utf-8" if kind == "text" else "application/json"
    else:
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        name = path.rsplit("/", 1)[-1].replace('"', "")
        headers["content-disposition"] = f"attachment; filename=\"{name}\"" \
            if name.isascii() else "attachment"
    headers["content-length"] = str(artifact.size_bytes)
    return StreamingResponse(chunks, media_type=media, headers=headers)


@router.get("/runs/{run_id}/preview/{path:path}")
def artifact_preview(request: Request, run_id: str, path: str) -> Response:
    """A capped preview of one artifact (an htmx fragment): of a text or
    JSON file only its first ``PREVIEW_TEXT_BYTES`` are read, whatever its size."""
    ui = _ui(request)
    ws = ui.ws
    run = ws.runs.get(run_id[:64])
    kind = _artifact_kind(path)
    text = None
    cut = False
    if kind in ("text", "json"):
        artifact, head = ws.runs.artifact_head(run.id, path, PREVIEW_TEXT_BYTES)
        cut = artifact.size_bytes > len(head)
        text = head.decode("utf-8", "ignore" if cut else "replace")  # a cut may split a character
        if kind == "json" and not cut:
            try:
                text = json.dumps(json.loads(text), indent=2)
            except ValueError:
                pass
        if len(text) > PREVIEW_TEXT_CHARS:
            text, cut = text[:PREVIEW_TEXT_CHARS], True
    else:
        artifact = ws.runs.artifact(run.id, path)
        if artifact.size_bytes > (4 * PREVIEW_MAX_BYTES if kind == "image" else PREVIEW_MAX_BYTES):
            kind = "too_large"
    return ui.page(request, "artifact_preview.html", run=run, artifact=artifact, kind=kind,
                   text=text, cut=cut)


@router.get("/runs/{run_id}/view/{path:path}")
def artifact_view(request: Request, run_id: str, path: str) -> Response:
    """An HTML artifact (an evaluation report) framed in a page of the UI."""
    ui = _ui(request)
    run = ui.ws.runs.get(run_id[:64])
    if not any(a.path == path for a in ui.ws.runs.artifacts(run.id)):
        from shipyard.errors import NotFoundError

        raise NotFoundError(f"run {run.short_id} has no artifact {path[:200]!r}")
    return ui.page(request, "artifact_view.html", run=run, path=path, active="runs")


# ------------------------------------------------------------- compare
def compare_runs(ws, request: Request, columns: list[str] | None = None,
                 ) -> tuple[list[RunInfo], str | None]:
    """The runs to compare: ``ids`` (comma-separated or repeated ``id``), or
    the first ``n`` (≤ 500) runs of a filter/experiment/sort; of their
    values only ``columns`` are read (see ``Runs.search``; None: all)."""
    from shipyard.errors import FilterSyntaxError, NotFoundError, TrackingError

    q = request.query_params
    raw = [p for v in q.getlist("id") + q.getlist("ids") for p in v.split(",")]
    ids = list(dict.fromkeys(x.strip().lower() for x in raw if x.strip()))[:MAX_COMPARE]
    if ids:
        bad = [x for x in ids if not _HEX_ID.fullmatch(x)]
        if bad:
            raise NotFoundError(f"{bad[0][:40]!r} is not a run id")
        full = [x for x in ids if len(x) == 32]
        found = {r.id: r for r in ws.runs.search(
            "id in (" + ", ".join(literal(x) for x in full) + ")", limit=None,
            columns=columns)} if full else {}
        runs = []
        for x in ids:
            runs.append(found[x] if x in found else ws.runs.get(x))
        return runs, None
    query = RunQuery.from_request(request)
    n = _int(q.get("n"), 100, 1, MAX_COMPARE)
    try:
        runs = ws.runs.search(query.filter or None, experiment=query.experiment or None,
                              order_by=[query.sort.order_by], limit=n, columns=columns)
    except (FilterSyntaxError, TrackingError) as exc:
        return [], str(exc)
    return runs, None


def _differs(values: list[Any]) -> bool:
    first = values[0]
    return any(v != first for v in values[1:])


def _counts(runs: list[RunInfo]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        for k in r.metrics:
            counts[k] = counts.get(k, 0) + 1
    return counts


@router.get("/compare")
def compare_page(request: Request) -> Response:
    """The compare page: the overlaid curves first; the diff table follows
    once they are drawn (``/compare/table``), so the chart is not kept
    waiting behind a table of 500 rows."""
    from urllib.parse import urlencode

    ui = _ui(request)
    runs, error = compare_runs(ui.ws, request, columns=["metrics.*"])
    counts = _counts(runs)
    metric_keys = sorted(counts)
    # By default the metric most of the runs logged.
    chosen = request.query_params.get("key") or (
        max(metric_keys, key=lambda k: (counts[k], k == "loss")) if metric_keys else "")
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    return ui.page(request, "compare.html", runs=runs, error=error, metric_keys=metric_keys,
                   chosen=chosen[:250], kept=kept, base_query=urlencode(kept),
                   active="runs")


@router.get("/compare/table")
def compare_table(request: Request) -> Response:
    """The params, metrics and tags that differ between the compared runs
    (an htmx fragment)."""
    ui = _ui(request)
    runs, error = compare_runs(ui.ws, request)
    sections = {}
    same = {}
    for kind in ("params", "metrics", "tags"):
        keys = sorted({k for r in runs for k in getattr(r, kind)})
        differing, identical = [], []
        for k in keys:
            values = [getattr(r, kind).get(k) for r in runs]
            (differing if len(runs) < 2 or _differs(values) else identical).append(k)
        sections[kind] = differing[:60]
        same[kind] = [(k, getattr(runs[0], kind).get(k)) for k in identical[:100]]
    from shipyard.ui._parallel import parallel_coordinates

    return ui.page(request, "compare_table.html", runs=runs, error=error, sections=sections,
                   same=same, parallel=parallel_coordinates(runs, sections))


@router.get("/compare/curves")
def compare_curves(request: Request, key: str = "") -> Response:
    """One metric of every compared run on a shared x axis (uPlot's aligned
    data): each run LTTB-downsampled, then placed on a grid of ≤ 2,000 steps."""
    import numpy as np

    from shipyard.errors import TrackingError

    ui = _ui(request)
    key = key[:250]
    try:
        runs, error = compare_runs(ui.ws, request, columns=[f"metrics.{key}"])
    except TrackingError as exc:  # a key that cannot exist (empty, control characters)
        runs, error = [], str(exc)
    if error:
        return _json({"error": error})
    budget = max(100, min(MAX_POINTS, 400_000 // max(len(runs), 1)))
    done = downsampled_many(ui, [r for r in runs if key in r.metrics], key, budget)
    curves = [(run, *done[run.id][:2]) for run in runs if run.id in done]
    if not curves:
        return _json({"key": key, "x": [], "series": []})
    union = np.unique(np.concatenate([c[1] for c in curves]))
    if len(union) > MAX_POINTS:
        lo, hi = float(union[0]), float(union[-1])
        grid = np.linspace(lo, hi, MAX_POINTS)
        place = [np.rint((xs - lo) / (hi - lo) * (MAX_POINTS - 1)).astype(np.int64)
                 for _, xs, _ in curves]
    else:
        grid = union
        place = [np.searchsorted(union, xs) for _, xs, _ in curves]
    series = []
    for (run, _, ys), idx in zip(curves, place, strict=True):
        # float32 keeps 7 significant digits, plenty to draw, and halves the JSON.
        y = np.full(len(grid), np.nan, dtype=np.float32)
        y[idx] = ys
        series.append({"id": run.id, "label": run.name or run.short_id, "y": y})
    return _json({"key": key, "x": _compact(grid), "series": series})


def _compact(x):
    """Whole-number steps as integers (shorter JSON), else float64."""
    import numpy as np

    if len(x) and np.all(np.mod(x, 1) == 0) and np.abs(x).max() < 2 ** 53:
        return x.astype(np.int64)
    return x
