"""The self-contained HTML evaluation report.

One file: inline CSS, plots as inline base64 PNGs drawn with matplotlib's Agg
backend, no scripts and no external URLs. The template is rendered by Jinja2
with autoescaping on, so column names, group values and descriptions from
the data cannot inject markup; matplotlib's mathtext is off, so a ``$`` in a
name is drawn as itself.
"""

from __future__ import annotations

import base64
import io
from typing import Any

PALETTE = ("#3b6ea8", "#e07b39", "#5a9e6f", "#b8514d", "#7d68a8", "#8c7b6b")

#: The page head every HTML report shares (evaluation, monitoring): styles, title.
REPORT_HEAD = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2933;
 margin:0;background:#f5f7fa;line-height:1.45}
main{max-width:1080px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.55rem;margin:.2rem 0 .2rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;
 border-bottom:2px solid #d9e2ec;padding-bottom:.25rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
.sub{color:#52606d;margin:0 0 1rem}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:10px 14px;min-width:150px}
.card .k{font-size:.75rem;text-transform:uppercase;color:#52606d;letter-spacing:.04em}
.card .v{font-size:1.35rem;font-weight:600}.card .ci{font-size:.8rem;color:#52606d}
table{border-collapse:collapse;background:#fff;margin:.3rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d9e2ec;padding:4px 10px;text-align:right}
th{background:#eef2f7;font-weight:600}td.l,th.l{text-align:left}
tr.flag td{background:#fde8e8}.bad{color:#b42318;font-weight:600}.ok{color:#2f7d4a}
.warning{color:#b7791f;font-weight:600}
img{max-width:100%;background:#fff;border:1px solid #d9e2ec;border-radius:6px}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
.note{color:#52606d;font-size:.85rem}
</style></head><body><main>"""

TEMPLATE = REPORT_HEAD + r"""
<h1>{{ title }}</h1>
<p class="sub">{{ r.task }} task · target <code>{{ r.target }}</code> · {{ r.n_rows }} rows
{% if r.dataset.ref %} · dataset <code>{{ r.dataset.ref }}</code>{% endif %}</p>

<section id="summary"><h2>Summary</h2><div class="cards">
<div class="card"><div class="k">{{ r.headline.metric }}</div>
<div class="v">{{ r.headline.value|num }}</div>
<div class="ci">{{ ci(r.headline) }}</div></div>
{% if r.slices %}<div class="card"><div class="k">flagged slices</div>
<div class="v {{ 'bad' if r.slices.flagged else 'ok' }}">{{ r.slices.flagged|length }}</div></div>{% endif %}
{% for k, v in gaps.items() %}<div class="card"><div class="k">max {{ k|replace('_', ' ') }}</div>
<div class="v {{ 'bad' if v > 0.1 else 'ok' }}">{{ v|num }}</div></div>{% endfor %}
{% if r.operational %}<div class="card"><div class="k">p50 / p99 latency</div>
<div class="v">{{ r.operational.single_row.p50_ms|num }} ms</div>
<div class="ci">p99 {{ r.operational.single_row.p99_ms|num }} ms</div></div>{% endif %}
</div>
{% if r.skipped %}<p class="note">Skipped: {% for k, v in r.skipped.items() %}{{ k }} ({{ v }}){{ ', ' if not loop.last }}{% endfor %}</p>{% endif %}
</section>

<section id="metrics"><h2>Metrics</h2>
<table><tr><th class="l">metric</th><th>value</th><th>{{ (r.bootstrap.confidence * 100)|round|int }}% interval</th><th class="l">better</th></tr>
{% for name, m in r.metrics.items() %}<tr><td class="l">{{ name }}</td><td>{{ m.value|num }}</td>
<td>{{ ci(m) }}</td><td class="l">{{ 'lower' if m.direction == 'minimize' else 'higher' }}</td></tr>{% endfor %}
</table>
<p class="note">Intervals: {{ r.bootstrap.method }} bootstrap, {{ r.bootstrap.n }} resamples, seed {{ r.bootstrap.seed }}.</p>
{% if r.confusion_matrix %}<h3>Confusion matrix</h3>
<table><tr><th class="l">true \ predicted</th>{% for l in r.confusion_matrix.labels %}<th>{{ l }}</th>{% endfor %}</tr>
{% for row in r.confusion_matrix.matrix %}<tr><th class="l">{{ r.confusion_matrix.labels[loop.index0] }}</th>
{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if plots.curves %}<h3>ROC, precision-recall and calibration</h3>
<img alt="ROC, precision-recall and calibration curves" src="data:image/png;base64,{{ plots.curves }}">{% endif %}
</section>

{% if r.slices %}<section id="slices"><h2>Slices</h2>
<p class="note">{{ r.slices.metric }} per slice; overall {{ r.slices.overall|num }}. Flagged: at least
{{ r.slices.min_rows }} rows, worse than overall by more than {{ r.slices.threshold|num }}{{ ' (relative)' if r.slices.relative }},
and the bootstrap interval excludes the overall value.</p>
{% for col, s in r.slices.columns.items() %}<h3><code>{{ col }}</code> <span class="note">({{ s.kind }})</span></h3>
<table><tr><th class="l">slice</th><th>rows</th><th>{{ r.slices.metric }}</th><th>interval</th><th>gap</th><th class="l">flag</th></tr>
{% for g in s.groups %}<tr class="{{ 'flag' if g.flagged }}"><td class="l">{{ g.group }}</td><td>{{ g.rows }}</td>
<td>{{ g.value|num }}</td><td>{{ ci(g) }}</td><td>{{ g.gap|signed }}</td><td class="l">{{ 'below overall' if g.flagged }}</td></tr>{% endfor %}
</table>{% endfor %}</section>{% endif %}

{% if r.fairness %}<section id="fairness"><h2>Fairness</h2>
{% if r.fairness.positive_label is not none %}<p class="note">Positive label: <code>{{ r.fairness.positive_label }}</code>.</p>{% endif %}
{% for col, f in r.fairness.features.items() %}<h3><code>{{ col }}</code></h3>
<table><tr><th class="l">group</th>{% for k in f.groups[0].keys() if k != 'group' %}<th>{{ k|replace('_', ' ') }}</th>{% endfor %}</tr>
{% for g in f.groups %}<tr><td class="l">{{ g.group }}</td>{% for k, v in g.items() if k != 'group' %}<td>{{ v|num }}</td>{% endfor %}</tr>{% endfor %}
</table>
<table><tr><th class="l">gap</th><th>value</th>{% if f.ci %}<th>interval</th>{% endif %}</tr>
{% for k, v in f.items() if k not in ('groups', 'ci') %}<tr><td class="l">{{ k|replace('_', ' ') }}</td>
<td class="{{ 'bad' if k.endswith('difference') and v is not none and v > 0.1 }}">{{ v|num }}</td>
{% if f.ci %}<td>{% if f.ci[k] and f.ci[k].ci_low is not none %}[{{ f.ci[k].ci_low|num }}, {{ f.ci[k].ci_high|num }}]{% else %}–{% endif %}</td>{% endif %}</tr>{% endfor %}</table>
{% if plots.fairness[col] %}<img alt="per-group metrics" src="data:image/png;base64,{{ plots.fairness[col] }}">{% endif %}
{% endfor %}</section>{% endif %}

{% if r.explanations %}<section id="explanations"><h2>Explanations</h2>
<p class="note">Mean |SHAP| per input column over {{ r.explanations.rows }} rows
({{ r.explanations.method }}; explains the {{ r.explanations.explained }};
{{ r.explanations.background_rows }} background rows).</p>
{% if plots.importance %}<img alt="global importance" src="data:image/png;base64,{{ plots.importance }}">{% endif %}
<table><tr><th class="l">feature</th><th>mean |SHAP|</th></tr>
{% for i in r.explanations.importance %}<tr><td class="l">{{ i.feature }}</td><td>{{ i.importance|num }}</td></tr>{% endfor %}
</table></section>{% endif %}

{% if r.robustness %}<section id="robustness"><h2>Robustness</h2>
{% set b = r.robustness.baseline %}<p>Baseline {{ b.metric }}: <b>{{ b.value|num }}</b></p>
{% if r.robustness.perturbations %}<table><tr><th class="l">perturbation</th><th>level</th><th>{{ b.metric }}</th><th>drop</th></tr>
{% for p in r.robustness.perturbations %}<tr><td class="l">{{ p.name }}</td><td>{{ p.level|num }}</td><td>{{ p.value|num }}</td>
<td class="{{ 'bad' if p.drop is not none and p.drop > 0.05 }}">{{ p.drop|num }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.robustness.attack %}{% set a = r.robustness.attack %}<h3>Evasion attack</h3>
<table><tr><th class="l">method</th><th>rows</th><th>success rate</th><th>accuracy under attack</th><th>median L2</th><th>median L∞</th></tr>
<tr><td class="l">{{ a.method }}</td><td>{{ a.rows }}</td><td>{{ a.success_rate|num }}</td><td>{{ a.accuracy_under_attack|num }}</td>
<td>{{ a.median_l2|num }}</td><td>{{ a.median_linf|num }}</td></tr></table>{% endif %}
</section>{% endif %}

{% if r.operational %}{% set o = r.operational %}<section id="operational"><h2>Operational</h2>
<table><tr><th class="l">figure</th><th>value</th></tr>
<tr><td class="l">artifact size</td><td>{{ o.artifact_bytes|size }}</td></tr>
<tr><td class="l">load time</td><td>{{ o.load_seconds|seconds }}</td></tr>
<tr><td class="l">single row p50 / p99 ({{ o.single_row.calls }} calls)</td><td>{{ o.single_row.p50_ms|num }} / {{ o.single_row.p99_ms|num }} ms</td></tr>
<tr><td class="l">batch of {{ o.batch.rows }} p50 / p99 ({{ o.batch.repeats }} repeats)</td><td>{{ o.batch.p50_ms|num }} / {{ o.batch.p99_ms|num }} ms</td></tr>
<tr><td class="l">batch throughput</td><td>{{ o.batch.rows_per_second|rate }} rows/s</td></tr>
</table></section>{% endif %}

<section id="lineage"><h2>Lineage</h2><table>
{% for k, v in lineage %}<tr><td class="l">{{ k }}</td><td class="l"><code>{{ v }}</code></td></tr>{% endfor %}
</table></section>
</main></body></html>
"""


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _signed(value: Any) -> str:
    return "–" if value is None else f"{value:+.4g}"


def _size(n: Any) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _seconds(s: Any) -> str:
    if s is None:
        return "–"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _rate(x: Any) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _ci(m: dict[str, Any]) -> str:
    low, high = m.get("ci_low"), m.get("ci_high")
    if low is None or high is None:
        return "–"
    return f"[{low:.4g}, {high:.4g}]"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _label(text: Any, limit: int = 40) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plots(r: dict[str, Any]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plots: dict[str, Any] = {"curves": None, "importance": None, "fairness": {}}
    with plt.rc_context({"text.parse_math": False, "text.usetex": False, "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False}):
        curves = r.get("curves") or {}
        if curves.get("roc") and curves.get("pr") and curves.get("calibration"):
            fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
            roc, pr, cal = curves["roc"], curves["pr"], curves["calibration"]
            axes[0].plot(roc["fpr"], roc["tpr"], color=PALETTE[0])
            axes[0].plot([0, 1], [0, 1], ls="--", color="#9aa5b1", lw=1)
            auc = (r["metrics"].get("roc_auc") or {}).get("value")
            axes[0].set(title="ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""),
                        xlabel="false positive rate", ylabel="true positive rate")
            axes[1].plot(pr["recall"], pr["precision"], color=PALETTE[1])
            if pr.get("prevalence") is not None:
                axes[1].axhline(pr["prevalence"], ls="--", color="#9aa5b1", lw=1)
            axes[1].set(title="Precision-recall", xlabel="recall", ylabel="precision",
                        ylim=(0, 1.02))
            axes[2].plot([0, 1], [0, 1], ls="--", color="#9aa5b1", lw=1)
            points = [(x, y) for x, y in zip(cal["mean_predicted"], cal["fraction_positive"])
                      if x is not None and y is not None]
            axes[2].plot([x for x, _ in points], [y for _, y in points], marker="o",
                         color=PALETTE[2])
            axes[2].set(title="Calibration (10 bins)", xlabel="mean predicted probability",
                        ylabel="fraction positive", xlim=(0, 1), ylim=(0, 1))
            fig.tight_layout()
            plots["curves"] = _png(fig)
        exp = r.get("explanations")
        if exp and exp.get("importance"):
            items = exp["importance"][:20][::-1]
            fig, ax = plt.subplots(figsize=(7, 0.3 * len(items) + 1.0))
            ax.barh([_label(i["feature"]) for i in items],
                    [i["importance"] or 0.0 for i in items], color=PALETTE[0])
            ax.set(xlabel="mean |SHAP|", title="Global importance")
            fig.tight_layout()
            plots["importance"] = _png(fig)
        for col, f in ((r.get("fairness") or {}).get("features") or {}).items():
            groups = f["groups"][:20]
            keys = [k for k in ("selection_rate", "accuracy", "tpr", "fpr", "mae")
                    if k in groups[0]]
            if not keys:
                continue
            fig, ax = plt.subplots(figsize=(min(11, 2 + 1.1 * len(groups) * len(keys) / 2), 3))
            width = 0.8 / len(keys)
            for j, key in enumerate(keys):
                xs = [i + j * width for i in range(len(groups))]
                ax.bar(xs, [g[key] if g[key] is not None else 0 for g in groups], width,
                       label=key.replace("_", " "), color=PALETTE[j % len(PALETTE)])
            ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(groups))])
            ax.set_xticklabels([_label(g["group"], 20) for g in groups])
            ax.set(title=f"Per-group metrics by {_label(col)}")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
            fig.tight_layout()
            plots["fairness"][col] = _png(fig)
    return plots


def _lineage(r: dict[str, Any]) -> list[tuple[str, Any]]:
    model, data = r.get("model") or {}, r.get("dataset") or {}
    rows = [("model version", model.get("ref")), ("training run", model.get("run_id")),
            ("model artifact digest", model.get("artifact_digest")),
            ("trained on", model.get("dataset_version")),
            ("evaluated on", data.get("ref")), ("evaluation data hash", data.get("content_hash")),
            ("evaluation run", r.get("run_id"))]
    return [(k, v) for k, v in rows if v is not None]


def render_html(report: dict[str, Any], *, title: str | None = None) -> str:
    """Render a report dict (``EvaluationReport.to_dict()``) as one
    self-contained HTML page."""
    from jinja2 import ChainableUndefined, Environment

    from shipyard.evaluate._fairness import max_gap

    env = Environment(autoescape=True, undefined=ChainableUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(num=_num, signed=_signed, size=_size, seconds=_seconds, rate=_rate)
    model_ref = (report.get("model") or {}).get("ref")
    title = title or ("Evaluation of " + model_ref if model_ref else "Evaluation report")
    r = {**report, "dataset": report.get("dataset") or {}}
    return env.from_string(TEMPLATE).render(r=r, title=title, ci=_ci, plots=_plots(report),
                                            gaps=max_gap(report.get("fairness")),
                                            lineage=_lineage(report))
