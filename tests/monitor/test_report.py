"""One window's report, end to end: a model trained with ``ws.train``, its
traffic written by a real PredictionLog, the report computed by streaming
the log. Quiet on traffic like the training data; alerts on drift, broken
data and a performance drop; estimates performance before labels."""

from __future__ import annotations

import json
import tracemalloc

import datasketches  # noqa: F401  (a dev dependency: fail loudly if missing)
import numpy as np
import pytest

from shipyard import Workspace
from shipyard.monitor import MonitorPolicy, MonitorReport, build_report, windows

from .traffic import T0, Clock, install, log_feedback, log_requests
from .trained import people, train_people

HOUR = 3600.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = Workspace.open(tmp_path_factory.mktemp("report") / "home")
    version = train_people(ws)
    yield ws, version, version.load()
    ws.close()


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    install(monkeypatch, clock)
    return clock


def send(ws, clock, model, frame, *, hour: int, prefix: str, per_request: int = 100, **kw):
    """Log ``frame`` (inputs only) as requests spread over one hour after T0."""
    inputs = frame[["age", "income", "hours", "city", "sex"]]
    parts = [inputs.iloc[i:i + per_request].reset_index(drop=True)
             for i in range(0, len(inputs), per_request)]
    step = (HOUR - 1) / max(len(parts), 1)
    return log_requests(ws.settings.home, clock, "monitored",
                        [(T0 + hour * HOUR + i * step, p) for i, p in enumerate(parts)],
                        scorer=model, prefix=prefix, **kw)


def window(hour: int) -> dict:
    return {"start": T0 + hour * HOUR, "end": T0 + (hour + 1) * HOUR}


def test_traffic_like_the_training_data_is_ok(trained, clock):
    ws, _, model = trained
    send(ws, clock, model, people(3_000, seed=10), hour=0, prefix="same")
    counts = ws.counts()
    report = build_report(ws, "monitored", **window(0))
    # Computation only: nothing stored but, once, the fitted performance estimators.
    assert ws.counts() == {**counts, "audit entries": counts["audit entries"] + 1}
    assert ws.audit.entries()[-1].action == "model.performance"
    counts = ws.counts()
    again = build_report(ws, "monitored", **window(0))  # reads them back
    assert again.performance == report.performance
    assert ws.counts() == counts
    assert report.verdict == "ok" and report.reasons == []
    assert (report.version, report.window["n"]) == (1, 3_000)
    assert set(report.drift) == {"age", "income", "hours", "city", "sex", "prediction", "score"}
    assert not any(d["drifted"] for d in report.drift.values())
    assert report.drift["score"]["role"] == "output" and report.drift["age"]["test"] == "ks"
    assert report.dataset_drift["share"] == 0 and not report.dataset_drift["drifted"]
    multivariate = report.dataset_drift["multivariate"]
    assert set(multivariate) == {"domain_classifier", "pca_reconstruction"}
    assert not any(m["drifted"] for m in multivariate.values())
    assert not any(q["failed"] for q in report.quality.values())
    assert report.quality["missing_rate"]["detail"]["income"]["current"] == pytest.approx(
        0.05, abs=0.015)
    performance = report.performance
    assert performance["realized"] == {} and performance["labelled"] == 0
    assert performance["headline"] == "roc_auc"
    assert performance["reference"]["roc_auc"]["source"] == "training"
    assert performance["estimated"]["roc_auc"]["value"] == pytest.approx(
        performance["reference"]["roc_auc"]["value"], abs=0.06)
    data = report.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert MonitorReport.from_dict(data).to_dict() == data


def test_shifted_traffic_is_dataset_drift(trained, clock):
    ws, _, model = trained
    shifted = people(3_000, seed=11, age_shift=12, cities=[0.1, 0.1, 0.2, 0.6])
    send(ws, clock, model, shifted, hour=1, prefix="shift")
    report = build_report(ws, "monitored", **window(1))
    drifted = {c for c, d in report.drift.items() if d["drifted"]}
    assert {"age", "city", "prediction", "score"} <= drifted
    assert not {"income", "hours", "sex"} & drifted
    assert report.drift["age"]["effect_name"] in ("psi", "wasserstein_std")
    assert report.dataset_drift["drifted"] and report.dataset_drift["share"] == pytest.approx(0.4)
    assert report.dataset_drift["multivariate"]["domain_classifier"]["drifted"]
    assert report.verdict == "alert" and report.reasons[0].startswith("dataset drift")


