"""The training part of the project file, ``shipyard.yaml``.

A project file names the data, what to predict, and how to search for a
model. It is validated by pydantic; every problem becomes a
:class:`~shipyard.errors.ConfigError` that names the file, the line, the key
path (``train.candidates[1].search_space.lr.low``) and what was expected.

.. code-block:: yaml

    dataset: adult@3                 # or {source: data/adult.csv, name: adult}
    target: income
    task: binary                     # binary | multiclass | regression
    features:
      drop: [fnlwgt]
      sensitive: [sex, race]         # kept for evaluation, not trained on
    seed: 42
    train:
      split: {kind: stratified, test_size: 0.2, validation_size: 0.1}
      imbalance: class_weight
      search: {kind: tpe, n_trials: 30, metric: roc_auc}
      candidates:
        - name: logreg
          estimator: sklearn.linear_model.LogisticRegression
          params: {max_iter: 500}
          search_space:
            C: {type: float, low: 0.001, high: 100, log: true}
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, field_validator,
                      model_validator)

from shipyard.train._metrics import METRICS
from shipyard.errors import ConfigError
from shipyard.names import NAME_HINT, did_you_mean, is_name

Task = Literal["binary", "multiclass", "regression"]

#: Module prefixes an estimator import path may name; anything else is refused.
ESTIMATOR_PREFIXES = ("sklearn.", "lightgbm.", "shipyard.")
#: Short names for the non-scikit-learn candidates, as ``(classifier, regressor)``.
ESTIMATOR_ALIASES = {
    "lightgbm": ("lightgbm.LGBMClassifier", "lightgbm.LGBMRegressor"),
    "torch_mlp": ("shipyard.train.TorchMLPClassifier", "shipyard.train.TorchMLPRegressor"),
}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_DATASET_REF = re.compile(r"(?P<name>[^@]+)(@(?P<version>\d+|latest))?")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# ------------------------------------------------------------ search space
class _Param(_Spec):
    when: dict[str, Any] | None = Field(
        None, description="Sample this parameter only when each named parameter has that value.")

    @field_validator("when")
    @classmethod
    def _scalar_values(cls, when: dict | None) -> dict | None:
        for name, value in (when or {}).items():
            if not _is_scalar(value):
                raise ValueError(f"when: {name} must be compared with a number, string, "
                                 f"boolean or null, got {value!r}")
        return when


class IntParam(_Param):
    """An integer in ``[low, high]``, every ``step``, optionally log-uniform."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log: true needs step: 1 (a log scale has no fixed step)")
        return self


