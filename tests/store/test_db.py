import multiprocessing as mp

import pytest
from sqlalchemy import select, text

from shipyard import Workspace
from shipyard.errors import ConfigError
from shipyard.store import Database
from shipyard.store.tables import DatasetRow
from shipyard.store.migrations import HEAD, alembic_config


def test_head_constant_matches_migration_scripts():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_open_creates_schema_at_head(workspace):
    assert workspace.db.current_revision() == HEAD


def test_older_workspace_upgrades_on_open_and_keeps_data(db_url, tmp_path):
    old = Database(db_url)
    old.upgrade("0001_datasets")
    assert old.current_revision() == "0001_datasets"
    with old.write() as s:
        s.add(DatasetRow(name="kept", created_at=1.0))
    old.dispose()

    ws = Workspace.open(tmp_path, db_url=db_url)
    assert ws.db.current_revision() == HEAD
    with ws.db.read() as s:
        assert s.execute(select(DatasetRow.name)).scalars().all() == ["kept"]
        assert s.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    ws.close()


def test_failed_transaction_leaves_nothing(workspace):
    with pytest.raises(RuntimeError):
        with workspace.db.write() as s:
            s.add(DatasetRow(name="half", created_at=1.0))
            s.flush()
            raise RuntimeError("boom")
    with workspace.db.read() as s:
        assert s.execute(select(DatasetRow)).first() is None


def test_sqlite_is_in_wal_mode_with_busy_timeout(sqlite_workspace):
    with sqlite_workspace.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y"])
def test_bad_db_url_is_a_clear_error(url, tmp_path):
    with pytest.raises(ConfigError) as info:
        Workspace.open(tmp_path, db_url=url)
    assert "database URL" in str(info.value) or "cannot use" in str(info.value)


def _open_and_insert(args):
    home, n = args
    ws = Workspace.open(home)
    for i in range(n):
        with ws.db.write() as s:
            s.add(DatasetRow(name=f"p{mp.current_process().pid}-{i}", created_at=float(i)))
    ws.close()


def test_concurrent_first_open_and_writes_from_four_processes(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.map(_open_and_insert, [(str(tmp_path), 50)] * 4)
    ws = Workspace.open(tmp_path)
    with ws.db.read() as s:
        assert s.execute(text("SELECT count(*) FROM datasets")).scalar() == 200


def test_foreign_tables_in_the_way_are_a_clear_error(tmp_path):
    import sqlite3

    from shipyard.errors import StoreError

    path = tmp_path / "shipyard.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE datasets (something TEXT)")
    with pytest.raises(StoreError) as info:
        Workspace.open(tmp_path)
    assert "could not bring the schema" in str(info.value) and "empty database" in str(info.value)
