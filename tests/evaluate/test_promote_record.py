"""Every promotion attempt leaves one ``model.promote`` audit entry with each
gate's verdict, and :func:`promotions` reads them back."""

from __future__ import annotations

import json

import pytest
from test_promote import CHAMPION_RULE, _data, _promote, register_model, row_counts

from shipyard.errors import DataError
from shipyard.evaluate import PROMOTE_ACTION, GateResult, promotions
from shipyard.security import canonical_json

POLICY = {**CHAMPION_RULE, "metrics": {"accuracy": {"min": 0.7}},
          "fairness": {"max_demographic_parity_difference": 0.5}}


@pytest.fixture
def test_set(workspace):
    return workspace.datasets.register("fraud_test", _data(600, 7)).ref


def _attempt(ws, ref, test_set, **kw):
    """Promote, and return the result with the one audit entry it added."""
    before = row_counts(ws)["audit_log"]
    result = _promote(ws, ref, test_set, sensitive=["group"], **kw)
    new = [e for e in ws.audit.entries() if e.seq > before]
    assert [e.action for e in new].count(PROMOTE_ACTION) == 1, "one attempt, one record"
    return result, new[-1]


def _same_verdicts(record, result) -> None:
    assert record.gates == result.gates  # names, verdicts, figures, reasons
    for got, want in zip(record.gates.checks, result.gates.checks, strict=True):
        assert got.rule == want.rule and got.rule
        assert got.details == json.loads(canonical_json(want.details))


def test_a_passing_promotion_records_every_gate(workspace, test_set):
    register_model(workspace, "fraud", "weak")
    workspace.models.set_alias("fraud", "champion", 1)
    better = register_model(workspace, "fraud", "good")
    result, entry = _attempt(workspace, better.ref, test_set, policy=POLICY, actor="alice")
    assert result.promoted and result.passed
    assert entry.object == "model:fraud" and entry.actor == "alice" and entry.reason is None
    (record,) = promotions(workspace, "fraud")
    assert (record.outcome, record.candidate, record.version, record.alias, record.champion,
            record.dataset, record.target) == ("promoted", "fraud@2", 2, "champion", "fraud@1",
                                               test_set, "label")
    assert record.moved and record.passed and record.seq == entry.seq == result.audit_seq
    _same_verdicts(record, result)
    names = [c.name for c in record.gates.checks]
    assert names == ["metrics.accuracy.min", "fairness.max_demographic_parity_difference",
                     "champion.paired_bootstrap"]
    champion = record.gates.checks[2].details
    assert champion["test"] == "paired_bootstrap" and 0 < champion["p_value"] < 0.05
    assert champion["ci_low"] > 0 and champion["ci_level"] == pytest.approx(0.95)
    fairness = record.gates.checks[1].details
    assert set(fairness["values"]) == {"group"} and fairness["worst"] == "group"
    assert len(canonical_json(entry.details)) < 4000  # no per-row data
    assert workspace.audit.verify().ok