class FloatParam(_Param):
    """A float in ``[low, high]``, uniform, log-uniform, or every ``step``."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("give either log: true or a step, not both")
        return self


class CategoricalParam(_Param):
    """One of ``choices`` (scalars, or lists of scalars such as layer sizes)."""

    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list) -> list:
        seen = []
        for choice in choices:
            if not (_is_scalar(choice) or (isinstance(choice, list)
                                           and all(_is_scalar(c) for c in choice))):
                raise ValueError(f"choice {choice!r} must be a number, string, boolean, null "
                                 "or a list of those")
            if choice in seen:
                raise ValueError(f"choice {choice!r} is listed twice")
            seen.append(choice)
        return choices


ParamSpec = Annotated[Union[IntParam, FloatParam, CategoricalParam], Field(discriminator="type")]
PARAM_TYPES = {"int", "float", "categorical"}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _check_range(low: float, high: float, log: bool) -> None:
    if not low < high:
        raise ValueError(f"low ({low}) must be less than high ({high})")
    if log and low <= 0:
        raise ValueError(f"log: true needs low > 0, got low: {low}")


# --------------------------------------------------------------- sections
class DatasetRef(_Spec):
    """The data to train on: a registered dataset version, or a source to ingest.

    In YAML either ``adult@3`` / ``adult`` (the latest version), or a mapping
    ``{name: adult, version: 3}`` or ``{source: data/adult.csv, name: adult}``.
    """

    name: str | None = None
    version: int | Literal["latest"] | None = None
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DATASET_REF.fullmatch(value.strip())
            if match is None:
                raise ValueError(f"expected 'name' or 'name@version' (e.g. adult@3), got {value!r}")
            version = match["version"]
            return {"name": match["name"],
                    "version": int(version) if version and version.isdigit() else "latest"}
        return value

    @model_validator(mode="after")
    def _check(self) -> DatasetRef:
        if self.name is None and self.source is None:
            raise ValueError("give a dataset name (adult@3) or a source to ingest")
        if self.name is not None and not is_name(self.name):
            raise ValueError(f"{self.name!r} is not a dataset name ({NAME_HINT})")
        if self.source is not None and self.version is not None:
            raise ValueError("a source is ingested as a new version: give no version with it")
        if isinstance(self.version, int) and self.version < 1:
            raise ValueError(f"versions start at 1, got {self.version}")
        return self

    @property
    def ref(self) -> str | None:
        """``name@version`` (``name@latest`` when no version is pinned)."""
        if self.name is None:
            return None
        return f"{self.name}@{self.version or 'latest'}"


class FeatureSpec(_Spec):
    """Which columns the model sees.

    ``use`` lists the feature columns (default: every column but the target,
    the dropped and the sensitive ones); ``sensitive`` columns are kept for
    evaluation and left out of training unless ``train.train_on_sensitive``.
    ``text`` and ``dates`` declare columns to treat as free text or dates.
    """

    use: list[str] | None = Field(None, min_length=1)
    drop: list[str] = []
    sensitive: list[str] = []
    text: list[str] = []
    dates: list[str] = []

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        for key in ("use", "drop", "sensitive", "text", "dates"):
            names = getattr(self, key) or []
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{key} lists {', '.join(dupes)} more than once")
        both = sorted(set(self.use or ()) & set(self.drop))
        if both:
            raise ValueError(f"{', '.join(both)} is both in use and in drop")
        both = sorted(set(self.text) & set(self.dates))
        if both:
            raise ValueError(f"{', '.join(both)} is declared both text and a date")
        return self


class SplitSpec(_Spec):
    """How rows are split into train / validation / test, and CV folds.

    ``stratified`` keeps class proportions; ``group`` keeps all rows of a
    ``group_column`` value on one side; ``time`` trains on the past and tests
    on the future, ordered by ``time_column``. ``folds`` (≥ 2) turns on
    k-fold cross-validation on the training part.
    """

    kind: Literal["random", "stratified", "group", "time"] = Field(
        "random", description="Default: stratified for classification tasks, else random.")
    test_size: float = Field(0.2, gt=0, lt=1)
    validation_size: float = Field(0.0, ge=0, lt=1)
    group_column: str | None = None
    time_column: str | None = None
    folds: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _check(self) -> SplitSpec:
        if self.test_size + self.validation_size >= 1:
            raise ValueError(f"test_size + validation_size must be below 1, got "
                             f"{self.test_size} + {self.validation_size}")
        if self.kind == "group" and not self.group_column:
            raise ValueError("kind: group needs a group_column")
        if self.kind == "time" and not self.time_column:
            raise ValueError("kind: time needs a time_column")
        if self.group_column and self.kind != "group":
            raise ValueError(f"group_column is only used with kind: group, not {self.kind}")
        if self.time_column and self.kind != "time":
            raise ValueError(f"time_column is only used with kind: time, not {self.kind}")
        return self


class CandidateSpec(_Spec):
    """One model family to try: an estimator, fixed params and a search space.

    ``estimator`` is a scikit-learn import path
    (``sklearn.ensemble.RandomForestClassifier``), ``lightgbm`` or ``torch_mlp``.
    """

    name: str
    estimator: str
    params: dict[str, Any] = {}
    search_space: dict[str, ParamSpec] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not is_name(name):
            raise ValueError(f"{name!r} is not a candidate name ({NAME_HINT})")
        return name

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, path: str) -> str:
        _check_estimator_path(path)
        return path

    @model_validator(mode="after")
    def _check(self) -> CandidateSpec:
        both = sorted(set(self.params) & set(self.search_space))
        if both:
            raise ValueError(f"{', '.join(both)} is both a fixed param and searched; keep one")
        for name, param in self.search_space.items():
            for other, value in (param.when or {}).items():
                _check_condition(self.search_space, name, other, value)
        _check_acyclic(self.search_space)
        return self


class SearchSpec(_Spec):
    """How to search the candidates' spaces (Optuna), and where to run trials."""

    kind: Literal["grid", "random", "tpe"] = "tpe"
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0, description="Seconds for the whole search.")
    pruner: Literal["none", "median", "hyperband"] = "none"
    n_jobs: int = Field(1, ge=1)
    batch_size: int = Field(4, ge=1, description=(
        "Trials asked of the sampler together. Results depend on it, not on n_jobs: "
        "the same seed and batch_size give the same trials with any n_jobs or executor; "
        "at most batch_size trials run at once."))
    executor: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address, e.g. ray://host:10001.")
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchSpec:
        if self.address and self.executor != "ray":
            raise ValueError("address is only used with executor: ray")
        return self


