"""The self-contained HTML monitor page of one model.

One file, like the evaluation report: inline CSS, plots as inline base64
PNGs drawn with matplotlib's Agg backend, no scripts, no external URLs. The
template is rendered by Jinja2 with autoescaping on, so column names,
category values and rule names from the data cannot inject markup;
matplotlib's mathtext is off, so a ``$`` in a name is drawn as itself.

It shows the chosen window (drift per column, the reference-vs-window
distribution of each drifted column, data quality, performance), then the
model's history: dataset drift share and realized vs estimated performance
over its stored windows, and its alerts.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shipyard.evaluate import REPORT_HEAD

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.monitor._store import AlertRecord, ReportRecord

PALETTE = ("#3b6ea8", "#e07b39", "#5a9e6f", "#b8514d", "#7d68a8", "#8c7b6b")
#: Most drifted columns drawn, most categories per column, bins per numeric column.
MAX_COLUMNS, MAX_CATEGORIES, BINS = 12, 15, 20

TEMPLATE = REPORT_HEAD + r"""
<h1>{{ title }}</h1>
<p class="sub">report {{ rec.id }} · {% if rec.version %}version {{ rec.version }} · {% endif %}{% if rec.role %}role {{ rec.role }} · {% endif %}window {{ when(rec.window_start) }} – {{ when(rec.window_end) }} · {{ rec.rows }} rows · stored {{ when(rec.created_at) }}</p>

<section id="summary"><h2>Summary</h2><div class="cards">
<div class="card"><div class="k">verdict</div><div class="v {{ tone(rec.verdict) }}">{{ rec.verdict }}</div></div>
<div class="card"><div class="k">drifted columns</div><div class="v {{ 'bad' if dd.drifted else 'ok' }}">{{ drifted|length }} / {{ drift|length }}</div>
<div class="ci">share {{ dd.share|num }}{% if dd.drifted %} · dataset drift{% endif %}</div></div>
<div class="card"><div class="k">quality checks failed</div><div class="v {{ 'bad' if failed_quality else 'ok' }}">{{ failed_quality|length }} / {{ quality|length }}</div></div>
<div class="card"><div class="k">alerts firing</div><div class="v {{ 'bad' if firing else 'ok' }}">{{ firing|length }}</div></div>
</div>
{% if reasons %}<ul>{% for why in reasons %}<li>{{ why }}</li>{% endfor %}</ul>{% endif %}
</section>

<section id="drift"><h2>Drift</h2>
{% if drift %}<table><tr><th class="l">column</th><th class="l">test</th><th>statistic</th><th>p-value</th><th>adjusted p</th><th>effect</th><th class="l">drifted</th></tr>
{% for name, d in drift %}<tr class="{{ 'flag' if d.drifted }}"><td class="l"><code>{{ name }}</code></td><td class="l">{{ d.test }}</td>
<td>{{ d.statistic|num }}</td><td>{{ d.p_value|num }}</td><td>{{ d.p_adjusted|num }}</td>
<td>{{ d.effect|num }}{% if d.effect_name %} <span class="note">{{ d.effect_name }}</span>{% endif %}</td>
<td class="l {{ 'bad' if d.drifted else 'ok' }}">{{ 'yes' if d.drifted else 'no' }}</td></tr>{% endfor %}
</table>{% else %}<p class="note">No drift figures in this window.</p>{% endif %}
{% if multivariate %}<h3>Multivariate</h3><table>
{% for k, v in multivariate %}<tr><td class="l">{{ k }}</td><td class="l">{{ v|num }}</td></tr>{% endfor %}</table>{% endif %}
{% if dists %}<h3>Reference vs window, drifted columns</h3>
{% for name, png in dists %}<p><img alt="reference and window distributions of {{ name }}" src="data:image/png;base64,{{ png }}"></p>{% endfor %}
{% endif %}{% if dist_note %}<p class="note">{{ dist_note }}</p>{% endif %}
</section>

