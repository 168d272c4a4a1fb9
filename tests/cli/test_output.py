"""What the table commands print in an 80-column terminal or a pipe, what
``--columns`` chooses, and the ``--json`` every list, show and create command
offers, on one small real workspace (a dataset in two versions, a tiny
training, a registered model with an alias, a key, a deployment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

import shipyard
from shipyard.cli import app

runner = CliRunner()
SHIPYARD = str(Path(sys.executable).parent / "shipyard")

PROJECT = """
name: toy-experiment-with-a-long-name
dataset: toy@latest
target: y
task: binary
seed: 7
train:
  split: {folds: 3}
  imbalance: none
  search: {kind: random, n_trials: 4}
  candidates:
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      params: {max_iter: 200}
      search_space:
        C: {type: float, low: 0.01, high: 10, log: true}
"""


def toy_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=5, n_informative=3, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["colour"] = np.array(["red", "green", "blue"])[np.arange(n) % 3]
    frame["y"] = y
    return frame


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, which are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def ws_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-output")
    home = root / "ws"
    project = root / "shipyard.yaml"
    project.write_text(PROJECT)
    with shipyard.Workspace.open(home) as ws:
        ws.datasets.register("toy", toy_frame(), description="a small generated table for "
                             "the CLI tests, described at some length")
        ws.datasets.register("toy", toy_frame(seed=1), parents=["toy@1"],
                             transform="regenerated with another seed")
        trained = ws.train(project)
        ws.models.register("toy-classifier", trained.study_run_id,
                           description="logistic regression on the toy table")
        ws.models.set_alias("toy-classifier", "champion", 1,
                            reason="first release, after a long look at its test metrics")
        ws.keys.create("frontend-service", ["predict", "metrics"], rate_limit_per_minute=600,
                       reason="the web frontend")
        ws.deployments.set("toy-classifier", {"strategy": "single",
                                              "primary": "toy-classifier@champion"},
                           reason="first rollout")
        with ws.start_run("notes", name="hand-made", params={"lr": "0.1"}) as plain:
            plain.log_metric("loss", 0.5)
        info = {"study": trained.study_run_id, "final": trained.final_run_id,
                "plain": plain.id, "metric_keys": sorted(
                    {k for r in ws.runs.search(limit=100) for k in r.metrics})}
    return str(home), info


def cli(home: str, *args: str, width: int = 80):
    return runner.invoke(app, ["--home", home, *args], env={"COLUMNS": str(width)})


# ------------------------------------------------------------------ tables
def header_rows(text: str) -> list[list[str]]:
    """The header lines of every boxed table in ``text``, as lists of cells."""
    lines = text.splitlines()
    rows: list[list[str]] = []
    for i, line in enumerate(lines):
        if line.startswith("┏"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("┡"))
            assert end == i + 2, f"a header takes {end - i - 1} lines:\n" + "\n".join(
                lines[i:end + 1])
            rows.append([cell.strip() for cell in lines[i + 1].strip("┃").split("┃")])
    return rows


def assert_readable(text: str, width: int = 80) -> None:
    """Nothing cut to an ellipsis, nothing wider than the terminal, every
    header on one line."""
    assert "…" not in text, text
    assert max(cell_len(line) for line in text.splitlines()) <= width, text
    header_rows(text)


TABLE_COMMANDS = {
    "runs list": (["runs", "list"], ["id", "name", "status"]),
    "runs list all experiments": (["runs", "list", "--limit", "100"],
                                  ["id", "experiment", "name", "status"]),
    "runs show": (["runs", "show", "{study}"], ["path", "size", "digest"]),
    "runs compare": (["runs", "compare", "{study}", "{final}", "{plain}"], ["field"]),
    "runs experiments": (["runs", "experiments"], ["name", "runs", "created"]),
    "models list": (["models", "list"], ["name", "latest", "aliases"]),
    "models show": (["models", "show", "toy-classifier"],
                    ["version", "status", "aliases", "when", "reason"]),
    "models show version": (["models", "show", "toy-classifier@1"], []),
    "data list": (["data", "list"], ["name", "latest", "rows", "description"]),
    "data versions": (["data", "versions", "toy"], ["version", "rows", "parents"]),
    "data show": (["data", "show", "toy@2"], ["column", "type", "arrow type", "missing"]),
    "data profile": (["data", "profile", "toy"], ["column", "type", "missing"]),
    "data diff": (["data", "diff", "toy@1", "toy@2"], ["column", "change", "before"]),
    "audit list": (["audit", "list"], ["when", "action", "object", "reason"]),
    "keys list": (["keys", "list"], ["id", "name", "scopes", "status"]),
    "deploy --show": (["deploy", "toy-classifier", "--show"], ["seq", "when", "action"]),
    "info": (["info"], []),
}


@pytest.mark.parametrize("name", TABLE_COMMANDS)
def test_tables_stay_readable_at_80_columns(ws_home, name):
    home, ids = ws_home
    args, headers = TABLE_COMMANDS[name]
    out = cli(home, *(a.format(**ids) for a in args))
    assert out.exit_code == 0, out.output
    assert_readable(out.stdout)
    shown = {cell for row in header_rows(out.stdout) for cell in row}
    for header in headers:
        assert header in shown, f"{header!r} missing from {shown}"


def test_runs_list_names_what_it_hid_and_shows_more_when_wide(ws_home):
    home, _ = ws_home
    narrow = cli(home, "runs", "list", "--limit", "100")
    wide = cli(home, "runs", "list", "--limit", "100", width=200)
    assert "hidden to fit 80 columns" in narrow.stdout and "see --columns" in narrow.stdout
    assert "hidden" not in wide.stdout
    assert_readable(wide.stdout, width=200)
    [header] = header_rows(wide.stdout)
    assert header[:6] == ["id", "experiment", "name", "status", "start", "duration"]
    assert len(header) == 9  # and three metrics


def test_a_pipe_gets_80_columns_and_no_ellipsis(ws_home):
    home, _ = ws_home
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for args in (["runs", "list", "--limit", "100"], ["models", "show", "toy-classifier"]):
        done = subprocess.run([SHIPYARD, "--home", home, *args], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == 0, done.stderr
        assert_readable(done.stdout)


# ----------------------------------------------------------------- columns
COLUMN_CHOICES = {
    "runs list": (["runs", "list", "--columns", "id,status,params.C,metrics.roc_auc"],
                  ["id", "status", "params.C", "roc_auc"]),
    "runs list bare metric": (["runs", "list", "-c", "name,loss"], ["name", "loss"]),
    "runs experiments": (["runs", "experiments", "-c", "id,name"], ["id", "name"]),
    "models list": (["models", "list", "-c", "name,versions,created"],
                    ["name", "versions", "created"]),
    "models show": (["models", "show", "toy-classifier", "-c", "version,model,by,test.f1"],
                    ["version", "model", "by", "test.f1"]),
    "data list": (["data", "list", "-c", "name,versions"], ["name", "versions"]),
    "data versions": (["data", "versions", "toy", "-c", "version,content,transform"],
                      ["version", "content", "transform"]),
    "data profile": (["data", "profile", "toy", "-c", "column,std,median"],
                     ["column", "std", "median"]),
    "audit list": (["audit", "list", "-c", "seq,actor,action,hash"],
                   ["seq", "actor", "action", "hash"]),
    "keys list": (["keys", "list", "-c", "name,rate_limit,by"], ["name", "rate/min", "by"]),
}


@pytest.mark.parametrize("name", COLUMN_CHOICES)
def test_columns_shows_exactly_the_chosen_columns(ws_home, name):
    home, _ = ws_home
    args, headers = COLUMN_CHOICES[name]
    out = cli(home, *args)
    assert out.exit_code == 0, out.output
    assert_readable(out.stdout)
    assert header_rows(out.stdout)[0] == headers
    assert "hidden" not in out.stdout


@pytest.mark.parametrize("args, valid", [
    (["runs", "list"], ["id", "experiment", "duration", "metrics.<key>"]),
    (["runs", "experiments"], ["name", "runs", "created"]),
    (["models", "list"], ["name", "latest", "aliases", "description"]),
    (["models", "show", "toy-classifier"], ["version", "run", "dataset"]),
    (["data", "list"], ["name", "latest", "rows"]),
    (["data", "versions", "toy"], ["version", "content", "parents"]),
    (["data", "profile", "toy"], ["column", "mean", "top"]),
    (["audit", "list"], ["seq", "details"]),
    (["keys", "list"], ["id", "rate_limit", "status"]),
])
def test_an_unknown_column_is_a_usage_error_listing_the_valid_ones(ws_home, args, valid):
    home, _ = ws_home
    out = cli(home, *args, "--columns", "bogus", width=200)
    assert out.exit_code == 2
    assert "unknown column 'bogus'" in out.output
    for name in valid:
        assert name in out.output
    assert out.stdout == ""


def test_an_absent_metric_or_param_names_those_present(ws_home):
    home, _ = ws_home
    out = cli(home, "runs", "list", "-c", "id,metrics.nope", width=200)
    assert out.exit_code == 2 and "no run listed has metric 'nope'" in out.output
    assert "roc_auc" in out.output
    out = cli(home, "runs", "list", "-e", "notes", "-c", "id,params.nope", width=200)
    assert out.exit_code == 2 and "params here: lr" in out.output


# -------------------------------------------------------------------- JSON
JSON_COMMANDS = {
    "runs list": (["runs", "list", "--limit", "100"], list,
                  ["id", "experiment", "status", "params", "metrics", "tags", "duration"]),
    "runs show": (["runs", "show", "{study}"], dict,
                  ["id", "params", "metrics", "tags", "inputs", "artifacts", "environment"]),
    "runs experiments": (["runs", "experiments"], list, ["id", "name", "num_runs"]),
    "models list": (["models", "list"], list, ["name", "latest_version", "aliases"]),
    "models show": (["models", "show", "toy-classifier"], dict,
                    ["name", "versions", "alias_history"]),
    "models show version": (["models", "show", "toy-classifier@champion"], dict,
                            ["ref", "run_id", "artifact_digest", "metrics", "lineage"]),
    "data list": (["data", "list"], list, ["name", "ref", "latest_version", "num_rows"]),
    "data versions": (["data", "versions", "toy"], list,
                      ["ref", "content_hash", "num_rows", "parents", "checks"]),
    "data show": (["data", "show", "toy@1"], dict,
                  ["ref", "content_hash", "schema", "source", "children"]),
    "data profile": (["data", "profile", "toy"], dict, ["ref", "num_rows", "columns"]),
    "data diff": (["data", "diff", "toy@1", "toy@2"], dict, ["a", "b", "changes"]),
    "audit list": (["audit", "list"], list, ["seq", "ts", "actor", "action", "object", "hash"]),
    "audit verify": (["audit", "verify"], dict, ["ok", "checked", "head_hash"]),
    "keys list": (["keys", "list"], list, ["key_id", "name", "scopes", "status"]),
    "deploy --show": (["deploy", "toy-classifier", "--show"], dict,
                      ["model", "deployment", "history"]),
    "info": (["info"], dict, ["home", "database", "counts"]),
    "gc": (["gc", "--dry-run"], dict, ["scanned", "deleted", "dry_run"]),
}


@pytest.mark.parametrize("name", JSON_COMMANDS)
def test_json_is_the_only_thing_on_stdout(ws_home, name):
    home, ids = ws_home
    args, kind, keys = JSON_COMMANDS[name]
    out = cli(home, *(a.format(**ids) for a in args), "--json")
    assert out.exit_code == 0, out.output
    data = strict_json(out.stdout)
    assert isinstance(data, kind)
    item = data[0] if kind is list else data
    for key in keys:
        assert key in item, f"{key!r} missing from {sorted(item)}"


def test_json_holds_full_ids_and_null_for_missing_values(ws_home):
    home, ids = ws_home
    runs = strict_json(cli(home, "runs", "list", "--limit", "100", "--json").stdout)
    assert ids["study"] in {r["id"] for r in runs}  # the whole id, not its first 8 characters
    compared = strict_json(cli(home, "runs", "compare", ids["study"], ids["plain"],
                               "--json").stdout)
    assert set(compared) == {ids["study"], ids["plain"]}
    assert compared[ids["plain"]]["metrics.loss"] == 0.5
    assert compared[ids["study"]]["metrics.loss"] is None  # NaN in the frame, null here
    version = strict_json(cli(home, "models", "show", "toy-classifier@1", "--json").stdout)
    assert version["aliases"] == ["champion"] and "_workspace" not in version


def test_keys_create_json_carries_the_secret(ws_home):
    home, _ = ws_home
    out = cli(home, "keys", "create", "batch-job", "--scope", "predict", "--json")
    assert out.exit_code == 0, out.output
    key = strict_json(out.stdout)
    assert key["name"] == "batch-job" and key["scopes"] == ["predict"]
    assert key["status"] == "active" and len(key["secret"]) > 20
    with shipyard.Workspace.open(home) as ws:
        assert ws.keys.verify(key["secret"]).key_id == key["key_id"]


# ------------------------------------------------- chaining the lifecycle
def test_train_reproduce_register_promote_deploy_chain_through_json(tmp_path):
    home = str(tmp_path / "ws")
    with shipyard.Workspace.open(home) as ws:
        ws.datasets.register("toy", toy_frame())
    project = tmp_path / "shipyard.yaml"
    project.write_text(PROJECT)

    def step(*args: str) -> dict:
        out = cli(home, *args, "--json")
        assert out.exit_code == 0, out.output
        return strict_json(out.stdout)

    trained = step("train", str(project), "--n-jobs", "1")
    for key in ("study_run_id", "final_run_id", "model_digest", "best_candidate",
                "best_score", "best_params", "test_metrics", "candidates", "dataset"):
        assert key in trained
    assert trained["best_candidate"] == "logreg" and trained["dataset"] == "toy@1"
    assert 0 <= trained["test_metrics"]["roc_auc"] <= 1

    again = step("reproduce", trained["study_run_id"])
    assert again["ok"] is True and again["differences"] == []
    assert {item["name"] for item in again["items"]} >= {"model.digest"}

    model = step("models", "register", "toy-model", trained["study_run_id"])
    assert model["ref"] == "toy-model@1" and model["new"] is True
    assert model["artifact_digest"] == trained["model_digest"]
    assert step("models", "register", "toy-model", trained["study_run_id"])["new"] is False

    aliased = step("models", "alias", "toy-model", "challenger", "1")
    assert aliased["ref"] == "toy-model@1" and aliased["alias"] == "challenger"

    report = step("evaluate", "toy-model@1", "toy@1", "--no-explain", "--no-robustness",
                  "--n-bootstrap", "10")
    assert report["headline"]["metric"] == "roc_auc" and report["run_id"]

    gates = tmp_path / "gates.yaml"
    gates.write_text("metrics:\n  roc_auc: {min: 0.5}\n")
    promoted = step("promote", "toy-model@1", "--dataset", "toy@1", "--policy", str(gates),
                    "--target", "y")
    assert promoted["promoted"] is True and promoted["gates"]["passed"] is True
    assert promoted["gates"]["checks"][0]["name"] == "metrics.roc_auc.min"

    deployed = step("deploy", "toy-model", "--primary", "toy-model@champion")
    assert deployed["revision"] == 1 and deployed["deployment"]["primary"] == "toy-model@champion"
    removed = step("deploy", "toy-model", "--remove")
    assert removed == {"model": "toy-model", "removed": True}

    rows = tmp_path / "rows.csv"
    toy_frame(30, seed=3).drop(columns="y").to_csv(rows, index=False)
    scored = step("predict", "toy-model@1", "--input", str(rows), "--output",
                  str(tmp_path / "scored.parquet"))
    assert scored["rows"] == 30 and scored["model"] == "toy-model@1"
    assert scored["output"].endswith("scored.parquet")

    archived = step("models", "archive", "toy-model", "1", "--force")
    assert archived["status"] == "ARCHIVED" and archived["aliases"] == []
    assert step("models", "restore", "toy-model", "1")["status"] == "READY"

    added = step("data", "add", "extra", str(_csv(tmp_path)))
    assert added["ref"] == "extra@1" and added["new"] is True and added["num_rows"] == 3


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "extra.csv"
    path.write_text("a,b\n1,x\n2,y\n3,z\n")
    return path


def test_reproduce_json_keeps_the_failing_exit_status(tmp_path, ws_home):
    from sqlalchemy import update

    from shipyard.store.tables import TagRow

    home = str(tmp_path / "ws")
    with shipyard.Workspace.open(home) as ws:
        ws.datasets.register("toy", toy_frame())
        run_id = ws.train(shipyard.project.parse_project(PROJECT)).study_run_id
        with ws.db.write() as s:
            s.execute(update(TagRow).where(TagRow.run_id == run_id,
                                           TagRow.key == "model.digest").values(value="0" * 64))
    out = cli(home, "reproduce", run_id, "--json")
    assert out.exit_code == 1
    assert strict_json(out.stdout)["differences"] == ["model.digest"]


def test_train_json_in_a_real_process_keeps_progress_off_stdout(tmp_path):
    home = str(tmp_path / "ws")
    with shipyard.Workspace.open(home) as ws:
        ws.datasets.register("toy", toy_frame())
    project = tmp_path / "shipyard.yaml"
    project.write_text(PROJECT)
    done = subprocess.run([SHIPYARD, "--home", home, "train", str(project), "--json"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr
    result = strict_json(done.stdout)
    assert result["best_candidate"] == "logreg"
    assert "logreg" in done.stderr  # the progress bar, on stderr
