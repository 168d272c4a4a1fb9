"""Browser sessions of the UI, and the guard every request passes.

A session is opened by logging in with an API key (``ws.keys.verify``). The
browser gets only a random session id in an HttpOnly, SameSite=Strict
cookie; the key stays with the browser's user, the server keeps the key's id,
name and whether it is an ``admin`` key. A revoked or expired key ends its
sessions within :data:`RECHECK_SECONDS`.

Every request but the login page and the static files needs a session. Every
state-changing request (any method but GET/HEAD/OPTIONS) must carry the
session's CSRF token, as the ``csrf_token`` form field or the
``X-CSRF-Token`` header, and an ``Origin`` (when the browser sends one) of
this server; otherwise it is refused with 403 before any route runs. So a new
form cannot forget its CSRF check.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

if TYPE_CHECKING:
    from shipyard import Workspace

COOKIE = "shipyard_ui_session"
LOGIN_COOKIE = "shipyard_ui_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
#: A session lasts this long after login, whatever is done with it.
SESSION_SECONDS = 12 * 3600
#: How often a session's key is checked again (revocation, expiry).
RECHECK_SECONDS = 5.0
#: Most sessions kept; the oldest go first.
MAX_SESSIONS = 10_000
#: The largest form body the UI reads (its forms are a few fields).
MAX_FORM_BYTES = 64 * 1024
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = ("/login", "/healthz")


@dataclass
class UiSession:
    """One logged-in browser.

    Attributes
    ----------
    id
        The cookie's value (random, 256 bits).
    key_id, key_name
        The API key that logged in (``None``/``"local"`` without auth).
    admin
        Whether the key has the ``admin`` scope: only then may the session
        change anything.
    csrf
        The token every state-changing request must carry.
    """

    id: str
    key_id: str | None
    key_name: str
    admin: bool
    csrf: str
    created: float
    checked: float
    flash: list[tuple[str, str]] = field(default_factory=list)

    @property
    def actor(self) -> str:
        """Who the audit log names for changes made in this session."""
        if self.key_id is None:
            return "ui:local"
        name = "".join(ch for ch in self.key_name if ch.isprintable())[:120]
        return f"ui:{name} (key {self.key_id})"


class Sessions:
    """The sessions of one UI process (in memory: a restart logs everyone out)."""

    def __init__(self, ws: Workspace, *, auth: bool = True):
        self._ws = ws
        self.auth = auth
        self._items: dict[str, UiSession] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Sessions(auth={self.auth}, open={len(self._items)})"

    def open(self, key_info: Any | None) -> UiSession:
        """A new session for the key ``key_info`` (an ApiKeyInfo), or a local
        admin session when auth is off."""
        now = time.time()
        if key_info is None:
            session = UiSession(secrets.token_urlsafe(32), None, "local", True,
                                secrets.token_urlsafe(32), now, now)
        else:
            session = UiSession(secrets.token_urlsafe(32), key_info.key_id, key_info.name,
                                key_info.allows("admin"), secrets.token_urlsafe(32), now, now)
        with self._lock:
            if len(self._items) >= MAX_SESSIONS:
                oldest = min(self._items.values(), key=lambda s: s.created)
                self._items.pop(oldest.id, None)
            self._items[session.id] = session
        return session

    def get(self, session_id: str | None) -> UiSession | None:
        """The live session with this id; None when unknown, expired, or its
        key is no longer active."""
        if not session_id:
            return None
        with self._lock:
            session = self._items.get(session_id)
        if session is None:
            return None
        now = time.time()
        if now - session.created > SESSION_SECONDS:
            self.close(session_id)
            return None
        if session.key_id is not None and now - session.checked > RECHECK_SECONDS:
            if not self._key_active(session.key_id):
                self.close(session_id)
                return None
            session.checked = now
        return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._items.pop(session_id, None)

    def _key_active(self, key_id: str) -> bool:
        from shipyard.errors import NotFoundError

        try:
            return self._ws.keys.get(key_id).active
        except NotFoundError:
            return False


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookies(scope: dict) -> dict[str, str]:
    from http.cookies import SimpleCookie

    raw = _header(scope, b"cookie")
    if not raw:
        return {}
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header: treat as no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


def relative_path(scope: dict) -> str:
    """The request path below the UI's mount point."""
    path = scope.get("path", "/")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def session_cookie(name: str, value: str, *, secure: bool, max_age: int | None,
                   path: str = "/") -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; object-src 'none'; "
     b"base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
)


class Guard:
    """ASGI middleware: sessions, login redirects, CSRF and Origin checks,
    security headers.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    sessions
        Where sessions live.
    refuse
        ``refuse(scope, status, message) -> ASGI response`` renders a refusal page.
    """

    def __init__(self, app: Any, sessions: Sessions,
                 refuse: Callable[[dict, int, str], Any]):
        self.app = app
        self.sessions = sessions
        self.refuse = refuse

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = relative_path(scope)
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        cookies = _cookies(scope)
        session = self.sessions.get(cookies.get(COOKIE))
        new_cookie = None
        secure = scope.get("scheme") == "https"
        if session is None and not self.sessions.auth and not path.startswith(PUBLIC_PREFIXES):
            session = self.sessions.open(None)
            new_cookie = session_cookie(COOKIE, session.id, secure=secure,
                                        max_age=SESSION_SECONDS,
                                        path=scope.get("root_path") or "/")
        method = scope.get("method", "GET")
        if session is None and not public:
            await self._to_login(scope, send, path)
            return
        if method not in SAFE_METHODS:
            origin = _header(scope, b"origin")
            host = _header(scope, b"host")
            if origin is not None and (host is None or origin.split("://", 1)[-1] != host):
                await self.refuse(scope, 403, "refused: the request came from another site "
                                  "(Origin does not match this server)")(scope, receive, send)
                return
            body = b""
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_FORM_BYTES:
                    await self.refuse(scope, 413, "refused: the form is too large")(
                        scope, receive, send)
                    return
            if path != "/login":
                token = _header(scope, CSRF_HEADER)
                if token is None:
                    kind = (_header(scope, b"content-type") or "").split(";")[0].strip()
                    if kind == "application/x-www-form-urlencoded":
                        values = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD)
                        token = values[0] if values else None
                if session is None or not token or not hmac.compare_digest(
                        token.encode(), session.csrf.encode()):
                    await self.refuse(scope, 403, "refused: missing or wrong CSRF token "
                                      "(reload the page and try again)")(scope, receive, send)
                    return
            receive = _replay(body, receive)
        scope.setdefault("state", {})["ui_session"] = session

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"cache-control" not in present:
                    # Static files are addressed with a content hash (?v=...):
                    # cache them; pages carry data, never cache those.
                    headers.append((b"cache-control", b"public, max-age=86400"
                                    if path.startswith(PUBLIC_PREFIXES) else b"no-store"))
                if new_cookie:
                    headers.append((b"set-cookie", new_cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _to_login(self, scope: dict, send: Callable, path: str) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + ("?" + query if query else "")
        root = scope.get("root_path", "")
        location = f"{root}/login?next={quote(target, safe='')}"
        is_htmx = _header(scope, b"hx-request") == "true"
        # htmx follows redirects inside the page; ask it to navigate instead.
        status, headers = (200, [(b"hx-redirect", location.encode("latin-1"))]) if is_htmx \
            else (303, [(b"location", location.encode("latin-1"))])
        headers += [(b"content-length", b"0"), *SECURITY_HEADERS,
                    (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _replay(body: bytes, receive: Callable) -> Callable:
    """A ``receive`` that hands the app the body already read, then listens
    to the client as before (for a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
