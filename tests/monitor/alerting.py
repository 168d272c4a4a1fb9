"""What the monitor's storage, alert, CLI and HTML tests share: a workspace
with registered model names, monitor reports built by hand (the shape of
``MonitorReport.to_dict()``), and a real HTTP server on loopback that
records webhook POSTs and can fail the first few."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any, Self

import pytest

from shipyard import Workspace

COLUMNS = ("age", "hours_per_week", "workclass")


def register_names(ws: Workspace, *names: str) -> None:
    """Register model names only (no version): all the monitor's stores need."""
    from shipyard.store.tables import RegisteredModelRow

    with ws.db.write() as session:
        for name in names:
            session.add(RegisteredModelRow(name=name, created_at=time.time()))


def report_dict(model: str = "income", *, drifted: tuple[str, ...] = (), version: int | None = 1,
                role: str | None = "primary", n: int = 500, start: float | None = None,
                end: float | None = None, quality: dict | None = None,
                realized: dict | None = None, estimated: dict | None = None,
                verdict: str | None = None) -> dict[str, Any]:
    """A monitor report: ``drifted`` columns drift, the others do not."""
    end = time.time() if end is None else end
    start = end - 3600 if start is None else start
    drift = {}
    for column in COLUMNS:
        bad = column in drifted
        numeric = column != "workclass"
        drift[column] = {"test": "ks" if numeric else "chi2",
                         "statistic": 0.4 if bad else 0.02,
                         "p_value": 1e-9 if bad else 0.6, "p_adjusted": 3e-9 if bad else 0.6,
                         "effect": 0.5 if bad else 0.01,
                         "effect_name": "psi" if numeric else "js", "drifted": bad}
    share = len(drifted) / len(COLUMNS)
    quality = quality if quality is not None else {
        "missing_rate": {"value": 0.01, "threshold": 0.1, "failed": False, "detail": {}},
        "unseen_categories": {"value": 0.0, "threshold": 0.05, "failed": False,
                              "detail": {"workclass": []}}}
    performance = {"realized": realized or {}, "estimated": estimated or {},
                   "reference": {"accuracy": {"value": 0.85}}}
    if verdict is None:
        verdict = "alert" if share >= 0.3 else ("warning" if drifted else "ok")
    return {"model": model, "version": version, "role": role,
            "window": {"start": start, "end": end, "n": n}, "drift": drift,
            "dataset_drift": {"share": share, "drifted": share >= 0.3, "multivariate": {}},
            "quality": quality, "performance": performance, "verdict": verdict,
            "created_at": end}


class WebhookReceiver:
    """An HTTP server on loopback recording every POST (path, headers, JSON
    body); the first ``fail_first`` answer ``fail_status``."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 500):
        self.fail_first, self.fail_status = fail_first, fail_status
        self.posts: list[dict[str, Any]] = []
        self.attempts = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing:
                        receiver.posts.append({"path": self.path, "headers": dict(self.headers),
                                               "body": json.loads(body)})
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ws(tmp_path):
    """A SQLite workspace with model names ``income`` and ``fraud``."""
    workspace = Workspace.open(tmp_path / "home")
    register_names(workspace, "income", "fraud")
    yield workspace
    workspace.close()


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


def drift_rule(**changes: Any) -> dict[str, Any]:
    rule = {"name": "input_drift", "check": "dataset_drift", "for_windows": 2,
            "resolve_after": 2}
    rule.update(changes)
    return rule


# ------------------------------------------------- a served model, watched
def send_traffic(ws: Workspace, ref: str, frame, *, batch: int = 50,
                 labels: bool = True) -> list[str]:
    """POST ``frame``'s rows (``y`` dropped) to a live server for ``ref``,
    ``batch`` rows a request, and each request's labels as feedback; return
    the request ids. The server's prediction log is flushed when it stops."""
    import httpx
    from serve.conftest import LiveServer

    from shipyard.serve import create_app

    name = ref.split("@")[0]
    inputs = frame.drop(columns="y")
    records = inputs.astype(object).where(inputs.notna(), None).to_dict("records")
    ids = []
    app = create_app(ws, [ref], auth=False, reload_interval=0)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(0, len(records), batch):
            answer = client.post(f"/v1/models/{name}:predict",
                                 json={"records": records[i:i + batch]})
            assert answer.status_code == 200, answer.text
            rid = answer.headers["x-request-id"]
            ids.append(rid)
            if labels:
                sent = client.post("/v1/feedback", json={
                    "request_id": rid, "model": name,
                    "label": [int(v) for v in frame["y"].iloc[i:i + batch]]})
                assert sent.status_code == 200, sent.text
    return ids


def drifted_frame(n: int = 300, seed: int = 3):
    """Toy rows whose ``x0`` and ``age`` moved and whose colours are new."""
    from serve.conftest import toy_frame

    frame = toy_frame(n, seed=seed)
    frame["x0"] = frame["x0"] + 3.0
    frame["age"] = frame["age"] + 40.0
    frame["colour"] = "purple"
    return frame


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A workspace whose model ``toy`` (version 1, reference built at
    registration) served 300 drifted rows, labelled, in the last minutes."""
    from serve.conftest import project, toy_frame

    from shipyard.project import parse_project
    from shipyard.train import train

    workspace = Workspace.open(tmp_path_factory.mktemp("watched") / "home")
    workspace.datasets.register("toy", toy_frame(400))
    run = train(workspace, parse_project(project(1, "p1"))).study_run_id
    workspace.models.register("toy", run)
    send_traffic(workspace, "toy@1", drifted_frame())
    yield workspace
    workspace.close()
