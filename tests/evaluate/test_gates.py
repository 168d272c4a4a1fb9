"""Gates on hand-made report dicts, and the paired champion tests."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import ConfigError, DataError
from shipyard.evaluate._gates import GatePolicy, check_gates, load_policy

REPORT = {
    "task": "binary",
    "metrics": {"accuracy": {"value": 0.91, "ci_low": 0.88, "ci_high": 0.94},
                "log_loss": {"value": 0.30, "ci_low": 0.27, "ci_high": 0.33}},
    "fairness": {
        "sex": {"demographic_parity_difference": 0.04, "demographic_parity_ratio": 0.90,
                "equalized_odds_difference": 0.06, "equalized_odds_ratio": 0.8, "by_group": {}},
        "race": {"demographic_parity_difference": 0.12, "demographic_parity_ratio": 0.75,
                 "equalized_odds_difference": 0.09, "equalized_odds_ratio": 0.7,
                 "by_group": {}},
    },
    "operational": {"latency_ms": {"single_p50": 1.0, "single_p99": 4.0, "batch_p50": 20.0,
                                   "batch_p99": 40.0}},
    "robustness": {"baseline": {"metric": "accuracy", "value": 0.91},
                   "perturbations": [{"name": "gaussian_noise", "level": 0.1, "value": 0.89,
                                      "drop": 0.02},
                                     {"name": "gaussian_noise", "level": 0.5, "value": 0.70,
                                      "drop": 0.21}],
                   "attack": {"method": "hop_skip_jump", "rows": 100, "success_rate": 0.4,
                              "accuracy_under_attack": 0.55, "median_l2": 0.8,
                              "median_linf": 0.5}},
}


def one(policy: dict, report=REPORT):
    result = check_gates(GatePolicy.model_validate(policy), report)
    assert len(result.checks) == 1
    return result.checks[0]


@pytest.mark.parametrize("rule, passed, observed", [
    ({"accuracy": {"min": 0.9}}, True, 0.91),
    ({"accuracy": {"min": 0.92}}, False, 0.91),
    ({"accuracy": {"min": 0.9, "use": "ci_low"}}, False, 0.88),
    ({"accuracy": {"min": 0.85, "use": "ci_low"}}, True, 0.88),
    ({"log_loss": {"max": 0.35}}, True, 0.30),
    ({"log_loss": {"max": 0.35, "use": "ci_high"}}, True, 0.33),
    ({"log_loss": {"max": 0.25}}, False, 0.30),
])
def test_metric_floors_and_ceilings(rule, passed, observed):
    check = one({"metrics": rule})
    assert (check.passed, check.observed) == (passed, observed)


def test_metric_with_both_bounds_gives_two_checks():
    result = check_gates(GatePolicy.model_validate(
        {"metrics": {"accuracy": {"min": 0.9, "max": 0.9}}}), REPORT)
    assert [(c.name, c.passed) for c in result.checks] == [
        ("metrics.accuracy.min", True), ("metrics.accuracy.max", False)]
    assert not result.passed and result.failed[0].name == "metrics.accuracy.max"


@pytest.mark.parametrize("policy", [
    {"metrics": {"f1": {"min": 0.1}}},
    {"fairness": {"max_equalized_odds_difference": 0.5}},
    {"latency": {"single_p99_ms": 1000}},
    {"robustness": {"min_accuracy_under_noise": 0.0}},
    {"robustness": {"min_accuracy_under_attack": 0.0}},
])
def test_a_figure_missing_from_the_report_fails_never_passes(policy):
    check = one(policy, report={"metrics": {}})
    assert not check.passed and check.reason.startswith("not measured")


def test_nan_counts_as_not_measured():
    check = one({"metrics": {"accuracy": {"min": 0.1}}},
                report={"metrics": {"accuracy": {"value": float("nan")}}})
    assert not check.passed and check.reason == "not measured"


def test_fairness_worst_feature_counts():
    dp = one({"fairness": {"max_demographic_parity_difference": 0.10}})
    assert not dp.passed and dp.observed == 0.12 and "race" in dp.reason
    assert one({"fairness": {"max_demographic_parity_difference": 0.15}}).passed
    ratio = one({"fairness": {"min_demographic_parity_ratio": 0.8}})
    assert not ratio.passed and ratio.observed == 0.75
    only_sex = one({"fairness": {"min_demographic_parity_ratio": 0.8, "features": ["sex"]}})
    assert only_sex.passed and only_sex.observed == 0.9
    eo = one({"fairness": {"max_equalized_odds_difference": 0.08}})
    assert not eo.passed and eo.observed == 0.09
    absent = one({"fairness": {"max_equalized_odds_difference": 0.5, "features": ["age"]}})
    assert not absent.passed and absent.reason == "not measured for age"


def test_latency_ceilings():
    result = check_gates(GatePolicy.model_validate(
        {"latency": {"single_p99_ms": 5, "batch_p99_ms": 30}}), REPORT)
    assert [(c.name, c.passed, c.observed) for c in result.checks] == [
        ("latency.single_p99_ms", True, 4.0), ("latency.batch_p99_ms", False, 40.0)]


def test_the_layout_of_fairness_and_operational_reports_is_read_too():
    report = {"fairness": {"positive_label": 1, "features": REPORT["fairness"]},
              "operational": {"single_row": {"p50_ms": 1.0, "p99_ms": 4.0},
                              "batch": {"p50_ms": 20.0, "p99_ms": 40.0}}}
    result = check_gates(GatePolicy.model_validate(
        {"fairness": {"max_demographic_parity_difference": 0.10},
         "latency": {"single_p99_ms": 5, "batch_p99_ms": 30}}), report)
    assert [(c.name, c.passed, c.observed) for c in result.checks] == [
        ("fairness.max_demographic_parity_difference", False, 0.12),
        ("latency.single_p99_ms", True, 4.0), ("latency.batch_p99_ms", False, 40.0)]


def test_robustness_floors_pick_the_noise_level():
    assert one({"robustness": {"min_accuracy_under_noise": 0.85}}).passed  # level 0.1
    at_half = one({"robustness": {"min_accuracy_under_noise": 0.85, "noise_level": 0.5}})
    assert not at_half.passed and at_half.observed == 0.70
    assert not one({"robustness": {"min_accuracy_under_noise": 0.5, "noise_level": 0.25}}).passed
    assert one({"robustness": {"min_accuracy_under_attack": 0.5}}).passed
    assert not one({"robustness": {"min_accuracy_under_attack": 0.6}}).passed
    no_attack = {**REPORT, "robustness": {**REPORT["robustness"], "attack": None}}
    assert one({"robustness": {"min_accuracy_under_attack": 0.1}}, no_attack).reason == \
        "not measured"


def test_policy_validation_errors_are_clear():
    with pytest.raises(ConfigError, match="metrics.accuracy: Value error, give min, max"):
        load_policy({"metrics": {"accuracy": {}}})
    with pytest.raises(ConfigError, match="champion.test"):
        load_policy({"champion": {"metric": "accuracy", "test": "t-test"}})
    with pytest.raises(ConfigError, match="latency.p99"):
        load_policy({"latency": {"p99": 3}})
    assert load_policy(None) == GatePolicy()


# ------------------------------------------------------------------ champion
def _labels(seed=0, n=400, champ_acc=0.80, chal_acc=0.80):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    champ = np.where(rng.random(n) < champ_acc, y, 1 - y)
    chal = np.where(rng.random(n) < chal_acc, y, 1 - y)
    return y, chal, champ


def _champion(rule, chal, champ, y, task="binary"):
    policy = GatePolicy.model_validate({"champion": rule})
    return check_gates(policy, {"task": task}, challenger_predictions=chal,
                       champion_predictions=champ, y_true=y).checks[0]


@pytest.mark.parametrize("test", ["paired_bootstrap", "mcnemar"])
def test_clearly_better_challenger_passes(test):
    y, chal, champ = _labels(chal_acc=0.92)
    check = _champion({"metric": "accuracy", "test": test}, chal, champ, y)
    assert check.passed and check.observed > 0.05, check.reason


@pytest.mark.parametrize("test", ["paired_bootstrap", "mcnemar"])
def test_equal_and_identical_challengers_fail(test):
    y, chal, champ = _labels(seed=1)
    assert not _champion({"metric": "accuracy", "test": test}, chal, champ, y).passed
    same = _champion({"metric": "accuracy", "test": test}, champ, champ, y)
    assert not same.passed and same.observed == 0.0


@pytest.mark.parametrize("test", ["paired_bootstrap", "mcnemar"])
def test_worse_challenger_fails(test):
    y, chal, champ = _labels(champ_acc=0.9, chal_acc=0.75)
    check = _champion({"metric": "accuracy", "test": test}, chal, champ, y)
    assert not check.passed and check.observed < 0


def test_min_improvement_raises_the_bar():
    y, chal, champ = _labels(chal_acc=0.86)  # about +0.06
    assert _champion({"metric": "accuracy", "min_improvement": 0.0}, chal, champ, y).passed
    assert not _champion({"metric": "accuracy", "min_improvement": 0.08}, chal, champ, y).passed
    assert not _champion({"metric": "accuracy", "test": "mcnemar", "min_improvement": 0.2},
                         chal, champ, y).passed


def test_bootstrap_is_seeded():
    y, chal, champ = _labels(chal_acc=0.83)
    a = _champion({"metric": "accuracy", "seed": 5}, chal, champ, y)
    b = _champion({"metric": "accuracy", "seed": 5}, chal, champ, y)
    assert a == b


def test_minimised_metrics_and_probabilities():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = np.clip(y * 0.8 + 0.1 + rng.normal(0, 0.05, 500), 0.01, 0.99)
    bad = np.clip(0.5 + rng.normal(0, 0.2, 500), 0.01, 0.99)
    for metric in ("log_loss", "roc_auc"):
        assert _champion({"metric": metric, "n_resamples": 200}, {"proba": good},
                         {"proba": bad}, y).passed
        assert not _champion({"metric": metric, "n_resamples": 200}, {"proba": bad},
                             {"proba": good}, y).passed
    missing = _champion({"metric": "roc_auc"}, {"label": y}, {"label": y}, y)
    assert not missing.passed and "needs proba predictions" in missing.reason


def test_regression_champion_on_rmse_and_r2():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300) * 5
    close, far = y + rng.normal(0, 1, 300), y + rng.normal(0, 3, 300)
    for metric in ("rmse", "mae", "r2"):
        assert _champion({"metric": metric}, close, far, y, task="regression").passed
        assert not _champion({"metric": metric}, far, close, y, task="regression").passed
    assert not _champion({"metric": "accuracy", "test": "mcnemar"}, close, far, y,
                         task="regression").passed


def test_no_champion_passes_and_missing_predictions_fail():
    policy = GatePolicy.model_validate({"champion": {"metric": "accuracy"}})
    check = check_gates(policy, {}).checks[0]
    assert check.passed and check.reason == "no current champion"
    y, chal, champ = _labels()
    check = check_gates(policy, {}, champion_predictions=champ, y_true=y).checks[0]
    assert not check.passed and check.reason.startswith("not measured")
    with pytest.raises(DataError, match="10 predictions for 400 test rows"):
        check_gates(policy, {}, challenger_predictions=chal[:10], champion_predictions=champ,
                    y_true=y)


def test_summary_names_failed_gates():
    result = check_gates(GatePolicy.model_validate(
        {"metrics": {"accuracy": {"min": 0.95}}, "latency": {"single_p99_ms": 5}}), REPORT)
    assert result.summary() == ("1/2 gates passed; failed: metrics.accuracy.min "
                                "(0.91 < 0.95)")
    assert result.to_dict()["passed"] is False


def test_base_rule_bounds_the_drop_from_the_version_it_was_derived_from():
    """Issue 9: a mitigated model must be no worse than its base by more than
    max_drop; minimised metrics count the other way; underived versions pass."""
    policy = GatePolicy.model_validate({"base": {"metric": "roc_auc", "max_drop": 0.01}})
    report = {"metrics": {"roc_auc": {"value": 0.915}, "log_loss": {"value": 0.40}}}
    ok = check_gates(policy, report, base_value=0.92, base_ref="m@1").checks[0]
    assert ok.passed and ok.name == "base.roc_auc.max_drop" and ok.observed == pytest.approx(0.005)
    bad = check_gates(policy, report, base_value=0.93, base_ref="m@1").checks[0]
    assert not bad.passed and "more than 0.01 worse" in bad.reason and "m@1" in bad.reason
    underived = check_gates(policy, report).checks[0]
    assert underived.passed and underived.reason == "not derived from another version"
    missing = check_gates(policy, {"metrics": {}}, base_value=0.9, base_ref="m@1").checks[0]
    assert not missing.passed
    minimised = GatePolicy.model_validate({"base": {"metric": "log_loss", "max_drop": 0.05}})
    assert check_gates(minimised, report, base_value=0.38, base_ref="m@1").passed
    assert not check_gates(minimised, report, base_value=0.30, base_ref="m@1").passed


def test_a_fairness_bound_can_read_either_end_of_the_gaps_interval():
    report = {"fairness": {
        "sex": {"equalized_odds_difference": 0.12,
                "ci": {"equalized_odds_difference": {"ci_low": 0.04, "ci_high": 0.21}}},
        "race": {"equalized_odds_difference": 0.08,
                 "ci": {"equalized_odds_difference": {"ci_low": 0.07, "ci_high": 0.09}}}}}
    value = one({"fairness": {"max_equalized_odds_difference": 0.10}}, report)
    assert not value.passed and value.observed == 0.12 and "sex" in value.reason
    low = one({"fairness": {"max_equalized_odds_difference": 0.10, "use": "ci_low"}}, report)
    assert low.name == "fairness.max_equalized_odds_difference.ci_low"
    assert low.passed and low.observed == 0.07
    assert low.reason == "0.07 <= 0.1 (worst: race, value 0.08 in [0.07, 0.09])"
    assert low.rule == "ci_low of equalized_odds_difference <= 0.1 for every feature"
    assert low.details["intervals"]["sex"] == [0.04, 0.21]
    high = one({"fairness": {"max_equalized_odds_difference": 0.10, "use": "ci_high"}}, report)
    assert not high.passed and high.observed == 0.21
    bare = one({"fairness": {"max_equalized_odds_difference": 0.10, "use": "ci_low"}})
    assert not bare.passed and "evaluate with n_bootstrap > 0" in bare.reason
    with pytest.raises(ValueError):
        GatePolicy.model_validate({"fairness": {"max_equalized_odds_difference": 0.1,
                                                "use": "median"}})
