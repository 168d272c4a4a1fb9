"""Web UI benchmark: the run list, comparison and long curves at scale.

Prints ``name: value`` lines:

(a) building the workspace: ``--runs`` runs with ``--keys`` params + metrics each
    (half and half), created through the tracking API (``ws.start_run`` with
    the params, one ``log_metrics`` call, ``end``), runs/s; the first
    ``--compare`` runs also log a ``loss`` curve of ``--steps`` points, and one
    run logs ``--points`` points of one metric;
(b) server side (in-process ASGI, no network): first page of the run list
    (default order; sorted by a metric; with a filter) and page 50 through
    the keyset page token, p50/p95 over ``--queries`` requests;
(c) headless Chromium (Debian's ``chromium`` through Playwright) against
    uvicorn on loopback: time from navigation to the run list being
    interactive (``load``: htmx and the table ready), p50/p95;
(d) comparing ``--compare`` runs: the compare page and its curves request on
    the server, and in the browser until the overlaid chart is drawn;
(e) the run with ``--points`` points: its curve request (read, LTTB to
    2,000 points) on the server, and in the browser until drawn.

The issue's targets (100,000 runs × 50): (b) p95 ≤ 300 ms, (c) ≤ 1 s,
(d) ≤ 2 s, (e) ≤ 1 s. Smoke run: ``python benchmarks/ui.py --runs 2000
--points 100000``. ``--home DIR`` keeps the workspace and reuses it (building
100,000 runs takes a while).

Usage: ``python benchmarks/ui.py [--runs N] [--keys N] [--compare N] ...``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

EXPERIMENT = "bench-ui"
FILTER = "metrics.m0 > 0.5 and params.p1 = 'v1'"


def emit(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:,.1f}" if value >= 100 else f"{value:.4g}"
    print(f"{name}: {value}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ------------------------------------------------------------------ build
def build(ws, n_runs: int, n_keys: int, n_compare: int, steps: int, points: int) -> dict:
    """Create the runs (skipping what a reused workspace already holds)."""
    rng = random.Random(0)
    have = ws.runs.search(experiment=EXPERIMENT, limit=1, order_by=["start_time ASC"])
    existing = ws.counts()["runs"]
    long_runs = ws.runs.search("tags.bench = 'long'", limit=1)
    info = {"created": 0, "seconds": 0.0}
    n_params = n_keys // 2
    n_metrics = n_keys - n_params
    start = time.perf_counter()
    todo = max(0, n_runs - (existing - (1 if long_runs else 0))) if have else n_runs
    for i in range(todo):
        params = {f"p{k}": f"v{rng.randrange(4)}" for k in range(n_params)}
        run = ws.start_run(EXPERIMENT, name=f"run-{i}", params=params, seed=i)
        run.log_metrics({f"m{k}": rng.random() for k in range(n_metrics)})
        if i < n_compare:
            base = rng.uniform(0.5, 1.5)
            for s in range(steps):
                run.log_metric("loss", base / (s + 1) + rng.random() * 0.01, step=s)
        run.end()
        if i and i % 5000 == 0:
            print(f"  ... {i} runs", file=sys.stderr, flush=True)
    info["created"] = todo
    info["seconds"] = time.perf_counter() - start
    if not long_runs:
        t = time.perf_counter()
        with ws.start_run(EXPERIMENT + "-long", name="long", tags={"bench": "long"}) as run:
            import math

            for s in range(points):
                run.log_metric("signal", math.sin(s / 5000) + rng.random() * 0.1, step=s)
        info["long_seconds"] = time.perf_counter() - t
        long_id = run.id
    else:
        long_id = long_runs[0].id
    ws.runs.flush()
    info["long_id"] = long_id
    return info


# ----------------------------------------------------------------- server
def server_side(app, admin: str, queries: int, compare: int, long_id: str) -> None:
    from starlette.testclient import TestClient

    with TestClient(app, follow_redirects=False) as client:
        client.get("/login")
        token = client.cookies.get("shipyard_ui_login")
        assert client.post("/login", data={"key": admin, "login_token": token}).status_code == 303

        def timed(path: str, n: int) -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                res = client.get(path)
                out.append((time.perf_counter() - t) * 1000)
                assert res.status_code == 200, (path, res.status_code)
            return out

        cases = {"first_page": f"/runs?experiment={EXPERIMENT}",
                 "first_page_all_experiments": "/runs",
                 "first_page_sorted_by_metric": f"/runs?experiment={EXPERIMENT}"
                                                 "&sort=metrics.m0&dir=desc",
                 "first_page_filtered": f"/runs?experiment={EXPERIMENT}&filter="
                                        + FILTER.replace(" ", "+").replace("'", "%27")}
        for name, path in cases.items():
            timed(path, 2)  # warm
            ms = timed(path, queries)
            emit(f"server_{name}_p50_ms", statistics.median(ms))
            emit(f"server_{name}_p95_ms", pct(ms, 0.95))
        # page 50 through page tokens (keyset: it should cost what page 1 costs)
        import re

        path = f"/runs?experiment={EXPERIMENT}"
        for _ in range(49):
            html = client.get(path).text
            m = re.search(r'href="([^"]+)" hx-get="[^"]+" hx-target="#runs-results" '
                          r'hx-push-url="true" id="next-page"', html)
            if m is None:
                break
            path = m.group(1).replace("&amp;", "&")
        ms = timed(path, queries)
        emit("server_page_50_p95_ms", pct(ms, 0.95))
        compare_q = f"experiment={EXPERIMENT}&sort=start_time&dir=asc&n={compare}"
        ms = timed(f"/compare?{compare_q}", 3)
        emit(f"server_compare_{compare}_page_median_ms", statistics.median(ms))
        # Curves of ended runs are kept once downsampled: the first request
        # reads every point (cold), later ones do not (warm).
        ms = timed(f"/compare/curves?{compare_q}&key=loss", 4)
        emit(f"server_compare_{compare}_curves_cold_ms", ms[0])
        emit(f"server_compare_{compare}_curves_warm_median_ms", statistics.median(ms[1:]))
        size = len(client.get(f"/compare/curves?{compare_q}&key=loss").content)
        emit(f"compare_{compare}_curves_json_kib", size / 1024)
        ms = timed(f"/runs/{long_id}/curve?key=signal", 4)
        emit("server_long_curve_cold_ms", ms[0])
        emit("server_long_curve_warm_median_ms", statistics.median(ms[1:]))


# ---------------------------------------------------------------- browser
def browser_side(app, admin: str, loads: int, compare: int, long_id: str) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    chromium = shutil.which("chromium")
    if chromium is None:
        emit("browser", "skipped: Debian's chromium is not installed (apt-get install chromium)")
        return
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium,
                                        args=["--no-sandbox", "--headless", "--disable-gpu"])
            emit("browser_version", browser.version)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/login")
            page.fill("#key", admin)
            page.click("#login-submit")
            page.wait_for_url(f"{base}/runs")

            tti = []
            for _ in range(loads):
                t = time.perf_counter()
                page.goto(f"{base}/runs?experiment={EXPERIMENT}", wait_until="load")
                page.wait_for_function("window.htmx !== undefined")
                tti.append((time.perf_counter() - t) * 1000)
            nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
            emit("browser_run_list_interactive_p50_ms", statistics.median(tti))
            emit("browser_run_list_interactive_p95_ms", pct(tti, 0.95))
            import json

            timing = json.loads(nav)
            emit("browser_run_list_dom_interactive_ms", timing["domInteractive"])
            emit("browser_run_list_html_kib", timing["transferSize"] / 1024)

            times, tables = [], []
            for _ in range(4):
                t = time.perf_counter()
                page.goto(f"{base}/compare?experiment={EXPERIMENT}&sort=start_time&dir=asc"
                          f"&n={compare}&key=loss")
                page.wait_for_selector("#compare-chart[data-drawn='1']", timeout=60_000)
                times.append((time.perf_counter() - t) * 1000)
                page.wait_for_selector("#diff-table", timeout=60_000)
                tables.append((time.perf_counter() - t) * 1000)
            emit(f"browser_compare_{compare}_curves_drawn_cold_ms", times[0])
            emit(f"browser_compare_{compare}_curves_drawn_warm_median_ms",
                 statistics.median(times[1:]))
            emit(f"browser_compare_{compare}_last_fetch_ms",
                 page.get_attribute("#compare-chart", "data-fetch-ms"))
            emit(f"browser_compare_{compare}_last_uplot_draw_ms",
                 page.get_attribute("#compare-chart", "data-draw-ms"))
            emit(f"browser_compare_{compare}_with_diff_table_warm_median_ms",
                 statistics.median(tables[1:]))

            times = []
            for _ in range(4):
                t = time.perf_counter()
                page.goto(f"{base}/runs/{long_id}")
                page.wait_for_selector("figure.chart[data-drawn='1']", timeout=60_000)
                times.append((time.perf_counter() - t) * 1000)
            emit("browser_long_curve_drawn_cold_ms", times[0])
            emit("browser_long_curve_drawn_warm_median_ms", statistics.median(times[1:]))
            emit("browser_long_curve_last_fetch_ms",
                 page.get_attribute("figure.chart", "data-fetch-ms"))
            emit("browser_long_curve_last_uplot_draw_ms",
                 page.get_attribute("figure.chart", "data-draw-ms"))
            browser.close()
    finally:
        server.should_exit = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=50, help="params + metrics per run")
    parser.add_argument("--compare", type=int, default=500, help="runs compared")
    parser.add_argument("--steps", type=int, default=200,
                        help="points of each compared run's loss curve")
    parser.add_argument("--points", type=int, default=1_000_000,
                        help="points of the one long curve")
    parser.add_argument("--queries", type=int, default=50, help="timed server requests")
    parser.add_argument("--loads", type=int, default=20, help="timed browser page loads")
    parser.add_argument("--home", help="keep (and reuse) the workspace in this folder")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()

    from shipyard import Workspace, __version__
    from shipyard.ui import create_ui_app

    emit("versions", f"shipyard {__version__}, python {sys.version.split()[0]}")
    emit("cpus", os.cpu_count())
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        ws = Workspace.open(home)
        info = build(ws, args.runs, args.keys, args.compare, args.steps, args.points)
        if info["created"]:
            emit("runs_created", info["created"])
            emit("runs_created_per_s_api", info["created"] / info["seconds"])
        if "long_seconds" in info:
            emit(f"long_curve_{args.points}_points_logged_s", info["long_seconds"])
        emit("workspace_runs", ws.counts()["runs"])
        _, admin = ws.keys.create("bench", scopes=["admin"])
        app = create_ui_app(ws)
        server_side(app, admin, args.queries, args.compare, info["long_id"])
        if not args.skip_browser:  # a new app: its curve cache starts cold
            browser_side(create_ui_app(ws), admin, args.loads, args.compare, info["long_id"])
        ws.close()
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
