"""Production windows, streamed from the prediction log (docs/monitoring.md §2).

The prediction log is Hive-partitioned Parquet under the workspace home
(``predictions/model=<quoted name>/date=YYYY-MM-DD/part-*.parquet``, one row
per request, inputs and outputs as JSON text; see
:mod:`shipyard.deploy` and :class:`~shipyard.deploy.PredictionLog`). Every
reader here is a pyarrow dataset scan, pruned by model and day partitions,
filtered on time, version and role, read batch by batch with no read-ahead:
memory stays bounded by one batch whatever the window's size.

- :func:`windows` cuts a model's traffic into windows by time (``every``
  seconds, aligned to the epoch) or by row count (``rows``), or gives one
  window over ``[start, end)``; only per-second row counts are held while
  cutting.
- :func:`window_data` yields a window's rows in pandas chunks.
- :func:`labels_for` joins the feedback of the window's requests.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import orjson

from shipyard.errors import MonitorError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as pads

    from shipyard import Workspace

#: Columns :func:`window_data` adds to a window's input columns.
META_COLUMNS = ("request_id", "ts", "version", "role", "status", "row", "prediction", "score")
#: Rows whose JSON is parsed at once (bounds the transient Python objects).
PARSE_ROWS = 8_192
#: Feedback recorded this long before its prediction's time still counts
#: (clocks of several server processes differ a little).
CLOCK_SKEW_SECONDS = 300.0


@dataclass(frozen=True)
class Window:
    """A slice of one model's logged traffic: requests with ``start <= ts <
    end`` (epoch seconds), of one version and role when they are set.

    Attributes
    ----------
    model, version, role
        The model name; the version number and rollout role
        (``primary``/``candidate``/``shadow``), or None for all.
    start, end
        Epoch seconds, end excluded.
    n
        Rows answered (status 200) in the window.
    """

    model: str
    version: int | None
    role: str | None
    start: float
    end: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(model=str(data["model"]), version=data.get("version"),
                   role=data.get("role"), start=float(data["start"]), end=float(data["end"]),
                   n=int(data.get("n", 0)))


# ------------------------------------------------------------------ scanning
def _home(ws: Workspace | str | os.PathLike) -> Path:
    return Path(ws.settings.home) if hasattr(ws, "settings") else Path(ws)


def _epoch(value: float | _dt.datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.astimezone(_dt.UTC)).timestamp()
    return float(value)


def _stamp(seconds: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC)


def _day(seconds: float) -> str:
    return _stamp(seconds).date().isoformat()


def _dataset(folder: Path, partitions: tuple[str, ...]) -> pads.Dataset | None:
    import pyarrow as pa
    import pyarrow.dataset as pads

    if not folder.exists():
        return None
    part_schema = pa.schema([(p, pa.string()) for p in partitions])
    return pads.dataset(folder, format="parquet",
                        partitioning=pads.partitioning(part_schema, flavor="hive"),
                        exclude_invalid_files=False, ignore_prefixes=[".", "_"])


def _filter(*, model: str | None, start: float | None, end: float | None,
            version: int | None = None, role: str | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as pads

    stamp = pa.timestamp("us", tz="UTC")
    parts = []
    if model is not None:
        parts.append(pads.field("model") == quote(model, safe=""))
    if start is not None:
        parts.append(pads.field("date") >= _day(start))
        parts.append(pads.field("ts") >= pa.scalar(_stamp(start), type=stamp))
    if end is not None:
        parts.append(pads.field("date") <= _day(end))
        parts.append(pads.field("ts") < pa.scalar(_stamp(end), type=stamp))
    if version is not None:
        parts.append(pads.field("version") == int(version))
    if role is not None:
        parts.append(pads.field("role") == str(role))
    expr = None
    for part in parts:
        expr = part if expr is None else expr & part
    return expr


def scan_batches(ws: Workspace | str | os.PathLike, columns: list[str], *,
                 model: str | None, start: float | None = None, end: float | None = None,
                 version: int | None = None, role: str | None = None,
                 batch_size: int = 65_536, feedback: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of the prediction log (or the feedback log) with only
    ``columns``, filtered, one batch in memory at a time."""
    if feedback:
        dataset = _dataset(_home(ws) / "feedback", ("date",))
        expr = _filter(model=None, start=start, end=end)
    else:
        dataset = _dataset(_home(ws) / "predictions", ("model", "date"))
        expr = _filter(model=model, start=start, end=end, version=version, role=role)
    if dataset is None:
        return
    import pyarrow.dataset as pads

    # No read-ahead and no pre-buffering of whole column chunks: one batch at a time.
    scanner = dataset.scanner(columns=columns, filter=expr, batch_size=max(1, int(batch_size)),
                              batch_readahead=0, fragment_readahead=0, use_threads=False,
                              fragment_scan_options=pads.ParquetFragmentScanOptions(
                                  pre_buffer=False))
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield batch


