"""Runs: lifecycle, params, metrics, tags, artifacts, inputs, nesting, look-ups."""

import json
import math
import random
import time

import numpy as np
import pytest
from sqlalchemy import event, func, select

from shipyard.errors import NotFoundError, TrackingError
from shipyard.store.tables import (DatasetRow, DatasetVersionRow, MetricRow, ParamRow,
                                    RunRow)
from shipyard.tracking import ActiveRun, RunInfo


def count(ws, row, **where):
    with ws.db.read() as s:
        q = select(func.count()).select_from(row)
        for k, v in where.items():
            q = q.where(getattr(row, k) == v)
        return s.execute(q).scalar()


# ----------------------------------------------------------------- lifecycle
def test_a_finished_run_records_everything(workspace):
    with workspace.start_run("exp", name="baseline", params={"lr": 0.1, "depth": 3, "x": None},
                             tags={"team": "red"}, seed=7) as run:
        assert isinstance(run, ActiveRun) and run.status == "RUNNING"
        run.log_metric("auc", 0.9)
        sum(i * i for i in range(200_000))  # some CPU time
    info = workspace.runs.get(run.id)
    assert isinstance(info, RunInfo)
    assert (info.experiment, info.name, info.status, info.seed) == ("exp", "baseline",
                                                                   "FINISHED", 7)
    assert info.params == {"depth": "3", "lr": "0.1", "x": "None"}  # stringified like MLflow
    assert info.tags == {"team": "red"}
    assert info.metrics == {"auc": 0.9}
    assert info.error is None and info.parent_id is None
    assert info.start_time <= info.end_time <= time.time()
    assert info.wall_seconds > 0 and info.cpu_seconds > 0 and info.peak_memory_mb > 10
    assert info.duration == info.wall_seconds
    assert "baseline" in repr(run) and run.id[:8] in repr(info)


def test_a_run_that_raises_ends_failed_with_its_error_and_keeps_its_metrics(workspace):
    with pytest.raises(ValueError, match="boom"):
        with workspace.start_run("exp") as run:
            for step in range(500):
                run.log_metric("loss", 1 / (step + 1))
            raise ValueError("boom")
    info = workspace.runs.get(run.id)
    assert info.status == "FAILED"
    assert info.error.startswith("ValueError: boom")
    assert "Traceback" in info.error and "test_runs.py" in info.error
    assert count(workspace, MetricRow, run_id=run.id) == 500
    assert info.metrics["loss"] == 1 / 500


def test_keyboard_interrupt_ends_killed(workspace):
    with pytest.raises(KeyboardInterrupt):
        with workspace.start_run("exp") as run:
            raise KeyboardInterrupt
    assert workspace.runs.get(run.id).status == "KILLED"


def test_end_is_explicit_idempotent_and_checked(workspace):
    run = workspace.start_run("exp")
    with pytest.raises(TrackingError, match="FINISHED, FAILED or KILLED"):
        run.end("DONE")
    run.end("killed")
    run.end("FINISHED")  # no effect
    assert workspace.runs.get(run.id).status == "KILLED"
    with pytest.raises(TrackingError, match="has ended"):
        run.log_metric("x", 1.0)
    with pytest.raises(TrackingError, match="has ended"):
        run.log_param("x", 1)


def test_nested_runs(workspace):
    with workspace.start_run("hpo", name="search", seed=1) as parent:
        trials = [parent.start_run(name=f"t{i}", params={"lr": lr})
                  for i, lr in enumerate((0.1, 0.01))]
        for t, auc in zip(trials, (0.8, 0.9)):
            t.log_metric("auc", auc)
            t.end()
        other = workspace.start_run("hpo", name="t2", parent=parent.id[:10])
        other.end()
    kids = workspace.runs.search(parent=parent, order_by="metrics.auc DESC")
    assert [k.name for k in kids] == ["t1", "t0", "t2"]
    assert {k.parent_id for k in kids} == {parent.id}
    assert {k.experiment for k in kids} == {"hpo"}
    assert [r.name for r in workspace.runs.search(parent=None)] == ["search"]
    assert len(workspace.runs.search()) == 4
    assert workspace.runs.search(f"parent_id = '{parent.id}'", order_by="name")[0].name == "t0"
    with pytest.raises(NotFoundError):
        workspace.start_run("hpo", parent="0" * 32)


