"""`shipyard models ...` through the real Typer app."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from shipyard import Workspace
from shipyard.cli import app
from shipyard.errors import NotFoundError
from shipyard.registry import RegistryError

from .trained import train_run

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A workspace with model fraud@1..3 (champion on 2) and one unregistered run."""
    home = tmp_path / "home"
    monkeypatch.setattr("shipyard.cli._models.console",
                        Console(width=200, force_terminal=False, color_system=None))
    monkeypatch.setenv("SHIPYARD_ACTOR", "cli-user")
    ws = Workspace.open(home)
    runs = [train_run(ws, seed=s) for s in range(4)]
    for r in runs[:3]:
        ws.models.register("fraud", r.run_id)
    ws.models.set_alias("fraud", "champion", 2)
    ws.close()
    return str(home), runs


def invoke(home, *args):
    return runner.invoke(app, ["--home", home, *args])


def test_list_and_show(home):
    path, runs = home
    out = invoke(path, "models", "list")
    assert out.exit_code == 0, out.output
    assert "fraud" in out.output and "champion→2" in out.output
    out = invoke(path, "models", "show", "fraud")
    assert out.exit_code == 0, out.output
    assert "champion" in out.output and "accuracy" in out.output
    assert runs[1].run_id[:8] in out.output
    out = invoke(path, "models", "show", "fraud@champion")
    assert out.exit_code == 0, out.output
    assert "fraud@2" in out.output and runs[1].digest in out.output and "signature" in out.output


def test_register_alias_rollback_archive(home):
    path, runs = home
    out = invoke(path, "models", "register", "fraud", runs[3].run_id[:10])
    assert out.exit_code == 0 and "registered fraud@4" in out.output, out.output
    out = invoke(path, "models", "alias", "fraud", "champion", "4", "--reason", "better auc")
    assert out.exit_code == 0 and "fraud@champion → fraud@4" in out.output, out.output
    out = invoke(path, "models", "rollback", "fraud", "champion", "-r", "canary failed")
    assert out.exit_code == 0 and "fraud@4 → fraud@2" in out.output, out.output
    out = invoke(path, "models", "archive", "fraud", "2")
    assert isinstance(out.exception, RegistryError) and "--force" in str(out.exception)
    out = invoke(path, "models", "archive", "fraud", "3")
    assert out.exit_code == 0 and "ARCHIVED" in out.output, out.output
    out = invoke(path, "models", "restore", "fraud", "3")
    assert out.exit_code == 0 and "READY" in out.output, out.output
    out = invoke(path, "models", "unalias", "fraud", "champion")
    assert out.exit_code == 0, out.output
    ws = Workspace.open(path)
    actions = [(e.action, e.actor, e.reason) for e in ws.audit.entries("model", "fraud")][-6:]
    assert actions == [
        ("model.register", "cli-user", None), ("model.alias.set", "cli-user", "better auc"),
        ("model.alias.rollback", "cli-user", "canary failed"),
        ("model.archive", "cli-user", None), ("model.restore", "cli-user", None),
        ("model.alias.remove", "cli-user", None)]
    ws.close()


def test_errors_are_library_errors(home):
    path, _ = home
    out = invoke(path, "models", "show", "nope")
    assert isinstance(out.exception, NotFoundError)
    out = invoke(path, "models", "alias", "fraud", "latest", "1")
    assert isinstance(out.exception, RegistryError) and "reserved" in str(out.exception)
    out = invoke(path, "models", "alias", "fraud", "champion", "x")
    assert out.exit_code == 2  # usage error: not a number


def test_help_explains_each_command():
    out = runner.invoke(app, ["models", "--help"])
    assert out.exit_code == 0
    for command in ("list", "show", "register", "alias", "rollback", "archive"):
        assert command in out.output
    out = runner.invoke(app, ["models", "rollback", "--help"])
    assert "undo" in out.output
