"""Drift tests (docs/monitoring.md §3): pure functions on sketches and samples.

Per column, between the reference profile and a window:

numeric (:func:`numeric_drift`)
    Two-sample Kolmogorov–Smirnov statistic ``D = sup |F_ref − F_cur|``
    computed on the two KLL sketches' retained values with their weights
    (the step CDFs the sketches stand for), evaluated at the union of those
    values. Each sketch CDF is within its rank error ε of the data's
    (:attr:`~shipyard.data.ColumnSketch.rank_error`, ≈ 0.0068 at k = 400,
    0 for up to a few hundred values), so ``|D̂ − D| ≤ ε_ref + ε_cur``
    (``ks_error`` in the result). p-value: the asymptotic two-sided
    Kolmogorov distribution (``scipy.stats.kstwo``, scipy's own asymptotic
    method) at ``n_eff = n'·m'/(n'+m')``, where each side's size counts the
    sketch's own error as sampling noise (:func:`sketch_sample_size`): a
    sketch of n values stands for ``n' = 1/(1/n + 1/n_ε)`` of them, ``n_ε``
    the sample whose empirical CDF has the same 99 % error ε at the median.
    Without it the sketches' error inflates D̂ and the p-value is
    anti-conservative (16 % of no-drift 20k-vs-10k columns under 0.05,
    77 % at 100k vs 100k); with it the rate is α or below. Exact sketches
    (ε = 0) give scipy's p-value. Effects: PSI over
    the reference's deciles and the Wasserstein-1 distance ``∫|F_ref − F_cur|``
    (the same as ``∫|Q_ref − Q_cur|``), also in reference standard deviations.
categorical (:func:`categorical_drift`)
    χ² test of homogeneity on the 2 × K table of counts, categories whose
    expected count is under 5 pooled into one (no continuity correction).
    Effects: PSI and the Jensen–Shannon distance (base 2, in [0, 1]).
text (:func:`text_drift`)
    MMD on hashed character n-grams of the two samples (:func:`mmd_test`).

PSI is ``Σ (c − r)·ln(c / r)`` over bins, each share floored at
:data:`PSI_FLOOR` so an empty bin gives a large but finite value.

:func:`assess` applies Benjamini–Hochberg over every tested column (inputs and
outputs) at the policy's false-discovery rate and flags a column only when its
adjusted p-value is below it *and* an effect size is over its threshold
(PSI ≥ ``min_psi``, JS ≥ ``min_js``, Wasserstein ≥ ``min_wasserstein_std`` ×
the reference's standard deviation), so that a huge window does not alarm on
trivial differences. The dataset drifts when the share of drifted input
columns reaches ``dataset_share`` or a multivariate test flags.

Multivariate tests, on the reference sample and a seeded sample of the
window: a domain classifier (:func:`domain_classifier_test`) and PCA
reconstruction error (:func:`pca_reconstruction_test`). Each flags only when
significant at ``alpha`` *and* its effect is over a floor
(:data:`MIN_DOMAIN_AUC`, :data:`MIN_PCA_KS`), for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.data import ColumnSketch
    from shipyard.monitor._policy import DriftSpec

PSI_FLOOR = 1e-4
#: Reference quantiles bounding the PSI bins of a numeric column (deciles).
PSI_BINS = 10
#: Categories expected fewer times than this are pooled before the χ² test.
MIN_EXPECTED = 5.0
#: The domain classifier flags only from this out-of-fold ROC-AUC on.
MIN_DOMAIN_AUC = 0.55
#: The PCA test flags only from this KS distance between reconstruction errors on.
MIN_PCA_KS = 0.1
#: The text test flags only from this MMD² on.
MIN_TEXT_MMD2 = 0.0
#: Rows of each side the multivariate tests use at most.
SAMPLE_ROWS = 2_000
#: Distinct categories of a column the multivariate tests encode (others pooled).
MAX_ENCODED = 50


# ---------------------------------------------------------------- helpers
def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r = np.maximum(np.asarray(ref, dtype=np.float64), PSI_FLOOR)
    c = np.maximum(np.asarray(cur, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def population_stability(ref_shares: Sequence[float], cur_shares: Sequence[float]) -> float:
    """PSI of two share vectors over the same bins (floored at :data:`PSI_FLOOR`).

    >>> round(population_stability([0.5, 0.5], [0.25, 0.75]), 4)
    0.2747
    """
    return _psi(np.asarray(ref_shares), np.asarray(cur_shares))


def _weighted_cdf(values: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    cum = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    return cum[np.searchsorted(values, points, side="right")]


#: Effective sample size above which the KS p-value is Kolmogorov's limit.
KS_LIMIT_N = 10_000


#: z of the 99 % confidence at which datasketches states a KLL rank error.
_Z99 = 2.5758


def sketch_sample_size(n: float, rank_error: float) -> float:
    """The sample size a sketch of ``n`` values stands for in a KS test: its
    CDF is off by the data's sampling noise plus the sketch's own error, an
    independent noise of 99 % bound ``rank_error``, taken as that of an
    empirical CDF of ``n_ε = (z₉₉·0.5/ε)²`` values at the median (≈ 36,000
    at k = 400), so ``1/n' = 1/n + 1/n_ε``; ``n`` itself when ε is 0.

    >>> round(sketch_sample_size(20_000, 0.0068)), sketch_sample_size(300, 0.0)
    (12841, 300.0)
    """
    if n <= 0:
        return 0.0
    if rank_error <= 0:
        return float(n)
    return 1.0 / (1.0 / n + (rank_error / (0.5 * _Z99)) ** 2)


def ks_pvalue(statistic: float, n: float, m: float, *, error_n: float = 0.0,
              error_m: float = 0.0) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic (scipy's
    ``kstwo`` at ``en = round(n·m/(n+m))``, as ``ks_2samp(method="asymp")``);
    above :data:`KS_LIMIT_N`, Kolmogorov's limit ``kstwobign`` at
    ``D·√en``: scipy's ``kstwo`` takes up to 0.4 s there for small p-values,
    and the two differ by under 2 % of p (the limit is the larger).

    ``error_n``, ``error_m``: the rank errors of sketches the statistic was
    computed on; the sizes are then :func:`sketch_sample_size`'s."""
    from scipy.stats import kstwo, kstwobign

    n, m = sketch_sample_size(n, error_n), sketch_sample_size(m, error_m)
    if n <= 0 or m <= 0:
        return math.nan
    big, small = max(n, m), min(n, m)
    en = max(1, round(big * small / (big + small)))
    p = kstwobign.sf(statistic * math.sqrt(en)) if en > KS_LIMIT_N \
        else kstwo.sf(statistic, en)
    return float(min(1.0, max(0.0, p)))


