"""Bring your own model: a model trained outside ``shipyard train`` is
registered in one call, stored safely, with its signature inferred from a
sample, lineage to its run, the ONNX fast path, loading and serving; and
everything Shipyard cannot store safely is refused, naming the problem,
with nothing registered."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import NotFoundError, RegistryError, ShipyardError
from shipyard.registry import IMPORT_EXPERIMENT, LoggedModel, OnnxModel

from .trained import row_counts

import onnxruntime  # noqa: F401  (a dev dependency: fail loudly if missing)
import skl2onnx  # noqa: F401  (a dev dependency: fail loudly if missing)


def table(n: int = 160, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers (``age`` with gaps), a category and a whole-number column; binary ``y``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n),
                          "age": rng.integers(18, 80, n).astype(float),
                          "colour": np.array(["red", "green", "blue"])[np.arange(n) % 3],
                          "visits": rng.integers(0, 9, n)})
    frame.loc[::9, "age"] = np.nan
    y = ((frame["x0"] + (frame["colour"] == "red")) > 0.5).astype(int).to_numpy()
    return frame, y


def pipeline(frame: pd.DataFrame, y: np.ndarray):
    """What a user builds by hand: imputing, scaling, one-hot, logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    prep = ColumnTransformer([("num", numeric, ["x0", "x1", "age", "visits"]),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])])
    return Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=500))]).fit(frame, y)


def numbers(n: int = 200, features: int = 4, classes: int = 2, seed: int = 0):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=features, n_informative=3,
                               n_redundant=0, n_classes=classes, random_state=seed)
    return X, y


def run_count(ws) -> int:
    return ws.counts()["runs"]


# ----------------------------------------------------------- scikit-learn
def test_sklearn_pipeline_is_registered_in_one_call(workspace):
    frame, y = table()
    model = pipeline(frame, y)
    v = workspace.models.register("fraud", model, sample=frame.head(100), target="y")
    assert v.ref == "fraud@1" and v.new
    inputs = {c["name"]: c for c in v.signature["inputs"]}
    assert list(inputs) == ["x0", "x1", "age", "colour", "visits"]
    assert inputs["age"] == {"name": "age", "dtype": "float64", "kind": "numeric",
                             "nullable": True}
    assert inputs["visits"]["dtype"] == "int64" and not inputs["visits"]["nullable"]
    assert inputs["colour"]["kind"] == "categorical"
    assert inputs["colour"]["categories"] == ["blue", "green", "red"]
    assert v.signature["output"] == {"target": "y", "task": "binary", "kind": "probabilities",
                                     "classes": [0, 1]}
    assert v.tags["onnx"] == "converted" and v.tags["onnx.digest"] in v.blob_digests
    loaded = workspace.models.load("fraud")
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))
    run = workspace.runs.get(v.run_id)
    assert run.experiment == IMPORT_EXPERIMENT and run.status == "FINISHED"
    assert run.tags["model.digest"] == v.artifact_digest and run.tags["model.format"] == "skops"
    paths = {a.path for a in workspace.runs.artifacts(run.id)}
    assert {"model/signature.json", "model/sample.parquet", "model/manifest.json"} <= paths
    # the same model again is the same version
    again = workspace.models.register("fraud", model, sample=frame.head(100), target="y")
    assert again.ref == "fraud@1" and not again.new


def test_array_sample_takes_the_models_feature_names_or_x0(sqlite_workspace):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    named = LogisticRegression().fit(pd.DataFrame(X, columns=list("abcd")), y)
    v = sqlite_workspace.models.register("named", named, sample=X[:20])
    assert [c["name"] for c in v.signature["inputs"]] == ["a", "b", "c", "d"]
    bare = LogisticRegression().fit(X, y)
    v = sqlite_workspace.models.register("bare", bare, sample=X[:20])
    assert [c["name"] for c in v.signature["inputs"]] == ["x0", "x1", "x2", "x3"]
    assert v.tags["onnx"] == "converted"
    np.testing.assert_array_equal(v.load().predict(X), bare.predict(X))


