"""``shipyard runs gc``: ends runs whose process is gone, says what it left alone."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import shipyard
from shipyard.cli import app
from shipyard.tracking._runs import PROCESS_TAG, process_tags

runner = CliRunner()


def _dead_process_tag() -> str:
    out = subprocess.run(
        [sys.executable, "-c", ("from shipyard.tracking._runs import process_tags, PROCESS_TAG;"
                                "print(process_tags()[PROCESS_TAG])")],
        capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_runs_gc_ends_orphans_and_leaves_other_hosts_alone(tmp_path):
    home = ["--home", str(tmp_path)]
    with shipyard.Workspace.open(tmp_path) as ws:
        orphan = ws.start_run("exp", name="crashed", tags={PROCESS_TAG: _dead_process_tag()})
        remote = ws.start_run("exp", name="remote",
                              tags={PROCESS_TAG: json.dumps({"host": "other-box", "pid": 7})})
        alive = ws.start_run("exp", name="alive", tags=process_tags())
        for run in (orphan, remote, alive):
            ws.runs._ended(run.id)   # let gc judge them, not this process's exit

    dry = runner.invoke(app, [*home, "runs", "gc", "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output
    assert "would mark 1 run KILLED" in dry.output and orphan.id[:8] in dry.output
    assert "1 left alone: recorded on another host (other-box)" in " ".join(dry.output.split())
    assert "1 still running" in dry.output

    done = runner.invoke(app, [*home, "runs", "gc"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "marked 1 run KILLED" in done.output and "crashed" in done.output

    again = runner.invoke(app, [*home, "runs", "gc", "--json"])
    assert again.exit_code == 0, again.output
    checks = {c["name"]: c for c in json.loads(again.output)}
    assert {n: c["verdict"] for n, c in checks.items()} == {"remote": "other-host",
                                                            "alive": "alive"}
    assert checks["remote"]["host"] == "other-box" and checks["remote"]["pid"] == 7
    with shipyard.Workspace.open(tmp_path) as ws:
        info = ws.runs.get(orphan.id)
        assert info.status == "KILLED" and "is gone" in info.error


def test_runs_gc_with_nothing_running(tmp_path):
    result = runner.invoke(app, ["--home", str(tmp_path), "runs", "gc"])
    assert result.exit_code == 0 and "no running runs" in result.output
