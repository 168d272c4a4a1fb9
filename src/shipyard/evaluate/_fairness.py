"""Group fairness with fairlearn: per-group metrics and the standard gaps.

Mitigation (post-processing, reductions) lives in
:mod:`shipyard.evaluate._mitigation`; this module only measures.
"""

from __future__ import annotations

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
                    classes: Sequence | None = None) -> dict[str, Any]:
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
        out["features"][col] = entry
    return out


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
