"""Bring your own model: register a model trained outside ``shipyard train``
in one call.

Example (needs a workspace and a fitted model)::

    ws.models.register("fraud", clf, sample=X_sample)      # a fitted model object
    ws.models.register("fraud", "fraud.onnx")              # a file
    with ws.start_run("fraud") as run:                     # inside your own run
        clf.fit(X, y)
        run.log_model(clf, sample=X_sample, registered_model_name="fraud")
    ws.models.register("fraud", "mlruns/1/<run>/artifacts/model")   # an MLflow model

======================================  ===============================  ==============
what                                    stored as                        ``sample``
======================================  ===============================  ==============
scikit-learn estimator or Pipeline      skops, allow-listed types only   needed
LightGBM ``LGBMClassifier`` /           LightGBM text (+ skops for a     needed
``LGBMRegressor`` / ``Booster``, a      pipeline's preprocessing)
Pipeline ending in one, a ``.txt``
model file
XGBoost ``XGBClassifier`` /             XGBoost JSON (tree boosters)     needed
``XGBRegressor`` / ``Booster``, a
``.json`` model file (needs xgboost)
``torch.nn.Module``                     exported to ONNX with the sample needed
                                        as its input example
``onnx.ModelProto``, a ``.onnx`` file   ONNX                             optional
a ``.skops`` file                       skops, allow-listed types only   needed
an MLflow model folder (``MLmodel``)    its ``onnx`` flavour, or         its input
                                        ``sklearn`` saved with skops,    example, else
                                        LightGBM / XGBoost native        needed
======================================  ===============================  ==============

``sample`` is a few input rows (a DataFrame, a 2-D array — columns ``x0``,
``x1``, ... unless the model names its features — or a CSV / Parquet / JSON
file): the signature is inferred from it (column names, dtypes,
nullability, categories, exactly as training builds it), the saved model
must predict on it exactly as the object passed does, and at registration
the ONNX fast path is verified on it.

Nothing is ever pickled or unpickled: a pickle file (``.pkl``, ``.joblib``,
``torch.save``'s ``.pt``), a scikit-learn model holding types outside
training's skops allow-list (named in the error), and an MLflow model stored
as a pickle are refused. A torch module cannot be rebuilt from its weights
without its class's code, so it is exported to ONNX (``torch.onnx.export``
traced on the sample), which needs no code to load and runs in ONNX Runtime.

The model is logged into a run the way training logs one — tag
``model.digest``, artifacts ``model/signature.json``, ``model/manifest.json``
and its parts, plus ``model/sample.parquet`` — then registered as usual: a
run passed as ``run=`` (or the run of :meth:`ActiveRun.log_model`) is the
version's run, so its dataset inputs and metrics are the lineage; otherwise a
new run in experiment ``import`` holds it.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ArtifactError, NotFoundError, RegistryError
from shipyard.names import check_name
from shipyard.registry._formats import (
    XGBOOST_CLASSIFIER,
    _labels_json,
    canonical_json,
    check_xgboost_json,
    describe_onnx,
    load_stored,
    read_artifact,
    require,
    write_manifest,
)

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.registry._records import ModelVersion
    from shipyard.tracking import ActiveRun

#: Experiment of the runs that hold models registered without a run.
IMPORT_EXPERIMENT = "import"
#: Where a run keeps its model's contract: the same tag and path as training
#: writes and the registry reads (its DIGEST_TAG and SIGNATURE_PATH).
DIGEST_TAG = "model.digest"
SIGNATURE_PATH = "model/signature.json"
SAMPLE_PATH = "model/sample.parquet"
#: Rows of the sample kept with the run (the ONNX fast path is verified on them).
SAMPLE_ROWS = 2_000
#: Rows both the object passed and the saved model predict before registration.
CHECK_ROWS = 200
#: File suffixes of pickles (``torch.save`` writes one too): never loaded.
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".sav", ".dill", ".pt", ".pth",
                             ".bin", ".cloudpickle"})
MODEL_SUFFIXES = frozenset({".onnx", ".skops", ".txt", ".lgb", ".json", ".xgb", ".ubj",
                            ".model"}) | PICKLE_SUFFIXES
MAX_MLMODEL_BYTES = 1 * 2**20
#: MLflow column types, as pandas dtypes.
MLFLOW_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32",
                "boolean": "bool", "string": "object"}
SUPPORTED = ("a fitted scikit-learn estimator or Pipeline, a LightGBM or XGBoost model, a "
             "torch.nn.Module, an onnx.ModelProto, or a path to a .onnx, .skops, LightGBM "
             ".txt or XGBoost .json file or an MLflow model folder")


@dataclass(frozen=True)
class LoggedModel:
    """What :meth:`ActiveRun.log_model` did.

    Attributes
    ----------
    run_id
        The run that now holds the model (tag ``model.digest``).
    artifact_digest, format
        The saved model's hash and format (``skops``, ``lightgbm``,
        ``xgboost``, ``onnx``, ...).
    signature
        Input columns and output, inferred from the sample.
    version
        The registered version when ``registered_model_name`` was given.
    """

    run_id: str
    artifact_digest: str
    format: str
    signature: dict[str, Any] = field(repr=False)
    version: ModelVersion | None = None


@dataclass(eq=False)
class SavedModel:
    """A model saved in a safe format, not yet logged to a run."""

    artifact: Any
    signature: dict[str, Any]
    sample: pd.DataFrame | None
    source: str

    @property
    def digest(self) -> str:
        return self.artifact.digest


# ----------------------------------------------------------- dispatch
def is_run_ref(source: Any) -> bool:
    """Whether ``source`` names a run (id, prefix, RunInfo, ActiveRun) rather
    than a model object or a model file."""
    from shipyard.tracking import ActiveRun, RunInfo

    if isinstance(source, (ActiveRun, RunInfo)):
        return True
    return isinstance(source, str) and not _looks_like_path(source)


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or Path(text).suffix.lower() in MODEL_SUFFIXES \
        or os.path.exists(text)


def register_model(ws: Workspace, name: str, source: Any, *, sample: Any = None,
                   run: ActiveRun | None = None, task: str | None = None, classes: Any = None,
                   target: str | None = None, **register: Any) -> ModelVersion:
    """Save ``source`` (a model object, file or MLflow folder), log it into
    ``run`` (default a new run in experiment ``import``) and register it as
    the next version of ``name``: what ``ws.models.register(name, model)``
    does. ``register`` holds :meth:`Registry.register`'s other arguments.

    Nothing is registered and no run is started when the model is refused.
    """
    if run is not None:
        _check_active(run)
    if _is_mlflow_folder(source):
        return import_mlflow(ws, source, name, sample=sample, run=run, task=task,
                             classes=classes, target=target, **register)
    saved = save(ws, source, sample=sample, task=task, classes=classes, target=target)
    if run is None:
        with ws.start_run(IMPORT_EXPERIMENT, name=name,
                          tags={"kind": "import", "model.source": saved.source}) as new:
            record(new, saved)
        run_id = new.id
    else:
        record(run, saved)
        run_id = run.id
    return ws.models.register(name, run_id, artifact_digest=saved.digest,
                              signature=saved.signature, sample=saved.sample, **register)


def log_model(ws: Workspace, run: ActiveRun, model: Any, *, sample: Any = None,
              task: str | None = None, classes: Any = None, target: str | None = None,
              registered_model_name: str | None = None, **register: Any) -> LoggedModel:
    """Save ``model`` into ``run``; with ``registered_model_name`` also
    register it as that model's next version. See :meth:`ActiveRun.log_model`."""
    _check_active(run)
    if _is_mlflow_folder(model):
        raise RegistryError("an MLflow model folder is imported, not logged into a run",
                            hint="ws.models.register(name, folder) imports it")
    if registered_model_name is not None:
        _check_model_name(registered_model_name)
    saved = save(ws, model, sample=sample, task=task, classes=classes, target=target)
    record(run, saved)
    version = None
    if registered_model_name is not None:
        version = ws.models.register(registered_model_name, run.id,
                                     artifact_digest=saved.digest, signature=saved.signature,
                                     sample=saved.sample, **register)
    return LoggedModel(run.id, saved.digest, saved.artifact.format, saved.signature, version)


