"""Promotion gates: rules an evaluation report must pass before a model
version may take an alias such as ``champion``.

A :class:`GatePolicy` is the ``gates:`` section of ``shipyard.yaml``::

    gates:
      metrics:
        roc_auc: {min: 0.85, use: ci_low}   # the CI's lower bound must clear it
        log_loss: {max: 0.40}
      fairness:
        max_demographic_parity_difference: 0.10
        min_demographic_parity_ratio: 0.80
      latency: {single_p99_ms: 50, batch_p99_ms: 500}
      robustness: {min_accuracy_under_noise: 0.80, noise_level: 0.1,
                   min_accuracy_under_attack: 0.5}
      champion: {metric: roc_auc, min_improvement: 0.0, test: paired_bootstrap, alpha: 0.05}

:func:`check_gates` turns a policy and a report into one :class:`GateCheck`
per rule. A figure the report lacks fails its rule ("not measured"): a gate
never passes by default.

>>> policy = GatePolicy.model_validate({"metrics": {"accuracy": {"min": 0.9}}})
>>> result = check_gates(policy, {"metrics": {"accuracy": {"value": 0.93}}})
>>> result.passed, result.checks[0].name
(True, 'metrics.accuracy.min')
>>> check_gates(policy, {"metrics": {}}).checks[0].reason
'not measured'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shipyard.errors import ConfigError, DataError

NOT_MEASURED = "not measured"
NO_CHAMPION = "no current champion"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricRule(_Rule):
    """A floor (``min``) and/or ceiling (``max``) on one report metric.

    ``use`` picks the figure compared: the point ``value`` (default), or a
    bound of its confidence interval (``ci_low`` to require that even the
    pessimistic end clears a floor).
    """

    min: float | None = None
    max: float | None = None
    use: Literal["value", "ci_low", "ci_high"] = "value"

    @model_validator(mode="after")
    def _one_bound(self) -> MetricRule:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class FairnessRule(_Rule):
    """Bounds on fairness figures; every sensitive feature must meet them
    (the worst one counts). ``features`` limits the rule to some features.

    ``use`` picks the figure compared, as for metrics: the point ``value``
    (default), or an end of its bootstrap interval (the evaluation's
    ``ci`` per gap). A gap measured on a small group is noisy (with 90
    positives in a group its TPR alone has a standard error near 0.05), so a
    bound on the point value refuses a fair model by chance as often as the
    bound is near the truth. ``ci_high`` promotes only what is shown to be
    within the bound (strict; small groups rarely pass); ``ci_low`` refuses
    only what is shown to exceed it at the report's confidence.
    """

    max_demographic_parity_difference: float | None = Field(None, ge=0)
    max_equalized_odds_difference: float | None = Field(None, ge=0)
    min_demographic_parity_ratio: float | None = Field(None, ge=0, le=1)
    features: list[str] | None = None
    use: Literal["value", "ci_low", "ci_high"] = "value"


class LatencyRule(_Rule):
    """Ceilings on the p99 latency (milliseconds) of single and batch predictions."""

    single_p99_ms: float | None = Field(None, gt=0)
    batch_p99_ms: float | None = Field(None, gt=0)


class RobustnessRule(_Rule):
    """Floors on the score under Gaussian noise at ``noise_level`` (in units
    of each column's std) and on the accuracy under the evasion attack."""

    min_accuracy_under_noise: float | None = None
    noise_level: float = Field(0.1, gt=0)
    min_accuracy_under_attack: float | None = None


class ChampionRule(_Rule):
    """The challenger must beat the current alias holder on the same rows.

    ``paired_bootstrap`` resamples the rows ``n_resamples`` times (seeded)
    and computes the improvement ``challenger − champion`` of ``metric``
    (sign flipped for metrics to minimise). It passes iff the one-sided test
    of "improvement ≤ ``min_improvement``" rejects at ``alpha``: the share
    of resampled improvements at or below ``min_improvement``, ``(1 + k) /
    (1 + n_resamples)``, is below ``alpha`` (equivalently, the lower
    ``1 − alpha`` percentile bound exceeds ``min_improvement``).

    ``mcnemar`` (classification) runs McNemar's exact test on per-row
    correctness: with ``c`` rows only the challenger gets right and ``b``
    only the champion, p = P(Binomial(b + c, ½) ≥ c). It passes iff
    ``c > b``, p < ``alpha`` and the accuracy gain ``(c − b) / n`` exceeds
    ``min_improvement``.
    """

    metric: str
    min_improvement: float = Field(0.0, ge=0)
    test: Literal["paired_bootstrap", "mcnemar"] = "paired_bootstrap"
    alpha: float = Field(0.05, gt=0, lt=1)
    n_resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 0


class BaseRule(_Rule):
    """A version derived from another (a fairness-mitigated model records its
    base in tag ``mitigation.base``) may be worse than that base by at most
    ``max_drop`` on ``metric``, measured on the same test rows. A version
    derived from nothing passes."""

    metric: str
    max_drop: float = Field(0.0, ge=0)


class GatePolicy(_Rule):
    """Every gate a model version must pass to be promoted (all optional).

    Attributes
    ----------
    metrics
        ``{metric name: MetricRule}``, on the report's ``metrics``.
    fairness, latency, robustness, champion, base
        See :class:`FairnessRule`, :class:`LatencyRule`,
        :class:`RobustnessRule`, :class:`ChampionRule`, :class:`BaseRule`.
    """

    metrics: dict[str, MetricRule] = {}
    fairness: FairnessRule | None = None
    latency: LatencyRule | None = None
    robustness: RobustnessRule | None = None
    champion: ChampionRule | None = None
    base: BaseRule | None = None


@dataclass(frozen=True)
class GateCheck:
    """One rule's verdict: ``observed`` against ``threshold``, and why.

    Attributes
    ----------
    name
        The rule's dotted name (``metrics.accuracy.min``).
    passed
        The verdict.
    observed, threshold
        The figure compared and its bound (None: not measured / no bound).
    reason
        The verdict in words, with the figures.
    rule
        The rule itself in words (``accuracy >= 0.9``); None for checks
        built without one.
    details
        Figures behind the verdict, small and JSON-ready: the point value and
        CI of a metric, each feature's fairness figure, the paired test's
        ``p_value`` and ``ci_low`` bound, McNemar's discordant counts. Not
        part of ``==``.
    """

    name: str
    passed: bool
    observed: float | None
    threshold: float | None
    reason: str
    rule: str | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "passed": self.passed,
                "observed": self.observed, "threshold": self.threshold,
                "reason": self.reason, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateCheck:
        """Rebuild a check from :meth:`to_dict` output (e.g. an audit entry's
        details); missing keys become None."""
        details = data.get("details")
        return cls(str(data.get("name", "")), data.get("passed") is True,
                   _number(data.get("observed")), _number(data.get("threshold")),
                   str(data.get("reason") or ""),
                   rule=data["rule"] if isinstance(data.get("rule"), str) else None,
                   details=dict(details) if isinstance(details, Mapping) else {})


@dataclass(frozen=True)
class GateResult:
    """Every :class:`GateCheck` of a policy; ``passed`` when all passed."""

    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: ``"3/4 gates passed; failed: metrics.f1.min (0.61 < 0.7)"``."""
        n, ok = len(self.checks), sum(c.passed for c in self.checks)
        text = f"{ok}/{n} gates passed"
        if self.failed:
            text += "; failed: " + "; ".join(f"{c.name} ({c.reason})" for c in self.failed)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GateResult:
        """Rebuild a result from :meth:`to_dict` output.

        >>> r = GateResult([GateCheck("a", False, 0.5, 0.9, "0.5 < 0.9", rule="a >= 0.9")])
        >>> GateResult.from_dict(r.to_dict()) == r
        True
        """
        checks = (data or {}).get("checks") if isinstance(data, Mapping) else None
        return cls([GateCheck.from_dict(c) for c in checks or () if isinstance(c, Mapping)])


# -------------------------------------------------------------------- checks
def check_gates(
    policy: GatePolicy,
    report: Mapping[str, Any],
    *,
    challenger_predictions: Any = None,
    champion_predictions: Any = None,
    y_true: Any = None,
    task: str | None = None,
    base_value: float | None = None,
    base_ref: str | None = None,
) -> GateResult:
    """Check ``report`` (and, for the champion rule, paired predictions)
    against ``policy``.

    Parameters
    ----------
    policy
        The gates.
    report
        An evaluation report as a dict: ``metrics`` ``{name: {value, ci_low,
        ci_high}}``, ``fairness`` ``{feature: {demographic_parity_difference,
        ...}}`` (or ``{"features": {feature: ...}}``), ``operational``
        ``{latency_ms: {single_p99, batch_p99}}`` (or ``{single_row:
        {p99_ms}, batch: {p99_ms}}``) and ``robustness`` (see
        :func:`robustness_report`).
    challenger_predictions, champion_predictions
        Both models' predictions on the same rows, in the order of
        ``y_true``: labels (values for regression), or a mapping with
        ``label`` and/or ``proba`` (probabilities, columns in ``classes``
        order, and ``classes``). ``champion_predictions=None`` means there is
        no champion yet: the rule passes.
    y_true
        The true targets of those rows.
    task
        ``binary``, ``multiclass`` or ``regression``; default the report's
        ``task``, else inferred from ``y_true``.
    base_value, base_ref
        For the base rule: the base version's ``metric`` on the same rows, and
        its ref (``None``: the challenger is derived from nothing).

    Returns
    -------
    GateResult

    Raises
    ------
    DataError
        Paired predictions are missing or do not fit ``y_true``.
    """
    if not isinstance(policy, GatePolicy):
        policy = GatePolicy.model_validate(policy)
    checks: list[GateCheck] = []
    for name, rule in policy.metrics.items():
        checks.extend(_metric_checks(name, rule, report))
    if policy.fairness is not None:
        checks.extend(_fairness_checks(policy.fairness, report))
    if policy.latency is not None:
        checks.extend(_latency_checks(policy.latency, report))
    if policy.robustness is not None:
        checks.extend(_robustness_checks(policy.robustness, report))
    if policy.champion is not None:
        checks.append(champion_check(policy.champion, challenger_predictions,
                                     champion_predictions, y_true,
                                     task=task or _get(report, "task")))
    if policy.base is not None:
        checks.append(base_check(policy.base, report, base_value, base_ref))
    return GateResult(checks)


def base_check(rule: BaseRule, report: Mapping[str, Any], base_value: float | None,
               base_ref: str | None) -> GateCheck:
    """The :class:`BaseRule` verdict: the drop from the base's ``metric``
    (sign flipped for metrics to minimise) must not exceed ``max_drop``."""
    from shipyard.train import direction

    name = f"base.{rule.metric}.max_drop"
    text = f"{rule.metric} at most {rule.max_drop:g} worse than the base version"
    if base_ref is None:
        return GateCheck(name, True, None, rule.max_drop, "not derived from another version",
                         rule=text, details={"metric": rule.metric, "base": None})
    value = _number(_get(report, "metrics", rule.metric, "value"))
    details = {"metric": rule.metric, "base": base_ref, "value": value,
               "base_value": _number(base_value)}
    if value is None or base_value is None:
        return GateCheck(name, False, None, rule.max_drop,
                         f"{NOT_MEASURED}: {rule.metric} of this version or of {base_ref}",
                         rule=text, details=details)
    drop = (base_value - value) if direction(rule.metric) == "maximize" else (value - base_value)
    passed = drop <= rule.max_drop + 1e-12
    return GateCheck(name, passed, float(drop), rule.max_drop,
                     f"{rule.metric} {value:.4g} vs {base_value:.4g} for its base {base_ref}: "
                     f"{'within' if passed else 'more than'} {rule.max_drop:g} worse",
                     rule=text, details=details)


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _bound(name: str, observed: float | None, threshold: float, kind: str, figure: str,
           details: dict[str, Any] | None = None) -> GateCheck:
    rule = f"{figure} {'>=' if kind == 'min' else '<='} {threshold:g}"
    if observed is None:
        return GateCheck(name, False, None, threshold, NOT_MEASURED, rule=rule,
                         details=details or {})
    ok = observed >= threshold if kind == "min" else observed <= threshold
    op = (">=" if ok else "<") if kind == "min" else ("<=" if ok else ">")
    return GateCheck(name, ok, observed, threshold, f"{observed:.4g} {op} {threshold:.4g}",
                     rule=rule, details=details or {})


def _metric_checks(name: str, rule: MetricRule, report: Mapping[str, Any]) -> list[GateCheck]:
    entry = _get(report, "metrics", name)
    observed = _number(entry.get(rule.use)) if isinstance(entry, Mapping) else _number(entry)
    if not isinstance(entry, Mapping) and rule.use != "value":
        observed = None
    suffix = "" if rule.use == "value" else f".{rule.use}"
    figure = name if rule.use == "value" else f"{rule.use} of {name}"
    details = ({k: _number(entry.get(k)) for k in ("value", "ci_low", "ci_high") if k in entry}
               if isinstance(entry, Mapping) else {"value": _number(entry)})
    return [_bound(f"metrics.{name}.{kind}{suffix}", observed, value, kind, figure, details)
            for kind, value in (("min", rule.min), ("max", rule.max)) if value is not None]


_FAIRNESS = (("max_demographic_parity_difference", "demographic_parity_difference", "max"),
             ("max_equalized_odds_difference", "equalized_odds_difference", "max"),
             ("min_demographic_parity_ratio", "demographic_parity_ratio", "min"))


def _fairness_checks(rule: FairnessRule, report: Mapping[str, Any]) -> list[GateCheck]:
    section = _get(report, "fairness")
    section = section if isinstance(section, Mapping) else {}
    if isinstance(section.get("features"), Mapping):  # fairness_report's own layout
        section = section["features"]
    features = rule.features if rule.features is not None else sorted(section)
    checks = []
    for attr, figure, kind in _FAIRNESS:
        threshold = getattr(rule, attr)
        if threshold is None:
            continue
        name = f"fairness.{attr}" + ("" if rule.use == "value" else f".{rule.use}")
        shown = figure if rule.use == "value" else f"{rule.use} of {figure}"
        values = {f: _number(_get(section, f, figure)) for f in features}
        intervals = {f: [_number(_get(section, f, "ci", figure, end))
                         for end in ("ci_low", "ci_high")] for f in features}
        compared = values if rule.use == "value" else {
            f: bounds[0 if rule.use == "ci_low" else 1] for f, bounds in intervals.items()}
        text = f"{shown} {'<=' if kind == 'max' else '>='} {threshold:g} for every feature"
        details: dict[str, Any] = {"values": values}
        if any(b != [None, None] for b in intervals.values()):
            details["intervals"] = intervals
        unmeasured = [f for f, v in compared.items() if v is None]
        if not compared or unmeasured:
            why = NOT_MEASURED + (f" for {', '.join(unmeasured)}" if unmeasured else "")
            if unmeasured and rule.use != "value":
                why += " (no interval: evaluate with n_bootstrap > 0)"
            checks.append(GateCheck(name, False, None, threshold, why, rule=text,
                                    details=details))
            continue
        pick = max if kind == "max" else min
        worst = pick(compared, key=compared.__getitem__)
        check = _bound(name, compared[worst], threshold, kind, shown)
        where = f"worst: {worst}" + ("" if rule.use == "value" or values[worst] is None else
                                     f", value {values[worst]:.4g} in "
                                     f"[{intervals[worst][0]:.4g}, {intervals[worst][1]:.4g}]")
        checks.append(GateCheck(name, check.passed, check.observed, threshold,
                                f"{check.reason} ({where})", rule=text,
                                details={"worst": worst, **details}))
    return checks


def _latency_checks(rule: LatencyRule, report: Mapping[str, Any]) -> list[GateCheck]:
    operational = _get(report, "operational")
    checks = []
    for key, part, threshold in (("single_p99", "single_row", rule.single_p99_ms),
                                 ("batch_p99", "batch", rule.batch_p99_ms)):
        if threshold is None:
            continue
        observed = _number(_get(operational, "latency_ms", key))
        if observed is None:  # operational_report's own layout
            observed = _number(_get(operational, part, "p99_ms"))
        checks.append(_bound(f"latency.{key}_ms", observed, threshold, "max",
                             f"{part.replace('_', '-')} p99 latency (ms)"))
    return checks


def _robustness_checks(rule: RobustnessRule, report: Mapping[str, Any]) -> list[GateCheck]:
    section = _get(report, "robustness")
    checks = []
    if rule.min_accuracy_under_noise is not None:
        observed = None
        for p in _get(section, "perturbations") or ():
            if isinstance(p, Mapping) and p.get("name") == "gaussian_noise" and \
                    _number(p.get("level")) is not None and \
                    math.isclose(float(p["level"]), rule.noise_level, rel_tol=1e-9):
                observed = _number(p.get("value"))
        check = _bound("robustness.min_accuracy_under_noise", observed,
                       rule.min_accuracy_under_noise, "min",
                       f"score under gaussian noise {rule.noise_level:g}",
                       {"noise_level": rule.noise_level})
        if observed is not None:
            check = GateCheck(check.name, check.passed, observed, check.threshold,
                              f"{check.reason} at noise level {rule.noise_level:g}",
                              rule=check.rule, details=check.details)
        checks.append(check)
    if rule.min_accuracy_under_attack is not None:
        checks.append(_bound("robustness.min_accuracy_under_attack",
                             _number(_get(section, "attack", "accuracy_under_attack")),
                             rule.min_accuracy_under_attack, "min", "accuracy under attack"))
    return checks


# ------------------------------------------------------------------ champion
def champion_check(rule: ChampionRule, challenger: Any, champion: Any, y_true: Any, *,
                   task: str | None = None) -> GateCheck:
    """The :class:`ChampionRule` verdict on paired predictions (see there)."""
    check = _champion_check(rule, challenger, champion, y_true, task=task)
    what = "accuracy" if rule.test == "mcnemar" else rule.metric
    text = (f"{what} improvement over the champion > {rule.min_improvement:g} "
            f"({rule.test.replace('_', ' ')}, p < {rule.alpha:g})")
    return replace(check, rule=text, details={"test": rule.test, "metric": what,
                                              "alpha": rule.alpha, **check.details})


def _champion_check(rule: ChampionRule, challenger: Any, champion: Any, y_true: Any, *,
                    task: str | None) -> GateCheck:
    name = f"champion.{rule.test}"
    if champion is None:
        return GateCheck(name, True, None, rule.min_improvement, NO_CHAMPION)
    if challenger is None or y_true is None:
        return GateCheck(name, False, None, rule.min_improvement,
                         NOT_MEASURED + ": no paired predictions on the test rows")
    y = np.asarray(y_true)
    if len(y) == 0:
        raise DataError("champion gate: there are no test rows to compare on")
    task = task or _infer_task(y)
    chal, champ = _as_predictions(challenger, len(y)), _as_predictions(champion, len(y))
    if rule.test == "mcnemar":
        return _mcnemar(name, rule, chal, champ, y, task)
    return _paired_bootstrap(name, rule, chal, champ, y, task)


def _infer_task(y: np.ndarray) -> str:
    if y.dtype.kind == "f" and len(np.unique(y)) > max(20, len(y) // 10):
        return "regression"
    return "binary" if len(np.unique(y)) <= 2 else "multiclass"


def _as_predictions(value: Any, n: int) -> dict[str, Any]:
    out = dict(value) if isinstance(value, Mapping) else {"label": value}
    for key in ("label", "proba"):
        if out.get(key) is not None:
            out[key] = np.asarray(out[key])
            if len(out[key]) != n:
                raise DataError(f"champion gate: {len(out[key])} predictions for {n} test rows",
                                hint="predict both models on the same test rows")
    return out


def _paired_bootstrap(name: str, rule: ChampionRule, chal: dict, champ: dict, y: np.ndarray,
                      task: str) -> GateCheck:
    from shipyard.train import metric as lookup

    try:
        spec = lookup(task, rule.metric)
    except ConfigError as exc:
        return GateCheck(name, False, None, rule.min_improvement, f"bad metric: {exc.message}")
    key = "proba" if spec.needs_proba else "label"
    if chal.get(key) is None or champ.get(key) is None:
        return GateCheck(name, False, None, rule.min_improvement,
                         f"{NOT_MEASURED}: {rule.metric} needs {key} predictions of both models")
    sign = 1.0 if spec.direction == "maximize" else -1.0
    rng = np.random.default_rng(rule.seed)
    idx = rng.integers(0, len(y), size=(rule.n_resamples, len(y)))
    per_row = _per_row_metric(rule.metric, task)
    if per_row is not None:
        a, b = per_row(y, chal[key]), per_row(y, champ[key])
        observed = sign * float(_finish(rule.metric, a.mean(), y) - _finish(rule.metric,
                                                                            b.mean(), y))
        boot = sign * (_finish_many(rule.metric, a[idx].mean(1), y[idx])
                       - _finish_many(rule.metric, b[idx].mean(1), y[idx]))
    else:
        score = _scorer(task, rule.metric, chal, champ, key)
        observed = sign * (score(chal[key], y) - score(champ[key], y))
        boot = np.array([sign * (score(chal[key][i], y[i]) - score(champ[key][i], y[i]))
                         for i in idx])
    boot = boot[np.isfinite(boot)]
    if boot.size == 0 or not math.isfinite(observed):
        return GateCheck(name, False, None, rule.min_improvement,
                         f"{NOT_MEASURED}: {rule.metric} is undefined on these rows")
    p = (1 + int(np.sum(boot <= rule.min_improvement))) / (1 + boot.size)
    low = float(np.quantile(boot, rule.alpha))
    ok = p < rule.alpha
    verdict = "better" if ok else "not shown better"
    return GateCheck(name, ok, observed, rule.min_improvement,
                     f"{rule.metric} improvement {observed:+.4g} (lower {1 - rule.alpha:.0%} "
                     f"bound {low:+.4g}), p={p:.3g} vs alpha {rule.alpha:g} for improvement > "
                     f"{rule.min_improvement:g}: {verdict}",
                     details={"p_value": p, "ci_low": low, "ci_level": 1 - rule.alpha,
                              "n_resamples": int(boot.size), "n": len(y)})


def _per_row_metric(metric: str, task: str):
    """Per-row terms whose mean gives the metric (up to :func:`_finish`), or None."""
    if metric == "accuracy":
        return lambda y, p: (p == y).astype(float)
    if task == "regression" and metric in ("mae", "rmse", "r2"):
        if metric == "mae":
            return lambda y, p: np.abs(y.astype(float) - p.astype(float))
        return lambda y, p: (y.astype(float) - p.astype(float)) ** 2
    return None


def _finish(metric: str, mean: float, y: np.ndarray) -> float:
    if metric == "rmse":
        return float(np.sqrt(mean))
    if metric == "r2":
        var = float(np.var(y.astype(float)))
        return 1.0 - mean / var if var > 0 else float("nan")
    return float(mean)


def _finish_many(metric: str, means: np.ndarray, ys: np.ndarray) -> np.ndarray:
    if metric == "rmse":
        return np.sqrt(means)
    if metric == "r2":
        var = ys.astype(float).var(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(var > 0, 1.0 - means / var, np.nan)
    return means


def _scorer(task: str, metric: str, chal: dict, champ: dict, key: str):
    from shipyard.train import score

    labels = chal.get("classes")
    if labels is None:
        labels = champ.get("classes")

    def run(pred: np.ndarray, y: np.ndarray) -> float:
        try:
            if key == "proba":
                return score(task, metric, y, y_proba=pred, labels=labels)
            return score(task, metric, y, pred, labels=labels)
        except DataError:
            return float("nan")

    return run


def _mcnemar(name: str, rule: ChampionRule, chal: dict, champ: dict, y: np.ndarray,
             task: str) -> GateCheck:
    if task == "regression":
        return GateCheck(name, False, None, rule.min_improvement,
                         "McNemar's test needs a classification task; use paired_bootstrap")
    if chal.get("label") is None or champ.get("label") is None:
        return GateCheck(name, False, None, rule.min_improvement,
                         f"{NOT_MEASURED}: McNemar's test needs predicted labels of both models")
    from scipy.stats import binomtest

    right_a, right_b = chal["label"] == y, champ["label"] == y
    c = int(np.sum(right_a & ~right_b))  # only the challenger right
    b = int(np.sum(~right_a & right_b))  # only the champion right
    gain = (c - b) / len(y)
    p = float(binomtest(c, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    ok = c > b and p < rule.alpha and gain > rule.min_improvement
    return GateCheck(name, ok, gain, rule.min_improvement,
                     f"challenger alone right on {c} rows, champion alone on {b}: accuracy "
                     f"gain {gain:+.4g}, p={p:.3g} vs alpha {rule.alpha:g}: "
                     f"{'better' if ok else 'not shown better'}",
                     details={"p_value": p, "challenger_only": c, "champion_only": b,
                              "n": len(y)})


def load_policy(data: Mapping[str, Any] | None, *, source: str = "gates") -> GatePolicy:
    """Validate a ``gates:`` mapping into a :class:`GatePolicy`.

    Raises
    ------
    ConfigError
        It is not a valid policy; the message names each bad key.
    """
    from pydantic import ValidationError

    try:
        return GatePolicy.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{source}: invalid gate policy: {problems}",
                          hint="see shipyard.evaluate.GatePolicy for the keys") from exc

