"""Reading metric curves for charts: full series, envelopes of long series,
many runs at once, and the history frame, on SQLite and PostgreSQL."""

import math

import numpy as np
import pytest

from shipyard.errors import NotFoundError, TrackingError
from shipyard.tracking._records import MetricSeries


def _log(run, key, values, steps=None, timestamps=None):
    for i, v in enumerate(values):
        run.log_metric(key, v, step=None if steps is None else steps[i],
                       timestamp=None if timestamps is None else timestamps[i])


def test_a_full_series_is_every_point_sorted_by_step_then_time(workspace):
    with workspace.start_run("exp") as run:
        # steps logged out of order, one step twice (later timestamp logged first)
        _log(run, "loss", [0.5, 0.4, math.nan, 0.9, 0.8],
             steps=[2, 0, 1, 3, 3], timestamps=[10.0, 11.0, 12.0, 14.0, 13.0])
    series = workspace.runs.metric_series(run.id, "loss")
    assert isinstance(series, MetricSeries) and series.total == 5 and not series.reduced
    assert series.steps.dtype == np.int64 and series.values.dtype == np.float64
    assert series.steps.tolist() == [0, 1, 2, 3, 3]
    assert series.values[0] == 0.4 and math.isnan(series.values[1])
    assert series.values[2:].tolist() == [0.5, 0.8, 0.9]  # equal steps: by timestamp
    history = workspace.runs.metric_history(run.id, "loss")
    assert history["step"].tolist() == series.steps.tolist()
    assert np.array_equal(history["value"].to_numpy(), series.values, equal_nan=True)


def test_an_envelope_keeps_each_range_extremes_and_the_ends(workspace):
    values = [math.sin(i / 40) for i in range(2000)]
    values[777] = 50.0  # a spike
    values[1333] = -50.0  # a dip
    values[5] = math.nan  # NaN points cannot be drawn: left out
    with workspace.start_run("exp") as run:
        _log(run, "signal", values)
    cut = workspace.runs.metric_series(run.id, "signal", envelope=20)
    assert cut.total == 2000 and cut.reduced
    assert len(cut.steps) <= 2 * 20 + 2
    steps = cut.steps.tolist()
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 1999
    assert {777, 1333} <= set(steps) and 5 not in steps
    logged = np.array(values)
    assert np.array_equal(cut.values, logged[cut.steps])  # real points only
    # every range of 100 steps keeps its own lowest and highest point
    for lo in range(0, 2000, 100):
        block = logged[lo:lo + 100]
        finite = np.flatnonzero(~np.isnan(block)) + lo
        assert int(finite[np.argmin(logged[finite])]) in steps
        assert int(finite[np.argmax(logged[finite])]) in steps


def test_a_short_series_is_read_whole_even_with_an_envelope(workspace):
    with workspace.start_run("exp") as run:
        _log(run, "loss", [3.0, 2.0, 1.0])
    series = workspace.runs.metric_series(run.id, "loss", envelope=1)
    assert series.steps.tolist() == [0, 1, 2] and not series.reduced


def test_a_metric_never_logged_is_an_empty_series(workspace):
    with workspace.start_run("exp") as run:
        run.log_metric("loss", 1.0)
    series = workspace.runs.metric_series(run.id, "auc", envelope=10)
    assert series.total == 0 and len(series.steps) == 0 and len(series.values) == 0


def test_many_runs_are_read_together_and_match_one_by_one(workspace):
    ids = []
    for i in range(5):
        with workspace.start_run("exp") as run:
            _log(run, "loss", [1.0 / (s + 1) + i for s in range(30 if i != 3 else 400)])
            run.log_metric("other", 1.0)
        ids.append(run.id)
    with workspace.start_run("exp") as bare:
        bare.log_metric("other", 1.0)
    many = workspace.runs.metric_series_many([*ids, bare.id], "loss", envelope=20)
    assert list(many) == ids  # the run without the metric is left out, order kept
    for rid in ids:
        one = workspace.runs.metric_series(rid, "loss", envelope=20)
        assert many[rid].steps.tolist() == one.steps.tolist()
        assert many[rid].values.tolist() == one.values.tolist()
        assert many[rid].total == one.total
    assert many[ids[3]].reduced and not many[ids[0]].reduced


def test_history_of_all_metrics_is_sorted_by_key_then_step(workspace):
    with workspace.start_run("exp") as run:
        _log(run, "b", [2.0, math.nan])
        _log(run, "a", [1.0])
    history = workspace.runs.metric_history(run.id)
    assert list(history.columns) == ["key", "step", "value", "timestamp"]
    assert history["key"].tolist() == ["a", "b", "b"]
    assert history["step"].tolist() == [0, 0, 1]
    assert history["value"][0] == 1.0 and math.isnan(history["value"][2])
    assert history.dtypes["step"] == np.int64 and history.dtypes["timestamp"] == np.float64


def test_bad_requests_for_series_are_refused_clearly(workspace):
    with workspace.start_run("exp") as run:
        run.log_metric("loss", 1.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(TrackingError, match="envelope must be a positive integer"):
            workspace.runs.metric_series(run.id, "loss", envelope=bad)
    with pytest.raises(TrackingError, match="empty"):
        workspace.runs.metric_series(run.id, "")
    with pytest.raises(TrackingError, match="envelope"):
        workspace.runs.metric_series_many([run.id], "loss", envelope=0)
    with pytest.raises(NotFoundError):
        workspace.runs.metric_series("f" * 32, "loss")
