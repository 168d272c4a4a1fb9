"""Rollouts: canary, sticky A/B and shadow routing on a real server; alias
moves under load; automatic canary rollback; deployment specs and the CLI."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

import httpx
import pytest

from shipyard.errors import ConfigError
from shipyard.deploy import Deployment, DeploymentError, Deployments, read_predictions

from .conftest import COLUMNS, LiveServer, bearer, record, toy_frame

NAMES = ("canary", "ab", "shadow", "flip", "bad", "slow", "narrow")


def broken_pipeline():
    """Scores rows with ``age`` and raises ValueError on a missing one: the
    logistic regression after the column selection cannot take NaN."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame = toy_frame().dropna()
    pipe = make_pipeline(ColumnTransformer([("num", "passthrough", ["x0", "x1", "x2", "age"])]),
                         LogisticRegression())
    return pipe.fit(frame[COLUMNS], frame["y"])


@pytest.fixture(scope="module")
def rollout(served):
    """Models ``canary``, ``ab``, ``shadow``, ``flip``, ``slow`` (versions 1 and
    2 from two runs), ``bad`` (version 2 fails on a missing age) and
    ``narrow`` (version 2 takes 4 of the 6 columns), champion at 1, and their
    deployments."""
    from shipyard.train import save_model

    ws, runs = served
    for name in NAMES:
        ws.models.register(name, runs[0])
        if name in ("bad", "narrow"):
            artifact = save_model(broken_pipeline(), ws.artifacts)
            signature = dict(ws.models.get("toy@1").signature)
            if name == "narrow":  # takes only the columns it uses
                signature["inputs"] = [c for c in signature["inputs"]
                                       if c["name"] in ("x0", "x1", "x2", "age")]
            ws.models.register(name, runs[0], artifact_digest=artifact.digest,
                               signature=signature)
        else:
            ws.models.register(name, runs[1])
        ws.models.set_alias(name, "champion", 1, actor="tests")
    deployments = Deployments(ws)
    deployments.set("canary", {"strategy": "canary", "primary": "canary@champion",
                               "candidate": "canary@2", "weight": 20, "rollback": None})
    deployments.set("ab", {"strategy": "ab", "primary": "ab@champion", "candidate": "ab@2",
                           "weight": 50, "sticky_key": "x-user"})
    deployments.set("shadow", {"strategy": "shadow", "primary": "shadow@champion",
                               "candidate": "shadow@2"})
    deployments.set("bad", {"strategy": "canary", "primary": "bad@champion",
                            "candidate": "bad@2", "weight": 50,
                            "rollback": {"max_error_rate": 0.2, "min_requests": 10}})
    deployments.set("slow", {"strategy": "canary", "primary": "slow@champion",
                             "candidate": "slow@2", "weight": 50,
                             "rollback": {"max_error_rate": 1, "max_p99_ms": 0.001,
                                          "min_requests": 5}})
    deployments.set("narrow", {"strategy": "canary", "primary": "narrow@champion",
                               "candidate": "narrow@2", "weight": 50})
    return ws


@pytest.fixture(scope="module")
def server(rollout):
    from shipyard.serve import create_app

    app = create_app(rollout, [f"{n}@champion" for n in NAMES], reload_interval=0.1,
                     key_cache_ttl=60, log_flush_interval=0.05)
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def http(server, keys):
    with httpx.Client(base_url=server.url, headers=bearer(keys["predict"]), timeout=30) as c:
        yield c


def predict(http, name, row=None, **headers):
    return http.post(f"/v1/models/{name}:predict", json={"records": [row or record()]},
                     headers=headers)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while (result := condition()) is None or result is False:
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
    return result


# ------------------------------------------------------------------ routing
def test_canary_sends_its_weight_of_requests_to_the_candidate(http):
    versions = Counter(predict(http, "canary").json()["model_version"] for _ in range(1000))
    sigma = math.sqrt(1000 * 0.2 * 0.8)
    assert set(versions) == {1, 2}
    assert abs(versions[2] - 200) <= 3 * sigma, versions


def test_a_canary_retry_with_the_same_request_id_gets_the_same_version(http):
    for i in range(20):
        first = predict(http, "canary", **{"X-Request-ID": f"retry-{i}"}).json()
        again = predict(http, "canary", **{"X-Request-ID": f"retry-{i}"}).json()
        assert first["model_version"] == again["model_version"]


def test_ab_is_sticky_by_key_and_uses_both_versions(http):
    seen = {user: {predict(http, "ab", **{"x-user": user}).json()["model_version"]
                   for _ in range(3)} for user in (f"user-{i}" for i in range(40))}
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {next(iter(v)) for v in seen.values()} == {1, 2}


