"""Task metrics with percentile bootstrap confidence intervals, and the curves.

Point estimates come from :func:`shipyard.train._metrics.score` (scikit-learn),
so they match what training reports. The bootstrap needs a metric for each of
hundreds of resamples; calling scikit-learn that often costs seconds per metric
on 100k rows. A resample with replacement is the same as weighting each row by
how often it was drawn, so every metric here is also written once in
*count-weighted* form over a ``(n_bootstrap, n_rows)`` count matrix: sums become
matrix-vector products and one call scores every resample at once. The tests
check the weighted forms against scikit-learn with unit weights.

>>> import numpy as np
>>> y = np.array([0, 1] * 50); p = np.where(y == 1, 0.8, 0.3)
>>> m = task_metrics(y, p.round(), np.c_[1 - p, p], task="binary", classes=[0, 1],
...                  n_bootstrap=50)
>>> m["values"]["accuracy"]["value"], m["headline"]
(1.0, 'roc_auc')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.errors import ConfigError, DataError
from shipyard.train import direction, needs_proba

#: Metrics reported per task, in display order.
TASK_METRICS = {
    "binary": ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss",
               "brier"),
    "multiclass": ("accuracy", "precision_macro", "recall_macro", "f1_macro", "log_loss",
                   "roc_auc_ovr"),
    "regression": ("mae", "rmse", "r2", "mape"),
}
#: Rows of the count matrix scored at once (bounds memory to ~40 MB of float64).
_CHUNK_CELLS = 5_000_000
_MAX_CURVE_POINTS = 200
_EPS = np.finfo(np.float64).eps


def resolve_task(task: str, classes: Sequence | None = None) -> str:
    """Normalise a task name: ``classification`` becomes ``binary`` or
    ``multiclass`` by the number of classes.

    Raises
    ------
    ConfigError
        Unknown task.
    """
    if task in ("binary", "multiclass", "regression"):
        return task
    if task == "classification":
        if classes is None:
            raise ConfigError("task 'classification' needs the classes to tell binary from "
                              "multiclass", hint="pass task='binary' or 'multiclass'")
        return "binary" if len(classes) <= 2 else "multiclass"
    raise ConfigError(f"unknown task {task!r}",
                      hint="use binary, multiclass, classification or regression")


def default_headline(task: str, has_proba: bool) -> str:
    """The metric a report leads with: ROC-AUC (binary, with probabilities),
    accuracy (other classification), RMSE (regression)."""
    if task == "regression":
        return "rmse"
    if task == "binary" and has_proba:
        return "roc_auc"
    return "accuracy"


# ----------------------------------------------------------- resampling
def bootstrap_counts(n_rows: int, n_bootstrap: int, seed: int) -> Any:
    """Yield count matrices ``(b, n_rows)`` (float64) of ``n_bootstrap``
    resamples with replacement, in chunks; row ``i`` of the whole sequence is
    the same for the same seed whatever the chunking."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // max(n_rows, 1))
    done = 0
    while done < n_bootstrap:
        b = min(per_chunk, n_bootstrap - done)
        idx = rng.integers(0, n_rows, size=(b, n_rows))
        flat = (idx + (np.arange(b) * n_rows)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_rows).reshape(b, n_rows).astype(np.float64)
        done += b


def bootstrap_ci(weighted: Mapping[str, Callable[[np.ndarray], np.ndarray]], n_rows: int, *,
                 n_bootstrap: int = 200, seed: int = 0, confidence: float = 0.95
                 ) -> dict[str, tuple[float | None, float | None]]:
    """Percentile confidence intervals of count-weighted statistics, all
    computed on the same resamples.

    Parameters
    ----------
    weighted
        Name -> function mapping a count matrix ``(b, n_rows)`` to ``b``
        statistic values.
    n_rows, n_bootstrap, seed, confidence
        Sample size, resamples, RNG seed, interval coverage.

    Returns
    -------
    dict
        Name -> ``(low, high)``; None bounds where every resample was
        undefined.

    >>> x = np.arange(100.0)
    >>> low, high = bootstrap_ci({"mean": lambda w: w @ x / 100}, 100, seed=1)["mean"]
    >>> low < 49.5 < high
    True
    """
    draws: dict[str, list[np.ndarray]] = {name: [] for name in weighted}
    for w in bootstrap_counts(n_rows, n_bootstrap, seed):
        for name, fn in weighted.items():
            draws[name].append(fn(w))
    alpha = (1 - confidence) / 2
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, parts in draws.items():
        values = np.concatenate(parts) if parts else np.empty(0)
        finite = values[np.isfinite(values)]
        if not len(finite):
            out[name] = (None, None)
            continue
        low, high = np.quantile(finite, [alpha, 1 - alpha])
        out[name] = (float(low), float(high))
    return out


