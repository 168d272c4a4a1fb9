"""The Open Inference Protocol (KServe v2) with Triton's real HTTP client,
binary tensors and JSON."""

from __future__ import annotations

import gzip
import struct

import httpx
import numpy as np
import pandas as pd
import pytest

from .conftest import COLUMNS, bearer, record

ROWS = [record(), record(x0=-2.0, colour="blue", member=False, age=None),
        record(x1=0.3, colour="green")]
JSON_ROWS = [record(), record(x0=-2.0, colour="blue", member=False, age=30.0),
             record(x1=0.3, colour="green")]  # JSON has no NaN: no missing age here


def predicted(served, rows):
    model = served[0].models.load("toy@1")
    frame = pd.DataFrame(rows)[COLUMNS]
    return model.predict(frame), model.predict_proba(frame)


@pytest.fixture(scope="module")
def expected(served):
    return predicted(served, ROWS)


@pytest.fixture(scope="module")
def triton(live):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=live.url.removeprefix("http://"))
    yield client
    client.close()


def triton_inputs(binary: bool, rows=ROWS):
    import tritonclient.http as httpclient

    inputs = []
    for col in COLUMNS:
        values = [r[col] for r in rows]
        if col in ("colour",):
            arr, dt = np.array([v.encode() for v in values], dtype=np.object_), "BYTES"
        elif col == "member":
            arr, dt = np.array(values, dtype=bool), "BOOL"
        else:
            arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            dt = "FP64"
        tensor = httpclient.InferInput(col, list(arr.shape), dt)
        tensor.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_needs_no_key_and_metadata_describes_the_signature(live, triton, keys):
    assert triton.is_server_live() and triton.is_server_ready()
    headers = bearer(keys["predict"])
    assert triton.get_server_metadata(headers=headers)["extensions"] == ["binary_tensor_data"]
    meta = triton.get_model_metadata("toy", headers=headers)
    assert meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("x0", "FP64"), ("x1", "FP64"), ("x2", "FP64"), ("age", "FP64"), ("colour", "BYTES"),
        ("member", "BOOL")]
    assert meta["outputs"] == [{"name": "predictions", "datatype": "INT64", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}]
    assert triton.is_model_ready("toy", "1", headers=headers)
    assert not triton.is_model_ready("toy", "7", headers=headers)
    assert triton.get_model_metadata("toy", "1", headers=headers)["name"] == "toy"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_client_infers_with_binary_and_json_tensors(triton, keys, served, binary):
    import tritonclient.http as httpclient

    rows = ROWS if binary else JSON_ROWS
    expected = predicted(served, rows)
    outputs = None if binary else [httpclient.InferRequestedOutput("predictions",
                                                                   binary_data=False),
                                   httpclient.InferRequestedOutput("probabilities",
                                                                   binary_data=False)]
    result = triton.infer("toy", triton_inputs(binary, rows), outputs=outputs,
                          headers=bearer(keys["predict"]))
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected[0])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected[1],
                               atol=1e-4)  # ONNX fast path: float32
    assert result.get_response()["model_version"] == "1"


def test_triton_client_with_gzip_request_and_one_binary_output(triton, keys, expected):
    import tritonclient.http as httpclient

    result = triton.infer("toy", triton_inputs(True), model_version="1",
                          outputs=[httpclient.InferRequestedOutput("probabilities")],
                          request_compression_algorithm="gzip", headers=bearer(keys["predict"]))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected[1],
                               atol=1e-4)  # ONNX fast path: float32
    assert result.as_numpy("predictions") is None


def test_triton_client_errors_name_the_column(triton, keys):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    inputs = triton_inputs(True)
    inputs[4] = httpclient.InferInput("colour", [3], "FP32")
    inputs[4].set_data_from_numpy(np.ones(3, dtype=np.float32))
    with pytest.raises(InferenceServerException, match="column 'colour': expected a string"):
        triton.infer("toy", inputs, headers=bearer(keys["predict"]))
    with pytest.raises(InferenceServerException, match="not served"):
        triton.infer("nope", inputs, headers=bearer(keys["predict"]))
    with pytest.raises(InferenceServerException, match="missing API key"):
        triton.infer("toy", triton_inputs(True))


