"""Monitoring benchmark (issue #11, "Speed and correctness"), in one run.

Prints ``name: value`` lines, section by section:

``drift_<N>``
    Drift of N production rows × 15 mixed columns (10 numeric of three
    shapes, 5 categorical; 3 of them shifted) against a stored reference of
    100,000 rows. ``shipyard``: the reference profile read back from its
    JSON, the rows streamed from Parquet as Arrow record batches (no pandas)
    into sketches (:meth:`FrameSketch.update_parquet`), KS/PSI/
    Wasserstein and χ²/PSI/Jensen–Shannon per column with Benjamini–Hochberg,
    all timed. ``scipy``: a bare loop over the same tests on the raw rows
    (pandas frames read from the same Parquet: ``ks_2samp``,
    ``wasserstein_distance``, PSI on reference deciles, ``chi2_contingency``,
    Jensen–Shannon, then BH), read time included. ``evidently``:
    ``Report([DataDriftPreset()])`` on the same frames (its load time printed
    apart, not counted). Each side runs in its own fresh process; peak memory
    is that process's ``VmHWM``.
``stream``
    10M rows × 20 columns streamed from one Parquet file into sketches and
    tested: seconds and peak RSS (target ≤ 1 GB).
``embedding``
    MMD (random Fourier features, permutation test) of 100k vs 100k
    384-dimensional vectors, shifted and not (target ≤ 30 s).
``false_alarm`` / ``power``
    ≥ 200 seeded runs with no drift (20k reference vs 10k window rows × 15
    columns): the share of runs in which any column's BH-adjusted p-value is
    under α = 0.05, any column is flagged (p and effect floor), and the
    dataset verdict is drift; then the detection rate of known shifts.
``window_<N>``
    A prediction log of N logged rows × 15 inputs (10 numeric, 5
    categorical; 10 rows a request, 3 inputs shifted) written by the real
    :class:`~shipyard.deploy.PredictionLog` (its clock set to one hour of
    2025-06-02), then, each in a fresh process: ``window_data`` alone (every
    chunk of the window read, nothing computed) and the full check
    ``ws.monitor.check`` (what ``shipyard monitor`` runs: drift, quality,
    CBPE, the report stored), twice (``check``: the version's first, which
    fits its performance estimators; ``check_again``), seconds and peak RSS
    (``VmHWM``).
``nannyml_<dataset>``
    NannyML's shipped datasets (car loan, synthetic binary and multiclass,
    car price), exported with NannyML's CBPE/DLE per-chunk estimates by
    ``benchmarks/monitoring_nannyml.py`` in NannyML's interpreter; Shipyard's
    :class:`~shipyard.monitor.CBPE` (with :class:`~shipyard.monitor.Calibration`
    fitted on the reference) and :class:`~shipyard.monitor.DLE` on the same
    chunks; the largest per-chunk difference (target ≤ 0.01 for ROC-AUC and
    accuracy).

The comparators live in their own virtual environments; ``--setup`` makes
them from PyPI (``evidently==0.7.23`` in /tmp/evenv, ``nannyml==0.13.1`` in
/tmp/monenv), once. A missing interpreter is reported and its part skipped.

Usage::

    python benchmarks/monitoring.py [--setup] [--sizes 1000000,5000000]
        [--stream-rows 10000000] [--runs 200] [--only drift,stream,...]

``--window-rows SIZES`` sets the ``window`` section's log sizes (default
250000,1000000: the peak must not grow with the window).

``--log-report SIZES`` also times the whole :func:`build_report` over a
prediction log of those sizes (20 columns, JSON rows as a server logs them).
e.g. ``python benchmarks/monitoring.py --sizes 20000 --stream-rows 100000
--runs 20`` for a smoke run.
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
def register_model(ws, numeric: list[str] = NUMERIC, categorical: list[str] = CATEGORICAL,
                   reference: pd.DataFrame | None = None) -> object:
    """``bench@1`` trained on ``bench@1`` (the dataset, default :func:`rows`);
    the registry builds the reference profile."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from shipyard.train import infer_signature, save_model

    reference = rows(REFERENCE_ROWS, 0) if reference is None else reference
    data = ws.datasets.register("bench", reference.assign(y=labels(reference, 0)))
    model = Pipeline([
        ("columns", ColumnTransformer([("num", "passthrough", numeric),
                                       ("cat", OneHotEncoder(handle_unknown="ignore"),
                                        categorical)])),
        ("model", LogisticRegression(max_iter=300))]).fit(reference, labels(reference, 0))
    artifact = save_model(model, ws.artifacts)
    signature = infer_signature(reference, model, task="binary", target="y",
                                kinds={**dict.fromkeys(numeric, "numeric"),
                                       **dict.fromkeys(categorical, "categorical")})
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
    import sklearn.decomposition
    import sklearn.ensemble
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