class TrainSpec(_Spec):
    """The ``train:`` section."""

    candidates: list[CandidateSpec] = Field(min_length=1)
    split: SplitSpec = SplitSpec()
    search: SearchSpec = SearchSpec()
    imbalance: Literal["none", "class_weight", "smote", "undersample"] = "none"
    train_on_sensitive: bool = False

    @model_validator(mode="after")
    def _check(self) -> TrainSpec:
        names = [c.name for c in self.candidates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique; {', '.join(dupes)} repeats")
        if self.search.kind == "grid":
            for i, cand in enumerate(self.candidates):
                for pname, param in cand.search_space.items():
                    if isinstance(param, FloatParam) and param.step is None:
                        raise ValueError(
                            f"candidates[{i}].search_space.{pname}: grid search needs a finite "
                            "grid; give this float a step or use type: categorical")
        return self


class CostSpec(_Spec):
    """The ``cost:`` section: how CPU time becomes an energy and CO2e estimate.

    Unset values come from ``SHIPYARD_WATTS_PER_CORE`` and
    ``SHIPYARD_GRID_INTENSITY``, else 15 W per busy core and 400 gCO2e/kWh.
    """

    watts_per_core: float | None = Field(None, gt=0)
    grid_gco2_per_kwh: float | None = Field(None, ge=0)


class ProjectSpec(_Spec):
    """The sections of ``shipyard.yaml`` that training reads.

    :class:`shipyard.project.Project` extends it with the other stages'
    sections (``gates``, ``deploy``); load a file with
    :func:`shipyard.project.load_project`.
    """

    name: str | None = None
    dataset: DatasetRef
    target: str
    task: Task
    features: FeatureSpec = FeatureSpec()
    seed: int = Field(0, ge=0, lt=2**32)
    train: TrainSpec
    cost: CostSpec = CostSpec()
    @model_validator(mode="before")
    @classmethod
    def _default_split(cls, data: Any) -> Any:
        """Classification splits are stratified unless the file says otherwise."""
        if isinstance(data, dict) and data.get("task") in ("binary", "multiclass") \
                and isinstance(data.get("train"), dict):
            split = data["train"].get("split", {})
            if isinstance(split, dict) and "kind" not in split:
                train = {**data["train"], "split": {**split, "kind": "stratified"}}
                data = {**data, "train": train}
        return data

    @model_validator(mode="after")
    def _check(self) -> ProjectSpec:
        feats = self.features
        for key in ("use", "drop", "sensitive", "text", "dates"):
            if self.target in (getattr(feats, key) or ()):
                raise ValueError(f"the target {self.target!r} cannot be in features.{key}")
        split, search = self.train.split, self.train.search
        if split.kind == "stratified" and self.task == "regression":
            raise ValueError("split kind: stratified needs a classification task, "
                             "not regression; use random, group or time")
        if self.train.imbalance != "none" and self.task == "regression":
            raise ValueError(f"imbalance: {self.train.imbalance} applies to classification, "
                             "not regression")
        known = METRICS[self.task]
        if search.metric is not None and search.metric not in known:
            raise ValueError(f"train.search.metric {search.metric!r} is not a {self.task} "
                             f"metric; expected one of {', '.join(known)}"
                             + did_you_mean(search.metric, known))
        metric = self.metric
        if search.direction is not None and search.direction != known[metric].direction:
            raise ValueError(f"train.search.direction: {metric} is to {known[metric].direction}, "
                             f"not {search.direction}")
        return self

    @property
    def metric(self) -> str:
        """The metric the search optimises (the task's default when not set)."""
        return self.train.search.metric or DEFAULT_METRIC[self.task]

    @property
    def direction(self) -> str:
        """``maximize`` or ``minimize``, from the metric."""
        return METRICS[self.task][self.metric].direction

    def training_features(self, columns: list[str]) -> list[str]:
        """The columns the model trains on, given the dataset's ``columns``.

        Sensitive columns are left out unless ``train.train_on_sensitive``.

        Raises
        ------
        ConfigError
            A named column is not in the data.
        """
        feats = self.features
        named = [self.target, *(feats.use or ()), *feats.drop, *feats.sensitive, *feats.text,
                 *feats.dates]
        missing = [c for c in dict.fromkeys(named) if c not in columns]
        if missing:
            raise ConfigError(
                f"column {missing[0]!r} named in the project file is not in the dataset"
                + did_you_mean(missing[0], columns),
                hint=f"the dataset's columns are: {', '.join(map(str, columns))}")
        excluded = {self.target, *feats.drop}
        if not self.train.train_on_sensitive:
            excluded |= set(feats.sensitive)
        chosen = feats.use if feats.use is not None else columns
        return [c for c in chosen if c not in excluded]


# ---------------------------------------------------- cross-field helpers
def _check_condition(space: dict, name: str, other: str, value: Any) -> None:
    if other == name:
        raise ValueError(f"search_space.{name}.when refers to {name} itself")
    if other not in space:
        raise ValueError(f"search_space.{name}.when refers to {other!r}, which is not in the "
                         "search space" + did_you_mean(other, space))
    ref = space[other]
    if isinstance(ref, CategoricalParam):
        ok = value in ref.choices
    elif isinstance(ref, IntParam):
        ok = isinstance(value, int) and not isinstance(value, bool) and ref.low <= value <= ref.high
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and ref.low <= value <= ref.high
    if not ok:
        raise ValueError(f"search_space.{name}.when: {other} can never be {value!r}")


def _check_acyclic(space: dict) -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        for other in space[name].when or {}:
            if other in path:
                raise ValueError(f"search_space conditions form a cycle: "
                                 f"{' -> '.join((*path, other))}")
            visit(other, (*path, other))

    for name in space:
        visit(name, (name,))


# ------------------------------------------------------------- estimators
def _check_estimator_path(path: str) -> None:
    """Syntax and allow-list checks; imports nothing."""
    if path in ESTIMATOR_ALIASES:
        return
    if not _DOTTED.fullmatch(path) or "__" in path:
        raise ValueError(f"{path!r} is not an estimator import path; expected e.g. "
                         "sklearn.linear_model.LogisticRegression, lightgbm or torch_mlp")
    if not path.startswith(ESTIMATOR_PREFIXES):
        raise ValueError(f"{path!r} is refused: estimators must come from "
                         f"{', '.join(p.rstrip('.') for p in ESTIMATOR_PREFIXES)} "
                         f"(or be one of {', '.join(ESTIMATOR_ALIASES)})")
    if path.rsplit(".", 1)[1].startswith("_"):
        raise ValueError(f"{path!r} names a private object; use a public estimator class")


def validate_estimator(path: str, task: str | None = None) -> type:
    """Resolve an estimator import path to its class, safely.

    Only public classes under ``sklearn.``, ``lightgbm.`` or ``shipyard.`` that
    are scikit-learn estimators are accepted; ``lightgbm`` and ``torch_mlp``
    name Shipyard's built-in candidates. With a ``task``, the class must also
    fit it (a classifier for binary/multiclass, a regressor for regression).

    Parameters
    ----------
    path
        ``sklearn.ensemble.RandomForestClassifier``, ``lightgbm`` or ``torch_mlp``.
    task
        ``binary``, ``multiclass`` or ``regression``; picks the alias's class
        (default: the classifier).

    Returns
    -------
    type
        The estimator class (not an instance).

    Raises
    ------
    ConfigError
        The path is malformed, outside the allow-list, not importable, not an
        estimator, or the wrong kind for ``task``.

    >>> validate_estimator("sklearn.linear_model.LogisticRegression").__name__
    'LogisticRegression'
    >>> validate_estimator("os.system")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shipyard.errors.ConfigError: 'os.system' is refused: estimators must come from sklearn, ...
    """
    if not isinstance(path, str):
        raise ConfigError(f"an estimator must be an import path string, got {type(path).__name__}")
    if task is not None and task not in METRICS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(METRICS)}")
    try:
        _check_estimator_path(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if path in ESTIMATOR_ALIASES:
        alias, path = path, ESTIMATOR_ALIASES[path][task == "regression"]
        if importlib.util.find_spec(alias.split("_")[0]) is None:
            raise ConfigError(f"estimator {alias!r} needs the {alias.split('_')[0]} package, "
                              "which is not installed",
                              hint=f"install {alias.split('_')[0]} into this environment")
    module_name, attr = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for estimator {path!r}: {exc}"
                          + _suggest_estimator(attr)) from exc
    cls = getattr(module, attr, None)
    if cls is None:
        options = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(f"{module_name} has no {attr!r} (estimator {path!r})"
                          + (did_you_mean(attr, options) or _suggest_estimator(attr)))
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)) \
            or not cls.__module__.startswith(ESTIMATOR_PREFIXES) or inspect.isabstract(cls):
        raise ConfigError(f"{path!r} is not a scikit-learn estimator class")
    if cls.__module__.startswith("sklearn."):
        from shipyard.train._artifacts import ALLOWED_TYPES

        if f"{cls.__module__}.{cls.__qualname__}" not in ALLOWED_TYPES:
            raise ConfigError(
                f"{path!r} cannot be saved safely: Shipyard's model files hold only estimators "
                "whose fitted state it checks when loading (HistGradientBoosting, k-NN and "
                "kernel SVMs keep state that compiled code reads without bounds checks; "
                "meta-estimators wrap estimators a project file cannot give)",
                hint="pick a linear model, a tree or forest, gradient boosting, an MLP, naive "
                     "Bayes, or lightgbm")
    if task is not None:
        want = RegressorMixin if task == "regression" else ClassifierMixin
        if not issubclass(cls, want):
            kind = "regressor" if task == "regression" else "classifier"
            raise ConfigError(f"{path!r} is not a {kind}, which task {task} needs")
    return cls


