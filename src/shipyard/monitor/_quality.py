"""Data-quality checks of a window against the reference (docs/monitoring.md §3).

Each check gives ``{value, threshold, failed, detail}``; ``value`` is the
worst column's figure, ``failed`` None when the check could not be made.

``missing_rate``
    Per column, the rise of the share of missing values over the
    reference's; a column fails when the rise exceeds ``max_missing_increase``
    *and* a one-sided binomial test against the reference rate gives
    ``p < alpha`` (so a few rows do not fail it by chance).
``out_of_range``
    Per numeric column, the share of present values outside the reference's
    ``[min, max]`` widened by 10 % of the range on each side; fails above
    ``max_out_of_range``.
``unseen_categories``
    Per categorical column, the share of present values the reference never
    had; fails above ``max_unseen_categories``. Columns whose reference
    counts folded values into ``__other__`` (over 200 distinct values) are
    not judged: an unseen value cannot be told from a folded one.
``error_rate``
    Share of the window's requests refused for their input (status 4xx:
    schema and type violations), with the most frequent errors; fails above
    ``max_error_rate``.
``volume``
    Rows per hour in the window over the median rows per hour of the
    model's trailing traffic; fails below ``min_volume_ratio``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shipyard.data import ColumnSketch, FrameSketch
    from shipyard.monitor._policy import QualitySpec

#: Widening of the reference range, as a share of it, before a value is out of range.
RANGE_MARGIN = 0.1
OTHER = "__other__"


def range_bounds(ref: ColumnSketch) -> tuple[float, float] | None:
    """The accepted ``(low, high)`` of a numeric reference column."""
    if not ref.count or ref.min is None or ref.max is None:
        return None
    margin = RANGE_MARGIN * (ref.max - ref.min)
    return ref.min - margin, ref.max + margin


def count_out_of_range(values: np.ndarray, bounds: tuple[float, float]) -> int:
    """Present values of ``values`` outside ``bounds``."""
    finite = values[np.isfinite(values)]
    return int(np.count_nonzero((finite < bounds[0]) | (finite > bounds[1])))


def _check(value: float | None, threshold: float, failed: bool | None,
           detail: Any) -> dict[str, Any]:
    return {"value": value, "threshold": threshold, "failed": failed, "detail": detail}


def _missing(reference: FrameSketch, current: FrameSketch, limit: float, alpha: float
             ) -> dict[str, Any]:
    from scipy.stats import binomtest

    detail, worst, failed = {}, None, False
    for name, cur in current.columns.items():
        ref = reference.columns.get(name)
        if ref is None or not cur.rows:
            continue
        base, now = ref.missing_rate, cur.missing_rate
        rise = now - base
        p_value = 1.0
        if cur.missing:
            p_value = (0.0 if base <= 0 else
                       float(binomtest(cur.missing, cur.rows, base, alternative="greater").pvalue))
        bad = bool(rise > limit and p_value < alpha)
        detail[name] = {"reference": base, "current": now, "increase": rise,
                        "p_value": p_value, "failed": bad}
        worst = rise if worst is None else max(worst, rise)
        failed = failed or bad
    return _check(worst, limit, failed if detail else None, detail)


def _out_of_range(reference: FrameSketch, current: FrameSketch, limit: float,
                  counts: Mapping[str, int] | None) -> dict[str, Any]:
    detail, worst = {}, None
    for name, cur in current.columns.items():
        ref = reference.columns.get(name)
        if ref is None or not ref.numeric or not cur.numeric or not cur.count:
            continue
        bounds = range_bounds(ref)
        if bounds is None:
            continue
        if counts is not None and name in counts:
            n, exact = int(counts[name]), True
        else:  # estimated from the window's sketch
            below, above = cur.cdf([np.nextafter(bounds[0], -np.inf), bounds[1]])
            n, exact = round((below + 1.0 - above) * cur.count), False
        share = n / cur.count
        detail[name] = {"share": share, "count": n, "low": bounds[0], "high": bounds[1],
                        "exact": exact, "failed": share > limit}
        worst = share if worst is None else max(worst, share)
    return _check(worst, limit, (worst > limit) if worst is not None else None, detail)


def _unseen(reference: FrameSketch, current: FrameSketch, limit: float) -> dict[str, Any]:
    detail, worst = {}, None
    for name, cur in current.columns.items():
        ref = reference.columns.get(name)
        if ref is None or ref.numeric or cur.numeric or not cur.count or ref.folded \
                or ref.kind == "text":
            continue
        new = {k: v for k, v in cur.counts.items() if k not in ref.counts and k != OTHER}
        n = sum(new.values())
        share = n / cur.count
        top = sorted(new.items(), key=lambda kv: -kv[1])[:10]
        detail[name] = {"share": share, "count": n, "values": [k for k, _ in top],
                        "failed": share > limit}
        worst = share if worst is None else max(worst, share)
    return _check(worst, limit, (worst > limit) if worst is not None else None, detail)


def quality_checks(reference: FrameSketch, current: FrameSketch, *,
                   spec: QualitySpec | None = None, alpha: float = 0.05,
                   out_of_range: Mapping[str, int] | None = None,
                   requests: int | None = None, errors: Mapping[str, int] | None = None,
                   rows_per_hour: float | None = None,
                   trailing_rows_per_hour: float | None = None) -> dict[str, dict[str, Any]]:
    """Run the data-quality checks of the module docstring.

    Parameters
    ----------
    reference, current
        Input sketches of the reference and of the window (every row that
        reached the model, answered or not).
    spec
        Thresholds; default :class:`~shipyard.monitor.QualitySpec` ().
    alpha
        Significance of the missing-rate test.
    out_of_range
        Exact ``{column: values out of range}`` counted while streaming
        (see :func:`range_bounds`); estimated from ``current`` when absent.
    requests, errors
        Requests in the window, and ``{error: count}`` of those refused with
        a 4xx status; the error-rate check is skipped without ``requests``.
    rows_per_hour, trailing_rows_per_hour
        The window's traffic and the model's usual traffic; the volume check
        is skipped without both.

    Returns
    -------
    dict
        ``{check: {"value", "threshold", "failed", "detail"}}``.
    """
    from shipyard.monitor._policy import QualitySpec

    spec = spec or QualitySpec()
    out = {"missing_rate": _missing(reference, current, spec.max_missing_increase, alpha),
           "out_of_range": _out_of_range(reference, current, spec.max_out_of_range,
                                         out_of_range),
           "unseen_categories": _unseen(reference, current, spec.max_unseen_categories)}
    if requests:
        refused = int(sum((errors or {}).values()))
        rate = refused / requests
        top = dict(sorted((errors or {}).items(), key=lambda kv: -kv[1])[:10])
        out["error_rate"] = _check(rate, spec.max_error_rate, rate > spec.max_error_rate,
                                   {"requests": requests, "refused": refused, "errors": top})
    else:
        out["error_rate"] = _check(None, spec.max_error_rate, None, {"requests": 0})
    if rows_per_hour is not None and trailing_rows_per_hour and \
            math.isfinite(trailing_rows_per_hour) and trailing_rows_per_hour > 0:
        ratio = rows_per_hour / trailing_rows_per_hour
        out["volume"] = _check(ratio, spec.min_volume_ratio, ratio < spec.min_volume_ratio,
                               {"rows_per_hour": rows_per_hour,
                                "trailing_median_rows_per_hour": trailing_rows_per_hour})
    else:
        out["volume"] = _check(None, spec.min_volume_ratio, None,
                               {"rows_per_hour": rows_per_hour,
                                "trailing_median_rows_per_hour": trailing_rows_per_hour,
                                "note": "no trailing traffic to compare with"})
    return out
