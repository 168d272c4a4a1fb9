"""API keys: created with a one-time secret, stored hashed, verified with
distinct errors, revoked, audited."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from shipyard.errors import NotFoundError
from shipyard.security import (
    ApiKeyError,
    ApiKeys,
    ExpiredKeyError,
    RevokedKeyError,
    ScopeError,
    UnknownKeyError,
)
from shipyard.store.tables import ApiKeyRow


def test_create_verify_revoke_and_audit_on_each_backend(workspace):
    keys = ApiKeys(workspace)
    key_id, secret = keys.create("frontend", ["predict"], rate_limit_per_minute=60,
                                 actor="ana", reason="launch")
    assert secret.startswith(f"shp_{key_id}_") and len(secret) == 4 + 12 + 1 + 43
    info = keys.verify(secret, "predict")
    assert (info.key_id, info.name, info.scopes, info.rate_limit_per_minute) == (
        key_id, "frontend", ("predict",), 60)
    assert keys.revoke(key_id, actor="bob").revoked_by == "bob"
    with pytest.raises(RevokedKeyError):
        keys.verify(secret, "predict")
    keys.revoke(key_id, actor="bob")  # idempotent: no second audit entry
    entries = workspace.audit.entries("api_key", key_id)
    assert [(e.action, e.actor) for e in entries] == [("api_key.create", "ana"),
                                                      ("api_key.revoke", "bob")]
    assert secret not in str(entries[0].details) and entries[0].reason == "launch"
    assert workspace.audit.verify().ok


def test_only_a_salted_hash_is_stored(sqlite_workspace):
    keys = ApiKeys(sqlite_workspace)
    secrets_ = [keys.create(f"k{i}", actor="ana")[1] for i in range(2)]
    with sqlite_workspace.db.read() as s:
        rows = [(r.salt, r.secret_hash) for r in s.execute(select(ApiKeyRow)).scalars()]
    stored = " ".join(f"{salt} {digest}" for salt, digest in rows)
    assert all(sec.split("_", 2)[2] not in stored for sec in secrets_)
    assert len({salt for salt, _ in rows}) == 2


def test_each_refusal_has_its_own_error(sqlite_workspace):
    keys = ApiKeys(sqlite_workspace)
    _, secret = keys.create("m", ["metrics"], actor="ana")
    with pytest.raises(ScopeError, match="lacks the 'predict' scope"):
        keys.verify(secret, "predict")
    with pytest.raises(UnknownKeyError):
        keys.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"), "metrics")
    with pytest.raises(UnknownKeyError):
        keys.verify(f"shp_{'0' * 12}_{'a' * 43}")
    with pytest.raises(UnknownKeyError, match="not a Shipyard API key"):
        keys.verify("Bearer something")
    _, old = keys.create("old", expires_at=time.time() - 1, actor="ana")
    with pytest.raises(ExpiredKeyError):
        keys.verify(old)
    _, admin = keys.create("root", ["predict", "admin"], actor="ana",
                           expires_at=dt.datetime.now() + dt.timedelta(days=1))
    assert keys.verify(admin, "metrics").allows("anything-admin-grants")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": ""}, "printable"), ({"name": "a\nb"}, "printable"),
    ({"scopes": []}, "invalid scopes"), ({"scopes": ["root"]}, "invalid scopes"),
    ({"rate_limit_per_minute": 0}, "positive integer"),
    ({"expires_at": "tomorrow"}, "epoch seconds"),
])
def test_invalid_arguments_create_nothing(sqlite_workspace, kwargs, message):
    keys = ApiKeys(sqlite_workspace)
    with pytest.raises(ApiKeyError, match=message):
        keys.create(**{"name": "k", "actor": "ana", **kwargs})
    assert keys.list() == [] and sqlite_workspace.audit.entries() == []


def test_list_and_get(sqlite_workspace):
    keys = ApiKeys(sqlite_workspace)
    a, _ = keys.create("a", actor="ana")
    b, _ = keys.create("b", actor="ana")
    keys.revoke(a, actor="ana")
    assert [k.key_id for k in keys.list()] == [a, b]
    assert [k.key_id for k in keys.list(include_revoked=False)] == [b]
    assert keys.get(b).active and not keys.get(a).active
    with pytest.raises(NotFoundError):
        keys.get("missing")
