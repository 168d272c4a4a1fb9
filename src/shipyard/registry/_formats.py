"""Model formats the registry adds to training's (:mod:`shipyard.train`'s
skops / LightGBM / torch): ONNX graphs and XGBoost boosters, for models
trained outside Shipyard (see :mod:`shipyard.registry._byo`).

=========  ===========================================  ==========================
format     what                                         parts
=========  ===========================================  ==========================
onnx       an ONNX graph, run by ONNX Runtime: an        ``graph`` (ONNX protobuf),
           imported ``.onnx`` file or a torch module     ``config`` (JSON: inputs,
           exported to ONNX                              outputs, classes)
xgboost    an XGBoost tree booster                       ``booster`` (XGBoost JSON),
                                                         ``config`` (JSON)
=========  ===========================================  ==========================

A saved model is the same envelope as training's: a JSON manifest naming
content-addressed blobs, whose sha256 is the model hash.
:func:`read_artifact` and :func:`load_stored` read every format, these and
training's (which they hand to :func:`shipyard.train.load_model`).

Neither format runs code from the file. An ONNX graph is checked before ONNX
Runtime sees it: only the standard operator domains (custom operators would
need native code), no external data files (a graph naming one would make the
runtime read that path), and ``onnx.checker``. XGBoost JSON is parsed and
checked in Python first (tree arrays, child and feature indices in range),
since XGBoost's predictor follows those indices without bounds checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ArtifactError, RegistryError, ShipyardError
from shipyard.train import canonical_json as _canonical_json

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.store import ArtifactStore

#: The manifest envelope of :mod:`shipyard.train`'s model artifacts, which
#: these formats share.
MANIFEST_VERSION = 1
FORMATS = ("onnx", "xgboost")
#: Largest graph or booster accepted (protobuf's own limit is 2 GiB).
MAX_MODEL_BYTES = 2 * 2**30
#: Operator domains an ONNX graph may use: ONNX, ONNX-ML and ONNX Runtime's
#: built-in contrib operators.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
#: How the output of a graph is read (``config["output"]``).
ONNX_OUTPUTS = ("value", "label", "probabilities", "scores", "label_probabilities")
#: XGBoost objectives of a classifier: probability of class 1, or of each class.
XGBOOST_CLASSIFIER = frozenset({"binary:logistic", "multi:softprob"})
#: Packages (pip names) each format needs.
PACKAGES = {"onnx": "onnx onnxruntime", "xgboost": "xgboost"}


@dataclass(frozen=True)
class ImportedArtifact:
    """A saved model in one of :data:`FORMATS`, like
    :class:`shipyard.train.ModelArtifact` for training's formats.

    Attributes
    ----------
    digest
        sha256 of the manifest: the model hash.
    format
        ``onnx`` or ``xgboost``.
    parts
        ``{role: blob digest}``.
    metadata
        Inputs, outputs, classes, library versions.
    """

    digest: str
    format: str
    parts: dict[str, str]
    metadata: dict[str, Any]

    @property
    def digests(self) -> list[str]:
        """Every blob this model needs, manifest first."""
        return [self.digest, *sorted(set(self.parts.values()))]


def require(module: str, fmt: str) -> Any:
    """Import ``module``, which models of format ``fmt`` need; say what to
    install when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ArtifactError(f"{fmt} models need {(exc.name or module).split('.')[0]}, which "
                            "is not installed here",
                            hint=f"pip install {PACKAGES.get(fmt, module)}") from exc


# ------------------------------------------------------------ manifests
def canonical_json(value: Any) -> bytes:
    """Manifest JSON as training writes it, NaN refused (see
    :func:`shipyard.train.canonical_json`)."""
    return _canonical_json(value, allow_nan=False)


def write_manifest(store: ArtifactStore, fmt: str, parts: dict[str, bytes],
                   metadata: dict[str, Any]) -> ImportedArtifact:
    """Store ``parts`` and a manifest naming them."""
    digests = {role: store.put_bytes(data) for role, data in parts.items()}
    metadata = {**metadata, "part_sizes": {role: len(data) for role, data in parts.items()}}
    manifest = {"shipyard_model": MANIFEST_VERSION, "format": fmt, "parts": digests,
                "metadata": metadata}
    digest = store.put_bytes(canonical_json(manifest))
    return ImportedArtifact(digest, fmt, digests, json.loads(canonical_json(metadata)))


def _manifest(store: ArtifactStore, digest: str) -> dict[str, Any]:
    try:
        manifest = json.loads(store.get_bytes(digest))
        if not isinstance(manifest, dict) or manifest.get("shipyard_model") != MANIFEST_VERSION:
            raise ValueError("not a Shipyard model manifest")
        return manifest
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"blob {digest} is not a model manifest: {exc}") from exc


