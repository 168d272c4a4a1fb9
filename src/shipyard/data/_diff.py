"""Diffs: how two dataset versions differ in schema, size and statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.data._datasets import DatasetVersion

# The profile statistics a diff compares, in display order.
STATS = ("missing", "distinct", "mean", "std", "min", "max")


@dataclass(frozen=True)
class ColumnChange:
    """One statistic of one column that differs between two versions.

    ``delta`` is ``after - before`` when both are numbers, else ``None``.
    """

    column: str
    stat: str
    before: Any
    after: Any
    delta: float | int | None

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "stat": self.stat, "before": self.before,
                "after": self.after, "delta": self.delta}


@dataclass(frozen=True)
class DatasetDiff:
    """What changed from version ``a`` to version ``b``.

    Attributes
    ----------
    a, b
        The two refs (``adult@2``, ``adult@3``).
    rows_before, rows_after
        Row counts.
    added, removed
        ``{"name", "type"}`` of columns only in ``b``, only in ``a``.
    type_changed
        ``{"name", "before", "after"}`` of columns whose dtype changed.
    changes
        Per-column statistic changes (missing, distinct, mean, std, min, max)
        of the columns in both.
    same_content
        Whether the two versions hold identical content.
    """

    a: str
    b: str
    rows_before: int
    rows_after: int
    added: tuple[dict[str, str], ...]
    removed: tuple[dict[str, str], ...]
    type_changed: tuple[dict[str, str], ...]
    changes: tuple[ColumnChange, ...]
    same_content: bool

    @property
    def rows_delta(self) -> int:
        return self.rows_after - self.rows_before

    @property
    def schema_changed(self) -> bool:
        return bool(self.added or self.removed or self.type_changed)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "rows_before": self.rows_before,
                "rows_after": self.rows_after, "rows_delta": self.rows_delta,
                "added": [dict(c) for c in self.added], "removed": [dict(c) for c in self.removed],
                "type_changed": [dict(c) for c in self.type_changed],
                "changes": [c.to_dict() for c in self.changes],
                "same_content": self.same_content}

    def table(self) -> list[list[str]]:
        """Rows of a ``column | stat | before | after | delta`` table, as text,
        schema changes first."""
        rows = [[c["name"], "added", "-", c["type"], ""] for c in self.added]
        rows += [[c["name"], "removed", c["type"], "-", ""] for c in self.removed]
        rows += [[c["name"], "type", c["before"], c["after"], ""] for c in self.type_changed]
        rows += [[c.column, c.stat, _fmt(c.before), _fmt(c.after), _fmt_delta(c.delta)]
                 for c in self.changes]
        return rows

    def __str__(self) -> str:
        head = (f"{self.a} -> {self.b}: rows {self.rows_before} -> {self.rows_after} "
                f"({self.rows_delta:+d})")
        if self.same_content:
            return head + ", identical content"
        rows = self.table()
        if not rows:
            return head + ", no schema or statistics changes"
        header = ["column", "stat", "before", "after", "delta"]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        lines = [head, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Compare two versions by their recorded schema and profile (no data is read)."""
    types_a = {c["name"]: c["type"] for c in a.schema}
    types_b = {c["name"]: c["type"] for c in b.schema}
    added = tuple({"name": n, "type": t} for n, t in types_b.items() if n not in types_a)
    removed = tuple({"name": n, "type": t} for n, t in types_a.items() if n not in types_b)
    common = [n for n in types_b if n in types_a]
    type_changed = tuple({"name": n, "before": types_a[n], "after": types_b[n]}
                         for n in common if types_a[n] != types_b[n])
    cols_a = a.profile.get("columns", {})
    cols_b = b.profile.get("columns", {})
    changes = []
    for name in common:
        pa_, pb = cols_a.get(name, {}), cols_b.get(name, {})
        for stat in STATS:
            before, after = pa_.get(stat), pb.get(stat)
            if before == after or (before is None and after is None):
                continue
            changes.append(ColumnChange(name, stat, before, after, _delta(before, after)))
    return DatasetDiff(a=a.ref, b=b.ref, rows_before=a.num_rows, rows_after=b.num_rows,
                       added=added, removed=removed, type_changed=type_changed,
                       changes=tuple(changes), same_content=a.content_hash == b.content_hash)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _delta(before: Any, after: Any) -> float | int | None:
    return after - before if _number(before) and _number(after) else None


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _fmt_delta(x: float | int | None) -> str:
    if x is None:
        return ""
    return f"{x:+.4g}" if isinstance(x, float) else f"{x:+d}"