def _seconds(column: pa.Array) -> np.ndarray:
    """A UTC timestamp column as float epoch seconds."""
    import pyarrow as pa

    micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6


# ------------------------------------------------------------------- windows
def windows(ws: Workspace, model: str, *, version: int | None = None, role: str | None = None,
            start: float | _dt.datetime | None = None, end: float | _dt.datetime | None = None,
            every: float | None = None, rows: int | None = None) -> list[Window]:
    """The windows of ``model``'s logged traffic, oldest first.

    Parameters
    ----------
    ws
        The workspace (or its home folder).
    model
        Model name.
    version, role
        Only this version / rollout role (default: all).
    start, end
        Only traffic in ``[start, end)`` (epoch seconds or datetimes).
    every
        Time windows of this many seconds, aligned to multiples of ``every``
        since the epoch (``3600``: clock hours); windows with no traffic are
        left out. The last one may still be filling (its end is in the future).
    rows
        Windows of at least ``rows`` answered rows, cut at whole seconds in
        time order, each starting where the previous one ends; the last one
        may hold fewer.

    With neither, one window over ``[start, end)`` (default: from the first
    to just after the last logged request).

    Returns
    -------
    list of Window
        Empty when nothing was logged.

    Raises
    ------
    MonitorError
        Both ``every`` and ``rows``, or a non-positive one.
    """
    if every is not None and rows is not None:
        raise MonitorError("give every (a time window) or rows (a row window), not both")
    if every is not None and not every > 0:
        raise MonitorError(f"every must be a positive number of seconds, got {every!r}")
    if rows is not None and not rows > 0:
        raise MonitorError(f"rows must be a positive number, got {rows!r}")
    lo, hi = _epoch(start), _epoch(end)
    per_second: dict[int, int] = {}
    first = last = None
    for batch in scan_batches(ws, ["ts", "status", "num_rows"], model=model, start=lo, end=hi,
                              version=version, role=role):
        ts = _seconds(batch.column("ts"))
        status = batch.column("status").to_numpy(zero_copy_only=False)
        n = batch.column("num_rows").fill_null(0).to_numpy(zero_copy_only=False)
        first = float(ts.min()) if first is None else min(first, float(ts.min()))
        last = float(ts.max()) if last is None else max(last, float(ts.max()))
        ok = status == 200
        seconds = np.floor(ts[ok]).astype(np.int64)
        if len(seconds):
            keys, index = np.unique(seconds, return_inverse=True)
            sums = np.bincount(index, weights=n[ok].astype(np.float64))
            for key, total in zip(keys.tolist(), sums.tolist()):
                per_second[key] = per_second.get(key, 0) + int(total)
    if first is None:
        return []
    made = {"model": model, "version": version, "role": role}
    if every is None and rows is None:
        w_start = lo if lo is not None else first
        w_end = hi if hi is not None else last + 1e-6
        return [Window(**made, start=w_start, end=w_end, n=sum(per_second.values()))]
    if every is not None:
        buckets: dict[int, int] = {}
        for second, n in per_second.items():
            key = math.floor(second / every)
            buckets[key] = buckets.get(key, 0) + n
        out = []
        for key in sorted(buckets):
            w_start, w_end = key * every, (key + 1) * every
            if lo is not None:
                w_start = max(w_start, lo)
            if hi is not None:
                w_end = min(w_end, hi)
            out.append(Window(**made, start=float(w_start), end=float(w_end), n=buckets[key]))
        return out
    out, total, w_start, following = [], 0, None, None
    for second in sorted(per_second):
        if w_start is None:  # windows follow each other without gaps
            w_start = following if following is not None else (
                float(second) if lo is None else max(float(second), lo))
        total += per_second[second]
        if total >= rows:
            following = float(second + 1)
            out.append(Window(**made, start=w_start, end=following, n=total))
            total, w_start = 0, None
    if w_start is not None:
        w_end = float(math.floor(last) + 1)
        out.append(Window(**made, start=w_start, end=w_end if hi is None else min(w_end, hi),
                          n=total))
    return out


