"""Training benchmark: what Shipyard's tracked, persisted search costs, and
what a second worker buys.

Prints ``name: value`` lines:

(a) tracking overhead: the same search (``--trials`` TPE trials of LightGBM on
    a generated ``--rows``-row dataset, 3-fold CV, then a refit on train +
    validation and one test score) as a plain Optuna study (in-memory storage,
    no tracking; the objective runs the same fit and score code) and as
    ``shipyard.train.train`` (Optuna study in the workspace SQLite DB, every
    trial a tracked run, the model saved and its blobs logged). Both in this
    process (``n_jobs=1``).
(b) parallel speed-up: ``--speed-trials`` heavier LightGBM trials with
    ``n_jobs=1`` (in process) and ``n_jobs=2`` (a pool of 2 spawned
    processes; its start-up is counted), same seed and ``batch_size``, so both
    run the same trials.

Usage: ``python benchmarks/training.py [--rows N] [--trials N] [--speed-trials N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


def dataset(rows: int):
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=10,
                               random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)])
    frame["group"] = np.array(list("abcde"))[np.arange(rows) % 5]
    frame["y"] = y
    return frame


def spec_text(trials: int, n_jobs: int, n_estimators: tuple[int, int],
              batch_size: int = 4) -> str:
    return f"""
name: bench
dataset: bench@latest
target: y
task: binary
seed: 1
train:
  split: {{test_size: 0.2, folds: 3}}
  search: {{kind: tpe, n_trials: {trials}, n_jobs: {n_jobs}, batch_size: {batch_size}}}
  candidates:
    - name: lgbm
      estimator: lightgbm
      search_space:
        num_leaves: {{type: int, low: 8, high: 64}}
        learning_rate: {{type: float, low: 0.02, high: 0.3, log: true}}
        n_estimators: {{type: int, low: {n_estimators[0]}, high: {n_estimators[1]}}}
"""


def plain_optuna(frame, spec, trials: list[dict]) -> float:
    """The same search with Optuna alone: same folds, same fit/score code, and
    the very parameter sets Shipyard's study tried (enqueued), so both do the
    same modelling work and only the bookkeeping differs."""
    import optuna

    from shipyard.train._space import make_sampler, suggest
    from shipyard.train._trainer import prepare
    from shipyard.train._trial import fit_model, make_estimator, score_model, single_threaded

    start = time.perf_counter()
    features = spec.training_features(list(frame.columns))
    prepared = prepare(frame, spec, features)
    data = prepared.data
    cand = spec.train.candidates[0]

    def objective(trial):
        params = suggest(trial, cand)
        scores = []
        with single_threaded():
            for fit_rows, eval_rows in data.folds:
                model, _ = fit_model(data.X.iloc[fit_rows], data.y[fit_rows], data.kinds,
                                     make_estimator(cand.estimator, spec.task, params, spec.seed),
                                     imbalance="none", task=spec.task, seed=spec.seed)
                scores.append(score_model(model, data.X.iloc[eval_rows], data.y[eval_rows],
                                          spec.task, [spec.metric])[spec.metric])
        return sum(scores) / len(scores)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=spec.direction,
                                sampler=make_sampler("tpe", spec.seed, cand))
    for params in trials:
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=spec.train.search.n_trials)
    with single_threaded():
        model, _ = fit_model(data.X, data.y, data.kinds,
                             make_estimator(cand.estimator, spec.task,
                                            {**cand.params, **study.best_params}, spec.seed),
                             imbalance="none", task=spec.task, seed=spec.seed)
        score_model(model, prepared.X_test, prepared.y_test, spec.task, [spec.metric])
    return time.perf_counter() - start


def shipyard_train(frame, spec, experiment: str) -> tuple[float, object]:
    import shipyard
    from shipyard.train import train

    ws = shipyard.Workspace.open(tempfile.mkdtemp(prefix="shipyard-bench-"))
    ws.datasets.register("bench", frame)
    start = time.perf_counter()
    result = train(ws, spec, experiment=experiment)
    elapsed = time.perf_counter() - start
    final = ws.runs.get(result.final_run_id)
    result.search_seconds = elapsed - final.wall_seconds  # without the refit
    result.trial_params = trial_params(ws, result.study_run_id)
    ws.close()
    return elapsed, result


def trial_params(ws, study_run_id: str) -> list[dict]:
    """The parameters of every trial of the study behind ``study_run_id``, in
    trial order, typed as Optuna stored them."""
    import optuna

    runs = ws.runs.search(parent=study_run_id, limit=None)
    names = {r.tags["optuna.study"] for r in runs if "optuna.study" in r.tags}
    params = []
    for name in sorted(names):
        study = optuna.load_study(study_name=name, storage=ws.db.url)
        params += [t.params for t in sorted(study.trials, key=lambda t: t.number)]
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--speed-trials", type=int, default=32)
    parser.add_argument("--speed-batch", type=int, default=8)
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()


    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    frame = dataset(args.rows)

    # (a) tracking overhead, n_jobs=1, both in this process
    if not args.skip_overhead:
        overhead(frame, args)
    speedup(frame, args)


def overhead(frame, args) -> None:
    from shipyard.project import parse_project

    spec = parse_project(spec_text(args.trials, 1, (50, 200)))
    shipyard_train(dataset(500), parse_project(spec_text(2, 1, (10, 20))), "warmup")
    tracked, result = shipyard_train(frame, spec, "overhead")
    plain = plain_optuna(frame, spec, result.trial_params)
    print(f"overhead.trials: {args.trials}")
    print(f"overhead.plain_optuna_s: {plain:.2f}")
    print(f"overhead.shipyard_s: {tracked:.2f}")
    print(f"overhead.percent: {100 * (tracked / plain - 1):.1f}")
    print(f"overhead.per_trial_ms: {1000 * (tracked - plain) / args.trials:.1f}")



def speedup(frame, args) -> None:
    """(b): the same search with 1 and 2 workers. Trials run in batches of
    ``--speed-batch`` (the same for both, so both give the same model); each
    batch waits for its slowest trial, so larger batches lose less."""
    from shipyard.project import parse_project

    batch = args.speed_batch
    one_s, one = shipyard_train(frame, parse_project(spec_text(args.speed_trials, 1,
                                                                (300, 400), batch)), "one")
    two_s, two = shipyard_train(frame, parse_project(spec_text(args.speed_trials, 2,
                                                                (300, 400), batch)), "two")
    assert one.model.digest == two.model.digest, "n_jobs changed the result"
    print(f"speedup.trials: {args.speed_trials}")
    print(f"speedup.batch_size: {batch}")
    print(f"speedup.n_jobs1_s: {one_s:.2f}")
    print(f"speedup.n_jobs2_s: {two_s:.2f}")
    print(f"speedup.factor: {one_s / two_s:.2f}")
    print(f"speedup.search_only_n_jobs1_s: {one.search_seconds:.2f}")
    print(f"speedup.search_only_n_jobs2_s: {two.search_seconds:.2f}")
    print(f"speedup.search_only_factor: {one.search_seconds / two.search_seconds:.2f}")
    print(f"speedup.same_model: {one.model.digest == two.model.digest}")


if __name__ == "__main__":
    main()
