import doctest
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier

import shipyard.train._imbalance
from shipyard.errors import ConfigError, DataError
from shipyard.train import SplitSpec, TorchMLPClassifier, class_weights, make_split, rebalance

import imblearn  # noqa: F401


@pytest.fixture(scope="module")
def data():
    """400 rows, 95/5 binary target, 4 numeric features."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=400, n_features=4, weights=[0.95], flip_y=0,
                               random_state=0)
    return pd.DataFrame(X, columns=list("abcd")), y


def test_counts_before_are_95_to_5(data):
    _, y = data
    assert np.bincount(y).tolist() == [380, 20]


def test_smote_grows_the_minority_to_the_majority(data):
    X, y = data
    out = rebalance("smote", X, y, task="binary", seed=0)
    assert out.record["counts_before"] == {"0": 380, "1": 20}
    assert out.record["counts_after"] == {"0": 380, "1": 380}
    assert len(out.X) == len(out.y) == 760
    pd.testing.assert_frame_equal(out.X.iloc[:400], X)  # originals first, then synthetic rows


def test_undersample_shrinks_the_majority_to_the_minority(data):
    X, y = data
    out = rebalance("undersample", X, y, task="binary", seed=0)
    assert out.record["counts_after"] == {"0": 20, "1": 20}
    kept = X.merge(out.X, how="inner")
    assert len(kept) == 40  # every row is an original training row


@pytest.mark.parametrize("strategy", ["smote", "undersample"])
def test_same_seed_same_rows(data, strategy):
    X, y = data
    a, b = (rebalance(strategy, X, y, task="binary", seed=5) for _ in range(2))
    pd.testing.assert_frame_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    c = rebalance(strategy, X, y, task="binary", seed=6)
    assert not a.X.equals(c.X)


@pytest.mark.parametrize("strategy", ["smote", "undersample", "class_weight"])
def test_only_training_rows_change(data, strategy):
    X, y = data
    frame = X.assign(y=y)
    split = make_split(frame, "y", SplitSpec(kind="stratified", test_size=0.2,
                                             validation_size=0.2), seed=0)
    validation = frame.iloc[split.validation].copy()
    train = frame.iloc[split.train]
    untouched = frame.copy()
    out = rebalance(strategy, train[list("abcd")], train["y"], task="binary", seed=0)
    pd.testing.assert_frame_equal(frame, untouched)  # nothing changed in place
    pd.testing.assert_frame_equal(frame.iloc[split.validation], validation)
    assert out.record["counts_before"] == {"0": 228, "1": 12}  # the training rows only


def test_record_is_json(data):
    X, y = data
    for strategy in ("none", "class_weight", "smote", "undersample"):
        record = rebalance(strategy, X, y, task="binary", seed=0).record
        assert json.loads(json.dumps(record)) == record
        assert record["strategy"] == strategy


def test_none_changes_nothing(data):
    X, y = data
    out = rebalance("none", X, y, task="binary", seed=0)
    assert out.X is X and out.sample_weight is None and out.params == {}
    assert out.record["counts_after"] == out.record["counts_before"]


def test_balanced_weights():
    assert class_weights(["a", "a", "a", "b"]) == {"a": 4 / 6, "b": 2.0}


def test_class_weight_as_estimator_parameter(data):
    X, y = data
    for estimator in (LogisticRegression(), TorchMLPClassifier()):
        out = rebalance("class_weight", X, y, task="binary", seed=0, estimator=estimator)
        assert out.params == {"class_weight": "balanced"} and out.sample_weight is None
        assert out.record["applied_as"] == "class_weight"
        assert out.record["class_weights"] == {"0": 400 / 760, "1": 10.0}
        estimator.set_params(**out.params)  # the estimator takes it


def test_class_weight_for_lightgbm(data):
    import lightgbm
    X, y = data
    out = rebalance("class_weight", X, y, task="binary", seed=0,
                    estimator=lightgbm.LGBMClassifier())
    assert out.params == {"class_weight": "balanced"}


def test_class_weight_as_sample_weight(data):
    X, y = data
    out = rebalance("class_weight", X, y, task="binary", seed=0, estimator=GaussianNB())
    assert out.params == {} and out.record["applied_as"] == "sample_weight"
    assert out.sample_weight[y == 1] == pytest.approx(10.0)
    assert out.sample_weight.sum() == pytest.approx(len(y))
    GaussianNB().fit(out.X, out.y, sample_weight=out.sample_weight)


def test_class_weight_needs_a_way_to_weigh(data):
    X, y = data
    with pytest.raises(ConfigError, match="KNeighborsClassifier takes neither"):
        rebalance("class_weight", X, y, task="binary", seed=0, estimator=KNeighborsClassifier())


def test_multiclass_smote():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    y = np.array(["a"] * 70 + ["b"] * 15 + ["c"] * 5)
    out = rebalance("smote", X, y, task="multiclass", seed=0)
    assert out.record["counts_after"] == {"a": 70, "b": 70, "c": 70}


@pytest.mark.parametrize("strategy", ["class_weight", "smote", "undersample"])
def test_regression_is_refused(data, strategy):
    X, y = data
    with pytest.raises(ConfigError, match="applies to classification, not regression"):
        rebalance(strategy, X, y.astype(float), task="regression", seed=0)


def test_unknown_strategy(data):
    X, y = data
    with pytest.raises(ConfigError, match="unknown imbalance strategy 'oversample'"):
        rebalance("oversample", X, y, task="binary", seed=0)


def test_smote_needs_two_rows_of_each_class():
    X = np.arange(20.0).reshape(10, 2)
    with pytest.raises(DataError, match="class 1 has 1"):
        rebalance("smote", X, [0] * 9 + [1], task="binary", seed=0)


def test_smote_refuses_missing_values(data):
    X, y = data
    holes = X.copy()
    holes.iloc[0, 0] = np.nan
    with pytest.raises(DataError, match="preprocessed training matrix"):
        rebalance("smote", holes, y, task="binary", seed=0)


def test_mismatched_rows(data):
    X, y = data
    with pytest.raises(DataError, match="X has 400 rows but y has 399"):
        rebalance("smote", X, y[:-1], task="binary", seed=0)


def test_docstring_examples():
    assert doctest.testmod(shipyard.train._imbalance).failed == 0
