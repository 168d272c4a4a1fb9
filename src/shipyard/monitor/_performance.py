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
    sum of independent Bernoulli(q_i)). Multiclass: accuracy and macro
    precision/recall/F1 from the same matrix, and a one-vs-rest macro
    ROC-AUC (``roc_auc_ovr``): per class, the binary estimate with the
    class's probability as the chance of a positive, rows ranked by the
    model's own score of that class (NannyML's multiclass CBPE).
Recalibration (:class:`Calibration`)
    When labelled reference rows exist, an isotonic calibrator per class
    (binary: of the positive class) is fitted on the reference's scores
    against its labels, and kept only where NannyML's ``needs_calibration``
    keeps it: no single class, reference ROC-AUC ≤ 0.999, and a lower
    expected calibration error (10 equal-count bins) on ten stratified 90/10
    splits. Estimates then use the calibrated probabilities (multiclass rows
    renormalised to sum 1), while ROC-AUC still ranks rows by the model's own
    scores, as NannyML does.
Estimated (DLE, regression)
    Direct loss estimation (:class:`DLE`): two LightGBM regressors fitted on
    the labelled reference rows' inputs plus the model's prediction, one to
    the absolute error, one to the squared error; a window's MAE is the mean
    predicted absolute error, its RMSE the root of the mean predicted squared
    error (NannyML's DLE).
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

import io
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.registry import ModelVersion

log = logging.getLogger("shipyard.monitor")
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


class Calibration:
    """Isotonic recalibration of a classifier's probabilities, fitted on
    labelled reference rows (see the module docstring).

    Parameters
    ----------
    classes
        The class labels, in the probabilities' column order.

    Attributes
    ----------
    curves_
        Per calibrated column (binary: only the positive class), ``None``
        where calibration did not help, else the isotonic fit's
        ``(thresholds, values)``, applied by linear interpolation and clipped
        at the ends (scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=5_000)
    >>> y = (rng.uniform(size=5_000) < p ** 2).astype(int)  # the model is over-confident
    >>> cal = Calibration([0, 1]).fit(np.c_[1 - p, p], y)
    >>> cal.calibrated
    [1]
    >>> round(float(cal.transform(np.array([[0.5, 0.5]]))[0, 1]), 1)
    0.2
    """

    def __init__(self, classes: Sequence):
        self.classes = list(classes)

    def __repr__(self) -> str:
        return f"Calibration(classes={self.classes!r})"

    @property
    def calibrated(self) -> list:
        """The classes whose probabilities are recalibrated."""
        columns = [1] if len(self.classes) == 2 else range(len(self.classes))
        return [self.classes[c] for c, curve in zip(columns, self.curves_) if curve is not None]

    def fit(self, proba: Any, y: Sequence) -> Calibration:
        """Fit on reference probabilities ``(rows, classes)`` and labels."""
        proba = np.asarray(proba, dtype=np.float64)
        codes = _codes(y, self.classes)
        ok = (codes >= 0) & np.all(np.isfinite(proba), axis=1)
        proba, codes = proba[ok], codes[ok]
        columns = [1] if len(self.classes) == 2 else range(len(self.classes))
        self.curves_ = [_isotonic_if_needed(proba[:, c], (codes == c).astype(np.int64))
                        for c in columns]
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (rows sum to 1)."""
        proba = np.asarray(proba, dtype=np.float64)
        if len(self.classes) == 2:
            curve = self.curves_[0]
            if curve is None:
                return proba
            p = np.interp(proba[:, 1], *curve)
            return np.c_[1 - p, p]
        out = proba.copy()
        for c, curve in enumerate(self.curves_):
            if curve is not None:
                out[:, c] = np.interp(proba[:, c], *curve)
        total = out.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, out / total, 1.0 / len(self.classes))

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes,
                "curves": [None if c is None else [c[0].tolist(), c[1].tolist()]
                           for c in self.curves_]}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Calibration:
        out = cls(document["classes"])
        out.curves_ = [None if c is None else (np.asarray(c[0], dtype=np.float64),
                                               np.asarray(c[1], dtype=np.float64))
                       for c in document["curves"]]
        return out


def _codes(values: Sequence, classes: Sequence) -> np.ndarray:
    """Column index of each value among ``classes`` (``"1"``, ``1`` and
    ``1.0`` alike); -1 when missing or unknown."""
    import pandas as pd

    from shipyard.data import ColumnSketch

    keys = {k: i for i, k in enumerate(_keys(classes))}
    # Each distinct value looked up once (a window holds millions of a few labels).
    found, distinct = pd.factorize(pd.Series(np.asarray(values, dtype=object), dtype=object))
    lookup = np.array([keys.get(ColumnSketch.key(v), -1) for v in distinct] + [-1],
                      dtype=np.int64)
    return lookup[found]


def _expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    """NannyML's ECE: rows sorted by score, cut in ``bins`` equal-count bins
    (the last takes the remainder), the weighted mean gap between a bin's
    mean score and its share of positives."""
    n = len(p)
    if n <= 2 * bins:
        bins = n // 2
    width = n // bins
    edges = np.arange(0, n + 1, width)
    edges[-1] = n
    order = np.argsort(p, kind="quicksort")
    p, y = p[order], y[order]
    return float(sum((hi - lo) / n * abs(p[lo:hi].mean() - y[lo:hi].mean())
                     for lo, hi in itertools.pairwise(edges)))


def _isotonic_if_needed(p: np.ndarray, y: np.ndarray, *, bins: int = 10, splits: int = 10
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """The isotonic fit of ``y`` on ``p`` when NannyML's ``needs_calibration``
    would keep it (see the module docstring), else None."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    if len(p) < 2 * 2 or len(np.unique(y)) < 2 or roc_auc_score(y, p) > 0.999:
        return None
    truth, before, after = [], [], []
    folds = StratifiedShuffleSplit(n_splits=splits, test_size=0.1, random_state=42)
    for train, test in folds.split(p, y):
        fitted = IsotonicRegression(out_of_bounds="clip").fit(p[train], y[train])
        truth.append(y[test])
        before.append(p[test])
        after.append(fitted.predict(p[test]))
    truth_all, before_all, after_all = map(np.concatenate, (truth, before, after))
    if not (_expected_calibration_error(truth_all, before_all, bins)
            > _expected_calibration_error(truth_all, after_all, bins)):
        return None
    fitted = IsotonicRegression(out_of_bounds="clip").fit(p, y)
    return (np.asarray(fitted.X_thresholds_, dtype=np.float64),
            np.asarray(fitted.y_thresholds_, dtype=np.float64))


class CBPE:
    """Streaming CBPE estimate: feed chunks of probabilities and predicted
    labels with :meth:`update`, read :meth:`result`.

    Parameters
    ----------
    classes
        The class labels, in the probabilities' column order.
    calibration
        A fitted :class:`Calibration` applied to every chunk (None: the
        probabilities as the model gives them).
    """

    def __init__(self, classes: Sequence, calibration: Calibration | None = None):
        self.classes = list(classes)
        self.calibration = calibration
        self.n = 0
        k = len(self.classes)
        self.expected = np.zeros((k, k))
        self.correct_var = 0.0
        ranked = 1 if k == 2 else k  # binary: the positive class only
        self.pos_hist = np.zeros((ranked, AUC_BINS))
        self.neg_hist = np.zeros((ranked, AUC_BINS))

    def __repr__(self) -> str:
        return f"CBPE(classes={self.classes!r}, calibration={self.calibration!r}, n={self.n})"

    def update(self, proba: np.ndarray, pred: Sequence | None = None) -> CBPE:
        proba = np.asarray(proba, dtype=np.float64)
        if pred is None:
            index = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)
        else:
            index = _codes(pred, self.classes)
        ok = np.all(np.isfinite(proba), axis=1) & (index >= 0)
        proba, index = proba[ok], index[ok]
        if not len(proba):
            return self
        with np.errstate(invalid="ignore", divide="ignore"):
            total = proba.sum(axis=1, keepdims=True)
            proba = np.where(total > 0, proba / total, 1.0 / proba.shape[1])
        chance = self.calibration.transform(proba) if self.calibration is not None else proba
        k = len(self.classes)
        one_hot = np.zeros((len(index), k))
        one_hot[np.arange(len(index)), index] = 1.0
        self.expected += chance.T @ one_hot
        q = chance[np.arange(len(index)), index]
        self.correct_var += float(np.sum(q * (1 - q)))
        for row, c in enumerate([1] if k == 2 else range(k)):
            # Ranked by the model's own score, weighted by the (calibrated) chance.
            bins = np.minimum((np.clip(proba[:, c], 0, 1) * AUC_BINS).astype(np.int64),
                              AUC_BINS - 1)
            self.pos_hist[row] += np.bincount(bins, weights=chance[:, c], minlength=AUC_BINS)
            self.neg_hist[row] += np.bincount(bins, weights=1 - chance[:, c],
                                              minlength=AUC_BINS)
        self.n += len(proba)
        return self

    def _auc(self, row: int) -> float:
        pos_hist, neg_hist = self.pos_hist[row], self.neg_hist[row]
        pos, neg = pos_hist.sum(), neg_hist.sum()
        if not (pos > 0 and neg > 0):
            return math.nan
        below = np.cumsum(neg_hist) - neg_hist
        return float(np.sum(pos_hist * (below + 0.5 * neg_hist)) / (pos * neg))

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
                out["roc_auc"] = entry(self._auc(0))
            else:
                predicted, actual = e.sum(axis=0), e.sum(axis=1)
                precision = np.where(predicted > 0, np.diag(e) / predicted, 0.0)
                recall = np.where(actual > 0, np.diag(e) / actual, 0.0)
                f1 = np.where(precision + recall > 0,
                              2 * precision * recall / (precision + recall), 0.0)
                out["precision_macro"] = entry(float(precision.mean()))
                out["recall_macro"] = entry(float(recall.mean()))
                out["f1_macro"] = entry(float(f1.mean()))
                out["roc_auc_ovr"] = entry(float(np.mean(
                    [self._auc(c) for c in range(len(self.classes))])))
        return out


