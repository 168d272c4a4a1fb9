"""Log in with an API key, log out.

The login form is protected against login CSRF with a double-submit token:
the form carries a random token that must equal the one in a short-lived
HttpOnly, SameSite=Strict cookie set with the form.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from shipyard.ui._sessions import COOKIE, LOGIN_COOKIE, SESSION_SECONDS, session_cookie

router = APIRouter()
LOGIN_TOKEN_SECONDS = 3600


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only (no ``//host``).

    >>> safe_next("/runs?x=1"), safe_next("//evil.example"), safe_next("https://evil")
    ('/runs?x=1', '/runs', '/runs')
    """
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or len(target) > 2000 or not target.isprintable():
        return "/runs"
    return target


def _login_form(request: Request, *, status: int = 200, error: str | None = None,
                next_path: str = "/runs") -> Response:
    ui = request.app.state.ui
    token = secrets.token_urlsafe(32)
    response = ui.page(request, "login.html", status=status, error=error, login_token=token,
                       next_path=next_path, active="")
    response.headers.append("set-cookie", session_cookie(
        LOGIN_COOKIE, token, secure=request.url.scheme == "https",
        max_age=LOGIN_TOKEN_SECONDS, path=request.scope.get("root_path") or "/"))
    return response


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    ui = request.app.state.ui
    session = getattr(request.state, "ui_session", None)
    if session is not None and ui.sessions.auth:
        return RedirectResponse(request.scope.get("root_path", "") + safe_next(next),
                                status_code=303)
    return _login_form(request, next_path=safe_next(next))


@router.post("/login")
def login(request: Request, key: str = Form(""), login_token: str = Form(""),
          next: str = Form("/runs")) -> Response:
    from shipyard.errors import AuthenticationError

    ui = request.app.state.ui
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    target = safe_next(next)
    if not cookie or not login_token or not hmac.compare_digest(cookie.encode(),
                                                               login_token.encode()):
        return _login_form(request, status=403, next_path=target,
                           error="the login form expired or came from another site; "
                                 "try again")
    try:
        info = ui.ws.keys.verify(key.strip()) if ui.sessions.auth else None
    except AuthenticationError as exc:
        return _login_form(request, status=401, next_path=target,
                           error=f"login refused: {exc.message}")
    session = ui.sessions.open(info)
    response = RedirectResponse(request.scope.get("root_path", "") + target, status_code=303)
    root = request.scope.get("root_path") or "/"
    secure = request.url.scheme == "https"
    response.headers.append("set-cookie", session_cookie(COOKIE, session.id, secure=secure,
                                                         max_age=SESSION_SECONDS, path=root))
    response.headers.append("set-cookie", session_cookie(LOGIN_COOKIE, "", secure=secure,
                                                         max_age=0, path=root))
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    ui = request.app.state.ui
    session = getattr(request.state, "ui_session", None)
    if session is not None:
        ui.sessions.close(session.id)
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.headers.append("set-cookie", session_cookie(
        COOKIE, "", secure=request.url.scheme == "https", max_age=0, path=root or "/"))
    return response
