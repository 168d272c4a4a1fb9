"""Alembic migrations of the metadata DB, run programmatically on open.

``HEAD`` names the newest revision so that opening an up-to-date workspace
costs one query instead of loading Alembic; a test keeps it equal to the
script directory's head.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

HEAD = "0006_deployments"
VERSION_TABLE = "shipyard_schema_version"
HERE = Path(__file__).parent


def alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic's upgrade to ``revision`` in one transaction that holds the
    writer lock from its first statement.

    Alembic reads the current revision inside that transaction, so of several
    processes opening a fresh database at once, one migrates and the others,
    once it commits, find the schema at ``revision`` and do nothing. Left to
    itself Alembic would commit each SQLite migration on its own (SQLite is not
    flagged as having transactional DDL), letting a second opener start from a
    revision the first had already moved past.
    """
    from alembic import command

    from shipyard.store._db import MIGRATION_LOCK, Database

    cfg = alembic_config()
    # engine is the write engine: on SQLite its transactions begin IMMEDIATE.
    with engine.connect() as conn, conn.begin():
        Database.lock(conn, MIGRATION_LOCK)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
