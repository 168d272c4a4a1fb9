"""Scoring predictions by name, with the direction each metric is optimised in.

The names are those a project file's ``train.search.metric`` may give. The
table imports nothing heavy; scikit-learn loads when :func:`score` runs.

>>> score("binary", "accuracy", [0, 1, 1, 0], [0, 1, 0, 0])
0.75
>>> METRICS["regression"]["rmse"].direction
'minimize'
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.errors import ConfigError, DataError


@dataclass(frozen=True)
class Metric:
    """A metric's name, direction and whether it scores probabilities."""

    name: str
    direction: str
    needs_proba: bool = False


def _table(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


_MAX, _MIN = "maximize", "minimize"
#: Task -> metric name -> :class:`Metric`.
METRICS: dict[str, dict[str, Metric]] = {
    "binary": _table(
        Metric("roc_auc", _MAX, True), Metric("pr_auc", _MAX, True),
        Metric("average_precision", _MAX, True), Metric("accuracy", _MAX),
        Metric("balanced_accuracy", _MAX), Metric("f1", _MAX), Metric("precision", _MAX),
        Metric("recall", _MAX), Metric("log_loss", _MIN, True), Metric("brier", _MIN, True)),
    "multiclass": _table(
        Metric("accuracy", _MAX), Metric("balanced_accuracy", _MAX), Metric("f1_macro", _MAX),
        Metric("f1_weighted", _MAX), Metric("precision_macro", _MAX),
        Metric("recall_macro", _MAX), Metric("log_loss", _MIN, True),
        Metric("roc_auc_ovr", _MAX, True)),
    "regression": _table(
        Metric("rmse", _MIN), Metric("mae", _MIN), Metric("r2", _MAX), Metric("mape", _MIN)),
}


def direction(name: str) -> str:
    """``maximize`` or ``minimize``: the direction of metric ``name`` (any task).

    >>> direction("log_loss"), direction("roc_auc")
    ('minimize', 'maximize')
    """
    for table in METRICS.values():
        if name in table:
            return table[name].direction
    return _MAX


def needs_proba(name: str) -> bool:
    """Whether metric ``name`` scores probabilities (any task)."""
    return any(table[name].needs_proba for table in METRICS.values() if name in table)


def metric(task: str, name: str) -> Metric:
    """Look up ``name`` among ``task``'s metrics.

    Raises
    ------
    ConfigError
        Unknown task, or ``name`` is not one of its metrics.
    """
    if task not in METRICS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(METRICS)}")
    known = METRICS[task]
    if name not in known:
        other = [t for t, table in METRICS.items() if name in table]
        if other:
            why = f"{name!r} is a {' and '.join(other)} metric, not a {task} one"
        else:
            close = difflib.get_close_matches(str(name), list(known), n=1)
            why = f"unknown metric {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
        raise ConfigError(why, hint=f"{task} metrics are: {', '.join(known)}")
    return known[name]


def score(task: str, metric_name: str, y_true: Any, y_pred: Any = None, y_proba: Any = None,
          *, labels: Sequence | None = None) -> float:
    """Score predictions with a named metric.

    Parameters
    ----------
    task
        ``binary``, ``multiclass`` or ``regression``.
    metric_name
        One of ``METRICS[task]``.
    y_true, y_pred
        True and predicted labels (or values). ``y_pred`` may be None for a
        metric that scores probabilities.
    y_proba
        Class probabilities, columns in the order of ``labels``; for binary
        tasks also just the positive class's column.
    labels
        The classes, in ``y_proba``'s column order (an estimator's
        ``classes_``); the last one is the positive class of a binary task.
        Default: the sorted classes in ``y_true`` and ``y_pred``.

    Returns
    -------
    float
        The score; NaN where scikit-learn finds it undefined.

    Raises
    ------
    ConfigError
        Unknown task or metric, or probabilities missing for a metric that
        needs them.
    DataError
        The arrays do not fit together or the metric cannot be computed.
    """
    spec = metric(task, metric_name)
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    given = y_proba if spec.needs_proba else y_pred
    if given is None:
        what = "probabilities (y_proba)" if spec.needs_proba else "predictions (y_pred)"
        raise ConfigError(f"{metric_name} scores {what}, which were not given",
                          hint="the estimator needs predict_proba for this metric"
                          if spec.needs_proba else None)
    given = np.asarray(given)
    if len(given) != len(y_true):
        raise DataError(f"{metric_name}: {len(y_true)} true values but {len(given)} "
                        f"{'probabilities' if spec.needs_proba else 'predictions'}")
    if labels is None and task != "regression":
        seen = [y_true] if spec.needs_proba else [y_true, given]
        labels = np.unique(np.concatenate(seen))
    try:
        if task == "regression":
            value = _regression(skm, metric_name, y_true, given)
        elif task == "binary":
            value = _binary(skm, metric_name, y_true, given, list(labels))
        else:
            value = _multiclass(skm, metric_name, y_true, given, list(labels))
    except ValueError as exc:
        raise DataError(f"cannot compute {metric_name} for this {task} task: {exc}") from exc
    return float(value)


def _regression(skm: Any, name: str, y: np.ndarray, pred: np.ndarray) -> float:
    fn = {"rmse": skm.root_mean_squared_error, "mae": skm.mean_absolute_error,
          "r2": skm.r2_score, "mape": skm.mean_absolute_percentage_error}[name]
    return fn(y, pred)


def _binary(skm: Any, name: str, y: np.ndarray, out: np.ndarray, labels: list) -> float:
    if len(labels) > 2:
        raise ValueError(f"a binary task has 2 classes, got {len(labels)}: {labels}")
    positive = labels[-1]
    if name in ("accuracy", "balanced_accuracy"):
        return getattr(skm, f"{name}_score")(y, out)
    if name in ("f1", "precision", "recall"):
        return getattr(skm, f"{name}_score")(y, out, pos_label=positive, zero_division=0.0)
    if out.ndim == 2:
        if out.shape[1] != 2:
            raise ValueError(f"expected 2 probability columns, got {out.shape[1]}")
        out = out[:, 1]
    hit = (y == positive).astype(int)
    if name == "roc_auc":
        return skm.roc_auc_score(hit, out)
    if name in ("pr_auc", "average_precision"):
        return skm.average_precision_score(hit, out)
    if name == "log_loss":
        return skm.log_loss(hit, out, labels=[0, 1])
    return skm.brier_score_loss(hit, out, pos_label=1)


def _multiclass(skm: Any, name: str, y: np.ndarray, out: np.ndarray, labels: list) -> float:
    if name in ("accuracy", "balanced_accuracy"):
        return getattr(skm, f"{name}_score")(y, out)
    if name in ("f1_macro", "f1_weighted", "precision_macro", "recall_macro"):
        kind, average = name.split("_")
        fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
        return fn[kind](y, out, average=average, labels=labels, zero_division=0.0)
    if out.ndim != 2 or out.shape[1] != len(labels):
        raise ValueError(f"expected one probability column per class ({len(labels)}), got "
                         f"shape {out.shape}")
    if name == "log_loss":
        return skm.log_loss(y, out, labels=labels)
    return skm.roc_auc_score(y, out, multi_class="ovr", labels=labels)
