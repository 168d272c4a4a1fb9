"""The run-search filter language: parse to a small tree, compile to SQLAlchemy.

Grammar (keywords are case-insensitive)::

    filter     := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" or ")" | comparison
    comparison := field op value
                | field ["not"] "in" "(" value ("," value)* ")"
                | field ["not"] ("like" | "ilike") string
                | field "is" ["not"] "null"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    field      := ("metrics" | "params" | "tags") "." key
                | ["attributes" "."] attribute
    key        := name with letters, digits, _ - . / :   |  `quoted`  |  "quoted"
    value      := number | 'string' | "string"

Semantics
---------
* ``metrics.X`` is the latest value of metric X (greatest step, then
  timestamp). NaN values match no comparison. Numbers only.
* ``params.X`` compares strings, except against a number, when params whose
  value is a plain number (``0.1``, ``1e-3``, ``32``) compare numerically:
  ``params.lr < 0.01``. Quote the literal to compare text: ``params.lr = '0.10'``.
* ``tags.X`` compares strings.
* A comparison on a metric, param or tag matches only runs that have it, so
  ``not metrics.auc > 0.9`` also matches runs without ``auc``; ``IS NULL``
  and ``IS NOT NULL`` test presence.
* ``LIKE`` is case-sensitive, ``ILIKE`` is not; ``%`` matches any run of
  characters, ``_`` one character, ``\\%`` and ``\\_`` themselves.
* ``start_time`` and ``end_time`` compare with epoch seconds or an ISO date
  (``start_time >= '2026-11-01'``, local time); ``status`` literals are
  upper-cased.

User input never becomes SQL text: every literal is a bound parameter.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, and_, case, cast, false, not_, or_, select, true
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from shipyard.errors import FilterSyntaxError
from shipyard.store.tables import ExperimentRow, LatestMetricRow, ParamRow, RunRow, TagRow

PREFIXES = ("metrics", "params", "tags", "attributes")
#: attribute name → (column, kind); kind is "str", "num" or "time"
ATTRIBUTES: dict[str, tuple[Any, str]] = {
    "run_id": (RunRow.id, "str"),
    "id": (RunRow.id, "str"),
    "name": (RunRow.name, "str"),
    "run_name": (RunRow.name, "str"),
    "status": (RunRow.status, "str"),
    "experiment": (ExperimentRow.name, "str"),
    "parent_id": (RunRow.parent_id, "str"),
    "start_time": (RunRow.start_time, "time"),
    "end_time": (RunRow.end_time, "time"),
    "seed": (RunRow.seed, "num"),
    "cpu_seconds": (RunRow.cpu_seconds, "num"),
    "wall_seconds": (RunRow.wall_seconds, "num"),
    "peak_memory_mb": (RunRow.peak_memory_mb, "num"),
}
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
NUMERIC_TEXT = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
FIELD_HINT = ("use metrics.<key>, params.<key>, tags.<key> or attributes.<name> "
              f"(attributes: {', '.join(sorted(set(ATTRIBUTES) - {'id', 'run_name'}))})")


# ------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Token:
    kind: str   # word, string, quoted (backticks), number, op, punct, end
    text: str   # the source text
    value: Any  # decoded value
    column: int  # 1-based
    end: int    # 0-based offset after the token


_WORD = re.compile(r"[A-Za-z_][\w.\-/:]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")
_OPS = ("<=", ">=", "!=", "<>", "==", "=", "<", ">")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "(),":
            tokens.append(Token("punct", ch, ch, i + 1, i + 1))
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op:
            norm = {"==": "=", "<>": "!="}.get(op, op)
            tokens.append(Token("op", op, norm, i + 1, i + len(op)))
            i += len(op)
            continue
        if ch in "'\"`":
            value, end = _read_quoted(text, i)
            tokens.append(Token("quoted" if ch == "`" else "string", text[i:end], value, i + 1, end))
            i = end
            continue
        m = _NUMBER.match(text, i)
        if m and (ch.isdigit() or ch in "+-."):
            tokens.append(Token("number", m.group(), float(m.group()), i + 1, m.end()))
            i = m.end()
            continue
        m = _WORD.match(text, i)
        if m:
            tokens.append(Token("word", m.group(), m.group(), i + 1, m.end()))
            i = m.end()
            continue
        raise FilterSyntaxError(
            f"unexpected character {ch!r} at column {i + 1} of the filter",
            hint="quote keys with spaces or symbols in backticks (metrics.`val auc`) and "
                 "string values in quotes ('lgbm')")
    tokens.append(Token("end", "", None, n + 1, n))
    return tokens


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Decode a quoted string; the quote doubles or backslash-escapes itself."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise FilterSyntaxError(f"unterminated {quote}-quoted text starting at column {start + 1}",
                            hint=f"close it with a matching {quote}")


# --------------------------------------------------------------------- tree
@dataclass(frozen=True)
class Field:
    kind: str  # metrics, params, tags, attributes
    key: str
    column: int

    def __str__(self) -> str:
        return f"{self.kind}.{self.key}"


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str         # = != < <= > >= in not_in like not_like ilike not_ilike is_null not_null
    value: Any      # float | str | tuple | None
    column: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or
    items: tuple


@dataclass(frozen=True)
class Not:
    item: Any


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def fail(self, expected: str, tok: Token | None = None) -> FilterSyntaxError:
        tok = tok or self.tok
        found = "the end of the filter" if tok.kind == "end" else repr(tok.text)
        return FilterSyntaxError(f"expected {expected} at column {tok.column}, found {found}",
                                 hint=_caret(self.text, tok.column))

    # grammar ---------------------------------------------------------------
    def parse(self):
        node = self.or_()
        if self.tok.kind != "end":
            raise self.fail("AND, OR or the end of the filter")
        return node

    def or_(self):
        items = [self.and_()]
        while self.is_kw("or"):
            self.next()
            items.append(self.and_())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self):
        items = [self.not_()]
        while self.is_kw("and"):
            self.next()
            items.append(self.not_())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_(self):
        if self.is_kw("not"):
            self.next()
            return Not(self.not_())
        if self.tok.text == "(" and self.tok.kind == "punct":
            self.next()
            node = self.or_()
            if self.tok.text != ")":
                raise self.fail("')' to close the '(' ")
            self.next()
            return node
        return self.comparison()

    def field(self) -> Field:
        tok = self.tok
        if tok.kind != "word" or tok.text.lower() in ("and", "or", "not", "in", "like",
                                                      "ilike", "is", "null"):
            raise self.fail("a field such as metrics.auc, params.lr or status")
        self.next()
        head, dot, rest = tok.text.partition(".")
        if not dot:
            name = head.lower()
            if name in ATTRIBUTES:
                return Field("attributes", name, tok.column)
            raise FilterSyntaxError(f"unknown field {tok.text!r} at column {tok.column}: "
                                    f"{FIELD_HINT}")
        prefix = head.lower()
        if prefix not in PREFIXES:
            raise FilterSyntaxError(f"unknown field {tok.text!r} at column {tok.column}: "
                                    f"{FIELD_HINT}")
        key = rest
        if not key:  # metrics.`key with spaces` or metrics."key"
            quoted = self.tok
            if quoted.kind not in ("quoted", "string") or quoted.column != tok.end + 1:
                raise self.fail(f"a key right after '{tok.text}' (quote odd keys in backticks)")
            self.next()
            key = quoted.value
        if not key:
            raise FilterSyntaxError(f"empty key after {prefix}. at column {tok.column}")
        if prefix == "attributes":
            name = key.lower()
            if name not in ATTRIBUTES:
                raise FilterSyntaxError(
                    f"unknown attribute {key!r} at column {tok.column}: {FIELD_HINT}")
            key = name
        return Field(prefix, key, tok.column)

    def value(self) -> Any:
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.next()
            return tok.value
        if tok.kind == "quoted":
            raise self.fail("a number or a 'quoted' string (backticks quote keys, not values)")
        raise self.fail("a number or a 'quoted' string")

    def comparison(self) -> Compare:
        field = self.field()
        tok = self.tok
        if tok.kind == "op":
            self.next()
            return Compare(field, tok.value, self.value(), tok.column)
        negate = False
        if self.is_kw("is"):
            self.next()
            if self.is_kw("not"):
                self.next()
                negate = True
            if not self.is_kw("null"):
                raise self.fail("NULL after IS")
            self.next()
            return Compare(field, "not_null" if negate else "is_null", None, tok.column)
        if self.is_kw("not"):
            self.next()
            negate = True
            if not self.is_kw("in", "like", "ilike"):
                raise self.fail("IN, LIKE or ILIKE after NOT")
        if self.is_kw("in"):
            self.next()
            if self.tok.text != "(":
                raise self.fail("'(' after IN")
            self.next()
            values = [self.value()]
            while self.tok.text == ",":
                self.next()
                values.append(self.value())
            if self.tok.text != ")":
                raise self.fail("',' or ')' in the IN list")
            self.next()
            return Compare(field, "not_in" if negate else "in", tuple(values), tok.column)
        if self.is_kw("like", "ilike"):
            word = self.next().text.lower()
            pattern = self.tok
            if pattern.kind != "string":
                raise self.fail(f"a 'quoted' pattern after {word.upper()}")
            self.next()
            return Compare(field, ("not_" if negate else "") + word, pattern.value, tok.column)
        raise self.fail(f"an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL) "
                        f"after '{field}'")


def _caret(text: str, column: int) -> str:
    return f"\n    {text}\n    {' ' * (column - 1)}^"


def parse_filter(text: str | None):
    """Parse a filter expression into a tree; ``None`` for an empty filter.

    >>> parse_filter("metrics.auc > 0.9").op
    '>'
    """
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


def parse_order_by(items: str | list[str] | tuple[str, ...] | None) -> list[tuple[Field, bool]]:
    """Parse ``["metrics.auc DESC", "params.lr"]`` into ``(field, descending)`` pairs."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    out = []
    for item in items:
        p = _Parser(item)
        field = p.field()
        desc = False
        if p.is_kw("asc", "desc"):
            desc = p.next().text.lower() == "desc"
        if p.tok.kind != "end":
            raise p.fail("ASC, DESC or the end of the order-by item")
        out.append((field, desc))
    return out


