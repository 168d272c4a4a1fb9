"""``shipyard serve MODEL --ui``: the web UI mounted under ``/ui`` of the
prediction server, on the same port with the same API keys. The server is
the real command in its own process; requests go over loopback, and the
browser logs in under the prefix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace

from .conftest import XSS_IMG, _free_port, shot


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A workspace with one model under a canary, keys, and ``shipyard serve
    --ui`` running on it."""
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("served") / "home"
    ws = Workspace.open(home)
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.normal(0, 1, 120), "b": rng.normal(0, 1, 120)})
    y = (X.a + X.b > 0).astype(int)
    for c in (1.0, 0.1):
        ws.models.register("scorer", LogisticRegression(C=c).fit(X, y), sample=X.head(10))
    ws.models.set_alias("scorer", "champion", 1, reason="first")
    ws.models.set_alias("scorer", "challenger", 2, reason=f"try {XSS_IMG}")
    ws.deployments.set("scorer", {"strategy": "canary", "primary": "scorer@champion",
                                  "candidate": "scorer@challenger", "weight": 50},
                       reason="half and half")
    _, admin = ws.keys.create("admin", scopes=["admin"])
    _, predict = ws.keys.create("client", scopes=["predict"])
    ws.close()
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shipyard", "--home", str(home), "serve",
                             "scorer@champion", "--ui", "--port", str(port),
                             "--reload-interval", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/v2/health/ready", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.stdout.read().decode()
                time.sleep(0.3)
        yield {"base": base, "admin": admin, "predict": predict, "home": home}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _login(client: httpx.Client, base: str, secret: str) -> httpx.Response:
    form = client.get(f"{base}/ui/login")
    assert form.status_code == 200
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    return client.post(f"{base}/ui/login", data={"key": secret, "login_token": token,
                                                 "next": "/runs"})


def test_ui_is_mounted_under_ui_and_needs_a_login(served):
    base = served["base"]
    with httpx.Client(follow_redirects=False) as client:
        r = client.get(f"{base}/ui/models")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=%2Fmodels"
        wrong = _login(client, base, "shp_0123456789ab_" + "x" * 43)
        assert wrong.status_code == 401 and "login refused" in wrong.text
        ok = _login(client, base, served["predict"])  # any key of the workspace reads
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/runs"
        assert "Path=/ui" in ok.headers["set-cookie"]
        page = client.get(f"{base}/ui/models/scorer")
        assert page.status_code == 200
        assert 'href="/ui/static/' in page.text and 'href="/ui/models/scorer/2"' in page.text
        assert client.get(f"{base}/ui/static/app.js").status_code == 200
        missing = client.get(f"{base}/ui/models/scorer/99")
        assert missing.status_code == 404 and "Not found" in missing.text


def test_server_routes_are_not_shadowed(served):
    base = served["base"]
    auth = {"Authorization": f"Bearer {served['predict']}"}
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    assert httpx.get(f"{base}/v1/models").status_code == 401  # still the server's auth
    r = httpx.post(f"{base}/v1/models/scorer:predict", headers=auth,
                   json={"records": [{"a": 0.5, "b": 1.0}]})
    assert r.status_code == 200 and r.json()["predictions"] in ([0], [1])
    # an API key is no UI login, and a UI cookie is no API key
    assert httpx.get(f"{base}/ui/runs", headers=auth).status_code == 303
    assert httpx.get(f"{base}/nothing-here").status_code == 404


