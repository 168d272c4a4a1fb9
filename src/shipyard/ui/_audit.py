"""The audit log: entries with filters, and verifying the hash chain."""

from __future__ import annotations

import datetime as _dt

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()
DEFAULT_LIMIT = 200
MAX_LIMIT = 5000


def parse_since(text: str) -> float | None:
    """Epoch seconds from ``2026-11-01``, ``2026-11-01 08:00`` or a number;
    None for empty or unreadable input.

    >>> parse_since("1970-01-02T00:00:00+00:00"), parse_since("nonsense"), parse_since("")
    (86400.0, None, None)
    """
    text = text.strip()
    if not text:
        return None
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else \
            _dt.datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        return None


@router.get("/audit")
def audit_page(request: Request) -> Response:
    ui = request.app.state.ui
    q = request.query_params
    object_type = (q.get("object_type") or "").strip()[:64]
    object_id = (q.get("object_id") or "").strip()[:500]
    action = (q.get("action") or "").strip()[:64]
    since_text = (q.get("since") or "").strip()[:40]
    since = parse_since(since_text)
    try:
        limit = min(max(int(q.get("limit") or DEFAULT_LIMIT), 1), MAX_LIMIT)
    except ValueError:
        limit = DEFAULT_LIMIT
    entries = ui.ws.audit.entries(object_type or None, object_id or None, since=since,
                                  action=action or None, limit=limit)
    return ui.page(request, "audit.html", entries=list(reversed(entries)),
                   object_type=object_type, object_id=object_id, action=action,
                   since=since_text, since_ignored=bool(since_text) and since is None,
                   limit=limit, active="audit")


@router.post("/audit/verify")
def audit_verify(request: Request) -> Response:
    """Walk the whole chain (``ws.audit.verify()``); an htmx fragment."""
    ui = request.app.state.ui
    result = ui.ws.audit.verify()
    if request.headers.get("hx-request") == "true":
        return ui.page(request, "audit_verify.html", result=result)
    return ui.page(request, "audit_verify_page.html", result=result, active="audit")