# -------------------------------------------------------------------- params
def test_params_are_immutable(workspace):
    with workspace.start_run("exp", params={"lr": 0.1}) as run:
        run.log_param("lr", 0.1)          # same value: fine
        run.log_param("lr", "0.1")        # same string: fine
        with pytest.raises(TrackingError, match="param 'lr' .* is already '0.1'.*immutable"):
            run.log_param("lr", 0.2)
        run.log_params({"depth": 3, "n": 10})
        with pytest.raises(TrackingError, match="'depth'"):
            run.log_params({"new": 1, "depth": 4})
    info = workspace.runs.get(run.id)
    assert info.params == {"depth": "3", "lr": "0.1", "n": "10"}  # nothing half-written
    assert count(workspace, ParamRow, run_id=run.id) == 3


def test_params_conflicting_with_the_stored_value_are_refused(workspace):
    """Another handle on the same run (a second process) sees the stored params."""
    run = workspace.start_run("exp")
    run.log_param("lr", 0.1)
    twin = ActiveRun(workspace.runs, run.id, experiment="exp", name=None, parent_id=None,
                     seed=0, params={})
    with pytest.raises(TrackingError, match="immutable"):
        twin.log_param("lr", 0.5)
    twin.log_param("lr", 0.1)
    run.end()


@pytest.mark.parametrize("key, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("k" * 251, "251 characters long; the limit is 250"),
    ("a\nb", "control character"),
    ("tab\tkey", "control character"),
    ("nul\x00", "control character"),
    (3, "keys are strings"),
    (None, "keys are strings"),
])
def test_invalid_keys_are_refused(sqlite_workspace, key, message):
    with sqlite_workspace.start_run("exp") as run:
        for log in (lambda: run.log_param(key, 1), lambda: run.set_tag(key, 1),
                    lambda: run.log_metric(key, 1.0)):
            with pytest.raises(TrackingError, match=message):
                log()
        run.log_param("k" * 250, 1)  # the limit itself is fine
    assert sqlite_workspace.runs.get(run.id).params == {"k" * 250: "1"}


def test_hostile_keys_and_values_are_stored_and_matched_literally(workspace):
    key = "p'); DROP TABLE runs;--"
    value = "1' OR '1'='1"
    with workspace.start_run("exp", params={key: value, "model": "lgbm"},
                             tags={'t"ag': "\\'"}) as run:
        run.log_metric("m`x", 1.5)
    with workspace.start_run("exp", params={"model": "rf"}):
        pass
    found = workspace.runs.search(f"params.`{key}` = \"{value}\"")
    assert [r.id for r in found] == [run.id]
    assert found[0].params[key] == value and found[0].tags == {'t"ag': "\\'"}
    assert [r.id for r in workspace.runs.search("metrics.`m``x` = 1.5")] == [run.id]
    assert [r.id for r in workspace.runs.search("tags.`t\"ag` = '\\\\'''")] == [run.id]
    assert workspace.runs.search(f"params.model = '{value.replace(chr(39), chr(39) * 2)}'") == []
    assert count(workspace, RunRow) == 2
    with pytest.raises(TrackingError, match="NUL"):
        workspace.start_run("exp", params={"x": "a\x00b"})


# ------------------------------------------------------------------- metrics
@pytest.mark.parametrize("value, message", [
    (math.inf, "finite or NaN, got inf"),
    (-math.inf, "finite or NaN, got -inf"),
    (None, "must be a number, got NoneType"),
    ("0.5", "must be a number, got str"),
    (b"1", "must be a number, got bytes"),
    (True, "must be a number, got bool"),
    ([1.0], "must be a number, got list"),
])
def test_bad_metric_values_are_refused(sqlite_workspace, value, message):
    with sqlite_workspace.start_run("exp") as run:
        with pytest.raises(TrackingError, match=message):
            run.log_metric("m", value)
        with pytest.raises(TrackingError, match=message):
            run.log_metrics({"ok": 1.0, "m": value})
    assert count(sqlite_workspace, MetricRow) == 0  # log_metrics checks all before queueing