def _check_model_name(name: object) -> str:
    return check_name(name, "model", RegistryError, example="fraud_detector")


def _check_active(run: Any) -> None:
    from shipyard.tracking import ActiveRun

    if not isinstance(run, ActiveRun):
        raise RegistryError(f"run= takes the ActiveRun the model was trained in, not a "
                            f"{type(run).__name__}",
                            hint="with ws.start_run(...) as run: ... run.log_model(model, ...)")
    if run.status != "RUNNING":
        raise RegistryError(f"run {run.id[:8]} has ended ({run.status}): a model cannot be "
                            "logged into it", hint="log the model before the run ends")


def record(run: ActiveRun, saved: SavedModel) -> None:
    """Log a saved model into ``run`` the way training logs its model: every
    blob under ``model/`` (so garbage collection keeps them), the signature,
    the sample, and tag ``model.digest``."""
    store = run.runs.ws.artifacts
    have = run.runs.get(run.id).tags.get(DIGEST_TAG)
    if have is not None and have != saved.digest:
        raise RegistryError(f"run {run.id[:8]} already holds model {have[:12]}: a run holds "
                            "one model",
                            hint="log each model in its own run, e.g. a nested one: "
                                 "run.start_run()")
    artifact = saved.artifact
    run.log_dict("model/artifact.json", {"digest": artifact.digest, "format": artifact.format,
                                         "parts": artifact.parts,
                                         "metadata": artifact.metadata})
    run.log_bytes("model/manifest.json", store.get_bytes(artifact.digest))
    for role, digest in sorted(artifact.parts.items()):
        run.log_bytes(f"model/{role}", store.get_bytes(digest))
    run.log_dict(SIGNATURE_PATH, saved.signature)
    if saved.sample is not None:
        buffer = io.BytesIO()
        saved.sample.head(SAMPLE_ROWS).to_parquet(buffer, index=False)
        run.log_bytes(SAMPLE_PATH, buffer.getvalue())
    run.set_tags({DIGEST_TAG: artifact.digest, "model.format": artifact.format,
                  "model.source": saved.source})


