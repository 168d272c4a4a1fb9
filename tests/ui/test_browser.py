"""The UI in a real browser (Debian's chromium through Playwright): login,
every page, filtering, comparing, moving an alias and finding its audit
entry, read-only keys, stored XSS. Every test fails on a console error, an
uncaught script error or a dialog (see the ``watched`` fixture); screenshots
land in tests/ui/artifacts/."""

from __future__ import annotations

import re

from .conftest import browser_login, shot


def test_no_key_goes_to_login_and_a_wrong_key_is_refused(watched, live_url):
    page = watched
    page.goto(f"{live_url}/models")
    assert "/login" in page.url
    shot(page, "login")
    page.fill("#key", "shp_0123456789ab_" + "x" * 43)
    with page.expect_response(lambda r: r.url.endswith("/login") and r.status == 401):
        page.click("#login-submit")
    assert "login refused" in page.inner_text("#login-error")
    assert "/login" in page.url
    # the 401 of the refused login is the browser's only console message: expected
    page.problems[:] = [p for p in page.problems if "401" not in p]


def test_navigation_reaches_every_page(watched, live_url, env):
    page = watched
    browser_login(page, live_url, env["admin"])
    for nav_id, heading in [("runs", "Runs"), ("datasets", "Datasets"), ("models", "Models"),
                            ("deployments", "Deployments"), ("monitoring", "Monitoring"),
                            ("rag", "RAG"), ("audit", "Audit log")]:
        page.click(f"#nav-{nav_id}")
        page.wait_for_selector(f"#nav-{nav_id}.active")
        assert page.inner_text("h1").startswith(heading)
        shot(page, f"page-{nav_id}")
    # a run: its curves are drawn by uPlot
    page.goto(f"{live_url}/runs/{env['runs'][4]}")
    page.wait_for_selector("figure.chart[data-drawn='1'] canvas")
    shot(page, "page-run")
    # the run with artifacts: previews load when opened, the report is sandboxed
    page.goto(f"{live_url}/runs/{env['artifacts_run']}")
    page.click("summary:has-text('notes.txt')")
    page.wait_for_selector("pre.artifact-text")
    page.click("summary:has-text('plot.png')")
    page.wait_for_selector("img.artifact-image")
    page.wait_for_selector("figure.chart[data-drawn='1'] >> nth=0")
    shot(page, "page-run-artifacts")
    page.click("summary:has-text('evaluation/report.html')")
    page.click("a:has-text('view report')")
    page.wait_for_selector("iframe.report")
    shot(page, "page-report")
    for path, selector in [("/datasets/people", "#versions-table"),
                           ("/datasets/people/1", "#profile-table"),
                           ("/datasets/people/diff", "#dataset-diff"),
                           ("/models/fraud", "#versions-table"),
                           ("/models/fraud/1", "#lineage"),
                           ("/deployments/fraud", "#deployment-history"),
                           ("/monitoring/fraud", "h1"), ("/experiments", "table")]:
        page.goto(f"{live_url}{path}")
        page.wait_for_selector(selector)
        shot(page, "page" + path.replace("/", "-"))
    page.goto(f"{live_url}/audit")
    page.click("#verify-chain")
    page.wait_for_selector("#verify-ok")
    assert "Chain intact" in page.inner_text("#verify-result")
    shot(page, "page-audit-verified")


def test_filtering_sorting_and_paging_runs(watched, live_url, env):
    page = watched
    browser_login(page, live_url, env["admin"])
    page.fill("#filter", "params.model = 'rf' and metrics.loss < 0.1")
    page.press("#filter", "Enter")
    page.wait_for_url(re.compile(r".*filter=params\.model.*"))
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length > 0")
    rows = page.locator("#runs-table tbody tr")
    want = env["ws"].runs.search("params.model = 'rf' and metrics.loss < 0.1", limit=None)
    assert rows.count() == len(want) > 0
    shot(page, "runs-filtered")
    # a filter that does not parse: shown inline, the page stays
    page.fill("#filter", "metrics.loss <<< 1")
    page.press("#filter", "Enter")
    page.wait_for_selector("#filter-error")
    assert "column" in page.inner_text("#filter-error")
    shot(page, "runs-filter-error")
    # sort by a metric by clicking its header, then walk the pages
    page.goto(f"{live_url}/runs?limit=10&col=name&col=metrics.auc")
    page.click("#runs-table th a:has-text('auc')")
    page.wait_for_url(re.compile(r".*sort=metrics\.auc.*"))
    page.wait_for_selector("#runs-table th a.sorted")
    seen = []
    while True:
        seen += page.eval_on_selector_all("#runs-table tbody input[name=id]",
                                          "els => els.map(e => e.value)")
        if page.locator("#next-page").count() == 0:
            break
        with page.expect_navigation():  # wait for the next page itself, not the current one
            page.click("#next-page")
        page.wait_for_selector("#first-page")
    order = env["ws"].runs.search(order_by=["metrics.auc DESC"], limit=None)
    assert seen == [r.id for r in order]
    # the column picker: choosing a column reloads the table with it
    page.click("#column-picker summary")
    page.check("input.col-pick[value='params.lr']")
    page.wait_for_selector("#runs-table th:has-text('lr')")
    shot(page, "runs-columns")