# ---------------------------------------------------------------- rows
def output_names(inputs: list[str]) -> dict[str, str]:
    """The column names :func:`window_data` gives its meta and output columns
    (:data:`META_COLUMNS`): the name itself, or with leading underscores added
    when an input column already has it (a model may take a ``score``).

    >>> output_names(["age", "score"])["score"], output_names(["age"])["prediction"]
    ('_score', 'prediction')
    """
    taken = set(inputs)
    out = {}
    for name in META_COLUMNS:
        resolved = name
        while resolved in taken:
            resolved = "_" + resolved
        taken.add(resolved)
        out[name] = resolved
    return out


@dataclass
class Chunk:
    """One chunk of a window: the rows, and the class probabilities of the
    rows that have them (``(rows, classes)``; NaN rows for failed requests)."""

    frame: pd.DataFrame
    probabilities: np.ndarray | None


def _json_array(texts: list[str | None]) -> list[Any]:
    """Parse many JSON values at once (one ``orjson`` call)."""
    return orjson.loads("[" + ",".join(t for t in texts) + "]") if texts else []


def stream(ws: Workspace, window: Window, *, inputs: list[str] | None = None,
           classes: list | None = None, chunk_rows: int = 50_000) -> Iterator[Chunk]:
    """What :func:`window_data` yields, with the probabilities beside each frame.

    ``inputs``: the input columns (default: those of the records); ``classes``:
    the model's classes (the last is a binary task's positive class); with
    them ``score`` is the positive class's probability (binary) or the
    largest one (multiclass), else NaN. A batch's JSON is parsed by
    ``pyarrow.json``, into Arrow columns, with no Python object per row; a
    batch whose JSON is irregular (a refused request logs whatever it was
    sent) is parsed with ``orjson``, :data:`PARSE_ROWS` rows at a time, so the
    transient Python objects stay small.
    """
    columns = ["request_id", "ts", "version", "role", "status", "num_rows", "inputs", "outputs"]
    per_request = max(_mean_rows(ws, window), 1.0)
    batch_size = max(1, min(chunk_rows, int(chunk_rows / per_request)))
    step = max(1, int(PARSE_ROWS / per_request))
    names = output_names(inputs) if inputs is not None else None
    cols = inputs
    schemas: dict[str, Any] = {}  # the JSON's Arrow types, from batch to batch
    parts: list[tuple[pd.DataFrame, np.ndarray | None]] = []
    held = 0
    for batch in scan_batches(ws, columns, model=window.model, start=window.start,
                              end=window.end, version=window.version, role=window.role,
                              batch_size=batch_size):
        keep = np.flatnonzero(batch.column("inputs").is_valid().to_numpy(zero_copy_only=False))
        parsed = _arrow_inputs(batch.column("inputs").take(keep), cols, schemas) \
            if len(keep) else None
        if parsed is not None:  # the whole batch at once, in Arrow
            frame, counts = parsed
            pieces = [(frame, keep.tolist(), counts)]
        else:
            pieces = _python_inputs(batch, keep.tolist(), cols, step)
        for frame, part, counts in pieces:
            cols = cols if cols is not None else list(frame.columns)
            names = names if names is not None else output_names(cols)
            proba = _annotate(frame, batch, part, counts, names, classes, schemas)
            parts.append((frame[[*cols, *(names[m] for m in META_COLUMNS)]], proba))
            held += len(frame)
            while held >= chunk_rows:
                chunk, parts, held = _cut(parts, chunk_rows)
                yield chunk
    while held > 0:
        chunk, parts, held = _cut(parts, chunk_rows)
        yield chunk