#: Seconds a comparator may take on one size before it is stopped.
COMPARATOR_TIMEOUT = 1_200


def run_comparator(python: str | None, library: str, reference: Path, current: Path
                   ) -> dict | str:
    if not python:
        return f"skipped: no --{library}-python given"
    if not Path(python).exists():
        return f"skipped: {python} does not exist"
    probe = subprocess.run([python, "-c", f"import {library}"], capture_output=True, text=True,
                           check=False)
    if probe.returncode:
        return f"skipped: {library} is not importable by {python}"
    try:
        out = subprocess.run([python, "-c", COMPARATOR, library, str(reference), str(current)],
                             capture_output=True, text=True, check=False,
                             timeout=COMPARATOR_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"did not finish in {COMPARATOR_TIMEOUT} s (stopped)"
    if out.returncode < 0:
        return f"killed by signal {-out.returncode} (out of memory?)"
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


# ------------------------------------------------------- drift vs others
MIXED_NUMERIC = [f"n{i}" for i in range(10)]
MIXED_CATEGORICAL = [f"c{i}" for i in range(5)]
MIXED_SHIFTED = ["n0", "n4", "c0"]
BATCH = 500_000


def mixed_rows(n: int, seed: int, *, numeric: list[str], categorical: list[str],
               shifted: list[str] = ()) -> pd.DataFrame:
    """Numeric columns of three shapes (normal, lognormal, integers) and
    categorical ones of four levels; ``shifted`` columns moved (0.3 sd, or
    uniform levels)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(numeric):
        move = 0.3 if name in shifted else 0.0
        if i % 3 == 0:
            out[name] = rng.normal(move, 1, n)
        elif i % 3 == 1:
            out[name] = rng.lognormal(move, 0.5, n)
        else:
            out[name] = (rng.integers(0, 50, n) + round(move * 15)).astype(np.float64)
    for name in categorical:
        p = [0.25] * 4 if name in shifted else [0.5, 0.25, 0.15, 0.1]
        out[name] = np.array(["a", "b", "c", "d"])[rng.choice(4, n, p=p)]
    return pd.DataFrame(out)


def write_parquet(path: Path, n: int, seed: int, **columns) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for lo in range(0, n, BATCH):
        table = pa.Table.from_pandas(mixed_rows(min(BATCH, n - lo), seed + lo, **columns),
                                     preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=100_000)
    writer.close()


def store_reference(path: Path, frame: pd.DataFrame, kinds: dict[str, str]) -> None:
    """The reference profile as the registry stores it: sketches as JSON."""
    from shipyard.data import FrameSketch

    sketch = FrameSketch(kinds)
    sketch.update(frame)
    path.write_text(json.dumps({"kinds": kinds, "inputs": sketch.to_dict()}))


def worker_drift(reference: str, current: str) -> dict:
    """Shipyard: stored reference + Parquet streamed into sketches + tests."""
    import datasketches  # noqa: F401
    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401
    import scipy.stats  # noqa: F401

    from shipyard.data import FrameSketch
    from shipyard.monitor import assess, column_drift

    # Only what this path uses is imported before the clock starts (not
    # _preload's scikit-learn, ≈ 27 MB it never touches).
    start = time.perf_counter()
    document = json.loads(Path(reference).read_text())
    ref = FrameSketch.from_dict(document["inputs"])
    # Arrow record batches (65,536 rows) straight into the sketches, no pandas
    cur = FrameSketch(document["kinds"]).update_parquet(current)
    drift, _ = assess({c: column_drift(ref.columns[c], cur.columns[c])
                       for c in document["kinds"]})
    return {"seconds": time.perf_counter() - start, "rows": cur.rows,
            "peak_rss_mb": peak_rss_mb(),
            "drifted": sorted(c for c, d in drift.items() if d["drifted"])}


def worker_scipy(reference: str, current: str) -> dict:
    """The same tests on the raw rows with scipy, in a plain loop."""
    import scipy.stats
    from scipy.spatial.distance import jensenshannon

    from shipyard.monitor import benjamini_hochberg

    _preload()
    start = time.perf_counter()
    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    pvalues, effects = {}, {}
    for column in cur.columns:
        if column in MIXED_NUMERIC or column in NUMERIC:
            a, b = ref[column].to_numpy(), cur[column].to_numpy()
            pvalues[column] = scipy.stats.ks_2samp(a, b).pvalue
            w = scipy.stats.wasserstein_distance(a, b) / (a.std() or 1.0)
            edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
            pa_ = np.bincount(np.searchsorted(edges, a), minlength=len(edges) + 1) / len(a)
            pb_ = np.bincount(np.searchsorted(edges, b), minlength=len(edges) + 1) / len(b)
            pa_, pb_ = np.clip(pa_, 1e-4, None), np.clip(pb_, 1e-4, None)
            effects[column] = max(w / 0.1, float(np.sum((pb_ - pa_) * np.log(pb_ / pa_))) / 0.1)
        else:
            counts = pd.concat([ref[column].value_counts().rename("r"),
                                cur[column].value_counts().rename("c")], axis=1).fillna(0)
            pvalues[column] = scipy.stats.chi2_contingency(counts.to_numpy().T)[1]
            effects[column] = jensenshannon(counts["r"], counts["c"], base=2) / 0.1
    adjusted = benjamini_hochberg(list(pvalues.values()))
    drifted = sorted(c for c, q in zip(pvalues, adjusted) if q < 0.05 and effects[c] >= 1)
    return {"seconds": time.perf_counter() - start, "rows": len(cur),
            "peak_rss_mb": peak_rss_mb(), "drifted": drifted}


def drift_section(base: Path, n: int, evidently: str | None) -> None:
    kinds = {**dict.fromkeys(MIXED_NUMERIC, "numeric"),
             **dict.fromkeys(MIXED_CATEGORICAL, "categorical")}
    columns = {"numeric": MIXED_NUMERIC, "categorical": MIXED_CATEGORICAL}
    reference_file, current = base / "reference.parquet", base / f"current_{n}.parquet"
    reference_json = base / "reference.json"
    if not reference_json.exists():
        frame = mixed_rows(REFERENCE_ROWS, 0, **columns)
        frame.to_parquet(reference_file, index=False)
        store_reference(reference_json, frame, kinds)
    write_parquet(current, n, 1, shifted=MIXED_SHIFTED, **columns)
    prefix = f"drift_{n}"
    print(f"{prefix}_shifted_columns: {','.join(MIXED_SHIFTED)}")
    ours = run_worker(["--worker", "drift", str(reference_json), str(current)])
    show(f"{prefix}_shipyard", ours, n)
    scipy_result = run_worker(["--worker", "scipy", str(reference_file), str(current)])
    show(f"{prefix}_scipy", scipy_result, n)
    print(f"{prefix}_shipyard_vs_scipy_time: {ours['seconds'] / scipy_result['seconds']:.2f}")
    theirs = run_comparator(evidently, "evidently", reference_file, current)
    show(f"{prefix}_evidently", theirs, n)
    if isinstance(theirs, dict):
        print(f"{prefix}_speedup_vs_evidently: {theirs['seconds'] / ours['seconds']:.1f}")
        print(f"{prefix}_speedup_vs_evidently_with_its_load: "
              f"{(theirs['seconds'] + theirs['load_seconds']) / ours['seconds']:.1f}")
        print(f"{prefix}_memory_share_of_evidently: "
              f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.3f}")
    current.unlink()


def stream_section(base: Path, n: int) -> None:
    columns = {"numeric": NUMERIC, "categorical": CATEGORICAL}
    kinds = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
    reference_json, current = base / "reference20.json", base / "stream.parquet"
    store_reference(reference_json, mixed_rows(REFERENCE_ROWS, 0, **columns), kinds)
    start = time.perf_counter()
    write_parquet(current, n, 7, shifted=SHIFTED, **columns)
    print(f"stream_write_seconds: {time.perf_counter() - start:.1f}")
    print(f"stream_parquet_mb: {current.stat().st_size / 1e6:.0f}")
    show("stream_shipyard", run_worker(["--worker", "drift", str(reference_json), str(current)]),
         n)
    current.unlink()


def write_served_log(home: Path, model, n: int, per_request: int = 10,
                     flush_requests: int = 5_000) -> None:
    """``n`` shifted rows of the 15 mixed columns as ``bench`` version 1's
    prediction log, written by :class:`PredictionLog` as a server writes it
    (validated :class:`Columns` per request, one file per flush), its clock
    stepping through the hour after :data:`T0`."""
    import types

    import shipyard.deploy._prediction_log as prediction_log
    from shipyard.deploy import Columns, PredictionLog

    clock = types.SimpleNamespace(now=T0)
    real = prediction_log.time
    prediction_log.time = types.SimpleNamespace(time=lambda: clock.now)
    log = PredictionLog(home, max_queue=10 * flush_requests)
    step = 3_590.0 / max(1, n // per_request)
    columns = {"numeric": MIXED_NUMERIC, "categorical": MIXED_CATEGORICAL}
    try:
        for lo in range(0, n, CHUNK):
            frame = mixed_rows(min(CHUNK, n - lo), 1 + lo, shifted=MIXED_SHIFTED, **columns)
            proba = model.predict_proba(frame)
            predictions = (proba[:, 1] > 0.5).astype(np.int64)
            data = {c: frame[c].to_numpy() if c in MIXED_NUMERIC else frame[c].tolist()
                    for c in frame.columns}
            for i in range(0, len(frame), per_request):
                k = slice(i, i + per_request)
                clock.now = T0 + ((lo + i) // per_request) * step
                log.record_prediction(
                    request_id=uuid.uuid4().hex, model="bench", version=1,
                    endpoint="v1.predict", status=200, latency_ms=1.0,
                    inputs=Columns({c: v[k] for c, v in data.items()}, len(predictions[k])),
                    outputs={"predictions": predictions[k], "probabilities": proba[k]})
                if ((lo + i) // per_request + 1) % flush_requests == 0:
                    log.flush()
        log.close()
    finally:
        prediction_log.time = real


def worker_window(home: str, what: str) -> dict:
    """``window_data`` over the whole hour, or the full check of it."""
    from shipyard import Workspace
    from shipyard.monitor import Window, window_data

    _preload()
    ws = Workspace.open(home)
    start = time.perf_counter()
    if what == "window_data":
        n = sum(len(frame) for frame in window_data(
            ws, Window("bench", 1, None, T0, T0 + 3_600, 0)))
        out = {"rows": n}
    else:
        check = ws.monitor.check("bench", start=T0, end=T0 + 3_600)
        report = check.report.report
        out = {"rows": report["window"]["n"], "verdict": report["verdict"],
               "drifted": sorted(c for c, d in report["drift"].items() if d.get("drifted")),
               "estimated_roc_auc": report["performance"]["estimated"]["roc_auc"]["value"]}
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), **out}


def window_section(base: Path, n: int) -> None:
    """Read and check a window of ``n`` logged rows (see the module docstring)."""
    from shipyard import Workspace

    home = base / f"window{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    ws = Workspace.open(home)
    reference = mixed_rows(REFERENCE_ROWS, 0, numeric=MIXED_NUMERIC,
                           categorical=MIXED_CATEGORICAL)
    model = register_model(ws, MIXED_NUMERIC, MIXED_CATEGORICAL, reference)
    ws.close()
    start = time.perf_counter()
    write_served_log(home, model, n)
    prefix = f"window_{n}"
    print(f"{prefix}_write_log_seconds: {time.perf_counter() - start:.1f}")
    print(f"{prefix}_log_mb: "
          f"{sum(p.stat().st_size for p in (home / 'predictions').rglob('*.parquet')) / 1e6:.0f}")
    # The first check of a version fits its performance estimators; later
    # ones (check_again) read them back.
    for label, what in (("window_data", "window_data"), ("check", "check"),
                        ("check_again", "check")):
        result = run_worker(["--worker", "window", str(home), what])
        show(f"{prefix}_{label}", result, n)
        if "estimated_roc_auc" in result:
            print(f"{prefix}_{label}_estimated_roc_auc: {result['estimated_roc_auc']:.4f}")
    shutil.rmtree(home, ignore_errors=True)


def worker_embedding(rows: str, dim: str) -> dict:
    from shipyard.monitor import mmd_test

    _preload()
    n, d = int(rows), int(dim)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y_same = rng.normal(size=(n, d)).astype(np.float32)
    y_shift = rng.normal(size=(n, d)).astype(np.float32)
    y_shift[:, :20] += 0.1  # a small move in 20 of the dimensions
    out = {}
    for name, y in (("same", y_same), ("shifted", y_shift)):
        start = time.perf_counter()
        result = mmd_test(x, y, seed=1)
        out[f"{name}_seconds"] = time.perf_counter() - start
        out[f"{name}_p_value"] = result["p_value"]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def false_alarm_section(runs: int) -> None:
    from shipyard.data import FrameSketch
    from shipyard.monitor import DriftSpec, assess, column_drift

    kinds = {**dict.fromkeys(MIXED_NUMERIC, "numeric"),
             **dict.fromkeys(MIXED_CATEGORICAL, "categorical")}
    columns = {"numeric": MIXED_NUMERIC, "categorical": MIXED_CATEGORICAL}
    spec = DriftSpec()

    def one(seed: int, current: pd.DataFrame) -> tuple[bool, bool, bool, dict]:
        ref = FrameSketch(kinds)
        ref.update(mixed_rows(20_000, 10_000 + seed, **columns))
        cur = FrameSketch(kinds)
        cur.update(current)
        drift, dataset = assess({c: column_drift(ref.columns[c], cur.columns[c])
                                 for c in kinds}, spec)
        significant = any(d["p_adjusted"] is not None and d["p_adjusted"] < spec.fdr
                          for d in drift.values())
        return significant, any(d["drifted"] for d in drift.values()), \
            bool(dataset["drifted"]), drift

    start = time.perf_counter()
    counts = np.zeros(3)
    for seed in range(runs):
        counts += one(seed, mixed_rows(10_000, 50_000 + seed, **columns))[:3]
    print(f"false_alarm_runs: {runs}")
    print(f"false_alarm_alpha: {spec.fdr}")
    print(f"false_alarm_rate_any_column_significant: {counts[0] / runs:.3f}")
    print(f"false_alarm_rate_any_column_drifted: {counts[1] / runs:.3f}")
    print(f"false_alarm_rate_dataset: {counts[2] / runs:.3f}")
    print(f"false_alarm_seconds: {time.perf_counter() - start:.1f}")
    # Known shifts, one column at a time, 10k window rows.
    power_runs = max(20, runs // 4)
    shifts = {
        "n0_mean_plus_0.15sd": lambda f, r: f.assign(n0=f["n0"] + 0.15),
        "n1_scale_times_1.2": lambda f, r: f.assign(n1=f["n1"] ** 1.2),
        "c0_levels_uniform": lambda f, r: f.assign(
            c0=np.array(["a", "b", "c", "d"])[r.choice(4, len(f))]),
        "c1_a_share_0.5_to_0.35": lambda f, r: f.assign(
            c1=np.where((f["c1"] == "a") & (r.random(len(f)) < 0.3), "d", f["c1"])),
    }
    for name, change in shifts.items():
        hits = 0
        column = name.split("_")[0]
        for seed in range(power_runs):
            rng = np.random.default_rng(seed)
            frame = change(mixed_rows(10_000, 90_000 + seed, **columns), rng)
            hits += bool(one(seed, frame)[3][column]["drifted"])
        print(f"power_{name}: {hits / power_runs:.2f}")
    print(f"power_runs: {power_runs}")


def nannyml_section(python: str | None, base: Path) -> None:
    from shipyard.monitor import CBPE, DLE, Calibration

    if not python or not Path(python).exists():
        print(f"nannyml: skipped: no interpreter at {python}")
        return
    out = base / "nannyml"
    done = subprocess.run([python, str(Path(__file__).with_name("monitoring_nannyml.py")),
                           str(out)], capture_output=True, text=True, check=False)
    if done.returncode:
        print(f"nannyml: failed: {done.stderr.strip().splitlines()[-1][:300]}")
        return
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        info = json.loads((folder / "nannyml.json").read_text())
        ref = pd.read_parquet(folder / "reference.parquet")
        analysis = pd.read_parquet(folder / "analysis.parquet")
        proba, pred, target = info["proba"], info["pred"], info["target"]
        prefix = f"nannyml_{folder.name}"
        print(f"{prefix}_version: {info['version']}")
        print(f"{prefix}_chunks: {len(info['chunks'])} of {info['chunk_size']} rows")
        start = time.perf_counter()
        worst: dict[str, float] = {}
        if proba is None:
            features = info["features"]
            kinds = {c: "numeric" if pd.api.types.is_numeric_dtype(ref[c]) else "categorical"
                     for c in features}
            dle = DLE(kinds).fit(ref[features], ref[pred], ref[target])
            estimate = {}
            for chunk in info["chunks"]:
                rows = analysis.iloc[chunk["start"]:chunk["end"] + 1]
                estimate = dle.reset().update(rows[features].reset_index(drop=True),
                                              rows[pred].to_numpy()).result()
                for m in info["metrics"]:
                    gap = abs(estimate[m]["value"] - chunk[m]["estimated"]) \
                        / chunk[m]["estimated"]
                    worst[f"{m}_relative"] = max(worst.get(f"{m}_relative", 0.0), gap)
                    truth = abs(estimate[m]["value"] - chunk[m]["realized"]) \
                        / chunk[m]["realized"]
                    worst[f"{m}_relative_vs_realized"] = max(
                        worst.get(f"{m}_relative_vs_realized", 0.0), truth)
        else:
            if isinstance(proba, str):
                classes, auc = [0, 1], "roc_auc"

                def matrix(frame, proba=proba):
                    return np.c_[1 - frame[proba].to_numpy(), frame[proba].to_numpy()]
            else:
                classes, auc = sorted(proba), "roc_auc_ovr"

                def matrix(frame, proba=proba, classes=classes):
                    return frame[[proba[c] for c in classes]].to_numpy()
            calibration = Calibration(classes).fit(matrix(ref), ref[target].tolist())
            mine = ",".join(map(str, calibration.calibrated)) or "none"
            print(f"{prefix}_recalibrated: shipyard {mine}; "
                  f"nannyml {','.join(info['recalibrated']) or 'none'}")
            for chunk in info["chunks"]:
                rows = analysis.iloc[chunk["start"]:chunk["end"] + 1]
                got = CBPE(classes, calibration).update(matrix(rows),
                                                        rows[pred].tolist()).result()
                for ours, theirs in ((auc, "roc_auc"), ("accuracy", "accuracy")):
                    gap = abs(got[ours]["value"] - chunk[theirs]["estimated"])
                    worst[theirs] = max(worst.get(theirs, 0.0), gap)
                    truth = abs(got[ours]["value"] - chunk[theirs]["realized"])
                    worst[f"{theirs}_vs_realized"] = max(
                        worst.get(f"{theirs}_vs_realized", 0.0), truth)
        print(f"{prefix}_shipyard_seconds: {time.perf_counter() - start:.2f}")
        print(f"{prefix}_nannyml_seconds: {info['seconds']:.2f}")
        for key, value in worst.items():
            print(f"{prefix}_max_abs_diff_{key}: {value:.6f}" if "relative" not in key else
                  f"{prefix}_max_{key}_diff: {value:.6f}")


def setup(evidently: str, nannyml: str) -> None:
    """Make the comparators' virtual environments from PyPI (once)."""
    for python, package in ((evidently, "evidently==0.7.23"), (nannyml, "nannyml==0.13.1")):
        venv = Path(python).parent.parent
        if Path(python).exists():
            print(f"setup: {venv} exists")
            continue
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", package, "pyarrow"], check=True)
        print(f"setup: {package} installed in {venv}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        workers = {"report": worker_report, "flat": worker_flat, "drift": worker_drift,
                   "scipy": worker_scipy, "embedding": worker_embedding,
                   "window": worker_window}
        print(json.dumps(workers[kind](*rest)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true",
                        help="create the comparators' venvs from PyPI first")
    parser.add_argument("--sizes", default="1000000,5000000",
                        help="production rows of the drift comparison, comma-separated")
    parser.add_argument("--stream-rows", type=int, default=10_000_000)
    parser.add_argument("--embedding-rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200, help="no-drift runs")
    parser.add_argument("--only",
                        default="drift,stream,embedding,false_alarm,nannyml,window")
    parser.add_argument("--window-rows", default="250000,1000000",
                        help="logged rows of the window section, comma-separated")
    parser.add_argument("--log-report", default="",
                        help="also time build_report over a prediction log of these sizes")
    parser.add_argument("--per-request", type=int, default=10, help="rows per logged request")
    parser.add_argument("--evidently-python", default="/tmp/evenv/bin/python")
    parser.add_argument("--nannyml-python", default="/tmp/monenv/bin/python")
    parser.add_argument("--home", default=None, help="work folder (default: a temp folder)")
    args = parser.parse_args()
    if args.setup:
        setup(args.evidently_python, args.nannyml_python)
    only = set(args.only.split(","))
    base = Path(args.home or tempfile.mkdtemp(prefix="shipyard-monbench-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"cpu_count: {os.cpu_count()}")
    print(f"load_average_start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x] if "drift" in only else []
        if sizes:
            print(f"drift_reference_rows: {REFERENCE_ROWS}")
            print(f"drift_columns: {len(MIXED_NUMERIC)} numeric, "
                  f"{len(MIXED_CATEGORICAL)} categorical")
            drift_section(base, sizes[0], args.evidently_python)
        if "stream" in only:
            stream_section(base, args.stream_rows)
        if "embedding" in only:
            result = run_worker(["--worker", "embedding", str(args.embedding_rows), "384"])
            print(f"embedding_shape: {args.embedding_rows} vs {args.embedding_rows} x 384")
            for key, value in result.items():
                print(f"embedding_{key}: {value:.4g}")
        if "false_alarm" in only:
            false_alarm_section(args.runs)
        if "nannyml" in only:
            nannyml_section(args.nannyml_python, base)
        if "window" in only:
            for n in (int(x) for x in args.window_rows.split(",") if x):
                window_section(base, n)
        for n in sizes[1:]:  # the largest drift comparison last: it takes longest
            drift_section(base, n, args.evidently_python)
        for n in (int(x) for x in args.log_report.split(",") if x):
            log_report_section(base, n, args)
    finally:
        print(f"load_average_end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.home is None:
            shutil.rmtree(base, ignore_errors=True)


def log_report_section(base: Path, n: int, args) -> None:
    """The whole report over a prediction log of ``n`` rows (20 columns)."""
    from shipyard import Workspace

    home = base / f"log{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    ws = Workspace.open(home)
    start = time.perf_counter()
    model = register_model(ws)
    print(f"[{n}] register_seconds (reference profile included): "
          f"{time.perf_counter() - start:.2f}")
    flat = home / "current.parquet"
    start = time.perf_counter()
    write_log(home, model, n, args.per_request, flat)
    ws.close()
    print(f"[{n}] write_log_seconds: {time.perf_counter() - start:.2f}")
    show(f"[{n}] shipyard_report", run_worker(["--worker", "report", str(home)]), n)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
