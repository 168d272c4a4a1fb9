"""SHAP explanations over a model's *original* input columns.

Method: the whole model (preprocessing pipeline included) is explained as a
black box over its raw input columns, with an independent (interventional)
masker over a small background sample of raw rows: shap's
:class:`~shap.ExactExplainer` up to :data:`EXACT_MAX_FEATURES` columns, its
:class:`~shap.PermutationExplainer` beyond.

Why not TreeExplainer on the transformed matrix, summing one-hot columns back
to their source column? It is faster for tree models, but the sum of the
Shapley values of a column's one-hot parts is not the Shapley value of the
column (the coalitions differ), it explains the margin rather than the
probability users see, and it needs one code path per model family (trees,
linear, LightGBM boosters, torch MLPs, text and date transformers). The
black-box methods give the Shapley values of the raw-column game for any
model Shipyard trains (exactly, or estimated by sampled permutations), and
both are exactly additive (each permutation telescopes from the background
mean to the row's output), so ``base_value + sum(attributions) == output``
for the probability (or value) users see. The cost is a few model calls per
row (see :class:`Explainer`).

shap's maskers hold float arrays, so non-numeric columns (strings,
categories, booleans, dates) are given integer codes for shap and decoded back
to their original values and dtypes before the model sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import DataError
from shipyard.evaluate._signature import input_columns

#: Up to this many input columns explanations are exact (2**M coalitions).
EXACT_MAX_FEATURES = 8


class _Codec:
    """Raw columns <-> a float matrix: numbers as themselves, anything else as
    an integer code into the values seen."""

    def __init__(self, frames: Sequence[pd.DataFrame]):
        first = frames[0]
        self.columns = list(first.columns)
        self.dtypes = {c: first[c].dtype for c in self.columns}
        self.values: dict[str, np.ndarray] = {}
        for col in self.columns:
            dtype = self.dtypes[col]
            if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
                continue
            seen = pd.concat([f[col].astype("object") for f in frames], ignore_index=True)
            self.values[col] = pd.unique(seen)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype=np.float64)
        for j, col in enumerate(self.columns):
            if col in self.values:
                index = pd.Index(self.values[col])
                out[:, j] = index.get_indexer(frame[col].astype("object"))
            else:
                out[:, j] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data = {}
        for j, col in enumerate(self.columns):
            if col in self.values:
                raw = pd.Series(self.values[col][matrix[:, j].astype(int)])
            else:
                raw = pd.Series(matrix[:, j])
            try:
                data[col] = raw.astype(self.dtypes[col])
            except (TypeError, ValueError):
                data[col] = raw
        return pd.DataFrame(data)


def _output(model: Any, task: str, classes: Sequence | None):
    """The function explained: P(positive class) for binary, every class's
    probability for multiclass, the prediction for regression."""
    if task == "regression":
        return lambda X: np.asarray(model.predict(X), dtype=np.float64), "prediction"
    if hasattr(model, "predict_proba"):
        if task == "binary":
            label = list(classes)[-1] if classes is not None else "positive class"
            return (lambda X: np.asarray(model.predict_proba(X))[:, -1],
                    f"probability of {label}")
        return lambda X: np.asarray(model.predict_proba(X)), "class probabilities"
    if task == "binary" and classes is not None:
        positive = list(classes)[-1]
        return (lambda X: (np.asarray(model.predict(X)) == positive).astype(np.float64),
                f"predicted {positive} (0/1)")
    raise DataError("cannot explain a multiclass model without predict_proba")


class Explainer:
    """A reusable SHAP explainer over a model's raw input columns.

    Parameters
    ----------
    model
        Anything with ``predict`` (and ``predict_proba`` for classifiers).
    background
        Raw rows standing for "feature unknown" (at most ``max_background``
        are used, sampled with ``seed``).
    task, classes
        ``binary``, ``multiclass`` or ``regression``; the class labels.
    signature
        The model signature; its inputs pick and order the columns.
    max_evals, max_background, seed
        Model evaluations per explained row, background size, RNG seed.
    """

    def __init__(self, model: Any, background: pd.DataFrame, *, task: str,
                 classes: Sequence | None = None, signature: Mapping[str, Any] | None = None,
                 max_evals: int | None = None, max_background: int = 50, seed: int = 0):
        import shap

        self.columns = input_columns(signature) or list(background.columns)
        if len(background) == 0:
            raise DataError("explanations need at least one background row")
        if len(background) > max_background:
            background = background.sample(max_background, random_state=seed)
        self.background = background[self.columns].reset_index(drop=True)
        self.task, self.classes = task, None if classes is None else list(classes)
        self.fn, self.output = _output(model, task, self.classes)
        # Each model call costs a fixed overhead (a pipeline's column
        # transformer) that dwarfs its per-row cost, so the number of calls
        # decides the speed: up to EXACT_MAX_FEATURES columns the exact
        # Shapley values take one call per explained row (all 2**M
        # coalitions at once); wider models take one call per sampled
        # permutation (10 forward-and-back by default).
        self.exact = len(self.columns) <= EXACT_MAX_FEATURES
        self.max_evals = max_evals or 10 * (2 * len(self.columns) + 1)
        self.seed = seed
        self._shap = shap

    def explain(self, rows: pd.DataFrame) -> Any:
        """The shap Explanation of ``rows`` (values over the raw columns)."""
        shap = self._shap
        rows = rows[self.columns].reset_index(drop=True)
        codec = _Codec([self.background, rows])
        masker = shap.maskers.Independent(codec.encode(self.background),
                                          max_samples=len(self.background))
        fn = lambda m: self.fn(codec.decode(m))
        if self.exact:
            explainer = shap.ExactExplainer(fn, masker, feature_names=self.columns)
            return explainer(codec.encode(rows), max_evals=2 ** len(self.columns) + 1,
                             silent=True)
        explainer = shap.PermutationExplainer(fn, masker, feature_names=self.columns,
                                              seed=self.seed)
        return explainer(codec.encode(rows), max_evals=self.max_evals, silent=True)

    @property
    def method(self) -> str:
        kind = "ExactExplainer" if self.exact else "PermutationExplainer"
        return f"shap.{kind} over raw columns, independent masker"


def explain_rows(model: Any, rows: pd.DataFrame, *, background: pd.DataFrame,
                 signature: Mapping[str, Any] | None = None, task: str | None = None,
                 classes: Sequence | None = None, max_evals: int | None = None,
                 max_background: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Per-row SHAP attributions over the model's raw input columns.

    Parameters
    ----------
    model
        Anything with ``predict`` (and ``predict_proba`` for classifiers).
    rows
        The rows to explain (one row is fine).
    background
        Reference rows, e.g. a sample of training or test data.
    signature
        The model signature: input columns, and the task and classes when
        ``task``/``classes`` are not given.
    task, classes
        Default from the signature, else ``binary``/``multiclass`` by the
        model's ``classes_``, else ``regression``.
    max_evals, max_background, seed
        Cost and reproducibility knobs of the permutation explainer.

    Returns
    -------
    list of dict
        One per row: ``{"attributions": {column: value}, "base_value": float,
        "output": float, "explained": str}`` (plus ``"class"`` for
        multiclass, explained for the predicted class), where
        ``base_value + sum(attributions) == output``.
    """
    task, classes = _task_of(model, signature, task, classes)
    explainer = Explainer(model, background, task=task, classes=classes, signature=signature,
                          max_evals=max_evals, max_background=max_background, seed=seed)
    exp = explainer.explain(rows)
    values, base = np.asarray(exp.values), np.asarray(exp.base_values)
    out = []
    for i in range(len(values)):
        v, b, extra = values[i], base[i], {}
        if v.ndim == 2:  # multiclass: (features, classes); explain the predicted class
            k = int(np.argmax(b + v.sum(axis=0)))
            v, b = v[:, k], b[k]
            extra = {"class": _plain(explainer.classes[k]) if explainer.classes else k}
        out.append({"attributions": {c: float(a) for c, a in zip(explainer.columns, v)},
                    "base_value": float(b), "output": float(b + v.sum()),
                    "explained": explainer.output, **extra})
    return out


