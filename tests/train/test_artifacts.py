import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from shipyard.errors import ArtifactCorruptedError, ArtifactError, ArtifactNotFoundError
from shipyard.store import ArtifactStore
from shipyard.train import (ModelArtifact, TorchMLPClassifier, TorchMLPRegressor,
                            build_preprocessor, load_model, save_model)
from shipyard.train._artifacts import canonical_json, allowed_type

FEATURES = ["age", "income", "city", "member", "joined", "review"]


def lgbm(kind="classifier", **params):
    import lightgbm
    cls = lightgbm.LGBMClassifier if kind == "classifier" else lightgbm.LGBMRegressor
    return cls(n_estimators=15, num_leaves=7, deterministic=True, num_threads=1,
               random_state=0, verbose=-1, **params)


def mlp(**params):
    import torch  # noqa: F401
    return TorchMLPClassifier(**{"hidden_sizes": (8,), "max_epochs": 8, "seed": 3, **params})


def pipeline(frame, estimator):
    return Pipeline([("preprocess", build_preprocessor(frame, FEATURES)), ("model", estimator)])


ESTIMATORS = {
    "logreg": lambda: LogisticRegression(max_iter=300),
    "forest": lambda: RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0),
    "lightgbm": lgbm,
    "torch_mlp": mlp,
}
FORMATS = {"logreg": "skops", "forest": "skops", "lightgbm": "lightgbm", "torch_mlp": "torch"}


# ---------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ESTIMATORS)
def test_pipeline_round_trip_gives_the_same_predictions(store, mixed_frame, name):
    frame, y = mixed_frame
    model = pipeline(frame, ESTIMATORS[name]()).fit(frame, y)
    artifact = save_model(model, store)
    assert artifact.format == FORMATS[name]
    assert artifact.metadata["classes"] == {"dtype": "<i8", "values": [0, 1]}
    assert artifact.metadata["feature_names_in"]["values"] == FEATURES
    loaded = load_model(store, artifact)
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame),
                               rtol=1e-6)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    # the preprocessing travels with the model: raw rows in, predictions out
    assert load_model(store, artifact.digest).predict(frame.head(3)).shape == (3,)


def test_parts_are_named_by_format(store, mixed_frame):
    frame, y = mixed_frame
    art = save_model(pipeline(frame, lgbm()).fit(frame, y), store)
    assert set(art.parts) == {"preprocessor", "booster", "config"}
    assert store.get_bytes(art.parts["booster"]).startswith(b"tree\n")  # LightGBM's own text
    art = save_model(pipeline(frame, mlp()).fit(frame, y), store)
    assert set(art.parts) == {"preprocessor", "weights", "config"}
    header = store.get_bytes(art.parts["weights"])
    assert json.loads(header[8:8 + int.from_bytes(header[:8], "little")])  # safetensors
    assert art.digests[0] == art.digest and len(art.digests) == 4
    assert ModelArtifact.read(store, art.digest) == art


def test_bare_models_round_trip(store, classification):
    X, y = classification
    target = X["x0"] * 2.0 + 1.0
    cases = [(lgbm("regressor").fit(X, target), "predict"),
             (lgbm().fit(X, y), "predict_proba"),
             (lgbm().fit(X, y).booster_, "predict"),
             (TorchMLPRegressor(hidden_sizes=(4,), max_epochs=5).fit(X, target), "predict"),
             (mlp(class_weight="balanced").fit(X, y), "predict_proba"),
             (LinearRegression().fit(X, target), "predict")]
    for model, method in cases:
        loaded = load_model(store, save_model(model, store))
        np.testing.assert_allclose(getattr(loaded, method)(X), getattr(model, method)(X),
                                   rtol=1e-6)


def test_regressors_have_no_predict_proba(store, classification):
    X, _ = classification
    model = Pipeline([("scale", StandardScaler()), ("model", lgbm("regressor"))]).fit(X, X["x0"])
    loaded = load_model(store, save_model(model, store))
    assert not hasattr(loaded, "predict_proba") and not hasattr(loaded[-1], "predict_proba")
    assert hasattr(load_model(store, save_model(lgbm().fit(X, X["x0"] > 0), store)),
                   "predict_proba")
    with pytest.raises(Exception, match="cannot be refitted"):
        loaded[-1].fit(X, X["x0"])


def test_encrypted_store_round_trip(tmp_path, classification):
    X, y = classification
    store = ArtifactStore(str(tmp_path / "enc"), key=bytes(range(32)))
    model = LogisticRegression().fit(X, y)
    np.testing.assert_array_equal(load_model(store, save_model(model, store)).predict(X),
                                  model.predict(X))


# --------------------------------------------------------- model hashes
@pytest.mark.parametrize("name", ESTIMATORS)
def test_same_data_params_and_seed_give_the_same_model_hash(store, mixed_frame, name):
    frame, y = mixed_frame
    first = save_model(pipeline(frame, ESTIMATORS[name]()).fit(frame, y), store)
    second = save_model(pipeline(frame, ESTIMATORS[name]()).fit(frame, y), store)
    assert first.digest == second.digest and first.parts == second.parts