# ---------------------------------------------------------------- per column
def numeric_drift(ref: ColumnSketch, cur: ColumnSketch) -> dict[str, Any]:
    """KS test, PSI and Wasserstein-1 distance between two numeric sketches.

    Returns
    -------
    dict
        ``test`` ("ks"), ``statistic``, ``p_value`` (at the sketches'
        effective sizes, :func:`ks_pvalue`), ``n_effective`` (the ``en``
        it used), ``ks_error`` (bound on the statistic's sketching error),
        ``psi``, ``wasserstein``,
        ``wasserstein_std`` (in reference standard deviations; None when it
        is 0), ``n_reference``, ``n_current``. Empty sides give NaN figures.

    >>> import numpy as np
    >>> from shipyard.data import ColumnSketch
    >>> a = ColumnSketch("numeric").update(np.arange(100.0))
    >>> b = ColumnSketch("numeric").update(np.arange(100.0) + 50)
    >>> r = numeric_drift(a, b)
    >>> r["statistic"], r["wasserstein"]
    (0.5, 50.0)
    """
    out: dict[str, Any] = {"test": "ks", "n_reference": ref.count, "n_current": cur.count}
    if not ref.count or not cur.count:
        return {**out, "statistic": math.nan, "p_value": math.nan, "ks_error": 0.0,
                "n_effective": 0.0,
                "psi": math.nan, "wasserstein": math.nan, "wasserstein_std": None}
    rv, rw = ref.items()
    cv, cw = cur.items()
    points = np.union1d(rv, cv)
    f_ref = _weighted_cdf(rv, rw, points)
    f_cur = _weighted_cdf(cv, cw, points)
    statistic = float(np.max(np.abs(f_ref - f_cur)))
    # Between consecutive points both CDFs are flat: the area is exact.
    wasserstein = float(np.sum(np.abs(f_ref - f_cur)[:-1] * np.diff(points)))
    edges = np.unique(np.asarray(ref.quantiles(np.arange(1, PSI_BINS) / PSI_BINS)))
    ref_bins = np.diff(np.concatenate([[0.0], _weighted_cdf(rv, rw, edges), [1.0]]))
    cur_bins = np.diff(np.concatenate([[0.0], _weighted_cdf(cv, cw, edges), [1.0]]))
    std = ref.std
    n_ref = sketch_sample_size(ref.count, ref.rank_error)
    n_cur = sketch_sample_size(cur.count, cur.rank_error)
    return {**out, "statistic": statistic,
            "p_value": ks_pvalue(statistic, ref.count, cur.count, error_n=ref.rank_error,
                                 error_m=cur.rank_error),
            "n_effective": n_ref * n_cur / (n_ref + n_cur),
            "ks_error": ref.rank_error + cur.rank_error,
            "psi": _psi(ref_bins, cur_bins), "wasserstein": wasserstein,
            "wasserstein_std": wasserstein / std if std else None}


