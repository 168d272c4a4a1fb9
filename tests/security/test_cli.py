"""`shipyard audit ...` through the real Typer app."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner

from shipyard import Workspace
from shipyard.cli import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    wide = Console(width=200, force_terminal=False, color_system=None)
    monkeypatch.setattr("shipyard.cli._audit.console", wide)
    monkeypatch.setattr("shipyard.cli._audit.err_console",
                        Console(width=200, stderr=True, color_system=None))
    ws = Workspace.open(home)
    for i in range(3):
        ws.datasets.register(f"d{i}", pd.DataFrame({"x": [i]}), created_by="ana")
    ws.close()
    return str(home)


def invoke(home, *args):
    return runner.invoke(app, ["--home", home, *args])


def test_list_filters_and_limits(home):
    out = invoke(home, "audit", "list")
    assert out.exit_code == 0, out.output
    assert out.output.count("dataset.register") == 3 and "dataset:d2" in out.output
    out = invoke(home, "audit", "list", "--object", "dataset:d1")
    assert "dataset:d1" in out.output and "dataset:d0" not in out.output
    out = invoke(home, "audit", "list", "--limit", "1")
    assert out.output.count("dataset.register") == 1 and "dataset:d2" in out.output


def test_verify_passes_then_fails_after_tampering(home):
    out = invoke(home, "audit", "verify")
    assert out.exit_code == 0 and "intact: 3 entries" in out.output, out.output
    ws = Workspace.open(home)
    with ws.db.write() as s:
        s.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    ws.close()
    out = invoke(home, "audit", "verify")
    assert out.exit_code == 1
    assert "seq 2" in out.output and "edited" in out.output


def test_export_writes_json_lines(home, tmp_path):
    target = tmp_path / "audit.jsonl"
    out = invoke(home, "audit", "export", str(target))
    assert out.exit_code == 0 and "wrote 3 entries" in out.output, out.output
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3] and lines[0]["actor"] == "ana"
