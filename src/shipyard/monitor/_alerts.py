"""Alert rules on monitor reports: what a rule reads from a report, when a
run of bad windows fires it and a run of good ones resolves it, and the
webhook POSTs that announce each change.

A rule's outcome on one report is *bad*, *good* or *unknown* (the report
does not hold its figure: no labels yet for ``performance.accuracy``, too
few rows for drift). Unknown reports are skipped when counting, so a quiet
hour neither fires nor resolves anything:

>>> from shipyard.monitor import AlertRule
>>> rule = AlertRule(name="drift", check="dataset_drift", for_windows=2, resolve_after=2)
>>> transition(rule, firing=False, outcomes=[True, None, True])
'fire'
>>> transition(rule, firing=True, outcomes=[True, False]) is None  # one good window of two
True
>>> transition(rule, firing=True, outcomes=[True, False, None, False])
'resolve'
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shipyard.errors import ConfigError, MonitorError

if TYPE_CHECKING:
    from shipyard.monitor._policy import AlertRule, MonitorPolicy

log = logging.getLogger("shipyard.monitor.alerts")

#: Checks whose figures are "bad when high" unless the rule says otherwise.
HIGH_IS_BAD = ("dataset_drift", "drift", "quality")
#: How long a claimed delivery may stay unfinished before another check retries it.
STALE_CLAIM_SECONDS = 300.0


@dataclass(frozen=True)
class RuleOutcome:
    """A rule evaluated on one report: the figure it read (``value``), the
    limit it applied, and whether the window is bad (None: the report does
    not hold the figure)."""

    rule: str
    check: str
    value: float | None
    threshold: float | None
    direction: str | None
    bad: bool | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------ validation
def check_policy(policy: Any) -> MonitorPolicy:
    """``policy`` as a validated :class:`MonitorPolicy` (None: the defaults,
    no alert rules), its rules checked: valid, unique names; http(s) webhook
    URLs with a host; thresholds where a rule needs one; known metrics.

    Raises
    ------
    ConfigError
        The policy or one of its rules is invalid; the message names it.
    """
    from pydantic import ValidationError

    from shipyard.monitor._policy import MonitorPolicy

    if policy is None:
        policy = MonitorPolicy()
    elif not isinstance(policy, MonitorPolicy):
        if not isinstance(policy, Mapping):
            raise ConfigError(f"monitor policy: expected a mapping (the monitor: section), got "
                              f"{type(policy).__name__}")
        try:
            policy = MonitorPolicy.model_validate(dict(policy))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'monitor'}: {e['msg']}"
                for e in exc.errors())
            raise ConfigError(f"monitor policy: {problems}",
                              hint="see shipyard.monitor.MonitorPolicy for the keys") from exc
    seen: set[str] = set()
    for rule in policy.alerts:
        check_rule(rule)
        if rule.name in seen:
            raise ConfigError(f"monitor policy: two alert rules are named {rule.name!r}",
                              hint="give each rule its own name: alerts are tracked by it")
        seen.add(rule.name)
    return policy


def check_rule(rule: AlertRule) -> AlertRule:
    """Raise :class:`ConfigError` unless ``rule`` can be evaluated and delivered."""
    from shipyard.names import check_name
    from shipyard.train import METRICS

    check_name(rule.name, "alert rule", ConfigError, example="input_drift")
    where = f"alert rule {rule.name!r}"
    head, _, name = rule.check.partition(".")
    if head in ("performance", "estimated"):
        known = sorted({m for table in METRICS.values() for m in table})
        if name not in known:
            raise ConfigError(f"{where}: {rule.check!r} names no metric Shipyard knows",
                              hint=f"metrics: {', '.join(known)}")
        if rule.threshold is None:
            raise ConfigError(f"{where}: {rule.check} needs a threshold",
                              hint=f"e.g. threshold: 0.8 (fires when {name} is worse)")
    if rule.threshold is not None and not math.isfinite(rule.threshold):
        raise ConfigError(f"{where}: threshold must be a finite number, got {rule.threshold}")
    for url in rule.webhooks:
        check_webhook(url, where)
    return rule


def check_webhook(url: Any, where: str = "webhook") -> str:
    """Return ``url`` if it is an http(s) URL with a host and nothing odd in it.

    >>> check_webhook("https://hooks.example.com/T1/B2")
    'https://hooks.example.com/T1/B2'
    """
    shown = str(url)[:80]
    if not isinstance(url, str) or len(url) > 2000 or any(c.isspace() or ord(c) < 32
                                                           for c in url):
        raise ConfigError(f"{where}: webhook {shown!r} is not a URL",
                          hint="write http(s)://host[:port]/path without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: webhook {shown!r} is not a URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: webhook {shown!r} is not an http(s) URL with a host",
                          hint="e.g. https://hooks.example.com/alerts")
    if port == 0:
        raise ConfigError(f"{where}: webhook {shown!r} has port 0")
    return url


def redact(url: str) -> str:
    """``url`` safe to store and show: scheme, host and port only, since a
    webhook's path or credentials are often its secret.

    >>> redact("https://user:pw@hooks.example.com:8443/T1/B2?token=x")
    'https://hooks.example.com:8443/…'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{netloc}{rest}"