def _suggest_estimator(name: str) -> str:
    try:
        from sklearn.utils import all_estimators
    except ImportError:  # pragma: no cover - sklearn is a dependency of training
        return ""
    found = {n: f"{c.__module__.split('._')[0]}.{n}" for n, c in all_estimators()}
    close = difflib.get_close_matches(name, list(found), n=1, cutoff=0.7)
    return f"; did you mean {found[close[0]]!r}?" if close else ""


def estimator_params(cls: type) -> tuple[set[str], set[str], bool]:
    """``(all, required, takes_kwargs)`` constructor parameters of ``cls``."""
    sig = inspect.signature(cls.__init__)
    names, required, kwargs = set(), set(), False
    for p in list(sig.parameters.values())[1:]:
        if p.kind is p.VAR_KEYWORD:
            kwargs = True
        elif p.kind is not p.VAR_POSITIONAL:
            names.add(p.name)
            if p.default is p.empty:
                required.add(p.name)
    return names, required, kwargs


#: Optional packages some settings need: ``(key, value) -> (module, distribution)``.
_NEEDS = {("imbalance", "smote"): ("imblearn", "imbalanced-learn"),
          ("imbalance", "undersample"): ("imblearn", "imbalanced-learn"),
          ("search.executor", "ray"): ("ray", "ray")}


