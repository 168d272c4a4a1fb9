"""Preprocessing built from a dataset's schema: one scikit-learn ColumnTransformer.

Each feature column gets the treatment its type calls for, and the whole
transformer is saved inside the model pipeline, so serving applies exactly
the transforms training did.

===========  ===========================================================
kind         transform
===========  ===========================================================
numeric      median imputation, then standard scaling
categorical  most-frequent imputation, then one-hot (unknown → all zeros)
datetime     :class:`DateParts` (year, month, day, day of week, hour),
             median imputation, standard scaling
text         :class:`TextColumn` (missing → ""), then TF-IDF
===========  ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from shipyard.errors import DataError

if TYPE_CHECKING:
    from sklearn.utils import Tags

KINDS = ("numeric", "categorical", "datetime", "text")
DATE_PARTS = ("year", "month", "day", "dayofweek", "hour")
_ACCESSOR = {"year": "year", "month": "month", "day": "day", "dayofweek": "day_of_week",
             "hour": "hour"}


class DateParts(TransformerMixin, BaseEstimator):
    """Turn date/time columns into numeric parts.

    Strings are parsed with :func:`pandas.to_datetime`; unparseable values and
    missing dates give NaN parts (impute them downstream).

    Parameters
    ----------
    parts
        Which parts to extract, from ``year``, ``month``, ``day``,
        ``dayofweek`` (Monday = 0) and ``hour``.

    >>> import pandas as pd
    >>> DateParts(parts=("year", "dayofweek")).fit_transform(
    ...     pd.DataFrame({"d": ["2024-03-01"]})).tolist()
    [[2024.0, 4.0]]
    """

    def __init__(self, parts: Sequence[str] = DATE_PARTS):
        self.parts = parts

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True  # missing dates give NaN parts
        return tags

    def fit(self, X: Any, y: Any = None) -> DateParts:
        unknown = [p for p in self.parts if p not in DATE_PARTS]
        if unknown or not self.parts:
            raise ValueError(f"DateParts parts must be a non-empty subset of {DATE_PARTS}, "
                             f"got {list(self.parts)}")
        self._frame(X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        frame = self._frame(X, reset=False)
        out = np.empty((len(frame), frame.shape[1] * len(self.parts)), dtype=np.float64)
        for i, name in enumerate(frame.columns):
            dates = _to_datetime(frame[name])
            for j, part in enumerate(self.parts):
                out[:, i * len(self.parts) + j] = getattr(dates.dt, _ACCESSOR[part]).to_numpy(
                    dtype=np.float64, na_value=np.nan)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self)
        cols = input_features if input_features is not None else getattr(
            self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)])
        return np.asarray([f"{c}_{p}" for c in cols for p in self.parts], dtype=object)

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """``X`` as a DataFrame, checked against the columns seen in fit."""
        if not isinstance(X, pd.DataFrame):  # DataFrames keep their datetime dtypes
            X = check_array(X, dtype=None, ensure_all_finite=False,
                            ensure_min_samples=1 if reset else 0, estimator=self)
        n_features = getattr(self, "n_features_in_", None)
        if not reset and X.shape[1] != n_features:
            raise ValueError(f"X has {X.shape[1]} features, but DateParts is expecting "
                             f"{n_features} features as input (it was fitted on "
                             f"{n_features} columns, got {X.shape[1]})")
        validate_data(self, X, reset=reset, skip_check_array=True)
        return _frame(X, getattr(self, "feature_names_in_", None))


class TextColumn(TransformerMixin, BaseEstimator):
    """Pass one text column on as a 1-D array of strings, missing values as ``""``.

    TF-IDF needs exactly this: one document per row and no NaN.

    >>> TextColumn().fit_transform(["a b", None]).tolist()
    ['a b', '']
    """

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True  # missing text becomes ""
        return tags

    def fit(self, X: Any, y: Any = None) -> TextColumn:
        self._column(X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        column = self._column(X, reset=False)
        return np.asarray(["" if _missing(v) else str(v) for v in column], dtype=object)

    def _column(self, X: Any, *, reset: bool) -> np.ndarray:
        """The one column of ``X`` (a DataFrame, a 1-D or a one-column 2-D
        array-like) as a 1-D object array."""
        if isinstance(X, pd.DataFrame):
            n_columns = X.shape[1]
        else:
            X = check_array(X, dtype=None, ensure_2d=False, ensure_all_finite=False,
                            ensure_min_samples=1 if reset else 0, estimator=self)
            n_columns = X.shape[1] if X.ndim == 2 else 1
        if n_columns != 1:
            raise ValueError(f"TextColumn takes one column, got {n_columns}")
        if reset or X.ndim == 2:  # a 1-D X has no feature count to check
            validate_data(self, X, reset=reset, skip_check_array=True)
        if reset:
            self.n_features_in_ = 1
        values = X.iloc[:, 0] if isinstance(X, pd.DataFrame) else X
        arr = np.asarray(values, dtype=object)
        return arr[:, 0] if arr.ndim == 2 else arr

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        if input_features is None:
            input_features = getattr(self, "feature_names_in_", ["text"])
        return np.asarray(input_features, dtype=object)


def build_preprocessor(
    frame_or_schema: pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]],
    features: Sequence[str],
    *,
    text_columns: Sequence[str] | None = None,
    date_columns: Sequence[str] | None = None,
    max_categories: int = 50,
    max_text_features: int = 1000,
) -> ColumnTransformer:
    """Build an (unfitted) ColumnTransformer for ``features`` from column types.

    Parameters
    ----------
    frame_or_schema
        A DataFrame (types and, for string columns, their values decide), or a
        schema: ``{column: dtype}`` or a list of ``{"name", "dtype"}`` mappings,
        where an entry may also carry ``"kind"`` (one of ``numeric``,
        ``categorical``, ``datetime``, ``text``). With a schema, string
        columns are categorical unless declared text.
    features
        The columns to use, in order; every other column is dropped.
    text_columns, date_columns
        Columns to treat as free text (TF-IDF) or as dates, whatever their type.
    max_categories
        Most one-hot columns per categorical feature; rarer categories are
        pooled. Also the number of distinct values above which a string
        column of sentences is taken for text.
    max_text_features
        Vocabulary size cap of each TF-IDF.

    Returns
    -------
    sklearn.compose.ColumnTransformer

    Raises
    ------
    DataError
        A feature is not in the data, a declared column is not a feature, or
        ``features`` is empty.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [30, 40], "city": ["Oslo", "Rome"]})
    >>> ct = build_preprocessor(df, ["age", "city"])
    >>> ct.fit_transform(df).shape
    (2, 3)
    """
    kinds = column_kinds(frame_or_schema, features, text_columns=text_columns,
                         date_columns=date_columns, max_categories=max_categories)
    by_kind = {k: [c for c in features if kinds[c] == k] for k in KINDS}
    transformers: list[tuple[str, Any, Any]] = []
    if by_kind["numeric"]:
        transformers.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]), by_kind["numeric"]))
    if by_kind["categorical"]:
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", max_categories=max_categories)),
        ]), by_kind["categorical"]))
    if by_kind["datetime"]:
        transformers.append(("datetime", Pipeline([
            ("parts", DateParts()),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]), by_kind["datetime"]))
    for col in by_kind["text"]:
        transformers.append((f"text_{col}", Pipeline([
            ("fill", TextColumn()),
            ("tfidf", TfidfVectorizer(max_features=max_text_features)),
        ]), [col]))
    return ColumnTransformer(transformers, remainder="drop")


def column_kinds(
    frame_or_schema: pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]],
    features: Sequence[str],
    *,
    text_columns: Sequence[str] | None = None,
    date_columns: Sequence[str] | None = None,
    max_categories: int = 50,
) -> dict[str, str]:
    """The preprocessing kind of each feature (see :func:`build_preprocessor`).

    >>> import pandas as pd
    >>> column_kinds(pd.DataFrame({"n": [1.5], "d": pd.to_datetime(["2024-01-01"])}), ["n", "d"])
    {'n': 'numeric', 'd': 'datetime'}
    """
    features = list(features)
    if not features:
        raise DataError("no feature columns to preprocess",
                        hint="check features.use / features.drop in the project file")
    dupes = sorted({c for c in features if features.count(c) > 1})
    if dupes:
        raise DataError(f"feature columns listed more than once: {', '.join(map(str, dupes))}")
    text, dates = list(text_columns or ()), list(date_columns or ())
    for label, declared in (("text", text), ("date", dates)):
        stray = [c for c in declared if c not in features]
        if stray:
            raise DataError(f"{label} column {stray[0]!r} is not one of the features",
                            hint=f"the features are: {', '.join(map(str, features))}")
    both = sorted(set(text) & set(dates))
    if both:
        raise DataError(f"{both[0]!r} is declared both text and a date")

    if isinstance(frame_or_schema, pd.DataFrame):
        frame, schema = frame_or_schema, None
        columns = list(frame.columns)
    else:
        frame, schema = None, _schema(frame_or_schema)
        columns = list(schema)
    missing = [c for c in features if c not in columns]
    if missing:
        import difflib

        close = difflib.get_close_matches(str(missing[0]), [str(c) for c in columns], n=1)
        raise DataError(f"feature column {missing[0]!r} is not in the data"
                        + (f"; did you mean {close[0]!r}?" if close else ""),
                        hint=f"the columns are: {', '.join(map(str, columns))}")

    kinds = {}
    for col in features:
        if col in text:
            kinds[col] = "text"
        elif col in dates:
            kinds[col] = "datetime"
        elif frame is not None:
            kinds[col] = _infer_kind(frame[col], max_categories)
        else:
            kinds[col] = _schema_kind(col, schema[col])
    return kinds


def _infer_kind(series: pd.Series, max_categories: int) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    values = series.dropna()
    if len(values) and values.map(lambda v: isinstance(v, str)).all() and _looks_like_text(
            values.astype(str), max_categories):
        return "text"
    return "categorical"


def _looks_like_text(values: pd.Series, max_categories: int) -> bool:
    """Sentences, not labels: several words per value and mostly distinct, or long."""
    words = values.str.split().str.len().mean()
    distinct = values.nunique() / len(values)
    return bool(values.str.len().mean() >= 50
                or (words >= 3 and distinct >= 0.5 and values.nunique() > min(max_categories, 20)))


def _schema(schema: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    if isinstance(schema, Mapping):
        return {name: spec if isinstance(spec, Mapping) else {"dtype": spec}
                for name, spec in schema.items()}
    try:
        return {entry["name"]: dict(entry) for entry in schema}
    except (TypeError, KeyError) as exc:
        raise DataError("a schema must be a DataFrame, {column: dtype}, or a list of "
                        "{'name': ..., 'dtype': ...} mappings") from exc


def _schema_kind(col: str, entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind")
    if kind is not None:
        if kind not in KINDS:
            raise DataError(f"column {col!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        return kind
    dtype = entry.get("dtype", entry.get("type"))
    try:
        dtype = pd.api.types.pandas_dtype(str(dtype))
    except TypeError:
        text = str(dtype).lower()
        if any(t in text for t in ("timestamp", "date")):
            return "datetime"
        if any(t in text for t in ("int", "float", "double", "decimal")):
            return "numeric"
        return "categorical"
    return _infer_kind(pd.Series([], dtype=dtype), 0) if not pd.api.types.is_object_dtype(
        dtype) else "categorical"


def _frame(X: Any, names: Any = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    cols = list(names) if names is not None and len(names) == arr.shape[1] else None
    return pd.DataFrame(arr, columns=cols)


def _to_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    return pd.to_datetime(series, errors="coerce", format="mixed")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and np.isnan(value))
