"""A frozen per-group threshold classifier: the saved form of a fairlearn
``ThresholdOptimizer`` (see :func:`shipyard.evaluate.mitigate`).

It lives in ``train`` beside the other model formats because
:func:`shipyard.train.load_model` must load it, and a stage may only use the
stages to its left.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from shipyard.errors import ArtifactError, DataError
from shipyard.train._artifacts import _versions

if TYPE_CHECKING:
    from sklearn.utils import Tags

    from shipyard.store import ArtifactStore
    from shipyard.train import ModelArtifact

FORMAT = "thresholded"


# --------------------------------------------------------------- the model
class ThresholdedModel(ClassifierMixin, BaseEstimator):
    """A binary classifier whose positive-class score is thresholded per
    group of a sensitive column, with randomized mixing between two
    thresholds (a frozen fairlearn ``ThresholdOptimizer``).

    The thresholds change the *decision* only. ``predict_proba`` is the base
    model's, so ranking quality (ROC-AUC) and calibration (log loss) survive
    mitigation; ``predict`` turns the base's positive-class score into a label
    with the row's group thresholds: the probability of a positive decision
    (:meth:`decision_probability`) is drawn with a uniform number hashed from
    the row's content, so the same row always gets the same label, in any
    batch. A group the thresholds were not fitted for (an unseen category,
    ``""``) gets the base model's own decision (the more probable class).

    The model is frozen: the thresholds are parameters, fitted by
    :func:`shipyard.evaluate.mitigate` to the scores of ``base``, which must
    already be fitted. It predicts as constructed; :meth:`fit` learns nothing
    and ``clone`` keeps (a copy of) the fitted base, since the thresholds mean
    nothing for another one.

    Parameters
    ----------
    base
        The fitted base classifier (``predict_proba``, ``classes_``).
    sensitive
        The sensitive column; ``X`` must hold it.
    features
        The base model's input columns.
    classes
        The base model's two classes (the second is the positive one).
    groups
        ``{str(group value): {"p0", "op0": [">" | "<", threshold], "p1",
        "op1", and optionally "p_ignore", "prediction_constant"}}``.
    base_digest
        The base model's artifact digest (kept for saving and lineage).
    seed
        Salt of the row hash.

    Attributes
    ----------
    classes_ : ndarray
        ``classes`` as an array.

    >>> from sklearn.dummy import DummyClassifier
    >>> X = pd.DataFrame({"x": [0.0, 1.0], "g": ["a", "b"]})
    >>> base = DummyClassifier(strategy="prior").fit(X[["x"]], [0, 1])
    >>> always = {"p0": 1.0, "op0": [">", -1.0], "p1": 0.0, "op1": [">", -1.0]}
    >>> never = {"p0": 1.0, "op0": [">", 2.0], "p1": 0.0, "op1": [">", 2.0]}
    >>> model = ThresholdedModel(base, sensitive="g", features=["x"], classes=[0, 1],
    ...                          groups={"a": always, "b": never})
    >>> model.predict(X).tolist()
    [1, 0]
    """

    def __init__(self, base: Any, *, sensitive: str, features: Sequence[str], classes: Any,
                 groups: dict[str, dict[str, Any]], base_digest: str | None = None,
                 seed: int = 0):
        self.base = base
        self.sensitive = sensitive
        self.features = features
        self.classes = classes
        self.groups = groups
        self.base_digest = base_digest
        self.seed = seed

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes)

    def fit(self, X: pd.DataFrame, y: Any) -> ThresholdedModel:
        """Check that ``X, y`` suit the model and return it unchanged.

        Nothing is learnt: the thresholds are parameters fitted to the
        scores of ``base`` (see :func:`shipyard.evaluate.mitigate`), and
        refitting ``base`` would leave them meaningless. ``fit`` exists so
        that the frozen model honours the scikit-learn contract (for
        example as the last step of a pipeline).

        Raises
        ------
        DataError
            ``X`` is not a DataFrame with the features and the sensitive
            column, or ``y`` holds labels outside ``classes`` or does not
            have one value per row.
        sklearn.exceptions.NotFittedError
            ``base`` is not fitted.
        """
        check_is_fitted(self)
        features, _ = self._columns(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(features):
            raise DataError(f"y must be 1-D with one label per row of X; got shape {y.shape} "
                            f"for {len(features)} rows")
        unknown = set(pd.unique(y)) - set(self.classes_.tolist())
        if unknown:
            raise DataError(f"y holds labels {sorted(map(str, unknown))[:5]} that the model "
                            f"does not predict (its classes: {self.classes_.tolist()})")
        return self

    def __sklearn_is_fitted__(self) -> bool:
        # The thresholds are given; the model is as fitted as its base.
        try:
            check_is_fitted(self.base)
        except NotFittedError:
            return False
        except TypeError:  # a bare predictor, not an estimator: nothing to fit
            pass
        return True

    def __sklearn_clone__(self) -> ThresholdedModel:
        # sklearn's clone would unfit the base, and the thresholds were fitted
        # to that base's scores: copy it, fitted, instead.
        return type(self)(**copy.deepcopy(self.get_params(deep=False)))

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # frozen: it predicts as constructed
        tags.classifier_tags.multi_class = False
        return tags

    def _columns(self, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        if not isinstance(X, pd.DataFrame):
            raise DataError("a ThresholdedModel predicts on a DataFrame (it needs column "
                            f"{self.sensitive!r})")
        features = list(self.features)
        missing = [c for c in (*features, self.sensitive) if c not in X.columns]
        if missing:
            raise DataError(f"the thresholded model needs column(s) "
                            f"{', '.join(map(repr, missing))}",
                            hint=f"it applies per-group thresholds on {self.sensitive!r}: "
                                 "pass that column with the features")
        keys = X[self.sensitive].astype(str).to_numpy()
        return X[features], keys

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``(n, 2)``: the base model's class probabilities, in ``classes_`` order."""
        features, _ = self._columns(X)
        return np.asarray(self.base.predict_proba(features), dtype=np.float64)

    def decision_probability(self, X: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        """The probability of a positive decision for each row, given the base
        model's positive-class ``scores`` of those rows (from
        :meth:`predict_proba`, or the base's ONNX graph).

        ``X`` is a DataFrame, or validated column arrays that index like one
        (``X[name]``, ``X.columns``, ``len(X)``: the server's fast path)."""
        values = _column_values(self, X, [self.sensitive])[0]
        scores = np.asarray(scores, dtype=np.float64)
        keys = _group_keys(values, len(scores))
        positive = (scores > 0.5).astype(np.float64)  # unseen groups: the base's decision
        if len(keys) <= _FEW_ROWS:  # numpy's per-call cost would dominate a few rows
            for i, key in enumerate(keys):
                g = self.groups.get(key) if isinstance(key, str) else None
                if g is not None:
                    positive[i] = _probability(g, float(scores[i]))
            return positive
        keys = np.asarray(keys, dtype=object)
        for key, g in self.groups.items():
            rows = keys == key
            if not rows.any():
                continue
            positive[rows] = _probability(g, scores[rows])
        return positive

    def decide(self, X: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        """Labels for the rows of ``X`` (as in :meth:`decision_probability`)
        from the base's positive-class ``scores``."""
        positive = self.decision_probability(X, scores)
        cols = [*dict.fromkeys([*list(self.features), self.sensitive])]
        hashed = _row_hashes(_column_values(self, X, cols), len(positive),
                             f"{self.seed:016d}"[-16:])
        uniform = (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        return self.classes_[(uniform < positive).astype(int)]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Labels: the base's scores through the row's group thresholds."""
        return self.decide(X, self.predict_proba(X)[:, 1])

    # ---------------------------------------------------------- persistence
    def save(self, store: ArtifactStore) -> ModelArtifact:
        """Write the thresholds and a ``thresholded`` manifest next to the
        base model's blobs (which must be in ``store``)."""
        from shipyard.train import ModelArtifact

        if self.base_digest is None:
            raise ArtifactError("a ThresholdedModel is saved by reference to its base model: "
                                "set base_digest to the base's artifact digest")
        base = ModelArtifact.read(store, self.base_digest)
        config = {"sensitive": self.sensitive, "features": list(self.features),
                  "classes": {"dtype": self.classes_.dtype.str if self.classes_.dtype != object
                              else "object", "values": self.classes_.tolist()},
                  "groups": self.groups, "seed": self.seed}
        thresholds = store.put_bytes(_json_bytes(config))
        parts = {"base": base.digest, "thresholds": thresholds,
                 **{f"base.{role}": d for role, d in base.parts.items()}}
        meta = {"class": f"{__name__}.ThresholdedModel", "base_format": base.format,
                "base_class": base.metadata.get("class"), "sensitive": self.sensitive,
                "classes": config["classes"], "versions": _versions("fairlearn", "numpy")}
        manifest = {"shipyard_model": 1, "format": FORMAT, "parts": parts, "metadata": meta}
        digest = store.put_bytes(_json_bytes(manifest))
        return ModelArtifact(digest=digest, format=FORMAT, parts=parts, metadata=meta)

    @classmethod
    def _load(cls, store: ArtifactStore, artifact: ModelArtifact) -> ThresholdedModel:
        """Rebuild from a ``thresholded`` artifact (called by
        :func:`shipyard.train.load_model`)."""
        from shipyard.train import load_model

        if not {"base", "thresholds"} <= set(artifact.parts):
            raise ArtifactError(f"model {artifact.digest}: a thresholded model needs parts "
                                "base and thresholds")
        try:
            config = json.loads(store.get_bytes(artifact.parts["thresholds"]))
            classes = config["classes"]
            dtype = classes.get("dtype", "object")
            groups = {str(k): _check_group(v) for k, v in config["groups"].items()}
            return cls(base=load_model(store, artifact.parts["base"]),
                       sensitive=str(config["sensitive"]),
                       features=[str(c) for c in config["features"]],
                       classes=np.asarray(classes["values"],
                                          dtype=object if dtype == "object" else dtype),
                       groups=groups, base_digest=artifact.parts["base"],
                       seed=int(config.get("seed", 0)))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise ArtifactError(f"model {artifact.digest}: malformed thresholds: {exc}"
                                ) from exc


def _apply(op: list, scores: np.ndarray) -> np.ndarray:
    operator, threshold = op
    return (scores > threshold) if operator == ">" else (scores < threshold)


def _probability(g: dict[str, Any], s: Any) -> Any:
    """A group's probability of a positive decision at scores ``s`` (an array
    or one float: the same arithmetic, so the same bits)."""
    p = g["p0"] * _apply(g["op0"], s) + g["p1"] * _apply(g["op1"], s)
    if "p_ignore" in g:
        p = g["p_ignore"] * g["prediction_constant"] + (1 - g["p_ignore"]) * p
    return p


# ------------------------------------------------------------ the row hash
# ``decide`` draws each row's uniform number from a hash of its content. The
# hash is pandas' ``hash_pandas_object(X[cols], index=False, hash_key=...)``
# (what saved models were decided with), computed without building a
# DataFrame: pandas hashes each column and the columns' hashes are combined as
# pandas combines them; on a few rows, numbers and strings (the columns the
# server validates) are hashed here the way pandas hashes them, as pandas'
# per-call cost would be most of the time.

#: Up to this many rows the thresholds and the hash run per row in Python.
_FEW_ROWS = 16
_MASK = 2**64 - 1


def _column_values(model: ThresholdedModel, X: Any, names: list[str]) -> list[Any]:
    """The columns ``names`` of ``X``, refused as :meth:`ThresholdedModel._columns` refuses."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "__getitem__"):
        raise DataError("a ThresholdedModel predicts on a DataFrame (it needs column "
                        f"{model.sensitive!r})")
    have = set(columns)
    missing = [c for c in (*model.features, model.sensitive) if c not in have]
    if missing:
        raise DataError(f"the thresholded model needs column(s) "
                        f"{', '.join(map(repr, missing))}",
                        hint=f"it applies per-group thresholds on {model.sensitive!r}: "
                             "pass that column with the features")
    return [X[name] for name in names]


def _strings(values: Any) -> list | None:
    """``values`` as a list of str and None (missing) when it holds only
    those (and NaN, pandas' missing string), else None."""
    if isinstance(values, np.ndarray):
        if values.dtype != object:
            return None
        values = values.tolist()
    elif isinstance(values, pd.Series):
        if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
            return None
        values = values.tolist()
    elif not isinstance(values, list):
        return None
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            out.append(None)
        else:
            return None
    return out


def _as_series(values: Any) -> pd.Series:
    # A list becomes the column the DataFrame constructor would have made of it.
    return values if isinstance(values, pd.Series) else pd.Series(values)


def _group_keys(values: Any, n: int) -> list:
    """Each row's group key: ``X[sensitive].astype(str)`` (missing stays missing)."""
    strings = _strings(values) if n <= _FEW_ROWS else None
    if strings is not None:
        return strings
    return _as_series(values).astype(str).tolist()


def _pandas_hashes(values: Any, hash_key: str) -> np.ndarray:
    """One column's hashes, by pandas (as ``hash_pandas_object`` of a frame hashes it)."""
    return pd.util.hash_pandas_object(_as_series(values), index=False,
                                      hash_key=hash_key).to_numpy()


def _numbers(values: Any) -> np.ndarray | None:
    """A plain numpy bool or number column (itemsize <= 8), else None."""
    if isinstance(values, pd.Series):
        if not isinstance(values.dtype, np.dtype):
            return None
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and values.ndim == 1 and (
            values.dtype == bool or (values.dtype.kind in "iuf" and values.dtype.itemsize <= 8)):
        return values
    return None


def _number_bits(values: np.ndarray) -> np.ndarray:
    """The unmixed uint64 pandas hashes a number column from."""
    if values.dtype == bool:
        return values.astype(np.uint64)
    unsigned = f"u{values.dtype.itemsize}"
    bits = values.view(unsigned).astype(np.uint64)
    if values.dtype.kind == "f":  # one NaN, and -0.0 as 0.0
        bits[np.isnan(values)] = np.array(np.nan, dtype=values.dtype).view(unsigned)
        bits[bits == np.array(-0.0, dtype=values.dtype).view(unsigned)] = 0
    return bits


def _mix(bits: np.ndarray) -> np.ndarray:
    """pandas' final mix of a column's hashes (in place)."""
    bits ^= bits >> np.uint64(30)
    bits *= np.uint64(0xBF58476D1CE4E5B9)
    bits ^= bits >> np.uint64(27)
    bits *= np.uint64(0x94D049BB133111EB)
    bits ^= bits >> np.uint64(31)
    return bits


def _row_hashes(columns: list[Any], n: int, hash_key: str) -> np.ndarray:
    """``hash_pandas_object(DataFrame(columns), index=False, hash_key=hash_key)``
    as uint64, one per row."""
    multipliers, mult = [], 1000003  # pandas' combine_hash_arrays (CPython's tuple hash)
    for i in range(len(columns)):
        multipliers.append(mult)
        mult = (mult + 82520 + 2 * (len(columns) - i)) & _MASK
    if n > _FEW_ROWS:  # pandas' own per-column hashes; they pay off on many rows
        out = np.full(n, 0x345678, dtype=np.uint64)
        for values, m in zip(columns, multipliers, strict=True):
            out ^= _pandas_hashes(values, hash_key)
            out *= np.uint64(m)
        return out + np.uint64(97531)
    hashes = np.empty((len(columns), n), dtype=np.uint64)
    numbers, strings, texts = [], [], []
    for j, values in enumerate(columns):
        plain = _numbers(values)
        if plain is not None:
            hashes[j] = _number_bits(plain)
            numbers.append(j)
            continue
        listed = _strings(values)
        if listed is not None:
            strings.append((j, listed))
            texts += [v for v in listed if v is not None]
        else:
            hashes[j] = _pandas_hashes(values, hash_key)
    if numbers:
        hashes[numbers] = _mix(hashes[numbers])
    if strings:
        hashed = iter(pd.util.hash_array(np.array(texts, dtype=object), hash_key=hash_key,
                                         categorize=False).tolist() if texts else ())
        for j, listed in strings:
            hashes[j] = [_MASK if v is None else next(hashed) for v in listed]
    out = []
    for row in hashes.T.tolist():
        h = 0x345678
        for value, m in zip(row, multipliers, strict=True):
            h = ((h ^ value) * m) & _MASK
        out.append((h + 97531) & _MASK)
    return np.array(out, dtype=np.uint64)


def _check_group(g: dict[str, Any]) -> dict[str, Any]:
    out = {"p0": float(g["p0"]), "p1": float(g["p1"])}
    for key in ("op0", "op1"):
        operator, threshold = g[key]
        if operator not in (">", "<"):
            raise ValueError(f"unknown threshold operator {operator!r}")
        out[key] = [operator, float(threshold)]
    if "p_ignore" in g:
        out["p_ignore"] = float(g["p_ignore"])
        out["prediction_constant"] = float(g["prediction_constant"])
    return out


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