def test_requests_to_the_server_show_on_the_mounted_deployment_page(served):
    base = served["base"]
    auth = {"Authorization": f"Bearer {served['predict']}"}
    for i in range(30):
        r = httpx.post(f"{base}/v1/models/scorer:predict", headers=auth,
                       json={"records": [{"a": i / 10, "b": -1.0}]})
        assert r.status_code == 200
    bad = httpx.post(f"{base}/v1/models/scorer:predict", headers=auth,
                     json={"records": [{"a": "x"}]})
    assert bad.status_code in (400, 422)
    with httpx.Client(follow_redirects=False) as client:
        assert _login(client, base, served["admin"]).status_code == 303
        deadline = time.monotonic() + 30
        while True:  # the log is written every second
            html = client.get(f"{base}/ui/deployments/scorer?window=1h").text
            counts = re.search(r"(\d+) requests? logged", html)
            if counts and int(counts.group(1)) >= 31:
                break
            assert time.monotonic() < deadline, "the requests never reached the log"
            time.sleep(0.5)
        table = re.search(r'<table id="traffic-table">(.*?)</table>', html, re.DOTALL).group(1)
        assert "v1 primary" in table and "v2 candidate" in table  # the canary split them
        assert "&lt;img src=x" in html and "<img src=x" not in html
        data = client.get(f"{base}/ui/deployments/scorer/traffic.json?window=1h").json()
        assert sum(sum(s["y"]) for s in data["charts"]["requests"]) == data["requests"] >= 31


def test_forms_under_the_prefix_need_csrf_and_an_admin(served):
    base = served["base"]
    with httpx.Client(follow_redirects=False) as client:
        assert _login(client, base, served["admin"]).status_code == 303
        page = client.get(f"{base}/ui/models/scorer").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        forged = client.post(f"{base}/ui/models/scorer/alias",
                             data={"alias": "staging", "version": "2", "reason": "x"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        moved = client.post(f"{base}/ui/models/scorer/alias",
                            data={"alias": "staging", "version": "2", "reason": "via /ui",
                                  "csrf_token": csrf})
        assert moved.status_code == 303 and moved.headers["location"] == "/ui/models/scorer"
    ws = Workspace.open(served["home"])
    try:
        entry = ws.audit.entries("model", "scorer", action="model.alias.set")[-1]
        assert entry.reason == "via /ui" and entry.actor.startswith("ui:admin")
    finally:
        ws.close()
    with httpx.Client(follow_redirects=False) as reader:
        assert _login(reader, base, served["predict"]).status_code == 303
        page = reader.get(f"{base}/ui/models/scorer").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        refused = reader.post(f"{base}/ui/models/scorer/alias",
                              data={"alias": "staging", "version": "1", "reason": "no",
                                    "csrf_token": csrf})
        assert refused.status_code == 403


def test_mounted_ui_in_a_browser(watched, served):
    page = watched
    base = served["base"]
    page.goto(f"{base}/ui/")
    assert "/ui/login" in page.url
    page.fill("#key", served["admin"])
    page.click("#login-submit")
    page.wait_for_url(f"{base}/ui/runs")
    page.click("#nav-deployments")
    page.click("#deployments-table a:has-text('scorer')")
    page.wait_for_selector("#deployment-history")
    if page.locator("#chart-requests").count():
        page.wait_for_selector("#chart-requests[data-drawn]")
    shot(page, "serve-mounted-ui-deployment")
    page.click("#nav-models")
    page.wait_for_selector("#nav-models.active")
    assert page.url == f"{base}/ui/models"


def test_ui_needs_one_worker():
    from typer.testing import CliRunner

    from shipyard.cli import app
    from shipyard.errors import ConfigError

    result = CliRunner().invoke(app, ["serve", "scorer@champion", "--ui", "--workers", "2"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "--ui needs --workers 1" in result.exception.message


def test_a_mount_may_not_shadow_a_server_route(served):
    from shipyard.errors import ConfigError
    from shipyard.serve import create_app
    from shipyard.ui import create_ui_app

    ws = Workspace.open(served["home"])
    try:
        for path in ("/v1", "/v2/models", "/"):
            with pytest.raises(ConfigError, match="cannot mount"):
                create_app(ws, ["scorer@champion"], prediction_log=False,
                           mounts={path: create_ui_app(ws)})
    finally:
        ws.close()
