"""Buffered metric writes: nothing logged is lost, across threads, processes,
failures, exits and closes."""

import multiprocessing as mp
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import func, select

from shipyard import Workspace
from shipyard.errors import StoreError, TrackingError
from shipyard.store.tables import LatestMetricRow, MetricRow
from shipyard.tracking import MetricBuffer

POINTS_PER_PROCESS = 5_000


def stored_points(ws, run_id=None, key=None):
    """Count rows straight from the DB (no flush on the way)."""
    with ws.db.read() as s:
        q = select(func.count()).select_from(MetricRow)
        if run_id:
            q = q.where(MetricRow.run_id == run_id)
        if key:
            q = q.where(MetricRow.key == key)
        return s.execute(q).scalar()


def _log_in_process(home: str, worker: int, start: "mp.synchronize.Event") -> str:
    ws = Workspace.open(home)
    run = ws.start_run("concurrent", name=f"worker-{worker}")
    start.wait(60)
    for i in range(POINTS_PER_PROCESS):
        run.log_metric("loss", float(i), step=i)
        if i % 1000 == 0:
            run.log_metric("marker", float(worker))
    run.end()
    ws.close()
    return run.id


def test_four_processes_logging_to_one_sqlite_workspace_lose_nothing(tmp_path):
    home = str(tmp_path / "home")
    Workspace.open(home).close()  # create the schema once
    ctx = mp.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(4) as pool:
        pending = [pool.apply_async(_log_in_process, (home, w, start)) for w in range(4)]
        time.sleep(1.0)  # let the workers open the workspace, then log at the same time
        start.set()
        run_ids = [p.get(timeout=240) for p in pending]
    ws = Workspace.open(home)
    try:
        assert len(set(run_ids)) == 4
        assert stored_points(ws, key="loss") == 4 * POINTS_PER_PROCESS
        assert stored_points(ws) == 4 * (POINTS_PER_PROCESS + POINTS_PER_PROCESS // 1000)
        for rid in run_ids:
            assert stored_points(ws, rid, "loss") == POINTS_PER_PROCESS
            with ws.db.read() as s:
                steps = s.execute(select(MetricRow.step).where(
                    MetricRow.run_id == rid, MetricRow.key == "loss")).scalars().all()
            assert sorted(steps) == list(range(POINTS_PER_PROCESS))
            info = ws.runs.get(rid)
            assert info.status == "FINISHED"
            assert info.metrics["loss"] == POINTS_PER_PROCESS - 1
            assert info.metrics["marker"] == float(info.name.split("-")[1])
    finally:
        ws.close()


SCRIPT = """
import sys
from shipyard import Workspace
ws = Workspace.open(sys.argv[1])
run = ws.start_run("exit", name="{name}")
for i in range(3000):
    run.log_metric("m", float(i))
print(run.id, flush=True)
{ending}
"""


@pytest.mark.parametrize("name, ending, status", [
    ("plain-exit", "", "FINISHED"),
    ("sys-exit", "sys.exit(0)", "FINISHED"),
    ("crash", "raise RuntimeError('crashed at the top level')", "FAILED"),
])
def test_process_exit_flushes_and_ends_open_runs(tmp_path, name, ending, status):
    """The process never calls end, flush or close: the atexit hook does."""
    home = tmp_path / "home"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(name=name, ending=ending)))
    done = subprocess.run([sys.executable, str(script), str(home)], capture_output=True,
                          text=True, timeout=120)
    run_id = done.stdout.strip()
    assert len(run_id) == 32, done.stderr
    ws = Workspace.open(home)
    try:
        assert stored_points(ws, run_id) == 3000
        info = ws.runs.get(run_id)
        assert info.status == status
        assert info.metrics == {"m": 2999.0}
        if status == "FAILED":
            assert "RuntimeError: crashed at the top level" in info.error
    finally:
        ws.close()


def test_background_thread_writes_without_an_explicit_flush(workspace):
    run = workspace.start_run("bg")
    for i in range(100):
        run.log_metric("m", float(i))
    deadline = time.monotonic() + 10
    while stored_points(workspace, run.id) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_points(workspace, run.id) == 100
    assert workspace.runs._buffer.pending == 0
    run.end()


