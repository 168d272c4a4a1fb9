"""Operational figures: latency and throughput are measured and positive."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from shipyard.evaluate._operational import operational_report


def test_latency_and_throughput_are_positive():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    model = LogisticRegression().fit(X, X.a > 0)
    out = operational_report(model, X, single_calls=50, batch_rows=500, batch_repeats=5,
                             artifact_bytes=1234, load_seconds=0.01)
    assert out["artifact_bytes"] == 1234 and out["load_seconds"] == 0.01
    single, batch = out["single_row"], out["batch"]
    assert single["calls"] == 50 and 0 < single["p50_ms"] <= single["p99_ms"]
    assert batch["rows"] == 500 and batch["repeats"] == 5
    assert 0 < batch["p50_ms"] <= batch["p99_ms"] and batch["rows_per_second"] > 0
