"""Errors the server answers with, and the JSON response class it uses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

from shipyard.errors import ServeError

__all__ = ["FastJSONResponse", "ServeError", "error_body", "json_default"]

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