def logged_sample(ws: Workspace, run_id: str) -> pd.DataFrame | None:
    """The sample :func:`record` kept with a run, or None."""
    import pandas as pd

    try:
        data = ws.runs.load_artifact(run_id, SAMPLE_PATH)
    except NotFoundError:
        return None
    return pd.read_parquet(io.BytesIO(data))


# ---------------------------------------------------------------- save
def save(ws: Workspace, model: Any, *, sample: Any = None, task: str | None = None,
         classes: Any = None, target: str | None = None) -> SavedModel:
    """Save ``model`` in a safe format and infer its signature from
    ``sample``; the saved model is loaded back and must predict what
    ``model`` predicts on the sample.

    Raises
    ------
    RegistryError
        The model, the file or the sample is refused; the message says why.
    NotFoundError
        ``model`` is a path to nothing.
    """
    if isinstance(model, (str, os.PathLike)):
        return _save_file(ws, Path(model), sample, task, classes, target)
    kind = _object_kind(model)
    what = f"the {_type_path(model)}"
    if kind == "onnx":
        return _save_onnx(ws, model.SerializeToString(), sample, task, classes, target, what,
                          _type_path(model))
    if kind == "torch":
        return _save_torch(ws, model, sample, task, classes, target, what)
    _no_output_overrides(what, task, classes, kind == "lightgbm_booster" or kind == "xgboost")
    if kind == "estimator":
        return _save_estimator(ws, model, sample, target, what)
    if kind == "lightgbm_booster":
        text = model.model_to_string().encode("utf-8")
        return _save_lightgbm_text(ws, text, sample, classes, target, what, _type_path(model),
                                   original=model)
    if kind == "xgboost":
        return _save_xgboost(ws, model, sample, classes, target, what)
    raise RegistryError(f"cannot register a {_type_path(model)}: not a model Shipyard can "
                        "store safely", hint=f"pass {SUPPORTED}")


def _object_kind(model: Any) -> str:
    bases = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
    top = type(model).__module__.split(".")[0]
    if top == "onnx" and type(model).__name__ == "ModelProto":
        return "onnx"
    if "torch.nn.modules.module.Module" in bases:
        return "torch"
    if top == "xgboost" or any(b.startswith("xgboost.") for b in bases):
        return "xgboost"
    if top == "lightgbm" and type(model).__name__ == "Booster":
        return "lightgbm_booster"
    if "sklearn.base.BaseEstimator" in bases:
        return "estimator"
    return "unsupported"


def _no_output_overrides(what: str, task: str | None, classes: Any, classes_ok: bool) -> None:
    if task is not None:
        raise RegistryError(f"task= reads the outputs of an ONNX graph or a torch module; "
                            f"{what} knows its own task", hint="leave task= out")
    if classes is not None and not classes_ok:
        raise RegistryError(f"classes= names the outputs of an ONNX graph, a torch module or "
                            f"a bare booster; {what} knows its own classes",
                            hint="leave classes= out")


def _type_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# ------------------------------------------------------------- sample
def as_frame(sample: Any, names: list[str] | None = None, *, what: str = "the model"
             ) -> pd.DataFrame:
    """``sample`` as a DataFrame: a DataFrame as it is; a 2-D array (numpy,
    torch, a list of rows) with columns ``names``, else ``x0``, ``x1``, ...;
    a mapping of columns; a list of records; a CSV / Parquet / JSON file."""
    import pandas as pd

    if sample is None:
        raise RegistryError(f"registering {what} needs sample=: a few input rows, to infer "
                            "its signature and check the saved model on",
                            hint="pass e.g. sample=X_train.head(100)")
    if isinstance(sample, (str, os.PathLike)):
        from shipyard.data import as_source

        sample = as_source(sample).read()
    if isinstance(sample, pd.Series):
        raise RegistryError("the sample is one column (a Series); pass rows: a DataFrame or a "
                            "2-D array", hint="sample.to_frame() if it is one feature")
    if isinstance(sample, pd.DataFrame) and all(isinstance(c, str) for c in sample.columns):
        frame = sample
    elif isinstance(sample, dict) or (isinstance(sample, list) and sample
                                      and all(isinstance(r, dict) for r in sample)):
        frame = pd.DataFrame(sample)
    else:
        if hasattr(sample, "detach"):  # a torch tensor
            sample = sample.detach().cpu().numpy()
        array = sample.to_numpy() if isinstance(sample, pd.DataFrame) else np.asarray(sample)
        if array.ndim != 2:
            raise RegistryError(f"the sample must be 2-D (rows × columns), got shape "
                                f"{array.shape}", hint="reshape one row as X[None, :]")
        if names is not None and len(names) != array.shape[1]:
            raise RegistryError(f"the sample has {array.shape[1]} columns, but {what} takes "
                                f"{len(names)}: {', '.join(names)}")
        frame = pd.DataFrame(array, columns=names or [f"x{i}" for i in range(array.shape[1])])
    if frame.empty:
        raise RegistryError("the sample holds no rows (or no columns)",
                            hint="pass a few input rows")
    if frame.columns.duplicated().any():
        raise RegistryError(f"the sample repeats column "
                            f"{frame.columns[frame.columns.duplicated()][0]!r}")
    return frame.reset_index(drop=True)


