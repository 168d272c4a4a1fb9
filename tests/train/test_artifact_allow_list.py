"""The skops allow-list is exactly what the trainer saves.

Every kind of model the trainer can produce is fitted the way the trainer fits
it (``make_estimator`` + ``fit_model``: the preprocessing ColumnTransformer,
then the estimator), saved with ``save_model`` and loaded back. Each kind
needs only the types of its own family in ``SKOPS_TYPES`` (with containers,
numpy and preprocessing), skops' own list of untrusted types is a subset of
the allow-list, and every listed type is needed by some kind.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import ArtifactError
from shipyard.store import ArtifactStore
from shipyard.train import load_model, save_model
from shipyard.train._artifacts import ALLOWED_TYPES, SKOPS_NODES, SKOPS_TYPES

CLASSIFY, REGRESS = ("binary", "multiclass"), ("regression",)
SGD_LOSSES = ("hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron",
              "squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive")
#: family -> (estimator path, params, tasks): every estimator family on the list,
#: with the parameters that change what its fitted state holds.
KINDS = {
    "linear": [
        ("sklearn.linear_model.LogisticRegression", {}, CLASSIFY),
        ("sklearn.linear_model.LogisticRegression", {"class_weight": {0: 1.0, 1: 2.0, 2: 1.0}},
         ("multiclass",)),
        ("sklearn.linear_model.LinearRegression", {}, REGRESS),
        ("sklearn.linear_model.Ridge", {}, REGRESS),
        ("sklearn.linear_model.RidgeClassifier", {}, CLASSIFY),
        ("sklearn.linear_model.Lasso", {}, REGRESS),
        ("sklearn.linear_model.ElasticNet", {}, REGRESS),
        *[("sklearn.linear_model.SGDClassifier", {"loss": loss}, ("binary",))
          for loss in SGD_LOSSES],
        ("sklearn.linear_model.SGDRegressor", {}, REGRESS),
        ("sklearn.svm.LinearSVC", {}, CLASSIFY),
        ("sklearn.svm.LinearSVR", {}, REGRESS),
    ],
    "trees": [
        ("sklearn.tree.DecisionTreeClassifier", {}, CLASSIFY),
        ("sklearn.tree.DecisionTreeRegressor", {}, REGRESS),
        ("sklearn.tree.ExtraTreeClassifier", {}, CLASSIFY),
        ("sklearn.tree.ExtraTreeRegressor", {}, REGRESS),
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 3}, CLASSIFY),
        ("sklearn.ensemble.RandomForestRegressor", {"n_estimators": 3}, REGRESS),
        ("sklearn.ensemble.ExtraTreesClassifier", {"n_estimators": 3}, CLASSIFY),
        ("sklearn.ensemble.ExtraTreesRegressor", {"n_estimators": 3}, REGRESS),
    ],
    "gradient_boosting": [
        ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 3}, CLASSIFY),
        ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 3,
                                                         "loss": "exponential"}, ("binary",)),
        *[("sklearn.ensemble.GradientBoostingRegressor", {"n_estimators": 3, "loss": loss},
           REGRESS) for loss in ("squared_error", "absolute_error", "huber", "quantile")],
    ],
    "neural_network": [
        ("sklearn.neural_network.MLPClassifier", {"max_iter": 5}, CLASSIFY),
        ("sklearn.neural_network.MLPRegressor", {"max_iter": 5, "solver": "sgd"}, REGRESS),
        ("sklearn.neural_network.MLPRegressor", {"max_iter": 5, "solver": "lbfgs"}, REGRESS),
    ],
    "naive_bayes": [("sklearn.naive_bayes.GaussianNB", {}, CLASSIFY)],
    "dummy": [("sklearn.dummy.DummyClassifier", {}, CLASSIFY),
              ("sklearn.dummy.DummyRegressor", {}, REGRESS)],
}
SHARED = SKOPS_TYPES["containers"] | SKOPS_TYPES["numpy"] | SKOPS_TYPES["preprocessing"]


@dataclass
class Saved:
    label: str
    types: set[str]      # every type named in the skops schema, skops' defaults included
    loaders: set[str]
    untrusted: set[str]  # what skops.io.get_untrusted_types reports


def schema_of(blob: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return json.loads(zf.read("schema.json"))


def inspect_skops(label: str, blob: bytes) -> Saved:
    import skops.io as sio

    types, loaders, stack = set(), set(), [schema_of(blob)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                types.add(f"{node['__module__']}.{node['__class__']}")
                loaders.add(node["__loader__"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return Saved(label, types, loaders, set(sio.get_untrusted_types(data=blob)))


def datasets(mixed_frame):
    """The trainer's inputs: every column kind (sparse TF-IDF output) for
    binary, numeric + categorical (dense) for multiclass and regression."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=150, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    numeric = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    numeric["colour"] = np.array(["red", "green", "blue"])[np.arange(150) % 3]
    return {"binary": mixed_frame, "multiclass": (numeric, y),
            "regression": (numeric, X[:, 0] * 3.0 + 1.0)}


