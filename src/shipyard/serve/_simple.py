"""Shipyard's own JSON API: ``/v1/models/{name}:predict``, ``:explain``,
model listing, ``/v1/feedback`` and ``/v1/admin/reload``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from shipyard.serve._auth import requires
from shipyard.serve._responses import FastJSONResponse, ServeError
from shipyard.serve._inference import predict, read_json, require_json, serving
from shipyard.serve._openapi import ERRORS, json_body
from shipyard.deploy import frame_from_columns, frame_from_records, invalid

router = APIRouter(tags=["shipyard"], default_response_class=FastJSONResponse)


class PredictRequest(BaseModel):
    """Rows to score: ``records`` (one object per row) or ``columns`` (one
    list per column), exactly one of the two."""

    records: list[dict[str, Any]] | None = Field(
        None, description="One object per row: `[{\"age\": 39, \"city\": \"oslo\"}]`.")
    columns: dict[str, list[Any]] | None = Field(
        None, description="One list per column: `{\"age\": [39, 50], \"city\": [...]}`.")


class PredictResponse(BaseModel):
    model_name: str
    model_version: int
    request_id: str
    predictions: list[Any] = Field(description="Labels (classification) or values.")
    classes: list[Any] | None = Field(None, description="Class labels, in the order of "
                                                        "each probabilities row.")
    probabilities: list[list[float]] | None = None


class ExplainResponse(BaseModel):
    model_name: str
    model_version: int
    request_id: str
    explanations: list[dict[str, Any]] = Field(
        description="Per row: `attributions` {column: value}, `base_value`, `output`.")


class ModelInfo(BaseModel):
    name: str
    ref: str
    version: int | None
    ready: bool
    task: str | None = None
    classes: list[Any] | None = None
    signature: dict[str, Any] | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class FeedbackRequest(BaseModel):
    request_id: str = Field(min_length=1, max_length=128,
                            description="The request id of the prediction.")
    label: Any = Field(description="The ground truth (a class label or a value).")
    model: str | None = Field(None, max_length=200, description="The model, if known.")


class FeedbackResponse(BaseModel):
    request_id: str
    recorded: bool


class ReloadResponse(BaseModel):
    changed: dict[str, bool]
    versions: dict[str, int | None]


def _frame_builder(body: Any):
    if not isinstance(body, dict):
        raise invalid(f"the body must be a JSON object with 'records' or 'columns', got "
                      f"{type(body).__name__}")
    keys = [k for k in ("records", "columns") if body.get(k) is not None]
    extra = [k for k in body if k not in ("records", "columns")]
    if len(keys) != 1 or extra:
        raise invalid("the body must have exactly one of 'records' or 'columns'"
                      + (f"; unknown field {str(extra[0])[:60]!r}" if extra else ""))
    if keys[0] == "records":
        return lambda schema: frame_from_records(schema, body["records"])
    return lambda schema: frame_from_columns(schema, body["columns"])


def _info(slot, *, detail: bool) -> dict[str, Any]:
    current = slot.current
    out: dict[str, Any] = {"name": slot.name, "ref": slot.ref, "ready": current is not None,
                           "version": current.number if current else None}
    if current is not None:
        out["task"], out["classes"] = current.task, current.classes
        if detail:
            out["signature"] = current.version.signature
    return out


@router.get("/v1/models", response_model=ModelList, dependencies=[requires("predict")],
            responses=ERRORS)
async def list_models(request: Request):
    """The models this server serves and the version each answers with."""
    return FastJSONResponse({"models": [_info(s, detail=False)
                                        for s in serving(request).slots.slots.values()]})


@router.post("/v1/models/{name}:predict", response_model=PredictResponse,
             dependencies=[requires("predict")], responses=ERRORS,
             openapi_extra=json_body(PredictRequest))
async def predict_v1(name: str, request: Request):
    """Predict rows given as records or columns; labels, class probabilities,
    the version that answered and the request id (also `X-Request-ID`)."""
    require_json(request)
    build = _frame_builder(await read_json(request))
    loaded, result = await predict(request, name, build, "v1.predict")
    body: dict[str, Any] = {"model_name": name, "model_version": loaded.number,
                            "request_id": request.state.request_id,
                            "predictions": result.predictions}
    if result.probabilities is not None:
        body["classes"] = result.classes
        body["probabilities"] = result.probabilities
    return FastJSONResponse(body)


@router.post("/v1/models/{name}:explain", response_model=ExplainResponse,
             dependencies=[requires("predict")], responses=ERRORS,
             openapi_extra=json_body(PredictRequest))
async def explain_v1(name: str, request: Request):
    """Per-row attributions over the input columns (SHAP, against a sample of
    the model's training data). At most 20 rows a request."""
    from starlette.concurrency import run_in_threadpool

    require_json(request)
    state = serving(request)
    build = _frame_builder(await read_json(request))
    loaded = state.slots.get(name).pick(request.state.request_id)
    request.state.model, request.state.version = name, str(loaded.number)
    frame = build(loaded.schema)
    if len(frame) > state.max_explain_rows:
        raise ServeError(413, "too_many_rows", f"{len(frame)} rows to explain; at most "
                                               f"{state.max_explain_rows} a request")

    def explain() -> list[dict[str, Any]]:
        try:
            from shipyard.evaluate import explain_rows
        except ImportError as exc:
            raise ServeError(501, "not_available",
                             f"explanations need shipyard[evaluate]: {exc}") from exc
        background = loaded.background(state.ws)
        return explain_rows(loaded.model, frame, background=background,
                            signature=loaded.version.signature)

    explanations = await run_in_threadpool(explain)
    return FastJSONResponse({"model_name": name, "model_version": loaded.number,
                             "request_id": request.state.request_id,
                             "explanations": explanations})


@router.get("/v1/models/{name}", response_model=ModelInfo, dependencies=[requires("predict")],
            responses=ERRORS)
async def model_info(name: str, request: Request):
    """One served model: its ref, loaded version, task, classes and signature."""
    base, sep, verb = name.rpartition(":")
    if sep and verb in ("predict", "explain"):  # GET on a POST-only action
        raise ServeError(405, "method_not_allowed",
                         f"{verb} takes POST with a JSON body, not GET "
                         f"(POST /v1/models/{base}:{verb})", headers={"Allow": "POST"})
    return FastJSONResponse(_info(serving(request).slots.get(name), detail=True))


@router.post("/v1/feedback", response_model=FeedbackResponse,
             dependencies=[requires("predict")], responses=ERRORS,
             openapi_extra=json_body(FeedbackRequest))
async def feedback(request: Request):
    """Record the ground truth of an earlier prediction, by its request id."""
    require_json(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid("the body must be an object with 'request_id' and 'label'")
    rid, model = body.get("request_id"), body.get("model")
    if not isinstance(rid, str) or not 0 < len(rid) <= 128:
        raise invalid("field 'request_id': expected the request id string (1 to 128 "
                      "characters)")
    if "label" not in body:
        raise invalid("field 'label': missing")
    if model is not None and (not isinstance(model, str) or len(model) > 200):
        raise invalid("field 'model': expected a model name")
    extra = [k for k in body if k not in ("request_id", "label", "model")]
    if extra:
        raise invalid(f"unknown field {str(extra[0])[:60]!r}")
    state = serving(request)
    if state.predlog is not None:
        state.predlog.record_feedback(request_id=rid, label=body["label"], model=model,
                                      key_id=getattr(request.state, "key_id", None))
    return FastJSONResponse({"request_id": rid, "recorded": state.predlog is not None})


@router.post("/v1/admin/reload", response_model=ReloadResponse,
             dependencies=[requires("admin")], responses=ERRORS)
async def reload_models(request: Request):
    """Re-resolve every served ref now (as the periodic poll does) and load
    the versions their aliases point at."""
    from starlette.concurrency import run_in_threadpool

    slots = serving(request).slots
    changed = await run_in_threadpool(slots.refresh)
    return FastJSONResponse({"changed": changed, "versions": {
        n: (s.current.number if s.current else None) for n, s in slots.slots.items()}})
