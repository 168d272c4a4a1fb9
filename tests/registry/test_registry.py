"""The model registry on SQLite and PostgreSQL: versions, aliases, rollback,
archive, loading, lineage, gc, audit, and refusals that change nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import NotFoundError, ShipyardError
from shipyard.registry import RegistryError, parse_model_ref
from .trained import row_counts, train_run


# ------------------------------------------------------------------ register
def test_versions_number_from_one_per_model(workspace, runs3):
    a, b, c = runs3
    v1 = workspace.models.register("fraud", a.run_id)
    v2 = workspace.models.register("fraud", b.run_id, description="second")
    other = workspace.models.register("churn", c.run_id)
    assert (v1.ref, v2.ref, other.ref) == ("fraud@1", "fraud@2", "churn@1")
    assert v1.new and v2.new
    assert [v.version for v in workspace.models.versions("fraud")] == [1, 2]
    assert v2.description == "second" and v2.status == "READY"


def test_register_snapshots_the_run_contract(workspace):
    data = workspace.datasets.register("train_set", pd.DataFrame({"x": [1, 2, 3]}))
    run = train_run(workspace, dataset=data)
    v = workspace.models.register("fraud", run.run_id, tags={"team": "risk"}, actor="ana")
    assert v.artifact_digest == run.digest
    assert set(run.digests) <= set(v.blob_digests) and v.blob_digests[0] == run.digest
    # the lineage dataset lacks the model's columns, so the ONNX graph cannot be
    # checked against the model: it is not kept, and the tag says why
    assert v.tags["onnx"].startswith(("unsupported", "mismatch"))
    assert "onnx.digest" not in v.tags
    assert v.metrics == {"accuracy": pytest.approx(run.accuracy)}
    assert v.signature["output"] == "classification"
    assert [c["name"] for c in v.signature["inputs"]] == ["x0", "x1", "x2", "x3"]
    assert v.dataset_version == "train_set@1"
    assert {k: t for k, t in v.tags.items() if not k.startswith("onnx")} == {"team": "risk"}
    assert v.created_by == "ana"
    assert workspace.models.get("fraud@1") == v


def test_registering_the_same_model_again_returns_its_version(workspace, runs3):
    first = workspace.models.register("fraud", runs3[0].run_id)
    before = row_counts(workspace)
    again = workspace.models.register("fraud", runs3[0].run_id)
    assert again.ref == first.ref and not again.new
    assert row_counts(workspace) == before


def test_explicit_digest_and_signature_override_the_run(workspace, runs3):
    v = workspace.models.register("fraud", runs3[0].run_id, artifact_digest=runs3[1].digest,
                                  signature={"inputs": [], "output": "regression"})
    assert v.artifact_digest == runs3[1].digest and v.signature["output"] == "regression"


# ------------------------------------------------------------------- resolve
def test_refs_resolve_versions_aliases_and_latest(workspace, runs3):
    for r in runs3:
        workspace.models.register("fraud", r.run_id)
    workspace.models.set_alias("fraud", "champion", 2)
    assert workspace.models.get("fraud@2").version == 2
    assert workspace.models.get("fraud@champion").version == 2
    assert workspace.models.get("fraud@latest").version == 3
    assert workspace.models.get("fraud").version == 3
    assert workspace.models.get("fraud@2").aliases == ("champion",)
    summary = workspace.models.list()[0]
    assert (summary.name, summary.latest_version, summary.num_versions, summary.aliases) == \
        ("fraud", 3, 3, {"champion": 2})


def test_load_predicts_like_the_original(workspace, runs3):
    run = runs3[0]
    workspace.models.register("fraud", run.run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    loaded = workspace.models.load("fraud@champion")
    np.testing.assert_array_equal(loaded.predict(run.X), run.model.predict(run.X))
    np.testing.assert_allclose(loaded.predict_proba(run.X), run.model.predict_proba(run.X))


def test_lineage_goes_from_dataset_version_to_model(workspace):
    data = workspace.datasets.register("train_set", pd.DataFrame({"x": [1, 2, 3]}))
    run = train_run(workspace, dataset=data)
    workspace.models.register("fraud", run.run_id)
    lineage = workspace.models.lineage("fraud@1")
    assert lineage.dataset_versions == ("train_set@1",)
    assert lineage.dataset_version == "train_set@1"
    assert (lineage.run_id, lineage.artifact_digest) == (run.run_id, run.digest)
    assert str(lineage).startswith("train_set@1 → run ")


# ------------------------------------------------------------------- aliases
def test_rollback_walks_back_through_holders_not_back_and_forth(workspace, runs3):
    for r in runs3:
        workspace.models.register("fraud", r.run_id)
    for version in (1, 2, 3):
        workspace.models.set_alias("fraud", "champion", version, actor="ana",
                                   reason=f"promote {version}")
    assert workspace.models.rollback("fraud", "champion", reason="bad canary").version == 2
    assert workspace.models.rollback("fraud", "champion").version == 1
    with pytest.raises(RegistryError, match="no earlier holder"):
        workspace.models.rollback("fraud", "champion")
    assert workspace.models.get("fraud@champion").version == 1
    events = workspace.models.alias_history("fraud", "champion")
    assert [(e.event, e.previous_version, e.version) for e in events] == [
        ("set", None, 1), ("set", 1, 2), ("set", 2, 3), ("rollback", 3, 2), ("rollback", 2, 1)]
    assert events[0].actor == "ana" and events[3].reason == "bad canary"


def test_rollback_after_a_new_set_undoes_that_set(workspace, runs3):
    for r in runs3:
        workspace.models.register("fraud", r.run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    workspace.models.set_alias("fraud", "champion", 2)
    workspace.models.rollback("fraud", "champion")  # back to 1
    workspace.models.set_alias("fraud", "champion", 3)
    assert workspace.models.rollback("fraud", "champion").version == 1


def test_setting_the_same_holder_changes_nothing(workspace, runs3):
    workspace.models.register("fraud", runs3[0].run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    before = row_counts(workspace)
    workspace.models.set_alias("fraud", "champion", 1)
    assert row_counts(workspace) == before


def test_removed_alias_is_gone_and_its_history_cleared(workspace, runs3):
    for r in runs3[:2]:
        workspace.models.register("fraud", r.run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    workspace.models.set_alias("fraud", "champion", 2)
    workspace.models.remove_alias("fraud", "champion", reason="retired")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        workspace.models.get("fraud@champion")
    workspace.models.set_alias("fraud", "champion", 2)
    with pytest.raises(RegistryError, match="no earlier holder"):
        workspace.models.rollback("fraud", "champion")


# ------------------------------------------------------------------- archive
def test_archived_version_gets_no_alias_and_is_not_latest(workspace, runs3):
    for r in runs3[:2]:
        workspace.models.register("fraud", r.run_id)
    assert workspace.models.archive("fraud", 2, reason="leaky feature").status == "ARCHIVED"
    assert workspace.models.get("fraud@latest").version == 1
    assert workspace.models.get("fraud@2").status == "ARCHIVED"  # still reachable by number
    before = row_counts(workspace)
    with pytest.raises(RegistryError, match="archived"):
        workspace.models.set_alias("fraud", "champion", 2)
    assert row_counts(workspace) == before
    workspace.models.restore("fraud", 2)
    assert workspace.models.set_alias("fraud", "champion", 2).version == 2


def test_alias_holder_is_archived_only_with_force(workspace, runs3):
    workspace.models.register("fraud", runs3[0].run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    before = row_counts(workspace)
    with pytest.raises(RegistryError, match="holds alias champion"):
        workspace.models.archive("fraud", 1)
    assert row_counts(workspace) == before
    assert workspace.models.archive("fraud", 1, force=True).aliases == ()
    with pytest.raises(NotFoundError):
        workspace.models.get("fraud@champion")
    with pytest.raises(NotFoundError, match="no READY version"):
        workspace.models.get("fraud")


def test_rollback_refuses_an_archived_previous_holder(workspace, runs3):
    for r in runs3[:2]:
        workspace.models.register("fraud", r.run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    workspace.models.set_alias("fraud", "champion", 2)
    workspace.models.archive("fraud", 1)
    with pytest.raises(RegistryError, match="archived"):
        workspace.models.rollback("fraud", "champion")
    assert workspace.models.get("fraud@champion").version == 2


# ----------------------------------------------------------------------- gc
def test_gc_keeps_every_blob_of_registered_versions(workspace, runs3):
    run = runs3[0]
    workspace.models.register("fraud", run.run_id)
    workspace.runs.flush()
    report = workspace.gc(grace_seconds=0)
    assert not set(run.digests) & set(report.deleted)
    # runs 1 and 2 were never registered, and nothing else points at their models
    assert set(runs3[1].digests) <= set(report.deleted)
    loaded = workspace.models.load("fraud@1")
    np.testing.assert_array_equal(loaded.predict(run.X), run.model.predict(run.X))


# -------------------------------------------------------------------- audit
def test_every_registry_change_is_audited(workspace, runs3):
    for r in runs3[:2]:
        workspace.models.register("fraud", r.run_id, actor="ana", reason="trained")
    workspace.models.set_alias("fraud", "champion", 1, actor="bob", reason="best auc")
    workspace.models.set_alias("fraud", "champion", 2, actor="bob")
    workspace.models.rollback("fraud", "champion", actor="carol", reason="incident 42")
    workspace.models.remove_alias("fraud", "champion", actor="carol")
    workspace.models.archive("fraud", 2, actor="dan")
    entries = workspace.audit.entries("model", "fraud")
    assert [e.action for e in entries] == [
        "model.register", "model.register", "model.alias.set", "model.alias.set",
        "model.alias.rollback", "model.alias.remove", "model.archive"]
    assert entries[4].actor == "carol" and entries[4].reason == "incident 42"
    assert entries[4].details == {"alias": "champion", "version": 1, "previous_version": 2}
    assert entries[0].details["run_id"] == runs3[0].run_id
    assert workspace.audit.verify().ok


def test_actor_defaults_to_shipyard_actor(workspace, runs3, monkeypatch):
    monkeypatch.setenv("SHIPYARD_ACTOR", "ci-bot")
    v = workspace.models.register("fraud", runs3[0].run_id)
    assert v.created_by == "ci-bot"
    assert workspace.audit.entries()[-1].actor == "ci-bot"


# ----------------------------------------------------------------- refusals
HOSTILE = ["", "1fraud", "../etc", "fraud; DROP TABLE runs", "a" * 201, "fr\x00aud",
           "fraud\n", "fraud@@1", "ünïcode", None, 7]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_model_names_are_refused(workspace, runs3, name):
    before = row_counts(workspace)
    with pytest.raises(ShipyardError):
        workspace.models.register(name, runs3[0].run_id)
    with pytest.raises(ShipyardError):
        workspace.models.get(name)
    assert row_counts(workspace) == before


@pytest.mark.parametrize("alias", ["latest", "Champion", "1st", "", "a" * 65, "a b", "x\n",
                                   "ch@mp", None])
def test_invalid_aliases_are_refused(workspace, runs3, alias):
    workspace.models.register("fraud", runs3[0].run_id)
    before = row_counts(workspace)
    with pytest.raises(RegistryError):
        workspace.models.set_alias("fraud", alias, 1)
    assert row_counts(workspace) == before


def test_bad_requests_change_nothing(workspace, runs3):
    workspace.models.register("fraud", runs3[0].run_id)
    workspace.models.set_alias("fraud", "champion", 1)
    no_model = train_run(workspace, seed=5, digest_tag=False)
    no_signature = train_run(workspace, seed=6, signature=False)
    before = row_counts(workspace)
    m = workspace.models
    failures = [
        (NotFoundError, lambda: m.register("fraud", "0" * 32)),
        (NotFoundError, lambda: m.register("fraud", "not-a-run")),
        (RegistryError, lambda: m.register("fraud", no_model.run_id)),
        (RegistryError, lambda: m.register("fraud", no_signature.run_id)),
        (RegistryError, lambda: m.register("fraud", runs3[1].run_id, artifact_digest="abc")),
        (NotFoundError, lambda: m.register("fraud", runs3[1].run_id,
                                           artifact_digest="f" * 64)),
        (RegistryError, lambda: m.register("fraud", runs3[1].run_id,
                                           signature={"x": float("nan")})),
        (RegistryError, lambda: m.register("fraud", runs3[1].run_id, tags={"": "x"})),
        (NotFoundError, lambda: m.get("nope")),
        (NotFoundError, lambda: m.get("fraud@9")),
        (NotFoundError, lambda: m.get("fraud@challenger")),
        (RegistryError, lambda: m.get("fraud@-1")),
        (RegistryError, lambda: m.get("fraud@1.0")),
        (RegistryError, lambda: m.get("fraud@99999999999")),
        (RegistryError, lambda: m.get(42)),
        (NotFoundError, lambda: m.set_alias("nope", "champion", 1)),
        (NotFoundError, lambda: m.set_alias("fraud", "challenger", 9)),
        (RegistryError, lambda: m.set_alias("fraud", "challenger", 0)),
        (RegistryError, lambda: m.set_alias("fraud", "challenger", True)),
        (NotFoundError, lambda: m.remove_alias("fraud", "challenger")),
        (NotFoundError, lambda: m.rollback("fraud", "challenger")),
        (RegistryError, lambda: m.rollback("fraud", "champion")),
        (NotFoundError, lambda: m.archive("fraud", 9)),
        (ShipyardError, lambda: m.set_alias("fraud", "challenger", 1, actor="")),
        (ShipyardError, lambda: m.set_alias("fraud", "challenger", 1, reason="x\x00")),
        (NotFoundError, lambda: m.versions("nope")),
    ]
    for error, call in failures:
        with pytest.raises(error):
            call()
        assert row_counts(workspace) == before, call
    assert workspace.audit.verify().ok


def test_a_failed_run_is_not_registered(workspace):
    from shipyard.train import save_model
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0], [1]], [0, 1])
    artifact = save_model(model, workspace.artifacts)
    with pytest.raises(ValueError), workspace.start_run("train") as run:
        run.set_tag("model.digest", artifact.digest)
        raise ValueError("boom")
    with pytest.raises(RegistryError, match="FAILED"):
        workspace.models.register("fraud", run.id)


def test_parse_model_ref():
    assert parse_model_ref("a.b-c_d@my-alias_2") == ("a.b-c_d", "my-alias_2")
    with pytest.raises(RegistryError):
        parse_model_ref("fraud@")
