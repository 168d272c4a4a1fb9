"""Group fairness with fairlearn: per-group metrics and the standard gaps.

Mitigation (post-processing, reductions) lives in
:mod:`shipyard.evaluate._mitigation`; this module only measures.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.evaluate._slices import MISSING

#: Gap figures reported per sensitive feature of a binary task.
GAPS = ("demographic_parity_difference", "demographic_parity_ratio",
        "equalized_odds_difference", "equalized_odds_ratio")


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def fairness_report(sensitive: pd.DataFrame, y: Any, pred: Any, *, task: str,
                    classes: Sequence | None = None, n_bootstrap: int = 0, seed: int = 0,
                    confidence: float = 0.95) -> dict[str, Any]:
    """Per-group metrics and gaps for each sensitive column.

    Parameters
    ----------
    sensitive
        One column per sensitive feature, aligned with ``y``.
    y, pred
        True and predicted labels (or values).
    task
        ``binary``, ``multiclass`` or ``regression``.
    classes
        Class labels; the last is the positive class of a binary task.
    n_bootstrap, seed, confidence
        With ``n_bootstrap > 0`` (binary tasks), each gap of :data:`GAPS`
        gets a percentile interval from the same row resamples the metrics'
        intervals use (:func:`~shipyard.evaluate._scores.bootstrap_counts`
        with the same seed): ``"ci": {gap: {"ci_low", "ci_high"}}`` beside
        the gaps. A small group's rates are noisy, so its gap's interval is
        wide; gates can read either end (``FairnessRule.use``).

    Returns
    -------
    dict
        ``{"positive_label", "features": {col: {"groups": [...], <gaps>}}}``.
        Binary: groups carry ``count, selection_rate, accuracy, tpr, fpr``,
        gaps are :data:`GAPS` plus ``accuracy_difference``. Multiclass: groups
        carry ``count, accuracy``, gap ``accuracy_difference``. Regression:
        groups carry ``count, mae, mean_prediction``, gaps ``mae_difference``
        and ``mae_ratio``. Undefined figures are None.

    >>> s = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    >>> r = fairness_report(s, [1, 0, 1, 0], [1, 1, 0, 0], task="binary", classes=[0, 1])
    >>> r["features"]["g"]["demographic_parity_difference"]
    1.0
    """
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, mean_absolute_error

    y, pred = np.asarray(y), np.asarray(pred)
    positive = None
    if task == "binary":
        positive = list(classes)[-1] if classes is not None else np.unique(y)[-1]
        y, pred = (y == positive).astype(int), (pred == positive).astype(int)
    out: dict[str, Any] = {"positive_label": _plain(positive), "features": {}}
    for col in sensitive.columns:
        groups = sensitive[col].astype("object").where(sensitive[col].notna(), MISSING)
        groups = groups.astype(str).to_numpy()
        if task == "regression":
            metrics = {"count": count, "mae": mean_absolute_error,
                       "mean_prediction": lambda yt, yp: float(np.mean(yp))}
        elif task == "binary":
            metrics = {"count": count, "selection_rate": selection_rate,
                       "accuracy": accuracy_score, "tpr": true_positive_rate,
                       "fpr": false_positive_rate}
        else:
            metrics = {"count": count, "accuracy": accuracy_score}
        frame = MetricFrame(metrics=metrics, y_true=y, y_pred=pred, sensitive_features=groups)
        by_group = frame.by_group
        rows = [{"group": str(g), **{k: (int(v) if k == "count" else _finite(v))
                                     for k, v in by_group.loc[g].items()}}
                for g in by_group.index]
        entry: dict[str, Any] = {"groups": rows}
        if task == "regression":
            maes = by_group["mae"].astype(float)
            entry["mae_difference"] = _finite(maes.max() - maes.min())
            entry["mae_ratio"] = _finite(maes.min() / maes.max()) if maes.max() > 0 else None
        else:
            acc = by_group["accuracy"].astype(float)
            entry["accuracy_difference"] = _finite(acc.max() - acc.min())
        if task == "binary":
            for name, fn in zip(GAPS, (demographic_parity_difference, demographic_parity_ratio,
                                       equalized_odds_difference, equalized_odds_ratio)):
                entry[name] = _finite(fn(y, pred, sensitive_features=groups))
            if n_bootstrap > 0:
                entry["ci"] = gap_intervals(groups, y, pred, n_bootstrap=n_bootstrap,
                                            seed=seed, confidence=confidence)
        out["features"][col] = entry
    if task == "binary" and n_bootstrap > 0:
        out["bootstrap"] = {"n": int(n_bootstrap), "confidence": confidence, "seed": seed,
                            "method": "percentile"}
    return out


def gap_intervals(groups: np.ndarray, y: np.ndarray, pred: np.ndarray, *, n_bootstrap: int,
                  seed: int = 0, confidence: float = 0.95) -> dict[str, dict[str, float | None]]:
    """Percentile intervals of the binary gaps (:data:`GAPS`) over row resamples.

    The gaps depend on the rows only through each group's confusion counts,
    so a resample's gaps come from one product of its count matrix with the
    rows' one-hot (group, label, decision) cells. Groups a resample leaves
    without rows (or without positives, for TPR) drop out of that resample's
    gap, as they would from fairlearn's.

    >>> g = np.array(["a"] * 50 + ["b"] * 50)
    >>> y = np.tile([0, 1], 50); p = np.r_[np.tile([0, 1], 25), np.zeros(50, int)]
    >>> ci = gap_intervals(g, y, p, n_bootstrap=200)
    >>> ci["demographic_parity_difference"]["ci_low"] > 0.3
    True
    """
    from shipyard.evaluate._scores import bootstrap_ci

    names, index = np.unique(groups, return_inverse=True)
    k = len(names)
    cells = np.zeros((len(index), 4 * k))  # (group, label, decision) one-hot
    cells[np.arange(len(index)), 4 * index + 2 * np.asarray(y, int) + np.asarray(pred, int)] = 1
    last: dict[int, dict[str, np.ndarray]] = {}

    def rates(w: np.ndarray) -> dict[str, np.ndarray]:
        if id(w) not in last:  # the four gaps share one product per resample chunk
            c = (w @ cells).reshape(len(w), k, 2, 2)  # [resample, group, label, decision]
            with np.errstate(divide="ignore", invalid="ignore"):
                last.clear()
                last[id(w)] = {
                    "selection": c[..., 1].sum(axis=2) / c.sum(axis=(2, 3)),
                    "tpr": c[:, :, 1, 1] / c[:, :, 1, :].sum(axis=2),
                    "fpr": c[:, :, 0, 1] / c[:, :, 0, :].sum(axis=2)}
        return last[id(w)]

    def spread(values: np.ndarray, ratio: bool) -> np.ndarray:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples
            hi, lo = np.nanmax(values, axis=1), np.nanmin(values, axis=1)
            return np.where(hi > 0, lo / hi, np.nan) if ratio else hi - lo

    def odds(w: np.ndarray, ratio: bool) -> np.ndarray:
        r = rates(w)
        pick = np.minimum if ratio else np.maximum
        return pick(spread(r["tpr"], ratio), spread(r["fpr"], ratio))

    stats = {"demographic_parity_difference": lambda w: spread(rates(w)["selection"], False),
             "demographic_parity_ratio": lambda w: spread(rates(w)["selection"], True),
             "equalized_odds_difference": lambda w: odds(w, False),
             "equalized_odds_ratio": lambda w: odds(w, True)}
    bounds = bootstrap_ci(stats, len(index), n_bootstrap=n_bootstrap, seed=seed,
                          confidence=confidence)
    return {name: {"ci_low": low, "ci_high": high} for name, (low, high) in bounds.items()}


def max_gap(fairness: dict[str, Any] | None) -> dict[str, float]:
    """The largest value of each *difference* gap over all sensitive features."""
    worst: dict[str, float] = {}
    for entry in (fairness or {}).get("features", {}).values():
        for key, value in entry.items():
            if key.endswith("_difference") and value is not None:
                worst[key] = max(worst.get(key, 0.0), value)
    return worst


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
