"""A deployment's traffic as the prediction log recorded it, shaped for the
page: a table by version and role, and time series (requests, failed share,
p95 latency) in at most :data:`MAX_BUCKETS` buckets.

The log is read with :func:`shipyard.deploy.read_predictions`; this module
only counts and cuts it into buckets for drawing, as ``_lttb`` does for
curves.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Time windows the page offers, in seconds (None: everything logged).
WINDOWS = {"1h": 3600.0, "24h": 86_400.0, "7d": 7 * 86_400.0, "30d": 30 * 86_400.0,
           "all": None}
DEFAULT_WINDOW = "7d"
#: Most buckets a chart has.
MAX_BUCKETS = 120
#: Bucket widths, seconds: the smallest that gives at most MAX_BUCKETS.
WIDTHS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400)


def bucket_width(span: float, max_buckets: int = MAX_BUCKETS) -> int:
    """The smallest of :data:`WIDTHS` that cuts ``span`` seconds into at
    most ``max_buckets`` buckets.

    >>> bucket_width(50), bucket_width(3600), bucket_width(7 * 86_400)
    (1, 60, 10800)
    """
    for width in WIDTHS:
        if span / width < max_buckets:
            return width
    return int(math.ceil(span / max_buckets / 86_400) * 86_400) or WIDTHS[-1]


def label(version: Any, role: Any) -> str:
    """``v3 candidate``; ``v3`` outside a rollout.

    >>> label(3, "candidate"), label(2, None), label(None, None)
    ('v3 candidate', 'v2', 'unknown version')
    """
    head = "unknown version" if version is None or _nan(version) else f"v{int(version)}"
    return f"{head} {role}" if isinstance(role, str) and role else head


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """What the deployment page shows of logged requests ``frame`` (the
    columns of :func:`read_predictions`).

    Returns
    -------
    dict
        ``requests``, ``failed``, ``first``, ``last``; ``groups``: one dict
        per version and role (``label, version, role, requests, rows,
        failed, error_rate, p50, p95, p99, share``), busiest first;
        ``charts``: ``x`` (bucket start, epoch seconds), ``width`` and per
        chart (``requests``, ``error_rate``, ``p95_ms``) a list of
        ``{"label", "y"}`` series, ``None`` where a bucket has no request.
    """
    import numpy as np

    if len(frame) == 0:
        return {"requests": 0, "failed": 0, "first": None, "last": None, "groups": [],
                "charts": {"x": [], "width": 0, "requests": [], "error_rate": [],
                           "p95_ms": []}}
    import pandas as pd

    ts = (pd.to_datetime(frame["ts"], utc=True)
          - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    failed = frame["status"].fillna(0).astype(int).to_numpy() >= 400
    latency = frame["latency_ms"].astype(float).to_numpy()
    labels = np.array([label(v, r) for v, r in zip(frame["version"], frame["role"],
                                                   strict=True)], dtype=object)
    rows = frame["num_rows"].fillna(0).astype(int).to_numpy()
    total = len(frame)
    groups = []
    for name in dict.fromkeys(labels):
        mask = labels == name
        first = int(np.flatnonzero(mask)[0])
        lat = latency[mask]
        lat = lat[np.isfinite(lat)]
        p50, p95, p99 = (np.percentile(lat, [50, 95, 99]) if len(lat) else (None,) * 3)
        count = int(mask.sum())
        groups.append({"label": name, "version": frame["version"].iloc[first],
                       "role": frame["role"].iloc[first], "requests": count,
                       "rows": int(rows[mask].sum()), "failed": int(failed[mask].sum()),
                       "error_rate": float(failed[mask].mean()), "share": count / total,
                       "p50": _finite(p50), "p95": _finite(p95), "p99": _finite(p99)})
    groups.sort(key=lambda g: (-g["requests"], g["label"]))
    start, end = float(ts.min()), float(ts.max())
    width = bucket_width(max(end - start, 1.0))
    origin = math.floor(start / width) * width
    index = ((ts - origin) // width).astype(int)
    n = int(index.max()) + 1
    x = [origin + i * width for i in range(n)]
    charts: dict[str, Any] = {"x": x, "width": width, "requests": [], "error_rate": [],
                              "p95_ms": []}
    for group in groups:
        mask = labels == group["label"]
        idx, fail, lat = index[mask], failed[mask], latency[mask]
        counts = np.bincount(idx, minlength=n)
        fails = np.bincount(idx, weights=fail.astype(float), minlength=n)
        p95 = [None] * n
        order = np.argsort(idx, kind="stable")
        cuts = np.searchsorted(idx[order], np.arange(n + 1))
        for b in range(n):
            values = lat[order[cuts[b]:cuts[b + 1]]]
            values = values[np.isfinite(values)]
            if len(values):
                p95[b] = round(float(np.percentile(values, 95)), 3)
        charts["requests"].append({"label": group["label"],
                                   "y": [int(c) for c in counts]})
        charts["error_rate"].append({"label": group["label"],
                                     "y": [round(100 * float(f) / c, 3) if c else None
                                           for f, c in zip(fails, counts, strict=True)]})
        charts["p95_ms"].append({"label": group["label"], "y": p95})
    return {"requests": total, "failed": int(failed.sum()), "first": start, "last": end,
            "groups": groups, "charts": charts}