def _read_json_lines(texts: pa.Array, key: str, schemas: dict[str, Any]) -> pa.Table:
    """Parse each JSON text of ``texts`` (no nulls) as the value of ``key``
    of one row, by ``pyarrow.json`` in one call: with the schema the last
    batch had (``schemas[key]``: a third faster than inferring it), else, or
    when the types changed, inferred (and kept in ``schemas``).

    Raises
    ------
    pyarrow.ArrowInvalid
        A value is not JSON, or a field's type changes between rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    # One line per text, built in Arrow: the joined values' buffer is the body.
    lines = pc.binary_join_element_wise(f'{{"{key}":', texts, "}\n", "")
    _, offsets, values = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    size = int(bounds[1] - bounds[0])
    body = values.slice(int(bounds[0]), size)
    options = pj.ReadOptions(use_threads=False, block_size=size + 1)
    if key in schemas:
        try:
            return pj.read_json(pa.BufferReader(body), read_options=options,
                                parse_options=pj.ParseOptions(explicit_schema=schemas[key]))
        except pa.ArrowInvalid:
            pass
    table = pj.read_json(pa.BufferReader(body), read_options=options)
    schemas[key] = table.schema
    return table


def _arrow_inputs(texts: pa.Array, cols: list[str] | None, schemas: dict[str, Any]
                  ) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The records of many requests' ``inputs`` JSON as one frame (columns
    ``cols``, default the records' keys) and the rows of each request, parsed
    by ``pyarrow.json`` and built column by column; None when the texts are
    not all arrays of flat records of consistent types (a request refused
    for bad inputs can log anything): the caller then parses them one by one."""
    import pyarrow as pa

    try:
        return _arrow_records(_read_json_lines(texts, "r", schemas).column("r"), cols)
    except pa.ArrowException:
        return None


def _arrow_records(lists: Any, cols: list[str] | None) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The frame and rows per request of parsed ``inputs`` (a list of
    structs a request; see :func:`_arrow_inputs`)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_list(lists.type) or not pa.types.is_struct(lists.type.value_type) \
            or lists.null_count:
        return None
    counts = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = pc.list_flatten(lists)
    struct = lists.type.value_type
    known = [struct.field(i).name for i in range(struct.num_fields)]
    if any(pa.types.is_struct(struct.field(i).type) or pa.types.is_list(struct.field(i).type)
           for i in range(struct.num_fields)):
        return None  # nested values: as Python objects, like the one-by-one path
    out = {}
    for name in (cols if cols is not None else known):
        if name in known:
            out[name] = pc.struct_field(rows, name).to_pandas()
        else:
            out[name] = pd.Series(np.full(len(rows), np.nan))  # as pandas fills a missing key
    return pd.DataFrame(out, index=pd.RangeIndex(len(rows))), counts


def _python_inputs(batch: pa.RecordBatch, keep: list[int], cols: list[str] | None, step: int
                   ) -> Iterator[tuple[pd.DataFrame, list[int], np.ndarray]]:
    """``(frame, requests, rows per request)`` of the requests ``keep`` of
    ``batch``, :data:`PARSE_ROWS` rows at a time with ``orjson``."""
    import pandas as pd

    texts = batch.column("inputs").to_pylist()
    for lo in range(0, len(keep), step):
        part = keep[lo:lo + step]
        records = _json_array([texts[i] for i in part])
        counts = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))
        flat = [row for request in records for row in request]
        del records
        if cols is None:
            cols = list(dict.fromkeys(k for row in flat[:1000] for k in row))
        frame = pd.DataFrame(flat, columns=cols) if flat else pd.DataFrame(columns=cols)
        del flat
        yield frame, part, counts


def _annotate(frame: pd.DataFrame, batch: pa.RecordBatch, part: list[int],
              counts: np.ndarray, names: dict[str, str], classes: list | None,
              schemas: dict[str, Any]) -> np.ndarray | None:
    """Add the meta and output columns to ``frame`` (the records of the
    requests ``part`` of ``batch``); return the probabilities."""
    import pandas as pd

    meta = batch.select(["request_id", "ts", "version", "role", "status"]).take(part)
    repeat = np.repeat(np.arange(len(part)), counts)
    for name in ("request_id", "version", "role", "status"):
        frame[names[name]] = meta.column(name).to_pandas().to_numpy()[repeat]
    micros = _seconds(meta.column("ts")) * 1e6
    frame[names["ts"]] = pd.to_datetime(np.round(micros[repeat]).astype(np.int64),
                                        unit="us", utc=True)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    frame[names["row"]] = np.arange(len(frame)) - starts
    outputs = batch.column("outputs").take(part)
    parsed = _arrow_outputs(outputs, counts, classes, schemas)
    prediction, proba = parsed if parsed is not None else _outputs(outputs.to_pylist(), counts,
                                                                   classes)
    frame[names["prediction"]] = prediction
    frame[names["score"]] = _score(proba, classes)
    return proba


