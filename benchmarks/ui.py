"""Web UI benchmark: the run list, comparison and long curves at scale, side
by side with MLflow's UI on the same runs.

Prints ``name: value`` lines:

(a) building the workspace (benchmark setup, not a measurement of logging):
    ``--runs`` runs with ``--keys`` params + metrics each (half and half),
    written by bulk inserts into the metadata DB exactly as the tracking API
    stores them (one run goes through the API, to create the experiment and
    check the shapes); the first ``--compare`` runs also have a ``loss``
    curve of ``--steps`` points, and one run (experiment ``bench-ui-long``)
    ``--points`` points of ``signal``;
(b) server side (in-process ASGI, no network): first page of the run list
    (default order; sorted by a metric; with a filter) and page 50 through
    the keyset page token, p50/p95 over ``--queries`` requests;
(c) headless Chromium (Debian's ``chromium`` through Playwright) against
    uvicorn on loopback: time from navigation to the run list being
    interactive (``load``: table present, htmx ready), p50/p95;
(d) comparing ``--compare`` runs: the compare page and its curves request on
    the server, and in the browser until the overlaid chart is drawn;
(e) the run with ``--points`` points: its curve request (envelope read, LTTB
    to 2,000 points) on the server, and in the browser until drawn;
(f) MLflow (``/tmp/mlflowenv``, or ``--mlflow-python``): the same runs copied
    into a fresh MLflow SQLite store (MLflow creates its schema; the rows are
    copied with ``INSERT ... SELECT`` from Shipyard's DB, times in ms, run
    names also as ``mlflow.runName`` tags, as MLflow writes them; checked by
    reading back through ``MlflowClient``), ``mlflow server`` started on it,
    then timed the same way: ``runs/search`` (the run list's request, 100
    runs as its UI asks) p50/p95; its experiment page in Chromium until the
    newest run's row shows; the curves of ``--compare`` runs (its metric
    page, which fetches each run's history) until plotly has drawn every
    trace; the ``--points`` curve on the same page.

The issue's targets (100,000 runs × 50): (b) p95 ≤ 300 ms, (c) ≤ 1 s,
(d) ≤ 2 s, (e) ≤ 1 s. Smoke run: ``python benchmarks/ui.py --runs 2000
--points 100000``. ``--home DIR`` keeps the workspace and reuses it.
Run it under ``flock /tmp/bench.lock`` on a shared machine.

Usage: ``python benchmarks/ui.py [--runs N] [--keys N] [--compare N] ...``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
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
def _run_id(i: int) -> str:
    return hashlib.md5(f"bench-ui-{i}".encode()).hexdigest()


def build(ws, n_runs: int, n_keys: int, n_compare: int, steps: int, points: int) -> dict:
    """Create the runs by bulk insert (skipping it when a reused workspace
    already holds them): the rows the tracking API writes, without its
    per-run round trips, which would take most of an hour for 100,000 runs."""
    from sqlalchemy import select

    from shipyard.store.tables import ExperimentRow, RunRow

    long_runs = ws.runs.search("tags.bench = 'long'", limit=1, columns=[])
    if long_runs:
        return {"created": 0, "seconds": 0.0, "long_id": long_runs[0].id}
    rng = random.Random(0)
    n_params = n_keys // 2
    n_metrics = n_keys - n_params
    start = time.perf_counter()
    # One run through the API: creates the experiment, records an environment.
    with ws.start_run(EXPERIMENT, name="api-run", params={f"p{k}": "v0" for k in range(n_params)},
                      seed=0) as api_run:
        api_run.log_metrics({f"m{k}": 0.5 for k in range(n_metrics)})
    api = ws.runs.get(api_run.id)
    with ws.db.read() as s:
        exp_id = s.execute(select(ExperimentRow.id).where(
            ExperimentRow.name == EXPERIMENT)).scalar_one()
        env_digest = s.execute(select(RunRow.environment_digest).where(
            RunRow.id == api.id)).scalar_one()
    t0 = api.start_time - n_runs - 10
    raw = ws.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        for lo in range(0, n_runs - 1, 10_000):
            runs, params, metrics, latest = [], [], [], []
            for i in range(lo, min(n_runs - 1, lo + 10_000)):
                rid = _run_id(i)
                started = t0 + i
                runs.append((rid, exp_id, None, f"run-{i}", "FINISHED", started, started + 1.0,
                             None, i, env_digest, 0.5, 1.0, 100.0))
                params += [(rid, f"p{k}", f"v{rng.randrange(4)}") for k in range(n_params)]
                for k in range(n_metrics):
                    value = rng.random()
                    metrics.append((rid, f"m{k}", value, 0, started + 0.5, 0))
                    latest.append((rid, f"m{k}", value, 0, started + 0.5, 0))
                if i < n_compare:
                    base = rng.uniform(0.5, 1.5)
                    for step in range(steps):
                        value = base / (step + 1) + rng.random() * 0.01
                        metrics.append((rid, "loss", value, step, started + step * 1e-3, 0))
                    latest.append((rid, "loss", value, steps - 1, started + steps * 1e-3, 0))
            cur.executemany(
                "INSERT INTO runs (id, experiment_id, parent_id, name, status, start_time, "
                "end_time, error, seed, environment_digest, cpu_seconds, wall_seconds, "
                "peak_memory_mb) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
            cur.executemany("INSERT INTO params (run_id, key, value) VALUES (?,?,?)", params)
            cur.executemany("INSERT INTO metrics (run_id, key, value, step, timestamp, is_nan) "
                            "VALUES (?,?,?,?,?,?)", metrics)
            cur.executemany("INSERT INTO latest_metrics (run_id, key, value, step, timestamp, "
                            "is_nan) VALUES (?,?,?,?,?,?)", latest)
            print(f"  ... {lo + len(runs)} runs", file=sys.stderr, flush=True)
        cur.execute("COMMIT")
    finally:
        raw.close()
    seconds = time.perf_counter() - start
    t = time.perf_counter()
    with ws.start_run(EXPERIMENT + "-long", name="long", tags={"bench": "long"}) as run:
        run.log_metric("signal", 0.0, step=0)
    raw = ws.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        started = time.time()
        for lo in range(1, points, 100_000):
            cur.executemany(
                "INSERT INTO metrics (run_id, key, value, step, timestamp, is_nan) "
                "VALUES (?,?,?,?,?,?)",
                [(run.id, "signal", math.sin(s / 5000) + rng.random() * 0.1, s,
                  started + s * 1e-3, 0) for s in range(lo, min(points, lo + 100_000))])
        cur.execute("UPDATE latest_metrics SET value = ?, step = ?, timestamp = ? "
                    "WHERE run_id = ? AND key = 'signal'",
                    (math.sin((points - 1) / 5000), points - 1, started + points * 1e-3, run.id))
        cur.execute("COMMIT")
    finally:
        raw.close()
    return {"created": n_runs, "seconds": seconds, "long_seconds": time.perf_counter() - t,
            "long_id": run.id}


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


# ----------------------------------------------------------------- mlflow
MLFLOW_COPY = r"""
import sqlite3, sys, time
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