def test_other_seed_or_data_gives_another_hash(store, classification):
    X, y = classification
    hashes = {save_model(RandomForestClassifier(n_estimators=3, random_state=s).fit(X, y),
                         store).digest for s in (0, 1)}
    hashes |= {save_model(mlp(seed=s).fit(X, y), store).digest for s in (0, 1)}
    hashes.add(save_model(LogisticRegression().fit(X[:100], y[:100]), store).digest)
    hashes.add(save_model(LogisticRegression().fit(X, y), store).digest)
    assert len(hashes) == 6


def test_model_hash_is_stable_across_processes(store, mixed_frame):
    """Object ids, zip timestamps and set order (PYTHONHASHSEED) must not leak
    into the bytes."""
    script = textwrap.dedent("""
        import sys, tempfile
        sys.path.insert(0, sys.argv[1])
        from conftest import make_mixed_frame
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from shipyard.store import ArtifactStore
        from shipyard.train import build_preprocessor, save_model
        frame, y = make_mixed_frame()
        model = Pipeline([("preprocess", build_preprocessor(frame, list(frame.columns))),
                          ("model", LogisticRegression(max_iter=300))]).fit(frame, y)
        print(save_model(model, ArtifactStore(tempfile.mkdtemp())).digest)
    """)
    frame, y = mixed_frame
    model = pipeline(frame, LogisticRegression(max_iter=300)).fit(frame, y)
    expected = save_model(model, store).digest
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


# ---------------------------------------------------------- tampering
@pytest.mark.parametrize("name", ["logreg", "lightgbm", "torch_mlp"])
def test_tampered_blob_is_refused(store, mixed_frame, name):
    frame, y = mixed_frame
    artifact = save_model(pipeline(frame, ESTIMATORS[name]()).fit(frame, y), store)
    for digest in artifact.digests:
        path = Path(store.blob_path(digest))
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # flip one bit
        with pytest.raises(ArtifactCorruptedError, match=digest):
            load_model(store, artifact)
        path.write_bytes(original)
    assert load_model(store, artifact).predict(frame.head(2)).shape == (2,)


def _crafted(store, skops_bytes, fmt="skops", role="model"):
    """A manifest pointing at hand-made skops bytes, as an attacker would write it."""
    manifest = {"shipyard_model": 1, "format": fmt, "parts": {role: store.put_bytes(skops_bytes)},
                "metadata": {}}
    return store.put_bytes(canonical_json(manifest))


class Evil(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_skops_file_with_a_function_reference_is_refused(store, classification):
    import skops.io as sio

    X, y = classification
    digest = _crafted(store, sio.dumps(FunctionTransformer(func=os.system)))
    with pytest.raises(ArtifactError, match=r"refused to load .*contains posix\.system"):
        load_model(store, digest)
    digest = _crafted(store, sio.dumps(Pipeline([("f", FunctionTransformer(func=np.load)),
                                                 ("m", LogisticRegression().fit(X, y))])))
    with pytest.raises(ArtifactError, match=r"contains numpy\.load \(a function\), outside"):
        load_model(store, digest)


def test_skops_file_with_a_class_outside_the_allow_list_is_refused(store, classification):
    import skops.io as sio

    X, y = classification
    digest = _crafted(store, sio.dumps(Evil().fit(X, y)))
    with pytest.raises(ArtifactError, match=rf"contains {__name__}\.Evil"):
        load_model(store, digest)


def test_skops_file_in_a_torch_preprocessor_slot_is_checked_too(store, classification):
    import skops.io as sio

    X, y = classification
    good = save_model(Pipeline([("scale", StandardScaler()), ("m", mlp())]).fit(X, y), store)
    manifest = json.loads(store.get_bytes(good.digest))
    manifest["parts"]["preprocessor"] = store.put_bytes(
        sio.dumps(Pipeline([("f", FunctionTransformer(func=os.system))])))
    with pytest.raises(ArtifactError, match="posix.system"):
        load_model(store, store.put_bytes(canonical_json(manifest)))


def test_malformed_parts_are_refused(store, classification):
    X, y = classification
    with pytest.raises(ArtifactError, match="not a valid skops file"):
        load_model(store, _crafted(store, b"PK\x03\x04 not a zip"))
    with pytest.raises(ArtifactError, match="not a model manifest"):
        load_model(store, store.put_bytes(b"{}"))
    with pytest.raises(ArtifactError, match="not a model manifest"):
        load_model(store, store.put_bytes(b"\x00binary"))
    good = save_model(mlp().fit(X, y), store)
    manifest = json.loads(store.get_bytes(good.digest))
    config = json.loads(store.get_bytes(manifest["parts"]["config"]))
    config["n_features_in"] = 99
    manifest["parts"]["config"] = store.put_bytes(canonical_json(config))
    with pytest.raises(ArtifactError, match="cannot rebuild the torch model"):
        load_model(store, store.put_bytes(canonical_json(manifest)))
    config["params"]["__class__"] = "os.system"
    manifest["parts"]["config"] = store.put_bytes(canonical_json(config))
    with pytest.raises(ArtifactError, match="torch model config is malformed"):
        load_model(store, store.put_bytes(canonical_json(manifest)))


def test_record_that_disagrees_with_its_manifest_is_refused(store, classification):
    X, y = classification
    a = save_model(LogisticRegression().fit(X, y), store)
    b = save_model(RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y), store)
    forged = a.model_copy(update={"parts": b.parts})
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        load_model(store, forged)