def read_artifact(store: ArtifactStore, digest: str) -> Any:
    """The saved model whose manifest has ``digest``, in any format: an
    :class:`ImportedArtifact`, or a :class:`shipyard.train.ModelArtifact`."""
    manifest = _manifest(store, digest)
    if manifest.get("format") not in FORMATS:
        from shipyard.train import ModelArtifact

        return ModelArtifact.read(store, digest)
    parts, metadata = manifest.get("parts"), manifest.get("metadata")
    if not isinstance(parts, dict) or not isinstance(metadata, dict) \
            or not all(isinstance(v, str) for v in parts.values()):
        raise ArtifactError(f"blob {digest} is a malformed {manifest['format']} manifest")
    return ImportedArtifact(digest, manifest["format"], parts, metadata)


def load_stored(store: ArtifactStore, digest: str) -> Any:
    """Load the model whose manifest has ``digest``, in any format: an object
    with ``predict`` (and ``predict_proba`` for classifiers). Every blob is
    hash-verified; training's formats go through
    :func:`shipyard.train.load_model`."""
    artifact = read_artifact(store, digest)
    if not isinstance(artifact, ImportedArtifact):
        from shipyard.train import load_model

        return load_model(store, digest)
    needed = {"onnx": ("graph", "config"), "xgboost": ("booster", "config")}[artifact.format]
    missing = [p for p in needed if p not in artifact.parts]
    if missing:
        raise ArtifactError(f"model {digest} ({artifact.format}) lacks parts "
                            f"{', '.join(missing)}")
    data = store.get_bytes(artifact.parts[needed[0]])
    config = json.loads(store.get_bytes(artifact.parts["config"]))
    if not isinstance(config, dict):
        raise ArtifactError(f"model {digest}: its config is not a JSON object")
    if artifact.format == "onnx":
        return OnnxModel(data, config, what=f"model {digest}")
    return XGBoostModel(data, config, what=f"model {digest}")


# ---------------------------------------------------------------- ONNX
def check_graph(data: bytes, what: str) -> Any:
    """Parse and check an ONNX graph before ONNX Runtime sees it; return
    the ``onnx.ModelProto``.

    Raises
    ------
    ArtifactError
        It is not an ONNX model, is too large, uses operators outside
        :data:`ONNX_DOMAINS`, names external data files, or fails
        ``onnx.checker``.
    """
    onnx = require("onnx", "onnx")
    if len(data) > MAX_MODEL_BYTES:
        raise ArtifactError(f"{what} is {len(data)} bytes, over the "
                            f"{MAX_MODEL_BYTES} accepted for a graph")
    try:
        proto = onnx.load_model_from_string(bytes(data))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ArtifactError(f"{what} is not an ONNX model: {exc}") from exc
    if not proto.graph.output:
        raise ArtifactError(f"{what} is not an ONNX model: its graph has no outputs")
    domains = {o.domain for o in proto.opset_import}
    external = []
    for graph in _graphs(proto):
        domains.update(n.domain for n in graph.node)
        external += [t.name for t in _tensors(graph)
                     if t.data_location == onnx.TensorProto.EXTERNAL]
    for function in proto.functions:
        domains.update(n.domain for n in function.node)
    domains -= {function.domain for function in proto.functions}
    unknown = sorted(d for d in domains if d not in ONNX_DOMAINS)
    if unknown:
        raise ArtifactError(f"{what} uses operators of domain(s) {', '.join(unknown)}, which "
                            "need custom native code",
                            hint="export it with standard ONNX operators only")
    if external:
        raise ArtifactError(f"{what} keeps tensor(s) {', '.join(external[:5])} in external "
                            "data files, which Shipyard does not read",
                            hint="embed them: onnx.save_model(model, path, "
                                 "save_as_external_data=False)")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError, or a C++ error
        raise ArtifactError(f"{what} is not a valid ONNX model: "
                            f"{str(exc).strip().splitlines()[0][:300]}") from exc
    return proto


def _graphs(proto: Any) -> list[Any]:
    """The main graph and every subgraph (``If``, ``Loop``, ``Scan`` bodies)."""
    out, stack = [], [proto.graph]
    while stack:
        graph = stack.pop()
        out.append(graph)
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)
    return out


def _tensors(graph: Any) -> list[Any]:
    tensors = list(graph.initializer)
    tensors += [s.values for s in graph.sparse_initializer]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
    return tensors


def _session(data: bytes, what: str) -> Any:
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    # One thread: small requests stay fast and other workers keep their cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(bytes(data), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise ArtifactError(f"ONNX Runtime cannot load {what}: "
                            f"{str(exc).strip().splitlines()[0][:300]}") from exc


