"""``shipyard train`` and ``shipyard reproduce``."""

from __future__ import annotations

from sqlalchemy import update
from typer.testing import CliRunner

import shipyard
from shipyard.cli import app
from shipyard.errors import ConfigError
from shipyard.store.tables import TagRow

runner = CliRunner()


def _setup(tmp_path, toy_frame, project_yaml, **kw):
    with shipyard.Workspace.open(tmp_path / "ws") as ws:
        ws.datasets.register("toy", toy_frame())
    path = tmp_path / "shipyard.yaml"
    path.write_text(project_yaml(**kw))
    return ["--home", str(tmp_path / "ws")], path


def test_train_shows_progress_leaderboard_and_the_model(tmp_path, toy_frame, project_yaml):
    home, path = _setup(tmp_path, toy_frame, project_yaml)
    result = runner.invoke(app, [*home, "train", str(path), "--n-jobs", "1"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("logreg", "4/4", "test roc_auc", "model", "study run", "CPU-s"):
        assert text in result.output
    with shipyard.Workspace.open(tmp_path / "ws") as ws:
        study = ws.runs.search(experiment="toy", filter='tags.kind = "study"')[0]
        assert study.tags["model.digest"][:40] in result.output


def test_reproduce_prints_checks_and_fails_on_a_difference(tmp_path, toy_frame, project_yaml):
    home, path = _setup(tmp_path, toy_frame, project_yaml)
    assert runner.invoke(app, [*home, "train", str(path)]).exit_code == 0
    with shipyard.Workspace.open(tmp_path / "ws") as ws:
        run_id = ws.runs.search(experiment="toy", filter='tags.kind = "study"')[0].id
    ok = runner.invoke(app, [*home, "reproduce", run_id[:8]], env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert "✓" in ok.output and "✗" not in ok.output and "model.digest" in ok.output

    with shipyard.Workspace.open(tmp_path / "ws") as ws, ws.db.write() as s:
        s.execute(update(TagRow).where(TagRow.run_id == run_id, TagRow.key == "model.digest")
                  .values(value="0" * 64))
    bad = runner.invoke(app, [*home, "reproduce", run_id], env={"COLUMNS": "200"})
    assert bad.exit_code == 1 and "✗" in bad.output and "difference" in bad.output


def test_a_bad_project_file_is_a_config_error(tmp_path, toy_frame, project_yaml):
    home, path = _setup(tmp_path, toy_frame, project_yaml, task="clustering")
    result = runner.invoke(app, [*home, "train", str(path)])
    assert isinstance(result.exception, ConfigError)
    assert "task" in str(result.exception)
