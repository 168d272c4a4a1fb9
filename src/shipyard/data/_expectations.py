"""Expectations: declarative checks a dataset must pass to be registered.

An expectation names a column and one or more checks (``dtype``,
``not_null``, ``range``, ``allowed``, ``unique``, ``regex``), or is
table-level (``rows``), or wraps a Python callable (``check``, Python API
only). Checking runs on pandera; the result is a :class:`ValidationReport`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.api import types as ptypes
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from shipyard.data._jsonable import jsonable
from shipyard.errors import ConfigError

MAX_EXAMPLES = 5
TABLE = "<table>"
# The order checks are run and reported in.
CHECKS = ("dtype", "not_null", "range", "allowed", "unique", "regex", "rows", "check")

_UNITS = ("ns", "us", "ms", "s")
_DTYPE_FORMS = ("int, int8 ... int64, uint8 ... uint64, float, float32, float64, number, "
                "bool, string (or str, object), category, datetime (or datetime64[ns], "
                "datetime64[ns, UTC]), timedelta")


class Bounds(BaseModel):
    """Inclusive bounds; either may be left out. Datetime columns accept
    ISO strings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int | float | str | None = None
    max: int | float | str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        both_numbers = isinstance(self.min, (int, float)) and isinstance(self.max, (int, float))
        if both_numbers and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def describe(self) -> str:
        lo = "-inf" if self.min is None else self.min
        hi = "inf" if self.max is None else self.max
        return f"[{lo}, {hi}]"


