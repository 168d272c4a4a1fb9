"""The server's /metrics exposes each served model's latest monitor report
(drift share, per-column p-values, realized and estimated performance,
verdict, alerts firing), read from the DB at most once per interval."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve.conftest import LiveServer, bearer, keys, served  # noqa: F401

from monitor.alerting import drift_rule, report_dict, ws  # noqa: F401
from shipyard.serve._prometheus import ServerMetrics


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("shipyard_monitor"):
                out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found[(name, *sorted(labels.items()))]


def test_the_gauges_follow_the_latest_report(ws):  # noqa: F811
    ws.monitor.record(report_dict("income"))
    latest = ws.monitor.record(
        report_dict("income", drifted=("age", "workclass"), version=3, role="candidate",
                    realized={"accuracy": {"value": 0.71, "ci_low": 0.6, "ci_high": 0.8}},
                    estimated={"accuracy": {"value": 0.74}, "roc_auc": {"value": 0.8}}),
        policy={"alerts": [drift_rule(for_windows=1)]})
    metrics = ServerMetrics()
    assert metrics.refresh_monitor(ws, ["income", "fraud"])
    found = samples(metrics.render().decode())
    assert value(found, "shipyard_monitor_drift_share", model="income") == pytest.approx(2 / 3)
    assert value(found, "shipyard_monitor_dataset_drift", model="income") == 1
    assert value(found, "shipyard_monitor_drift_p_value", model="income", column="age") == 1e-9
    assert value(found, "shipyard_monitor_drift_p_adjusted", model="income",
                 column="hours_per_week") == 0.6
    assert value(found, "shipyard_monitor_column_drifted", model="income",
                 column="workclass") == 1
    assert value(found, "shipyard_monitor_performance", model="income", metric="accuracy",
                 kind="realized") == 0.71
    assert value(found, "shipyard_monitor_performance", model="income", metric="roc_auc",
                 kind="estimated") == 0.8
    assert value(found, "shipyard_monitor_verdict", model="income") == 2
    assert value(found, "shipyard_monitor_window_rows", model="income") == 500
    assert value(found, "shipyard_monitor_report_timestamp_seconds", model="income",
                 version="3", role="candidate") == latest.report.created_at
    assert value(found, "shipyard_monitor_alerts_firing", model="income") == 1
    assert value(found, "shipyard_monitor_alerts_firing", model="fraud") == 0
    assert not any(dict(k[1:]).get("model") == "fraud" for k in found
                   if k[0] != "shipyard_monitor_alerts_firing")  # no report, no figures


def test_they_are_read_at_most_once_per_interval(ws):  # noqa: F811
    metrics = ServerMetrics(monitor_interval=3600)
    ws.monitor.record(report_dict("income", drifted=("age",)))
    assert metrics.refresh_monitor(ws, ["income"])
    ws.monitor.record(report_dict("income"))
    assert not metrics.refresh_monitor(ws, ["income"])  # within the interval: not read
    found = samples(metrics.render().decode())
    assert value(found, "shipyard_monitor_column_drifted", model="income", column="age") == 1
    assert metrics.refresh_monitor(ws, ["income"], force=True)
    found = samples(metrics.render().decode())
    assert value(found, "shipyard_monitor_column_drifted", model="income", column="age") == 0


def test_a_failing_read_keeps_the_old_figures_and_never_raises(ws, caplog):  # noqa: F811
    metrics = ServerMetrics(monitor_interval=0)
    ws.monitor.record(report_dict("income", drifted=("age",)))
    metrics.refresh_monitor(ws, ["income"])

    class Broken:
        class monitor:
            @staticmethod
            def latest(model):
                raise RuntimeError("database is on fire")

    assert not metrics.refresh_monitor(Broken(), ["income"])
    assert "database is on fire" in caplog.text
    found = samples(metrics.render().decode())
    assert value(found, "shipyard_monitor_column_drifted", model="income", column="age") == 1


def test_a_live_server_exposes_them_on_scrape(served, keys):  # noqa: F811
    from shipyard.serve import create_app

    workspace = served[0]
    workspace.monitor.record(report_dict("toy", drifted=("age",), n=77))
    app = create_app(workspace, ["toy@champion"], reload_interval=0, prediction_log=False)
    with LiveServer(app) as server:
        scrape = httpx.get(f"{server.url}/metrics", headers=bearer(keys["metrics"]))
        assert scrape.status_code == 200
        found = samples(scrape.text)
        assert value(found, "shipyard_monitor_window_rows", model="toy") == 77
        workspace.monitor.record(report_dict("toy", n=88))
        again = samples(httpx.get(f"{server.url}/metrics",
                                  headers=bearer(keys["metrics"])).text)
        assert value(again, "shipyard_monitor_window_rows", model="toy") == 77  # cached 10 s
        app.state.serving.metrics.monitor_interval = 0
        fresh = samples(httpx.get(f"{server.url}/metrics",
                                  headers=bearer(keys["metrics"])).text)
        assert value(fresh, "shipyard_monitor_window_rows", model="toy") == 88
