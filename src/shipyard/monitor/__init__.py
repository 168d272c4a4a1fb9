"""Monitoring: reference profiles, production windows, drift and data-quality
checks, realized and estimated performance, alerts (see docs/monitoring.md).

Names resolve lazily, so ``import shipyard.monitor`` loads no pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    **dict.fromkeys(["AlertRule", "DriftSpec", "MonitorPolicy", "QualitySpec", "WindowSpec",
                     "parse_duration"], "shipyard.monitor._policy"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'shipyard.monitor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
