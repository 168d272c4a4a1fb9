"""The ONNX Runtime fast path: at registration a model is converted to ONNX
(scikit-learn pipelines with skl2onnx; LightGBM through onnxmltools' converter
and Shipyard's torch MLP through the converter below, both registered with
skl2onnx, so the preprocessing converts with them), both are run on a sample
of the training rows, and the ONNX is kept only if they agree.

The outcome goes into the version's tags (:data:`OUTCOME_TAG`):
``converted``, ``unsupported: <reason>`` or ``mismatch: <what differed>``; a
kept ONNX graph is a content-addressed blob named by :data:`DIGEST_TAG` and
listed among the version's blobs, so ``gc`` keeps it. The server and batch
scoring then predict with :class:`OnnxPredictor` and fall back to the Python
model when a version has none.

Inputs are fed one tensor ``[n, 1]`` per signature column: numeric columns as
float32, every other column as strings (a missing category as ``""``).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace

log = logging.getLogger("shipyard.registry")
OUTCOME_TAG = "onnx"
DIGEST_TAG = "onnx.digest"
#: Training rows both models score before the ONNX graph is trusted.
SAMPLE_ROWS = 2_000
#: Largest accepted absolute difference of a class probability or a value.
TOLERANCE = 1e-4
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class OnnxConversion:
    """What converting one model gave.

    Attributes
    ----------
    outcome
        The tag value: ``converted``, ``unsupported: ...`` or ``mismatch: ...``.
    onnx
        The serialized graph when ``outcome == "converted"``, else None.
    max_diff
        Largest absolute difference over the sample (None if not compared).
    rows
        Rows compared.
    """

    outcome: str
    onnx: bytes | None = None
    max_diff: float | None = None
    rows: int = 0

    @property
    def converted(self) -> bool:
        return self.onnx is not None


def convert_onnx(model: Any, signature: dict[str, Any] | None, sample: pd.DataFrame | None,
                 *, tolerance: float = TOLERANCE) -> OnnxConversion:
    """Convert ``model`` and check it against the Python model on ``sample``.

    Never raises for a model it cannot handle: the reason is the outcome.
    """
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError as exc:
        return OnnxConversion(f"unsupported: {exc.name} is not installed "
                              "(pip install 'shipyard[serve]')")
    inputs = (signature or {}).get("inputs") or []
    decide = getattr(model, "decide", None)
    if decide is not None:
        # A model that only re-decides its base's scores (per-group thresholds):
        # convert the base; the thresholds run in numpy on the graph's scores.
        features = set(model.features)
        inputs = [c for c in inputs if str(c["name"]) in features]
        target = model.base
    else:
        target = model
    if not inputs:
        return OnnxConversion("unsupported: the signature lists no input columns")
    if sample is None or len(sample) == 0:
        return OnnxConversion("unsupported: no training rows to verify the conversion on")
    names = [str(c["name"]) for c in inputs]
    missing = [n for n in names if n not in sample.columns]
    if missing:
        return OnnxConversion(f"unsupported: the training data lacks column {missing[0]!r}")
    try:
        onnx_bytes = _to_onnx(target, inputs)
    except Exception as exc:  # noqa: BLE001 -- converters fail in many ways; all mean "no"
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return OnnxConversion(f"unsupported: {reason}")
    sample = sample[[str(c["name"]) for c in (signature or {}).get("inputs", [])]
                    ].reset_index(drop=True)
    try:
        predictor = OnnxPredictor(onnx_bytes, signature, classes=_classes(model))
        got_labels, got_proba = predictor.predict(sample)
        if decide is not None:
            got_labels = np.asarray(decide(sample, got_proba[:, 1]))
        want_labels = np.asarray(model.predict(sample))
        want_proba = (np.asarray(model.predict_proba(sample), dtype=np.float64)
                      if predictor.has_probabilities and hasattr(model, "predict_proba")
                      else None)
    except Exception as exc:  # noqa: BLE001
        return OnnxConversion(f"unsupported: the converted model does not run: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else exc!r}")
    return _compare(onnx_bytes, want_labels, got_labels, want_proba, got_proba,
                    predictor.is_regression, tolerance)


def _compare(onnx_bytes: bytes, want_labels, got_labels, want_proba, got_proba,
             regression: bool, tolerance: float) -> OnnxConversion:
    n = len(want_labels)
    if regression:
        diff = float(np.max(np.abs(want_labels.astype(np.float64) - got_labels))) if n else 0.0
        if not diff <= tolerance:
            return OnnxConversion(f"mismatch: max abs diff {diff:.3g} > {tolerance:g}",
                                  max_diff=diff, rows=n)
        return OnnxConversion("converted", onnx_bytes, diff, n)
    if got_labels.shape != want_labels.shape:
        return OnnxConversion(f"mismatch: label shape {got_labels.shape} != "
                              f"{want_labels.shape}", rows=n)
    differ = int(np.sum(got_labels != want_labels))
    diff = 0.0
    if want_proba is not None:
        if got_proba is None or got_proba.shape != want_proba.shape:
            return OnnxConversion("mismatch: the probabilities have another shape", rows=n)
        diff = float(np.max(np.abs(want_proba - got_proba))) if n else 0.0
    if differ or not diff <= tolerance:
        return OnnxConversion(f"mismatch: labels differ on {differ}/{n} rows, max abs "
                              f"probability diff {diff:.3g}", max_diff=diff, rows=n)
    return OnnxConversion("converted", onnx_bytes, diff, n)


def prepare_onnx(ws: Workspace, model: Any, signature: dict[str, Any] | None,
                 dataset_ref: str | None, *, sample_rows: int = SAMPLE_ROWS,
                 sample: pd.DataFrame | None = None) -> tuple[dict[str, str], str | None]:
    """Convert and verify ``model`` on up to ``sample_rows`` rows of
    ``sample``, else of ``dataset_ref``; store a kept graph as a blob.

    Returns
    -------
    tuple
        ``(tags, blob digest or None)``; the caller records both with the version.
    """
    if sample is not None:
        sample = sample.head(sample_rows)
    elif dataset_ref is not None:
        try:
            data = ws.datasets.load(dataset_ref)
            sample = data.sample(sample_rows, random_state=0) if len(data) > sample_rows \
                else data
        except Exception as exc:  # noqa: BLE001 -- no sample means no conversion, not an error
            log.warning("cannot read %s to verify the ONNX conversion: %s", dataset_ref, exc)
    result = convert_onnx(model, signature, sample)
    tags = {OUTCOME_TAG: result.outcome[:1000]}
    if not result.converted:
        log.info("no ONNX fast path: %s", result.outcome)
        return tags, None
    digest = ws.artifacts.put_bytes(result.onnx)
    tags[DIGEST_TAG] = digest
    return tags, digest


def _to_onnx(model: Any, inputs: list[dict[str, Any]]) -> bytes:
    serving_onnx = getattr(model, "serving_onnx", None)
    if serving_onnx is not None:  # already a graph (an imported model): rewired, not converted
        return serving_onnx(inputs)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    model = _convertible(model)
    types = [(str(c["name"]), FloatTensorType([None, 1]) if _numeric(c)
              else StringTensorType([None, 1])) for c in inputs]
    model = _joined(model, [name for name, _ in types])
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
    onx = convert_sklearn(model, initial_types=types, target_opset=TARGET_OPSET,
                          options=options)
    return onx.SerializeToString()


def _joined(model: Any, names: list[str]) -> Any:
    """``model`` behind a passthrough ColumnTransformer when it takes one
    matrix (fitted without Shipyard's preprocessing, e.g. registered from
    elsewhere): most converters take one input, and the graph is fed one
    per column."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    first = model.steps[0][1] if isinstance(model, Pipeline) else model
    if len(names) < 2 or isinstance(first, ColumnTransformer):
        return model
    columns = ColumnTransformer([("columns", "passthrough", names)])
    columns.fit(pd.DataFrame({name: [0.0] for name in names}))
    return Pipeline([("columns", columns), ("model", model)])