def test_nan_and_numpy_values_are_kept(workspace):
    with workspace.start_run("exp") as run:
        run.log_metric("nan", math.nan)
        run.log_metric("f32", np.float32(0.5))
        run.log_metric("i64", np.int64(3))
        run.log_metric("int", 2)
    info = workspace.runs.get(run.id)
    assert math.isnan(info.metrics["nan"])
    assert (info.metrics["f32"], info.metrics["i64"], info.metrics["int"]) == (0.5, 3.0, 2.0)
    history = workspace.runs.metric_history(run.id, "nan")
    assert len(history) == 1 and math.isnan(history["value"][0])


def test_steps_auto_increment_per_key_and_latest_is_the_greatest_step(workspace):
    with workspace.start_run("exp") as run:
        for v in (3.0, 2.0, 1.0):
            run.log_metric("loss", v)
        run.log_metric("acc", 0.5)
        run.log_metric("loss", 9.0, step=10)
        run.log_metric("loss", 0.1)              # continues after the explicit step
        run.log_metric("late", 5.0, step=5)
        run.log_metric("late", 1.0, step=2)      # an earlier step: not the latest
        run.log_metrics({"a": 1.0, "b": 2.0})
        run.log_metrics({"a": 3.0, "b": 4.0}, step=7)
    loss = workspace.runs.metric_history(run.id, "loss")
    assert loss["step"].tolist() == [0, 1, 2, 10, 11]
    assert loss["value"].tolist() == [3.0, 2.0, 1.0, 9.0, 0.1]
    info = workspace.runs.get(run.id)
    assert info.metrics == {"a": 3.0, "acc": 0.5, "b": 4.0, "late": 5.0, "loss": 0.1}
    everything = workspace.runs.metric_history(run.id)
    assert list(everything.columns) == ["key", "step", "value", "timestamp"]
    assert len(everything) == 12
    assert workspace.runs.metric_history(run.id, "nope").empty


def test_metric_step_and_timestamp_are_checked(sqlite_workspace):
    with sqlite_workspace.start_run("exp") as run:
        with pytest.raises(TrackingError, match="step is an integer"):
            run.log_metric("m", 1.0, step=1.5)
        with pytest.raises(TrackingError, match="timestamp must be finite"):
            run.log_metric("m", 1.0, timestamp=math.inf)
        run.log_metric("m", 1.0, step=np.int64(4), timestamp=1_700_000_000)
    row = sqlite_workspace.runs.metric_history(run.id, "m").iloc[0]
    assert (row["step"], row["timestamp"]) == (4, 1_700_000_000.0)


# ---------------------------------------------------------------------- tags
def test_tags_can_change(workspace):
    with workspace.start_run("exp", tags={"stage": "dev"}) as run:
        run.set_tag("stage", "prod")
        run.set_tags({"owner": "ana", "stage": "prod2"})
    assert workspace.runs.get(run.id).tags == {"owner": "ana", "stage": "prod2"}


