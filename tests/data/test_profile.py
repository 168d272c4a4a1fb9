import json

import numpy as np
import pandas as pd
import pytest

from shipyard.data import profile_column, profile_frame
from shipyard.data._jsonable import jsonable


def test_numeric_statistics_equal_pandas(people):
    p = profile_frame(people)
    age = p["columns"]["age"]
    s = people["age"]
    assert age["count"] == 7 and age["missing"] == 1
    assert age["missing_fraction"] == pytest.approx(1 / 8)
    assert age["distinct"] == s.nunique() == 6
    assert age["mean"] == pytest.approx(s.mean())
    assert age["std"] == pytest.approx(s.std())
    assert (age["min"], age["max"]) == (s.min(), s.max())
    for q in (5, 25, 50, 75, 95):
        assert age["quantiles"][f"p{q}"] == pytest.approx(s.quantile(q / 100))
    assert age["top"][0] == {"value": 23.0, "count": 2}
    assert age["kind"] == "numeric" and age["dtype"] == "float64"


def test_table_totals(people):
    p = profile_frame(people)
    assert (p["num_rows"], p["num_columns"], p["missing_cells"]) == (8, 5, 2)
    assert list(p["columns"]) == list(people.columns)


def test_strings_booleans_datetimes_categoricals(people):
    p = profile_frame(people.assign(tier=pd.Categorical(["a", "b", "a", "a", None, "b", "a",
                                                         "a"])))["columns"]
    assert p["city"]["top"] == [{"value": "Oslo", "count": 3}, {"value": "Lima", "count": 2},
                                {"value": "Pune", "count": 2}]
    assert (p["city"]["kind"], p["city"]["min_length"], p["city"]["max_length"]) == (
        "string", 4, 4)
    assert p["member"]["kind"] == "boolean"
    assert p["member"]["mean"] == pytest.approx(5 / 8)
    assert p["joined"]["min"] == "2018-02-28T00:00:00"
    assert p["joined"]["max"] == "2023-01-01T00:00:00"
    assert p["tier"]["kind"] == "categorical"
    assert p["tier"]["top"] == [{"value": "a", "count": 5}, {"value": "b", "count": 2}]
    assert p["tier"]["missing"] == 1


def test_profile_is_strict_json_even_with_nan_inf_and_odd_values():
    df = pd.DataFrame({
        "f": [1.0, np.inf, np.nan, 3.0],
        "all_missing": [np.nan] * 4,
        "lists": [[1], [1], None, {"a": 2}],
        "tz": pd.to_datetime(["2024-01-01"] * 4).tz_localize("Europe/Oslo"),
        "u": np.array([2**63, 1, 1, 1], dtype="uint64"),
    })
    p = profile_frame(df)
    json.dumps(p, allow_nan=False)
    f = p["columns"]["f"]
    assert (f["infinite"], f["min"], f["max"], f["mean"]) == (1, 1.0, 3.0, 2.0)
    assert p["columns"]["all_missing"]["mean"] is None
    assert p["columns"]["lists"]["kind"] == "other"
    assert p["columns"]["lists"]["top"][0] == {"value": "[1]", "count": 2}
    assert p["columns"]["tz"]["min"] == "2024-01-01T00:00:00+01:00"
    assert p["columns"]["u"]["top"][1] == {"value": 2**63, "count": 1}


def test_empty_table():
    p = profile_frame(pd.DataFrame({"x": pd.Series([], dtype="int64")}))
    assert p["num_rows"] == 0
    assert p["columns"]["x"]["count"] == 0 and p["columns"]["x"]["mean"] is None
    assert p["columns"]["x"]["missing_fraction"] == 0.0


def test_top_values_are_capped_at_five():
    col = profile_column(pd.Series(list("aabbbcdefg")))
    assert [t["value"] for t in col["top"]] == ["b", "a", "c", "d", "e"]
    assert col["distinct"] == 7


def test_jsonable_converts_numpy_and_pandas_values():
    assert jsonable({"a": np.int64(3), "b": np.float32(0.5), "c": np.bool_(True)}) == {
        "a": 3, "b": 0.5, "c": True}
    assert jsonable([np.nan, np.inf, pd.NA, pd.NaT, None]) == [None] * 5
    assert jsonable(np.datetime64("2024-01-02T03:04:05.123456789")) == \
        "2024-01-02T03:04:05.123456789"
    assert jsonable(pd.Timedelta("1D")) == "1 days 00:00:00"
    assert jsonable(b"\xff") == "\\xff"