class RowBounds(BaseModel):
    """Inclusive bounds on the number of rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RowBounds:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Expectation(BaseModel):
    """One declarative expectation about a dataset.

    Parameters
    ----------
    column
        The column the checks apply to; leave out for table-level checks.
    dtype
        Expected dtype family: ``int64`` (also matches nullable ``Int64``),
        ``int`` (any integer), ``float64``, ``float``, ``number``, ``bool``,
        ``string``/``str``/``object`` (text), ``category``,
        ``datetime64[ns]``/``datetime`` (any unit), ``datetime64[ns, UTC]``
        (time-zone aware), ``timedelta``.
    not_null
        No missing values.
    range
        Inclusive ``{min, max}``; missing values are not checked.
    allowed
        The values the column may hold (missing values are not checked).
    unique
        No value appears twice (missing values are not checked).
    regex
        Every value, as text, matches this pattern in full.
    rows
        Table-level: inclusive ``{min, max}`` on the number of rows.
    check
        Python API only: a callable taking the column (a Series) or, without
        ``column``, the table (a DataFrame), returning a bool or a boolean
        Series (one per row).
    name
        A label for ``check`` in reports; defaults to the callable's name.

    Examples
    --------
    >>> Expectation.model_validate({"column": "age", "range": {"min": 0, "max": 120}}).checks
    ('range',)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    dtype: str | None = None
    not_null: bool | None = None
    range: Bounds | None = None
    allowed: list[Any] | None = None
    unique: bool | None = None
    regex: str | None = None
    rows: RowBounds | None = None
    check: Callable[[Any], Any] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Expectation:
        if not self.checks:
            raise ValueError("names no check: give one of dtype, not_null, range, allowed, "
                             "unique, regex, rows or check")
        column_checks = [c for c in self.checks if c not in ("rows", "check")]
        if self.column is None and column_checks:
            raise ValueError(f"{', '.join(column_checks)} need a column")
        if self.column is not None and self.rows is not None:
            raise ValueError("rows is a table-level check: leave out column")
        return self

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        if value is not None:
            dtype_matcher(value)
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid pattern: {exc}") from exc
        return value

    @field_validator("allowed")
    @classmethod
    def _not_empty(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and not value:
            raise ValueError("is empty: no value could pass")
        return value

    @property
    def checks(self) -> tuple[str, ...]:
        """The checks this expectation asks for, in reporting order."""
        on = {"dtype": self.dtype is not None, "not_null": bool(self.not_null),
              "range": self.range is not None, "allowed": self.allowed is not None,
              "unique": bool(self.unique), "regex": self.regex is not None,
              "rows": self.rows is not None, "check": self.check is not None}
        return tuple(c for c in CHECKS if on[c])

    @property
    def label(self) -> str:
        """The custom check's name in reports."""
        if self.name:
            return self.name
        return getattr(self.check, "__qualname__", None) or type(self.check).__name__

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that is recorded with a version (a callable as its label)."""
        out = self.model_dump(exclude_none=True, exclude={"check", "name"}, mode="json")
        if self.check is not None:
            out["custom"] = self.label
        elif self.name:
            out["name"] = self.name
        return out


def parse_expectations(items: Iterable[Expectation | Mapping[str, Any]] | None,
                       *, where: str = "expectations") -> list[Expectation]:
    """Expectations from models or plain dicts.

    Raises
    ------
    ConfigError
        Naming the expectation's index, the key and what was wrong.
    """
    if items is None:
        return []
    if isinstance(items, (Mapping, str, bytes)) or not isinstance(items, Iterable):
        raise ConfigError(f"{where} must be a list of expectations, "
                          f"not a {type(items).__name__}")
    parsed = []
    for i, item in enumerate(items):
        if isinstance(item, Expectation):
            parsed.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}[{i}] must be a mapping such as "
                              f"{{'column': 'age', 'not_null': true}}, "
                              f"not a {type(item).__name__}")
        try:
            parsed.append(Expectation.model_validate(dict(item)))
        except ValidationError as exc:
            raise ConfigError(f"{where}[{i}] is invalid:\n" + _pydantic_errors(exc),
                              hint="see help(shipyard.data.Expectation) for the keys") from exc
    return parsed


def _pydantic_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; expected one of " + ", ".join(Expectation.model_fields)
        lines.append(f"  {loc or '(expectation)'}: {msg}")
    return "\n".join(lines)


# --------------------------------------------------------------- dtypes
def dtype_matcher(spec: str) -> Callable[[pd.Series], bool]:
    """A predicate telling whether a column's dtype is in the family ``spec``.

    Raises
    ------
    ValueError
        ``spec`` is not a dtype Shipyard knows.
    """
    text = spec.strip()
    low = text.lower()
    if low in ("int", "integer"):
        return lambda s: ptypes.is_integer_dtype(s.dtype) and not ptypes.is_bool_dtype(s.dtype)
    if re.fullmatch(r"u?int(8|16|32|64)", low):
        return lambda s: str(s.dtype).lower() == low
    if low in ("float", "floating"):
        return lambda s: ptypes.is_float_dtype(s.dtype)
    if low in ("float32", "float64"):
        return lambda s: str(s.dtype).lower() == low
    if low in ("number", "numeric"):
        return lambda s: ptypes.is_numeric_dtype(s.dtype) and not ptypes.is_bool_dtype(s.dtype)
    if low in ("bool", "boolean"):
        return lambda s: ptypes.is_bool_dtype(s.dtype)
    if low in ("string", "str", "object", "text"):
        return _is_text
    if low in ("category", "categorical"):
        return lambda s: isinstance(s.dtype, pd.CategoricalDtype)
    if low in ("timedelta", "timedelta64") or re.fullmatch(r"timedelta64\[(ns|us|ms|s)\]", low):
        return lambda s: ptypes.is_timedelta64_dtype(s.dtype)
    if low in ("datetime", "datetime64") or re.fullmatch(r"datetime64\[(ns|us|ms|s)\]", low):
        # pandas picks the unit from the source (CSV gives us, numpy ns): any unit, no zone.
        return lambda s: ptypes.is_datetime64_dtype(s.dtype) and _tz(s) is None
    aware = re.fullmatch(r"datetime64\[(ns|us|ms|s),\s*(.+)\]", text, re.IGNORECASE)
    if aware:
        zone = aware.group(2).strip()
        return lambda s: _tz(s) is not None and str(_tz(s)).lower() == zone.lower()
    raise ValueError(f"dtype {spec!r} is not known; use one of {_DTYPE_FORMS}")


def _tz(series: pd.Series):
    return getattr(series.dtype, "tz", None)


def _is_text(series: pd.Series) -> bool:
    if ptypes.is_string_dtype(series.dtype) and series.dtype != object:
        return True
    if series.dtype == object:
        return ptypes.infer_dtype(series, skipna=True) in ("string", "empty")
    return False


# ------------------------------------------------------------------ report
@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of one expectation.

    Attributes
    ----------
    expectation
        Index of the expectation in the list.
    column
        The column, or ``None`` for a table-level check.
    check
        ``dtype``, ``not_null``, ``range``, ``allowed``, ``unique``,
        ``regex``, ``rows`` or the custom check's label.
    passed
        Whether it passed.
    failing
        Number of failing rows; ``None`` when the check is about the
        column or table as a whole.
    examples
        Up to five ``{"index": row index, "value": value}`` of failing rows.
    message
        What failed, in words (empty when passed).
    """

    expectation: int
    column: str | None
    check: str
    passed: bool
    failing: int | None = None
    examples: tuple[dict[str, Any], ...] = ()
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "column": self.column, "check": self.check,
                "passed": self.passed, "failing": self.failing,
                "examples": [dict(e) for e in self.examples], "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(expectation=data["expectation"], column=data.get("column"),
                   check=data["check"], passed=data["passed"], failing=data.get("failing"),
                   examples=tuple(data.get("examples") or ()), message=data.get("message", ""))