def _fit_columns(frame: pd.DataFrame, names: list[str] | None, width: int | None,
                 what: str) -> pd.DataFrame:
    """``frame`` in the column order the model was fitted with, or a
    refusal naming the columns that differ."""
    if names is not None:
        missing = [n for n in names if n not in frame.columns]
        extra = [str(c) for c in frame.columns if c not in names]
        if missing or extra:
            parts = ([f"lacks {', '.join(map(repr, missing))}"] if missing else []) + \
                    ([f"has {', '.join(map(repr, extra))}, not a feature of it"] if extra else [])
            raise RegistryError(f"the sample does not match {what}: it {' and '.join(parts)}",
                                hint=f"{what} was fitted on: {', '.join(names)}")
        return frame[list(names)]
    if width is not None and frame.shape[1] != width:
        raise RegistryError(f"the sample has {frame.shape[1]} columns, but {what} takes "
                            f"{width}")
    return frame


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _predict_check(model: Any, frame: pd.DataFrame, what: str) -> None:
    try:
        with _quiet():
            model.predict(frame.head(CHECK_ROWS))
    except Exception as exc:  # the model's own error says what did not fit
        raise RegistryError(f"{what} cannot predict the sample: {_first_line(exc)}",
                            hint="pass rows shaped like the model's training data") from exc


def _same_predictions(original: Any, loaded: Any, frame: pd.DataFrame, what: str) -> None:
    """The saved model predicts what the object passed predicts."""
    rows = frame.head(CHECK_ROWS)
    with _quiet():
        want, got = np.asarray(original.predict(rows)), np.asarray(loaded.predict(rows))
        differ = want.shape != got.shape or (
            not np.array_equal(want, got) if want.dtype.kind in "OUSb" or got.dtype.kind in "OUSb"
            else not np.allclose(want.astype(float), got.astype(float), rtol=1e-6, atol=1e-9,
                                 equal_nan=True))
        if not differ and hasattr(original, "predict_proba") and hasattr(loaded,
                                                                         "predict_proba"):
            differ = not np.allclose(original.predict_proba(rows), loaded.predict_proba(rows),
                                     rtol=1e-6, atol=1e-9)
    if differ:
        raise RegistryError(f"the saved copy of {what} predicts differently from it on the "
                            "sample, so it is not registered",
                            hint="report this: the format lost part of the model")


