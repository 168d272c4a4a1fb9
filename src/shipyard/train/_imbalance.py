"""Class imbalance: class weights, SMOTE or undersampling of the training rows.

Pass only the training part here, never validation or test: resampling
those would make the scores describe data the model will not meet. SMOTE
interpolates between rows, so it needs numeric features without missing
values: give it the preprocessed training matrix.

>>> import numpy as np
>>> out = rebalance("undersample", np.arange(12).reshape(6, 2), [0, 0, 0, 0, 1, 1],
...                 task="binary", seed=0)
>>> out.record["counts_after"]
{'0': 2, '1': 2}
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.errors import ConfigError, DataError

STRATEGIES = ("none", "class_weight", "smote", "undersample")


@dataclass(eq=False)
class Rebalanced:
    """The training data to fit on, and how to fit.

    Attributes
    ----------
    X, y
        Training rows (resampled for ``smote`` and ``undersample``).
    sample_weight
        Per-row weights to pass to ``fit``, or None.
    params
        Estimator parameters to set, e.g. ``{"class_weight": "balanced"}``.
    record
        JSON-able account of what was done, for tracking: strategy, class
        counts before and after, and the weights or how they were applied.
    """

    X: Any
    y: np.ndarray
    sample_weight: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def class_weights(y: Any) -> dict[Any, float]:
    """Balanced class weights, ``n_rows / (n_classes * rows_of_class)``.

    >>> class_weights([0, 0, 0, 1])
    {0: 0.6666666666666666, 1: 2.0}
    """
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    return {_plain(c): float(len(y) / (len(classes) * n))
            for c, n in zip(classes, counts, strict=True)}


def rebalance(strategy: str, X: Any, y: Any, *, task: str, seed: int,
              estimator: Any = None) -> Rebalanced:
    """Apply an imbalance strategy to the training rows.

    Parameters
    ----------
    strategy
        ``none``; ``class_weight`` (balanced weights: the estimator's own
        ``class_weight="balanced"`` where it has one, as for scikit-learn's
        linear models and forests, LightGBM and the torch MLP, else
        ``sample_weight``); ``smote`` (oversample minority classes with
        synthetic rows); ``undersample`` (drop majority rows at random).
    X, y
        The training rows only. ``X`` is not changed in place.
    task
        ``binary`` or ``multiclass``; imbalance does not apply to regression.
    seed
        Seeds SMOTE and undersampling: the same seed, the same rows.
    estimator
        The estimator to be fitted (the final step, not a pipeline); decides
        how ``class_weight`` is applied. Without it, weights are given as
        ``sample_weight``.

    Returns
    -------
    Rebalanced

    Raises
    ------
    ConfigError
        Unknown strategy, a regression task, or an estimator that takes
        neither class nor sample weights.
    DataError
        Too few rows of a class, or features SMOTE cannot use.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown imbalance strategy {strategy!r}; expected one of "
                          f"{', '.join(STRATEGIES)}")
    if task == "regression":
        raise ConfigError(f"imbalance: {strategy} applies to classification, not regression",
                          hint="set train.imbalance to none")
    y = np.asarray(y)
    if len(y) != _n_rows(X):
        raise DataError(f"X has {_n_rows(X)} rows but y has {len(y)}")
    before = _counts(y)
    record: dict[str, Any] = {"strategy": strategy, "seed": seed, "counts_before": before}
    if strategy == "none":
        return Rebalanced(X, y, record={**record, "counts_after": before})
    if strategy == "class_weight":
        weights = class_weights(y)
        record |= {"counts_after": before, "class_weights": {str(k): v for k, v in weights.items()}}
        if estimator is not None and "class_weight" in estimator.get_params(deep=False):
            return Rebalanced(X, y, params={"class_weight": "balanced"},
                              record={**record, "applied_as": "class_weight"})
        if estimator is not None and not _takes_sample_weight(estimator):
            raise ConfigError(f"{type(estimator).__name__} takes neither class_weight nor "
                              "sample_weight, so imbalance: class_weight cannot apply",
                              hint="use imbalance: smote or undersample")
        sample_weight = np.array([weights[_plain(v)] for v in y])
        return Rebalanced(X, y, sample_weight=sample_weight,
                          record={**record, "applied_as": "sample_weight"})
    sampler = _sampler(strategy, y, seed)
    try:
        X_out, y_out = sampler.fit_resample(X, y)
    except ValueError as exc:
        raise DataError(f"imbalance: {strategy} failed on the training data: {exc}",
                        hint="SMOTE needs numeric features without missing values; apply it "
                        "to the preprocessed training matrix" if strategy == "smote" else None
                        ) from exc
    return Rebalanced(X_out, np.asarray(y_out), record={**record, "counts_after": _counts(y_out)})


def _sampler(strategy: str, y: np.ndarray, seed: int) -> Any:
    try:
        if strategy == "smote":
            from imblearn.over_sampling import SMOTE
        else:
            from imblearn.under_sampling import RandomUnderSampler
    except ImportError as exc:
        raise ConfigError(f"imbalance: {strategy} needs the imbalanced-learn package, which "
                          "is not installed", hint="pip install imbalanced-learn") from exc
    counts = _counts(y)
    if len(counts) < 2:
        raise DataError(f"imbalance: {strategy} needs at least 2 classes in the training rows, "
                        f"got {len(counts)}")
    if strategy == "undersample":
        return RandomUnderSampler(random_state=seed)
    smallest = min(counts.values())
    if smallest < 2:
        rare = min(counts, key=counts.get)
        raise DataError(f"SMOTE needs at least 2 training rows of each class; class {rare} has "
                        f"{smallest}", hint="use imbalance: class_weight or undersample")
    # SMOTE interpolates towards k neighbours of the same class; a rare class
    # may have fewer than the default 5.
    return SMOTE(random_state=seed, k_neighbors=min(5, smallest - 1))


def _counts(y: Any) -> dict[str, int]:
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    return {str(_plain(c)): int(n) for c, n in zip(classes, counts, strict=True)}


def _takes_sample_weight(estimator: Any) -> bool:
    return "sample_weight" in inspect.signature(estimator.fit).parameters


def _n_rows(X: Any) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