sy_db, ml_db, art, experiment, limit, compare = sys.argv[1:7]
limit, compare = int(limit), int(compare)
t = time.perf_counter()
store = SqlAlchemyStore("sqlite:///" + ml_db, art)  # MLflow creates its own schema
ids = {name: store.create_experiment(name) for name in (experiment, experiment + "-long")}
con = sqlite3.connect(ml_db)
con.execute("ATTACH DATABASE ? AS sy", (sy_db,))
con.execute("BEGIN")
# The runs to copy: the newest `limit` of the experiment, the `compare` oldest
# (the compared ones) and the long one.
cols = "r.id, r.name, r.status, r.start_time, r.end_time, e.name AS exp"
src = "sy.runs r JOIN sy.experiments e ON e.id = r.experiment_id"
con.execute(f"CREATE TEMP TABLE pick AS "
            f"SELECT * FROM (SELECT {cols} FROM {src} WHERE e.name = ? "
            f"ORDER BY r.start_time DESC LIMIT ?) "
            f"UNION SELECT * FROM (SELECT {cols} FROM {src} WHERE e.name = ? "
            f"ORDER BY r.start_time ASC LIMIT ?) "
            f"UNION SELECT {cols} FROM {src} WHERE e.name = ?",
            (experiment, limit, experiment, compare, experiment + "-long"))
