"""Largest-Triangle-Three-Buckets downsampling of a curve, for drawing.

A browser draws at most a few thousand points per series usefully, so curves
are cut down on the server before they are sent. LTTB (Steinarsson, 2013,
"Downsampling Time Series for Visual Representation") keeps the first and
last points and, in each of ``n - 2`` equal buckets, the point that makes the
largest triangle with the point kept in the previous bucket and the mean of
the next bucket: peaks, dips and steps survive, which a mean or a stride
would flatten.
"""

from __future__ import annotations

import numpy as np

#: Most points a series is drawn with.
MAX_POINTS = 2000


def lttb(x, y, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Downsample the curve ``(x, y)`` to at most ``n`` points with LTTB.

    Non-finite ``y`` values (NaN, inf) are dropped first: they cannot be
    drawn. ``x`` must be sorted ascending; the result is a subset of the
    input points, in order, always including the first and the last.

    Parameters
    ----------
    x, y
        Equal-length sequences of numbers.
    n
        Most points to keep (at least 3 for LTTB; below, first/last only).

    >>> x = np.arange(10_000.0)
    >>> xs, ys = lttb(x, np.sin(x / 500), 100)
    >>> len(xs), float(xs[0]), float(xs[-1])
    (100, 0.0, 9999.0)
    >>> bool(abs(ys.max() - 1) < 0.01 and abs(ys.min() + 1) < 0.01)  # extremes kept
    True
    """
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(y) & np.isfinite(x)
    if not keep.all():
        x, y = x[keep], y[keep]
    size = len(x)
    if n >= size or size <= 2:
        return x, y
    if n < 3:
        idx = np.array([0, size - 1])[:max(n, 1)]
        return x[idx], y[idx]
    # Bucket edges over the points between the first and the last.
    edges = np.linspace(1, size - 1, n - 1).astype(np.int64)
    # Means of every bucket at once (the "next bucket" term of each step).
    csum_x = np.concatenate(([0.0], np.cumsum(x)))
    csum_y = np.concatenate(([0.0], np.cumsum(y)))
    counts = np.diff(edges)
    mean_x = (csum_x[edges[1:]] - csum_x[edges[:-1]]) / counts
    mean_y = (csum_y[edges[1:]] - csum_y[edges[:-1]]) / counts
    chosen = np.empty(n, dtype=np.int64)
    chosen[0], chosen[-1] = 0, size - 1
    ax, ay = x[0], y[0]
    last = n - 2
    for b in range(last):
        lo, hi = edges[b], edges[b + 1]
        if b + 1 < last:
            cx, cy = mean_x[b + 1], mean_y[b + 1]
        else:  # the last bucket's neighbour is the final point
            cx, cy = x[-1], y[-1]
        bx, by = x[lo:hi], y[lo:hi]
        # Twice the triangle's area; the factor does not change the argmax.
        area = np.abs((ax - cx) * (by - ay) - (ax - bx) * (cy - ay))
        pick = lo + int(area.argmax())
        chosen[b + 1] = pick
        ax, ay = x[pick], y[pick]
    return x[chosen], y[chosen]
