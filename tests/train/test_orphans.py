"""A training coordinator killed with SIGKILL leaves nothing behind: its trial
workers and multiprocessing's resource tracker die with it, and the runs it
left RUNNING are ended KILLED, with the reason, when the search resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

import shipyard
from shipyard.cli import app


# Slow enough trials (a forest per fold) that the coordinator is mid-batch when killed.
SLOW_FOREST = """
    - name: forest
      estimator: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 150}
      search_space:
        max_depth: {type: int, low: 2, high: 6}"""


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    return int(fields[1]), fields[0].decode(), int(fields[19])


def _children(pid: int) -> dict[int, tuple[bytes, int]]:
    """Children of ``pid``: their command line and start time."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] == pid:
                try:
                    found[int(entry.name)] = ((entry / "cmdline").read_bytes(), stat[2])
                except OSError:
                    pass
    return found


def _running(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[1] not in "ZXx"


def test_workers_die_with_a_killed_coordinator_and_resume_ends_its_runs(
        tmp_path, toy_frame, project_yaml):
    home = tmp_path / "ws"
    with shipyard.Workspace.open(home) as ws:
        ws.datasets.register("toy", toy_frame())
    project = tmp_path / "shipyard.yaml"
    project.write_text(project_yaml(
        candidates=SLOW_FOREST,
        search="{kind: random, n_trials: 1000, batch_size: 2, n_jobs: 2}"))
    log = tmp_path / "coordinator.log"
    with log.open("wb") as out:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "shipyard", "--home", str(home), "train", str(project)],
            stdout=out, stderr=subprocess.STDOUT)
    spawned: dict[int, tuple[bytes, int]] = {}
    try:
        deadline = time.monotonic() + 180
        while True:
            spawned = _children(coordinator.pid)
            workers = [p for p, (cmd, _) in spawned.items() if b"spawn_main" in cmd]
            if len(workers) == 2:
                break
            assert coordinator.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no workers appeared:\n{log.read_text()}"
            time.sleep(0.2)
        assert any(b"resource_tracker" in cmd for cmd, _ in spawned.values())

        os.kill(coordinator.pid, signal.SIGKILL)
        coordinator.wait()

        deadline = time.monotonic() + 20
        while (left := [p for p, (_, t) in spawned.items() if _running(p, t)]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, {p: spawned[p][0] for p in left}
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
        for pid, (_, started) in spawned.items():
            if _running(pid, started):
                os.kill(pid, signal.SIGKILL)

    with shipyard.Workspace.open(home) as ws:
        study = ws.runs.search(filter="tags.kind = 'study'")[0]
        in_flight = ws.runs.search(parent=study.id, status="RUNNING")
        assert study.status == "RUNNING" and in_flight     # what the kill left

    report = CliRunner().invoke(app, ["--home", str(home), "runs", "gc", "--dry-run", "--json"])
    assert report.exit_code == 0, report.output
    gone = {c["run_id"]: c for c in json.loads(report.output) if c["verdict"] == "gone"}
    assert set(gone) == {study.id, *(r.id for r in in_flight)}
    assert gone[study.id]["pid"] == coordinator.pid and not gone[study.id]["killed"]

    # The resume (one process, two trials) ends what the killed coordinator left.
    with shipyard.Workspace.open(home) as ws:
        assert ws.runs.get(study.id).status == "RUNNING"    # the dry run changed nothing
    project.write_text(project_yaml(candidates=SLOW_FOREST,
                                    search="{kind: random, n_trials: 2, batch_size: 2}"))
    resumed = CliRunner().invoke(app, ["--home", str(home), "train", str(project)])
    assert resumed.exit_code == 0, resumed.output
    with shipyard.Workspace.open(home) as ws:
        killed = ws.runs.get(study.id)
        assert killed.status == "KILLED" and killed.end_time is not None
        assert f"process {coordinator.pid} on " in killed.error
        assert "orphaned" in killed.error and "no such process" in killed.error
        for run in in_flight:
            trial = ws.runs.get(run.id)
            assert trial.status == "KILLED" and str(coordinator.pid) in trial.error
        studies = ws.runs.search(filter="tags.kind = 'study'")
        assert [r.status for r in studies] == ["FINISHED", "KILLED"]    # newest first
