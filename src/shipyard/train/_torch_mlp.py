"""A tabular multi-layer perceptron in PyTorch, as scikit-learn estimators.

Training holds out ``validation_fraction`` of the rows it is given, stops when
the validation loss has not improved for ``patience`` epochs, and keeps the
best epoch's weights. With the same data, parameters and ``seed`` it gives
bit-identical weights: every random draw comes from generators seeded by
``seed``, and torch runs on ``num_threads`` threads (default 1, because
parallel reductions may add floats in a different order).

torch is imported inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

if TYPE_CHECKING:
    from sklearn.utils import Tags

class _TorchMLP(BaseEstimator):
    """Shared fitting loop; see :class:`TorchMLPClassifier`."""

    def __init__(
        self,
        hidden_sizes: Sequence[int] | int = (64, 32),
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        max_epochs: int = 100,
        patience: int = 10,
        validation_fraction: float = 0.1,
        seed: int = 0,
        num_threads: int = 1,
    ):
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.num_threads = num_threads

    # ------------------------------------------------------------ subclass
    _classifier = False

    def _targets(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _loss(self, torch: Any, y: np.ndarray) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------- fitting
    def _check_params(self) -> list[int]:
        sizes = [self.hidden_sizes] if isinstance(self.hidden_sizes, (int, np.integer)) \
            else list(self.hidden_sizes)
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
                   for s in sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes!r}")
        checks = [(0 <= self.dropout < 1, "dropout must be in [0, 1)"),
                  (self.lr > 0, "lr must be > 0"),
                  (self.weight_decay >= 0, "weight_decay must be >= 0"),
                  (int(self.batch_size) >= 1, "batch_size must be >= 1"),
                  (int(self.max_epochs) >= 1, "max_epochs must be >= 1"),
                  (int(self.patience) >= 1, "patience must be >= 1"),
                  (0 <= self.validation_fraction < 1, "validation_fraction must be in [0, 1)"),
                  (int(self.num_threads) >= 1, "num_threads must be >= 1")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {message}")
        return [int(s) for s in sizes]

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified: one-hot and TF-IDF output is sparse
        return tags

    def fit(self, X: Any, y: Any) -> _TorchMLP:
        """Train with early stopping on a held-out part of ``X, y``."""
        import torch

        sizes = self._check_params()
        X = _checked(self, X, ensure_min_samples=2)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be 1-D with one value per row of X; got shape {y.shape} "
                             f"for {len(X)} rows")
        self.n_features_in_ = X.shape[1]
        target = self._targets(y)
        train_idx, val_idx = self._split(y)
        with _torch_state(self.num_threads, self.seed):
            self.module_ = _build(torch, self.n_features_in_, sizes, self._n_outputs(),
                                  self.dropout)
            loss_fn = self._loss(torch, target[train_idx])
            opt = torch.optim.Adam(self.module_.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(int(self.seed))
            Xt, yt = torch.from_numpy(X), torch.from_numpy(target)
            X_train, y_train = Xt[train_idx], yt[train_idx]
            X_val, y_val = Xt[val_idx], yt[val_idx]
            best, best_state, since = np.inf, None, 0
            self.train_loss_curve_, self.validation_loss_curve_ = [], []
            for epoch in range(int(self.max_epochs)):
                self.module_.train()
                order = torch.randperm(len(X_train), generator=gen)
                total = 0.0
                for start in range(0, len(order), int(self.batch_size)):
                    batch = order[start:start + int(self.batch_size)]
                    opt.zero_grad()
                    loss = loss_fn(self.module_(X_train[batch]), y_train[batch])
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(batch)
                self.train_loss_curve_.append(total / len(order))
                if len(val_idx):
                    self.module_.eval()
                    with torch.no_grad():
                        current = float(loss_fn(self.module_(X_val), y_val))
                    self.validation_loss_curve_.append(current)
                else:
                    current = self.train_loss_curve_[-1]
                if current < best - 1e-7:
                    best, since, self.best_epoch_ = current, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in
                                  self.module_.state_dict().items()}
                else:
                    since += 1
                    if since >= int(self.patience):
                        break
            if best_state is not None:
                self.module_.load_state_dict(best_state)
            self.module_.eval()
        self.n_epochs_ = len(self.train_loss_curve_)
        self.best_loss_ = float(best)
        return self

    def _split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        n_val = int(round(n * self.validation_fraction))
        if n_val == 0 or n - n_val < 1:
            return np.arange(n), np.arange(0)
        from sklearn.model_selection import train_test_split

        stratify = None
        if self._classifier:
            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= 2 and n_val >= len(counts):
                stratify = y
        train, val = train_test_split(np.arange(n), test_size=n_val, random_state=int(self.seed),
                                      stratify=stratify)
        return np.sort(train), np.sort(val)

    def _forward(self, X: Any) -> np.ndarray:
        import torch

        check_is_fitted(self, "module_")
        X = _checked(self, X, ensure_min_samples=0)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        outs = []
        with _torch_state(self.num_threads, None), torch.no_grad():
            self.module_.eval()
            for start in range(0, len(X), 4096):
                outs.append(self.module_(torch.from_numpy(X[start:start + 4096])).numpy())
        return np.concatenate(outs) if outs else np.empty((0, self._n_outputs()), np.float32)


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    """A tabular MLP classifier (softmax over classes), trained with early stopping.

    Parameters
    ----------
    hidden_sizes
        Units of each hidden layer (ReLU, then dropout).
    dropout
        Dropout probability after each hidden layer.
    lr, weight_decay
        Adam's learning rate and L2 penalty.
    batch_size, max_epochs
        Mini-batch size; most passes over the training rows.
    patience
        Stop after this many epochs without a better validation loss.
    validation_fraction
        Part of the rows held out for early stopping (stratified); 0 trains
        on all rows and stops on the training loss.
    class_weight
        ``None``, ``"balanced"`` (weights inversely proportional to class
        frequency in the training rows), or ``{class: weight}`` (classes not
        listed weigh 1).
    seed
        Seeds initial weights, shuffling, dropout and the validation split.
    num_threads
        torch threads while fitting and predicting.

    Attributes
    ----------
    classes_ : ndarray
    module_ : torch.nn.Module
    best_epoch_, n_epochs_ : int
    train_loss_curve_, validation_loss_curve_ : list of float
    """

    _classifier = True

    def __init__(
        self,
        hidden_sizes: Sequence[int] | int = (64, 32),
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        max_epochs: int = 100,
        patience: int = 10,
        validation_fraction: float = 0.1,
        class_weight: str | Mapping[Any, float] | None = None,
        seed: int = 0,
        num_threads: int = 1,
    ):
        super().__init__(hidden_sizes=hidden_sizes, dropout=dropout, lr=lr,
                         weight_decay=weight_decay, batch_size=batch_size,
                         max_epochs=max_epochs, patience=patience,
                         validation_fraction=validation_fraction, seed=seed,
                         num_threads=num_threads)
        self.class_weight = class_weight

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if not (self.class_weight is None or isinstance(self.class_weight, Mapping)
                or self.class_weight == "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', or a dict "
                             f"{{class: weight}}, got {self.class_weight!r}")
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes to train a classifier, got "
                             f"{len(self.classes_)}")
        return encoded.astype(np.int64)

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _loss(self, torch: Any, y: np.ndarray) -> Any:
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(y, minlength=len(self.classes_)).astype(np.float64)
            counts[counts == 0] = 1.0
            weight = torch.tensor(len(y) / (len(self.classes_) * counts), dtype=torch.float32)
        elif isinstance(self.class_weight, Mapping):
            from sklearn.utils.class_weight import compute_class_weight

            weight = torch.tensor(compute_class_weight(dict(self.class_weight),
                                                       classes=self.classes_, y=self.classes_),
                                  dtype=torch.float32)
        return torch.nn.CrossEntropyLoss(weight=weight)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        logits = self._forward(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        scores = self._forward(X)  # first: unfitted, it raises NotFittedError
        return self.classes_[np.argmax(scores, axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    """A tabular MLP regressor (mean squared error on the standardised target).

    Takes the parameters of :class:`TorchMLPClassifier` but ``class_weight``.
    """

    def _targets(self, y: np.ndarray) -> np.ndarray:
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinite values")
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) or 1.0
        return ((y - self.y_mean_) / self.y_scale_).astype(np.float32).reshape(-1, 1)

    def _n_outputs(self) -> int:
        return 1

    def _loss(self, torch: Any, y: np.ndarray) -> Any:
        return torch.nn.MSELoss()

    def predict(self, X: Any) -> np.ndarray:
        return self._forward(X)[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_


def _build(torch: Any, n_in: int, sizes: list[int], n_out: int, dropout: float) -> Any:
    layers: list[Any] = []
    for size in sizes:
        layers += [torch.nn.Linear(n_in, size), torch.nn.ReLU()]
        if dropout:
            layers.append(torch.nn.Dropout(dropout))
        n_in = size
    layers.append(torch.nn.Linear(n_in, n_out))
    return torch.nn.Sequential(*layers)


def build_module(estimator: _TorchMLP, n_features_in: int, n_outputs: int) -> Any:
    """An untrained network of ``estimator``'s architecture (for loading weights)."""
    import torch

    return _build(torch, n_features_in, estimator._check_params(), n_outputs,
                  estimator.dropout)


def _checked(estimator: _TorchMLP, X: Any, *, ensure_min_samples: int) -> np.ndarray:
    """``X`` checked (2-D, finite, numeric) as a dense C-ordered float32 array.

    Columns are positional: feature names are not recorded, as the torch
    artifact does not store them.
    """
    X = check_array(X, accept_sparse=("csr", "csc"), dtype=np.float32,
                    ensure_min_samples=ensure_min_samples, estimator=estimator)
    if hasattr(X, "toarray"):  # scipy sparse, e.g. one-hot or TF-IDF output
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=np.float32)


@contextmanager
def _torch_state(num_threads: int, seed: int | None):
    """Set torch's thread count (and seed its global RNG, used by dropout and
    weight init) for the block, restoring both afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        if seed is None:
            yield
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                yield
    finally:
        torch.set_num_threads(previous)
