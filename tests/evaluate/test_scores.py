"""Task metrics: values match scikit-learn; bootstrap intervals behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from shipyard.evaluate._scores import bootstrap_ci, task_metrics, weighted_metrics


def _binary(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1).round(3)  # ties on purpose
    return y, (p > 0.5).astype(int), np.c_[1 - p, p]


def _multiclass(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet([1, 1, 1], n)
    proba[np.arange(n), y] += 0.6
    proba /= proba.sum(axis=1, keepdims=True)
    return y, proba.argmax(axis=1), proba


def _regression(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.normal(5, 2, n)
    return y, y + rng.normal(0, 0.7, n)


def test_binary_metrics_equal_scikit_learn():
    y, pred, proba = _binary(800)
    values = task_metrics(y, pred, proba, task="binary", classes=[0, 1],
                          n_bootstrap=20)["values"]
    p = proba[:, 1]
    expected = {
        "accuracy": skm.accuracy_score(y, pred), "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred), "f1": skm.f1_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, p), "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p), "brier": skm.brier_score_loss(y, p)}
    assert set(values) == set(expected)
    for name, value in expected.items():
        assert values[name]["value"] == pytest.approx(value, abs=1e-12), name


def test_multiclass_metrics_equal_scikit_learn():
    y, pred, proba = _multiclass(600)
    values = task_metrics(y, pred, proba, task="multiclass", classes=[0, 1, 2],
                          n_bootstrap=20)["values"]
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "log_loss": skm.log_loss(y, proba),
        "roc_auc_ovr": skm.roc_auc_score(y, proba, multi_class="ovr")}
    assert set(values) == set(expected)
    for name, value in expected.items():
        assert values[name]["value"] == pytest.approx(value, abs=1e-12), name


def test_regression_metrics_equal_scikit_learn():
    y, pred = _regression(500)
    values = task_metrics(y, pred, task="regression", n_bootstrap=20)["values"]
    expected = {"mae": skm.mean_absolute_error(y, pred),
                "rmse": skm.root_mean_squared_error(y, pred), "r2": skm.r2_score(y, pred),
                "mape": skm.mean_absolute_percentage_error(y, pred)}
    for name, value in expected.items():
        assert values[name]["value"] == pytest.approx(value, rel=1e-12), name


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_weighted_forms_with_unit_weights_equal_point_values(task):
    if task == "binary":
        y, pred, proba = _binary(300, seed=3)
        classes = [0, 1]
    elif task == "multiclass":
        y, pred, proba = _multiclass(300, seed=3)
        classes = [0, 1, 2]
    else:
        (y, pred), proba, classes = _regression(300, seed=3), None, None
    values = task_metrics(y, pred, proba, task=task, classes=classes, n_bootstrap=0)["values"]
    ones = np.ones((1, len(y)))
    for name, fn in weighted_metrics(task, y, pred, proba, classes).items():
        assert fn(ones)[0] == pytest.approx(values[name]["value"], rel=1e-9), name


def test_weighted_auc_matches_scikit_learn_on_a_resample():
    y, _, proba = _binary(400, seed=5)
    idx = np.random.default_rng(1).integers(0, 400, 400)
    counts = np.bincount(idx, minlength=400).astype(float)[None, :]
    auc = weighted_metrics("binary", y, (proba[:, 1] > .5).astype(int), proba, [0, 1])
    assert auc["roc_auc"](counts)[0] == pytest.approx(skm.roc_auc_score(y[idx], proba[idx, 1]))
    assert auc["pr_auc"](counts)[0] == pytest.approx(
        skm.average_precision_score(y[idx], proba[idx, 1]))


def test_intervals_contain_the_estimate_and_narrow_with_more_rows():
    widths = []
    for n in (200, 5000):
        y, pred, proba = _binary(n, seed=2)
        values = task_metrics(y, pred, proba, task="binary", classes=[0, 1],
                              n_bootstrap=200, seed=0)["values"]
        for name, m in values.items():
            assert m["ci_low"] <= m["value"] <= m["ci_high"], (n, name)
        widths.append({k: m["ci_high"] - m["ci_low"] for k, m in values.items()})
    for name in widths[0]:
        assert widths[1][name] < widths[0][name] / 2, name


def test_bootstrap_is_seeded_and_independent_of_chunking(monkeypatch):
    x = np.random.default_rng(0).normal(size=1000)
    first = bootstrap_ci({"mean": lambda w: w @ x / 1000}, 1000, n_bootstrap=50, seed=4)
    monkeypatch.setattr("shipyard.evaluate._scores._CHUNK_CELLS", 3000)
    again = bootstrap_ci({"mean": lambda w: w @ x / 1000}, 1000, n_bootstrap=50, seed=4)
    other = bootstrap_ci({"mean": lambda w: w @ x / 1000}, 1000, n_bootstrap=50, seed=5)
    assert first == again != other


def test_confusion_matrix_and_curves():
    y, pred, proba = _binary(3000, seed=1)
    out = task_metrics(y, pred, proba, task="binary", classes=[0, 1], n_bootstrap=0)
    assert out["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred).tolist()
    curves = out["curves"]
    assert 2 < len(curves["roc"]["fpr"]) <= 200 and len(curves["pr"]["recall"]) <= 200
    assert curves["roc"]["fpr"][0] == 0 and curves["roc"]["tpr"][-1] == 1
    cal = curves["calibration"]
    assert sum(cal["count"]) == 3000 and len(cal["mean_predicted"]) <= 10
    assert all(0 <= v <= 1 for v in cal["fraction_positive"])


def test_string_labels_and_no_probabilities():
    y = np.array(["no", "yes"] * 50)
    pred = np.array(["no", "yes", "yes", "yes"] * 25)
    out = task_metrics(y, pred, task="binary", classes=["no", "yes"], n_bootstrap=10)
    assert out["headline"] == "accuracy" and "roc_auc" not in out["values"]
    assert out["values"]["precision"]["value"] == pytest.approx(
        skm.precision_score(y, pred, pos_label="yes"))
