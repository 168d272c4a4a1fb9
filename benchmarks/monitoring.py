"""Monitoring benchmark: one window's drift report over a prediction log of
1M and 5M rows × 20 columns, against Evidently's ``DataDriftPreset`` and
NannyML's univariate drift on the same rows.

Data: 20 input columns (15 numeric of three shapes, 5 categorical); a
reference of 100,000 rows registered as dataset ``bench@1``; a logistic
regression pipeline trained on it and registered as ``bench@1`` (so the
registry builds its reference profile); production rows drawn the same way
with 4 columns shifted, scored by that model and written as the prediction
log a server writes (Parquet, one row per request of ``--per-request`` rows,
inputs and outputs as JSON text), all in one hour.

Prints ``name: value`` lines, per size N:

- ``shipyard_report``: :func:`shipyard.monitor.build_report` on the window,
  streamed from the log: the whole report (per-column drift on KLL sketches
  with BH, prediction/score drift, domain-classifier and PCA tests, data
  quality, CBPE), its seconds, rows per second and the peak RSS of the
  process that ran it (a fresh one per measurement), and the columns it
  flagged;
- ``shipyard_flat``: the same per-column drift tests from a flat Parquet of
  the rows (read in batches into sketches): what sketching costs without
  the log's JSON;
- ``evidently``: ``Report([DataDriftPreset()])`` on the flat rows as pandas
  (load and drift seconds, peak RSS, drifted columns), run by the
  interpreter ``--evidently-python`` names;
- ``nannyml``: ``UnivariateDriftCalculator`` (KS and χ²) on the same
  frames, by ``--nannyml-python``; its KS alert thresholds come from the
  spread over reference chunks, so the reference is cut in ten chunks and
  the window in chunks of that size (a column counts as drifted when half
  its chunks alert).

The comparators need pandas frames of all the rows, so they are given the
flat Parquet (their load time is printed apart); a missing interpreter or
library is skipped with a note. Make one with::

    python3.11 -m venv /tmp/monenv && /tmp/monenv/bin/pip install evidently nannyml

Usage::

    python benchmarks/monitoring.py [--sizes 1000000,5000000] [--per-request 10]
        [--evidently-python PATH] [--nannyml-python PATH] [--home DIR]

e.g. ``python benchmarks/monitoring.py --sizes 20000`` for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

#: 2025-06-02T00:00:00Z: the hour the production traffic falls in.
T0 = 1_748_822_400.0
NUMERIC = [f"n{i}" for i in range(15)]
CATEGORICAL = [f"c{i}" for i in range(5)]
SHIFTED = ["n0", "n4", "n8", "c0"]
REFERENCE_ROWS = 100_000
CHUNK = 200_000


def rows(n: int, seed: int, *, shifted: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(NUMERIC):
        move = 0.3 if shifted and name in SHIFTED else 0.0
        if i % 3 == 0:
            out[name] = rng.normal(move, 1, n)
        elif i % 3 == 1:
            out[name] = rng.lognormal(move, 0.5, n)
        else:
            out[name] = rng.integers(0, 50, n) + round(move * 15)
    for name in CATEGORICAL:
        p = [0.25] * 4 if shifted and name in SHIFTED else [0.5, 0.25, 0.15, 0.1]
        out[name] = rng.choice(["a", "b", "c", "d"], n, p=p)
    return pd.DataFrame(out)


def labels(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logit = 0.8 * frame["n0"] - 0.5 * frame["n3"] + 0.6 * (frame["c1"] == "a") - 0.2
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)


# ------------------------------------------------------------------ setup
def register_model(ws) -> object:
    """``bench@1`` trained on ``bench@1`` (the dataset); the registry builds
    the reference profile."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from shipyard.train import infer_signature, save_model

    reference = rows(REFERENCE_ROWS, 0)
    data = ws.datasets.register("bench", reference.assign(y=labels(reference, 0)))
    model = Pipeline([
        ("columns", ColumnTransformer([("num", "passthrough", NUMERIC),
                                       ("cat", OneHotEncoder(handle_unknown="ignore"),
                                        CATEGORICAL)])),
        ("model", LogisticRegression(max_iter=300))]).fit(reference, labels(reference, 0))
    artifact = save_model(model, ws.artifacts)
    signature = infer_signature(reference, model, task="binary", target="y",
                                kinds={**dict.fromkeys(NUMERIC, "numeric"),
                                       **dict.fromkeys(CATEGORICAL, "categorical")})
    with ws.start_run("bench", inputs=[data]) as run:
        run.set_tag("model.digest", artifact.digest)
        run.log_dict("model/signature.json", signature)
    ws.models.register("bench", run.id, onnx=False)
    return model


def log_schema():
    """The prediction log's Parquet schema, as :class:`PredictionLog` writes it."""
    import pyarrow.parquet as pq

    from shipyard.deploy import PredictionLog

    with tempfile.TemporaryDirectory() as tmp:
        log = PredictionLog(tmp)
        log.record_prediction(request_id="probe", model="probe", version=1, endpoint="e",
                              status=200, latency_ms=1.0)
        log.close()
        return pq.read_schema(next(Path(tmp).rglob("part-*.parquet"))).remove_metadata()


