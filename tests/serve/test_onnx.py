"""The ONNX Runtime fast path: converted at registration, verified against
the Python model, used by the server, and refused (with the reason recorded)
for models it cannot represent."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import LiveServer, project, record, toy_frame

import onnxruntime  # noqa: F401  (a dev dependency: fail loudly if missing)
import skl2onnx  # noqa: F401  (a dev dependency: fail loudly if missing)
import onnxmltools  # noqa: F401  (a dev dependency: fail loudly if missing)


def estimator_project(name: str, estimator: str) -> str:
    text = project(3, name).split("    - name: logreg")[0]
    return text + f"""    - name: only
      estimator: {estimator}
"""


@pytest.fixture(scope="module")
def versions(served):
    """``{kind: ModelVersion}`` registered with ``onnx=True``."""
    from shipyard.project import parse_project
    from shipyard.train import train

    ws, runs = served
    out = {"logreg": ws.models.register("toy-onnx", runs[0], onnx=True)}
    for kind, estimator in (("lightgbm", "lightgbm"), ("torch", "torch_mlp"),
                            ("dummy", "sklearn.dummy.DummyClassifier")):
        run = train(ws, parse_project(estimator_project(f"onnx-{kind}", estimator))).study_run_id
        out[kind] = ws.models.register(f"toy-{kind}", run, onnx=True)
    return out


def unseen_rows():
    frame = toy_frame(300, seed=11).drop(columns="y")
    frame.loc[::7, "colour"] = "purple"  # unknown category: ignored by the one-hot encoder
    return frame


@pytest.mark.parametrize("kind", ["logreg", "lightgbm", "torch"])
def test_pipeline_converts_and_predicts_like_the_model(served, versions, kind):
    from shipyard.registry._onnx import DIGEST_TAG, load_onnx

    ws = served[0]
    v = versions[kind]
    assert v.tags["onnx"] == "converted"
    assert v.tags[DIGEST_TAG] in v.blob_digests  # gc keeps it
    model = v.load()
    predictor = load_onnx(ws, v, classes=model.classes_)
    rows = unseen_rows()
    labels, proba = predictor.predict(rows)
    np.testing.assert_array_equal(labels, model.predict(rows))
    np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-4)


def test_lightgbm_pipeline_one_hot_encodes_categories(versions):
    model = versions["lightgbm"].load()
    assert type(model.steps[-1][1]).__name__ == "LightGBMModel"
    encoders = [t for _, t, _ in model.steps[0][1].transformers_ if hasattr(t, "steps")]
    assert any(type(s).__name__ == "OneHotEncoder" for t in encoders for _, s in t.steps)


def test_unsupported_model_records_the_reason(versions):
    tags = versions["dummy"].tags
    assert tags["onnx"].startswith("unsupported: ") and "onnx.digest" not in tags
    assert "DummyClassifier" in tags["onnx"]


def torch_pipeline(estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return Pipeline([
        ("columns", ColumnTransformer([("numbers", StandardScaler(), ["x0", "x1", "x2"]),
                                       ("colour", OneHotEncoder(handle_unknown="ignore"),
                                        ["colour"])])),
        ("model", estimator)])


SIGNATURE = {"inputs": [{"name": "x0", "dtype": "float64"}, {"name": "x1", "dtype": "float64"},
                        {"name": "x2", "dtype": "float64"}, {"name": "colour", "dtype": "object"}]}


def test_torch_classifier_with_dropout_and_string_classes_converts():
    from shipyard.registry._onnx import OnnxPredictor, convert_onnx
    from shipyard.train import TorchMLPClassifier

    frame = toy_frame(300, seed=3)
    y = np.array(["low", "mid", "high"])[(frame["x0"] > 0).astype(int) + (frame["x1"] > 1)]
    model = torch_pipeline(TorchMLPClassifier(hidden_sizes=(16, 8), dropout=0.3,
                                              max_epochs=20)).fit(frame, y)
    result = convert_onnx(model, SIGNATURE, frame)
    assert result.outcome == "converted" and result.max_diff < 1e-5
    rows = unseen_rows()
    labels, proba = OnnxPredictor(result.onnx, SIGNATURE, classes=model.classes_).predict(rows)
    np.testing.assert_array_equal(labels, model.predict(rows))
    np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-5)


def test_torch_regressor_converts_with_its_target_scale():
    from shipyard.registry._onnx import OnnxPredictor, convert_onnx
    from shipyard.train import TorchMLPRegressor

    frame = toy_frame(300, seed=4)
    y = 30 * frame["x0"] - 7 * frame["x2"] + 500  # de-standardised by y * scale + mean
    model = torch_pipeline(TorchMLPRegressor(hidden_sizes=(8,), max_epochs=20)).fit(frame, y)
    result = convert_onnx(model, {**SIGNATURE, "output": {"task": "regression"}}, frame)
    assert result.outcome == "converted"
    values, proba = OnnxPredictor(result.onnx, SIGNATURE).predict(unseen_rows())
    assert proba is None and values.dtype == np.float64
    np.testing.assert_allclose(values, model.predict(unseen_rows()), atol=1e-4)


def test_mismatch_is_refused():
    from shipyard.registry._onnx import _compare

    out = _compare(b"x", np.array([0, 1]), np.array([0, 0]), np.array([[1.0, 0], [0, 1]]),
                   np.array([[1.0, 0], [0.6, 0.4]]), False, 1e-4)
    assert out.outcome.startswith("mismatch: labels differ on 1/2 rows") and not out.converted


def test_registering_without_onnx_adds_nothing(served):
    ws, runs = served
    v = ws.models.register("toy-plain", runs[1], onnx=False)
    assert not any(tag.startswith("onnx") for tag in v.tags)
    assert ws.models.get("toy@1").tags["onnx"] == "converted"  # the default converts


def test_server_uses_onnx_and_falls_back_for_the_rest(served, versions):
    import httpx

    from shipyard.serve import create_app

    ws = served[0]
    refs = ["toy-onnx@1", "toy-lightgbm@1", "toy-torch@1", "toy-dummy@1"]
    app = create_app(ws, refs, auth=False, reload_interval=0, prediction_log=False)
    rows = [record(), record(colour="blue", age=None), record(colour="purple")]
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        slots = app.state.serving.slots.slots
        assert [slots[r.split("@")[0]].current.runtime for r in refs] == \
            ["onnx", "onnx", "onnx", "python"]
        for ref in refs:
            name = ref.split("@")[0]
            r = c.post(f"/v1/models/{name}:predict", json={"records": rows})
            assert r.status_code == 200, r.text
            loaded = slots[name].current
            frame = loaded.schema and __import__("pandas").DataFrame(rows)
            want = loaded.model.predict_proba(frame)
            np.testing.assert_allclose(r.json()["probabilities"], want, atol=1e-4)