def test_load_model_bad_arguments(store):
    with pytest.raises(ArtifactError, match="takes a ModelArtifact or its digest, got int"):
        load_model(store, 42)
    with pytest.raises(ArtifactNotFoundError):
        load_model(store, "0" * 64)
    with pytest.raises(ArtifactError, match="is not a sha256 digest"):
        load_model(store, "../../etc/passwd")


# ----------------------------------------------------- unsupported saves
@pytest.mark.parametrize("make, match", [
    (lambda X, y: {"weights": [1, 2]}, "cannot save a builtins.dict"),
    (lambda X, y: (lambda x: x), "cannot save a builtins.function"),
    (lambda X, y: LogisticRegression(), "it is not fitted"),
    (lambda X, y: Pipeline([("s", StandardScaler()), ("m", mlp())]), "it is not fitted"),
    (lambda X, y: __import__("torch").nn.Linear(2, 2), "cannot save a torch.nn"),
    (lambda X, y: __import__("lightgbm").Dataset(X, y), "cannot save a lightgbm.basic.Dataset"),
    (lambda X, y: Evil().fit(X, y), r"holds .*Evil, which a model file may not contain"),
    (lambda X, y: Pipeline([("f", FunctionTransformer(func=os.system)),  # never fitted: it
                            ("m", LogisticRegression().fit(X, y))]),  # would call os.system
     "holds posix.system"),
    (lambda X, y: VotingClassifier([("a", mlp()), ("b", LogisticRegression())]).fit(X, y),
     "cannot save the sklearn.ensemble._voting.VotingClassifier with skops"),
])
def test_unsupported_models_are_refused_and_nothing_is_written(store, classification, make,
                                                               match):
    X, y = classification
    model = make(X, y)
    with pytest.raises(ArtifactError, match=match):
        save_model(model, store)
    assert list(store.iter_blobs()) == []


# ---------------------------------------------------------- allow-list
@pytest.mark.parametrize("name, allowed", [
    ("sklearn.tree._tree.Tree", True),
    ("sklearn.linear_model._logistic.LogisticRegression", True),
    ("numpy.dtype", True),
    ("builtins.slice", True),
    ("shipyard.train._preprocess.DateParts", True),
    ("numpy.lib._datasource.Repository", False),  # numpy, but deletes a folder on gc
    ("numpy.lib._datasource.DataSource", False),
    ("numpy.log1p", False),  # a function: no function is on the list
    ("numpy.load", False),
    ("numpy.memmap", False),
    ("numpy.lib._npyio_impl.NpzFile", False),
    ("scipy.sparse._csr.csr_matrix", False),
    ("shipyard.train._torch_mlp.TorchMLPClassifier", False),  # saved as safetensors
    ("shipyard.train._artifacts.ArtifactStore", False),
    ("shipyard.store._artifacts.ArtifactStore", False),
    ("posix.system", False),
    ("builtins.eval", False),
    ("builtins.getattr", False),
    ("sklearn.base.clone", False),
    ("sklearn.utils._testing.TempMemmap", False),
    ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", False),
    ("sklearn.neighbors._kd_tree.KDTree", False),
    ("sklearn.svm._classes.SVC", False),
    ("lightgbm.basic.Booster", False),
])
def test_allow_list(name, allowed):
    assert allowed_type(name) is allowed


# ------------------------------------------------------- missing extras
def test_torch_model_without_torch_names_the_format_and_the_extra(store, classification,
                                                                  monkeypatch):
    X, y = classification
    artifact = save_model(mlp().fit(X, y), store)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ArtifactError, match=r"(?s)torch format, which needs torch, not "
                                            r"installed.*pip install 'shipyard\[torch\]'") as info:
        load_model(store, artifact)
    assert isinstance(info.value.__cause__, ImportError)


def test_torch_model_without_torch_in_a_fresh_process(store, classification):
    """The same, where torch was never imported: no ModuleNotFoundError escapes."""
    X, y = classification
    artifact = save_model(mlp().fit(X, y), store)
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        from shipyard.errors import ArtifactError
        from shipyard.store import ArtifactStore
        from shipyard.train import load_model
        try:
            load_model(ArtifactStore(sys.argv[1]), sys.argv[2])
        except ArtifactError as exc:
            print(type(exc.__cause__).__name__, exc.hint)
    """)
    out = subprocess.run([sys.executable, "-c", script, store.root, artifact.digest],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ModuleNotFoundError pip install 'shipyard[torch]'"


def test_lightgbm_model_without_lightgbm_names_the_extra(store, classification, monkeypatch):
    X, y = classification
    artifact = save_model(lgbm().fit(X, y), store)
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(ArtifactError, match=r"(?s)lightgbm format, which needs lightgbm.*"
                                            r"pip install 'shipyard\[train\]'"):
        load_model(store, artifact)