<section id="quality"><h2>Data quality</h2>
{% if quality %}<table><tr><th class="l">check</th><th>value</th><th>threshold</th><th class="l">failed</th><th class="l">detail</th></tr>
{% for name, q in quality %}<tr class="{{ 'flag' if q.failed }}"><td class="l">{{ name }}</td><td>{{ q.value|num }}</td><td>{{ q.threshold|num }}</td>
<td class="l {{ 'bad' if q.failed else 'ok' }}">{{ 'yes' if q.failed else 'no' }}</td><td class="l">{{ q.detail|brief }}</td></tr>{% endfor %}
</table>{% else %}<p class="note">No quality figures in this window.</p>{% endif %}
</section>

<section id="performance"><h2>Performance</h2>
{% if metrics %}<table><tr><th class="l">metric</th><th>realized</th><th>interval</th><th>labelled rows</th><th>estimated</th><th>reference</th></tr>
{% for name in metrics %}{% set re = realized.get(name) or {} %}{% set es = estimated.get(name) or {} %}<tr><td class="l">{{ name }}</td>
<td>{{ re.value|num }}</td><td>{{ ci(re) }}</td><td>{{ re.n|num }}</td><td>{{ es.value|num }}</td><td>{{ reference_value(name)|num }}</td></tr>{% endfor %}
</table>{% else %}<p class="note">No performance figures in this window (no labels yet, no estimate).</p>{% endif %}
</section>

<section id="history"><h2>Over time ({{ history|length }} windows)</h2>
{% if plots.drift %}<img alt="dataset drift share over time" src="data:image/png;base64,{{ plots.drift }}">{% endif %}
{% if plots.performance %}<img alt="realized and estimated performance over time" src="data:image/png;base64,{{ plots.performance }}">{% endif %}
{% if not plots.drift and not plots.performance %}<p class="note">One window so far: the history plots need two.</p>{% endif %}
</section>

