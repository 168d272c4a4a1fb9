"""A frozen per-group threshold classifier: the saved form of a fairlearn
``ThresholdOptimizer`` (see :func:`shipyard.evaluate.mitigate`).

It lives in ``train`` beside the other model formats because
:func:`shipyard.train.load_model` must load it, and a stage may only use the
stages to its left.
"""

from __future__ import annotations

import copy
import json
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
        :meth:`predict_proba`, or the base's ONNX graph)."""
        _, keys = self._columns(X)
        scores = np.asarray(scores, dtype=np.float64)
        positive = (scores > 0.5).astype(np.float64)  # unseen groups: the base's decision
        for key, g in self.groups.items():
            rows = keys == key
            if not rows.any():
                continue
            s = scores[rows]
            p = g["p0"] * _apply(g["op0"], s) + g["p1"] * _apply(g["op1"], s)
            if "p_ignore" in g:
                p = g["p_ignore"] * g["prediction_constant"] + (1 - g["p_ignore"]) * p
            positive[rows] = p
        return positive

    def decide(self, X: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        """Labels for the rows of ``X`` from the base's positive-class ``scores``."""
        positive = self.decision_probability(X, scores)
        cols = [*dict.fromkeys([*list(self.features), self.sensitive])]
        hashed = pd.util.hash_pandas_object(X[cols], index=False,
                                            hash_key=f"{self.seed:016d}"[-16:]).to_numpy()
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
