"""Errors the server answers with, and the JSON response class it uses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(JSONResponse):
    """JSON through orjson, numpy arrays included (NaN becomes ``null``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=ORJSON_OPTIONS, default=json_default)


def json_default(value: Any) -> Any:
    """What orjson cannot write natively: object arrays (string class labels)
    become lists, numpy scalars Python ones."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


class ServeError(Exception):
    """A request the server refuses, with its HTTP status and a stable code.

    Parameters
    ----------
    status
        HTTP status (4xx for the client's mistakes).
    code
        Machine-readable: ``invalid_input``, ``invalid_json``, ``body_too_large``...
    message
        Names the field and the problem.
    headers
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


def error_body(path: str, code: str, message: str) -> dict[str, Any]:
    """The error document in the dialect of the protocol ``path`` belongs to:
    Open Inference Protocol (``{"error": "..."}``, what its clients parse),
    MLflow scoring (``{"error_code", "message"}``), else Shipyard's own."""
    if path.startswith("/v2"):
        return {"error": message}
    if path.startswith("/invocations"):
        return {"error_code": "BAD_REQUEST" if code != "internal" else "INTERNAL_ERROR",
                "message": message}
    return {"error": {"code": code, "message": message}}


def shown(value: Any, limit: int = 40) -> str:
    """A value quoted for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
