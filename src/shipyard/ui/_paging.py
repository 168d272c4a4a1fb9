"""Keyset pagination of the run list on top of the public search API.

``ws.runs.search`` sorts by the requested key, then newest first
(``start_time DESC``), then ``id``; it has no cursor. A page token holds the
sort key's value, ``start_time`` and ``id`` of the last run shown, and the
next page is the same search with one more condition in the filter language
("after that run in this order"), so page 1,000 costs what page 1 costs,
where an offset would make the database walk every run before it.

Runs missing the sort key (or whose metric is NaN) sort last in both
directions, as ``search`` sorts them; the conditions below follow that.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

#: Run attributes the run list can sort on: name → what the filter language calls it.
SORTABLE = ("start_time", "end_time", "name", "status", "experiment", "wall_seconds",
            "cpu_seconds", "peak_memory_mb")
NULLABLE = {"end_time", "name", "wall_seconds", "cpu_seconds", "peak_memory_mb"}
PREFIXES = ("metrics", "params", "tags")
_PLAIN_KEY = re.compile(r"[\w.\-/:]+")
_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Sort:
    """What the run list is sorted by: ``start_time`` or ``metrics.auc`` and
    a direction."""

    field: str
    desc: bool

    @classmethod
    def parse(cls, field: str | None, direction: str | None) -> Sort:
        """A valid sort from query parameters; unknown input falls back to
        newest first.

        >>> Sort.parse("metrics.auc", "asc")
        Sort(field='metrics.auc', desc=False)
        >>> Sort.parse("drop table", None)
        Sort(field='start_time', desc=True)
        """
        desc = (direction or "desc").lower() != "asc"
        if field in SORTABLE:
            return cls(field, desc)
        if isinstance(field, str):
            kind, _, key = field.partition(".")
            if kind in PREFIXES and key and len(key) <= 250 and key.isprintable():
                return cls(field, desc)
        return cls("start_time", True)

    @property
    def kind(self) -> str:
        head, dot, _ = self.field.partition(".")
        return head if dot and head in PREFIXES else "attributes"

    @property
    def key(self) -> str:
        return self.field.partition(".")[2] if self.kind != "attributes" else self.field

    @property
    def expression(self) -> str:
        """The field as the filter language writes it (odd keys in backticks)."""
        return field_expression(self.kind, self.key)

    @property
    def order_by(self) -> str:
        return f"{self.expression} {'DESC' if self.desc else 'ASC'}"

    @property
    def signature(self) -> str:
        return f"{self.field}:{'desc' if self.desc else 'asc'}"

    def value_of(self, run: Any) -> Any:
        """The sort key's value for ``run`` (a RunInfo); None when missing."""
        if self.kind == "attributes":
            value = getattr(run, self.key)
        else:
            value = getattr(run, self.kind).get(self.key)
        if isinstance(value, float) and math.isnan(value):
            return None
        return value


def field_expression(kind: str, key: str) -> str:
    """``metrics.auc``, or ``metrics.`val auc``` for a key the grammar cannot
    take bare.

    >>> field_expression("metrics", "val auc")
    'metrics.`val auc`'
    """
    if kind == "attributes":
        return key
    if _PLAIN_KEY.fullmatch(key):
        return f"{kind}.{key}"
    return f"{kind}.`{key.replace('`', '``')}`"


def literal(value: Any) -> str:
    """A filter-language literal: a number, or a quoted string with its quote
    and backslashes escaped.

    >>> literal("it's"), literal(0.5)
    ("'it\\\\'s'", '0.5')
    """
    if isinstance(value, bool):
        value = float(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def after(sort: Sort, value: Any, start_time: float, run_id: str) -> str:
    """The filter condition "comes after this run" in ``sort`` order.

    >>> after(Sort("start_time", True), 5.0, 5.0, "ab" * 16)
    "(start_time < 5.0 or (start_time = 5.0 and id > 'abababababababababababababababab'))"
    """
    t = literal(float(start_time))
    tie = f"(start_time < {t} or (start_time = {t} and id > {literal(run_id)}))"
    if sort.field == "start_time":
        if sort.desc:
            return tie
        return f"(start_time > {t} or (start_time = {t} and id > {literal(run_id)}))"
    field = sort.expression
    if sort.kind == "metrics":
        # Missing or NaN: neither <= 0 nor > 0 holds for them.
        missing = f"(not ({field} <= 0 or {field} > 0))"
    elif sort.kind in PREFIXES or sort.key in NULLABLE:
        missing = f"({field} is null)"
    else:
        missing = None
    if value is None:
        return f"({missing} and {tie})" if missing else tie
    if sort.kind == "params" or sort.kind == "tags":
        value = str(value)  # params sort as text, as search sorts them
    v = literal(value)
    beyond = f"{field} {'<' if sort.desc else '>'} {v}"
    parts = [beyond, f"({field} = {v} and {tie})"]
    if missing:
        parts.append(missing)
    return "(" + " or ".join(parts) + ")"


def encode_token(sort: Sort, run: Any) -> str:
    """The page token that continues after ``run``."""
    data = [sort.signature, sort.value_of(run), run.start_time, run.id]
    raw = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, sort: Sort) -> tuple[Any, float, str] | None:
    """``(value, start_time, id)`` from a token made for ``sort``; None when
    the token is malformed, tampered with or made for another order."""
    if not token or len(token) > 4000:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        sig, value, start, run_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        return None
    if sig != sort.signature or not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        return None
    if isinstance(start, bool) or not isinstance(start, (int, float)) \
            or not math.isfinite(start):
        return None
    if value is not None and (isinstance(value, bool)
                              or not isinstance(value, (str, int, float))
                              or (isinstance(value, float) and not math.isfinite(value))):
        return None
    return value, float(start), run_id
