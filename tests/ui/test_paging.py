"""Keyset paging of the run list over the public search API, on SQLite and
PostgreSQL, with awkward values: ties, missing keys, NaN, quotes, backslashes."""

from __future__ import annotations

import pytest

from shipyard.ui._paging import Sort, after, decode_token, encode_token, literal
from shipyard.ui._runs import RunQuery, search_page

AWKWARD = ["plain", "it's", "back\\slash", "\\'", "", "ünï", "a b", "'quoted'", "%_"]


@pytest.fixture
def runs_ws(workspace):
    for i in range(17):
        params = {"p": AWKWARD[i % len(AWKWARD)], "n": i % 4}
        tags = {"t": AWKWARD[(i * 2) % len(AWKWARD)]} if i % 3 else {}
        name = (AWKWARD[i % len(AWKWARD)] or "empty") if i % 5 else None
        with workspace.start_run("e", name=name, params=params, tags=tags, seed=i) as run:
            if i % 4:
                run.log_metric("m", float(i % 3))  # many ties
            if i == 5:
                run.log_metric("m2", float("nan"))
            elif i % 2:
                run.log_metric("m2", i / 7)
    workspace.runs.flush()
    return workspace


SORTS = [("start_time", True), ("start_time", False), ("metrics.m", True),
         ("metrics.m", False), ("metrics.m2", False), ("metrics.m2", True),
         ("params.p", False), ("params.p", True), ("params.n", True), ("tags.t", False),
         ("name", False), ("name", True), ("status", False), ("end_time", True)]


@pytest.mark.parametrize("field,desc", SORTS)
def test_pages_follow_search_order_exactly(runs_ws, field, desc):
    sort = Sort(field, desc)
    want = [r.id for r in runs_ws.runs.search(order_by=[sort.order_by], limit=None)]
    got, token = [], ""
    for _ in range(30):
        page = search_page(runs_ws, RunQuery("", "", sort, [], 3, token))
        assert page.error is None and page.note is None
        got += [r.id for r in page.runs]
        if page.next_token is None:
            break
        token = page.next_token
    assert got == want and len(got) == 17


def test_pages_keep_the_filter(runs_ws):
    sort = Sort("params.p", False)
    want = [r.id for r in runs_ws.runs.search("params.n >= 1", order_by=[sort.order_by],
                                              limit=None)]
    got, token = [], ""
    while True:
        page = search_page(runs_ws, RunQuery("e", "params.n >= 1", sort, [], 2, token))
        got += [r.id for r in page.runs]
        if not page.next_token:
            break
        token = page.next_token
    assert got == want


@pytest.mark.parametrize("value", AWKWARD)
def test_literals_survive_the_filter_language(runs_ws, value):
    found = runs_ws.runs.search(f"params.p = {literal(value)}", limit=None)
    assert {r.params["p"] for r in found} == {value}


def test_tokens_are_checked():
    sort = Sort("metrics.m", False)

    class Run:
        id, start_time, metrics = "ab" * 16, 12.5, {"m": 0.25}

    token = encode_token(sort, Run())
    assert decode_token(token, sort) == (0.25, 12.5, "ab" * 16)
    assert decode_token(token, Sort("metrics.m", True)) is None
    for bad in ["", "!!!", "e30", token[:-3], "W10", "a" * 5000]:
        assert decode_token(bad, sort) is None


def test_after_quotes_odd_keys():
    assert "metrics.`a b`" in after(Sort("metrics.a b", False), 1.0, 1.0, "ab" * 16)


def test_sort_parse_refuses_junk():
    assert Sort.parse("metrics.", "asc") == Sort("start_time", True)
    assert Sort.parse("nonsense", "asc") == Sort("start_time", True)
    assert Sort.parse("params.x\n", "asc") == Sort("start_time", True)
