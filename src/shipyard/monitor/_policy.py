"""The ``monitor:`` section of ``shipyard.yaml``: windows, thresholds and
alert rules (see docs/monitoring.md).

>>> policy = MonitorPolicy.model_validate({"window": {"every": "1h"},
...     "alerts": [{"name": "drift", "check": "dataset_drift", "for_windows": 2}]})
>>> policy.window.seconds, policy.alerts[0].for_windows, policy.drift.fdr
(3600.0, 2, 0.05)
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"1h"``, ``"7d"`` or a number of seconds.

    >>> parse_duration("10m"), parse_duration(30)
    (600.0, 30.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 10m, 1h, 7d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 10m, 1h or 7d")
        seconds = float(match["n"]) * _UNITS[match["unit"]]
    if not 0 < seconds <= 366 * 86400:
        raise ValueError(f"a duration must be between 0 and 366 days, got {value!r}")
    return seconds


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowSpec(_Section):
    """How production traffic is cut into windows: by time (``every``) or by
    row count (``rows``); exactly one."""

    every: str | float | None = None
    rows: int | None = Field(None, ge=50, le=10_000_000)

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one(self) -> WindowSpec:
        if self.every is None and self.rows is None:
            self.every = "1h"
        if self.every is not None and self.rows is not None:
            raise ValueError("give every (a time window) or rows (a row window), not both")
        return self

    @property
    def seconds(self) -> float | None:
        return parse_duration(self.every) if self.every is not None else None


class DriftSpec(_Section):
    """Drift tests: false-discovery rate over columns (Benjamini–Hochberg) and
    the effect sizes a column must also exceed to count as drifted."""

    fdr: float = Field(0.05, gt=0, lt=1)
    min_psi: float = Field(0.1, ge=0)
    min_js: float = Field(0.1, ge=0, le=1)
    min_wasserstein_std: float = Field(0.1, ge=0)
    dataset_share: float = Field(0.3, gt=0, le=1)
    multivariate: bool = True
    min_rows: int = Field(100, ge=10)


class QualitySpec(_Section):
    """Data-quality thresholds."""

    max_missing_increase: float = Field(0.1, ge=0, le=1)
    max_out_of_range: float = Field(0.01, ge=0, le=1)
    max_unseen_categories: float = Field(0.05, ge=0, le=1)
    max_error_rate: float = Field(0.05, ge=0, le=1)
    min_volume_ratio: float = Field(0.2, ge=0, le=1)


class AlertRule(_Section):
    """One alert: which check, its threshold (for checks with a value), how
    many consecutive bad windows fire it and good ones resolve it, and where
    it is delivered besides the log and the workspace DB."""

    name: str = Field(min_length=1, max_length=100)
    check: str = Field(min_length=1, max_length=200, description=(
        "dataset_drift | drift.<column> | quality.<check> | performance.<metric> | "
        "estimated.<metric>"))
    threshold: float | None = None
    direction: Literal["above", "below"] | None = None
    for_windows: int = Field(1, ge=1, le=100)
    resolve_after: int = Field(1, ge=1, le=100)
    webhooks: list[str] = []

    @field_validator("check")
    @classmethod
    def _check(cls, value: str) -> str:
        head = value.split(".", 1)[0]
        if head not in ("dataset_drift", "drift", "quality", "performance", "estimated"):
            raise ValueError(f"unknown check {value!r}: expected dataset_drift, "
                             "drift.<column>, quality.<check>, performance.<metric> or "
                             "estimated.<metric>")
        if head != "dataset_drift" and "." not in value:
            raise ValueError(f"{value!r} needs a name after the dot, e.g. {head}.accuracy")
        return value

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"https?://[^\s/]+", url):
                raise ValueError(f"webhook {url!r} is not an http(s) URL")
        return value


class MonitorPolicy(_Section):
    """The whole ``monitor:`` section (every key optional)."""

    window: WindowSpec = WindowSpec()
    late_arrival: str | float = "7d"
    drift: DriftSpec = DriftSpec()
    quality: QualitySpec = QualitySpec()
    alerts: list[AlertRule] = []

    @field_validator("late_arrival")
    @classmethod
    def _late(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @property
    def late_arrival_seconds(self) -> float:
        return parse_duration(self.late_arrival)
