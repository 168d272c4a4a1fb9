"""RAG (present when the genai stage is installed): the versioned document
collections, and one version's documents, refusals and index settings.
Traces of queries (spans, retrieved chunks, citations) come when the stage
records them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()


@router.get("/rag")
def rag_page(request: Request) -> Response:
    ui = request.app.state.ui
    collections = sorted(ui.ws.rag.list(), key=lambda c: (c.name, -c.version))
    return ui.page(request, "rag.html", collections=collections, active="rag")


@router.get("/rag/{name}/{version}")
def collection_page(request: Request, name: str, version: str) -> Response:
    from shipyard.errors import NotFoundError

    ui = request.app.state.ui
    if not version.isdigit() or len(version) > 9:
        raise NotFoundError(f"collection version {version[:40]!r} is not a version number")
    collection = ui.ws.rag.get(f"{name[:300]}@{int(version)}")
    return ui.page(request, "rag_collection.html", c=collection, active="rag")
