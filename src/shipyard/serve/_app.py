"""The ASGI app: :func:`create_app` wires the protocol routers, auth, limits,
metrics and the prediction log; :func:`run` starts uvicorn (uvloop, httptools).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import shipyard
from shipyard.serve._auth import requires
from shipyard.serve._openai import openai_error_body, speaks_openai
from shipyard.serve._responses import (
    ORJSON_OPTIONS,
    FastJSONResponse,
    ServeError,
    error_body,
)

if TYPE_CHECKING:
    from shipyard import Workspace

log = logging.getLogger("shipyard.serve")
DEFAULT_MAX_BODY = 10 * 1024 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: The environment variable passing the configuration to ``--workers`` processes.
CONFIG_ENV = "SHIPYARD_SERVE_CONFIG"


class FrontDoor:
    """Pure ASGI middleware around every request: request id (a sane
    ``X-Request-ID`` is kept, else a new one), body size limit (Content-Length
    and counted while streaming, 413 before the app sees it), and metrics
    labelled by route template, model and version."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Any):
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _REQUEST_ID.fullmatch(text) else None
                break
        rid = rid or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state.update(request_id=rid, started=started)
        status = {"code": 500}
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive)
                if isinstance(body, Response):
                    await body(scope, receive, send_wrapper)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # A bug: answer 500 here rather than let Starlette's outermost
            # middleware re-raise, which makes the server drop the keep-alive
            # connection without saying so.
            if status.get("started"):
                raise
            log.exception("unhandled error on %s (request %s)", scope.get("path"), rid,
                          exc_info=exc)
            await _error(scope, ServeError(500, "internal", f"internal server error "
                                                            f"(request {rid})"))(
                scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(endpoint, state.get("model", ""), state.get("version", ""),
                                 status["code"], time.perf_counter() - started,
                                 state.get("error"))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Response:
        limit = self.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return _error(scope, ServeError(400, "invalid_request",
                                                    "Content-Length is not a number"))
                if declared > limit:
                    return _too_large(scope, limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _too_large(scope, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _too_large(scope: Scope, limit: int) -> Response:
    return _error(scope, ServeError(413, "body_too_large",
                                    f"the request body exceeds {limit} bytes"),
                  close=True)


def _error(scope: Scope, exc: ServeError, *, close: bool = False) -> Response:
    scope.setdefault("state", {})["error"] = exc.code
    path = scope.get("path", "")
    status = exc.status
    if path.startswith("/invocations") and status == 422:
        status = 400  # mlflow answers every input error with 400 BAD_REQUEST
    headers = dict(exc.headers or {})
    if close:
        headers["Connection"] = "close"  # the unread rest of the body must not be parsed
    body = (openai_error_body(status, exc.code, exc.message, getattr(exc, "param", None))
            if speaks_openai(scope) else error_body(path, exc.code, exc.message))
    return Response(orjson.dumps(body, option=ORJSON_OPTIONS),
                    status_code=status, media_type="application/json", headers=headers)


# ----------------------------------------------------------- handlers
async def _serve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)
    return _error(request.scope, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(request.scope, ServeError(exc.status_code, code, str(exc.detail),
                                            dict(exc.headers or {})))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error(request.scope, ServeError(422, "invalid_request",
                                            f"{where}: {first.get('msg', 'invalid')}"))



# ------------------------------------------------------ plain routes
ops = APIRouter(tags=["operations"])


@ops.get("/healthz")
async def healthz() -> FastJSONResponse:
    """Liveness: the process answers (no key needed)."""
    return FastJSONResponse({"status": "ok"})


@ops.get("/readyz")
async def readyz(request: Request) -> FastJSONResponse:
    """Readiness: 200 when every served model is loaded, else 503 (no key needed)."""
    slots = request.app.state.serving.slots
    body = {"ready": slots.ready, "models": {
        n: {"ref": s.ref, "version": s.current.number if s.current else None,
            "last_error": s.last_error} for n, s in slots.slots.items()}}
    return FastJSONResponse(body, status_code=200 if slots.ready else 503)


@ops.get("/metrics", dependencies=[requires("metrics")],
         responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (a key with the ``metrics`` or ``admin`` scope)."""
    state = request.app.state.serving
    if state.predlog is not None:
        state.metrics.predlog_dropped.set(state.predlog.dropped)
    from prometheus_client import CONTENT_TYPE_LATEST
    from starlette.concurrency import run_in_threadpool

    # The monitor gauges: read from the DB at most once per reload interval.
    await run_in_threadpool(state.metrics.refresh_monitor, state.ws, list(state.slots.slots))

    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------ factory
def create_app(ws: Workspace, models: list[str], *, auth: bool = True,
               max_body_bytes: int = DEFAULT_MAX_BODY, max_rows: int = 10_000,
               reload_interval: float = 10.0, key_cache_ttl: float = 5.0,
               prediction_log: bool = True, log_flush_interval: float = 1.0,
               onnx: bool = True, batching: bool = True, max_batch_rows: int = 512,
               max_wait_ms: float = 2.0, mounts: dict[str, Any] | None = None,
               rag: list[str] | None = None, generator: str | None = None) -> FastAPI:
    """The prediction server for ``models`` (registry refs, e.g. ``fraud@champion``).

    Parameters
    ----------
    ws
        Workspace holding the models and API keys; the prediction log goes
        under its home.
    models
        Refs to serve, one per model name.
    auth
        False serves without API keys (local use only; logged as a warning).
    max_body_bytes
        Larger request bodies are refused with 413.
    max_rows
        Most rows one request may hold (413 beyond).
    reload_interval
        Seconds between checks that an alias still points at the loaded
        version; 0 turns polling off (``POST /v1/admin/reload`` still works).
        Also how often ``/metrics`` re-reads the served models' latest
        monitor reports (every 10 s when 0).
    key_cache_ttl
        Seconds a verified API key is reused without asking the DB; a
        revocation takes effect within it.
    prediction_log
        Log every request and response under ``<home>/predictions``.
    log_flush_interval
        Seconds between prediction-log writes.
    onnx
        Predict with a version's verified ONNX graph (ONNX Runtime) when it has
        one; else, and when False, with the Python model.
    batching
        Merge concurrent requests to the same version into one prediction.
    max_batch_rows, max_wait_ms
        Most rows a merged prediction holds; longest it waits for more
        requests (only under concurrency: a lone request never waits).
    mounts
        Other ASGI apps served on the same port, ``{path: app}`` (``shipyard
        serve --ui`` mounts the web UI at ``/ui``); a path that a route of the
        server lives under is refused, so a mount never shadows it.
    rag
        RAG collections the OpenAI-compatible chat endpoint answers from
        (``docs``, ``docs@2``; see :mod:`shipyard.serve._openai`). The
        OpenAI endpoints (``/v1/models``, ``/v1/embeddings``,
        ``/v1/chat/completions``) are always mounted; a server may serve
        collections and no models.
    generator
        Who writes the chat endpoint's answers (``extractive``, the default;
        ``local``: the bundled SmolLM2 in-process; ``openai:MODEL``), see
        :func:`shipyard.genai.generator_from_spec`.

    Returns
    -------
    FastAPI
        Models load and the log starts in its lifespan; shutdown flushes the log.
    """
    from shipyard.serve._auth import Authenticator
    from shipyard.serve._microbatch import MicroBatcher
    from shipyard.serve._inference import Serving
    from shipyard.serve._prometheus import ServerMetrics
    from shipyard.serve._mlflow import router as mlflow_router
    from shipyard.serve._slots import ModelSlots
    from shipyard.serve._openapi import install_openapi
    from shipyard.deploy import PredictionLog
    from shipyard.serve._simple import router as simple_router
    from shipyard.serve._v2 import router as v2_router
    from shipyard.serve._openai import install as install_openai, router as openai_router

    if not models and not rag:
        from shipyard.errors import ConfigError

        raise ConfigError("nothing to serve", hint="name one or more model refs "
                                                   "(fraud@champion) or RAG collections (docs)")
    slots = ModelSlots(ws, list(models), reload_interval=reload_interval, max_rows=max_rows,
                       onnx=onnx)
    metrics_ = ServerMetrics(monitor_interval=reload_interval or 10.0)
    predlog = (PredictionLog(ws.settings.home, flush_interval=log_flush_interval)
               if prediction_log else None)
    state = Serving(ws=ws, slots=slots, auth=Authenticator(ws, enabled=auth,
                                                           cache_ttl=key_cache_ttl),
                    metrics=metrics_, predlog=predlog, max_body_bytes=max_body_bytes,
                    batcher=MicroBatcher(enabled=batching, max_batch_rows=max_batch_rows,
                                         max_wait_ms=max_wait_ms))
    if not auth:
        log.warning("AUTHENTICATION IS OFF (--no-auth): anyone who can reach this server can "
                    "use it. Use it only on a trusted machine.")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(slots.load)
        await run_in_threadpool(app.state.openai.warm)
        # Models and libraries are loaded for good: move them out of the
        # collector's generations, so records queued for the prediction log do
        # not trigger full collections over them (100+ ms pauses at p99).
        import gc

        gc.collect()
        gc.freeze()
        for slot in slots.slots.values():
            metrics_.model_info.labels(slot.name, str(slot.current.number),
                                       slot.ref).set(1)
        slots.start()
        if predlog is not None:
            predlog.start()
        try:
            yield
        finally:
            slots.stop()
            from shipyard.serve._traffic import drain_mirrors

            await drain_mirrors()  # shadow answers still running: log them too
            if predlog is not None:
                await run_in_threadpool(predlog.close)

    app = FastAPI(title="Shipyard prediction server", version=shipyard.__version__,
                  description="Shipyard's JSON API, the Open Inference Protocol (v2) and "
                              "MLflow's scoring protocol for registered models.",
                  lifespan=lifespan, default_response_class=FastJSONResponse)
    app.state.serving = state
    for router in (ops, openai_router, simple_router, v2_router, mlflow_router):
        app.include_router(router)
    install_openai(app, ws, rag or [], generator)
    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(FrontDoor, max_body_bytes=max_body_bytes, metrics=metrics_)
    install_openapi(app)
    for path, sub in (mounts or {}).items():
        _mount(app, path, sub)
    return app


def _mount(app: FastAPI, path: str, sub: Any) -> None:
    from shipyard.errors import ConfigError

    path = "/" + path.strip("/")
    paths = set(_route_paths(app.routes)) | set(app.openapi().get("paths") or {})
    taken = sorted(p for p in paths if p == path or p.startswith(path + "/"))
    if path == "/" or taken:
        raise ConfigError(f"cannot mount an app at {path}: the server's own routes live there "
                          f"({', '.join(taken[:3]) or '/'})", hint="pick another path")
    app.mount(path, sub)


def _route_paths(routes: Any) -> Any:
    """Every route path, inside included routers too (FastAPI keeps those
    wrapped, with the router's own routes under ``original_router``)."""
    for route in routes:
        if isinstance(getattr(route, "path", None), str):
            yield route.path
        inner = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None)
        if inner:
            yield from _route_paths(inner)


# -------------------------------------------------------------- runner
def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: the configuration arrives in
    ``$SHIPYARD_SERVE_CONFIG`` (JSON) from :func:`run`."""
    from shipyard import Workspace

    config = orjson.loads(os.environ[CONFIG_ENV])
    ws = Workspace.open(config.pop("home"), db_url=config.pop("db_url"),
                        artifacts=config.pop("artifacts"))
    return create_app(ws, config.pop("models"), **config)


def run(ws: Workspace, models: list[str], *, host: str = "127.0.0.1", port: int = 8080,
        workers: int = 1, ssl_keyfile: str | None = None, ssl_certfile: str | None = None,
        log_level: str = "info", **options: Any) -> None:
    """Serve ``models`` with uvicorn (uvloop, httptools) until interrupted.

    ``options`` are :func:`create_app`'s keywords. With ``workers > 1`` each
    worker process builds its own app from the same configuration.
    """
    import uvicorn

    ssl = {"ssl_keyfile": ssl_keyfile, "ssl_certfile": ssl_certfile}
    common = dict(host=host, port=port, loop="uvloop", http="httptools", log_level=log_level,
                  proxy_headers=False, server_header=False, **ssl)
    if workers > 1 and options.get("mounts"):
        from shipyard.errors import ConfigError

        raise ConfigError("mounted apps need --workers 1: each worker process would hold its "
                          "own copy (and the web UI its own logins)")
    if workers > 1:
        os.environ[CONFIG_ENV] = orjson.dumps({
            "home": str(ws.settings.home), "db_url": ws.settings.db_url,
            "artifacts": ws.settings.artifacts, "models": list(models), **options}).decode()
        uvicorn.run("shipyard.serve._app:app_from_env", factory=True, workers=workers, **common)
        return
    uvicorn.run(create_app(ws, models, **options), **common)
