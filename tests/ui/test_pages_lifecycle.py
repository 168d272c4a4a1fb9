"""The pages that follow a model through its life: the lineage graph of a
dataset version, promotion attempts with their gates, the evaluation report's
figures and SHAP summary, and a deployment's traffic, errors, latency and
rollbacks. The workspace is built for real (datasets, training runs, three
``ws.promote`` calls, a canary, a rollback, requests written by the prediction
log's own writer), with hostile text wherever users can type."""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace

from .conftest import XSS_IMG, XSS_SCRIPT, browser_login, login, on_loopback, shot

GATES = {"metrics": {"accuracy": {"min": 0.55}}}
#: A metric no report has, named like an attack: its gate fails as "not measured".
HOSTILE_METRIC = f"f1 {XSS_IMG}"
STRICT = {"metrics": {"accuracy": {"min": 0.99}, "f1": {"min": 0.1}, HOSTILE_METRIC: {"min": 0.5}}}


def build_lifecycle(home) -> dict:
    from sklearn.linear_model import LogisticRegression

    from shipyard.deploy import PredictionLog
    from shipyard.evaluate import evaluate

    ws = Workspace.open(home)
    rng = np.random.default_rng(1)
    n = 240
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    frame = pd.DataFrame({"income": x1.round(3), "debt": x2.round(3),
                          "region": rng.choice(["east", XSS_SCRIPT], n),
                          "default": (x1 - x2 + rng.normal(0, .7, n) > 0).astype(int)})
    raw = ws.datasets.register("loans_raw", frame, description=XSS_IMG)
    train = ws.datasets.register("loans", frame.iloc[:160], parents=[raw],
                                 description=f"training split {XSS_SCRIPT}")
    test = ws.datasets.register("loans_test", frame.iloc[160:], parents=[raw])
    ws.datasets.register("loans_small", frame.iloc[:40], parents=[train])
    X = frame.iloc[:160][["income", "debt"]]
    y = frame.iloc[:160]["default"]
    versions = []
    for c, name in ((1.0, "good"), (1e-4, f"weak {XSS_IMG}")):
        with ws.start_run("credit-training", name=name, inputs=[train],
                          params={"C": c}) as run:
            run.log_model(LogisticRegression(C=c).fit(X, y), sample=X.head(20),
                          target="default")
        versions.append(ws.models.register("credit", run.id, description=XSS_SCRIPT,
                                           tags={"owner": XSS_IMG}).version)
    # The real evaluation, with fewer sections where the page does not need
    # them (explanations cost seconds: once is enough).
    full = partial(evaluate, sections=("metrics", "explanations"), n_bootstrap=40,
                   explain_rows=25)
    quick = partial(evaluate, sections=("metrics",), n_bootstrap=20)
    ok = ws.promote(f"credit@{versions[0]}", policy=GATES, dataset_ref=test.ref,
                    target="default", evaluate_fn=full)
    refused = ws.promote(f"credit@{versions[1]}", policy=STRICT, dataset_ref=test.ref,
                         target="default", evaluate_fn=quick, actor=f"eve {XSS_IMG}")
    forced = ws.promote(f"credit@{versions[1]}", to="staging", policy=STRICT,
                        dataset_ref=test.ref, target="default", evaluate_fn=quick,
                        override_reason=f"load test {XSS_SCRIPT}")
    assert ok.promoted and not refused.promoted and forced.overridden
    ws.models.set_alias("credit", "challenger", versions[1], reason="canary it")
    first = ws.deployments.set("credit", {"strategy": "canary", "primary": "credit@champion",
                                          "candidate": "credit@challenger", "weight": 25},
                               reason=f"canary {XSS_IMG}")
    log = PredictionLog(ws.settings.home)
    for i in range(60):
        candidate = i % 4 == 0
        failed = i % 10 == 3
        log.record_prediction(
            request_id=f"r{i}", model="credit", version=versions[1 if candidate else 0],
            endpoint="/v1/models/credit/predict", status=422 if failed else 200,
            latency_ms=2.0 + (i % 7) + (5.0 if candidate else 0.0), num_rows=1,
            error=XSS_SCRIPT if failed else None,
            role="candidate" if candidate else "primary")
    log.close()
    ws.deployments.rollback("credit", revision=first.revision,
                            reason=f"error rate over limit {XSS_IMG}")
    _, admin = ws.keys.create("admin", scopes=["admin"])
    return {"ws": ws, "admin": admin, "versions": versions, "train": train, "test": test}


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    data = build_lifecycle(tmp_path_factory.mktemp("life") / "home")
    yield data
    data["ws"].close()


