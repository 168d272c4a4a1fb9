"""Tracking benchmark: Shipyard vs MLflow on the same machine, in one run.

Prints ``name: value`` lines:

(a) single-call metric logging, points/s, counted until the points are durable
    (Shipyard: ``run.log_metric`` in a loop, then ``run.flush()``; MLflow:
    ``mlflow.log_metric``, which commits each call);
(b) batched logging, points/s (Shipyard ``run.log_metrics`` with 10 keys a call;
    MLflow ``mlflow.log_metrics`` with 10 keys a call and ``MlflowClient.log_batch``
    with 1,000 points a call);
(c) run search over ``--runs`` runs (3 params, 3 metrics each), same filter,
    order and limit on both, median of ``--queries`` repetitions.

Both tools use SQLite in a temporary folder. Shipyard creates every run through
its API. MLflow creates ``--mlflow-api-runs`` runs through ``MlflowClient``
(``create_run`` + ``log_batch`` + ``set_terminated``; the creation rate is
reported and extrapolated), and the remaining runs are copied into its tables
with plain SQL from those rows, because creating 10,000 runs through its API
takes about 12 minutes here. The floor is ``sqlite3.executemany`` of the same
rows in one transaction.

Usage: ``python benchmarks/tracking.py [--points N] [--runs N] ...``
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

FILTER = "metrics.auc > 0.9 and params.model = 'lgbm'"
ORDER = ["metrics.auc DESC"]
LIMIT = 100
MODELS = ("lgbm", "rf", "xgb", "logreg")


def emit(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:,.1f}" if value >= 100 else f"{value:.4g}"
    print(f"{name}: {value}", flush=True)


def run_values(i: int, rng: random.Random) -> tuple[dict, dict]:
    params = {"model": MODELS[i % len(MODELS)], "lr": round(10 ** rng.uniform(-4, -1), 6),
              "depth": rng.randint(2, 12)}
    auc = rng.uniform(0.6, 0.99)
    metrics = {"auc": auc, "loss": 1 - auc + rng.uniform(0, 0.05), "f1": rng.uniform(0.4, 0.9)}
    return params, metrics


# ------------------------------------------------------------------- floor
def floor_sqlite(folder: Path, points: int) -> float:
    con = sqlite3.connect(folder / "floor.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE m (run_id TEXT, key TEXT, value REAL, step INTEGER, ts REAL)")
    rid = uuid.uuid4().hex
    start = time.perf_counter()
    rows = [(rid, "loss", float(i), i, time.time()) for i in range(points)]
    con.execute("BEGIN")
    con.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?)", rows)
    con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    con.close()
    return points / elapsed


# ---------------------------------------------------------------- shipyard
def shipyard_logging(folder: Path, points: int) -> tuple[float, float, float]:
    from shipyard import Workspace

    ws = Workspace.open(folder / "shipyard")
    with ws.start_run("bench-log") as run:
        start = time.perf_counter()
        for i in range(points):
            run.log_metric("loss", float(i))
        queued = time.perf_counter()
        run.flush()
        durable = time.perf_counter()
    with ws.start_run("bench-batch") as run:
        keys = [f"m{k}" for k in range(10)]
        steps = points // 10
        start_b = time.perf_counter()
        for step in range(steps):
            run.log_metrics({k: float(step) for k in keys})
        run.flush()
        batched = steps * 10 / (time.perf_counter() - start_b)
    ws.close()
    return points / (queued - start), points / (durable - start), batched


def shipyard_search(folder: Path, n_runs: int, queries: int) -> tuple[float, float, int]:
    from shipyard import Workspace

    ws = Workspace.open(folder / "shipyard")
    rng = random.Random(0)
    start = time.perf_counter()
    for i in range(n_runs):
        params, metrics = run_values(i, rng)
        run = ws.start_run("bench-search", params=params, seed=i)
        run.log_metrics(metrics)
        run.end()
    created = n_runs / (time.perf_counter() - start)
    found = ws.runs.search(FILTER, experiment="bench-search", order_by=ORDER, limit=LIMIT)
    times = []
    for _ in range(queries):
        t = time.perf_counter()
        ws.runs.search(FILTER, experiment="bench-search", order_by=ORDER, limit=LIMIT)
        times.append(time.perf_counter() - t)
    ws.close()
    return created, statistics.median(times) * 1000, len(found)


# ------------------------------------------------------------------ mlflow
def mlflow_setup(folder: Path):
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment("bench-log")
    return mlflow


def mlflow_logging(mlflow, points: int, batch_calls: int) -> tuple[float, float, float]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    with mlflow.start_run():
        mlflow.log_metric("warmup", 0.0)
        start = time.perf_counter()
        for i in range(points):
            mlflow.log_metric("loss", float(i), step=i)
        single = points / (time.perf_counter() - start)

        keys = [f"m{k}" for k in range(10)]
        start = time.perf_counter()
        for step in range(batch_calls):
            mlflow.log_metrics({k: float(step) for k in keys}, step=step)
        dict_rate = batch_calls * 10 / (time.perf_counter() - start)

        client = MlflowClient()
        run_id = mlflow.active_run().info.run_id
        start = time.perf_counter()
        n = 0
        for call in range(batch_calls // 10 or 1):
            ts = int(time.time() * 1000)
            batch = [Metric("b", float(i), ts, call * 1000 + i) for i in range(1000)]
            client.log_batch(run_id, metrics=batch)
            n += len(batch)
        batch_rate = n / (time.perf_counter() - start)
    return single, dict_rate, batch_rate


def mlflow_search(mlflow, n_runs: int, api_runs: int, queries: int):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient()
    exp_id = client.create_experiment("bench-search")
    rng = random.Random(0)
    api_runs = min(api_runs, n_runs)
    start = time.perf_counter()
    template = None
    for i in range(api_runs):
        params, metrics = run_values(i, rng)
        run = client.create_run(exp_id)
        ts = int(time.time() * 1000)
        client.log_batch(run.info.run_id,
                         metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
                         params=[Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(run.info.run_id)
        template = run.info.run_id
    api_rate = api_runs / (time.perf_counter() - start)
    if n_runs > api_runs:
        _copy_mlflow_runs(mlflow.get_tracking_uri().removeprefix("sqlite:///"), template,
                          range(api_runs, n_runs), rng)
    kwargs = dict(experiment_ids=[exp_id], filter_string=FILTER, order_by=ORDER,
                  max_results=LIMIT)
    found = client.search_runs(**kwargs)
    times = []
    for _ in range(queries):
        t = time.perf_counter()
        client.search_runs(**kwargs)
        times.append(time.perf_counter() - t)
    return api_rate, statistics.median(times) * 1000, len(found)


def _copy_mlflow_runs(db_path: str, template: str, indices, rng: random.Random) -> None:
    """Clone the template run's rows for each new run, with that run's values."""
    con = sqlite3.connect(db_path)
    con.row_factory = sqlite3.Row

    def rows(table: str) -> list[dict]:
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} WHERE run_uuid = ?",
                                             (template,))]

    run_row = rows("runs")[0]
    tags = rows("tags")
    metric_row = rows("metrics")[0]
    latest_row = rows("latest_metrics")[0]

    def insert(table: str, records: list[dict]) -> None:
        if records:
            cols = list(records[0])
            con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                            f"({', '.join('?' for _ in cols)})",
                            [tuple(r[c] for c in cols) for r in records])

    new_runs, new_params, new_metrics, new_latest, new_tags = [], [], [], [], []
    for i in indices:
        params, metrics = run_values(i, rng)
        rid = uuid.uuid4().hex
        new_runs.append({**run_row, "run_uuid": rid, "name": f"copy-{i}",
                         "start_time": run_row["start_time"] + i,
                         "artifact_uri": run_row["artifact_uri"].replace(template, rid)})
        new_params += [{"key": k, "value": str(v), "run_uuid": rid} for k, v in params.items()]
        for k, v in metrics.items():
            new_metrics.append({**metric_row, "key": k, "value": v, "run_uuid": rid})
            new_latest.append({**latest_row, "key": k, "value": v, "run_uuid": rid})
        new_tags += [{**t, "run_uuid": rid} for t in tags]
    with con:
        insert("runs", new_runs)
        insert("params", new_params)
        insert("metrics", new_metrics)
        insert("latest_metrics", new_latest)
        insert("tags", new_tags)
    con.close()


def versions() -> str:
    from importlib.metadata import version

    return (f"python {sys.version.split()[0]}, shipyard {version('shipyard')}, mlflow "
            f"{version('mlflow')}, sqlalchemy {version('sqlalchemy')}, sqlite "
            f"{sqlite3.sqlite_version}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200_000,
                        help="Shipyard points for single-call and batched logging")
    parser.add_argument("--mlflow-points", type=int, default=1_000,
                        help="MLflow single log_metric calls")
    parser.add_argument("--mlflow-batch-calls", type=int, default=200,
                        help="MLflow log_metrics calls (10 keys each); log_batch calls of "
                             "1,000 points are a tenth of this")
    parser.add_argument("--runs", type=int, default=10_000, help="runs to search over")
    parser.add_argument("--mlflow-api-runs", type=int, default=500,
                        help="MLflow runs created through its API (the rest copied by SQL)")
    parser.add_argument("--queries", type=int, default=20, help="timed search repetitions")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()

    emit("versions", versions())
    emit("cpus", os.cpu_count())
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        folder = Path(tmp)
        old_cwd = os.getcwd()
        os.chdir(folder)  # MLflow writes ./mlruns artifacts next to the cwd
        try:
            emit("floor_sqlite3_executemany_points_per_s", floor_sqlite(folder, args.points))
            queued, durable, batched = shipyard_logging(folder, args.points)
            emit("shipyard_log_metric_calls_per_s_queued", queued)
            emit("shipyard_log_metric_points_per_s_durable", durable)
            emit("shipyard_log_metrics_10keys_points_per_s_durable", batched)
            if not args.skip_mlflow:
                mlflow = mlflow_setup(folder)
                single, dict_rate, batch_rate = mlflow_logging(mlflow, args.mlflow_points,
                                                               args.mlflow_batch_calls)
                emit("mlflow_log_metric_points_per_s", single)
                emit("mlflow_log_metrics_10keys_points_per_s", dict_rate)
                emit("mlflow_log_batch_1000_points_per_s", batch_rate)
                emit("single_call_speedup_x", durable / single)
                emit("batched_speedup_vs_mlflow_log_batch_x", batched / batch_rate)

            created, median_ms, found = shipyard_search(folder, args.runs, args.queries)
            emit("shipyard_runs_created_per_s_api", created)
            emit(f"shipyard_search_{args.runs}_runs_median_ms", median_ms)
            emit("shipyard_search_results", found)
            if not args.skip_mlflow:
                api_rate, ml_ms, ml_found = mlflow_search(mlflow, args.runs,
                                                          args.mlflow_api_runs, args.queries)
                emit("mlflow_runs_created_per_s_api", api_rate)
                emit(f"mlflow_create_{args.runs}_runs_via_api_extrapolated_s",
                     args.runs / api_rate)
                emit(f"mlflow_search_{args.runs}_runs_median_ms", ml_ms)
                emit("mlflow_search_results", ml_found)
                emit("search_speedup_x", ml_ms / median_ms)
            emit("filter", f"{FILTER!r} order_by={ORDER} limit={LIMIT}")
        finally:
            os.chdir(old_cwd)


if __name__ == "__main__":
    main()
