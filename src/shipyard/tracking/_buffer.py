"""Buffered metric writes: ``log_metric`` appends to memory, a thread writes batches.

A call to ``log_metric`` takes a lock and appends a tuple (about a microsecond).
A daemon thread writes what has accumulated every ``interval`` seconds, or
sooner once ``batch_size`` points wait, each batch in one transaction: a bulk
insert into ``metrics`` and an upsert of ``latest_metrics``. Explicit
:meth:`MetricBuffer.flush` (``run.flush()``, run end, ``ws.close()``, process
exit) writes everything in the caller's thread.

Durability: points are durable once a flush commits. A normal exit, a failed
run and ``ws.close()`` flush; a hard kill (SIGKILL, power loss) loses the
points logged since the last batch committed: at most ``interval`` plus the
time that batch takes to commit (a batch being written when the kill comes is
lost whole; its transaction never commits). ``run.flush()`` makes every point
logged so far durable before it returns.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import and_, insert, or_

from shipyard.errors import ShipyardError, TrackingError
from shipyard.store.tables import LatestMetricRow, MetricRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shipyard.store import Database

log = logging.getLogger("shipyard.tracking")

#: (run_id, key, value, step, timestamp)
Point = tuple[str, str, float, int, float]

_buffers: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()


class MetricBuffer:
    """Thread-safe buffer of metric points for one database.

    Parameters
    ----------
    db
        The metadata database to write to.
    interval
        Seconds between background flushes.
    batch_size
        Wake the flusher early once this many points wait.
    max_pending
        Back-pressure: beyond this many waiting points (the database is slower
        than the logging), the logging thread flushes itself.
    """

    def __init__(self, db: Database, *, interval: float = 0.5, batch_size: int = 20_000,
                 max_pending: int = 1_000_000):
        self.db = db
        self.interval = interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._init_state()
        _buffers.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()      # guards _pending
        self._io_lock = threading.Lock()   # one writer at a time keeps batches in order
        self._pending: list[Point] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"MetricBuffer(interval={self.interval}, batch_size={self.batch_size}, "
                f"pending={len(self._pending)})")

    @property
    def pending(self) -> int:
        return len(self._pending)

    # --------------------------------------------------------------- write
    def add(self, point: Point) -> None:
        """Queue one point (the hot path: keep it tiny)."""
        with self._lock:
            self._pending.append(point)
            n = len(self._pending)
        self._queued(n)

    def extend(self, points: Iterable[Point]) -> None:
        """Queue several points at once."""
        with self._lock:
            self._pending.extend(points)
            n = len(self._pending)
        self._queued(n)

    def _queued(self, n: int) -> None:
        """After queueing: start the writer, wake it, or write now when full."""
        if self._thread is None:
            self._start()
        if n >= self.batch_size:
            if n >= self.max_pending:
                self.flush()
            else:
                self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="shipyard-metrics",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # keep the points; the next flush retries
                log.warning("shipyard: could not write metrics, will retry: %s", exc)

    # --------------------------------------------------------------- flush
    def flush(self) -> int:
        """Write every queued point now, in this thread; return how many.

        Raises
        ------
        TrackingError
            The database refused the batch; the points stay queued.
        """
        with self._io_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self.db.retry(lambda session: write_points(session, batch))
            except BaseException as exc:
                with self._lock:  # put them back in front, in order
                    self._pending[:0] = batch
                if isinstance(exc, ShipyardError) or not isinstance(exc, Exception):
                    raise
                raise TrackingError(f"could not write {len(batch)} metric points: {exc}") from exc
            return len(batch)

    def close(self) -> None:
        """Flush and stop the background thread (a later ``add`` restarts it)."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake.set()
            if thread is not threading.current_thread():
                thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _after_fork(self) -> None:
        # The child has no flusher thread, and the parent owns (and writes)
        # the points queued before the fork; start clean.
        self._init_state()


def write_points(session: Session, points: list[Point]) -> None:
    """Insert ``points`` and upsert ``latest_metrics`` in ``session``'s transaction."""
    rows = []
    latest: dict[tuple[str, str], Point] = {}
    for p in points:
        run_id, key, value, step, ts = p
        nan = value != value
        rows.append({"run_id": run_id, "key": key, "value": 0.0 if nan else value,
                     "step": step, "timestamp": ts, "is_nan": nan})
        prev = latest.get((run_id, key))
        # MLflow's rule: the latest value has the greatest (step, timestamp).
        if prev is None or (step, ts) >= (prev[3], prev[4]):
            latest[(run_id, key)] = p
    # Core insert on the Table: executemany without the ORM bulk-persistence layer.
    session.execute(insert(MetricRow.__table__), rows)

    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as upsert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise TrackingError(f"metric upserts are not implemented for {dialect}")
    stmt = upsert(LatestMetricRow.__table__)
    table = LatestMetricRow.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.run_id, table.c.key],
        set_={"value": stmt.excluded.value, "step": stmt.excluded.step,
              "timestamp": stmt.excluded.timestamp, "is_nan": stmt.excluded.is_nan},
        where=or_(stmt.excluded.step > table.c.step,
                  and_(stmt.excluded.step == table.c.step,
                       stmt.excluded.timestamp >= table.c.timestamp)),
    )
    session.execute(stmt, [
        {"run_id": r, "key": k, "value": 0.0 if v != v else v, "step": s, "timestamp": t,
         "is_nan": v != v}
        for r, k, v, s, t in latest.values()
    ])


def flush_all() -> None:
    """Flush every buffer of this process (used at exit)."""
    for buffer in list(_buffers):
        try:
            buffer.close()
        except Exception as exc:
            log.error("shipyard: metrics lost at exit: %s", exc)


def _after_fork_in_child() -> None:
    for buffer in list(_buffers):
        buffer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
