"""The UI's FastAPI app: templates, sessions, error pages, the page routers."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shipyard.ui._display import FILTERS
from shipyard.ui._sessions import Guard, Sessions, UiSession

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    from shipyard import Workspace

log = logging.getLogger("shipyard.ui")
HERE = Path(__file__).parent


class Ui:
    """What every page needs: the workspace, the templates, the sessions and
    the navigation. One per app: ``request.app.state.ui``."""

    def __init__(self, ws: Workspace, *, auth: bool = True):
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        self.ws = ws
        self.sessions = Sessions(ws, auth=auth)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(FILTERS)
        self.nav = navigation()
        self.assets = asset_version()
        #: Downsampled curves of ended runs (see ``_runs.downsampled``).
        self.curves: OrderedDict = OrderedDict()
        self.curves_lock = threading.Lock()
        #: Curves being read ahead of their request (see ``_runs.prefetch``).
        self.curves_pending: dict = {}
        #: Deployment traffic summaries, a few seconds old at most (see
        #: ``_deployments``): a page and its charts read the log once.
        self.traffic: OrderedDict = OrderedDict()
        self.traffic_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ui({self.ws!r}, auth={self.sessions.auth})"

    # ----------------------------------------------------------- render
    def page(self, request: Request, template: str, *, status: int = 200,
             headers: dict[str, str] | None = None, **context: Any) -> Response:
        """Render ``template`` (autoescaped) into an HTML response."""
        from starlette.responses import HTMLResponse

        return HTMLResponse(self.render(request, template, **context), status_code=status,
                            headers=headers)

    def render(self, request: Request, template: str, **context: Any) -> str:
        session: UiSession | None = request.state.ui_session \
            if hasattr(request.state, "ui_session") else None
        flash = []
        if session is not None and session.flash:
            flash, session.flash = session.flash, []
        base = {"request": request, "prefix": request.scope.get("root_path", ""),
                "session": session, "csrf": session.csrf if session else "",
                "nav": self.nav, "active": "", "flash": flash, "auth": self.sessions.auth,
                "assets": self.assets,
                "htmx": request.headers.get("hx-request") == "true"
                and request.headers.get("hx-history-restore-request") != "true",
                "url": lambda path, **q: url(request, path, **q)}
        return self.env.get_template(template).render({**base, **context})

    def refusal(self, scope: dict, status: int, message: str) -> Response:
        """An error page for the guard (it runs before any route)."""
        from starlette.requests import Request

        return self.error_page(Request(scope), status, message)

    def error_page(self, request: Request, status: int, message: str,
                   hint: str | None = None) -> Response:
        titles = {400: "Bad request", 401: "Not logged in", 403: "Forbidden",
                  404: "Not found", 405: "Method not allowed", 413: "Too large",
                  500: "Something went wrong"}
        template = "error_fragment.html" if request.headers.get("hx-request") == "true" \
            else "error.html"
        return self.page(request, template, status=status,
                         title=titles.get(status, f"Error {status}"), message=message,
                         hint=hint)


def url(request: Request, path: str, **query: Any) -> str:
    """``path`` under the UI's mount point, with ``query`` (None values and
    empty lists left out; lists repeat the name)."""
    pairs: list[tuple[str, str]] = []
    for k, v in query.items():
        if v is None or v == "" or v == []:
            continue
        if isinstance(v, (list, tuple)):
            pairs += [(k, str(x)) for x in v]
        else:
            pairs.append((k, str(v)))
    root = request.scope.get("root_path", "")
    return root + path + ("?" + urlencode(pairs) if pairs else "")


def asset_version() -> str:
    """A short hash of the static files: their URLs carry it, so browsers
    may cache them and still see a new version at once."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((HERE / "static").rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def navigation() -> list[tuple[str, str, str]]:
    """``(id, label, path)`` of the top navigation. Stages that are not
    installed (monitoring, RAG) get no entry."""
    nav = [("runs", "Runs", "/runs"), ("datasets", "Datasets", "/datasets"),
           ("models", "Models", "/models"), ("deployments", "Deployments", "/deployments")]
    if importlib.util.find_spec("shipyard.monitor._monitor") is not None:
        nav.append(("monitoring", "Monitoring", "/monitoring"))
    if importlib.util.find_spec("shipyard.genai") is not None:
        nav.append(("rag", "RAG", "/rag"))
    nav.append(("audit", "Audit log", "/audit"))
    return nav


