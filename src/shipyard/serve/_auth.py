"""API-key authentication and per-key rate limits for the server.

Keys come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and are
checked by :class:`shipyard.security.ApiKeys`. Verified keys (and refused
secrets) are cached for ``cache_ttl`` seconds (default 5) so a request does not
query the database; a revocation therefore takes effect within that time.
Expiry and scopes are checked on every request against the cached record.

Rate limits are token buckets per key, per server process: a key with
``rate_limit_per_minute = N`` may burst N requests, refilled at N/60 a second;
over it the server answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import TYPE_CHECKING, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from shipyard.serve._responses import ServeError

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.security import ApiKeyInfo

bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
header_scheme = APIKeyHeader(name="X-API-Key", auto_error=False,
                             description="`X-API-Key: <API key>`")
#: Cached secrets before the cache is cleared (a flood of random keys must not grow it).
MAX_CACHE = 10_000


class Authenticator:
    """Checks keys, caches them briefly and applies rate limits.

    Parameters
    ----------
    ws
        Workspace whose keys are accepted.
    enabled
        False serves without keys (``--no-auth``).
    cache_ttl
        Seconds a verification result is reused; 0 checks the DB every time.
    """

    def __init__(self, ws: Workspace, *, enabled: bool = True, cache_ttl: float = 5.0):
        from shipyard.security import ApiKeys

        self.keys, self.enabled, self.cache_ttl = ApiKeys(ws), enabled, cache_ttl
        self._cache: dict[str, tuple[float, Any]] = {}
        self._buckets: dict[str, list[float]] = {}

    async def authenticate(self, secret: str | None, scope: str) -> ApiKeyInfo | None:
        """The key of this request, or None when auth is off.

        Raises
        ------
        ServeError
            401 missing/unknown/revoked/expired, 403 wrong scope, 429 over the limit.
        """
        if not self.enabled:
            return None
        if not secret:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' or "
                                "'X-API-Key: <key>'")
        info = await self._lookup(secret)
        if info.expired():
            raise _unauthorized(f"API key {info.key_id} has expired")
        if not info.allows(scope):
            raise ServeError(403, "forbidden", f"API key {info.key_id} lacks the {scope!r} "
                                               f"scope (it has {', '.join(info.scopes)})")
        if info.rate_limit_per_minute:
            self._spend(info.key_id, info.rate_limit_per_minute)
        return info

    async def _lookup(self, secret: str) -> ApiKeyInfo:
        from starlette.concurrency import run_in_threadpool

        from shipyard.security import AuthenticationError

        digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit[0] < now:
            try:
                result: Any = await run_in_threadpool(self.keys.verify, secret)
            except AuthenticationError as exc:
                result = exc
            if self.cache_ttl > 0:
                if len(self._cache) >= MAX_CACHE:
                    self._cache.clear()
                self._cache[digest] = (now + self.cache_ttl, result)
        else:
            result = hit[1]
        if isinstance(result, Exception):
            raise _unauthorized(str(result))
        return result

    def _spend(self, key_id: str, per_minute: int) -> None:
        now = time.monotonic()
        bucket = self._buckets.setdefault(key_id, [float(per_minute), now])
        rate = per_minute / 60.0
        bucket[0] = min(float(per_minute), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if bucket[0] < 1.0:
            wait = math.ceil((1.0 - bucket[0]) / rate)
            raise ServeError(429, "rate_limited",
                             f"rate limit of {per_minute} requests a minute exceeded; retry "
                             f"in {wait} s", headers={"Retry-After": str(wait)})
        bucket[0] -= 1.0


def _unauthorized(message: str) -> ServeError:
    return ServeError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def requires(scope: str) -> Any:
    """A FastAPI dependency demanding a key with ``scope``; it also documents
    both ways to send the key in the OpenAPI document."""

    async def check(request: Request,
                    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),  # noqa: B008
                    header: str | None = Security(header_scheme)) -> None:
        secret = bearer.credentials if bearer is not None else header
        info = await request.app.state.serving.auth.authenticate(secret, scope)
        request.state.key_id = info.key_id if info is not None else None

    return Security(check, scopes=[scope])
