"""The run pages' handling of big things, proved by bounds rather than
timings: a 50 MB artifact is previewed from its head and downloaded in
chunks in bounded memory; a long curve is sent as ≤ 2,000 points that keep
its spikes; the run list reads only the columns shown."""

from __future__ import annotations

import asyncio
import math
import tracemalloc

import pytest
from sqlalchemy import event

from .conftest import login

BIG = 50 * 1024 * 1024
HEAD = b"first line of a big log\n"


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A workspace whose run logged a 50 MB text file (sparse on the source
    disk) and a 20,000-point curve with one spike; a logged-in client."""
    from starlette.testclient import TestClient

    from shipyard import Workspace
    from shipyard.ui import create_ui_app

    home = tmp_path_factory.mktemp("perf")
    source = home / "big.log"
    with open(source, "wb") as fh:
        fh.write(HEAD)
        fh.truncate(BIG)
    ws = Workspace.open(home / "ws")
    with ws.start_run("perf", params={"lr": 0.1, "depth": 3}, tags={"team": "red"}) as run:
        run.log_artifact(source, "big.log")
        for step in range(20_000):
            run.log_metric("signal", 100.0 if step == 12_345 else math.sin(step / 300))
        run.log_metrics({"auc": 0.9, "loss": 0.2})
    _, admin = ws.keys.create("admin", scopes=["admin"])
    app = create_ui_app(ws)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        assert login(client, admin).status_code == 303
        yield {"ws": ws, "run": run.id, "app": app, "client": client}
    ws.close()


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_big_text_artifact_is_previewed_from_its_head(big):
    client, run = big["client"], big["run"]
    res, peak = _peak_bytes(lambda: client.get(f"/runs/{run}/preview/big.log"))
    assert res.status_code == 200
    assert HEAD.decode().strip() in res.text and "Preview cut at" in res.text
    assert len(res.text) < 80_000  # capped, though the file is 50 MB
    assert peak < 8 * 1024 * 1024  # the file was not read whole


def _asgi_get(app, path: str, cookie: str) -> tuple[dict, list[int], int]:
    """GET ``path`` straight through ASGI, dropping each body chunk as it
    comes: ``(headers, chunk sizes, peak traced memory)``."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("test", 80),
             "client": ("127.0.0.1", 1234),
             "headers": [(b"host", b"test"), (b"cookie", cookie.encode())]}
    start: dict = {}
    sizes: list[int] = []

    async def run():
        sent = asyncio.Event()
        requested = False

        async def receive():
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await sent.wait()  # the client stays connected until the body is complete
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                sizes.append(len(message.get("body", b"")))
                if not message.get("more_body", False):
                    sent.set()

        await app(scope, receive, send)

    _, peak = _peak_bytes(lambda: asyncio.run(run()))
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return {"status": start.get("status"), **headers}, sizes, peak


def test_a_big_download_is_streamed_in_bounded_memory(big):
    client, run = big["client"], big["run"]
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    headers, sizes, peak = _asgi_get(big["app"], f"/runs/{run}/artifacts/big.log", cookie)
    assert headers["status"] == 200 and int(headers["content-length"]) == BIG
    assert sum(sizes) == BIG
    assert len([s for s in sizes if s]) >= BIG // (256 * 1024)  # many chunks, not one body
    assert max(sizes) <= 256 * 1024
    assert peak < 16 * 1024 * 1024  # a fraction of the 50 MB file


def test_a_long_curve_is_cut_to_2000_points_keeping_its_spike(big):
    client, run = big["client"], big["run"]
    data = client.get(f"/runs/{run}/curve", params={"key": "signal"}).json()
    assert data["total"] == 20_000 and data["shown"] == len(data["x"]) <= 2000
    assert 12_345 in data["x"] and max(data["y"]) == 100.0
    assert data["x"][0] == 0 and data["x"][-1] == 19_999


def test_the_run_list_reads_only_the_shown_columns(big):
    client, ws = big["client"], big["ws"]
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.lower())

    event.listen(ws.db.read_engine, "before_cursor_execute", seen)
    try:
        res = client.get("/runs", params={"experiment": "perf", "col": ["status", "metrics.auc"]})
    finally:
        event.remove(ws.db.read_engine, "before_cursor_execute", seen)
    assert res.status_code == 200 and "0.9" in res.text
    values = [s for s in statements if "from params" in s or "from tags" in s
              or "from latest_metrics" in s]
    # params and tags: only their keys, for the picker (SELECT DISTINCT key); no values.
    assert all("distinct" in s for s in values if "from params" in s or "from tags" in s)
    assert any("latest_metrics.value" in s for s in values)
    assert 'value="params.lr"' in res.text  # the picker still offers the other keys


def test_a_run_page_reads_its_first_curves_ahead_of_their_requests(big):
    client, run, ui = big["client"], big["run"], big["app"].state.ui
    with ui.curves_lock:
        ui.curves.clear()
    assert client.get(f"/runs/{run}").status_code == 200
    with ui.curves_lock:  # read ahead: under way or done, not yet asked for
        started = {k for k in (*ui.curves, *ui.curves_pending) if k[0] == run}
    assert (run, "signal", 2000) in started and (run, "auc", 2000) in started
    ahead = client.get(f"/runs/{run}/curve", params={"key": "signal"}).json()
    with ui.curves_lock:
        ui.curves.clear()
    direct = client.get(f"/runs/{run}/curve", params={"key": "signal"}).json()
    assert ahead == direct and ahead["total"] == 20_000
    for _ in range(200):  # every read-ahead ends, none is left pending
        with ui.curves_lock:
            if not ui.curves_pending:
                break
        import time
        time.sleep(0.01)
    assert not ui.curves_pending