def test_labels_give_realized_performance_that_cbpe_estimated(trained, clock):
    ws, version, model = trained
    traffic = people(4_000, seed=12)
    ids = send(ws, clock, model, traffic, hour=2, prefix="lab")
    labels = [traffic["y"].iloc[i * 100:(i + 1) * 100].tolist() for i in range(len(ids))]
    order = np.random.default_rng(0).permutation(len(ids))  # out of order, hours later
    log_feedback(ws.settings.home, clock,
                 [(T0 + 2 * HOUR + 3 * HOUR + k, ids[i], labels[i]) for k, i in enumerate(order)],
                 flush_every=7)
    report = build_report(ws, "monitored", **window(2))
    performance = report.performance
    assert performance["labelled"] == 4_000
    realized, estimated = performance["realized"], performance["estimated"]
    X = traffic[list(version.signature and [c["name"] for c in version.signature["inputs"]])]
    from sklearn.metrics import accuracy_score, roc_auc_score

    assert realized["accuracy"]["value"] == pytest.approx(
        accuracy_score(traffic["y"], model.predict(X)))
    assert realized["roc_auc"]["value"] == pytest.approx(
        roc_auc_score(traffic["y"], model.predict_proba(X)[:, 1]))
    assert realized["roc_auc"]["ci_low"] < realized["roc_auc"]["value"] < realized["roc_auc"][
        "ci_high"]
    assert estimated["accuracy"]["value"] == pytest.approx(realized["accuracy"]["value"],
                                                           abs=0.03)
    assert estimated["roc_auc"]["value"] == pytest.approx(realized["roc_auc"]["value"], abs=0.03)
    assert report.verdict == "ok"
    # Labels that no longer follow the inputs (concept drift): realized ROC-AUC drops.
    flipped = [[1 - v for v in part] for part in labels]
    log_feedback(ws.settings.home, clock,
                 [(T0 + 2 * HOUR + 5 * HOUR + k, ids[k], flipped[k]) for k in range(len(ids))])
    report = build_report(ws, "monitored", **window(2))
    assert report.performance["realized"]["roc_auc"]["value"] < 0.5
    assert report.performance["degraded"]["realized"]["roc_auc"]
    assert report.verdict == "alert"
    assert "realized roc_auc below the reference" in report.reasons
    assert report.dataset_drift["drifted"] is False  # the inputs did not move


def test_broken_data_fails_the_quality_checks(trained, clock):
    ws, _, model = trained
    broken = people(3_000, seed=13)
    rng = np.random.default_rng(1)
    broken.loc[rng.random(3_000) < 0.4, "income"] = np.nan
    broken.loc[rng.random(3_000) < 0.05, "hours"] = 10_000.0
    broken.loc[rng.random(3_000) < 0.1, "city"] = "tokyo"
    send(ws, clock, model, broken, hour=3, prefix="broken")
    log_requests(ws.settings.home, clock, "monitored",
                 [(T0 + 3 * HOUR + 10 + i, None) for i in range(5)], status=422,
                 prefix="refused", error="row 0, field 'age': expected a number, got 'old'")
    report = build_report(ws, "monitored", **window(3))
    quality = report.quality
    assert quality["missing_rate"]["failed"]
    assert quality["missing_rate"]["detail"]["income"]["failed"]
    assert not quality["missing_rate"]["detail"]["age"]["failed"]
    assert quality["out_of_range"]["failed"]
    assert quality["out_of_range"]["detail"]["hours"]["share"] == pytest.approx(0.05, abs=0.015)
    assert quality["out_of_range"]["detail"]["hours"]["exact"]
    assert quality["unseen_categories"]["failed"]
    assert quality["unseen_categories"]["detail"]["city"]["values"] == ["tokyo"]
    assert quality["error_rate"]["value"] == pytest.approx(5 / 35)
    assert quality["error_rate"]["failed"]
    assert report.verdict == "alert"
    assert any(r.startswith("data quality failed: missing_rate, out_of_range, unseen_categories, "
                            "error_rate") for r in report.reasons)


def test_the_policy_window_is_the_newest_complete_one(trained):
    ws, _, _ = trained
    report = build_report(ws, "monitored", start=T0, policy=MonitorPolicy(window={"every": "1h"}))
    newest = windows(ws, "monitored", start=T0, every=HOUR)[-1]
    assert (report.window["start"], report.window["end"]) == (newest.start, newest.end)
    rows = build_report(ws, "monitored", start=T0, policy=MonitorPolicy(window={"rows": 1000}))
    assert rows.window["n"] >= 1000
    empty = build_report(ws, "monitored", start=T0 + 100 * HOUR, end=T0 + 101 * HOUR)
    assert empty.window["n"] == 0 and empty.verdict == "ok"


def test_a_200k_row_window_streams_in_bounded_memory(trained, clock):
    """Peak Python memory (tracemalloc: numpy, pandas, JSON objects; not
    pyarrow's own buffers, bounded by its batch size) of a report over 50k and
    over 200k rows: the larger window costs about what the smaller one does."""
    ws, _, model = trained
    big = people(200_000, seed=14, labels=False)
    send(ws, clock, model, big, hour=10, prefix="big", per_request=500)
    peaks = {}
    for label, end in (("50k", T0 + 10 * HOUR + HOUR / 4 - 1), ("200k", T0 + 11 * HOUR)):
        tracemalloc.start()
        report = build_report(ws, "monitored", start=T0 + 10 * HOUR, end=end)
        peaks[label] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.verdict == "ok", report.reasons
    assert report.window["n"] == 200_000
    print(f"peak traced memory: {peaks}")
    assert peaks["200k"] < 1.5 * peaks["50k"] + 5e6  # 4x the rows: not 4x the memory
    assert peaks["200k"] < 60e6
