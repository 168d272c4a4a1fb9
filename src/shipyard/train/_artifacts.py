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

skops files are loaded only when every type they hold that skops does not
itself trust is on Shipyard's allow-list (:func:`allowed_type`): classes
defined under ``sklearn.``, ``numpy.``, ``scipy.sparse.``, ``scipy.special.``,
``shipyard.train.``, and numpy ufuncs; no other functions. skops zips are
rewritten canonically (sequential object ids and file names, fixed
timestamps), so the same fitted model always gives the same bytes.
"""

from __future__ import annotations

import importlib
import io
import json
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

#: Modules whose classes a skops file may hold.
ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "scipy.special.", "shipyard.train.")
#: Built-in types sklearn estimators keep in their state beyond skops' defaults.
ALLOWED_BUILTINS = frozenset({"builtins.slice", "builtins.frozenset"})
#: Under the allowed prefixes, but touching files or foreign code: never.
DENIED_PREFIXES = ("numpy.memmap", "numpy.lib.npyio", "numpy.lib._npyio", "numpy.lib.format",
                   "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing",
                   "sklearn.utils._testing", "sklearn.externals", "sklearn.datasets")


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
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ArtifactError(f"blob {digest} is not a model manifest: {exc}",
                                hint="pass the digest that save_model returned") from None


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
    digest = store.put_bytes(_canonical_json(manifest))
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
    except NotFittedError:
        raise ArtifactError(f"cannot save the {_type_path(obj)}: it is not fitted",
                            hint="call fit() before saving") from None


def _dump_skops(obj: Any) -> bytes:
    import skops.io as sio

    try:
        data = _canonical_skops(sio.dumps(obj))
    except Exception as exc:  # skops fails in many ways on objects it cannot represent
        raise ArtifactError(f"cannot save the {_type_path(obj)} with skops: {exc}",
                            hint="save scikit-learn estimators, LightGBM models or "
                                 "TorchMLP models, or a Pipeline ending in one") from None
    refused = [t for t in sio.get_untrusted_types(data=data) if not allowed_type(t)]
    if refused:
        raise ArtifactError(
            f"cannot save the {_type_path(obj)} safely: it holds {', '.join(sorted(refused))}, "
            "which a model file may not contain",
            hint="use estimators and transformers from scikit-learn or shipyard.train, "
                 "without custom functions")
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
    return booster.model_to_string().encode("utf-8"), _canonical_json(config)


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
    return save(state), _canonical_json(config)


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
    import skops.io as sio

    try:
        types = sio.get_untrusted_types(data=data)
    except Exception as exc:  # malformed zip or schema: never construct anything
        raise ArtifactError(f"blob {digest} is not a valid skops file: {exc}") from None
    refused = sorted(t for t in types if not allowed_type(t))
    if refused:
        raise ArtifactError(
            f"refused to load model blob {digest}: it contains {', '.join(refused)}, "
            "outside Shipyard's allow-list of model types",
            hint="a model file holding these could run arbitrary code; it was not written by "
                 "shipyard.train.save_model")
    try:
        model = sio.loads(data, trusted=sorted(types))
    except Exception as exc:
        raise ArtifactError(f"blob {digest} could not be loaded with skops: {exc}") from None
    if not hasattr(model, "predict") and not hasattr(model, "transform"):
        raise ArtifactError(f"blob {digest} holds a {_type_path(model)}, not a model")
    return model


def _load_lightgbm(data: bytes, config: dict, digest: str) -> LightGBMModel:
    import lightgbm

    kind = config.get("kind")
    if kind not in ("classifier", "regressor", "booster"):
        raise ArtifactError(f"model {digest}: unknown LightGBM model kind {kind!r}")
    try:
        booster = lightgbm.Booster(model_str=data.decode("utf-8"))
    except (UnicodeDecodeError, lightgbm.basic.LightGBMError) as exc:
        raise ArtifactError(f"model {digest}: the LightGBM booster is malformed: {exc}") from None
    return LightGBMModel._from_booster(booster, kind, config.get("classes"))


def _load_torch(data: bytes, config: dict, digest: str) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load

    from shipyard.train._torch_mlp import TorchMLPClassifier, TorchMLPRegressor, build_module

    classes = {"TorchMLPClassifier": TorchMLPClassifier, "TorchMLPRegressor": TorchMLPRegressor}
    cls = classes.get(config.get("class"))
    params = config.get("params")
    if cls is None or not isinstance(params, dict) or \
            not set(params) <= set(cls._get_param_names()):
        raise ArtifactError(f"model {digest}: the torch model config is malformed")
    try:
        if isinstance(params.get("hidden_sizes"), list):
            params = {**params, "hidden_sizes": tuple(params["hidden_sizes"])}
        model = cls(**params)
        model.n_features_in_ = int(config["n_features_in"])
        model.module_ = build_module(model, model.n_features_in_, int(config["n_outputs"]))
        model.module_.load_state_dict(load(data), strict=True)
        model.module_.eval()
    except (SafetensorError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"model {digest}: cannot rebuild the torch model: {exc}") from None
    for attr in ("y_mean_", "y_scale_", "best_epoch_", "n_epochs_", "best_loss_",
                 "train_loss_curve_", "validation_loss_curve_"):
        if attr in config:
            setattr(model, attr, config[attr])
    if "classes_" in config:
        model.classes_ = _classes_array(config["classes_"])
    return model


def _read_json(store: ArtifactStore, digest: str) -> dict:
    try:
        value = json.loads(store.get_bytes(digest))
    except ValueError as exc:
        raise ArtifactError(f"blob {digest} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"blob {digest} is not a JSON object")
    return value


class LightGBMModel:
    """A LightGBM booster read from its native text format, with the
    scikit-learn prediction API (``predict``, ``predict_proba``, ``classes_``).
    Read-only: it cannot be refitted."""

    booster_: Any
    kind_: str

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

        raw = np.asarray(self.booster_.predict(X))
        if raw.ndim == 1:
            raw = np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, X: Any) -> Any:
        import numpy as np

        if self.kind_ == "classifier":
            return self.classes_[np.argmax(self._predict_proba(X), axis=1)]
        return np.asarray(self.booster_.predict(X))


# ---------------------------------------------------------- the allow-list
def allowed_type(name: str) -> bool:
    """Whether a skops file may hold the type or function called ``name``.

    Allowed: classes defined under :data:`ALLOWED_PREFIXES` (scikit-learn
    estimators and their internals, numpy and scipy sparse types, Shipyard's
    own transformers), numpy/scipy ufuncs, and a few built-in container
    types. Refused: everything else, including every other function.

    >>> allowed_type("sklearn.tree._tree.Tree"), allowed_type("posix.system")
    (True, False)
    >>> allowed_type("numpy.load")   # a function, not a type
    False
    """
    if name in ALLOWED_BUILTINS:
        return True
    if not isinstance(name, str) or not name.startswith(ALLOWED_PREFIXES) \
            or name.startswith(DENIED_PREFIXES) or "__" in name:
        return False
    obj = _resolve(name)
    if isinstance(obj, type):
        if f"{obj.__module__}.{obj.__qualname__}" != name:
            return False  # an alias re-exported from somewhere else
        if name.startswith("shipyard."):
            from sklearn.base import BaseEstimator

            return issubclass(obj, BaseEstimator)
        return True
    import numpy as np

    return isinstance(obj, np.ufunc) and name.startswith(("numpy.", "scipy.special."))


def _resolve(name: str) -> Any:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except Exception:  # ImportError, or anything a broken module raises
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


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


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True,
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
    return json.loads(_canonical_json(value))


def _classes_array(data: Any) -> Any:
    import numpy as np

    if isinstance(data, dict) and "values" in data:
        dtype = data.get("dtype", "object")
        try:
            return np.asarray(data["values"], dtype=object if dtype == "object" else dtype)
        except TypeError:
            raise ArtifactError(f"bad class label dtype {dtype!r}") from None
    return np.asarray(data)


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
