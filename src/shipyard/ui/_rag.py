"""RAG (present when the genai stage is installed): the versioned document
collections, one version's documents, refusals and index settings, and the
traces of queries and answers (``ws.rag.traces()``): spans as a waterfall,
the retrieved chunks with their scores, guardrail verdicts and generation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()
#: Traces listed on one page, and on the collections page.
TRACES_LIMIT = 200
RECENT_TRACES = 20
#: Width in pixels of the waterfall's time axis.
WATERFALL_W = 560
#: Characters of a chunk's text shown (the rest is cut).
CHUNK_CHARS = 1200
#: The spans that hold guardrail verdicts.
GUARD_SPAN = "guard"


@router.get("/rag")
def rag_page(request: Request) -> Response:
    ui = request.app.state.ui
    collections = sorted(ui.ws.rag.list(), key=lambda c: (c.name, -c.version))
    return ui.page(request, "rag.html", collections=collections,
                   traces=ui.ws.rag.traces(limit=RECENT_TRACES), active="rag")


@router.get("/rag/traces")
def traces_page(request: Request, collection: str = "", since: str = "",
                status: str = "") -> Response:
    """Recent traces, newest first; ``collection`` (a name or ``docs@2``),
    ``since`` (``1h``, ``7d``, an ISO time) and ``status`` narrow them."""
    from shipyard.errors import ShipyardError

    ui = request.app.state.ui
    collection, since, status = collection.strip()[:300], since.strip()[:40], status[:20]
    error = None
    try:
        traces = ui.ws.rag.traces(collection or None, since or None, limit=TRACES_LIMIT)
    except ShipyardError as exc:  # a bad filter: said inline, not a 500
        traces, error = [], exc.message
    if status:
        traces = [t for t in traces if t.status == status]
    return ui.page(request, "rag_traces.html", traces=traces, collection=collection,
                   since=since, wanted=status, error=error, limit=TRACES_LIMIT,
                   active="rag")


def waterfall(trace: Any, width: int = WATERFALL_W) -> dict[str, Any]:
    """The spans of ``trace`` as rows of a waterfall: each span's depth in
    the tree, start offset and length (ms) and its bar (``x``, ``w`` pixels
    on an axis as long as the whole trace), in tree order (children after
    their parent, by start time).

    >>> from types import SimpleNamespace as S
    >>> root = S(name="rag.query", span_id="a", parent_id=None, start_ns=0,
    ...          duration_ns=10_000_000, status="ok", attributes={})
    >>> child = S(name="embed", span_id="b", parent_id="a", start_ns=5_000_000,
    ...           duration_ns=5_000_000, status="ok", attributes={})
    >>> rows = waterfall(S(spans=(root, child)), width=100)["rows"]
    >>> [(r["name"], r["depth"], r["x"], r["w"]) for r in rows]
    [('rag.query', 0, 0.0, 100.0), ('embed', 1, 50.0, 50.0)]
    """
    spans = list(trace.spans)
    if not spans:
        return {"rows": [], "total_ms": 0.0, "width": width}
    start = min(s.start_ns for s in spans)
    end = max(s.start_ns + s.duration_ns for s in spans)
    total = max(end - start, 1)
    children: dict[str | None, list] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)
    rows: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            x = (s.start_ns - start) / total * width
            rows.append({"span": s, "name": s.name, "depth": depth,
                         "offset_ms": (s.start_ns - start) / 1e6,
                         "duration_ms": s.duration_ns / 1e6, "x": round(x, 1),
                         "w": round(max(s.duration_ns / total * width, 1.0), 1),
                         "error": s.status != "ok",
                         "guard": s.name == GUARD_SPAN})
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return {"rows": rows, "total_ms": total / 1e6, "width": width}


def retrieved(ws, trace: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The chunks the root span recorded (rank, score), with their text and
    source from the collection version; and why the texts are missing, if
    they are (the version was dropped)."""
    from shipyard.errors import ShipyardError

    root = trace.spans[0].attributes if trace.spans else {}
    ids = list(root.get("chunk_ids") or [])
    scores = list(root.get("scores") or [])
    dropped = {c for s in trace.spans if s.name == GUARD_SPAN
               for c in (s.attributes.get("dropped_chunk_ids") or [])}
    chunks: dict[str, Any] = {}
    missing = None
    if ids and trace.ref:
        try:
            wanted = set(ids) | dropped
            chunks = {c.id: c for c in ws.rag.chunks(trace.ref) if c.id in wanted}
        except ShipyardError as exc:
            missing = f"the texts are gone: {exc.message}"
    rows = []
    for rank, chunk_id in enumerate(ids, 1):
        chunk = chunks.get(chunk_id)
        text = chunk.text if chunk is not None else None
        rows.append({"rank": rank, "id": chunk_id,
                     "score": scores[rank - 1] if rank - 1 < len(scores) else None,
                     "chunk": chunk, "dropped": chunk_id in dropped,
                     "text": text[:CHUNK_CHARS] if text else None,
                     "cut": bool(text) and len(text) > CHUNK_CHARS})
    return rows, missing


@router.get("/rag/traces/{trace_id}")
def trace_page(request: Request, trace_id: str) -> Response:
    ui = request.app.state.ui
    trace = ui.ws.rag.trace(trace_id[:100])
    chunks, missing = retrieved(ui.ws, trace)
    guards = [s for s in trace.spans if s.name == GUARD_SPAN]
    generate = next((s for s in trace.spans if s.name == "generate"), None)
    return ui.page(request, "rag_trace.html", t=trace, fall=waterfall(trace), chunks=chunks,
                   missing=missing, guards=guards, generate=generate,
                   root=trace.spans[0].attributes if trace.spans else {}, active="rag")


@router.get("/rag/{name}/{version}")
def collection_page(request: Request, name: str, version: str) -> Response:
    from shipyard.errors import NotFoundError

    ui = request.app.state.ui
    if not version.isdigit() or len(version) > 9:
        raise NotFoundError(f"collection version {version[:40]!r} is not a version number")
    collection = ui.ws.rag.get(f"{name[:300]}@{int(version)}")
    return ui.page(request, "rag_collection.html", c=collection,
                   traces=ui.ws.rag.traces(collection.ref, limit=RECENT_TRACES),
                   active="rag")