def test_flush_makes_points_durable_at_once(workspace):
    workspace.runs._buffer.interval = 3600  # only explicit flushes
    run = workspace.start_run("flush")
    run.log_metrics({"a": 1.0, "b": 2.0})
    run.log_metric("a", 3.0)
    run.flush()
    assert stored_points(workspace, run.id) == 3
    with workspace.db.read() as s:
        latest = dict(s.execute(select(LatestMetricRow.key, LatestMetricRow.value)
                                .where(LatestMetricRow.run_id == run.id)).all())
    assert latest == {"a": 3.0, "b": 2.0}
    run.end()


def test_closing_the_workspace_flushes(db_url, tmp_path):
    ws = Workspace.open(tmp_path / "home", db_url=db_url, artifacts=str(tmp_path / "a"))
    ws.runs._buffer.interval = 3600
    run = ws.start_run("close")
    for i in range(1234):
        run.log_metric("m", float(i))
    ws.close()
    again = Workspace.open(tmp_path / "home", db_url=db_url, artifacts=str(tmp_path / "a"))
    try:
        assert stored_points(again, run.id) == 1234
        assert again.runs.get(run.id).status == "RUNNING"  # closing does not end runs
    finally:
        run.end()
        again.close()


def test_threads_logging_to_one_run_lose_nothing(workspace):
    run = workspace.start_run("threads")

    def work(k):
        for i in range(2000):
            run.log_metric(f"k{k}", float(i))
            if i % 500 == 0:
                run.log_metrics({f"batch{k}": float(i)})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.end()
    assert stored_points(workspace, run.id) == 4 * (2000 + 4)
    info = workspace.runs.get(run.id)
    for k in range(4):
        assert info.metrics[f"k{k}"] == 1999.0
        history = workspace.runs.metric_history(run.id, f"k{k}")
        assert history["step"].tolist() == list(range(2000))  # per-key steps, no gaps


def test_latest_metric_keeps_the_greatest_step_across_batches(workspace):
    run = workspace.start_run("latest")
    run.log_metric("m", 10.0, step=10)
    run.flush()
    run.log_metric("m", 3.0, step=3)   # an older step arriving later
    run.flush()
    run.log_metric("m", 11.0, step=10, timestamp=time.time() + 5)  # same step, newer
    run.end()
    assert workspace.runs.get(run.id).metrics == {"m": 11.0}
    assert stored_points(workspace, run.id) == 3


def test_a_failed_write_keeps_the_points_for_the_next_flush(sqlite_workspace, monkeypatch):
    ws = sqlite_workspace
    buffer = ws.runs._buffer
    buffer.interval = 3600
    run = ws.start_run("retry")
    for i in range(10):
        run.log_metric("m", float(i))
    real_retry = ws.db.retry
    calls = []

    def failing_once(fn, **kw):
        if not calls:
            calls.append(1)
            raise StoreError("database is gone for a moment")
        return real_retry(fn, **kw)

    monkeypatch.setattr(ws.db, "retry", failing_once)
    with pytest.raises(StoreError):
        run.flush()
    assert buffer.pending == 10 and stored_points(ws, run.id) == 0
    run.log_metric("m", 10.0)
    run.flush()
    assert stored_points(ws, run.id) == 11
    assert ws.runs.metric_history(run.id, "m")["value"].tolist() == [float(i) for i in range(11)]
    run.end()


def test_ending_a_run_reports_points_it_could_not_write(sqlite_workspace, monkeypatch):
    ws = sqlite_workspace
    ws.runs._buffer.interval = 3600
    run = ws.start_run("lost")
    run.log_metric("m", 1.0)
    monkeypatch.setattr("shipyard.tracking._buffer.write_points",
                        lambda *a: (_ for _ in ()).throw(ValueError("disk on fire")))
    with pytest.raises(TrackingError, match="could not write 1 metric points: disk on fire"):
        run.end()
    monkeypatch.undo()
    assert ws.runs.get(run.id).status == "FINISHED"  # the end itself was recorded
    ws.runs.flush()
    assert stored_points(ws, run.id) == 1


def test_back_pressure_flushes_in_the_caller(sqlite_workspace):
    buffer = MetricBuffer(sqlite_workspace.db, interval=3600, batch_size=50, max_pending=50)
    run = sqlite_workspace.start_run("bp")
    for i in range(49):
        buffer.add((run.id, "m", float(i), i, 0.0))
    assert buffer.pending == 49 and stored_points(sqlite_workspace, run.id) == 0
    buffer.add((run.id, "m", 49.0, 49, 0.0))  # the 50th waits for the write itself
    assert buffer.pending == 0 and stored_points(sqlite_workspace, run.id) == 50
    buffer.close()
    run.end()
    assert "pending=0" in repr(buffer)
