"""Orphaned runs: a RUNNING run whose recorded process is gone is ended KILLED
with the reason; live processes, other hosts and unrecorded runs are left alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap


from shipyard.tracking._runs import PROCESS_TAG, process_tags



def dead_process_tag() -> str:
    """The process tag of a process that has exited (and been waited for)."""
    out = subprocess.run(
        [sys.executable, "-c", ("from shipyard.tracking._runs import process_tags, PROCESS_TAG;"
                                "print(process_tags()[PROCESS_TAG])")],
        capture_output=True, text=True, check=True)
    return out.stdout.strip()


def tag(**record) -> dict[str, str]:
    return {PROCESS_TAG: json.dumps(record)}


def verdicts(checks) -> dict[str, str]:
    return {c.run_id: c.verdict for c in checks}


def test_process_tags_name_this_process():
    record = json.loads(process_tags()[PROCESS_TAG])
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    if sys.platform.startswith("linux"):
        boot, _, ticks = record["start"].partition(":")
        assert boot and ticks.isdigit()


def test_a_run_is_ended_killed_once_its_process_is_killed(sqlite_workspace, tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        import shipyard
        from shipyard.tracking._runs import process_tags
        ws = shipyard.Workspace.open({str(tmp_path / "home")!r})
        run = ws.start_run("script", name="long", tags=process_tags())
        time.sleep(0.1)
        run.log_metric("loss", 0.5)
        run.flush()
        print(run.id, flush=True)
        time.sleep(600)
        """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        run_id = child.stdout.readline().strip()
        assert run_id, "the script did not start its run"
        mine = sqlite_workspace.start_run("here", tags=process_tags())

        checks = sqlite_workspace.runs.reap_orphans()
        assert verdicts(checks) == {run_id: "alive", mine.id: "alive"}
        assert not any(c.killed for c in checks)
        assert sqlite_workspace.runs.get(run_id).status == "RUNNING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()

    checks = sqlite_workspace.runs.reap_orphans()
    assert verdicts(checks) == {run_id: "gone", mine.id: "alive"}
    info = sqlite_workspace.runs.get(run_id)
    assert info.status == "KILLED" and mine.info.status == "RUNNING"
    assert f"its process {child.pid} on {socket.gethostname()} is gone" in info.error
    assert info.error.startswith("orphaned:") and "marked KILLED by Shipyard" in info.error
    last_metric = sqlite_workspace.runs.metric_history(run_id)["timestamp"].max()
    assert info.end_time == last_metric > info.start_time   # its last sign of life
    assert sqlite_workspace.runs.reap_orphans() == [c for c in checks if c.run_id == mine.id]
    mine.end()


def test_orphans_are_reaped_on_each_backend_and_a_dry_run_changes_nothing(workspace):
    orphan = workspace.start_run("e", tags={PROCESS_TAG: dead_process_tag()})
    workspace.runs._ended(orphan.id)        # as if its process had never ended it

    dry = workspace.runs.reap_orphans(dry_run=True)
    assert [(c.run_id, c.verdict, c.killed) for c in dry] == [(orphan.id, "gone", False)]
    assert workspace.runs.get(orphan.id).status == "RUNNING"

    [check] = workspace.runs.reap_orphans()
    assert check.killed and workspace.runs.get(orphan.id).status == "KILLED"
    assert workspace.runs.reap_orphans() == []


def test_a_pid_reused_by_a_later_process_is_not_taken_for_the_run_s(sqlite_workspace):
    assert sys.platform.startswith("linux"), "process start times come from /proc (Linux)"
    record = json.loads(process_tags()[PROCESS_TAG])
    boot, _, ticks = record["start"].partition(":")
    earlier = sqlite_workspace.start_run("e", tags=tag(**{**record,
                                                         "start": f"{boot}:{int(ticks) - 1}"}))
    rebooted = sqlite_workspace.start_run("e", tags=tag(**{**record, "start": f"x{boot}:{ticks}"}))
    for run in (earlier, rebooted):
        sqlite_workspace.runs._ended(run.id)     # this process will not end them

    checks = {c.run_id: c for c in sqlite_workspace.runs.reap_orphans()}
    assert "now belongs to a process started later" in checks[earlier.id].reason
    assert "host has restarted" in checks[rebooted.id].reason
    assert sqlite_workspace.runs.get(earlier.id).status == "KILLED"


def test_runs_of_other_hosts_and_runs_without_a_process_are_left_alone(sqlite_workspace):
    remote = sqlite_workspace.start_run("e", tags=tag(host="other-box", pid=1))
    unknown = sqlite_workspace.start_run("e")
    garbled = sqlite_workspace.start_run("e", tags={PROCESS_TAG: "pid 12"})

    checks = {c.run_id: c for c in sqlite_workspace.runs.reap_orphans()}
    assert checks[remote.id].verdict == "other-host" and "other-box" in checks[remote.id].reason
    assert checks[unknown.id].verdict == checks[garbled.id].verdict == "unrecorded"
    assert not any(c.killed for c in checks.values())
    assert {r.status for r in sqlite_workspace.runs.search()} == {"RUNNING"}
    for run in (remote, unknown, garbled):
        run.end()


def test_a_nested_run_without_a_process_goes_with_its_parent_s(sqlite_workspace):
    parent = sqlite_workspace.start_run("e", tags={PROCESS_TAG: dead_process_tag()})
    child = parent.start_run("final")
    grandchild = child.start_run("step")
    for run in (parent, child, grandchild):
        sqlite_workspace.runs._ended(run.id)

    checks = {c.run_id: c for c in sqlite_workspace.runs.reap_orphans()}
    assert all(c.killed for c in checks.values()) and len(checks) == 3
    assert f"ancestor run {parent.id[:8]}" in checks[grandchild.id].reason
    assert {sqlite_workspace.runs.get(r.id).status for r in (parent, child, grandchild)} \
        == {"KILLED"}
    # each ends at its last sign of life: here, its child starting
    ends = {r.id: sqlite_workspace.runs.get(r.id).end_time for r in (parent, child)}
    assert ends == {parent.id: sqlite_workspace.runs.get(child.id).start_time,
                    child.id: sqlite_workspace.runs.get(grandchild.id).start_time}
