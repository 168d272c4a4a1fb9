"""MLflow's scoring protocol (``mlflow models serve``): ``POST /invocations``
with ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs``
(JSON) or a CSV body, answering ``{"predictions": [...]}``; ``GET /ping``,
``/health`` and ``/version``. Clients written for MLflow switch unchanged.

A server that serves one model answers ``/invocations`` with it; with
several, name the model in ``?model=NAME``.
"""

from __future__ import annotations

import io
import math
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

import shipyard
from shipyard.serve._auth import requires
from shipyard.serve._responses import FastJSONResponse, ServeError
from shipyard.serve._inference import predict, read_json, require_json, serving
from shipyard.serve._openapi import json_body
from shipyard.deploy import (
    Schema,
    frame_from_columns,
    frame_from_records,
    frame_from_rows,
    invalid,
)

router = APIRouter(tags=["mlflow scoring protocol"], default_response_class=FastJSONResponse)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class DataframeSplit(BaseModel):
    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class InvocationsRequest(BaseModel):
    """Exactly one of the four input formats (``params`` is accepted and ignored)."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    instances: list[Any] | dict[str, list[Any]] | None = Field(
        None, description="Records, rows in signature order, or {column: [values]}.")
    inputs: list[Any] | dict[str, list[Any]] | None = Field(
        None, description="Records, rows in signature order, or {column: [values]}.")
    params: dict[str, Any] | None = None


class InvocationsResponse(BaseModel):
    predictions: list[Any]


class MlflowError(BaseModel):
    error_code: str
    message: str


MLFLOW_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": MlflowError} for c in (400, 401, 403, 404, 413, 415, 422, 429)}


@router.get("/ping", response_class=PlainTextResponse)
async def ping() -> PlainTextResponse:
    """MLflow's health check (no key needed)."""
    return PlainTextResponse("\n")


@router.get("/health", response_class=PlainTextResponse)
async def health() -> PlainTextResponse:
    """MLflow's health check (no key needed)."""
    return PlainTextResponse("\n")


@router.get("/version", response_class=PlainTextResponse, dependencies=[requires("predict")],
            responses=MLFLOW_ERRORS)
async def version() -> PlainTextResponse:
    """The server version."""
    return PlainTextResponse(shipyard.__version__)


def _builder(doc: Any):
    if not isinstance(doc, dict):
        raise invalid("the body must be a JSON object with one of " + ", ".join(FORMATS))
    given = [k for k in FORMATS if k in doc]
    extra = [k for k in doc if k not in FORMATS and k != "params"]
    if len(given) != 1 or extra:
        raise invalid("the body must have exactly one of " + ", ".join(FORMATS)
                      + (f"; unknown field {str(extra[0])[:60]!r}" if extra else ""))
    key = given[0]
    value = doc[key]
    if key == "dataframe_split":
        return lambda schema: _split(schema, value)
    if key == "dataframe_records":
        return lambda schema: frame_from_records(schema, value)
    return lambda schema: _tensor_like(schema, key, value)


def _split(schema: Schema, value: Any):
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) \
            or not isinstance(value.get("data"), list):
        raise invalid("'dataframe_split' must be an object with 'columns' and 'data' lists")
    cols, rows = value["columns"], value["data"]
    if not all(isinstance(c, str) for c in cols):
        raise invalid("'dataframe_split.columns' must be column names")
    if len(set(cols)) != len(cols):
        raise invalid("'dataframe_split.columns' names a column twice")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(cols):
            raise invalid(f"dataframe_split row {i}: expected a list of {len(cols)} values")
    return frame_from_columns(schema, {c: [r[j] for r in rows] for j, c in enumerate(cols)})


def _tensor_like(schema: Schema, key: str, value: Any):
    if isinstance(value, dict):
        return frame_from_columns(schema, value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return frame_from_records(schema, value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return frame_from_rows(schema, value)
    raise invalid(f"'{key}' must be a list of records, a list of rows or {{column: [values]}}")


def _csv_builder(body: bytes):
    import pandas as pd

    def build(schema: Schema):
        text_cols = {c.name: str for c in schema.columns
                     if c.kind != "numeric" and not c.is_bool}
        try:
            frame = pd.read_csv(io.BytesIO(body), dtype=text_cols, keep_default_na=True)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ServeError(400, "invalid_csv", f"the body is not valid CSV: "
                                                 f"{str(exc)[:200]}") from exc
        columns = {str(c): [None if _missing(v) else (v.item() if hasattr(v, "item") else v)
                            for v in frame[c].tolist()] for c in frame.columns}
        return frame_from_columns(schema, columns)

    return build


PARQUET = ("application/vnd.apache.parquet", "application/x-parquet")


def _parquet_builder(body: bytes):
    """A Parquet file as the body (MLflow's scoring server takes these too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def build(schema: Schema):
        try:
            table = pq.read_table(pa.BufferReader(body))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ServeError(400, "invalid_parquet", f"the body is not a valid Parquet file: "
                                                     f"{str(exc)[:200]}") from exc
        return frame_from_columns(schema, {name: table.column(name).to_pylist()
                                           for name in table.column_names})

    return build


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@router.post("/invocations", response_model=InvocationsResponse,
             dependencies=[requires("predict")], responses=MLFLOW_ERRORS,
             openapi_extra=json_body(InvocationsRequest, extra_media={
                 "text/csv": {"schema": {"type": "string"}},
                 PARQUET[0]: {"schema": {"type": "string", "format": "binary"}}}))
async def invocations(request: Request,
                      model: str | None = Query(None, max_length=200,
                                                description="Model name; needed only when "
                                                            "several are served.")):
    """Score a DataFrame or tensor input like ``mlflow models serve``."""
    slots = serving(request).slots.slots
    if model is None:
        if len(slots) != 1:
            raise ServeError(400, "model_required", "several models are served: name one "
                             f"with ?model=NAME ({', '.join(slots)})")
        model = next(iter(slots))
    media = require_json(request, "text/csv", *PARQUET)
    if media == "text/csv":
        build = _csv_builder(await request.body())
    elif media in PARQUET:
        build = _parquet_builder(await request.body())
    else:
        build = _builder(await read_json(request, nan_literals=True))
    _, result = await predict(request, model, build, "mlflow.invocations")
    return FastJSONResponse({"predictions": result.predictions})
