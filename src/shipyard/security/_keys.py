"""API keys: credentials with scopes for the prediction server.

A key's secret reads ``shp_<key id>_<43 random characters>`` and is shown once,
when it is created. The database keeps only ``HMAC-SHA256(salt, secret)`` with
a random per-key salt. A fast hash is enough here: the secret carries 256 bits
from :func:`secrets.token_urlsafe`, so nothing can be guessed from the hash,
and a slow KDF (scrypt) would only make every uncached request slower; slow
hashes exist to protect low-entropy passwords, which these are not.

Scopes: ``predict`` (inference, explanations, feedback), ``metrics`` (scrape
``/metrics``) and ``admin`` (everything, including reloads). ``admin``
implies the others.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from shipyard.errors import (
    ApiKeyError,
    ExpiredKeyError,
    NotFoundError,
    RevokedKeyError,
    ScopeError,
    UnknownKeyError,
)
from shipyard.names import has_control
from shipyard.security._audit import resolve_actor
from shipyard.store.tables import ApiKeyRow

if TYPE_CHECKING:
    from shipyard import Workspace

SCOPES = ("predict", "metrics", "admin")
PREFIX = "shp"
MAX_NAME = 200
_KEY_ID = re.compile(r"[0-9a-f]{12}")
_SECRET = re.compile(rf"{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")


@dataclass(frozen=True)
class ApiKeyInfo:
    """What is known about a key, never its secret.

    Attributes
    ----------
    key_id, name
        The public id (in the secret too) and a human name.
    scopes
        Granted scopes; ``admin`` implies every scope.
    rate_limit_per_minute
        Requests a minute one server process allows the key (``None``: no limit).
    expires_at, revoked_at
        Epoch seconds, or ``None``.
    created_at, created_by, revoked_by
        When and by whom.
    """

    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_limit_per_minute: int | None
    expires_at: float | None
    created_at: float
    created_by: str
    revoked_at: float | None = None
    revoked_by: str | None = None

    def allows(self, scope: str) -> bool:
        """True when the key grants ``scope`` (``admin`` grants all)."""
        return scope in self.scopes or "admin" in self.scopes

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired()


def _hash(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def _scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = [scopes]
    chosen = tuple(dict.fromkeys(scopes))
    bad = [s for s in chosen if s not in SCOPES]
    if not chosen or bad:
        raise ApiKeyError(f"invalid scopes {list(chosen)!r}: choose one or more of "
                          f"{', '.join(SCOPES)}")
    return chosen


def _epoch(value: float | _dt.datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiKeyError(f"expires_at must be epoch seconds or a datetime, got {value!r}")
    return float(value)


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(key_id=row.id, name=row.name, scopes=tuple(row.scopes),
                      rate_limit_per_minute=row.rate_limit_per_minute,
                      expires_at=row.expires_at, created_at=row.created_at,
                      created_by=row.created_by, revoked_at=row.revoked_at,
                      revoked_by=row.revoked_by)


class ApiKeys:
    """The API keys of a workspace.

    Creation and revocation are written to the audit log in the same
    transaction as the key.

    Parameters
    ----------
    workspace
        Whose metadata DB holds the keys.

    Examples
    --------
    >>> import tempfile, shipyard
    >>> keys = ApiKeys(shipyard.Workspace.open(tempfile.mkdtemp()))
    >>> key_id, secret = keys.create("ci", scopes=["predict"], actor="ana")
    >>> keys.verify(secret, "predict").key_id == key_id
    True
    """

    def __init__(self, workspace: Workspace):
        self._ws = workspace

    def __repr__(self) -> str:
        return f"ApiKeys({self._ws!r})"

    def create(self, name: str, scopes: Iterable[str] = ("predict",), *,
               expires_at: float | _dt.datetime | None = None,
               rate_limit_per_minute: int | None = None, actor: str | None = None,
               reason: str | None = None) -> tuple[str, str]:
        """Create a key; return ``(key_id, secret)``. The secret is not stored
        and cannot be shown again.

        Parameters
        ----------
        name
            What the key is for (``"fraud-frontend"``).
        scopes
            Any of ``predict``, ``metrics``, ``admin``.
        expires_at
            Epoch seconds or a datetime after which the key stops working.
        rate_limit_per_minute
            Requests a minute allowed per server process; ``None`` for no limit.
        actor, reason
            Who creates it and why (audit log).

        Raises
        ------
        ApiKeyError
            Invalid name, scopes, expiry or rate limit.
        """
        if (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME
                or has_control(name)):
            raise ApiKeyError(f"a key name is 1 to {MAX_NAME} printable characters, got "
                              f"{name!r}")
        chosen = _scopes(scopes)
        expires = _epoch(expires_at)
        if rate_limit_per_minute is not None and (
                isinstance(rate_limit_per_minute, bool)
                or not isinstance(rate_limit_per_minute, int) or rate_limit_per_minute < 1):
            raise ApiKeyError(f"rate_limit_per_minute must be a positive integer, got "
                              f"{rate_limit_per_minute!r}")
        actor = resolve_actor(actor)
        key_id = secrets.token_hex(6)
        secret = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_hex(16)

        def write(session) -> None:
            session.add(ApiKeyRow(id=key_id, name=name, scopes=list(chosen), salt=salt,
                                  secret_hash=_hash(salt, secret),
                                  rate_limit_per_minute=rate_limit_per_minute,
                                  expires_at=expires, created_at=time.time(),
                                  created_by=actor))
            self._ws.audit.append(session, actor=actor, action="api_key.create",
                                  object_type="api_key", object_id=key_id, reason=reason,
                                  details={"name": name, "scopes": list(chosen),
                                           "expires_at": expires,
                                           "rate_limit_per_minute": rate_limit_per_minute})

        self._ws.db.retry(write)
        return key_id, secret

    def revoke(self, key_id: str, *, actor: str | None = None,
               reason: str | None = None) -> ApiKeyInfo:
        """Revoke a key for good. Revoking a revoked key changes nothing.

        Servers cache verified keys for a few seconds (``shipyard serve``: 5 s),
        so a revocation reaches them within that time.

        Raises
        ------
        NotFoundError
            No key has this id.
        """
        actor = resolve_actor(actor)

        def write(session) -> ApiKeyInfo:
            row = self._row(session, key_id)
            if row.revoked_at is None:
                row.revoked_at, row.revoked_by = time.time(), actor
                self._ws.audit.append(session, actor=actor, action="api_key.revoke",
                                      object_type="api_key", object_id=row.id, reason=reason,
                                      details={"name": row.name})
            return _info(row)

        return self._ws.db.retry(write)

    def get(self, key_id: str) -> ApiKeyInfo:
        """The key with this id. Raises NotFoundError."""
        with self._ws.db.read() as session:
            return _info(self._row(session, key_id))

    def list(self, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
        """Every key, oldest first."""
        with self._ws.db.read() as session:
            rows = session.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).scalars()
            return [_info(r) for r in rows if include_revoked or r.revoked_at is None]

    def verify(self, secret: str, scope: str | None = None) -> ApiKeyInfo:
        """The key ``secret`` belongs to, checked active and granting ``scope``.

        Raises
        ------
        UnknownKeyError, RevokedKeyError, ExpiredKeyError
            The secret does not authenticate, and why.
        ScopeError
            It does, but the key lacks ``scope``.
        """
        match = _SECRET.fullmatch(secret) if isinstance(secret, str) else None
        if match is None:
            raise UnknownKeyError("not a Shipyard API key (expected shp_<id>_<secret>)")
        with self._ws.db.read() as session:
            row = session.get(ApiKeyRow, match.group(1))
            info = _info(row) if row is not None else None
            # Compare even for an unknown id, so timing does not tell ids apart.
            salt, digest = (row.salt, row.secret_hash) if row else ("00" * 16, "0" * 64)
        if not hmac.compare_digest(_hash(salt, secret), digest) or info is None:
            raise UnknownKeyError("unknown API key")
        if info.revoked_at is not None:
            raise RevokedKeyError(f"API key {info.key_id} ({info.name}) was revoked")
        if info.expired():
            raise ExpiredKeyError(f"API key {info.key_id} ({info.name}) has expired")
        if scope is not None and not info.allows(scope):
            raise ScopeError(f"API key {info.key_id} ({info.name}) lacks the {scope!r} scope "
                             f"(it has {', '.join(info.scopes)})")
        return info

    @staticmethod
    def _row(session, key_id: str) -> ApiKeyRow:
        row = session.get(ApiKeyRow, key_id) if isinstance(key_id, str) else None
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}",
                                hint="list keys with `shipyard keys list`")
        return row
