"""Realized performance matches scikit-learn; CBPE estimates it without
labels when the probabilities are calibrated."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from shipyard.monitor import CBPE, cbpe, realized_performance
from shipyard.monitor._performance import degradation


def calibrated(n: int, seed: int, classes: int = 2):
    """Rows whose labels are drawn from a logistic model's own probabilities."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    w = rng.normal(size=(5, classes)) * 1.2
    logits = x @ w
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return x, y


def test_realized_metrics_match_sklearn_with_intervals():
    x, y = calibrated(3_000, 0)
    model = LogisticRegression().fit(x[:1_000], y[:1_000])
    proba = model.predict_proba(x[1_000:])
    pred = model.predict(x[1_000:])
    got = realized_performance(y[1_000:], pred, proba, task="binary", classes=[0, 1])
    truth = y[1_000:]
    assert got["accuracy"]["value"] == pytest.approx(accuracy_score(truth, pred))
    assert got["roc_auc"]["value"] == pytest.approx(roc_auc_score(truth, proba[:, 1]))
    assert got["f1"]["value"] == pytest.approx(f1_score(truth, pred))
    for m in got.values():
        assert m["n"] == 2_000 and m["ci_low"] <= m["value"] <= m["ci_high"]


def test_labels_are_matched_to_the_classes_whatever_their_json_type():
    got = realized_performance(["1", 0, 1.0, "0", "maybe"], [1, 0, 1, 1, 0], task="binary",
                               classes=[0, 1], n_bootstrap=0)
    assert got["accuracy"] == {"value": 0.75, "ci_low": None, "ci_high": None, "n": 4}


def test_cbpe_estimates_the_realized_performance_of_a_calibrated_binary_model():
    x, y = calibrated(40_000, 1)
    model = LogisticRegression().fit(x[:20_000], y[:20_000])
    proba, pred, truth = model.predict_proba(x[20_000:]), model.predict(x[20_000:]), y[20_000:]
    estimate = CBPE([0, 1])
    for lo in range(0, 20_000, 3_000):  # streamed in chunks
        estimate.update(proba[lo:lo + 3_000], pred[lo:lo + 3_000].tolist())
    got = estimate.result()
    accuracy = accuracy_score(truth, pred)
    assert got["accuracy"]["value"] == pytest.approx(accuracy, abs=0.01)
    # The interval is the spread of the number of right answers given the
    # probabilities (±1.96 sd of a sum of Bernoullis): about ±0.005 here.
    width = got["accuracy"]["ci_high"] - got["accuracy"]["ci_low"]
    assert width == pytest.approx(2 * 1.96 * np.sqrt(accuracy * (1 - accuracy) / 20_000),
                                  rel=0.2)
    assert got["roc_auc"]["value"] == pytest.approx(roc_auc_score(truth, proba[:, 1]), abs=0.01)
    assert got["precision"]["value"] == pytest.approx(precision_score(truth, pred), abs=0.015)
    assert got["recall"]["value"] == pytest.approx(recall_score(truth, pred), abs=0.015)
    assert got["f1"]["value"] == pytest.approx(f1_score(truth, pred), abs=0.015)
    whole = cbpe(proba, pred.tolist(), classes=[0, 1])
    assert {k: v["value"] for k, v in whole.items()} == pytest.approx(
        {k: v["value"] for k, v in got.items()})


def test_cbpe_multiclass_and_thresholded_labels():
    x, y = calibrated(30_000, 2, classes=3)
    model = LogisticRegression().fit(x[:10_000], y[:10_000])
    proba, truth = model.predict_proba(x[10_000:]), y[10_000:]
    pred = model.predict(x[10_000:])
    got = cbpe(proba, classes=[0, 1, 2])  # labels default to the most probable class
    assert got["accuracy"]["value"] == pytest.approx(accuracy_score(truth, pred), abs=0.01)
    assert got["f1_macro"]["value"] == pytest.approx(f1_score(truth, pred, average="macro"),
                                                     abs=0.015)
    # Labels that are not the argmax (a decision threshold moved): estimated on them.
    x, y = calibrated(20_000, 3)
    model = LogisticRegression().fit(x[:10_000], y[:10_000])
    proba, truth = model.predict_proba(x[10_000:]), y[10_000:]
    shifted = (proba[:, 1] > 0.3).astype(int)
    got = cbpe(proba, shifted, classes=[0, 1])
    assert got["accuracy"]["value"] == pytest.approx(accuracy_score(truth, shifted), abs=0.012)
    assert got["recall"]["value"] == pytest.approx(recall_score(truth, shifted), abs=0.015)


def test_degradation_against_an_interval_or_a_bare_value():
    ref_ci = {"roc_auc": {"value": 0.85, "ci_low": 0.83, "ci_high": 0.87},
              "log_loss": {"value": 0.40, "ci_low": 0.38, "ci_high": 0.42}}
    assert degradation({"roc_auc": {"value": 0.84}, "log_loss": {"value": 0.45}}, ref_ci) == {
        "roc_auc": False, "log_loss": True}
    bare = {"accuracy": {"value": 0.8, "ci_low": None, "ci_high": None}}
    assert degradation({"accuracy": {"value": 0.7, "ci_low": 0.65, "ci_high": 0.79}}, bare) \
        == {"accuracy": True}
    assert degradation({"accuracy": {"value": 0.7, "ci_low": 0.6, "ci_high": 0.81}}, bare) \
        == {"accuracy": False}