def webhook_key(url: str) -> str:
    """A stable id of ``url`` that does not reveal it (sha256, 16 hex digits)."""
    import hashlib

    return hashlib.sha256(url.encode()).hexdigest()[:16]


# ------------------------------------------------------------ evaluation
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _entry(report: Mapping[str, Any], section: str, name: str, *, strict: bool,
           rule: AlertRule) -> Mapping[str, Any] | None:
    """``report[section][name]``; None when the report does not hold it. With
    ``strict``, a name the section's non-empty table lacks is the rule's fault."""
    table = report.get(section)
    if section == "performance" or section == "estimated":
        table = (report.get("performance") or {}).get(
            "realized" if section == "performance" else "estimated")
    if not isinstance(table, Mapping) or not table:
        return None
    entry = table.get(name)
    if entry is None and strict and section in ("drift", "quality"):
        known = ", ".join(sorted(map(str, table))[:20])
        raise MonitorError(f"alert rule {rule.name!r}: the report of {report.get('model')} "
                           f"has no {section} figure {name!r}",
                           hint=f"{section} figures in this report: {known}")
    return entry if isinstance(entry, Mapping) else None


def evaluate_rule(rule: AlertRule, report: Mapping[str, Any], *,
                  strict: bool = False) -> RuleOutcome:
    """Evaluate ``rule`` on ``report`` (``MonitorReport.to_dict()``).

    Without a threshold a drift or quality rule follows the report's own
    verdict for its figure (``drifted``, ``failed``); with one, the figure
    (drift share, a column's effect size, a quality value, a metric) is
    compared with it: bad above it, or below it for a metric where higher is
    better (``direction`` overrides).

    Raises
    ------
    MonitorError
        With ``strict``: the rule names a drift column or quality check the
        report does not have.
    """
    from shipyard.train import direction as metric_direction

    head, _, name = rule.check.partition(".")
    if rule.direction is not None:
        direction = rule.direction
    elif head in HIGH_IS_BAD:
        direction = "above"
    else:
        direction = "below" if metric_direction(name) == "maximize" else "above"

    def outcome(value: Any, flag: Any, what: str) -> RuleOutcome:
        value = _number(value)
        if rule.threshold is not None:
            if value is None:
                return RuleOutcome(rule.name, rule.check, None, rule.threshold, direction, None,
                                   f"{what}: no figure in this window")
            bad = value > rule.threshold if direction == "above" else value < rule.threshold
            sign = (">" if bad else "<=") if direction == "above" else ("<" if bad else ">=")
            return RuleOutcome(rule.name, rule.check, value, rule.threshold, direction, bad,
                               f"{what} {value:.4g} {sign} {rule.threshold:g}")
        if not isinstance(flag, bool):
            return RuleOutcome(rule.name, rule.check, value, None, direction, None,
                               f"{what}: no verdict in this window")
        shown = f" {value:.4g}" if value is not None else ""
        return RuleOutcome(rule.name, rule.check, value, None, direction, flag,
                           f"{what}{shown}, {'flagged' if flag else 'passed'} by the report")

    if head == "dataset_drift":
        entry = report.get("dataset_drift")
        if not isinstance(entry, Mapping) or not entry:
            return outcome(None, None, "dataset drift share")
        return outcome(entry.get("share"), entry.get("drifted"), "dataset drift share")
    if head == "drift":
        entry = _entry(report, "drift", name, strict=strict, rule=rule)
        entry = entry or {}
        what = f"drift of {name} ({entry.get('effect_name') or 'effect'})"
        return outcome(entry.get("effect"), entry.get("drifted"), what)
    if head == "quality":
        entry = _entry(report, "quality", name, strict=strict, rule=rule) or {}
        return outcome(entry.get("value"), entry.get("failed"), f"quality {name}")
    entry = _entry(report, head, name, strict=strict, rule=rule) or {}
    kind = "realized" if head == "performance" else "estimated"
    return outcome(entry.get("value"), None, f"{kind} {name}")


