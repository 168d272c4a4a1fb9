"""Traffic on the request path: the sticky key of an A/B split, routing a
request to the primary or the candidate, and mirroring it to a shadow."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from fastapi import Request

    from shipyard.deploy import LoadedModel, Schema
    from shipyard.serve._inference import Serving
    from shipyard.serve._slots import ModelSlot

log = logging.getLogger("shipyard.serve")


def sticky_value(request: Request, key: str, body: bytes | None) -> str | None:
    """The value of ``key``: a request header, else a JSON field of the body
    (top level, first record, first value of a column, ``parameters``)."""
    value = request.headers.get(key)
    if value is not None:
        return value
    if not body:
        return None
    import orjson

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    found: Any = data.get(key)
    records, columns, params = data.get("records"), data.get("columns"), data.get("parameters")
    if found is None and isinstance(records, list) and records and isinstance(records[0], dict):
        found = records[0].get(key)
    if found is None and isinstance(columns, dict) and isinstance(columns.get(key), list) \
            and columns[key]:
        found = columns[key][0]
    if found is None and isinstance(params, dict):
        found = params.get(key)
    return None if found is None or isinstance(found, (dict, list)) else str(found)


async def route(request: Request, slot: ModelSlot, build: Callable[[Schema], pd.DataFrame]
                ) -> tuple[LoadedModel, Callable[[Schema], pd.DataFrame]]:
    """Pick the version that answers ``request`` and note its role
    (``request.state.role``): canary by request id, ab by the sticky key.
    Return it and ``build`` adapted to it (see :meth:`ModelSlot.adapt`)."""
    routing = slot.routing
    key = request.state.request_id
    if routing is not None and routing.strategy == "ab" and routing.candidate is not None:
        sticky = routing.deployment.sticky_key
        body = None if sticky in request.headers else await request.body()
        key = sticky_value(request, sticky, body) or key
    loaded = slot.pick(key)
    request.state.role = slot.role_of(loaded)
    return loaded, slot.adapt(loaded, build)


_MIRRORS: set[asyncio.Task] = set()


def mirror(request: Request, state: Serving, slot: ModelSlot, answered: LoadedModel,
           build: Callable[[Schema], pd.DataFrame], endpoint: str) -> None:
    """Under ``shadow``, send the request to the candidate as well, in a task
    that runs after the response; its answer goes to the prediction log only."""
    shadow = slot.shadow_for(answered)
    if shadow is None:
        return
    task = asyncio.get_running_loop().create_task(_shadow(
        state, shadow, slot.adapt(shadow, build), endpoint, request.state.request_id,
        getattr(request.state, "key_id", None)))
    _MIRRORS.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_MIRRORS.discard)


async def _shadow(state: Serving, shadow: LoadedModel, build, endpoint: str, rid: str,
                  key_id: str | None) -> None:
    from starlette.concurrency import run_in_threadpool

    from shipyard.errors import ServeError

    started = time.perf_counter()
    frame, outputs, status, error = None, None, 200, None
    try:
        frame = build(shadow.schema)
        result = await run_in_threadpool(shadow.predict, frame)
        outputs = {"predictions": result.predictions}
        if result.probabilities is not None:
            outputs["probabilities"] = result.probabilities
    except ServeError as exc:
        status, error = exc.status, exc.message
    except (ValueError, TypeError) as exc:
        status, error = 422, str(exc)
    except Exception as exc:  # a failing shadow must never reach the client
        log.exception("shadow %s failed on request %s", shadow.version.ref, rid)
        status, error = 500, f"{type(exc).__name__}: {exc}"
    if state.predlog is not None:
        state.predlog.record_prediction(
            request_id=rid, model=shadow.name, version=shadow.number, endpoint=endpoint,
            status=status, latency_ms=(time.perf_counter() - started) * 1000, inputs=frame,
            outputs=outputs, error=error, key_id=key_id, role="shadow")


async def drain_mirrors(timeout: float = 10.0) -> None:
    """Wait (at most ``timeout`` seconds) for pending shadow requests, so
    that shutdown logs them."""
    loop = asyncio.get_running_loop()
    pending = [t for t in _MIRRORS if not t.done() and t.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
