"""Parallel coordinates of compared runs, drawn as SVG on the server.

One vertical axis per param or metric that differs between the runs (at most
:data:`MAX_AXES`), one polyline per run. Numeric values are placed linearly
between the axis's min and max; text values (``lgbm``, ``rf``) evenly, in
sorted order. A run missing a value has no point on that axis: its line is
broken there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_AXES = 12
WIDTH, HEIGHT, TOP, BOTTOM, SIDE = 960, 300, 28, 24, 40


@dataclass(frozen=True)
class Axis:
    label: str
    x: float
    ticks: list[tuple[float, str]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _linear(lo: float, hi: float, span: float):
    def scale(value: Any) -> float | None:
        number = _number(value)
        if number is None:
            return None
        return TOP + span * (1 - ((number - lo) / (hi - lo) if hi > lo else 0.5))
    return scale


def _levels(where: dict[str, float]):
    def scale(value: Any) -> float | None:
        return None if value is None else where.get(str(value))
    return scale


def parallel_coordinates(runs: list, sections: dict[str, list[str]]) -> dict[str, Any] | None:
    """Axes and polylines for ``runs`` over the differing ``sections``
    (``{"params": [...], "metrics": [...]}``); None when fewer than two axes.

    >>> class R:
    ...     def __init__(self, lr, auc): self.params, self.metrics = {"lr": lr}, {"auc": auc}
    ...     name, short_id, id = "r", "r", "r"
    >>> chart = parallel_coordinates([R("0.1", 0.8), R("0.01", 0.9)],
    ...                              {"params": ["lr"], "metrics": ["auc"]})
    >>> [a.label for a in chart["axes"]], len(chart["lines"])
    (['lr', 'auc'], 2)
    """
    columns = [("params", k) for k in sections.get("params", [])]
    columns += [("metrics", k) for k in sections.get("metrics", [])]
    columns = columns[:MAX_AXES]
    if len(columns) < 2 or len(runs) < 2:
        return None
    step = (WIDTH - 2 * SIDE) / (len(columns) - 1)
    span = HEIGHT - TOP - BOTTOM
    axes, scales = [], []
    for i, (kind, key) in enumerate(columns):
        values = [getattr(r, kind).get(key) for r in runs]
        numbers = [_number(v) for v in values if v is not None]
        x = SIDE + i * step
        if numbers and all(n is not None for n in numbers):
            lo, hi = min(numbers), max(numbers)
            scale = _linear(lo, hi, span)
            ticks = [(TOP + span, f"{lo:.4g}"), (TOP, f"{hi:.4g}")]
        else:
            levels = sorted({str(v) for v in values if v is not None})
            where = {v: TOP + span * (1 - (j / (len(levels) - 1) if len(levels) > 1 else 0.5))
                     for j, v in enumerate(levels)}
            scale = _levels(where)
            ticks = [(y, label[:20]) for label, y in list(where.items())[:12]]
        axes.append(Axis(key[:30], round(x, 1), [(round(y, 1), t) for y, t in ticks]))
        scales.append((kind, key, scale))
    lines = []
    for r in runs:
        segments, current = [], []
        for axis, (kind, key, scale) in zip(axes, scales, strict=True):
            y = scale(getattr(r, kind).get(key))
            if y is None:
                segments.append(current)
                current = []
            else:
                current.append((axis.x, round(y, 1)))
        segments.append(current)
        # A value with no neighbour on either side is a dot, not a line.
        dots = [s[0] for s in segments if len(s) == 1]
        lines.append({"label": r.name or r.short_id, "id": r.id, "dots": dots,
                      "paths": [" ".join(f"{x},{y}" for x, y in s)
                                for s in segments if len(s) > 1]})
    return {"axes": axes, "lines": lines, "width": WIDTH, "height": HEIGHT,
            "more": max(0, len(sections.get("params", [])) + len(sections.get("metrics", []))
                        - MAX_AXES)}
