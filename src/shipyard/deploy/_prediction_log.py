"""The prediction log: every request and response, and later feedback, as
Parquet files under the workspace home::

    <home>/predictions/model=<name>/date=YYYY-MM-DD/part-<uuid>.parquet
    <home>/feedback/date=YYYY-MM-DD/part-<uuid>.parquet

Hive-partitioned Parquet rather than the artifact store: monitoring reads a
model's days with one pyarrow/DuckDB scan (partition pruning on model and
date), whereas the artifact store is content-addressed blobs with no listing
by time. Each server process writes its own uniquely named files, so several
workers never contend, and a file appears under its final name only once
complete (written to a temporary name, then renamed).

Requests only append to an in-memory queue (a tuple of the values as they
are: the validated input columns, the prediction arrays); a background thread
writes a batch every second (or sooner when 5000 records wait). Graceful
shutdown drains the queue. If the writer falls 100 000 records behind, new
records are dropped and counted rather than letting memory grow without bound.

The writer serialises in bulk, a slice of records at a time: the inputs of
many requests as one DataFrame written by one ``to_json`` (the same text each
request's own would give), the columns as Arrow arrays, so each request costs
it a few microseconds and no single step holds the GIL for more than a few
milliseconds (the server's event loop waits for the GIL meanwhile).
"""

from __future__ import annotations

import collections
import datetime as _dt
import logging
import math
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import orjson

from shipyard.deploy._schema import Columns

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace

log = logging.getLogger("shipyard.serve.predlog")
#: Records serialised together: bounds how long one step holds the GIL.
SLICE = 256
_DAY_US = 86_400_000_000


def _prediction_schema():
    import pyarrow as pa

    return pa.schema([
        ("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
        ("version", pa.int64()), ("endpoint", pa.string()), ("status", pa.int32()),
        ("latency_ms", pa.float64()), ("num_rows", pa.int32()), ("inputs", pa.string()),
        ("outputs", pa.string()), ("error", pa.string()), ("key_id", pa.string()),
        ("role", pa.string()),
    ])


def _feedback_schema():
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
                      ("model", pa.string()), ("label", pa.string()), ("key_id", pa.string())])


def predictions_root(home: str | os.PathLike) -> Path:
    return Path(home) / "predictions"


def feedback_root(home: str | os.PathLike) -> Path:
    return Path(home) / "feedback"


class PredictionLog:
    """Asynchronous, batched Parquet writer of predictions and feedback.

    Parameters
    ----------
    home
        Workspace home; files go under ``predictions/`` and ``feedback/``.
    flush_interval
        Seconds between writes.
    batch_size
        Queued records that trigger an early write.
    max_queue
        Records held before new ones are dropped (and counted).
    """

    def __init__(self, home: str | os.PathLike, *, flush_interval: float = 1.0,
                 batch_size: int = 5000, max_queue: int = 100_000):
        self.home = Path(home)
        self.flush_interval, self.batch_size, self.max_queue = (flush_interval, batch_size,
                                                                max_queue)
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.dropped = 0
        self.written = 0

    def __repr__(self) -> str:
        return f"PredictionLog({str(self.home)!r})"

    # ------------------------------------------------------------ record
    def record_prediction(self, *, request_id: str, model: str, version: int | None,
                          endpoint: str, status: int, latency_ms: float, inputs: Any = None,
                          outputs: Any = None, num_rows: int | None = None,
                          error: str | None = None, key_id: str | None = None,
                          role: str | None = None) -> None:
        """Queue one request/response. ``inputs`` is the validated
        :class:`~shipyard.deploy.Columns` or DataFrame (or None); ``outputs``
        a JSON-able dict. ``role`` under a rollout: ``primary``,
        ``candidate`` or ``shadow``. Serialisation happens in the writer
        thread, off the request path; neither is mutated afterwards."""
        self._put(("p", time.time(), request_id, model, version, endpoint, status, latency_ms,
                   inputs, outputs, num_rows, error, key_id, role))

    def record_feedback(self, *, request_id: str, label: Any, model: str | None = None,
                        key_id: str | None = None) -> None:
        """Queue the ground truth of an earlier request."""
        self._put(("f", time.time(), request_id, model, label, key_id))

    def _put(self, item: tuple) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(item)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    # ------------------------------------------------------------ thread
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="shipyard-predlog",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a full disk must not kill the thread; retry next round
                log.exception("could not write the prediction log")

    def close(self) -> None:
        """Stop the thread and write everything queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write every queued record now; return how many."""
        import pyarrow as pa

        with self._flush_lock:
            items = []
            while self._queue:
                items.append(self._queue.popleft())
            if not items:
                return 0
            days: dict[int, str] = {}
            tables: dict[tuple, list] = collections.defaultdict(list)
            for start in range(0, len(items), SLICE):
                groups: dict[tuple, list] = collections.defaultdict(list)
                for item in items[start:start + SLICE]:
                    item = (item[0], _micros(item[1]), *item[2:])
                    number = item[1] // _DAY_US
                    day = days.get(number)
                    if day is None:
                        day = days[number] = (_dt.date(1970, 1, 1)
                                              + _dt.timedelta(days=number)).isoformat()
                    groups[(item[0], item[3] if item[0] == "p" else None, day)].append(item)
                for key, group in groups.items():
                    tables[key].append(_prediction_table(group) if key[0] == "p"
                                       else _feedback_table(group))
            for (kind, model, day), parts in tables.items():
                table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
                if kind == "p":
                    self._write(predictions_root(self.home) / f"model={quote(model, safe='')}"
                                / f"date={day}", table)
                else:
                    self._write(feedback_root(self.home) / f"date={day}", table)
            self.written += len(items)
            return len(items)

    @staticmethod
    def _write(folder: Path, table) -> None:
        import pyarrow.parquet as pq

        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / name)


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=ORJSON_OPTIONS, default=_default).decode()