<section id="alerts"><h2>Alerts</h2>
{% if alerts %}<table><tr><th>id</th><th class="l">rule</th><th class="l">state</th><th class="l">fired</th><th class="l">resolved</th><th class="l">why</th><th class="l">webhooks</th></tr>
{% for a in alerts %}<tr class="{{ 'flag' if a.state == 'firing' }}"><td>{{ a.id }}</td><td class="l">{{ a.rule }}</td><td class="l">{{ a.state }}</td>
<td class="l">{{ when(a.fired_at) }}</td><td class="l">{{ when(a.resolved_at) }}</td><td class="l">{{ a.details.reason }}</td>
<td class="l">{% for d in a.deliveries %}{{ d.state }} {{ d.webhook }}: {{ d.status }}{{ ', ' if not loop.last }}{% endfor %}</td></tr>{% endfor %}
</table>{% else %}<p class="note">No alerts.</p>{% endif %}
</section>
<p class="note">Generated by Shipyard on {{ when(now) }}.</p>
</main></body></html>
"""


# --------------------------------------------------------------- helpers
def _num(value: Any) -> str:
    if value is None or isinstance(value, (bool, str)):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _brief(value: Any, limit: int = 160) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}: {_num(v) if not isinstance(v, (Mapping, list)) else '…'}"
                         for k, v in list(value.items())[:8])
    elif isinstance(value, (list, tuple)):
        text = ", ".join(map(str, value[:8]))
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ci(m: Mapping[str, Any]) -> str:
    low, high = m.get("ci_low"), m.get("ci_high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return "–"
    return f"[{low:.4g}, {high:.4g}]"


def _tone(verdict: str) -> str:
    return {"ok": "ok", "warning": "warning", "alert": "bad"}.get(verdict, "")


def _label(text: Any, limit: int = 30) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _reference_value(report: Mapping[str, Any], name: str) -> Any:
    ref = ((report.get("performance") or {}).get("reference") or {}).get(name)
    return ref.get("value") if isinstance(ref, Mapping) else ref


# ---------------------------------------------------------- distributions
def distribution(reference: Any, current: Any, *, bins: int = BINS) -> dict[str, Any] | None:
    """The distributions of one column in the reference and a window, as
    JSON for a plot, from two :class:`shipyard.data.ColumnSketch` (None
    when either is empty).

    Numeric: the shares of present values in ``bins`` equal-width bins
    over both ranges (from each sketch's CDF). Categorical: the shares of
    the ``MAX_CATEGORIES`` most frequent categories of either.

    >>> import pandas as pd
    >>> from shipyard.data import FrameSketch
    >>> ref = FrameSketch.from_frame(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), {"x": "numeric"})
    >>> cur = FrameSketch.from_frame(pd.DataFrame({"x": [3.0, 4.0, 4.0, 4.0]}), {"x": "numeric"})
    >>> d = distribution(ref.columns["x"], cur.columns["x"], bins=3)
    >>> d["edges"], d["reference"], d["current"]
    ([1.0, 2.0, 3.0, 4.0], [0.5, 0.25, 0.25], [0.0, 0.25, 0.75])
    """
    kind = getattr(reference, "kind", None)
    if getattr(reference, "numeric", kind in ("numeric", "datetime")):
        if not reference.count or not current.count:
            return None
        lows = [_finite(s.min) for s in (reference, current) if _finite(s.min) is not None]
        highs = [_finite(s.max) for s in (reference, current) if _finite(s.max) is not None]
        if not lows or not highs:
            return None
        low, high = min(lows), max(highs)
        if high <= low:
            high = low + 1.0
        edges = [low + (high - low) * i / bins for i in range(bins + 1)]

        def shares(sketch: Any) -> list[float]:
            cdf = [float(c) for c in sketch.cdf(edges[1:-1])][: bins - 1]
            points = [0.0, *cdf, 1.0]
            return [max(0.0, points[i + 1] - points[i]) for i in range(bins)]

        return {"kind": "numeric", "edges": edges, "reference": shares(reference),
                "current": shares(current)}
    ref_counts = dict(getattr(reference, "counts", None) or {})
    cur_counts = dict(getattr(current, "counts", None) or {})
    ref_total, cur_total = sum(ref_counts.values()) or 1, sum(cur_counts.values()) or 1
    pooled = {k: ref_counts.get(k, 0) / ref_total + cur_counts.get(k, 0) / cur_total
              for k in {*ref_counts, *cur_counts}}
    top = sorted(pooled, key=lambda k: (-pooled[k], str(k)))[:MAX_CATEGORIES]
    if not top:
        return None
    return {"kind": "categorical", "categories": [str(k) for k in top],
            "reference": [ref_counts.get(k, 0) / ref_total for k in top],
            "current": [cur_counts.get(k, 0) / cur_total for k in top]}


def window_distributions(ws: Workspace, record: ReportRecord
                         ) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The reference and window distributions of ``record``'s drifted
    columns (inputs, then the prediction and score; at most
    ``MAX_COLUMNS``), re-reading its window from the prediction log; with a
    note when some could not be drawn."""
    drift = record.report.get("drift") or {}
    drifted = [c for c, d in drift.items() if isinstance(d, Mapping) and d.get("drifted")]
    if not drifted:
        return {}, None
    if record.version is None or record.window_start is None or record.window_end is None:
        return {}, "distributions need the window's model version, start and end"
    try:
        from shipyard.data import FrameSketch
        from shipyard.monitor import Window, output_names, reference, window_data

        ref = reference(ws, ws.models.get(f"{record.model}@{record.version}"))
        outputs = output_names(list(ref.inputs.columns))
        baseline = {}  # drift figure -> the reference's sketch of it
        for column in drifted[:MAX_COLUMNS]:
            if column in ref.inputs.columns:
                baseline[column] = ref.inputs.columns[column]
            for meta, name in (("prediction", "label"), ("score", "score")):
                if column == outputs[meta] and name in ref.prediction.columns:
                    baseline[column] = ref.prediction.columns[name]
        if not baseline:
            return {}, "no reference for the drifted figures: no distributions drawn"
        window = Window(model=record.model, version=record.version, role=record.role,
                        start=record.window_start, end=record.window_end, n=record.rows)
        kinds = {c: s.kind for c, s in baseline.items()}
        current = FrameSketch(kinds)
        status = outputs["status"]
        for chunk in window_data(ws, window):
            answered = chunk[chunk[status] == 200] if status in chunk.columns else chunk
            current.update(answered[[c for c in kinds if c in answered.columns]])
    except Exception as exc:  # noqa: BLE001 -- the page is still worth having without them
        return {}, f"distributions not drawn: {type(exc).__name__}: {str(exc)[:200]}"
    out = {}
    for column, sketch in baseline.items():
        dist = distribution(sketch, current.columns[column])
        if dist is not None:
            out[column] = dist
    skipped = len(drifted) - len(out)
    return out, (f"{skipped} drifted column(s) not drawn (no values in the window or no "
                 "reference)" if skipped else None)


