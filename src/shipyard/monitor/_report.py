"""One window's monitor report: drift, data quality and performance,
computed in one streaming pass over the prediction log (docs/monitoring.md
§3–4). Pure computation: :func:`build_report` reads the workspace and writes
nothing (``ws.monitor.check`` stores the report and evaluates alerts) but,
once per version, what later checks must not recompute: the fitted
performance estimators (and the reference of a version registered without
one).

Report schema (``MonitorReport.to_dict()``, strict JSON)::

    schema          "shipyard.monitor/1"
    model, version, role
    window          {"start", "end", "n"}: epoch seconds, answered rows
    reference       {"digest", "dataset", "rows"} | {"skipped": why}
    drift           {column: {"test" (ks | chi2 | mmd), "statistic", "p_value",
                     "p_adjusted", "effect", "effect_name", "drifted", "role"
                     (input | output), "kind", test figures (psi, wasserstein,
                     wasserstein_std, js, ks_error, n_effective, dof, n_reference, n_current)}
                     | {"skipped": why, ...}}; outputs are "prediction" and
                     "score" (underscored when an input has that name)
    dataset_drift   {"share", "drifted", "drifted_columns", "tested",
                     "threshold", "multivariate": {"domain_classifier": {...},
                     "pca_reconstruction": {...}}}
    quality         {check: {"value", "threshold", "failed", "detail"}}
    performance     {"realized": {metric: {"value", "ci_low", "ci_high", "n"}},
                     "estimated": {...CBPE or DLE...}, "estimator": {"method":
                     "cbpe" | "dle", "calibrated": [class, ...], "reference_rows",
                     "reference_source" (test_split | evaluation | training),
                     "reference_dataset", "skipped"?}, "reference": {metric: {"value",
                     "ci_low", "ci_high", "source"}}, "headline", "labelled",
                     "degraded": {"realized": {metric: bool}, "estimated": {...}}}
    verdict         "ok" | "warning" | "alert"; reasons: [why, ...]
    created_at      epoch seconds

Verdict rule:

``alert``
    the dataset drifted (share of drifted input columns ≥ ``dataset_share``,
    or a multivariate test flagged); or a data-quality check failed; or the
    realized headline metric is degraded (see
    :func:`~shipyard.monitor._performance.degradation`) on at least
    ``min_rows`` labelled rows.
``warning``
    otherwise, some column (input, prediction or score) drifted; or another
    realized metric, or the estimated (CBPE or DLE) headline metric on at least
    ``min_rows`` rows, is degraded.
``ok``
    otherwise (including a window too small to test: its entries say
    ``skipped``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import statistics
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import MonitorError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.monitor._policy import MonitorPolicy
    from shipyard.monitor._windows import Window

SCHEMA = "shipyard.monitor/1"
VERDICTS = ("ok", "warning", "alert")
#: Traffic before a window that its volume is compared with.
TRAILING_SECONDS = 7 * 86400
#: Hours of trailing traffic needed before volume is judged.
MIN_TRAILING_HOURS = 24
#: Longest error text kept when counting refusals.
ERROR_TEXT = 120


@dataclass
class MonitorReport:
    """One window's checks; see the module docstring for every field."""

    model: str
    version: int | None
    role: str | None
    window: dict[str, Any]
    drift: dict[str, Any] = field(default_factory=dict)
    dataset_drift: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    verdict: str = "ok"
    reasons: list[str] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    schema: str = SCHEMA

    def __repr__(self) -> str:
        return (f"MonitorReport(model={self.model!r}, version={self.version!r}, "
                f"rows={self.window.get('n')}, verdict={self.verdict!r})")

    @property
    def rows(self) -> int:
        return int(self.window.get("n") or 0)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (NaN and infinities as ``null``)."""
        from shipyard.data import jsonable

        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorReport:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        MonitorError
            ``data`` is not a monitor report.
        """
        if not isinstance(data, dict) or data.get("schema", SCHEMA) != SCHEMA \
                or "model" not in data or data.get("verdict") not in VERDICTS:
            raise MonitorError("not a monitor report (schema shipyard.monitor/1 with a model "
                               "and a verdict)")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ------------------------------------------------------------------ window