class _quiet(warnings.catch_warnings):
    """No warnings from checks: a model fitted on arrays warns about column names."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _signature(frame: pd.DataFrame, model: Any, task: str, target: str | None
               ) -> dict[str, Any]:
    from shipyard.train import infer_signature

    return infer_signature(frame, model, task=task, target=target)


def _task_of(model: Any, what: str) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model) and getattr(model, "classes_", None) is not None:
        return "binary" if len(model.classes_) == 2 else "multiclass"
    if is_regressor(model):
        return "regression"
    raise RegistryError(f"{what} is neither a classifier nor a regressor",
                        hint="register a model that predicts a label or a value")


# ----------------------------------------------------------- by kind
def _save_estimator(ws: Workspace, model: Any, sample: Any, target: str | None,
                    what: str, source: str | None = None) -> SavedModel:
    from shipyard.train import save_model

    names = _feature_names(model)
    frame = _fit_columns(as_frame(sample, names, what=what), names,
                         getattr(model, "n_features_in_", None), what)
    _predict_check(model, frame, what)
    task = _task_of(model, what)
    try:
        artifact = save_model(model, ws.artifacts)
    except ArtifactError as exc:
        raise RegistryError(
            f"cannot register {what}: {exc.message}",
            hint=(exc.hint + "; or " if exc.hint else "")
            + "export it to ONNX (skl2onnx.to_onnx(model, X[:1])) and register the .onnx "
              "file") from exc
    loaded = load_stored(ws.artifacts, artifact.digest)
    _same_predictions(model, loaded, frame, what)
    return SavedModel(artifact, _signature(frame, loaded, task, target), frame,
                      source or _type_path(model))


#: LightGBM objectives by the kind of model they train.
_LGBM_CLASSIFIER = frozenset({"binary", "multiclass", "multiclassova"})
_LGBM_REGRESSOR = frozenset({"regression", "regression_l1", "huber", "fair", "poisson",
                             "quantile", "mape", "gamma", "tweedie", "cross_entropy",
                             "cross_entropy_lambda"})


def _lightgbm_header(text: bytes, what: str) -> dict[str, str]:
    head = text[:text.find(b"\nTree=")] if b"\nTree=" in text else text[:1_000_000]
    if not text.startswith(b"tree\n"):
        raise RegistryError(f"{what} is not a LightGBM model file (it does not start with "
                            "'tree')")
    try:
        lines = head.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{what} is not a LightGBM model file: not text") from exc
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _save_lightgbm_text(ws: Workspace, text: bytes, sample: Any, classes: Any,
                        target: str | None, what: str, source: str, *,
                        original: Any = None) -> SavedModel:
    header = _lightgbm_header(text, what)
    objective = header.get("objective", "").split(" ")[0]
    try:
        num_class = int(header.get("num_class", "1"))
        n_features = int(header["max_feature_idx"]) + 1
    except (KeyError, ValueError) as exc:
        raise RegistryError(f"{what} is not a LightGBM model file: its header lacks "
                            f"{exc}") from exc
    names = header.get("feature_names", "").split(" ")
    default = [f"Column_{i}" for i in range(n_features)]
    names = None if names == default or len(names) != n_features else names
    if objective in _LGBM_CLASSIFIER:
        labels = list(classes) if classes is not None else list(range(max(num_class, 2)))
        if len(labels) != max(num_class, 2):
            raise RegistryError(f"{what} predicts {max(num_class, 2)} classes, classes= "
                                f"names {len(labels)}")
        config: dict[str, Any] = {"kind": "classifier", "classes": _labels_json(labels)}
        task = "binary" if len(labels) == 2 else "multiclass"
    elif objective in _LGBM_REGRESSOR:
        if classes is not None:
            raise RegistryError(f"{what} is a regression ({objective}): it has no classes")
        config, task = {"kind": "regressor"}, "regression"
    else:
        raise RegistryError(f"{what} has objective {objective or 'none'!r}; Shipyard "
                            "registers LightGBM classifiers and regressors")
    config["n_features"] = n_features
    frame = _fit_columns(as_frame(sample, names, what=what), names, n_features, what)
    # The manifest of training's LightGBM format: shipyard.train.load_model
    # checks the text before LightGBM parses it.
    artifact = write_manifest(ws.artifacts, "lightgbm",
                              {"booster": text, "config": canonical_json(config)},
                              {"class": source, "versions": _versions("lightgbm")})
    loaded = load_stored(ws.artifacts, artifact.digest)
    _predict_check(loaded, frame, what)
    if original is not None:
        _same_booster(original, loaded, frame, what)
    return SavedModel(read_artifact(ws.artifacts, artifact.digest),
                      _signature(frame, loaded, task, target), frame, source)


def _same_booster(booster: Any, loaded: Any, frame: pd.DataFrame, what: str) -> None:
    rows = frame.head(CHECK_ROWS)
    got = np.asarray(loaded.predict_proba(rows) if hasattr(loaded, "predict_proba")
                     else loaded.predict(rows))
    _same_values(booster.predict(rows), got, what)


def _same_values(want: Any, got: Any, what: str) -> None:
    """A bare booster's raw predictions against the saved model's (a
    binary booster gives the second class's probability)."""
    want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if got.ndim == 2 and want.ndim == 1 and got.shape[1] == 2:
        got = got[:, 1]
    if want.shape != got.shape or not np.allclose(want, got, rtol=1e-6, atol=1e-9):
        raise RegistryError(f"the saved copy of {what} predicts differently from it on the "
                            "sample, so it is not registered",
                            hint="report this: the format lost part of the model")


def _save_xgboost(ws: Workspace, model: Any, sample: Any, classes: Any, target: str | None,
                  what: str, *, data: bytes | None = None, source: str | None = None
                  ) -> SavedModel:
    xgboost = require("xgboost", "xgboost")
    original = None
    if data is None:
        booster = model
        if isinstance(model, xgboost.XGBModel):
            try:
                booster = model.get_booster()
            except Exception as exc:  # sklearn's NotFittedError, or XGBoost's own
                raise RegistryError(f"cannot register {what}: it is not fitted",
                                    hint="call fit() first") from exc
        if not isinstance(booster, xgboost.Booster):
            raise RegistryError(f"cannot register {what}: not an XGBoost model Shipyard reads",
                                hint="pass an XGBClassifier, XGBRegressor or Booster")
        data, original = bytes(booster.save_raw("json")), model
    facts = check_xgboost_json(data, what)
    objective = facts["objective"]
    if objective in XGBOOST_CLASSIFIER:
        own = getattr(model, "classes_", None) if original is not None else None
        if own is not None and classes is not None:
            raise RegistryError(f"{what} knows its own classes", hint="leave classes= out")
        labels = list(own if own is not None else
                      classes if classes is not None else range(max(facts["num_class"], 2)))
        if len(labels) != max(facts["num_class"], 2):
            raise RegistryError(f"{what} predicts {max(facts['num_class'], 2)} classes, but "
                                f"{len(labels)} are named")
        config: dict[str, Any] = {"kind": "classifier", "classes": _labels_json(labels)}
        task = "binary" if len(labels) == 2 else "multiclass"
    elif objective.startswith(("reg:", "count:")):
        config, task = {"kind": "regressor"}, "regression"
    else:
        raise RegistryError(f"{what} has objective {objective!r}; Shipyard registers XGBoost "
                            "models with objective binary:logistic, multi:softprob, reg:* "
                            "or count:poisson")
    frame = _fit_columns(as_frame(sample, facts["feature_names"], what=what),
                         facts["feature_names"], facts["n_features"], what)
    text = [c for c in frame.columns if frame[c].dtype.kind not in "biuf"]
    if text:
        raise RegistryError(f"column {text[0]!r} of the sample is not numeric: Shipyard "
                            "registers XGBoost models on numeric features only")
    config["columns"] = [str(c) for c in frame.columns]
    artifact = write_manifest(ws.artifacts, "xgboost",
                              {"booster": data, "config": canonical_json(config)},
                              {"class": source or _type_path(model), "objective": objective,
                               "versions": _versions("xgboost")})
    loaded = load_stored(ws.artifacts, artifact.digest)
    _predict_check(loaded, frame, what)
    if isinstance(original, xgboost.XGBModel):
        _same_predictions(original, loaded, frame, what)
    elif original is not None:
        matrix = frame.to_numpy(dtype=np.float32, na_value=np.nan)
        _same_values(original.inplace_predict(matrix, validate_features=False),
                     loaded._raw(frame), what)
    return SavedModel(artifact, _signature(frame, loaded, task, target), frame,
                      source or _type_path(model))


def _save_onnx(ws: Workspace, graph: bytes, sample: Any, task: str | None, classes: Any,
               target: str | None, what: str, source: str) -> SavedModel:
    frame = None
    if sample is not None:
        frame = as_frame(sample, _onnx_column_names(graph), what=what)
    config = describe_onnx(graph, frame, task=task, classes=classes, what=what)
    versions = _versions("onnx", "onnxruntime")
    artifact = write_manifest(ws.artifacts, "onnx",
                              {"graph": graph, "config": canonical_json(config)},
                              {"class": source, "output": config["output"],
                               "versions": versions})
    loaded = load_stored(ws.artifacts, artifact.digest)
    described = frame[config["columns"]] if frame is not None else _empty_frame(config)
    signature = _signature(described, loaded, config["task"], target)
    if frame is None:  # no rows seen: no category list to show
        for entry in signature["inputs"]:
            entry.pop("categories", None)
    return SavedModel(artifact, signature, frame[config["columns"]] if frame is not None
                      else None, source)


def _onnx_column_names(graph: bytes) -> list[str] | None:
    """Column names a 2-D array sample takes for this graph: the input names
    of a graph with one input per column."""
    import onnx

    try:
        proto = onnx.load_model_from_string(graph)
    except Exception:  # describe_onnx reports it properly
        return None
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    if len(inputs) == 1:
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) == 2 and not (dims[1].HasField("dim_value") and dims[1].dim_value == 1):
            return None  # one matrix: the columns are the sample's
    return [v.name for v in inputs]


