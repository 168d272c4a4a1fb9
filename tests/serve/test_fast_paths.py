"""The serving fast paths give exactly the answers of the slow ones: requests
validated into column arrays (no DataFrame) predict, decide and log what
their DataFrame does, for every kind of model; LightGBM on one thread for
small inputs predicts what it predicts on many."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pandas as pd
import pytest

from shipyard.deploy import (
    LoadedModel,
    PredictionLog,
    Schema,
    frame_from_records,
    read_predictions,
)
from shipyard.deploy._schema import Columns, frame_from_columns

from .conftest import LiveServer, project, toy_frame


def estimator_project(name: str, estimator: str) -> str:
    text = project(5, name).split("    - name: logreg")[0]
    return text + f"""    - name: only
      estimator: {estimator}
"""


@pytest.fixture(scope="module")
def kinds(served):
    """``{kind: (ModelVersion, model)}`` for every kind the registry makes."""
    from shipyard.project import parse_project
    from shipyard.train import train

    ws = served[0]
    out = {"logreg": ws.models.get("toy@1")}
    for kind, estimator in (("lightgbm", "lightgbm"), ("torch", "torch_mlp")):
        run = train(ws, parse_project(estimator_project(f"fast-{kind}", estimator))).study_run_id
        out[kind] = ws.models.register(f"fast-{kind}", run, onnx=True)
    out["mitigated"] = ws.mitigate(out["lightgbm"].ref, "toy@latest", target="y",
                                   sensitive="colour", register_as="fast-fair").version
    for kind, version in out.items():
        assert version.tags["onnx"] == "converted", (kind, version.tags["onnx"])
    return {kind: (version, version.load()) for kind, version in out.items()}


def rows(n: int = 300) -> list[dict]:
    """Records with missing ages and unknown categories."""
    frame = toy_frame(n, seed=21).drop(columns="y")
    frame.loc[::7, "colour"] = "purple"
    return orjson.loads(frame.to_json(orient="records"))


def loaded(ws, version, model, onnx: bool) -> LoadedModel:
    from shipyard.registry import load_onnx

    fast = load_onnx(ws, version, classes=getattr(model, "classes_", None)) if onnx else None
    return LoadedModel(version, model, Schema.from_signature(version.signature), onnx=fast)


# ------------------------------------------------------------ the columns
SIGNATURE = {"inputs": [
    {"name": "x", "dtype": "float64", "kind": "numeric"},
    {"name": "n", "dtype": "int64", "kind": "numeric", "nullable": False},
    {"name": "colour", "dtype": "object", "kind": "categorical"},
    {"name": "member", "dtype": "bool", "kind": "categorical"},
    {"name": "rank", "dtype": "int64", "kind": "categorical", "categories": [1, 2, 3]},
    {"name": "when", "dtype": "datetime64[ns]", "kind": "datetime"},
    {"name": "note", "dtype": "object", "kind": "text"},
]}


def columns_of(i: int) -> dict:
    return {"x": [[0.1 * i, None, 1 / 3][i % 3]], "n": [i],
            "colour": [["red", None, "ü/ß"][i % 3]], "member": [[True, False, None][i % 3]],
            "rank": [[1, 2, None, 2.5][i % 4]],
            "when": [["2024-01-02T03:04:05.123456", "2024-05-06", None][i % 3]],
            "note": [f"line {i}\nwith \"quotes\" and \u2028"]}


def test_columns_hold_what_the_dataframe_holds():
    schema = Schema.from_signature(SIGNATURE)
    for i in range(12):
        frame = frame_from_columns(schema, columns_of(i))
        fast = frame_from_columns(schema.with_columns(), columns_of(i))
        assert isinstance(fast, Columns) and len(fast) == 1 and fast.columns == schema.names
        pd.testing.assert_frame_equal(fast.to_frame(), frame)
        pd.testing.assert_frame_equal(fast[["x", "colour"]].to_frame(), frame[["x", "colour"]])


def test_merged_columns_are_one_request_with_all_their_rows():
    schema = Schema.from_signature({"inputs": [c for c in SIGNATURE["inputs"]
                                               if c["name"] != "rank"]})
    inputs = [{n: c[n] for n in schema.names} for c in map(columns_of, range(7))]
    merged = Columns.concat([frame_from_columns(schema.with_columns(), c) for c in inputs])
    together = {n: [v for c in inputs for v in c[n]] for n in schema.names}
    pd.testing.assert_frame_equal(merged.to_frame(), frame_from_columns(schema, together))


def test_columns_refuse_to_merge_what_pandas_would_retype():
    schema = Schema.from_signature(SIGNATURE).with_columns()
    with pytest.raises(ValueError, match="numbers in a list column"):  # [1] + [2.5]: 1.0
        Columns.concat([frame_from_columns(schema, columns_of(i)) for i in (0, 3)])


# ------------------------------------------------------------ predictions
@pytest.mark.parametrize("kind", ["logreg", "lightgbm", "torch", "mitigated"])
@pytest.mark.parametrize("onnx", [True, False], ids=["onnx", "python"])
def test_every_kind_predicts_the_same_from_columns(served, kinds, kind, onnx):
    version, model = kinds[kind]
    model_in_memory = loaded(served[0], version, model, onnx)
    assert model_in_memory.runtime == ("onnx" if onnx else "python")
    records = rows()
    frame = frame_from_records(model_in_memory.schema, records)
    fast = frame_from_records(model_in_memory.request_schema, records)
    assert isinstance(fast, Columns)
    want, got = model_in_memory.predict(frame), model_in_memory.predict(fast)
    np.testing.assert_array_equal(got.predictions, want.predictions)
    np.testing.assert_array_equal(got.probabilities, want.probabilities)
    # and the ONNX graph answers as the Python model does
    np.testing.assert_array_equal(got.predictions, model.predict(frame))
    if got.probabilities is not None:
        np.testing.assert_allclose(got.probabilities, model.predict_proba(frame), atol=1e-4)


def test_thresholded_model_decides_columns_as_its_dataframe(served, kinds):
    version, model = kinds["mitigated"]
    schema = Schema.from_signature(version.signature)
    records = rows()
    frame = frame_from_records(schema, records)
    fast = frame_from_records(schema.with_columns(), records)
    scores = np.random.default_rng(0).random(len(records))
    np.testing.assert_array_equal(model.decide(fast, scores), model.decide(frame, scores))
    for i in range(40):  # one row at a time: the per-row hash
        one = frame_from_records(schema.with_columns(), records[i:i + 1])
        assert model.decide(one, scores[i:i + 1])[0] == model.decide(frame, scores)[i]


def test_lightgbm_predicts_the_same_on_one_thread_and_on_many(kinds):
    _, model = kinds["lightgbm"]
    estimator = model.steps[-1][1]
    features = model.steps[0][1].transform(toy_frame(2500, seed=8).drop(columns="y"))
    assert len(features) > estimator.ONE_THREAD_ROWS
    many = estimator.predict_proba(features)
    one_thread = np.concatenate([estimator.predict_proba(features[i:i + 500])
                                 for i in range(0, 2500, 500)])
    np.testing.assert_array_equal(one_thread, many)


# ------------------------------------------------------------ the log
def test_log_writes_columns_as_it_writes_their_dataframe(tmp_path):
    """Merged in one ``to_json`` (model ``bulk``), or one by one where a merged
    column would be typed otherwise (``rank``: numbers in a category column)."""
    full = Schema.from_signature(SIGNATURE)
    bulk = Schema.from_signature({"inputs": [c for c in SIGNATURE["inputs"]
                                             if c["name"] != "rank"]})
    slow, fast = PredictionLog(tmp_path / "slow"), PredictionLog(tmp_path / "fast")
    for model, schema in (("bulk", bulk), ("full", full)):
        many = {n: [v for i in range(3) for v in columns_of(i)[n]] for n in schema.names}
        batches = [{n: c[n] for n in schema.names} for c in map(columns_of, range(12))]
        for i, columns in enumerate([*batches, many]):
            for log, rows_in in ((slow, frame_from_columns(schema, columns)),
                                 (fast, frame_from_columns(schema.with_columns(), columns))):
                log.record_prediction(request_id=f"{model}{i}", model=model, version=1,
                                      endpoint="e", status=200, latency_ms=1.5, inputs=rows_in,
                                      outputs={"predictions": np.array(["a"] * len(rows_in),
                                                                       dtype=object)})
    slow.close()
    fast.close()
    want, got = read_predictions(tmp_path / "slow"), read_predictions(tmp_path / "fast")
    assert len(got) == 26 and list(got["inputs"]) == list(want["inputs"])  # the very text
    pd.testing.assert_frame_equal(got.drop(columns="ts"), want.drop(columns="ts"))
    assert orjson.loads(got["inputs"].iloc[12])[1]["x"] is None


def test_log_slices_a_large_queue_into_one_file_per_model_and_day(tmp_path):
    schema = Schema.from_signature({"inputs": SIGNATURE["inputs"][:4]}).with_columns()
    log = PredictionLog(tmp_path)
    for i in range(700):
        columns = {n: v for n, v in columns_of(i % 3).items() if n in schema.names}
        log.record_prediction(request_id=f"r{i}", model=["a", "b"][i % 2], version=1,
                              endpoint="e", status=200, latency_ms=1.0,
                              inputs=frame_from_columns(schema, columns),
                              outputs={"predictions": [i]})
    assert log.flush() == 700
    assert len(list(tmp_path.glob("predictions/model=*/date=*/part-*.parquet"))) == 2
    logged = read_predictions(tmp_path, model="b")
    assert len(logged) == 350 and list(logged["request_id"][:2]) == ["r1", "r3"]
    assert [orjson.loads(o)["predictions"] for o in logged["outputs"][:2]] == [[1], [3]]


# ------------------------------------------------------------ the server
def test_server_answers_and_logs_from_columns(served, kinds):
    import httpx

    from shipyard.serve import create_app

    ws = served[0]
    refs = [kinds[k][0].ref for k in ("torch", "mitigated")]
    app = create_app(ws, refs, auth=False, reload_interval=0, log_flush_interval=3600)
    records = rows(40)
    start = time.time()
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        for ref in refs:
            name = ref.split("@")[0]
            assert app.state.serving.slots.slots[name].current.runtime == "onnx"
            got = [c.post(f"/invocations?model={name}",
                          json={"dataframe_records": [r]}).json()["predictions"][0]
                   for r in records]
            whole = c.post(f"/invocations?model={name}",
                           json={"dataframe_records": records}).json()["predictions"]
            version = ws.models.get(ref)
            schema = Schema.from_signature(version.signature)
            want = version.load().predict(frame_from_records(schema, records)).tolist()
            assert got == want and whole == want
    for ref in refs:
        logged = read_predictions(ws, model=ref.split("@")[0], since=start)
        assert len(logged) == len(records) + 1
        schema = Schema.from_signature(ws.models.get(ref).signature)
        assert logged["inputs"].iloc[0] == frame_from_records(schema, records[:1]).to_json(
            orient="records", date_format="iso", force_ascii=False)
