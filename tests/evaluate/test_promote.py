"""Promotion through gates, end to end on real registered models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import DataError, NotFoundError
from shipyard.evaluate._gates import GatePolicy
from shipyard.evaluate._promote import promote, promotions
from shipyard.registry import RegistryError

from shipyard.store.tables import (AuditEntryRow, ModelAliasEventRow, ModelAliasRow,
                                    ModelVersionBlobRow, ModelVersionRow, RegisteredModelRow)

FEATURES = [f"x{i}" for i in range(4)]
REGISTRY_TABLES = (RegisteredModelRow, ModelVersionRow, ModelVersionBlobRow, ModelAliasRow,
                   ModelAliasEventRow, AuditEntryRow)
CHAMPION_RULE = {"champion": {"metric": "accuracy", "test": "paired_bootstrap"}}


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.8 * X[:, 1] - 0.5 * X[:, 2] + rng.normal(0, 0.4, n) > 0).astype(int)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["group"] = np.where(rng.random(n) < 0.5, "a", "b")
    frame["label"] = y
    return frame


def row_counts(ws) -> dict[str, int]:
    """Rows of each registry table and the audit log."""
    from sqlalchemy import func, select

    with ws.db.read() as s:
        return {t.__tablename__: s.execute(select(func.count()).select_from(t)).scalar()
                for t in REGISTRY_TABLES}


def assert_only_recorded(ws, before: dict[str, int], outcome: str = "refused") -> None:
    """A refusal changes no registry row; it adds one audit entry: its record."""
    after = row_counts(ws)
    assert after == {**before, "audit_log": before["audit_log"] + 1}
    (entry,) = ws.audit.entries(limit=1)
    assert entry.action == "model.promote" and entry.details["outcome"] == outcome


def register_model(ws, name: str, quality: str, *, seed: int = 0):
    """Train a model of some quality on fresh rows and register it like training does."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    from shipyard.train import save_model

    train = _data(400, 100 + seed)
    X, y = train[FEATURES], train["label"]
    if quality == "good":
        model = LogisticRegression(C=1.0 + seed * 1e-3).fit(X, y)
    elif quality == "weak":  # one informative feature out of three
        model = LogisticRegression().fit(X.assign(x1=0.0, x2=0.0), y)
    else:
        model = DummyClassifier(strategy="most_frequent").fit(X, y)
    artifact = save_model(model, ws.artifacts)
    with ws.start_run("train") as run:
        run.set_tag("model.digest", artifact.digest)
        run.log_dict("model/signature.json", {
            "inputs": [{"name": c, "dtype": "float64", "kind": "numeric"} for c in FEATURES],
            "output": {"target": "label", "task": "binary", "kind": "probabilities",
                       "classes": [0, 1]}})
    return ws.models.register(name, run.id)


def fake_evaluate(ws, ref, dataset_ref, *, target, sensitive=()):
    """Stands in for shipyard.evaluate.evaluate: accuracy and a fairness gap."""
    frame = ws.datasets.load(dataset_ref)
    pred = ws.models.load(ref).predict(frame[FEATURES])
    report = {"task": "binary",
              "metrics": {"accuracy": {"value": float(np.mean(pred == frame[target]))}}}
    report["fairness"] = {
        s: {"demographic_parity_difference": float(
            pd.Series(pred).groupby(frame[s].to_numpy()).mean().agg(np.ptp))}
        for s in sensitive}
    return report


@pytest.fixture
def test_set(workspace):
    return workspace.datasets.register("fraud_test", _data(600, 7)).ref


def _promote(ws, ref, test_set, policy=CHAMPION_RULE, **kw):
    kw.setdefault("evaluate_fn", fake_evaluate)
    return promote(ws, ref, policy=GatePolicy.model_validate(policy), dataset_ref=test_set,
                   target="label", **kw)


def test_first_promotion_has_no_champion_to_beat(workspace, test_set):
    v1 = register_model(workspace, "fraud", "good")
    result = _promote(workspace, v1.ref, test_set, actor="alice")
    assert result.promoted and not result.overridden and result.previous is None
    assert result.gates.checks[0].reason == "no current champion"
    assert workspace.models.get("fraud@champion").version == 1
    entry = workspace.audit.entries("model", "fraud", action="model.alias.set")[-1]
    assert entry.actor == "alice" and entry.reason.startswith("promotion gates passed on "
                                                              "fraud_test@1: 1/1 gates passed")


