"""`shipyard runs ...` through the real Typer app."""

import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from shipyard import Workspace
from shipyard.cli import app
from shipyard.errors import FilterSyntaxError, NotFoundError

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))  # restored after the test
    # the CLI's console is made at import with the terminal's width; give the tests a wide one
    monkeypatch.setattr("shipyard.cli._runs.console",
                        Console(width=200, force_terminal=True, color_system="standard"))
    ws = Workspace.open(home)
    ids = {}
    for name, model, auc, loss in (("alpha", "lgbm", 0.91, 0.3), ("beta", "rf", 0.85, 0.2),
                                   ("gamma", "lgbm", 0.7, 0.5)):
        with ws.start_run("cli", name=name, params={"model": model, "lr": 0.1}) as run:
            run.log_metrics({"auc": auc, "loss": loss})
            run.log_dict("config.json", {"model": model})
        ids[name] = run.id
    with pytest.raises(RuntimeError):
        with ws.start_run("cli", name="broken") as run:
            raise RuntimeError("bad data")
    ids["broken"] = run.id
    ws.close()
    return home, ids


def invoke(home, *args):
    return runner.invoke(app, ["--home", str(home), "runs", *args])


def test_list_filters_orders_and_limits(home):
    path, ids = home
    result = invoke(path, "list")
    assert result.exit_code == 0, result.output
    for name in ("alpha", "beta", "gamma", "broken"):
        assert name in result.output
    assert ids["alpha"][:8] in result.output and "FAILED" in result.output

    result = invoke(path, "list", "--filter", "params.model = 'lgbm'", "-o",
                    "metrics.auc DESC")
    assert result.exit_code == 0, result.output
    assert "alpha" in result.output and "gamma" in result.output
    assert "beta" not in result.output and "broken" not in result.output
    assert result.output.index("alpha") < result.output.index("gamma")
    assert "0.91" in result.output  # the sorted metric is a column

    result = invoke(path, "list", "-o", "metrics.loss", "--limit", "1")
    assert "beta" in result.output and "alpha" not in result.output

    result = invoke(path, "list", "--filter", "metrics.auc > 5")
    assert result.exit_code == 0 and "no runs match" in result.output


def test_list_with_a_bad_filter_raises_a_filter_syntax_error(home):
    path, _ = home
    result = invoke(path, "list", "--filter", "metric.auc > 1")
    assert result.exit_code != 0
    assert isinstance(result.exception, FilterSyntaxError)
    assert "unknown field 'metric.auc' at column 1" in str(result.exception)


def test_the_command_prints_errors_without_a_traceback(home):
    path, _ = home
    done = subprocess.run([sys.executable, "-m", "shipyard", "--home", str(path), "runs",
                           "list", "--filter", "metrics.auc >"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "error:" in done.stderr and "expected a number" in done.stderr
    assert "Traceback" not in done.stderr


def test_show(home):
    path, ids = home
    result = invoke(path, "show", ids["alpha"][:8])
    assert result.exit_code == 0, result.output
    for text in (ids["alpha"], "alpha", "FINISHED", "model", "lgbm", "auc", "0.91",
                 "config.json", "environment", "python", "seed"):
        assert text in result.output, text
    broken = invoke(path, "show", ids["broken"])
    assert "RuntimeError: bad data" in broken.output
    missing = invoke(path, "show", "0" * 32)
    assert isinstance(missing.exception, NotFoundError)


def test_compare_highlights_differences_and_best_values(home):
    path, ids = home
    result = invoke(path, "compare", ids["alpha"], ids["beta"])
    assert result.exit_code == 0, result.output
    assert ids["alpha"][:8] in result.output and ids["beta"][:8] in result.output
    lines = result.output.splitlines()
    model = next(line for line in lines if " model " in line)
    lr = next(line for line in lines if " lr " in line)
    assert "\x1b[33m" in model and "\x1b[33m" not in lr  # only differing params in yellow
    auc = next(line for line in lines if " auc " in line)
    loss = next(line for line in lines if " loss " in line)
    # best auc is the higher (alpha, first column); best loss the lower (beta, second)
    assert auc.index("\x1b[1;32m") < auc.index("0.85")
    assert loss.index("\x1b[1;32m") > loss.index("0.3")


def test_experiments_and_help(home):
    path, _ = home
    result = invoke(path, "experiments")
    assert "cli" in result.output and "4" in result.output
    helptext = runner.invoke(app, ["runs", "list", "--help"]).output
    assert "metrics.<key>" in helptext and "ILIKE" in helptext
