"""A Markdown model card generated from an evaluation report's facts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: Fairness differences above this are listed as limitations.
FAIRNESS_LIMIT = 0.1
#: Robustness drops above this are listed as limitations.
ROBUSTNESS_LIMIT = 0.05
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def md(text: Any) -> str:
    """``text`` with Markdown and HTML metacharacters escaped, on one line.

    >>> md("<b>x|y</b>")
    '\\\\<b\\\\>x\\\\|y\\\\</b\\\\>'
    """
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def code(text: Any) -> str:
    """``text`` as a Markdown code span (which renders markup literally).

    >>> code("x_1 <b>")
    '`x_1 <b>`'
    """
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _interval(bounds: dict[str, Any] | None) -> str:
    """`` CI [0.03, 0.13]`` after a fairness gap, or nothing without one."""
    if not bounds or bounds.get("ci_low") is None or bounds.get("ci_high") is None:
        return ""
    return f" CI {_ci(bounds)}"


def _ci(m: dict[str, Any]) -> str:
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return "–"
    return f"[{m['ci_low']:.4g}, {m['ci_high']:.4g}]"


def limitations_of(r: dict[str, Any]) -> list[str]:
    """Limitations the facts show: flagged slices, fairness differences above
    :data:`FAIRNESS_LIMIT`, robustness drops above :data:`ROBUSTNESS_LIMIT`."""
    found = []
    slices = r.get("slices") or {}
    for f in slices.get("flagged", []):
        found.append(f"{slices['metric']} is {_num(f['value'])} on rows where {code(f['column'])}"
                     f" is {md(f['group'])} ({f['rows']} rows), {_num(abs(f['gap']))} worse "
                     f"than overall.")
    for col, f in ((r.get("fairness") or {}).get("features") or {}).items():
        for key, value in f.items():
            if key.endswith("_difference") and value is not None and value > FAIRNESS_LIMIT:
                found.append(f"{key.replace('_', ' ')} across {code(col)} is {_num(value)} "
                             f"(above {FAIRNESS_LIMIT}).")
    rob = r.get("robustness") or {}
    metric = (rob.get("baseline") or {}).get("metric", "metric")
    for p in rob.get("perturbations") or []:
        if p.get("drop") is not None and p["drop"] > ROBUSTNESS_LIMIT:
            found.append(f"{metric} drops by {_num(p['drop'])} under {md(p['name'])} "
                         f"(level {_num(p['level'])}).")
    attack = rob.get("attack")
    if attack and attack.get("accuracy_under_attack") is not None:
        found.append(f"under a {md(attack['method'])} evasion attack accuracy is "
                     f"{_num(attack['accuracy_under_attack'])} (median L2 perturbation "
                     f"{_num(attack['median_l2'])}).")
    return found


def model_card(r: dict[str, Any], *, intended_use: str | None = None,
               limitations: str | Sequence[str] | None = None) -> str:
    """A model card (Markdown) from a report dict.

    Parameters
    ----------
    r
        ``EvaluationReport.to_dict()``.
    intended_use
        What the model is for; default the model's description.
    limitations
        Known limitations to list besides those the facts show.

    Returns
    -------
    str
        Sections: Model details, Intended use, Data and lineage, Metrics,
        Fairness, Explanations, Limitations.
    """
    model, data = r.get("model") or {}, r.get("dataset") or {}
    name = model.get("ref") or "model"
    out = [f"# Model card: {md(name)}", ""]
    out += ["## Model details", "",
            f"- Task: {r['task']} (target {code(r['target'])})"]
    if r.get("classes"):
        out.append(f"- Classes: {', '.join(md(c) for c in r['classes'])}")
    if model.get("tags"):
        out.append("- Tags: " + ", ".join(f"{md(k)}={md(v)}" for k, v in model["tags"].items()))
    if model.get("aliases"):
        out.append(f"- Aliases: {', '.join(md(a) for a in model['aliases'])}")
    out += ["", "## Intended use", ""]
    use = intended_use or model.get("description") or (model.get("tags") or {}).get(
        "intended_use")
    out.append(md(use) if use else "_Not stated._ Describe the intended use when registering "
               "the model (its description) or pass `intended_use`.")
    out += ["", "## Data and lineage", ""]
    facts = [("Evaluated on", data.get("ref")), ("Evaluation data hash", data.get("content_hash")),
             ("Trained on", model.get("dataset_version")),
             ("Training run", model.get("run_id")),
             ("Artifact digest", model.get("artifact_digest")),
             ("Evaluation run", r.get("run_id"))]
    out.append(f"- Evaluated rows: {r.get('n_rows')}")
    out += [f"- {k}: {code(v)}" for k, v in facts if v is not None]
    boot = r.get("bootstrap") or {}
    out += ["", "## Metrics", "",
            (f"Headline: **{md(r['headline']['metric'])} = {_num(r['headline']['value'])}** "
             f"{_ci(r['headline'])}."), "",
            f"| metric | value | {round((boot.get('confidence') or 0.95) * 100)}% interval |",
            "|---|---:|---:|"]
    out += [f"| {md(k)} | {_num(m['value'])} | {_ci(m)} |" for k, m in r["metrics"].items()]
    if boot:
        out += ["", (f"Intervals: {boot.get('method')} bootstrap over {boot.get('n')} "
                     f"resamples (seed {boot.get('seed')}).")]
    out += ["", "## Fairness", ""]
    features = (r.get("fairness") or {}).get("features") or {}
    if not features:
        out.append("_No sensitive features were declared; fairness was not measured._")
    for col, f in features.items():
        ci = f.get("ci") or {}
        gaps = ", ".join(f"{k.replace('_', ' ')} {_num(v)}" + _interval(ci.get(k))
                         for k, v in f.items() if k not in ("groups", "ci"))
        out.append(f"- {code(col)} ({len(f['groups'])} groups): {gaps}")
    exp = r.get("explanations")
    if exp and exp.get("importance"):
        out += ["", "## Explanations", "",
                "Most important inputs (mean |SHAP|): " + ", ".join(
                    f"{code(i['feature'])} {_num(i['importance'])}"
                    for i in exp["importance"][:5]) + "."]
    out += ["", "## Limitations", ""]
    given = [limitations] if isinstance(limitations, str) else list(limitations or [])
    items = [md(t) for t in given] + limitations_of(r)
    none = "- None found by this evaluation; it covers only the evaluated data."
    out += [f"- {t}" for t in items] or [none]
    return "\n".join(out) + "\n"
