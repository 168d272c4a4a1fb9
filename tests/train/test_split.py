import doctest
import json

import numpy as np
import pandas as pd
import pytest

import shipyard.train._split
from shipyard.errors import ConfigError, DataError
from shipyard.train import SplitSpec, cv_folds, make_split


@pytest.fixture(scope="module")
def frame():
    """100 rows: 80/20 binary target, 20 groups of 5, one row a day."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "x": rng.normal(size=100),
        "y": np.r_[np.zeros(80, int), np.ones(20, int)][rng.permutation(100)],
        "user": np.repeat([f"u{i}" for i in range(20)], 5)[rng.permutation(100)],
        "day": pd.date_range("2024-01-01", periods=100, freq="D")[rng.permutation(100)],
    })


SPECS = {
    "random": SplitSpec(kind="random", test_size=0.2, validation_size=0.1),
    "stratified": SplitSpec(kind="stratified", test_size=0.2, validation_size=0.1),
    "group": SplitSpec(kind="group", test_size=0.2, validation_size=0.2, group_column="user"),
    "time": SplitSpec(kind="time", test_size=0.2, validation_size=0.1, time_column="day"),
}


def parts(split):
    return split.train, split.validation, split.test


@pytest.mark.parametrize("kind", SPECS)
def test_parts_are_disjoint_and_cover_every_row(frame, kind):
    split = make_split(frame, "y", SPECS[kind], seed=1)
    every = np.concatenate(parts(split))
    assert sorted(every) == list(range(len(frame)))
    assert all(len(p) > 0 for p in parts(split))
    assert split.kind == kind and split.n_rows == 100


@pytest.mark.parametrize("kind", ["random", "stratified", "time"])
def test_exact_sizes(frame, kind):
    assert make_split(frame, "y", SPECS[kind], seed=1).sizes == \
        {"train": 70, "validation": 10, "test": 20}


@pytest.mark.parametrize("kind", SPECS)
def test_same_seed_same_split_other_seed_other_split(frame, kind):
    a, b = make_split(frame, "y", SPECS[kind], 3), make_split(frame, "y", SPECS[kind], 3)
    assert a.digest == b.digest
    for pa, pb in zip(parts(a), parts(b), strict=True):
        np.testing.assert_array_equal(pa, pb)
    c = make_split(frame, "y", SPECS[kind], 4)
    assert (c.digest == a.digest) == (kind == "time")  # a time split does not shuffle


def test_stratified_keeps_class_proportions(frame):
    split = make_split(frame, "y", SPECS["stratified"], seed=0)
    y = frame["y"].to_numpy()
    assert y[split.test].sum() == 4 and y[split.validation].sum() == 2
    assert y[split.train].sum() == 14


def test_group_split_keeps_each_group_in_one_part(frame):
    split = make_split(frame, "y", SPECS["group"], seed=0)
    users = [set(frame["user"].iloc[p]) for p in parts(split)]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert len(users[2]) == 4 and len(users[1]) == 4  # 20% of 20 groups each


def test_time_split_trains_on_the_past_and_tests_on_the_future(frame):
    split = make_split(frame, "y", SPECS["time"], seed=0)
    days = frame["day"]
    assert days.iloc[split.train].max() < days.iloc[split.validation].min()
    assert days.iloc[split.validation].max() < days.iloc[split.test].min()
    assert days.iloc[split.test].max() == days.max()


def test_time_column_may_be_numbers_or_iso_strings(frame):
    spec = SplitSpec(kind="time", test_size=0.2, time_column="t")
    numbers = pd.DataFrame({"t": [5, 3, 9, 1, 7], "y": 0})
    assert list(make_split(numbers, "y", spec, 0).test) == [2]
    strings = pd.DataFrame({"t": ["2024-03-01", "2024-01-01", "2024-02-01"], "y": 0})
    assert list(make_split(strings, "y", spec, 0).test) == [0]


def test_no_validation_part_when_not_asked(frame):
    for kind in SPECS:
        spec = SPECS[kind].model_copy(update={"validation_size": 0.0})
        split = make_split(frame, "y", spec, seed=0)
        assert len(split.validation) == 0 and len(split.test) > 0


def test_description_is_json_and_tracks_the_indexes(frame):
    split = make_split(frame, "y", SPECS["group"], seed=7)
    record = json.loads(json.dumps(split.describe()))
    assert record == {"kind": "group", "seed": 7, "column": "user", "n_rows": 100,
                      "sizes": split.sizes, "digest": split.digest}
    assert len(split.digest) == 64


@pytest.mark.parametrize("kind", SPECS)
def test_folds_cover_train_and_validation_but_never_test(frame, kind):
    spec = SPECS[kind].model_copy(update={"folds": 3})
    split = make_split(frame, "y", spec, seed=2)
    folds = cv_folds(frame, "y", spec, seed=2)
    assert len(folds) == 3
    pool = set(split.train) | set(split.validation)
    for fit, ev in folds:
        assert not set(fit) & set(ev)
        assert set(fit) | set(ev) <= pool
        assert not (set(fit) | set(ev)) & set(split.test)
    if kind != "time":  # each row is evaluated exactly once
        assert sorted(np.concatenate([ev for _, ev in folds])) == sorted(pool)
    again = cv_folds(frame, "y", spec, seed=2)
    for (fa, ea), (fb, eb) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(ea, eb)


def test_group_folds_keep_groups_apart(frame):
    spec = SPECS["group"].model_copy(update={"folds": 3})
    for fit, ev in cv_folds(frame, "y", spec, seed=0):
        assert not set(frame["user"].iloc[fit]) & set(frame["user"].iloc[ev])


def test_time_folds_evaluate_on_newer_rows(frame):
    spec = SPECS["time"].model_copy(update={"folds": 3})
    for fit, ev in cv_folds(frame, "y", spec, seed=0):
        assert frame["day"].iloc[fit].max() < frame["day"].iloc[ev].min()


def test_stratified_folds_keep_proportions(frame):
    spec = SPECS["stratified"].model_copy(update={"folds": 2})
    for _, ev in cv_folds(frame, "y", spec, seed=0):
        assert frame["y"].iloc[ev].sum() == 8  # 16 positives outside the test part


def test_folds_need_a_fold_count(frame):
    with pytest.raises(ConfigError, match="split.folds"):
        cv_folds(frame, "y", SPECS["random"], seed=0)


def test_too_few_rows_for_the_folds():
    tiny = pd.DataFrame({"y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="too few for 5 folds"):
        cv_folds(tiny, "y", SplitSpec(kind="random", test_size=0.25, folds=5), seed=0)


@pytest.mark.parametrize("spec, match", [
    (SplitSpec(kind="group", group_column="team"), "group_column 'team' is not a column"),
    (SplitSpec(kind="time", time_column="when"), "time_column 'when' is not a column"),
])
def test_missing_column(frame, spec, match):
    with pytest.raises(DataError, match=match):
        make_split(frame, "y", spec, seed=0)


def test_missing_target(frame):
    with pytest.raises(DataError, match="target 'label' is not a column"):
        make_split(frame, "label", SPECS["random"], seed=0)


def test_time_column_that_cannot_be_ordered():
    frame = pd.DataFrame({"t": ["soon", "later", "never"], "y": 0})
    with pytest.raises(DataError, match="cannot be ordered"):
        make_split(frame, "y", SplitSpec(kind="time", time_column="t"), seed=0)


def test_too_few_rows():
    with pytest.raises(DataError, match="1 rows are too few"):
        make_split(pd.DataFrame({"y": [0]}), "y", SplitSpec(), seed=0)


def test_stratified_needs_enough_rows_of_each_class():
    frame = pd.DataFrame({"y": [0] * 20 + [1]})
    with pytest.raises(DataError, match="class 1 has 1 rows"):
        make_split(frame, "y", SplitSpec(kind="stratified"), seed=0)


def test_stratified_needs_a_test_row_per_class():
    frame = pd.DataFrame({"y": list(range(10)) * 2})
    with pytest.raises(DataError, match="cannot stratify"):
        make_split(frame, "y", SplitSpec(kind="stratified", test_size=0.2), seed=0)


def test_group_split_needs_enough_groups(frame):
    one = frame.assign(user="same")
    with pytest.raises(DataError, match="1 groups of 'user' cannot fill 3 parts"):
        make_split(one, "y", SPECS["group"], seed=0)


def test_sizes_out_of_range(frame):
    with pytest.raises(ValueError, match="less than 1"):
        SplitSpec(test_size=1.5)  # the spec refuses it when parsed ...
    bad = SplitSpec.model_construct(kind="random", test_size=1.5, validation_size=0.0,
                                    group_column=None, time_column=None, folds=None)
    with pytest.raises(ConfigError, match="test_size must be a fraction"):  # ... and so do we
        make_split(frame, "y", bad, seed=0)


def test_docstring_examples():
    assert doctest.testmod(shipyard.train._split).failed == 0