def _graph_inputs(proto: Any) -> list[dict[str, Any]]:
    """The graph's real inputs (initializers excluded): name, numpy dtype, shape."""
    from onnx import helper

    initializers = {t.name for t in proto.graph.initializer}
    out = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        if not value.type.HasField("tensor_type"):
            raise RegistryError(f"graph input {value.name!r} is not a tensor: Shipyard feeds "
                                "tensors")
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        out.append({"name": value.name, "dtype": dtype.name if dtype != object else "object",
                    "shape": dims})
    return out


def _class_labels(proto: Any) -> list[Any] | None:
    """Class labels an ONNX-ML classifier or ZipMap node names, if any."""
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name in ("classlabels_int64s", "classlabels_ints") and attr.ints:
                return [int(v) for v in attr.ints]
            if attr.name == "classlabels_strings" and attr.strings:
                return [v.decode("utf-8") for v in attr.strings]
    return None


def _producer(proto: Any, name: str) -> str | None:
    return next((n.op_type for n in proto.graph.node if name in n.output), None)


def describe_onnx(data: bytes, sample: pd.DataFrame | None, *, task: str | None = None,
                  classes: Any = None, what: str = "the graph") -> dict[str, Any]:
    """How to feed an ONNX graph from a DataFrame and read its outputs: the
    ``config`` part of an ``onnx`` model.

    Inputs: one graph input of shape ``[n, k]`` takes the ``k`` columns
    (named by ``sample``, else ``x0`` ... ``x{k-1}``) as one matrix; several
    inputs of shape ``[n]`` or ``[n, 1]`` take one column each, by input name.

    Outputs: a label tensor followed by probabilities (a tensor or a ZipMap,
    as skl2onnx and onnxmltools write classifiers) gives both; otherwise the
    first output is read: integers or strings are labels; one float column is
    a value (regression; ``task="binary"`` reads it as the probability or
    logit of the second class); several float columns are class scores. Class
    scores computed by ``Softmax`` (one column: ``Sigmoid``) are probabilities;
    any others are logits, turned into probabilities with softmax (sigmoid).

    Parameters
    ----------
    data
        The serialized graph.
    sample
        Input rows: name the matrix's columns, fix unknown widths, and are
        run once to check the graph takes them.
    task
        ``regression``, ``binary`` or ``multiclass``, to read the outputs
        that way; default from the outputs.
    classes
        Class labels in output order; default the labels the graph names,
        else ``0 .. C-1``.

    Raises
    ------
    ArtifactError
        The graph is refused (see :func:`check_graph`).
    RegistryError
        Its inputs or outputs cannot be fed or read as described, or
        ``sample`` does not fit it.
    """
    proto = check_graph(data, what)
    inputs = _graph_inputs(proto)
    if not inputs:
        raise ArtifactError(f"{what} takes no inputs")
    matrix = len(inputs) == 1 and len(inputs[0]["shape"]) == 2 \
        and inputs[0]["shape"][1] != 1 and inputs[0]["dtype"] not in ("object", "bool")
    if matrix:
        width = inputs[0]["shape"][1]
        if sample is not None:
            if width is not None and sample.shape[1] != width:
                raise RegistryError(f"the sample has {sample.shape[1]} columns, but {what} "
                                    f"takes {width} (input {inputs[0]['name']!r})")
            columns = [str(c) for c in sample.columns]
        elif width is None:
            raise RegistryError(f"{what} takes a matrix of unknown width, so its columns are "
                                "unknown", hint="pass sample= (a few input rows)")
        else:
            columns = [f"x{i}" for i in range(width)]
        layout = "matrix"
    else:
        for entry in inputs:
            shape = entry["shape"]
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] not in (1, None)):
                raise RegistryError(
                    f"input {entry['name']!r} of {what} has shape {shape}: Shipyard feeds one "
                    "[n, k] matrix, or one [n] or [n, 1] tensor per column")
        columns = [entry["name"] for entry in inputs]
        if sample is not None:
            missing = [c for c in columns if c not in sample.columns]
            extra = [str(c) for c in sample.columns if c not in columns]
            if missing or extra:
                raise RegistryError(
                    f"the sample does not match the inputs of {what}: "
                    + "; ".join(([f"missing {', '.join(map(repr, missing))}"] if missing else [])
                                + ([f"not an input: {', '.join(map(repr, extra))}"] if extra
                                   else [])),
                    hint=f"the graph takes: {', '.join(columns)}")
        layout = "columns"
    config: dict[str, Any] = {"layout": layout, "columns": columns,
                              "inputs": [{k: e[k] for k in ("name", "dtype")}
                                         | {"rank": len(e["shape"])} for e in inputs]}
    session = _session(data, what)
    probe = None
    if sample is not None and len(sample):
        try:
            probe = session.run(None, _feed(config, sample.head(100)))
        except Exception as exc:  # onnxruntime's errors name the input and the problem
            raise RegistryError(f"{what} cannot predict the sample: "
                                f"{str(exc).strip().splitlines()[0][:300]}") from exc
    config.update(_read_outputs(proto, session, probe, task, classes, what))
    return config


