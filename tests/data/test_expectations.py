import json

import numpy as np
import pandas as pd
import pytest

from shipyard.data import (Expectation, ValidationReport, load_expectations,
                           parse_expectations, validate)
from shipyard.errors import ConfigError


@pytest.fixture
def frame():
    return pd.DataFrame({
        "age": [34, 200, -3, None, 51, 34],
        "code": ["ab", "cd", "x1", None, "ab", "zz"],
        "when": pd.to_datetime(["2021-01-01", "2022-06-01", "2019-12-31", "2023-01-01",
                                "2020-05-05", "2024-02-02"]),
    })


def run(frame, *specs):
    return validate(frame, parse_expectations(specs))


def only(report):
    assert len(report.results) == 1
    return report.results[0]


# ------------------------------------------------------------------ checks
def test_range_counts_failing_rows_with_indexes_and_values(frame):
    r = only(run(frame, {"column": "age", "range": {"min": 0, "max": 120}}))
    assert (r.passed, r.failing, r.column, r.check, r.expectation) == (
        False, 2, "age", "range", 0)
    assert r.examples == ({"index": 1, "value": 200.0}, {"index": 2, "value": -3.0})
    assert r.message == "2 values outside [0, 120]"


def test_range_bounds_are_inclusive_and_either_may_be_missing(frame):
    assert only(run(frame, {"column": "age", "range": {"min": -3, "max": 200}})).passed
    assert only(run(frame, {"column": "age", "range": {"max": 199}})).failing == 1
    assert only(run(frame, {"column": "age", "range": {"min": 0}})).failing == 1


def test_range_on_datetimes_accepts_iso_strings(frame):
    r = only(run(frame, {"column": "when", "range": {"min": "2020-01-01"}}))
    assert r.failing == 1 and r.examples[0]["index"] == 2
    assert r.examples[0]["value"] == "2019-12-31T00:00:00"


def test_not_null_allowed_unique_regex(frame):
    report = run(frame,
                 {"column": "age", "not_null": True},
                 {"column": "code", "allowed": ["ab", "cd", "zz"]},
                 {"column": "age", "unique": True},
                 {"column": "code", "regex": "[a-z]+"})
    got = {(r.column, r.check): (r.failing, [e["index"] for e in r.examples])
           for r in report.results}
    assert got == {("age", "not_null"): (1, [3]),
                   ("code", "allowed"): (1, [2]),  # missing values are not checked
                   ("age", "unique"): (2, [0, 5]),
                   ("code", "regex"): (1, [2])}


def test_regex_must_match_the_whole_value():
    df = pd.DataFrame({"s": ["abc", "abc1", "1abc"]})
    assert only(run(df, {"column": "s", "regex": "[a-z]+"})).failing == 2


def test_examples_are_capped_at_five_but_count_is_exact():
    df = pd.DataFrame({"x": np.arange(100)})
    r = only(run(df, {"column": "x", "range": {"max": 9}}))
    assert r.failing == 90 and len(r.examples) == 5


def test_rows_is_a_table_level_check(frame):
    r = only(run(frame, {"rows": {"min": 10, "max": 20}}))
    assert (r.passed, r.column, r.failing) == (False, None, None)
    assert r.message == "expected between 10 and 20 rows, found 6"
    assert only(run(frame, {"rows": {"max": 6}})).passed


def test_missing_column_is_a_reported_failure_not_a_crash(frame):
    report = run(frame, {"column": "salary", "not_null": True, "range": {"min": 0}},
                 {"column": "age", "range": {"min": -10}})
    assert [(r.column, r.check, r.passed) for r in report.results] == [
        ("salary", "not_null", False), ("salary", "range", False), ("age", "range", True)]
    assert "column 'salary' is missing (columns: age, code, when)" in str(report)


def test_a_check_that_cannot_run_on_the_data_is_reported(frame):
    r = only(run(frame, {"column": "code", "range": {"min": 0}}))
    assert not r.passed and "could not run on this data" in r.message


@pytest.mark.parametrize("column, values, spec, ok", [
    ("i", [1, 2], "int64", True),
    ("i", [1, 2], "int", True),
    ("i", [1, 2], "number", True),
    ("i", [1, 2], "float64", False),
    ("ni", pd.array([1, None], dtype="Int64"), "int64", True),
    ("i32", np.array([1, 2], dtype="int32"), "int64", False),
    ("i32", np.array([1, 2], dtype="int32"), "int32", True),
    ("f", [1.0, np.nan], "float64", True),
    ("f", [1.0, np.nan], "float", True),
    ("f", [1.0, np.nan], "int64", False),
    ("s", ["a", None], "string", True),
    ("s", ["a", None], "str", True),
    ("s", ["a", None], "object", True),
    ("o", pd.Series(["a", "b"], dtype=object), "string", True),
    ("mixed", pd.Series(["a", 1], dtype=object), "string", False),
    ("b", [True, False], "bool", True),
    ("b", [True, False], "int64", False),
    ("b", [True, False], "number", False),
    ("d", pd.to_datetime(["2020-01-01", "2021-01-01"]), "datetime64[ns]", True),
    ("d", pd.to_datetime(["2020-01-01", "2021-01-01"]), "datetime", True),
    ("d", pd.to_datetime(["2020-01-01", "2021-01-01"]), "datetime64[ns, UTC]", False),
    ("dz", pd.to_datetime(["2020-01-01"] * 2).tz_localize("UTC"), "datetime64[ns, UTC]", True),
    ("dz", pd.to_datetime(["2020-01-01"] * 2).tz_localize("UTC"), "datetime64[ns]", False),
    ("c", pd.Categorical(["a", "b"]), "category", True),
    ("c", pd.Categorical(["a", "b"]), "string", False),
])
def test_dtype_compares_families_sensibly(column, values, spec, ok):
    df = pd.DataFrame({column: values})
    r = only(run(df, {"column": column, "dtype": spec}))
    assert r.passed is ok
    if not ok:
        assert r.message == f"expected dtype {spec}, found {df[column].dtype}"


