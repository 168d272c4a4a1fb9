"""Alert rules fire after N bad windows and resolve after M good ones; each
change is logged, stored with an audit entry and POSTed to webhooks once,
retried with backoff; a failing webhook never fails the check."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from monitor.alerting import (  # noqa: F401  (fixtures, registered by import)
    WebhookReceiver,
    drift_rule,
    receiver,
    register_names,
    report_dict,
    ws,
)
from shipyard.errors import ConfigError, MonitorError
from shipyard.monitor import AlertRule, Monitor, evaluate_rule, transition

DRIFTED = ("age", "hours_per_week")


def fast(workspace, **kwargs):
    return Monitor(workspace, webhook_backoff=0.01, webhook_timeout=2.0, **kwargs)


def policy(*rules):
    return {"alerts": list(rules)}


# ------------------------------------------------------------- the rule
def test_a_rule_reads_its_figure_from_the_report():
    report = report_dict(drifted=DRIFTED, realized={"accuracy": {"value": 0.7, "n": 80}},
                         quality={"missing_rate": {"value": 0.3, "threshold": 0.1,
                                                   "failed": True}})
    out = evaluate_rule(AlertRule(name="d", check="dataset_drift"), report)
    assert out.bad is True and out.value == pytest.approx(2 / 3)
    assert evaluate_rule(AlertRule(name="d", check="dataset_drift", threshold=0.9),
                         report).bad is False
    assert evaluate_rule(AlertRule(name="a", check="drift.age"), report).bad is True
    assert evaluate_rule(AlertRule(name="w", check="drift.workclass"), report).bad is False
    assert evaluate_rule(AlertRule(name="q", check="quality.missing_rate"), report).bad is True
    accuracy = evaluate_rule(AlertRule(name="p", check="performance.accuracy", threshold=0.8),
                             report)
    assert accuracy.bad is True and accuracy.direction == "below"  # higher is better
    assert "0.7 < 0.8" in accuracy.reason
    loss = AlertRule(name="l", check="performance.log_loss", threshold=0.5)
    assert evaluate_rule(loss, report_dict(realized={"log_loss": {"value": 0.4}})).bad is False
    assert evaluate_rule(loss, report_dict(realized={"log_loss": {"value": 0.6}})).bad is True
    flipped = AlertRule(name="f", check="quality.missing_rate", threshold=0.5,
                        direction="below")
    assert evaluate_rule(flipped, report).bad is True


def test_a_report_without_the_figure_is_unknown_not_good():
    no_labels = report_dict()
    rule = AlertRule(name="p", check="estimated.accuracy", threshold=0.8)
    out = evaluate_rule(rule, no_labels)
    assert out.bad is None and "no figure" in out.reason
    empty = {**report_dict(), "drift": {}, "dataset_drift": {}}
    assert evaluate_rule(AlertRule(name="d", check="dataset_drift"), empty).bad is None
    assert evaluate_rule(AlertRule(name="d", check="drift.age"), empty, strict=True).bad is None


def test_a_rule_naming_a_figure_the_report_lacks_is_refused():
    with pytest.raises(MonitorError, match="no drift figure 'agee'.*\n.*age, hours_per_week"):
        evaluate_rule(AlertRule(name="typo", check="drift.agee"), report_dict(), strict=True)
    with pytest.raises(MonitorError, match="no quality figure 'nulls'"):
        evaluate_rule(AlertRule(name="typo", check="quality.nulls"), report_dict(), strict=True)


@pytest.mark.parametrize("firing, outcomes, expected", [
    (False, [True], None),                     # one bad window of the two needed
    (False, [True, True], "fire"),
    (False, [True, None, True], "fire"),       # unknown windows are skipped
    (False, [True, True, None], None),         # the newest must itself be known
    (False, [True, False, True], None),
    (True, [True, True], None),                # already firing: nothing new
    (True, [False], None),
    (True, [False, False], "resolve"),
    (True, [False, None, False], "resolve"),
    (False, [False, False], None),
    (False, [], None),
])
def test_hysteresis(firing, outcomes, expected):
    rule = AlertRule(name="d", check="dataset_drift", for_windows=2, resolve_after=2)
    assert transition(rule, firing=firing, outcomes=outcomes) == expected


# ---------------------------------------------------------- the lifecycle
def test_fires_after_n_bad_windows_and_resolves_after_m_good_ones(ws, receiver, caplog):  # noqa: F811
    monitor = fast(ws)
    rules = policy(drift_rule(webhooks=[receiver.url]))
    first = monitor.record(report_dict(drifted=DRIFTED), policy=rules)
    assert first.changes == [] and first.firing == [] and first.outcomes[0].bad is True
    with caplog.at_level(logging.WARNING, logger="shipyard.monitor.alerts"):
        second = monitor.record(report_dict(drifted=DRIFTED), policy=rules)
    [alert] = second.changes
    assert alert.state == "firing" and alert.rule == "input_drift" and alert.model == "income"
    assert second.firing == [alert] and alert.last_report_id == second.report.id
    assert alert.details["check"] == "dataset_drift" and alert.details["value"] == \
        pytest.approx(2 / 3)
    assert "input_drift FIRING on income" in caplog.text
    [delivery] = alert.deliveries
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1
    assert delivery["code"] == 200 and delivery["state"] == "firing"
    assert delivery["webhook"].endswith("/…") and "secret-token" not in str(alert.deliveries)
    [post] = receiver.posts
    assert post["path"] == "/hooks/secret-token"
    assert post["body"]["state"] == "firing" and post["body"]["alert_id"] == alert.id
    assert post["body"]["model"] == "income" and post["body"]["report_id"] == second.report.id
    assert post["headers"]["Idempotency-Key"] == f"shipyard-alert-{alert.id}-firing"

    # still bad, and good once: nothing new, nothing re-sent
    for drifted in (DRIFTED, DRIFTED, ()):
        again = monitor.record(report_dict(drifted=drifted), policy=rules)
        assert again.changes == [] and [a.id for a in again.firing] == [alert.id]
    assert len(receiver.posts) == 1
    resolved = monitor.record(report_dict(), policy=rules)
    [change] = resolved.changes
    assert change.id == alert.id and change.state == "resolved" and resolved.firing == []
    assert change.resolved_at >= change.fired_at
    assert [d["state"] for d in change.deliveries] == ["firing", "resolved"]
    assert all(d["status"] == "delivered" for d in change.deliveries)
    assert [p["body"]["state"] for p in receiver.posts] == ["firing", "resolved"]

    # a new incident is a new alert
    for _ in range(2):
        last = monitor.record(report_dict(drifted=DRIFTED), policy=rules)
    assert last.changes[0].id != alert.id
    history = ws.monitor.alerts("income")
    assert [(a.id, a.state) for a in history] == [(last.changes[0].id, "firing"),
                                                   (alert.id, "resolved")]
    assert ws.monitor.alerts(state="resolved") == [history[1]]
    assert ws.monitor.alerts("fraud") == []


def test_every_change_has_an_audit_entry_in_its_transaction(ws):  # noqa: F811
    rules = policy(drift_rule(for_windows=1, resolve_after=1))
    fired = ws.monitor.record(report_dict(drifted=DRIFTED), policy=rules).changes[0]
    ws.monitor.record(report_dict(), policy=rules)
    entries = ws.audit.entries("monitor", "income")
    assert [(e.action, e.details["state"]) for e in entries] == [("monitor.alert", "firing"),
                                                                 ("monitor.alert", "resolved")]
    assert entries[0].details["alert"] == fired.id and entries[0].details["rule"] == \
        "input_drift"
    assert ws.audit.verify().ok


def test_alerts_are_per_model_and_per_rule(ws):  # noqa: F811
    rules = policy(drift_rule(for_windows=1), {"name": "age", "check": "drift.age"},
                   {"name": "acc", "check": "performance.accuracy", "threshold": 0.8})
    income = ws.monitor.record(report_dict("income", drifted=("age",)), policy=rules)
    assert sorted(a.rule for a in income.changes) == ["age", "input_drift"]
    fraud = ws.monitor.record(report_dict("fraud", realized={"accuracy": {"value": 0.5}}),
                              policy=rules)
    assert [a.rule for a in fraud.changes] == ["acc"]
    assert len(ws.monitor.alerts(state="firing")) == 3


def test_a_webhook_is_retried_with_backoff_until_it_answers(ws):  # noqa: F811
    with WebhookReceiver(fail_first=2) as hook:
        rules = policy(drift_rule(for_windows=1, webhooks=[hook.url]))
        started = time.perf_counter()
        [alert] = fast(ws).record(report_dict(drifted=DRIFTED), policy=rules).changes
        assert time.perf_counter() - started >= 0.01 + 0.02  # backed off twice
    [delivery] = alert.deliveries
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert hook.attempts == 3 and len(hook.posts) == 1
    assert ws.monitor.alerts("income")[0].deliveries == alert.deliveries  # stored


def test_a_failing_webhook_is_recorded_and_never_fails_the_check(ws, caplog):  # noqa: F811
    with WebhookReceiver(fail_first=100) as hook:
        dead = "http://127.0.0.1:9/nobody-listens"
        rules = policy(drift_rule(for_windows=1, webhooks=[hook.url, dead]))
        with caplog.at_level(logging.WARNING, logger="shipyard.monitor.alerts"):
            result = fast(ws, webhook_attempts=3).record(report_dict(drifted=DRIFTED),
                                                         policy=rules)
    [alert] = result.changes
    assert alert.state == "firing" and result.report.id  # the check itself went through
    refused, unreachable = alert.deliveries
    assert refused["status"] == "failed" and refused["attempts"] == 3
    assert refused["code"] == 500 and refused["error"] == "HTTP 500"
    assert unreachable["status"] == "failed" and unreachable["code"] is None
    assert "ConnectError" in unreachable["error"]
    assert hook.attempts == 3
    assert "failed after 3 attempts" in caplog.text
    # the next check does not page again for the same incident
    fast(ws).record(report_dict(drifted=DRIFTED), policy=rules)
    assert hook.attempts == 3


def test_a_refusing_webhook_is_not_retried(ws):  # noqa: F811
    with WebhookReceiver(fail_first=5, fail_status=400) as hook:
        rules = policy(drift_rule(for_windows=1, webhooks=[hook.url]))
        [alert] = fast(ws).record(report_dict(drifted=DRIFTED), policy=rules).changes
    assert alert.deliveries[0]["attempts"] == 1 and alert.deliveries[0]["code"] == 400
    assert hook.attempts == 1


def test_a_delivery_left_unfinished_is_taken_over_by_the_next_check(ws, receiver):  # noqa: F811
    """A check killed between storing an alert and posting it leaves the
    delivery claimed; once the claim is stale the next check posts it, once."""
    from shipyard.store.tables import MonitorAlertRow

    rules = policy(drift_rule(for_windows=1, webhooks=[receiver.url]))
    offline = fast(ws)
    offline.webhook_attempts = 1
    receiver.fail_first = 1  # the "crashed" first attempt
    [alert] = offline.record(report_dict(drifted=DRIFTED), policy=rules).changes
    receiver.fail_first = 0
    with ws.db.write() as session:  # as a crash mid-delivery would leave it
        row = session.get(MonitorAlertRow, alert.id)
        row.deliveries = [{**row.deliveries[0], "status": "sending",
                           "claimed_at": time.time() - 3600}]
    fast(ws).record(report_dict(drifted=DRIFTED), policy=rules)
    fast(ws).record(report_dict(drifted=DRIFTED), policy=rules)
    [delivery] = ws.monitor.alerts("income")[0].deliveries
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert [p["body"]["state"] for p in receiver.posts] == ["firing"]


def test_a_webhook_removed_from_the_policy_is_dropped_not_posted(ws, receiver):  # noqa: F811
    from shipyard.store.tables import MonitorAlertRow

    rules = policy(drift_rule(for_windows=1, webhooks=[receiver.url]))
    [alert] = fast(ws).record(report_dict(drifted=DRIFTED), policy=rules).changes
    with ws.db.write() as session:
        row = session.get(MonitorAlertRow, alert.id)
        row.deliveries = [{**row.deliveries[0], "status": "sending", "claimed_at": 0.0}]
    fast(ws).record(report_dict(drifted=DRIFTED), policy=policy(drift_rule(for_windows=1)))
    [delivery] = ws.monitor.alerts("income")[0].deliveries
    assert delivery["status"] == "dropped" and "no longer in the policy" in delivery["error"]


def test_concurrent_checks_fire_one_alert(workspace):
    register_names(workspace, "income")
    rules = policy(drift_rule(for_windows=1))
    errors = []

    def check():
        try:
            workspace.monitor.record(report_dict(drifted=DRIFTED), policy=rules)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(workspace.monitor.reports("income")) == 4
    assert len(workspace.monitor.alerts("income")) == 1
    assert len(workspace.audit.entries("monitor", "income")) == 1


# ------------------------------------------------------------ bad policy
@pytest.mark.parametrize("rules, message", [
    ([drift_rule(), drift_rule()], "two alert rules are named 'input_drift'"),
    ([drift_rule(name="input drift!")], "not a valid alert rule name"),
    ([drift_rule(name="")], "at least 1 character"),
    ([drift_rule(check="vibes")], "unknown check 'vibes'"),
    ([drift_rule(check="performance.")], "names no metric"),
    ([drift_rule(check="performance.accuracy")], "needs a threshold"),
    ([drift_rule(check="estimated.happiness", threshold=1)], "names no metric"),
    ([drift_rule(threshold=float("nan"))], "finite"),
    ([drift_rule(for_windows=0)], "greater than or equal to 1"),
    ([drift_rule(webhooks=["ftp://example.com/x"])], "not an http"),
    ([drift_rule(webhooks=["http://exa mple.com/x"])], "is not a URL"),
    ([drift_rule(webhooks=["http:///path-only"])], "not an http"),
    ([drift_rule(webhooks=["https://example.com:99999/x"])], "is not a URL"),
    ([drift_rule(webhooks=["http://example.com/\x00"])], "is not a URL"),
])
def test_a_bad_rule_is_a_clear_error_and_nothing_is_stored(ws, rules, message):  # noqa: F811
    with pytest.raises(ConfigError, match=message):
        ws.monitor.record(report_dict(drifted=DRIFTED), policy=policy(*rules))
    assert ws.monitor.reports("income") == []


@pytest.mark.parametrize("bad, message", [
    ({"window": {"every": "soon"}}, "'soon' is not a duration"),
    ({"late_arrival": "-1d"}, "is not a duration"),
    ({"window": {"every": "1h", "rows": 500}}, "not both"),
    ({"alerts": "drift"}, "alerts"),
    ({"surprise": 1}, "surprise"),
    ("dataset_drift", "expected a mapping"),
])
def test_a_bad_policy_is_a_clear_error(ws, bad, message):  # noqa: F811
    with pytest.raises(ConfigError, match=message):
        ws.monitor.record(report_dict(), policy=bad)


def test_a_rule_on_a_column_the_report_lacks_stores_nothing(ws):  # noqa: F811
    with pytest.raises(MonitorError, match="alert rule 'typo'.*no drift figure 'agee'"):
        ws.monitor.record(report_dict(), policy=policy({"name": "typo",
                                                        "check": "drift.agee"}))
    assert ws.monitor.reports("income") == []
