"""Drift tests computed from sketches agree with scipy/numpy on the raw data
(within the documented KLL error), do not alarm without drift, and detect
real shifts."""

from __future__ import annotations

import datasketches  # noqa: F401  (a dev dependency: fail loudly if missing)
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shipyard.data import ColumnSketch, FrameSketch
from shipyard.monitor import (
    DriftSpec,
    assess,
    benjamini_hochberg,
    categorical_drift,
    column_drift,
    domain_classifier_test,
    mmd_test,
    numeric_drift,
    pca_reconstruction_test,
    text_drift,
)


def sketch(values) -> ColumnSketch:
    return ColumnSketch("numeric").update(np.asarray(values, dtype=np.float64))


def raw_psi(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray) -> float:
    """PSI of the raw data on the same bins: (-inf, e1], (e1, e2], ..., (e9, inf)."""
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1)
    r = np.maximum(r / r.sum(), 1e-4)
    c = np.maximum(c / c.sum(), 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.mark.parametrize("n, m, shift, scale", [
    (300, 200, 0.0, 1.0),          # sketches still exact
    (200_000, 50_000, 0.0, 1.0),   # estimation mode, no drift
    (200_000, 50_000, 0.03, 1.0),  # a small shift, significant at this size
    (100_000, 5_000, 0.3, 1.3),
])
def test_ks_psi_wasserstein_match_the_raw_data(n, m, shift, scale):
    rng = np.random.default_rng(n + m)
    ref = rng.normal(0, 1, n)
    cur = rng.normal(shift, scale, m)
    got = numeric_drift(sketch(ref), sketch(cur))
    want = stats.ks_2samp(ref, cur, method="asymp")
    bound = got["ks_error"]
    if n <= 400:
        assert bound == 0.0
    assert abs(got["statistic"] - want.statistic) <= bound + 1e-12
    # The p-value is the asymptotic one of the sketched statistic at the
    # sketches' effective sizes (each sketch's error counted as the sampling
    # noise of n_eps = (2.5758 * 0.5 / eps)^2 values): bracketed by those of
    # the exact statistic moved by the bound, at that size.
    def effective(size, eps):
        return size if eps == 0 else 1 / (1 / size + (eps / (0.5 * 2.5758)) ** 2)

    a, b = sketch(ref), sketch(cur)
    n_eff, m_eff = effective(n, a.rank_error), effective(m, b.rank_error)
    en = n_eff * m_eff / (n_eff + m_eff)
    assert got["n_effective"] == pytest.approx(en)
    if bound > 0:
        assert en < n * m / (n + m)
    high = stats.kstwo.sf(max(want.statistic - bound, 0), round(en))
    low = stats.kstwo.sf(want.statistic + bound, round(en))
    # kstwobign (used above en 10,000) is at most 2 % of p above kstwo
    assert low - 1e-12 <= got["p_value"] <= high * 1.02 + 1e-12
    if bound == 0.0:
        assert got["p_value"] == pytest.approx(want.pvalue, rel=1e-9)
    w = stats.wasserstein_distance(ref, cur)
    assert abs(got["wasserstein"] - w) <= max(bound, 1e-12) * (max(ref.max(), cur.max())
                                                                - min(ref.min(), cur.min()))
    # KLL compaction is randomised (unseedable): the sketch's W may differ by ~0.01-0.015
    # of a standard deviation, well inside the bound above
    assert got["wasserstein"] == pytest.approx(w, rel=0.05, abs=0.02 * ref.std())
    assert got["wasserstein_std"] == pytest.approx(got["wasserstein"] / ref.std(ddof=1))
    edges = np.unique(sketch(ref).quantiles(np.arange(1, 10) / 10))
    assert got["psi"] == pytest.approx(raw_psi(ref, cur, edges), abs=0.01)


def test_ks_on_whole_numbers_matches_scipy_ties_included():
    rng = np.random.default_rng(7)
    ref = rng.integers(18, 90, 150_000).astype(float)
    cur = rng.integers(20, 95, 40_000).astype(float)
    got = numeric_drift(sketch(ref), sketch(cur))
    want = stats.ks_2samp(ref, cur, method="asymp")
    assert abs(got["statistic"] - want.statistic) <= got["ks_error"]


def test_chi2_psi_js_match_scipy():
    ref = {"a": 500, "b": 300, "c": 200}
    cur = {"a": 40, "b": 40, "c": 20, "d": 10}
    got = categorical_drift(ref, cur)
    table = np.array([[500, 300, 200, 0], [40, 40, 20, 10]])
    # 'd' is expected 10·110/1110 < 5 times in the window row: pooled with nothing
    # else of that size, it stays one pooled column.
    want = stats.chi2_contingency(table, correction=False)
    assert got["statistic"] == pytest.approx(want.statistic)
    assert got["p_value"] == pytest.approx(want.pvalue)
    assert got["dof"] == 3
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    assert got["js"] == pytest.approx(jensenshannon(p, q, base=2))
    pp, qq = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    assert got["psi"] == pytest.approx(np.sum((qq - pp) * np.log(qq / pp)))


def test_chi2_pools_rare_categories_before_testing():
    ref = {"a": 600, "b": 390, "x": 3, "y": 2}
    cur = {"a": 50, "b": 48, "z": 2}
    got = categorical_drift(ref, cur)
    pooled = np.array([[600, 390, 5], [50, 48, 2]])  # x, y, z expected < 5: one column
    want = stats.chi2_contingency(pooled, correction=False)
    assert got["statistic"] == pytest.approx(want.statistic)
    assert got["p_value"] == pytest.approx(want.pvalue)


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(0)
    for size in (1, 5, 40):
        p = np.concatenate([rng.random(size), rng.random(size) * 0.01, [0.5, 0.5]])
        assert np.allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"))
    got = benjamini_hochberg([0.01, None, float("nan"), 0.04])
    want = stats.false_discovery_control([0.01, 0.04], method="bh")
    assert np.allclose([got[0], got[3]], want) and np.isnan(got[1]) and np.isnan(got[2])


# ------------------------------------------------------------ whole tables
COLUMNS = 20


def table(n: int, rng: np.random.Generator, shift: dict[str, float] | None = None
          ) -> pd.DataFrame:
    """15 numeric columns of several shapes and 5 categorical ones."""
    shift = shift or {}
    out = {}
    for i in range(15):
        name = f"x{i}"
        s = shift.get(name, 0.0)
        if i % 3 == 0:
            out[name] = rng.normal(s, 1, n)
        elif i % 3 == 1:
            out[name] = rng.lognormal(s, 0.5, n)
        else:
            out[name] = rng.integers(0, 50, n) + np.round(s * 15)
    for i in range(5):
        name = f"c{i}"
        p = np.array([0.5, 0.25, 0.15, 0.1])
        if shift.get(name):
            p = np.array([0.25, 0.25, 0.25, 0.25])
        out[name] = rng.choice(["a", "b", "c", "d"], n, p=p)
    return pd.DataFrame(out)


KINDS = {**{f"x{i}": "numeric" for i in range(15)}, **{f"c{i}": "categorical" for i in range(5)}}


def check(ref: pd.DataFrame, cur: pd.DataFrame, seed: int, *, multivariate: bool = True):
    a, b = FrameSketch.from_frame(ref, KINDS), FrameSketch.from_frame(cur, KINDS)
    results = {c: column_drift(a.columns[c], b.columns[c]) for c in KINDS}
    multi = {}
    if multivariate:
        multi = {"domain_classifier": domain_classifier_test(ref.sample(2000, random_state=seed),
                                                             cur, seed, kinds=KINDS,
                                                             alpha=0.025),
                 "pca_reconstruction": pca_reconstruction_test(ref.sample(2000, random_state=seed),
                                                               cur, seed, kinds=KINDS,
                                                               alpha=0.025)}
    return assess(results, DriftSpec(), multivariate=multi)


def test_no_false_alarm_without_drift():
    """20 columns, the same distributions: the dataset verdict is 'no drift'
    in at least 19 of 20 seeded repetitions, and per column both the
    BH-significant and the drifted rates stay under the FDR level."""
    dataset_alarms, significant, drifted = 0, 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        drift, dataset = check(table(20_000, rng), table(1_000, rng), seed)
        dataset_alarms += dataset["drifted"]
        significant += sum(d["p_adjusted"] < 0.05 for d in drift.values())
        drifted += sum(d["drifted"] for d in drift.values())
    assert dataset_alarms <= 1
    assert significant / (20 * COLUMNS) <= 0.05
    assert drifted / (20 * COLUMNS) <= 0.05


def test_shifted_columns_are_found_and_only_they():
    rng = np.random.default_rng(42)
    moved = {"x0": 0.5, "x1": 0.4, "x2": 1.0, "c0": 1}
    drift, dataset = check(table(20_000, rng), table(2_000, rng, moved), 0, multivariate=False)
    assert {c for c, d in drift.items() if d["drifted"]} == set(moved)
    assert dataset["share"] == pytest.approx(4 / 20) and not dataset["drifted"]
    many = {f"x{i}": 0.5 for i in range(8)}
    drift, dataset = check(table(20_000, rng), table(2_000, rng, many), 0, multivariate=False)
    assert dataset["drifted"] and dataset["share"] >= 0.3


def test_a_trivial_shift_in_a_huge_window_is_significant_but_not_drift():
    # 0.06 sd: far under the 0.1 sd floor, yet significant; KS on k = 400
    # sketches resolves D down to ~0.015 whatever the sizes (n_effective caps
    # near 18,000), so a 0.02 sd shift (D ~ 0.008) no longer is
    rng = np.random.default_rng(3)
    ref, cur = sketch(rng.normal(0, 1, 500_000)), sketch(rng.normal(0.06, 1, 500_000))
    drift, _ = assess({"x": numeric_drift(ref, cur)})
    assert drift["x"]["p_adjusted"] < 1e-6
    assert drift["x"]["effect"] < 0.1 and not drift["x"]["drifted"]


NULL_SHAPES = {
    "normal": lambda rng, n: rng.normal(0, 1, n),
    "lognormal": lambda rng, n: rng.lognormal(0, 0.5, n),
    "uniform": lambda rng, n: rng.uniform(-3, 7, n),
    "integers": lambda rng, n: rng.integers(0, 50, n).astype(float),
}


def test_sketched_ks_p_values_are_calibrated_without_drift():
    """Same distribution on both sides, 20k reference vs 10k window rows
    (both sketches compacted): the share of raw per-column p-values under
    α = 0.05 is not above α (one-sided binomial test at 0.001, i.e. within
    ~0.03 of it over 320 columns). The uncorrected p-value (the sizes taken
    as exact) fails the same check, so the check has teeth."""
    alpha, hits, uncorrected = 0.05, 0, 0
    trials = 0
    for seed in range(80):
        rng = np.random.default_rng(10_000 + seed)
        for draw in NULL_SHAPES.values():
            got = numeric_drift(sketch(draw(rng, 20_000)), sketch(draw(rng, 10_000)))
            hits += got["p_value"] < alpha
            naive = stats.kstwo.sf(got["statistic"], round(20_000 * 10_000 / 30_000))
            uncorrected += naive < alpha
            trials += 1
    assert stats.binomtest(hits, trials, alpha, alternative="greater").pvalue > 0.001
    assert stats.binomtest(uncorrected, trials, alpha, alternative="greater").pvalue < 0.001


def test_sketched_ks_keeps_its_power_on_a_stated_shift():
    """A 0.1 sd mean shift of a normal column (20k vs 10k rows; exact KS
    power ≈ 1): the sketched test finds it at α = 0.05 in ≥ 95 % of runs;
    a 0.15 sd one in all."""
    found = {0.1: 0, 0.15: 0}
    for seed in range(40):
        rng = np.random.default_rng(20_000 + seed)
        ref = sketch(rng.normal(0, 1, 20_000))
        for shift in found:
            found[shift] += numeric_drift(ref, sketch(rng.normal(shift, 1, 10_000)))[
                "p_value"] < 0.05
    assert found[0.1] >= 38 and found[0.15] == 40


def test_a_correlation_change_is_caught_only_by_the_multivariate_tests():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4_000, 1))
    ref = pd.DataFrame(np.hstack([z + 0.2 * rng.normal(size=(4_000, 1)) for _ in range(4)]),
                       columns=list("abcd"))
    cur = pd.DataFrame(rng.normal(size=(2_000, 4)) * ref.std().to_numpy() + ref.mean().to_numpy(),
                       columns=list("abcd"))
    kinds = dict.fromkeys("abcd", "numeric")
    a, b = FrameSketch.from_frame(ref, kinds), FrameSketch.from_frame(cur, kinds)
    drift, _ = assess({c: column_drift(a.columns[c], b.columns[c]) for c in kinds})
    assert not any(d["drifted"] for d in drift.values())
    assert pca_reconstruction_test(ref, cur, 0)["drifted"]
    assert domain_classifier_test(ref, cur, 0)["drifted"]
    same = pd.DataFrame(np.hstack([z[:2000] + 0.2 * rng.normal(size=(2_000, 1))
                                   for _ in range(4)]), columns=list("abcd"))
    assert not pca_reconstruction_test(ref, same, 0)["drifted"]
    assert not domain_classifier_test(ref, same, 0)["drifted"]


