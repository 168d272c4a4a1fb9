"""The evaluation report: JSON, HTML and model card from one set of facts;
``evaluate`` on a workspace records it as a run; bad input changes nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

from shipyard.errors import ConfigError, DataError, NotFoundError
from shipyard.evaluate import EvaluationReport, evaluate, evaluate_model
from shipyard.evaluate._report import CARD_PATH, HTML_PATH, REPORT_PATH

HOSTILE = "<script>alert('x')</script>"
QUICK = ("metrics", "slices", "fairness", "operational")

ROBUSTNESS = {  # the shape shipyard.evaluate._robustness.robustness_report returns
    "baseline": {"metric": "accuracy", "value": 0.9},
    "perturbations": [{"name": "gaussian_noise", "level": 0.5, "value": 0.7, "drop": 0.2},
                      {"name": HOSTILE, "level": 0.1, "value": 0.89, "drop": 0.01}],
    "attack": {"method": "hop_skip_jump", "rows": 50, "success_rate": 0.6,
               "accuracy_under_attack": 0.36, "median_l2": 0.8, "median_linf": 0.5},
}


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                          HOSTILE: rng.choice(["a", "<b>bold</b>"], n),
                          "sex": rng.choice(["f", "m"], n), "region": rng.choice(["n", "s"], n)})
    frame["y"] = ((frame.x1 + 0.3 * rng.normal(size=n)) > 0).astype(int)
    return frame


INPUTS = ["x1", "x2", HOSTILE]


def _model(frame: pd.DataFrame):
    pre = make_column_transformer((StandardScaler(), ["x1", "x2"]),
                                  (OneHotEncoder(handle_unknown="ignore"), [HOSTILE]))
    return make_pipeline(pre, LogisticRegression()).fit(frame[INPUTS], frame.y)


def _signature(frame: pd.DataFrame) -> dict:
    return {"inputs": [{"name": c, "dtype": str(frame[c].dtype)} for c in INPUTS],
            "output": {"target": "y", "task": "binary", "kind": "probabilities",
                       "classes": [0, 1]}}


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    frame = _frame()
    model = _model(frame)
    out = evaluate_model(model, frame, target="y", task="binary", sensitive=["sex"],
                         slices=["region", HOSTILE], signature=_signature(frame),
                         n_bootstrap=50, sections=QUICK,
                         model_info={"ref": "credit@1", "run_id": "r" * 32,
                                     "artifact_digest": "d" * 64, "description": HOSTILE},
                         dataset_info={"ref": "credit_test@1"})
    out.robustness = ROBUSTNESS
    out.sections.append("robustness")
    out.explanations = {"method": "test", "explained": "probability of 1", "rows": 10,
                        "background_rows": 5, "base_value": 0.5,
                        "importance": [{"feature": HOSTILE, "importance": 0.2},
                                       {"feature": "x1", "importance": float("nan")}]}
    return out


def test_report_holds_every_section(report):
    d = report.to_dict()
    assert d["schema"] == "shipyard.evaluation/1" and d["task"] == "binary"
    assert d["headline"]["metric"] == "roc_auc" == report.headline["metric"]
    assert d["headline"]["value"] == d["metrics"]["roc_auc"]["value"] > 0.8
    assert set(d["metrics"]) == {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc",
                                 "log_loss", "brier"}
    assert d["fairness"]["features"]["sex"]["demographic_parity_difference"] is not None
    assert set(d["slices"]["columns"]) == {"region", HOSTILE}
    assert d["operational"]["single_row"]["p50_ms"] > 0
    assert d["n_rows"] == 600 and d["classes"] == [0, 1]


def test_json_is_strict_and_round_trips(report):
    text = report.to_json()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert data["explanations"]["importance"][1]["importance"] is None  # NaN became null
    again = EvaluationReport.from_dict(data)
    assert again.to_dict() == data and again.headline == report.headline
    with pytest.raises(DataError, match="not an evaluation report"):
        EvaluationReport.from_dict({"schema": "other"})


def test_html_is_self_contained_and_escapes_hostile_names(report):
    html = report.to_html()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    for section in ("summary", "metrics", "slices", "fairness", "explanations", "robustness",
                    "operational", "lineage"):
        assert f'<section id="{section}">' in html
    assert html.count("data:image/png;base64,") >= 3  # curves, fairness, importance
    assert "credit@1" in html and "hop_skip_jump" in html
    assert "Confusion matrix" in html


def test_model_card_lists_the_facts_and_limitations(report):
    card = report.model_card(limitations=["Not validated outside 2024 applications."])
    for heading in ("# Model card: credit@1", "## Intended use", "## Data and lineage",
                    "## Metrics", "## Fairness", "## Limitations"):
        assert heading in card
    assert "credit_test@1" in card and "d" * 64 in card and "r" * 32 in card
    assert re.search(r"\| roc\\_auc \| 0\.\d+ \| \[0\.\d+, 0\.\d+\] \|", card)
    assert "Not validated outside 2024 applications." in card
    assert "gaussian\\_noise" in card and "hop\\_skip\\_jump" in card  # robustness limits
    assert "<script>" not in card.replace(f"`{HOSTILE}`", "")  # only inside code spans


def test_card_lists_flagged_slices_and_fairness_gaps():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x1": rng.normal(size=800), "g": rng.choice(["a", "b"], 800)})
    frame["y"] = (frame.x1 > 0).astype(int)
    model = LogisticRegression().fit(frame[["x1"]], frame.y)
    biased = frame.assign(y=np.where((frame.g == "b") & (rng.random(800) < 0.5),
                                     1 - frame.y, frame.y))
    out = evaluate_model(model, biased, target="y", task="binary", slices=["g"],
                         sensitive=["g"], signature={"inputs": ["x1"]}, n_bootstrap=100,
                         sections=("metrics", "slices", "fairness"), headline="accuracy")
    assert [f["group"] for f in out.slices["flagged"]] == ["b"]
    card = out.model_card()
    assert "rows where `g` is b" in card
    assert "accuracy difference across `g`" in card


def test_regression_report():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "g": rng.choice(["a", "b"], 300)})
    frame["y"] = 2 * frame.x + rng.normal(0, 0.1, 300) + 5
    model = LinearRegression().fit(frame[["x"]], frame.y)
    out = evaluate_model(model, frame, target="y", task="regression", sensitive=["g"],
                         slices=["x"], n_bootstrap=30, sections=("metrics", "slices", "fairness"))
    assert out.headline["metric"] == "rmse" and out.metrics["r2"]["value"] > 0.99
    assert out.confusion_matrix is None and out.curves == {}
    assert "mae_difference" in out.fairness["features"]["g"]
    assert "Confusion matrix" not in out.to_html()
    json.loads(out.to_json())


@pytest.mark.parametrize("change, error, match", [
    (lambda f: f.iloc[:0], DataError, "empty"),
    (lambda f: f.drop(columns="y"), DataError, "target column 'y'"),
    (lambda f: f.drop(columns="x2"), DataError, "lacks the model's input column.*'x2'"),
    (lambda f: f.assign(x1=f.x1.astype(str)), DataError, "'x1' is .*trained on float64"),
    (lambda f: f.assign(y=f.y.astype(float).where(f.index > 0)), DataError, "missing values"),
    (lambda f: f.assign(y=f.y + 5), DataError, "does not know"),
])
def test_bad_input_gets_a_clear_error(change, error, match):
    frame = _frame(100)
    with pytest.raises(error, match=match):
        evaluate_model(_model(frame), change(frame), target="y", task="binary",
                       signature=_signature(frame), n_bootstrap=0, sections=("metrics",))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sensitive": ["race"]}, DataError, "sensitive column.*'race'"),
    ({"slices": ["nope"]}, DataError, "slice column.*'nope'"),
    ({"sections": ("metrics", "vibes")}, ConfigError, "unknown report section"),
    ({"task": "ranking"}, ConfigError, "unknown task"),
    ({"headline": "rmse"}, ConfigError, "headline metric 'rmse'"),
])
def test_bad_options_get_a_clear_error(kwargs, error, match):
    frame = _frame(100)
    options = {"target": "y", "task": "binary", "n_bootstrap": 0, "sections": ("metrics",),
               **kwargs}
    with pytest.raises(error, match=match):
        evaluate_model(_model(frame), frame, **options)


# ------------------------------------------------------------ workspace
def _register(ws, frame: pd.DataFrame, *, name: str = "credit") -> str:
    from shipyard.train import save_model

    train = ws.datasets.register(f"{name}_train", frame.iloc[:400])
    model = _model(frame.iloc[:400])
    artifact = save_model(model, ws.artifacts)
    with ws.start_run("train", inputs=[train]) as run:
        run.set_tag("model.digest", artifact.digest)
        run.log_dict("model/signature.json", _signature(frame))
    return ws.models.register(name, run.id, description="Approve small loans").ref


def _runs(ws) -> int:
    return len(ws.search_runs(limit=None))


def test_evaluate_records_the_report_as_run_artifacts(workspace):
    frame = _frame()
    ref = _register(workspace, frame)
    test = workspace.datasets.register("credit_test", frame.iloc[400:])
    report = evaluate(workspace, ref, test.ref, sensitive=["sex"], slices=["region"],
                      n_bootstrap=30, sections=QUICK)
    assert report.run_id is not None and report.target == "y"  # target from the signature
    run = workspace.runs.get(report.run_id)
    assert run.experiment == "evaluation" and run.status == "FINISHED"
    assert run.params["model"] == ref and run.params["dataset"] == test.ref
    assert run.metrics["roc_auc"] == pytest.approx(report.headline["value"])
    assert "fairness.demographic_parity_difference" in run.metrics
    assert workspace.runs.inputs(run.id) == [test.ref]
    stored = json.loads(workspace.runs.load_artifact(run.id, REPORT_PATH))
    assert stored == {**report.to_dict(), "run_id": None}
    assert stored["model"]["artifact_digest"] == workspace.models.get(ref).artifact_digest
    assert stored["model"]["dataset_version"] == "credit_train@1"
    assert stored["operational"]["artifact_bytes"] > 0
    assert stored["operational"]["load_seconds"] > 0
    html = workspace.runs.load_artifact(run.id, HTML_PATH).decode()
    assert "credit@1" in html
    card = workspace.runs.load_artifact(run.id, CARD_PATH).decode()
    assert "Approve small loans" in card and "credit\\_train@1" not in card


def test_bad_evaluations_record_nothing(workspace):
    frame = _frame()
    ref = _register(workspace, frame)
    test = workspace.datasets.register("credit_test", frame.iloc[400:])
    empty = workspace.datasets.register("credit_empty", frame.iloc[:0])
    before = _runs(workspace)
    with pytest.raises(NotFoundError):
        evaluate(workspace, "nosuchmodel@1", test.ref)
    with pytest.raises(NotFoundError):
        evaluate(workspace, ref, "nosuchdata@1")
    with pytest.raises(DataError, match="empty"):
        evaluate(workspace, ref, empty.ref)
    with pytest.raises(DataError, match="sensitive column"):
        evaluate(workspace, ref, test.ref, sensitive=["race"])
    with pytest.raises(DataError, match="target column 'label'"):
        evaluate(workspace, ref, test.ref, target="label")
    assert _runs(workspace) == before


def test_cli_prints_a_summary_and_writes_the_files(tmp_path):
    from shipyard import Workspace
    from shipyard.cli import app

    home = tmp_path / "home"
    frame = _frame()
    with Workspace.open(home) as ws:
        ref = _register(ws, frame)
        test = ws.datasets.register("credit_test", frame.iloc[400:]).ref
    out = CliRunner().invoke(app, [
        "--home", str(home), "evaluate", ref, test, "--sensitive", "sex", "--slice", "region",
        "--no-explain", "--no-robustness", "--n-bootstrap", "20",
        "--html", str(tmp_path / "r.html"), "--card", str(tmp_path / "card.md"),
        "--json-file", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "roc_auc" in out.output and "demographic parity difference" in out.output
    assert "latency" in out.output and "recorded as run" in out.output
    assert json.loads((tmp_path / "r.json").read_text())["headline"]["metric"] == "roc_auc"
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert "## Limitations" in (tmp_path / "card.md").read_text()
    bad = CliRunner().invoke(app, ["--home", str(home), "evaluate", ref, "nosuch@1"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_default_sections_explain_and_check_robustness():
    frame = _frame(300)
    out = evaluate_model(_model(frame), frame, target="y", task="binary",
                         signature=_signature(frame), n_bootstrap=20)
    assert out.explanations["importance"][0]["feature"] == "x1"
    if "robustness" in out.skipped:  # the robustness module is optional
        assert out.robustness is None
    else:
        assert out.robustness["baseline"]["value"] is not None
    assert "slices" not in out.sections and "fairness" not in out.sections
    assert "explanations" in out.sections and "operational" in out.sections
    json.loads(out.to_json())
    assert '<section id="explanations">' in out.to_html()
