"""Slices flag clearly worse groups (not noise); fairness gaps with fairlearn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.evaluate._fairness import fairness_report, max_gap
from shipyard.evaluate._slices import slice_groups, slice_report


def _sliced(seed: int = 0):
    """Predictions right 90% of the time, but only 60% in region 'east' and
    55% on 10 rows of region 'tiny'."""
    rng = np.random.default_rng(seed)
    region = np.array(["north"] * 400 + ["south"] * 400 + ["east"] * 200 + ["tiny"] * 10)
    y = rng.integers(0, 2, len(region))
    right = rng.random(len(region)) < np.select(
        [region == "east", region == "tiny"], [0.6, 0.55], 0.9)
    pred = np.where(right, y, 1 - y)
    frame = pd.DataFrame({"region": region, "age": rng.uniform(18, 80, len(region))})
    return frame, y, pred


def test_flags_the_clearly_worse_slice_only():
    frame, y, pred = _sliced()
    overall = float((y == pred).mean())
    out = slice_report(frame, y, pred, columns=["region", "age"], task="binary",
                       metric="accuracy", overall=overall, classes=[0, 1], n_bootstrap=200)
    groups = {g["group"]: g for g in out["columns"]["region"]["groups"]}
    assert groups["east"]["flagged"] and groups["east"]["gap"] < -0.2
    assert not groups["north"]["flagged"] and not groups["south"]["flagged"]
    assert not groups["tiny"]["flagged"]  # worse, but 10 rows are too few to tell
    assert [f["group"] for f in out["flagged"] if f["column"] == "region"] == ["east"]
    assert sum(g["rows"] for g in groups.values()) == len(frame)
    assert out["columns"]["age"]["kind"] == "numeric"
    assert len(out["columns"]["age"]["groups"]) == 4


def test_noise_within_the_interval_is_not_flagged():
    frame, y, pred = _sliced()
    overall = float((y == pred).mean())
    out = slice_report(frame, y, pred, columns=["region"], task="binary", metric="accuracy",
                       overall=overall, classes=[0, 1], threshold=0.01, n_bootstrap=200)
    groups = {g["group"]: g for g in out["columns"]["region"]["groups"]}
    # north/south are above overall; only east falls clearly below it
    assert [g for g, v in groups.items() if v["flagged"]] == ["east"]


def test_regression_slices_use_a_relative_threshold_and_lower_is_better():
    rng = np.random.default_rng(0)
    g = np.array(["a"] * 300 + ["b"] * 300)
    y = rng.normal(100, 10, 600)
    pred = y + rng.normal(0, np.where(g == "b", 6, 2))
    overall = float(np.sqrt(np.mean((y - pred) ** 2)))
    out = slice_report(pd.DataFrame({"g": g}), y, pred, columns=["g"], task="regression",
                       metric="rmse", overall=overall, n_bootstrap=100)
    assert out["direction"] == "minimize" and out["relative"]
    assert [f["group"] for f in out["flagged"]] == ["b"]


def test_numeric_bins_are_ordered_and_missing_values_get_their_own_slice():
    kind, labels = slice_groups(pd.Series([5.0, -3.0, 1.0, 100.0, np.nan, 2.0, 7.0, 8.0]))
    assert kind == "numeric"
    cats = list(labels.cat.categories)
    assert cats[-1] == "(missing)" and cats[0].startswith("[-3")
    assert labels.iloc[4] == "(missing)"


def _credit(unfair: bool, n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    y = rng.integers(0, 2, n)
    if unfair:  # approvals depend on sex, not on the outcome
        pred = (rng.random(n) < np.where(sex == "male", 0.8, 0.2)).astype(int)
    else:
        pred = np.where(rng.random(n) < 0.85, y, 1 - y)
    return pd.DataFrame({"sex": sex}), y, pred


def test_an_unfair_model_shows_a_large_demographic_parity_difference():
    s, y, pred = _credit(unfair=True)
    f = fairness_report(s, y, pred, task="binary", classes=[0, 1])["features"]["sex"]
    assert f["demographic_parity_difference"] > 0.5
    assert f["demographic_parity_ratio"] < 0.4
    assert f["equalized_odds_difference"] > 0.5
    groups = {g["group"]: g for g in f["groups"]}
    assert groups["male"]["selection_rate"] == pytest.approx(
        pred[s.sex == "male"].mean())
    assert set(groups["female"]) == {"group", "count", "selection_rate", "accuracy", "tpr", "fpr"}
    assert sum(g["count"] for g in f["groups"]) == len(y)


def test_a_fair_model_shows_small_gaps():
    s, y, pred = _credit(unfair=False)
    f = fairness_report(s, y, pred, task="binary", classes=[0, 1])["features"]["sex"]
    assert f["demographic_parity_difference"] < 0.05
    assert f["equalized_odds_difference"] < 0.06
    assert f["demographic_parity_ratio"] > 0.9


def test_string_labels_and_several_sensitive_columns():
    s, y, pred = _credit(unfair=True)
    s["band"] = np.where(np.arange(len(y)) % 3 == 0, None, "x")
    labels = np.array(["deny", "approve"])
    out = fairness_report(s, labels[y], labels[pred], task="binary",
                          classes=["approve", "deny"])
    assert out["positive_label"] == "deny"
    assert {g["group"] for g in out["features"]["band"]["groups"]} == {"x", "(missing)"}
    assert max_gap(out)["demographic_parity_difference"] > 0.5


def test_regression_fairness_reports_per_group_mae_and_a_gap():
    rng = np.random.default_rng(0)
    g = rng.choice(["a", "b"], 1000)
    y = rng.normal(size=1000)
    pred = y + np.where(g == "a", 0.1, 1.0) * rng.choice([-1, 1], 1000)
    f = fairness_report(pd.DataFrame({"g": g}), y, pred, task="regression")["features"]["g"]
    maes = {r["group"]: r["mae"] for r in f["groups"]}
    assert maes["a"] == pytest.approx(0.1) and maes["b"] == pytest.approx(1.0)
    assert f["mae_difference"] == pytest.approx(0.9) and f["mae_ratio"] == pytest.approx(0.1)


def test_each_gap_interval_is_fairlearns_gap_on_the_resampled_rows():
    from fairlearn.metrics import (demographic_parity_difference, demographic_parity_ratio,
                                   equalized_odds_difference, equalized_odds_ratio)

    from shipyard.evaluate._fairness import gap_intervals
    from shipyard.evaluate._scores import bootstrap_counts

    rng = np.random.default_rng(3)
    groups = rng.choice(["a", "b", "c"], 300, p=[0.6, 0.3, 0.1])
    y = rng.integers(0, 2, 300)
    pred = np.where(rng.random(300) < np.where(groups == "a", 0.9, 0.7), y, 1 - y)
    counts = next(bootstrap_counts(300, 1, seed=5))[0].astype(int)  # the one resample
    rows = np.repeat(np.arange(300), counts)
    one = gap_intervals(groups, y, pred, n_bootstrap=1, seed=5)
    for name, fn in (("demographic_parity_difference", demographic_parity_difference),
                     ("demographic_parity_ratio", demographic_parity_ratio),
                     ("equalized_odds_difference", equalized_odds_difference),
                     ("equalized_odds_ratio", equalized_odds_ratio)):
        expected = fn(y[rows], pred[rows], sensitive_features=groups[rows])
        assert one[name]["ci_low"] == pytest.approx(expected, abs=1e-12), name
        assert one[name]["ci_high"] == pytest.approx(expected, abs=1e-12), name


def test_gap_intervals_cover_the_true_gap_and_narrow_with_more_rows():
    from shipyard.evaluate._fairness import gap_intervals

    def sample(n, seed):  # TPR 0.8 vs 0.6 (true gap 0.2), FPR 0.1 in both groups
        rng = np.random.default_rng(seed)
        g = rng.choice(["m", "f"], n)
        y = (rng.random(n) < 0.5).astype(int)
        hit = rng.random(n) < np.where(g == "m", 0.8, 0.6)
        pred = np.where(y == 1, hit, rng.random(n) < 0.1).astype(int)
        return g, y, pred

    covered, widths = 0, {}
    for seed in range(100):
        ci = gap_intervals(*sample(800, seed), n_bootstrap=200, seed=seed)
        low, high = (ci["equalized_odds_difference"][k] for k in ("ci_low", "ci_high"))
        covered += low <= 0.2 <= high
        widths.setdefault(800, []).append(high - low)
    assert covered >= 88, covered  # nominal 95 of 100
    big = gap_intervals(*sample(8000, 0), n_bootstrap=200)["equalized_odds_difference"]
    assert big["ci_high"] - big["ci_low"] < 0.5 * np.mean(widths[800])


def test_fairness_report_carries_intervals_only_when_asked():
    s, y, pred = _credit(unfair=False)
    plain = fairness_report(s, y, pred, task="binary", classes=[0, 1])
    assert "ci" not in plain["features"]["sex"] and "bootstrap" not in plain
    report = fairness_report(s, y, pred, task="binary", classes=[0, 1], n_bootstrap=100)
    f = report["features"]["sex"]
    for gap in ("demographic_parity_difference", "equalized_odds_difference",
                "demographic_parity_ratio", "equalized_odds_ratio"):
        assert f["ci"][gap]["ci_low"] <= f[gap] <= f["ci"][gap]["ci_high"], gap
    assert report["bootstrap"] == {"n": 100, "confidence": 0.95, "seed": 0,
                                   "method": "percentile"}
    assert max_gap(report).keys() == {"accuracy_difference", "demographic_parity_difference",
                                      "equalized_odds_difference"}
