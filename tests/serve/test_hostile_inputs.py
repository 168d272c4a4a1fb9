"""Regressions from real clients and hostile inputs (issue 9): against a live
server, a whole-number column, a mitigated (per-group thresholds) model, MLflow's
NaN literals and Parquet bodies, and the same connection after every answer."""

from __future__ import annotations

import io
import json
import math

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard import Workspace

from .conftest import LiveServer, bearer

PROJECT = """
name: hostile
dataset: people@latest
target: y
task: binary
seed: 3
features: {sensitive: [sex]}
train:
  split: {folds: 2}
  search: {kind: random, n_trials: 1}
  candidates:
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      params: {max_iter: 300}
"""


def people(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n),                          # int64, no missing values
        "income": rng.normal(50, 10, n).round(1),
        "sex": np.where(rng.random(n) < 0.5, "F", "M"),
    })
    frame.loc[::11, "income"] = np.nan                           # a nullable float column
    frame["y"] = ((frame["age"] > 45) ^ (rng.random(n) < 0.15)).astype(int)
    return frame


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """``hostile@1`` (not trained on ``sex``) and ``hostile@2`` (per-group
    thresholds on ``sex``, so it needs that column); ``champion`` on 2."""
    from shipyard.project import parse_project

    ws = Workspace.open(tmp_path_factory.mktemp("hostile") / "home")
    ws.datasets.register("people", people())
    plain = ws.models.register("hostile", ws.train(parse_project(PROJECT)).study_run_id)
    assert "sex" not in [c["name"] for c in plain.signature["inputs"]]
    mitigated = ws.mitigate(plain.ref, "people@1", target="y", sensitive="sex")
    assert mitigated.version.version == 2
    ws.models.set_alias("hostile", "champion", 2)
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def server(workspace):
    """A client with a ``predict`` key of a live server for ``hostile@champion``."""
    from shipyard.serve import create_app

    _, secret = workspace.keys.create("hostile", ["predict"])
    app = create_app(workspace, ["hostile@champion"], reload_interval=0, key_cache_ttl=0)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, headers=bearer(secret),
                                               timeout=30) as client:
        client.admin = workspace.keys.create("hostile-admin", ["admin"])[1]
        yield client


def row(**changes):
    out = {"age": 40, "income": 51.5, "sex": "F"}
    out.update(changes)
    return out


def assert_alive(client: httpx.Client) -> None:
    """A normal request right after, on the same connection, still succeeds."""
    ok = client.post("/v1/models/hostile:predict", json={"records": [row()]})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("sex", ["X", "", "🦄", "f"])
def test_an_unseen_group_of_a_mitigated_model_is_scored_not_a_500(server, sex):
    for path, body in (("/v1/models/hostile:predict", {"records": [row(sex=sex)]}),
                       ("/invocations", {"dataframe_records": [row(sex=sex)]})):
        answer = server.post(path, json=body)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers.get("connection") != "close"
    assert_alive(server)


@pytest.mark.parametrize("value, problem", [
    (25.5, "is not a whole number"), (1e300, "out of the int64 range"),
    (-1e300, "out of the int64 range"), (2**64, "out of the int64 range"),
])
def test_whole_number_columns_refuse_fractions_and_out_of_range_on_every_protocol(
        server, value, problem):
    answers = {
        "simple": server.post("/v1/models/hostile:predict", json={"records": [row(age=value)]}),
        "mlflow": server.post("/invocations", json={"dataframe_records": [row(age=value)]}),
    }
    if isinstance(value, float):  # v2 JSON: an FP64 tensor where the model takes INT64
        answers["v2"] = server.post("/v2/models/hostile/infer", json={"inputs": [
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [value]},
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [51.5]},
            {"name": "sex", "shape": [1], "datatype": "BYTES", "data": ["F"]}]})
    for protocol, answer in answers.items():
        assert 400 <= answer.status_code < 500, (protocol, answer.text)
        assert "age" in answer.text and problem in answer.text, (protocol, answer.text)
    assert server.post("/v1/models/hostile:predict",
                       json={"records": [row(age=25.0)]}).status_code == 200
    assert_alive(server)


def test_invocations_reads_mlflow_nan_literals_and_other_endpoints_name_them(server):
    # What MLflow's ScoringServerClient sends for a missing value (json.dumps, allow_nan).
    body = json.dumps({"dataframe_split": {"columns": ["age", "income", "sex"],
                                           "data": [[40, math.nan, "F"], [50, 60.0, "M"]]}})
    assert "NaN" in body
    answer = server.post("/invocations", content=body,
                         headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    strict = server.post("/v1/models/hostile:predict", content=json.dumps(
        {"records": [row(income=math.nan)]}), headers={"content-type": "application/json"})
    assert strict.status_code == 400 and "NaN" in strict.text and "null" in strict.text
    infinite = server.post("/invocations", content=body.replace("NaN", "Infinity"),
                           headers={"content-type": "application/json"})
    assert 400 <= infinite.status_code < 500 and "finite" in infinite.text, infinite.text
    bad_utf8 = server.post("/v1/models/hostile:predict", content=b'{"records": [{"sex": "\xff"}]}',
                           headers={"content-type": "application/json"})
    assert bad_utf8.status_code == 400 and "invalid UTF-8" in bad_utf8.text
    assert_alive(server)


def test_invocations_takes_parquet(server):
    buffer = io.BytesIO()
    pd.DataFrame([row(), row(age=70, sex="M")]).to_parquet(buffer)
    answer = server.post("/invocations", content=buffer.getvalue(),
                         headers={"content-type": "application/vnd.apache.parquet"})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    broken = server.post("/invocations", content=b"PAR1 not really",
                         headers={"content-type": "application/vnd.apache.parquet"})
    assert broken.status_code == 400 and "Parquet" in broken.text


def test_get_on_a_post_action_is_405_and_the_api_description_is_public(server):
    answer = server.get("/v1/models/hostile:predict")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    with httpx.Client(base_url=str(server.base_url)) as anonymous:
        for path in ("/openapi.json", "/docs", "/redoc"):
            public = anonymous.get(path)
            assert public.status_code == 200, path
            assert "hostile" not in public.text  # generic: no model, signature or data
        assert anonymous.get("/v1/models").status_code == 401


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=8), children, max_size=3), max_leaves=10)