# ----------------------------------------------------------------- artifacts
def test_artifacts(workspace, tmp_path):
    (tmp_path / "model.txt").write_text("weights")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "roc.svg").write_text("<svg/>")
    (folder / "sub" / "pr.svg").write_text("<svg>pr</svg>")
    with workspace.start_run("exp") as run:
        run.log_bytes("raw/blob.bin", b"\x00\x01")
        run.log_dict("config.json", {"b": 1, "a": [1, 2]})
        run.log_text("notes.md", "héllo")
        assert run.log_artifact(tmp_path / "model.txt") == ["model.txt"]
        assert run.log_artifact(folder) == ["plots/roc.svg", "plots/sub/pr.svg"]
        run.log_artifact(tmp_path / "model.txt", "models/m.txt")
        run.log_bytes("raw/blob.bin", b"replaced")  # same path: replaced
        with pytest.raises(TrackingError, match="may not contain '..'"):
            run.log_bytes("../escape", b"x")
        with pytest.raises(TrackingError, match="JSON"):
            run.log_dict("bad.json", {"x": object()})
        with pytest.raises(NotFoundError):
            run.log_artifact(tmp_path / "missing.txt")
    arts = workspace.runs.artifacts(run.id)
    assert [a.path for a in arts] == ["config.json", "model.txt", "models/m.txt", "notes.md",
                                      "plots/roc.svg", "plots/sub/pr.svg", "raw/blob.bin"]
    load = workspace.runs.load_artifact
    assert json.loads(load(run.id, "config.json")) == {"a": [1, 2], "b": 1}
    assert load(run.id, "raw/blob.bin") == b"replaced"
    assert load(run.id, "plots/sub/pr.svg") == b"<svg>pr</svg>"
    assert load(run.id, "notes.md").decode() == "héllo"
    assert {a.path: a.size_bytes for a in arts}["model.txt"] == 7
    with pytest.raises(NotFoundError, match="no artifact 'nope.txt'"):
        load(run.id, "nope.txt")
    # every blob a run points at is kept by garbage collection
    assert {a.digest for a in arts} <= workspace.referenced_digests()


# -------------------------------------------------------------- environment
def test_environment_is_captured_once_and_deduplicated(workspace):
    with workspace.start_run("exp") as a:
        with a.start_run() as b:
            pass
    ia, ib = workspace.runs.get(a.id), workspace.runs.get(b.id)
    assert ia.environment_digest == ib.environment_digest is not None
    env = workspace.runs.environment(a.id)
    import platform

    assert env["python"]["version"] == platform.python_version()
    assert env["packages"]["sqlalchemy"]
    assert env["cpu"]["count"] >= 1 and env["hostname"]


# ------------------------------------------------------------------- seeds
def test_a_given_seed_seeds_random_and_numpy(workspace):
    with workspace.start_run("exp", seed=42):
        first = (random.random(), np.random.rand())
    with workspace.start_run("exp", seed=42):
        assert (random.random(), np.random.rand()) == first


def test_a_drawn_seed_is_recorded_and_reproduces_the_run(workspace):
    with workspace.start_run("exp") as run:
        drawn = [random.random() for _ in range(3)]
    seed = workspace.runs.get(run.id).seed
    assert seed is not None and seed == run.seed
    with workspace.start_run("exp", seed=seed):
        assert [random.random() for _ in range(3)] == drawn


def test_trial_seeds_follow_from_a_seeded_parent(workspace):
    def trial_seeds():
        seeds = []
        with workspace.start_run("exp", seed=5) as parent:
            for _ in range(3):
                with parent.start_run() as trial:
                    seeds.append(trial.seed)
        return seeds

    assert trial_seeds() == trial_seeds()
    with pytest.raises(TrackingError, match="seed"):
        workspace.start_run("exp", seed=-1)


# -------------------------------------------------------------------- inputs
def _dataset_version(ws, name, version):
    with ws.db.write() as s:
        ds = s.execute(select(DatasetRow).where(DatasetRow.name == name)).scalar()
        if ds is None:
            ds = DatasetRow(name=name, created_at=time.time())
            s.add(ds)
            s.flush()
        s.add(DatasetVersionRow(
            dataset_id=ds.id, version=version, content_hash=f"{version:064x}",
            snapshot_digest=f"{version:064x}", num_rows=1, num_columns=1, size_bytes=1,
            schema=[], profile={}, source={}, created_at=time.time()))

    class Version:  # what shipyard.data's DatasetVersion offers
        ref = f"{name}@{version}"

    return Version()


def test_inputs_record_lineage(workspace):
    v1 = _dataset_version(workspace, "adult", 1)
    _dataset_version(workspace, "adult", 2)
    _dataset_version(workspace, "other", 1)
    with workspace.start_run("exp", inputs=[v1, "other@latest"]) as run:
        run.log_input("adult@latest")
        run.log_input(v1)  # twice: recorded once
        with pytest.raises(NotFoundError, match="'adult@9' does not exist"):
            run.log_input("adult@9")
        with pytest.raises(TrackingError, match="name@<version>"):
            run.log_input("adult@v1")
    assert workspace.runs.inputs(run.id) == ["adult@1", "adult@2", "other@1"]
    with pytest.raises(NotFoundError):
        workspace.start_run("exp", inputs=["nope@1"])
    assert count(workspace, RunRow) == 1  # the refused start left nothing