@pytest.fixture(scope="module")
def life_app(life):
    from shipyard.ui import create_ui_app

    return create_ui_app(life["ws"])


@pytest.fixture
def client(life_app, life):
    from starlette.testclient import TestClient

    with TestClient(life_app, raise_server_exceptions=False, follow_redirects=False) as c:
        assert login(c, life["admin"]).status_code == 303
        yield c


@pytest.fixture(scope="module")
def life_url(life_app):
    """The lifecycle app on a real uvicorn on loopback, for the browser."""
    with on_loopback(life_app) as url:
        yield url


def _text(html: str) -> str:
    """The visible text of a page, whitespace collapsed (tags dropped, entities kept)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _assert_escaped(html: str) -> None:
    assert "<script>alert" not in html and "<img src=x" not in html


# --------------------------------------------------------------- deployments
def test_deployment_shows_traffic_by_version_and_role(client, life):
    page = client.get("/deployments/credit")
    assert page.status_code == 200
    html = page.text
    _assert_escaped(html)
    frame_rows = life["ws"].deployments.get("credit")
    assert frame_rows.deployment.strategy == "single"  # the rollback made it single
    table = re.search(r'<table id="traffic-table">(.*?)</table>', html, re.DOTALL).group(1)
    rows = [_text(r).split() for r in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)[1:]]
    # 60 requests: every 4th to the candidate (v2), every 10th from 3 on failed
    by_label = {" ".join(r[:2]): r for r in rows}
    v1, v2 = life["versions"]
    assert by_label[f"v{v1} primary"][2] == "45" and by_label[f"v{v2} candidate"][2] == "15"
    assert by_label[f"v{v1} primary"][6] == "6"  # failed requests
    assert "60 requests logged" in _text(html) and "6 failed" in _text(html)
    for chart in ("chart-requests", "chart-errors", "chart-latency"):
        assert f'id="{chart}"' in html


def test_traffic_json_counts_every_logged_request(client):
    data = client.get("/deployments/credit/traffic.json?window=all").json()
    charts = data["charts"]
    assert data["requests"] == 60
    assert sum(sum(s["y"]) for s in charts["requests"]) == 60
    assert len(charts["x"]) <= 120
    rates = [y for s in charts["error_rate"] for y in s["y"] if y is not None]
    assert rates and all(0 <= r <= 100 for r in rates)
    assert client.get("/deployments/credit/traffic.json?window=bogus").status_code == 200


def test_deployment_history_marks_the_rollback(client):
    html = client.get("/deployments/credit").text
    history = re.search(r'<table id="deployment-history">(.*?)</table>', html, re.DOTALL).group(1)
    assert 'class="rollback"' in history and "deployment.rollback" in history
    assert "deployment.set" in history
    moves = re.search(r'<table id="alias-moves">(.*?)</table>', html, re.DOTALL).group(1)
    assert "champion" in moves and "staging" in moves and "challenger" in moves


def test_unknown_deployment_is_a_404_page(client):
    for path in ("/deployments/nobody", "/deployments/nobody/traffic.json",
                 "/deployments/%3Cscript%3E"):
        page = client.get(path)
        assert page.status_code == 404, path
        _assert_escaped(page.text)


def test_every_window_renders_and_an_unknown_one_falls_back(client):
    for window in ("1h", "24h", "7d", "30d", "all"):
        html = client.get(f"/deployments/credit?window={window}").text
        assert "60 requests logged" in _text(html)  # logged just now
        assert f'<option value="{window}" selected>' in html
    html = client.get("/deployments/credit?window=%3Cscript%3E").text
    assert '<option value="7d" selected>' in html and "<script>" not in html


def test_a_deployment_without_logged_requests_says_so(admin_client):
    # the shared workspace deploys fraud but no server ever answered for it
    html = admin_client.get("/deployments/fraud").text
    assert 'id="no-traffic"' in html and 'id="traffic-table"' not in html
    data = admin_client.get("/deployments/fraud/traffic.json").json()
    assert data == {"charts": {"x": [], "width": 0, "requests": [], "error_rate": [],
                               "p95_ms": []}, "requests": 0}


# -------------------------------------------------------------------- models
def _attempt_rows(html: str, table_id: str) -> list[tuple[str, str]]:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.DOTALL).group(1)
    return re.findall(r'<tr class="attempt ([a-z]+)" data-seq="\d+">(.*?)</tr>', table,
                      re.DOTALL)


def test_promotion_attempts_show_their_gates(client, life):
    from shipyard.evaluate import promotions

    html = client.get("/models/credit").text
    _assert_escaped(html)
    rows = _attempt_rows(html, "promotion-attempts")
    assert [kind for kind, _ in rows] == ["overridden", "refused", "promoted"]
    records = promotions(life["ws"], "credit")[::-1]  # the audit log's records, newest first
    assert [r.outcome for r in records] == ["overridden", "refused", "promoted"]
    for (_, row), record in zip(rows, records, strict=True):
        gates = re.findall(r'<div class="gate (ok|bad)" data-gate="([^"]*)"', row)
        # every gate, passed and failed, in the recorded order with its verdict
        assert gates == [("ok" if c.passed else "bad", _escaped(c.name))
                         for c in record.gates.checks]
        for check in record.gates.checks:
            if check.observed is not None:
                assert f"observed {check.observed:.4g}" in row
        assert f"/runs/{record.evaluation_run}/view/evaluation/report.html" in row
        assert f'href="/runs/{record.evaluation_run}"' in row
    overridden, refused, promoted = (_text(r) for _, r in rows)
    assert "promoted by override : load test &lt;script&gt;" in overridden
    assert "0/3 passed" in overridden and "staging" in overridden
    # the refused attempt keeps its failed gates, figures and hostile text escaped
    assert "refused (alias not moved)" in refused and "0/3 passed" in refused
    accuracy = records[1].gates.checks[0]
    assert (f"✗ metrics.accuracy.min (accuracy &gt;= 0.99) : observed {accuracy.observed:.4g} · "
            f"threshold 0.99 · CI [{accuracy.details['ci_low']:.4g}, ") in refused
    assert "✗ metrics.f1.min (f1 &gt;= 0.1) : observed 0 · threshold 0.1" in refused
    assert f"metrics.{_escaped(HOSTILE_METRIC)}.min" in refused and "not measured" in refused
    assert f"eve {_escaped(XSS_IMG)}" in refused and "vs credit@1" in refused
    assert "1/1 passed" in promoted and "champion (no holder)" in promoted
    assert "✓ metrics.accuracy.min (accuracy &gt;= 0.55) : observed" in promoted
    # each attempt links its own evaluation run
    runs = life["ws"].runs.search(experiment="evaluation", limit=None)
    assert {r.id for r in runs} == {r.evaluation_run for r in records}


def _escaped(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_version_page_shows_report_figures_and_shap(client, life):
    v1 = life["versions"][0]
    html = client.get(f"/models/credit/{v1}").text
    _assert_escaped(html)
    run = life["ws"].runs.search("tags.model = 'credit@1'", experiment="evaluation")[0]
    metrics = re.search(r'<table id="report-metrics"(.*?)</table>', html, re.DOTALL).group(1)
    assert f"{run.metrics['accuracy']:.4g}" in metrics
    shap = re.search(r'<table id="shap-table">(.*?)</table>', html, re.DOTALL).group(1)
    features = re.findall(r"<th>([^<]+)</th>", shap)
    assert sorted(features) == ["debt", "income"]
    assert 'id="model-card"' in html
    ((kind, attempt),) = _attempt_rows(html, "version-attempts")
    assert kind == "promoted" and "1/1 passed" in attempt and "/models/credit/1" not in attempt
    v2 = client.get(f"/models/credit/{life['versions'][1]}").text
    _assert_escaped(v2)
    assert [k for k, _ in _attempt_rows(v2, "version-attempts")] == ["overridden", "refused"]


def test_version_without_explanations_says_why(client, life):
    v2 = life["versions"][1]
    html = client.get(f"/models/credit/{v2}").text
    assert 'id="shap-summary"' in html and 'id="shap-table"' not in html


# ------------------------------------------------------------------ lineage
def test_lineage_graph_links_dataset_run_model_and_deployment(client, life):
    html = client.get("/datasets/loans/1").text
    _assert_escaped(html)
    svg = re.search(r'<svg class="lineage".*?</svg>', html, re.DOTALL).group(0)
    nodes = set(re.findall(r'data-node="([^"]+)"', svg))
    ws = life["ws"]
    runs = {v.run_id for v in ws.models.versions("credit")}
    assert {"d:loans_raw@1", "d:loans@1", "d:loans_small@1", "m:credit@1", "m:credit@2",
            "x:credit"} <= nodes
    assert {f"r:{r}" for r in runs} <= nodes
    edges = set(re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', svg))
    assert ("d:loans_raw@1", "d:loans@1") in edges and ("d:loans@1", "d:loans_small@1") in edges
    for v in ws.models.versions("credit"):
        assert ("d:loans@1", f"r:{v.run_id}") in edges
        assert (f"r:{v.run_id}", f"m:{v.ref}") in edges
    assert ("m:credit@1", "x:credit") in edges  # the rollback left champion (v1) serving
    # every node but this version links to its page
    assert 'href="/models/credit/1"' in svg and 'href="/deployments/credit"' in svg
    assert 'href="/datasets/loans_raw/1"' in svg
    for run in runs:
        assert f'href="/runs/{run}"' in svg


def test_model_version_lineage_graph(client, life):
    ws = life["ws"]
    for version, deployed in ((1, True), (2, False)):  # the rollback left v1 serving alone
        mv = ws.models.get(f"credit@{version}")
        svg = re.search(r'<svg class="lineage".*?</svg>',
                        client.get(f"/models/credit/{version}").text, re.DOTALL).group(0)
        nodes = set(re.findall(r'data-node="([^"]+)"', svg))
        assert {"d:loans@1", f"r:{mv.run_id}", f"m:credit@{version}"} <= nodes
        assert ("x:credit" in nodes) is deployed
        edges = set(re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', svg))
        assert ("d:loans@1", f"r:{mv.run_id}") in edges
        assert (f"r:{mv.run_id}", f"m:credit@{version}") in edges


def test_lineage_of_an_isolated_version_says_so(client, life):
    ws = life["ws"]
    ws.datasets.register("lonely", pd.DataFrame({"a": [1, 2, 3]}))
    html = client.get("/datasets/lonely/1").text
    assert 'id="lineage-empty"' in html


def test_unknown_ids_are_404_pages(client):
    for path in ("/models/credit/999", "/models/nope", "/datasets/loans/77",
                 "/datasets/nope/1", "/models/credit/x1"):
        assert client.get(path).status_code == 404, path


# ------------------------------------------------------------------ browser
def test_lifecycle_pages_in_a_browser(watched, life_url, life):
    page = watched
    browser_login(page, life_url, life["admin"])
    page.goto(f"{life_url}/deployments/credit?window=all")
    for chart in ("#chart-requests", "#chart-errors", "#chart-latency"):
        page.wait_for_selector(f"{chart}[data-drawn='1'] canvas")
    shot(page, "page-deployment-traffic")
    page.select_option("#window", "1h")
    page.wait_for_url(re.compile(r".*window=1h.*"))
    page.wait_for_selector("#chart-requests[data-drawn='1']")
    page.goto(f"{life_url}/models/credit")
    page.wait_for_selector("#promotion-attempts")
    assert page.locator("#promotion-attempts tbody tr").count() == 3
    shot(page, "page-model-promotions")
    page.click("#promotion-attempts tbody tr.promoted a:has-text('@1')")
    page.wait_for_selector("#shap-table")
    shot(page, "page-model-version-report")
    page.goto(f"{life_url}/datasets/loans/1")
    page.wait_for_selector("svg.lineage g.node")
    shot(page, "page-dataset-lineage")
    with page.expect_navigation():
        page.click("svg.lineage g[data-node='x:credit']")
    assert page.url.endswith("/deployments/credit")
    page.goto(f"{life_url}/deployments/nobody")
    assert "Not found" in page.inner_text("h1")
    # the 404 of the unknown deployment is the browser's only console message
    page.problems[:] = [p for p in page.problems if "404" not in p]
