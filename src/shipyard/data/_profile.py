"""Profiles: summary statistics of a table, stored with each dataset version."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from shipyard.data._jsonable import jsonable

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TOP_VALUES = 5


def column_kind(series: pd.Series) -> str:
    """``numeric``, ``boolean``, ``datetime``, ``timedelta``, ``categorical``,
    ``string`` or ``other``."""
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_numeric_dtype(dtype):
        return "numeric"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_timedelta64_dtype(dtype):
        return "timedelta"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if dtype == object:  # object columns hold strings, or anything else
        inferred = ptypes.infer_dtype(series, skipna=True)
        return "string" if inferred == "string" else "other"
    if ptypes.is_string_dtype(dtype):
        return "string"
    return "other"


def profile_column(series: pd.Series) -> dict[str, Any]:
    """Statistics of one column, JSON-serialisable.

    Always: ``dtype``, ``kind``, ``count`` (non-missing), ``missing``,
    ``missing_fraction``, ``distinct`` and ``top`` (up to five
    ``{value, count}``, most frequent first). Numeric columns add ``min``,
    ``max``, ``mean``, ``std`` (sample) and ``quantiles`` (``p5`` ... ``p95``)
    over their finite values, and ``infinite``;
    booleans ``mean`` (the share of true); datetimes ``min``/``max``;
    strings ``min_length``/``max_length``/``mean_length``.
    """
    kind = column_kind(series)
    n = len(series)
    present = series.dropna()
    count = len(present)
    stats: dict[str, Any] = {
        "dtype": str(series.dtype), "kind": kind, "count": count, "missing": n - count,
        "missing_fraction": (n - count) / n if n else 0.0,
    }
    try:
        stats["distinct"] = int(present.nunique())
        counts = present.value_counts(sort=True).head(TOP_VALUES)
    except TypeError:  # JSON sources can give lists and dicts, which cannot be counted
        as_text = present.astype(str)
        stats["distinct"] = int(as_text.nunique())
        counts = as_text.value_counts(sort=True).head(TOP_VALUES)
    if kind == "numeric":
        values = present.astype("float64")
        finite = values[np.isfinite(values)]
        # Infinities are counted apart: one would make every moment meaningless.
        stats["infinite"] = len(values) - len(finite)
        stats.update(min=finite.min(), max=finite.max(), mean=finite.mean(), std=finite.std())
        qs = finite.quantile(list(QUANTILES)) if len(finite) else None
        stats["quantiles"] = {f"p{round(q * 100)}": (qs.loc[q] if qs is not None else None)
                              for q in QUANTILES}
    elif kind == "boolean":
        stats["mean"] = present.astype("float64").mean()
    elif kind in ("datetime", "timedelta"):
        stats.update(min=present.min() if count else None, max=present.max() if count else None)
    elif kind == "string":
        lengths = present.astype(str).str.len()
        stats.update(min_length=lengths.min(), max_length=lengths.max(),
                     mean_length=lengths.mean())
    stats["top"] = [{"value": value, "count": int(c)} for value, c in counts.items()]
    return jsonable(stats)


def profile_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """A table's profile: ``num_rows``, ``num_columns``, ``missing_cells`` and
    ``columns`` (name → :func:`profile_column`).

    >>> p = profile_frame(pd.DataFrame({"x": [1, 2, 3, None]}))
    >>> p["num_rows"], p["columns"]["x"]["mean"], p["columns"]["x"]["missing"]
    (4, 2.0, 1)
    """
    columns = {str(name): profile_column(frame.iloc[:, i])
               for i, name in enumerate(frame.columns)}
    return {
        "num_rows": int(frame.shape[0]), "num_columns": int(frame.shape[1]),
        "missing_cells": sum(c["missing"] for c in columns.values()),
        "columns": columns,
    }

