"""``Runs.search(columns=...)``: only the chosen values are read, filters and
sorting still see everything, bad column names are refused clearly."""

import pytest
from sqlalchemy import event

from shipyard.errors import TrackingError


@pytest.fixture
def three_runs(workspace):
    ids = []
    for i in range(3):
        with workspace.start_run("exp", params={"lr": i / 10, "depth": i},
                                 tags={"team": f"t{i}"}) as run:
            run.log_metrics({"auc": 0.5 + i / 10, "loss": 1.0 - i / 10})
        ids.append(run.id)
    return workspace, ids


def test_only_chosen_values_are_read(three_runs):
    ws, ids = three_runs
    runs = ws.runs.search(columns=["metrics.auc", "params.lr"], order_by=["metrics.auc"])
    assert [r.id for r in runs] == ids
    assert [r.metrics for r in runs] == [{"auc": 0.5}, {"auc": 0.6}, {"auc": 0.7}]
    assert [r.params for r in runs] == [{"lr": "0.0"}, {"lr": "0.1"}, {"lr": "0.2"}]
    assert all(r.tags == {} for r in runs)
    assert runs[0].status == "FINISHED" and runs[0].experiment == "exp"  # attributes always


def test_a_kind_wildcard_reads_all_of_that_kind(three_runs):
    ws, _ = three_runs
    run = ws.runs.search(columns=["metrics.*", "tags.team", "status"], limit=1)[0]
    assert set(run.metrics) == {"auc", "loss"} and set(run.tags) == {"team"}
    assert run.params == {}


def test_filters_and_sorting_use_keys_that_are_not_read(three_runs):
    ws, ids = three_runs
    runs = ws.runs.search("params.depth >= 1 and tags.team != 't2'", columns=[],
                          order_by=["metrics.loss DESC"])
    assert [r.id for r in runs] == [ids[1]]
    assert runs[0].params == {} and runs[0].metrics == {} and runs[0].tags == {}


def test_no_columns_reads_everything_as_before(three_runs):
    ws, _ = three_runs
    full = ws.runs.search(limit=1)[0]
    assert set(full.params) == {"lr", "depth"} and set(full.metrics) == {"auc", "loss"}
    assert full.tags == {"team": "t2"}


def test_value_queries_skip_kinds_not_chosen(three_runs):
    ws, _ = three_runs
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.lower())

    event.listen(ws.db.read_engine, "before_cursor_execute", seen)
    try:
        ws.runs.search(columns=["metrics.auc"])
    finally:
        event.remove(ws.db.read_engine, "before_cursor_execute", seen)
    assert not any("from params" in s or "from tags" in s for s in statements)
    assert any("from latest_metrics" in s for s in statements)


def test_keys_lists_what_runs_logged_without_values(three_runs):
    ws, ids = three_runs
    assert ws.runs.keys(ids) == {"params": ["depth", "lr"], "metrics": ["auc", "loss"],
                                 "tags": ["team"]}
    assert ws.runs.keys(ids, limit=1)["metrics"] == ["auc"]
    assert ws.runs.keys([]) == {"params": [], "metrics": [], "tags": []}


@pytest.mark.parametrize("bad", ["auc", "metric.auc", "attributes.nope", "params.", "x.y",
                                 "tags.bad\x01key"])
def test_unknown_columns_are_refused_naming_them(three_runs, bad):
    ws, _ = three_runs
    with pytest.raises(TrackingError) as info:
        ws.runs.search(columns=[bad])
    text = str(info.value) + str(getattr(info.value, "hint", ""))
    assert "column" in text or "key" in text
    if bad in ("auc", "metric.auc", "x.y"):
        assert repr(bad) in str(info.value) and "metrics.<key>" in text


def test_a_column_must_be_a_string(three_runs):
    ws, _ = three_runs
    with pytest.raises(TrackingError, match="a column is a string"):
        ws.runs.search(columns=[("metrics", "auc")])