def _empty_frame(config: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    if config["layout"] == "matrix":
        dtype = config["inputs"][0]["dtype"]
        return pd.DataFrame({c: pd.Series([], dtype=dtype) for c in config["columns"]})
    return pd.DataFrame({e["name"]: pd.Series([], dtype=e["dtype"]) for e in config["inputs"]})


def _save_torch(ws: Workspace, module: Any, sample: Any, task: str | None, classes: Any,
                target: str | None, what: str) -> SavedModel:
    torch = require("torch", "torch")
    frame = as_frame(sample, what=what)
    text = [c for c in frame.columns if frame[c].dtype.kind not in "biuf"]
    if text:
        raise RegistryError(f"column {text[0]!r} of the sample is not numeric: a torch module "
                            "takes one tensor of numbers")
    param = next(iter(module.parameters()), None)
    dtype = param.dtype if param is not None and param.dtype.is_floating_point \
        else torch.float32
    x = torch.tensor(frame.to_numpy(dtype=np.float64), dtype=dtype)
    name = "input" if frame.shape[1] > 1 else str(frame.columns[0])
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            try:
                want = module(x)
            except Exception as exc:  # the module's own error says what did not fit
                raise RegistryError(f"{what} cannot predict the sample: {_first_line(exc)}",
                                    hint="pass rows shaped like its input") from exc
            if not isinstance(want, torch.Tensor):
                raise RegistryError(f"{what} returns a {type(want).__name__}; Shipyard "
                                    "registers modules that return one tensor")
            buffer = io.BytesIO()
            try:
                with _quiet():
                    torch.onnx.export(module, (x,), buffer, dynamo=False, input_names=[name],
                                      output_names=["output"], opset_version=17,
                                      dynamic_axes={name: {0: "rows"}, "output": {0: "rows"}})
            except Exception as exc:  # tracing fails in many ways; all mean "not exportable"
                raise RegistryError(
                    f"cannot export {what} to ONNX: {_first_line(exc)}",
                    hint="make its forward() traceable (no data-dependent Python control "
                         "flow), or export it yourself and register the .onnx file") from exc
    finally:
        module.train(was_training)
    saved = _save_onnx(ws, buffer.getvalue(), frame, task, classes, target, what,
                       _type_path(module))
    loaded = load_stored(ws.artifacts, saved.digest)
    got = np.asarray(loaded.session.run(None, {name: x.numpy()})[0])
    expected = want.detach().cpu().numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise RegistryError(f"{what} exported to ONNX computes something else than the module "
                            "on the sample, so it is not registered",
                            hint="export it yourself (torch.onnx.export) and register the "
                                 ".onnx file")
    return saved


# --------------------------------------------------------------- files
def _save_file(ws: Workspace, path: Path, sample: Any, task: str | None, classes: Any,
               target: str | None) -> SavedModel:
    what = f"model file {str(path)!r}"
    if not path.exists():
        raise NotFoundError(f"{what} does not exist", hint="check the path")
    if path.is_dir():
        raise RegistryError(f"{path} is a folder without an MLflow MLmodel file",
                            hint="pass a model file, or an MLflow model folder")
    suffix = path.suffix.lower()
    with path.open("rb") as f:
        head = f.read(512)
    if suffix in PICKLE_SUFFIXES or _is_pickle(head, path):
        raise RegistryError(
            f"{what} is a pickle, which can run any code when loaded: Shipyard never loads one",
            hint="load it yourself where you trust it, then register the object "
                 "(ws.models.register(name, model, sample=X)), or save it as ONNX, skops, "
                 "LightGBM text or XGBoost JSON")
    data = path.read_bytes()
    source = f"file {path.name}"
    if suffix == ".skops" or (head.startswith(b"PK") and _zip_has(path, "schema.json")):
        return _save_skops_file(ws, data, sample, target, what, source, task, classes)
    if head.startswith(b"tree\n"):
        _no_output_overrides(what, task, None, True)
        return _save_lightgbm_text(ws, data, sample, classes, target, what, source)
    if head.lstrip().startswith(b"{") and b'"learner"' in data[:4096]:
        _no_output_overrides(what, task, None, True)
        return _save_xgboost(ws, None, sample, classes, target, what, data=data, source=source)
    if suffix in (".onnx", "") or suffix not in MODEL_SUFFIXES:
        return _save_onnx(ws, data, sample, task, classes, target, what, source)
    if suffix == ".ubj":
        raise RegistryError(f"{what} is XGBoost's binary format, which Shipyard does not "
                            "read", hint="save it as JSON: booster.save_model('model.json')")
    raise RegistryError(f"{what} is in no format Shipyard reads", hint=f"pass {SUPPORTED}")


def _is_pickle(head: bytes, path: Path) -> bool:
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True  # the PROTO opcode pickle protocols 2-5 start with
    return head.startswith(b"PK") and any(n.endswith(".pkl") for n in _zip_names(path))


def _zip_names(path: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()[:100_000]
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _zip_has(path: Path, name: str) -> bool:
    return name in _zip_names(path)


def _save_skops_file(ws: Workspace, data: bytes, sample: Any, target: str | None, what: str,
                     source: str, task: str | None, classes: Any) -> SavedModel:
    """A skops file from elsewhere: loaded through training's checks (the
    allow-list applies), then saved again canonically."""
    _no_output_overrides(what, task, classes, False)
    # training's skops manifest around the file, so that its loader (and
    # nothing else) reads it
    raw = write_manifest(ws.artifacts, "skops", {"model": data}, {"class": source})
    try:
        model = load_stored(ws.artifacts, raw.digest)
    except ArtifactError as exc:
        raise RegistryError(f"cannot register {what}: {exc.message}", hint=exc.hint) from exc
    return _save_estimator(ws, model, sample, target, what, source)


# --------------------------------------------------------------- MLflow
def _is_mlflow_folder(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and (Path(source) / "MLmodel").is_file()


def import_mlflow(ws: Workspace, path: str | os.PathLike, name: str, *, sample: Any = None,
                  run: ActiveRun | None = None, task: str | None = None, classes: Any = None,
                  target: str | None = None, **register: Any) -> ModelVersion:
    """Register the model in an MLflow model folder (its ``MLmodel`` file
    and data) as the next version of ``name``.

    Read flavours: ``onnx``; ``sklearn`` saved with ``serialization_format:
    skops`` (Shipyard's allow-list applies); ``lightgbm`` of a ``Booster``
    (native text) and ``xgboost`` saved as JSON. Pickled flavours (``sklearn``
    with ``pickle`` or ``cloudpickle``, ``pytorch``, an LGBM scikit-learn
    model) are refused. The sample defaults to the model's saved input
    example, typed by its MLflow signature. The version is tagged with the
    MLflow run id and model uuid.

    Raises
    ------
    NotFoundError
        No ``MLmodel`` file, or a file it names is missing.
    RegistryError
        No flavour Shipyard reads, a malformed ``MLmodel``, or no sample.
    """
    import yaml

    _check_model_name(name)
    folder = Path(path)
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise NotFoundError(f"{str(folder)!r} is not an MLflow model folder: it has no MLmodel "
                            "file")
    if mlmodel.stat().st_size > MAX_MLMODEL_BYTES:
        raise RegistryError(f"{mlmodel} is larger than an MLmodel file can be")
    try:
        doc = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        flavors = doc["flavors"]
        if not isinstance(flavors, dict):
            raise TypeError("'flavors' is not a mapping")
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise RegistryError(f"{mlmodel} is not a valid MLmodel file: {exc}") from exc
    flavor, file = _mlflow_model_file(folder, flavors)
    if sample is None:
        sample = _mlflow_example(folder, doc)
    tags = {"mlflow.flavor": flavor,
            **{f"mlflow.{k}": str(doc[k]) for k in ("run_id", "model_uuid") if doc.get(k)},
            **dict(register.pop("tags", None) or {})}
    return register_model(ws, name, file, sample=sample, run=run, task=task, classes=classes,
                          target=target, tags=tags, **register)


def _mlflow_model_file(folder: Path, flavors: dict[str, Any]) -> tuple[str, Path]:
    def inside(relative: Any) -> Path:
        if not isinstance(relative, str):
            raise RegistryError(f"the MLmodel file of {folder} names no model file")
        file = (folder / relative).resolve()
        if not file.is_relative_to(folder.resolve()):
            raise RegistryError(f"the MLmodel file of {folder} names {relative!r}, outside "
                                "the model folder")
        if not file.is_file():
            raise NotFoundError(f"the MLflow model {folder} lacks its file {relative!r}")
        return file

    if isinstance(flavors.get("onnx"), dict):
        return "onnx", inside(flavors["onnx"].get("data"))
    refused = []
    sk = flavors.get("sklearn")
    if isinstance(sk, dict):
        fmt = sk.get("serialization_format", "cloudpickle")
        if fmt == "skops":
            return "sklearn", inside(sk.get("pickled_model"))
        refused.append(f"sklearn as {fmt}")
    lgb = flavors.get("lightgbm")
    if isinstance(lgb, dict):
        if str(lgb.get("model_class", "")).endswith(".Booster"):
            return "lightgbm", inside(lgb.get("data"))
        refused.append(f"lightgbm {lgb.get('model_class')} (pickled)")
    xgb = flavors.get("xgboost")
    if isinstance(xgb, dict):
        if xgb.get("model_format") == "json" or str(xgb.get("data", "")).endswith(".json"):
            return "xgboost", inside(xgb.get("data"))
        refused.append(f"xgboost as {xgb.get('model_format', 'xgb')}")
    refused += [f for f in flavors if f not in ("sklearn", "lightgbm", "xgboost",
                                                "python_function")]
    raise RegistryError(
        f"the MLflow model {folder} has no flavour Shipyard can load without running pickled "
        f"code (it has: {', '.join(refused) or ', '.join(flavors) or 'none'})",
        hint="re-save it with mlflow.sklearn.save_model(..., serialization_format='skops'), as "
             "ONNX (mlflow.onnx), or as LightGBM/XGBoost native files; or load it where you "
             "trust it and register the object")


def _mlflow_example(folder: Path, doc: dict[str, Any]) -> Any:
    """The saved input example as rows, typed by the MLflow signature; None
    when the model has none."""
    import json

    import pandas as pd

    info = doc.get("saved_input_example_info")
    if not isinstance(info, dict) or not isinstance(info.get("artifact_path"), str):
        return None
    file = (folder / info["artifact_path"]).resolve()
    if not file.is_relative_to(folder.resolve()) or not file.is_file():
        return None
    try:
        example = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"the input example {file.name} of {folder} is not JSON: "
                            f"{exc}") from exc
    if isinstance(example, dict) and "dataframe_split" in example:
        example = example["dataframe_split"]
    if isinstance(example, dict) and "columns" in example and "data" in example:
        frame = pd.DataFrame(example["data"], columns=example["columns"])
    elif isinstance(example, dict) and ("inputs" in example or "instances" in example):
        return np.asarray(example.get("inputs", example.get("instances")))
    elif isinstance(example, list) and example and all(isinstance(r, dict) for r in example):
        frame = pd.DataFrame(example)
    else:
        raise RegistryError(f"cannot read the input example {file.name} of {folder}",
                            hint="pass sample=")
    signature = doc.get("signature") or {}
    try:
        columns = json.loads(signature.get("inputs") or "[]")
    except (ValueError, TypeError):
        columns = []
    for column in columns if isinstance(columns, list) else []:
        if isinstance(column, dict) and column.get("name") in frame.columns \
                and column.get("type") in MLFLOW_TYPES:
            try:
                frame[column["name"]] = frame[column["name"]].astype(MLFLOW_TYPES[column["type"]])
            except (ValueError, TypeError):
                pass  # keep the example's own type; the model check will judge it
    return frame


def _versions(*packages: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