def test_skops_file_goes_through_the_allow_list(sqlite_workspace, tmp_path):
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    X, y = numbers()
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    path = tmp_path / "tree.skops"
    sio.dump(model, path)
    v = sqlite_workspace.models.register("tree", str(path), sample=X[:30])
    np.testing.assert_array_equal(v.load().predict(X), model.predict(X))
    assert sqlite_workspace.runs.get(v.run_id).tags["model.source"] == "file tree.skops"


# ------------------------------------------------------------- LightGBM
def test_lightgbm_model_and_booster_file(sqlite_workspace, tmp_path):
    import lightgbm

    X, y = numbers(classes=3)
    frame = pd.DataFrame(X, columns=list("abcd"))
    clf = lightgbm.LGBMClassifier(n_estimators=15, verbose=-1).fit(frame, y)
    v = sqlite_workspace.models.register("lgbm", clf, sample=frame.head(50))
    assert sqlite_workspace.runs.get(v.run_id).tags["model.format"] == "lightgbm"
    assert v.signature["output"]["task"] == "multiclass" and v.tags["onnx"] == "converted"
    np.testing.assert_allclose(v.load().predict_proba(frame), clf.predict_proba(frame))

    path = tmp_path / "model.txt"
    clf.booster_.save_model(str(path))
    v = sqlite_workspace.models.register("lgbm-file", str(path), sample=frame.head(50),
                                         classes=["a", "b", "c"])
    assert v.signature["output"]["classes"] == ["a", "b", "c"]
    loaded = v.load()
    np.testing.assert_allclose(loaded.predict_proba(frame), clf.predict_proba(frame))
    assert set(loaded.predict(frame)) <= {"a", "b", "c"}


# ----------------------------------------------------------------- ONNX
def onnx_file(model, X, path, **options) -> str:
    from skl2onnx import to_onnx

    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): options} if options
                  else None)
    path.write_bytes(onx.SerializeToString())
    return str(path)


def test_onnx_file_without_and_with_a_sample(sqlite_workspace, tmp_path):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers(classes=3)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = onnx_file(model, X, tmp_path / "m.onnx")  # ZipMap output, as skl2onnx's default
    v = sqlite_workspace.models.register("graph", path)
    assert [c["dtype"] for c in v.signature["inputs"]] == ["float32"] * 4
    assert v.signature["output"] == {"task": "multiclass", "kind": "probabilities",
                                     "classes": [0, 1, 2]}
    assert v.tags["onnx"].startswith("unsupported")  # no rows to verify the fast path on
    loaded = v.load()
    assert isinstance(loaded, OnnxModel)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-5)

    v = sqlite_workspace.models.register("graph-sampled", path, sample=X[:40])
    assert v.tags["onnx"] == "converted"
    assert [c["name"] for c in v.signature["inputs"]] == ["x0", "x1", "x2", "x3"]


