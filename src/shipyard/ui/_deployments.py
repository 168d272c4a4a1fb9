"""Deployments: how each model name is routed (strategy, weights), the
traffic the prediction log recorded by version and role (requests, failed
share and latency over time), and the revision and rollback history of that
routing, from the audit log."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from shipyard.ui._traffic import DEFAULT_WINDOW, WINDOWS, summarize

router = APIRouter()
#: Deployment actions that change which version answers, told apart on the page.
ROLLBACK_ACTIONS = ("deployment.rollback",)
ALIAS_ACTIONS = ("model.alias.set", "model.alias.rollback", "model.alias.remove")


@router.get("/deployments")
def deployments_page(request: Request) -> Response:
    ui = request.app.state.ui
    return ui.page(request, "deployments.html", deployments=ui.ws.deployments.list(),
                   active="deployments")


def _window(text: str | None) -> str:
    return text if text in WINDOWS else DEFAULT_WINDOW


#: Seconds a traffic summary is reused, and how many are kept.
TRAFFIC_TTL = 5.0
TRAFFIC_CACHED = 64


def _traffic(ui, name: str, window: str) -> dict:
    """The summary of ``name``'s logged requests in ``window``; the page and
    its charts' JSON, asked for together, share one read of the log."""
    from shipyard.deploy import read_predictions

    now = time.time()
    with ui.traffic_lock:
        cached = ui.traffic.get((name, window))
    if cached is not None and now - cached[0] < TRAFFIC_TTL:
        return cached[1]
    seconds = WINDOWS[window]
    summary = summarize(read_predictions(ui.ws, name, now - seconds if seconds else None))
    with ui.traffic_lock:
        ui.traffic[(name, window)] = (now, summary)
        while len(ui.traffic) > TRAFFIC_CACHED:
            ui.traffic.popitem(last=False)
    return summary


def _resolved(ws, spec) -> dict[str, int | None]:
    """Which version each role's ref names now (None where it no longer resolves)."""
    from shipyard.errors import NotFoundError

    out: dict[str, int | None] = {}
    for role in ("primary", "candidate"):
        ref = getattr(spec, role)
        if ref is None:
            continue
        try:
            out[role] = ws.models.get(ref).version
        except NotFoundError:
            out[role] = None
    return out


@router.get("/deployments/{name}")
def deployment_page(request: Request, name: str, window: str | None = None) -> Response:
    from shipyard.errors import NotFoundError

    ui = request.app.state.ui
    ws = ui.ws
    name = name[:300]
    record = ws.deployments.get(name)
    history = ws.deployments.history(name, limit=200)
    if record is None and not history:
        raise NotFoundError(f"model {name[:200]!r} has no deployment",
                            hint="set one with `shipyard deploy`")
    window = _window(window)
    traffic = _traffic(ui, name, window)
    aliases = [e for e in ws.audit.entries("model", name, limit=500)
               if e.action in ALIAS_ACTIONS]
    resolved = _resolved(ws, record.deployment) if record is not None else {}
    return ui.page(request, "deployment.html", name=name, record=record,
                   history=list(reversed(history)), traffic=traffic, window=window,
                   windows=list(WINDOWS), aliases=list(reversed(aliases)),
                   resolved=resolved, rollback_actions=ROLLBACK_ACTIONS,
                   active="deployments")


@router.get("/deployments/{name}/traffic.json")
def traffic_json(request: Request, name: str, window: str | None = None) -> Response:
    """The time series of the page's charts (see ``_traffic.summarize``)."""
    from shipyard.errors import NotFoundError

    ui = request.app.state.ui
    if ui.ws.deployments.get(name[:300]) is None and not ui.ws.deployments.history(
            name[:300], limit=1):
        raise NotFoundError(f"model {name[:200]!r} has no deployment")
    traffic = _traffic(ui, name[:300], _window(window))
    return JSONResponse({"charts": traffic["charts"], "requests": traffic["requests"]})
