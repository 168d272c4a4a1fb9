"""Evaluation: task metrics with bootstrap confidence intervals, slices,
fairness, explanations, robustness, operational figures, HTML reports and
model cards.

Importing this package is cheap: each public name is imported from its
private module on first use, so scikit-learn, fairlearn, shap and matplotlib
load only when needed.

>>> import shipyard.evaluate
>>> "evaluate_model" in dir(shipyard.evaluate)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.evaluate._explain import explain_rows, global_importance
    from shipyard.evaluate._fairness import fairness_report
    from shipyard.evaluate._operational import operational_report
    from shipyard.evaluate._report import SECTIONS, EvaluationReport, evaluate, evaluate_model
    from shipyard.evaluate._scores import bootstrap_ci, task_metrics
    from shipyard.evaluate._slices import slice_report
    from shipyard.evaluate._robustness import robustness_report
    from shipyard.evaluate._mitigation import MitigationResult, ThresholdedModel, mitigate
    from shipyard.evaluate._gates import (BaseRule, ChampionRule, FairnessRule, GateCheck, GatePolicy,
                                          GateResult, LatencyRule, MetricRule, RobustnessRule,
                                          check_gates, load_policy)
    from shipyard.evaluate._promote import (PROMOTE_ACTION, PromotionRecord, PromotionResult,
                                            promote, promotions, record_promotion)

#: Public name -> private module that defines it (resolved lazily).
_EXPORTS = {
    "REPORT_HEAD": "shipyard.evaluate._html",
    **dict.fromkeys(["SECTIONS", "EvaluationReport", "evaluate", "evaluate_model"],
                    "shipyard.evaluate._report"),
    **dict.fromkeys(["bootstrap_ci", "task_metrics"], "shipyard.evaluate._scores"),
    "slice_report": "shipyard.evaluate._slices",
    "fairness_report": "shipyard.evaluate._fairness",
    **dict.fromkeys(["explain_rows", "global_importance"], "shipyard.evaluate._explain"),
    "operational_report": "shipyard.evaluate._operational",
    "robustness_report": "shipyard.evaluate._robustness",
    **dict.fromkeys(["MitigationResult", "ThresholdedModel", "mitigate"],
                    "shipyard.evaluate._mitigation"),
    **dict.fromkeys(["BaseRule", "ChampionRule", "FairnessRule", "GateCheck", "GatePolicy", "GateResult",
                     "LatencyRule", "MetricRule", "RobustnessRule", "check_gates", "load_policy"],
                    "shipyard.evaluate._gates"),
    **dict.fromkeys(["PROMOTE_ACTION", "PromotionRecord", "PromotionResult", "promote",
                     "promotions", "record_promotion"], "shipyard.evaluate._promote"),
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
