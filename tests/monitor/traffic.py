"""Production traffic for the monitor's tests: a real :class:`PredictionLog`
writing Parquet files, with the clock it stamps records with under the
test's control."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

import shipyard.deploy._prediction_log as prediction_log
from shipyard.deploy import PredictionLog

#: 2025-01-01T00:00:00Z: an hour boundary, in the past.
T0 = 1_735_689_600.0


class Clock:
    """Stands in for ``time`` in the prediction log's module."""

    def __init__(self, now: float = T0):
        self.now = now

    def time(self) -> float:
        return self.now


def install(monkeypatch, clock: Clock) -> None:
    monkeypatch.setattr(prediction_log, "time", types.SimpleNamespace(time=clock.time))


def log_requests(home, clock: Clock, model: str, frames: Iterable[tuple[float, pd.DataFrame]],
                 *, scorer: Any = None, version: int = 1, role: str | None = None,
                 status: int = 200, prefix: str = "r", error: str | None = None) -> list[str]:
    """Log one request per ``(time, frame)``; outputs from ``scorer`` (a model
    with ``predict`` and ``predict_proba``). Returns the request ids."""
    log = PredictionLog(home)
    ids = []
    for i, (ts, frame) in enumerate(frames):
        clock.now = ts
        rid = f"{prefix}{i}"
        outputs = None
        if status == 200 and scorer is not None:
            outputs = {"predictions": np.asarray(scorer.predict(frame))}
            if hasattr(scorer, "predict_proba"):
                outputs["probabilities"] = np.asarray(scorer.predict_proba(frame))
        log.record_prediction(request_id=rid, model=model, version=version, endpoint="v1.predict",
                              status=status, latency_ms=1.0,
                              inputs=frame if status in (200, 422) or error is None else None,
                              outputs=outputs, error=error, role=role)
        ids.append(rid)
    log.close()
    return ids


def log_feedback(home, clock: Clock, labels: Iterable[tuple[float, str, Any]], *,
                 model: str | None = None, flush_every: int = 3) -> None:
    """Record ``(time, request id, label)`` feedback, flushing every few records
    (so it lands in several files, in the order given)."""
    log = PredictionLog(home)
    for i, (ts, rid, label) in enumerate(labels):
        clock.now = ts
        log.record_feedback(request_id=rid, label=label, model=model)
        if (i + 1) % flush_every == 0:
            log.flush()
    log.close()