def global_importance(model: Any, X: pd.DataFrame, *, task: str,
                      classes: Sequence | None = None,
                      signature: Mapping[str, Any] | None = None, max_rows: int = 100,
                      max_evals: int | None = None, max_background: int = 50,
                      seed: int = 0) -> dict[str, Any]:
    """Mean |SHAP| per raw input column over a sample of ``X``.

    Returns
    -------
    dict
        ``{"method", "explained", "rows", "background_rows", "base_value",
        "importance": [{"feature", "importance"}] (largest first)}``;
        multiclass importance is averaged over the classes.
    """
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(X), size=min(max_rows, len(X)), replace=False)
    rest = np.setdiff1d(np.arange(len(X)), pick)
    background = X.iloc[rest if len(rest) >= 10 else pick]
    explainer = Explainer(model, background, task=task, classes=classes, signature=signature,
                          max_evals=max_evals, max_background=max_background, seed=seed)
    exp = explainer.explain(X.iloc[np.sort(pick)])
    values = np.abs(np.asarray(exp.values))
    mean = values.mean(axis=(0, 2)) if values.ndim == 3 else values.mean(axis=0)
    base = np.asarray(exp.base_values)
    order = np.argsort(-mean, kind="stable")
    return {"method": explainer.method,
            "explained": explainer.output, "rows": len(pick),
            "background_rows": len(explainer.background),
            "base_value": [float(b) for b in base[0]] if base.ndim == 2 else float(base[0]),
            "importance": [{"feature": explainer.columns[j], "importance": float(mean[j])}
                           for j in order]}


def _task_of(model: Any, signature: Mapping[str, Any] | None, task: str | None,
             classes: Sequence | None) -> tuple[str, list | None]:
    from shipyard.evaluate._scores import resolve_task
    from shipyard.evaluate._signature import signature_output

    out = signature_output(signature)
    if classes is None:
        classes = out.get("classes")
        if classes is None and hasattr(model, "classes_"):
            classes = [_plain(c) for c in model.classes_]
    task = task or out.get("task")
    if task is None:
        task = "regression" if classes is None else "classification"
    return resolve_task(task, classes), None if classes is None else list(classes)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