def resolvable_problems(spec: ProjectSpec) -> list[tuple[tuple, str]]:
    """Import every candidate's estimator and look for the packages the
    settings need; return ``(loc, message)`` problems."""
    problems = []
    train = spec.train
    settings = {"imbalance": train.imbalance, "search.executor": train.search.executor}
    for key, value in settings.items():
        need = _NEEDS.get((key, value))
        if need and importlib.util.find_spec(need[0]) is None:
            problems.append((("train", *key.split(".")),
                             f"{value} needs the {need[1]} package, which "
                             f"is not installed; pip install {need[1]}"))
    for i, cand in enumerate(spec.train.candidates):
        loc = ("train", "candidates", i)
        if cand.estimator == "lightgbm":
            # LightGBM takes any keyword, so there is nothing to check by
            # importing it (3 s); only that it is installed.
            if importlib.util.find_spec("lightgbm") is None:
                problems.append(((*loc, "estimator"), "estimator 'lightgbm' needs the lightgbm "
                                 "package, which is not installed; pip install lightgbm"))
            continue
        try:
            cls = validate_estimator(cand.estimator, spec.task)
        except ConfigError as exc:
            problems.append(((*loc, "estimator"), exc.message))
            continue
        names, required, kwargs = estimator_params(cls)
        for key, given in (("params", cand.params), ("search_space", cand.search_space)):
            for pname in given:
                if pname not in names and not kwargs:
                    problems.append(((*loc, key, pname),
                                     f"{cls.__name__} has no parameter {pname!r}"
                                     + did_you_mean(pname, sorted(names))))
        missing = sorted(required - set(cand.params) - set(cand.search_space))
        if missing:
            problems.append(((*loc, "params"), f"{cls.__name__} needs {', '.join(missing)}, "
                             "which a project file cannot give; use a plain estimator"))
    return problems