def _read_outputs(proto: Any, session: Any, probe: list | None, task: str | None,
                  classes: Any, what: str) -> dict[str, Any]:
    if task not in (None, "regression", "binary", "multiclass"):
        raise RegistryError(f"task {task!r} is not one of regression, binary, multiclass")
    outs = session.get_outputs()
    first = outs[0]
    label_type = first.type in ("tensor(int64)", "tensor(int32)", "tensor(string)")
    if len(outs) >= 2 and label_type and (outs[1].type.startswith("seq(map(")
                                          or outs[1].type.startswith("tensor(float")
                                          or outs[1].type == "tensor(double)"):
        kind, names = "label_probabilities", [first.name, outs[1].name]
        width = None
        if probe is not None and not outs[1].type.startswith("seq("):
            width = int(np.asarray(probe[1]).shape[-1])
        elif len(outs[1].shape) == 2 and isinstance(outs[1].shape[1], int):
            width = outs[1].shape[1]
    elif label_type:
        kind, names, width = "label", [first.name], None
    elif first.type.startswith("tensor(float") or first.type == "tensor(double)":
        names = [first.name]
        shape = list(np.asarray(probe[0]).shape) if probe is not None else first.shape
        width = 1 if len(shape) == 1 else shape[-1] if len(shape) == 2 else -1
        if width == -1:
            raise RegistryError(f"the output {first.name!r} of {what} has shape {shape}: "
                                "Shipyard reads one value or one score per class per row")
        if not isinstance(width, int):
            raise RegistryError(f"the output {first.name!r} of {what} has an unknown width",
                                hint="pass sample= (a few input rows) to measure it")
        if task == "regression" or (task is None and width == 1):
            if width != 1:
                raise RegistryError(f"a regression gives one value per row, but {what} "
                                    f"gives {width}")
            kind = "value"
        else:
            if width == 1 and task != "binary":
                raise RegistryError(f"{what} gives one score per row, which is a "
                                    f"{task} model only with task='binary'")
            squash = "Softmax" if width > 1 else "Sigmoid"
            kind = "probabilities" if _producer(proto, first.name) == squash else "scores"
    else:
        raise RegistryError(f"cannot read the output {first.name!r} of {what} "
                            f"({first.type}): Shipyard reads number or label tensors")
    out: dict[str, Any] = {"output": kind, "outputs": names}
    if kind in ("probabilities", "scores"):
        out["width"] = width
    if kind == "value":
        out["task"] = "regression"
        return out
    if task == "regression":
        raise RegistryError(f"{what} gives class labels, not a regression value")
    labels = classes if classes is not None else _class_labels(proto)
    if labels is None:
        if kind == "label":
            raise RegistryError(f"{what} gives labels only, so its classes are unknown",
                                hint="pass classes=[...] (every label, in order)")
        if width is None:
            raise RegistryError(f"the number of classes of {what} is unknown",
                                hint="pass sample= or classes=")
        labels = list(range(max(width, 2)))
    labels = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if len(labels) < 2 or len(set(map(repr, labels))) != len(labels):
        raise RegistryError(f"classes must be 2 or more distinct labels, got {labels!r}")
    if width is not None and max(width, 2) != len(labels):
        raise RegistryError(f"{what} gives {width} class scores per row, but there are "
                            f"{len(labels)} classes {labels!r}")
    if task is not None and (task == "binary") != (len(labels) == 2):
        raise RegistryError(f"task {task!r} does not fit {len(labels)} classes")
    out["classes"] = _labels_json(labels)
    out["task"] = "binary" if len(labels) == 2 else "multiclass"
    return out


def _labels_json(labels: list) -> dict[str, Any]:
    array = np.asarray(labels)
    if array.dtype.kind in "US":
        array = array.astype(object)
    if array.dtype.kind not in "iubO":
        raise RegistryError(f"class labels must be whole numbers, booleans or strings, got "
                            f"{labels!r}")
    values = [v.item() if isinstance(v, np.generic) else v for v in array.tolist()]
    return {"dtype": "object" if array.dtype == object else array.dtype.name, "values": values}


def labels_array(data: Any) -> np.ndarray:
    """Class labels stored by :func:`_labels_json`, with their dtype."""
    if not isinstance(data, dict) or not isinstance(data.get("values"), list):
        raise ArtifactError("the class labels of the model are malformed")
    dtype = data.get("dtype", "object")
    if dtype not in ("object", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                     "uint32", "uint64"):
        raise ArtifactError(f"bad class label dtype {dtype!r}")
    return np.asarray(data["values"], dtype=object if dtype == "object" else dtype)


