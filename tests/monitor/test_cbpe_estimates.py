"""CBPE beyond a calibrated binary model: over many windows the estimate
tracks the realized figure; isotonic recalibration on labelled reference rows
repairs an over-confident model's estimate; the multiclass one-vs-rest
ROC-AUC estimate matches scikit-learn's realized one."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from shipyard.monitor import CBPE, Calibration, cbpe


def binary_rows(n: int, seed: int, *, shift: float = 0.0):
    """Scores whose true chance of a positive is ``sigmoid(logit)``."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(shift, 1.5, n)
    truth = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < truth).astype(int)
    return logit, truth, y


def test_estimates_track_realized_figures_over_many_windows():
    gaps_acc, gaps_auc, inside = [], [], 0
    for window in range(60):
        _, p, y = binary_rows(2_000, window, shift=(window % 6 - 3) * 0.3)
        pred = (p > 0.5).astype(int)
        got = cbpe(np.c_[1 - p, p], pred.tolist(), classes=[0, 1])
        realized = accuracy_score(y, pred)
        gaps_acc.append(got["accuracy"]["value"] - realized)
        gaps_auc.append(got["roc_auc"]["value"] - roc_auc_score(y, p))
        inside += got["accuracy"]["ci_low"] <= realized <= got["accuracy"]["ci_high"]
    # Unbiased: the mean gap is within a few standard errors of zero; the
    # per-window gap is sampling noise of 2,000 rows (sd ~0.009 for accuracy).
    assert abs(np.mean(gaps_acc)) < 0.004 and abs(np.mean(gaps_auc)) < 0.004
    assert np.max(np.abs(gaps_acc)) < 0.04 and np.max(np.abs(gaps_auc)) < 0.04
    assert inside >= 0.85 * 60  # a 95 % interval, give or take sampling


def test_recalibration_repairs_an_over_confident_model():
    logit, _, y_ref = binary_rows(20_000, 1)
    confident = 1 / (1 + np.exp(-3 * logit))  # three times too sure of itself
    calibration = Calibration([0, 1]).fit(np.c_[1 - confident, confident], y_ref)
    assert calibration.calibrated == [1]
    logit, _, y = binary_rows(20_000, 2, shift=0.5)
    score = 1 / (1 + np.exp(-3 * logit))
    pred = (score > 0.5).astype(int)
    proba = np.c_[1 - score, score]
    realized = accuracy_score(y, pred)
    raw = cbpe(proba, pred.tolist(), classes=[0, 1])
    fixed = cbpe(proba, pred.tolist(), classes=[0, 1], calibration=calibration)
    assert raw["accuracy"]["value"] - realized > 0.05  # over-confidence, over-estimated
    assert fixed["accuracy"]["value"] == pytest.approx(realized, abs=0.01)
    # ROC-AUC ranks by the model's own score: the calibrated chance fixes it too.
    assert fixed["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, score), abs=0.01)
    assert raw["roc_auc"]["value"] - roc_auc_score(y, score) > 0.03
    # The calibrator round-trips through its stored form.
    again = Calibration.from_dict(calibration.to_dict())
    np.testing.assert_allclose(again.transform(proba), calibration.transform(proba))


def test_a_model_ranking_perfectly_is_left_as_it_is():
    y = np.array([0, 1] * 500)
    p = np.where(y == 1, 0.6, 0.4) + np.linspace(0, 0.01, 1_000)
    assert Calibration([0, 1]).fit(np.c_[1 - p, p], y).calibrated == []


def multiclass_rows(n: int, seed: int, temperature: float = 1.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 1.5 + np.array([0.3, 0.0, -0.3])
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    shown = np.exp(logits * temperature)
    return shown / shown.sum(axis=1, keepdims=True), y


def test_multiclass_accuracy_and_one_vs_rest_roc_auc():
    proba, y = multiclass_rows(30_000, 3)
    estimate = CBPE(["a", "b", "c"])
    for lo in range(0, 30_000, 7_000):
        estimate.update(proba[lo:lo + 7_000])
    got = estimate.result()
    pred = proba.argmax(axis=1)
    assert got["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred), abs=0.01)
    realized = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert got["roc_auc_ovr"]["value"] == pytest.approx(realized, abs=0.01)


def test_multiclass_recalibration_per_class():
    ref, y_ref = multiclass_rows(30_000, 4, temperature=2.5)  # over-confident
    calibration = Calibration([0, 1, 2]).fit(ref, y_ref)
    assert calibration.calibrated == [0, 1, 2]
    proba, y = multiclass_rows(20_000, 5, temperature=2.5)
    pred = proba.argmax(axis=1)
    raw = cbpe(proba, classes=[0, 1, 2])
    fixed = cbpe(proba, classes=[0, 1, 2], calibration=calibration)
    realized = accuracy_score(y, pred)
    assert raw["accuracy"]["value"] - realized > 0.05
    assert fixed["accuracy"]["value"] == pytest.approx(realized, abs=0.01)
    assert fixed["roc_auc_ovr"]["value"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr"), abs=0.01)
    assert np.allclose(calibration.transform(proba).sum(axis=1), 1.0)
