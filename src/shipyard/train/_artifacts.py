"""Safe model artifacts: no pickle, every byte hash-checked.

A saved model is a few blobs in the :class:`~shipyard.store.ArtifactStore`
plus a JSON *manifest* naming them; the manifest's sha256 is the model hash.

=========  =====================================================  ====================
format     what                                                   parts
=========  =====================================================  ====================
skops      any scikit-learn estimator or pipeline                 ``model`` (skops)
lightgbm   LightGBM model, alone or as a pipeline's last step     ``booster`` (native
                                                                  text), ``config``
                                                                  (JSON), optional
                                                                  ``preprocessor``
torch      :class:`TorchMLPClassifier` / ``Regressor``, alone or  ``weights``
           as a pipeline's last step                              (safetensors),
                                                                  ``config`` (JSON),
                                                                  optional
                                                                  ``preprocessor``
=========  =====================================================  ====================

A skops file is loaded only when every type in it is on Shipyard's explicit
allow-list, :data:`SKOPS_TYPES`: the exact classes each kind of model the
trainer saves needs, written down by name (``tests/train/test_artifact_allow_list.py``
saves every kind and checks it needs nothing more). skops' own defaults (every
scikit-learn estimator, numpy ufuncs) do not count, and functions, methods and
other callables are refused whatever they are called. Before skops reads a
file, its zip is checked (size, members, nesting, array headers); after, the
node arrays of decision trees are, because compiled prediction code follows
them without bounds checks. LightGBM text is checked in Python before
LightGBM's own parser, which can crash the process on malformed input, sees
it. skops zips are rewritten canonically (sequential object ids and file
names, fixed timestamps), so the same fitted model always gives the same bytes.
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import math
import re
import zipfile
from importlib import metadata as importlib_metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shipyard.errors import ArtifactError, ShipyardError
from shipyard.store import ArtifactStore

MANIFEST_VERSION = 1
#: Formats wrapping another saved model (its manifest is part ``base``), each
#: loaded by ``cls._load(store, artifact)`` of the class named here: a fixed
#: table, never a name read from the manifest.
WRAPPERS = {"thresholded": "shipyard.train._thresholded.ThresholdedModel"}
FORMATS = ("skops", "lightgbm", "torch", *WRAPPERS)

#: The exact types a skops file may hold, by the kind of model that needs
#: them: containers and numpy for any state; ``preprocessing`` for what
#: :func:`~shipyard.train.build_preprocessor` builds (and the ``preprocessor``
#: part of LightGBM and torch models); then one entry per family of
#: scikit-learn estimators the trainer can save, with the helper objects their
#: fitted state holds. Written down from what the trainer saves, never
#: computed from a module prefix: a file holding anything else is refused by
#: name. Left out on purpose: HistGradientBoosting (its ``TreePredictor`` and
#: categorical bitsets are read by compiled code without bounds checks),
#: k-nearest neighbours (``KDTree``/``BallTree`` arrays, likewise) and kernel
#: SVMs (libsvm's support-vector counts, likewise).
SKOPS_TYPES: dict[str, frozenset[str]] = {
    "containers": frozenset({
        "builtins.dict", "builtins.list", "builtins.tuple", "builtins.slice", "builtins.str",
        "builtins.int"}),  # int: the key type of a class_weight mapping
    "numpy": frozenset({
        "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.int64",
        "numpy.random.mtrand.RandomState"}),
    "preprocessing": frozenset({
        "sklearn.pipeline.Pipeline",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",  # passthrough
        "sklearn.impute._base.SimpleImputer",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "shipyard.train._preprocess.DateParts",
        "shipyard.train._preprocess.TextColumn"}),
    "linear": frozenset({
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._base.LinearRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.linear_model._ridge.RidgeClassifier",
        "sklearn.linear_model._coordinate_descent.Lasso",
        "sklearn.linear_model._coordinate_descent.ElasticNet",
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.linear_model._stochastic_gradient.SGDRegressor",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.svm._classes.LinearSVR",
        "sklearn.preprocessing._label.LabelBinarizer",
        # SGDClassifier keeps its loss object
        "sklearn.linear_model._sgd_fast.Hinge", "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sklearn.linear_model._sgd_fast.SquaredHinge",
        "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
        "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
        "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyHuberLoss"}),
    "trees": frozenset({
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.ensemble._forest.ExtraTreesRegressor",
        "sklearn.tree._tree.Tree"}),
    "gradient_boosting": frozenset({
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.ensemble._gb.GradientBoostingRegressor",
        "sklearn.tree._classes.DecisionTreeRegressor", "sklearn.tree._tree.Tree",
        "sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor",  # init_
        "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.ExponentialLoss", "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.AbsoluteError", "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyExponentialLoss", "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyAbsoluteError", "sklearn._loss._loss.CyHuberLoss",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss.link.Interval", "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink", "sklearn._loss.link.HalfLogitLink",
        "sklearn._loss.link.MultinomialLogit"}),
    "neural_network": frozenset({
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.preprocessing._label.LabelBinarizer"}),
    "naive_bayes": frozenset({"sklearn.naive_bayes.GaussianNB"}),
    "dummy": frozenset({"sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor"}),
}
#: Every type a skops file may hold: the union of :data:`SKOPS_TYPES`.
ALLOWED_TYPES: frozenset[str] = frozenset().union(*SKOPS_TYPES.values())
#: skops node kinds that rebuild data from the file. The others (functions,
#: bound methods, partials, operator calls, constructor-from-reduce, ...)
#: name code to run: refused, whatever they name.
SKOPS_NODES = frozenset({"ObjectNode", "DictNode", "ListNode", "TupleNode",
                         "JsonNode", "TypeNode", "SliceNode", "NdArrayNode", "DTypeNode",
                         "TreeNode", "LossNode", "RandomStateNode", "CachedNode"})
#: Limits a skops zip must keep before skops reads it: member count, bytes
#: unpacked in all, unpacked/packed ratio beyond the first
#: :data:`MAX_SKOPS_SMALL` bytes (deflate reaches ~1000:1 only on degenerate
#: data; real models pack 2-10:1), and nesting depth of ``schema.json``.
MAX_SKOPS_MEMBERS = 200_000
MAX_SKOPS_BYTES = 4 * 2**30
MAX_SKOPS_SMALL = 64 * 2**20
MAX_SKOPS_RATIO = 100
MAX_SKOPS_DEPTH = 200
#: LightGBM's own cap on leaves per tree.
MAX_LIGHTGBM_LEAVES = 131_072
#: The ``shipyard[...]`` extra that installs each package a format needs.
EXTRAS = {"skops": "train", "lightgbm": "train", "safetensors": "train", "torch": "torch"}


#: Fitted attributes holding an ``id()``, not content; dropped when saving
#: (CountVectorizer re-checks its stop words once instead).
VOLATILE_ATTRS = frozenset({"_stop_words_id"})


class ModelArtifact(BaseModel):
    """A saved model: its manifest digest (the model hash), format, parts.

    Attributes
    ----------
    digest
        sha256 of the manifest; names the whole model. Same data, spec and
        seed give the same digest.
    format
        ``skops``, ``lightgbm`` or ``torch``.
    parts
        ``{role: blob digest}``, e.g. ``{"preprocessor": ..., "booster": ...}``.
    metadata
        Estimator class, classes, input features, library versions, sizes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    format: Literal["skops", "lightgbm", "torch", "thresholded"]
    parts: dict[str, str]
    metadata: dict[str, Any]

    @property
    def digests(self) -> list[str]:
        """Every blob this model needs (manifest first): what a record must
        reference so garbage collection keeps them."""
        return [self.digest, *sorted(set(self.parts.values()))]

    @classmethod
    def read(cls, store: ArtifactStore, digest: str) -> ModelArtifact:
        """The artifact whose manifest has ``digest``, read and verified."""
        raw = store.get_bytes(digest)
        try:
            manifest = json.loads(raw)
            if manifest.get("shipyard_model") != MANIFEST_VERSION:
                raise ValueError("not a Shipyard model manifest")
            return cls(digest=digest, format=manifest["format"], parts=manifest["parts"],
                       metadata=manifest["metadata"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise ArtifactError(f"blob {digest} is not a model manifest: {exc}",
                                hint="pass the digest that save_model returned") from exc


# -------------------------------------------------------------------- save
def save_model(model: Any, store: ArtifactStore) -> ModelArtifact:
    """Save a fitted model to ``store`` in a safe format.

    Parameters
    ----------
    model
        A fitted scikit-learn estimator or pipeline; a LightGBM model
        (``LGBMClassifier``, ``LGBMRegressor``, ``Booster``); a
        :class:`TorchMLPClassifier` / :class:`TorchMLPRegressor`; or a
        scikit-learn ``Pipeline`` ending in a LightGBM or torch model.
    store
        Where the blobs go.

    Returns
    -------
    ModelArtifact

    Raises
    ------
    ArtifactError
        The model is not fitted, is of an unsupported kind, or holds types
        that could not be loaded back safely. Nothing is written then.
    """
    final, prefix, step = _split_pipeline(model)
    kind = _kind(final)
    if kind == "unsupported":
        raise ArtifactError(
            f"cannot save a {_type_path(model)}: not a model Shipyard can store safely",
            hint="save a fitted scikit-learn estimator or Pipeline, a LightGBM model, or a "
                 "TorchMLPClassifier/TorchMLPRegressor")
    _check_fitted(final)

    parts: dict[str, bytes] = {}
    meta: dict[str, Any] = {"class": _type_path(model), "versions": {}}
    if kind == "skops":
        parts["model"] = _dump_skops(model)
        meta["versions"] = _versions("scikit-learn", "skops", "numpy")
    else:
        if prefix is not None:
            _check_fitted(prefix)
            parts["preprocessor"] = _dump_skops(prefix)
            meta["final_step"] = step
            meta["versions"] = _versions("scikit-learn", "skops", "numpy")
        meta["final_class"] = _type_path(final)
        if kind == "lightgbm":
            parts["booster"], parts["config"] = _dump_lightgbm(final)
            meta["versions"].update(_versions("lightgbm"))
        else:
            parts["weights"], parts["config"] = _dump_torch(final)
            meta["versions"].update(_versions("torch", "safetensors"))
    for attr, key in (("classes_", "classes"), ("n_features_in_", "n_features_in"),
                      ("feature_names_in_", "feature_names_in")):
        try:
            value = getattr(model, attr, None)
        except Exception:  # LightGBM raises its own error for some unset attributes
            value = None
        if value is not None:
            meta[key] = _jsonable(value)
    meta["part_sizes"] = {role: len(data) for role, data in parts.items()}

    digests = {role: store.put_bytes(data) for role, data in parts.items()}
    manifest = {"shipyard_model": MANIFEST_VERSION, "format": kind, "parts": digests,
                "metadata": meta}
    digest = store.put_bytes(canonical_json(manifest))
    return ModelArtifact(digest=digest, format=kind, parts=digests, metadata=meta)


def _split_pipeline(model: Any) -> tuple[Any, Any, str | None]:
    """``(final estimator, preceding steps as a Pipeline or None, final step name)``
    when ``model`` is a Pipeline ending in LightGBM or torch; else ``(model, None, None)``."""
    if type(model).__module__.startswith("sklearn.pipeline") and hasattr(model, "steps") \
            and len(model.steps) >= 2:
        name, last = model.steps[-1]
        if _kind(last) in ("lightgbm", "torch"):
            return last, model[:-1], name
    return model, None, None


def _kind(obj: Any) -> str:
    from shipyard.train._torch_mlp import _TorchMLP

    if isinstance(obj, _TorchMLP):
        return "torch"
    if type(obj).__module__.split(".")[0] == "lightgbm":
        import lightgbm

        if isinstance(obj, (lightgbm.LGBMClassifier, lightgbm.LGBMRegressor, lightgbm.Booster)):
            return "lightgbm"
        return "unsupported"
    from sklearn.base import BaseEstimator

    return "skops" if isinstance(obj, BaseEstimator) else "unsupported"


def _check_fitted(obj: Any) -> None:
    if type(obj).__module__.startswith("lightgbm") and type(obj).__name__ == "Booster":
        return
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(obj)
    except NotFittedError as exc:
        raise ArtifactError(f"cannot save the {_type_path(obj)}: it is not fitted",
                            hint="call fit() before saving") from exc


def _dump_skops(obj: Any) -> bytes:
    sio = _import_for("skops", "skops.io")
    try:
        data = _canonical_skops(sio.dumps(obj))
    except Exception as exc:  # skops fails in many ways on objects it cannot represent
        raise ArtifactError(f"cannot save the {_type_path(obj)} with skops: {exc}",
                            hint="save scikit-learn estimators, LightGBM models or "
                                 "TorchMLP models, or a Pipeline ending in one") from exc
    # The same checks as loading: what is saved can be loaded back.
    _check_skops(data, f"the {_type_path(obj)}", saving=True)
    return data


def _dump_lightgbm(model: Any) -> tuple[bytes, bytes]:
    import lightgbm

    booster = model if isinstance(model, lightgbm.Booster) else model.booster_
    if isinstance(model, lightgbm.LGBMClassifier):
        if callable(model.objective):
            raise ArtifactError("cannot save an LGBMClassifier with a custom objective function")
        config: dict[str, Any] = {"kind": "classifier", "classes": _jsonable(model.classes_)}
    elif isinstance(model, lightgbm.LGBMRegressor):
        config = {"kind": "regressor"}
    else:
        config = {"kind": "booster"}
    config["n_features"] = booster.num_feature()
    return booster.model_to_string().encode("utf-8"), canonical_json(config)


def _dump_torch(model: Any) -> tuple[bytes, bytes]:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.module_.state_dict().items()}
    config: dict[str, Any] = {
        "class": type(model).__name__,
        "params": _jsonable(model.get_params()),
        "n_features_in": int(model.n_features_in_),
        "n_outputs": int(model._n_outputs()),
    }
    for attr in ("classes_", "y_mean_", "y_scale_", "best_epoch_", "n_epochs_", "best_loss_",
                 "train_loss_curve_", "validation_loss_curve_"):
        if hasattr(model, attr):
            config[attr] = _jsonable(getattr(model, attr))
    # Metadata stays out of the safetensors header: its key order is not guaranteed.
    return save(state), canonical_json(config)


# -------------------------------------------------------------------- load
def load_model(store: ArtifactStore, artifact: ModelArtifact | str) -> Any:
    """Load a saved model: an object with ``predict`` (and ``predict_proba``
    for classifiers).

    Every blob is hash-verified on read; skops files are checked against the
    allow-list before any object is built.

    Parameters
    ----------
    store
        The artifact store holding the model.
    artifact
        What :func:`save_model` returned, or its ``digest``.

    Raises
    ------
    ArtifactCorruptedError
        A blob's content no longer matches its digest (tampering, bit rot).
    ArtifactNotFoundError
        A blob is missing.
    ArtifactError
        The manifest does not match ``artifact``, or a part holds untrusted
        types or is malformed.
    """
    if isinstance(artifact, str):
        digest = artifact
    elif isinstance(artifact, ModelArtifact):
        digest = artifact.digest
    else:
        raise ArtifactError(f"load_model takes a ModelArtifact or its digest, got "
                            f"{type(artifact).__name__}")
    stored = ModelArtifact.read(store, digest)
    if isinstance(artifact, ModelArtifact) and (artifact.format, artifact.parts) != (
            stored.format, stored.parts):
        raise ArtifactError(f"model {digest}: the artifact record does not match its manifest",
                            hint="the record was altered; load by digest to use the manifest")
    parts = stored.parts
    if stored.format in WRAPPERS:
        module, _, name = WRAPPERS[stored.format].rpartition(".")
        return getattr(importlib.import_module(module), name)._load(store, stored)
    needed = {"skops": {"model"}, "lightgbm": {"booster", "config"},
              "torch": {"weights", "config"}}[stored.format]
    if not needed <= set(parts):
        raise ArtifactError(f"model {digest} ({stored.format}) lacks parts "
                            f"{', '.join(sorted(needed - set(parts)))}")
    if stored.format == "skops":
        return _load_skops(store.get_bytes(parts["model"]), parts["model"])
    if stored.format == "lightgbm":
        final = _load_lightgbm(store.get_bytes(parts["booster"]),
                               _read_json(store, parts["config"]), digest)
    else:
        final = _load_torch(store.get_bytes(parts["weights"]),
                            _read_json(store, parts["config"]), digest)
    if "preprocessor" not in parts:
        return final
    prefix = _load_skops(store.get_bytes(parts["preprocessor"]), parts["preprocessor"])
    from sklearn.pipeline import Pipeline

    if not isinstance(prefix, Pipeline):
        raise ArtifactError(f"model {digest}: its preprocessor is not a Pipeline")
    step = str(stored.metadata.get("final_step") or "model")
    return Pipeline([*prefix.steps, (step, final)])


def _load_skops(data: bytes, digest: str) -> Any:
    sio = _import_for("skops", "skops.io", digest)
    trusted = _check_skops(data, f"model blob {digest}")
    try:
        model = sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactError(f"blob {digest} could not be loaded with skops: {exc}") from exc
    _check_tree_nodes(model, f"model blob {digest}")
    if not hasattr(model, "predict") and not hasattr(model, "transform"):
        raise ArtifactError(f"blob {digest} holds a {_type_path(model)}, not a model")
    return model


def _load_lightgbm(data: bytes, config: dict, digest: str) -> LightGBMModel:
    lightgbm = _import_for("lightgbm", "lightgbm", digest)
    kind = config.get("kind")
    if kind not in ("classifier", "regressor", "booster"):
        raise ArtifactError(f"model {digest}: unknown LightGBM model kind {kind!r}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"model {digest}: the LightGBM booster is not text: {exc}") from exc
    # LightGBM's C++ parser aborts or reads out of bounds on some malformed
    # models, taking the process down: it sees only text checked here first.
    header = _check_lightgbm_text(data, f"model {digest}")
    _check_lightgbm_config(header, config, kind, digest)
    try:
        booster = lightgbm.Booster(model_str=text)
    except (ValueError, lightgbm.basic.LightGBMError) as exc:
        raise ArtifactError(f"model {digest}: the LightGBM booster is malformed: {exc}") from exc
    return LightGBMModel._from_booster(booster, kind, config.get("classes"))


def _load_torch(data: bytes, config: dict, digest: str) -> Any:
    _import_for("torch", "torch", digest)
    safetensors = _import_for("torch", "safetensors.torch", digest)
    from safetensors import SafetensorError

    from shipyard.train._torch_mlp import TorchMLPClassifier, TorchMLPRegressor, build_module

    classes = {"TorchMLPClassifier": TorchMLPClassifier, "TorchMLPRegressor": TorchMLPRegressor}
    cls = classes.get(config["class"]) if isinstance(config.get("class"), str) else None
    params = config.get("params")
    if cls is None or not isinstance(params, dict) or \
            not set(params) <= set(cls._get_param_names()):
        raise ArtifactError(f"model {digest}: the torch model config is malformed")
    try:
        if isinstance(params.get("hidden_sizes"), list):
            params = {**params, "hidden_sizes": tuple(params["hidden_sizes"])}
        model = cls(**params)
        model.n_features_in_ = int(config["n_features_in"])
        n_outputs = int(config["n_outputs"])
        state = safetensors.load(data)
        # The config sizes the network: check it against the weights actually
        # stored before building it, so a forged config cannot make us
        # allocate more than the blob holds.
        sizes = [model.n_features_in_, *model._check_params(), n_outputs]
        expected = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        stored = sum(t.numel() for t in state.values())
        if min(sizes) < 1 or expected != stored:
            raise ValueError(f"the config describes {expected} weights, the blob holds {stored}")
        model.module_ = build_module(model, model.n_features_in_, n_outputs)
        model.module_.load_state_dict(state, strict=True)
        model.module_.eval()
    except (SafetensorError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"model {digest}: cannot rebuild the torch model: {exc}") from exc
    for attr in ("y_mean_", "y_scale_", "best_epoch_", "n_epochs_", "best_loss_",
                 "train_loss_curve_", "validation_loss_curve_"):
        if attr in config:
            setattr(model, attr, config[attr])
    if "classes_" in config:
        model.classes_ = _classes_array(config["classes_"])
        if len(model.classes_) != n_outputs:
            raise ArtifactError(f"model {digest}: {len(model.classes_)} classes but "
                                f"{n_outputs} outputs")
    return model


def _import_for(fmt: str, module: str, digest: str | None = None) -> Any:
    """Import ``module``, which models of format ``fmt`` need; say what to
    install when it (or a package it needs) is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).split(".")[0]
        what = f"model {digest} is" if digest else "the model is"
        raise ArtifactError(
            f"{what} in the {fmt} format, which needs {missing}, not installed here",
            hint=f"pip install 'shipyard[{EXTRAS.get(missing, 'train')}]'") from exc


def _read_json(store: ArtifactStore, digest: str) -> dict:
    try:
        value = json.loads(store.get_bytes(digest))
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"blob {digest} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ArtifactError(f"blob {digest} is not a JSON object")
    return value


class LightGBMModel:
    """A LightGBM booster read from its native text format, with the
    scikit-learn prediction API (``predict``, ``predict_proba``, ``classes_``).
    Read-only: it cannot be refitted."""

    booster_: Any
    kind_: str
    #: Up to this many rows LightGBM predicts on one thread: waking its OpenMP
    #: pool after an idle moment costs ~10 ms, which one thread needs for about
    #: a thousand rows (where more threads start to pay off on two cores).
    ONE_THREAD_ROWS = 1000

    def fit(self, X: Any, y: Any = None) -> LightGBMModel:
        raise ShipyardError("a loaded LightGBM model cannot be refitted; train a new one")

    @classmethod
    def _from_booster(cls, booster: Any, kind: str, classes: dict | None) -> LightGBMModel:
        self = cls()
        self.booster_, self.kind_ = booster, kind
        self.n_features_in_ = booster.num_feature()
        if kind == "classifier":
            if classes is None:
                raise ArtifactError("a LightGBM classifier artifact lacks its classes")
            self.classes_ = _classes_array(classes)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags

        tags = Tags(estimator_type=None, target_tags=TargetTags(required=True))
        if self.kind_ == "classifier":
            tags.estimator_type, tags.classifier_tags = "classifier", ClassifierTags()
        elif self.kind_ == "regressor":
            tags.estimator_type, tags.regressor_tags = "regressor", RegressorTags()
        return tags

    def __repr__(self) -> str:
        return (f"LightGBMModel(kind={self.kind_!r}, "
                f"trees={self.booster_.num_trees()}, features={self.n_features_in_})")

    def __getattr__(self, name: str) -> Any:
        # predict_proba exists only for classifiers, so hasattr() and
        # Pipeline's available_if see the truth.
        if name == "predict_proba" and self.__dict__.get("kind_") == "classifier":
            return self._predict_proba
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _predict_proba(self, X: Any) -> Any:
        import numpy as np

        raw = np.asarray(self._booster_predict(X))
        if raw.ndim == 1:
            raw = np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, X: Any) -> Any:
        import numpy as np

        if self.kind_ == "classifier":
            return self.classes_[np.argmax(self._predict_proba(X), axis=1)]
        return np.asarray(self._booster_predict(X))

    def _booster_predict(self, X: Any) -> Any:
        rows = X.shape[0] if hasattr(X, "shape") else len(X)
        if rows <= self.ONE_THREAD_ROWS:
            return self.booster_.predict(X, num_threads=1)
        return self.booster_.predict(X)


# ---------------------------------------------------------- the allow-list
def allowed_type(name: str) -> bool:
    """Whether a skops file may hold the type called ``name``: whether it is
    on :data:`ALLOWED_TYPES`, exactly.

    >>> allowed_type("sklearn.tree._tree.Tree"), allowed_type("posix.system")
    (True, False)
    >>> allowed_type("numpy.lib._datasource.Repository")   # numpy, but not a model's
    False
    """
    return name in ALLOWED_TYPES


def _check_skops(data: bytes, what: str, *, saving: bool = False) -> list[str]:
    """Check skops bytes before skops reads them; return the type names to
    pass to skops as trusted.

    ``what`` names the bytes in messages (``model blob <digest>``, or ``the
    <class>`` when ``saving``).

    Raises
    ------
    ArtifactError
        The bytes are not a skops zip, break a limit, hold something other
        than plain ``.npy`` arrays beside ``schema.json``, name a type or
        callable outside the allow-list (all of them named), give one id to
        different objects, or hold a decision tree whose arrays would crash
        scikit-learn while loading.
    """
    import skops.io as sio

    prefix = f"cannot save {what}" if saving else f"refused to load {what}"
    schema, arrays = _skops_schema(data, prefix)
    _refuse(_refused_in_schema(schema, prefix), what, saving)
    _check_skops_structure(schema, arrays, prefix)
    try:
        # skops' own audit as a second opinion; it builds (but does not run)
        # its node tree, so only after ours has passed.
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # a schema skops cannot follow: nothing is built
        raise ArtifactError(f"{prefix}: it is not a valid skops file: {exc}") from exc
    _refuse({name: name for name in untrusted - ALLOWED_TYPES}, what, saving)
    return sorted(untrusted)


def _refuse(refused: dict[str, str], what: str, saving: bool) -> None:
    if not refused:
        return
    names = ", ".join(sorted(refused.values()))
    if saving:
        raise ArtifactError(
            f"cannot save {what} safely: it holds {names}, which a model file may not contain",
            hint="use the estimators and transformers on Shipyard's allow-list "
                 f"({', '.join(SKOPS_TYPES)}), LightGBM or TorchMLP, without custom functions")
    raise ArtifactError(
        f"refused to load {what}: it contains {names}, outside Shipyard's allow-list of "
        "model types",
        hint="a model file holding these could run arbitrary code; it was not written by "
             "shipyard.train.save_model")


def _skops_schema(data: bytes, prefix: str) -> tuple[dict, dict[str, tuple]]:
    """``schema.json`` of a skops zip and ``{member: (shape, dtype)}`` of its
    arrays, read only after the zip's directory and every array header show
    it keeps within the limits. ``prefix`` starts every message (``refused
    to load model blob <digest>``)."""
    import numpy as np

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ArtifactError(f"{prefix}: it is not a valid skops file: {exc}") from exc
    unpacked = sum(m.file_size for m in members)
    if len(members) > MAX_SKOPS_MEMBERS:
        raise ArtifactError(f"{prefix}: it has {len(members)} members, more than the "
                            f"{MAX_SKOPS_MEMBERS} a model may have")
    if unpacked > min(MAX_SKOPS_BYTES, max(MAX_SKOPS_SMALL, MAX_SKOPS_RATIO * len(data))):
        raise ArtifactError(f"{prefix}: its {len(data)} bytes unpack to {unpacked}, more "
                            "than a model's (a zip bomb?)")
    names = [m.filename for m in members]
    if len(set(names)) != len(names) or "schema.json" not in names:
        raise ArtifactError(f"{prefix}: it is not a valid skops file: no schema.json, or a "
                            "member named twice")
    arrays = {member.filename: _check_npy_member(zf, member, prefix, np)
              for member in members if member.filename != "schema.json"}
    try:
        schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, ValueError, RecursionError, OSError) as exc:
        raise ArtifactError(f"{prefix}: it is not a valid skops file: {exc}") from exc
    if not isinstance(schema, dict):
        raise ArtifactError(f"{prefix}: it is not a valid skops file: its schema is not an "
                            "object")
    return schema, arrays


def _check_npy_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, prefix: str,
                      np: Any) -> tuple[tuple[int, ...], Any]:
    """A member beside ``schema.json`` must be one ``.npy`` array of a plain
    dtype whose header agrees with the member's size: no pickles, no nested
    zips, no header claiming more data than the file holds."""
    fmt = np.lib.format
    try:
        with zf.open(member) as fp:
            version = fmt.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fp)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = fmt.read_array_header_2_0(fp)
            else:
                raise ValueError(f"unknown .npy version {version}")
            offset = fp.tell()
    except (ValueError, TypeError, SyntaxError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"{prefix}: its member {member.filename!r} is not a plain .npy "
                            f"array ({exc})") from exc
    if dtype.hasobject:
        raise ArtifactError(f"{prefix}: its member {member.filename!r} holds Python objects "
                            "(pickled data)")
    count = 1
    for dim in shape:
        count *= dim
    if min(shape, default=0) < 0 or offset + count * dtype.itemsize != member.file_size:
        raise ArtifactError(
            f"{prefix}: its member {member.filename!r} claims a {shape} array of {dtype} "
            f"({count * dtype.itemsize} bytes) but holds {member.file_size - offset}")
    return shape, dtype


#: How a refused skops node kind is named in messages.
_NODE_KINDS = {"FunctionNode": "a function", "MethodNode": "a method",
               "PartialNode": "a partial function", "OperatorFuncNode": "an operator call"}


def _refused_in_schema(schema: dict, prefix: str) -> dict[str, str]:
    """``{name: how to show it}`` for the types and callables in a skops
    schema that are not on the allow-list. Walks every node, iteratively and
    to a bounded depth, including the kinds skops trusts by default."""
    refused: dict[str, str] = {}
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SKOPS_DEPTH:
            raise ArtifactError(f"{prefix}: it is nested more than {MAX_SKOPS_DEPTH} levels "
                                "deep (a model nests about 30)")
        if isinstance(node, dict):
            loader = node.get("__loader__")
            if loader is not None:
                name = f"{node.get('__module__')}.{node.get('__class__')}"
                content = node.get("content")
                if loader == "MethodNode" and isinstance(content, dict):
                    name = f"{name}.{content.get('func')}"
                known = isinstance(loader, str) and loader in SKOPS_NODES
                if not known:
                    kind = _NODE_KINDS.get(loader, f"stored as {loader!r}") \
                        if isinstance(loader, str) else "an unknown kind of node"
                    refused[name] = f"{name} ({kind})"
                elif name not in ALLOWED_TYPES:
                    refused[name] = name
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return refused


def _check_skops_structure(schema: dict, arrays: dict[str, tuple], prefix: str) -> None:
    """Check what skops will build, not only what the schema shows where.

    skops builds a node from the first state carrying its ``__id__`` and
    reuses it for every later state with that id, whatever they hold: so
    states sharing an id must agree (up to the ids inside them, with array
    files compared by header). Then the state of each decision tree, which
    scikit-learn's ``Tree.__setstate__`` reads in C before checking, is
    checked: a node array of the wrong rank or layout crashes the process
    while loading.
    """
    import numpy as np
    from sklearn.tree._tree import NODE_DTYPE

    def normal(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: normal(v) for k, v in node.items() if k != "__id__"}
            if node.get("__loader__") == "NdArrayNode" and "file" in node:
                shape, dtype = arrays.get(node["file"], (None, None))
                out["file"] = [shape, None if dtype is None else dtype.descr]
            return out
        if isinstance(node, list):
            return [normal(v) for v in node]
        return node

    states: dict[Any, list[dict]] = {}
    trees: list[dict] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                if "__id__" in node:
                    if not isinstance(node["__id__"], int) or isinstance(node["__id__"], bool):
                        raise ArtifactError(f"{prefix}: a node in it has the id "
                                            f"{str(node['__id__'])[:20]}, not a number")
                    states.setdefault(node["__id__"], []).append(node)
                if node["__loader__"] == "TreeNode":
                    trees.append(node)
                if node["__loader__"] == "NdArrayNode" and node.get("type") == "numpy" \
                        and node.get("file") not in arrays:
                    raise ArtifactError(f"{prefix}: an array in it names a missing member "
                                        f"{str(node.get('file'))[:40]!r}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    for key, same in states.items():
        if len(same) > 1 and any(normal(s) != normal(same[0]) for s in same[1:]):
            raise ArtifactError(f"{prefix}: it gives the id {key} to different objects, "
                                "so skops would build one in place of another")

    def array(node: Any, rank: int, kinds: str) -> tuple | None:
        if not isinstance(node, dict) or node.get("__loader__") != "NdArrayNode" \
                or node.get("type") != "numpy":
            return None
        shape, dtype = arrays[node["file"]]
        return (shape, dtype) if len(shape) == rank and dtype.kind in kinds else None

    for tree in trees:
        try:
            args = tree["__reduce__"]["args"]["content"]
            state = tree["content"]["content"]
            nodes = array(state["nodes"], 1, "V")
            values = array(state["values"], 3, "f")
            ok = len(args) == 3 and array(args[1], 1, "iu") is not None \
                and nodes is not None and nodes[1] == np.dtype(NODE_DTYPE) \
                and values is not None and values[0][0] == nodes[0][0]
        except (KeyError, TypeError, IndexError):
            ok = False
        if not ok:
            raise ArtifactError(f"{prefix}: a decision tree in it has malformed state "
                                "(node or value arrays of the wrong layout)")


def _check_tree_nodes(model: Any, what: str) -> None:
    """Refuse decision trees whose node arrays compiled code would follow out
    of bounds or round in circles.

    scikit-learn walks a ``Tree``'s children and features in Cython without
    bounds checks, and skops checks types, not contents (it leaves ``Tree``
    untrusted for this reason). A tree from a forged file must have children
    below the node count and after their parent (so every walk ends), each
    node reached once, split features inside the model's input width, and
    its recorded depth (which sizes ``decision_path``'s buffers) true.
    """
    import numpy as np
    from sklearn.base import BaseEstimator
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    # (object, input width of the estimator it belongs to, or None)
    stack: list[tuple[Any, Any]] = [(model, None)]
    while stack:
        obj, width = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tree):
            problem = _tree_problem(obj, width, np)
            if problem:
                raise ArtifactError(f"refused to load {what}: a decision tree in it {problem}",
                                    hint="the file was altered; it was not written by "
                                         "shipyard.train.save_model")
        elif isinstance(obj, BaseEstimator):
            own = obj.__dict__.get("n_features_in_")
            if own is not None and not isinstance(own, (int, np.integer)):
                raise ArtifactError(f"refused to load {what}: a {type(obj).__name__} in it "
                                    f"has n_features_in_ {str(own)[:40]}")
            if width is not None and own is not None and own != width:
                raise ArtifactError(f"refused to load {what}: a {type(obj).__name__} in it "
                                    f"takes {own} features inside a model taking {width}")
            # Pipelines and column transformers change the width; ensembles
            # hand their own input to every member.
            inner = None if isinstance(obj, (Pipeline, ColumnTransformer)) else (
                own if own is not None else width)
            stack.extend((value, inner) for value in vars(obj).values())
        elif isinstance(obj, (list, tuple)):
            stack.extend((value, width) for value in obj)
        elif isinstance(obj, dict):
            stack.extend((value, width) for value in obj.values())
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            stack.extend((value, width) for value in obj.ravel())


def _tree_problem(tree: Any, width: Any, np: Any) -> str | None:
    n = tree.node_count
    if not 0 < n <= tree.capacity:
        return f"claims {n} nodes but holds {tree.capacity}"
    if width is not None and tree.n_features != width:
        return f"splits {tree.n_features} features of a model taking {width}"
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    inner = left != -1
    nodes = np.arange(n)
    if np.any(right[~inner] != -1) or np.any(
            (left[inner] <= nodes[inner]) | (left[inner] >= n)
            | (right[inner] <= nodes[inner]) | (right[inner] >= n)):
        return "has a child outside the tree or before its parent"
    if np.any((feature[inner] < 0) | (feature[inner] >= tree.n_features)):
        return f"splits on a feature outside 0..{tree.n_features - 1}"
    reached, depth, level = 1, 0, np.array([0])
    while True:
        level = level[inner[level]]
        level = np.concatenate([left[level], right[level]])
        if not len(level):
            break
        depth += 1
        reached += len(level)
    if reached != n or len(np.unique(np.concatenate([left[inner], right[inner]]))) != n - 1:
        return "reaches some node twice or never"
    if tree.max_depth != depth:
        return f"records depth {tree.max_depth} but is {depth} deep"
    return None


# ------------------------------------------------------- LightGBM text
_LGBM_INT = re.compile(r"-?[0-9]{1,10}")
_LGBM_NUMBER = re.compile(r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|nan)",
                          re.IGNORECASE)
_DOUBLE_MIN = 2.2250738585072014e-308  # the smallest normal double
_LGBM_OBJECTIVES = frozenset({
    "binary", "multiclass", "multiclassova", "regression", "regression_l1", "huber", "fair",
    "poisson", "quantile", "mape", "gamma", "tweedie", "cross_entropy",
    "cross_entropy_lambda"})
#: Keys a tree block may have, and how many values each holds: ``L`` leaves,
#: ``I`` = L - 1 inner nodes, ``C`` = num_cat + 1, ``T`` categorical
#: thresholds, ``F`` linear-leaf features in all, 1 a single value.
_LGBM_TREE_KEYS = {
    "num_leaves": "1", "num_cat": "1", "is_linear": "1", "shrinkage": "1",
    "split_feature": "I", "split_gain": "I", "threshold": "I", "decision_type": "I",
    "left_child": "I", "right_child": "I", "internal_value": "I", "internal_weight": "I",
    "internal_count": "I", "leaf_value": "L", "leaf_weight": "L", "leaf_count": "L",
    "leaf_const": "L", "num_features": "L", "cat_boundaries": "C", "cat_threshold": "T",
    "leaf_features": "F", "leaf_coeff": "F"}
_LGBM_INT_KEYS = frozenset({"num_leaves", "num_cat", "is_linear", "split_feature",
                            "decision_type", "left_child", "right_child", "internal_count",
                            "leaf_count", "num_features", "cat_boundaries", "cat_threshold",
                            "leaf_features"})


def _check_lightgbm_text(data: bytes, what: str) -> dict[str, str]:
    """Check a LightGBM text model the way LightGBM will read it, and return
    its header (``{key: value}``).

    LightGBM cuts the trees out by the byte sizes in ``tree_sizes`` and
    parses them in parallel, trusting every count: a wrong size, a missing
    ``=``, a short array, a child or feature index out of range, or
    ``num_tree_per_iteration`` of 0 aborts or crashes the process. So every
    one is checked here, against the header and the tree itself.
    """
    def bad(problem: str) -> ArtifactError:
        return ArtifactError(f"refused to load {what}: its LightGBM text {problem}",
                             hint="the booster was altered or is not a LightGBM model")

    if b"\x00" in data or b"\r" in data:
        raise bad("holds NUL or carriage-return bytes")
    start = data.find(b"\nTree=")
    if not data.startswith(b"tree\n") or start < 0:
        raise bad("does not start with a 'tree' header followed by trees")
    header: dict[str, str] = {}
    for line in data[:start].decode("utf-8").split("\n")[1:]:
        key, eq, value = line.partition("=")
        if not line:
            continue
        if not re.fullmatch(r"[a-z_]+", key) or ("=" in value and key != "feature_names"):
            raise bad(f"has a malformed header line {line[:60]!r}")
        header[key] = value if eq else ""
    for key in ("num_class", "num_tree_per_iteration", "label_index", "max_feature_idx",
                "feature_names", "feature_infos", "tree_sizes", "objective"):
        if key not in header:
            raise bad(f"lacks {key}")
    ints = {}
    for key, low in (("num_class", 1), ("num_tree_per_iteration", 1), ("label_index", 0),
                     ("max_feature_idx", 0)):
        if not _LGBM_INT.fullmatch(header[key]) or not low <= int(header[key]) < 2**31:
            raise bad(f"has {key}={header[key][:20]!r}")
        ints[key] = int(header[key])
    n_class, n_features = ints["num_class"], ints["max_feature_idx"] + 1
    if ints["num_tree_per_iteration"] != n_class:
        raise bad(f"has {n_class} classes but {ints['num_tree_per_iteration']} trees an "
                  "iteration")
    for key in ("feature_names", "feature_infos"):
        values = header[key].split(" ")
        if len(values) != n_features or "" in values:
            raise bad(f"lists {len(values)} {key} for {n_features} features")
    objective, *options = header["objective"].split(" ")
    if objective not in _LGBM_OBJECTIVES or not all(
            re.fullmatch(r"[a-z_]+:" + _LGBM_NUMBER.pattern, o, re.IGNORECASE) or o == "sqrt"
            for o in options):
        raise bad(f"has an unknown objective {header['objective'][:60]!r}")
    multiclass = objective in ("multiclass", "multiclassova")
    if (n_class != 1) != multiclass or (multiclass and f"num_class:{n_class}" not in options):
        raise bad(f"has objective {header['objective']!r} for {n_class} classes")

    sizes = header["tree_sizes"].split(" ")
    if not all(s.isdigit() for s in sizes) or len(sizes) % n_class:
        raise bad(f"has tree_sizes for {len(sizes)} trees, not a multiple of {n_class}")
    body, pos = data[start + 1:], 0
    for i, size in enumerate(map(int, sizes)):
        block = body[pos:pos + size]
        pos += size
        if len(block) != size:
            raise bad(f"is shorter than its tree_sizes say (tree {i})")
        problem = _lightgbm_tree_problem(block, i, n_features)
        if problem:
            raise bad(f"tree {i} {problem}")
    trailer = body[pos:].lstrip(b"\n")
    if not trailer.startswith(b"end of trees\n"):
        raise bad("has tree_sizes that do not match its trees")
    problem = _lightgbm_trailer_problem(trailer.decode("utf-8"))
    if problem:
        raise bad(problem)
    return header


def _lightgbm_int(token: str) -> bool:
    return bool(_LGBM_INT.fullmatch(token)) and -2**31 <= int(token) < 2**32


def _lightgbm_float(token: str) -> bool:
    """A number LightGBM parses without throwing: its linear-leaf fields go
    through ``std::stod``, which aborts the process on overflow and on
    underflow (a non-zero value below the smallest normal double)."""
    if not _LGBM_NUMBER.fullmatch(token):
        return False
    if token.lstrip("+-").lower() in ("inf", "nan"):
        return True
    value = abs(float(token))  # correctly rounded, as strtod
    if value == 0:
        return not re.search("[1-9]", re.split("[eE]", token)[0])  # zero, not an underflow
    return _DOUBLE_MIN <= value < math.inf


def _lightgbm_tree_problem(block: bytes, index: int, n_features: int) -> str | None:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return "is cut inside a character"
    head, _, rest = text.partition("\n")
    lines, _, tail = rest.partition("\n\n")
    if head != f"Tree={index}" or tail.strip("\n"):
        return "is not one 'Tree=' block"
    fields: dict[str, str] = {}
    for line in lines.split("\n"):
        key, eq, value = line.partition("=")
        if not eq or key not in _LGBM_TREE_KEYS or key in fields:
            return f"has an unexpected line {line[:60]!r}"
        fields[key] = value
    for key in ("num_leaves", "num_cat", "leaf_value"):
        if key not in fields:
            return f"lacks {key}"
    values: dict[str, list[str]] = {}
    for key, value in fields.items():
        # the linear-leaf lists may hold empty per-leaf runs; the others are single-spaced
        tokens = value.split() if key in ("leaf_features", "leaf_coeff") else (
            value.split(" ") if value else [])
        check = _lightgbm_int if key in _LGBM_INT_KEYS else _lightgbm_float
        if not all(check(t) for t in tokens):
            return f"has a non-number in {key}"
        values[key] = tokens
    ints = {k: [int(t) for t in v] for k, v in values.items() if k in _LGBM_INT_KEYS}
    if any(len(values[k]) != 1 for k in ("num_leaves", "num_cat", "is_linear", "shrinkage")
           if k in values):
        return "has a list where one number belongs"
    n_leaves, n_cat = ints["num_leaves"][0], ints["num_cat"][0]
    linear = ints.get("is_linear", [0])[0]
    if not 1 <= n_leaves <= MAX_LIGHTGBM_LEAVES or not 0 <= n_cat < n_leaves \
            or linear not in (0, 1):
        return f"has num_leaves={n_leaves}, num_cat={n_cat}, is_linear={linear}"
    if n_leaves > 1:
        for key in ("left_child", "right_child", "split_feature", "threshold"):
            if key not in values:
                return f"lacks {key}"
    bounds = ints.get("cat_boundaries") or [0]
    n_features_linear = sum(ints.get("num_features", []))
    counts = {"1": 1, "L": n_leaves, "I": n_leaves - 1, "C": n_cat + 1, "T": bounds[-1],
              "F": n_features_linear}
    for key, tokens in values.items():
        if len(tokens) != counts[_LGBM_TREE_KEYS[key]]:
            return f"has {len(tokens)} values in {key}, not {counts[_LGBM_TREE_KEYS[key]]}"
    if n_cat and ("cat_boundaries" not in values or "cat_threshold" not in values
                  or bounds[0] != 0 or any(b > a for a, b in zip(bounds[1:], bounds))):
        return "has malformed categorical boundaries"
    if any(not 0 <= t < 2**32 for t in ints.get("cat_threshold", [])):
        return "has a categorical threshold outside 32 bits"
    for node, (lc, rc) in enumerate(zip(ints.get("left_child", []),
                                        ints.get("right_child", []))):
        for child in (lc, rc):
            if not (node < child < n_leaves - 1 or -n_leaves <= child < 0):
                return f"has node {node} pointing at {child}, outside the tree"
    if any(not 0 <= f < n_features for f in ints.get("split_feature", [])):
        return f"splits on a feature outside 0..{n_features - 1}"
    for node, kind in enumerate(ints.get("decision_type", [])):
        if not 0 <= kind < 16 or kind >> 2 > 2:  # categorical, default-left, missing type
            return f"has decision type {kind}"
        if kind & 1:  # categorical: the threshold indexes cat_boundaries
            threshold = float(values["threshold"][node])
            if not (threshold.is_integer() and 0 <= threshold < n_cat):
                return f"has categorical node {node} with threshold {threshold}"
    if linear and "num_features" in values:
        if any(n < 0 for n in ints["num_features"]) or \
                "leaf_features" not in values or "leaf_coeff" not in values:
            return "has malformed linear leaves"
        if any(not 0 <= f < n_features for f in ints["leaf_features"]):
            return "has a linear leaf on a feature outside the model"
    return None


_LGBM_IMPORTANCE = re.compile(r"\S+=[0-9]+")
_LGBM_PARAMETER = re.compile(r"\[[a-z0-9_]+: [^\"\\\\\x00-\x1f]*\]")


def _lightgbm_trailer_problem(trailer: str) -> str | None:
    """What follows the trees: feature importances, the training parameters
    (LightGBM reads past the end of the text when ``end of parameters`` is
    missing) and the pandas categories, each line as LightGBM writes it."""
    section = "trees"
    for line in trailer.split("\n")[1:]:
        if section == "pandas":
            if line:
                return "has text after pandas_categorical"
        elif line.startswith("pandas_categorical:") and section != "parameters":
            try:
                json.loads(line[len("pandas_categorical:"):])
            except (ValueError, RecursionError):
                return "has malformed pandas_categorical"
            section = "pandas"
        elif not line:
            continue
        elif section == "parameters":
            if line == "end of parameters":
                section = "done"
            elif not _LGBM_PARAMETER.fullmatch(line):
                return f"has a malformed parameter line {line[:60]!r}"
        elif line in ("feature_importances:", "feature importances:") and section == "trees":
            section = "importances"
        elif line == "parameters:" and section in ("trees", "importances"):
            section = "parameters"
        elif section != "importances" or not _LGBM_IMPORTANCE.fullmatch(line):
            return f"has an unexpected line {line[:60]!r} after its trees"
    if section == "parameters":
        return "has parameters without 'end of parameters'"
    return None


def _check_lightgbm_config(header: dict[str, str], config: dict, kind: str,
                           digest: str) -> None:
    n_features = int(header["max_feature_idx"]) + 1
    if config.get("n_features", n_features) != n_features:
        raise ArtifactError(f"model {digest}: its config says {config.get('n_features')} "
                            f"features, its booster {n_features}")
    if kind == "classifier":
        classes = config.get("classes")
        values = classes.get("values") if isinstance(classes, dict) else classes
        n = len(values) if isinstance(values, list) else 0
        if max(n, 2) != max(int(header["num_class"]), 2) or n < 2:
            raise ArtifactError(f"model {digest}: its config lists {n} classes, its booster "
                                f"predicts {header['num_class']}")


# ------------------------------------------------------ canonical bytes
def _canonical_skops(data: bytes) -> bytes:
    """Rewrite a skops zip so that equal models give equal bytes.

    skops names objects and array files by ``id()`` or a random uuid, writes
    the current time into each zip entry and keeps sets in hash order; none of
    that is content. Ids and files are renumbered in schema order, and
    :data:`VOLATILE_ATTRS` are dropped.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema = json.loads(zf.read("schema.json"))
        files = {n: zf.read(n) for n in zf.namelist() if n != "schema.json"}
    _sort_sets(schema)
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def renumber(node: Any) -> None:
        if isinstance(node, dict):
            for key in VOLATILE_ATTRS.intersection(node):
                if isinstance(node[key], dict) and "__loader__" in node[key]:
                    del node[key]
            if "__loader__" in node:
                if isinstance(node.get("__id__"), int):
                    node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
                if isinstance(node.get("file"), str) and node["file"] in files:
                    old = node["file"]
                    ext = old[old.rfind("."):] if "." in old else ""
                    node["file"] = names.setdefault(old, f"{len(names) + 1:06d}{ext}")
            for value in node.values():
                renumber(value)
        elif isinstance(node, list):
            for value in node:
                renumber(value)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        entries = [("schema.json", json.dumps(schema, separators=(",", ":")).encode())]
        entries += sorted((new, files[old]) for old, new in names.items())
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, payload)
    return out.getvalue()


def _sort_sets(node: Any) -> None:
    if isinstance(node, dict):
        for value in node.values():
            _sort_sets(value)
        if node.get("__loader__") == "SetNode" and isinstance(node.get("content"), list):
            node["content"].sort(key=lambda item: json.dumps(_strip_ids(item), sort_keys=True))
    elif isinstance(node, list):
        for value in node:
            _sort_sets(value)


def _strip_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_ids(v) for k, v in node.items() if k not in ("__id__", "file")}
    if isinstance(node, list):
        return [_strip_ids(v) for v in node]
    return node


def canonical_json(value: Any, *, allow_nan: bool = True) -> bytes:
    """``value`` as compact JSON with sorted keys (numpy values as Python
    ones), so the same content always gives the same bytes and digest.

    >>> canonical_json({"b": 1, "a": [1.5]})
    b'{"a":[1.5],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=allow_nan,
                      default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data; arrays keep their dtype for an exact round trip."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str if value.dtype != object else "object",
                "values": value.tolist()}
    return json.loads(canonical_json(value))


def _classes_array(data: Any) -> Any:
    """Class labels read back from JSON (``_jsonable``'s ``{dtype, values}``),
    as a 1-D array."""
    import numpy as np

    values, dtype = (data.get("values"), data.get("dtype", "object")) \
        if isinstance(data, dict) else (data, None)
    try:
        dtype = object if dtype == "object" else np.dtype(dtype) if dtype else None
        # labels are numbers, booleans or short strings: a forged dtype (void,
        # a gigabyte-wide string) must not size the allocation
        if isinstance(dtype, np.dtype) and (dtype.kind not in "biufUS"
                                            or dtype.itemsize > 2**14):
            raise ValueError("not a label dtype")
        labels = np.asarray(values, dtype=dtype)
        if labels.ndim != 1:
            raise ValueError("not a list")
    except (TypeError, ValueError, OverflowError) as exc:
        raise ArtifactError(f"bad class labels {str(values)[:60]} of dtype {dtype!r}: {exc}"
                            ) from exc
    return labels


def _type_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out
