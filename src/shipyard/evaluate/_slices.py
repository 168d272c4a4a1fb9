"""Slice metrics: the headline metric on each value (or quantile bin) of a
declared column, flagging slices clearly worse than the whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.evaluate._scores import bootstrap_ci, point_value, weighted_metrics
from shipyard.train import direction

#: Categorical columns keep this many most frequent values; the rest is "(other)".
MAX_GROUPS = 20
MISSING, OTHER = "(missing)", "(other)"


def slice_groups(column: pd.Series, *, bins: int = 4) -> tuple[str, pd.Series]:
    """Label each row with its slice: the value of a categorical column, or
    the quantile bin (``[a, b)``) of a numeric one.

    Returns
    -------
    tuple
        ``(kind, labels)``: ``categorical`` or ``numeric``, and a categorical
        Series of slice names in display order (values sorted, bins ascending,
        ``(other)`` and ``(missing)`` last).

    >>> slice_groups(pd.Series(["b", None, "a"]))[1].cat.categories.tolist()
    ['a', 'b', '(missing)']
    >>> slice_groups(pd.Series(["a", None, "a"]))[1].tolist()
    ['a', '(missing)', 'a']
    """
    numeric = (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
               and column.nunique(dropna=True) > bins)
    if numeric:
        binned = pd.qcut(column.astype("float64"), q=bins, duplicates="drop")
        names = [f"[{iv.left:.4g}, {iv.right:.4g}]" for iv in binned.cat.categories]
        labels = binned.cat.rename_categories(names)
        kind = "numeric"
    else:
        text = column.astype("object").where(column.notna(), None).map(
            lambda v: None if v is None else str(v))
        top = text.value_counts().index[:MAX_GROUPS]
        labels = text.where(text.isin(top) | text.isna(), OTHER)
        order = sorted(top) + ([OTHER] if (labels == OTHER).any() else [])
        labels = pd.Series(pd.Categorical(labels, categories=order), index=column.index)
        kind = "categorical"
    if labels.isna().any():
        labels = labels.cat.add_categories([MISSING]).fillna(MISSING)
    return kind, labels.cat.remove_unused_categories()


def slice_report(frame: pd.DataFrame, y: Any, pred: Any, proba: Any = None, *,
                 columns: Sequence[str], task: str, metric: str, overall: float | None,
                 classes: Sequence | None = None, threshold: float = 0.05,
                 min_rows: int = 30, bins: int = 4, n_bootstrap: int = 200,
                 seed: int = 0) -> dict[str, Any]:
    """Per-slice rows, metric (with a bootstrap interval) and gap to overall.

    A slice is flagged when it has at least ``min_rows`` rows, its metric is
    worse than ``overall`` by more than ``threshold``, and its bootstrap
    interval excludes ``overall`` (so small noisy slices are not flagged).
    ``threshold`` is absolute for classification metrics (all on [0, 1]) and
    relative to ``overall`` for regression ones, whose scale is the target's.

    Parameters
    ----------
    frame
        The evaluated rows, holding ``columns``.
    y, pred, proba
        True values, predictions, probabilities (or None), aligned with ``frame``.
    columns
        Columns to slice by.
    task, metric, overall, classes
        The task, the metric to compare, its value on all rows, the classes.
    threshold, min_rows, bins, n_bootstrap, seed
        Flagging rule, quantile bins for numeric columns, bootstrap settings.

    Returns
    -------
    dict
        ``{"metric", "direction", "overall", "threshold", "relative",
        "min_rows", "columns": {col: {"kind", "groups": [{"group", "rows",
        "value", "ci_low", "ci_high", "gap", "flagged"}]}}, "flagged": [{"column",
        "group", "rows", "value", "gap"}]}``.
    """
    y, pred = np.asarray(y), np.asarray(pred)
    proba = None if proba is None else np.asarray(proba)
    sense = direction(metric)
    relative = task == "regression"
    out: dict[str, Any] = {"metric": metric, "direction": sense, "overall": overall,
                           "threshold": threshold, "relative": relative,
                           "min_rows": min_rows, "columns": {}, "flagged": []}
    for col in columns:
        kind, labels = slice_groups(frame[col], bins=bins)
        groups = []
        codes, uniques = labels.cat.codes.to_numpy(), labels.cat.categories
        for code, group in enumerate(uniques):
            rows = np.flatnonzero(codes == code)
            ys, ps = y[rows], pred[rows]
            pr = None if proba is None else proba[rows]
            value = point_value(task, metric, ys, ps, pr, classes) if len(rows) else None
            low = high = None
            if value is not None and n_bootstrap > 0 and len(rows) > 1:
                fn = weighted_metrics(task, ys, ps, pr, classes)[metric]
                low, high = bootstrap_ci({metric: fn}, len(rows), n_bootstrap=n_bootstrap,
                                         seed=seed)[metric]
            gap = None if value is None or overall is None else value - overall
            flagged = _flag(gap, low, high, overall, sense, threshold, relative,
                            len(rows) >= min_rows)
            groups.append({"group": str(group), "rows": len(rows), "value": value,
                           "ci_low": low, "ci_high": high, "gap": gap, "flagged": flagged})
            if flagged:
                out["flagged"].append({"column": col, "group": str(group), "rows": len(rows),
                                       "value": value, "gap": gap})
        out["columns"][col] = {"kind": kind, "groups": groups}
    return out


def _flag(gap: float | None, low: float | None, high: float | None, overall: float | None,
          sense: str, threshold: float, relative: bool, enough: bool) -> bool:
    if gap is None or overall is None or not enough:
        return False
    worse = -gap if sense == "maximize" else gap
    if relative:
        worse = worse / abs(overall) if overall else float("inf")
    if worse <= threshold:
        return False
    if sense == "maximize":
        return high is None or high < overall
    return low is None or low > overall