def _default(value: Any) -> Any:
    # Object arrays (string labels) as lists, not as their repr.
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _records(frame: Any) -> str | None:
    if frame is None:
        return None
    return frame.to_json(orient="records", date_format="iso", force_ascii=False)


def _inputs_json(inputs: list) -> list[str | None]:
    """Each request's inputs as JSON records, the text ``_records`` writes
    for its DataFrame. Requests validated into :class:`Columns` with the same
    columns are written by one ``to_json`` over their rows together, then
    split back per request."""
    out: list[str | None] = [None] * len(inputs)
    together: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, value in enumerate(inputs):
        if isinstance(value, Columns):
            together[tuple(value.columns)].append(i)
        else:
            out[i] = _records(value)
    for indices in together.values():
        parts = [inputs[i] for i in indices]
        lines = _lines(parts)
        if lines is None:  # values a merged column would type differently: one by one
            for i, part in zip(indices, parts, strict=True):
                out[i] = _records(part.to_frame())
            continue
        start = 0
        for i, part in zip(indices, parts, strict=True):
            out[i] = "[" + ",".join(lines[start:start + len(part)]) + "]"
            start += len(part)
    return out


def _lines(parts: list[Columns]) -> list[str] | None:
    """One JSON object per row of ``parts``, or None when their columns do
    not merge faithfully (see :meth:`Columns.concat`)."""
    try:
        merged = Columns.concat(parts)
    except ValueError:
        return None
    text = merged.to_frame().to_json(orient="records", lines=True, date_format="iso",
                                     force_ascii=False)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines if len(lines) == len(merged) else None


def _micros(ts: float) -> int:
    """Epoch microseconds of ``ts`` (seconds), rounded as
    ``datetime.fromtimestamp`` rounds (half to even)."""
    fraction, whole = math.modf(ts)
    return int(whole) * 1_000_000 + round(fraction * 1e6)


def _timestamps(group: list[tuple]):
    import pyarrow as pa

    return pa.array([item[1] for item in group], type=pa.timestamp("us", tz="UTC"))


def _prediction_table(group: list[tuple]):
    import pyarrow as pa

    schema = _prediction_schema()
    (_, _, rids, _, versions, endpoints, statuses, latencies, inputs, outputs, rows, errors,
     key_ids, roles) = (list(c) for c in zip(*group, strict=True))
    num_rows = [n if n is not None else (len(x) if x is not None else None)
                for n, x in zip(rows, inputs, strict=True)]
    cols = {"request_id": rids, "ts": _timestamps(group), "version": versions,
            "endpoint": endpoints, "status": statuses, "latency_ms": latencies,
            "num_rows": num_rows, "inputs": _inputs_json(inputs),
            "outputs": [_dumps(o) for o in outputs], "error": errors, "key_id": key_ids,
            "role": roles}
    return pa.table([cols[n] for n in schema.names], schema=schema)