def _cut(parts: list[tuple[pd.DataFrame, np.ndarray | None]], rows: int
         ) -> tuple[Chunk, list[tuple[pd.DataFrame, np.ndarray | None]], int]:
    """The first ``rows`` rows of ``parts`` as one chunk, and what is left."""
    import pandas as pd

    taken, left, have = [], [], 0
    for frame, proba in parts:
        if have >= rows:
            left.append((frame, proba))
            continue
        need = rows - have
        if len(frame) > need:
            taken.append((frame.iloc[:need], None if proba is None else proba[:need]))
            left.append((frame.iloc[need:].reset_index(drop=True),
                         None if proba is None else proba[need:]))
            have = rows
        else:
            taken.append((frame, proba))
            have += len(frame)
    frame = (pd.concat([f for f, _ in taken], ignore_index=True) if len(taken) > 1
             else taken[0][0].reset_index(drop=True))
    probas = [p for _, p in taken]
    proba = None if any(p is None for p in probas) else np.vstack(probas)
    return Chunk(frame, proba), left, sum(len(f) for f, _ in left)


def _mean_rows(ws: Workspace, window: Window) -> float:
    """Mean rows per request in the window (to size batches of requests)."""
    requests = rows = 0
    for batch in scan_batches(ws, ["num_rows"], model=window.model, start=window.start,
                              end=window.end, version=window.version, role=window.role,
                              batch_size=1_000_000):
        n = batch.column("num_rows").fill_null(0).to_numpy(zero_copy_only=False)
        requests += len(n)
        rows += int(n.sum())
    return rows / requests if requests else 1.0


