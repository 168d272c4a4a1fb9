"""MLflow's scoring protocol: the payloads an `mlflow models serve` client sends."""

from __future__ import annotations

import pandas as pd
import pytest

from .conftest import COLUMNS, record

ROWS = [record(), record(x0=-2.0, colour="blue", member=False)]


@pytest.fixture(scope="module")
def labels(served):
    return served[0].models.load("toy@1").predict(pd.DataFrame(ROWS)[COLUMNS]).tolist()


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in ROWS]}},
    {"dataframe_split": pd.DataFrame(ROWS).to_dict(orient="split")},
    {"dataframe_records": ROWS},
    {"instances": ROWS},
    {"inputs": {c: [r[c] for r in ROWS] for c in COLUMNS}},
    {"inputs": [[r[c] for c in COLUMNS] for r in ROWS], "params": {"ignored": 1}},
], ids=["split", "split-with-index", "records", "instances", "inputs-columns", "inputs-rows"])
def test_every_json_format_answers_predictions(client, labels, payload):
    r = client.post("/invocations", json=payload)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": labels}


def test_csv_body(client, labels):
    csv = pd.DataFrame(ROWS)[COLUMNS].to_csv(index=False)
    r = client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": labels}


@pytest.mark.parametrize("payload, fragment", [
    ({"dataframe_records": ROWS, "instances": ROWS}, "exactly one of"),
    ({"dataframe_split": {"columns": COLUMNS, "data": [[1, 2]]}}, "expected a list of 6"),
    ({"dataframe_records": [record(x0="abc")]}, "column 'x0': expected a number"),
    ({"instances": "nope"}, "'instances' must be"),
])
def test_errors_are_400_bad_request_like_mlflow(client, payload, fragment):
    r = client.post("/invocations", json=payload)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "BAD_REQUEST" and fragment in r.json()["message"]


def test_ping_and_health_need_no_key_and_unsupported_content_is_415(live, client):
    import httpx

    assert httpx.get(f"{live.url}/ping").status_code == 200
    assert httpx.get(f"{live.url}/health").status_code == 200
    r = client.post("/invocations", content=b"x", headers={"Content-Type": "image/png"})
    assert r.status_code == 415