# ------------------------------------------------------------------ look-ups
def test_get_by_prefix_and_unknown_ids(workspace):
    with workspace.start_run("exp") as run:
        pass
    assert workspace.runs.get(run.id[:6]).id == run.id
    assert workspace.runs.get(run.id.upper()).id == run.id
    assert workspace.runs.get(run).id == run.id
    for bad, message in (("0" * 32, "does not exist"), (run.id[:5], "too short"),
                         ("zzzzzzzz", "32 hex digits"), ("'; DROP TABLE runs; --", "hex"),
                         ("f" * 40, "32 hex digits")):
        with pytest.raises(NotFoundError, match=message):
            workspace.runs.get(bad)
    prefix = "ffffff" if not run.id.startswith("ffffff") else "000000"
    with pytest.raises(NotFoundError, match="no run id starts with"):
        workspace.runs.get(prefix)


def test_an_ambiguous_prefix_is_refused(workspace):
    with workspace.start_run("exp"):
        pass
    ids = ["abcdef01" + "0" * 24, "abcdef02" + "0" * 24]
    with workspace.db.write() as s:
        exp_id = s.execute(select(RunRow.experiment_id)).scalar()
        for new in ids:
            s.add(RunRow(id=new, experiment_id=exp_id, status="FINISHED", start_time=time.time()))
    with pytest.raises(NotFoundError, match="ambiguous"):
        workspace.runs.get("abcdef0")
    assert workspace.runs.get("abcdef02").id == ids[1]


def test_search_loads_params_metrics_and_tags_in_three_queries(workspace):
    for i in range(30):
        with workspace.start_run("exp", params={"i": i}, tags={"t": i}) as run:
            run.log_metrics({"m": i, "n": -i})
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(workspace.db.read_engine, "before_cursor_execute", listener)
    try:
        found = workspace.runs.search("metrics.m >= 10", order_by=["metrics.m DESC"], limit=15)
    finally:
        event.remove(workspace.db.read_engine, "before_cursor_execute", listener)
    assert [r.params["i"] for r in found] == [str(i) for i in range(29, 14, -1)]
    assert found[0].metrics == {"m": 29.0, "n": -29.0} and found[0].tags == {"t": "29"}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 4


def test_compare_and_experiments(workspace):
    with workspace.start_run("exp", params={"lr": 0.1}) as a:
        a.log_metric("auc", 0.8)
    with workspace.start_run("exp", params={"lr": 0.2, "depth": 3}) as b:
        b.log_metric("auc", 0.9)
    with workspace.start_run("other"):
        pass
    frame = workspace.runs.compare([a.id, b.id[:8]])
    assert list(frame.columns) == [a.id, b.id]
    assert frame.loc["params.lr"].tolist() == ["0.1", "0.2"]
    assert frame.loc["params.depth"].tolist() == [None, "3"]
    assert frame.loc["metrics.auc"].tolist() == [0.8, 0.9]
    assert frame.loc["attributes.status"].tolist() == ["FINISHED", "FINISHED"]
    exps = {e.name: e.num_runs for e in workspace.runs.experiments()}
    assert exps == {"exp": 2, "other": 1}
    with pytest.raises(TrackingError):
        workspace.runs.compare([])


def test_bad_arguments_are_clear_errors(sqlite_workspace):
    runs = sqlite_workspace.runs
    with pytest.raises(TrackingError, match="experiment name"):
        sqlite_workspace.start_run("")
    with pytest.raises(TrackingError, match="params must be a mapping"):
        sqlite_workspace.start_run("exp", params=[("a", 1)])
    with pytest.raises(TrackingError, match="unknown run status 'DONE'"):
        runs.search(status="done")
    with pytest.raises(TrackingError, match="limit"):
        runs.search(limit=-1)