def write_log(home: Path, model, n: int, per_request: int, flat: Path) -> None:
    """``n`` production rows as the prediction log of ``bench`` version 1,
    and the same rows as a flat Parquet file (for the comparators)."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = log_schema()
    folder = home / "predictions" / "model=bench" / f"date={dt.date.fromtimestamp(T0)}"
    folder.mkdir(parents=True, exist_ok=True)
    flat_writer = None
    step = 3599.0 / max(1, n // per_request)
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        frame = rows(size, 1 + done, shifted=True)
        proba = model.predict_proba(frame)
        predictions = (proba[:, 1] > 0.5).astype(int)
        lines = frame.to_json(orient="records", lines=True).splitlines()
        requests = range(0, size, per_request)
        inputs = ["[" + ",".join(lines[i:i + per_request]) + "]" for i in requests]
        outputs = [orjson.dumps({"predictions": predictions[i:i + per_request],
                                 "probabilities": proba[i:i + per_request]},
                                option=orjson.OPT_SERIALIZE_NUMPY).decode()
                   for i in requests]
        first = done // per_request
        ts = [dt.datetime.fromtimestamp(T0 + (first + k) * step, dt.UTC)
              for k in range(len(inputs))]
        count = len(inputs)
        table = pa.table({
            "request_id": [uuid.uuid4().hex for _ in range(count)], "ts": ts,
            "version": [1] * count, "endpoint": ["v1.predict"] * count,
            "status": [200] * count, "latency_ms": [1.0] * count,
            "num_rows": [min(per_request, size - i) for i in requests], "inputs": inputs,
            "outputs": outputs, "error": [None] * count, "key_id": [None] * count,
            "role": [None] * count}, schema=schema)
        # Row groups of a few thousand requests, like the log's per-flush files.
        pq.write_table(table, folder / f"part-{uuid.uuid4().hex}.parquet",
                       row_group_size=5_000)
        flat_table = pa.Table.from_pandas(frame, preserve_index=False)
        if flat_writer is None:
            flat_writer = pq.ParquetWriter(flat, flat_table.schema)
        flat_writer.write_table(flat_table)
        done += size
    flat_writer.close()


# ----------------------------------------------------------------- workers
def peak_rss_mb() -> float:
    """Peak resident memory of this process (``VmHWM``: unlike ``ru_maxrss``
    it does not carry the parent's peak across ``fork``/``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _preload() -> None:
    """Import what the checks use, so that no side's timing includes imports."""
    import datasketches  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    from shipyard.evaluate import task_metrics  # noqa: F401


def worker_report(home: str) -> dict:
    from shipyard import Workspace
    from shipyard.monitor import build_report

    _preload()
    ws = Workspace.open(home)
    start = time.perf_counter()
    report = build_report(ws, "bench", start=T0, end=T0 + 3600)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": report.window["n"], "peak_rss_mb": peak_rss_mb(),
            "drifted": sorted(c for c, d in report.drift.items() if d.get("drifted")),
            "dataset_drift": report.dataset_drift.get("drifted"), "verdict": report.verdict}


def worker_flat(home: str, flat: str) -> dict:
    import pyarrow.parquet as pq

    from shipyard import Workspace
    from shipyard.data import FrameSketch
    from shipyard.monitor import assess, column_drift, reference

    _preload()
    ws = Workspace.open(home)
    start = time.perf_counter()
    ref = reference(ws, "bench@1")
    current = FrameSketch(ref.kinds)
    for batch in pq.ParquetFile(flat).iter_batches(batch_size=100_000):
        current.update(batch.to_pandas())
    drift, _ = assess({c: column_drift(ref.inputs.columns[c], current.columns[c])
                       for c in ref.kinds})
    return {"seconds": time.perf_counter() - start, "rows": current.rows,
            "peak_rss_mb": peak_rss_mb(),
            "drifted": sorted(c for c, d in drift.items() if d["drifted"])}


