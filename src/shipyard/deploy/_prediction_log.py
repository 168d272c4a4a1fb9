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

Requests only append to an in-memory queue; a background thread writes a
batch every second (or sooner when 5000 records wait). Graceful shutdown
drains the queue. If the writer falls 100 000 records behind, new records are
dropped and counted rather than letting memory grow without bound.
"""

from __future__ import annotations

import collections
import datetime as _dt
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import orjson

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace

log = logging.getLogger("shipyard.serve.predlog")


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
        """Queue one request/response. ``inputs`` is the validated DataFrame
        (or None); ``outputs`` a JSON-able dict. ``role`` under a rollout:
        ``primary``, ``candidate`` or ``shadow``. Serialisation happens in the
        writer thread, off the request path; neither is mutated afterwards."""
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
        with self._flush_lock:
            items = []
            while self._queue:
                items.append(self._queue.popleft())
            if not items:
                return 0
            groups: dict[tuple, list] = collections.defaultdict(list)
            for item in items:
                day = _dt.datetime.fromtimestamp(item[1], _dt.UTC).date().isoformat()
                groups[(item[0], item[3] if item[0] == "p" else None, day)].append(item)
            for (kind, model, day), group in groups.items():
                if kind == "p":
                    self._write(predictions_root(self.home) / f"model={quote(model, safe='')}"
                                / f"date={day}", _prediction_table(group))
                else:
                    self._write(feedback_root(self.home) / f"date={day}",
                                _feedback_table(group))
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


def _prediction_table(group: list[tuple]):
    import pyarrow as pa

    cols: dict[str, list] = {n: [] for n in _prediction_schema().names}
    for (_, ts, rid, _model, version, endpoint, status, latency, inputs, outputs, n, error,
         key_id, role) in group:
        cols["request_id"].append(rid)
        cols["ts"].append(_dt.datetime.fromtimestamp(ts, _dt.UTC))
        cols["version"].append(version)
        cols["endpoint"].append(endpoint)
        cols["status"].append(status)
        cols["latency_ms"].append(latency)
        cols["num_rows"].append(n if n is not None else (len(inputs) if inputs is not None
                                                          else None))
        cols["inputs"].append(_records(inputs))
        cols["outputs"].append(_dumps(outputs))
        cols["error"].append(error)
        cols["key_id"].append(key_id)
        cols["role"].append(role)
    return pa.table(cols, schema=_prediction_schema())


def _feedback_table(group: list[tuple]):
    import pyarrow as pa

    cols: dict[str, list] = {n: [] for n in _feedback_schema().names}
    for _, ts, rid, model, label, key_id in group:
        cols["request_id"].append(rid)
        cols["ts"].append(_dt.datetime.fromtimestamp(ts, _dt.UTC))
        cols["model"].append(model)
        cols["label"].append(_dumps(label))
        cols["key_id"].append(key_id)
    return pa.table(cols, schema=_feedback_schema())


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
