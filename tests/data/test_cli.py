import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from shipyard import Workspace
from shipyard.cli import app
from shipyard.errors import ExpectationsFailed, NotFoundError

SHIPYARD = Path(sys.executable).parent / "shipyard"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``cli(*args)`` runs ``shipyard --home <tmp> ARGS`` in-process, wide output."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("SHIPYARD_DB_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_ARTIFACTS", raising=False)
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args):
        return runner.invoke(app, ["--home", str(home), *map(str, args)])

    invoke.home = home
    return invoke


@pytest.fixture
def csv_file(tmp_path, people):
    path = tmp_path / "people.csv"
    people.to_csv(path, index=False)
    return path


def test_add_list_show_profile_and_versions(cli, csv_file, people):
    result = cli("data", "add", "people", csv_file, "--description", "census [2024]")
    assert result.exit_code == 0, result.output
    assert "registered people@1 (8 rows x 5 columns" in result.output

    again = cli("data", "add", "people", csv_file)
    assert "people@1 already holds this content" in again.output

    listed = cli("data", "list")
    assert listed.exit_code == 0
    assert "people" in listed.output and "@1" in listed.output
    assert "census [2024]" in listed.output  # user text is not eaten as markup

    shown = cli("data", "show", "people@1")
    assert shown.exit_code == 0, shown.output
    for text in ("people@1", "8 x 5", "content hash", "people.csv", "joined",
                 "no expectations", "parents"):
        assert text in shown.output

    prof = cli("data", "profile", "people")
    assert prof.exit_code == 0, prof.output
    age_line = next(line for line in prof.output.splitlines() if "│ age" in line)
    assert f"{people['age'].mean():.4g}" in age_line

    versions = cli("data", "versions", "people")
    assert versions.exit_code == 0 and "people@1" in versions.output


def test_add_with_expectations_file_fails_then_force(cli, csv_file, tmp_path):
    exps = tmp_path / "exp.yaml"
    exps.write_text("- {column: age, range: {min: 0, max: 40}}\n"
                    "- {column: city, regex: '[A-Z][a-z]+'}\n")
    failed = cli("data", "add", "people", csv_file, "--expectations", exps)
    assert failed.exit_code == 1
    assert isinstance(failed.exception, ExpectationsFailed)
    assert failed.exception.report.failures[0].failing == 2  # ages 41 and 52

    forced = cli("data", "add", "people", csv_file, "-e", exps, "--force")
    assert forced.exit_code == 0, forced.output
    assert "registered people@1" in forced.output
    assert "warning: registered with --force although 1 of 2 checks failed" in forced.output

    shown = cli("data", "show", "people")
    assert "1 of 2 checks failed (forced)" in shown.output
    assert "range (expectation 0): 2 values outside [0, 40]" in shown.output


def test_add_from_sql_and_http(cli, tmp_path, api):
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (a int, b text)")
        conn.executemany("insert into t values (?, ?)", [(1, "x"), (2, "y")])
    result = cli("data", "add", "t", f"sqlite:///{db}", "--query", "select * from t")
    assert result.exit_code == 0, result.output
    assert "registered t@1 (2 rows x 2 columns" in result.output

    result = cli("data", "add", "api", f"{api.url}/nested", "--records", "data.rows",
                 "--next", "links.next", "-H", "Authorization: Bearer x")
    assert result.exit_code == 0, result.output
    assert "registered api@1 (7 rows x 3 columns" in result.output
    ws = Workspace.open(cli.home)
    assert ws.datasets.get("api").source["headers"] == {"Authorization": "***"}
    ws.close()


def test_diff_command(cli, tmp_path):
    pd.DataFrame({"x": [1, 2, 3]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"x": [1, 2, 3, 10], "y": ["a"] * 4}).to_csv(tmp_path / "b.csv", index=False)
    cli("data", "add", "d", tmp_path / "a.csv")
    cli("data", "add", "d", tmp_path / "b.csv", "--parent", "d@1", "--transform", "append")
    result = cli("data", "diff", "d@1", "d@2")
    assert result.exit_code == 0, result.output
    assert "d@1 -> d@2: rows 3 -> 4 (+1)" in result.output
    assert "added" in result.output and "+7" in result.output  # max 3 -> 10
    assert "d@1" in cli("data", "show", "d@2").output


def test_errors_in_process(cli, tmp_path):
    result = cli("data", "show", "ghost@1")
    assert result.exit_code == 1 and isinstance(result.exception, NotFoundError)
    result = cli("data", "add", "x", tmp_path / "x.csv", "--header", "nocolon")
    assert result.exit_code == 1


def _shipyard(home, *args):
    env = {k: v for k, v in os.environ.items()
           if k not in ("SHIPYARD_DB_URL", "SHIPYARD_ARTIFACTS")}
    return subprocess.run([str(SHIPYARD), "--home", str(home), *map(str, args)],
                          capture_output=True, text=True, env={**env, "COLUMNS": "200"},
                          timeout=120)


def test_entry_point_prints_errors_without_traceback(tmp_path):
    missing = _shipyard(tmp_path / "home", "data", "add", "people", tmp_path / "nope.csv")
    assert missing.returncode == 1
    assert "error: csv file" in missing.stderr and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad_name = _shipyard(tmp_path / "home", "data", "show", "../etc@1")
    assert bad_name.returncode == 1
    assert "'../etc' is not a valid dataset name" in bad_name.stderr
    assert "Traceback" not in bad_name.stderr


def test_help_texts():
    result = CliRunner().invoke(app, ["data", "add", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--expectations", "--force", "--query", "--records", "--next", "SQLAlchemy"):
        assert text in result.output