def test_mmd_permutation_test_is_calibrated_under_the_null():
    """p-values of the pooled permutation test are uniform without drift,
    also for samples of different sizes."""
    pvalues = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        pvalues.append(mmd_test(rng.normal(size=(40, 4)), rng.normal(size=(25, 4)),
                                n_features=64, n_permutations=99, seed=seed)["p_value"])
    pvalues = np.array(pvalues)
    rejections = int(np.sum(pvalues <= 0.05))
    assert stats.binomtest(rejections, len(pvalues), 0.05).pvalue > 0.001
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001


def test_mmd_detects_a_small_mean_shift_in_embeddings():
    detected = 0
    for seed in range(10):
        rng = np.random.default_rng(1000 + seed)
        x = rng.normal(size=(500, 32))
        y = rng.normal(size=(500, 32)) + 0.1  # 0.1 sd per dimension
        detected += mmd_test(x, y, seed=seed)["p_value"] < 0.05
    assert detected >= 9


def test_text_drift_on_hashed_ngrams():
    rng = np.random.default_rng(0)
    words = ["refund", "late", "delivery", "broken", "thanks", "great", "price", "order"]
    other = ["password", "login", "account", "locked", "reset", "email", "code", "error"]

    def texts(vocabulary, n):
        return [" ".join(rng.choice(vocabulary, 6)) for _ in range(n)]

    null = [text_drift(texts(words, 300), texts(words, 200), seed=s)["p_value"]
            for s in range(20)]
    assert sum(p <= 0.05 for p in null) <= 3
    assert text_drift(texts(words, 300), texts(words[:4] + other[:4], 200),
                      seed=1)["p_value"] < 0.01