#: Run by the comparators' interpreter: argv = library, reference parquet, current parquet.
COMPARATOR = r'''
import json, resource, sys, time
import pandas as pd
library, reference_path, current_path = sys.argv[1:4]
start = time.perf_counter()
reference = pd.read_parquet(reference_path)
current = pd.read_parquet(current_path)
loaded = time.perf_counter() - start
categorical = [c for c in current.columns if c.startswith("c")]
if library == "evidently":  # imports are not timed, on either side
    import evidently
    try:
        from evidently import Report
        from evidently.presets import DataDriftPreset
        modern = True
    except ImportError:
        from evidently.metric_preset import DataDriftPreset
        from evidently.report import Report
        modern = False
else:
    import nannyml
start = time.perf_counter()
if library == "evidently":
    if modern:
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        drifted = []
        for m in snapshot.dict()["metrics"]:
            config = m.get("config") or {}
            if not str(config.get("type", "")).endswith("ValueDrift"):
                continue
            # A distance drifts at or over its threshold, a p-value under it.
            method, value, threshold = config.get("method", ""), m["value"], config["threshold"]
            distance = "distance" in method.lower() or "psi" in method.lower()
            if (value >= threshold) if distance else (value < threshold):
                drifted.append(config["column"])
        drifted.sort()
    else:
        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=reference, current_data=current)
        table = [m for m in report.as_dict()["metrics"] if "drift_by_columns" in m["result"]]
        drifted = sorted(c for c, v in table[0]["result"]["drift_by_columns"].items()
                         if v["drift_detected"])
    version = evidently.__version__
else:
    # NannyML sets its KS alert thresholds from the spread over reference
    # chunks: ten of them; the window is judged in chunks of that size.
    calc = nannyml.UnivariateDriftCalculator(
        column_names=list(current.columns), treat_as_categorical=categorical,
        continuous_methods=["kolmogorov_smirnov"], categorical_methods=["chi2"],
        chunk_size=len(reference) // 10)
    calc.fit(reference)
    frame = calc.calculate(current).filter(period="analysis").to_df()
    drifted = sorted({col for col, method, field in frame.columns
                      if field == "alert" and frame[(col, method, field)].mean() >= 0.5})
    version = nannyml.__version__
seconds = time.perf_counter() - start
peak = [int(line.split()[1]) / 1024 for line in open("/proc/self/status")
        if line.startswith("VmHWM:")]
print(json.dumps({"version": version, "load_seconds": loaded, "seconds": seconds,
                  "peak_rss_mb": peak[0] if peak else
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "drifted": drifted}))
'''


def run_worker(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_comparator(python: str | None, library: str, reference: Path, current: Path
                   ) -> dict | str:
    if not python:
        return f"skipped: no --{library}-python given"
    if not Path(python).exists():
        return f"skipped: {python} does not exist"
    probe = subprocess.run([python, "-c", f"import {library}"], capture_output=True, text=True)
    if probe.returncode:
        return f"skipped: {library} is not importable by {python}"
    out = subprocess.run([python, "-c", COMPARATOR, library, str(reference), str(current)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        return f"failed: {out.stderr.strip().splitlines()[-1][:300] if out.stderr else '?'}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(prefix: str, result: dict | str, rows: int | None = None) -> None:
    if isinstance(result, str):
        print(f"{prefix}: {result}")
        return
    for key in ("version", "load_seconds", "seconds", "peak_rss_mb"):
        if key in result:
            value = result[key]
            print(f"{prefix}_{key}: {value:.2f}" if isinstance(value, float)
                  else f"{prefix}_{key}: {value}")
    if rows:
        print(f"{prefix}_rows_per_second: {rows / result['seconds']:.0f}")
    for key in ("drifted", "dataset_drift", "verdict"):
        if key in result:
            value = result[key]
            print(f"{prefix}_{key}: {','.join(value) if isinstance(value, list) else value}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind = sys.argv[2]
        result = worker_report(sys.argv[3]) if kind == "report" else worker_flat(*sys.argv[3:5])
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000",
                        help="production rows per run, comma-separated")
    parser.add_argument("--per-request", type=int, default=10, help="rows per logged request")
    parser.add_argument("--evidently-python", default=None)
    parser.add_argument("--nannyml-python", default=None)
    parser.add_argument("--home", default=None, help="work folder (default: a temp folder)")
    args = parser.parse_args()

    from shipyard import Workspace

    base = Path(args.home or tempfile.mkdtemp(prefix="shipyard-monbench-"))
    print(f"columns: {len(NUMERIC) + len(CATEGORICAL)}")
    print(f"reference_rows: {REFERENCE_ROWS}")
    print(f"shifted_columns: {','.join(SHIFTED)}")
    print(f"cpu_count: {os.cpu_count()}")
    for n in (int(s) for s in args.sizes.split(",")):
        home = base / f"n{n}"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        ws = Workspace.open(home)
        start = time.perf_counter()
        model = register_model(ws)
        print(f"[{n}] register_seconds (reference profile included): "
              f"{time.perf_counter() - start:.2f}")
        reference_file, flat = home / "reference.parquet", home / "current.parquet"
        rows(REFERENCE_ROWS, 0).to_parquet(reference_file, index=False)
        start = time.perf_counter()
        write_log(home, model, n, args.per_request, flat)
        ws.close()
        print(f"[{n}] write_log_seconds: {time.perf_counter() - start:.2f}")
        log_bytes = sum(p.stat().st_size for p in (home / "predictions").rglob("*.parquet"))
        print(f"[{n}] log_mb: {log_bytes / 1e6:.1f}")
        show(f"[{n}] shipyard_report", run_worker(["--worker", "report", str(home)]), n)
        show(f"[{n}] shipyard_flat", run_worker(["--worker", "flat", str(home), str(flat)]), n)
        show(f"[{n}] evidently", run_comparator(args.evidently_python, "evidently",
                                               reference_file, flat), n)
        show(f"[{n}] nannyml", run_comparator(args.nannyml_python, "nannyml", reference_file,
                                             flat), n)
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    if args.home is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
