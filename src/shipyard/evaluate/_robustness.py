"""Robustness: how a model's score holds up under noise, missing values,
out-of-range inputs and a black-box evasion attack.

The attack is a decision-based HopSkipJump-style search (Chen, Jordan and
Wainwright, 2020) written in numpy. It needs only predicted labels, so it
works on any model, and it moves the *numeric* columns of the raw frame in
standardized units (``(x - mean) / std`` of the evaluated sample, ``ddof=0``)
while categorical columns stay fixed. Every row is attacked at once, so each
step is one batched ``predict`` call, and a fixed query budget bounds the time.

>>> import numpy as np, pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"a": np.linspace(-1, 1, 40), "b": np.linspace(1, -1, 40) ** 2})
>>> y = (X["a"] > 0).astype(int)
>>> rep = robustness_report(LogisticRegression().fit(X, y), X, y, task="binary")
>>> rep["baseline"]["metric"], rep["attack"]["method"]
('accuracy', 'hop_skip_jump')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import ConfigError, DataError

NOISE_LEVELS = (0.05, 0.1, 0.25, 0.5)
MISSING_FRACTIONS = (0.1, 0.25, 0.5)
OUT_OF_RANGE_FRACTIONS = (0.1, 0.25)
UNSEEN_CATEGORY = "__shipyard_unseen__"
#: Attack budget: an L2 perturbation up to this fraction of the median row norm
#: (standardized units) counts as an evasion for ``accuracy_under_attack``.
ATTACK_BUDGET = 0.5
CLASSIFICATION = ("binary", "multiclass", "classification")


def robustness_report(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    task: str,
    signature: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_rows: int = 500,
    attack_rows: int = 100,
    attack_iterations: int = 8,
    attack_directions: int = 40,
) -> dict[str, Any]:
    """Score ``model`` on perturbed copies of a seeded sample of ``X``.

    Parameters
    ----------
    model
        Anything with ``predict`` taking a DataFrame like ``X``.
    X, y
        Evaluation rows (features only) and their true targets.
    task
        ``binary``, ``multiclass`` (metric: accuracy) or ``regression`` (R²).
    signature
        The model version's signature; its ``inputs`` name the feature
        columns and their kinds (default: every column, kinds from dtypes).
    seed
        Seeds the sample, every perturbation and the attack: same inputs,
        same report.
    max_rows
        Rows sampled for the perturbations.
    attack_rows
        Rows of that sample attacked (classification only).
    attack_iterations, attack_directions
        Boundary-walking steps per row and random directions per gradient
        estimate: together they fix the query budget (about
        ``attack_iterations * (attack_directions + 25) + 45`` queries a row).

    Returns
    -------
    dict
        ``{"baseline": {"metric", "value"}, "perturbations": [{"name",
        "level", "value", "drop"}, ...], "attack": {"method", "rows",
        "success_rate", "accuracy_under_attack", "median_l2", "median_linf"}
        | None}``. ``drop`` is baseline minus perturbed value. A model that
        raises on a perturbed frame (e.g. on missing values) scores NaN there.
        ``attack`` is None for regression or when no column is numeric.
        ``success_rate`` is the share of correctly predicted rows flipped
        within the budget (L2 ≤ 0.5 × the median row norm), and
        ``median_l2``/``median_linf`` the median size of the smallest flip
        found over the rows where one was found (NaN if none).

    Raises
    ------
    ConfigError
        Unknown task.
    DataError
        ``X`` and ``y`` differ in length, are empty, or the signature names
        columns ``X`` lacks.
    """
    if task not in (*CLASSIFICATION, "regression"):
        raise ConfigError(f"unknown task {task!r}; expected binary, multiclass or regression")
    y = np.asarray(y)
    if len(X) != len(y):
        raise DataError(f"robustness: X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise DataError("robustness: there are no rows to evaluate",
                        hint="pass a non-empty evaluation set")
    features, numeric = _columns(X, signature)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(X), size=min(max_rows, len(X)), replace=False))
    sample = X.iloc[keep][features].reset_index(drop=True)
    y_s = y[keep]
    categorical = [c for c in features if c not in numeric]
    classification = task != "regression"
    metric_name = "accuracy" if classification else "r2"

    def measure(frame: pd.DataFrame) -> float:
        try:
            pred = np.asarray(model.predict(frame))
        except Exception:  # the model cannot cope with this input: that is the finding
            return float("nan")
        return _score(classification, y_s, pred)

    baseline = measure(sample)
    if np.isnan(baseline):
        raise DataError("robustness: the model cannot predict the unperturbed rows",
                        hint="check that X has the model's input columns and dtypes")
    stats = {c: _numeric_stats(sample[c]) for c in numeric}
    perturbations = []
    plans: list[tuple[str, float, Callable[[pd.DataFrame, np.random.Generator], None]]] = []
    for level in NOISE_LEVELS:
        plans.append(("gaussian_noise", level, lambda f, r, lv=level: _noise(f, r, lv, stats)))
    for frac in MISSING_FRACTIONS:
        plans.append(("missing_values", frac,
                      lambda f, r, fr=frac: _missing(f, r, fr, features)))
    for frac in OUT_OF_RANGE_FRACTIONS:
        plans.append(("out_of_range", frac,
                      lambda f, r, fr=frac: _out_of_range(f, r, fr, stats, categorical)))
    for i, (name, level, apply) in enumerate(plans):
        frame = sample.copy()
        apply(frame, np.random.default_rng([seed, 1, i]))
        value = measure(frame)
        perturbations.append({"name": name, "level": float(level), "value": value,
                              "drop": float(baseline - value)})

    attack = None
    if classification and numeric and attack_rows > 0:
        attack = _attack_summary(model, sample, y_s, numeric, stats, seed=seed,
                                 rows=attack_rows, iterations=attack_iterations,
                                 directions=attack_directions)
    return {"baseline": {"metric": metric_name, "value": float(baseline)},
            "perturbations": perturbations, "attack": attack}


# ------------------------------------------------------------ perturbations
def _columns(X: pd.DataFrame, signature: Mapping[str, Any] | None
             ) -> tuple[list[str], list[str]]:
    """The feature columns and, among them, the numeric ones."""
    from shipyard.evaluate._signature import signature_inputs

    inputs = signature_inputs(signature)
    kinds: dict[str, str | None] = {}
    if inputs:
        kinds = {str(item["name"]): item.get("kind") for item in inputs}
        missing = [c for c in kinds if c not in X.columns]
        if missing:
            raise DataError(f"robustness: X lacks the model's input columns "
                            f"{', '.join(map(repr, missing))}",
                            hint="pass the evaluation frame with the model's features")
    else:
        kinds = dict.fromkeys(map(str, X.columns))
    numeric = []
    for col, kind in kinds.items():
        dtype = X[col].dtype
        is_num = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        if is_num and kind in (None, "numeric"):
            numeric.append(col)
    return list(kinds), numeric


def _numeric_stats(col: pd.Series) -> tuple[float, float, float, float]:
    """``(mean, std, min, max)`` of the finite values; std 1 when constant."""
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0, 0.0, 1.0
    std = float(v.std())
    return float(v.mean()), std if std > 0 else 1.0, float(v.min()), float(v.max())


def _noise(frame: pd.DataFrame, rng: np.random.Generator, level: float,
           stats: dict[str, tuple[float, float, float, float]]) -> None:
    for col, (_, std, _, _) in stats.items():
        frame[col] = frame[col].astype(float) + rng.normal(0.0, level * std, len(frame))


def _missing(frame: pd.DataFrame, rng: np.random.Generator, fraction: float,
             columns: list[str]) -> None:
    for col in columns:
        hit = rng.random(len(frame)) < fraction
        if pd.api.types.is_numeric_dtype(frame[col].dtype) and \
                not pd.api.types.is_bool_dtype(frame[col].dtype):
            frame[col] = frame[col].astype(float).where(~hit, np.nan)
        else:
            frame[col] = frame[col].astype(object).where(~hit, None)


def _out_of_range(frame: pd.DataFrame, rng: np.random.Generator, fraction: float,
                  stats: dict[str, tuple[float, float, float, float]],
                  categorical: list[str]) -> None:
    n = len(frame)
    for col, (_, _, lo, hi) in stats.items():
        hit = rng.random(n) < fraction
        span = (hi - lo) or 1.0
        offset = rng.uniform(1.0, 3.0, n) * span
        value = np.where(rng.random(n) < 0.5, lo - offset, hi + offset)
        frame[col] = np.where(hit, value, frame[col].astype(float))
    for col in categorical:
        hit = rng.random(n) < fraction
        frame[col] = frame[col].astype(object).where(~hit, UNSEEN_CATEGORY)


def _score(classification: bool, y: np.ndarray, pred: np.ndarray) -> float:
    if len(pred) != len(y):
        return float("nan")
    if classification:
        return float(np.mean(pred == y))
    from sklearn.metrics import r2_score

    try:
        pred = pred.astype(float)
        if not np.all(np.isfinite(pred)):
            return float("nan")
        return float(r2_score(y.astype(float), pred))
    except (TypeError, ValueError):
        return float("nan")


# -------------------------------------------------------------------- attack
class _Oracle:
    """Predicted labels of standardized numeric points, each spliced into its
    row's raw frame (categoricals fixed); counts queries."""

    def __init__(self, model: Any, rows: pd.DataFrame, numeric: list[str],
                 mean: np.ndarray, std: np.ndarray):
        self.model, self.rows, self.numeric = model, rows, numeric
        self.mean, self.std = mean, std
        self.queries = 0

    def labels(self, row_idx: np.ndarray, z: np.ndarray) -> np.ndarray:
        if len(row_idx) == 0:
            return np.empty(0, dtype=object)
        self.queries += len(row_idx)
        frame = self.rows.iloc[row_idx].reset_index(drop=True)
        raw = self.mean + z * self.std
        for j, col in enumerate(self.numeric):
            frame[col] = raw[:, j]
        return np.asarray(self.model.predict(frame))