def transition(rule: AlertRule, *, firing: bool, outcomes: Sequence[bool | None]) -> str | None:
    """``"fire"``, ``"resolve"`` or None for a rule whose alert is (not)
    ``firing``, given its outcomes on the model's reports, oldest first, the
    newest last. It fires when the newest ``for_windows`` known outcomes are
    all bad and resolves when the newest ``resolve_after`` are all good; the
    newest report must itself be known."""
    if not outcomes or outcomes[-1] is None:
        return None
    known = [o for o in outcomes if o is not None]
    if not firing:
        tail = known[-rule.for_windows:]
        return "fire" if len(tail) == rule.for_windows and all(tail) else None
    tail = known[-rule.resolve_after:]
    return "resolve" if len(tail) == rule.resolve_after and not any(tail) else None


# -------------------------------------------------------------- webhooks
@dataclass(frozen=True)
class WebhookSettings:
    """How webhooks are posted: ``attempts`` tries each, ``timeout`` seconds
    per try, backing off exponentially from ``backoff`` seconds (jittered,
    at most ``max_backoff``)."""

    attempts: int = 4
    timeout: float = 5.0
    backoff: float = 0.5
    max_backoff: float = 8.0


def payload(alert, *, outcome: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body announcing ``alert``'s current state."""
    details = alert.details
    return {"source": "shipyard", "alert_id": alert.id, "model": alert.model,
            "rule": alert.rule, "state": alert.state, "fired_at": alert.fired_at,
            "resolved_at": alert.resolved_at, "report_id": alert.last_report_id,
            "check": details.get("check"), "value": details.get("value"),
            "threshold": details.get("threshold"), "reason": details.get("reason"),
            "version": details.get("version"), "role": details.get("role"),
            "window": details.get("window"), "verdict": details.get("verdict")}


def post(url: str, body: Mapping[str, Any], *, key: str, settings: WebhookSettings,
         client: Any = None) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url``, retrying connection errors, timeouts,
    408, 429 and 5xx answers with exponential backoff; never raises.

    Returns
    -------
    dict
        ``status`` (``delivered`` or ``failed``), ``attempts``, ``code`` (the
        last HTTP status, or None), ``error`` (why it failed), ``at``.
    """
    import httpx

    headers = {"User-Agent": "shipyard-monitor", "Idempotency-Key": key}
    code: int | None = None
    error: str | None = None
    own = client is None
    if own:
        client = httpx.Client(timeout=settings.timeout, follow_redirects=False)
    try:
        delay = settings.backoff
        for attempt in range(1, settings.attempts + 1):
            try:
                response = client.post(url, json=dict(body), headers=headers)
                code, error = response.status_code, None
                if 200 <= code < 300:
                    return {"status": "delivered", "attempts": attempt, "code": code,
                            "error": None, "at": time.time()}
                error = f"HTTP {code}"
                if not (code in (408, 429) or code >= 500):
                    break  # the receiver refuses this body: trying again will not help
            except httpx.HTTPError as exc:
                code, error = None, f"{type(exc).__name__}: {exc}"[:300]
            except Exception as exc:  # noqa: BLE001 -- a webhook must never fail the check
                code, error = None, f"{type(exc).__name__}: {exc}"[:300]
                break
            if attempt < settings.attempts:
                time.sleep(min(delay, settings.max_backoff) * (1 + 0.2 * random.random()))
                delay *= 2
        return {"status": "failed", "attempts": attempt, "code": code, "error": error,
                "at": time.time()}
    finally:
        if own:
            client.close()


def new_deliveries(state: str, urls: Iterable[str], now: float) -> list[dict[str, Any]]:
    """Delivery entries for ``urls``, claimed by the caller (``sending``)."""
    return [{"state": state, "webhook": redact(url), "key": webhook_key(url),
             "status": "sending", "attempts": 0, "code": None, "error": None,
             "claimed_at": now, "at": None} for url in dict.fromkeys(urls)]