def test_refuses_worse_challenger(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    worse = register_model(workspace, "fraud", "weak")
    before = row_counts(workspace)
    result = _promote(workspace, worse.ref, test_set)
    assert not result.promoted and not result.passed and result.previous == "fraud@1"
    check = result.gates.checks[0]
    assert check.name == "champion.paired_bootstrap" and check.observed < 0
    assert workspace.models.get("fraud@champion").version == 1
    assert_only_recorded(workspace, before)


def test_better_challenger_replaces_champion(workspace, test_set):
    register_model(workspace, "fraud", "weak")
    workspace.models.set_alias("fraud", "champion", 1)
    better = register_model(workspace, "fraud", "good")
    result = _promote(workspace, better.ref, test_set, policy={
        **CHAMPION_RULE, "metrics": {"accuracy": {"min": 0.8}}})
    assert result.promoted and result.passed and result.previous == "fraud@1"
    assert workspace.models.get("fraud@champion").version == 2
    assert [e.version for e in workspace.models.alias_history("fraud", "champion")] == [1, 2]


@pytest.mark.parametrize("test", ["paired_bootstrap", "mcnemar"])
def test_an_equal_challenger_does_not_replace_the_champion(workspace, test_set, test):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    twin = register_model(workspace, "fraud", "good", seed=1)  # a retrain on other rows
    before = row_counts(workspace)
    result = _promote(workspace, twin.ref, test_set,
                      policy={"champion": {"metric": "accuracy", "test": test,
                                           "min_improvement": 0.01}})
    assert not result.promoted
    assert_only_recorded(workspace, before)


def test_failed_floor_blocks_even_without_a_champion(workspace, test_set):
    dummy = register_model(workspace, "fraud", "dummy")
    before = row_counts(workspace)
    result = _promote(workspace, dummy.ref, test_set,
                      policy={"metrics": {"accuracy": {"min": 0.8}, "f1": {"min": 0.5}}})
    assert not result.promoted
    assert [(c.name, c.reason) for c in result.gates.failed][1] == ("metrics.f1.min",
                                                                    "not measured")
    assert_only_recorded(workspace, before)
    with pytest.raises(NotFoundError):
        workspace.models.get("fraud@champion")


def test_override_moves_the_alias_and_audits_the_failed_gates(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    worse = register_model(workspace, "fraud", "weak")
    result = _promote(workspace, worse.ref, test_set, override_reason="incident 42 hotfix",
                      actor="bob", sensitive=["group"],
                      policy={**CHAMPION_RULE,
                              "fairness": {"max_demographic_parity_difference": 0.5}})
    assert result.promoted and result.overridden and not result.passed
    assert workspace.models.get("fraud@champion").version == 2
    entry = workspace.audit.entries("model", "fraud", action="model.alias.set")[-1]
    assert entry.actor == "bob" and entry.details["version"] == 2
    assert entry.reason.startswith("override: incident 42 hotfix; failed gates: "
                                   "champion.paired_bootstrap;")
    assert "fairness" not in entry.reason.split(";")[1]  # it passed
    assert workspace.audit.verify().ok


def test_already_holding_the_alias_changes_nothing(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    before = row_counts(workspace)
    result = _promote(workspace, "fraud@1", test_set)
    assert result.already and result.promoted and row_counts(workspace) == before


def test_bad_input_is_refused_and_changes_nothing(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    register_model(workspace, "fraud", "weak")
    ws = workspace
    empty = ws.datasets.register("empty", _data(5, 0).iloc[:0]).ref
    other = ws.datasets.register("other", _data(50, 0).drop(columns="x3")).ref
    before = row_counts(ws)
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        _promote(ws, "nope@1", test_set)
    with pytest.raises(NotFoundError, match="has no version 9"):
        _promote(ws, "fraud@9", test_set)
    with pytest.raises(NotFoundError, match="has no alias 'staging'"):
        _promote(ws, "fraud@staging", test_set)
    with pytest.raises(RegistryError, match="not a valid alias"):
        _promote(ws, "fraud@2", test_set, to="Champion!")
    with pytest.raises(RegistryError, match="reserved"):
        _promote(ws, "fraud@2", test_set, to="latest")
    with pytest.raises(NotFoundError):
        _promote(ws, "fraud@2", "no_such_data@1")
    with pytest.raises(DataError, match="has no column 'sex'"):
        _promote(ws, "fraud@2", test_set, sensitive=["sex"])
    with pytest.raises(DataError, match="has no column 'target'"):
        promote(ws, "fraud@2", policy=GatePolicy(), dataset_ref=test_set, target="target",
                evaluate_fn=fake_evaluate)
    with pytest.raises(DataError, match="has no rows"):
        _promote(ws, "fraud@2", empty)
    with pytest.raises(DataError, match="does not match the schema of fraud@2: it lacks 'x3'"):
        _promote(ws, "fraud@2", other)
    ws.models.archive("fraud", 2)
    counts = row_counts(ws)
    with pytest.raises(RegistryError, match="ARCHIVED"):
        _promote(ws, "fraud@2", test_set, override_reason="force it")
    assert row_counts(ws) == counts
    assert counts["audit_log"] == before["audit_log"] + 1  # only the archive
    assert ws.models.get("fraud@champion").version == 1


# ------------------------------------------------- the real evaluation + CLI
def test_real_evaluation_refuses_a_worse_challenger(workspace, test_set):
    register_model(workspace, "fraud", "good")
    workspace.models.set_alias("fraud", "champion", 1)
    worse = register_model(workspace, "fraud", "weak")
    before = row_counts(workspace)
    result = promote(workspace, worse.ref, policy=GatePolicy.model_validate({
        **CHAMPION_RULE, "metrics": {"accuracy": {"min": 0.6, "use": "ci_low"}},
        "fairness": {"max_demographic_parity_difference": 0.5},
        "latency": {"single_p99_ms": 1000, "batch_p99_ms": 10000},
        "robustness": {"min_accuracy_under_noise": 0.5}}),
        dataset_ref=test_set, target="label", sensitive=["group"])
    assert [c.name for c in result.gates.failed] == ["champion.paired_bootstrap"]
    assert not result.promoted
    assert_only_recorded(workspace, before)
    (record,) = promotions(workspace, "fraud")
    run = workspace.runs.search("tags.model = 'fraud@2'", experiment="evaluation")[0]
    assert record.evaluation_run == run.id
    assert record.headline["metric"] == run.tags["headline"] == result.report["headline"]["metric"]
    assert record.gates == result.gates and record.gates.checks[0].rule is not None


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    from rich.console import Console

    from shipyard import Workspace

    monkeypatch.setattr("shipyard.cli._promote.console",
                        Console(width=200, force_terminal=False, color_system=None))
    monkeypatch.setenv("SHIPYARD_ACTOR", "ci")
    home = tmp_path / "home"
    ws = Workspace.open(home)
    ws.datasets.register("fraud_test", _data(600, 7))
    register_model(ws, "fraud", "good")
    ws.models.set_alias("fraud", "champion", 1)
    register_model(ws, "fraud", "weak")
    register_model(ws, "fraud", "good", seed=5)
    ws.close()
    project = tmp_path / "shipyard.yaml"
    project.write_text("dataset: {ref: fraud_test@1}\ntarget: label\ntask: binary\n"
                       "features: {sensitive: [group]}\n"
                       "gates:\n  champion: {metric: accuracy, min_improvement: 0.02}\n"
                       "  fairness: {max_demographic_parity_difference: 0.5}\n")
    return str(home), project


def test_cli_exits_1_on_failed_gates_and_0_with_an_override(cli_home, tmp_path):
    from typer.testing import CliRunner

    from shipyard import Workspace
    from shipyard.cli import app

    home, project = cli_home
    runner = CliRunner()
    args = ["--home", home, "promote", "fraud@2", "--dataset", "fraud_test@1",
            "--policy", str(project)]
    out = runner.invoke(app, args)
    assert out.exit_code == 1, out.output
    assert "champion.paired_bootstrap" in out.output and "not promoted" in out.output
    assert "fairness.max_demographic_parity_difference" in out.output  # from features.sensitive
    assert "recorded as audit entry" in out.output and "--action model.promote" in out.output
    out = runner.invoke(app, [*args, "--override", "approved by risk"])
    assert out.exit_code == 0 and "promoted by override" in out.output
    with Workspace.open(home) as ws:
        assert ws.models.get("fraud@champion").version == 2
        entry = ws.audit.entries("model", "fraud", action="model.alias.set")[-1]
        assert entry.actor == "ci" and "failed gates: champion.paired_bootstrap" in entry.reason
        assert [r.outcome for r in promotions(ws, "fraud")] == ["refused", "overridden"]

    gates = tmp_path / "gates.yaml"
    gates.write_text("metrics:\n  accuracy: {min: 0.99}\n")
    out = runner.invoke(app, ["--home", home, "promote", "fraud@3", "--dataset",
                              "fraud_test@1", "--policy", str(gates), "--target", "label"])
    assert out.exit_code == 1 and "metrics.accuracy.min" in out.output


def test_cli_reads_the_policy_and_refuses_a_bad_one(cli_home, tmp_path):
    from shipyard.errors import ConfigError
    from shipyard.project import load_section

    _, project = cli_home
    policy, defaults = load_section(project, "gates")
    assert policy.champion.min_improvement == 0.02
    assert defaults == {"target": "label", "sensitive": ["group"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  metrics: {accuracy: {minimum: 0.9}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 2: gates.metrics.accuracy.minimum: "
                                          r"unknown key 'minimum'; did you mean 'min'"):
        load_section(bad, "gates")
    with pytest.raises(ConfigError, match="gates file .*missing.yaml does not exist"):
        load_section(tmp_path / "missing.yaml", "gates")
