"""Experiments and runs: start, log, end, search, compare."""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import math
import operator
import os
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shipyard.errors import NotFoundError, ShipyardError, TrackingError
from shipyard.store.tables import (DatasetRow, DatasetVersionRow, ExperimentRow,
                                    LatestMetricRow, ParamRow, RunArtifactRow,
                                    RunInputRow, RunRow, TagRow)
from shipyard.tracking._buffer import MetricBuffer, flush_all
from shipyard.tracking._environment import (Usage, apply_seed, capture_environment,
                                            environment_json, new_seed, peak_memory_mb)
from shipyard.tracking._filter import compile_filter, order_clauses, parse_filter, parse_order_by
from shipyard.tracking._records import STATUSES, Experiment, MetricSeries, RunArtifact, RunInfo

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sqlalchemy.orm import Session

    from shipyard import Workspace

log = logging.getLogger("shipyard.tracking")

MAX_KEY = 250
MAX_NAME = 200
MAX_PATH = 500
MAX_ERROR = 8000
MIN_PREFIX = 6
INT64 = 1 << 63
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX = re.compile(r"^[0-9a-f]+$")
_ANY = ...  # search(parent=...) means "any parent"



# --------------------------------------------------------------- validation
def check_key(key: object, what: str) -> str:
    """A metric, param or tag key: a non-empty string of at most 250 printable
    characters."""
    if not isinstance(key, str):
        raise TrackingError(f"{what} keys are strings, got {type(key).__name__} {key!r}")
    if not key.strip():
        raise TrackingError(f"{what} key {key!r} is empty", hint="name it, e.g. 'accuracy'")
    if len(key) > MAX_KEY:
        raise TrackingError(f"{what} key {key[:40]!r}... is {len(key)} characters long; "
                            f"the limit is {MAX_KEY}")
    if _CONTROL.search(key):
        raise TrackingError(f"{what} key {key!r} contains a control character",
                            hint="use printable characters only")
    return key


def _text_value(key: str, value: object, what: str) -> str:
    text = str(value)
    if "\x00" in text:
        raise TrackingError(f"{what} {key!r} contains a NUL character, which cannot be stored")
    return text


def metric_value(key: str, value: object) -> float:
    """``value`` as a float, refusing non-numbers and infinities (NaN is kept)."""
    if type(value) is not float:
        if isinstance(value, (bool, str, bytes)) or not hasattr(type(value), "__float__"):
            raise TrackingError(
                f"metric {key!r} must be a number, got {type(value).__name__} {value!r:.60}",
                hint="log a float; record text as a tag or a param")
        value = float(value)
    if math.isinf(value):
        raise TrackingError(f"metric {key!r} must be finite or NaN, got {value}",
                            hint="clip it, or log NaN for an undefined value")
    return value


def _step(step: object) -> int:
    if isinstance(step, bool):
        raise TrackingError(f"a metric step is an integer, got {step!r}")
    try:
        step = operator.index(step)
    except TypeError as exc:
        raise TrackingError(f"a metric step is an integer, got {type(step).__name__} "
                            f"{step!r:.60}") from exc
    if not -INT64 <= step < INT64:
        raise TrackingError(f"metric step {step} does not fit in 64 bits")
    return step


def _timestamp(ts: object) -> float:
    try:
        ts = float(ts)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TrackingError(f"a metric timestamp is epoch seconds, got {ts!r:.60}") from exc
    if not math.isfinite(ts):
        raise TrackingError(f"a metric timestamp must be finite, got {ts}")
    return ts


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TrackingError(f"{what} must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME or _CONTROL.search(name):
        raise TrackingError(f"{what} {name[:40]!r} must be at most {MAX_NAME} printable "
                            "characters")
    return name


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path.strip("/ "):
        raise TrackingError(f"an artifact path must be a non-empty string, got {path!r}")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts or _CONTROL.search(path):
        raise TrackingError(f"artifact path {path!r} may not contain '..' or control characters",
                            hint="use a relative path such as 'plots/roc.png'")
    clean = "/".join(parts)
    if len(clean) > MAX_PATH:
        raise TrackingError(f"artifact path {clean[:40]!r}... is longer than {MAX_PATH} "
                            "characters")
    return clean


def _error_text(exc_type: type[BaseException], exc: BaseException, tb) -> str:
    head = "".join(traceback.format_exception_only(exc_type, exc)).strip()
    frames = "".join(traceback.format_tb(tb, limit=-5)) if tb is not None else ""
    text = f"{head}\n\nTraceback (most recent call last, up to 5 frames):\n{frames}"
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 15] + "\n[truncated]"