def test_custom_callables_on_a_column_and_on_the_table(frame):
    report = validate(frame, [
        Expectation(column="age", check=lambda s: s.fillna(0) < 100, name="under_100"),
        Expectation(check=lambda df: len(df.columns) == 2),
        {"column": "code", "check": lambda s: True},
    ])
    under, table, ok = report.results
    assert (under.check, under.failing, under.examples[0]["index"]) == ("under_100", 1, 1)
    assert not table.passed and table.failing is None and "returned False" in table.message
    assert ok.passed
    assert Expectation(column="age", check=len).to_dict() == {"column": "age", "custom": "len"}


def test_several_checks_in_one_expectation_report_separately(frame):
    report = run(frame, {"column": "age", "not_null": True, "range": {"max": 100},
                         "dtype": "float64"})
    assert [(r.check, r.passed) for r in report.results] == [
        ("dtype", True), ("not_null", False), ("range", False)]


# ------------------------------------------------------------------ report
def test_report_renders_as_text_and_round_trips_as_dict(frame):
    report = run(frame, {"column": "age", "range": {"min": 0, "max": 120}},
                 {"column": "code", "not_null": True}, {"rows": {"min": 1}})
    assert not report.passed and len(report.failures) == 2
    text = str(report)
    assert text.splitlines()[0] == "2 of 3 checks failed on 6 rows:"
    assert "age\n    - range (expectation 0): 2 values outside [0, 120]; " \
           "e.g. row 1: 200.0, row 2: -3.0" in text
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert (data["passed"], data["num_checks"], data["num_failed"]) == (False, 3, 2)
    assert ValidationReport.from_dict(data) == report
    assert list(report.by_column()) == ["age", "code", "<table>"]


def test_passing_report(frame):
    report = run(frame, {"column": "age", "range": {"min": -5, "max": 500}})
    assert report.passed and str(report) == "all 1 checks passed on 6 rows"
    assert validate(frame, []).passed


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize("specs, message", [
    ([{"column": "a", "rnge": {"min": 1}}], "expectations[0] is invalid:\n  rnge: unknown key"),
    ([{"column": "a", "not_null": True}, {"column": "a", "range": {"min": 5, "max": 1}}],
     "expectations[1] is invalid:\n  range: min (5) is greater than max (1)"),
    ([{"column": "a", "range": {}}], "range: give min, max or both"),
    ([{"column": "a", "dtype": "int65"}], "dtype: dtype 'int65' is not known"),
    ([{"column": "a", "regex": "("}], "regex: '(' is not a valid pattern"),
    ([{"column": "a", "allowed": []}], "allowed: is empty"),
    ([{"column": "a", "not_null": "sometimes"}], "not_null: Input should be a valid boolean"),
    ([{"range": {"min": 0}}], "range need a column"),
    ([{"column": "a", "rows": {"min": 1}}], "rows is a table-level check"),
    ([{"column": "a"}], "names no check"),
    ([{"rows": {"min": -1}}], "rows.min: Input should be greater than or equal to 0"),
    (["not_null"], "expectations[0] must be a mapping"),
    ({"column": "a"}, "must be a list of expectations"),
])
def test_invalid_expectations_name_the_index_and_key(specs, message):
    with pytest.raises(ConfigError) as info:
        parse_expectations(specs)
    assert message in str(info.value)


def test_expectations_from_yaml_and_json_files(tmp_path):
    (tmp_path / "e.yaml").write_text(
        "expectations:\n  - {column: age, range: {min: 0, max: 120}}\n  - rows: {min: 1}\n")
    (tmp_path / "e.json").write_text('[{"column": "age", "not_null": true}]')
    yaml_exps = load_expectations(tmp_path / "e.yaml")
    assert [e.checks for e in yaml_exps] == [("range",), ("rows",)]
    assert load_expectations(tmp_path / "e.json")[0].not_null is True
    (tmp_path / "bad.yaml").write_text("- {column: age, range: {min: 0, max: -1}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml\[0\] is invalid"):
        load_expectations(tmp_path / "bad.yaml")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ConfigError, match="does not parse"):
        load_expectations(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="cannot read expectations file"):
        load_expectations(tmp_path / "nope.yaml")