def _convertible(model: Any) -> Any:
    """A copy skl2onnx can convert: string imputers take ``""`` as missing (the
    converter cannot test strings for NaN), a loaded LightGBM model is
    wrapped in a class its converter recognises, and the torch MLP's
    converter is registered."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from shipyard.train import LightGBMModel, TorchMLPClassifier, TorchMLPRegressor

    model = copy.deepcopy(model)

    def walk(est: Any) -> Any:
        if isinstance(est, SimpleImputer) and getattr(est, "statistics_", None) is not None \
                and est.statistics_.dtype == object:
            est.missing_values = ""
            est.statistics_ = np.array([str(s) for s in est.statistics_], dtype=object)
        if isinstance(est, LightGBMModel):
            return _lightgbm_shim(est)
        if isinstance(est, (TorchMLPClassifier, TorchMLPRegressor)):
            _register_torch_mlp()
        if isinstance(est, Pipeline):
            est.steps = [(n, walk(s)) for n, s in est.steps]
        for trio in getattr(est, "transformers_", None) or []:
            walk(trio[1])
        return est

    return walk(model)


def _shim(booster: Any, classes: Any = None) -> Any:
    """What onnxmltools' LightGBM converter reads (``booster_``, ``classes_``,
    ``boosting_type``) on a class skl2onnx's parser sees as a classifier or
    regressor."""
    shim = (_LightGBMClassifierShim if classes is not None else _LightGBMRegressorShim)()
    shim.booster_, shim.boosting_type = booster, (booster.params or {}).get("boosting", "gbdt")
    if classes is not None:
        shim.classes_ = classes
    return shim


from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


class _LightGBMClassifierShim(ClassifierMixin, BaseEstimator):
    pass


class _LightGBMRegressorShim(RegressorMixin, BaseEstimator):
    pass


_registered = False


def _lightgbm_shim(model: Any) -> Any:
    global _registered
    if not _registered:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (
            convert_lightgbm,
        )
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )

        update_registered_converter(
            _LightGBMClassifierShim, "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes, convert_lightgbm,
            options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
        update_registered_converter(
            _LightGBMRegressorShim, "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes, convert_lightgbm,
            options={"split": None})
        _registered = True
    if model.kind_ == "classifier":
        return _shim(model.booster_, model.classes_)
    if model.kind_ == "regressor":
        return _shim(model.booster_)
    raise TypeError("a bare LightGBM booster has no task to convert for")


_torch_registered = False


def _register_torch_mlp() -> None:
    """Register the torch MLP's converter with skl2onnx (once)."""
    global _torch_registered
    if _torch_registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
    )

    from shipyard.train import TorchMLPClassifier, TorchMLPRegressor

    update_registered_converter(
        TorchMLPClassifier, "ShipyardTorchMLPClassifier",
        calculate_linear_classifier_output_shapes, _convert_torch_mlp,
        options={"zipmap": [True, False], "nocl": [True, False]})
    update_registered_converter(
        TorchMLPRegressor, "ShipyardTorchMLPRegressor",
        _torch_regressor_shape, _convert_torch_mlp)
    _torch_registered = True


