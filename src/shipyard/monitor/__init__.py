"""Monitoring: reference profiles, production windows, drift and data-quality
checks, realized and estimated performance, alerts (see docs/monitoring.md).

Names resolve lazily, so ``import shipyard.monitor`` loads no pandas.
"""

from __future__ import annotations

from shipyard.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["AlertRule", "DriftSpec", "MonitorPolicy", "QualitySpec", "WindowSpec",
                     "parse_duration"], "shipyard.monitor._policy"),
    **dict.fromkeys(["MonitorCheck", "Monitor"], "shipyard.monitor._monitor"),
    **dict.fromkeys(["AlertRecord", "ReportRecord"], "shipyard.monitor._store"),
    **dict.fromkeys(["RuleOutcome", "check_policy", "evaluate_rule", "transition"],
                    "shipyard.monitor._alerts"),
    "MonitorError": "shipyard.errors",
    **dict.fromkeys(["Reference", "reference"], "shipyard.monitor._reference"),
    **dict.fromkeys(["Chunk", "Window", "labels_for", "output_names", "window_data", "windows"],
                    "shipyard.monitor._windows"),
    **dict.fromkeys(["assess", "benjamini_hochberg", "categorical_drift", "column_drift",
                     "domain_classifier_test", "jensen_shannon", "mmd_test", "numeric_drift",
                     "pca_reconstruction_test", "population_stability", "text_drift"],
                    "shipyard.monitor._drift"),
    "quality_checks": "shipyard.monitor._quality",
    **dict.fromkeys(["CBPE", "DLE", "PERFORMANCE_TAG", "Calibration", "cbpe",
                     "performance_reference", "realized_performance", "reference_performance"],
                    "shipyard.monitor._performance"),
    **dict.fromkeys(["MonitorReport", "build_report"], "shipyard.monitor._report"),
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
