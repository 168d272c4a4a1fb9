"""Direct loss estimation for regression: on heteroscedastic data the
estimated MAE/RMSE follow the realized ones as the population moves into
noisier regions; a monitor report of a regression model shows the DLE
estimate next to the realized figures, and a classifier's report says how
its CBPE estimate was calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace
from shipyard.monitor import DLE, build_report

from .traffic import T0, Clock, install, log_feedback, log_requests
from .trained import people, train_people


def noisy(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """``y = 3x + noise`` whose spread grows with ``x`` and with the city."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    city = rng.choice(["calm", "wild"], n, p=[0.7, 0.3])
    sigma = 0.5 + np.abs(x) + np.where(city == "wild", 1.0, 0.0)
    return pd.DataFrame({"x": x, "city": city, "y": 3 * x + rng.normal(0, 1, n) * sigma})


def test_dle_follows_the_realized_loss_of_a_heteroscedastic_model():
    ref = noisy(20_000, 0)
    dle = DLE({"x": "numeric", "city": "categorical"}, seed=0).fit(
        ref[["x", "city"]], 3 * ref["x"], ref["y"])
    estimates, realized = [], []
    for shift in (0.0, 0.8, 1.6):
        window = noisy(10_000, int(10 * shift) + 1, shift=shift)
        error = window["y"] - 3 * window["x"]
        got = dle.reset().update(window[["x", "city"]], (3 * window["x"]).to_numpy()).result()
        assert got["mae"]["n"] == 10_000
        assert got["mae"]["value"] == pytest.approx(np.abs(error).mean(), rel=0.05)
        assert got["rmse"]["value"] == pytest.approx(np.sqrt((error ** 2).mean()), rel=0.06)
        estimates.append(got["mae"]["value"])
        realized.append(np.abs(error).mean())
    assert estimates[2] > 1.4 * estimates[0] and realized[2] > 1.4 * realized[0]
    # Unseen categories and missing predictions do not break a window.
    odd = pd.DataFrame({"x": [0.0, 1.0], "city": ["mars", None]})
    assert dle.reset().update(odd, np.array([0.0, np.nan])).result()["mae"]["n"] == 1


REGRESSION = """
name: priced
dataset: noisy@latest
target: y
task: regression
seed: 3
train:
  split: {folds: 2}
  search: {kind: random, n_trials: 1}
  candidates:
    - name: linear
      estimator: sklearn.linear_model.LinearRegression
"""


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    install(monkeypatch, clock)
    return clock


def test_a_regression_report_shows_the_dle_estimate_beside_the_realized(tmp_path, clock):
    from shipyard.project import parse_project

    ws = Workspace.open(tmp_path / "home")
    try:
        ws.datasets.register("noisy", noisy(4_000, 0))
        version = ws.models.register("priced", ws.train(parse_project(REGRESSION)).study_run_id)
        model = version.load()
        rows = noisy(3_000, 9, shift=1.0)
        parts = [rows.iloc[i:i + 100].reset_index(drop=True) for i in range(0, 3_000, 100)]
        ids = log_requests(ws.settings.home, clock, "priced",
                           [(T0 + 60 * i, p[["x", "city"]]) for i, p in enumerate(parts)],
                           scorer=model, prefix="r")
        log_feedback(ws.settings.home, clock,
                     [(T0 + 3_000, rid, p["y"].tolist()) for rid, p in zip(ids, parts)],
                     model="priced")
        report = build_report(ws, "priced", start=T0, end=T0 + 3_600)
    finally:
        ws.close()
    performance = report.performance
    assert performance["estimator"]["method"] == "dle"
    # fitted on the training run's held-out test rows (20 % of 4,000), not on its training rows
    assert performance["estimator"]["reference_rows"] == 800
    assert performance["estimator"]["reference_source"] == "test_split"
    error = rows["y"].to_numpy() - model.predict(rows[["x", "city"]])
    estimated, realized = performance["estimated"], performance["realized"]
    assert estimated["mae"]["n"] == 3_000 and realized["mae"]["n"] == 3_000
    assert realized["mae"]["value"] == pytest.approx(np.abs(error).mean())
    assert estimated["mae"]["value"] == pytest.approx(realized["mae"]["value"], rel=0.1)
    assert estimated["rmse"]["value"] == pytest.approx(realized["rmse"]["value"], rel=0.1)


def test_a_classifier_report_says_how_its_estimate_was_calibrated(tmp_path, clock):
    ws = Workspace.open(tmp_path / "home")
    try:
        version = train_people(ws)
        model = version.load()
        frame = people(2_000, seed=21)[["age", "income", "hours", "city", "sex"]]
        parts = [frame.iloc[i:i + 100].reset_index(drop=True) for i in range(0, 2_000, 100)]
        log_requests(ws.settings.home, clock, "monitored",
                     [(T0 + 60 * i, p) for i, p in enumerate(parts)], scorer=model)
        report = build_report(ws, "monitored", start=T0, end=T0 + 3_600)
    finally:
        ws.close()
    note = report.performance["estimator"]
    assert note["method"] == "cbpe" and note["reference_rows"] == 600  # the test split
    assert note["reference_source"] == "test_split"
    assert set(note["calibrated"]) <= {1} and "skipped" not in note
    proba = model.predict_proba(frame)[:, 1]
    # A calibrated logistic model: the estimate is the mean chance of being right.
    expected = np.mean(np.maximum(proba, 1 - proba))
    assert report.performance["estimated"]["accuracy"]["value"] == pytest.approx(
        expected, abs=0.02)
