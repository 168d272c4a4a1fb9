import doctest
import math

import numpy as np
import pytest
from sklearn import metrics as skm

import shipyard.train._metrics
from shipyard.errors import ConfigError, DataError
from shipyard.train import METRICS, score
from shipyard.train._spec import DEFAULT_METRIC
from shipyard.train._spec import METRICS as SPEC_METRICS

rng = np.random.default_rng(0)
Y_BIN = rng.integers(0, 2, 60)
P_BIN = np.clip(Y_BIN * 0.4 + rng.uniform(0, 0.6, 60), 0, 1)
PRED_BIN = (P_BIN > 0.5).astype(int)
Y_MULTI = rng.integers(0, 3, 60)
P_MULTI = rng.dirichlet(np.ones(3), 60) + np.eye(3)[Y_MULTI]
P_MULTI /= P_MULTI.sum(axis=1, keepdims=True)
PRED_MULTI = P_MULTI.argmax(axis=1)
Y_REG = rng.uniform(1, 10, 60)
PRED_REG = Y_REG + rng.normal(0, 1, 60)

BINARY = {
    "roc_auc": skm.roc_auc_score(Y_BIN, P_BIN),
    "pr_auc": skm.average_precision_score(Y_BIN, P_BIN),
    "average_precision": skm.average_precision_score(Y_BIN, P_BIN),
    "accuracy": skm.accuracy_score(Y_BIN, PRED_BIN),
    "balanced_accuracy": skm.balanced_accuracy_score(Y_BIN, PRED_BIN),
    "f1": skm.f1_score(Y_BIN, PRED_BIN),
    "precision": skm.precision_score(Y_BIN, PRED_BIN),
    "recall": skm.recall_score(Y_BIN, PRED_BIN),
    "log_loss": skm.log_loss(Y_BIN, P_BIN),
    "brier": skm.brier_score_loss(Y_BIN, P_BIN),
}
MULTICLASS = {
    "accuracy": skm.accuracy_score(Y_MULTI, PRED_MULTI),
    "balanced_accuracy": skm.balanced_accuracy_score(Y_MULTI, PRED_MULTI),
    "f1_macro": skm.f1_score(Y_MULTI, PRED_MULTI, average="macro"),
    "f1_weighted": skm.f1_score(Y_MULTI, PRED_MULTI, average="weighted"),
    "precision_macro": skm.precision_score(Y_MULTI, PRED_MULTI, average="macro"),
    "recall_macro": skm.recall_score(Y_MULTI, PRED_MULTI, average="macro"),
    "log_loss": skm.log_loss(Y_MULTI, P_MULTI),
    "roc_auc_ovr": skm.roc_auc_score(Y_MULTI, P_MULTI, multi_class="ovr"),
}
REGRESSION = {
    "rmse": skm.root_mean_squared_error(Y_REG, PRED_REG),
    "mae": skm.mean_absolute_error(Y_REG, PRED_REG),
    "r2": skm.r2_score(Y_REG, PRED_REG),
    "mape": skm.mean_absolute_percentage_error(Y_REG, PRED_REG),
}


def test_every_metric_has_a_reference_value():
    assert set(METRICS["binary"]) == set(BINARY)
    assert set(METRICS["multiclass"]) == set(MULTICLASS)
    assert set(METRICS["regression"]) == set(REGRESSION)


@pytest.mark.parametrize("name", BINARY)
def test_binary_equals_scikit_learn(name):
    two_columns = np.column_stack([1 - P_BIN, P_BIN])
    assert score("binary", name, Y_BIN, PRED_BIN, P_BIN) == pytest.approx(BINARY[name])
    assert score("binary", name, Y_BIN, PRED_BIN, two_columns) == pytest.approx(BINARY[name])


@pytest.mark.parametrize("name", BINARY)
def test_binary_string_labels_use_the_last_class_as_positive(name):
    words = np.array(["no", "yes"])
    value = score("binary", name, words[Y_BIN], words[PRED_BIN], P_BIN, labels=["no", "yes"])
    assert value == pytest.approx(BINARY[name])


@pytest.mark.parametrize("name", MULTICLASS)
def test_multiclass_equals_scikit_learn(name):
    assert score("multiclass", name, Y_MULTI, PRED_MULTI, P_MULTI) == \
        pytest.approx(MULTICLASS[name])


@pytest.mark.parametrize("name", REGRESSION)
def test_regression_equals_scikit_learn(name):
    assert score("regression", name, Y_REG, PRED_REG) == pytest.approx(REGRESSION[name])


def test_directions():
    assert METRICS["binary"]["roc_auc"].direction == "maximize"
    assert METRICS["binary"]["brier"].direction == "minimize"
    assert METRICS["multiclass"]["log_loss"].direction == "minimize"
    assert METRICS["regression"]["r2"].direction == "maximize"


def test_the_project_file_spec_uses_the_one_metric_table():
    assert SPEC_METRICS is METRICS  # one table of names, directions and needs_proba
    for task in METRICS:
        assert DEFAULT_METRIC[task] in METRICS[task]


def test_unknown_metric():
    with pytest.raises(ConfigError, match="unknown metric 'roc_uac'; did you mean 'roc_auc'"):
        score("binary", "roc_uac", Y_BIN, PRED_BIN)


def test_metric_of_another_task():
    with pytest.raises(ConfigError, match="'rmse' is a regression metric, not a binary one"):
        score("binary", "rmse", Y_BIN, PRED_BIN)


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'ranking'"):
        score("ranking", "ndcg", Y_BIN, PRED_BIN)


def test_probability_metric_without_probabilities():
    with pytest.raises(ConfigError, match="roc_auc scores probabilities"):
        score("binary", "roc_auc", Y_BIN, PRED_BIN)


def test_mismatched_lengths():
    with pytest.raises(DataError, match="60 true values but 59 predictions"):
        score("regression", "mae", Y_REG, PRED_REG[:-1])


def test_three_classes_in_a_binary_task():
    with pytest.raises(DataError, match="a binary task has 2 classes"):
        score("binary", "f1", Y_MULTI, PRED_MULTI)


def test_undefined_score_is_nan():
    with pytest.warns(Warning):
        assert math.isnan(score("binary", "roc_auc", [1, 1, 1], None, [0.2, 0.5, 0.9]))


def test_docstring_examples():
    assert doctest.testmod(shipyard.train._metrics).failed == 0
