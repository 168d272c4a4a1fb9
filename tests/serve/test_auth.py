"""API keys on the server: missing, wrong, wrong scope, revoked, expired,
rate limits, and --no-auth."""

from __future__ import annotations

import time

import httpx
import pytest

from shipyard.security import ApiKeys

from .conftest import LiveServer, bearer, record

BODY = {"records": [record()]}


def predict(live, headers):
    return httpx.post(f"{live.url}/v1/models/toy:predict", json=BODY, headers=headers)


def test_no_key_is_401_with_www_authenticate(live):
    r = predict(live, {})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in r.json()["error"]["message"]


@pytest.mark.parametrize("secret", ["shp_000000000000_" + "a" * 43, "hunter2", ("shp_" + "é" * 5).encode("latin-1")])
def test_wrong_key_is_401(live, secret):
    assert predict(live, {"X-API-Key": secret}).status_code == 401


def test_key_in_either_header_works(live, keys):
    assert predict(live, bearer(keys["predict"])).status_code == 200
    assert predict(live, {"X-API-Key": keys["predict"]}).status_code == 200
    assert predict(live, bearer(keys["admin"])).status_code == 200  # admin implies all


def test_wrong_scope_is_403(live, keys):
    r = predict(live, bearer(keys["metrics"]))
    assert r.status_code == 403 and "lacks the 'predict' scope" in r.json()["error"]["message"]
    assert httpx.get(f"{live.url}/metrics", headers=bearer(keys["predict"])).status_code == 403
    assert httpx.post(f"{live.url}/v1/admin/reload",
                      headers=bearer(keys["predict"])).status_code == 403


def test_revoked_key_is_refused(live, served):
    api = ApiKeys(served[0])
    key_id, secret = api.create("soon-revoked", ["predict"], actor="tests")
    assert predict(live, bearer(secret)).status_code == 200
    api.revoke(key_id, actor="tests")
    r = predict(live, bearer(secret))  # this server's key cache is off (ttl 0)
    assert r.status_code == 401 and "was revoked" in r.json()["error"]["message"]


def test_expired_key_is_refused(live, served):
    _, secret = ApiKeys(served[0]).create("old", ["predict"], expires_at=time.time() - 1,
                                          actor="tests")
    r = predict(live, bearer(secret))
    assert r.status_code == 401 and "has expired" in r.json()["error"]["message"]


def test_rate_limit_is_429_with_retry_after(live, served):
    _, secret = ApiKeys(served[0]).create("slow", ["predict"], rate_limit_per_minute=3,
                                          actor="tests")
    codes = [predict(live, bearer(secret)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = predict(live, bearer(secret))
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 20


def test_cached_keys_are_reused_until_the_ttl(served):
    from shipyard.serve import create_app

    api = ApiKeys(served[0])
    key_id, secret = api.create("cached", ["predict"], actor="tests")
    app = create_app(served[0], ["toy@champion"], reload_interval=0, key_cache_ttl=0.5,
                     prediction_log=False)
    with LiveServer(app) as server:
        assert predict(server, bearer(secret)).status_code == 200
        api.revoke(key_id, actor="tests")
        assert predict(server, bearer(secret)).status_code == 200  # cached
        time.sleep(0.6)
        assert predict(server, bearer(secret)).status_code == 401


def test_no_auth_server_needs_no_key(served, caplog):
    from shipyard.serve import create_app

    with caplog.at_level("WARNING", logger="shipyard.serve"):
        app = create_app(served[0], ["toy@champion"], auth=False, reload_interval=0,
                         prediction_log=False)
    assert "AUTHENTICATION IS OFF" in caplog.text
    with LiveServer(app) as server:
        assert predict(server, {}).status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code == 200
