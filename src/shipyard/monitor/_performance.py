"""Model performance in production (docs/monitoring.md §3).

Realized
    On the window's labelled rows: the evaluation metrics with percentile
    bootstrap confidence intervals (:func:`shipyard.evaluate.task_metrics`,
    the same figures an evaluation report gives).
Estimated (CBPE, before labels arrive)
    Confidence-based performance estimation for classifiers: if the model's
    probabilities are calibrated, row ``i`` is of class ``t`` with
    probability ``p_i[t]``, so the *expected* confusion matrix is
    ``E[t, k] = Σ_i p_i[t]·[pred_i = k]`` and accuracy, precision, recall and
    F1 follow from it; a binary ROC-AUC is the expected share of
    (positive, negative) pairs ranked right, ``Σ p_i (1 − p_j) [s_i > s_j] /
    (Σ p_i · Σ (1 − p_j))``, computed on 2,000 score bins. The accuracy's
    interval is ±1.96 standard deviations of the number of correct rows (a
    sum of independent Bernoulli(q_i)). Probabilities are taken as the model
    gives them: CBPE is as good as their calibration.
Reference
    The version's newest evaluation report on its artifact (metrics with
    intervals), else the test-split metrics its training run logged
    (``test.<metric>``, no interval).

Degradation (:func:`degradation`): a metric is degraded when the window's
interval lies entirely on the bad side of the reference's interval (of its
value, when the reference has none; the window's value, when the window has no
interval). Comparing the window's value alone with a reference interval from
tens of thousands of evaluation rows would flag a few hundred healthy rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.registry import ModelVersion

#: Score bins of the CBPE ROC-AUC estimate.
AUC_BINS = 2_000
#: Where an evaluation run stores its report (shipyard.evaluate's layout).
EVALUATION_REPORT = "evaluation/report.json"
_Z = 1.959963984540054


def headline(task: str, has_proba: bool) -> str:
    """The metric a verdict is judged on: ROC-AUC (binary with
    probabilities), accuracy (other classifiers), RMSE (regression)."""
    if task == "regression":
        return "rmse"
    return "roc_auc" if task == "binary" and has_proba else "accuracy"


def _keys(classes: Sequence) -> dict[str, Any]:
    from shipyard.data import ColumnSketch

    return {ColumnSketch.key(c): c for c in classes}


def align_labels(values: Sequence, classes: Sequence | None) -> np.ndarray:
    """Labels as the model's class objects (``"1"``, ``1`` and ``1.0`` are
    class ``1``); unknown labels become None."""
    from shipyard.data import ColumnSketch

    if classes is None:
        return np.asarray(values)
    keys = _keys(classes)
    out = np.empty(len(values), dtype=object)
    out[:] = [None if v is None else keys.get(ColumnSketch.key(v)) for v in values]
    return out


def realized_performance(y: Sequence, pred: Sequence, proba: Any = None, *, task: str,
                         classes: Sequence | None = None, n_bootstrap: int = 200,
                         seed: int = 0) -> dict[str, dict[str, Any]]:
    """Metrics of ``pred`` (and ``proba``) against the labels ``y``, with
    bootstrap intervals.

    Returns
    -------
    dict
        ``{metric: {"value", "ci_low", "ci_high", "n"}}``; empty without rows.
    """
    from shipyard.evaluate import task_metrics

    if not len(y):
        return {}
    if task != "regression" and classes is not None:
        y = align_labels(list(y), classes)  # before numpy turns mixed labels into text
        pred = align_labels(list(pred), classes)
        keep = np.array([a is not None and b is not None for a, b in zip(y, pred)])
        if proba is not None:
            proba = np.asarray(proba, dtype=np.float64)
            keep &= np.all(np.isfinite(proba), axis=1)
            proba = proba[keep]
        # Back from objects to the classes' own dtype (sklearn refuses object labels).
        y, pred = np.array(y[keep].tolist()), np.array(pred[keep].tolist())
        if not len(y):
            return {}
        if len(set(y.tolist())) < 2 and proba is not None:
            proba = None  # ranking metrics are undefined on one class
    else:
        y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
        keep = np.isfinite(y) & np.isfinite(pred)
        y, pred = y[keep], pred[keep]
        if not len(y):
            return {}
    result = task_metrics(y, pred, proba, task=task,
                          classes=list(classes) if classes is not None else None,
                          n_bootstrap=n_bootstrap, seed=seed)
    return {name: {"value": m["value"], "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                   "n": len(y)} for name, m in result["values"].items()}


class CBPE:
    """Streaming CBPE estimate: feed chunks of probabilities and predicted
    labels with :meth:`update`, read :meth:`result`."""

    def __init__(self, classes: Sequence):
        self.classes = list(classes)
        self.n = 0
        k = len(self.classes)
        self.expected = np.zeros((k, k))
        self.correct_var = 0.0
        self.pos_hist = np.zeros(AUC_BINS)
        self.neg_hist = np.zeros(AUC_BINS)

    def __repr__(self) -> str:
        return f"CBPE(classes={self.classes!r}, n={self.n})"

    def update(self, proba: np.ndarray, pred: Sequence | None = None) -> CBPE:
        proba = np.asarray(proba, dtype=np.float64)
        if pred is None:
            index = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)
        else:
            keys = {k: i for i, k in enumerate(_keys(self.classes))}
            from shipyard.data import ColumnSketch

            index = np.array([-1 if p is None else keys.get(ColumnSketch.key(p), -1)
                              for p in pred], dtype=np.int64)
        ok = np.all(np.isfinite(proba), axis=1) & (index >= 0)
        proba, index = proba[ok], index[ok]
        if not len(proba):
            return self
        proba = proba / proba.sum(axis=1, keepdims=True)
        k = len(self.classes)
        one_hot = np.zeros((len(index), k))
        one_hot[np.arange(len(index)), index] = 1.0
        self.expected += proba.T @ one_hot
        q = proba[np.arange(len(index)), index]
        self.correct_var += float(np.sum(q * (1 - q)))
        if k == 2:
            p = proba[:, 1]
            bins = np.minimum((p * AUC_BINS).astype(np.int64), AUC_BINS - 1)
            self.pos_hist += np.bincount(bins, weights=p, minlength=AUC_BINS)
            self.neg_hist += np.bincount(bins, weights=1 - p, minlength=AUC_BINS)
        self.n += len(proba)
        return self

    def result(self) -> dict[str, dict[str, Any]]:
        """``{metric: {"value", "ci_low", "ci_high", "n"}}``; empty before any row."""
        if not self.n:
            return {}
        e, n = self.expected, self.n

        def entry(value: float, sd: float | None = None) -> dict[str, Any]:
            value = float(value) if math.isfinite(value) else None
            if value is None or sd is None:
                return {"value": value, "ci_low": None, "ci_high": None, "n": n}
            return {"value": value, "ci_low": max(0.0, value - _Z * sd),
                    "ci_high": min(1.0, value + _Z * sd), "n": n}

        accuracy = np.trace(e) / n
        out = {"accuracy": entry(accuracy, math.sqrt(self.correct_var) / n)}
        with np.errstate(invalid="ignore", divide="ignore"):
            if len(self.classes) == 2:
                tp, fp, fn = e[1, 1], e[0, 1], e[1, 0]
                out["precision"] = entry(tp / (tp + fp) if tp + fp > 0 else math.nan)
                out["recall"] = entry(tp / (tp + fn) if tp + fn > 0 else math.nan)
                out["f1"] = entry(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
                pos, neg = self.pos_hist.sum(), self.neg_hist.sum()
                below = np.cumsum(self.neg_hist) - self.neg_hist
                auc = (np.sum(self.pos_hist * (below + 0.5 * self.neg_hist)) / (pos * neg)
                       if pos > 0 and neg > 0 else math.nan)
                out["roc_auc"] = entry(auc)
            else:
                predicted, actual = e.sum(axis=0), e.sum(axis=1)
                precision = np.where(predicted > 0, np.diag(e) / predicted, 0.0)
                recall = np.where(actual > 0, np.diag(e) / actual, 0.0)
                f1 = np.where(precision + recall > 0,
                              2 * precision * recall / (precision + recall), 0.0)
                out["precision_macro"] = entry(float(precision.mean()))
                out["recall_macro"] = entry(float(recall.mean()))
                out["f1_macro"] = entry(float(f1.mean()))
        return out


def cbpe(proba: Any, pred: Sequence | None = None, *, classes: Sequence
         ) -> dict[str, dict[str, Any]]:
    """CBPE estimate of a classifier's performance from its probabilities
    (``(rows, classes)`` in ``classes`` order) and predicted labels (default
    the most probable class); see the module docstring.

    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    >>> round(cbpe(p, classes=[0, 1])["accuracy"]["value"], 4)
    0.7667
    """
    return CBPE(classes).update(np.asarray(proba, dtype=np.float64), pred).result()


def reference_performance(ws: Workspace, version: ModelVersion, *, search: int = 50
                          ) -> dict[str, dict[str, Any]]:
    """The version's expected performance: ``{metric: {"value", "ci_low",
    "ci_high", "source"}}`` from its newest evaluation report (``source``
    "evaluation", with the run id), else its training run's test metrics
    (``source`` "training"); empty when neither exists."""
    try:
        runs = ws.runs.search(f"tags.model LIKE '{version.name}@%'", experiment="evaluation",
                              limit=search, status="FINISHED")
    except Exception:  # noqa: BLE001 -- no evaluation is a normal state
        runs = []
    for run in runs:
        try:
            report = json.loads(ws.runs.load_artifact(run.id, EVALUATION_REPORT))
        except Exception:  # noqa: BLE001, S112 -- an evaluation run without its report
            continue
        if (report.get("model") or {}).get("artifact_digest") != version.artifact_digest:
            continue
        return {name: {"value": m.get("value"), "ci_low": m.get("ci_low"),
                       "ci_high": m.get("ci_high"), "source": "evaluation",
                       "run_id": run.id}
                for name, m in (report.get("metrics") or {}).items()
                if isinstance(m, Mapping)}
    out = {}
    for key, value in version.metrics.items():
        if key.startswith("test.") and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and math.isfinite(value):
            out[key[len("test."):]] = {"value": float(value), "ci_low": None, "ci_high": None,
                                      "source": "training"}
    return out


def degradation(figures: Mapping[str, Mapping[str, Any]],
                reference: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """``{metric: degraded}`` for the metrics in both (see the module docstring).

    >>> degradation({"accuracy": {"value": 0.7, "ci_low": 0.65, "ci_high": 0.75}},
    ...             {"accuracy": {"value": 0.8, "ci_low": 0.78, "ci_high": 0.82}})
    {'accuracy': True}
    """
    from shipyard.train import direction

    out = {}
    for name, got in figures.items():
        ref = reference.get(name)
        if ref is None or got.get("value") is None or ref.get("value") is None:
            continue
        higher = direction(name) == "maximize"
        value, base = float(got["value"]), float(ref["value"])
        bound = ref.get("ci_low") if higher else ref.get("ci_high")
        bound = float(base if bound is None else bound)
        edge = got.get("ci_high") if higher else got.get("ci_low")
        edge = value if edge is None else float(edge)
        out[name] = bool(edge < bound if higher else edge > bound)
    return out
