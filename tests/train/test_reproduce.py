"""Reproducibility and resuming: same data, spec and seed, same metrics and
model hash; an interrupted search resumes where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
from sqlalchemy import update

from shipyard.store.tables import LatestMetricRow
from shipyard.project import parse_project
from shipyard.train import reproduce, train
from shipyard.train._study import storage_for

CANDIDATES = """
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      search_space:
        C: {type: float, low: 0.01, high: 10, log: true}
    - name: lgbm
      estimator: lightgbm
      params: {n_estimators: 15}
      search_space:
        num_leaves: {type: int, low: 4, high: 16}"""


def test_same_spec_and_seed_give_the_same_metrics_and_model_hash(toy, project):
    spec = project(candidates=CANDIDATES, search="{kind: tpe, n_trials: 3}")
    first = train(toy, spec, experiment="a")
    second = train(toy, spec, experiment="b")
    assert first.test_metrics == second.test_metrics
    assert first.model.digest == second.model.digest
    assert [c.best_value for c in first.candidates] == [c.best_value for c in second.candidates]


def test_reproduce_reports_no_difference_then_a_tampered_record(toy, project):
    spec = project(candidates=CANDIDATES, search="{kind: random, n_trials: 3}")
    original = train(toy, spec)
    report = reproduce(toy, original.study_run_id[:10])
    assert report.ok, report.differences
    names = {item.name for item in report.items}
    assert {"model.digest", "test.roc_auc", "best.roc_auc", "split.digest"} <= names
    assert toy.runs.get(report.reproduced_run_id).experiment == "toy-reproduce"

    with toy.db.write() as s:                      # someone edits the record
        s.execute(update(LatestMetricRow).where(
            LatestMetricRow.run_id == original.study_run_id,
            LatestMetricRow.key == "test.roc_auc").values(value=0.123))
    report = reproduce(toy, original.final_run_id)   # a nested run finds its study
    assert [d.name for d in report.differences] == ["test.roc_auc"]
    assert report.differences[0].expected == 0.123


UNSORTED = """
    - name: forest
      estimator: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 8}
      search_space:
        min_samples_leaf: {type: int, low: 1, high: 20}
        max_depth: {type: int, low: 2, high: 12}
        bootstrap: {type: categorical, choices: [true, false]}"""


def test_reproduce_keeps_the_search_space_in_the_order_it_was_written(toy, project):
    """Regression: spec.json was stored with sorted keys, so the re-run's
    search space came back in another order and Optuna drew other values."""
    import json

    spec = project(candidates=UNSORTED, search="{kind: tpe, n_trials: 4}")
    original = train(toy, spec, experiment="order")
    stored = json.loads(toy.runs.load_artifact(original.study_run_id, "spec.json"))
    space = stored["train"]["candidates"][0]["search_space"]
    assert list(space) == ["min_samples_leaf", "max_depth", "bootstrap"]
    report = reproduce(toy, original.study_run_id)
    assert report.ok, report.differences
    names = {item.name for item in report.items}
    assert "dataset.content_hash" in names and "model.digest" in names


SCRIPT = textwrap.dedent("""
    import sys
    import shipyard
    from shipyard.project import parse_project
    from shipyard.train import train
    ws = shipyard.Workspace.open(sys.argv[1])
    train(ws, parse_project(open(sys.argv[2]).read()))
""")


def test_a_killed_search_resumes_and_runs_each_trial_once(toy, project_yaml, tmp_path):
    text = project_yaml(search="{kind: random, n_trials: 10, batch_size: 1}", candidates="""
    - name: forest
      estimator: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 60}
      search_space:
        max_depth: {type: int, low: 2, high: 8}""")
    (tmp_path / "spec.yaml").write_text(text)
    (tmp_path / "run.py").write_text(SCRIPT)
    storage = storage_for(toy.db.url)
    child = subprocess.Popen([sys.executable, str(tmp_path / "run.py"),
                              str(toy.settings.home), str(tmp_path / "spec.yaml")])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = optuna.get_all_study_names(storage)
            if names and sum(t.state.is_finished() for t in optuna.load_study(
                    study_name=names[0], storage=storage).get_trials()) >= 3:
                break
            assert child.poll() is None, "the search finished before it could be killed"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    killed = optuna.load_study(study_name=names[0], storage=storage).get_trials()
    assert 3 <= sum(t.state.is_finished() for t in killed) < 10

    result = train(toy, parse_project(text))
    trials = optuna.load_study(study_name=names[0], storage=storage).get_trials()
    counted = [t for t in trials if t.state.name == "COMPLETE"]
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert len(counted) == 10 and result.candidates[0].n_complete == 10
    assert all(t.user_attrs["error"].startswith("interrupted") for t in interrupted)
    assert len(interrupted) <= 1
    # each finished trial ran once: one finished tracked run a complete trial
    runs = [r for r in toy.runs.search(experiment="toy")
            if r.name and r.name.startswith("forest-") and r.status == "FINISHED"]
    assert sorted(int(r.tags["optuna.trial"]) for r in runs) == sorted(t.number for t in counted)