def _torch_regressor_shape(operator: Any) -> None:
    # float64 out: the de-standardising ``y * scale + mean`` runs in double, as
    # the Python model's does, so a large target scale adds no float32 error.
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.common.shape_calculator import (
        calculate_linear_regressor_output_shapes,
    )

    calculate_linear_regressor_output_shapes(operator)
    operator.outputs[0].set_type(DoubleTensorType([operator.inputs[0].get_first_dimension(), 1]))


def _convert_torch_mlp(scope: Any, operator: Any, container: Any) -> None:
    """The network as MatMul/Add/Relu (dropout is the identity at inference);
    a classifier adds Softmax for the probabilities and ArgMax + Gather of
    ``classes_`` for the labels, a regressor ``y * scale + mean`` in double."""
    import torch
    from onnx import TensorProto

    est = operator.raw_operator

    def name(prefix: str) -> str:
        return scope.get_unique_variable_name(prefix)

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        container.add_node(op, inputs, output, name=scope.get_unique_operator_name(op), **attrs)
        return output

    def constant(prefix: str, kind: int, values: np.ndarray) -> str:
        out = name(prefix)
        container.add_initializer(out, kind, list(values.shape), values.ravel().tolist())
        return out

    current = operator.inputs[0].full_name
    for layer in est.module_:
        if isinstance(layer, torch.nn.Linear):
            weight = layer.weight.detach().cpu().numpy().T.astype(np.float32)
            bias = layer.bias.detach().cpu().numpy().astype(np.float32)
            product = node("MatMul", [current, constant("W", TensorProto.FLOAT, weight)],
                           name("matmul"))
            current = node("Add", [product, constant("b", TensorProto.FLOAT, bias)], name("z"))
        elif isinstance(layer, torch.nn.ReLU):
            current = node("Relu", [current], name("relu"))
        elif not isinstance(layer, torch.nn.Dropout):
            raise TypeError(f"cannot convert the torch layer {type(layer).__name__}")
    if not hasattr(est, "classes_"):
        double = node("Cast", [current], name("double"), to=TensorProto.DOUBLE)
        scaled = node("Mul", [double, constant("scale", TensorProto.DOUBLE,
                                               np.array([est.y_scale_]))], name("scaled"))
        node("Add", [scaled, constant("mean", TensorProto.DOUBLE, np.array([est.y_mean_]))],
             operator.outputs[0].full_name)
        return
    node("Softmax", [current], operator.outputs[1].full_name, axis=1)
    best = node("ArgMax", [current], name("argmax"), axis=1, keepdims=0)
    classes = est.classes_
    if all(isinstance(c, str) for c in classes):
        labels = constant("classes", TensorProto.STRING, np.array([c.encode() for c in classes],
                                                                  dtype=object))
    else:  # the shape calculator declared int64 labels: whole numbers only
        as_int = np.asarray(classes).astype(np.int64)
        if not np.array_equal(as_int, np.asarray(classes)):
            raise TypeError("class labels must be strings or whole numbers")
        labels = constant("classes", TensorProto.INT64, as_int)
    node("Gather", [labels, best], operator.outputs[0].full_name, axis=0)


