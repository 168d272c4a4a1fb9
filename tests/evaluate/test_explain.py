"""SHAP explanations over raw input columns: ranking, additivity, single rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.evaluate._explain import explain_rows, global_importance


def _data(n: int = 400, extra: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "colour": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
                      "flag": rng.random(n) < 0.5, "count": rng.integers(0, 9, n)})
    for i in range(extra):
        X[f"z{i}"] = rng.normal(size=n)
    return X


def _pipeline(X: pd.DataFrame, y, final) -> object:
    numeric = [c for c in X.columns if c != "colour"]
    pre = make_column_transformer((StandardScaler(), numeric),
                                  (OneHotEncoder(handle_unknown="ignore"), ["colour"]))
    return make_pipeline(pre, final).fit(X, y)


@pytest.fixture(scope="module")
def classifier():
    X = _data()
    y = (X.x1 > 0).astype(int)  # y depends on x1 only
    return _pipeline(X, y, LogisticRegression()), X


def test_the_only_informative_column_is_the_most_important(classifier):
    model, X = classifier
    out = global_importance(model, X, task="binary", classes=[0, 1], max_rows=40)
    ranking = [i["feature"] for i in out["importance"]]
    assert ranking[0] == "x1"
    assert sorted(ranking) == sorted(X.columns)  # raw columns, not one-hot parts
    top, second = out["importance"][0]["importance"], out["importance"][1]["importance"]
    assert top > 5 * second
    assert out["rows"] == 40 and "Exact" in out["method"]


def test_attributions_and_base_value_sum_to_the_probability(classifier):
    model, X = classifier
    rows = explain_rows(model, X.iloc[:5], background=X.iloc[100:], task="binary",
                        classes=[0, 1])
    proba = model.predict_proba(X.iloc[:5])[:, 1]
    for row, p in zip(rows, proba):
        assert set(row["attributions"]) == set(X.columns)
        assert row["base_value"] + sum(row["attributions"].values()) == pytest.approx(p, abs=1e-6)
        assert row["output"] == pytest.approx(p, abs=1e-6)
        assert row["explained"] == "probability of 1"


def test_single_row_with_the_signature_choosing_columns(classifier):
    model, X = classifier
    signature = {"inputs": [{"name": c, "dtype": str(X[c].dtype)} for c in X.columns],
                 "output": {"task": "binary", "classes": [0, 1]}}
    extra = X.assign(unused="ignored")
    (row,) = explain_rows(model, extra.iloc[[7]], background=extra.iloc[50:], signature=signature)
    assert list(row["attributions"]) == list(X.columns)
    assert abs(row["attributions"]["x1"]) == max(abs(v) for v in row["attributions"].values())


def test_wide_models_use_sampled_permutations_and_stay_additive():
    X = _data(n=300, extra=6)
    y = 3 * X.x1 + 0.1 * X.x2
    model = _pipeline(X, y, RandomForestRegressor(n_estimators=20, random_state=0))
    out = global_importance(model, X, task="regression", max_rows=10, max_background=20)
    assert "Permutation" in out["method"] and out["importance"][0]["feature"] == "x1"
    rows = explain_rows(model, X.iloc[:3], background=X, task="regression", max_background=20)
    for row, value in zip(rows, model.predict(X.iloc[:3])):
        assert row["base_value"] + sum(row["attributions"].values()) == pytest.approx(value)


def test_multiclass_explains_the_predicted_class():
    X = _data(n=300)
    y = np.digitize(X.x1, [-0.5, 0.5])
    model = _pipeline(X, y, LogisticRegression(max_iter=500))
    (row,) = explain_rows(model, X.iloc[[0]], background=X, task="multiclass", classes=[0, 1, 2])
    predicted = int(model.predict(X.iloc[[0]])[0])
    assert row["class"] == predicted
    assert row["output"] == pytest.approx(model.predict_proba(X.iloc[[0]])[0, predicted])
    out = global_importance(model, X, task="multiclass", classes=[0, 1, 2], max_rows=20)
    assert out["importance"][0]["feature"] == "x1" and len(out["base_value"]) == 3
