"""The prediction log: every request written asynchronously, nothing lost on
graceful shutdown; feedback joinable on request id."""

from __future__ import annotations

import time

import httpx
import orjson
import pandas as pd

from shipyard.deploy import PredictionLog, read_feedback, read_predictions

from .conftest import LiveServer, bearer, record


def test_n_requests_then_shutdown_gives_n_rows_and_feedback_joins(served, keys):
    from shipyard.serve import create_app

    ws = served[0]
    # A long flush interval: only the shutdown flush can have written these rows.
    app = create_app(ws, ["toy@champion"], reload_interval=0, log_flush_interval=3600)
    start = time.time()
    ids = []
    with LiveServer(app) as server, httpx.Client(base_url=server.url,
                                                 headers=bearer(keys["predict"])) as c:
        for i in range(7):
            r = c.post("/v1/models/toy:predict", json={"records": [record(x0=i)] * (i % 2 + 1)},
                       headers={"X-Request-ID": f"plog-{i}"})
            assert r.status_code == 200
            ids.append(r.json()["request_id"])
        assert c.post("/v1/models/toy:predict",
                      json={"records": [record(x0="bad")]}).status_code == 422
        assert c.post("/invocations", json={"instances": [record()]}).status_code == 200
        for rid, label in (("plog-1", 1), ("plog-4", 0)):
            r = c.post("/v1/feedback", json={"request_id": rid, "label": label})
            assert r.json() == {"request_id": rid, "recorded": True}
        assert c.post("/v1/feedback", json={"label": 1}).status_code == 422
        assert read_predictions(ws, model="toy", since=start).empty  # not yet written

    logged = read_predictions(ws, model="toy", since=start)
    assert len(logged) == 9
    ok = logged[logged["endpoint"] == "v1.predict"].query("status == 200")
    assert list(ok["request_id"]) == ids
    first = ok.iloc[1]
    assert first["version"] == 1 and first["model"] == "toy" and first["num_rows"] == 2
    assert orjson.loads(first["inputs"])[0]["x0"] == 1.0
    assert set(orjson.loads(first["outputs"])) == {"predictions", "probabilities"}
    assert first["latency_ms"] > 0 and first["key_id"] == keys["predict"].split("_")[1]
    failed = logged.query("status == 422").iloc[0]
    assert "expected a number" in failed["error"] and failed["inputs"] is None
    rows = read_predictions(ws, model="toy", since=start, expand=True)
    assert len(rows) == 11 and {"x0", "colour", "prediction", "probabilities"} <= set(rows)

    feedback = read_feedback(ws, since=start)
    joined = feedback.merge(logged, on="request_id")
    assert list(joined["label"]) == [1, 0] and list(joined["request_id"]) == ["plog-1", "plog-4"]


def test_log_writes_in_the_background_and_filters_by_model_and_time(tmp_path):
    log = PredictionLog(tmp_path, flush_interval=0.05)
    log.start()
    frame = pd.DataFrame({"a": [1.0, None], "b": ["x", "ü"]})
    for model in ("m1", "m2", "m1"):
        log.record_prediction(request_id=model, model=model, version=3, endpoint="e",
                              status=200, latency_ms=1.5, inputs=frame,
                              outputs={"predictions": [0, 1]})
    deadline = time.monotonic() + 5
    while log.written < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.written == 3  # written by the thread, before close
    log.close()
    assert len(read_predictions(tmp_path)) == 3
    assert list(read_predictions(tmp_path, model="m1")["model"]) == ["m1", "m1"]
    assert read_predictions(tmp_path, since=time.time() + 60).empty
    assert orjson.loads(read_predictions(tmp_path, model="m2")["inputs"][0]) == [
        {"a": 1.0, "b": "x"}, {"a": None, "b": "ü"}]
    parts = list((tmp_path / "predictions").glob("model=*/date=*/part-*.parquet"))
    assert len(parts) >= 2


def test_readers_on_an_empty_workspace_return_empty_frames(tmp_path):
    assert read_predictions(tmp_path).empty and read_feedback(tmp_path).empty


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path):
    log = PredictionLog(tmp_path, max_queue=2)
    for i in range(5):
        log.record_feedback(request_id=str(i), label=i)
    assert log.dropped == 3
    log.close()
    assert list(read_feedback(tmp_path)["label"]) == [0, 1]