@given(age=_json_values, income=_json_values, sex=_json_values)
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_typed_body_makes_the_server_answer_5xx(server, age, income, sex):
    """Bodies typed from the signature's columns, any JSON value in each."""
    record = {"age": age, "income": income, "sex": sex}
    for path, body in (("/v1/models/hostile:predict", {"records": [record]}),
                       ("/invocations", {"dataframe_records": [record]}),
                       ("/v1/models/hostile:predict", {"columns": {k: [v] for k, v
                                                                   in record.items()}})):
        answer = server.post(path, json=body)
        assert answer.status_code < 500, (path, body, answer.text)
    assert_alive(server)


def test_moving_an_alias_to_a_version_that_needs_new_columns_is_refused_without_force(
        workspace, server):
    from shipyard.errors import RegistryError

    workspace.models.set_alias("hostile", "champion", 1, force=True)  # 2 -> 1 drops a column
    with pytest.raises(RegistryError, match=r"makes column\(s\) 'sex' required"):
        workspace.models.set_alias("hostile", "champion", 2)
    with pytest.raises(RegistryError, match="force"):
        workspace.models.rollback("hostile", "champion")
    assert workspace.models.get("hostile@champion").version == 1  # nothing moved
    moved = workspace.models.set_alias("hostile", "champion", 2, force=True, reason="clients ok")
    assert moved.version == 2
    entry = workspace.audit.entries("model", "hostile")[-1]
    assert entry.details["new_required_columns"] == ["sex"]


def test_clients_of_either_version_keep_working_across_a_rollback(workspace, server):
    """Rolling champion 2 -> 1 must not break clients written for 2 (they send
    ``sex``, which 1 does not take), nor the reverse once it is back on 1."""
    with_sex, without_sex = {"records": [row()]}, {"records": [{"age": 40, "income": 51.5}]}
    assert server.post("/v1/models/hostile:predict", json=with_sex).status_code == 200
    workspace.models.set_alias("hostile", "champion", 1, force=True)
    server.post("/v1/admin/reload", headers=bearer(server.admin)).raise_for_status()
    for body in (with_sex, without_sex):
        answer = server.post("/v1/models/hostile:predict", json=body)
        assert answer.status_code == 200 and answer.json()["model_version"] == 1, answer.text
    unknown = server.post("/v1/models/hostile:predict", json={"records": [row(shoe=42)]})
    assert unknown.status_code == 422 and "unknown column 'shoe'" in unknown.text
    workspace.models.set_alias("hostile", "champion", 2, force=True)
    server.post("/v1/admin/reload", headers=bearer(server.admin)).raise_for_status()
    answer = server.post("/v1/models/hostile:predict", json=with_sex)
    assert answer.status_code == 200 and answer.json()["model_version"] == 2


def test_a_mitigated_model_runs_its_base_graph_with_thresholds_in_numpy(workspace):
    """Speed without changing answers: the thresholded version keeps its base's
    scores, converts the base to ONNX, and decides per group in numpy."""
    from shipyard.deploy import LoadedModel, Schema
    from shipyard.registry import load_onnx

    version = workspace.models.get("hostile@2")
    assert version.tags["onnx"] == "converted"
    model = version.load()
    fast = LoadedModel(version, model, Schema.from_signature(version.signature),
                       onnx=load_onnx(workspace, version, classes=model.classes_))
    slow = LoadedModel(version, model, Schema.from_signature(version.signature))
    rows = people(500, seed=9).drop(columns="y")
    rows.loc[::7, "sex"] = "X"                               # unseen groups too
    a, b = fast.predict(rows), slow.predict(rows)
    assert fast.runtime == "onnx" and slow.runtime == "python"
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    base = workspace.models.get("hostile@1").load()
    np.testing.assert_allclose(b.probabilities, base.predict_proba(rows[["age", "income"]]))


def test_the_cli_refuses_a_column_adding_alias_move_without_force(workspace):
    from typer.testing import CliRunner

    from shipyard.cli import app

    home = str(workspace.settings.home)
    runner = CliRunner()
    base = ["--home", home, "models", "alias", "hostile", "champion"]
    assert runner.invoke(app, [*base, "1", "--force"]).exit_code == 0
    refused = runner.invoke(app, [*base, "2"])
    assert refused.exit_code == 1 and "'sex' required" in str(refused.exception)
    assert "--force" in str(refused.exception)
    forced = runner.invoke(app, [*base, "2", "--force"])
    assert forced.exit_code == 0 and "must now send column(s) 'sex'" in forced.output
    assert workspace.models.get("hostile@champion").version == 2
