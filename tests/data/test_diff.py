import json

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def two_versions(workspace):
    a = pd.DataFrame({"id": [1, 2, 3, 4], "age": [20.0, 30.0, np.nan, 50.0],
                      "city": ["a", "b", "a", "c"], "gone": [1, 1, 1, 1]})
    b = pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "age": [20.0, 30.0, 40.0, 50.0, 60.0, 70.0],
                      "city": [1, 2, 1, 3, 1, 1], "new": [True] * 6})
    workspace.datasets.register("d", a)
    workspace.datasets.register("d", b)
    return a, b


def test_diff_reports_schema_rows_and_statistics(workspace, two_versions):
    a, b = two_versions
    d = workspace.datasets.diff("d@1", "d@latest")
    assert (d.a, d.b) == ("d@1", "d@2")
    assert (d.rows_before, d.rows_after, d.rows_delta) == (4, 6, 2)
    assert d.added == ({"name": "new", "type": "bool"},)
    assert d.removed == ({"name": "gone", "type": "int64"},)
    assert d.type_changed == ({"name": "city", "before": "str", "after": "int64"},)
    assert d.schema_changed and not d.same_content
    changes = {(c.column, c.stat): (c.before, c.after, c.delta) for c in d.changes}
    assert changes[("age", "missing")] == (1, 0, -1)
    assert changes[("age", "mean")] == pytest.approx(
        (a["age"].mean(), b["age"].mean(), b["age"].mean() - a["age"].mean()))
    assert changes[("age", "std")][2] == pytest.approx(b["age"].std() - a["age"].std())
    assert changes[("age", "max")] == (50.0, 70.0, 20.0)
    assert changes[("id", "distinct")] == (4, 6, 2)
    assert ("age", "min") not in changes  # unchanged statistics are left out
    json.dumps(d.to_dict(), allow_nan=False)


def test_diff_renders_as_a_table(workspace, two_versions):
    d = workspace.datasets.diff("d@1", "d@2")
    rows = d.table()
    assert rows[:3] == [["new", "added", "-", "bool", ""], ["gone", "removed", "int64", "-", ""],
                        ["city", "type", "str", "int64", ""]]
    assert ["age", "max", "50", "70", "+20"] in rows
    text = str(d)
    assert text.splitlines()[0] == "d@1 -> d@2: rows 4 -> 6 (+2)"
    assert text.splitlines()[1].split() == ["column", "stat", "before", "after", "delta"]
    assert len(text.splitlines()) == 2 + len(rows)


def test_diff_of_identical_content(workspace):
    df = pd.DataFrame({"x": [1, 2]})
    workspace.datasets.register("x", df)
    workspace.datasets.register("y", df)
    d = workspace.datasets.diff("x", "y@1")
    assert d.same_content and d.changes == () and not d.schema_changed
    assert str(d) == "x@1 -> y@1: rows 2 -> 2 (+0), identical content"
