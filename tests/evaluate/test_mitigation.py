"""Fairness mitigation: per-group thresholds, tracked and registered safely."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from shipyard.errors import ConfigError, DataError, NotFoundError
from shipyard.evaluate._mitigation import ThresholdedModel, mitigate
from shipyard.store.tables import (AuditEntryRow, ModelAliasRow, ModelVersionRow,
                                    RegisteredModelRow, RunRow)

FEATURES = ["x1", "x2"]


def biased(n: int, seed: int) -> pd.DataFrame:
    """Group "a" scores higher on x1 and gets more positives."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.5, "a", "b")
    x1 = rng.normal(size=n) + np.where(group == "a", 1.0, -0.5)
    x2 = rng.normal(size=n)
    y = (x1 + 0.5 * x2 + rng.normal(0, 0.7, n) > 0.3).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "group": group, "approved": y})


def register(ws, name="credit", *, regression=False):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from shipyard.train import save_model

    frame = biased(800, 1)
    model = (LinearRegression() if regression else LogisticRegression()).fit(
        frame[FEATURES], frame["approved"])
    artifact = save_model(model, ws.artifacts)
    task = "regression" if regression else "binary"
    with ws.start_run("train") as run:
        run.set_tag("model.digest", artifact.digest)
        run.log_dict("model/signature.json", {
            "inputs": [{"name": c, "dtype": "float64", "kind": "numeric"} for c in FEATURES],
            "output": {"target": "approved", "task": task, "kind": "probabilities",
                       "classes": [0, 1]}})
    return ws.models.register(name, run.id)


def counts(ws) -> dict[str, int]:
    with ws.db.read() as s:
        return {t.__tablename__: s.execute(select(func.count()).select_from(t)).scalar()
                for t in (RegisteredModelRow, ModelVersionRow, ModelAliasRow, AuditEntryRow,
                          RunRow)}


@pytest.fixture
def fit_set(workspace):
    return workspace.datasets.register("credit_fit", biased(2000, 2)).ref


def test_threshold_mitigation_shrinks_the_parity_gap(workspace, fit_set):
    ws = workspace
    base = register(ws)
    result = mitigate(ws, base.ref, fit_set, target="approved", sensitive="group",
                      actor="carol")
    assert result.before["demographic_parity_difference"] > 0.3
    assert result.after["demographic_parity_difference"] < 0.05
    assert result.after["accuracy"] > 0.6

    # a new version of the same model, with its own run, tags and lineage
    v = result.version
    assert (v.name, v.version, v.new) == ("credit", 2, True)
    assert v.run_id == result.run_id != base.run_id
    assert v.tags["mitigation.base"] == "credit@1"
    assert v.tags["mitigation.constraint"] == "demographic_parity"
    assert v.dataset_version == "credit_fit@1"
    assert [i["name"] for i in v.signature["inputs"]] == ["x1", "x2", "group"]
    run = ws.runs.get(result.run_id)
    assert run.experiment == "mitigation" and run.status == "FINISHED"
    assert run.params["base_model"] == "credit@1" and run.params["method"] == "threshold"
    assert run.metrics["after.demographic_parity_difference"] == pytest.approx(
        result.after["demographic_parity_difference"])
    assert ws.audit.entries("model", "credit", action="model.register")[-1].actor == "carol"

    # it loads safely from the registry and predicts the same on fresh rows
    loaded = ws.models.load(v.ref)
    assert isinstance(loaded, ThresholdedModel) and loaded.base_digest == base.artifact_digest
    fresh = biased(4000, 3)
    pred = loaded.predict(fresh)
    gap = pd.Series(pred).groupby(fresh["group"]).mean().agg(np.ptp)
    base_gap = pd.Series(base.load().predict(fresh[FEATURES])).groupby(
        fresh["group"]).mean().agg(np.ptp)
    assert gap < 0.07 < 0.3 < base_gap
    assert np.array_equal(pred[:100], loaded.predict(fresh.iloc[:100]))  # per-row, not batch
    proba = loaded.predict_proba(fresh)
    assert proba.shape == (4000, 2) and np.allclose(proba.sum(1), 1)
    # the thresholds change the decision only: scores (ranking, calibration) are the base's
    np.testing.assert_allclose(proba, base.load().predict_proba(fresh[FEATURES]))
    assert set(v.blob_digests) >= set(base.blob_digests)  # gc keeps the base's blobs


def test_equalized_odds_and_register_as(workspace, fit_set):
    base = register(workspace)
    result = mitigate(workspace, base.ref, fit_set, target="approved", sensitive="group",
                      constraint="equalized_odds", register_as="credit_fair")
    assert result.version.ref == "credit_fair@1"
    assert result.after["equalized_odds_difference"] < result.before[
        "equalized_odds_difference"]


def test_the_thresholded_model_needs_the_sensitive_column_and_decides_unseen_groups_as_its_base(
        workspace, fit_set):
    base = register(workspace)
    model = workspace.models.load(mitigate(workspace, base.ref, fit_set, target="approved",
                                           sensitive="group").version.ref)
    rows = biased(200, 4)
    with pytest.raises(DataError, match="needs column\\(s\\) 'group'"):
        model.predict(rows[FEATURES])
    # a group the thresholds never saw (a new category, an empty string) gets the
    # base model's own decision, not an error
    unseen = rows.assign(group="c")
    plain = base.load()
    expected = plain.classes_[(plain.predict_proba(rows[FEATURES])[:, 1] > 0.5).astype(int)]
    np.testing.assert_array_equal(model.predict(unseen), expected)
    np.testing.assert_array_equal(model.predict(rows.assign(group="")), expected)


def test_bad_input_is_refused_and_changes_nothing(workspace, fit_set):
    ws = workspace
    base = register(ws)
    reg = register(ws, "score", regression=True)
    empty = ws.datasets.register("empty", biased(10, 0).iloc[:0]).ref
    no_x2 = ws.datasets.register("no_x2", biased(50, 0).drop(columns="x2")).ref
    one_label = ws.datasets.register("one_label", biased(200, 0).assign(approved=1)).ref
    before = counts(ws)
    with pytest.raises(DataError, match="has no column 'sex'"):
        mitigate(ws, base.ref, fit_set, target="approved", sensitive="sex")
    with pytest.raises(DataError, match="regression model"):
        mitigate(ws, reg.ref, fit_set, target="approved", sensitive="group")
    with pytest.raises(DataError, match="no rows"):
        mitigate(ws, base.ref, empty, target="approved", sensitive="group")
    with pytest.raises(DataError, match="lacks 'x2'"):
        mitigate(ws, base.ref, no_x2, target="approved", sensitive="group")
    with pytest.raises(NotFoundError):
        mitigate(ws, "credit@7", fit_set, target="approved", sensitive="group")
    with pytest.raises(ConfigError, match="unknown fairness constraint"):
        mitigate(ws, base.ref, fit_set, target="approved", sensitive="group",
                 constraint="parity")
    with pytest.raises(ConfigError, match="not available yet"):
        mitigate(ws, base.ref, fit_set, target="approved", sensitive="group",
                 method="exponentiated_gradient")
    with pytest.raises(DataError, match="single label"):
        mitigate(ws, base.ref, one_label, target="approved", sensitive="group")
    assert counts(ws) == before
    assert [v.version for v in ws.models.versions("credit")] == [1]
