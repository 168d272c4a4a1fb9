"""Conversion of pandas/numpy values to plain JSON values."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` as something :func:`json.dumps` accepts with ``allow_nan=False``.

    numpy scalars become Python numbers, NaN/NA/NaT and infinities become
    ``None``, timestamps ISO 8601 strings, anything unknown its ``str``.

    >>> jsonable({"a": np.int64(3), "b": [np.float32(0.5), float("nan")]})
    {'a': 3, 'b': [0.5, None]}
    >>> jsonable(pd.Timestamp("2024-01-02 03:04:05"))
    '2024-01-02T03:04:05'
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.datetime64):  # .item() would give an int for ns precision
        value = pd.Timestamp(value)
    elif isinstance(value, np.timedelta64):
        value = pd.Timedelta(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [jsonable(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)
