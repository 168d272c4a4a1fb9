"""Robustness report: perturbations, the decision-based attack, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from shipyard.errors import ConfigError, DataError
from shipyard.evaluate._robustness import (_numeric_stats, _Oracle, hop_skip_jump,
                                           robustness_report)

NUM = list("abcde")


@pytest.fixture(scope="module")
def linear():
    """A standardized logistic regression on 5 numeric columns + 1 categorical."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 5)) * [1, 2, 5, 0.5, 10] + [0, 1, 2, 3, 4],
                     columns=NUM)
    X["cat"] = rng.choice(["u", "v"], 300)
    y = ((X.a + X.b / 2 - X.c / 5 + rng.normal(0, 0.5, 300)) > 0.5).astype(int).to_numpy()
    model = make_pipeline(
        make_column_transformer((StandardScaler(), NUM),
                                (OneHotEncoder(handle_unknown="ignore"), ["cat"])),
        LogisticRegression()).fit(X, y)
    return model, X, y


def test_report_has_exactly_the_documented_shape(linear):
    model, X, y = linear
    rep = robustness_report(model, X, y, task="binary", attack_rows=20)
    assert set(rep) == {"baseline", "perturbations", "attack"}
    assert set(rep["baseline"]) == {"metric", "value"} and rep["baseline"]["metric"] == "accuracy"
    assert {p["name"] for p in rep["perturbations"]} == {"gaussian_noise", "missing_values",
                                                         "out_of_range"}
    for p in rep["perturbations"]:
        assert set(p) == {"name", "level", "value", "drop"}
        assert all(isinstance(p[k], float) for k in ("level", "value", "drop"))
    assert [p["level"] for p in rep["perturbations"] if p["name"] == "gaussian_noise"] == [
        0.05, 0.1, 0.25, 0.5]
    assert set(rep["attack"]) == {"method", "rows", "success_rate", "accuracy_under_attack",
                                  "median_l2", "median_linf"}
    assert rep["attack"]["rows"] == 20
    assert 0 <= rep["attack"]["accuracy_under_attack"] <= rep["baseline"]["value"]


def _latent(n=600, k=8, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    X = pd.DataFrame({f"x{j}": z + rng.normal(0, 0.1, n) for j in range(k)})
    return X, (z > 0).astype(int)


def test_a_stump_on_one_feature_is_more_fragile_than_an_averaged_model():
    X, y = _latent()
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X[["x0"]], y)
    averaged = LogisticRegression().fit(X, y)

    def noise_drop(model, frame):
        rep = robustness_report(model, frame, y, task="binary", attack_rows=0)
        return {p["level"]: p["drop"] for p in rep["perturbations"]
                if p["name"] == "gaussian_noise"}

    fragile, robust = noise_drop(stump, X[["x0"]]), noise_drop(averaged, X)
    # The stump sees the full noise; the average sees it divided by sqrt(8).
    assert fragile[0.5] > 2 * robust[0.5] and fragile[0.5] - robust[0.5] > 0.04
    assert fragile[0.25] > robust[0.25]


def test_more_noise_hurts_more_roughly(linear):
    model, X, y = linear
    rep = robustness_report(model, X, y, task="binary", attack_rows=0)
    values = [p["value"] for p in rep["perturbations"] if p["name"] == "gaussian_noise"]
    assert all(b <= a + 0.02 for a, b in zip(values, values[1:]))
    assert values[-1] < values[0] - 0.02


def test_missing_values_score_nan_for_a_model_that_refuses_them_and_not_otherwise(linear):
    _, X, y = linear
    rep = robustness_report(LogisticRegression().fit(X[NUM], y), X[NUM], y, task="binary",
                            attack_rows=0)
    assert all(np.isnan(p["value"]) for p in rep["perturbations"]
               if p["name"] == "missing_values")
    tolerant = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X[NUM], y)
    rep = robustness_report(tolerant, X[NUM], y, task="binary", attack_rows=0)
    missing = [p["value"] for p in rep["perturbations"] if p["name"] == "missing_values"]
    assert all(np.isfinite(missing)) and missing[-1] < rep["baseline"]["value"]


def test_out_of_range_uses_an_unseen_category_the_encoder_ignores(linear):
    model, X, y = linear
    rep = robustness_report(model, X, y, task="binary", attack_rows=0)
    out = [p for p in rep["perturbations"] if p["name"] == "out_of_range"]
    assert [p["level"] for p in out] == [0.1, 0.25]
    assert all(np.isfinite(p["value"]) and p["drop"] > 0 for p in out)


