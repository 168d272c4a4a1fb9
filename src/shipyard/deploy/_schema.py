"""Request validation against a model signature: one DataFrame in the
signature's column order (or, for a schema with ``as_columns``, the same
validated values as :class:`Columns`, without the DataFrame), or a
:class:`ServeError` naming the field and the problem. Every protocol funnels
into :func:`frame_from_columns`.

Policy: every signature column must be present and no other; numbers must be
JSON numbers (a string of digits is refused, as silently coercing it would hide
client bugs); a whole-number column (trained as int64) takes only whole numbers
within int64 (``25.5`` and ``1e300`` are refused, ``25.0`` is accepted); a null
is allowed only where the training data had missing values; unknown categories
are accepted (the one-hot encoder ignores them).
Row numbers in messages are zero-based, like the JSON arrays they index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shipyard.errors import ServeError
from shipyard.names import shown

#: Longest accepted string value; longer ones are refused, not truncated.
MAX_STRING = 10_000


@dataclass(frozen=True)
class Column:
    """One input column: its name, preprocessing kind and what values it takes."""

    name: str
    kind: str  # numeric | categorical | datetime | text
    dtype: str
    nullable: bool
    categories: tuple | None = None

    @property
    def is_bool(self) -> bool:
        return self.dtype in ("bool", "boolean")

    @property
    def is_integer(self) -> bool:
        """Whether the column holds whole numbers (its training dtype is an int)."""
        return self.kind == "numeric" and self.dtype.startswith(("int", "Int", "uint", "UInt"))

    @property
    def bounds(self) -> tuple[int, int]:
        """The range of an integer column: int64, or uint64 for unsigned."""
        return (0, 2**64 - 1) if self.dtype.lower().startswith("uint") else (-2**63, 2**63 - 1)

    @property
    def datatype(self) -> str:
        """The Open Inference Protocol datatype of this column."""
        if self.kind == "numeric":
            return "INT64" if self.dtype.startswith(("int", "Int", "uint", "UInt")) else "FP64"
        return "BOOL" if self.is_bool else "BYTES"


@dataclass(frozen=True)
class Schema:
    """The input columns a model version takes, from its signature."""

    columns: tuple[Column, ...]
    max_rows: int = 10_000
    #: Columns other versions of the model take: accepted and dropped, so
    #: clients written for any version keep working when an alias moves.
    tolerated: frozenset[str] = frozenset()
    #: Validate into :class:`Columns` instead of a DataFrame (for a model that
    #: reads column arrays, such as an ONNX graph: building the DataFrame
    #: would cost more than predicting a row).
    as_columns: bool = False

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @classmethod
    def from_signature(cls, signature: dict[str, Any] | None, *, max_rows: int = 10_000
                       ) -> Schema:
        columns = []
        for entry in (signature or {}).get("inputs", []):
            dtype = str(entry.get("dtype", "object"))
            kind = entry.get("kind") or _kind_of(dtype)
            cats = entry.get("categories")
            columns.append(Column(name=str(entry["name"]), kind=kind, dtype=dtype,
                                  nullable=bool(entry.get("nullable", True)),
                                  categories=tuple(cats) if cats is not None else None))
        return cls(tuple(columns), max_rows)

    def with_columns(self) -> Schema:
        """This schema, validating into :class:`Columns`."""
        return replace(self, as_columns=True)


class Columns:
    """Validated rows as one array per signature column, in its order: what
    :func:`frame_from_columns` returns for a schema with ``as_columns``.

    Read like a DataFrame: ``len(columns)`` rows, ``columns[name]`` (a float64
    array for a numeric column, a list for a categorical or text one, a
    datetime Series), ``columns.columns``; :meth:`to_frame` gives the very
    DataFrame :func:`frame_from_columns` returns otherwise.

    >>> schema = Schema.from_signature({"inputs": [{"name": "x", "dtype": "float64"}]})
    >>> rows = frame_from_columns(schema.with_columns(), {"x": [1, None]})
    >>> len(rows), rows["x"].tolist(), rows.to_frame()["x"].isna().tolist()
    (2, [1.0, nan], [False, True])
    """

    __slots__ = ("_frame", "_rows", "columns", "data")

    def __init__(self, data: dict[str, Any], rows: int):
        self.data = data
        self.columns = list(data)
        self._rows = rows
        self._frame = None

    def __repr__(self) -> str:
        return f"Columns({self._rows} rows: {', '.join(self.columns)})"

    def __len__(self) -> int:
        return self._rows

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __getitem__(self, key: str | list[str]) -> Any:
        if isinstance(key, list):  # a projection, as ``frame[[...]]``
            return Columns({name: self.data[name] for name in key}, self._rows)
        return self.data[key]

    def to_frame(self):
        """The DataFrame of these rows (built once)."""
        if self._frame is None:
            import pandas as pd

            self._frame = pd.DataFrame(self.data, columns=self.columns)
        return self._frame

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        """The rows of ``parts`` (same columns) one after the other.

        Raises
        ------
        ValueError
            A column's parts differ in type or dtype, or a list column holds
            numbers: merged, pandas would type such a column otherwise than
            each part alone (``[1]`` is int64, ``[1]`` then ``[None]`` float64).
        """
        import pandas as pd

        data = {}
        for name in parts[0].columns:
            values = [p.data[name] for p in parts]
            kind = type(values[0])
            if any(type(v) is not kind for v in values):
                raise ValueError(f"column {name!r}: the parts hold different types")
            if kind is list:
                merged = [x for v in values for x in v]
                types = set(map(type, merged))
                if int in types or float in types:
                    raise ValueError(f"column {name!r}: numbers in a list column")
            else:
                dtype = values[0].dtype
                if any(v.dtype != dtype for v in values) and not all(  # datetimes: any unit
                        v.dtype.kind == "M" for v in values):
                    raise ValueError(f"column {name!r}: the parts have different dtypes")
                merged = (np.concatenate(values) if kind is np.ndarray
                          else pd.concat(values, ignore_index=True))
            data[name] = merged
        return cls(data, sum(len(p) for p in parts))


def _kind_of(dtype: str) -> str:
    if dtype in ("bool", "boolean"):
        return "categorical"
    if dtype.startswith(("int", "Int", "uint", "UInt", "float", "Float")):
        return "numeric"
    if dtype.startswith("datetime"):
        return "datetime"
    return "categorical"


def invalid(message: str) -> ServeError:
    return ServeError(422, "invalid_input", message)


def _check_count(schema: Schema, n: int) -> None:
    if n == 0:
        raise invalid("the request holds no rows")
    if n > schema.max_rows:
        raise ServeError(413, "too_many_rows",
                         f"{n} rows in one request; at most {schema.max_rows} are accepted")


def _check_names(schema: Schema, names: list[str], where: str = "") -> None:
    expected = schema.names
    known = set(expected)
    extra = [n for n in names if n not in known and n not in schema.tolerated]
    if extra:
        raise invalid(f"{where}unknown column {shown(extra[0])}; the model takes: "
                      f"{', '.join(expected)}")
    have = set(names)
    missing = [n for n in expected if n not in have]
    if missing:
        raise invalid(f"{where}missing column {missing[0]!r}"
                      + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def frame_from_records(schema: Schema, records: Any):
    """Validate ``[{column: value}, ...]`` into a DataFrame."""
    if not isinstance(records, list):
        raise invalid(f"'records' must be a list of objects, got {type(records).__name__}")
    _check_count(schema, len(records))
    names = schema.names
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise invalid(f"row {i}: expected an object of column values, got "
                          f"{type(record).__name__}")
        if len(record) != len(names) or any(n not in record for n in names):
            _check_names(schema, list(record), f"row {i}: ")
    return frame_from_columns(schema, {n: [r[n] for r in records] for n in names})


def frame_from_rows(schema: Schema, rows: Any):
    """Validate ``[[v1, v2, ...], ...]`` (values in signature order) into a DataFrame."""
    if not isinstance(rows, list):
        raise invalid(f"expected a list of rows, got {type(rows).__name__}")
    _check_count(schema, len(rows))
    names = schema.names
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            raise invalid(f"row {i}: expected a list of {len(names)} values "
                          f"({', '.join(names)})")
    return frame_from_columns(schema, {n: [r[j] for r in rows] for j, n in enumerate(names)})


def frame_from_columns(schema: Schema, columns: Any):
    """Validate ``{column: [values...]}`` (lists or 1-D numpy arrays) into a
    DataFrame with the signature's columns, in its order (:class:`Columns`
    for a schema with ``as_columns``).

    Raises
    ------
    ServeError
        422 naming the column, the row and the problem; 413 for too many rows.
    """
    import pandas as pd

    if not isinstance(columns, dict):
        raise invalid(f"'columns' must be an object of column: [values], got "
                      f"{type(columns).__name__}")
    _check_names(schema, list(columns))
    lengths = set()
    for col in schema.columns:
        values = columns[col.name]
        if not isinstance(values, (list, np.ndarray)) or getattr(values, "ndim", 1) != 1:
            raise invalid(f"column {col.name!r}: expected a list of values, got "
                          f"{type(values).__name__}")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise invalid("columns have different lengths: "
                      + ", ".join(f"{c.name}={len(columns[c.name])}" for c in schema.columns))
    rows = lengths.pop() if lengths else 0
    _check_count(schema, rows)
    data = {col.name: _column(col, columns[col.name]) for col in schema.columns}
    if schema.as_columns:
        return Columns(data, rows)
    return pd.DataFrame(data, columns=schema.names)


def _column(col: Column, values: Any) -> Any:
    if isinstance(values, np.ndarray):
        if col.kind == "numeric" and values.dtype.kind in "iuf":
            if col.is_integer:
                _check_integers(col, values)
            arr = values.astype(np.float64, copy=False)
            bad = ~np.isfinite(arr)
            if bad.any():
                i = int(np.argmax(bad))
                if np.isnan(arr[i]) and col.nullable:
                    if not np.isinf(arr).any():
                        return arr
                    i = int(np.argmax(np.isinf(arr)))
                raise invalid(_null_or_inf(col, arr[i], i))
            return arr
        values = values.tolist()
    if col.kind == "numeric":
        return _numeric(col, values)
    if col.kind == "datetime":
        return _datetime(col, values)
    if col.is_bool:
        return _typed(col, values, (bool,), "true or false")
    if col.kind == "categorical" and col.categories and not all(
            isinstance(c, str) for c in col.categories):
        return _typed(col, values, (str, int, float, bool), "a category (string or number)")
    return _typed(col, values, (str,), "a string")


def _null_or_inf(col: Column, value: float, i: int) -> str:
    if math.isnan(value):
        return (f"column {col.name!r}: missing value (null/NaN) in row {i}, but the column "
                "is not nullable")
    return f"column {col.name!r}: expected a finite number, got {value} in row {i}"


def _not_whole(col: Column, v: Any, i: int) -> ServeError:
    return invalid(f"column {col.name!r}: {shown(v)} in row {i} is not a whole number (the "
                   f"column is {col.dtype})")


def _out_of_range(col: Column, v: Any, i: int) -> ServeError:
    kind = "uint64" if col.bounds[0] == 0 else "int64"
    return invalid(f"column {col.name!r}: {shown(v)} in row {i} is out of the {kind} range "
                   f"({col.bounds[0]} to {col.bounds[1]})")


def _check_integers(col: Column, values: np.ndarray) -> None:
    """A tensor for a whole-number column: finite values must be whole and in range."""
    low, high = col.bounds
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        fraction = finite & (values != np.floor(np.where(finite, values, 0)))
        if fraction.any():
            i = int(np.argmax(fraction))
            raise _not_whole(col, float(values[i]), i)
        outside = finite & ((values < low) | (values >= float(high) + 1))
    else:
        outside = (values < low) | (values > high) if values.dtype.kind == "i" or low == 0 \
            else np.zeros(len(values), dtype=bool)
    if outside.any():
        i = int(np.argmax(outside))
        raise _out_of_range(col, values[i].item(), i)


def _numeric(col: Column, values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    whole, (low, high) = col.is_integer, col.bounds
    for i, v in enumerate(values):
        t = type(v)
        if t is float or t is int:
            if t is float and not math.isfinite(v):
                if math.isnan(v) and col.nullable:
                    out[i] = np.nan
                    continue
                raise invalid(_null_or_inf(col, v, i))
            if whole:
                if t is float and not v.is_integer():
                    raise _not_whole(col, v, i)
                if not low <= v <= high:
                    raise _out_of_range(col, v, i)
            try:
                out[i] = v
            except OverflowError as exc:
                raise invalid(f"column {col.name!r}: {shown(v)} in row {i} is out of range "
                              "for a 64-bit float") from exc
        elif v is None:
            if not col.nullable:
                raise invalid(_null_or_inf(col, math.nan, i))
            out[i] = np.nan
        elif isinstance(v, (int, float)) and not isinstance(v, bool):  # numpy scalars
            out[i] = v
            if not math.isfinite(out[i]) and not (math.isnan(out[i]) and col.nullable):
                raise invalid(_null_or_inf(col, float(out[i]), i))
            if whole and math.isfinite(out[i]):
                if not float(v).is_integer():
                    raise _not_whole(col, v, i)
                if not low <= v <= high:
                    raise _out_of_range(col, v, i)
        else:
            raise invalid(f"column {col.name!r}: expected a number, got {shown(v)} in row {i}")
    return out


def _typed(col: Column, values: list, types: tuple[type, ...], what: str) -> list:
    for i, v in enumerate(values):
        if v is None:
            if not col.nullable:
                raise invalid(f"column {col.name!r}: missing value (null) in row {i}, but the "
                              "column is not nullable")
        elif not isinstance(v, types) or (bool not in types and isinstance(v, bool)):
            raise invalid(f"column {col.name!r}: expected {what}, got {shown(v)} in row {i}")
        elif isinstance(v, float) and not math.isfinite(v):
            raise invalid(f"column {col.name!r}: expected {what}, got {v} in row {i}")
        elif isinstance(v, str) and len(v) > MAX_STRING:
            raise invalid(f"column {col.name!r}: a string of {len(v)} characters in row {i}; "
                          f"at most {MAX_STRING} are accepted")
    return values


def _datetime(col: Column, values: list) -> Any:
    import pandas as pd

    _typed(col, values, (str,), "a date/time string (ISO 8601)")
    try:
        parsed = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce",
                                format="ISO8601", utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise invalid(f"column {col.name!r}: cannot read the dates: {exc}") from exc
    bad = parsed.isna() & pd.Series([v is not None for v in values])
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise invalid(f"column {col.name!r}: expected a date/time (ISO 8601), got "
                      f"{shown(values[i])} in row {i}")
    # The model was trained on naive timestamps; keep the wall-clock time in UTC.
    return parsed.dt.tz_localize(None)
