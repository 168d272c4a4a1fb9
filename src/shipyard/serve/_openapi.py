"""Request bodies in the OpenAPI document.

The endpoints parse their bodies themselves (orjson, protocol-specific error
messages, binary tensors), so FastAPI does not see a body parameter; these
helpers declare the pydantic request models in the document instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_MODELS: dict[str, type[BaseModel]] = {}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Shipyard's error document (Open Inference Protocol routes answer
    ``{"error": "..."}`` and MLflow routes ``{"error_code", "message"}``)."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "Malformed request (not JSON, ...)."), (401, "Missing or invalid API key."),
        (403, "The key lacks the scope."), (404, "Unknown model."),
        (413, "Body or row count over the limit."), (415, "Unsupported content type."),
        (422, "Input does not match the model signature."), (429, "Rate limit exceeded."))}


def json_body(model: type[BaseModel], *, extra_media: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body."""
    _MODELS[model.__name__] = model
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/"
                                                        f"{model.__name__}"}}}
    content.update(extra_media or {})
    return {"requestBody": {"required": True, "content": content}}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the models named by :func:`json_body`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _MODELS.items():
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
