"""The UI over HTTP, without a browser: login and sessions, every page,
keyset paging, columns, curves, artifacts, CSRF, read-only keys, bad input."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import XSS_IMG, XSS_SCRIPT, csrf_of, login


# ------------------------------------------------------------------ auth
def test_no_session_redirects_to_login(anonymous):
    res = anonymous.get("/runs?filter=status%20%3D%20%27FINISHED%27")
    assert res.status_code == 303
    assert res.headers["location"].startswith("/login?next=")
    assert parse_qs(urlparse(res.headers["location"]).query)["next"] == [
        "/runs?filter=status%20%3D%20%27FINISHED%27"]


def test_htmx_request_without_session_is_told_to_navigate(anonymous):
    res = anonymous.get("/runs", headers={"HX-Request": "true"})
    assert res.status_code == 200
    assert res.headers["hx-redirect"].startswith("/login")


@pytest.mark.parametrize("key", ["", "nonsense", "shp_0123456789ab_" + "A" * 43])
def test_wrong_key_is_refused_with_a_message(anonymous, key):
    res = login(anonymous, key)
    assert res.status_code == 401
    assert "login refused" in res.text
    assert "shipyard_ui_session" not in res.headers.get("set-cookie", "")


def test_revoked_key_is_refused(anonymous, env):
    res = login(anonymous, env["revoked"])
    assert res.status_code == 401
    assert "revoked" in res.text


def test_login_sets_an_httponly_strict_cookie_without_the_key(anonymous, env):
    res = login(anonymous, env["admin"], "/models")
    assert res.status_code == 303 and res.headers["location"] == "/models"
    cookies = res.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("shipyard_ui_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session
    random_part = env["admin"][len("shp_") + 13:]  # shp_<12 hex>_<43 chars>
    assert env["admin"] not in session and random_part not in session
    assert anonymous.get("/models").status_code == 200


def test_login_redirect_stays_on_this_site(anonymous, env):
    res = login(anonymous, env["admin"], "//evil.example/x")
    assert res.headers["location"] == "/runs"


def test_login_form_needs_its_token(anonymous, env):
    anonymous.get("/login")
    res = anonymous.post("/login", data={"key": env["admin"], "login_token": "forged"})
    assert res.status_code == 403


def test_logout_ends_the_session(admin_client):
    token = csrf_of(admin_client)
    res = admin_client.post("/logout", data={"csrf_token": token})
    assert res.status_code == 303
    assert admin_client.get("/runs").status_code == 303


def test_revoking_a_key_ends_its_sessions(app, env, monkeypatch):
    from starlette.testclient import TestClient

    import shipyard.ui._sessions as sessions

    ws = env["ws"]
    key_id, secret = ws.keys.create("short-lived", scopes=["predict"])
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        login(client, secret)
        assert client.get("/runs").status_code == 200
        ws.keys.revoke(key_id)
        monkeypatch.setattr(sessions, "RECHECK_SECONDS", 0.0)
        assert client.get("/runs").status_code == 303


def test_pages_carry_a_strict_content_security_policy(admin_client):
    res = admin_client.get("/runs")
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert res.headers["x-content-type-options"] == "nosniff"


# ------------------------------------------------------------------ CSRF
def _alias(env, alias: str):
    ws = env["ws"]
    return {a: v.version for v in ws.models.versions("fraud") for a in v.aliases}.get(alias)


def test_post_without_csrf_token_is_refused(admin_client, env):
    before = _alias(env, "staging")
    res = admin_client.post("/models/fraud/alias",
                            data={"alias": "staging", "version": "2", "reason": "x"})
    assert res.status_code == 403
    assert "CSRF" in res.text
    assert _alias(env, "staging") == before


def test_post_with_a_wrong_csrf_token_is_refused(admin_client, env):
    res = admin_client.post("/models/fraud/alias", data={
        "alias": "staging", "version": "2", "reason": "x", "csrf_token": "wrong"})
    assert res.status_code == 403
    assert _alias(env, "staging") is None


def test_post_from_another_site_is_refused(admin_client, env):
    token = csrf_of(admin_client)
    res = admin_client.post("/models/fraud/alias", headers={"Origin": "https://evil.example"},
                            data={"alias": "staging", "version": "2", "reason": "x",
                                  "csrf_token": token})
    assert res.status_code == 403
    assert _alias(env, "staging") is None


def test_audit_verify_needs_the_token_too(admin_client):
    assert admin_client.post("/audit/verify").status_code == 403
    res = admin_client.post("/audit/verify", headers={"X-CSRF-Token": csrf_of(admin_client),
                                                      "HX-Request": "true"})
    assert res.status_code == 200
    assert "Chain intact" in res.text


# ------------------------------------------------------------- aliases
def test_admin_moves_an_alias_with_a_reason_and_it_is_audited(admin_client, env):
    token = csrf_of(admin_client)
    res = admin_client.post("/models/fraud/alias", data={
        "alias": "http-test", "version": str(env["versions"][2]), "reason": "httpx moves it",
        "csrf_token": token})
    assert res.status_code == 303
    assert _alias(env, "http-test") == env["versions"][2]
    entry = env["ws"].audit.entries("model", "fraud", action="model.alias.set", limit=1)[0]
    assert entry.reason == "httpx moves it"
    assert entry.actor.startswith("ui:admin-key (key ")
    page = admin_client.get("/models/fraud").text
    assert "now points at version" in page  # the flash message
    res = admin_client.post("/models/fraud/rollback", data={
        "alias": "http-test", "reason": "", "csrf_token": token})
    assert "a reason is required" in admin_client.get(res.headers["location"]).text
    assert _alias(env, "http-test") == env["versions"][2]


def test_moving_an_alias_needs_a_reason(admin_client, env):
    res = admin_client.post("/models/fraud/alias", data={
        "alias": "no-reason", "version": "1", "reason": "  ", "csrf_token": csrf_of(admin_client)})
    assert res.status_code == 303
    assert _alias(env, "no-reason") is None
    assert "a reason is required" in admin_client.get("/models/fraud").text


def test_a_refused_move_is_shown_not_crashed(admin_client, env):
    res = admin_client.post("/models/fraud/alias", data={
        "alias": "bad alias!", "version": "1", "reason": "r", "csrf_token": csrf_of(admin_client)})
    assert res.status_code == 303
    assert "alias not moved" in admin_client.get("/models/fraud").text


def test_read_only_key_cannot_move_an_alias(reader_client, env):
    page = reader_client.get("/models/fraud").text
    assert 'id="alias-form"' not in page and "read-only" in page
    res = reader_client.post("/models/fraud/alias", data={
        "alias": "champion", "version": str(env["versions"][2]), "reason": "sneaky",
        "csrf_token": csrf_of(reader_client)})
    assert res.status_code == 403
    assert "admin key" in res.text
    assert _alias(env, "champion") == env["versions"][0]
    res = reader_client.post("/models/fraud/rollback", data={
        "alias": "challenger", "reason": "sneaky", "csrf_token": csrf_of(reader_client)})
    assert res.status_code == 403


# --------------------------------------------------------------- pages
def _pages(env) -> list[str]:
    run = env["runs"][0]
    art = env["artifacts_run"]
    return ["/runs", "/runs?experiment=tuning", "/experiments", f"/runs/{run}",
            f"/runs/{art}", f"/runs/{run}/curve?key=loss", f"/runs/{art}/preview/notes.txt",
            f"/runs/{art}/preview/config.json", f"/runs/{art}/preview/plot.png",
            f"/runs/{art}/view/evaluation/report.html", "/datasets", "/datasets/people",
            "/datasets/people/1", "/datasets/people/2", "/datasets/people/diff",
            "/datasets/people/diff?a=2&b=1", "/models", "/models/fraud", "/models/fraud/1",
            "/deployments", "/deployments/fraud", "/audit", "/audit?object_type=model",
            "/monitoring", "/monitoring/fraud", "/rag", f"/compare?ids={run},{env['runs'][1]}",
            f"/compare/curves?ids={run},{env['runs'][1]}&key=loss", "/compare?n=20",
            f"/compare/table?ids={run},{env['runs'][1]}", "/compare/table?n=20"]


def test_every_page_answers(admin_client, env):
    for path in _pages(env):
        res = admin_client.get(path)
        assert res.status_code == 200, (path, res.text[:500])


def test_read_only_key_reads_every_page(reader_client, env):
    for path in _pages(env):
        assert reader_client.get(path).status_code == 200, path


def test_navigation_lists_monitoring_and_rag_only_when_their_stages_exist(admin_client,
                                                                          monkeypatch):
    import importlib.util

    from shipyard.ui._app import navigation

    html = admin_client.get("/runs").text
    has = importlib.util.find_spec("shipyard.monitor._monitor") is not None
    assert ('id="nav-monitoring"' in html) == has
    assert ('id="nav-rag"' in html) == (importlib.util.find_spec("shipyard.genai") is not None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name.startswith(("shipyard.monitor",
                                                              "shipyard.genai"))
                        else real(name))
    assert [n[0] for n in navigation()] == ["runs", "datasets", "models", "deployments",
                                            "audit"]


@pytest.mark.parametrize("path", [
    "/runs/0123456789abcdef0123456789abcdef", "/runs/zzz", "/runs/abc",
    "/runs/0123456789abcdef0123456789abcdef/curve?key=loss",
    "/datasets/nope", "/datasets/people/99", "/datasets/people/x", "/models/nope",
    "/models/fraud/99", "/models/fraud/abc", "/deployments/nope", "/monitoring/nope",
    "/rag/nope/1", "/rag/nope/x",
    "/no/such/page", "/compare?ids=0123456789abcdef0123456789abcdef",
])
def test_unknown_ids_are_404_pages(admin_client, path):
    res = admin_client.get(path)
    assert res.status_code == 404, res.text[:300]
    assert "text/html" in res.headers["content-type"]


def test_unknown_artifact_is_404(admin_client, env):
    art = env["artifacts_run"]
    assert admin_client.get(f"/runs/{art}/artifacts/missing.txt").status_code == 404
    assert admin_client.get(f"/runs/{art}/preview/missing.txt").status_code == 404
    assert admin_client.get(f"/runs/{art}/view/../../etc/passwd").status_code in (400, 404)


FUZZ = ["", "'", '"', "\\", "%00", "<script>", "1e309", "-1", "99999999999999999999",
        "' or 1=1 --", "a" * 5000, "metrics.", "()", "`", "\u202e", "null", "NaN"]


@pytest.mark.parametrize("value", FUZZ)
def test_odd_query_parameters_never_crash(admin_client, env, value):
    from urllib.parse import quote

    v = quote(value, safe="")
    run = env["runs"][0]
    for path in [f"/runs?filter={v}", f"/runs?sort={v}&dir={v}", f"/runs?limit={v}",
                 f"/runs?page_token={v}", f"/runs?col={v}", f"/runs?experiment={v}",
                 f"/compare?ids={v}", f"/compare?filter={v}&n={v}",
                 f"/compare/table?filter={v}&n={v}",
                 f"/compare/curves?ids={run}&key={v}", f"/runs/{run}/curve?key={v}&points={v}",
                 f"/audit?since={v}&limit={v}&action={v}&object_type={v}",
                 f"/datasets/people/diff?a={v}&b={v}", f"/login?next={v}"]:
        res = admin_client.get(path)
        assert res.status_code < 500, (path, res.status_code, res.text[:300])


def test_a_filter_that_does_not_parse_is_shown_inline(admin_client):
    res = admin_client.get("/runs", params={"filter": "metrics.auc >> 3"})
    assert res.status_code == 200
    assert 'id="filter-error"' in res.text and "column" in res.text
    partial = admin_client.get("/runs", params={"filter": "params.lr = "},
                               headers={"HX-Request": "true"})
    assert partial.status_code == 200 and 'id="filter-error"' in partial.text
    assert "<html" not in partial.text


def test_htmx_gets_the_table_only(admin_client):
    res = admin_client.get("/runs", headers={"HX-Request": "true"})
    assert "<html" not in res.text and 'id="runs-table"' in res.text
    assert 'hx-swap-oob="true"' in res.text  # the form's hidden state follows
    restore = admin_client.get("/runs", headers={"HX-Request": "true",
                                                 "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text


# ---------------------------------------------------------------- escaping
def test_hostile_text_is_escaped_everywhere(admin_client, env):
    for path in _pages(env) + ["/runs?col=tags.note&col=name"]:
        body = admin_client.get(path).text
        assert "<script>alert(" not in body, path
        assert "<img src=x" not in body, path
    body = admin_client.get("/runs?col=tags.note&col=name").text
    assert "&lt;script&gt;alert(&#39;xss-script&#39;)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(&#39;xss-img&#39;)&gt;" in body
    assert XSS_SCRIPT not in body and XSS_IMG not in body


def test_html_artifacts_are_served_sandboxed(admin_client, env):
    art = env["artifacts_run"]
    res = admin_client.get(f"/runs/{art}/artifacts/evaluation/report.html")
    assert res.status_code == 200
    assert res.headers["content-security-policy"].startswith("sandbox")
    page = admin_client.get(f"/runs/{art}/view/evaluation/report.html").text
    assert 'sandbox=""' in page


# ---------------------------------------------------------------- paging
def _ids(html: str) -> list[str]:
    return re.findall(r'name="id" value="([0-9a-f]{32})"', html)


def _next(html: str) -> str | None:
    m = re.search(r'id="next-page"[^>]*|href="([^"]+)"[^>]*id="next-page"', html)
    if m is None:
        return None
    href = re.search(r'href="([^"]+)"', m.group(0)) if m.group(1) is None else m
    return (href.group(1) if href else None).replace("&amp;", "&")


@pytest.mark.parametrize("sort,direction", [
    ("start_time", "desc"), ("start_time", "asc"), ("metrics.auc", "desc"),
    ("metrics.auc", "asc"), ("params.lr", "desc"), ("params.`odd key`", "asc"),
    ("name", "asc"), ("tags.note", "desc"), ("metrics.auc_nan", "asc"),
])
def test_keyset_pages_walk_every_run_once_in_search_order(admin_client, env, sort,
                                                           direction):
    from shipyard.ui._paging import Sort

    ws = env["ws"]
    field = sort.replace("`", "")
    want = [r.id for r in ws.runs.search(order_by=[Sort(field, direction == "desc").order_by],
                                         limit=None)]
    got, path, pages = [], f"/runs?sort={field}&dir={direction}&limit=4", 0
    while path:
        html = admin_client.get(path).text
        got += _ids(html)
        path = _next(html)
        pages += 1
        assert pages < 50
    assert got == want
    assert len(got) == len(set(got)) == 28  # 23 + artifacts run + its child + 3 model runs


def test_a_page_token_of_another_order_restarts_at_page_one(admin_client):
    html = admin_client.get("/runs?limit=3").text
    token = parse_qs(urlparse(_next(html)).query)["page_token"][0]
    res = admin_client.get(f"/runs?limit=3&sort=name&page_token={token}")
    assert res.status_code == 200 and "not valid for this sort order" in res.text


def test_filter_and_experiment_apply_across_pages(admin_client, env):
    ws = env["ws"]
    want = [r.id for r in ws.runs.search("params.model = 'rf'", experiment="tuning",
                                         limit=None)]
    got, path = [], "/runs?experiment=tuning&filter=params.model+%3D+%27rf%27&limit=5"
    while path:
        html = admin_client.get(path).text
        got += _ids(html)
        path = _next(html)
    assert got == want and len(want) > 5


# -------------------------------------------------------------- columns
def test_the_column_picker_shows_only_chosen_columns(admin_client):
    html = admin_client.get("/runs?col=metrics.auc&col=params.lr").text
    header = html.split("<thead>")[1].split("</thead>")[0]
    assert re.findall(r">(auc|lr|name|status|loss)\b", header) == ["auc", "lr"]
    assert 'value="metrics.loss" class="col-pick">' in html  # offered, not chosen


def test_unknown_columns_are_ignored(admin_client):
    assert admin_client.get("/runs?col=bogus&col=metrics.").status_code == 200


# -------------------------------------------------------------- curves
def test_curves_are_downsampled_to_2000_points(admin_client, env):
    data = admin_client.get(f"/runs/{env['artifacts_run']}/curve?key=long").json()
    assert data["total"] == 10_000 and data["shown"] == len(data["x"]) == 2000
    assert data["x"][0] == 0 and data["x"][-1] == 9999
    assert max(data["y"]) > 0.999 and min(data["y"]) < -0.999  # peaks survive LTTB


def test_compare_curves_share_one_axis(admin_client, env):
    ids = ",".join(env["runs"][:5])
    data = admin_client.get(f"/compare/curves?ids={ids}&key=loss").json()
    assert len(data["series"]) == 5
    assert all(len(s["y"]) == len(data["x"]) for s in data["series"])
    assert data["x"][:3] == [0, 1, 2]
    assert data["series"][0]["y"][0] == 1.0
    assert data["series"][0]["y"][-1] is None  # run 0 logged fewer steps than run 4


def test_compare_shows_what_differs(admin_client, env):
    html = admin_client.get(f"/compare/table?ids={env['runs'][0]},{env['runs'][1]}").text
    header = html.split('id="diff-table"')[1].split("</thead>")[0]
    assert "lr" in header and "model" in header and "kind" not in header
    assert 'id="identical"' in html
    assert html.count("<polyline") >= 2  # parallel coordinates, one line per run


def test_compare_takes_at_most_500_runs(admin_client, env):
    ids = ",".join([env["runs"][0]] * 600)
    assert admin_client.get(f"/compare?ids={ids}").status_code == 200


# ------------------------------------------------------------ artifacts
def test_previews_are_capped(admin_client, env):
    art = env["artifacts_run"]
    big = admin_client.get(f"/runs/{art}/preview/big.txt").text
    assert "Preview cut at" in big and len(big) < 80_000
    huge = admin_client.get(f"/runs/{art}/preview/huge.bin").text
    assert "too large to preview" in huge
    res = admin_client.get(f"/runs/{art}/artifacts/huge.bin")
    assert res.status_code == 200 and len(res.content) == 6 * 1024 * 1024
    assert res.headers["content-disposition"].startswith("attachment")


def test_run_detail_links_inputs_to_dataset_versions(admin_client, env):
    html = admin_client.get(f"/runs/{env['runs'][0]}").text
    assert 'href="/datasets/people/2"' in html


def test_model_version_shows_lineage_and_datasets(admin_client):
    html = admin_client.get("/models/fraud/1").text
    assert 'id="lineage"' in html and "run " in html


def test_dataset_version_shows_validation_and_profile(admin_client):
    html = admin_client.get("/datasets/people/1").text
    assert 'id="validation-table"' in html and 'id="profile-table"' in html
    assert "<svg class=\"bars\"" in html
    diff = admin_client.get("/datasets/people/diff?a=1&b=2").text
    assert "extra" in diff and "added" in diff


def test_monitoring_lists_models(admin_client):
    html = admin_client.get("/monitoring").text
    assert "fraud" in html and "not checked yet" in html


def test_no_auth_mode_is_a_local_admin(env):
    from starlette.testclient import TestClient

    from shipyard.ui import create_ui_app

    with TestClient(create_ui_app(env["ws"], auth=False), follow_redirects=False) as client:
        res = client.get("/runs")
        assert res.status_code == 200 and ">local</span>" in res.text
        assert client.post("/audit/verify").status_code == 403  # CSRF still applies


def test_the_app_mounts_under_a_prefix(env):
    """As ``shipyard serve`` will mount it: every link, redirect and cookie
    stays under the prefix."""
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from shipyard.ui import create_ui_app

    parent = FastAPI()
    parent.mount("/ui", create_ui_app(env["ws"]))
    with TestClient(parent, follow_redirects=False) as client:
        res = client.get("/ui/models")
        assert res.status_code == 303 and res.headers["location"].startswith("/ui/login?next=")
        page = client.get("/ui/login")
        assert 'action="/ui/login"' in page.text and 'href="/ui/static/ui.css?v=' in page.text
        assert "Path=/ui" in page.headers["set-cookie"]
        res = client.post("/ui/login", data={"key": env["admin"], "next": "/models",
                                             "login_token": client.cookies.get(
                                                 "shipyard_ui_login")})
        assert res.status_code == 303 and res.headers["location"] == "/ui/models"
        html = client.get("/ui/models").text
        assert 'href="/ui/models/fraud"' in html and 'href="/ui/runs"' in html
        assert client.get("/ui/static/vendor/htmx.min.js").status_code == 200
        assert client.get("/ui/runs?limit=3").status_code == 200


def test_rag_pages_list_collections_and_their_documents(tmp_path):
    import importlib.util

    from starlette.testclient import TestClient

    from shipyard import Workspace
    from shipyard.ui import create_ui_app

    assert importlib.util.find_spec("shipyard.genai") is not None  # the stage is installed
    from shipyard.genai import Document

    ws = Workspace.open(tmp_path / "home")
    ws.rag.ingest("cities", [Document.from_text("The Eiffel Tower is 330 metres tall.",
                                                source="paris"),
                             Document.from_text(f"Big Ben. {XSS_SCRIPT}", source=XSS_IMG)])
    _, secret = ws.keys.create("r", scopes=["predict"])
    with TestClient(create_ui_app(ws), follow_redirects=False) as client:
        login(client, secret)
        listing = client.get("/rag")
        assert listing.status_code == 200 and 'href="/rag/cities/1"' in listing.text
        page = client.get("/rag/cities/1")
        assert page.status_code == 200 and 'id="documents-table"' in page.text
        assert "<img src=x" not in page.text and "&lt;img src=x" in page.text
    ws.close()
