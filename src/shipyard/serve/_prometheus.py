"""Prometheus metrics of one server process (its own registry, so several
apps in one process, as in tests, do not collide).

With ``--workers N`` each worker counts its own requests; scrape each, or run
one worker per container.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from shipyard import Workspace

log = logging.getLogger("shipyard.serve")
#: Most columns per model exported with their drift figures (bounds the series).
MAX_DRIFT_COLUMNS = 200
VERDICTS = {"ok": 0, "warning": 1, "alert": 2}

#: Latency buckets, seconds: fine below 10 ms, where a fast model lives.
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Requests, latency, errors, loaded versions and prediction-log drops;
    and each served model's latest monitor report (drift, performance,
    verdict, alerts firing), read from the workspace at most every
    ``monitor_interval`` seconds when scraped."""

    def __init__(self, *, monitor_interval: float = 10.0) -> None:
        self.monitor_interval = monitor_interval
        self._monitor_read: float | None = None
        self._monitor_lock = threading.Lock()
        self.registry = CollectorRegistry()
        labels = ("endpoint", "model", "version")
        self.requests = Counter("shipyard_requests", "HTTP requests answered.",
                                (*labels, "code"), registry=self.registry)
        self.latency = Histogram("shipyard_request_duration_seconds",
                                 "Time from request to response.", labels, buckets=BUCKETS,
                                 registry=self.registry)
        self.errors = Counter("shipyard_errors", "Requests refused or failed, by error code.",
                              (*labels, "error"), registry=self.registry)
        self.rows = Counter("shipyard_predicted_rows", "Rows predicted.", ("model", "version"),
                            registry=self.registry)
        self.model_info = Gauge("shipyard_model_info", "1 for each model version loaded.",
                                ("model", "version", "ref"), registry=self.registry)
        self.predlog_dropped = Gauge("shipyard_prediction_log_dropped",
                                     "Log records dropped because the writer fell behind.",
                                     registry=self.registry)
        self._monitor_gauges()

    def _monitor_gauges(self) -> None:
        r = self.registry
        self.drift_share = Gauge(
            "shipyard_monitor_drift_share",
            "Share of drifted columns in the model's latest monitor report.", ("model",),
            registry=r)
        self.dataset_drift = Gauge(
            "shipyard_monitor_dataset_drift",
            "1 when the latest monitor report finds dataset drift, else 0.", ("model",),
            registry=r)
        self.drift_p_value = Gauge(
            "shipyard_monitor_drift_p_value",
            "Drift test p-value of each column in the latest monitor report.",
            ("model", "column"), registry=r)
        self.drift_p_adjusted = Gauge(
            "shipyard_monitor_drift_p_adjusted",
            "Benjamini-Hochberg adjusted drift p-value of each column in the latest report.",
            ("model", "column"), registry=r)
        self.column_drifted = Gauge(
            "shipyard_monitor_column_drifted",
            "1 when the latest monitor report finds the column drifted, else 0.",
            ("model", "column"), registry=r)
        self.performance = Gauge(
            "shipyard_monitor_performance",
            "Latest performance: realized (on labelled rows) or estimated (before labels).",
            ("model", "metric", "kind"), registry=r)
        self.verdict = Gauge(
            "shipyard_monitor_verdict",
            "Verdict of the latest monitor report: 0 ok, 1 warning, 2 alert.", ("model",),
            registry=r)
        self.report_time = Gauge(
            "shipyard_monitor_report_timestamp_seconds",
            "When the latest monitor report was stored, with its version and role.",
            ("model", "version", "role"), registry=r)
        self.report_rows = Gauge(
            "shipyard_monitor_window_rows", "Rows in the latest monitor report's window.",
            ("model",), registry=r)
        self.alerts_firing = Gauge(
            "shipyard_monitor_alerts_firing", "Monitor alerts firing now.", ("model",),
            registry=r)

    def refresh_monitor(self, ws: Workspace, models: Iterable[str], *,
                        force: bool = False) -> bool:
        """Set the monitor gauges of ``models`` from their latest reports, at
        most once per ``monitor_interval`` (unless ``force``); return whether
        they were read. A failure is logged and leaves the gauges as they were:
        monitoring must never break a scrape."""
        now = time.monotonic()
        if not force and self._monitor_read is not None \
                and now - self._monitor_read < self.monitor_interval:
            return False
        if not self._monitor_lock.acquire(blocking=False):
            return False  # another scrape is reading them
        try:
            self._monitor_read = now
            models = list(models)
            latest = {m: ws.monitor.latest(m) for m in models}
            firing: dict[str, int] = {}
            for alert in ws.monitor.alerts(state="firing", limit=10_000):
                firing[alert.model] = firing.get(alert.model, 0) + 1
        except Exception as exc:  # noqa: BLE001 -- any failure: keep the old figures
            log.warning("could not read the latest monitor reports: %s", exc)
            return False
        else:
            self._set_monitor(latest, {m: firing.get(m, 0) for m in models})
            return True
        finally:
            self._monitor_lock.release()

    def _set_monitor(self, latest: dict[str, Any], firing: dict[str, int]) -> None:
        gauges = (self.drift_share, self.dataset_drift, self.drift_p_value,
                  self.drift_p_adjusted, self.column_drifted, self.performance, self.verdict,
                  self.report_time, self.report_rows, self.alerts_firing)
        for gauge in gauges:
            gauge.clear()
        for model, count in firing.items():
            self.alerts_firing.labels(model).set(count)
        for model, stored in latest.items():
            if stored is None:
                continue
            report = stored.report
            self.verdict.labels(model).set(VERDICTS.get(stored.verdict, math.nan))
            self.report_time.labels(model, str(stored.version or ""),
                                    stored.role or "").set(stored.created_at)
            self.report_rows.labels(model).set(stored.rows)
            dataset = report.get("dataset_drift") or {}
            _set(self.drift_share.labels(model), dataset.get("share"))
            if isinstance(dataset.get("drifted"), bool):
                self.dataset_drift.labels(model).set(int(dataset["drifted"]))
            columns = list((report.get("drift") or {}).items())[:MAX_DRIFT_COLUMNS]
            for column, figures in columns:
                if not isinstance(figures, dict):
                    continue
                column = str(column)
                _set(self.drift_p_value.labels(model, column), figures.get("p_value"))
                _set(self.drift_p_adjusted.labels(model, column), figures.get("p_adjusted"))
                if isinstance(figures.get("drifted"), bool):
                    self.column_drifted.labels(model, column).set(int(figures["drifted"]))
            performance = report.get("performance") or {}
            for kind in ("realized", "estimated"):
                for metric, figures in (performance.get(kind) or {}).items():
                    if isinstance(figures, dict):
                        _set(self.performance.labels(model, str(metric), kind),
                             figures.get("value"))

    def observe(self, endpoint: str, model: str, version: str, code: int, seconds: float,
                error: str | None) -> None:
        self.requests.labels(endpoint, model, version, str(code)).inc()
        self.latency.labels(endpoint, model, version).observe(seconds)
        if error is not None:
            self.errors.labels(endpoint, model, version, error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _set(gauge: Any, value: Any) -> None:
    """Set ``gauge`` to ``value`` when it is a number (a missing figure stays unset)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        gauge.set(value)
