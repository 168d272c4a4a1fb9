"""The Open Inference Protocol (KServe V2) REST endpoints, with the binary
tensor data extension that Triton's and KServe's clients use by default.

Each signature column is one input tensor of shape ``[n]`` (or ``[n, 1]``),
named after the column; a single 2-D tensor ``[n, columns]`` with the columns
in signature order is accepted too. Outputs: ``predictions`` (labels or
values) and, for classifiers, ``probabilities`` ``[n, classes]``.

Binary extension: with an ``Inference-Header-Content-Length: N`` header the
body's first N bytes are the JSON request and the rest holds the inputs whose
``parameters.binary_data_size`` is set, in order, as raw little-endian tensors
(BYTES elements each prefixed by a 4-byte little-endian length). Outputs are
returned the same way when an output asks ``binary_data: true`` or the request
sets ``binary_data_output: true``.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

import shipyard
from shipyard.serve._auth import requires
from shipyard.serve._responses import ORJSON_OPTIONS, FastJSONResponse, ServeError
from shipyard.serve._inference import parse_json, predict, serving
from shipyard.serve._openapi import json_body
from shipyard.deploy import Schema, frame_from_columns

router = APIRouter(tags=["open inference protocol (v2)"], default_response_class=FastJSONResponse)

DTYPES: dict[str, Any] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "BYTES": None,
}
HEADER = "inference-header-content-length"
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                   "INT64", "FP16", "FP32", "FP64", "BYTES"]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


class InferInput(BaseModel):
    name: str
    shape: list[int] = Field(description="`[n]` or `[n, 1]` per column; `[n, k]` for one "
                                         "tensor holding all k columns.")
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size`: bytes of this tensor after the JSON header.")
    data: list[Any] | None = Field(None, description="Row-major values (nested or flat); "
                                                     "omitted when sent as binary.")


class RequestedOutput(BaseModel):
    name: Literal["predictions", "probabilities"]
    parameters: dict[str, Any] | None = Field(None, description="`binary_data`: bool.")


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_output`: return every output as binary.")
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutput]


class V2Error(BaseModel):
    error: str


V2_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": V2Error} for c in (400, 401, 403, 404, 413, 415, 422, 429)}


def bad(message: str, status: int = 400) -> ServeError:
    return ServeError(status, "invalid_request" if status == 400 else "invalid_input", message)


# ------------------------------------------------------------- metadata
@router.get("/v2/health/live", responses=V2_ERRORS)
async def live():
    """Liveness (no key needed)."""
    return FastJSONResponse({"live": True})


@router.get("/v2/health/ready", responses={503: {"model": V2Error}})
async def ready(request: Request):
    """Readiness: every served model is loaded (no key needed)."""
    ok = serving(request).slots.ready
    return FastJSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/v2", response_model=ServerMetadata, dependencies=[requires("predict")],
            responses=V2_ERRORS)
async def server_metadata():
    """Server name, version and the protocol extensions it supports."""
    return FastJSONResponse({"name": "shipyard", "version": shipyard.__version__,
                             "extensions": ["binary_tensor_data"]})


def _loaded(request: Request, name: str, version: str | None):
    slot = serving(request).slots.get(name)
    loaded = slot.pick()  # the primary; under a rollout the candidate is served too
    if version is not None and version != str(loaded.number):
        held = {str(n): m for n, m in slot.versions().items()}
        if version not in held:
            raise ServeError(404, "version_not_found",
                             f"model {name!r} version {version[:20]!r} is not served (version "
                             f"{', '.join(held) or loaded.number} is)")
        return held[version]
    return loaded


def _output_datatype(loaded) -> str:
    classes = loaded.classes
    if loaded.task == "regression" or classes is None:
        return "FP64"
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "BYTES"


def _metadata(request: Request, name: str, version: str | None):
    loaded = _loaded(request, name, version)
    outputs = [{"name": "predictions", "datatype": _output_datatype(loaded), "shape": [-1]}]
    if loaded.has_probabilities:
        outputs.append({"name": "probabilities", "datatype": "FP64",
                        "shape": [-1, len(loaded.classes or [])]})
    return FastJSONResponse({
        "name": name, "versions": [str(loaded.number)], "platform": "shipyard",
        "inputs": [{"name": c.name, "datatype": c.datatype, "shape": [-1]}
                   for c in loaded.schema.columns],
        "outputs": outputs})


def _ready(request: Request, name: str, version: str | None):
    _loaded(request, name, version)
    return FastJSONResponse({"name": name, "ready": True})


@router.get("/v2/models/{name}", response_model=ModelMetadata,
            dependencies=[requires("predict")], responses=V2_ERRORS)
async def model_metadata(name: str, request: Request):
    """Inputs (one per signature column) and outputs with datatypes and shapes."""
    return _metadata(request, name, None)


@router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata,
            dependencies=[requires("predict")], responses=V2_ERRORS)
async def model_version_metadata(name: str, version: str, request: Request):
    """Metadata of one version (the one served)."""
    return _metadata(request, name, version)


@router.get("/v2/models/{name}/ready", response_model=ModelReady,
            dependencies=[requires("predict")], responses=V2_ERRORS)
async def model_ready(name: str, request: Request):
    """200 when the model is loaded."""
    return _ready(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", response_model=ModelReady,
            dependencies=[requires("predict")], responses=V2_ERRORS)
async def model_version_ready(name: str, version: str, request: Request):
    """200 when this version is the one loaded."""
    return _ready(request, name, version)


# ---------------------------------------------------------------- infer
_INFER_DOC = json_body(InferRequest, extra_media={"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}})


@router.post("/v2/models/{name}/infer", response_model=InferResponse,
             dependencies=[requires("predict")], responses=V2_ERRORS, openapi_extra=_INFER_DOC)
async def infer(name: str, request: Request):
    """Inference, JSON or with binary tensors (see the module documentation)."""
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer", response_model=InferResponse,
             dependencies=[requires("predict")], responses=V2_ERRORS, openapi_extra=_INFER_DOC)
async def infer_version(name: str, version: str, request: Request):
    """Inference on one version (the one served)."""
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media not in ("application/json", "application/octet-stream"):
        raise ServeError(415, "unsupported_media_type",
                         f"content type {media[:100]!r} is not supported; send "
                         "application/json or application/octet-stream")
    _loaded(request, name, version)  # 404 before reading the body
    body = _decompress(request, await request.body())
    header_len = request.headers.get(HEADER)
    if header_len is not None:
        try:
            n = int(header_len)
        except ValueError as exc:
            raise bad(f"{HEADER} must be an integer, got {header_len[:20]!r}") from exc
        if not 0 < n <= len(body):
            raise bad(f"{HEADER} is {n} but the body has {len(body)} bytes")
        doc, binary = parse_json(body[:n]), memoryview(body)[n:]
    else:
        doc, binary = parse_json(body), memoryview(b"")
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) \
            or not doc["inputs"]:
        raise bad("the request must be a JSON object with a non-empty 'inputs' list")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad("'parameters' must be an object")
    tensors = _read_inputs(doc["inputs"], binary)
    wanted = _requested_outputs(doc.get("outputs"), bool(params.get("binary_data_output")))

    loaded, result = await predict(request, name, lambda schema: _frame(schema, tensors),
                                   "v2.infer")
    return _respond(request, doc, name, loaded, result, wanted)


def _decompress(request: Request, body: bytes) -> bytes:
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ServeError(415, "unsupported_media_type",
                         f"content encoding {encoding[:40]!r} is not supported")
    limit = serving(request).max_body_bytes
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)  # bounded: no decompression bombs
    except zlib.error as exc:
        raise bad(f"the body is not valid {encoding}: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise ServeError(413, "body_too_large",
                         f"the decompressed body exceeds {limit} bytes")
    return out


def _read_inputs(inputs: list, binary: memoryview) -> list[tuple[str, list[int], Any]]:
    tensors, offset, seen = [], 0, set()
    for k, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise bad(f"inputs[{k}] must be an object")
        name, shape, datatype = inp.get("name"), inp.get("shape"), inp.get("datatype")
        if not isinstance(name, str) or not name:
            raise bad(f"inputs[{k}]: 'name' must be a non-empty string")
        where = f"input {name[:100]!r}"
        if name in seen:
            raise bad(f"{where} appears twice")
        seen.add(name)
        if datatype not in DTYPES:
            raise bad(f"{where}: datatype {str(datatype)[:20]!r} is not one of "
                      f"{', '.join(DTYPES)}")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
                or not all(type(d) is int and 0 <= d < 2**31 for d in shape)):
            raise bad(f"{where}: shape must be a list of 1 or 2 non-negative integers")
        count = math.prod(shape)
        params = inp.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad(f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise bad(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise bad(f"{where}: binary_data_size {size} runs past the end of the body "
                          f"({len(binary) - offset} bytes left)")
            values = _from_binary(where, datatype, count, binary[offset:offset + size])
            offset += size
        else:
            if "data" not in inp:
                raise bad(f"{where}: no 'data' and no binary_data_size")
            values = _from_json(where, datatype, count, inp["data"])
        tensors.append((name, shape, values))
    if offset != len(binary):
        raise bad(f"{len(binary) - offset} bytes of binary data follow the inputs unused")
    return tensors


def _from_binary(where: str, datatype: str, count: int, chunk: memoryview) -> Any:
    if datatype == "BYTES":
        items, pos, raw = [], 0, chunk.tobytes()
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise bad(f"{where}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise bad(f"{where}: BYTES element runs past its tensor")
            items.append(raw[pos:pos + length])
            pos += length
        if len(items) != count:
            raise bad(f"{where}: {len(items)} BYTES elements for shape holding {count}")
        return items
    dtype = DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise bad(f"{where}: {len(chunk)} bytes of {datatype} for a shape holding {count} "
                  f"elements ({count * dtype.itemsize} bytes expected)")
    return np.frombuffer(chunk, dtype=dtype).copy()


def _flatten(data: Any) -> list:
    # Iterative: nesting depth is whatever the client sent.
    out, stack = [], [iter(data if isinstance(data, list) else [data])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_json(where: str, datatype: str, count: int, data: Any) -> Any:
    flat = _flatten(data)
    if len(flat) != count:
        raise bad(f"{where}: {len(flat)} values for a shape holding {count}")
    if datatype == "BYTES":
        for i, v in enumerate(flat):
            if not isinstance(v, str):
                raise bad(f"{where}: element {i} must be a string for BYTES", 422)
        return flat
    if datatype == "BOOL":
        for i, v in enumerate(flat):
            if not isinstance(v, bool):
                raise bad(f"{where}: element {i} must be true or false for BOOL", 422)
        return flat
    for i, v in enumerate(flat):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(f"{where}: element {i} must be a number for {datatype}, got "
                      f"{str(v)[:40]!r}", 422)
        if datatype.startswith(("INT", "UINT")) and not isinstance(v, int):
            raise bad(f"{where}: element {i} must be an integer for {datatype}", 422)
    try:
        return np.asarray(flat, dtype=DTYPES[datatype])
    except (OverflowError, ValueError) as exc:
        raise bad(f"{where}: a value does not fit {datatype}", 422) from exc


def _column_values(where: str, values: Any) -> Any:
    if isinstance(values, np.ndarray):
        return values if values.dtype.kind in "iuf" else values.tolist()
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise bad(f"{where}: element {i} is not UTF-8 text", 422) from exc
        out.append(v)
    return out


def _frame(schema: Schema, tensors: list[tuple[str, list[int], Any]]):
    names = schema.names
    if len(tensors) == 1 and tensors[0][0] not in names and len(tensors[0][1]) == 2:
        name, shape, values = tensors[0]
        if shape[1] != len(names):
            raise bad(f"input {name[:100]!r}: shape {shape} has {shape[1]} columns; the model "
                      f"takes {len(names)} ({', '.join(names)})", 422)
        n = shape[0]
        rows = values.reshape(n, len(names)) if isinstance(values, np.ndarray) else values
        columns = {}
        for j, col in enumerate(names):
            part = rows[:, j] if isinstance(rows, np.ndarray) else rows[j::len(names)]
            columns[col] = _column_values(f"input {name[:100]!r} column {col!r}", part)
        return frame_from_columns(schema, columns)
    columns = {}
    for name, shape, values in tensors:
        if len(shape) == 2 and shape[1] != 1:
            raise bad(f"input {name[:100]!r}: shape {shape}; a column input is [n] or [n, 1]",
                      422)
        columns[name] = _column_values(f"input {name[:100]!r}", values)
    return frame_from_columns(schema, columns)


def _requested_outputs(outputs: Any, binary_default: bool) -> list[tuple[str, bool]] | None:
    if outputs is None:
        return None if not binary_default else [("*", True)]
    if not isinstance(outputs, list):
        raise bad("'outputs' must be a list")
    wanted = []
    for k, out in enumerate(outputs):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise bad(f"outputs[{k}] must be an object with a 'name'")
        if out["name"] not in ("predictions", "probabilities"):
            raise bad(f"unknown output {out['name'][:100]!r}; outputs: predictions, "
                      "probabilities")
        params = out.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad(f"outputs[{k}]: 'parameters' must be an object")
        wanted.append((out["name"], bool(params.get("binary_data", binary_default))))
    return wanted


def _respond(request: Request, doc: dict, name: str, loaded, result,
             wanted: list[tuple[str, bool]] | None) -> Response:
    datatype = _output_datatype(loaded)
    preds = result.predictions
    if datatype == "BYTES":
        preds = np.asarray([str(p) for p in preds], dtype=object)
    elif datatype == "INT64":
        preds = preds.astype(np.int64)
    elif datatype == "BOOL":
        preds = preds.astype(np.bool_)
    else:
        preds = preds.astype(np.float64)
    available = {"predictions": (preds, datatype)}
    if result.probabilities is not None:
        available["probabilities"] = (result.probabilities, "FP64")
    if wanted is None:
        wanted = [(n, False) for n in available]
    elif wanted == [("*", True)]:
        wanted = [(n, True) for n in available]
    outputs, chunks = [], []
    for out_name, as_binary in wanted:
        if out_name not in available:
            raise bad(f"output {out_name!r} is not available for this model")
        arr, dt = available[out_name]
        entry: dict[str, Any] = {"name": out_name, "datatype": dt, "shape": list(arr.shape)}
        if as_binary:
            raw = (b"".join(struct.pack("<I", len(b)) + b
                            for b in (str(v).encode() for v in arr.ravel()))
                   if dt == "BYTES" else np.ascontiguousarray(arr, dtype=DTYPES[dt]).tobytes())
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        outputs.append(entry)
    rid = doc.get("id") if isinstance(doc.get("id"), str) else request.state.request_id
    header = orjson.dumps({"model_name": name, "model_version": str(loaded.number), "id": rid,
                           "outputs": outputs}, option=ORJSON_OPTIONS)
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})