con.execute("CREATE INDEX temp.pick_id ON pick(id)")
cases = " ".join(f"WHEN '{n}' THEN {i}" for n, i in ids.items())
con.execute(
    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
    "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
    "SELECT id, name, 'LOCAL', 'benchmarks/ui.py', '', 'bench', status, "
    "CAST(start_time * 1000 AS INTEGER), CAST(end_time * 1000 AS INTEGER), '', 'active', "
    f"? || '/' || id || '/artifacts', CASE exp {cases} END FROM pick", (art,))
con.execute("INSERT INTO tags (key, value, run_uuid) SELECT 'mlflow.runName', name, id "
            "FROM pick WHERE name IS NOT NULL")
con.execute("INSERT INTO tags (key, value, run_uuid) SELECT 'mlflow.user', 'bench', id FROM pick")
con.execute("INSERT INTO tags (key, value, run_uuid) SELECT t.key, t.value, t.run_id "
            "FROM sy.tags t JOIN pick ON pick.id = t.run_id")
con.execute("INSERT INTO params (key, value, run_uuid) SELECT p.key, p.value, p.run_id "
            "FROM sy.params p JOIN pick ON pick.id = p.run_id")
con.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "SELECT m.key, m.value, CAST(m.timestamp * 1000 AS INTEGER), m.run_id, m.step, "
            "m.is_nan FROM sy.metrics m JOIN pick ON pick.id = m.run_id")
con.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "SELECT m.key, m.value, CAST(m.timestamp * 1000 AS INTEGER), m.step, m.is_nan, "
            "m.run_id FROM sy.latest_metrics m JOIN pick ON pick.id = m.run_id")
con.commit()
copied = con.execute("SELECT count(*) FROM runs").fetchone()[0]
points = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
con.close()
client = MlflowClient("sqlite:///" + ml_db)
page = client.search_runs([ids[experiment]], max_results=5, order_by=["attributes.start_time DESC"])
assert len(page) == 5 and len(page[0].data.params) > 0 and page[0].info.run_name, page[:1]
print(ids[experiment], ids[experiment + "-long"], copied, points,
      round(time.perf_counter() - t, 1))