# ------------------------------------------------------------------ plots
def _plots(history: Sequence[ReportRecord],
           distributions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plots: dict[str, Any] = {"drift": None, "performance": None, "columns": []}
    with plt.rc_context({"text.parse_math": False, "text.usetex": False, "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False}):
        for name, dist in list(distributions.items())[:MAX_COLUMNS]:
            plots["columns"].append((name, _distribution_png(plt, name, dist)))
        past = sorted(history, key=lambda r: r.id)
        times = [_dt.datetime.fromtimestamp(r.window_end or r.created_at, _dt.UTC)
                 for r in past]
        if len(past) >= 2:
            shares = [_finite((r.report.get("dataset_drift") or {}).get("share")) for r in past]
            if any(s is not None for s in shares):
                fig, ax = plt.subplots(figsize=(9, 2.8))
                ax.plot(times, [s if s is not None else float("nan") for s in shares],
                        marker="o", color=PALETTE[0], label="share of drifted columns")
                flagged = [(t, s) for t, s, r in zip(times, shares, past)
                           if (r.report.get("dataset_drift") or {}).get("drifted")]
                if flagged:
                    ax.scatter([t for t, _ in flagged], [s for _, s in flagged], s=60,
                               color=PALETTE[3], zorder=3, label="dataset drift")
                ax.set(title="Dataset drift over time", ylabel="share", ylim=(0, 1.02))
                ax.legend(loc="upper left", frameon=False)
                fig.autofmt_xdate()
                plots["drift"] = _png(fig)
            plots["performance"] = _performance_png(plt, past, times)
    return plots


def _distribution_png(plt: Any, name: str, dist: Mapping[str, Any]) -> str:
    if dist["kind"] == "numeric":
        edges = dist["edges"]
        fig, ax = plt.subplots(figsize=(7.5, 2.6))
        for key, color, label in (("reference", PALETTE[0], "reference"),
                                  ("current", PALETTE[1], "window")):
            ax.stairs(dist[key], edges, color=color, lw=1.8, label=label,
                      fill=key == "reference", alpha=0.35 if key == "reference" else 1.0)
        ax.set(title=f"{_label(name)}", ylabel="share of rows")
    else:
        cats = [_label(c, 24) for c in dist["categories"]][::-1]
        ys = range(len(cats))
        fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(cats) + 1.0))
        ax.barh([y + 0.2 for y in ys], dist["reference"][::-1], 0.4, color=PALETTE[0],
                label="reference")
        ax.barh([y - 0.2 for y in ys], dist["current"][::-1], 0.4, color=PALETTE[1],
                label="window")
        ax.set_yticks(list(ys))
        ax.set_yticklabels(cats)
        ax.set(title=f"{_label(name)}", xlabel="share of rows")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return _png(fig)


def _performance_png(plt: Any, past: Sequence[ReportRecord], times: list) -> str | None:
    series: dict[str, dict[str, list]] = {}
    for i, r in enumerate(past):
        perf = r.report.get("performance") or {}
        for kind in ("realized", "estimated"):
            for metric, m in (perf.get(kind) or {}).items():
                if isinstance(m, Mapping) and _finite(m.get("value")) is not None:
                    s = series.setdefault(metric, {"realized": [], "estimated": []})
                    s[kind].append((times[i], m["value"], _finite(m.get("ci_low")),
                                    _finite(m.get("ci_high"))))
    series = {k: v for k, v in series.items() if len(v["realized"]) + len(v["estimated"]) >= 2}
    if not series:
        return None
    names = sorted(series, key=lambda k: -len(series[k]["realized"]))[:4]
    fig, axes = plt.subplots(1, len(names), figsize=(min(11, 3.6 * len(names)), 2.8),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        for kind, color, marker in (("realized", PALETTE[2], "o"),
                                    ("estimated", PALETTE[4], "s")):
            points = series[name][kind]
            if not points:
                continue
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker,
                    color=color, label=kind, ls="-" if kind == "realized" else "--")
            band = [p for p in points if p[2] is not None and p[3] is not None]
            if band:
                ax.fill_between([p[0] for p in band], [p[2] for p in band],
                                [p[3] for p in band], color=color, alpha=0.15, lw=0)
        reference = _finite(_reference_value(past[-1].report, name))
        if reference is not None:
            ax.axhline(reference, ls=":", color="#9aa5b1", lw=1.2, label="reference")
        ax.set(title=_label(name))
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(loc="best", frameon=False, fontsize=7)
    fig.tight_layout()
    return _png(fig)


# ----------------------------------------------------------------- render
def render_html(record: ReportRecord, *, history: Sequence[ReportRecord] = (),
                alerts: Sequence[AlertRecord] = (),
                distributions: Mapping[str, Mapping[str, Any]] | None = None,
                distributions_note: str | None = None, title: str | None = None) -> str:
    """Render the monitor page of ``record`` (a stored report) with its
    model's ``history`` (stored reports, any order; ``record`` is added if
    missing), its ``alerts`` and the ``distributions`` of its drifted
    columns (:func:`window_distributions`)."""
    import time

    from jinja2 import ChainableUndefined, Environment

    report = record.report
    history = list(history)
    if all(r.id != record.id for r in history):
        history.append(record)
    history = [r for r in history if r.id <= record.id]
    drift = sorted(((str(k), v) for k, v in (report.get("drift") or {}).items()
                    if isinstance(v, Mapping)),
                   key=lambda kv: (not kv[1].get("drifted"), kv[0]))
    quality = [(str(k), v) for k, v in (report.get("quality") or {}).items()
               if isinstance(v, Mapping)]
    perf = report.get("performance") or {}
    realized, estimated = perf.get("realized") or {}, perf.get("estimated") or {}
    dd = report.get("dataset_drift") or {}
    multivariate = []
    for key, value in (dd.get("multivariate") or {}).items():
        if isinstance(value, Mapping):
            multivariate += [(f"{key}.{k}", v) for k, v in value.items()
                             if not isinstance(v, (Mapping, list))]
        elif not isinstance(value, list):
            multivariate.append((key, value))
    plots = _plots(history, distributions or {})
    env = Environment(autoescape=True, undefined=ChainableUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(num=_num, brief=_brief)
    title = title or f"Monitoring of {record.model}"
    return env.from_string(TEMPLATE).render(
        title=title, rec=record, drift=drift, drifted=[k for k, v in drift if v.get("drifted")],
        dd=dd, multivariate=multivariate, quality=quality,
        failed_quality=[k for k, v in quality if v.get("failed")],
        metrics=list(dict.fromkeys([*realized, *estimated])), realized=realized,
        estimated=estimated, reference_value=lambda name: _reference_value(report, name),
        history=history, plots=plots, dists=plots["columns"], dist_note=distributions_note,
        alerts=list(alerts), firing=[a for a in alerts if a.state == "firing"],
        reasons=[str(r) for r in report.get("reasons") or []],
        when=_when, ci=_ci, tone=_tone, now=time.time())
