import base64
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from shipyard.cli import app

runner = CliRunner()
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def test_help_lists_the_command_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "data", "runs", "gc", "info", "new-key"):
        assert command in result.output


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from shipyard.cli import app; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'pandera', 'alembic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_info_shows_the_workspace(tmp_path):
    result = runner.invoke(app, ["--home", str(tmp_path), "info"])
    assert result.exit_code == 0, result.output
    from shipyard.store.migrations import HEAD

    flat = "".join(line.strip() for line in result.output.splitlines())
    assert str(tmp_path / "shipyard.db") in flat and HEAD in flat


def test_new_key_prints_a_usable_32_byte_key(tmp_path):
    result = runner.invoke(app, ["new-key"])
    key = result.output.strip()
    assert len(base64.b64decode(key)) == 32
    env = {**os.environ, "SHIPYARD_ENCRYPTION_KEY": key}
    out = subprocess.run([SHIPYARD, "--home", str(tmp_path), "info"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "AES-256-GCM" in out.stdout


def test_gc_reports_and_deletes_orphans(tmp_path):
    from shipyard import Workspace

    ws = Workspace.open(tmp_path)
    digest = ws.artifacts.put_bytes(b"orphan")
    path = tmp_path / "artifacts" / "blobs" / digest[:2] / digest
    os.utime(path, (time.time() - 10_000,) * 2)
    ws.close()
    dry = runner.invoke(app, ["--home", str(tmp_path), "gc", "--dry-run"])
    assert "would delete 1" in dry.output and path.exists()
    done = runner.invoke(app, ["--home", str(tmp_path), "gc"])
    assert "deleted 1" in done.output and not path.exists()


def test_errors_print_without_traceback_and_exit_nonzero(tmp_path):
    env = {**os.environ, "SHIPYARD_ENCRYPTION_KEY": "not-a-key"}
    out = subprocess.run([SHIPYARD, "--home", str(tmp_path), "info"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "error:" in out.stderr and "32-byte key" in out.stderr and "shipyard new-key" in out.stderr
    assert "Traceback" not in out.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    env = {**os.environ, "SHIPYARD_DB_URL": "nosuchdialect://x"}
    out = subprocess.run([SHIPYARD, "--home", str(tmp_path), "--debug", "info"], env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr
    # the cause is kept (raise ... from exc), so --debug shows what really failed
    assert "direct cause of the following exception" in out.stderr
    assert "ArgumentError" in out.stderr or "NoSuchModuleError" in out.stderr


def test_unknown_command_is_a_usage_error():
    out = subprocess.run([SHIPYARD, "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "frobnicate" in out.stderr
