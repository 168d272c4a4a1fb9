"""Stored monitor reports and alerts: the records read back from the
``monitor_reports`` and ``monitor_alerts`` tables, and the queries behind
``ws.monitor.reports`` / ``alerts`` / ``latest``.

A report is stored as the JSON of ``MonitorReport.to_dict()``; the figures a
query filters or sorts on (model, version, role, window, rows, verdict,
created time) are columns beside it.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import MonitorError

VERDICTS = ("ok", "warning", "alert")
STATES = ("firing", "resolved")


@dataclass(frozen=True)
class ReportRecord:
    """One stored monitor report: where it sits (id, model, version, role,
    window, rows), its verdict, when it was stored, and the report itself
    (``report``: the JSON of ``MonitorReport.to_dict()``)."""

    id: int
    model: str
    version: int | None
    role: str | None
    window_start: float | None
    window_end: float | None
    rows: int
    verdict: str
    created_at: float
    report: dict[str, Any] = field(repr=False)

    def to_report(self):
        """The report as a :class:`shipyard.monitor.MonitorReport`."""
        from shipyard.monitor import MonitorReport

        return MonitorReport.from_dict(self.report)


@dataclass(frozen=True)
class AlertRecord:
    """One alert incident of rule ``rule`` on ``model``: ``firing`` from
    ``fired_at`` until ``resolved_at``; ``details`` say what crossed which
    threshold; ``deliveries`` hold each webhook POST and its outcome
    (``state``, ``webhook`` with any path or credentials hidden, ``status``
    ``sending`` / ``delivered`` / ``failed`` / ``dropped``, ``attempts``,
    ``code``, ``error``)."""

    id: int
    model: str
    rule: str
    state: str
    fired_at: float
    resolved_at: float | None
    last_report_id: int | None
    details: dict[str, Any]
    deliveries: list[dict[str, Any]]

    @property
    def firing(self) -> bool:
        return self.state == "firing"


def report_record(row) -> ReportRecord:
    return ReportRecord(id=int(row.id), model=row.model, version=row.version, role=row.role,
                        window_start=row.window_start, window_end=row.window_end,
                        rows=int(row.rows), verdict=row.verdict, created_at=row.created_at,
                        report=row.report)


def alert_record(row) -> AlertRecord:
    return AlertRecord(id=int(row.id), model=row.model, rule=row.rule, state=row.state,
                       fired_at=row.fired_at, resolved_at=row.resolved_at,
                       last_report_id=(int(row.last_report_id) if row.last_report_id is not None
                                       else None),
                       details=dict(row.details or {}),
                       deliveries=[dict(d) for d in row.deliveries or []])


# ------------------------------------------------------------------ input
def epoch(value: Any, what: str = "time") -> float | None:
    """Epoch seconds of ``value``: a number, a datetime (naive: local time) or
    ISO-8601 text; None stays None.

    >>> epoch("1970-01-01T00:01:00+00:00"), epoch(5)
    (60.0, 5.0)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise MonitorError(f"{what} must be a time, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise MonitorError(f"{what} must be a finite time, got {value!r}")
        return float(value)
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return _dt.datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    if hasattr(value, "timestamp"):  # a pandas Timestamp
        return float(value.timestamp())
    raise MonitorError(f"{what} {str(value)[:60]!r} is not a time",
                       hint="give epoch seconds, a datetime or ISO-8601 text")


def since_epoch(since: Any, now: float | None = None) -> float | None:
    """The start time ``since`` names: a duration back from now (``"1h"``,
    ``"7d"``), or a time (epoch seconds, a datetime, ISO text).

    >>> since_epoch("1h", now=7200.0)
    3600.0
    """
    from shipyard.errors import ConfigError
    from shipyard.monitor._policy import parse_duration

    if since is None:
        return None
    if isinstance(since, str) and since.strip()[:1].isdigit() and since.strip()[-1:] in "smhd":
        try:
            seconds = parse_duration(since)
        except ValueError as exc:
            raise ConfigError(f"since: {exc}") from exc
        return (time.time() if now is None else now) - seconds
    if isinstance(since, str):
        try:
            return epoch(since, "since")
        except MonitorError as exc:
            raise ConfigError(f"since: {since[:60]!r} is neither a duration nor a time",
                              hint="write a duration back from now (90s, 10m, 1h, 7d) or an "
                                   "ISO time (2024-05-01T12:00)") from exc
    return epoch(since, "since")


def report_columns(data: Mapping[str, Any]) -> dict[str, Any]:
    """The column values of the report ``data`` (``MonitorReport.to_dict()``).

    Raises
    ------
    MonitorError
        It is not a monitor report: no valid model name, verdict or window.
    """
    from shipyard.registry import RegistryError, check_model_name

    if not isinstance(data, Mapping):
        raise MonitorError(f"a monitor report is a mapping, got {type(data).__name__}")
    try:
        model = check_model_name(data.get("model"))
    except RegistryError as exc:
        raise MonitorError(f"monitor report: {exc.message}", hint=exc.hint) from exc
    verdict = data.get("verdict")
    if verdict not in VERDICTS:
        raise MonitorError(f"monitor report of {model}: verdict {str(verdict)[:40]!r} is not "
                           f"one of {', '.join(VERDICTS)}")
    window = data.get("window") or {}
    if not isinstance(window, Mapping):
        raise MonitorError(f"monitor report of {model}: window must be a mapping (start, end, "
                           f"n), got {type(window).__name__}")
    rows = window.get("n", window.get("rows", 0)) or 0
    if isinstance(rows, bool) or not isinstance(rows, (int, float)) or rows < 0:
        raise MonitorError(f"monitor report of {model}: window.n must be a row count, got "
                           f"{rows!r}")
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise MonitorError(f"monitor report of {model}: version must be a number, got "
                           f"{version!r}")
    role = data.get("role")
    if role is not None and (not isinstance(role, str) or len(role) > 16):
        raise MonitorError(f"monitor report of {model}: role must be primary, candidate or "
                           f"shadow, got {str(role)[:40]!r}")
    return {"model": model, "version": version, "role": role,
            "window_start": epoch(window.get("start"), "window.start"),
            "window_end": epoch(window.get("end"), "window.end"), "rows": int(rows),
            "verdict": verdict}