"""


def mlflow_copy(python: str, sy_db: str, home: Path, limit: int, compare: int) -> dict:
    done = subprocess.run([python, "-c", MLFLOW_COPY, sy_db, str(home / "mlflow.db"),
                           str(home / "mlartifacts"), EXPERIMENT, str(limit), str(compare)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"copying the runs into MLflow failed:\n{done.stderr[-3000:]}")
    exp, long_exp, runs, points, seconds = done.stdout.split()[-5:]
    return {"experiment": exp, "long_experiment": long_exp, "runs": int(runs),
            "points": int(points), "seconds": float(seconds)}


def mlflow_server(python: str, home: Path) -> tuple[subprocess.Popen, str]:
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = str(Path(python).parent / "mlflow")
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri",
                             f"sqlite:///{home / 'mlflow.db'}", "--default-artifact-root",
                             str(home / "mlartifacts"), "--host", "127.0.0.1",
                             "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return proc, base
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"mlflow server exited: {proc.stderr.read()[-2000:]}") from None
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("mlflow server did not start in 120 s")


def _http(method: str, url: str, body: dict | None = None, timeout: float = 600) -> bytes:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return res.read()


def mlflow_server_side(base: str, info: dict, queries: int, compare_ids: list[str],
                       long_id: str, request_timeout: float, skip_sort: bool = False) -> None:
    from concurrent.futures import ThreadPoolExecutor

    search = {"experiment_ids": [info["experiment"]], "max_results": 100,
              "order_by": ["attributes.start_time DESC"], "run_view_type": "ACTIVE_ONLY"}
    # Warm every worker process (mlflow server starts 4, each importing lazily
    # on its first requests), so that what is timed is the query, not start-up.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _http("POST", f"{base}/ajax-api/2.0/mlflow/runs/search",
                                      search), range(24)))
    kinds = [("first_page", {}),
             ("first_page_sorted_by_metric", {"order_by": ["metrics.m0 DESC"]}),
             ("first_page_filtered", {"filter": FILTER})]
    if skip_sort:  # a query left running on the server would slow what is timed after it
        kinds.pop(1)
    for name, extra in kinds:
        body = {**search, **extra}
        ms = []
        try:
            for i in range(queries + 1):  # the first is a warm-up
                t = time.perf_counter()
                _http("POST", f"{base}/ajax-api/2.0/mlflow/runs/search", body,
                      timeout=request_timeout)
                if i:
                    ms.append((time.perf_counter() - t) * 1000)
        except TimeoutError:
            emit(f"mlflow_server_{name}_ms", f"no answer within {request_timeout:.0f} s "
                 f"(after {len(ms)} timed requests)")
            continue
        emit(f"mlflow_server_{name}_p50_ms", statistics.median(ms))
        emit(f"mlflow_server_{name}_p95_ms", pct(ms, 0.95))

    def history(run_id: str, key: str) -> int:
        n, token = 0, None
        while True:
            q = f"run_uuid={run_id}&metric_key={key}" + (f"&page_token={token}" if token else "")
            data = json.loads(_http("GET", f"{base}/ajax-api/2.0/mlflow/metrics/get-history?{q}"))
            n += len(data.get("metrics", []))
            token = data.get("next_page_token")
            if not token:
                return n

    t = time.perf_counter()
    with ThreadPoolExecutor(6) as pool:  # as a browser does: 6 connections a host
        got = list(pool.map(lambda r: history(r, "loss"), compare_ids))
    emit(f"mlflow_server_compare_{len(compare_ids)}_histories_ms",
         (time.perf_counter() - t) * 1000)
    emit(f"mlflow_compare_{len(compare_ids)}_points_sent", sum(got))
    t = time.perf_counter()
    n = history(long_id, "signal")
    emit("mlflow_server_long_history_ms", (time.perf_counter() - t) * 1000)
    emit("mlflow_long_history_points_sent", n)


def mlflow_browser(base: str, info: dict, loads: int, compare_ids: list[str], long_id: str,
                   newest_name: str, timeout_s: float) -> None:
    from urllib.parse import quote

    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        emit("mlflow_browser", "skipped: Debian's chromium is not installed")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        times = []
        shots = Path(tempfile.gettempdir())
        for _ in range(loads):
            t = time.perf_counter()
            page.goto("about:blank")
            page.goto(f"{base}/#/experiments/{info['experiment']}/runs", wait_until="load")
            try:
                page.get_by_text(newest_name, exact=True).first.wait_for(
                    timeout=timeout_s * 1000)
            except PlaywrightTimeout:
                page.screenshot(path=str(shots / "bench-ui-mlflow-runs.png"))
                emit("mlflow_browser_run_list_shown_ms",
                     f"the newest run's row did not show within {timeout_s:.0f} s "
                     f"(screenshot {shots / 'bench-ui-mlflow-runs.png'})")
                break
            times.append((time.perf_counter() - t) * 1000)
        if times:
            emit("mlflow_browser_run_list_shown_p50_ms", statistics.median(times))
            emit("mlflow_browser_run_list_shown_p95_ms", pct(times, 0.95))
            page.screenshot(path=str(shots / "bench-ui-mlflow-runs.png"))

        def metric_page(ids: list[str], experiment: str, key: str) -> str:
            return (f"{base}/#/metric/{quote(key)}?runs={quote(json.dumps(ids))}"
                    f"&metric={quote(json.dumps(key))}&experiments={quote(json.dumps([experiment]))}"
                    f"&plot_metric_keys={quote(json.dumps([key]))}&plot_layout={{}}&x_axis=step"
                    "&y_axis_scale=linear&line_smoothness=1&show_point=false"
                    "&deselected_curves=[]&last_linear_y_axis_range=[]")

        traces = "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length"
        for label, ids, exp, key in (
                (f"compare_{len(compare_ids)}", compare_ids, info["experiment"], "loss"),
                ("long_curve", [long_id], info["long_experiment"], "signal")):
            for attempt in ("cold", "warm"):
                requests.clear()
                t = time.perf_counter()
                page.goto("about:blank")
                page.goto(metric_page(ids, exp, key))
                try:
                    page.wait_for_function(f"{traces} >= {len(ids)}", timeout=timeout_s * 1000)
                    emit(f"mlflow_browser_{label}_drawn_{attempt}_ms",
                         (time.perf_counter() - t) * 1000)
                except PlaywrightTimeout:
                    emit(f"mlflow_browser_{label}_drawn_{attempt}_ms",
                         f"not drawn within {timeout_s:.0f} s "
                         f"({page.evaluate(traces)} of {len(ids)} traces)")
                api = [u.split("/mlflow/", 1)[1].split("?", 1)[0] for u in requests
                       if "/mlflow/" in u]
                counts = {a: api.count(a) for a in sorted(set(api))}
                emit(f"mlflow_browser_{label}_{attempt}_requests",
                     ", ".join(f"{a} x{n}" for a, n in counts.items()) or "none")
        page.screenshot(path=str(Path(tempfile.gettempdir()) / "bench-ui-mlflow-long.png"))
        browser.close()


def run_mlflow(args, ws, home: Path, long_id: str) -> None:
    python = args.mlflow_python
    if not Path(python).exists():
        emit("mlflow", f"skipped: {python} does not exist")
        return
    version = subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    emit("mlflow_version", version)
    sy_db = ws.db.url.split("///", 1)[1]
    limit = args.mlflow_runs or args.runs
    mlhome = Path(tempfile.mkdtemp(prefix="bench-ui-mlflow-"))
    try:
        info = mlflow_copy(python, sy_db, mlhome, limit, args.compare)
        emit("mlflow_runs_copied", info["runs"])
        emit("mlflow_metric_points_copied", info["points"])
        emit("mlflow_copy_s", info["seconds"])
        compare = ws.runs.search(experiment=EXPERIMENT, order_by=["start_time ASC"],
                                 limit=args.compare, columns=[])
        newest = ws.runs.search(experiment=EXPERIMENT, limit=1, columns=[])[0]
        proc, base = mlflow_server(python, mlhome)
        try:
            mlflow_server_side(base, info, args.mlflow_queries or args.queries,
                               [r.id for r in compare], long_id, args.mlflow_timeout,
                               args.mlflow_skip_sort)
            if not args.skip_browser:
                mlflow_browser(base, info, max(3, args.loads // 4), [r.id for r in compare],
                               long_id, newest.name, args.mlflow_timeout)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        shutil.rmtree(mlhome, ignore_errors=True)


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
    parser.add_argument("--mlflow-python", default="/tmp/mlflowenv/bin/python",
                        help="a Python with mlflow installed (its `mlflow` script beside it)")
    parser.add_argument("--mlflow-runs", type=int, default=0,
                        help="copy only the newest N runs (and the compared ones) into MLflow; "
                             "default all")
    parser.add_argument("--mlflow-timeout", type=float, default=120,
                        help="seconds to wait for an MLflow page")
    parser.add_argument("--mlflow-queries", type=int, default=0,
                        help="timed MLflow searches of each kind (default --queries)")
    parser.add_argument("--mlflow-skip-sort", action="store_true",
                        help="do not time MLflow's search sorted by a metric")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-shipyard", action="store_true",
                        help="time only MLflow (the workspace is still built or reused)")
    args = parser.parse_args()

    from shipyard import Workspace, __version__
    from shipyard.ui import create_ui_app

    emit("versions", f"shipyard {__version__}, python {sys.version.split()[0]}")
    emit("cpus", os.cpu_count())
    emit("load_average_start", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        ws = Workspace.open(home)
        info = build(ws, args.runs, args.keys, args.compare, args.steps, args.points)
        if info["created"]:
            emit("runs_created_bulk", info["created"])
            emit("runs_created_bulk_s", info["seconds"])
        if "long_seconds" in info:
            emit(f"long_curve_{args.points}_points_written_s", info["long_seconds"])
        emit("workspace_runs", ws.counts()["runs"])
        _, admin = ws.keys.create("bench", scopes=["admin"])
        if not args.skip_shipyard:
            server_side(create_ui_app(ws), admin, args.queries, args.compare, info["long_id"])
        if not args.skip_browser and not args.skip_shipyard:  # a new app: curve cache cold
            browser_side(create_ui_app(ws), admin, args.loads, args.compare, info["long_id"])
        emit("load_average_after_shipyard", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        if not args.skip_mlflow:
            run_mlflow(args, ws, home, info["long_id"])
            emit("load_average_end", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        ws.close()
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
