import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from shipyard.errors import DataError
from shipyard.train import DateParts, TextColumn, build_preprocessor, column_kinds

FEATURES = ["age", "income", "city", "member", "joined", "review"]


def test_kinds_come_from_dtypes_and_values(mixed_frame):
    frame, _ = mixed_frame
    assert column_kinds(frame, FEATURES) == {
        "age": "numeric", "income": "numeric", "city": "categorical",
        "member": "categorical", "joined": "datetime", "review": "text"}


def test_declared_columns_override_inference(mixed_frame):
    frame, _ = mixed_frame
    frame = frame.assign(day=frame["joined"].dt.strftime("%Y-%m-%d"), code=frame["city"])
    kinds = column_kinds(frame, ["day", "code"], text_columns=["code"], date_columns=["day"])
    assert kinds == {"day": "datetime", "code": "text"}


def test_schema_without_data():
    schema = [{"name": "n", "dtype": "int64"}, {"name": "s", "dtype": "object"},
              {"name": "t", "dtype": "datetime64[ns]"}, {"name": "b", "dtype": "bool"},
              {"name": "x", "dtype": "float", "kind": "text"},
              {"name": "ts", "dtype": "timestamp[us]"}]
    assert column_kinds(schema, ["n", "s", "t", "b", "x", "ts"]) == {
        "n": "numeric", "s": "categorical", "t": "datetime", "b": "categorical",
        "x": "text", "ts": "datetime"}
    assert column_kinds({"a": "float64", "c": "str"}, ["a", "c"]) == {
        "a": "numeric", "c": "categorical"}


def test_fits_every_kind_with_missing_values(mixed_frame):
    frame, y = mixed_frame
    ct = build_preprocessor(frame, FEATURES, max_text_features=8)
    out = _dense(ct.fit_transform(frame, y))
    # 2 numeric + city (3) + member (2) + 5 date parts + 8 tf-idf terms
    assert out.shape == (len(frame), 2 + 3 + 2 + 5 + 8)
    assert np.isfinite(out).all()
    names = list(ct.get_feature_names_out())
    assert "numeric__age" in names and "datetime__joined_dayofweek" in names
    assert any(n.startswith("text_review__") for n in names)


def test_unknown_categories_and_new_missing_values_do_not_crash(mixed_frame):
    frame, y = mixed_frame
    model = Pipeline([("pre", build_preprocessor(frame, FEATURES)),
                      ("model", LogisticRegression(max_iter=500))]).fit(frame, y)
    unseen = frame.head(4).copy()
    unseen["city"] = ["atlantis", None, "rome", "nowhere"]
    unseen["age"] = np.nan
    unseen["joined"] = [pd.NaT, pd.Timestamp("2031-05-05"), pd.NaT, pd.NaT]
    unseen["review"] = [None, "never seen words here", "", "good"]
    proba = model.predict_proba(unseen)
    assert proba.shape == (4, 2) and np.isfinite(proba).all()


def test_output_is_deterministic(mixed_frame):
    frame, y = mixed_frame
    a = build_preprocessor(frame, FEATURES).fit_transform(frame, y)
    b = build_preprocessor(frame, FEATURES).fit_transform(frame, y)
    np.testing.assert_array_equal(_dense(a), _dense(b))


def _dense(matrix):
    return matrix.toarray() if hasattr(matrix, "toarray") else matrix


def test_only_the_named_features_are_used(mixed_frame):
    frame, _ = mixed_frame
    ct = build_preprocessor(frame, ["income", "age"]).fit(frame)
    assert list(ct.get_feature_names_out()) == ["numeric__income", "numeric__age"]


def test_date_parts_are_correct():
    frame = pd.DataFrame({"d": pd.to_datetime(["2024-02-29 13:45", None]),
                          "s": ["2021-12-31 23:00", "not a date"]})
    parts = DateParts().fit(frame)
    out = parts.transform(frame)
    np.testing.assert_array_equal(out[0], [2024, 2, 29, 3, 13, 2021, 12, 31, 4, 23])
    assert np.isnan(out[1]).all()
    assert list(parts.get_feature_names_out()) == [
        f"{c}_{p}" for c in "ds" for p in ("year", "month", "day", "dayofweek", "hour")]
    np.testing.assert_array_equal(DateParts(parts=("month",)).fit_transform(
        np.array([["2020-07-04"]], dtype=object)), [[7.0]])


def test_date_parts_refuse_bad_input():
    with pytest.raises(ValueError, match="subset of"):
        DateParts(parts=("week",)).fit(pd.DataFrame({"d": ["2020-01-01"]}))
    fitted = DateParts().fit(pd.DataFrame({"d": ["2020-01-01"]}))
    with pytest.raises(ValueError, match="fitted on 1 columns, got 2"):
        fitted.transform(pd.DataFrame({"d": ["2020-01-01"], "e": ["2020-01-01"]}))


def test_text_column_fills_missing_values():
    out = TextColumn().fit_transform(pd.DataFrame({"t": ["a b", None, np.nan, 3]}))
    assert out.tolist() == ["a b", "", "", "3"]
    with pytest.raises(ValueError, match="one column"):
        TextColumn().fit_transform(np.array([["a", "b"]], dtype=object))


def test_transformers_follow_sklearn_conventions(mixed_frame):
    frame, y = mixed_frame
    for est in (DateParts(parts=("year",)), TextColumn(), build_preprocessor(frame, FEATURES)):
        copy = clone(est)
        assert copy.get_params().keys() == est.get_params().keys()
        assert not [k for k in vars(copy) if k.endswith("_")]  # unfitted: no fitted state
    fitted = build_preprocessor(frame, FEATURES).fit(frame, y)
    # pickle (dumps only) is how joblib ships estimators to workers
    assert pickle.dumps(fitted)


@pytest.mark.parametrize("call, match", [
    (lambda f: build_preprocessor(f, []), "no feature columns"),
    (lambda f: build_preprocessor(f, ["agee"]), "'agee' is not in the data; did you mean 'age'"),
    (lambda f: build_preprocessor(f, ["age", "age"]), "more than once"),
    (lambda f: build_preprocessor(f, ["age"], text_columns=["city"]), "not one of the features"),
    (lambda f: build_preprocessor(f, ["city"], text_columns=["city"], date_columns=["city"]),
     "both text and a date"),
    (lambda f: build_preprocessor(42, ["age"]), "a schema must be"),
    (lambda f: build_preprocessor({"a": {"kind": "blob"}}, ["a"]), "kind 'blob' is not one of"),
])
def test_bad_input_gets_a_clear_error(mixed_frame, call, match):
    with pytest.raises(DataError, match=match):
        call(mixed_frame[0])
