"""Alembic migrations of the metadata DB, run programmatically on open.

``HEAD`` names the newest revision so that opening an up-to-date workspace
costs one query instead of loading Alembic; a test keeps it equal to the
script directory's head.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Connection

HEAD = "0008_rag_traces"
VERSION_TABLE = "shipyard_schema_version"
HERE = Path(__file__).parent


def alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Run Alembic's upgrade to ``revision`` inside the transaction that
    ``connection`` is in; committing it is the caller's part.

    Alembic reads the current revision inside that transaction, so a caller
    holding the writer lock from the transaction's start migrates alone:
    ``Database.upgrade`` does, and of several processes opening a fresh
    database at once, one migrates and the others, once it commits, find the
    schema at ``revision`` and do nothing. Left to run its own transactions,
    Alembic would commit each SQLite migration on its own (SQLite is not
    flagged as having transactional DDL), letting a second opener start from a
    revision the first had already moved past.
    """
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)
