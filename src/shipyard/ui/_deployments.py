"""Deployments: how each model name is routed (strategy, weights) and the
revision history of that routing, from the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()


@router.get("/deployments")
def deployments_page(request: Request) -> Response:
    ui = request.app.state.ui
    return ui.page(request, "deployments.html", deployments=ui.ws.deployments.list(),
                   active="deployments")


@router.get("/deployments/{name}")
def deployment_page(request: Request, name: str) -> Response:
    from shipyard.errors import NotFoundError

    ui = request.app.state.ui
    record = ui.ws.deployments.get(name[:300])
    history = ui.ws.deployments.history(name[:300], limit=200)
    if record is None and not history:
        raise NotFoundError(f"model {name[:200]!r} has no deployment",
                            hint="set one with `shipyard deploy`")
    return ui.page(request, "deployment.html", name=name, record=record,
                   history=list(reversed(history)), active="deployments")
