"""Fixtures for the data tests: a paged JSON API on loopback, sample tables."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from shipyard.store.tables import DatasetLineageRow, DatasetRow, DatasetVersionRow

PEOPLE = [{"id": i, "name": f"p{i}", "age": 20 + i} for i in range(1, 8)]  # 7 records


class _Api(BaseHTTPRequestHandler):
    """Routes (the page size is 3):

    /links?page=N      {"items": [...], "next": "/links?page=N+1" or null}
    /numbered?page=N   {"items": [...]} by page number, [] past the end
    /list              the page itself is the list (one page)
    /nested?page=N     {"data": {"rows": [...]}, "links": {"next": ...}} (absolute URLs)
    /endless?page=N    one record and always a next page
    /loop              links to itself
    /auth              401 unless "Authorization: Bearer sesame"
    /status/CODE       that HTTP status
    /notjson           an HTML page
    /notlist           {"items": 5}
    /scalars           {"items": [1, 2]}
    /empty             {"items": []}
    /badnext           {"items": [...], "next": 42}
    """

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        page = int(query.get("page", ["1"])[0])
        chunk = PEOPLE[(page - 1) * 3: page * 3]
        path = parts.path
        self.server.requests.append(self.path)
        self.server.headers_seen.append(dict(self.headers))
        if path == "/links":
            nxt = f"/links?page={page + 1}" if page * 3 < len(PEOPLE) else None
            self._send(200, {"items": chunk, "next": nxt})
        elif path == "/numbered":
            self._send(200, {"items": chunk})
        elif path == "/list":
            self._send(200, PEOPLE)
        elif path == "/nested":
            base = f"http://127.0.0.1:{self.server.server_port}"
            nxt = f"{base}/nested?page={page + 1}" if page * 3 < len(PEOPLE) else None
            self._send(200, {"data": {"rows": chunk}, "links": {"next": nxt}})
        elif path == "/endless":
            self._send(200, {"items": [{"page": page}], "next": f"/endless?page={page + 1}"})
        elif path == "/loop":
            self._send(200, {"items": [{"a": 1}], "next": "/loop"})
        elif path == "/auth":
            if self.headers.get("Authorization") != "Bearer sesame":
                self._send(401, {"error": "who are you?"})
            else:
                self._send(200, {"items": PEOPLE[:2]})
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), {"error": "nope"})
        elif path == "/notjson":
            self._send(200, b"<html>hello</html>", "text/html")
        elif path == "/notlist":
            self._send(200, {"items": 5})
        elif path == "/scalars":
            self._send(200, {"items": [1, 2]})
        elif path == "/empty":
            self._send(200, {"items": []})
        elif path == "/badnext":
            self._send(200, {"items": PEOPLE[:1], "next": 42})
        else:
            self._send(404, {"error": "no such route"})


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    """A paged JSON API on 127.0.0.1 (``api.url`` is its base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.requests = []
    server.headers_seen = []
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def people() -> pd.DataFrame:
    """A small mixed-type table: ints, floats with a gap, strings, bools, dates."""
    return pd.DataFrame({
        "id": np.arange(1, 9, dtype="int64"),
        "age": [23.0, 35.5, np.nan, 41.0, 29.0, 52.0, 38.0, 23.0],
        "city": ["Oslo", "Lima", "Oslo", "Pune", None, "Oslo", "Lima", "Pune"],
        "member": [True, False, True, True, False, True, False, True],
        "joined": pd.to_datetime(["2020-01-05", "2021-03-01", "2019-07-30", "2022-12-31",
                                  "2020-06-15", "2018-02-28", "2023-01-01", "2021-09-09"]),
    })


def record_counts(ws) -> tuple[int, int, int]:
    """Rows in datasets, dataset_versions and dataset_lineage."""
    with ws.db.read() as s:
        return tuple(s.execute(select(func.count()).select_from(t)).scalar()
                     for t in (DatasetRow, DatasetVersionRow, DatasetLineageRow))


@pytest.fixture
def counts():
    """``counts(ws)``: rows in datasets, dataset_versions and dataset_lineage."""
    return record_counts
