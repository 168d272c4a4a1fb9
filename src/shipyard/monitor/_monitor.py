"""``ws.monitor``: run a window's checks, store the report, evaluate the
alert rules, deliver alerts; read reports and alerts back.

Alerts are kept per (model, rule). A rule fires after ``for_windows``
consecutive bad reports of the model and resolves after ``resolve_after``
good ones; the count is taken from the stored reports themselves (newest
first), so it survives restarts, and several processes checking one model
take turns under its writer lock. Each state change is delivered

- to the log (``shipyard.monitor.alerts``, warning),
- to the DB: a ``monitor_alerts`` row and an audit entry ``monitor.alert``,
  written in the report's transaction,
- to the rule's webhooks: a JSON POST after the commit, retried with
  exponential backoff; its outcome is written to the alert row.

One incident pages once: a check that finds the alert already firing
changes nothing, and each (alert, state, webhook) is posted by one process
only (the entry is claimed in the transaction that creates it; a claim left
unfinished for five minutes, as by a crash, is taken over by the next
check). A failing webhook is recorded, never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, MonitorError, NotFoundError
from shipyard.monitor._alerts import (
    STALE_CLAIM_SECONDS,
    RuleOutcome,
    WebhookSettings,
    check_policy,
    evaluate_rule,
    new_deliveries,
    payload,
    post,
    redact,
    transition,
    webhook_key,
)
from shipyard.monitor._store import (
    STATES,
    AlertRecord,
    ReportRecord,
    alert_record,
    epoch,
    report_columns,
    report_record,
    since_epoch,
)

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.monitor._policy import AlertRule, MonitorPolicy

log = logging.getLogger("shipyard.monitor.alerts")

ROLES = ("primary", "candidate", "shadow")
#: Most past reports read to count a rule's run of bad or good windows.
MAX_HISTORY = 200


@dataclass(frozen=True)
class MonitorCheck:
    """What one check did: the stored ``report``, each alert rule's outcome
    on it, the alerts it fired or resolved (``changes``, with their webhook
    deliveries' outcomes) and the model's alerts firing now."""

    report: ReportRecord
    outcomes: list[RuleOutcome]
    changes: list[AlertRecord]
    firing: list[AlertRecord]

    @property
    def verdict(self) -> str:
        return self.report.verdict


class Monitor:
    """Monitoring of a workspace's served models. Reach it as ``ws.monitor``.

    Parameters
    ----------
    workspace
        The workspace whose prediction log is read and whose DB holds the
        reports and alerts.
    webhook_attempts, webhook_timeout, webhook_backoff
        Tries per webhook POST, seconds per try, first backoff in seconds
        (doubling, jittered, at most 8 s).

    Examples
    --------
    ::

        result = ws.monitor.check("fraud", since="1h", policy={"alerts": [
            {"name": "input_drift", "check": "dataset_drift", "for_windows": 2,
             "webhooks": ["https://hooks.example.com/oncall"]}]})
        result.verdict, [a.rule for a in result.firing]
    """

    def __init__(self, workspace: Workspace, *, webhook_attempts: int = 4,
                 webhook_timeout: float = 5.0, webhook_backoff: float = 0.5):
        self._ws = workspace
        self.webhook_attempts = webhook_attempts
        self.webhook_timeout = webhook_timeout
        self.webhook_backoff = webhook_backoff

    def __repr__(self) -> str:
        return (f"Monitor({self._ws!r}, webhook_attempts={self.webhook_attempts}, "
                f"webhook_timeout={self.webhook_timeout}, "
                f"webhook_backoff={self.webhook_backoff})")

    # -------------------------------------------------------------- check
    def check(self, model: str, *, version: int | None = None, role: str | None = None,
              since: str | float | Any = None, start: Any = None, end: Any = None,
              policy: MonitorPolicy | Mapping[str, Any] | None = None) -> MonitorCheck:
        """Check one window of ``model``'s traffic: build its report (drift,
        quality, performance), store it, evaluate ``policy``'s alert rules
        and deliver the alerts that change state.

        Parameters
        ----------
        model
            The model name.
        version, role
            Only requests answered by this version / in this rollout role
            (``primary``, ``candidate``, ``shadow``).
        since
            Start of the window: a duration back from now (``"1h"``) or a
            time; ``start`` is the same as a time only.
        end
            End of the window (default now).
        policy
            The ``monitor:`` section (a :class:`MonitorPolicy` or its
            mapping); default: the default thresholds and no alert rules.

        Raises
        ------
        NotFoundError
            No model is called ``model``.
        MonitorError
            The window holds no predictions, or a rule names a figure the
            report lacks.
        ConfigError
            An argument or the policy is invalid.
        """
        policy = check_policy(policy)
        model = self._known_model(model)
        if role is not None and role not in ROLES:
            raise ConfigError(f"role {str(role)[:40]!r} is not one of {', '.join(ROLES)}")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or version < 1):
            raise ConfigError(f"version must be a positive number, got {version!r}")
        if since is not None and start is not None:
            raise ConfigError("give since or start, not both")
        first = since_epoch(since) if since is not None else epoch(start, "start")
        last = epoch(end, "end")
        if first is not None and last is not None and first >= last:
            raise ConfigError(f"the window starts ({first:.0f}) at or after it ends "
                              f"({last:.0f})")
        from shipyard.monitor._report import build_report

        report = build_report(self._ws, model, version=version, role=role, start=first,
                              end=last, policy=policy)
        data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        if not report_columns(data)["rows"]:
            what = " ".join(filter(None, [model, f"version {version}" if version else None,
                                          f"role {role}" if role else None]))
            raise MonitorError(f"no predictions of {what} in the window",
                               hint="send traffic to the server first, or widen the window "
                                    "(since=\"7d\", shipyard monitor --since 7d)")
        return self.record(data, policy=policy)

    def record(self, report: Any, *, policy: MonitorPolicy | Mapping[str, Any] | None = None
               ) -> MonitorCheck:
        """Store ``report`` (a :class:`MonitorReport` or its ``to_dict()``),
        evaluate ``policy``'s alert rules on it and deliver the changes:
        :meth:`check` without building the report (a report built by another
        job, a test's).

        Raises
        ------
        NotFoundError
            The report's model is not registered.
        MonitorError
            The report is malformed, or a rule names a figure it lacks;
            nothing was stored.
        """
        from shipyard.data import jsonable
        from shipyard.store.tables import MonitorAlertRow, MonitorReportRow

        policy = check_policy(policy)
        data = jsonable(report.to_dict() if hasattr(report, "to_dict") else report)
        columns = report_columns(data)
        model = self._known_model(columns["model"])
        outcomes = [evaluate_rule(rule, data, strict=True) for rule in policy.alerts]
        depth = min(MAX_HISTORY, 3 * max([max(r.for_windows, r.resolve_after)
                                          for r in policy.alerts] or [1]))
        actor = self._actor()

        def write(session) -> tuple[ReportRecord, list[AlertRecord], list[AlertRecord]]:
            from sqlalchemy import select

            now = time.time()
            self._ws.db.lock(session, f"monitor:{model}")
            row = MonitorReportRow(**columns, created_at=now, report=data)
            session.add(row)
            session.flush()
            previous = session.execute(
                select(MonitorReportRow.report).where(MonitorReportRow.model == model,
                                                      MonitorReportRow.id < row.id)
                .order_by(MonitorReportRow.id.desc()).limit(depth)).scalars().all()[::-1]
            open_alerts = {a.rule: a for a in session.execute(
                select(MonitorAlertRow).where(MonitorAlertRow.model == model,
                                              MonitorAlertRow.state == "firing")
                .order_by(MonitorAlertRow.id)).scalars()}
            changes = []
            for rule, outcome in zip(policy.alerts, outcomes):
                history = [evaluate_rule(rule, old).bad for old in previous] + [outcome.bad]
                alert = open_alerts.get(rule.name)
                step = transition(rule, firing=alert is not None, outcomes=history)
                if step == "fire":
                    alert = MonitorAlertRow(
                        model=model, rule=rule.name, state="firing", fired_at=now,
                        resolved_at=None, last_report_id=row.id,
                        details=_details(rule, outcome, data, row.id),
                        deliveries=new_deliveries("firing", rule.webhooks, now))
                    session.add(alert)
                    session.flush()
                    open_alerts[rule.name] = alert
                elif step == "resolve":
                    alert.state, alert.resolved_at, alert.last_report_id = "resolved", now, row.id
                    alert.details = {**alert.details,
                                     "resolved_by": _details(rule, outcome, data, row.id)}
                    alert.deliveries = [*alert.deliveries,
                                        *new_deliveries("resolved", rule.webhooks, now)]
                    open_alerts.pop(rule.name)
                elif alert is not None:
                    alert.last_report_id = row.id
                if step is not None:
                    self._ws.audit.append(
                        session, actor=actor, action="monitor.alert", object_type="monitor",
                        object_id=model, reason=f"{rule.name} {alert.state}: {outcome.reason}",
                        details={"alert": alert.id, "rule": rule.name, "state": alert.state,
                                 "check": rule.check, "value": outcome.value,
                                 "threshold": outcome.threshold, "report": row.id,
                                 "webhooks": [redact(u) for u in rule.webhooks]})
                    changes.append(alert)
            session.flush()
            return (report_record(row), [alert_record(a) for a in changes],
                    [alert_record(a) for a in open_alerts.values()])

        stored, changes, firing = self._ws.db.retry(write, what=f"store a monitor report of "
                                                                f"{model}")
        for alert in changes:
            level = logging.WARNING if alert.firing else logging.INFO
            log.log(level, "alert %s %s on %s: %s", alert.rule, alert.state.upper(), model,
                    alert.details.get("resolved_by", alert.details).get("reason"))
        delivered = self._deliver(model, policy, changes)
        changes = [delivered.get(a.id, a) for a in changes]
        firing = [delivered.get(a.id, a) for a in firing]
        return MonitorCheck(report=stored, outcomes=outcomes, changes=changes, firing=firing)

    # ----------------------------------------------------------- delivery
    def _deliver(self, model: str, policy: MonitorPolicy,
                 changes: list[AlertRecord]) -> dict[int, AlertRecord]:
        """POST every delivery this process claimed (the new ones, and any
        left unfinished by another check); write each outcome."""
        urls = {(rule.name, webhook_key(url)): url for rule in policy.alerts
                for url in rule.webhooks}
        mine = [(a.id, a.rule, d["state"], d["key"]) for a in changes for d in a.deliveries
                if d["status"] == "sending" and d["attempts"] == 0]
        mine += self._reclaim(model, exclude={a.id for a in changes})
        if not mine:
            return {}
        settings = WebhookSettings(attempts=max(1, int(self.webhook_attempts)),
                                   timeout=self.webhook_timeout, backoff=self.webhook_backoff)
        alerts = {a.id: a for a in changes}
        results: dict[int, AlertRecord] = {}
        for alert_id, rule, state, key in mine:
            url = urls.get((rule, key))
            if url is None:
                outcome = {"status": "dropped", "attempts": 0, "code": None,
                           "error": "the webhook is no longer in the policy", "at": time.time()}
            else:
                alert = results.get(alert_id) or alerts.get(alert_id) or self._alert(alert_id)
                body = {**payload(alert), "state": state}
                outcome = post(url, body, key=f"shipyard-alert-{alert_id}-{state}",
                               settings=settings)
                if outcome["status"] != "delivered":
                    log.warning("webhook %s of alert %s (%s) failed after %d attempts: %s",
                                redact(url), rule, state, outcome["attempts"], outcome["error"])
            results[alert_id] = self._write_outcome(alert_id, state, key, outcome)
        return results

    def _reclaim(self, model: str, exclude: set[int]) -> list[tuple[int, str, str, str]]:
        """Claim deliveries of ``model``'s alerts that a crashed or killed
        check left ``sending`` for too long."""
        from sqlalchemy import select

        from shipyard.store.tables import MonitorAlertRow

        def stale(d: Mapping[str, Any], now: float) -> bool:
            return d.get("status") == "sending" and (d.get("claimed_at") or 0) < \
                now - STALE_CLAIM_SECONDS

        query = (select(MonitorAlertRow).where(MonitorAlertRow.model == model)
                 .order_by(MonitorAlertRow.id.desc()).limit(50))
        with self._ws.db.read() as session:
            candidates = [a.id for a in session.execute(query).scalars()
                          if a.id not in exclude and any(stale(d, time.time())
                                                         for d in a.deliveries or [])]
        if not candidates:
            return []

        def claim(session) -> list[tuple[int, str, str, str]]:
            self._ws.db.lock(session, f"monitor:{model}")
            now, claimed = time.time(), []
            for alert in session.execute(select(MonitorAlertRow).where(
                    MonitorAlertRow.id.in_(candidates))).scalars():
                deliveries = []
                for d in alert.deliveries:
                    if stale(d, now):
                        d = {**d, "claimed_at": now}
                        claimed.append((alert.id, alert.rule, d["state"], d["key"]))
                    deliveries.append(d)
                alert.deliveries = deliveries
            return claimed

        return self._ws.db.retry(claim, what=f"claim alert deliveries of {model}")

    def _write_outcome(self, alert_id: int, state: str, key: str,
                       outcome: Mapping[str, Any]) -> AlertRecord:
        from shipyard.store.tables import MonitorAlertRow

        def write(session) -> AlertRecord:
            row = session.get(MonitorAlertRow, alert_id)
            self._ws.db.lock(session, f"monitor:{row.model}")
            session.refresh(row)
            deliveries = []
            for d in row.deliveries:
                if d["state"] == state and d["key"] == key and d["status"] == "sending":
                    d = {**d, **outcome, "attempts": d["attempts"] + outcome["attempts"]}
                    d.pop("claimed_at", None)
                deliveries.append(d)
            row.deliveries = deliveries
            return alert_record(row)

        return self._ws.db.retry(write, what=f"record the delivery of alert {alert_id}")

    def _alert(self, alert_id: int) -> AlertRecord:
        from shipyard.store.tables import MonitorAlertRow

        with self._ws.db.read() as session:
            return alert_record(session.get(MonitorAlertRow, alert_id))

    # -------------------------------------------------------------- reads
    def reports(self, model: str, *, since: Any = None, limit: int | None = 50,
                version: int | None = None, role: str | None = None) -> list[ReportRecord]:
        """``model``'s stored reports, newest first.

        Parameters
        ----------
        since
            Only reports stored at or after this time: a duration back from
            now (``"1d"``), epoch seconds, a datetime or ISO text.
        limit
            At most this many (None: all).
        version, role
            Only reports of this version / rollout role.

        Raises
        ------
        NotFoundError
            No model is called ``model``.
        """
        from sqlalchemy import select

        from shipyard.store.tables import MonitorReportRow

        model = self._known_model(model)
        query = select(MonitorReportRow).where(MonitorReportRow.model == model)
        start = since_epoch(since)
        if start is not None:
            query = query.where(MonitorReportRow.created_at >= start)
        if version is not None:
            query = query.where(MonitorReportRow.version == version)
        if role is not None:
            query = query.where(MonitorReportRow.role == role)
        query = query.order_by(MonitorReportRow.id.desc())
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError(f"limit must be a positive number, got {limit!r}")
            query = query.limit(limit)
        with self._ws.db.read() as session:
            return [report_record(r) for r in session.execute(query).scalars()]

    def report(self, report_id: int) -> ReportRecord:
        """The stored report ``report_id``.

        Raises
        ------
        NotFoundError
            There is none.
        """
        from shipyard.store.tables import MonitorReportRow

        if isinstance(report_id, bool) or not isinstance(report_id, int):
            raise ConfigError(f"a report id is a number, got {report_id!r}")
        with self._ws.db.read() as session:
            row = session.get(MonitorReportRow, report_id)
            if row is None:
                raise NotFoundError(f"no monitor report {report_id}",
                                    hint="list them with `shipyard monitor alerts` or "
                                         "ws.monitor.reports(model)")
            return report_record(row)

    def latest(self, model: str) -> ReportRecord | None:
        """``model``'s newest stored report; None when it has none (also
        when no such model is registered: servers ask this on every scrape)."""
        from sqlalchemy import select

        from shipyard.store.tables import MonitorReportRow

        with self._ws.db.read() as session:
            row = session.execute(select(MonitorReportRow)
                                  .where(MonitorReportRow.model == model)
                                  .order_by(MonitorReportRow.id.desc()).limit(1)).scalar()
            return report_record(row) if row is not None else None

    def alerts(self, model: str | None = None, *, state: str | None = None,
               limit: int | None = 100) -> list[AlertRecord]:
        """Alert incidents, newest first: of ``model`` (None: every model),
        only ``firing`` or ``resolved`` ones with ``state``.

        Raises
        ------
        NotFoundError
            No model is called ``model``.
        ConfigError
            ``state`` is not firing or resolved.
        """
        from sqlalchemy import select

        from shipyard.store.tables import MonitorAlertRow

        query = select(MonitorAlertRow)
        if model is not None:
            query = query.where(MonitorAlertRow.model == self._known_model(model))
        if state is not None:
            if state not in STATES:
                raise ConfigError(f"alert state {str(state)[:40]!r} is not one of "
                                  f"{', '.join(STATES)}")
            query = query.where(MonitorAlertRow.state == state)
        query = query.order_by(MonitorAlertRow.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._ws.db.read() as session:
            return [alert_record(r) for r in session.execute(query).scalars()]

    # --------------------------------------------------------------- html
    def html(self, model: str, *, report_id: int | None = None, history: int = 50,
             distributions: bool = True) -> str:
        """A self-contained HTML page on ``model``'s monitoring: its newest
        report (or ``report_id``) with reference-vs-window distributions of
        its drifted columns, drift and performance (realized and estimated)
        over its last ``history`` reports, and its alerts."""
        from shipyard.monitor._html import render_html, window_distributions

        reports = self.reports(model, limit=history)
        current = self.report(report_id) if report_id is not None else \
            (reports[0] if reports else None)
        if current is None:
            raise MonitorError(f"{model} has no monitor reports yet",
                               hint=f"run `shipyard monitor {model}` first")
        if current.model != model:
            raise MonitorError(f"report {current.id} is of {current.model}, not {model}")
        dists, note = (window_distributions(self._ws, current) if distributions
                       else ({}, "distributions not drawn"))
        return render_html(current, history=reports, alerts=self.alerts(model, limit=20),
                           distributions=dists, distributions_note=note)

    # ------------------------------------------------------------ helpers
    def _known_model(self, model: Any) -> str:
        from sqlalchemy import select

        from shipyard.registry import RegistryError, check_model_name
        from shipyard.store.tables import RegisteredModelRow

        try:
            model = check_model_name(model)
        except RegistryError as exc:
            raise MonitorError(exc.message, hint=exc.hint) from exc
        with self._ws.db.read() as session:
            found = session.execute(select(RegisteredModelRow.id)
                                    .where(RegisteredModelRow.name == model)).first()
        if found is None:
            raise NotFoundError(f"no model is called {model!r}",
                                hint="see the registered models with `shipyard models list`")
        return model

    @staticmethod
    def _actor() -> str:
        from shipyard.security import resolve_actor

        return resolve_actor(None)


def _details(rule: AlertRule, outcome: RuleOutcome, report: Mapping[str, Any],
             report_id: int) -> dict[str, Any]:
    return {"check": rule.check, "value": outcome.value, "threshold": outcome.threshold,
            "direction": outcome.direction, "reason": outcome.reason,
            "for_windows": rule.for_windows, "resolve_after": rule.resolve_after,
            "report": report_id, "verdict": report.get("verdict"),
            "version": report.get("version"), "role": report.get("role"),
            "window": report.get("window")}