# ------------------------------------------------------------------ compile
def compile_filter(node, dialect: str) -> ColumnElement[bool]:
    """SQL condition on ``RunRow`` (joined with ``ExperimentRow``) for a parsed filter."""
    if node is None:
        return true()
    if isinstance(node, BoolOp):
        parts = [compile_filter(item, dialect) for item in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if isinstance(node, Not):
        return not_(compile_filter(node.item, dialect))
    return _compile_compare(node, dialect)


def _compile_compare(c: Compare, dialect: str) -> ColumnElement[bool]:
    kind = c.field.kind
    if kind == "attributes":
        return _attribute(c, dialect)
    table = {"metrics": LatestMetricRow, "params": ParamRow, "tags": TagRow}[kind]
    if c.op in ("is_null", "not_null"):
        has = RunRow.id.in_(select(table.run_id).where(table.key == c.field.key))
        return has if c.op == "not_null" else not_(has)
    conds = [table.key == c.field.key]
    if kind == "metrics":
        _require_numbers(c, "metrics are numbers")
        conds += [table.is_nan == false(), _apply(table.value, c, dialect)]
    elif kind == "params" and _numeric_literal(c):
        as_number = case((table.value.regexp_match(NUMERIC_TEXT), cast(table.value, Float)),
                         else_=None)
        conds.append(_apply(as_number, c, dialect))
    else:
        _require_strings(c, f"{kind} are strings: quote the value, e.g. {c.field} = '1'")
        conds.append(_apply(table.value, c, dialect))
    return RunRow.id.in_(select(table.run_id).where(*conds))


def _attribute(c: Compare, dialect: str) -> ColumnElement[bool]:
    col, kind = ATTRIBUTES[c.field.key]
    if c.op == "is_null":
        return col.is_(None)
    if c.op == "not_null":
        return col.is_not(None)
    if kind == "time":
        c = Compare(c.field, c.op, _times(c), c.column)
    if kind in ("num", "time"):
        _require_numbers(c, f"{c.field.key} is a number")
    else:
        _require_strings(c, f"{c.field.key} is a string: quote the value")
        if c.field.key == "status" and not c.op.endswith("like"):
            c = Compare(c.field, c.op, _map(c.value, str.upper), c.column)
    # A NULL column (no name, no end time) must make the comparison false, not
    # unknown, so that NOT around it behaves.
    return and_(col.is_not(None), _apply(col, c, dialect))


def _apply(col, c: Compare, dialect: str) -> ColumnElement[bool]:
    v = c.value
    if c.op in COMPARISONS:
        return {"=": col.__eq__, "!=": col.__ne__, "<": col.__lt__, "<=": col.__le__,
                ">": col.__gt__, ">=": col.__ge__}[c.op](v)
    if c.op == "in":
        return col.in_(v)
    if c.op == "not_in":
        return col.not_in(v)
    if c.op in ("like", "not_like"):
        # SQLite's LIKE ignores case; GLOB does not.
        cond = col.op("GLOB", is_comparison=True)(_like_to_glob(v)) if dialect == "sqlite" else col.like(v)
        return cond if c.op == "like" else not_(cond)
    if c.op in ("ilike", "not_ilike"):
        cond = col.ilike(v)
        return cond if c.op == "ilike" else not_(cond)
    raise AssertionError(c.op)


def _like_to_glob(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(f"[{nxt}]" if nxt in "*?[" else nxt)
            i += 2
            continue
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
        i += 1
    return "".join(out)


def _values(c: Compare) -> tuple:
    return c.value if isinstance(c.value, tuple) else (c.value,)


def _map(value, fn):
    return tuple(fn(v) for v in value) if isinstance(value, tuple) else fn(value)


def _numeric_literal(c: Compare) -> bool:
    values = _values(c)
    if all(isinstance(v, float) for v in values):
        if c.op.endswith("like"):
            raise FilterSyntaxError(f"{c.op.replace('not_', 'NOT ').upper()} at column "
                                    f"{c.column} needs a 'quoted' pattern")
        return True
    if any(isinstance(v, float) for v in values):
        raise FilterSyntaxError(f"the IN list at column {c.column} mixes numbers and strings",
                                hint="use only numbers or only 'quoted' strings")
    return False


def _require_numbers(c: Compare, why: str) -> None:
    if c.op.endswith("like"):
        raise FilterSyntaxError(f"{c.op.replace('not_', 'NOT ').upper()} at column {c.column} "
                                f"compares strings, but {c.field}: {why}")
    if not all(isinstance(v, float) for v in _values(c)):
        raise FilterSyntaxError(f"{c.field} at column {c.field.column} compares with numbers, "
                                f"got {c.value!r}: {why}")


def _require_strings(c: Compare, why: str) -> None:
    if not all(isinstance(v, str) for v in _values(c)):
        raise FilterSyntaxError(f"{c.field} at column {c.field.column} compares with strings, "
                                f"got a number: {why}")


def _times(c: Compare):
    def to_epoch(v):
        if isinstance(v, float):
            return v
        try:
            return _dt.datetime.fromisoformat(v).timestamp()
        except ValueError as exc:
            raise FilterSyntaxError(
                f"{c.field} at column {c.field.column} compares with epoch seconds or an ISO "
                f"date, got {v!r}", hint="e.g. start_time >= '2026-11-01 08:00'") from exc

    if c.op.endswith("like"):
        raise FilterSyntaxError(f"LIKE at column {c.column} compares strings, but {c.field} "
                                "is a time")
    return _map(c.value, to_epoch)


# ----------------------------------------------------------------- order by
def order_clauses(order: list[tuple[Field, bool]]) -> tuple[list, list]:
    """``(joins, order_by)``: outer joins to add to the run query and its sort keys.

    Runs missing the metric, param or tag sort last in either direction.
    """
    joins, keys = [], []
    for field, desc in order:
        if field.kind == "attributes":
            col = ATTRIBUTES[field.key][0]
        else:
            table = {"metrics": LatestMetricRow, "params": ParamRow, "tags": TagRow}[field.kind]
            alias = aliased(table)
            joins.append((alias, and_(alias.run_id == RunRow.id, alias.key == field.key)))
            col = (case((alias.is_nan == true(), None), else_=alias.value)
                   if field.kind == "metrics" else alias.value)
        keys.append((col.desc() if desc else col.asc()).nulls_last())
    return joins, keys
