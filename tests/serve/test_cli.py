"""`shipyard keys ...` and `shipyard serve` through the real Typer app."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from shipyard import Workspace
from shipyard.cli import app
from shipyard.security import ApiKeys

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setattr("shipyard.cli._serve.console",
                        Console(width=200, force_terminal=False, color_system=None))
    Workspace.open(tmp_path / "home").close()
    return str(tmp_path / "home")


def invoke(home, *args):
    return runner.invoke(app, ["--home", home, *args])


def test_keys_create_list_revoke(home):
    out = invoke(home, "keys", "create", "frontend", "--scope", "predict", "--scope", "metrics",
                 "--rate-limit", "100", "--expires-in-days", "30", "-r", "launch")
    assert out.exit_code == 0, out.output
    secret = out.stdout.strip().splitlines()[-1]
    assert secret.startswith("shp_")
    with Workspace.open(home) as ws:
        info = ApiKeys(ws).verify(secret, "metrics")
        assert info.rate_limit_per_minute == 100 and info.expires_at is not None
    listed = invoke(home, "keys", "list")
    assert info.key_id in listed.output and "predict, metrics" in listed.output
    assert secret not in listed.output
    assert invoke(home, "keys", "revoke", info.key_id).exit_code == 0
    assert "revoked" in invoke(home, "keys", "list").output
    assert info.key_id not in invoke(home, "keys", "list", "--active").output
    bad = invoke(home, "keys", "revoke", "nope")
    assert bad.exit_code == 1 and "no API key 'nope'" in str(bad.exception)
    assert invoke(home, "keys", "create", "x", "--scope", "root").exit_code == 1


def test_serve_documents_tls_and_refuses_unknown_models_before_binding(home):
    text = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--ssl-keyfile", "--ssl-certfile", "--no-auth", "--max-body-bytes",
                 "--reload-interval", "--workers"):
        assert flag in text
    out = invoke(home, "serve", "nope@champion")
    assert out.exit_code == 1 and "nope" in str(out.exception)
    out = invoke(home, "serve", "x", "--ssl-keyfile", "k.pem")
    assert out.exit_code == 1 and "both --ssl-keyfile and --ssl-certfile" in str(out.exception)
