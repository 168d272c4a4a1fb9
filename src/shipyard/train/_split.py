"""Train / validation / test splits and cross-validation folds.

Every split is a function of the data, the :class:`~shipyard.train.SplitSpec`
and a seed, so a run can be repeated exactly; :meth:`Split.describe` records
what was done (sizes and a digest of the row indexes) for tracking.

>>> import pandas as pd
>>> from shipyard.train import SplitSpec
>>> frame = pd.DataFrame({"x": range(10), "y": [0, 1] * 5})
>>> split = make_split(frame, "y", SplitSpec(kind="random", test_size=0.2), seed=0)
>>> split.sizes
{'train': 8, 'validation': 0, 'test': 2}
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import ConfigError, DataError
from shipyard.train._spec import SplitSpec


@dataclass(frozen=True, eq=False)  # arrays do not compare as one bool; compare digests
class Split:
    """Positional row indexes (for ``frame.iloc``) of the three parts.

    Attributes
    ----------
    train, validation, test
        Sorted, disjoint ``int64`` arrays; ``validation`` is empty when the
        spec asks for none.
    kind, seed
        How the rows were split.
    column
        The group or time column, if the kind uses one.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    kind: str
    seed: int
    column: str | None = None
    n_rows: int = 0

    @property
    def sizes(self) -> dict[str, int]:
        """Rows in each part."""
        return {"train": len(self.train), "validation": len(self.validation),
                "test": len(self.test)}

    @property
    def digest(self) -> str:
        """sha256 of the three index arrays: equal digests, equal splits."""
        h = hashlib.sha256()
        for part in (self.train, self.validation, self.test):
            h.update(np.ascontiguousarray(part, dtype="<i8").tobytes())
            h.update(b"|")
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the split, for tracking."""
        return {"kind": self.kind, "seed": self.seed, "column": self.column,
                "n_rows": self.n_rows, "sizes": self.sizes, "digest": self.digest}


def make_split(frame: pd.DataFrame, target: str, spec: SplitSpec, seed: int) -> Split:
    """Split ``frame``'s rows into train, validation and test parts.

    Parameters
    ----------
    frame
        The whole dataset, target included.
    target
        The target column (stratified splits keep its class proportions).
    spec
        ``kind`` (random | stratified | group | time), ``test_size``,
        ``validation_size`` and the group or time column.
    seed
        Seeds the shuffle; the same seed gives the same split. A time split
        does not shuffle.

    Returns
    -------
    Split
        Positional indexes of each part. A time split puts the oldest rows in
        train, then validation, the newest in test (rows with equal times at a
        boundary go by their order in ``frame``). A group split keeps each
        group in one part; its sizes are about, not exactly, the fractions.

    Raises
    ------
    ConfigError
        The sizes are out of range.
    DataError
        A column is missing or unusable, or there are too few rows, classes
        members or groups to make every part non-empty.
    """
    n = _check_frame(frame, target, spec)
    n_test, n_val = _part_sizes(n, spec)
    if spec.kind == "random":
        order = np.random.default_rng(seed).permutation(n)
        parts = (order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test])
    elif spec.kind == "stratified":
        parts = _stratified(_labels(frame, target), n_test, n_val, seed)
    elif spec.kind == "group":
        parts = _grouped(_groups(frame, spec.group_column), spec, seed)
    elif spec.kind == "time":
        order = np.argsort(_times(frame, spec.time_column), kind="stable")
        n_train = n - n_test - n_val
        parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    else:
        raise ConfigError(f"unknown split kind {spec.kind!r}; expected random, stratified, "
                          "group or time")
    train, val, test = (np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
    return Split(train, val, test, kind=spec.kind, seed=seed,
                 column=spec.group_column or spec.time_column, n_rows=n)


def cv_folds(frame: pd.DataFrame, target: str, spec: SplitSpec,
             seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``spec.folds`` cross-validation folds over the train and validation rows.

    The test rows of :func:`make_split` (same arguments) are never in a fold.
    Folds follow the split kind: ``KFold``, ``StratifiedKFold``, ``GroupKFold``
    (no group on both sides) or ``TimeSeriesSplit`` (each fold evaluates on
    rows newer than those it fits on).

    Returns
    -------
    list of (fit, evaluate)
        Sorted positional indexes into ``frame``.

    Raises
    ------
    ConfigError
        ``spec.folds`` is not set.
    DataError
        As :func:`make_split`, or too few rows, class members or groups for
        that many folds.
    """
    if not spec.folds:
        raise ConfigError("cross-validation needs split.folds (2 or more)",
                          hint="set train.split.folds in the project file")
    split = make_split(frame, target, spec, seed)
    rows = np.sort(np.concatenate([split.train, split.validation]))
    k = spec.folds
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, TimeSeriesSplit

    groups = None
    if spec.kind == "random":
        splitter = KFold(k, shuffle=True, random_state=seed)
    elif spec.kind == "stratified":
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
        counts = pd.Series(_labels(frame, target)[rows]).value_counts()
        if counts.min() < k:
            raise DataError(f"class {_plain(counts.idxmin())!r} of {target!r} has "
                            f"{counts.min()} rows outside the test part, fewer than the {k} folds",
                            hint="use fewer folds or a random split")
    elif spec.kind == "group":
        splitter = GroupKFold(k, shuffle=True, random_state=seed)
        groups = _groups(frame, spec.group_column)[rows]
        if len(np.unique(groups)) < k:
            raise DataError(f"{len(np.unique(groups))} groups of {spec.group_column!r} "
                            f"outside the test part are fewer than the {k} folds",
                            hint="use fewer folds")
    else:
        splitter = TimeSeriesSplit(k)
        rows = rows[np.argsort(_times(frame, spec.time_column)[rows], kind="stable")]
    if len(rows) < k + (spec.kind == "time"):
        raise DataError(f"{len(rows)} rows outside the test part are too few for {k} folds",
                        hint="use fewer folds")
    y = _labels(frame, target)[rows] if spec.kind == "stratified" else None
    try:
        folds = list(splitter.split(np.zeros(len(rows)), y, groups))
    except ValueError as exc:
        raise DataError(f"cannot make {k} {spec.kind} folds: {exc}") from exc
    return [(np.sort(rows[fit]), np.sort(rows[ev])) for fit, ev in folds]


