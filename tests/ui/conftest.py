"""Fixtures of the UI tests: a workspace holding a bit of everything (with
hostile text in names, tags and data), API keys, a logged-in HTTP client,
and a real uvicorn server for the browser tests.

The browser is Debian's ``chromium`` driven by Playwright through
``executable_path``: Playwright's own browser download does not work here.
Without it the browser tests fail (not skip), saying how to install it.
"""

from __future__ import annotations

import shutil
import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace

XSS_SCRIPT = "<script>alert('xss-script')</script>"
XSS_IMG = "<img src=x onerror=alert('xss-img')>"
ARTIFACTS = Path(__file__).parent / "artifacts"
#: One PNG pixel.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201d5"
                    "a52d8c0000000049454e44ae426082")


def build_workspace(home: Path) -> dict:
    """A workspace with datasets, runs, a model with versions and aliases, a
    deployment and keys; returns what the tests need to find them."""
    from sklearn.linear_model import LogisticRegression

    ws = Workspace.open(home)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 200),
                          "income": rng.normal(50, 10, 200).round(2),
                          "city": rng.choice(["north", "south", XSS_SCRIPT, XSS_IMG], 200),
                          "label": rng.integers(0, 2, 200)})
    d1 = ws.datasets.register("people", frame, expectations=[
        {"column": "age", "range": {"min": 0, "max": 120}}, {"rows": {"min": 10}}],
        description=f"census sample {XSS_IMG}")
    frame2 = frame.assign(income=frame.income * 1.1, extra=1.0)
    d2 = ws.datasets.register("people", frame2, parents=[d1])
    runs = []
    for i in range(23):
        exp = "tuning" if i % 2 else "baseline"
        params = {"lr": [0.1, 0.01, 0.001][i % 3], "model": ["lgbm", "rf"][i % 2]}
        if i % 5 == 0:
            params["odd key"] = "x"
        tags = {"kind": "trial", "note": XSS_SCRIPT if i == 3 else "it's a \\ tag"}
        name = XSS_IMG if i == 4 else f"run-{i:02d}"
        with ws.start_run(exp, name=name, params=params, tags=tags, seed=i,
                          inputs=[d2] if i % 4 == 0 else None) as run:
            steps = 50 + i
            run.log_metrics({"loss": 1.0}, step=0)
            for s in range(1, steps):
                run.log_metric("loss", 1.0 / (s + 1) + i * 1e-3, step=s)
            if i % 3:  # some runs miss it: they sort last
                run.log_metric("auc", 0.7 + (i % 7) * 0.01 + (0.001 if i > 10 else 0))
            if i == 7:
                run.log_metric("auc_nan", float("nan"))
        runs.append(run.id)
        # distinct start times are not guaranteed; ties exercise the id tie-break
    with ws.start_run("tuning", name="artifacts", params={"lr": 0.5}) as run:
        run.log_text("notes.txt", "hello " + XSS_SCRIPT)
        run.log_dict("config.json", {"layers": [64, 32], "name": XSS_IMG})
        run.log_text("big.txt", "y" * (200 * 1024))
        run.log_bytes("huge.bin", b"\0" * (6 * 1024 * 1024))
        run.log_bytes("plot.png", PNG)
        run.log_text("evaluation/report.html",
                      "<html><body><h1>Report</h1><script>alert('xss-report')</script>"
                      "<img src=x onerror=alert('xss-report-img')></body></html>")
        for s in range(10_000):
            run.log_metric("long", float(np.sin(s / 300.0)), step=s)
        with run.start_run(name="child") as child:
            child.log_metric("loss", 0.5)
    artifacts_run = run.id
    X = frame[["age", "income"]]
    clf = LogisticRegression(max_iter=200).fit(X, frame.label)
    v1 = ws.models.register("fraud", clf, sample=X.head(20), description=XSS_SCRIPT)
    clf2 = LogisticRegression(max_iter=200, C=0.5).fit(X, frame.label)
    v2 = ws.models.register("fraud", clf2, sample=X.head(20))
    clf3 = LogisticRegression(max_iter=300, C=0.1).fit(X, frame.label)
    v3 = ws.models.register("fraud", clf3, sample=X.head(20))
    ws.models.set_alias("fraud", "champion", v1.version, reason="first release")
    ws.models.set_alias("fraud", "challenger", v2.version, reason="try it")
    ws.deployments.set("fraud", {"strategy": "canary", "primary": "fraud@champion",
                                 "candidate": "fraud@challenger", "weight": 20},
                       reason="canary 20%")
    _, admin = ws.keys.create("admin-key", scopes=["admin"])
    _, reader = ws.keys.create(f"reader {XSS_IMG}", scopes=["predict"])
    revoked_id, revoked = ws.keys.create("old", scopes=["admin"])
    ws.keys.revoke(revoked_id)
    ws.runs.flush()
    return {"ws": ws, "runs": runs, "artifacts_run": artifacts_run, "admin": admin,
            "reader": reader, "revoked": revoked,
            "versions": [v1.version, v2.version, v3.version]}


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """The shared workspace (one per test process: building it imports
    scikit-learn and skops, which takes seconds). Tests that change it use
    their own alias, so they do not disturb each other."""
    data = build_workspace(tmp_path_factory.mktemp("ui") / "home")
    yield data
    data["ws"].close()