def _outputs(outputs: list[str | None], counts: np.ndarray, classes: list | None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted labels (objects) and class probabilities (NaN where a
    request has none); without ``classes`` the probabilities' width is the
    first request's."""
    total = int(counts.sum())
    prediction = np.empty(total, dtype=object)
    parsed = _json_array([o if o is not None else "null" for o in outputs])
    width = len(classes) if classes else next(
        (len(out["probabilities"][0]) for out in parsed if out is not None
         and out.get("probabilities") and isinstance(out["probabilities"][0], list)), 0)
    proba = np.full((total, width), np.nan) if width else None
    at = 0
    for out, n in zip(parsed, counts.tolist()):
        if out is not None and out.get("predictions") is not None \
                and len(out["predictions"]) == n:
            prediction[at:at + n] = out["predictions"]
            probs = out.get("probabilities")
            if proba is not None and probs is not None and len(probs) == n:
                block = np.asarray(probs, dtype=np.float64)
                if block.ndim == 2 and block.shape[1] == width:
                    proba[at:at + n] = block
        at += n
    return prediction, proba


def _arrow_outputs(outputs: pa.Array, counts: np.ndarray, classes: list | None,
                   schemas: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """:func:`_outputs` by ``pyarrow.json``, when every request that answered
    gave one prediction (and one probability row of the classes' width, when
    the model has classes and gave probabilities) per input row; None
    otherwise (the caller then parses them one by one)."""
    import pyarrow as pa

    answered = outputs.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    rows = np.repeat(answered, counts)  # the rows of requests that answered
    width = len(classes) if classes else 0
    prediction = np.full(int(counts.sum()), None, dtype=object)
    proba = np.full((len(prediction), width), np.nan) if width else None
    if not answered.any():
        return prediction, proba
    try:
        answers = _read_json_lines(outputs.filter(answered), "o", schemas).column("o")
        return _arrow_answers(answers, counts[answered], rows, prediction, proba)
    except pa.ArrowException:
        return None


def _arrow_answers(answers: Any, counts: np.ndarray, rows: np.ndarray, prediction: np.ndarray,
                   proba: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Fill ``prediction`` and ``proba`` at ``rows`` from the parsed answers
    (see :func:`_arrow_outputs`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    width = 0 if proba is None else proba.shape[1]
    kind = answers.type
    if not pa.types.is_struct(kind) or kind.get_field_index("predictions") < 0 \
            or answers.null_count:
        return None
    predictions = pc.struct_field(answers, "predictions")
    if not pa.types.is_list(predictions.type) or not _lengths_are(predictions, counts):
        return None
    values = pc.list_flatten(predictions)
    if pa.types.is_struct(values.type) or pa.types.is_list(values.type):
        return None
    prediction[rows] = values.to_pylist()  # Python objects, as the one-by-one path gives
    if kind.get_field_index("probabilities") < 0:
        return prediction, proba
    if not width:
        return None  # the one-by-one path takes the width from the first answer
    probs = pc.struct_field(answers, "probabilities")
    if not pa.types.is_list(probs.type) or not pa.types.is_list(probs.type.value_type) \
            or not _lengths_are(probs, counts):
        return None
    inner = pc.list_flatten(probs)
    if not _lengths_are(inner, np.full(len(inner), width)):
        return None
    numbers = pc.list_flatten(inner).cast(pa.float64()).fill_null(np.nan)
    proba[rows] = numbers.to_numpy(zero_copy_only=False).reshape(-1, width)
    return prediction, proba


def _lengths_are(lists: Any, counts: np.ndarray) -> bool:
    """Whether list ``i`` of ``lists`` (none null) holds ``counts[i]`` items."""
    import pyarrow.compute as pc

    if lists.null_count:
        return False
    got = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    return bool(np.array_equal(got, counts))


def _score(proba: np.ndarray | None, classes: list | None) -> np.ndarray | float:
    if proba is None or not proba.shape[1]:
        return np.nan
    if proba.shape[1] == 2:
        return proba[:, -1]
    with np.errstate(invalid="ignore"):
        return np.max(proba, axis=1)


def window_data(ws: Workspace, window: Window, *, chunk_rows: int = 50_000
                ) -> Iterator[pd.DataFrame]:
    """The rows of ``window``, in chunks of at most ``chunk_rows``.

    Columns: the input columns (the records the model received), then
    ``request_id, ts, version, role, status, row`` (the row's index within
    its request), ``prediction`` and ``score`` (a binary model's
    positive-class probability, a multiclass model's largest probability,
    else NaN; see :func:`output_names` for an input column of the same
    name). Rows of every request that recorded inputs, answered or not
    (``status``): drift uses the 200s, data quality all. The version's
    signature gives the columns and classes when the window names a version.
    """
    inputs, classes = _signature_of(ws, window)
    for chunk in stream(ws, window, inputs=inputs, classes=classes, chunk_rows=chunk_rows):
        yield chunk.frame


def _signature_of(ws: Workspace, window: Window) -> tuple[list[str] | None, list | None]:
    if window.version is None or not hasattr(ws, "models"):
        return None, None
    signature = ws.models.get(f"{window.model}@{window.version}").signature or {}
    inputs = [str(c["name"]) for c in signature.get("inputs", []) if isinstance(c, dict)]
    classes = (signature.get("output") or {}).get("classes")
    return inputs or None, classes


# ------------------------------------------------------------------ labels
def labels_for(ws: Workspace, window: Window, *, late_arrival_seconds: float
               ) -> pd.DataFrame:
    """Feedback for the window's requests: ``request_id, label``.

    A label counts when it was recorded at most ``late_arrival_seconds``
    after its prediction (and not more than :data:`CLOCK_SKEW_SECONDS`
    before it), for the window's model or for no named model; whatever the
    order it arrived in, the latest recorded label of a request wins. Memory
    is bounded by the feedback, not by the window's traffic.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    late = float(late_arrival_seconds)
    latest: dict[str, list[tuple[float, str]]] = {}
    for batch in scan_batches(ws, ["request_id", "ts", "model", "label"], model=None,
                              start=window.start - CLOCK_SKEW_SECONDS, end=window.end + late,
                              feedback=True):
        ts = _seconds(batch.column("ts"))
        ids = batch.column("request_id").to_pylist()
        models = batch.column("model").to_pylist()
        labels = batch.column("label").to_pylist()
        for rid, t, m, label in zip(ids, ts.tolist(), models, labels):
            if rid is None or label is None or (m is not None and m != window.model):
                continue
            latest.setdefault(rid, []).append((t, label))
    if not latest:
        return pd.DataFrame({"request_id": pd.Series([], dtype=object),
                             "label": pd.Series([], dtype=object)})
    wanted = pa.array(list(latest), type=pa.string())
    found: dict[str, Any] = {}
    for batch in scan_batches(ws, ["request_id", "ts"], model=window.model, start=window.start,
                              end=window.end, version=window.version, role=window.role):
        mask = pc.is_in(batch.column("request_id"), value_set=wanted)
        if not pc.any(mask).as_py():
            continue
        hit = batch.filter(mask)
        for rid, t in zip(hit.column("request_id").to_pylist(),
                          _seconds(hit.column("ts")).tolist()):
            valid = [(ts, label) for ts, label in latest[rid]
                     if t - CLOCK_SKEW_SECONDS <= ts <= t + late]
            if valid:  # the latest in time, whatever order the files were written in
                found[rid] = orjson.loads(max(valid, key=lambda item: item[0])[1])
    return pd.DataFrame({"request_id": pd.Series(list(found), dtype=object),
                         "label": pd.Series(list(found.values()), dtype=object)})