@dataclass(frozen=True)
class ValidationReport:
    """Per-column, per-check outcome of validating a table against expectations.

    ``str(report)`` is a readable summary of what failed; :meth:`to_dict`
    is the JSON form recorded with a version.
    """

    num_rows: int
    results: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def by_column(self) -> dict[str, list[CheckResult]]:
        """Results grouped by column (``"<table>"`` for table-level checks)."""
        grouped: dict[str, list[CheckResult]] = {}
        for r in self.results:
            grouped.setdefault(r.column if r.column is not None else TABLE, []).append(r)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "num_rows": self.num_rows,
                "num_checks": len(self.results), "num_failed": len(self.failures),
                "checks": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        return cls(num_rows=data["num_rows"],
                   results=tuple(CheckResult.from_dict(r) for r in data.get("checks", ())))

    def __str__(self) -> str:
        if self.passed:
            return f"all {len(self.results)} checks passed on {self.num_rows} rows"
        lines = [f"{len(self.failures)} of {len(self.results)} checks failed "
                 f"on {self.num_rows} rows:"]
        for column, results in self.by_column().items():
            failed = [r for r in results if not r.passed]
            if not failed:
                continue
            lines.append(f"  {column}")
            for r in failed:
                line = f"    - {r.check} (expectation {r.expectation}): {r.message}"
                if r.examples:
                    shown = ", ".join(f"row {e['index']}: {e['value']!r}" for e in r.examples)
                    line += f"; e.g. {shown}"
                lines.append(line)
        return "\n".join(lines)


# ---------------------------------------------------------------- checking
def validate(frame: pd.DataFrame,
             expectations: Iterable[Expectation | Mapping[str, Any]] | None) -> ValidationReport:
    """Check ``frame`` against ``expectations`` (objects or dicts) with pandera.

    Never raises for data that fails: failures, a missing column or a check
    that crashes on the data all end up in the report.

    Raises
    ------
    ConfigError
        An expectation is malformed.
    """
    expectations = parse_expectations(expectations)
    if not expectations:
        return ValidationReport(num_rows=len(frame))
    import pandera.pandas as pa
    from pandera.errors import SchemaError, SchemaErrors

    column_checks: dict[str, list] = {}
    table_checks = []
    for i, exp in enumerate(expectations):
        for kind in exp.checks:
            check = pa.Check(_check_fn(exp, kind), name=f"{i}:{kind}",
                             ignore_na=kind in ("range", "allowed", "unique", "regex"))
            if exp.column is None:
                table_checks.append(check)
            else:
                column_checks.setdefault(exp.column, []).append(check)
    schema = pa.DataFrameSchema(
        {name: pa.Column(None, checks=checks, nullable=True, required=True, name=name)
         for name, checks in column_checks.items()},
        checks=table_checks,
    )
    failures = pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases
    except SchemaError as exc:  # raised eagerly for some table-wide problems
        failures = exc.failure_cases if exc.failure_cases is not None else pd.DataFrame(
            [{"column": None, "check": str(exc.check), "failure_case": str(exc), "index": None}])
    return _report(frame, expectations, failures)


def _check_fn(exp: Expectation, kind: str) -> Callable[[Any], Any]:
    if kind == "dtype":
        matches = dtype_matcher(exp.dtype)
        return lambda s: bool(matches(s))
    if kind == "not_null":
        return lambda s: s.notna()
    if kind == "range":
        return lambda s: _in_bounds(s, exp.range)
    if kind == "allowed":
        allowed = list(exp.allowed)
        return lambda s: s.isin(allowed)
    if kind == "unique":
        return lambda s: ~s.duplicated(keep=False)
    if kind == "regex":
        pattern = re.compile(exp.regex)
        return lambda s: s.astype(str).map(lambda v: pattern.fullmatch(v) is not None)
    if kind == "rows":
        lo, hi = exp.rows.min, exp.rows.max
        return lambda df: (lo is None or len(df) >= lo) and (hi is None or len(df) <= hi)
    return exp.check