def hop_skip_jump(oracle: _Oracle, z0: np.ndarray, label: np.ndarray, pool: np.ndarray,
                  pool_labels: np.ndarray, *, seed: int, iterations: int = 8,
                  directions: int = 40, search_steps: int = 20, candidates: int = 10
                  ) -> np.ndarray:
    """Smallest adversarial points found for every row at once.

    Parameters
    ----------
    oracle
        Labels of points; row ``i`` of ``z0`` uses row ``i`` of the oracle's frame.
    z0, label
        The points (standardized numeric features) and the labels to move away from.
    pool, pool_labels
        Other points and their labels, to start from a point of another class.
    seed
        Seeds the random directions.
    iterations, directions, search_steps, candidates
        Boundary-walking steps, directions per gradient estimate, binary
        search steps, and starting candidates tried per row.

    Returns
    -------
    numpy.ndarray
        ``(n, d)`` adversarial points; rows where none was found are NaN.
    """
    rng = np.random.default_rng([seed, 2])
    n, d = z0.shape
    adv = np.full((n, d), np.nan)
    # Start: the nearest pool points of another class, then random points.
    order = np.argsort(((z0[:, None, :] - pool[None, :, :]) ** 2).sum(-1), axis=1)
    for k in range(candidates + 2):
        todo = np.flatnonzero(np.isnan(adv[:, 0]))
        if todo.size == 0:
            break
        if k < candidates:
            picks = []
            for i in todo:
                other = order[i][pool_labels[order[i]] != label[i]]
                picks.append(other[k] if k < other.size else -1)
            picks = np.asarray(picks)
            todo, picks = todo[picks >= 0], picks[picks >= 0]
            start = pool[picks]
        else:
            start = z0[todo] + rng.normal(0.0, 3.0 * (k - candidates + 1), (todo.size, d))
        if todo.size:
            hit = oracle.labels(todo, start) != label[todo]
            adv[todo[hit]] = start[hit]
    active = np.flatnonzero(~np.isnan(adv[:, 0]))
    if active.size == 0:
        return adv
    adv[active] = _boundary(oracle, z0[active], adv[active], label[active], active,
                            search_steps)
    for t in range(1, iterations + 1):
        x_b = adv[active]
        dist = np.linalg.norm(x_b - z0[active], axis=1)
        live = dist > 1e-9
        if not live.any():
            break
        rows, x_b, dist, base = active[live], x_b[live], dist[live], z0[active][live]
        # Gradient direction at the boundary from the signs of random probes.
        delta = np.maximum(dist * np.sqrt(d) / (t * d + 1), 1e-6)[:, None]
        u = rng.normal(size=(rows.size, directions, d))
        u /= np.linalg.norm(u, axis=2, keepdims=True)
        probes = (x_b[:, None, :] + delta[:, :, None] * u).reshape(-1, d)
        flip = (oracle.labels(np.repeat(rows, directions), probes)
                != np.repeat(label[rows], directions)).reshape(rows.size, directions)
        phi = np.where(flip, 1.0, -1.0)
        mean_phi = phi.mean(axis=1, keepdims=True)
        centred = np.where(np.abs(mean_phi) < 1.0, phi - mean_phi, phi)
        grad = (centred[:, :, None] * u).mean(axis=1)
        norm = np.linalg.norm(grad, axis=1, keepdims=True)
        grad = np.divide(grad, norm, out=np.zeros_like(grad), where=norm > 0)
        # Geometric step search: halve the step until the point stays adversarial.
        step = (dist / np.sqrt(t))[:, None]
        moved = x_b.copy()
        pending = np.ones(rows.size, dtype=bool)
        for _ in range(12):
            if not pending.any():
                break
            cand = x_b[pending] + step[pending] * grad[pending]
            ok = oracle.labels(rows[pending], cand) != label[rows[pending]]
            idx = np.flatnonzero(pending)
            moved[idx[ok]] = cand[ok]
            pending[idx[ok]] = False
            step[pending] /= 2.0
        fresh = _boundary(oracle, base, moved, label[rows], rows, search_steps)
        better = np.linalg.norm(fresh - base, axis=1) < dist
        adv[rows[better]] = fresh[better]
    return adv


