"""Monitor reports are stored in ``monitor_reports`` and read back by model,
time, version and role, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from monitor.alerting import register_names, report_dict, ws  # noqa: F401
from shipyard.errors import ConfigError, MonitorError, NotFoundError
from shipyard.monitor import ReportRecord


@pytest.fixture
def models(workspace):
    register_names(workspace, "income", "fraud")
    return workspace


def test_the_tables_match_migration_0007(models):
    """The ORM tables and the migration agree column for column."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shipyard.store.tables import Base

    with models.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diff if "monitor_" in repr(d)]
    assert ours == []
    from alembic.script import ScriptDirectory

    from shipyard.store.migrations import alembic_config

    # Later migrations build on 0007: the workspace is at head, 0007 in its history.
    history = [r.revision for r in
               ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    assert models.db.current_revision() == history[0] and "0007_monitor" in history


def test_a_recorded_report_is_stored_whole_and_queryable(models):
    data = report_dict("income", drifted=("age",), n=321)
    result = models.monitor.record(data)
    stored = result.report
    assert isinstance(stored, ReportRecord)
    assert (stored.model, stored.version, stored.role, stored.rows) == ("income", 1, "primary",
                                                                        321)
    assert stored.verdict == "alert" and stored.window_end == pytest.approx(
        data["window"]["end"])
    assert stored.report["drift"]["age"]["drifted"] is True
    again = models.monitor.report(stored.id)
    assert again == stored and again.report == stored.report
    assert again.to_report().drift["age"]["drifted"] is True  # a MonitorReport again
    assert models.monitor.latest("income") == stored
    assert models.monitor.latest("fraud") is None


def test_reports_are_newest_first_and_filtered(models):
    ids = [models.monitor.record(report_dict("income", version=v, role=r)).report.id
           for v, r in ((1, "primary"), (2, "candidate"), (1, "primary"), (2, "shadow"))]
    models.monitor.record(report_dict("fraud"))
    assert [r.id for r in models.monitor.reports("income")] == ids[::-1]
    assert [r.id for r in models.monitor.reports("income", limit=2)] == ids[:1:-1]
    assert [r.id for r in models.monitor.reports("income", version=2)] == [ids[3], ids[1]]
    assert [r.id for r in models.monitor.reports("income", role="primary")] == [ids[2], ids[0]]
    assert len(models.monitor.reports("income", since="1h")) == 4
    assert models.monitor.reports("income", since=time.time() + 60) == []
    future = dt.datetime.now() + dt.timedelta(minutes=1)
    assert models.monitor.reports("income", since=future) == []
    assert len(models.monitor.reports("income", since=future.replace(year=2000).isoformat())
               ) == 4
    assert models.monitor.latest("income").id == ids[-1]


def test_time_windows_given_as_text_or_datetimes_are_stored_as_epoch_seconds(models):
    start = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    data = report_dict("income")
    data["window"] = {"start": start.isoformat(), "end": start + dt.timedelta(hours=1),
                      "n": 10}
    stored = models.monitor.record(data).report
    assert stored.window_start == start.timestamp()
    assert stored.window_end == start.timestamp() + 3600
    assert stored.report["window"]["start"] == start.isoformat()  # the report as given


def test_nan_figures_are_stored_as_null(models):
    data = report_dict("income")
    data["drift"]["age"]["p_value"] = float("nan")
    stored = models.monitor.record(data).report
    assert models.monitor.report(stored.id).report["drift"]["age"]["p_value"] is None


@pytest.mark.parametrize("change, message", [
    ({"model": "no such model!"}, "not a valid model name"),
    ({"model": None}, "not a valid model name"),
    ({"verdict": "meh"}, "verdict 'meh'"),
    ({"window": [1, 2]}, "window must be a mapping"),
    ({"window": {"start": "yesterday", "end": 1, "n": 3}}, "window.start"),
    ({"window": {"start": 1, "end": 2, "n": -3}}, "row count"),
    ({"version": "1"}, "version must be a number"),
    ({"role": "x" * 50}, "role must be"),
])
def test_a_malformed_report_is_refused_and_nothing_is_stored(ws, change, message):  # noqa: F811
    data = {**report_dict("income"), **change}
    with pytest.raises(MonitorError, match=message):
        ws.monitor.record(data)
    assert ws.monitor.reports("income") == []


def test_a_report_of_an_unknown_model_is_refused(ws):  # noqa: F811
    with pytest.raises(NotFoundError, match="no model is called 'ghost'"):
        ws.monitor.record(report_dict("ghost"))
    with pytest.raises(NotFoundError, match="ghost"):
        ws.monitor.reports("ghost")
    with pytest.raises(NotFoundError, match="ghost"):
        ws.monitor.alerts("ghost")
    assert ws.monitor.latest("ghost") is None  # servers ask on every scrape: no error


def test_bad_queries_are_clear_errors(ws):  # noqa: F811
    with pytest.raises(NotFoundError, match="no monitor report 12345"):
        ws.monitor.report(12345)
    with pytest.raises(ConfigError, match="a report id is a number"):
        ws.monitor.report("1")
    with pytest.raises(ConfigError, match="limit must be a positive number"):
        ws.monitor.reports("income", limit=0)
    with pytest.raises(ConfigError, match="'10 parsecs' is not a duration"):
        ws.monitor.reports("income", since="10 parsecs")
    with pytest.raises(ConfigError, match="neither a duration nor a time"):
        ws.monitor.reports("income", since="last tuesday")
    with pytest.raises(ConfigError, match="since"):
        ws.monitor.reports("income", since="0s")
    with pytest.raises(ConfigError, match="alert state 'open'"):
        ws.monitor.alerts(state="open")
    with pytest.raises(MonitorError, match="not a valid model name"):
        ws.monitor.reports("../etc")


def test_check_validates_its_arguments_before_reading_anything(ws):  # noqa: F811
    with pytest.raises(NotFoundError, match="ghost"):
        ws.monitor.check("ghost")
    with pytest.raises(ConfigError, match="role 'canary'"):
        ws.monitor.check("income", role="canary")
    with pytest.raises(ConfigError, match="version must be a positive number"):
        ws.monitor.check("income", version=0)
    with pytest.raises(ConfigError, match="since: '1 fortnight' is neither"):
        ws.monitor.check("income", since="1 fortnight")
    with pytest.raises(ConfigError, match="starts .* at or after it ends"):
        ws.monitor.check("income", start=2000.0, end=1000.0)
    with pytest.raises(ConfigError, match="since or start, not both"):
        ws.monitor.check("income", since="1h", start=1.0)


def test_the_monitor_is_reached_from_the_workspace(ws):  # noqa: F811
    assert ws.monitor is ws.monitor
    assert repr(ws.monitor).startswith("Monitor(Workspace(")
