"""Models: the registry's models, versions, aliases and their history,
evaluation reports, and moving or rolling back an alias (admin keys only,
with a reason, audited by the registry)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

router = APIRouter()

#: The experiment and tag under which ``shipyard evaluate`` stores reports
#: (see shipyard.evaluate: a run per report, tagged with the model ref).
EVALUATION_EXPERIMENT = "evaluation"
REPORT_HTML = "evaluation/report.html"
REPORT_JSON = "evaluation/report.json"
MODEL_CARD = "evaluation/model_card.md"
MAX_REASON = 4000


def _evaluations(ws, ref: str, limit: int = 20) -> list:
    from shipyard.errors import FilterSyntaxError
    from shipyard.ui._paging import literal

    try:
        return ws.runs.search(f"tags.model = {literal(ref)}", experiment=EVALUATION_EXPERIMENT,
                              limit=limit)
    except FilterSyntaxError:  # pragma: no cover - literal() always quotes
        return []


def promotion_attempts(ws, name: str, *, version: int | None = None,
                       limit: int = 200) -> list:
    """The promotion attempts of model ``name`` (of one ``version``), newest
    first, as ``promote`` recorded them in the audit log: each with its
    outcome, every gate's verdict and figures, its evaluation run, actor and
    time (:func:`shipyard.evaluate.promotions`)."""
    from shipyard.evaluate import promotions

    return list(reversed(promotions(ws, name, version=version, limit=limit)))


def shap_bars(explanations: Any, width: int = 220) -> list[dict[str, Any]]:
    """Bar lengths of the mean |SHAP| per input column of an evaluation
    report's ``explanations`` section, largest first.

    >>> [(b["feature"], b["width"]) for b in shap_bars({"importance": [
    ...     {"feature": "a", "importance": 0.2}, {"feature": "b", "importance": 0.05}]})]
    [('a', 220), ('b', 55)]
    """
    items = (explanations or {}).get("importance") or [] if isinstance(explanations,
                                                                       dict) else []
    values = [i.get("importance") for i in items if isinstance(i, dict)]
    top = max((v for v in values if isinstance(v, (int, float))), default=0) or 0
    return [{"feature": i.get("feature"), "importance": i.get("importance"),
             "width": max(1, round(i["importance"] / top * width))
             if top and isinstance(i.get("importance"), (int, float)) else 1}
            for i in items[:50] if isinstance(i, dict)]


@router.get("/models")
def models_page(request: Request) -> Response:
    ui = request.app.state.ui
    return ui.page(request, "models.html", models=ui.ws.models.list(), active="models")


@router.get("/models/{name}")
def model_page(request: Request, name: str) -> Response:
    ui = request.app.state.ui
    ws = ui.ws
    versions = ws.models.versions(name[:300])
    aliases = {a: v.version for v in versions for a in v.aliases}
    history = ws.models.alias_history(name[:300])
    audit = ws.audit.entries("model", name[:300], limit=50)
    deployment = ws.deployments.get(name[:300])
    ready = [v.version for v in versions if v.status == "READY"]
    attempts = promotion_attempts(ws, name[:300])
    return ui.page(request, "model.html", name=name, versions=list(reversed(versions)),
                   aliases=aliases, history=list(reversed(history)),
                   audit=list(reversed(audit)), deployment=deployment, ready=ready,
                   attempts=attempts, report_path=REPORT_HTML, active="models")


@router.get("/models/{name}/{version}")
def model_version_page(request: Request, name: str, version: str) -> Response:
    from shipyard.errors import NotFoundError

    ui = request.app.state.ui
    ws = ui.ws
    if not version.isdigit() or len(version) > 9:
        raise NotFoundError(f"model version {version[:40]!r} is not a version number")
    mv = ws.models.get(f"{name[:300]}@{int(version)}")
    lineage = ws.models.lineage(mv)
    evaluations = []
    for run in _evaluations(ws, mv.ref):
        paths = {a.path for a in ws.runs.artifacts(run.id)}
        evaluations.append((run, REPORT_HTML in paths, MODEL_CARD in paths))
    card = None
    if evaluations and evaluations[0][2]:
        card = ws.runs.load_artifact(evaluations[0][0].id, MODEL_CARD).decode(
            "utf-8", "replace")[:100_000]
    report = _latest_report(ws, evaluations)
    attempts = promotion_attempts(ws, mv.name, version=mv.version)
    from shipyard.ui._lineage import model_lineage

    return ui.page(request, "model_version.html", mv=mv, lineage=lineage,
                   graph=model_lineage(ws, mv),
                   evaluations=evaluations, card=card, report_path=REPORT_HTML,
                   report=report, shap=shap_bars(report.get("explanations") if report else None),
                   attempts=attempts, active="models")


#: The largest stored report JSON the page reads.
MAX_REPORT_BYTES = 20 * 1024 * 1024


def _latest_report(ws, evaluations: list) -> dict | None:
    """The report JSON of the newest evaluation that stored one."""
    import json

    for run, *_ in evaluations:
        paths = {a.path: a for a in ws.runs.artifacts(run.id)}
        artifact = paths.get(REPORT_JSON)
        if artifact is None:
            continue
        if artifact.size_bytes > MAX_REPORT_BYTES:
            return None
        try:
            data = json.loads(ws.runs.load_artifact(run.id, REPORT_JSON))
        except ValueError:
            return None
        if isinstance(data, dict):
            data["_run"] = run
            return data
        return None
    return None


def _admin_or_refuse(request: Request) -> Response | None:
    session = request.state.ui_session
    if not session.admin:
        return request.app.state.ui.error_page(
            request, 403, "this needs an admin key: the key of this session can only read",
            "log in with a key created with --scope admin")
    return None


def _back(request: Request, name: str, level: str, text: str) -> Response:
    from urllib.parse import quote

    request.state.ui_session.flash.append((level, text))
    return RedirectResponse(f"{request.scope.get('root_path', '')}/models/"
                            f"{quote(name, safe='')}", status_code=303)


@router.post("/models/{name}/alias")
def move_alias(request: Request, name: str, alias: str = Form(""), version: str = Form(""),
               reason: str = Form("")) -> Response:
    """Point ``alias`` at ``version``: ``ws.models.set_alias(..., reason=...)``,
    audited as the session's key."""
    from shipyard.errors import ShipyardError

    refused = _admin_or_refuse(request)
    if refused is not None:
        return refused
    reason = reason.strip()
    if not reason:
        return _back(request, name, "error", "a reason is required to move an alias")
    if not version.strip().isdigit():
        return _back(request, name, "error", f"{version[:40]!r} is not a version number")
    session = request.state.ui_session
    try:
        mv = request.app.state.ui.ws.models.set_alias(
            name, alias.strip(), int(version), actor=session.actor, reason=reason[:MAX_REASON])
    except ShipyardError as exc:
        return _back(request, name, "error", f"alias not moved: {exc.message}")
    return _back(request, name, "ok", f"{name}@{alias.strip()} now points at version "
                                      f"{mv.version}")


@router.post("/models/{name}/rollback")
def rollback_alias(request: Request, name: str, alias: str = Form(""),
                   reason: str = Form("")) -> Response:
    """Undo the latest move of ``alias``: ``ws.models.rollback(..., reason=...)``."""
    from shipyard.errors import ShipyardError

    refused = _admin_or_refuse(request)
    if refused is not None:
        return refused
    reason = reason.strip()
    if not reason:
        return _back(request, name, "error", "a reason is required to roll back an alias")
    session = request.state.ui_session
    try:
        mv = request.app.state.ui.ws.models.rollback(name, alias.strip(), actor=session.actor,
                                                     reason=reason[:MAX_REASON])
    except ShipyardError as exc:
        return _back(request, name, "error", f"alias not rolled back: {exc.message}")
    return _back(request, name, "ok", f"{name}@{alias.strip()} rolled back to version "
                                      f"{mv.version}")