def fit_like_the_trainer(path, params, task, frame, y):
    from shipyard.train._preprocess import column_kinds
    from shipyard.train._trial import fit_model, make_estimator

    estimator = make_estimator(path, task, params, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations on purpose
        model, _ = fit_model(frame, y, column_kinds(frame, list(frame.columns)), estimator,
                             imbalance="none", task=task, seed=0)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mixed_frame):
    """``{family: [Saved, ...]}``, every kind saved and loaded back once."""
    store = ArtifactStore(str(tmp_path_factory.mktemp("allow-list")))
    data = datasets(mixed_frame)
    out: dict[str, list[Saved]] = {}
    for family, kinds in KINDS.items():
        for path, params, tasks in kinds:
            for task in tasks:
                frame, y = data[task]
                model = fit_like_the_trainer(path, params, task, frame, y)
                artifact = save_model(model, store)
                assert artifact.format == "skops"
                loaded = load_model(store, artifact)
                np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
                label = f"{path.rsplit('.', 1)[1]}({params}) {task}"
                out.setdefault(family, []).append(
                    inspect_skops(label, store.get_bytes(artifact.parts["model"])))
    return out


@pytest.mark.parametrize("family", KINDS)
def test_each_kind_needs_only_its_familys_types(saved, family):
    allowed = SHARED | SKOPS_TYPES[family]
    for kind in saved[family]:
        assert kind.types <= allowed, f"{kind.label} also needs {kind.types - allowed}"
        assert kind.loaders <= SKOPS_NODES, kind.label


def test_skops_untrusted_types_of_every_kind_are_on_the_allow_list(saved):
    for kinds in saved.values():
        for kind in kinds:
            assert kind.untrusted <= ALLOWED_TYPES, kind.label
            assert kind.untrusted, kind.label  # the preprocessing at least: skops checks it


def test_every_listed_type_is_needed_by_some_kind(saved, passthrough_pipeline):
    needed = set().union(*(k.types for kinds in saved.values() for k in kinds))
    needed |= inspect_skops("passthrough", passthrough_pipeline).types
    assert needed == ALLOWED_TYPES
    for family, kinds in saved.items():  # and each family's entry is all used
        assert set().union(*(k.types for k in kinds)) >= SKOPS_TYPES[family], family


@pytest.fixture(scope="module")
def passthrough_pipeline(tmp_path_factory):
    """A hand-built pipeline with a passthrough column, as the serving tests
    build: the one user of ``FunctionTransformer`` (ColumnTransformer makes
    one for passthrough columns)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    store = ArtifactStore(str(tmp_path_factory.mktemp("passthrough")))
    frame = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    model = make_pipeline(ColumnTransformer([("num", "passthrough", ["a", "b"])]),
                          LogisticRegression()).fit(frame, np.arange(20) % 2)
    artifact = save_model(model, store)
    np.testing.assert_array_equal(load_model(store, artifact).predict(frame),
                                  model.predict(frame))
    return store.get_bytes(artifact.parts["model"])


@pytest.mark.parametrize("estimator", ["lightgbm", "torch_mlp"])
def test_lightgbm_and_torch_preprocessors_need_only_preprocessing(tmp_path, mixed_frame,
                                                                  estimator):
    frame, y = mixed_frame
    model = fit_like_the_trainer(
        estimator, {"n_estimators": 5} if estimator == "lightgbm" else {"max_epochs": 3},
        "binary", frame, y)
    store = ArtifactStore(str(tmp_path))
    artifact = save_model(model, store)
    assert artifact.format == ("lightgbm" if estimator == "lightgbm" else "torch")
    kind = inspect_skops(estimator, store.get_bytes(artifact.parts["preprocessor"]))
    assert kind.types <= SHARED and kind.untrusted <= ALLOWED_TYPES
    np.testing.assert_allclose(load_model(store, artifact).predict_proba(frame),
                               model.predict_proba(frame), rtol=1e-6)


def test_thresholded_models_hold_no_skops_types_of_their_own(tmp_path, classification):
    from sklearn.linear_model import LogisticRegression

    from shipyard.train._thresholded import ThresholdedModel

    X, y = classification
    X = X.assign(group=np.where(X["x0"] > 0, "a", "b"))
    features = [f"x{i}" for i in range(6)]
    store = ArtifactStore(str(tmp_path))
    base = save_model(LogisticRegression().fit(X[features], y), store)
    rule = {"p0": 1.0, "op0": [">", 0.5], "p1": 0.0, "op1": [">", 0.5]}
    model = ThresholdedModel(load_model(store, base), sensitive="group", features=features,
                             classes=[0, 1], groups={"a": rule, "b": rule},
                             base_digest=base.digest)
    artifact = model.save(store)
    assert artifact.parts["base.model"] == base.parts["model"]  # the base's skops blob only
    np.testing.assert_array_equal(load_model(store, artifact).predict(X), model.predict(X))


@pytest.mark.parametrize("make, refused", [
    (lambda: __import__("sklearn.ensemble", fromlist=["x"]).HistGradientBoostingClassifier(
        max_iter=3), "TreePredictor"),
    (lambda: __import__("sklearn.neighbors", fromlist=["x"]).KNeighborsClassifier(),
     "KNeighborsClassifier"),
    (lambda: __import__("sklearn.svm", fromlist=["x"]).SVC(), "sklearn.svm._classes.SVC"),
])
def test_estimators_left_off_the_list_are_refused_at_save_by_name(tmp_path, classification,
                                                                  make, refused):
    X, y = classification
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError, match=rf"holds .*{refused}.*which a model file may not"):
        save_model(make().fit(X, y), store)
    assert list(store.iter_blobs()) == []