def test_attack_finds_the_analytic_distance_to_a_linear_boundary(linear):
    model, X, y = linear
    st = {c: _numeric_stats(X[c]) for c in NUM}
    mean, std = np.array([st[c][0] for c in NUM]), np.array([st[c][1] for c in NUM])
    z = (X[NUM].to_numpy() - mean) / std
    # StandardScaler saw the same rows, so z is the scaler's own space:
    # logit = w·z + b + (one-hot term), distance = |logit| / ||w||.
    w = model[-1].coef_[0][:5]
    true = np.abs(model.decision_function(X)) / np.linalg.norm(w)
    pred = model.predict(X)
    rows = np.arange(40)
    oracle = _Oracle(model, X.iloc[rows].reset_index(drop=True), NUM, mean, std)
    adv = hop_skip_jump(oracle, z[rows], pred[rows], z, pred, seed=0, iterations=8)
    found = np.linalg.norm(adv - z[rows], axis=1)
    assert np.all(model.predict(_splice(X.iloc[rows], adv, mean, std)) != pred[rows])
    ratio = found / true[rows]
    assert ratio.min() >= 0.999 and np.median(ratio) < 1.02 and ratio.max() < 1.10
    assert oracle.queries / rows.size < 700  # the fixed budget

    rep = robustness_report(model, X, y, task="binary", max_rows=300, attack_rows=300)
    correct = pred == y
    assert rep["attack"]["median_l2"] == pytest.approx(np.median(true[correct]), rel=0.05)
    budget = 0.5 * np.median(np.linalg.norm(z, axis=1))
    assert rep["attack"]["accuracy_under_attack"] == pytest.approx(
        np.mean(correct & (true > budget)), abs=0.03)


def _splice(frame, z, mean, std):
    out = frame.reset_index(drop=True).copy()
    out[NUM] = mean + z * std
    return out


def test_same_seed_same_report_other_seed_other_sample(linear):
    model, X, y = linear
    a = robustness_report(model, X, y, task="binary", seed=3, max_rows=150, attack_rows=30)
    b = robustness_report(model, X, y, task="binary", seed=3, max_rows=150, attack_rows=30)
    c = robustness_report(model, X, y, task="binary", seed=4, max_rows=150, attack_rows=30)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)


class _Counting:
    """Counts the calls and rows a model is asked to score."""

    def __init__(self, model):
        self.model, self.calls, self.rows = model, 0, 0

    def predict(self, X):
        self.calls, self.rows = self.calls + 1, self.rows + len(X)
        return self.model.predict(X)

    def predict_proba(self, X):
        self.calls, self.rows = self.calls + 1, self.rows + len(X)
        return self.model.predict_proba(X)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_attack_work_is_bounded_by_its_query_budget(linear):
    """Rows are attacked together: the number of model calls does not grow with
    the rows attacked, and the rows queried grow by a bounded budget per row."""
    model, X, y = linear
    counts = {}
    for rows in (50, 100):
        counting = _Counting(model)
        robustness_report(counting, X, y, task="binary", attack_rows=rows)
        counts[rows] = (counting.calls, counting.rows)
    assert counts[50][0] == counts[100][0] <= 250
    assert 0 < counts[100][1] - counts[50][1] <= 50 * 600


def test_regression_scores_r2_and_has_no_attack():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = X.a * 2 + X.b + rng.normal(0, 0.1, 200)
    rep = robustness_report(LinearRegression().fit(X, y), X, y, task="regression")
    assert rep["baseline"]["metric"] == "r2" and rep["baseline"]["value"] > 0.95
    assert rep["attack"] is None


def test_signature_restricts_columns_and_must_match_the_frame(linear):
    model, X, y = linear
    sig = {"inputs": [{"name": c, "kind": "numeric"} for c in NUM]
           + [{"name": "cat", "kind": "categorical"}]}
    rep = robustness_report(model, X.assign(extra=1.0), y, task="binary", signature=sig,
                            attack_rows=5)
    assert rep["attack"]["rows"] == 5
    with pytest.raises(DataError, match="lacks the model's input columns 'cat'"):
        robustness_report(model, X.drop(columns="cat"), y, task="binary", signature=sig)


def test_bad_input_is_refused(linear):
    model, X, y = linear
    with pytest.raises(DataError, match="300 rows but y has 10"):
        robustness_report(model, X, y[:10], task="binary")
    with pytest.raises(DataError, match="no rows"):
        robustness_report(model, X.iloc[:0], y[:0], task="binary")
    with pytest.raises(ConfigError, match="unknown task"):
        robustness_report(model, X, y, task="ranking")


def test_signature_with_plain_column_names_is_accepted():
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from shipyard.evaluate import robustness_report

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (X["a"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    report = robustness_report(model, X, y, task="binary", signature={"inputs": ["a", "b"]},
                               max_rows=100)
    assert report["baseline"]["value"] > 0.9
    assert {p["name"] for p in report["perturbations"]} >= {"gaussian_noise"}