def _boundary(oracle: _Oracle, z0: np.ndarray, adv: np.ndarray, label: np.ndarray,
              rows: np.ndarray, steps: int) -> np.ndarray:
    """Binary search on each segment ``z0 → adv`` for the adversarial point
    nearest the boundary."""
    lo = np.zeros(len(rows))
    hi = np.ones(len(rows))
    for _ in range(steps):
        mid = (lo + hi) / 2.0
        point = z0 + mid[:, None] * (adv - z0)
        flipped = oracle.labels(rows, point) != label
        hi = np.where(flipped, mid, hi)
        lo = np.where(flipped, lo, mid)
    return z0 + hi[:, None] * (adv - z0)


def _attack_summary(model: Any, sample: pd.DataFrame, y: np.ndarray, numeric: list[str],
                    stats: dict[str, tuple[float, float, float, float]], *, seed: int,
                    rows: int, iterations: int, directions: int) -> dict[str, Any] | None:
    mean = np.array([stats[c][0] for c in numeric])
    std = np.array([stats[c][1] for c in numeric])
    raw = sample[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    z_all = (raw - mean) / std
    finite = np.all(np.isfinite(z_all), axis=1)
    if not finite.any():
        return None
    pred_all = np.asarray(model.predict(sample))
    rng = np.random.default_rng([seed, 3])
    candidates = np.flatnonzero(finite)
    chosen = np.sort(rng.choice(candidates, size=min(rows, candidates.size), replace=False))
    correct = pred_all[chosen] == y[chosen]
    budget = ATTACK_BUDGET * float(np.median(np.linalg.norm(z_all[finite], axis=1)))
    target = chosen[correct]
    l2 = np.full(chosen.size, np.inf)
    linf = np.full(chosen.size, np.inf)
    if target.size:
        oracle = _Oracle(model, sample.iloc[target].reset_index(drop=True), numeric, mean, std)
        pool = z_all[finite]
        adv = hop_skip_jump(oracle, z_all[target], pred_all[target], pool,
                            pred_all[finite], seed=seed, iterations=iterations,
                            directions=directions)
        found = ~np.isnan(adv[:, 0])
        delta = adv[found] - z_all[target][found]
        idx = np.flatnonzero(correct)[found]
        l2[idx] = np.linalg.norm(delta, axis=1)
        linf[idx] = np.abs(delta).max(axis=1)
    flipped = correct & (l2 <= budget)
    found_any = correct & np.isfinite(l2)
    return {
        "method": "hop_skip_jump",
        "rows": int(chosen.size),
        "success_rate": float(flipped.sum() / correct.sum()) if correct.any() else 0.0,
        "accuracy_under_attack": float(np.mean(correct & ~flipped)),
        "median_l2": float(np.median(l2[found_any])) if found_any.any() else float("nan"),
        "median_linf": float(np.median(linf[found_any])) if found_any.any() else float("nan"),
    }
