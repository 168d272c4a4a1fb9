"""Prometheus metrics of one server process (its own registry, so several
apps in one process, as in tests, do not collide).

With ``--workers N`` each worker counts its own requests; scrape each, or run
one worker per container.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Latency buckets, seconds: fine below 10 ms, where a fast model lives.
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Requests, latency, errors, loaded versions and prediction-log drops."""

    def __init__(self) -> None:
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

    def observe(self, endpoint: str, model: str, version: str, code: int, seconds: float,
                error: str | None) -> None:
        self.requests.labels(endpoint, model, version, str(code)).inc()
        self.latency.labels(endpoint, model, version).observe(seconds)
        if error is not None:
            self.errors.labels(endpoint, model, version, error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