def test_comparing_runs(watched, live_url, env):
    page = watched
    browser_login(page, live_url, env["admin"])
    page.goto(f"{live_url}/runs?experiment=tuning")
    boxes = page.locator("#runs-table tbody input[name=id]")
    for i in range(3):
        boxes.nth(i).check()
    page.click("#compare-selected")
    page.wait_for_url(re.compile(r".*/compare\?id=.*"))
    assert page.inner_text("h1") == "Compare 3 runs"
    page.wait_for_selector("#compare-chart[data-drawn='1'] canvas")
    page.wait_for_selector("#diff-table")  # loaded once the chart is drawn
    assert page.locator("#diff-table tbody tr").count() == 3
    shot(page, "compare-3")
    options = page.eval_on_selector_all("#curve-key option", "els => els.map(e => e.value)")
    other = [o for o in options if o != page.input_value("#curve-key")][0]
    page.select_option("#curve-key", other)
    page.wait_for_url(re.compile(rf".*key={other}.*"))
    page.wait_for_selector("#compare-chart[data-drawn]")
    page.goto(f"{live_url}/compare?n=500")
    page.wait_for_selector("#compare-chart[data-drawn='1'] canvas")
    page.wait_for_selector("#diff-table")
    shot(page, "compare-all")


def test_moving_an_alias_shows_its_audit_entry(watched, live_url, env):
    page = watched
    browser_login(page, live_url, env["admin"])
    page.goto(f"{live_url}/models/fraud")
    page.fill("#alias-name", "browser-test")
    page.select_option("#alias-version", str(env["versions"][1]))
    page.fill("#alias-reason", "moved from the browser test")
    page.click("#alias-submit")
    page.wait_for_selector(".flash.ok")
    assert "browser-test now points at version" in page.inner_text(".flash.ok")
    assert "moved from the browser test" in page.inner_text("#alias-history")
    shot(page, "alias-moved")
    page.goto(f"{live_url}/audit?object_type=model&action=model.alias")
    first = page.locator("#audit-table tbody tr").first
    assert "moved from the browser test" in first.inner_text()
    assert "ui:admin-key" in first.inner_text()
    shot(page, "alias-audited")
    # roll it back from the page
    page.goto(f"{live_url}/models/fraud")
    page.select_option("#rollback-alias", "champion")
    page.fill("#rollback-reason", "")
    assert page.locator("#rollback-form :invalid").count() == 1  # the browser wants a reason


def test_read_only_key_cannot_move_an_alias(watched, live_url, env):
    page = watched
    browser_login(page, live_url, env["reader"])
    page.goto(f"{live_url}/models/fraud")
    assert page.locator("#alias-form").count() == 0
    assert "read-only" in page.inner_text("#readonly-note")
    shot(page, "read-only")
    token = page.get_attribute("input[name=csrf_token]", "value")
    res = page.request.post(f"{live_url}/models/fraud/alias", form={
        "alias": "champion", "version": str(env["versions"][2]), "reason": "sneaky",
        "csrf_token": token})
    assert res.status == 403
    holder = {a: v.version for v in env["ws"].models.versions("fraud") for a in v.aliases}
    assert holder["champion"] == env["versions"][0]


def test_stored_xss_never_runs(watched, live_url, env):
    page = watched
    browser_login(page, live_url, env["admin"])
    paths = ["/runs?col=name&col=tags.note", f"/runs/{env['runs'][3]}",
             f"/runs/{env['runs'][4]}", f"/runs/{env['artifacts_run']}",
             f"/runs/{env['artifacts_run']}/view/evaluation/report.html",
             f"/runs/{env['artifacts_run']}/artifacts/evaluation/report.html",
             "/datasets", "/datasets/people/1", "/models", "/audit",
             f"/compare?ids={env['runs'][3]},{env['runs'][4]}"]
    for path in paths:
        page.goto(f"{live_url}{path}")
        page.wait_for_load_state("load")
        if path.startswith("/compare"):
            page.wait_for_selector("#diff-table")
    page.goto(f"{live_url}/runs?col=name&col=tags.note")
    text = page.inner_text("#runs-table")
    assert "<script>alert('xss-script')</script>" in text  # shown as text
    assert "<img src=x onerror=alert('xss-img')>" in text
    page.goto(f"{live_url}/runs/{env['artifacts_run']}")
    page.click("summary:has-text('config.json')")
    page.wait_for_selector("pre.artifact-text")
    assert page.evaluate("document.querySelectorAll('main img[src=x]').length") == 0
    shot(page, "xss-escaped")
    assert page.dialogs == []


def test_forged_cross_site_form_is_refused(watched, live_url, env):
    """A page on another origin posting to the UI: refused, nothing changes."""
    page = watched
    browser_login(page, live_url, env["admin"])
    res = page.request.post(f"{live_url}/models/fraud/alias", headers={
        "Origin": "http://evil.example"}, form={"alias": "champion", "version": "3",
                                               "reason": "forged"})
    assert res.status == 403
    res = page.request.post(f"{live_url}/models/fraud/alias", form={
        "alias": "champion", "version": "3", "reason": "forged", "csrf_token": "guess"})
    assert res.status == 403