def _aligned(ref_counts: Mapping[str, int], cur_counts: Mapping[str, int]
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    keys = sorted({*ref_counts, *cur_counts})
    return (keys, np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64),
            np.array([cur_counts.get(k, 0) for k in keys], dtype=np.float64))


def chi2_homogeneity(ref_counts: Mapping[str, int], cur_counts: Mapping[str, int]
                     ) -> tuple[float, float, int]:
    """χ² statistic, p-value and degrees of freedom of the 2 × K table, with
    categories expected under :data:`MIN_EXPECTED` times (in either row)
    pooled into one column."""
    from scipy.stats import chi2

    _, r, c = _aligned(ref_counts, cur_counts)
    table = np.vstack([r, c])
    total = table.sum()
    if total <= 0 or r.sum() <= 0 or c.sum() <= 0:
        return math.nan, math.nan, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    small = expected.min(axis=0) < MIN_EXPECTED
    if small.any():
        pooled = table[:, small].sum(axis=1, keepdims=True)
        table = np.hstack([table[:, ~small], pooled]) if small.sum() < len(small) else pooled
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, float(chi2.sf(statistic, dof)), dof


def jensen_shannon(ref_shares: Sequence[float], cur_shares: Sequence[float]) -> float:
    """Jensen–Shannon distance (base 2: 0 same, 1 disjoint).

    >>> jensen_shannon([1.0, 0.0], [0.0, 1.0])
    1.0
    """
    p = np.asarray(ref_shares, dtype=np.float64)
    q = np.asarray(cur_shares, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return float(math.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def categorical_drift(ref: ColumnSketch | Mapping[str, int],
                      cur: ColumnSketch | Mapping[str, int]) -> dict[str, Any]:
    """χ² test, PSI and Jensen–Shannon distance between two categorical
    sketches (or ``{value: count}`` mappings).

    Returns
    -------
    dict
        ``test`` ("chi2"), ``statistic``, ``p_value``, ``dof``, ``psi``,
        ``js``, ``n_reference``, ``n_current``.

    >>> r = categorical_drift({"a": 50, "b": 50}, {"a": 50, "b": 50})
    >>> r["statistic"], r["p_value"], r["psi"], r["js"]
    (0.0, 1.0, 0.0, 0.0)
    """
    ref_counts = ref.counts if hasattr(ref, "counts") else dict(ref)
    cur_counts = cur.counts if hasattr(cur, "counts") else dict(cur)
    _, r, c = _aligned(ref_counts, cur_counts)
    out: dict[str, Any] = {"test": "chi2", "n_reference": int(r.sum()),
                           "n_current": int(c.sum())}
    if r.sum() <= 0 or c.sum() <= 0:
        return {**out, "statistic": math.nan, "p_value": math.nan, "dof": 0, "psi": math.nan,
                "js": math.nan}
    statistic, p_value, dof = chi2_homogeneity(ref_counts, cur_counts)
    return {**out, "statistic": statistic, "p_value": p_value, "dof": dof,
            "psi": _psi(r / r.sum(), c / c.sum()), "js": jensen_shannon(r, c)}


def column_drift(ref: ColumnSketch, cur: ColumnSketch) -> dict[str, Any]:
    """:func:`numeric_drift` or :func:`categorical_drift` by the sketch's kind."""
    return numeric_drift(ref, cur) if ref.numeric else categorical_drift(ref, cur)


# ---------------------------------------------------------------- multiple tests
def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (as
    ``scipy.stats.false_discovery_control(ps, method="bh")``); missing or NaN
    p-values stay NaN and do not count among the tests.

    >>> [round(p, 3) for p in benjamini_hochberg([0.01, 0.04, 0.03, None])]
    [0.03, 0.04, 0.04, nan]
    """
    p = np.array([math.nan if v is None else float(v) for v in pvalues], dtype=np.float64)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not len(ok):
        return out.tolist()
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out[order] = adjusted
    return out.tolist()


def _effects(result: Mapping[str, Any], spec: DriftSpec) -> dict[str, tuple[float, float]]:
    """``{effect: (value, threshold)}`` of one column's result."""
    effects: dict[str, tuple[float, float]] = {}
    if result.get("psi") is not None and math.isfinite(result["psi"]):
        effects["psi"] = (float(result["psi"]), spec.min_psi)
    if result.get("test") == "ks":
        if result.get("wasserstein_std") is not None:
            effects["wasserstein_std"] = (float(result["wasserstein_std"]),
                                          spec.min_wasserstein_std)
    elif result.get("test") == "chi2":
        if result.get("js") is not None and math.isfinite(result["js"]):
            effects["js"] = (float(result["js"]), spec.min_js)
    elif result.get("test") == "mmd" and result.get("statistic") is not None:
        effects["mmd2"] = (float(result["statistic"]), MIN_TEXT_MMD2)
    return effects


def assess(results: Mapping[str, dict[str, Any]], spec: DriftSpec | None = None, *,
           inputs: Sequence[str] | None = None,
           multivariate: Mapping[str, Mapping[str, Any]] | None = None
           ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Adjust, judge and summarise per-column results.

    Parameters
    ----------
    results
        ``{column: result}`` of :func:`column_drift` (or a ``skipped`` entry).
    spec
        Thresholds; default :class:`~shipyard.monitor.DriftSpec` ().
    inputs
        The input columns (the dataset share counts only them); default all.
    multivariate
        ``{test: result}`` of the multivariate tests (each with ``drifted``).

    Returns
    -------
    tuple
        ``(drift, dataset_drift)``: each column's result with ``p_adjusted``,
        ``effect``, ``effect_name``, ``drifted``; and ``{"share", "drifted",
        "drifted_columns", "tested", "multivariate"}``.
    """
    from shipyard.monitor._policy import DriftSpec

    spec = spec or DriftSpec()
    names = list(results)
    adjusted = benjamini_hochberg([results[n].get("p_value") for n in names])
    drift: dict[str, dict[str, Any]] = {}
    for name, p_adj in zip(names, adjusted):
        entry = dict(results[name])
        effects = _effects(entry, spec)
        ratio = {k: (v / t if t > 0 else (math.inf if v > 0 else 0.0))
                 for k, (v, t) in effects.items()}
        best = max(ratio, key=lambda k: ratio[k]) if ratio else None
        significant = math.isfinite(p_adj) and p_adj < spec.fdr
        large = any(v >= t for v, t in effects.values())
        entry.update(p_adjusted=p_adj if math.isfinite(p_adj) else None,
                     effect=effects[best][0] if best else None, effect_name=best,
                     drifted=bool(significant and large and not entry.get("skipped")))
        drift[name] = entry
    considered = [n for n in (inputs if inputs is not None else names)
                  if n in drift and not drift[n].get("skipped")]
    drifted = [n for n in considered if drift[n]["drifted"]]
    share = len(drifted) / len(considered) if considered else 0.0
    multi = {k: dict(v) for k, v in (multivariate or {}).items()}
    flagged = any(v.get("drifted") for v in multi.values())
    return drift, {"share": share, "drifted": bool(considered and share >= spec.dataset_share)
                   or flagged, "drifted_columns": drifted, "tested": len(considered),
                   "threshold": spec.dataset_share, "multivariate": multi}


# ---------------------------------------------------------------- multivariate
def _encode(ref: pd.DataFrame, cur: pd.DataFrame, kinds: Mapping[str, str] | None, *,
            one_hot: bool) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Both frames as float matrices on the reference's terms: numeric columns
    as numbers (NaN kept), categorical ones as category codes (or one-hot)
    of the reference's most frequent values; text and datetime left out."""
    import pandas as pd

    from shipyard.data import ColumnSketch

    category_key, numeric_values = ColumnSketch.key, ColumnSketch.numbers
    kinds = dict(kinds) if kinds is not None else {
        c: ("numeric" if pd.api.types.is_numeric_dtype(ref[c]) and
            not pd.api.types.is_bool_dtype(ref[c]) else "categorical") for c in ref.columns}
    ref_parts, cur_parts, categorical = [], [], []
    for col, kind in kinds.items():
        if col not in ref.columns or col not in cur.columns or kind in ("text", "datetime"):
            continue
        if kind == "numeric":
            ref_parts.append(numeric_values(ref[col])[:, None])
            cur_parts.append(numeric_values(cur[col])[:, None])
            categorical.append(False)
            continue
        ref_keys = ref[col].map(lambda v: None if pd.isna(v) else category_key(v))
        cur_keys = cur[col].map(lambda v: None if pd.isna(v) else category_key(v))
        top = list(ref_keys.value_counts().index[:MAX_ENCODED])
        codes = {k: i for i, k in enumerate(top)}
        other = len(top)

        def code(keys: pd.Series, codes: dict = codes, other: int = other) -> np.ndarray:
            return np.array([np.nan if k is None else codes.get(k, other) for k in keys],
                            dtype=np.float64)

        r, c = code(ref_keys), code(cur_keys)
        if one_hot:
            width = other + 1
            for part, values in ((ref_parts, r), (cur_parts, c)):
                block = np.zeros((len(values), width))
                present = np.isfinite(values)
                block[np.flatnonzero(present), values[present].astype(int)] = 1.0
                part.append(block)
            categorical.extend([False] * width)
        else:
            ref_parts.append(r[:, None])
            cur_parts.append(c[:, None])
            categorical.append(True)
    if not ref_parts:
        return np.empty((len(ref), 0)), np.empty((len(cur), 0)), []
    return np.hstack(ref_parts), np.hstack(cur_parts), categorical


def _subsample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= n:
        return frame.reset_index(drop=True)
    return frame.iloc[np.sort(rng.choice(len(frame), n, replace=False))].reset_index(drop=True)


def domain_classifier_test(ref_df: pd.DataFrame, cur_df: pd.DataFrame, seed: int = 0, *,
                           kinds: Mapping[str, str] | None = None, folds: int = 5,
                           max_rows: int = SAMPLE_ROWS, alpha: float = 0.05,
                           min_auc: float = MIN_DOMAIN_AUC) -> dict[str, Any]:
    """Can a classifier tell window rows from reference rows?

    Equal numbers of rows from each side (at most ``max_rows``), a gradient
    boosted classifier (categorical columns as native categories, missing
    values kept) scored by ``folds``-fold cross-validation; the out-of-fold
    ROC-AUC is the effect and its p-value the one-sided Mann–Whitney test of
    the out-of-fold scores (the AUC's own null distribution). Flags when
    ``p < alpha`` and ``auc >= min_auc``.

    Returns
    -------
    dict
        ``test`` ("domain_classifier"), ``statistic`` (the AUC), ``p_value``,
        ``rows`` (per side), ``drifted``; or ``skipped`` with the reason.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n = min(len(ref_df), len(cur_df), max_rows)
    out: dict[str, Any] = {"test": "domain_classifier", "rows": n}
    if n < 2 * folds:
        return {**out, "skipped": f"too few rows ({n}) for {folds}-fold cross-validation",
                "drifted": False}
    ref_x, cur_x, categorical = _encode(_subsample(ref_df, n, rng), _subsample(cur_df, n, rng),
                                        kinds, one_hot=False)
    if not categorical:
        return {**out, "skipped": "no numeric or categorical column to compare",
                "drifted": False}
    x = np.vstack([ref_x, cur_x])
    y = np.r_[np.zeros(n), np.ones(n)]
    model = HistGradientBoostingClassifier(max_iter=40, learning_rate=0.1, max_leaf_nodes=15,
                                           min_samples_leaf=20, early_stopping=False,
                                           categorical_features=np.array(categorical),
                                           random_state=seed)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    # A few thousand rows: OpenMP threads cost more than they give (10x on 2 busy cores).
    with threadpool_limits(1):
        scores = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    p_value = float(mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater",
                                 method="asymptotic").pvalue)
    return {**out, "statistic": auc, "p_value": p_value, "alpha": alpha,
            "threshold": min_auc, "drifted": bool(p_value < alpha and auc >= min_auc)}


def pca_reconstruction_test(ref_df: pd.DataFrame, cur_df: pd.DataFrame, seed: int = 0, *,
                            kinds: Mapping[str, str] | None = None, variance: float = 0.9,
                            max_rows: int = SAMPLE_ROWS, alpha: float = 0.05,
                            min_statistic: float = MIN_PCA_KS) -> dict[str, Any]:
    """Does the window leave the reference's principal subspace?

    Columns standardised on the reference (missing values at its median,
    categories one-hot); PCA keeping ``variance`` of the variance, fitted on
    half of the reference sample; the squared reconstruction errors of the
    other half and of the window compared by a two-sample KS test. Flags when
    ``p < alpha`` and the KS distance ``>= min_statistic``.

    Returns
    -------
    dict
        ``test`` ("pca_reconstruction"), ``statistic`` (KS distance),
        ``p_value``, ``components``, ``reference_error``/``current_error``
        (mean squared errors), ``drifted``; or ``skipped``.
    """
    from scipy.stats import ks_2samp
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    ref_df, cur_df = _subsample(ref_df, max_rows, rng), _subsample(cur_df, max_rows, rng)
    out: dict[str, Any] = {"test": "pca_reconstruction"}
    ref_x, cur_x, _ = _encode(ref_df, cur_df, kinds, one_hot=True)
    if ref_x.shape[1] < 2 or len(ref_x) < 20 or len(cur_x) < 10:
        return {**out, "skipped": "needs two columns or more, 20 reference rows and 10 "
                                  "window rows", "drifted": False}
    median = np.nanmedian(ref_x, axis=0)
    median = np.where(np.isfinite(median), median, 0.0)
    ref_x = np.where(np.isnan(ref_x), median, ref_x)
    cur_x = np.where(np.isnan(cur_x), median, cur_x)
    mean, std = ref_x.mean(axis=0), ref_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    ref_x, cur_x = (ref_x - mean) / std, (cur_x - mean) / std
    order = rng.permutation(len(ref_x))
    fit, held = ref_x[order[: len(order) // 2]], ref_x[order[len(order) // 2:]]
    pca = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(fit)
    if pca.n_components_ >= ref_x.shape[1]:
        pca = PCA(n_components=ref_x.shape[1] - 1, svd_solver="full").fit(fit)

    def errors(x: np.ndarray) -> np.ndarray:
        return np.sum((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)

    e_ref, e_cur = errors(held), errors(cur_x)
    test = ks_2samp(e_ref, e_cur)
    return {**out, "statistic": float(test.statistic), "p_value": float(test.pvalue),
            "components": int(pca.n_components_), "reference_error": float(e_ref.mean()),
            "current_error": float(e_cur.mean()), "alpha": alpha, "threshold": min_statistic,
            "drifted": bool(test.pvalue < alpha and test.statistic >= min_statistic)}


def mmd_test(x: Any, y: Any, *, n_features: int = 256, n_permutations: int = 200,
             bandwidth: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Maximum mean discrepancy with an RBF kernel, by random Fourier
    features (linear time), with a permutation test on both samples pooled.

    MMD² is ``‖mean φ(x) − mean φ(y)‖²`` for ``φ`` the ``n_features`` random
    Fourier features of ``exp(−‖a − b‖² / (2·bandwidth²))``; the bandwidth
    defaults to the median distance between pooled points (on at most 1,000
    of them). The p-value is ``(1 + #{permuted MMD² ≥ observed}) / (1 +
    n_permutations)``, permuting the labels of the pooled rows, so it is
    valid under the null whatever the kernel.

    Parameters
    ----------
    x, y
        2-D arrays (or sparse matrices) of the two samples, same width.

    Returns
    -------
    dict
        ``test`` ("mmd"), ``statistic`` (MMD²), ``p_value``, ``bandwidth``,
        ``n_x``, ``n_y``.
    """
    from scipy import sparse
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(seed)
    if not sparse.issparse(x):
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if not sparse.issparse(y):
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    nx, ny = x.shape[0], y.shape[0]
    out: dict[str, Any] = {"test": "mmd", "n_x": nx, "n_y": ny}
    if nx < 2 or ny < 2:
        return {**out, "statistic": math.nan, "p_value": math.nan, "bandwidth": None}
    pooled = sparse.vstack([x, y]).tocsr() if sparse.issparse(x) else np.vstack([x, y])
    if bandwidth is None:
        pick = rng.choice(nx + ny, min(nx + ny, 1000), replace=False)
        dist = pairwise_distances(pooled[pick])
        upper = dist[np.triu_indices(len(pick), k=1)]
        upper = upper[upper > 0]
        bandwidth = float(np.median(upper)) if len(upper) else 1.0
    w = rng.normal(0.0, 1.0 / bandwidth, size=(pooled.shape[1], n_features))
    b = rng.uniform(0.0, 2 * math.pi, n_features)
    phi = np.sqrt(2.0 / n_features) * np.cos(pooled @ w + b)
    total = phi.sum(axis=0)

    def mmd2(sum_x: np.ndarray) -> np.ndarray:
        diff = sum_x / nx - (total - sum_x) / ny
        return np.sum(diff * diff, axis=-1)

    observed = float(mmd2(phi[:nx].sum(axis=0)))
    exceed = 0
    for lo in range(0, n_permutations, 64):
        k = min(64, n_permutations - lo)
        choose = np.zeros((k, nx + ny))
        idx = np.argsort(rng.random((k, nx + ny)), axis=1)[:, :nx]
        np.put_along_axis(choose, idx, 1.0, axis=1)
        exceed += int(np.sum(mmd2(choose @ phi) >= observed))
    return {**out, "statistic": observed, "p_value": (1 + exceed) / (1 + n_permutations),
            "bandwidth": bandwidth}


def text_drift(ref_texts: Sequence[Any], cur_texts: Sequence[Any], seed: int = 0, *,
               n_permutations: int = 200) -> dict[str, Any]:
    """Drift of a free-text column: :func:`mmd_test` on hashed character
    2–4-grams (l2-normalised) of the two samples (missing values left out)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    def present(t: Any) -> bool:
        return t is not None and not (isinstance(t, float) and math.isnan(t))

    ref = [str(t) for t in ref_texts if present(t)]
    cur = [str(t) for t in cur_texts if present(t)]
    vectorizer = HashingVectorizer(n_features=2 ** 12, analyzer="char_wb", ngram_range=(2, 4),
                                   alternate_sign=False, norm="l2")
    if len(ref) < 2 or len(cur) < 2:
        return {"test": "mmd", "statistic": math.nan, "p_value": math.nan,
                "n_reference": len(ref), "n_current": len(cur)}
    result = mmd_test(vectorizer.transform(ref), vectorizer.transform(cur),
                      n_permutations=n_permutations, seed=seed)
    return {**result, "n_reference": len(ref), "n_current": len(cur)}
