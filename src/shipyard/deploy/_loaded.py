"""A model version in memory, ready to predict: what the server, batch
scoring and the explanation endpoint all call."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.deploy._schema import Columns, Schema
from shipyard.errors import ServeError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.registry import ModelVersion

#: Rows sampled from the training data as the explanation background.
BACKGROUND_ROWS = 100


@dataclass(frozen=True)
class Prediction:
    """A model's answer for some rows: labels or values, and class
    probabilities (in ``classes`` order) when the model gives them."""

    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: list | None


@dataclass(eq=False)
class LoadedModel:
    """One model version in memory, ready to predict. Never mutated once
    published, except for its lazily sampled explanation background."""

    version: ModelVersion
    model: Any
    schema: Schema
    loaded_at: float = field(default_factory=time.time)
    #: An :class:`~shipyard.registry._onnx.OnnxPredictor` when the version has
    #: a verified ONNX graph and ONNX is on; None predicts with ``model``.
    onnx: Any = field(default=None, repr=False)
    _background: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _request_schema: Schema | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.version.name

    @property
    def number(self) -> int:
        return self.version.version

    @property
    def output(self) -> dict[str, Any]:
        return (self.version.signature or {}).get("output") or {}

    @property
    def task(self) -> str | None:
        out = self.output
        return out.get("task") if isinstance(out, dict) else None

    @property
    def classes(self) -> list | None:
        out = self.output
        classes = out.get("classes") if isinstance(out, dict) else None
        if classes is None:
            classes = (self.version.signature or {}).get("classes")
        if classes is None and hasattr(self.model, "classes_"):
            classes = [c.item() if hasattr(c, "item") else c for c in self.model.classes_]
        return list(classes) if classes is not None else None

    @property
    def has_probabilities(self) -> bool:
        return self.task != "regression" and hasattr(self.model, "predict_proba")

    @property
    def runtime(self) -> str:
        return "onnx" if self.onnx is not None else "python"

    @property
    def request_schema(self) -> Schema:
        """:attr:`schema`, validating into :class:`~shipyard.deploy.Columns`:
        what a request is checked against. The ONNX graph (and a thresholded
        model's decision) read the columns as they are; the Python model gets
        their DataFrame (:meth:`model_input`)."""
        if self._request_schema is None:
            self._request_schema = self.schema.with_columns()
        return self._request_schema

    def model_input(self, rows: Columns | pd.DataFrame) -> Columns | pd.DataFrame:
        """What :meth:`predict` runs on fastest for validated ``rows``: the
        columns themselves on ONNX, else their DataFrame (which merges with
        other requests' for one call of the Python model)."""
        if self.onnx is None and isinstance(rows, Columns):
            return rows.to_frame()
        return rows

    def predict(self, frame: pd.DataFrame | Columns) -> Prediction:
        """Predict ``frame`` (already validated against the signature: a
        DataFrame, or :class:`~shipyard.deploy.Columns`)."""
        if self.onnx is not None:
            labels, proba = self.onnx.predict(frame)
            decide = getattr(self.model, "decide", None)
            if decide is not None:  # per-group thresholds on the base graph's scores
                labels = decide(frame, proba[:, 1])
            if not self.has_probabilities:
                proba = None
            return Prediction(labels, proba, self.classes if proba is not None else None)
        if isinstance(frame, Columns):
            frame = frame.to_frame()
        if not self.has_probabilities:
            return Prediction(np.asarray(self.model.predict(frame)), None, None)
        labels, proba = _labels_and_probabilities(self.model, frame)
        return Prediction(labels, proba, self.classes)

    def background(self, ws: Workspace) -> pd.DataFrame:
        """Up to 100 rows of the training data (dataset version from the
        lineage), sampled once, as the reference of explanations.

        Raises
        ------
        ServeError
            409 when the version records no training dataset.
        """
        with self._lock:
            if self._background is None:
                lineage = ws.models.lineage(self.version)
                ref = lineage.dataset_version or next(iter(lineage.dataset_versions), None)
                if ref is None:
                    raise ServeError(409, "no_background",
                                     f"{self.version.ref} records no training dataset, so "
                                     "there is no background to explain against")
                data = ws.datasets.load(ref)
                cols = [c for c in self.schema.names if c in data.columns]
                data = data[cols]
                if len(data) > BACKGROUND_ROWS:
                    data = data.sample(BACKGROUND_ROWS, random_state=0)
                self._background = data.reset_index(drop=True)
            return self._background


def _labels_and_probabilities(model: Any, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``model.predict(frame)`` and ``model.predict_proba(frame)``, both (a
    thresholded classifier's labels are not the argmax of its probabilities),
    paying the model's per-call cost once where the answer is the same: a
    thresholded model's ``predict`` is ``decide`` on the scores its
    ``predict_proba`` gives, and a pipeline's two calls run the same
    transforms, a few milliseconds a call for a row even when the estimator
    itself takes microseconds."""
    from sklearn.pipeline import Pipeline

    decide = getattr(model, "decide", None)
    if decide is not None:
        proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
        return np.asarray(decide(frame, proba[:, 1])), proba
    if isinstance(model, Pipeline):
        data = frame
        for _, step in model.steps[:-1]:
            if step is not None and not isinstance(step, str):  # None or "passthrough"
                data = step.transform(data)
        model, frame = model.steps[-1][1], data
    return (np.asarray(model.predict(frame)),
            np.asarray(model.predict_proba(frame), dtype=np.float64))
