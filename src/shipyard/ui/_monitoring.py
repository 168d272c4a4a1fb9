"""Monitoring (present when the monitor stage is installed): each model's
latest verdict and firing alerts, its reports with drift per column over
windows, and the monitor's own HTML report, framed and sandboxed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

router = APIRouter()
HISTORY = 50
#: Windows shown side by side in the drift-per-column table.
DRIFT_WINDOWS = 12


@router.get("/monitoring")
def monitoring_page(request: Request) -> Response:
    ui = request.app.state.ui
    ws = ui.ws
    models = ws.models.list()
    latest = {m.name: ws.monitor.latest(m.name) for m in models}
    firing = ws.monitor.alerts(state="firing", limit=200)
    return ui.page(request, "monitoring.html", models=models, latest=latest, firing=firing,
                   active="monitoring")


def drift_matrix(reports: list) -> tuple[list[str], list[list]]:
    """Columns (rows of the table) and, per column, each report's drift entry
    (oldest window first); None where a report did not test the column."""
    recent = list(reversed(reports[:DRIFT_WINDOWS]))
    columns = sorted({c for r in recent for c in (r.report.get("drift") or {})})
    rows = [[(r.report.get("drift") or {}).get(c) for r in recent] for c in columns]
    return columns, rows


@router.get("/monitoring/{model}")
def monitoring_model_page(request: Request, model: str) -> Response:
    ui = request.app.state.ui
    ws = ui.ws
    reports = ws.monitor.reports(model[:300], limit=HISTORY)
    alerts = ws.monitor.alerts(model[:300], limit=100)
    columns, matrix = drift_matrix(reports)
    return ui.page(request, "monitoring_model.html", model=model, reports=reports,
                   alerts=alerts, columns=columns, matrix=matrix,
                   windows=list(reversed(reports[:DRIFT_WINDOWS])), active="monitoring")


@router.get("/monitoring/{model}/report.html")
def monitoring_report(request: Request, model: str) -> Response:
    """The monitor's self-contained HTML page, served so that no script in it runs."""
    from shipyard.ui._runs import SANDBOX_CSP

    ui = request.app.state.ui
    html = ui.ws.monitor.html(model[:300])
    return HTMLResponse(html, headers={"content-security-policy": SANDBOX_CSP})
