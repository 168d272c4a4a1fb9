"""Datasets: the list, versions, one version (schema, validation, profile per
column, lineage) and the diff between two versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()

#: Width in pixels of the profile bars.
BAR_WIDTH = 160


def _version_number(text: str) -> int:
    from shipyard.errors import NotFoundError

    if not text.isdigit() or len(text) > 9:
        raise NotFoundError(f"dataset version {text[:40]!r} is not a version number")
    return int(text)


def profile_bars(stats: dict[str, Any]) -> dict[str, Any]:
    """Bar lengths for one column's profile: the top values by count, and
    the quantiles of a numeric column placed between its min and max.

    >>> bars = profile_bars({"count": 4, "top": [{"value": "a", "count": 3},
    ...                                          {"value": "b", "count": 1}]})
    >>> [(b["value"], b["width"]) for b in bars["top"]]
    [('a', 120), ('b', 40)]
    """
    count = stats.get("count") or 0
    top = []
    for item in stats.get("top") or []:
        share = item["count"] / count if count else 0.0
        top.append({"value": item["value"], "count": item["count"], "share": share,
                    "width": max(1, round(share * BAR_WIDTH))})
    quantiles = []
    lo, hi = stats.get("min"), stats.get("max")
    qs = stats.get("quantiles") or {}
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and hi > lo:
        for name, value in qs.items():
            if isinstance(value, (int, float)):
                quantiles.append({"name": name, "value": value,
                                  "x": round((value - lo) / (hi - lo) * BAR_WIDTH, 1)})
    return {"top": top, "quantiles": quantiles, "width": BAR_WIDTH}


@router.get("/datasets")
def datasets_page(request: Request) -> Response:
    ui = request.app.state.ui
    return ui.page(request, "datasets.html", datasets=ui.ws.datasets.list(), active="datasets")


@router.get("/datasets/{name}")
def dataset_page(request: Request, name: str) -> Response:
    ui = request.app.state.ui
    versions = ui.ws.datasets.versions(name[:300])
    return ui.page(request, "dataset.html", name=name, versions=list(reversed(versions)),
                   active="datasets")


@router.get("/datasets/{name}/diff")
def dataset_diff(request: Request, name: str, a: str = "", b: str = "") -> Response:
    ui = request.app.state.ui
    versions = ui.ws.datasets.versions(name[:300])
    numbers = [v.version for v in versions]
    va = _version_number(a) if a else (numbers[-2] if len(numbers) > 1 else numbers[-1])
    vb = _version_number(b) if b else numbers[-1]
    diff = ui.ws.datasets.diff(f"{name}@{va}", f"{name}@{vb}")
    return ui.page(request, "dataset_diff.html", name=name, diff=diff, numbers=numbers,
                   a=va, b=vb, active="datasets")


@router.get("/datasets/{name}/{version}")
def dataset_version_page(request: Request, name: str, version: str) -> Response:
    ui = request.app.state.ui
    number = _version_number(version)
    dv = ui.ws.datasets.get(f"{name[:300]}@{number}")
    children = ui.ws.datasets.children(dv.ref)
    columns = dv.profile.get("columns", {}) if isinstance(dv.profile, dict) else {}
    bars = {col: profile_bars(stats) for col, stats in columns.items()}
    validation = dv.validation or None
    # Lineage downstream: model versions recorded as trained on this version,
    # and how those models are deployed.
    models = [mv for m in ui.ws.models.list() for mv in ui.ws.models.versions(m.name)
              if mv.dataset_version == dv.ref]
    deployed = {name: ui.ws.deployments.get(name) for name in {mv.name for mv in models}}
    from shipyard.ui._lineage import dataset_lineage

    return ui.page(request, "dataset_version.html", dv=dv, children=children,
                   columns=columns, bars=bars, validation=validation, models=models,
                   deployed=deployed, graph=dataset_lineage(ui.ws, dv), active="datasets")