def test_json_infer_by_hand_and_the_single_2d_tensor_form(client, expected):
    inputs = [{"name": c, "shape": [3], "datatype": dt, "data": [r[c] for r in ROWS]}
              for c, dt in zip(COLUMNS, ["FP64"] * 4 + ["BYTES", "BOOL"])]
    inputs[3]["data"] = [41.0, 30.0, 41.0]  # JSON has no NaN; age is nullable via null too
    r = client.post("/v2/models/toy/infer", json={"id": "abc", "inputs": inputs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "abc" and body["model_name"] == "toy"
    assert body["outputs"][0]["data"][0] == expected[0][0]
    assert body["outputs"][1]["shape"] == [3, 2]

    # One [n, k] tensor: columns in signature order (here refused, naming the column,
    # as this model's colour column takes strings, not FP64).
    matrix = [[1.0] * 6 for _ in ROWS]
    r = client.post("/v2/models/toy/infer", json={"inputs": [
        {"name": "input", "shape": [3, 6], "datatype": "FP64", "data": matrix}]})
    assert r.status_code == 422
    assert "column 'colour': expected a string, got 1.0 in row 0" in r.json()["error"]


def test_binary_body_by_hand_is_parsed_and_answered_in_binary(client, expected):
    colour = b"".join(struct.pack("<I", len(v)) + v for v in (b"red", b"blue", b"green"))
    numeric = {c: np.array([np.nan if r[c] is None else r[c] for r in ROWS], "<f8").tobytes()
               for c in COLUMNS[:4]}
    member = np.array([r["member"] for r in ROWS], dtype=bool).tobytes()
    blobs = [*numeric.values(), colour, member]
    header = {"inputs": [
        {"name": c, "shape": [3, 1], "datatype": dt, "parameters": {"binary_data_size": len(b)}}
        for c, dt, b in zip(COLUMNS, ["FP64"] * 4 + ["BYTES", "BOOL"], blobs)],
        "outputs": [{"name": "predictions", "parameters": {"binary_data": True}}]}
    import orjson

    head = orjson.dumps(header)
    r = client.post("/v2/models/toy/infer", content=head + b"".join(blobs),
                    headers={"Inference-Header-Content-Length": str(len(head)),
                             "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = orjson.loads(r.content[:n])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 24
    np.testing.assert_array_equal(np.frombuffer(r.content[n:], "<i8"), expected[0])


@pytest.mark.parametrize("doc, extra, header, fragment", [
    ({"inputs": [{"name": "x0", "shape": [2], "datatype": "FP64",
                  "parameters": {"binary_data_size": 8}}]}, b"\0" * 8, True,
     "8 bytes of FP64 for a shape holding 2"),
    ({"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64",
                  "parameters": {"binary_data_size": 64}}]}, b"\0" * 8, True,
     "runs past the end"),
    ({"inputs": [{"name": "x0", "shape": [1], "datatype": "BF16", "data": [1]}]}, b"", False,
     "datatype 'BF16' is not one of"),
    ({"inputs": [{"name": "x0", "shape": [-1], "datatype": "FP64", "data": [1]}]}, b"", False,
     "shape must be"),
    ({"inputs": []}, b"", False, "non-empty 'inputs'"),
    ({"inputs": [{"name": "x0", "shape": [2], "datatype": "FP64", "data": [1]}]}, b"", False,
     "1 values for a shape holding 2"),
])
def test_malformed_infer_requests_are_400_in_the_protocols_error_format(client, doc, extra,
                                                                        header, fragment):
    import orjson

    head = orjson.dumps(doc)
    headers = {"Inference-Header-Content-Length": str(len(head))} if header else {}
    r = client.post("/v2/models/toy/infer", content=head + extra, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    assert isinstance(r.json()["error"], str) and fragment in r.json()["error"]


def test_gzip_bomb_is_refused(client):
    bomb = gzip.compress(b"[" + b" " * 2_000_000 + b"]")
    r = client.post("/v2/models/toy/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_unknown_version_is_404(client):
    r = client.post("/v2/models/toy/versions/9/infer", json={"inputs": []})
    assert r.status_code == 404 and "version '9' is not served" in r.json()["error"]


def test_server_metadata_needs_a_key(live):
    assert httpx.get(f"{live.url}/v2").status_code == 401
    assert httpx.get(f"{live.url}/v2/health/ready").json() == {"ready": True}