def _upsert(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _run_id_of(run: object) -> str:
    if isinstance(run, (ActiveRun, RunInfo)):
        return run.id
    if isinstance(run, str):
        return run
    raise TrackingError(f"expected a run id, RunInfo or ActiveRun, got {type(run).__name__}")


def _fetch(session: Session, sql: str, params: dict[str, Any], dtype: Any = None):
    """Rows of ``sql`` from the driver's own cursor, as plain tuples or, given
    a numpy ``dtype``, as a structured array filled straight from the
    cursor: no ORM or Core row objects, which cost more than the read itself
    for a million points. ``:name`` placeholders become the driver's style."""
    import numpy as np

    sqlite = session.get_bind().dialect.name == "sqlite"
    names: list[str] = []

    def place(match: re.Match) -> str:
        names.append(match.group(1))
        return "?" if sqlite else "%s"

    text = re.sub(r":(\w+)", place, sql)
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.execute(text, tuple(params[n] for n in names))
        if dtype is None:
            return cursor.fetchall()
        chunks = []
        while batch := cursor.fetchmany(65536):
            chunks.append(np.fromiter(batch, dtype=dtype, count=len(batch)))
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
    finally:
        cursor.close()


#: A metric's points as :meth:`Runs.metric_series` reads them.
SERIES_DTYPE = [("step", "<i8"), ("value", "<f8"), ("nan", "?"), ("timestamp", "<f8")]


_RANGE = ("FROM metrics WHERE run_id = :r AND key = :k AND is_nan = :f "
          "AND step >= :lo + i * :w AND step < :lo + (i + 1) * :w")
#: The envelope of a metric (see Runs.metric_series): per step range the ids
#: of its lowest and highest point, each found by a correlated subquery on the
#: (run_id, key, step) index, then those points. Portable SQL (SQLite, PostgreSQL).
_ENVELOPE = f"""
WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i < :n - 1),
e(id) AS (
  SELECT (SELECT id {_RANGE} ORDER BY value, id LIMIT 1) FROM b
  UNION SELECT (SELECT id {_RANGE} ORDER BY value DESC, id LIMIT 1) FROM b
  UNION SELECT (SELECT id FROM metrics WHERE run_id = :r AND key = :k AND is_nan = :f
                ORDER BY step, id LIMIT 1)
  UNION SELECT (SELECT id FROM metrics WHERE run_id = :r AND key = :k AND is_nan = :f
                ORDER BY step DESC, id DESC LIMIT 1))
SELECT m.step, m.value, m.is_nan, m.timestamp FROM e JOIN metrics m ON m.id = e.id
ORDER BY m.step, m.id"""


def _check_envelope(envelope: object) -> None:
    if envelope is not None and (isinstance(envelope, bool) or not isinstance(envelope, int)
                                 or envelope < 1):
        raise TrackingError(f"envelope must be a positive integer, got {envelope!r}")


def _read_series(session: Session, rid: str, key: str, total: int, lo: int | None,
                 hi: int | None, envelope: int | None) -> MetricSeries:
    args = {"r": rid, "k": key, "f": False}
    if envelope is not None and total > 4 * envelope and hi - lo < INT64 // 2:
        width = -(-(hi - lo + 1) // envelope)  # whole steps, so ranges never overlap
        rows = _fetch(session, _ENVELOPE, {**args, "lo": lo, "w": width,
                                           "n": -(-(hi - lo + 1) // width)}, dtype=SERIES_DTYPE)
    else:
        # (step, id) follows the index (SQLite keeps the rowid last in it),
        # where (step, timestamp, id) would sort every point; the rare equal
        # steps are put in timestamp order by _series.
        rows = _fetch(session, "SELECT step, value, is_nan, timestamp FROM metrics "
                               "WHERE run_id = :r AND key = :k ORDER BY step, id",
                      args, dtype=SERIES_DTYPE)
    return _series(rows, total)


def _series(rows: np.ndarray, total: int) -> MetricSeries:
    import numpy as np

    steps, values = rows["step"], rows["value"].copy()
    values[rows["nan"]] = np.nan
    if len(steps) > 1 and not (np.diff(steps) > 0).all():
        order = np.lexsort((rows["timestamp"], steps))  # stable: ties keep id order
        steps, values = steps[order], values[order]
    return MetricSeries(np.ascontiguousarray(steps), np.ascontiguousarray(values), int(total))


#: Run attributes a column list may name: always read, so nothing to choose.
RUN_ATTRIBUTES = ("id", "experiment", "name", "status", "parent_id", "start_time", "end_time",
                  "seed", "cpu_seconds", "wall_seconds", "peak_memory_mb", "error",
                  "environment_digest", "duration")


def _columns(columns: Iterable[str] | None) -> dict[str, list[str] | None] | None:
    """``search``'s ``columns`` as kind → keys (None: all keys of that kind)."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    chosen: dict[str, list[str] | None] = {}
    for column in columns:
        if not isinstance(column, str):
            raise TrackingError(f"a column is a string such as 'metrics.auc', got "
                                f"{type(column).__name__} {column!r:.60}")
        kind, dot, key = column.partition(".")
        if (not dot and column in RUN_ATTRIBUTES) or (kind == "attributes"
                                                      and key in RUN_ATTRIBUTES):
            continue
        if not dot or kind not in ("params", "metrics", "tags"):
            raise TrackingError(
                f"unknown column {column!r:.80}",
                hint="name params.<key>, metrics.<key>, tags.<key>, params.* (every param; "
                     f"also metrics.*, tags.*) or an attribute ({', '.join(RUN_ATTRIBUTES)})")
        if key == "*":
            chosen[kind] = None
        elif chosen.get(kind, []) is not None:
            chosen.setdefault(kind, []).append(check_key(key, kind[:-1]))
    return chosen


# ------------------------------------------------------------------ runs
class Runs:
    """Experiments and runs of one workspace: ``ws.runs``.

    Parameters
    ----------
    ws
        The workspace whose metadata DB and artifact store hold the runs.
    flush_interval
        Seconds between background metric writes.
    """

    def __init__(self, ws: Workspace, *, flush_interval: float = 0.5):
        self.ws = ws
        self._buffer = MetricBuffer(ws.db, interval=flush_interval)
        self._active: dict[str, ActiveRun] = {}
        self._active_lock = threading.Lock()
        self._env_digest: str | None = None

    def __repr__(self) -> str:
        return f"Runs({self.ws!r}, active={len(self._active)})"

    # ---------------------------------------------------------------- start
    def start(
        self,
        experiment: str = "default",
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        seed: int | None = None,
        inputs: Iterable[Any] | None = None,
        parent: str | RunInfo | ActiveRun | None = None,
    ) -> ActiveRun:
        """Start a run; use it as a context manager.

        Parameters
        ----------
        experiment
            Experiment name; created on first use.
        name
            Optional human name of the run.
        params
            Parameters, stored as strings and immutable afterwards.
        tags
            Tags, stored as strings; may change later.
        seed
            Seed for ``random`` and numpy's global generator. When omitted one is
            drawn (from OS entropy, or for nested runs from the seeded global
            stream), applied and recorded, so the run can be reproduced.
        inputs
            Dataset versions the run reads (``DatasetVersion`` objects or refs
            such as ``"adult@3"``), recorded as lineage.
        parent
            The parent run of a nested run (trial).

        Returns
        -------
        ActiveRun
            Ends ``FINISHED`` when its ``with`` block exits normally, ``FAILED``
            (with the error recorded) when it raises.
        """
        experiment = _check_name(experiment, "an experiment name")
        if name is not None:
            name = _check_name(name, "a run name")
        params = self._params_dict(params or {})
        tag_rows = self._tags_dict(tags or {})
        parent_id = None
        if parent is not None:
            with self.ws.db.read() as s:
                parent_id = self._resolve(s, _run_id_of(parent))
        if seed is None:
            seed = new_seed(derived=parent_id is not None)
        elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < INT64:
            raise TrackingError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        env_digest = self._environment_digest()
        input_refs = list(inputs or [])
        run_id = uuid.uuid4().hex
        started = time.time()

        def create(session: Session) -> None:
            exp_id = self._experiment_id(session, experiment)
            session.add(RunRow(id=run_id, experiment_id=exp_id, parent_id=parent_id, name=name,
                               status="RUNNING", start_time=started, seed=seed,
                               environment_digest=env_digest))
            session.flush()
            session.add_all(ParamRow(run_id=run_id, key=k, value=v) for k, v in params.items())
            session.add_all(TagRow(run_id=run_id, key=k, value=v) for k, v in tag_rows.items())
            for version_id in {self._dataset_version_id(session, x) for x in input_refs}:
                session.add(RunInputRow(run_id=run_id, dataset_version_id=version_id))

        self.ws.db.retry(create)
        apply_seed(seed)  # only once the run exists: a refused start changes nothing
        run = ActiveRun(self, run_id, experiment=experiment, name=name, parent_id=parent_id,
                        seed=seed, params=params)
        with self._active_lock:
            self._active[run_id] = run
            _with_active.add(self)
        return run

    def _params_dict(self, params: Mapping[str, Any]) -> dict[str, str]:
        if not isinstance(params, Mapping):
            raise TrackingError(f"params must be a mapping, got {type(params).__name__}")
        return {check_key(k, "param"): _text_value(k, v, "param") for k, v in params.items()}

    def _tags_dict(self, tags: Mapping[str, Any]) -> dict[str, str]:
        if not isinstance(tags, Mapping):
            raise TrackingError(f"tags must be a mapping, got {type(tags).__name__}")
        return {check_key(k, "tag"): _text_value(k, v, "tag") for k, v in tags.items()}

    def _environment_digest(self) -> str | None:
        if self._env_digest is None:
            try:
                self._env_digest = self.ws.artifacts.put_bytes(
                    environment_json(capture_environment()))
            except ShipyardError as exc:  # recording the environment never fails a run
                log.warning("shipyard: could not store the run environment: %s", exc)
        return self._env_digest

    @staticmethod
    def _experiment_id(session: Session, name: str) -> int:
        found = session.execute(select(ExperimentRow.id).where(ExperimentRow.name == name)).scalar()
        if found is not None:
            return found
        # Another process may create it at the same moment: insert-or-ignore, then read.
        insert = _upsert(session)
        session.execute(insert(ExperimentRow).values(name=name, created_at=time.time())
                        .on_conflict_do_nothing(index_elements=["name"]))
        return session.execute(select(ExperimentRow.id).where(ExperimentRow.name == name)).scalar_one()

    @staticmethod
    def _dataset_version_id(session: Session, item: Any) -> int:
        ref = getattr(item, "ref", item)
        if not isinstance(ref, str):
            raise TrackingError(f"a run input is a DatasetVersion or a ref such as 'adult@3', "
                                f"got {type(item).__name__}")
        name, _, version = ref.partition("@")
        q = (select(DatasetVersionRow.id)
             .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
             .where(DatasetRow.name == name))
        if version in ("", "latest"):
            q = q.order_by(DatasetVersionRow.version.desc()).limit(1)
        elif version.isdigit():
            q = q.where(DatasetVersionRow.version == int(version))
        else:
            raise TrackingError(f"dataset ref {ref!r} is not name@<version> or name@latest")
        found = session.execute(q).scalar()
        if found is None:
            raise NotFoundError(f"dataset version {ref!r} does not exist",
                                hint="list versions with `shipyard data list`")
        return found

    # ----------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """Write every buffered metric point now."""
        self._buffer.flush()

    def close(self) -> None:
        """Flush buffered metrics and stop the background writer. Runs still
        active stay ``RUNNING`` until they end (at the latest at process exit)."""
        self._buffer.close()

    def _ended(self, run_id: str) -> None:
        with self._active_lock:
            self._active.pop(run_id, None)
            if not self._active:
                _with_active.discard(self)

    # -------------------------------------------------------------- lookup
    def _resolve(self, session: Session, run_id: str) -> str:
        """The full id of ``run_id`` (a full id or a unique prefix of >= 6 chars)."""
        if not isinstance(run_id, str):
            run_id = _run_id_of(run_id)
        rid = run_id.strip().lower()
        if not _HEX.match(rid) or len(rid) > 32:
            raise NotFoundError(f"run {run_id!r:.80} does not exist: run ids are 32 hex digits",
                                hint="find ids with `shipyard runs list`")
        if len(rid) == 32:
            if session.execute(select(RunRow.id).where(RunRow.id == rid)).scalar() is None:
                raise NotFoundError(f"run {rid} does not exist",
                                    hint="find ids with `shipyard runs list`")
            return rid
        if len(rid) < MIN_PREFIX:
            raise NotFoundError(f"run id prefix {rid!r} is too short",
                                hint=f"give at least {MIN_PREFIX} characters of the id")
        # ids are lowercase hex, so every id starting with rid sorts in [rid, rid + "g").
        found = session.execute(select(RunRow.id).where(RunRow.id >= rid, RunRow.id < rid + "g")
                                .order_by(RunRow.id).limit(3)).scalars().all()
        if not found:
            raise NotFoundError(f"no run id starts with {rid!r}",
                                hint="find ids with `shipyard runs list`")
        if len(found) > 1:
            raise NotFoundError(f"run id prefix {rid!r} is ambiguous: it matches "
                                f"{', '.join(found[:2])}{' and more' if len(found) > 2 else ''}",
                                hint="give more characters of the id")
        return found[0]

    def get(self, run_id: str | RunInfo | ActiveRun) -> RunInfo:
        """One run by id or unique id prefix (at least 6 characters).

        Raises
        ------
        NotFoundError
            No such run, or the prefix is ambiguous.
        """
        self._read_own_writes()
        with self.ws.db.read() as s:
            rid = self._resolve(s, _run_id_of(run_id))
            return self._load(s, self._run_query().where(RunRow.id == rid))[0]

    def _read_own_writes(self) -> None:
        # Read your own writes; also waits for a background write in flight.
        # Costs two lock round-trips when nothing is queued.
        self._buffer.flush()

    @staticmethod
    def _run_query():
        return (select(RunRow.id, ExperimentRow.name, RunRow.name, RunRow.status,
                       RunRow.parent_id, RunRow.start_time, RunRow.end_time, RunRow.seed,
                       RunRow.cpu_seconds, RunRow.wall_seconds, RunRow.peak_memory_mb,
                       RunRow.error, RunRow.environment_digest)
                .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id))

    @staticmethod
    def _load(session: Session, query, columns: dict[str, list[str] | None] | None = None,
              ) -> list[RunInfo]:
        """Run the run query, then params, metrics and tags of all its runs in
        three queries at most: only the keys ``columns`` names (kind → keys,
        ``None`` for all keys of a kind; a kind left out is not read)."""
        if columns is None:
            columns = dict.fromkeys(("params", "metrics", "tags"))
        rows = session.execute(query).all()
        ids = [r[0] for r in rows]
        params: dict[str, dict] = {i: {} for i in ids}
        metrics: dict[str, dict] = {i: {} for i in ids}
        tags: dict[str, dict] = {i: {} for i in ids}

        def only(q, table, kind):
            keys = columns[kind]
            return q if keys is None else q.where(table.key.in_(keys))

        for chunk in (ids[i:i + 900] for i in range(0, len(ids), 900)):
            if "params" in columns:
                for rid, k, v in session.execute(only(
                        select(ParamRow.run_id, ParamRow.key, ParamRow.value)
                        .where(ParamRow.run_id.in_(chunk)), ParamRow, "params")):
                    params[rid][k] = v
            if "metrics" in columns:
                for rid, k, v, nan in session.execute(only(
                        select(LatestMetricRow.run_id, LatestMetricRow.key, LatestMetricRow.value,
                               LatestMetricRow.is_nan).where(LatestMetricRow.run_id.in_(chunk)),
                        LatestMetricRow, "metrics")):
                    metrics[rid][k] = math.nan if nan else v
            if "tags" in columns:
                for rid, k, v in session.execute(only(
                        select(TagRow.run_id, TagRow.key, TagRow.value)
                        .where(TagRow.run_id.in_(chunk)), TagRow, "tags")):
                    tags[rid][k] = v
        return [RunInfo(id=r[0], experiment=r[1], name=r[2], status=r[3], parent_id=r[4],
                        start_time=r[5], end_time=r[6], seed=r[7], cpu_seconds=r[8],
                        wall_seconds=r[9], peak_memory_mb=r[10], error=r[11],
                        environment_digest=r[12], params=dict(sorted(params[r[0]].items())),
                        metrics=dict(sorted(metrics[r[0]].items())),
                        tags=dict(sorted(tags[r[0]].items())))
                for r in rows]

    def keys(self, run_ids: Iterable[str | RunInfo | ActiveRun], *,
             limit: int = 1000) -> dict[str, list[str]]:
        """The param, metric and tag keys the given runs logged, sorted, at
        most ``limit`` of each kind: what a column picker offers without
        reading any value.

        >>> import tempfile, shipyard
        >>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
        >>> with ws.start_run("demo", params={"lr": 0.1}) as run:
        ...     run.log_metrics({"loss": 0.5, "auc": 0.9})
        >>> ws.runs.keys([run.id])
        {'params': ['lr'], 'metrics': ['auc', 'loss'], 'tags': []}
        >>> ws.close()
        """
        ids = list(dict.fromkeys(_run_id_of(r) for r in run_ids))
        found: dict[str, set[str]] = {"params": set(), "metrics": set(), "tags": set()}
        self._read_own_writes()
        with self.ws.db.read() as s:
            for chunk in (ids[i:i + 900] for i in range(0, len(ids), 900)):
                for kind, table in (("params", ParamRow), ("metrics", LatestMetricRow),
                                    ("tags", TagRow)):
                    found[kind].update(s.execute(select(table.key).distinct()
                                                 .where(table.run_id.in_(chunk))).scalars())
        return {kind: sorted(keys)[:limit] for kind, keys in found.items()}

    # -------------------------------------------------------------- search
    def search(
        self,
        filter: str | None = None,
        *,
        experiment: str | Iterable[str] | None = None,
        order_by: str | Iterable[str] | None = None,
        limit: int | None = 100,
        offset: int = 0,
        status: str | Iterable[str] | None = None,
        parent: Any = _ANY,
        columns: Iterable[str] | None = None,
    ) -> list[RunInfo]:
        """Runs matching a filter expression, sorted and limited.

        Parameters
        ----------
        filter
            E.g. ``metrics.auc > 0.9 and params.model = 'lgbm'``; see
            :mod:`shipyard.tracking._filter` for the language (AND, OR, NOT,
            parentheses, = != < <= > >=, LIKE, ILIKE, [NOT] IN, IS [NOT] NULL;
            fields ``metrics.X``, ``params.X``, ``tags.X``, attributes such as
            ``status``, ``name``, ``start_time``, ``experiment``).
        experiment
            Only runs of this experiment (or these experiments).
        order_by
            E.g. ``["metrics.auc DESC", "params.lr"]``; runs missing a key sort
            last. Ties, and the default, are newest first.
        limit, offset
            Page of results; ``limit=None`` returns all.
        status
            Only runs in this status (or these statuses).
        parent
            ``None``: only top-level runs; a run (id, RunInfo, ActiveRun): only
            its children; default: any.
        columns
            Read only these values, e.g. ``["metrics.auc", "params.lr"]``
            (``"metrics.*"`` for every metric; attribute names such as
            ``"status"`` are accepted and always read); default: every param,
            metric and tag. Filters and ``order_by`` may use any key.

        Raises
        ------
        FilterSyntaxError
            The filter or an order-by item is not valid; the message says where.
        TrackingError
            A column is not ``params.<key>``, ``metrics.<key>``,
            ``tags.<key>``, ``<kind>.*`` or an attribute.

        >>> import tempfile, shipyard
        >>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
        >>> with ws.start_run("demo", params={"lr": 0.1, "depth": 3}) as run:
        ...     run.log_metrics({"loss": 0.5, "auc": 0.9})
        >>> [(r.params, r.metrics, r.tags) for r in ws.runs.search(columns=["metrics.auc"])]
        [({}, {'auc': 0.9}, {})]
        >>> ws.close()
        """
        chosen = _columns(columns)
        tree = parse_filter(filter)
        order = parse_order_by(list(order_by) if order_by is not None
                               and not isinstance(order_by, str) else order_by)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise TrackingError(f"limit must be a non-negative integer or None, got {limit!r}")
        self._read_own_writes()
        with self.ws.db.read() as s:
            q = self._run_query().where(compile_filter(tree, self.ws.db.dialect))
            if experiment is not None:
                names = [experiment] if isinstance(experiment, str) else list(experiment)
                q = q.where(ExperimentRow.name.in_(names))
            if status is not None:
                wanted = [status] if isinstance(status, str) else list(status)
                wanted = [str(x).upper() for x in wanted]
                bad = sorted(set(wanted) - set(STATUSES))
                if bad:
                    raise TrackingError(f"unknown run status {bad[0]!r}",
                                        hint=f"use one of {', '.join(STATUSES)}")
                q = q.where(RunRow.status.in_(wanted))
            if parent is None:
                q = q.where(RunRow.parent_id.is_(None))
            elif parent is not _ANY:
                q = q.where(RunRow.parent_id == self._resolve(s, _run_id_of(parent)))
            joins, keys = order_clauses(order)
            for alias, on in joins:
                q = q.outerjoin(alias, on)
            q = q.order_by(*keys, RunRow.start_time.desc(), RunRow.id)
            if limit is not None:
                q = q.limit(limit)
            if offset:
                q = q.offset(offset)
            return self._load(s, q, chosen)

    def experiments(self) -> list[Experiment]:
        """Every experiment with its number of runs, oldest first."""
        with self.ws.db.read() as s:
            rows = s.execute(
                select(ExperimentRow.id, ExperimentRow.name, ExperimentRow.created_at,
                       func.count(RunRow.id))
                .outerjoin(RunRow, RunRow.experiment_id == ExperimentRow.id)
                .group_by(ExperimentRow.id, ExperimentRow.name, ExperimentRow.created_at)
                .order_by(ExperimentRow.created_at, ExperimentRow.id)).all()
        return [Experiment(id=r[0], name=r[1], created_at=r[2], num_runs=r[3]) for r in rows]

    # ------------------------------------------------------------- details
    def metric_history(self, run_id: str | RunInfo | ActiveRun,
                       key: str | None = None) -> pd.DataFrame:
        """Every logged value of a metric (or of all metrics when ``key`` is
        ``None``), sorted by key, step, then timestamp.

        Read with the driver's own cursor into numpy (not row by row through
        the ORM): a million points cost about a second less.

        Returns
        -------
        pandas.DataFrame
            Columns ``key``, ``step``, ``value``, ``timestamp``.
        """
        import numpy as np
        import pandas as pd

        self._read_own_writes()
        with self.ws.db.read() as s:
            rid = self._resolve(s, _run_id_of(run_id))
            where = "run_id = :r" + (" AND key = :k" if key is not None else "")
            rows = _fetch(s, "SELECT key, step, value, is_nan, timestamp FROM metrics "
                             f"WHERE {where} ORDER BY key, step, timestamp, id",
                          {"r": rid, "k": key})
        frame = pd.DataFrame(
            {"key": np.array([r[0] for r in rows], dtype=object) if key is None
             else np.full(len(rows), key, dtype=object),
             "step": np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
             "value": np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
             "timestamp": np.fromiter((r[4] for r in rows), dtype=np.float64,
                                      count=len(rows))},
            columns=["key", "step", "value", "timestamp"])
        nan = np.fromiter((r[3] for r in rows), dtype=bool, count=len(rows))
        if nan.any():
            frame.loc[nan, "value"] = math.nan
        return frame

    def metric_series(self, run_id: str | RunInfo | ActiveRun, key: str, *,
                      envelope: int | None = None) -> MetricSeries:
        """The points of one metric as numpy arrays, sorted by step (then
        timestamp): what a chart needs, read as cheaply as the database allows.

        Parameters
        ----------
        run_id
            The run (id, unique id prefix, RunInfo or ActiveRun).
        key
            The metric.
        envelope
            When given and the metric has more than ``4 * envelope`` points,
            read only an envelope: the step range is cut into ``envelope``
            equal ranges and the database returns, of each, the point with the
            lowest and the one with the highest value (plus the first and the
            last point; NaN points are left out). A million points become at
            most ``2 * envelope + 2`` real points, which a downsampler such as
            LTTB then cuts further, without the database sending them all:
            a reduction done in the database's own loops, through the
            ``(run_id, key, step)`` index.

        Returns
        -------
        MetricSeries
            ``steps`` (int64), ``values`` (float64, NaN kept in a full read)
            and ``total`` (every point logged).

        >>> import tempfile, shipyard
        >>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
        >>> with ws.start_run("demo") as run:
        ...     for step in range(1000):
        ...         run.log_metric("loss", 1.0 if step == 500 else 0.0)
        >>> full = ws.runs.metric_series(run.id, "loss")
        >>> full.total, full.steps[:3].tolist(), float(full.values.max())
        (1000, [0, 1, 2], 1.0)
        >>> cut = ws.runs.metric_series(run.id, "loss", envelope=10)
        >>> cut.reduced, len(cut.steps) <= 22, 500 in cut.steps.tolist()  # the spike stays
        (True, True, True)
        >>> ws.close()
        """
        check_key(key, "metric")
        _check_envelope(envelope)
        self._read_own_writes()
        with self.ws.db.read() as s:
            rid = self._resolve(s, _run_id_of(run_id))
            total, lo, hi = _fetch(s, "SELECT count(*), min(step), max(step) FROM metrics "
                                      "WHERE run_id = :r AND key = :k", {"r": rid, "k": key})[0]
            return _read_series(s, rid, key, total, lo, hi, envelope)

    def metric_series_many(self, run_ids: Iterable[str | RunInfo | ActiveRun], key: str, *,
                           envelope: int | None = None) -> dict[str, MetricSeries]:
        """:meth:`metric_series` of one metric for many runs, in a few queries
        rather than one per run: the points of every run whose metric is short
        are read together; each long one (over ``4 * envelope`` points) is
        read as its envelope. Runs that did not log ``key`` are left out.

        Parameters
        ----------
        run_ids
            Full run ids, RunInfo or ActiveRun objects.

        Returns
        -------
        dict
            Run id → :class:`MetricSeries`, in the order given.
        """
        import numpy as np

        check_key(key, "metric")
        _check_envelope(envelope)
        ids = list(dict.fromkeys(_run_id_of(r) for r in run_ids))
        self._read_own_writes()
        found: dict[str, MetricSeries] = {}
        with self.ws.db.read() as s:
            for chunk in (ids[i:i + 900] for i in range(0, len(ids), 900)):
                marks = ", ".join(f":i{j}" for j in range(len(chunk)))
                args = {"k": key, **{f"i{j}": x for j, x in enumerate(chunk)}}
                stats = {r[0]: r[1:] for r in _fetch(
                    s, "SELECT run_id, count(*), min(step), max(step) FROM metrics "
                       f"WHERE key = :k AND run_id IN ({marks}) GROUP BY run_id", args)}
                short = [x for x in chunk if x in stats
                         and (envelope is None or stats[x][0] <= 4 * envelope)]
                if short:
                    marks = ", ".join(f":i{j}" for j in range(len(short)))
                    rows = _fetch(s, "SELECT run_id, step, value, is_nan, timestamp FROM metrics "
                                     f"WHERE key = :k AND run_id IN ({marks}) "
                                     "ORDER BY run_id, step, id",
                                  {"k": key, **{f"i{j}": x for j, x in enumerate(short)}},
                                  dtype=[("run_id", "U32"), *SERIES_DTYPE])
                    cuts = np.flatnonzero(rows["run_id"][1:] != rows["run_id"][:-1]) + 1
                    for part in np.split(rows, cuts):
                        if len(part):
                            rid = str(part["run_id"][0])
                            found[rid] = _series(part, stats[rid][0])
                for x in chunk:
                    if x in stats and x not in found:
                        found[x] = _read_series(s, x, key, *stats[x], envelope)
        return {x: found[x] for x in ids if x in found}

    def compare(self, run_ids: Iterable[str | RunInfo | ActiveRun]) -> pd.DataFrame:
        """Runs side by side: one column per run, one row per attribute, param,
        metric (latest value) and tag (``attributes.status``, ``params.lr``, ...).
        A run without a param or metric shows ``None``/NaN there."""
        import pandas as pd

        infos = [self.get(r) for r in run_ids]
        if not infos:
            raise TrackingError("compare needs at least one run id")
        attrs = ["experiment", "name", "status", "parent_id", "start_time", "end_time",
                 "wall_seconds", "cpu_seconds", "peak_memory_mb", "seed"]
        index: list[str] = [f"attributes.{a}" for a in attrs]
        for section in ("params", "metrics", "tags"):
            keys = sorted({k for info in infos for k in getattr(info, section)})
            index += [f"{section}.{k}" for k in keys]
        data = {}
        for info in infos:
            column = []
            for row in index:
                section, key = row.split(".", 1)
                if section == "attributes":
                    column.append(getattr(info, key))
                else:
                    column.append(getattr(info, section).get(key))
            data[info.id] = column
        return pd.DataFrame(data, index=pd.Index(index, name="field"), dtype=object)

    def environment(self, run_id: str | RunInfo | ActiveRun) -> dict:
        """The captured environment of a run (``{}`` if none was recorded)."""
        info = self.get(run_id)
        if info.environment_digest is None:
            return {}
        return json.loads(self.ws.artifacts.get_bytes(info.environment_digest))

    def artifacts(self, run_id: str | RunInfo | ActiveRun) -> list[RunArtifact]:
        """The files a run logged, sorted by path."""
        with self.ws.db.read() as s:
            rid = self._resolve(s, _run_id_of(run_id))
            rows = s.execute(select(RunArtifactRow.path, RunArtifactRow.digest,
                                    RunArtifactRow.size_bytes, RunArtifactRow.created_at)
                             .where(RunArtifactRow.run_id == rid)
                             .order_by(RunArtifactRow.path)).all()
        return [RunArtifact(*r) for r in rows]

    def artifact(self, run_id: str | RunInfo | ActiveRun, path: str) -> RunArtifact:
        """The record of one logged file: path, digest, size, time.

        Raises
        ------
        NotFoundError
            The run has no artifact at ``path``.
        """
        clean = _check_path(path)
        with self.ws.db.read() as s:
            rid = self._resolve(s, _run_id_of(run_id))
            row = s.execute(select(RunArtifactRow.path, RunArtifactRow.digest,
                                   RunArtifactRow.size_bytes, RunArtifactRow.created_at)
                            .where(RunArtifactRow.run_id == rid,
                                   RunArtifactRow.path == clean)).first()
            if row is None:
                have = s.execute(select(RunArtifactRow.path).where(RunArtifactRow.run_id == rid)
                                 .order_by(RunArtifactRow.path).limit(10)).scalars().all()
                raise NotFoundError(f"run {rid[:8]} has no artifact {clean!r}",
                                    hint=f"it has: {', '.join(have)}" if have
                                    else "it logged no artifacts")
        return RunArtifact(*row)

    def load_artifact(self, run_id: str | RunInfo | ActiveRun, path: str) -> bytes:
        """The content of one logged file, verified against its digest (all
        of it in memory: see :meth:`stream_artifact` for big files).

        Raises
        ------
        NotFoundError
            The run has no artifact at ``path``.
        """
        return self.ws.artifacts.get_bytes(self.artifact(run_id, path).digest)

    def stream_artifact(self, run_id: str | RunInfo | ActiveRun, path: str, *,
                        chunk_size: int = 256 * 1024) -> tuple[RunArtifact, Iterator[bytes]]:
        """One logged file as its record and an iterator of chunks, read in
        bounded memory and verified as they go (see
        :meth:`shipyard.store.ArtifactStore.iter_bytes`)."""
        found = self.artifact(run_id, path)
        return found, self.ws.artifacts.iter_bytes(found.digest, chunk_size)

    def artifact_head(self, run_id: str | RunInfo | ActiveRun, path: str,
                      max_bytes: int) -> tuple[RunArtifact, bytes]:
        """One logged file's record and its first ``max_bytes`` bytes, for a
        preview: no more of the file is read (unless the store encrypts), and
        the head is not verified against the digest.

        >>> import tempfile, shipyard
        >>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
        >>> with ws.start_run("demo") as run:
        ...     _ = run.log_text("log.txt", "x" * 10_000)
        >>> record, head = ws.runs.artifact_head(run.id, "log.txt", 100)
        >>> record.size_bytes, len(head)
        (10000, 100)
        >>> ws.close()
        """
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise TrackingError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
        found = self.artifact(run_id, path)
        return found, self.ws.artifacts.read_head(found.digest, max_bytes)

    def inputs(self, run_id: str | RunInfo | ActiveRun) -> list[str]:
        """Refs (``name@version``) of the dataset versions a run read."""
        with self.ws.db.read() as s:
            rid = self._resolve(s, _run_id_of(run_id))
            rows = s.execute(select(DatasetRow.name, DatasetVersionRow.version)
                             .join(DatasetVersionRow, DatasetVersionRow.dataset_id == DatasetRow.id)
                             .join(RunInputRow,
                                   RunInputRow.dataset_version_id == DatasetVersionRow.id)
                             .where(RunInputRow.run_id == rid)
                             .order_by(DatasetRow.name, DatasetVersionRow.version)).all()
        return [f"{n}@{v}" for n, v in rows]

    # ------------------------------------------------------------- orphans
    def reap_orphans(self, *, dry_run: bool = False) -> list[RunProcess]:
        """End ``KILLED`` the ``RUNNING`` runs whose process is gone for good.

        A run that records its process (the :data:`PROCESS_TAG` tag, see
        :func:`process_tags`) is checked on this host. When that process no
        longer exists, is a zombie, its pid now belongs to a process started
        later (Linux compares start times), or the host has restarted since,
        nothing will ever end the run: it is marked ``KILLED``, its ``error``
        saying why, its end time set to its last sign of life (latest metric,
        artifact or child run). A run that records no process is judged by its
        nearest running ancestor that does (nested runs, such as trials, are
        started by their parent's process); one with neither is left alone,
        as are runs recorded on another host, whose processes cannot be seen
        from here.

        One query over running runs, then a look at ``/proc`` per process:
        cheap enough to call whenever a training starts.

        Parameters
        ----------
        dry_run
            Only report; change nothing.

        Returns
        -------
        list of RunProcess
            Every running run looked at, with its verdict, oldest first.
        """
        self._read_own_writes()
        with self.ws.db.read() as s:
            rows = s.execute(
                select(RunRow.id, ExperimentRow.name, RunRow.name, RunRow.parent_id,
                       RunRow.start_time, TagRow.value)
                .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
                .outerjoin(TagRow, (TagRow.run_id == RunRow.id) & (TagRow.key == PROCESS_TAG))
                .where(RunRow.status == "RUNNING")
                .order_by(RunRow.start_time, RunRow.id)).all()
        recorded = {r[0]: _parse_process(r[5]) for r in rows}
        parents = {r[0]: r[3] for r in rows}
        host, boot = socket.gethostname(), _boot_id()
        checks = []
        for rid, experiment, name, parent_id, started, _ in rows:
            process, via, seen = recorded[rid], None, {rid}
            while process is None and parent_id in recorded and parent_id not in seen:
                seen.add(parent_id)
                process, via = recorded[parent_id], parent_id
                parent_id = parents[parent_id]
            verdict, reason = _judge(process, host, boot)
            if via is not None and process is not None:
                reason += f" (recorded by its ancestor run {via[:8]})"
            checks.append(RunProcess(
                run_id=rid, experiment=experiment, name=name, parent_id=parents[rid],
                start_time=started, host=process[0] if process else None,
                pid=process[1] if process else None, verdict=verdict, reason=reason))
        gone = [c for c in checks if c.verdict == "gone"]
        if dry_run or not gone:
            return checks
        with self.ws.db.read() as s:
            last = self._last_signs_of_life(s, [c.run_id for c in gone])
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now))

        def write(session: Session) -> set[str]:
            killed = set()
            for c in gone:
                end = min(max(c.start_time, last.get(c.run_id, c.start_time)), now)
                # Only if still RUNNING: it may have ended since we looked.
                done = session.execute(
                    RunRow.__table__.update()
                    .where(RunRow.id == c.run_id, RunRow.status == "RUNNING")
                    .values(status="KILLED", end_time=end,
                            error=f"orphaned: {c.reason}; marked KILLED by Shipyard at {stamp}"))
                if done.rowcount:
                    killed.add(c.run_id)
            return killed

        killed = self.ws.db.retry(write)
        for c in gone:
            if c.run_id in killed:
                log.info("shipyard: run %s was orphaned (%s); marked KILLED", c.run_id[:8],
                         c.reason)
        return [dataclasses.replace(c, killed=True) if c.run_id in killed else c
                for c in checks]

    @staticmethod
    def _last_signs_of_life(session: Session, ids: list[str]) -> dict[str, float]:
        """Per run, the latest time it showed activity: its metrics, its
        artifacts, its child runs starting or ending."""
        last: dict[str, float] = {}
        sources = ((LatestMetricRow.run_id, LatestMetricRow.timestamp),
                   (RunArtifactRow.run_id, RunArtifactRow.created_at),
                   (RunRow.parent_id, func.coalesce(RunRow.end_time, RunRow.start_time)))
        for chunk in (ids[i:i + 900] for i in range(0, len(ids), 900)):
            for key, when in sources:
                for rid, ts in session.execute(select(key, func.max(when))
                                               .where(key.in_(chunk)).group_by(key)):
                    if ts is not None:
                        last[rid] = max(last.get(rid, ts), ts)
        return last


# ------------------------------------------------------------- active run
class ActiveRun:
    """A run in progress: log to it, then end it (or let ``with`` end it).

    Metric logging is buffered (see :class:`~shipyard.tracking._buffer.MetricBuffer`);
    params, tags, artifacts and inputs are written at once.
    """

    def __init__(self, runs: Runs, run_id: str, *, experiment: str, name: str | None,
                 parent_id: str | None, seed: int, params: dict[str, str]):
        self._runs = runs
        self._buffer = runs._buffer
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self.parent_id = parent_id
        self.seed = seed
        self.status = "RUNNING"
        self._params = dict(params)
        self._metric_keys: set[str] = set()
        self._steps: dict[str, int] = {}
        self._lock = threading.Lock()
        self._usage = Usage.now()

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return (f"ActiveRun(id={self.id[:8]!r}, experiment={self.experiment!r}{name}, "
                f"status={self.status!r})")

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.end("FINISHED")
            return False
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status, error=_error_text(exc_type, exc, tb))
        except Exception as end_exc:  # never hide the user's exception behind ours
            log.error("shipyard: could not mark run %s %s: %s", self.id, status, end_exc)
        return False

    def _check_active(self) -> None:
        if self.status != "RUNNING":
            raise TrackingError(f"run {self.id[:8]} has ended ({self.status}); nothing more "
                                "can be logged to it", hint="start a new run")

    @property
    def runs(self) -> Runs:
        """The workspace's runs this run belongs to."""
        return self._runs

    @property
    def info(self) -> RunInfo:
        """The run as stored now (flushes buffered metrics first)."""
        return self._runs.get(self.id)

    # ------------------------------------------------------------- metrics
    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: float | None = None) -> None:
        """Log one metric value (buffered; microseconds).

        Parameters
        ----------
        key
            Metric name, at most 250 printable characters.
        value
            A finite number or NaN.
        step
            Default: one more than the last step logged for ``key`` (0 first).
        timestamp
            Epoch seconds; default now.
        """
        if self.status != "RUNNING":
            self._check_active()
        if key not in self._metric_keys:
            self._metric_keys.add(check_key(key, "metric"))
        value = metric_value(key, value)
        ts = time.time() if timestamp is None else _timestamp(timestamp)
        with self._lock:
            if step is None:
                step = self._steps.get(key, 0)
            else:
                step = _step(step)
            nxt = self._steps.get(key, 0)
            self._steps[key] = step + 1 if step >= nxt else nxt
        self._buffer.add((self.id, key, value, step, ts))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        """Log several metrics at one step (each key auto-increments its own
        step when ``step`` is omitted). All are validated before any is queued."""
        self._check_active()
        if not isinstance(metrics, Mapping):
            raise TrackingError(f"log_metrics takes a mapping, got {type(metrics).__name__}")
        ts = time.time() if timestamp is None else _timestamp(timestamp)
        checked = []
        for key, value in metrics.items():
            if key not in self._metric_keys:
                check_key(key, "metric")
            checked.append((key, metric_value(key, value)))
        fixed = None if step is None else _step(step)
        points = []
        with self._lock:
            for key, value in checked:
                self._metric_keys.add(key)
                nxt = self._steps.get(key, 0)
                s = nxt if fixed is None else fixed
                self._steps[key] = s + 1 if s >= nxt else nxt
                points.append((self.id, key, value, s, ts))
        self._buffer.extend(points)

    def flush(self) -> None:
        """Make every metric logged so far durable (commit it) now."""
        self._buffer.flush()

    # ---------------------------------------------------------- params, tags
    def log_param(self, key: str, value: Any) -> None:
        """Log one parameter (stored as ``str(value)``); see :meth:`log_params`."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters, stored as strings.

        Raises
        ------
        TrackingError
            A key was already logged with a different value: params are immutable.
        """
        self._check_active()
        new = self._runs._params_dict(params)
        for k, v in new.items():
            if k in self._params and self._params[k] != v:
                raise self._param_conflict(k, self._params[k], v)
        todo = {k: v for k, v in new.items() if k not in self._params}
        if not todo:
            return

        def write(session: Session) -> None:
            stored = dict(session.execute(select(ParamRow.key, ParamRow.value).where(
                ParamRow.run_id == self.id, ParamRow.key.in_(list(todo)))).all())
            for k, v in stored.items():
                if v != todo[k]:
                    raise self._param_conflict(k, v, todo[k])
            session.add_all(ParamRow(run_id=self.id, key=k, value=v)
                            for k, v in todo.items() if k not in stored)

        try:
            self._runs.ws.db.retry(write)
        except IntegrityError as exc:
            raise TrackingError(f"could not log params of run {self.id[:8]}: {exc.orig}") from exc
        self._params.update(todo)

    def _param_conflict(self, key: str, old: str, new: str) -> TrackingError:
        return TrackingError(
            f"param {key!r} of run {self.id[:8]} is already {old!r:.80}, cannot change it "
            f"to {new!r:.80}: params are immutable",
            hint="start a new run for a new configuration, or record changing values "
                 "as tags or metrics")

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (stored as ``str(value)``); tags may be overwritten."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags at once, overwriting earlier values."""
        rows = self._runs._tags_dict(tags)
        if not rows:
            return

        def write(session: Session) -> None:
            insert = _upsert(session)
            stmt = insert(TagRow)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}),
                [{"run_id": self.id, "key": k, "value": v} for k, v in rows.items()])

        self._runs.ws.db.retry(write)

    # ------------------------------------------------------------ artifacts
    def log_bytes(self, path: str, data: bytes) -> str:
        """Store ``data`` as the run's artifact ``path``; return its digest.
        Logging the same path again replaces it."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TrackingError(f"log_bytes takes bytes, got {type(data).__name__}",
                                hint="use log_dict for JSON or log_text for text")
        clean = _check_path(path)
        data = bytes(data)
        digest = self._runs.ws.artifacts.put_bytes(data)
        self._record_artifact(clean, digest, len(data))
        return digest

    def log_text(self, path: str, text: str) -> str:
        """Store ``text`` (UTF-8) as the artifact ``path``."""
        return self.log_bytes(path, text.encode("utf-8"))

    def log_dict(self, path: str, obj: Any) -> str:
        """Store ``obj`` as JSON at the artifact ``path``."""
        try:
            text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TrackingError(f"cannot log {path!r} as JSON: {exc}",
                                hint="convert values to str, int, float, list or dict") from exc
        return self.log_bytes(path, text.encode("utf-8"))

    def log_artifact(self, local_path: str | os.PathLike, path: str | None = None) -> list[str]:
        """Store a local file, or every file under a local folder.

        Parameters
        ----------
        local_path
            File or folder to store.
        path
            Logical path of the file (default its name), or for a folder the
            prefix of its files (default the folder's name).

        Returns
        -------
        list of str
            The logical paths stored.
        """
        src = Path(local_path)
        if src.is_dir():
            prefix = _check_path(path or src.name)
            files = sorted(p for p in src.rglob("*") if p.is_file())
            pairs = [(f, f"{prefix}/{f.relative_to(src).as_posix()}") for f in files]
        elif src.is_file():
            pairs = [(src, path or src.name)]
        else:
            raise NotFoundError(f"cannot log artifact {str(src)!r}: no such file or folder")
        stored = []
        for file, logical in pairs:
            clean = _check_path(logical)
            digest = self._runs.ws.artifacts.put_file(file)
            self._record_artifact(clean, digest, file.stat().st_size)
            stored.append(clean)
        return stored

    def _record_artifact(self, path: str, digest: str, size: int) -> None:
        self._check_active()

        def write(session: Session) -> None:
            insert = _upsert(session)
            stmt = insert(RunArtifactRow).values(run_id=self.id, path=path, digest=digest,
                                                 size_bytes=size, created_at=time.time())
            session.execute(stmt.on_conflict_do_update(
                index_elements=["run_id", "path"],
                set_={"digest": stmt.excluded.digest, "size_bytes": stmt.excluded.size_bytes,
                      "created_at": stmt.excluded.created_at}))

        self._runs.ws.db.retry(write)

    def log_input(self, dataset_version: Any) -> None:
        """Record that this run read a dataset version (object or ``'adult@3'``)."""
        self._check_active()

        def write(session: Session) -> None:
            version_id = Runs._dataset_version_id(session, dataset_version)
            insert = _upsert(session)
            session.execute(insert(RunInputRow).values(run_id=self.id,
                                                       dataset_version_id=version_id)
                            .on_conflict_do_nothing())

        self._runs.ws.db.retry(write)

    def log_model(self, model: Any, *, sample: Any = None,
                  registered_model_name: str | None = None, **kwargs: Any) -> Any:
        """Save a model trained in this run into it, as ``shipyard train``
        saves its models: in a safe format (never pickle), with the signature
        inferred from ``sample``, tag ``model.digest`` and artifact
        ``model/signature.json``. A run holds one model.

        Parameters
        ----------
        model
            A fitted scikit-learn, LightGBM or XGBoost model, a torch module
            (exported to ONNX with ``sample`` as its input example), an ONNX
            graph, or a model file.
        sample
            A few input rows (DataFrame or 2-D array); needed except for ONNX.
        registered_model_name
            Also register the model as the next version of this name, as
            MLflow's ``log_model(..., registered_model_name=...)`` does;
            without it nothing is registered until
            ``ws.models.register(name, run.id)``.
        **kwargs
            ``task``, ``classes``, ``target`` and the registration's keywords:
            see :meth:`shipyard.registry.Registry.register`.

        Returns
        -------
        shipyard.registry.LoggedModel
            The model's digest, format and signature, and the registered
            version if any.
        """
        self._check_active()
        # The registry sits above tracking: reached through this run's
        # workspace at call time, never imported here.
        return self._runs.ws.models.log_model(self, model, sample=sample,
                                              registered_model_name=registered_model_name,
                                              **kwargs)

    # ---------------------------------------------------------- nesting, end
    def start_run(self, name: str | None = None, **kwargs: Any) -> ActiveRun:
        """Start a nested run (a trial) in this run's experiment."""
        self._check_active()
        return self._runs.start(self.experiment, name=name, parent=self, **kwargs)

    def end(self, status: str = "FINISHED", *, error: str | None = None) -> None:
        """End the run: flush its metrics, then record status, end time, CPU
        and wall time and the process's peak memory. Ending twice does nothing.

        Parameters
        ----------
        status
            ``FINISHED``, ``FAILED`` or ``KILLED``.
        error
            What went wrong, for a failed run.
        """
        status = str(status).upper()
        if status not in STATUSES[1:]:
            raise TrackingError(f"a run ends FINISHED, FAILED or KILLED, not {status!r}")
        with self._lock:
            if self.status != "RUNNING":
                return
            self.status = status
        flush_error: BaseException | None = None
        try:
            self._buffer.flush()
        except Exception as exc:  # still record the end; report the loss after
            flush_error = exc
        now = Usage.now()
        values = dict(status=status, end_time=time.time(), error=error,
                      cpu_seconds=now.cpu_seconds - self._usage.cpu_seconds,
                      wall_seconds=now.wall - self._usage.wall,
                      peak_memory_mb=peak_memory_mb())

        def write(session: Session) -> None:
            session.execute(RunRow.__table__.update().where(RunRow.id == self.id).values(**values))

        try:
            self._runs.ws.db.retry(write)
        finally:
            self._runs._ended(self.id)
        if flush_error is not None:
            raise flush_error


# ------------------------------------------------------------ processes
#: Tag naming the process that runs a run, as JSON: ``host``, ``pid`` and, on
#: Linux, ``start`` (``<boot id>:<start time in clock ticks>``, so that a later
#: process given the same pid is not mistaken for it). See
#: :meth:`Runs.reap_orphans`.
PROCESS_TAG = "shipyard.process"


def process_tags() -> dict[str, str]:
    """``{PROCESS_TAG: ...}`` naming this process, to add to a run's tags so
    that :meth:`Runs.reap_orphans` can end the run if the process dies.

    >>> json.loads(process_tags()[PROCESS_TAG])["pid"] == os.getpid()
    True
    """
    record: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    boot, stat = _boot_id(), _proc_stat(os.getpid())
    if boot is not None and stat is not None:
        record["start"] = f"{boot}:{stat[1]}"
    return {PROCESS_TAG: json.dumps(record, sort_keys=True, separators=(",", ":"))}


@dataclasses.dataclass(frozen=True)
class RunProcess:
    """A ``RUNNING`` run, the process recorded for it, and what became of it.

    Attributes
    ----------
    host, pid
        The recorded process (the run's own, or its nearest running
        ancestor's); None when there is none.
    verdict
        ``gone`` (nothing will end the run), ``alive``, ``other-host`` (cannot
        be checked from here) or ``unrecorded`` (no process recorded).
    reason
        The verdict in words.
    killed
        Whether this check marked the run ``KILLED`` (never on a dry run).
    """

    run_id: str
    experiment: str
    name: str | None
    parent_id: str | None
    start_time: float
    host: str | None
    pid: int | None
    verdict: str
    reason: str
    killed: bool = False


def _parse_process(value: str | None) -> tuple[str, int, str | None] | None:
    """``(host, pid, start)`` from a :data:`PROCESS_TAG` value; None if absent
    or not understood (then nothing is concluded from it)."""
    if not value:
        return None
    try:
        record = json.loads(value)
        host, pid, start = record["host"], record["pid"], record.get("start")
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(host, str) or isinstance(pid, bool) or not isinstance(pid, int) \
            or pid <= 0 or not (start is None or isinstance(start, str)):
        return None
    return host, pid, start


def _judge(process: tuple[str, int, str | None] | None, host: str,
           boot: str | None) -> tuple[str, str]:
    if process is None:
        return "unrecorded", "no process is recorded for it or a running ancestor; left alone"
    where, pid, start = process
    if where != host:
        return "other-host", (f"its process {pid} runs on {where}, which cannot be checked "
                              f"from {host}; left alone")
    why = _why_gone(pid, start, boot)
    if why is None:
        return "alive", f"its process {pid} on {where} is still running"
    return "gone", f"its process {pid} on {where} is gone: {why}"


def _why_gone(pid: int, start: str | None, boot: str | None) -> str | None:
    """Why process ``pid`` of this host, started at ``start``, cannot be
    running any more; None when it may be."""
    if start is not None and boot is not None and start.partition(":")[0] != boot:
        return "the host has restarted since"
    if os.name != "posix":
        return None  # os.kill(pid, 0) would not just probe on Windows: cannot tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "no such process"
    except PermissionError:
        pass  # it exists, run by another user
    except OSError:
        return None
    stat = _proc_stat(pid)
    if stat is None:  # exists, and /proc cannot tell more: assume it is ours
        return None
    state, ticks = stat
    if state in ("Z", "X", "x"):
        return "it has exited (a zombie not yet reaped by its parent)"
    if start is not None and start.partition(":")[2] != str(ticks):
        return "its pid now belongs to a process started later"
    return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks after boot) of process ``pid``,
    from ``/proc/<pid>/stat``; None where there is no such file."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # "pid (name) state ppid ...": the name may hold spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return fields[0].decode("ascii", "replace"), int(fields[19])
    except (IndexError, ValueError):
        return None


# ----------------------------------------------------------- process exit
_with_active: set[Runs] = set()


def _end_active_runs_at_exit() -> None:
    """End runs left active at interpreter exit, newest (innermost) first: FAILED
    if the program is dying of an unhandled exception, else FINISHED; then
    flush every metric buffer."""
    failed = getattr(sys, "last_value", None) if not hasattr(sys, "ps1") else None
    for runs in list(_with_active):
        for run in reversed(list(runs._active.values())):
            try:
                if failed is not None:
                    run.end("FAILED", error=_error_text(type(failed), failed,
                                                        failed.__traceback__))
                else:
                    run.end("FINISHED")
            except Exception as exc:
                log.error("shipyard: could not end run %s at exit: %s", run.id, exc)
    flush_all()


atexit.register(_end_active_runs_at_exit)
