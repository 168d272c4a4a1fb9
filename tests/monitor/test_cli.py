"""``shipyard monitor MODEL`` checks a window of real served traffic, stores
the report and fires alerts; ``--json`` prints JSON only; ``--every`` loops
until Ctrl-C; ``shipyard monitor alerts`` lists the history; hostile
arguments are clear errors without a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.alerting import WebhookReceiver, watched  # noqa: F401
from shipyard.cli import app
from shipyard.errors import NotFoundError, ShipyardError

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
runner = CliRunner()


def cli(ws, *args: str):
    return runner.invoke(app, ["--home", str(ws.settings.home), "monitor", *args])


def strict_json(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


@pytest.fixture
def policy_file(tmp_path):
    def write(url: str | None = None, **extra) -> Path:
        hooks = f"\n      webhooks: [{url}]" if url else ""
        path = tmp_path / "shipyard.yaml"
        path.write_text(f"""
name: toy
monitor:
  window: {{every: 1h}}
  alerts:
    - name: input_drift
      check: dataset_drift{hooks}
    - name: accuracy
      check: performance.accuracy
      threshold: 0.99
    - name: x0_moved
      check: drift.x0
""")
        return path
    return write


def test_a_check_prints_the_drift_table_and_fires_alerts(watched, policy_file, tmp_path):  # noqa: F811
    with WebhookReceiver() as hook:
        out = cli(watched, "toy", "--since", "1h", "--policy", str(policy_file(hook.url)),
                  "--html", str(tmp_path / "page.html"))
        assert out.exit_code == 0, out.output
        text = " ".join(out.stdout.split())
        assert "drift per column" in text and "x0" in text and "verdict alert" in text
        assert "alert FIRING input_drift" in text and "alert FIRING x0_moved" in text
        assert "webhooks: http://127.0.0.1:" in text and "delivered" in text
        [post] = hook.posts
        assert post["body"]["rule"] == "input_drift" and post["body"]["model"] == "toy"
    page = (tmp_path / "page.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64" in page
    assert watched.monitor.latest("toy").verdict == "alert"

    # again: still firing, nothing re-sent
    again = cli(watched, "toy", "--since", "1h", "--policy", str(policy_file()), "--json")
    assert again.exit_code == 0, again.output
    data = strict_json(again.stdout)
    assert data["verdict"] == "alert" and data["changes"] == []
    assert {a["rule"] for a in data["firing"]} >= {"input_drift", "x0_moved"}
    assert data["report"]["report"]["drift"]["x0"]["drifted"] is True
    assert {o["rule"]: o["bad"] for o in data["outcomes"]}["x0_moved"] is True

    listed = cli(watched, "alerts", "toy", "--json")
    assert listed.exit_code == 0, listed.output
    alerts = strict_json(listed.stdout)
    assert {a["rule"] for a in alerts} >= {"input_drift", "x0_moved"}
    assert all(a["state"] == "firing" and a["model"] == "toy" for a in alerts)
    table = cli(watched, "alerts")
    assert table.exit_code == 0 and "input_drift" in table.stdout and "firing" in table.stdout
    assert "no alerts" in cli(watched, "alerts", "--state", "resolved").stdout


def test_json_is_the_only_thing_on_stdout_in_a_real_process(watched, policy_file):  # noqa: F811
    env = {**os.environ, "SHIPYARD_HOME": str(watched.settings.home)}
    out = subprocess.run([SHIPYARD, "monitor", "toy", "--since", "1h", "--json"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    data = strict_json(out.stdout)
    assert data["report"]["model"] == "toy" and data["report"]["rows"] == 300


def test_every_loops_until_ctrl_c_and_stops_cleanly(watched):  # noqa: F811
    env = {**os.environ, "SHIPYARD_HOME": str(watched.settings.home)}
    proc = subprocess.Popen([SHIPYARD, "monitor", "toy", "--every", "1s", "--since", "1h",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # two checks
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped after" in stderr
    for line in lines + stdout.splitlines():
        assert strict_json(line)["report"]["model"] == "toy"  # JSON lines, one per check


def test_every_keeps_going_through_an_empty_window(watched):  # noqa: F811
    env = {**os.environ, "SHIPYARD_HOME": str(watched.settings.home)}
    proc = subprocess.Popen([SHIPYARD, "monitor", "toy", "--every", "1s", "--role", "shadow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = [proc.stderr.readline() for _ in range(2)]  # the first empty window's note
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "no report: no predictions of toy role shadow" in " ".join("".join(seen).split())
    assert "stopped after 0 checks" in stderr and stdout == ""


@pytest.mark.parametrize("args, message", [
    (["ghost"], "no model is called 'ghost'"),
    (["no such model"], "not a valid model name"),
    (["toy", "--role", "canary"], "role 'canary' is not one of"),
    (["toy", "--since", "1 fortnight"], "neither a duration nor a time"),
    (["toy", "--every", "soon"], "--every: 'soon' is not a duration"),
    (["toy", "--every", "0s"], "--every: a duration must be between"),
    (["toy", "--policy", "/nonexistent/shipyard.yaml"], "nonexistent"),
    (["toy", "--version", "1", "--role", "shadow"], "no predictions of toy version 1 role"),
    (["alerts", "--state", "open"], "alert state 'open'"),
    (["alerts", "ghost"], "no model is called 'ghost'"),
])
def test_hostile_arguments_are_clear_errors(watched, args, message):  # noqa: F811
    out = cli(watched, *args, "--json")
    assert isinstance(out.exception, ShipyardError), out.output
    assert message in " ".join(str(out.exception).split())
    assert out.stdout == ""


def test_an_error_in_a_real_process_is_one_line_on_stderr(watched):  # noqa: F811
    env = {**os.environ, "SHIPYARD_HOME": str(watched.settings.home)}
    out = subprocess.run([SHIPYARD, "monitor", "ghost", "--json"], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert out.returncode == 1 and out.stdout == ""
    assert "no model is called 'ghost'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("rule, message", [
    ("{name: a, check: vibes}", "unknown check 'vibes'"),
    ("{name: 'bad name!', check: dataset_drift}", "not a valid alert rule name"),
    ("{name: a, check: dataset_drift, webhooks: ['ftp://x']}", "not an http"),
    ("{name: a, check: performance.accuracy}", "needs a threshold"),
    ("{name: a, check: drift.nonexistent}", "no drift figure 'nonexistent'"),
])
def test_a_bad_policy_file_is_a_clear_error(watched, tmp_path, rule, message):  # noqa: F811
    path = tmp_path / "monitor.yaml"
    path.write_text(f"alerts:\n  - {rule}\n")
    out = cli(watched, "toy", "--since", "1h", "--policy", str(path))
    assert isinstance(out.exception, ShipyardError)  # main() prints it without a traceback
    assert message in " ".join(str(out.exception).split())
    assert out.stdout == ""


def test_monitor_alone_shows_help_and_a_model_named_like_a_command_is_reachable(watched):  # noqa: F811
    shown = runner.invoke(app, ["monitor"])
    assert "check" in shown.output and "alerts" in shown.output
    assert "shipyard monitor MODEL" in " ".join(shown.output.split())
    explicit = cli(watched, "check", "ghost")
    assert isinstance(explicit.exception, NotFoundError) and "ghost" in str(explicit.exception)
