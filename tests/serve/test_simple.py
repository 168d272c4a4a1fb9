"""Shipyard's JSON API (/v1), health, metrics, validation and hostile input,
against a real server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .conftest import COLUMNS, record


def test_predict_records_returns_labels_probabilities_version_and_request_id(client, served):
    rows = [record(), record(x0=-2.0, colour="blue", member=False)]
    r = client.post("/v1/models/toy:predict", json={"records": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    model = served[0].models.load("toy@1")
    frame = pd.DataFrame(rows)[COLUMNS]
    assert body["predictions"] == model.predict(frame).tolist()
    assert body["classes"] == [0, 1]
    # served through the ONNX fast path: float32, checked to 1e-4 at registration
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(frame), atol=1e-4)
    assert body["model_version"] == 1 and body["model_name"] == "toy"
    assert r.headers["x-request-id"] == body["request_id"] and len(body["request_id"]) == 32


def test_predict_columns_gives_the_same_answer_as_records(client):
    rows = [record(), record(age=None, x1=3)]
    by_records = client.post("/v1/models/toy:predict", json={"records": rows}).json()
    columns = {c: [r[c] for r in rows] for c in COLUMNS}
    by_columns = client.post("/v1/models/toy:predict", json={"columns": columns}).json()
    assert by_columns["probabilities"] == by_records["probabilities"]


def test_a_sane_client_request_id_is_kept_and_another_replaced(client):
    ok = client.post("/v1/models/toy:predict", json={"records": [record()]},
                     headers={"X-Request-ID": "order-42:a"})
    assert ok.json()["request_id"] == "order-42:a" == ok.headers["x-request-id"]
    odd = client.post("/v1/models/toy:predict", json={"records": [record()]},
                      headers={"X-Request-ID": "<script>" * 3})
    assert odd.json()["request_id"] != "<script>" * 3


def test_lists_models_and_describes_one(client):
    models = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["ref"], m["version"], m["ready"]) for m in models] == [
        ("toy", "toy@champion", 1, True)]
    info = client.get("/v1/models/toy").json()
    assert info["classes"] == [0, 1] and info["task"] == "binary"
    assert [c["name"] for c in info["signature"]["inputs"]] == COLUMNS


def test_unknown_model_is_404_naming_the_served_models(client):
    r = client.post("/v1/models/nope:predict", json={"records": [record()]})
    assert r.status_code == 404
    assert r.json()["error"] == {"code": "model_not_found", "message":
                                 "model 'nope' is not served here; served models: toy"}


@pytest.mark.parametrize("body, status, message", [
    ({"records": [record(), record(x0="abc")]}, 422,
     "column 'x0': expected a number, got 'abc' in row 1"),
    ({"records": [{k: v for k, v in record().items() if k != "x2"}]}, 422, "missing column 'x2'"),
    ({"records": [record(zzz=1)]}, 422, "row 0: unknown column 'zzz'"),
    ({"records": [record(x1=None)]}, 422, ("column 'x1': missing value (null/NaN) in row 0, "
                                           "but the column is not nullable")),
    ({"records": [record(colour=3)]}, 422, "column 'colour': expected a string, got 3 in row 0"),
    ({"records": [record(member="yes")]}, 422, "column 'member': expected true or false"),
    ({"records": [record(x0=True)]}, 422, "column 'x0': expected a number, got True"),
    ({"records": []}, 422, "no rows"),
    ({"records": [record()] * 501}, 413, "501 rows in one request; at most 500"),
    ({"records": {"x0": 1}}, 422, "'records' must be a list"),
    ({"records": [record()], "columns": {}}, 422, "exactly one of 'records' or 'columns'"),
    ({"rows": [record()]}, 422, "exactly one of 'records' or 'columns'"),
    ({"columns": {**{c: [1.0] for c in COLUMNS[:4]}, "colour": ["red", "blue"],
                  "member": [True]}}, 422, "columns have different lengths"),
    ({"columns": {**{c: [1.0] for c in COLUMNS[:4]}, "colour": "red", "member": [True]}},
     422, "column 'colour': expected a list of values"),
    ([record()], 422, "must be a JSON object"),
    ({"records": [record(colour="x" * 10_001)]}, 422, "at most 10000 are accepted"),
    ({"records": [record(x0=10**30)]}, 200, ""),
])
def test_invalid_input_is_a_4xx_naming_the_field(client, body, status, message):
    r = client.post("/v1/models/toy:predict", json=body)
    assert r.status_code == status, r.text
    if message:
        assert message in r.json()["error"]["message"]


@pytest.mark.parametrize("row", [record(age=None), record(colour="purple"),
                                 record(colour="ünïcødé ✓ \u202e")])
def test_nullable_columns_and_unknown_categories_are_accepted(client, row):
    assert client.post("/v1/models/toy:predict", json={"records": [row]}).status_code == 200


@pytest.mark.parametrize("content, headers, status, code", [
    (b'{"records": [', {}, 400, "invalid_json"),
    (b'{"records": [{"x0": NaN}]}', {}, 400, "invalid_json"),
    (b'{"records": [{"x0": Infinity}]}', {}, 400, "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, {}, 400, "invalid_json"),
    (b'{"records": "\xff\xfe"}', {}, 400, "invalid_json"),
    (b"", {}, 400, "invalid_json"),
    (b'{"records": []}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b'{"records": []}', {"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
])
def test_malformed_or_hostile_bodies_never_cause_a_5xx(client, content, headers, status, code):
    headers = {"Content-Type": "application/json", **headers}
    r = client.post("/v1/models/toy:predict", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_oversized_body_is_413_by_content_length_and_while_streaming(client):
    big = b'{"records": [' + b" " * 300_000 + b"]}"
    r = client.post("/v1/models/toy:predict", content=big,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(40):
            yield b" " * 10_000

    r = client.post("/v1/models/toy:predict", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/healthz").status_code == 200  # the server lives on


def test_health_and_readiness_need_no_key(live):
    import httpx

    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.url}/readyz").json()
    assert ready["ready"] is True and ready["models"]["toy"]["version"] == 1


def test_metrics_count_requests_by_endpoint_model_version_and_code(client, live, keys):
    import httpx

    client.post("/v1/models/toy:predict", json={"records": [record()]})
    client.post("/v1/models/toy:predict", json={"records": [record(x0="bad")]})
    text = httpx.get(f"{live.url}/metrics", headers={"X-API-Key": keys["metrics"]}).text
    assert ('shipyard_requests_total{code="200",endpoint="/v1/models/{name}:predict",'
            'model="toy",version="1"}') in text
    assert 'code="422",endpoint="/v1/models/{name}:predict"' in text
    assert "shipyard_request_duration_seconds_bucket" in text
    assert 'shipyard_model_info{model="toy",ref="toy@champion",version="1"} 1.0' in text


def test_explain_returns_attributions_per_row(client):
    r = client.post("/v1/models/toy:explain", json={"records": [record(), record(x0=-1)]})
    assert r.status_code == 200, r.text
    explanations = r.json()["explanations"]
    assert len(explanations) == 2
    assert set(explanations[0]["attributions"]) == set(COLUMNS)
    total = explanations[0]["base_value"] + sum(explanations[0]["attributions"].values())
    assert total == pytest.approx(explanations[0]["output"], abs=1e-6)


def test_openapi_describes_every_protocol(client):
    doc = client.get("/openapi.json").json()
    for path in ("/v1/models/{name}:predict", "/v1/models/{name}:explain", "/v1/feedback",
                 "/v2/models/{name}/infer", "/v2/health/live", "/invocations", "/ping",
                 "/healthz", "/readyz", "/metrics"):
        assert path in doc["paths"], path
    body = doc["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("PredictRequest")
    assert {"PredictRequest", "PredictResponse", "InferRequest", "InferInput",
            "InvocationsRequest"} <= set(doc["components"]["schemas"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])
