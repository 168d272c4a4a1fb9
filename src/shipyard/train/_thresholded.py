"""A frozen per-group threshold classifier: the saved form of a fairlearn
``ThresholdOptimizer`` (see :func:`shipyard.evaluate.mitigate`).

It lives in ``train`` beside the other model formats because
:func:`shipyard.train.load_model` must load it, and a stage may only use the
stages to its left.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import ArtifactError, DataError
from shipyard.train._artifacts import _versions

if TYPE_CHECKING:
    from shipyard.store import ArtifactStore
    from shipyard.train import ModelArtifact

FORMAT = "thresholded"


# --------------------------------------------------------------- the model
class ThresholdedModel:
    """A binary classifier whose positive-class score is thresholded per
    group of a sensitive column, with randomized mixing between two
    thresholds (a frozen fairlearn ``ThresholdOptimizer``).

    ``predict_proba`` gives each row's probability of a positive prediction;
    ``predict`` draws it with a uniform number hashed from the row's content,
    so the same row always gets the same label, in any batch.

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
    """

    def __init__(self, base: Any, *, sensitive: str, features: list[str], classes: Any,
                 groups: dict[str, dict[str, Any]], base_digest: str | None = None,
                 seed: int = 0):
        self.base = base
        self.sensitive = sensitive
        self.features = list(features)
        self.classes_ = np.asarray(classes)
        self.groups = groups
        self.base_digest = base_digest
        self.seed = seed

    def __repr__(self) -> str:
        return (f"ThresholdedModel(sensitive={self.sensitive!r}, groups={sorted(self.groups)}, "
                f"base={self.base_digest[:12] if self.base_digest else type(self.base).__name__})")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def _columns(self, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        if not isinstance(X, pd.DataFrame):
            raise DataError("a ThresholdedModel predicts on a DataFrame (it needs column "
                            f"{self.sensitive!r})")
        missing = [c for c in (*self.features, self.sensitive) if c not in X.columns]
        if missing:
            raise DataError(f"the thresholded model needs column(s) "
                            f"{', '.join(map(repr, missing))}",
                            hint=f"it applies per-group thresholds on {self.sensitive!r}: "
                                 "pass that column with the features")
        keys = X[self.sensitive].astype(str).to_numpy()
        unseen = sorted(set(keys) - set(self.groups))
        if unseen:
            raise DataError(f"{self.sensitive!r} holds group(s) {', '.join(unseen[:5])} that "
                            f"the thresholds were not fitted for (known: "
                            f"{', '.join(sorted(self.groups))})",
                            hint="mitigate again on data that includes every group")
        return X[self.features], keys

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``(n, 2)``: the probability of each class, in ``classes_`` order."""
        features, keys = self._columns(X)
        scores = np.asarray(self.base.predict_proba(features))[:, 1]
        positive = np.zeros(len(scores))
        for key, g in self.groups.items():
            rows = keys == key
            if not rows.any():
                continue
            s = scores[rows]
            p = g["p0"] * _apply(g["op0"], s) + g["p1"] * _apply(g["op1"], s)
            if "p_ignore" in g:
                p = g["p_ignore"] * g["prediction_constant"] + (1 - g["p_ignore"]) * p
            positive[rows] = p
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Labels drawn from :meth:`predict_proba` with a per-row hash."""
        positive = self.predict_proba(X)[:, 1]
        cols = [*dict.fromkeys([*self.features, self.sensitive])]
        hashed = pd.util.hash_pandas_object(X[cols], index=False,
                                            hash_key=f"{self.seed:016d}"[-16:]).to_numpy()
        uniform = (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        return self.classes_[(uniform < positive).astype(int)]

    # ---------------------------------------------------------- persistence
    def save(self, store: ArtifactStore) -> ModelArtifact:
        """Write the thresholds and a ``thresholded`` manifest next to the
        base model's blobs (which must be in ``store``)."""
        from shipyard.train import ModelArtifact

        if self.base_digest is None:
            raise ArtifactError("a ThresholdedModel is saved by reference to its base model: "
                                "set base_digest to the base's artifact digest")
        base = ModelArtifact.read(store, self.base_digest)
        config = {"sensitive": self.sensitive, "features": self.features,
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
            return cls(load_model(store, artifact.parts["base"]),
                       sensitive=str(config["sensitive"]),
                       features=[str(c) for c in config["features"]],
                       classes=np.asarray(classes["values"],
                                          dtype=object if dtype == "object" else dtype),
                       groups=groups, base_digest=artifact.parts["base"],
                       seed=int(config.get("seed", 0)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ArtifactError(f"model {artifact.digest}: malformed thresholds: {exc}"
                                ) from None


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