def _numeric(column: dict[str, Any]) -> bool:
    kind = column.get("kind")
    dtype = str(column.get("dtype", ""))
    if kind is None:
        return dtype.startswith(("int", "Int", "uint", "UInt", "float", "Float"))
    return kind == "numeric" and dtype not in ("bool", "boolean")


def _classes(model: Any) -> Any:
    classes = getattr(model, "classes_", None)
    return None if classes is None else np.asarray(classes)


class OnnxPredictor:
    """An ONNX Runtime session for one model version, fed per column.

    Parameters
    ----------
    onnx
        The serialized graph.
    signature
        The version's signature: input columns, task.
    classes
        Class labels of a classifier, in probability order; labels come back
        in their dtype.
    threads
        ``intra_op_num_threads``: 1 keeps small requests fast and leaves cores
        to other workers.
    """

    def __init__(self, onnx: bytes, signature: dict[str, Any] | None, *,
                 classes: Any = None, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        graph_inputs = {i.name for i in self.session.get_inputs()}
        # Only the columns the graph takes: a thresholded model's signature also
        # holds its sensitive column, which only the thresholds read.
        self.columns = [(str(c["name"]), _numeric(c))
                        for c in (signature or {}).get("inputs", [])
                        if str(c["name"]) in graph_inputs]
        self.classes = None if classes is None else np.asarray(classes)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.is_regression = len(self.outputs) == 1
        self.has_probabilities = not self.is_regression

    def __repr__(self) -> str:
        return f"OnnxPredictor(columns={len(self.columns)}, outputs={self.outputs})"

    def feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The graph's inputs from ``frame``: a DataFrame, or validated column
        arrays that index like one (``frame[name]``), such as the server's
        :class:`~shipyard.deploy.Columns`, read without building a DataFrame."""
        feed = {}
        for name, numeric in self.columns:
            col = frame[name]
            if numeric:
                values = (col.to_numpy(dtype=np.float32, na_value=np.nan)
                          if hasattr(col, "to_numpy") else np.asarray(col, dtype=np.float32))
            else:
                values = np.array(["" if _missing(v) else str(v) for v in _as_listed(col)],
                                  dtype=object)
            feed[name] = values.reshape(-1, 1)
        return feed

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels or values, probabilities or None)`` for ``frame`` (as in :meth:`feed`)."""
        out = self.session.run(None, self.feed(frame))
        if self.is_regression:
            return np.asarray(out[0], dtype=np.float64).ravel(), None
        labels = np.asarray(out[0]).ravel()
        if self.classes is not None and self.classes.dtype != object:
            labels = labels.astype(self.classes.dtype)
        elif self.classes is not None:
            lookup = {str(c): c for c in self.classes}
            labels = np.array([lookup.get(str(v), v) for v in labels], dtype=object)
        return labels, np.asarray(out[1], dtype=np.float64)


def _as_listed(values: Any) -> list:
    """A column's values as a DataFrame's column would list them: a list of
    validated values holding numbers (a category column with numeric
    categories) takes the dtype pandas would give it (``[1, None]`` lists
    ``1.0``), so both inputs feed the graph the same strings."""
    if not isinstance(values, list):
        return values.tolist()
    if any(type(v) in (int, float) for v in values):
        import pandas as pd

        return pd.Series(values).tolist()
    return values


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) \
        or type(value).__name__ in ("NAType", "NaTType")


def load_onnx(ws: Workspace, version: Any, *, classes: Any = None) -> OnnxPredictor | None:
    """The ONNX predictor of a registered version, or None when it has none
    or onnxruntime is missing (the caller falls back to the Python model)."""
    digest = (version.tags or {}).get(DIGEST_TAG)
    if not digest:
        return None
    try:
        return OnnxPredictor(ws.artifacts.get_bytes(digest), version.signature, classes=classes)
    except ImportError:
        log.warning("%s has an ONNX graph but onnxruntime is not installed; serving the "
                    "Python model", version.ref)
    except Exception as exc:  # noqa: BLE001 -- a broken fast path must not stop serving
        log.error("cannot load the ONNX graph of %s (%s); serving the Python model",
                  version.ref, exc)
    return None