# ------------------------------------------------------------------ parts
def _check_frame(frame: pd.DataFrame, target: str, spec: SplitSpec) -> int:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame to split, got {type(frame).__name__}")
    for name, what in ((target, "target"), (spec.group_column, "group_column"),
                       (spec.time_column, "time_column")):
        if name is not None and name not in frame.columns:
            raise DataError(f"{what} {name!r} is not a column of the data",
                            hint=f"the columns are: {', '.join(map(str, frame.columns))}")
    for key in ("test_size", "validation_size"):
        value = getattr(spec, key)
        if not 0 <= value < 1 or (key == "test_size" and value == 0):
            raise ConfigError(f"split.{key} must be a fraction in (0, 1), got {value}")
    if spec.test_size + spec.validation_size >= 1:
        raise ConfigError(f"split.test_size + split.validation_size must be below 1, got "
                          f"{spec.test_size} + {spec.validation_size}")
    return len(frame)


def _part_sizes(n: int, spec: SplitSpec) -> tuple[int, int]:
    n_test = math.ceil(spec.test_size * n)
    n_val = math.ceil(spec.validation_size * n) if spec.validation_size else 0
    if n - n_test - n_val < 1:
        need = 2 + (n_val > 0)
        raise DataError(f"{n} rows are too few to split into "
                        f"{'train, validation and test' if n_val else 'train and test'}",
                        hint=f"every part needs a row: give at least {need} rows")
    return n_test, n_val


def _labels(frame: pd.DataFrame, target: str) -> np.ndarray:
    y = frame[target]
    if y.isna().any():
        raise DataError(f"target {target!r} has {int(y.isna().sum())} missing values; a "
                        "stratified split needs a class for every row",
                        hint="drop those rows or use a random split")
    return y.to_numpy()


def _stratified(y: np.ndarray, n_test: int, n_val: int, seed: int) -> tuple:
    from sklearn.model_selection import StratifiedShuffleSplit

    classes, counts = np.unique(y, return_counts=True)
    parts = 2 + (n_val > 0)
    if counts.min() < parts:
        small = _plain(classes[counts.argmin()])
        raise DataError(f"class {small!r} has {counts.min()} rows; a stratified split into "
                        f"{parts} parts needs at least {parts} of each class",
                        hint="add rows, merge rare classes, or use a random split")
    rows = np.arange(len(y))
    try:
        rest, test = next(StratifiedShuffleSplit(1, test_size=n_test, random_state=seed)
                          .split(rows, y))
        if not n_val:
            return rest, np.empty(0, np.int64), test
        fit, val = next(StratifiedShuffleSplit(1, test_size=n_val, random_state=seed)
                        .split(rest, y[rest]))
    except ValueError as exc:
        raise DataError(f"cannot stratify {len(y)} rows of {len(classes)} classes: {exc}",
                        hint="raise test_size/validation_size to at least one row per class, "
                        "or use a random split") from exc
    return rest[fit], rest[val], test


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value, so messages read ``1``, not ``np.int64(1)``."""
    return value.item() if isinstance(value, np.generic) else value


def _groups(frame: pd.DataFrame, column: str) -> np.ndarray:
    codes, _ = pd.factorize(frame[column])
    if (codes < 0).any():
        raise DataError(f"group_column {column!r} has {int((codes < 0).sum())} missing values",
                        hint="fill them (each row needs a group) or drop those rows")
    return codes


def _grouped(groups: np.ndarray, spec: SplitSpec, seed: int) -> tuple:
    from sklearn.model_selection import GroupShuffleSplit

    n_groups = len(np.unique(groups))
    parts = 2 + (spec.validation_size > 0)
    if n_groups < parts:
        raise DataError(f"{n_groups} groups of {spec.group_column!r} cannot fill {parts} parts "
                        "without sharing a group", hint="use a random split")
    rows = np.arange(len(groups))
    try:
        rest, test = next(GroupShuffleSplit(1, test_size=spec.test_size, random_state=seed)
                          .split(rows, groups=groups))
        if not spec.validation_size:
            return rest, np.empty(0, np.int64), test
        share = spec.validation_size / (1 - spec.test_size)
        fit, val = next(GroupShuffleSplit(1, test_size=share, random_state=seed)
                        .split(rest, groups=groups[rest]))
    except ValueError as exc:
        raise DataError(f"cannot split {n_groups} groups of {spec.group_column!r}: {exc}",
                        hint="use larger fractions or a random split") from exc
    return rest[fit], rest[val], test


def _times(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)
            or pd.api.types.is_timedelta64_dtype(values)) or pd.api.types.is_bool_dtype(values):
        try:
            values = pd.to_datetime(values, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise DataError(f"time_column {column!r} ({values.dtype}) holds neither numbers "
                            "nor dates, so its rows cannot be ordered",
                            hint="give a datetime or numeric column, or ISO 8601 strings"
                            ) from exc
    if values.isna().any():
        raise DataError(f"time_column {column!r} has {int(values.isna().sum())} missing values",
                        hint="drop those rows or fill them")
    return values.to_numpy()
