"""What every protocol shares: find the model, validate, predict, log.

Protocol routers only translate their wire format into a column mapping (or
DataFrame builder) and the :class:`Prediction` back into their response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from shipyard.errors import ServeError, ShipyardError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.serve._auth import Authenticator
    from shipyard.serve._microbatch import MicroBatcher
    from shipyard.serve._prometheus import ServerMetrics
    from shipyard.deploy import LoadedModel, Prediction, PredictionLog, Schema
    from shipyard.serve._slots import ModelSlots

#: Up to this many rows a prediction runs on the event loop: a thread hop
#: costs about as much as predicting one small row. Larger ones go to a thread.
INLINE_ROWS = 64


@dataclass
class Serving:
    """Everything one app needs, kept on ``app.state.serving``."""

    ws: Workspace
    slots: ModelSlots
    auth: Authenticator
    metrics: ServerMetrics
    predlog: PredictionLog | None
    max_body_bytes: int
    max_explain_rows: int = 20
    #: Merges concurrent requests to one version (:mod:`shipyard.serve._microbatch`).
    batcher: MicroBatcher | None = None


def serving(request: Request) -> Serving:
    return request.app.state.serving


async def read_json(request: Request, *, nan_literals: bool = False) -> Any:
    """The body parsed as JSON (see :func:`parse_json`)."""
    body = await request.body()
    return parse_json(body, nan_literals=nan_literals)


def parse_json(body: bytes, *, nan_literals: bool = False) -> Any:
    """Strict JSON (orjson). With ``nan_literals`` (MLflow's ``/invocations``,
    whose own server accepts them) the ``NaN``, ``Infinity`` and
    ``-Infinity`` literals Python's ``json`` writes are read as floats too.

    Raises
    ------
    ServeError
        400 naming the problem: empty body, invalid UTF-8, a NaN/Infinity
        literal, nesting too deep, or where the JSON breaks.
    """
    if not body:
        raise ServeError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
        cause: Exception = exc
    if "UTF-8" in problem:
        raise ServeError(400, "invalid_json", "the body is not valid JSON: invalid UTF-8 "
                         f"({problem})") from cause
    if "depth limit" in problem:
        raise ServeError(400, "invalid_json", "the body is nested too deeply (at most 1,024 "
                         "levels)") from cause
    if nan_literals:  # read what Python's json (and so MLflow's server) reads
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            pass
    literal = _non_finite_literal(body)
    if literal is not None and not nan_literals:
        raise ServeError(400, "invalid_json", f"the body holds the literal {literal}, which "
                         "JSON does not allow: send null for a missing value (MLflow's "
                         "/invocations accepts NaN and Infinity)") from cause
    raise ServeError(400, "invalid_json", f"the body is not valid JSON: {problem}") from cause


def _non_finite_literal(body: bytes) -> str | None:
    """``NaN``/``Infinity``/``-Infinity`` if the body uses one outside a string."""
    found: list[str] = []
    try:
        json.loads(body, parse_constant=lambda name: found.append(name) or 0.0)
    except (ValueError, RecursionError):
        return found[0] if found else None
    return found[0] if found else None


def require_json(request: Request, *also: str) -> str:
    """The media type, refused (415) unless JSON or one of ``also``."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in ("application/json", *also) or (not media and not also):
        return media or "application/json"
    if media.endswith("+json"):
        return "application/json"
    allowed = ", ".join(("application/json", *also))
    raise ServeError(415, "unsupported_media_type",
                     f"content type {media[:100]!r} is not supported; send {allowed}")


async def predict(request: Request, name: str, build: Callable[[Schema], pd.DataFrame],
                  endpoint: str) -> tuple[LoadedModel, Prediction]:
    """Validate with ``build`` against the model's signature, predict, log.

    Raises
    ------
    ServeError
        404 unknown model, 4xx invalid input (logged as failed requests too).
    """
    from shipyard.serve._traffic import mirror, route

    state = serving(request)
    slot = state.slots.get(name)
    loaded, build = await route(request, slot, build)  # canary / A/B; request.state.role
    request.state.model, request.state.version = name, str(loaded.number)
    started = request.state.started
    rows = None
    try:
        # Validated columns: the ONNX graph and the prediction log read them
        # as they are; only the Python model needs a DataFrame.
        rows = build(loaded.request_schema)
        frame = loaded.model_input(rows)
        if state.batcher is not None:
            result = await state.batcher.predict(loaded, frame)
        elif len(frame) <= INLINE_ROWS:
            result = loaded.predict(frame)
        else:
            result = await run_in_threadpool(loaded.predict, frame)
    except ServeError as exc:
        _log(request, state, loaded, endpoint, exc.status, started, rows, None, exc.message)
        raise
    except (ShipyardError, ValueError, TypeError) as exc:
        # Input that passed validation but the model still cannot score
        # (e.g. values so large that scaling overflows): the request's fault.
        slot.observe(loaded, error=True, latency_ms=(time.perf_counter() - started) * 1000)
        _log(request, state, loaded, endpoint, 422, started, rows, None, str(exc))
        message = exc.message if isinstance(exc, ShipyardError) else str(exc)
        raise ServeError(422, "unscorable_input",
                         f"the model could not score these inputs: {message}") from exc
    except Exception:
        slot.observe(loaded, error=True, latency_ms=(time.perf_counter() - started) * 1000)
        raise
    slot.observe(loaded, error=False, latency_ms=(time.perf_counter() - started) * 1000)
    state.metrics.rows.labels(name, str(loaded.number)).inc(len(frame))
    outputs = {"predictions": result.predictions}
    if result.probabilities is not None:
        outputs["probabilities"] = result.probabilities
    _log(request, state, loaded, endpoint, 200, started, rows, outputs, None)
    mirror(request, state, slot, loaded, build, endpoint)  # shadow: after the response
    return loaded, result


def _log(request: Request, state: Serving, loaded: LoadedModel, endpoint: str, status: int,
         started: float, frame: Any, outputs: Any, error: str | None) -> None:
    if state.predlog is None:
        return
    state.predlog.record_prediction(
        request_id=request.state.request_id, model=loaded.name, version=loaded.number,
        endpoint=endpoint, status=status, latency_ms=(time.perf_counter() - started) * 1000,
        inputs=frame, outputs=outputs, error=error,
        key_id=getattr(request.state, "key_id", None),
        role=getattr(request.state, "role", None))
