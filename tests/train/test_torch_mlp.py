import numpy as np
import pytest
from scipy import sparse
from sklearn.base import clone, is_classifier, is_regressor

from shipyard.train import TorchMLPClassifier, TorchMLPRegressor

import torch


def weights(model):
    return [p.detach().numpy().copy() for p in model.module_.parameters()]


def test_classifier_learns_and_predicts_probabilities(classification):
    X, y = classification
    model = TorchMLPClassifier(hidden_sizes=(16,), lr=0.01, max_epochs=40).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(X) == y).mean() > 0.8
    assert list(model.classes_) == [0, 1] and model.n_features_in_ == 6


def test_string_labels_and_multiclass(classification):
    X, y = classification
    labels = np.array(["low", "mid", "high"])[(X["x0"].rank(pct=True) * 2.999).astype(int)]
    model = TorchMLPClassifier(hidden_sizes=8, max_epochs=5, class_weight="balanced").fit(X, labels)
    assert set(model.predict(X)) <= {"low", "mid", "high"}
    assert model.predict_proba(X).shape == (len(X), 3)


def test_early_stopping_keeps_the_best_epoch(classification):
    X, y = classification
    model = TorchMLPClassifier(hidden_sizes=(64, 64), lr=0.05, max_epochs=200, patience=3,
                               validation_fraction=0.3).fit(X, y)
    assert model.n_epochs_ < 200  # stopped early
    assert model.n_epochs_ == model.best_epoch_ + 1 + 3
    assert model.best_loss_ == min(model.validation_loss_curve_)


def test_same_seed_same_weights_other_seed_other_weights(classification):
    X, y = classification
    params = dict(hidden_sizes=(8,), dropout=0.2, max_epochs=5, seed=7)
    a, b = TorchMLPClassifier(**params).fit(X, y), TorchMLPClassifier(**params).fit(X, y)
    for wa, wb in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    c = TorchMLPClassifier(**{**params, "seed": 8}).fit(X, y)
    assert not np.array_equal(weights(a)[0], weights(c)[0])


def test_fit_leaves_global_torch_state_alone(classification):
    X, y = classification
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    before = torch.get_num_threads()
    TorchMLPClassifier(max_epochs=2, num_threads=1).fit(X, y)
    assert torch.get_num_threads() == before
    assert torch.rand(1) == expected


def test_regressor_accepts_sparse_input(classification):
    X, _ = classification
    target = X["x0"] * 3 + X["x1"] + 10
    model = TorchMLPRegressor(hidden_sizes=(16,), lr=0.01, max_epochs=60,
                              validation_fraction=0).fit(sparse.csr_matrix(X.to_numpy()), target)
    pred = model.predict(X)
    assert pred.shape == (len(X),)
    assert np.corrcoef(pred, target)[0, 1] > 0.9
    assert model.validation_loss_curve_ == []


def test_sklearn_conventions():
    model = TorchMLPClassifier(hidden_sizes=(4,), lr=0.1)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert is_classifier(model) and is_regressor(TorchMLPRegressor())
    assert "module_" not in vars(copy)
    assert repr(model) == "TorchMLPClassifier(hidden_sizes=(4,), lr=0.1)"


@pytest.mark.parametrize("params, match", [
    ({"hidden_sizes": (0,)}, "hidden_sizes must be positive"),
    ({"hidden_sizes": "64"}, "hidden_sizes must be positive"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"lr": 0}, "lr must be > 0"),
    ({"validation_fraction": 1.5}, "validation_fraction"),
    ({"class_weight": "heavy"}, "class_weight must be None or 'balanced'"),
])
def test_bad_params_are_refused(classification, params, match):
    X, y = classification
    with pytest.raises(ValueError, match=match):
        TorchMLPClassifier(max_epochs=1, **params).fit(X, y)


def test_bad_data_is_refused(classification):
    X, y = classification
    with pytest.raises(ValueError, match="at least 2 classes"):
        TorchMLPClassifier(max_epochs=1).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="NaN"):
        TorchMLPClassifier(max_epochs=1).fit(X.assign(x0=np.nan), y)
    with pytest.raises(ValueError, match="one value per row"):
        TorchMLPClassifier(max_epochs=1).fit(X, y[:10])
    model = TorchMLPClassifier(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features"):
        model.predict(X.iloc[:, :2])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TorchMLPRegressor().predict(X)