def _feedback_table(group: list[tuple]):
    import pyarrow as pa

    schema = _feedback_schema()
    _, _, rids, models, labels, key_ids = (list(c) for c in zip(*group, strict=True))
    cols = {"request_id": rids, "ts": _timestamps(group), "model": models,
            "label": [_dumps(v) for v in labels], "key_id": key_ids}
    return pa.table([cols[n] for n in schema.names], schema=schema)


# --------------------------------------------------------------- readers
def _home(ws: Workspace | str | os.PathLike) -> Path:
    return Path(ws.settings.home) if hasattr(ws, "settings") else Path(ws)


def _since(value: float | _dt.datetime | None) -> _dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.astimezone(_dt.UTC)
    return _dt.datetime.fromtimestamp(float(value), _dt.UTC)


def _scan(folder: Path, schema, partitions: list[str], filters: list) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as pads

    names = schema.names + partitions
    if not folder.exists():
        return pd.DataFrame({n: [] for n in names})
    part_schema = pa.schema([(p, pa.string()) for p in partitions])
    dataset = pads.dataset(folder, format="parquet", schema=pa.unify_schemas(
        [schema, part_schema]), partitioning=pads.partitioning(part_schema, flavor="hive"),
        exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    expr = None
    for f in filters:
        expr = f if expr is None else expr & f
    table = dataset.to_table(filter=expr)
    frame = table.to_pandas()
    for name in names:  # missing text is None, not NaN: readers test `is None`
        if pa.types.is_string(table.schema.field(name).type):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)[names]


def read_predictions(ws: Workspace | str | os.PathLike, model: str | None = None,
                     since: float | _dt.datetime | None = None, *,
                     expand: bool = False) -> pd.DataFrame:
    """Logged predictions, oldest first.

    Parameters
    ----------
    ws
        A workspace, or its home folder.
    model
        Only this model's requests.
    since
        Only requests at or after this time (epoch seconds or a datetime).
    expand
        One row per input row instead of per request: the input columns,
        ``prediction`` (and ``probabilities``), with the request's fields;
        failed requests are left out.

    Returns
    -------
    DataFrame
        ``request_id, ts, version, endpoint, status, latency_ms, num_rows,
        inputs, outputs, error, key_id, role, model, date`` (``role``:
        ``primary``, ``candidate`` or ``shadow`` under a rollout, else None); ``inputs`` and
        ``outputs`` are JSON text (records; ``{"predictions", "probabilities"}``).
    """
    import pyarrow.dataset as pads

    filters = []
    if model is not None:
        filters.append(pads.field("model") == quote(model, safe=""))
    start = _since(since)
    if start is not None:
        filters.append(pads.field("ts") >= start)
    frame = _scan(predictions_root(_home(ws)), _prediction_schema(), ["model", "date"],
                  filters)
    frame["model"] = frame["model"].map(unquote)
    return _expand(frame) if expand else frame


def _expand(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    parts = []
    for row in frame.itertuples(index=False):
        if not isinstance(row.inputs, str) or not isinstance(row.outputs, str):
            continue  # failed requests
        inputs = pd.DataFrame(orjson.loads(row.inputs))
        outputs = orjson.loads(row.outputs)
        inputs["prediction"] = outputs.get("predictions")
        if outputs.get("probabilities") is not None:
            inputs["probabilities"] = outputs["probabilities"]
        for col in ("request_id", "ts", "model", "version", "endpoint", "role"):
            inputs[col] = getattr(row, col)
        inputs["row"] = range(len(inputs))
        parts.append(inputs)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def read_feedback(ws: Workspace | str | os.PathLike,
                  since: float | _dt.datetime | None = None) -> pd.DataFrame:
    """Logged feedback (``request_id, ts, model, label, key_id, date``),
    oldest first, ``label`` decoded from JSON. Join it to
    :func:`read_predictions` on ``request_id``."""
    import pyarrow.dataset as pads

    start = _since(since)
    frame = _scan(feedback_root(_home(ws)), _feedback_schema(), ["date"],
                  [pads.field("ts") >= start] if start is not None else [])
    frame["label"] = [orjson.loads(v) if v is not None else None for v in frame["label"]]
    return frame