def test_shadow_answers_with_the_primary_and_logs_both(http, rollout):
    response = predict(http, "shadow", **{"X-Request-ID": "shadow-request-1"})
    assert response.status_code == 200 and response.json()["model_version"] == 1

    def logged():
        rows = read_predictions(rollout, model="shadow")
        rows = rows[rows["request_id"] == "shadow-request-1"]
        return rows if len(rows) == 2 else None

    rows = wait_for(logged).set_index("role")
    assert rows.loc["primary", "version"] == 1 and rows.loc["shadow", "version"] == 2
    assert (rows["status"] == 200).all() and rows["outputs"].notna().all()
    assert rows.loc["primary", "inputs"] == rows.loc["shadow", "inputs"]


def test_roles_are_logged_for_canary_answers(http, rollout):
    for i in range(30):
        predict(http, "canary", **{"X-Request-ID": f"role-{i}"})

    def logged():
        rows = read_predictions(rollout, model="canary")
        rows = rows[rows["request_id"].str.startswith("role-")]
        return rows if len(rows) == 30 else None

    rows = wait_for(logged)
    assert set(zip(rows["version"], rows["role"])) <= {(1, "primary"), (2, "candidate")}


def test_alias_moves_under_load_drop_no_request(http, rollout):
    failures, versions, stop = [], Counter(), threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                r = predict(http, "flip")
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    versions[r.json()["model_version"]] += 1
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in (2, 1, 2):
            rollout.models.set_alias("flip", "champion", target, actor="tests")
            wait_for(lambda target=target, before=versions[target]:
                     versions[target] > before + 20)
    finally:
        stop.set()
        for t in threads:
            t.join()
        rollout.models.set_alias("flip", "champion", 1, actor="tests")
    assert failures == []
    assert versions[1] > 0 and versions[2] > 0


def test_a_candidate_taking_fewer_columns_gets_the_primarys_requests(http):
    responses = [predict(http, "narrow") for _ in range(40)]
    assert all(r.status_code == 200 for r in responses), responses[0].text
    assert {r.json()["model_version"] for r in responses} == {1, 2}


def test_a_candidate_needing_columns_the_primary_lacks_is_refused(rollout):
    with pytest.raises(DeploymentError, match=r"takes columns that primary narrow@2 does "
                                              r"not \(colour, member\)"):
        Deployments(rollout).set("narrow", {"strategy": "canary", "primary": "narrow@2",
                                            "candidate": "narrow@1"})


# ----------------------------------------------------------------- rollback
def _rollback_entry(ws, name):
    entries = ws.audit.entries("deployment", name, action="deployment.rollback")
    return entries[-1] if entries else None


def test_canary_rolls_back_when_the_candidate_fails(http, rollout):
    outcomes = [(r.status_code, r.json().get("model_version"))
                for r in (predict(http, "bad", record(age=None)) for _ in range(200))]
    failed = [o for o in outcomes if o[0] != 200]
    assert 10 <= len(failed) < 40  # the candidate failed until the window judged it
    assert all(status == 200 for status, _ in outcomes[-100:])  # then only the primary
    entry = wait_for(lambda: _rollback_entry(rollout, "bad"))
    assert entry.details["breached"] == "max_error_rate"
    assert entry.details["candidate"] == "bad@2" and entry.details["figures"]["errors"] >= 10
    assert "max_error_rate 0.2" in entry.reason and "bad@2" in entry.reason
    assert entry.actor.startswith("shipyard-serve@")
    stored = Deployments(rollout).get("bad")
    assert stored.deployment.strategy == "single" and stored.deployment.primary == "bad@champion"
    time.sleep(0.3)  # a reload poll reads the rolled-back deployment: still the primary only
    assert {predict(http, "bad").json()["model_version"] for _ in range(20)} == {1}
    assert rollout.audit.verify()


def test_canary_rolls_back_when_the_candidate_is_slow(http, rollout):
    versions = [predict(http, "slow").json()["model_version"] for _ in range(100)]
    assert versions.count(2) >= 5 and set(versions[-30:]) == {1}
    entry = wait_for(lambda: _rollback_entry(rollout, "slow"))
    assert entry.details["breached"] == "max_p99_ms" and "p99 latency" in entry.reason


