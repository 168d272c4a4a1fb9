"""Executors: the same seed gives the same trials and scores in this process,
in a local process pool and on a real local Ray."""

from __future__ import annotations

import optuna
import pytest

from shipyard.errors import ConfigError
from shipyard.train import make_executor, train
from shipyard.train._study import storage_for
from shipyard.train._trial import TrialData, TrialTask

SEARCH = "{{kind: tpe, n_trials: 6, batch_size: 3, n_jobs: {n_jobs}, executor: {executor}}}"
CANDIDATES = """
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      search_space:
        C: {type: float, low: 0.01, high: 10, log: true}
    - name: tree
      estimator: sklearn.tree.DecisionTreeClassifier
      search_space:
        max_depth: {type: int, low: 1, high: 8}
        criterion: {type: categorical, choices: [gini, entropy]}"""


def _outcome(ws, result):
    storage = storage_for(ws.db.url)
    trials = {c.name: [(t.number, t.state.name, t.params, t.value) for t in optuna.load_study(
        study_name=c.study_name, storage=storage).get_trials()] for c in result.candidates}
    return trials, result.test_metrics, result.model.digest


def _train(ws, project, n_jobs, executor, experiment):
    spec = project(search=SEARCH.format(n_jobs=n_jobs, executor=executor),
                   candidates=CANDIDATES)
    return train(ws, spec, experiment=experiment)


def test_two_local_processes_give_the_same_trials_as_one(toy, project):
    one = _outcome(toy, _train(toy, project, 1, "local", "one"))
    two = _outcome(toy, _train(toy, project, 2, "local", "two"))
    assert one == two
    assert len(one[0]["logreg"]) == 6


def test_ray_gives_the_same_results_as_local(toy, project, ray_session):
    local = _outcome(toy, _train(toy, project, 1, "local", "local"))
    on_ray = _train(toy, project, 2, "ray", "ray")
    assert _outcome(toy, on_ray) == local
    assert ray_session.is_initialized()      # a Ray it did not start is left running
    study = toy.runs.get(on_ray.study_run_id)
    assert study.tags["executor"] == "ray"
    # worker CPU time is counted: the study costs at least its trials
    trials = [r for r in toy.runs.search(experiment="ray")
              if r.parent_id == study.id and r.name != "final"]
    assert study.metrics["cost.cpu_seconds"] >= sum(r.metrics["cost.cpu_seconds"]
                                                    for r in trials)


def test_unknown_executor_is_refused():
    with pytest.raises(ConfigError, match="unknown executor 'spark'.*local, ray"):
        make_executor("spark")


def test_local_pool_returns_results_in_task_order(toy_frame):
    frame = toy_frame(90)
    import numpy as np

    rows = np.arange(90)
    data = TrialData(X=frame.drop(columns="y"), y=frame["y"].to_numpy(),
                     folds=[(rows[:60], rows[60:])],
                     kinds={**{f"x{i}": "numeric" for i in range(5)}, "colour": "categorical"},
                     task="binary", metric="accuracy", direction="maximize", imbalance="none",
                     seed=0)
    tasks = [TrialTask(i, "s", "sklearn.tree.DecisionTreeClassifier", {"max_depth": d})
             for i, d in enumerate([1, 2, 3, 4])]
    with make_executor("local", n_jobs=2) as pool:
        pool.start(data)
        results = pool.run(tasks)
    assert [r.number for r in results] == [0, 1, 2, 3]
    assert all(r.status == "complete" and r.cpu_seconds > 0 for r in results)
