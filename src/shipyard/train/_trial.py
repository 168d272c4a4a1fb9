"""One trial, evaluated where an executor runs it: fit and score each CV fold.

Everything here is a pure function of its arguments: no database, no
artifact store, no global state left behind. That is what lets a trial run
in this process, in a process pool or on Ray and give the same numbers.
The coordinator (:mod:`shipyard.train._study`) asks the sampler, tracks the
run and tells Optuna the result.

Estimators are built single-threaded and seeded (LightGBM ``n_jobs=1`` and
``deterministic``, torch ``num_threads=1``, scikit-learn ``random_state``),
and BLAS is limited to one thread while fitting, because parallel float
reductions may sum in a different order and change the last bits.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Pruning history entry: ``(state, value, {step: intermediate value})``.
HistoryEntry = tuple[str, "float | None", dict]


@dataclass(frozen=True, eq=False)
class TrialData:
    """What every trial of one training reads; sent to each worker once.

    Attributes
    ----------
    X, y
        The training-visible rows (train + validation; never test), feature
        columns only, and their target.
    folds
        ``(fit, evaluate)`` positional indexes into ``X``.
    kinds
        Feature -> preprocessing kind (see :func:`~shipyard.train.column_kinds`).
    task, metric, direction, imbalance, seed, pruner
        From the project spec.
    """

    X: pd.DataFrame
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    kinds: dict[str, str]
    task: str
    metric: str
    direction: str
    imbalance: str
    seed: int
    pruner: str = "none"


@dataclass(frozen=True)
class TrialTask:
    """One trial to evaluate: the estimator, its parameters, and the study's
    history up to this trial (for the pruner)."""

    number: int
    study_name: str
    estimator: str
    params: dict[str, Any]
    history: tuple[HistoryEntry, ...] = ()


@dataclass
class TrialResult:
    """What a worker returns.

    ``status`` is ``complete``, ``pruned`` or ``fail``; ``intermediate`` holds
    the running mean of the fold scores after each fold (what the pruner saw).
    """

    number: int
    status: str
    value: float | None = None
    fold_scores: list[float] = field(default_factory=list)
    intermediate: list[float] = field(default_factory=list)
    error: str | None = None
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    imbalance: dict[str, Any] | None = None


def run_trial(data: TrialData, task: TrialTask) -> TrialResult:
    """Fit and score ``task``'s estimator on each fold of ``data``.

    After each fold but the last, the running mean is reported to a copy of
    the study's pruner (see :func:`should_prune`); a pruned trial stops there.
    An estimator that raises, or a score that is not a number, makes a
    ``fail`` result with the error, never an exception.
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = TrialResult(task.number, "complete")
    try:
        with single_threaded():
            for step, (fit_rows, eval_rows) in enumerate(data.folds):
                estimator = make_estimator(task.estimator, data.task, task.params, data.seed)
                model, record = fit_model(data.X.iloc[fit_rows], data.y[fit_rows], data.kinds,
                                          estimator, imbalance=data.imbalance, task=data.task,
                                          seed=data.seed)
                result.imbalance = record
                value = score_model(model, data.X.iloc[eval_rows], data.y[eval_rows],
                                    data.task, [data.metric])[data.metric]
                if not math.isfinite(value):
                    raise ValueError(f"{data.metric} is {value} on fold {step}")
                result.fold_scores.append(value)
                result.intermediate.append(float(np.mean(result.fold_scores)))
                if data.pruner != "none" and step < len(data.folds) - 1 and should_prune(
                        data.pruner, data.direction, task, result.intermediate):
                    result.status = "pruned"
                    break
        result.value = result.intermediate[-1]
    except Exception as exc:  # a bad parameter fails this trial, not the study
        result.status, result.value = "fail", None
        result.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    result.cpu_seconds = time.process_time() - cpu0
    result.wall_seconds = time.perf_counter() - wall0
    return result