# ------------------------------------------------------ weighted metrics
def _div(a: np.ndarray, b: np.ndarray, zero: float = 0.0) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), zero)


def _weighted_auc(w: np.ndarray, hit: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC (Mann-Whitney, ties count half) of each weighted resample."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ws, h = w[:, order], hit[order]
    pos = np.add.reduceat(ws * h, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - h), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _div(num, pos.sum(axis=1) * neg.sum(axis=1), np.nan)


def _weighted_ap(w: np.ndarray, hit: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's step-wise definition) per resample."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ws, h = w[:, order], hit[order]
    pos = np.add.reduceat(ws * h, starts, axis=1)
    tot = np.add.reduceat(ws, starts, axis=1)
    precision = _div(np.cumsum(pos, axis=1), np.cumsum(tot, axis=1))
    return _div((pos * precision).sum(axis=1), pos.sum(axis=1), np.nan)


def weighted_metrics(task: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
                     classes: Sequence | None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Count-weighted forms of :data:`TASK_METRICS`: name -> ``f(W) -> values``.

    With ``W`` a row of ones they equal scikit-learn's values.
    """
    n = len(y)
    if task == "regression":
        y = y.astype(np.float64)
        err = pred.astype(np.float64) - y
        ape = np.abs(err) / np.maximum(np.abs(y), _EPS)

        def r2(w: np.ndarray) -> np.ndarray:
            tot = w.sum(axis=1)
            sst = w @ (y * y) - (w @ y) ** 2 / tot
            return np.where(sst > 0, 1 - _div(w @ (err * err), sst), np.nan)

        return {"mae": lambda w: w @ np.abs(err) / n,
                "rmse": lambda w: np.sqrt(w @ (err * err) / n),
                "r2": r2, "mape": lambda w: w @ ape / n}
    labels = list(classes)
    correct = (y == pred).astype(np.float64)
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {"accuracy": lambda w: w @ correct / n}
    if task == "binary":
        hit = (y == labels[-1]).astype(np.float64)
        said = (pred == labels[-1]).astype(np.float64)
        tp = hit * said
        out["precision"] = lambda w: _div(w @ tp, w @ said)
        out["recall"] = lambda w: _div(w @ tp, w @ hit)
        out["f1"] = lambda w: _div(2 * (w @ tp), w @ said + w @ hit)
        if proba is not None:
            p = proba[:, -1] if proba.ndim == 2 else proba
            pc = np.clip(p, _EPS, 1 - _EPS)
            ll = -(hit * np.log(pc) + (1 - hit) * np.log(1 - pc))
            sq = (p - hit) ** 2
            out["roc_auc"] = lambda w: _weighted_auc(w, hit, p)
            out["pr_auc"] = lambda w: _weighted_ap(w, hit, p)
            out["log_loss"] = lambda w: w @ ll / n
            out["brier"] = lambda w: w @ sq / n
        return out
    hits = np.stack([(y == c) for c in labels], axis=1).astype(np.float64)
    saids = np.stack([(pred == c) for c in labels], axis=1).astype(np.float64)
    tps = hits * saids

    def macro(kind: str) -> Callable[[np.ndarray], np.ndarray]:
        def f(w: np.ndarray) -> np.ndarray:
            tp, said, hit = w @ tps, w @ saids, w @ hits
            per = {"precision": lambda: _div(tp, said), "recall": lambda: _div(tp, hit),
                   "f1": lambda: _div(2 * tp, said + hit)}[kind]()
            return per.mean(axis=1)
        return f

    for kind in ("precision", "recall", "f1"):
        out[f"{kind}_macro"] = macro(kind)
    if proba is not None:
        norm = proba / proba.sum(axis=1, keepdims=True)
        ll = -np.log(np.clip((norm * hits).sum(axis=1), _EPS, 1 - _EPS))
        out["log_loss"] = lambda w: w @ ll / n

        def ovr(w: np.ndarray) -> np.ndarray:
            aucs = [_weighted_auc(w, hits[:, k], proba[:, k]) for k in range(len(labels))]
            return np.mean(aucs, axis=0)

        out["roc_auc_ovr"] = ovr
    return out


# ------------------------------------------------------- point estimates
def point_value(task: str, name: str, y: np.ndarray, pred: np.ndarray,
                proba: np.ndarray | None, classes: Sequence | None) -> float | None:
    """A metric's value computed by scikit-learn (via ``train._metrics.score``
    where it knows the metric); None where it is undefined."""
    from shipyard.train import METRICS, score

    try:
        if name in METRICS.get(task, {}):
            value = score(task, name, y, pred, proba, labels=classes)
        else:  # macro precision/recall of a multiclass task
            from sklearn import metrics as skm

            fn = getattr(skm, f"{name.split('_')[0]}_score")
            value = fn(y, pred, average="macro", labels=list(classes), zero_division=0.0)
    except DataError:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


# ------------------------------------------------------------- report
def task_metrics(y: Any, pred: Any, proba: Any = None, *, task: str,
                 classes: Sequence | None = None, n_bootstrap: int = 200, seed: int = 0,
                 confidence: float = 0.95, headline: str | None = None) -> dict[str, Any]:
    """Metrics with bootstrap confidence intervals, confusion matrix and curves.

    Parameters
    ----------
    y, pred
        True and predicted labels (or values).
    proba
        Class probabilities ``(n, n_classes)`` in the order of ``classes``, if
        the model gives them.
    task
        ``binary``, ``multiclass`` or ``regression``.
    classes
        Class labels (the model's ``classes_``); the last is the positive
        class of a binary task.
    n_bootstrap, seed, confidence
        Resamples (0 disables intervals), RNG seed, interval coverage.
    headline
        Metric to lead with; default :func:`default_headline`.

    Returns
    -------
    dict
        ``{"task", "n_rows", "headline", "values": {name: {"value", "ci_low",
        "ci_high", "direction"}}, "bootstrap": {...}, "confusion_matrix",
        "curves"}`` (see :mod:`shipyard.evaluate._report` for the schema).
    """
    y, pred = np.asarray(y), np.asarray(pred)
    proba = None if proba is None else np.asarray(proba, dtype=np.float64)
    if task != "regression" and classes is None:
        classes = np.unique(np.concatenate([y, pred])).tolist()
    headline = headline or default_headline(task, proba is not None)
    names = [m for m in TASK_METRICS[task] if proba is not None or not needs_proba(m)]
    if headline not in names:
        raise ConfigError(f"headline metric {headline!r} is not reported for this {task} task",
                          hint=f"choose one of {', '.join(names)}")
    weighted = weighted_metrics(task, y, pred, proba, classes)
    points = {name: point_value(task, name, y, pred, proba, classes) for name in names}
    cis: dict[str, tuple[float | None, float | None]] = {}
    if n_bootstrap > 0:
        cis = bootstrap_ci({n: weighted[n] for n in names if points[n] is not None}, len(y),
                           n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    values = {name: {"value": points[name], "ci_low": cis.get(name, (None, None))[0],
                     "ci_high": cis.get(name, (None, None))[1], "direction": direction(name)}
              for name in names}
    out: dict[str, Any] = {
        "task": task, "n_rows": len(y), "headline": headline, "values": values,
        "bootstrap": {"n": int(n_bootstrap), "confidence": confidence, "seed": seed,
                      "method": "percentile"},
        "confusion_matrix": None, "curves": {}}
    if task != "regression":
        out["confusion_matrix"] = confusion(y, pred, classes)
    if task == "binary" and proba is not None:
        out["curves"] = binary_curves(y, proba, classes)
    return out


def confusion(y: np.ndarray, pred: np.ndarray, classes: Sequence) -> dict[str, Any]:
    """``{"labels": [...], "matrix": [[...]]}``: rows are true, columns predicted."""
    from sklearn.metrics import confusion_matrix

    labels = list(classes)
    matrix = confusion_matrix(y, pred, labels=labels)
    return {"labels": [_plain(c) for c in labels], "matrix": matrix.tolist()}


def _thin(*arrays: np.ndarray, limit: int = _MAX_CURVE_POINTS) -> list[list[float]]:
    """Keep at most ``limit`` evenly spaced points, always the first and last."""
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int)) if n else []
    return [[float(v) for v in a[keep]] for a in arrays]


def binary_curves(y: np.ndarray, proba: np.ndarray, classes: Sequence) -> dict[str, Any]:
    """ROC and precision-recall curves (≤ 200 points each) and a 10-bin
    calibration curve of the positive class."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    hit = (y == list(classes)[-1]).astype(int)
    p = proba[:, -1] if proba.ndim == 2 else proba
    if hit.min() == hit.max():
        return {}
    fpr, tpr, _ = roc_curve(hit, p)
    precision, recall, _ = precision_recall_curve(hit, p)
    fpr_l, tpr_l = _thin(fpr, tpr)
    rec_l, prec_l = _thin(recall[::-1], precision[::-1])
    bins = np.clip((p * 10).astype(int), 0, 9)
    count = np.bincount(bins, minlength=10)
    mean_p = _div(np.bincount(bins, weights=p, minlength=10), count, np.nan)
    frac = _div(np.bincount(bins, weights=hit, minlength=10), count, np.nan)
    used = count > 0
    return {
        "roc": {"fpr": fpr_l, "tpr": tpr_l},
        "pr": {"recall": rec_l, "precision": prec_l, "prevalence": float(hit.mean())},
        "calibration": {"bins": 10, "mean_predicted": mean_p[used].tolist(),
                        "fraction_positive": frac[used].tolist(),
                        "count": count[used].tolist()},
    }


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value