@pytest.fixture(scope="session")
def app(env):
    from shipyard.ui import create_ui_app

    return create_ui_app(env["ws"])


def login(client, secret: str, next_path: str = "/runs"):
    """Log ``client`` in with ``secret``; return the login response."""
    page = client.get("/login")
    assert page.status_code == 200
    token = client.cookies.get("shipyard_ui_login")
    return client.post("/login", data={"key": secret, "login_token": token,
                                       "next": next_path})


def csrf_of(client) -> str:
    """The CSRF token of ``client``'s session, read from a page."""
    import re

    html = client.get("/audit").text
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def admin_client(app, env):
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        assert login(client, env["admin"]).status_code == 303
        yield client


@pytest.fixture
def reader_client(app, env):
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        assert login(client, env["reader"]).status_code == 303
        yield client


@pytest.fixture
def anonymous(app):
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


# ------------------------------------------------------------------ browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def on_loopback(app):
    """Serve ``app`` with a real uvicorn on a free loopback port; yields its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_url(app):
    """The app served by a real uvicorn on loopback, for the browser."""
    with on_loopback(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright, for one test module.

    Module-scoped on purpose, and not pytest-playwright's session-scoped
    fixtures: Playwright's sync API keeps an asyncio loop marked running in
    the thread while it is open, so ``asyncio.run`` in any later test of the
    same process (an xdist worker) would fail. Closing it with the module
    hands the thread back clean."""
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed, so the UI browser tests cannot run: "
                    "`apt-get install -y chromium` (`make test` does it through `make dev`)",
                    pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=path, headless=True,
            args=["--no-sandbox", "--headless", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) and page for each test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


#: Console messages that are the point, not a fault: a sandboxed artifact
#: (a stored HTML report) is not allowed to run its scripts, and Chromium says so.
EXPECTED_CONSOLE = ("Blocked script execution in",)


@pytest.fixture
def watched(page, request):
    """The Playwright page, recording console errors, uncaught exceptions and
    dialogs; the test fails if any appeared. A screenshot of the last page is
    written to tests/ui/artifacts/ whatever the outcome."""
    problems: list[str] = []
    dialogs: list[str] = []

    def on_console(msg):
        if msg.type == "error" and not msg.text.startswith(EXPECTED_CONSOLE):
            problems.append(f"console error on {page.url}: {msg.text}")

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error on {page.url}: {exc}"))
    page.on("dialog", on_dialog)
    page.set_default_timeout(15_000)
    page.problems, page.dialogs = problems, dialogs
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    except Exception:  # the page may be closed already; the screenshot is a bonus
        pass
    assert dialogs == [], f"a script ran: dialogs {dialogs}"
    assert problems == [], "\n".join(problems)


def shot(page, name: str) -> None:
    """A screenshot of the current page into tests/ui/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def browser_login(page, base: str, secret: str) -> None:
    page.goto(f"{base}/runs")
    assert "/login" in page.url
    page.fill("#key", secret)
    page.click("#login-submit")
    page.wait_for_url(f"{base}/runs")