def cbpe(proba: Any, pred: Sequence | None = None, *, classes: Sequence,
         calibration: Calibration | None = None) -> dict[str, dict[str, Any]]:
    """CBPE estimate of a classifier's performance from its probabilities
    (``(rows, classes)`` in ``classes`` order) and predicted labels (default
    the most probable class); see the module docstring.

    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    >>> round(cbpe(p, classes=[0, 1])["accuracy"]["value"], 4)
    0.7667
    """
    return CBPE(classes, calibration).update(np.asarray(proba, dtype=np.float64), pred).result()


class DLE:
    """Direct loss estimation for a regression model (see the module docstring).

    Fit on labelled reference rows with :meth:`fit`; then feed a window's
    chunks with :meth:`update` and read :meth:`result`; :meth:`reset` starts
    a new window.

    Parameters
    ----------
    kinds
        ``{input column: numeric | categorical | datetime | text}``; numeric
        and categorical columns are used (categories as seen in the reference,
        others missing), datetime and text ones are not.
    seed, n_estimators, learning_rate, num_leaves
        The LightGBM regressors' settings (LightGBM's defaults but the seed).
    """

    def __init__(self, kinds: Mapping[str, str], *, seed: int = 0, n_estimators: int = 100,
                 learning_rate: float = 0.1, num_leaves: int = 31):
        self.kinds = dict(kinds)
        self.seed = seed
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.reset()

    def __repr__(self) -> str:
        return (f"DLE(kinds={self.kinds!r}, seed={self.seed}, n_estimators={self.n_estimators}, "
                f"learning_rate={self.learning_rate}, num_leaves={self.num_leaves})")

    def reset(self) -> DLE:
        self.n = 0
        self._abs = 0.0
        self._sq = 0.0
        return self

    def _features(self, frame: Any, prediction: Any) -> Any:
        import pandas as pd

        out = {}
        for column, kind in self.kinds.items():
            values = frame[column] if column in frame else pd.Series([None] * len(frame))
            if kind == "numeric":
                out[column] = pd.to_numeric(pd.Series(np.asarray(values)), errors="coerce")
            elif kind == "categorical":
                # Missing and unseen values fall outside the categories: NaN.
                known = set(self.categories_[column])
                out[column] = pd.Categorical(
                    [text if (text := str(v)) in known else None for v in values],
                    categories=self.categories_[column])
        out["__prediction__"] = np.asarray(prediction, dtype=np.float64)
        return pd.DataFrame(out)

    def fit(self, frame: Any, prediction: Sequence, y: Sequence) -> DLE:
        """Fit on reference inputs (a DataFrame), the model's predictions on
        them and the true values."""
        import lightgbm as lgb

        y = np.asarray(y, dtype=np.float64)
        prediction = np.asarray(prediction, dtype=np.float64)
        keep = np.isfinite(y) & np.isfinite(prediction)
        frame = frame[keep].reset_index(drop=True)
        y, prediction = y[keep], prediction[keep]
        self.categories_ = {
            c: sorted({str(v) for v in frame[c].dropna()})
            for c, k in self.kinds.items() if k == "categorical" and c in frame}
        for c, k in self.kinds.items():
            if k == "categorical" and c not in self.categories_:
                self.categories_[c] = []
        X = self._features(frame, prediction)
        settings = {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate,
                    "num_leaves": self.num_leaves, "random_state": self.seed, "verbose": -1,
                    "n_jobs": 1}
        error = y - prediction
        self.abs_model_ = lgb.LGBMRegressor(**settings).fit(X, np.abs(error)).booster_
        self.sq_model_ = lgb.LGBMRegressor(**settings).fit(X, error * error).booster_
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings and the fitted state (LightGBM's text model format)."""
        return {"kinds": self.kinds, "seed": self.seed, "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "categories": self.categories_,
                "abs_model": self.abs_model_.model_to_string(),
                "sq_model": self.sq_model_.model_to_string()}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> DLE:
        """Inverse of :meth:`to_dict` (predicts exactly as the fitted one)."""
        import lightgbm as lgb

        out = cls(document["kinds"], seed=document["seed"],
                  n_estimators=document["n_estimators"],
                  learning_rate=document["learning_rate"], num_leaves=document["num_leaves"])
        out.categories_ = {c: list(v) for c, v in document["categories"].items()}
        out.abs_model_ = lgb.Booster(model_str=document["abs_model"])
        out.sq_model_ = lgb.Booster(model_str=document["sq_model"])
        return out

    def predict_loss(self, frame: Any, prediction: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the predicted absolute and squared errors (clipped at 0)."""
        X = self._features(frame, prediction)
        return (np.maximum(self.abs_model_.predict(X), 0.0),
                np.maximum(self.sq_model_.predict(X), 0.0))

    def update(self, frame: Any, prediction: Sequence) -> DLE:
        """Add a chunk of a window: its inputs and the model's predictions."""
        import pandas as pd

        prediction = pd.to_numeric(pd.Series(np.asarray(prediction, dtype=object)),
                                   errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(prediction)
        if not ok.any():
            return self
        absolute, squared = self.predict_loss(frame[ok].reset_index(drop=True), prediction[ok])
        self._abs += float(absolute.sum())
        self._sq += float(squared.sum())
        self.n += int(ok.sum())
        return self

    def result(self) -> dict[str, dict[str, Any]]:
        """``{"mae"|"rmse": {"value", "ci_low", "ci_high", "n"}}`` of the rows
        fed since the last reset (no interval); empty before any row."""
        if not self.n:
            return {}
        return {"mae": {"value": self._abs / self.n, "ci_low": None, "ci_high": None,
                        "n": self.n},
                "rmse": {"value": math.sqrt(self._sq / self.n), "ci_low": None,
                         "ci_high": None, "n": self.n}}


#: Labelled reference rows a performance reference is fitted on, at most.
PERFORMANCE_ROWS = 20_000
#: The version tag naming its stored estimators (the registry's
#: ``PERFORMANCE_TAG``, written through :func:`shipyard.registry.attach_reference`).
PERFORMANCE_TAG = "performance.digest"
STATE_FORMAT = "shipyard.performance/1"


def performance_reference(ws: Workspace, version: ModelVersion, reference: Any, *,
                          rows: int = PERFORMANCE_ROWS, seed: int = 0) -> dict[str, Any]:
    """What the estimates need from labelled reference rows: a
    :class:`Calibration` (classifiers with probabilities) or a fitted
    :class:`DLE` (regression), read from the version's stored state.

    The state is fitted once, by the first check of the version, and stored
    as a blob tagged :data:`PERFORMANCE_TAG`; every later check, in any
    process, reads it and nothing else. The rows it is fitted on (see
    :func:`labelled_reference_rows`) are held-out ones whenever they exist.

    Returns
    -------
    dict
        ``{"calibration": Calibration | None, "dle": DLE | None, "rows": n,
        "source", "dataset"}``, with ``"skipped"`` (why) and both None when
        there is no state: the estimates then use the probabilities as given
        (and no DLE).
    """
    digest = version.tags.get(PERFORMANCE_TAG)
    unreadable = None
    if digest:
        try:
            return read_performance_state(json.loads(ws.artifacts.get_bytes(digest)))
        except (ShipyardError, ValueError, KeyError, TypeError) as exc:
            why = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
            unreadable = (f"the stored performance estimators of {version.ref} (blob "
                          f"{digest[:12]}, tag {PERFORMANCE_TAG}) cannot be read: "
                          f"{why.splitlines()[0][:200]}")
            log.warning("%s; fitting them again from the reference's labelled rows", unreadable)
    try:
        document = fit_performance_state(ws, version, reference, rows=rows, seed=seed)
    except Exception as exc:  # noqa: BLE001 -- without labelled rows the estimates still run
        why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return _unfitted(f"{unreadable}, and fitting them again failed: {why}; the estimate "
                         "uses the model's probabilities as given (no DLE for regression)"
                         if unreadable else why)
    from shipyard.registry import attach_reference

    try:
        attach_reference(ws, version, performance=document, replaces=digest or None)
    except ShipyardError as exc:  # used this once; the next check fits again
        log.warning("could not store the performance estimators of %s: %s", version.ref,
                    exc.message)
    return read_performance_state(document)


def _unfitted(why: str) -> dict[str, Any]:
    return {"calibration": None, "dle": None, "rows": 0, "skipped": why}


def read_performance_state(document: Mapping[str, Any]) -> dict[str, Any]:
    """The estimators a stored state document holds (see
    :func:`performance_reference` for the returned dict).

    Raises
    ------
    MonitorError
        It is not a performance state document.
    """
    from shipyard.errors import MonitorError

    if not isinstance(document, Mapping) or document.get("format") != STATE_FORMAT:
        raise MonitorError(f"not a performance state document ({STATE_FORMAT})")
    calibration, dle = document.get("calibration"), document.get("dle")
    return {"calibration": Calibration.from_dict(calibration) if calibration else None,
            "dle": DLE.from_dict(dle) if dle else None, "rows": int(document["rows"]),
            "source": document.get("source"), "dataset": document.get("dataset")}


def fit_performance_state(ws: Workspace, version: ModelVersion, reference: Any, *,
                          rows: int = PERFORMANCE_ROWS, seed: int = 0) -> dict[str, Any]:
    """Fit the version's estimators on :func:`labelled_reference_rows`, scored
    by the model; return the state document to store.

    Raises
    ------
    LookupError
        No labelled rows, or the model cannot be fitted on (no target, no
        ``predict_proba``).
    """
    from shipyard.registry import task_of

    task, classes, has_proba = task_of(version.signature)
    data, target, note = labelled_reference_rows(ws, version, reference, rows=rows, seed=seed)
    columns = list(reference.kinds)
    model = version.load()
    X = data[columns]
    document: dict[str, Any] = {"format": STATE_FORMAT, "version": version.ref,
                                "calibration": None, "dle": None, "rows": len(data), **note,
                                "created_at": time.time()}
    if task == "regression":
        document["dle"] = DLE(reference.kinds, seed=seed).fit(
            X, np.asarray(model.predict(X), dtype=np.float64), data[target]).to_dict()
    elif has_proba and classes is not None and hasattr(model, "predict_proba"):
        document["calibration"] = Calibration(classes).fit(
            model.predict_proba(X), data[target].tolist()).to_dict()
    else:
        raise LookupError(f"{version.ref} gives no probabilities to calibrate")
    log.info("%s: performance estimators fitted once on %d %s rows of %s", version.ref,
             len(data), note["source"], note["dataset"])
    return document


def labelled_reference_rows(ws: Workspace, version: ModelVersion, reference: Any, *,
                            rows: int = PERFORMANCE_ROWS, seed: int = 0
                            ) -> tuple[Any, str, dict[str, Any]]:
    """The labelled rows to fit the estimators on, best first: the training
    run's held-out test rows stored with the reference; the dataset of the
    version's newest evaluation on other data than it trained on (held out
    too); the training rows stored with the reference; for a reference built
    before labelled rows were stored, the training dataset itself (read this
    once, with a warning). At most ``rows``, seeded.

    Returns
    -------
    tuple
        ``(frame with the input columns and the target, target, note)``;
        ``note`` says ``source`` (test_split | evaluation | training) and
        ``dataset`` (and the evaluation's ``run_id``).

    Raises
    ------
    LookupError
        None can be had.
    """
    import pandas as pd

    output = (version.signature or {}).get("output")
    target = output.get("target") if isinstance(output, Mapping) else None
    if not target:
        raise LookupError(f"the signature of {version.ref} names no target column")
    labelled = reference.labelled or {}
    keep = ("source", "dataset", "split_digest", "run_id", "why")
    note = {k: labelled[k] for k in keep if k in labelled}
    if labelled.get("source") == "test_split":
        return pd.read_parquet(io.BytesIO(ws.artifacts.get_bytes(labelled["digest"]))), \
            target, note
    evaluated = _evaluation_dataset(ws, version, other_than=reference.dataset)
    if evaluated is not None:
        run_id, dataset = evaluated
        data, note = ws.datasets.load(dataset), {"source": "evaluation", "dataset": dataset,
                                                  "run_id": run_id}
    elif labelled.get("digest"):
        return pd.read_parquet(io.BytesIO(ws.artifacts.get_bytes(labelled["digest"]))), \
            target, note
    elif reference.dataset:
        log.warning("%s: its reference (built before labelled rows were stored with it) has "
                    "no labelled rows; the performance estimators are fitted once on its "
                    "training rows (%s) and stored with the version", version.ref,
                    reference.dataset)
        data = ws.datasets.load(reference.dataset)
        note = {"source": "training", "dataset": reference.dataset,
                "why": "the reference has no labelled rows"}
    else:
        raise LookupError(f"the reference of {version.ref} names no dataset")
    missing = [c for c in [*reference.kinds, target] if c not in data.columns]
    if missing:
        raise LookupError(f"{note['dataset']} lacks the column(s) {', '.join(missing)}")
    data = data.loc[data[target].notna(), [*reference.kinds, target]]
    if len(data) > rows:
        data = data.sample(rows, random_state=seed + 1)
    return data.reset_index(drop=True), target, note


def _evaluations(ws: Workspace, version: ModelVersion, *, search: int = 50
                 ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``(run, report)`` of the version's evaluations, newest first."""
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
        if (report.get("model") or {}).get("artifact_digest") == version.artifact_digest:
            yield run, report


def _evaluation_dataset(ws: Workspace, version: ModelVersion, *, other_than: str | None
                        ) -> tuple[str, str] | None:
    """``(run id, dataset ref)`` of the newest evaluation of ``version`` on a
    dataset other than ``other_than`` (its training data)."""
    for run, report in _evaluations(ws, version):
        dataset = (report.get("dataset") or {}).get("ref")
        if dataset and dataset != other_than:
            return run.id, dataset
    return None


def reference_performance(ws: Workspace, version: ModelVersion) -> dict[str, dict[str, Any]]:
    """The version's expected performance: ``{metric: {"value", "ci_low",
    "ci_high", "source"}}`` from its newest evaluation report (``source``
    "evaluation", with the run id), else its training run's test metrics
    (``source`` "training"); empty when neither exists."""
    for run, report in _evaluations(ws, version):
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