def test_a_refused_promotion_records_its_failed_gates_and_moves_nothing(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    worse = register_model(workspace, "fraud", "weak")
    result, entry = _attempt(workspace, worse.ref, test_set, policy=POLICY)
    assert not result.promoted and workspace.models.get("fraud@champion").version == 1
    (record,) = promotions(workspace, "fraud", version=2)
    assert record.outcome == "refused" and not record.moved and not record.passed
    assert record.champion == "fraud@1" and record.override_reason is None
    assert record.seq == entry.seq == result.audit_seq and entry.reason is None
    _same_verdicts(record, result)
    failed = {c.name: c for c in record.gates.failed}
    assert "champion.paired_bootstrap" in failed
    assert failed["champion.paired_bootstrap"].observed < 0
    assert failed["champion.paired_bootstrap"].details["p_value"] >= 0.05
    assert record.evaluation_run is None  # the stand-in evaluation records no run
    assert workspace.audit.verify().ok


@pytest.mark.parametrize("test", ["paired_bootstrap", "mcnemar"])
def test_an_override_records_the_reason_and_the_failed_gates(workspace, test_set, test):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    worse = register_model(workspace, "fraud", "weak")
    reason = "incident 42 <script>alert(1)</script>; failed gates: none"
    result, entry = _attempt(workspace, worse.ref, test_set, override_reason=reason,
                             actor="bob", policy={**POLICY, "champion": {
                                 "metric": "accuracy", "test": test}})
    assert result.overridden and workspace.models.get("fraud@champion").version == 2
    assert entry.reason == reason and entry.actor == "bob"
    (record,) = promotions(workspace, "fraud", alias="champion")
    assert record.outcome == "overridden" and record.moved and not record.passed
    assert record.override_reason == reason
    _same_verdicts(record, result)
    champion = record.gates.checks[-1]
    assert not champion.passed and champion.details["test"] == test
    assert "p_value" in champion.details
    # the alias move keeps its own entry; the attempt has exactly one record
    assert [e.action for e in workspace.audit.entries("model", "fraud")][-2:] == [
        "model.alias.set", PROMOTE_ACTION]
    assert workspace.audit.verify().ok


def test_an_error_after_evaluation_is_recorded_and_raised(workspace, test_set):
    register_model(workspace, "fraud", "good")

    def broken(ws, ref, dataset_ref, *, target, sensitive=()):
        raise DataError("the evaluation ran out of <rows>")

    before = row_counts(workspace)
    with pytest.raises(DataError, match="ran out"):
        _promote(workspace, "fraud@1", test_set, evaluate_fn=broken)
    assert row_counts(workspace) == {**before, "audit_log": before["audit_log"] + 1}
    (record,) = promotions(workspace, "fraud")
    assert record.outcome == "error" and not record.moved
    assert record.error == "DataError: the evaluation ran out of <rows>"
    assert record.gates == GateResult() and not record.passed


def test_refusals_before_evaluation_and_no_op_attempts_record_nothing(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    before = row_counts(workspace)
    assert _promote(workspace, "fraud@1", test_set).already
    with pytest.raises(DataError, match="has no column 'sex'"):
        _promote(workspace, "fraud@1", test_set, to="staging", sensitive=["sex"])
    assert row_counts(workspace) == before and promotions(workspace, "fraud") == []


def test_promotions_filter_and_limit(workspace, test_set):
    register_model(workspace, "fraud", "good")
    register_model(workspace, "fraud", "dummy")
    rule = {"metrics": {"accuracy": {"min": 0.7}}}
    _promote(workspace, "fraud@1", test_set, policy=rule)                    # promoted
    _promote(workspace, "fraud@2", test_set, policy=rule)                    # refused
    _promote(workspace, "fraud@2", test_set, policy=rule, to="staging",
             override_reason="canary")                                       # overridden
    records = promotions(workspace, "fraud")
    assert [(r.version, r.alias, r.outcome) for r in records] == [
        (1, "champion", "promoted"), (2, "champion", "refused"), (2, "staging", "overridden")]
    assert [r.outcome for r in promotions(workspace, "fraud", version=2)] == [
        "refused", "overridden"]
    assert [r.outcome for r in promotions(workspace, "fraud", version=2, limit=1)] == [
        "overridden"]
    assert [r.version for r in promotions(workspace, "fraud", limit=2)] == [2, 2]
    assert [r.alias for r in promotions(workspace, "fraud", alias="staging")] == ["staging"]
    assert promotions(workspace, "other") == []
    assert records[0].to_dict()["gates"] == records[0].gates.to_dict()
    assert workspace.audit.verify().ok


def test_other_gate_keepers_write_the_same_record(workspace):
    from shipyard.evaluate import GateCheck, record_promotion
    from shipyard.registry import RegistryError

    gates = GateResult([GateCheck("champion.paired_bootstrap", False, -0.01, 0.0, "worse",
                                  rule="accuracy improvement > 0",
                                  details={"p_value": 0.8})])
    seq = record_promotion(workspace, "fraud@4", alias="champion", outcome="refused",
                           gates=gates, dataset="holdout@2", champion="fraud@3",
                           actor="retrainer", via="retrain")
    (record,) = promotions(workspace, "fraud")
    assert (record.seq, record.via, record.actor, record.version) == (seq, "retrain",
                                                                      "retrainer", 4)
    assert record.gates == gates and record.gates.checks[0].details == {"p_value": 0.8}
    with pytest.raises(RegistryError, match="name@N"):
        record_promotion(workspace, "fraud@champion", alias="champion", outcome="refused",
                         gates=gates, dataset=None)
    with pytest.raises(RegistryError, match="unknown promotion outcome"):
        record_promotion(workspace, "fraud@4", alias="champion", outcome="maybe",
                         gates=gates, dataset=None)
    assert len(promotions(workspace, "fraud")) == 1 and workspace.audit.verify().ok