def _pick_window(ws: Workspace, model: str, *, version: int | None, role: str | None,
                 start: float | None, end: float | None, policy: MonitorPolicy
                 ) -> Window | None:
    """``[start, end)`` when both are given; else the newest complete window
    of the policy (a time window that has ended, a row window that is full),
    or the newest one when none is complete."""
    from shipyard.monitor._windows import windows

    if start is not None and end is not None:
        found = windows(ws, model, version=version, role=role, start=start, end=end)
        return found[0] if found else None
    found = windows(ws, model, version=version, role=role, start=start, end=end,
                    every=policy.window.seconds, rows=policy.window.rows)
    if not found:
        return None
    now = time.time()
    complete = [w for w in found if (w.end <= now if policy.window.rows is None
                                     else w.n >= policy.window.rows)]
    return (complete or found)[-1]


def _busiest_version(ws: Workspace, window: Window) -> int | None:
    from shipyard.monitor._windows import scan_batches

    totals: dict[int, int] = {}
    for batch in scan_batches(ws, ["version", "status", "num_rows"], model=window.model,
                              start=window.start, end=window.end, role=window.role):
        version = batch.column("version").to_numpy(zero_copy_only=False)
        ok = batch.column("status").to_numpy(zero_copy_only=False) == 200
        rows = batch.column("num_rows").fill_null(0).to_numpy(zero_copy_only=False)
        for v, n in zip(version[ok].tolist(), rows[ok].tolist()):
            if v is not None and not math.isnan(v):
                totals[int(v)] = totals.get(int(v), 0) + int(n)
    return max(totals, key=lambda v: (totals[v], v)) if totals else None


def _requests(ws: Workspace, window: Window) -> tuple[int, dict[str, int]]:
    """Requests in the window and ``{error: count}`` of the 4xx ones."""
    from shipyard.monitor._windows import scan_batches

    requests, errors = 0, {}
    for batch in scan_batches(ws, ["status", "error"], model=window.model, start=window.start,
                              end=window.end, version=window.version, role=window.role):
        status = batch.column("status").to_numpy(zero_copy_only=False)
        requests += len(status)
        bad = np.flatnonzero((status >= 400) & (status < 500))
        if len(bad):
            for text in batch.column("error").take(bad).to_pylist():
                key = (text or "(no message)").splitlines()[0][:ERROR_TEXT]
                errors[key] = errors.get(key, 0) + 1
    return requests, errors


