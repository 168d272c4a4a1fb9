"""Operational figures: artifact size, load time, prediction latency and
throughput."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd


def _predict_fn(model: Any):
    return model.predict_proba if hasattr(model, "predict_proba") else model.predict


def operational_report(model: Any, X: pd.DataFrame, *, single_calls: int = 200,
                       batch_rows: int = 1000, batch_repeats: int = 20,
                       artifact_bytes: int | None = None, load_seconds: float | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """Time single-row and batch predictions on rows of ``X``.

    Each single-row call predicts one row (a one-row DataFrame, as a serving
    request would); each batch call predicts ``batch_rows`` rows (sampled with
    replacement when ``X`` is smaller). One warm-up call of each kind runs
    first. Probabilities are timed for classifiers, as serving returns them.

    Parameters
    ----------
    model
        Anything with ``predict`` (or ``predict_proba``).
    X
        Model input rows.
    single_calls, batch_rows, batch_repeats
        How much to time.
    artifact_bytes, load_seconds
        Recorded as given (the caller measured them).
    seed
        Picks the rows.

    Returns
    -------
    dict
        ``{"artifact_bytes", "load_seconds", "single_row": {"calls", "p50_ms",
        "p99_ms", "mean_ms"}, "batch": {"rows", "repeats", "p50_ms", "p99_ms",
        "rows_per_second"}}``.

    >>> from sklearn.dummy import DummyRegressor
    >>> X = pd.DataFrame({"a": range(10)})
    >>> r = operational_report(DummyRegressor().fit(X, X.a), X, single_calls=5, batch_repeats=2)
    >>> r["batch"]["rows_per_second"] > 0
    True
    """
    predict = _predict_fn(model)
    rng = np.random.default_rng(seed)
    singles = [X.iloc[[i]] for i in rng.integers(0, len(X), size=max(single_calls, 1))]
    batch = X.iloc[rng.integers(0, len(X), size=batch_rows)]
    predict(singles[0])
    single_ms = np.empty(len(singles))
    for i, row in enumerate(singles):
        start = time.perf_counter()
        predict(row)
        single_ms[i] = (time.perf_counter() - start) * 1e3
    predict(batch)
    batch_ms = np.empty(max(batch_repeats, 1))
    for i in range(len(batch_ms)):
        start = time.perf_counter()
        predict(batch)
        batch_ms[i] = (time.perf_counter() - start) * 1e3
    return {
        "artifact_bytes": artifact_bytes,
        "load_seconds": load_seconds,
        "single_row": {"calls": len(singles), "p50_ms": float(np.percentile(single_ms, 50)),
                       "p99_ms": float(np.percentile(single_ms, 99)),
                       "mean_ms": float(single_ms.mean())},
        "batch": {"rows": int(batch_rows), "repeats": len(batch_ms),
                  "p50_ms": float(np.percentile(batch_ms, 50)),
                  "p99_ms": float(np.percentile(batch_ms, 99)),
                  "rows_per_second": float(batch_rows / (np.median(batch_ms) / 1e3))},
    }
