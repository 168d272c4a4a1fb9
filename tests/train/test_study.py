"""Training end to end: search kinds, pruning, failures, imbalance, timeouts,
bad specs, and stored models that survive garbage collection."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from shipyard.errors import ConfigError, NotFoundError
from shipyard.train import load_model, train
from shipyard.train._study import storage_for


def _trials(ws, result, candidate=None):
    storage = storage_for(ws.db.url)
    name = next(c.study_name for c in result.candidates
                if candidate is None or c.name == candidate)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def _trial_runs(ws, result):
    return [r for r in ws.runs.search(experiment=result.experiment)
            if r.parent_id == result.study_run_id and r.name != "final"]


@pytest.mark.parametrize("kind", ["grid", "random", "tpe"])
def test_each_search_kind_trains_tracks_and_stores_a_model(toy, project, kind):
    space = ("C: {type: categorical, choices: [0.1, 1.0, 10.0]}" if kind == "grid"
             else "C: {type: float, low: 0.01, high: 10, log: true}")
    spec = project(search=f"{{kind: {kind}, n_trials: 4}}", candidates=f"""
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      search_space:
        {space}""")
    result = train(toy, spec)

    n = 3 if kind == "grid" else 4          # a grid search stops at the grid's size
    trials = _trials(toy, result)
    assert [t.state.name for t in trials] == ["COMPLETE"] * n
    if kind == "grid":
        assert sorted(t.params["C"] for t in trials) == [0.1, 1.0, 10.0]
    runs = _trial_runs(toy, result)
    assert len(runs) == n and all(r.status == "FINISHED" for r in runs)
    assert all("cost.co2e_g" in r.metrics and "roc_auc" in r.metrics for r in runs)
    history = toy.runs.metric_history(runs[0].id, "fold.roc_auc")
    assert len(history) == 3                # one step a fold

    study = toy.runs.get(result.study_run_id)
    assert study.status == "FINISHED" and study.tags["model.digest"] == result.model.digest
    assert study.metrics["test.roc_auc"] == result.test_metrics["roc_auc"]
    assert {"cost.cpu_seconds", "cost.energy_kwh", "cost.co2e_g"} <= set(study.metrics)
    assert toy.runs.inputs(study.id) == ["toy@1"]
    assert json.loads(toy.runs.load_artifact(study.id, "spec.json"))["dataset"]["version"] == 1
    final = toy.runs.get(result.final_run_id)
    assert final.parent_id == study.id and final.tags["model.digest"] == result.model.digest
    signature = json.loads(toy.runs.load_artifact(final.id, "model/signature.json"))
    assert signature["output"] == {"target": "y", "task": "binary", "kind": "probabilities",
                                   "classes": [0, 1]}
    colour = next(c for c in signature["inputs"] if c["name"] == "colour")
    assert colour["kind"] == "categorical" and colour["categories"] == ["blue", "green", "red"]
    board = result.leaderboard
    assert list(board["candidate"]) == ["logreg"] and board.loc[0, "complete"] == n


def test_median_pruner_prunes_clearly_bad_trials(toy, project):
    # l1 with a tiny C zeroes every coefficient: AUC 0.5 on the first fold already
    spec = project(search="{kind: random, n_trials: 16, pruner: median}",
                   split="{folds: 4}", candidates="""
    - name: lasso
      estimator: sklearn.linear_model.LogisticRegression
      params: {solver: liblinear, l1_ratio: 1.0}
      search_space:
        C: {type: float, low: 0.001, high: 1000, log: true}""")
    result = train(toy, spec)
    states = [t.state.name for t in _trials(toy, result)]
    assert states.count("PRUNED") >= 1 and len(states) == 16
    pruned = [r for r in _trial_runs(toy, result) if r.tags.get("optuna.state") == "PRUNED"]
    assert len(pruned) == states.count("PRUNED")
    assert all(r.status == "FINISHED" for r in pruned)
    assert result.candidates[0].n_pruned == states.count("PRUNED")


def test_a_failing_trial_is_recorded_and_the_search_goes_on(toy, project):
    spec = project(search="{kind: grid, n_trials: 3}", candidates="""
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      search_space:
        C: {type: categorical, choices: [-1.0, 0.5, 2.0]}""")
    result = train(toy, spec)
    by_c = {t.params["C"]: t for t in _trials(toy, result)}
    assert by_c[-1.0].state.name == "FAIL" and "C" in by_c[-1.0].user_attrs["error"]
    assert by_c[0.5].state.name == by_c[2.0].state.name == "COMPLETE"
    failed = [r for r in _trial_runs(toy, result) if r.status == "FAILED"]
    assert len(failed) == 1 and "C" in failed[0].error
    assert result.candidates[0].n_failed == 1 and result.best_params["C"] in (0.5, 2.0)


@pytest.mark.parametrize("strategy", ["class_weight", "smote", "undersample"])
def test_imbalance_strategy_is_applied_and_tracked(ws, project, toy_frame, strategy):
    ws.datasets.register("toy", toy_frame(300, weights=[0.85]))
    spec = project(imbalance=strategy, search="{kind: random, n_trials: 2}")
    result = train(ws, spec)
    final = ws.runs.get(result.final_run_id)
    assert final.tags["imbalance"] == strategy
    record = json.loads(ws.runs.load_artifact(final.id, "imbalance.json"))
    assert record["strategy"] == strategy
    if strategy == "class_weight":
        assert record["applied_as"] == "class_weight"
    else:
        after = record["counts_after"]
        assert after["0"] == after["1"] and after != record["counts_before"]
    assert ws.runs.get(result.study_run_id).tags["imbalance"] == strategy


def test_timeout_stops_the_search_early(toy, project):
    spec = project(search="{kind: random, n_trials: 10000, timeout: 1.5, batch_size: 1}")
    result = train(toy, spec)
    cand = result.candidates[0]
    assert cand.timed_out and 0 < cand.n_complete < 10000


def test_model_blobs_survive_gc_and_load_back_identically(toy, project, toy_frame):
    spec = project(candidates="""
    - name: lgbm
      estimator: lightgbm
      params: {n_estimators: 20}
      search_space:
        num_leaves: {type: int, low: 4, high: 16}""", search="{kind: random, n_trials: 2}")
    result = train(toy, spec)
    X = toy_frame().drop(columns="y")
    before = load_model(toy.artifacts, result.model).predict_proba(X)
    toy.gc(grace_seconds=0)
    for digest in result.model.digests:
        assert toy.artifacts.exists(digest)
    after = load_model(toy.artifacts, result.model.digest).predict_proba(X)
    np.testing.assert_array_equal(before, after)


# ------------------------------------------------------------- bad specs
def test_unknown_estimator_is_a_clear_error(project):
    with pytest.raises(ConfigError, match=r"candidates\[0\]\.estimator.*LogisticRegresion"):
        project(candidates="""
    - name: bad
      estimator: sklearn.linear_model.LogisticRegresion""")


def test_bad_search_space_is_a_clear_error(project):
    with pytest.raises(ConfigError, match=r"search_space\.C.*low \(10\.0\) must be less"):
        project(candidates="""
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      search_space:
        C: {type: float, low: 10, high: 1}""")


def test_target_missing_from_the_data_is_a_clear_error(toy, project):
    with pytest.raises(ConfigError, match="'income' named in the project file is not in"):
        train(toy, project(target="income"))


def test_regression_on_string_labels_is_a_clear_error(ws, project, toy_frame):
    frame = toy_frame()
    frame["y"] = np.where(frame["y"] == 1, "yes", "no")
    ws.datasets.register("toy", frame)
    spec = project(task="regression", split="{kind: random, folds: 3}", candidates="""
    - name: ridge
      estimator: sklearn.linear_model.Ridge""")
    with pytest.raises(ConfigError, match="regression needs a numeric target.*'y'"):
        train(ws, spec)


def test_binary_task_on_three_classes_is_a_clear_error(ws, project, toy_frame):
    frame = toy_frame()
    frame["y"] = np.arange(len(frame)) % 3
    ws.datasets.register("toy", frame)
    with pytest.raises(ConfigError, match="binary needs exactly 2 classes.*has 3"):
        train(ws, project())


def test_missing_dataset_is_a_clear_error(ws, project):
    with pytest.raises(NotFoundError, match="nothere"):
        train(ws, project(dataset="nothere@2"))