def _volume(ws: Workspace, window: Window) -> tuple[float | None, float | None]:
    """Rows per hour of the window and the median of the hourly rows of the
    same version and role over :data:`TRAILING_SECONDS` before it (hours
    since its first traffic there, empty hours included)."""
    from shipyard.monitor._windows import scan_batches

    elapsed = min(window.end, time.time()) - window.start
    rate = window.n / (elapsed / 3600.0) if elapsed > 0 else None
    begin = window.start - TRAILING_SECONDS
    hours: dict[int, int] = {}
    for batch in scan_batches(ws, ["ts", "status", "num_rows"], model=window.model, start=begin,
                              end=window.start, version=window.version, role=window.role):
        micros = batch.column("ts").cast("int64").to_numpy(zero_copy_only=False)
        ok = batch.column("status").to_numpy(zero_copy_only=False) == 200
        rows = batch.column("num_rows").fill_null(0).to_numpy(zero_copy_only=False)
        for hour, n in zip((micros[ok] // 3_600_000_000).tolist(), rows[ok].tolist()):
            hours[hour] = hours.get(hour, 0) + int(n)
    if not hours:
        return rate, None
    first, last = min(hours), int(window.start // 3600) - 1
    if last - first + 1 < MIN_TRAILING_HOURS:
        return rate, None
    median = statistics.median(hours.get(h, 0) for h in range(first, last + 1))
    return rate, float(median) if median > 0 else None


# ------------------------------------------------------------------ stream
class _Sample:
    """A seeded uniform sample of at most ``size`` rows of a stream."""

    def __init__(self, size: int, seed: int):
        self.size, self.rng = size, np.random.default_rng(seed)
        self.frame: pd.DataFrame | None = None
        self.keys = np.empty(0)

    def update(self, frame: pd.DataFrame) -> None:
        import pandas as pd

        if not len(frame):
            return
        keys = self.rng.random(len(frame))
        if self.frame is not None and len(self.keys) >= self.size:
            bar = self.keys.max()
            chosen = keys < bar
            frame, keys = frame[chosen], keys[chosen]
            if not len(frame):
                return
        merged = frame if self.frame is None else pd.concat([self.frame, frame],
                                                            ignore_index=True)
        keys = np.concatenate([self.keys, keys])
        if len(keys) > self.size:
            keep = np.sort(np.argpartition(keys, self.size - 1)[: self.size])
            merged, keys = merged.iloc[keep], keys[keep]
        self.frame, self.keys = merged.reset_index(drop=True), keys


def _labels_of(frame: pd.DataFrame, labels: dict[str, Any], names: dict[str, str]
               ) -> tuple[np.ndarray, list[Any]]:
    """Rows of ``frame`` with a label, and their labels (a list label gives
    each row of its request its own; a scalar labels every row)."""
    ids = frame[names["request_id"]]
    hit = np.flatnonzero(ids.isin(labels.keys()).to_numpy()
                         & (frame[names["status"]].to_numpy() == 200))
    out, keep = [], []
    for i, rid, row in zip(hit.tolist(), ids.iloc[hit].tolist(),
                           frame[names["row"]].iloc[hit].tolist()):
        label = labels[rid]
        if isinstance(label, list):
            label = label[row] if row < len(label) else None
        if label is not None:
            keep.append(i)
            out.append(label)
    return np.asarray(keep, dtype=np.int64), out


def build_report(ws: Workspace, model: str, *, version: int | None = None,
                 role: str | None = None, start: float | _dt.datetime | None = None,
                 end: float | _dt.datetime | None = None,
                 policy: MonitorPolicy | None = None, window: Window | None = None,
                 seed: int = 0, chunk_rows: int = 50_000) -> MonitorReport:
    """Check one window of ``model``'s traffic; store nothing.

    Parameters
    ----------
    ws
        The workspace.
    model
        Model name.
    version, role
        Only this version / rollout role. Without a version, the version that
        answered the most rows in the window (its reference is the baseline).
    start, end
        Both: the window ``[start, end)``. Otherwise the newest complete
        window of ``policy.window`` within them (see the module's ``windows``).
    policy
        Window, thresholds, late-arrival of labels; default ``MonitorPolicy()``.
    window
        Check exactly this window instead (from :func:`windows`).
    seed
        Seed of the window sample, the multivariate tests and the bootstrap.
    chunk_rows
        Rows read at a time.

    Returns
    -------
    MonitorReport
        ``window.n`` is 0 when the window holds no answered rows.

    Raises
    ------
    NotFoundError
        The window's version is not registered.
    """
    from shipyard.data import FrameSketch
    from shipyard.monitor._drift import (
        SAMPLE_ROWS,
        assess,
        column_drift,
        domain_classifier_test,
        pca_reconstruction_test,
        text_drift,
    )
    from shipyard.monitor._performance import (
        CBPE,
        degradation,
        headline,
        performance_reference,
        realized_performance,
        reference_performance,
    )
    from shipyard.monitor._policy import MonitorPolicy
    from shipyard.monitor._quality import count_out_of_range, quality_checks, range_bounds
    from shipyard.monitor._reference import reference as load_reference
    from shipyard.monitor._windows import Window, _epoch, labels_for, output_names, stream, windows
    from shipyard.registry import input_kinds, task_of

    policy = policy or MonitorPolicy()
    if window is None:
        window = _pick_window(ws, model, version=version, role=role, start=_epoch(start),
                              end=_epoch(end), policy=policy)
    if window is not None and window.version is None:
        busiest = _busiest_version(ws, window)
        if busiest is not None:
            found = windows(ws, model, version=busiest, role=window.role, start=window.start,
                            end=window.end)
            window = found[0] if found else Window(model, busiest, window.role, window.start,
                                                   window.end, 0)
    if window is None or window.version is None:
        now = time.time()
        return MonitorReport(model=model, version=version, role=role,
                             window={"start": _epoch(start), "end": _epoch(end) or now, "n": 0},
                             reasons=["no predictions in the window"])
    mv = ws.models.get(f"{model}@{window.version}")
    signature = mv.signature or {}
    task, classes, has_proba = task_of(signature)
    has_proba = has_proba and classes is not None
    report = MonitorReport(model=model, version=window.version, role=window.role,
                           window={"start": window.start, "end": window.end, "n": window.n})
    spec = policy.drift

    try:
        ref = load_reference(ws, mv)
        report.reference = {"digest": ref.digest, "dataset": ref.dataset, "rows": ref.rows}
        kinds = dict(ref.kinds)
    except MonitorError as exc:
        ref = None
        report.reference = {"skipped": exc.message}
        kinds = input_kinds(signature)
    inputs = list(kinds)
    names = output_names(inputs)
    sketch_kinds = {c: k for c, k in kinds.items()}
    served = FrameSketch(sketch_kinds)         # answered rows: drift
    seen = FrameSketch(sketch_kinds)           # every row that reached the model: quality
    outputs = FrameSketch({names["prediction"]: "numeric" if task == "regression"
                           else "categorical", names["score"]: "numeric"})
    bounds = {}
    if ref is not None:
        bounds = {c: b for c, s in ref.inputs.columns.items()
                  if s.numeric and (b := range_bounds(s)) is not None}
    out_of_range = dict.fromkeys(bounds, 0)
    sample = _Sample(SAMPLE_ROWS, seed)
    # Recalibration (classifiers) or DLE (regression) from labelled reference rows.
    fitted = performance_reference(ws, mv, ref) if ref is not None and (
        has_proba or task == "regression") else {}
    estimator = CBPE(classes, fitted.get("calibration")) \
        if has_proba and task != "regression" else None
    loss = copy.copy(fitted["dle"]).reset() if fitted.get("dle") is not None else None
    labels = labels_for(ws, window, late_arrival_seconds=policy.late_arrival_seconds)
    label_map = dict(zip(labels["request_id"], labels["label"]))
    y: list[Any] = []
    y_pred: list[Any] = []
    y_proba: list[np.ndarray] = []

    for chunk in stream(ws, window, inputs=inputs, classes=classes, chunk_rows=chunk_rows):
        frame = chunk.frame
        seen.update(frame)
        for column, bound in bounds.items():
            out_of_range[column] += count_out_of_range(
                served.columns[column].numbers(frame[column], kinds[column]), bound)
        ok = (frame[names["status"]] == 200).to_numpy()
        answered = frame[ok]
        served.update(answered)
        outputs.update(answered[[names["prediction"], names["score"]]])
        sample.update(answered[inputs])
        if estimator is not None and chunk.probabilities is not None:
            estimator.update(chunk.probabilities[ok], answered[names["prediction"]].to_numpy())
        if loss is not None and len(answered):
            loss.update(answered[inputs].reset_index(drop=True),
                        answered[names["prediction"]].to_numpy())
        if label_map:
            rows, got = _labels_of(frame, label_map, names)
            if len(rows):
                y.extend(got)
                y_pred.extend(frame[names["prediction"]].iloc[rows].tolist())
                if chunk.probabilities is not None:
                    y_proba.append(chunk.probabilities[rows])

    # ------------------------------------------------------------- drift
    results: dict[str, dict[str, Any]] = {}
    window_sample = sample.frame
    if ref is not None:
        for column, kind in kinds.items():
            cur = served.columns[column]
            base = {"role": "input", "kind": kind}
            if kind == "datetime":
                results[column] = {**base, "test": None, "p_value": None,
                                   "skipped": "datetime columns are not tested for drift "
                                              "(time always moves on)"}
            elif cur.count < spec.min_rows:
                results[column] = {**base, "test": "mmd" if kind == "text" else
                                   ("ks" if cur.numeric else "chi2"), "p_value": None,
                                   "skipped": f"{cur.count} values in the window, fewer than "
                                              f"min_rows ({spec.min_rows})"}
            elif kind == "text":
                results[column] = {**base, **text_drift(
                    ref.sample[column].tolist() if column in ref.sample.columns else [],
                    window_sample[column].tolist(), seed=seed)}
            else:
                results[column] = {**base, **column_drift(ref.inputs.columns[column], cur)}
        pairs = [(names["prediction"], "label"), (names["score"], "score")]
        for column, ref_name in pairs:
            ref_col = ref.prediction.columns.get(ref_name)
            cur = outputs.columns[column]
            if ref_col is None or not cur.count:
                continue
            base = {"role": "output", "kind": ref_col.kind}
            if cur.count < spec.min_rows:
                results[column] = {**base, "test": "ks" if ref_col.numeric else "chi2",
                                   "p_value": None,
                                   "skipped": f"{cur.count} values in the window, fewer than "
                                              f"min_rows ({spec.min_rows})"}
            elif ref_col.numeric == cur.numeric:
                results[column] = {**base, **column_drift(ref_col, cur)}
        multivariate: dict[str, dict[str, Any]] = {}
        if spec.multivariate:
            n_cur = 0 if window_sample is None else len(window_sample)
            if n_cur < spec.min_rows or not len(ref.sample):
                note = {"skipped": f"{n_cur} window rows, fewer than min_rows "
                                   f"({spec.min_rows})", "drifted": False}
                multivariate = {"domain_classifier": dict(note),
                                "pca_reconstruction": dict(note)}
            else:
                # Bonferroni over the two tests at the policy's FDR level.
                alpha = spec.fdr / 2
                multivariate = {
                    "domain_classifier": domain_classifier_test(
                        ref.sample, window_sample, seed, kinds=kinds, alpha=alpha),
                    "pca_reconstruction": pca_reconstruction_test(
                        ref.sample, window_sample, seed, kinds=kinds, alpha=alpha)}
        report.drift, report.dataset_drift = assess(results, spec, inputs=inputs,
                                                    multivariate=multivariate)
    else:
        report.dataset_drift = {"share": None, "drifted": False,
                                "skipped": "no reference profile", "multivariate": {}}

    # ----------------------------------------------------------- quality
    requests, errors = _requests(ws, window)
    rate, trailing = _volume(ws, window)
    if ref is not None:
        report.quality = quality_checks(ref.inputs, seen, spec=policy.quality, alpha=spec.fdr,
                                        out_of_range=out_of_range, requests=requests,
                                        errors=errors, rows_per_hour=rate,
                                        trailing_rows_per_hour=trailing)
    else:
        empty = FrameSketch({})
        report.quality = {k: v for k, v in quality_checks(
            empty, empty, spec=policy.quality, requests=requests, errors=errors,
            rows_per_hour=rate, trailing_rows_per_hour=trailing).items()
            if k in ("error_rate", "volume")}

    # ------------------------------------------------------- performance
    proba = np.vstack(y_proba) if y_proba and len(y_proba) and \
        sum(len(p) for p in y_proba) == len(y) else None
    realized = realized_performance(y, y_pred, proba if has_proba else None, task=task,
                                    classes=classes, seed=seed) if y else {}
    estimated = estimator.result() if estimator is not None else (
        loss.result() if loss is not None else {})
    reference_figures = reference_performance(ws, mv)
    main = headline(task, has_proba)
    report.performance = {
        "realized": realized, "estimated": estimated, "reference": reference_figures,
        "estimator": _estimator_note(estimator, loss, fitted),
        "headline": main, "labelled": len(y),
        "degraded": {"realized": degradation(realized, reference_figures),
                     "estimated": degradation(estimated, reference_figures)}}

    # ----------------------------------------------------------- verdict
    report.verdict, report.reasons = _verdict(report, spec.min_rows)
    return report


def _estimator_note(cbpe: Any, loss: Any, fitted: dict[str, Any]) -> dict[str, Any]:
    """How the estimate was made: the method, the recalibrated classes and
    the labelled reference rows fitted on (or why none were)."""
    if cbpe is None and loss is None:
        return {}
    calibration = fitted.get("calibration")
    note = {"method": "cbpe" if cbpe is not None else "dle",
            "calibrated": calibration.calibrated if calibration is not None else [],
            "reference_rows": fitted.get("rows", 0),
            "reference_source": fitted.get("source"), "reference_dataset": fitted.get("dataset")}
    if fitted.get("skipped"):
        note["skipped"] = fitted["skipped"]
    return note


def _verdict(report: MonitorReport, min_rows: int) -> tuple[str, list[str]]:
    alerts, warnings = [], []
    dataset = report.dataset_drift or {}
    if dataset.get("drifted"):
        flagged = [k for k, v in (dataset.get("multivariate") or {}).items()
                   if v.get("drifted")]
        share = dataset.get("share") or 0.0
        alerts.append(f"dataset drift: {share:.0%} of input columns drifted"
                      + (f"; {', '.join(flagged)} flagged" if flagged else ""))
    failed = [k for k, v in report.quality.items() if v.get("failed")]
    if failed:
        alerts.append(f"data quality failed: {', '.join(failed)}")
    performance = report.performance
    main = performance.get("headline")
    realized = (performance.get("degraded") or {}).get("realized") or {}
    estimated = (performance.get("degraded") or {}).get("estimated") or {}
    if performance.get("labelled", 0) >= min_rows:
        if realized.get(main):
            alerts.append(f"realized {main} below the reference")
        others = [m for m, bad in realized.items() if bad and m != main]
        if others:
            warnings.append(f"realized {', '.join(others)} below the reference")
    drifted = [c for c, v in report.drift.items() if v.get("drifted")]
    if drifted and not dataset.get("drifted"):
        warnings.append(f"drift in {', '.join(drifted[:10])}"
                        + (f" and {len(drifted) - 10} more" if len(drifted) > 10 else ""))
    n_estimated = ((performance.get("estimated") or {}).get(main) or {}).get("n", 0)
    if estimated.get(main) and n_estimated >= min_rows:
        method = ((performance.get("estimator") or {}).get("method") or "cbpe").upper()
        warnings.append(f"estimated {main} ({method}) below the reference")
    if alerts:
        return "alert", alerts + warnings
    if warnings:
        return "warning", warnings
    return "ok", []
