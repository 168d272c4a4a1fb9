"""The performance estimators (CBPE's calibration, DLE) are fitted once, on
held-out labelled rows when there are any, and stored with the version:
later checks in any process read the stored state, never the training data."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace
from shipyard.monitor import DLE, PERFORMANCE_TAG, build_report
from shipyard.monitor._performance import STATE_FORMAT
from shipyard.registry import REFERENCE_TAG

from .test_dle import noisy
from .traffic import T0, Clock, install, log_requests
from .trained import PROJECT, people, train_people

INPUTS = ["age", "income", "hours", "city", "sex"]


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    install(monkeypatch, clock)
    return clock


def serve(ws, clock, model, name: str = "monitored", n: int = 2_000, seed: int = 21) -> None:
    frame = people(n, seed=seed, age_shift=8.0)[INPUTS]
    parts = [frame.iloc[i:i + 100].reset_index(drop=True) for i in range(0, n, 100)]
    log_requests(ws.settings.home, clock, name, [(T0 + 60 * i, p) for i, p in enumerate(parts)],
                 scorer=model, prefix=f"{name}-")


def check(home, name: str = "monitored"):
    """A report built by a fresh Workspace object (another process's view)."""
    ws = Workspace.open(home)
    try:
        return build_report(ws, name, start=T0, end=T0 + 3_600), ws.models.get(f"{name}@1")
    finally:
        ws.close()


def estimates(report) -> dict[str, float]:
    return {k: v["value"] for k, v in report.performance["estimated"].items()}


def test_later_checks_read_the_stored_state_not_the_training_data(tmp_path, clock):
    home = tmp_path / "home"
    ws = Workspace.open(home)
    version = train_people(ws)
    serve(ws, clock, version.load())
    snapshot = ws.datasets.get("people@1").snapshot_digest
    ws.close()
    assert PERFORMANCE_TAG not in version.tags

    first, stored = check(home)
    digest = stored.tags[PERFORMANCE_TAG]
    assert digest in stored.blob_digests
    ws = Workspace.open(home)
    state = json.loads(ws.artifacts.get_bytes(digest))
    assert state["format"] == STATE_FORMAT and state["calibration"]["classes"] == [0, 1]
    entries = [e for e in ws.audit.entries() if e.action == "model.performance"]
    assert len(entries) == 1 and entries[0].details["performance"] == digest
    ws.artifacts.delete(snapshot)  # the training data is gone
    with pytest.raises(Exception, match=snapshot[:12]):
        ws.datasets.load("people@1")
    ws.close()

    again, same = check(home)
    assert same.tags[PERFORMANCE_TAG] == digest  # not fitted again
    assert estimates(again) == estimates(first) and estimates(again)["roc_auc"] is not None
    assert again.performance["estimator"] == first.performance["estimator"]
    assert "skipped" not in again.performance["estimator"]
    assert again.drift["age"]["drifted"]


def test_the_labelled_rows_are_the_training_runs_held_out_test_rows(tmp_path, clock,
                                                                   monkeypatch):
    import shipyard.registry._reference as module
    from shipyard.project import parse_project
    from shipyard.train import make_split

    ws = Workspace.open(tmp_path / "home")
    try:
        data = people(3_000)
        ws.datasets.register("people", data)
        run_id = ws.train(parse_project(PROJECT)).study_run_id
        with monkeypatch.context() as patch:  # registered before references existed
            patch.setattr(module, "prepare_reference", lambda *a, **k: ({}, []))
            version = ws.models.register("monitored", run_id)
        serve(ws, clock, version.load())
        report = build_report(ws, "monitored", start=T0, end=T0 + 3_600)  # builds it now
        reference = json.loads(ws.artifacts.get_bytes(
            ws.models.get("monitored@1").tags[REFERENCE_TAG]))
        labelled = reference["labelled"]
        rows = pd.read_parquet(io.BytesIO(ws.artifacts.get_bytes(labelled["digest"])))
    finally:
        ws.close()
    spec = parse_project(PROJECT)
    split = make_split(data, "y", spec.train.split, spec.seed)
    assert labelled["source"] == "test_split" and labelled["split_digest"] == split.digest
    assert labelled["rows"] == len(split.test) == 600
    expected = data.iloc[split.test][[*INPUTS, "y"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows.sort_values(INPUTS).reset_index(drop=True),
                                  expected.sort_values(INPUTS).reset_index(drop=True),
                                  check_dtype=False)
    note = report.performance["estimator"]
    assert (note["reference_source"], note["reference_rows"]) == ("test_split", 600)


def registered_again(ws, version, name: str, edit) -> str:
    """Register ``version``'s run as model ``name`` with its reference
    document changed by ``edit`` (a version copied with its reference keeps
    it); return the new reference's digest."""
    document = json.loads(ws.artifacts.get_bytes(version.tags[REFERENCE_TAG]))
    edit(document)
    digest = ws.artifacts.put_bytes(json.dumps(document).encode())
    ws.models.register(name, version.run_id, tags={REFERENCE_TAG: digest})
    return digest


def test_an_evaluation_on_other_data_is_preferred_to_training_rows(tmp_path, clock):
    ws = Workspace.open(tmp_path / "home")
    try:
        version = train_people(ws)
        registered_again(ws, version, "evaluated",
                         lambda d: d["labelled"].update(source="training"))
        ws.datasets.register("people-test", people(1_500, seed=5))
        ws.evaluate("evaluated@1", "people-test@1", sections=["metrics"])
        ws.evaluate("evaluated@1", "people@1", sections=["metrics"])  # its own training data
        serve(ws, clock, version.load(), name="evaluated")
        report = build_report(ws, "evaluated", start=T0, end=T0 + 3_600)
    finally:
        ws.close()
    note = report.performance["estimator"]
    assert (note["reference_source"], note["reference_dataset"], note["reference_rows"]) == (
        "evaluation", "people-test@1", 1_500)


def test_a_reference_from_before_labelled_rows_fits_once_from_training_data(tmp_path, clock,
                                                                            caplog):
    home = tmp_path / "home"
    ws = Workspace.open(home)
    version = train_people(ws)
    old = registered_again(ws, version, "legacy", lambda d: d.pop("labelled"))
    serve(ws, clock, version.load(), name="legacy")
    snapshot = ws.datasets.get("people@1").snapshot_digest
    ws.close()
    with caplog.at_level(logging.WARNING, logger="shipyard.monitor"):
        first, stored = check(home, "legacy")
    assert stored.tags[REFERENCE_TAG] == old
    assert "legacy@1: its reference (built before labelled rows were stored" in caplog.text
    assert first.performance["estimator"]["reference_source"] == "training"
    assert first.performance["estimator"]["reference_rows"] == 3_000
    ws = Workspace.open(home)
    ws.artifacts.delete(snapshot)
    ws.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shipyard.monitor"):
        again, _ = check(home, "legacy")
    assert "built before" not in caplog.text
    assert estimates(again) == estimates(first)


def test_a_missing_or_foreign_state_blob_is_fitted_again_and_replaced(tmp_path, clock,
                                                                         caplog):
    """A state blob that is gone or not a state is fitted again from the
    reference's own labelled rows (never the training data), and the tag
    moves to the new blob with an audit entry naming the one it replaces;
    drift is checked all along."""
    home = tmp_path / "home"
    ws = Workspace.open(home)
    version = train_people(ws)
    foreign = ws.artifacts.put_bytes(json.dumps({"format": "something else"}).encode())
    ws.models.register("foreign", version.run_id, tags={PERFORMANCE_TAG: foreign})
    serve(ws, clock, version.load())
    serve(ws, clock, version.load(), name="foreign")
    ws.close()
    first, stored = check(home)
    gone = stored.tags[PERFORMANCE_TAG]
    ws = Workspace.open(home)
    ws.artifacts.delete(gone)
    ws.close()
    for name, old, why in (("monitored", gone, "cannot be read: "),
                           ("foreign", foreign, "not a performance state")):
        with caplog.at_level(logging.WARNING, logger="shipyard.monitor"):
            report, now = check(home, name)
        assert why in caplog.text and "fitting them again" in caplog.text
        note = report.performance["estimator"]
        assert "skipped" not in note and note["reference_source"] == "test_split"
        assert now.tags[PERFORMANCE_TAG] not in (old, None)
        ws = Workspace.open(home)
        [entry] = [e for e in ws.audit.entries("model", name, action="model.performance")
                   if e.details.get("replaces") == old]
        assert entry.details["performance"] == now.tags[PERFORMANCE_TAG]
        ws.close()
        assert report.drift["age"]["drifted"] and report.verdict != "ok"
    again, _ = check(home)
    assert estimates(again) == estimates(first)  # the same rows fit the same estimators


def test_a_stored_dle_predicts_exactly_as_the_fitted_one():
    ref = noisy(5_000, 0)
    dle = DLE({"x": "numeric", "city": "categorical"}, seed=0).fit(
        ref[["x", "city"]], 3 * ref["x"], ref["y"])
    stored = DLE.from_dict(json.loads(json.dumps(dle.to_dict())))
    window = noisy(2_000, 4, shift=1.0)
    window.loc[:5, "city"] = "mars"  # unseen
    window.loc[6:9, "city"] = None
    for a, b in zip(dle.predict_loss(window, 3 * window["x"]),
                    stored.predict_loss(window, 3 * window["x"]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert stored.reset().update(window, (3 * window["x"]).to_numpy()).result() == \
        dle.reset().update(window, (3 * window["x"]).to_numpy()).result()
