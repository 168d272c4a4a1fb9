"""Models: the registry's models, versions, aliases and their history,
evaluation reports, and moving or rolling back an alias (admin keys only,
with a reason, audited by the registry)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

router = APIRouter()

#: The experiment and tag under which ``shipyard evaluate`` stores reports
#: (see shipyard.evaluate: a run per report, tagged with the model ref).
EVALUATION_EXPERIMENT = "evaluation"
REPORT_HTML = "evaluation/report.html"
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
    return ui.page(request, "model.html", name=name, versions=list(reversed(versions)),
                   aliases=aliases, history=list(reversed(history)),
                   audit=list(reversed(audit)), deployment=deployment, ready=ready,
                   active="models")


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
    return ui.page(request, "model_version.html", mv=mv, lineage=lineage,
                   evaluations=evaluations, card=card, report_path=REPORT_HTML,
                   active="models")


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