def create_ui_app(ws: Workspace, *, auth: bool = True) -> FastAPI:
    """The web UI of workspace ``ws`` as an ASGI app.

    Server-rendered pages (Jinja2, autoescaped) with htmx for partial updates
    and uPlot for curves, both vendored: it works offline, with no build step.

    Parameters
    ----------
    ws
        The workspace shown.
    auth
        Log in with an API key of the workspace (``ws.keys``); any valid key
        reads, only an ``admin`` key changes things. ``False``: everyone is a
        local admin, for a trusted machine only.

    Returns
    -------
    fastapi.FastAPI
        Mount it in another app or run it with uvicorn (:func:`run`).
    """
    missing = [name for name, modules in (("fastapi", ["fastapi"]), ("uvicorn", ["uvicorn"]),
                                          ("jinja2", ["jinja2"]),
                                          ("python-multipart", ["python_multipart",
                                                                "multipart"]))
               if not any(importlib.util.find_spec(m) for m in modules)]
    if missing:
        from shipyard.errors import ConfigError

        raise ConfigError(f"the web UI needs {', '.join(missing)}, which are not installed",
                          hint="pip install 'shipyard[ui]'")
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.responses import PlainTextResponse, RedirectResponse
    from starlette.staticfiles import StaticFiles

    from shipyard.errors import NotFoundError, ShipyardError
    from shipyard.ui import _audit, _datasets, _deployments, _login, _models, _runs

    ui = Ui(ws, auth=auth)
    app = FastAPI(title="Shipyard UI", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = ui
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (_login, _runs, _datasets, _models, _deployments, _audit):
        app.include_router(module.router)
    if any(n[0] == "monitoring" for n in ui.nav):
        from shipyard.ui import _monitoring

        app.include_router(_monitoring.router)
    if any(n[0] == "rag" for n in ui.nav):
        from shipyard.ui import _rag

        app.include_router(_rag.router)

    def home(request: Request) -> Response:
        return RedirectResponse(url(request, "/runs"), status_code=303)

    # A plain Starlette route: FastAPI would read the annotation `Request`
    # (imported for type checkers only) as a required query parameter.
    app.add_route("/", home, include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return PlainTextResponse("ok")

    @app.exception_handler(NotFoundError)
    def not_found(request: Request, exc: NotFoundError) -> Response:
        return ui.error_page(request, 404, exc.message, exc.hint)

    @app.exception_handler(ShipyardError)
    def bad_input(request: Request, exc: ShipyardError) -> Response:
        return ui.error_page(request, 400, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        return ui.error_page(request, 400, f"invalid request: {problems}"[:500])

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return ui.error_page(request, 404, f"no page at {request.url.path[:200]}")
        return ui.error_page(request, exc.status_code, str(exc.detail)[:500])

    @app.exception_handler(Exception)
    def crashed(request: Request, exc: Exception) -> Response:
        log.exception("shipyard ui: %s %s failed", request.method, request.url.path)
        return ui.error_page(request, 500, "the page could not be built; the server log "
                             "has the details")

    app.add_middleware(Guard, sessions=ui.sessions, refuse=ui.refusal)
    return app


def run(ws: Workspace, *, host: str = "127.0.0.1", port: int = 8090, auth: bool = True,
        log_level: str = "warning") -> None:
    """Serve the UI of ``ws`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_ui_app(ws, auth=auth), host=host, port=port, log_level=log_level,
                proxy_headers=False)