def should_prune(pruner: str, direction: str, task: TrialTask, intermediate: list[float]) -> bool:
    """Ask the real Optuna pruner, on an in-memory copy of the study's history
    up to ``task.number``, whether the running scores say stop.

    Trials of the same batch that were still running are placeholders in
    ``history`` (FAIL, no values), so trial numbers — which HyperbandPruner
    uses to pick a bracket — match the real study.
    """
    import optuna
    from optuna.storages import InMemoryStorage
    from optuna.trial import TrialState, create_trial

    from shipyard.train._space import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=InMemoryStorage(), study_name=task.study_name,
                                pruner=make_pruner(pruner), direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.add_trials([create_trial(state=TrialState[state], value=value,
                                   intermediate_values={int(k): v for k, v in steps.items()})
                      for state, value, steps in task.history[:task.number]])
    trial = study.ask()
    for step, value in enumerate(intermediate):
        trial.report(value, step)
    return trial.should_prune()


# ---------------------------------------------------------- fit and score
def make_estimator(path: str, task: str, params: dict[str, Any], seed: int) -> Any:
    """An unfitted estimator for ``path`` (import path, ``lightgbm`` or
    ``torch_mlp``), seeded and single-threaded unless ``params`` say otherwise."""
    from shipyard.train._spec import estimator_params, validate_estimator

    cls = validate_estimator(path, task)
    names, _, _ = estimator_params(cls)
    if cls.__module__.startswith("lightgbm"):
        defaults: dict[str, Any] = {"random_state": seed, "n_jobs": 1, "deterministic": True,
                                    "force_row_wise": True, "verbose": -1}
    elif cls.__module__.startswith("shipyard.train"):
        defaults = {"seed": seed, "num_threads": 1}
    else:
        defaults = {"random_state": seed} if "random_state" in names else {}
    return cls(**{**defaults, **params})


def fit_model(X: pd.DataFrame, y: np.ndarray, kinds: dict[str, str], estimator: Any, *,
              imbalance: str, task: str, seed: int) -> tuple[Any, dict[str, Any] | None]:
    """Fit preprocessing + ``estimator`` on ``X, y`` as one Pipeline.

    The imbalance strategy is applied to the preprocessed matrix of these
    rows only (SMOTE needs numbers), so it never touches evaluation rows.

    Returns
    -------
    (Pipeline, record)
        The fitted pipeline (steps ``preprocess`` and ``model``) and the
        :attr:`Rebalanced.record` (None for regression).
    """
    from sklearn.pipeline import Pipeline

    from shipyard.train._imbalance import rebalance
    from shipyard.train._preprocess import build_preprocessor

    pre = build_preprocessor({c: {"kind": k} for c, k in kinds.items()}, list(kinds))
    Xt = pre.fit_transform(X, y)
    record = None
    fit_kwargs: dict[str, Any] = {}
    if task != "regression":
        balanced = rebalance(imbalance, Xt, y, task=task, seed=seed, estimator=estimator)
        Xt, y, record = balanced.X, balanced.y, balanced.record
        if balanced.params:
            estimator.set_params(**balanced.params)
        if balanced.sample_weight is not None:
            fit_kwargs["sample_weight"] = balanced.sample_weight
    estimator.fit(Xt, y, **fit_kwargs)
    return Pipeline([("preprocess", pre), ("model", estimator)]), record


def score_model(model: Any, X: pd.DataFrame, y: np.ndarray, task: str,
                names: list[str]) -> dict[str, float]:
    """Score a fitted model on ``X, y`` with each metric in ``names`` (one
    prediction pass). Metrics that cannot be computed here are left out."""
    from shipyard.errors import ShipyardError
    from shipyard.train._metrics import METRICS, score

    table = METRICS[task]
    pred = model.predict(X)
    proba = model.predict_proba(X) if any(table[n].needs_proba for n in names) \
        and hasattr(model, "predict_proba") else None
    labels = getattr(model, "classes_", None)
    out = {}
    for name in names:
        try:
            out[name] = score(task, name, y, pred, proba, labels=labels)
        except ShipyardError:
            if len(names) == 1:
                raise
    return out


@contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS/OpenMP on one thread and convergence warnings silenced, for a block."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*feature names.*")
        yield