def test_onnx_graph_with_foreign_operators_is_refused(sqlite_workspace, tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Evil", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    path = tmp_path / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    before = row_counts(sqlite_workspace), run_count(sqlite_workspace)
    with pytest.raises(ShipyardError, match="com.example"):
        sqlite_workspace.models.register("evil", str(path))
    assert (row_counts(sqlite_workspace), run_count(sqlite_workspace)) == before


# ---------------------------------------------------------------- torch
def test_torch_module_is_exported_to_onnx(sqlite_workspace):
    import torch
    torch.manual_seed(0)
    X, _ = numbers(classes=3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    v = sqlite_workspace.models.register("net", net, sample=X[:32].astype(np.float32))
    assert sqlite_workspace.runs.get(v.run_id).tags["model.format"] == "onnx"
    assert v.signature["output"]["classes"] == [0, 1, 2] and v.tags["onnx"] == "converted"
    with torch.no_grad():
        logits = net(torch.tensor(X, dtype=torch.float32)).numpy()
    loaded = v.load()
    np.testing.assert_allclose(loaded.predict_proba(X),
                               torch.softmax(torch.tensor(logits), 1).numpy(), atol=1e-5)
    np.testing.assert_array_equal(loaded.predict(X), logits.argmax(1))


def test_torch_binary_logit_with_task_and_labels(sqlite_workspace):
    import torch
    torch.manual_seed(0)
    X, _ = numbers()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    net = torch.nn.Linear(4, 1)
    v = sqlite_workspace.models.register("logit", net, sample=frame, task="binary",
                                         classes=["no", "yes"])
    assert v.signature["output"]["classes"] == ["no", "yes"]
    assert [c["name"] for c in v.signature["inputs"]] == ["a", "b", "c", "d"]
    assert v.tags["onnx"] == "converted"
    with torch.no_grad():
        p = torch.sigmoid(net(torch.tensor(X, dtype=torch.float32))).numpy().ravel()
    loaded = v.load()
    np.testing.assert_allclose(loaded.predict_proba(frame)[:, 1], p, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(frame), np.where(p > 0.5, "yes", "no"))


# -------------------------------------------------------------- XGBoost
def test_xgboost_classifier(sqlite_workspace):
    import xgboost
    X, y = numbers(classes=3)
    frame = pd.DataFrame(X, columns=list("abcd"))
    clf = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(frame, y)
    v = sqlite_workspace.models.register("xgb", clf, sample=frame.head(40))
    assert sqlite_workspace.runs.get(v.run_id).tags["model.format"] == "xgboost"
    loaded = v.load()
    np.testing.assert_allclose(loaded.predict_proba(frame), clf.predict_proba(frame),
                               atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))


def test_xgboost_missing_says_what_to_install(sqlite_workspace, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now fails
    fake = type("XGBClassifier", (), {"__module__": "xgboost.sklearn"})()
    with pytest.raises(ShipyardError, match="pip install xgboost"):
        sqlite_workspace.models.register("xgb", fake, sample=np.zeros((2, 2)))


# ------------------------------------------------------------- refusals
def test_disallowed_types_are_refused_by_name_and_nothing_is_registered(sqlite_workspace):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = numbers()
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    before = row_counts(sqlite_workspace), run_count(sqlite_workspace)
    with pytest.raises(RegistryError, match="HistGradientBoostingClassifier") as info:
        sqlite_workspace.models.register("hgb", model, sample=X[:10])
    assert "ONNX" in str(info.value)  # the way out
    assert (row_counts(sqlite_workspace), run_count(sqlite_workspace)) == before


def test_custom_function_in_a_pipeline_is_refused(sqlite_workspace):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = numbers()
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(abs(X), y)
    with pytest.raises(RegistryError, match="log1p"):
        sqlite_workspace.models.register("custom", model, sample=abs(X[:10]))


@pytest.mark.parametrize("case", ["no sample", "missing column", "extra column", "width",
                                  "one column", "unsupported", "task on sklearn",
                                  "digest with model"])
def test_bad_inputs_name_the_problem(sqlite_workspace, case):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    frame = pd.DataFrame(X, columns=list("abcd"))
    model = LogisticRegression().fit(frame, y)
    source, kwargs, pattern = {
        "no sample": (model, {}, "needs sample="),
        "missing column": (model, {"sample": frame[["a", "b", "c"]]}, "lacks 'd'"),
        "extra column": (model, {"sample": frame.assign(z=1.0)}, "has 'z', not a feature"),
        "width": (LogisticRegression().fit(X, y), {"sample": X[:, :3]}, "3 columns.*takes 4"),
        "one column": (model, {"sample": frame["a"]}, "one column"),
        "unsupported": ({"weights": [1, 2]}, {"sample": X}, "cannot register a builtins.dict"),
        "task on sklearn": (model, {"sample": frame, "task": "binary"}, "task="),
        "digest with model": (model, {"sample": frame, "artifact_digest": "0" * 64},
                              "artifact_digest="),
    }[case]
    before = row_counts(sqlite_workspace), run_count(sqlite_workspace)
    with pytest.raises(RegistryError, match=pattern):
        sqlite_workspace.models.register("m", source, **kwargs)
    assert (row_counts(sqlite_workspace), run_count(sqlite_workspace)) == before


def test_missing_paths_and_pickles_are_refused(sqlite_workspace, tmp_path):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    model = LogisticRegression().fit(X, y)
    with pytest.raises(NotFoundError, match="does not exist"):
        sqlite_workspace.models.register("m", str(tmp_path / "nope.onnx"), sample=X)
    for name in ("model.pkl", "model.model"):  # by suffix, and by content
        path = tmp_path / name
        path.write_bytes(pickle.dumps(model, protocol=4))
        with pytest.raises(RegistryError, match="pickle"):
            sqlite_workspace.models.register("m", str(path), sample=X)
    assert row_counts(sqlite_workspace)["registered_models"] == 0
    assert run_count(sqlite_workspace) == 0


def test_torch_save_file_is_refused(sqlite_workspace, tmp_path):
    import torch
    path = tmp_path / "net.bin.zip"
    torch.save(torch.nn.Linear(2, 1), path)
    with pytest.raises(RegistryError, match="pickle"):
        sqlite_workspace.models.register("m", str(path), sample=np.zeros((2, 2)))


# -------------------------------------------------------------- lineage
def test_log_model_in_a_run_keeps_its_lineage(workspace):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    frame = pd.DataFrame(X, columns=list("abcd"))
    data = workspace.datasets.register("train_set", frame.assign(y=y))
    with workspace.start_run("fraud", inputs=[data]) as run:
        model = LogisticRegression().fit(frame, y)
        run.log_metric("accuracy", model.score(frame, y))
        logged = run.log_model(model, sample=frame.head(30), registered_model_name="fraud")
        assert isinstance(logged, LoggedModel) and logged.format == "skops"
    v = logged.version
    assert v.run_id == run.id and v.dataset_version == "train_set@1"
    assert v.metrics["accuracy"] == pytest.approx(model.score(frame, y))
    assert str(workspace.models.lineage(v.ref)).startswith("train_set@1 → run ")
    assert v.tags["onnx"] == "converted"


def test_log_model_then_register_the_run(sqlite_workspace):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    model = LogisticRegression().fit(X, y)
    with sqlite_workspace.start_run("fraud") as run:
        logged = run.log_model(model, sample=X[:30])
        assert logged.version is None
        with pytest.raises(RegistryError, match="one model"):
            run.log_model(LogisticRegression(C=0.1).fit(X, y), sample=X[:30])
    # registered later by run id: the ONNX fast path is verified on the logged sample
    v = sqlite_workspace.models.register("fraud", run.id)
    assert v.artifact_digest == logged.artifact_digest and v.tags["onnx"] == "converted"
    assert v.signature == logged.signature


def test_register_into_an_active_run(sqlite_workspace):
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    with sqlite_workspace.start_run("mine") as run:
        v = sqlite_workspace.models.register("fraud", LogisticRegression().fit(X, y),
                                             sample=X[:20], run=run)
    assert v.run_id == run.id
    with pytest.raises(RegistryError, match="has ended"):
        sqlite_workspace.models.register("fraud", LogisticRegression().fit(X, y),
                                         sample=X[:20], run=run)


# --------------------------------------------------------------- MLflow
def mlflow_folder(path, flavors: dict, files: dict[str, bytes], example=None):
    import yaml

    path.mkdir()
    doc = {"artifact_path": "model", "flavors": flavors, "run_id": "abc123",
           "model_uuid": "u-1", "mlflow_version": "3.1.0"}
    if example is not None:
        (path / "input_example.json").write_text(json.dumps(example))
        doc["saved_input_example_info"] = {"artifact_path": "input_example.json",
                                           "type": "dataframe", "pandas_orient": "split"}
        doc["signature"] = {"inputs": json.dumps([{"type": "double", "name": c}
                                                  for c in example["columns"]])}
    (path / "MLmodel").write_text(yaml.safe_dump(doc))
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def test_mlflow_onnx_model_is_imported_and_pickles_refused(sqlite_workspace, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = numbers()
    model = LogisticRegression().fit(X.astype(np.float32), y)
    graph = to_onnx(model, X[:1].astype(np.float32)).SerializeToString()
    example = {"columns": ["f0", "f1", "f2", "f3"], "data": X[:5].tolist()}
    folder = mlflow_folder(tmp_path / "onnx_model",
                           {"onnx": {"data": "model.onnx", "onnx_version": "1.16"},
                            "python_function": {"loader_module": "mlflow.onnx"}},
                           {"model.onnx": graph}, example)
    v = sqlite_workspace.models.register("imported", str(folder))
    assert [c["name"] for c in v.signature["inputs"]] == ["f0", "f1", "f2", "f3"]
    assert v.tags["mlflow.run_id"] == "abc123" and v.tags["mlflow.flavor"] == "onnx"
    assert v.tags["onnx"] == "converted"
    np.testing.assert_array_equal(v.load().predict(X), model.predict(X.astype(np.float32)))

    pickled = mlflow_folder(tmp_path / "sk_model",
                            {"sklearn": {"pickled_model": "model.pkl",
                                         "serialization_format": "cloudpickle"}},
                            {"model.pkl": pickle.dumps(model)}, example)
    with pytest.raises(RegistryError, match="sklearn as cloudpickle") as info:
        sqlite_workspace.models.register("imported", str(pickled))
    assert "skops" in str(info.value)


# -------------------------------------------------------------- serving
def test_byo_models_are_served_over_http(sqlite_workspace, tmp_path):
    import httpx
    from serve.conftest import LiveServer, bearer

    from shipyard.serve import create_app

    ws = sqlite_workspace
    frame, y = table()
    model = pipeline(frame, y)
    ws.models.register("fraud", model, sample=frame)
    X, yy = numbers(classes=3)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=500).fit(X.astype(np.float32), yy)
    ws.models.register("graph", onnx_file(lr, X, tmp_path / "lr.onnx"), sample=X[:50])
    secret = ws.keys.create("test", ["predict"], actor="tests")[1]
    app = create_app(ws, ["fraud", "graph"], reload_interval=0, key_cache_ttl=0,
                     prediction_log=False)
    rows = frame.head(5).replace({np.nan: None}).to_dict(orient="records")
    vectors = pd.DataFrame(X[:5], columns=["x0", "x1", "x2", "x3"]).to_dict(orient="records")
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=bearer(secret),
                                                 timeout=30) as client:
        slots = app.state.serving.slots.slots
        assert slots["fraud"].current.runtime == "onnx"
        assert slots["graph"].current.runtime == "onnx"
        r = client.post("/v1/models/fraud:predict", json={"records": rows})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(frame.head(5)).tolist()
        np.testing.assert_allclose(r.json()["probabilities"],
                                   model.predict_proba(frame.head(5)), atol=1e-4)
        r = client.post("/v1/models/graph:predict", json={"records": vectors})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == lr.predict(X[:5].astype(np.float32)).tolist()
        r = client.post("/v1/models/fraud:predict", json={"records": [{"x0": 1.0}]})
        assert r.status_code == 422 and "missing column" in r.text


# ------------------------------------------------------------------ CLI
def test_cli_registers_a_file_with_a_sample(tmp_path, monkeypatch):
    import lightgbm
    import typer
    from typer.testing import CliRunner

    from shipyard import Workspace
    from shipyard.cli._common import set_home
    from shipyard.cli._register import register_command

    X, y = numbers()
    frame = pd.DataFrame(X, columns=list("abcd"))
    booster = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(frame, y).booster_
    booster.save_model(str(tmp_path / "model.txt"))
    frame.head(20).to_csv(tmp_path / "sample.csv", index=False)
    home = tmp_path / "home"
    app = typer.Typer()
    app.command()(register_command)
    app.command("noop")(lambda: None)  # two commands: the first is named, not the default
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    set_home(str(home))
    runner = CliRunner()
    out = runner.invoke(app, ["register-command", "booster", str(tmp_path / "model.txt"),
                              "--sample", str(tmp_path / "sample.csv"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["ref"] == "booster@1" and data["tags"]["onnx"] == "converted"
    out = runner.invoke(app, ["register-command", "m", str(tmp_path / "model.txt")])
    assert out.exit_code != 0 and "needs sample=" in str(out.exception)
    with Workspace.open(home) as ws:
        assert ws.models.get("booster@1").signature["inputs"][0]["name"] == "a"
