"""Continuous learning: labelled feedback becomes a dataset version with
lineage to the predictions, the project file retrains, the candidate is
judged against the champion on the same holdout with the gates' paired
test, canaried through a real server, then promoted or rolled back. A worse
candidate is never promoted; every step is in the audit log; bad input is a
clear error that changes nothing."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from monitor import traffic
from monitor.trained import PROJECT, people, train_people
from shipyard import Workspace
from shipyard.cli import app
from shipyard.errors import ConfigError, NotFoundError, RetrainError, TrainingError
from shipyard.project import parse_project

MODEL = "monitored"
GATES = "gates:\n  champion: {metric: accuracy, test: mcnemar, alpha: 0.05}\n"
STEPS = ["retrain.start", "retrain.dataset", "retrain.candidate", "retrain.judge",
         "retrain.canary"]


def shifted(n: int, seed: int) -> pd.DataFrame:
    """Traffic after a real change: more people from lille, where the outcome
    is now almost always positive (the champion never learnt that)."""
    frame = people(n, seed=seed, cities=[0.2, 0.2, 0.2, 0.4])
    rng = np.random.default_rng(seed + 100)
    lille = (frame["city"] == "lille").to_numpy()
    frame.loc[lille, "y"] = (rng.random(lille.sum()) < 0.95).astype(np.int64)
    return frame


@pytest.fixture
def champion(tmp_path):
    """A workspace with ``monitored@1`` (trained on people@1) as champion."""
    ws = Workspace.open(tmp_path / "home")
    train_people(ws, n=2_000)
    ws.models.set_alias(MODEL, "champion", 1, reason="tests")
    yield ws
    ws.close()


def project(extra: str = GATES, **replace: str):
    text = PROJECT + extra
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse_project(text)


def log_traffic(ws, monkeypatch, frame: pd.DataFrame, *, labels: bool = True,
                rows: int = 10, prefix: str = "r") -> list[str]:
    """Log ``frame`` as requests of ``rows`` rows answered by the champion
    (in 2025, on a test clock), and their labels as feedback a few seconds later."""
    clock = traffic.Clock()
    with monkeypatch.context() as patch:
        traffic.install(patch, clock)
        scorer = ws.models.load(f"{MODEL}@champion")
        parts = [frame.iloc[i:i + rows] for i in range(0, len(frame), rows)]
        ids = traffic.log_requests(ws.settings.home, clock, MODEL,
                                   [(traffic.T0 + i, p.drop(columns="y"))
                                    for i, p in enumerate(parts)],
                                   scorer=scorer, role="primary", prefix=prefix)
        if labels:
            traffic.log_feedback(ws.settings.home, clock,
                                 [(traffic.T0 + i + 5, rid, p["y"].tolist())
                                  for i, (rid, p) in enumerate(zip(ids, parts))],
                                 model=MODEL, flush_every=100)
    return ids


def state(ws) -> dict:
    """Everything a refused or failed retrain must leave as it was."""
    return {"counts": ws.counts(), "datasets": [(d.name, d.latest_version)
                                                for d in ws.datasets.list()],
            "champion": ws.models.get(f"{MODEL}@champion").version
            if any(m.name == MODEL for m in ws.models.list()) else None,
            "deployment": ws.deployments.get(MODEL)}


def actions(ws) -> list[str]:
    return [e.action for e in ws.audit.entries("retrain", MODEL)]


# ---------------------------------------------------------------- better
def test_promotes_a_better_candidate_after_a_real_shift(champion, monkeypatch):
    ws = champion
    ids = log_traffic(ws, monkeypatch, shifted(1_200, seed=5))
    seen = []
    result = ws.retrain(MODEL, project=project(), min_labels=100,
                        progress=lambda step, detail: seen.append(step))

    assert result.outcome == "promoted", result.reason
    assert result.champion_before == f"{MODEL}@1" and result.champion_after == result.candidate
    assert ws.models.get(f"{MODEL}@champion").ref == result.candidate == f"{MODEL}@2"
    [check] = result.gates.checks
    assert check.name == "champion.mcnemar" and check.passed and check.observed > 0.05
    # the feedback dataset keeps the lineage to the very predictions it came from
    feedback = ws.datasets.get(result.feedback)
    rows = feedback.to_pandas()
    assert len(rows) == result.labels == 1_200 and set(rows["request_id"]) == set(ids)
    assert set(rows["version"]) == {1} and set(rows["split"]) == {"train", "holdout"}
    assert "prediction log" in feedback.transform and "120 requests" in feedback.transform
    held = rows[rows["split"] == "holdout"]
    assert result.holdout_rows == len(held) and 0.15 < len(held) / len(rows) < 0.45
    # trained on the project's data plus the feedback not held out; judged on the rest
    assert set(ws.datasets.get(result.train_data).parents) == {"people@1", feedback.ref}
    assert ws.datasets.get(result.train_data).num_rows == 2_000 + (rows["split"] == "train").sum()
    assert ws.datasets.get(result.holdout).parents == (feedback.ref,)
    assert ws.models.lineage(result.candidate).dataset_versions == (result.train_data,)
    assert ws.models.get(result.candidate).tags["retrain.feedback"] == feedback.ref
    # every step audited, in order; the alias moved once, with the gates as reason
    assert actions(ws) == [*STEPS, "retrain.promote"] == seen
    [moved] = [e for e in ws.audit.entries("model", MODEL, action="model.alias")
               if e.details.get("version") == 2 or "retrain" in (e.reason or "")]
    assert "champion.mcnemar" in moved.reason
    # listed with every other promotion attempt, its gates' verdicts included
    from shipyard.evaluate import promotions
    [attempt] = promotions(ws, MODEL)
    assert (attempt.via, attempt.outcome, attempt.candidate, attempt.champion,
            attempt.dataset, attempt.evaluation_run) == \
        ("retrain", "promoted", result.candidate, f"{MODEL}@1", result.holdout, result.run_id)
    assert [c.name for c in attempt.gates.checks] == ["champion.mcnemar"] and attempt.passed
    assert ws.audit.verify().ok
    # the outcome is queryable as a run of experiment retrain
    [run] = ws.search_runs("tags.outcome = 'promoted'", experiment="retrain")
    assert run.id == result.run_id and run.tags["candidate"] == result.candidate
    assert run.metrics["labels"] == 1_200

    # the next retrain reads only what came after this one's window
    with pytest.raises(RetrainError, match="no labelled predictions"):
        ws.retrain(MODEL, project=project(), min_labels=100)


# ----------------------------------------------------------------- worse
@pytest.mark.parametrize("worse", ["crippled project", "shuffled labels"])
def test_never_promotes_a_deliberately_worse_candidate(champion, monkeypatch, worse):
    ws = champion
    frame, spec, trusted = people(1_000, seed=6), project(), None
    if worse == "shuffled labels":
        # Labels that teach nothing. A holdout cut from the same bad labels cannot
        # tell (it rewards predicting their base rate), so a trusted labelled set
        # joins the holdout, as a user passes the project's test set.
        frame = people(1_500, seed=6)
        frame["y"] = np.random.default_rng(0).permutation(frame["y"].to_numpy())
        trusted = ws.datasets.register("people_test", people(1_000, seed=60)).ref
    else:  # a project that can only predict the majority class
        spec = project(**{"sklearn.linear_model.LogisticRegression":
                          "sklearn.dummy.DummyClassifier",
                          "params: {max_iter: 500}": "params: {strategy: most_frequent}"})
    log_traffic(ws, monkeypatch, frame)
    alias_moves = len(ws.audit.entries("model", MODEL, action="model.alias"))

    result = ws.retrain(MODEL, project=spec, min_labels=100, holdout=trusted)

    assert result.outcome == "refused" and not result.promoted
    assert ws.models.get(f"{MODEL}@champion").version == 1  # the champion stays
    assert len(ws.audit.entries("model", MODEL, action="model.alias")) == alias_moves
    assert not result.gates.passed and "champion.mcnemar" in result.reason
    assert actions(ws) == [*STEPS[:4], "retrain.refuse"]
    [refusal] = ws.audit.entries("retrain", MODEL, action="retrain.refuse")
    assert refusal.details["failed"] == ["champion.mcnemar"] and "stays champion" in refusal.reason
    assert ws.runs.get(result.run_id).tags["outcome"] == "refused"
    assert ws.deployments.get(MODEL) is None  # no canary was started
    from shipyard.evaluate import promotions
    [attempt] = promotions(ws, MODEL)
    assert (attempt.via, attempt.outcome, attempt.moved) == ("retrain", "refused", False)
    assert [c.name for c in attempt.gates.failed] == ["champion.mcnemar"]


def test_a_failed_retrain_is_audited_and_changes_no_alias(champion, monkeypatch):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(400, seed=16))
    with pytest.raises(TrainingError, match="no trial of any candidate completed"):
        ws.retrain(MODEL, project=project(**{"max_iter: 500": "max_iter: -5"}), min_labels=100)
    assert ws.models.get(f"{MODEL}@champion").version == 1
    assert actions(ws) == ["retrain.start", "retrain.dataset", "retrain.fail"]
    [run] = ws.search_runs(experiment="retrain")
    assert run.status == "FAILED" and run.tags["outcome"] == "running"


# ---------------------------------------------------------------- canary
class Server:
    """The real prediction server in a thread on loopback, polling the
    registry and deployments every 0.2 s."""

    def __init__(self, ws):
        import socket

        import uvicorn

        from shipyard.serve import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{s.getsockname()[1]}"
        app_ = create_app(ws, [f"{MODEL}@champion"], auth=False, reload_interval=0.2,
                          log_flush_interval=0.1, batching=False)
        self.server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1",
                                                    port=int(self.url.rsplit(":", 1)[1]),
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def send_traffic(url: str, frame: pd.DataFrame, stop: threading.Event, answered: list):
    """Requests of 4 rows, each followed by its labels, until ``stop``."""
    import httpx

    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            part = frame.iloc[i % (len(frame) - 4):][:4]
            i += 4
            inputs = part.drop(columns="y").astype(object)
            got = client.post(f"/v1/models/{MODEL}:predict", json={
                "records": inputs.where(inputs.notna(), None).to_dict("records")})
            answered.append((got.status_code, got.json().get("model_version")))
            client.post("/v1/feedback", json={"request_id": got.headers["x-request-id"],
                                              "model": MODEL, "label": part["y"].tolist()})


def test_a_canary_on_live_traffic_then_promotion(champion, monkeypatch):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(1_200, seed=7))
    ws.deployments.set(MODEL, {"strategy": "single", "primary": f"{MODEL}@champion"})
    stop, answered = threading.Event(), []
    with Server(ws) as server:
        sender = threading.Thread(target=send_traffic, args=(server.url, shifted(400, 8),
                                                             stop, answered))
        sender.start()
        try:
            result = ws.retrain(MODEL, project=project(), min_labels=100, canary_weight=50,
                                canary_requests=15, canary_timeout=60)
        finally:
            stop.set()
            sender.join(timeout=30)

    assert result.outcome == "promoted", result.reason
    canary = result.canary
    assert canary["passed"] and canary["requests"] >= 15 and canary["error_rate"] == 0
    assert canary["metric"] == "accuracy" and canary["candidate"] is not None
    assert {v for status, v in answered if status == 200} >= {1, 2}  # both versions served
    assert ws.models.get(f"{MODEL}@champion").version == 2
    deployment = ws.deployments.get(MODEL).deployment
    assert deployment.strategy == "single" and deployment.primary == f"{MODEL}@champion"
    assert actions(ws) == [*STEPS, "retrain.canary_check", "retrain.promote"]
    sets = [e.details["deployment"]["strategy"] for e in ws.deployments.history(MODEL)]
    assert sets == ["single", "canary", "single"]


def test_a_canary_without_enough_traffic_is_rolled_back(champion, monkeypatch):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(1_000, seed=9))
    ws.deployments.set(MODEL, {"strategy": "single", "primary": f"{MODEL}@champion"})

    result = ws.retrain(MODEL, project=project(), min_labels=100, canary_requests=5,
                        canary_timeout=0.5)

    assert result.outcome == "rolled_back" and result.gates.passed
    assert "answered 0 of the 5 requests" in result.reason
    assert ws.models.get(f"{MODEL}@champion").version == 1
    record = ws.deployments.get(MODEL)
    assert record.deployment.strategy == "single" and record.deployment.candidate is None
    history = ws.deployments.history(MODEL)
    assert [e.action for e in history] == ["deployment.set", "deployment.set",
                                           "deployment.rollback"]
    assert actions(ws) == [*STEPS, "retrain.canary_check", "retrain.rollback"]


# ------------------------------------------------------------- on alert
def test_on_alert_retrains_only_while_an_alert_fires(champion, monkeypatch):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(1_000, seed=10))
    before = state(ws)
    skipped = ws.retrain(MODEL, project=project(), min_labels=100, on_alert=True)
    assert skipped.outcome == "skipped" and "no monitor report is an alert" in skipped.reason
    after = state(ws)
    after["counts"]["audit entries"] -= 1  # the skip itself, nothing else
    assert after == before and actions(ws) == ["retrain.skip"]

    check = ws.monitor.check(MODEL, start=traffic.T0, end=traffic.T0 + 3600, policy={
        "alerts": [{"name": "city_moved", "check": "drift.city"}]})
    assert [a.rule for a in check.firing] == ["city_moved"]
    result = ws.retrain(MODEL, project=project(), min_labels=100, on_alert=True)
    assert result.outcome == "promoted", result.reason
    start = ws.audit.entries("retrain", MODEL, action="retrain.start")[-1]
    assert start.details["trigger"] == "alert"


# ------------------------------------------------------ refused up front
def test_too_few_labels_no_feedback_no_champion_change_nothing(champion, monkeypatch, tmp_path):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(300, seed=11), labels=False)
    before = state(ws)
    with pytest.raises(RetrainError, match="no labelled predictions of monitored") as info:
        ws.retrain(MODEL, project=project())
    assert "POST /v1/feedback" in str(info.value)
    log_traffic(ws, monkeypatch, shifted(150, seed=12), prefix="s")
    with pytest.raises(RetrainError, match="only 150 labelled rows .* at least 200"):
        ws.retrain(MODEL, project=project())
    with pytest.raises(RetrainError, match="cannot be split"):
        ws.retrain(MODEL, project=project(), min_labels=10, holdout_share=0.01)
    with pytest.raises(NotFoundError, match="no model is called 'nobody'"):
        ws.retrain("nobody", project=project())
    other = Workspace.open(tmp_path / "other")
    train_people(other, n=500)
    with pytest.raises(RetrainError, match="has no champion") as info:
        other.retrain(MODEL, project=project())
    assert "shipyard promote" in str(info.value)
    other.close()
    assert state(ws) == before and actions(ws) == []


def test_bad_project_files_and_hostile_arguments_are_clear_errors(champion, monkeypatch,
                                                                  tmp_path):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(400, seed=13))
    before = state(ws)
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: people@latest\ntarget: [unclosed\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(PROJECT.replace("target: y", "target: income"))
    cases = [
        ({"project": tmp_path / "missing.yaml"}, ConfigError, "does not exist"),
        ({"project": broken}, ConfigError, "invalid YAML"),
        ({"project": wrong}, ConfigError, ("trains target 'income', but monitored@1 "
                                           "predicts 'y'")),
        ({"project": 42}, ConfigError, "shipyard.yaml path or a loaded Project"),
        ({"project": project(**{"people@latest": "ghost@1"})}, NotFoundError, "ghost"),
        ({"project": project(), "holdout_share": 0}, ConfigError, "holdout_share"),
        ({"project": project(), "holdout_share": float("nan")}, ConfigError, "holdout_share"),
        ({"project": project(), "min_labels": True}, ConfigError, "min_labels"),
        ({"project": project(), "min_labels": -5}, ConfigError, "min_labels"),
        ({"project": project(), "trials": "many"}, ConfigError, "trials"),
        ({"project": project(), "canary_weight": 250}, ConfigError, "canary_weight"),
        ({"project": project(), "candidates": ["logre"]}, ConfigError,
         "no candidate 'logre'; did you mean 'logreg'"),
        ({"project": project(), "candidates": "logreg"}, ConfigError, "list of candidate"),
        ({"project": project(), "since": "yesterday"}, ConfigError, "since"),
        ({"project": project(), "since": "1h", "start": traffic.T0}, ConfigError, "not both"),
        ({"project": project(), "holdout": "nope@1"}, NotFoundError, "nope"),
        ({"project": project(), "gates": {"champion": {"metric": "accuracy", "alpha": 7}}},
         ConfigError, "invalid gate policy"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            ws.retrain(MODEL, **kwargs)
    for name in ("../etc/passwd", "x; drop table models", "", None):
        with pytest.raises((ConfigError, NotFoundError)):
            ws.retrain(name, project=project())
    assert state(ws) == before and actions(ws) == []


# ------------------------------------------------------------------- cli
def test_cli_retrains_with_json_and_explains_errors(champion, monkeypatch, tmp_path):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(1_200, seed=14))
    spec = tmp_path / "shipyard.yaml"
    spec.write_text(PROJECT + GATES)
    runner = CliRunner()
    home = ["--home", str(ws.settings.home), "monitor", "retrain"]
    out = runner.invoke(app, [*home, MODEL, "--project", str(spec), "--min-labels", "100",
                              "--candidate", "logreg", "--trials", "1", "--base-rows", "1500",
                              "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["outcome"] == "promoted" and data["candidate"] == f"{MODEL}@2"
    assert [s["action"] for s in data["steps"]][-1] == "retrain.promote"
    assert ws.datasets.get(data["train_data"]).num_rows == 1_500 + data["labels"] - \
        data["holdout_rows"]

    out = runner.invoke(app, [*home, MODEL, "--project", str(spec), "--on-alert"])
    assert out.exit_code == 0 and "skipped" in out.stdout and "retrain of monitored" in out.stdout
    assert max(map(len, out.stdout.splitlines())) <= 80
    # errors reach main(), which prints them without a traceback
    for args, error, message in (
            (["--project", str(spec)], RetrainError, "no labelled predictions"),
            (["--project", str(tmp_path / "nope.yaml")], ConfigError, "does not exist"),
            (["--canary-timeout", "soon"], ConfigError, "--canary-timeout")):
        out = runner.invoke(app, [*home, MODEL, *args])
        assert out.exit_code != 0 and isinstance(out.exception, error), out.output
        assert message in str(out.exception)
    out = runner.invoke(app, [*home, MODEL, "--holdout-share", "lots"])
    assert out.exit_code == 2 and "--holdout-share" in out.output
    help_text = runner.invoke(app, ["monitor", "retrain", "--help"]).output
    assert "--on-alert" in help_text and "Examples" in help_text


def test_monitor_reads_the_policy_of_the_project_file_in_the_working_folder(
        champion, monkeypatch, tmp_path):
    ws = champion
    log_traffic(ws, monkeypatch, shifted(400, seed=15))
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "shipyard.yaml").write_text(
        PROJECT + "monitor:\n  alerts:\n    - {name: city_moved, check: drift.city}\n")
    monkeypatch.chdir(folder)
    runner = CliRunner()
    base = ["--home", str(ws.settings.home), "monitor", MODEL, "--since", "2025-01-01T00:00:00+00:00",
            "--json"]
    out = runner.invoke(app, base)
    assert out.exit_code == 0, out.output
    assert [a["rule"] for a in json.loads(out.stdout)["firing"]] == ["city_moved"]
    assert "policy: the monitor: section of shipyard.yaml" in out.stderr
    (tmp_path / "elsewhere.yaml").write_text("monitor:\n  alerts: []\n")
    out = runner.invoke(app, [*base, "--project", str(tmp_path / "elsewhere.yaml")])
    assert out.exit_code == 0 and "elsewhere.yaml" in out.stderr
    out = runner.invoke(app, [*base, "--project", "a.yaml", "--policy", "b.yaml"])
    assert isinstance(out.exception, ConfigError) and "not both" in str(out.exception)


def test_a_mitigated_champions_candidate_fits_its_thresholds_on_unseen_rows(champion,
                                                                            monkeypatch):
    """Per-group thresholds fitted on a model's own training rows (in-sample
    scores) do not hold on new rows: the candidate of a mitigated champion is
    mitigated on a calibration share of the feedback it did not train on."""
    from shipyard.evaluate import mitigate

    ws = champion
    fair = mitigate(ws, f"{MODEL}@1", "people@1", target="y", sensitive="city")
    ws.models.set_alias(MODEL, "champion", fair.version.version, reason="tests")
    log_traffic(ws, monkeypatch, shifted(1_500, seed=11))

    result = ws.retrain(MODEL, project=project(), min_labels=100)

    rows = ws.datasets.get(result.feedback).to_pandas()
    assert set(rows["split"]) == {"train", "calibration", "holdout"}
    shares = rows.groupby("split")["request_id"].nunique() / rows["request_id"].nunique()
    assert 0.1 < shares["calibration"] < 0.3 and 0.2 < shares["holdout"] < 0.4
    assert [d.latest_version for d in ws.datasets.list()
            if d.name == f"{MODEL}-calibration"] == [1]
    version = ws.datasets.get(f"{MODEL}-calibration@latest")
    assert version.parents == (result.feedback,)
    assert version.num_rows == (rows["split"] == "calibration").sum()
    # trained without the calibration rows, thresholds fitted on them only
    assert ws.datasets.get(result.train_data).num_rows == \
        2_000 + (rows["split"] == "train").sum()
    candidate = ws.models.get(result.candidate)
    assert candidate.tags["mitigation.dataset"] == version.ref
    assert candidate.tags["mitigation.base"] != candidate.ref


def test_a_candidate_shown_unfair_is_refused_and_the_champions_gaps_are_shown(champion,
                                                                              monkeypatch):
    """A fairness bound read on its interval's optimistic end (``use: ci_low``)
    still refuses a candidate whose gap is clearly above it, even when it
    beats the champion on accuracy; the judge's audit entry puts the
    champion's gaps on the same rows beside the candidate's."""
    ws = champion
    frame = people(1_500, seed=12)
    women = (frame["sex"] == "F").to_numpy()
    rng = np.random.default_rng(12)
    # New traffic where the outcome follows sex, and hours give sex away: a
    # model that never sees `sex` learns it through `hours`.
    frame.loc[women, "hours"] = (frame.loc[women, "hours"] * 0.3).round(1)
    frame["y"] = (rng.random(len(frame)) < np.where(women, 0.05, 0.9)).astype(np.int64)
    log_traffic(ws, monkeypatch, frame)
    fair = ("  fairness: {max_demographic_parity_difference: 0.1, use: ci_low}\n"
            "features: {sensitive: [sex]}\n")

    result = ws.retrain(MODEL, project=project(GATES + fair), min_labels=100)

    assert result.outcome == "refused" and ws.models.get(f"{MODEL}@champion").version == 1
    checks = {c.name: c for c in result.gates.checks}
    assert checks["champion.mcnemar"].passed  # more accurate, and refused all the same
    check = checks["fairness.max_demographic_parity_difference.ci_low"]
    low, high = check.details["intervals"]["sex"]
    assert not check.passed and check.observed == low > 0.1
    assert low <= check.details["values"]["sex"] <= high
    [judge] = ws.audit.entries("retrain", MODEL, action="retrain.judge")
    [line] = [f for f in judge.details["fairness"] if f.startswith("demographic_parity")]
    assert line.startswith("demographic_parity_difference by sex: candidate ")
    assert ", champion " in line and line.count("[") == 2, line
    assert line in judge.reason
