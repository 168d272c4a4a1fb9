"""How values are written on the pages: times, numbers, sizes, durations.

These are Jinja filters; they only format, they never escape (Jinja's
autoescape does that for every value a template prints).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any


def when(ts: float | None) -> str:
    """Epoch seconds as ``2026-12-03 14:05:09`` (UTC).

    >>> when(0)
    '1970-01-01 00:00:00'
    >>> when(None)
    ''
    """
    if ts is None or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return ""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def number(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits; other values as text.

    >>> number(0.123456), number(12345678.9), number(None), number(float("nan")), number(3)
    ('0.1235', '1.235e+07', '', 'NaN', '3')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.{digits}g}"
    return str(value)


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s``, ``4.2 s``.

    >>> duration(3725), duration(185), duration(4.21), duration(None)
    ('1h 02m', '3m 05s', '4.21 s', '')
    """
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return ""
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.3g} s"


def size(num: int | None) -> str:
    """Bytes as ``1.5 MiB``.

    >>> size(1536), size(10), size(None)
    ('1.5 KiB', '10 B', '')
    """
    if num is None:
        return ""
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def pretty_json(value: Any, limit: int = 200_000) -> str:
    """Indented JSON (NaN shown as null), cut at ``limit`` characters."""
    text = json.dumps(_finite(value), indent=2, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


FILTERS = {"when": when, "number": number, "duration": duration, "size": size,
           "pretty_json": pretty_json}