# ------------------------------------------------------------------- specs
def test_bad_deployments_are_refused_with_clear_errors(rollout):
    deployments = Deployments(rollout)
    with pytest.raises(DeploymentError, match="candidate canary@9 does not resolve"):
        deployments.set("canary", {"strategy": "canary", "primary": "canary@1",
                                   "candidate": "canary@9"})
    with pytest.raises(DeploymentError, match="primary nosuch@1 does not resolve"):
        deployments.set("nosuch", {"primary": "nosuch@1"})
    with pytest.raises(ConfigError, match="weight: Input should be less than or equal to 100"):
        deployments.set("canary", {"strategy": "canary", "primary": "canary@1",
                                   "candidate": "canary@2", "weight": 150})
    with pytest.raises(ConfigError, match="strategy canary needs a candidate"):
        deployments.set("canary", {"strategy": "canary", "primary": "canary@1"})
    with pytest.raises(ConfigError, match="ab needs sticky_key"):
        deployments.set("ab", {"strategy": "ab", "primary": "ab@1", "candidate": "ab@2"})
    with pytest.raises(ConfigError, match="versions of one model"):
        deployments.set("ab", {"strategy": "shadow", "primary": "ab@1", "candidate": "toy@1"})
    with pytest.raises(ConfigError, match="not a version of 'ab'"):
        deployments.set("ab", {"primary": "toy@1"})
    with pytest.raises(ConfigError, match="unknown|Extra inputs"):
        deployments.set("ab", {"primary": "ab@1", "wieght": 3})
    with pytest.raises(DeploymentError, match="both version 1"):
        deployments.set("canary", {"strategy": "canary", "primary": "canary@champion",
                                   "candidate": "canary@1"})
    assert Deployments(rollout).get("canary").deployment.weight == 20  # nothing changed


def test_setting_the_same_spec_again_changes_nothing(rollout):
    deployments = Deployments(rollout)
    before = deployments.get("shadow")
    again = deployments.set("shadow", Deployment(strategy="shadow", primary="shadow@champion",
                                                 candidate="shadow@2"))
    assert again.revision == before.revision
    assert [e.action for e in deployments.history("shadow")] == ["deployment.set"]


def test_deploy_section_of_shipyard_yaml(served):
    from shipyard.project import parse_project

    from .conftest import project

    spec = parse_project(project(1, "p") + """
deploy:
  fraud: {strategy: canary, primary: fraud@champion, candidate: fraud@challenger, weight: 5,
          rollback: {max_p99_ms: 200}}
""")
    fraud = spec.deploy["fraud"]
    assert (fraud.weight, fraud.rollback.max_p99_ms, fraud.rollback.min_requests) == (5, 200, 50)
    with pytest.raises(ConfigError, match="deploy.*weight"):
        parse_project(project(1, "p") + "deploy: {fraud: {strategy: canary, primary: fraud@1, "
                                        "candidate: fraud@2, weight: -1}}\n")


def test_deploy_cli_sets_shows_and_reads_shipyard_yaml(rollout, monkeypatch, tmp_path):
    from rich.console import Console
    from typer.testing import CliRunner

    from shipyard.cli import app

    monkeypatch.setenv("SHIPYARD_HOME", str(rollout.settings.home))
    monkeypatch.setattr("shipyard.cli._deploy.console",
                        Console(width=200, force_terminal=False, color_system=None))
    runner = CliRunner()
    rollout.models.register("clim", rollout.models.get("canary@1").run_id)
    rollout.models.register("clim", rollout.models.get("canary@2").run_id)

    out = runner.invoke(app, ["deploy", "clim", "--strategy", "canary", "--primary", "clim@1",
                              "--candidate", "clim@2", "--weight", "5", "--max-p99-ms", "150",
                              "-r", "trial"])
    assert out.exit_code == 0, out.output
    assert "canary clim@1 + 5% clim@2 (revision 1)" in out.output and "p99 > 150 ms" in out.output
    shown = runner.invoke(app, ["deploy", "clim", "--show"])
    assert "canary" in shown.output and "deployment.set" in shown.output and "trial" in shown.output

    project = tmp_path / "shipyard.yaml"
    project.write_text("deploy:\n  clim: {strategy: shadow, primary: clim@1, candidate: clim@2}\n")
    out = runner.invoke(app, ["deploy", "clim", "--from", str(project)])
    assert out.exit_code == 0, out.output
    assert Deployments(rollout).get("clim").deployment.strategy == "shadow"

    bad = runner.invoke(app, ["deploy", "clim", "--strategy", "canary", "--primary", "clim@1",
                              "--candidate", "clim@2", "--weight", "150"])
    assert bad.exit_code != 0 and "less than or equal to 100" in str(bad.exception)
    assert runner.invoke(app, ["deploy", "clim", "--remove"]).exit_code == 0
    assert Deployments(rollout).get("clim") is None