def _in_bounds(series: pd.Series, bounds: Bounds) -> pd.Series:
    lo, hi = bounds.min, bounds.max
    if ptypes.is_datetime64_any_dtype(series.dtype):
        tz = _tz(series)
        lo, hi = (None if b is None else _timestamp(b, tz) for b in (lo, hi))
    ok = pd.Series(True, index=series.index)
    if lo is not None:
        ok &= series >= lo
    if hi is not None:
        ok &= series <= hi
    return ok


def _timestamp(value: Any, tz) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if tz is not None and ts.tzinfo is None:
        ts = ts.tz_localize(tz)
    return ts


def _report(frame: pd.DataFrame, expectations: list[Expectation],
            failures: pd.DataFrame) -> ValidationReport:
    missing_columns = set(failures.loc[failures["check"] == "column_in_dataframe",
                                       "failure_case"].astype(str))
    by_check: dict[str, pd.DataFrame] = {
        str(name): group for name, group in failures.groupby("check", sort=False)}
    results = []
    for i, exp in enumerate(expectations):
        for kind in exp.checks:
            label = exp.label if kind == "check" else kind
            if exp.column is not None and exp.column in missing_columns:
                present = ", ".join(map(str, frame.columns[:20]))
                results.append(CheckResult(i, exp.column, label, False, None, (),
                                           f"column {exp.column!r} is missing "
                                           f"(columns: {present})"))
                continue
            group = by_check.get(f"{i}:{kind}")
            if group is None:
                results.append(CheckResult(i, exp.column, label, True))
            else:
                results.append(_failed(i, exp, kind, label, group, frame))
    # pandera checks of its own that no expectation asked for (should not happen).
    ours = {f"{i}:{k}" for i, e in enumerate(expectations) for k in e.checks}
    for name, group in by_check.items():
        if name not in ours and name != "column_in_dataframe":
            results.append(CheckResult(-1, None, name, False, len(group), (),
                                       str(group["failure_case"].iloc[0])))
    return ValidationReport(num_rows=len(frame), results=tuple(results))


def _failed(i: int, exp: Expectation, kind: str, label: str, group: pd.DataFrame,
            frame: pd.DataFrame) -> CheckResult:
    rows = group[group["index"].notna()]
    if rows.empty:  # the check judged the column or the table as a whole, or crashed
        case = group["failure_case"].iloc[0]
        # pandera reports a check that raised as the exception's text.
        crashed = isinstance(case, str) and case != "False"
        if crashed:
            message = f"the check could not run on this data: {case}"
        elif kind == "dtype":
            message = f"expected dtype {exp.dtype}, found {frame[exp.column].dtype}"
        elif kind == "rows":
            message = (f"expected {_bounds_text(exp.rows.min, exp.rows.max)} rows, "
                       f"found {len(frame)}")
        else:
            message = f"{label} returned False"
        return CheckResult(i, exp.column, label, False, None, (), message)
    n = len(rows)
    examples = tuple({"index": jsonable(idx), "value": jsonable(value)}
                     for idx, value in zip(rows["index"].iloc[:MAX_EXAMPLES],
                                           rows["failure_case"].iloc[:MAX_EXAMPLES]))
    what = {
        "not_null": f"{n} missing values",
        "range": f"{n} values outside {exp.range.describe() if exp.range else ''}",
        "allowed": f"{n} values not among the {len(exp.allowed or ())} allowed",
        "unique": f"{n} rows hold duplicated values",
        "regex": f"{n} values do not match {exp.regex!r}",
    }.get(kind, f"{n} rows fail {label}")
    return CheckResult(i, exp.column, label, False, n, examples, what)


def _bounds_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    return f"at least {lo}" if lo is not None else f"at most {hi}"


def load_expectations(path: str | os.PathLike) -> list[Expectation]:
    """Read expectations from a YAML or JSON file: a list, or a mapping with
    the list under ``expectations``.

    Raises
    ------
    ConfigError
        The file is missing or unreadable, or an expectation is invalid
        (the message names the file, the index and the key).
    """
    import json

    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read expectations file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"expectations file {path} is not UTF-8 text") from exc
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:  # YAML is a superset of JSON
            doc = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"expectations file {path} does not parse: "
                          f"{str(exc).splitlines()[0]}") from exc
    if isinstance(doc, Mapping) and set(doc) == {"expectations"}:
        doc = doc["expectations"]
    if doc is None:
        return []
    return parse_expectations(doc, where=str(path))
