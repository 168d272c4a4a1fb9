"""Metadata filters (``where=``), one small language for every retriever and
vector store.

A filter is a mapping from a metadata field (``doc_id``, ``source``,
``title``, ``section``, ``page``) to a value (equality; ``None`` means the
field is empty), a list (any of them) or a mapping of operators (``$eq``,
``$ne``, ``$in``, ``$nin``, ``$gt``, ``$gte``, ``$lt``, ``$lte``). Conditions
on several fields must all hold.

>>> conds = parse_where({"source": ["a.md", "b.md"], "page": {"$gte": 2}})
>>> [(c.field, c.op, c.value) for c in conds]
[('source', 'in', ('a.md', 'b.md')), ('page', 'gte', 2)]
>>> to_sql(conds, quote=lambda v: repr(v))
"(source IN ('a.md', 'b.md')) AND (page >= 2)"

Values never become SQL text unquoted: stores bind them as parameters or
escape them as literals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.errors import GenAIError
from shipyard.genai._records import METADATA_FIELDS, Chunk

_INT_FIELDS = {"page"}
_OPS = {"$eq": "eq", "$ne": "ne", "$in": "in", "$nin": "nin", "$gt": "gt", "$gte": "gte",
        "$lt": "lt", "$lte": "lte"}
_SQL = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
MAX_VALUES = 1000


@dataclass(frozen=True)
class Condition:
    """``field op value``; ``op`` is eq, ne, in, nin, gt, gte, lt or lte."""

    field: str
    op: str
    value: Any


def _check_value(field: str, value: Any, *, ordered: bool = False) -> Any:
    if value is None and not ordered:
        return None
    if field in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31:
            raise GenAIError(f"filter on {field!r} takes whole numbers, got {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise GenAIError(f"filter on {field!r} takes text, got {type(value).__name__}")
    if "\x00" in value or len(value) > 4096:
        raise GenAIError(f"filter value for {field!r} is not valid text (NUL byte or over "
                         "4096 characters)")
    return value


def parse_where(where: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """Check a filter and return its conditions (``()`` for none).

    Raises
    ------
    GenAIError
        An unknown field or operator, or a value of the wrong type.
    """
    if where is None:
        return ()
    if not isinstance(where, Mapping):
        raise GenAIError(f"a filter is a mapping of field to value, got {type(where).__name__}",
                         hint='e.g. where={"source": "guide.md", "page": {"$gte": 2}}')
    out: list[Condition] = []
    for field, spec in where.items():
        if field not in METADATA_FIELDS:
            raise GenAIError(f"cannot filter on {field!r}",
                             hint=f"filter on {', '.join(METADATA_FIELDS)}")
        if isinstance(spec, Mapping):
            items = list(spec.items())
            if not items:
                raise GenAIError(f"the filter on {field!r} has no operator")
        elif isinstance(spec, (list, tuple, set, frozenset)):
            items = [("$in", spec)]
        else:
            items = [("$eq", spec)]
        for op_name, value in items:
            op = _OPS.get(op_name)
            if op is None:
                raise GenAIError(f"unknown filter operator {op_name!r} on {field!r}",
                                 hint=f"use one of {', '.join(_OPS)}")
            if op in ("in", "nin"):
                if not isinstance(value, (list, tuple, set, frozenset)):
                    raise GenAIError(f"{op_name} on {field!r} takes a list")
                values = list(value)
                if len(values) > MAX_VALUES:
                    raise GenAIError(f"{op_name} on {field!r} takes at most {MAX_VALUES} values")
                if not values:
                    raise GenAIError(f"{op_name} on {field!r} takes at least one value")
                out.append(Condition(field, op, tuple(_check_value(field, v, ordered=True)
                                                      for v in values)))
            else:
                ordered = op not in ("eq", "ne")
                out.append(Condition(field, op, _check_value(field, value, ordered=ordered)))
    return tuple(out)


def matches(conditions: tuple[Condition, ...], chunk: Chunk) -> bool:
    """Whether ``chunk`` passes every condition (for in-memory retrievers).

    >>> from shipyard.genai import Chunk
    >>> c = Chunk(id="x:0", doc_id="x", text="t", start=0, end=1, source="x", title="T", page=3)
    >>> matches(parse_where({"page": {"$gt": 2}}), c), matches(parse_where({"page": 1}), c)
    (True, False)
    """
    for cond in conditions:
        value = getattr(chunk, cond.field)
        op, target = cond.op, cond.value
        if op == "eq":
            ok = value == target
        elif op == "ne":
            ok = value is not None and (target is None or value != target)
        elif op == "in":
            ok = value in target
        elif op == "nin":
            ok = value is not None and value not in target
        elif value is None:
            ok = False
        elif op == "gt":
            ok = value > target
        elif op == "gte":
            ok = value >= target
        elif op == "lt":
            ok = value < target
        else:
            ok = value <= target
        if not ok:
            return False
    return True


def to_sql(conditions: tuple[Condition, ...], *, quote: Callable[[Any], str],
           column: Callable[[str], str] = str) -> str | None:
    """SQL text of the conditions, with every value passed through ``quote``
    (a literal escaper or a parameter placeholder maker); ``None`` for none.

    SQL's three-valued logic matches :func:`matches`: a ``NULL`` field passes
    no comparison except ``IS NULL``.
    """
    parts = []
    for cond in conditions:
        col = column(cond.field)
        if cond.op in ("in", "nin"):
            inner = ", ".join(quote(v) for v in cond.value)
            parts.append(f"{col} {'IN' if cond.op == 'in' else 'NOT IN'} ({inner})")
        elif cond.value is None:
            parts.append(f"{col} IS NULL" if cond.op == "eq" else f"{col} IS NOT NULL")
        else:
            parts.append(f"{col} {_SQL[cond.op]} {quote(cond.value)}")
    return " AND ".join(f"({p})" for p in parts) if parts else None


def sql_literal(value: Any) -> str:
    """A SQL literal: a whole number as digits, text single-quoted with quotes
    doubled (standard SQL, as DataFusion reads it).

    >>> sql_literal("it's"), sql_literal(3)
    ("'it''s'", '3')
    """
    if isinstance(value, bool):
        raise GenAIError("booleans are not filter values")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise GenAIError(f"cannot use {type(value).__name__} as a filter value")