def _feed(config: dict[str, Any], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    if config["layout"] == "matrix":
        entry = config["inputs"][0]
        block = frame[config["columns"]]
        if np.dtype(entry["dtype"]).kind == "f":
            values = block.to_numpy(dtype=np.float64, na_value=np.nan).astype(entry["dtype"])
        else:
            values = block.to_numpy(dtype=entry["dtype"])
        return {entry["name"]: values}
    feed = {}
    for entry in config["inputs"]:
        col = frame[entry["name"]]
        dtype = entry["dtype"]
        if dtype == "object":
            values = np.array(["" if _missing(v) else str(v) for v in col.tolist()], dtype=object)
        elif np.dtype(dtype).kind == "f":
            values = col.to_numpy(dtype=np.float64, na_value=np.nan).astype(dtype)
        else:
            values = col.to_numpy(dtype=dtype)
        feed[entry["name"]] = values.reshape(-1, 1) if entry["rank"] == 2 else values
    return feed


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) \
        or type(value).__name__ in ("NAType", "NaTType")


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class _Predictor:
    """The scikit-learn prediction API shared by imported models:
    ``predict``, ``predict_proba`` (classifiers only, so ``hasattr`` tells),
    ``classes_``, ``n_features_in_``, ``feature_names_in_``. Read-only."""

    columns: list[str]
    task: str
    has_proba: bool

    def fit(self, X: Any, y: Any = None) -> Any:
        raise ShipyardError(f"a loaded {type(self).__name__} cannot be refitted; train a new "
                            "one")

    def _setup(self, columns: list[str], task: str, classes: Any, has_proba: bool) -> None:
        self.columns, self.task, self.has_proba = list(columns), task, has_proba
        self.n_features_in_ = len(self.columns)
        self.feature_names_in_ = np.asarray(self.columns, dtype=object)
        if task != "regression":
            self.classes_ = classes

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags

        tags = Tags(estimator_type=None, target_tags=TargetTags(required=True))
        if self.task == "regression":
            tags.estimator_type, tags.regressor_tags = "regressor", RegressorTags()
        else:
            tags.estimator_type, tags.classifier_tags = "classifier", ClassifierTags()
        return tags

    def __getattr__(self, name: str) -> Any:
        if name == "predict_proba" and self.__dict__.get("has_proba"):
            return self._predict_proba
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _frame(self, X: Any) -> pd.DataFrame:
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            return X
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[1] != len(self.columns):
            raise ShipyardError(f"expected rows of {len(self.columns)} columns, got an array "
                                f"of shape {array.shape}")
        return pd.DataFrame(array, columns=self.columns)

    def _predict_proba(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        raise NotImplementedError


class OnnxModel(_Predictor):
    """An ONNX graph with the scikit-learn prediction API, run by ONNX Runtime
    on the CPU. Built by :func:`load_stored` from a stored ``onnx`` model;
    ``config`` is what :func:`describe_onnx` gave.

    The server feeds it through :meth:`serving_onnx`, the same graph with one
    input per signature column and the label and probability outputs the
    registry's fast path reads (:mod:`shipyard.registry._onnx`).
    """

    def __init__(self, graph: bytes, config: dict[str, Any], *, what: str = "the graph"):
        self._restore(graph, config, what)

    def _restore(self, graph: bytes, config: dict[str, Any], what: str) -> None:
        self.graph, self.config = bytes(graph), config
        check_graph(self.graph, what)
        try:
            if config["layout"] not in ("matrix", "columns") \
                    or config["output"] not in ONNX_OUTPUTS:
                raise ValueError(f"layout {config['layout']!r}, output {config['output']!r}")
            columns = [str(c) for c in config["columns"]]
            task = str(config["task"])
            classes = labels_array(config["classes"]) if "classes" in config else None
        except (KeyError, TypeError, ValueError, ArtifactError) as exc:
            raise ArtifactError(f"{what}: the ONNX model config is malformed: {exc}") from exc
        self._setup(columns, task, classes, config["output"] not in ("value", "label"))
        self.session = _session(self.graph, what)

    def __getstate__(self) -> dict[str, Any]:
        return {"graph": self.graph, "config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._restore(state["graph"], state["config"], "the graph")

    def __repr__(self) -> str:
        return (f"OnnxModel(output={self.config['output']!r}, columns={len(self.columns)}, "
                f"bytes={len(self.graph)})")

    def _run(self, X: Any) -> list[Any]:
        frame = self._frame(X)
        return self.session.run(self.config["outputs"], _feed(self.config, frame))

    def _labels(self, raw: Any) -> np.ndarray:
        labels = np.asarray(raw).ravel()
        if self.classes_.dtype != object:
            return labels.astype(self.classes_.dtype)
        lookup = {str(c): c for c in self.classes_}
        return np.array([lookup.get(str(v), v) for v in labels], dtype=object)

    def _predict_proba(self, X: Any) -> np.ndarray:
        out = self._run(X)
        kind = self.config["output"]
        if kind == "label_probabilities":
            raw = out[1]
            if isinstance(raw, list):  # a ZipMap: one {class: probability} per row
                return np.array([[row[c] for c in self.classes_.tolist()] for row in raw],
                                dtype=np.float64)
            return np.asarray(raw, dtype=np.float64)
        scores = np.asarray(out[0], dtype=np.float64)
        if scores.ndim == 1 or scores.shape[1] == 1:  # one column: the second class's
            p = scores.reshape(-1)
            if kind == "scores":
                p = 1.0 / (1.0 + np.exp(-p))
            return np.column_stack([1.0 - p, p])
        return _softmax(scores) if kind == "scores" else scores

    def predict(self, X: Any) -> np.ndarray:
        kind = self.config["output"]
        if kind == "value":
            return np.asarray(self._run(X)[0], dtype=np.float64).reshape(-1)
        if kind in ("label", "label_probabilities"):
            return self._labels(self._run(X)[0])
        return self.classes_[np.argmax(self._predict_proba(X), axis=1)]

    # ------------------------------------------------------- fast path
    def serving_onnx(self, inputs: list[dict[str, Any]]) -> bytes:
        """This graph rewired for :class:`~shipyard.registry._onnx.OnnxPredictor`:
        one ``[n, 1]`` input per signature column (``float`` for numbers,
        ``string`` otherwise), and outputs ``(value)`` or ``(labels,
        probabilities)``.

        Raises
        ------
        RegistryError
            The graph cannot be rewired (a column the predictor feeds as text
            where the graph wants numbers, a label-only output, a name
            clash); the registry records the reason and serves this model.
        """
        from onnx import TensorProto, checker, helper, numpy_helper

        from shipyard.registry._onnx import _numeric

        proto = check_graph(self.graph, "the graph")
        graph = proto.graph
        default = next((o for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if default is None:
            proto.opset_import.append(helper.make_opsetid("", 13))
        elif default.version < 7:
            raise RegistryError(f"opset {default.version} is older than the rewiring needs (7)")
        taken = {n for g in _graphs(proto) for node in g.node for n in [*node.input,
                                                                         *node.output]}
        taken |= {t.name for t in graph.initializer} | {v.name for v in graph.input}
        numeric = {str(c["name"]): _numeric(c) for c in inputs}
        missing = [c for c in self.columns if c not in numeric]
        if missing:
            raise RegistryError(f"the signature lacks column {missing[0]!r}")

        def fresh(stem: str) -> str:
            name, i = f"shipyard_{stem}", 0
            while name in taken:
                i += 1
                name = f"shipyard_{stem}_{i}"
            taken.add(name)
            return name

        head: list[Any] = []
        new_inputs = []
        originals = {e["name"]: e for e in self.config["inputs"]}
        if self.config["layout"] == "matrix":
            (entry,) = self.config["inputs"]
            clash = [c for c in self.columns if c in taken]
            if clash or not all(numeric[c] for c in self.columns):
                raise RegistryError("the matrix columns cannot be fed one by one: "
                                    + (f"{clash[0]!r} names a tensor of the graph" if clash
                                       else "a column is not numeric"))
            new_inputs = [helper.make_tensor_value_info(c, TensorProto.FLOAT, [None, 1])
                          for c in self.columns]
            joined = fresh("matrix")
            head.append(helper.make_node("Concat", self.columns, [joined], axis=1))
            head.append(helper.make_node("Cast", [joined], [entry["name"]],
                                         to=helper.np_dtype_to_tensor_dtype(
                                             np.dtype(entry["dtype"]))))
        else:
            for value in graph.input:
                entry = originals.get(value.name)
                if entry is None:  # an initializer listed as an input
                    continue
                text = entry["dtype"] == "object"
                if text == numeric[value.name] or entry["dtype"] == "bool":
                    raise RegistryError(f"column {value.name!r} is fed as "
                                        f"{'numbers' if numeric[value.name] else 'text'}, "
                                        f"the graph takes {entry['dtype']}")
                fed = TensorProto.STRING if text else TensorProto.FLOAT
                new_inputs.append(helper.make_tensor_value_info(value.name, fed, [None, 1]))
                if entry["dtype"] in ("object", "float32") and entry["rank"] == 2:
                    continue  # fed as the graph takes it
                inner = fresh(f"in_{len(head)}")
                for g in _graphs(proto):
                    for node in g.node:
                        node.input[:] = [inner if n == value.name else n for n in node.input]
                source = value.name
                if not text and entry["dtype"] != "float32":
                    cast = fresh(f"cast_{len(head)}")
                    head.append(helper.make_node(
                        "Cast", [source], [cast],
                        to=helper.np_dtype_to_tensor_dtype(np.dtype(entry["dtype"]))))
                    source = cast
                shape = [-1, 1] if entry["rank"] == 2 else [-1]
                shape_name = fresh(f"shape_{len(head)}")
                graph.initializer.append(numpy_helper.from_array(
                    np.asarray(shape, dtype=np.int64), shape_name))
                head.append(helper.make_node("Reshape", [source, shape_name], [inner]))

        tail, outputs = self._serving_outputs(proto, fresh)
        nodes = [*head, *graph.node, *tail]
        del graph.node[:]
        graph.node.extend(nodes)
        del graph.input[:]
        graph.input.extend(new_inputs)
        del graph.output[:]
        graph.output.extend(outputs)
        try:
            checker.check_model(proto)
        except Exception as exc:  # the rewired graph is refused: say why
            raise RegistryError(f"the rewired graph is invalid: {exc}") from exc
        return proto.SerializeToString()

    def _serving_outputs(self, proto: Any, fresh: Any) -> tuple[list[Any], list[Any]]:
        from onnx import TensorProto, helper, numpy_helper

        graph = proto.graph
        kind, names = self.config["output"], self.config["outputs"]
        declared = {v.name: v for v in graph.output}
        if kind == "value":
            return [], [declared[names[0]]]
        if kind == "label":
            raise RegistryError("the graph gives labels without probabilities")
        if kind == "label_probabilities":
            proba = names[1]
            zipmap = next((n for n in graph.node if proba in n.output
                           and n.op_type == "ZipMap"), None)
            if zipmap is None:
                return [], [declared[names[0]], declared[proba]]
            graph.node.remove(zipmap)  # the probabilities as a tensor, before the ZipMap
            return [], [declared[names[0]],
                        helper.make_tensor_value_info(zipmap.input[0], TensorProto.FLOAT,
                                                      [None, len(self.classes_)])]
        elem = declared[names[0]].type.tensor_type.elem_type
        tail, scores = [], names[0]
        width = len(self.classes_)
        if self.config.get("width") == 1:
            p = scores
            if kind == "scores":
                p = fresh("sigmoid")
                tail.append(helper.make_node("Sigmoid", [scores], [p]))
            shape, column, one, p0, proba = (fresh(s) for s in ("col_shape", "p1", "one", "p0",
                                                               "proba"))
            graph.initializer.append(numpy_helper.from_array(np.asarray([-1, 1], np.int64),
                                                             shape))
            graph.initializer.append(numpy_helper.from_array(
                np.asarray(1.0, dtype=helper.tensor_dtype_to_np_dtype(elem)), one))
            tail += [helper.make_node("Reshape", [p, shape], [column]),
                     helper.make_node("Sub", [one, column], [p0]),
                     helper.make_node("Concat", [p0, column], [proba], axis=1)]
        elif kind == "scores":
            proba = fresh("softmax")
            tail.append(helper.make_node("Softmax", [scores], [proba], axis=1))
        else:
            proba = scores
        index, labels, table = fresh("argmax"), fresh("label"), fresh("classes")
        classes = self.classes_
        array = np.array([str(c) for c in classes], dtype=object) if classes.dtype == object \
            else classes.astype(np.int64)
        graph.initializer.append(numpy_helper.from_array(array, table))
        tail += [helper.make_node("ArgMax", [proba], [index], axis=1, keepdims=0),
                 helper.make_node("Gather", [table, index], [labels], axis=0)]
        label_type = TensorProto.STRING if classes.dtype == object else TensorProto.INT64
        return tail, [helper.make_tensor_value_info(labels, label_type, [None]),
                      helper.make_tensor_value_info(proba, elem, [None, width])]


# -------------------------------------------------------------- XGBoost
def check_xgboost_json(data: bytes, what: str) -> dict[str, Any]:
    """Parse and check XGBoost JSON before XGBoost reads it; return the
    learner's facts: ``objective``, ``n_features``, ``num_class``,
    ``feature_names``.

    Only tree boosters (``gbtree``) with numerical splits and one output per
    class are accepted; every child index must point further down its tree
    and every split at a feature the model has.
    """
    if len(data) > MAX_MODEL_BYTES:
        raise ArtifactError(f"{what} is {len(data)} bytes, over the {MAX_MODEL_BYTES} "
                            "accepted for a booster")
    try:
        doc = json.loads(data)
        learner = doc["learner"]
        params = learner["learner_model_param"]
        n_features, num_class = int(params["num_feature"]), int(params["num_class"])
        targets = int(params.get("num_target", 1))
        objective = str(learner["objective"]["name"])
        booster = learner["gradient_booster"]
        names = learner.get("feature_names") or []
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ArtifactError(f"{what} is not XGBoost JSON: {exc}") from exc
    if booster.get("name") != "gbtree":
        raise ArtifactError(f"{what} is a {booster.get('name')!r} booster; Shipyard reads "
                            "tree boosters (gbtree)")
    if targets != 1 or not 0 < n_features <= 2**31 or not 0 <= num_class <= 2**20:
        raise ArtifactError(f"{what} has {targets} targets, {n_features} features, "
                            f"{num_class} classes: Shipyard reads one target")
    if names and len(names) != n_features:
        raise ArtifactError(f"{what} names {len(names)} features but has {n_features}")
    try:
        model = booster["model"]
        trees, info = model["trees"], model["tree_info"]
        if int(model["gbtree_model_param"]["num_trees"]) != len(trees) or \
                len(info) != len(trees):
            raise ValueError("tree counts disagree")
        groups = max(num_class, 1)
        for i, tree in enumerate(trees):
            problem = _xgboost_tree_problem(tree, n_features)
            if problem:
                raise ValueError(f"tree {i} {problem}")
            if not isinstance(info[i], int) or not 0 <= info[i] < groups:
                raise ValueError(f"tree {i} belongs to output {info[i]!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{what} is a malformed XGBoost model: {exc}") from exc
    return {"objective": objective, "n_features": n_features, "num_class": num_class,
            "feature_names": [str(n) for n in names] or None}


def _xgboost_tree_problem(tree: dict[str, Any], n_features: int) -> str | None:
    param = tree["tree_param"]
    n = int(param["num_nodes"])
    if int(param.get("size_leaf_vector", 1)) > 1:
        return "has vector leaves (a multi-target model)"
    left, right, split = tree["left_children"], tree["right_children"], tree["split_indices"]
    arrays = ("left_children", "right_children", "parents", "split_indices",
              "split_conditions", "default_left", "base_weights")
    if n < 1 or any(len(tree[key]) != n for key in arrays):
        return f"has arrays that do not hold its {n} nodes"
    if any(tree.get(key) for key in ("categories", "categories_nodes", "categories_segments",
                                     "categories_sizes")) or any(tree.get("split_type") or []):
        return "has categorical splits, which Shipyard does not read"
    if not all(isinstance(v, (int, float)) for v in tree["split_conditions"]):
        return "has a non-number split condition"
    for node in range(n):
        a, b = left[node], right[node]
        if not isinstance(a, int) or not isinstance(b, int):
            return f"has node {node} with a non-integer child"
        if a == -1 and b == -1:
            continue
        if not (node < a < n and node < b < n):
            return f"has node {node} pointing at {a}, {b}, outside the tree below it"
        if not isinstance(split[node], int) or not 0 <= split[node] < n_features:
            return f"splits node {node} on feature {split[node]!r}, outside 0..{n_features - 1}"
    return None


class XGBoostModel(_Predictor):
    """An XGBoost tree booster read from its JSON format, with the
    scikit-learn prediction API. Built by :func:`load_stored`."""

    def __init__(self, data: bytes, config: dict[str, Any], *, what: str = "the booster"):
        xgboost = require("xgboost", "xgboost")
        facts = check_xgboost_json(data, what)
        try:
            kind, columns = config["kind"], [str(c) for c in config["columns"]]
            classes = labels_array(config["classes"]) if kind == "classifier" else None
            if kind not in ("classifier", "regressor") or len(columns) != facts["n_features"]:
                raise ValueError(f"kind {kind!r}, {len(columns)} columns")
            if kind == "classifier" and (facts["objective"] not in XGBOOST_CLASSIFIER
                                         or len(classes) != max(facts["num_class"], 2)):
                raise ValueError(f"{len(classes)} classes, objective {facts['objective']}")
        except (KeyError, TypeError, ValueError, ArtifactError) as exc:
            raise ArtifactError(f"{what}: the XGBoost model config is malformed: {exc}") from exc
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgboost.core.XGBoostError as exc:
            raise ArtifactError(f"{what}: XGBoost cannot read the booster: {exc}") from exc
        self.booster_, self.kind_ = booster, kind
        self._setup(columns, "regression" if kind == "regressor" else
                    ("binary" if len(classes) == 2 else "multiclass"), classes,
                    kind == "classifier")

    def __repr__(self) -> str:
        return f"XGBoostModel(kind={self.kind_!r}, features={self.n_features_in_})"

    def _raw(self, X: Any) -> np.ndarray:
        frame = self._frame(X)
        matrix = frame[self.columns].to_numpy(dtype=np.float32, na_value=np.nan)
        return np.asarray(self.booster_.inplace_predict(matrix, validate_features=False))

    def _predict_proba(self, X: Any) -> np.ndarray:
        raw = self._raw(X).astype(np.float64)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict(self, X: Any) -> np.ndarray:
        if self.kind_ == "classifier":
            return self.classes_[np.argmax(self._predict_proba(X), axis=1)]
        return self._raw(X).astype(np.float64).reshape(-1)
