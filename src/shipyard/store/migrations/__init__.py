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
    from alembic import command

    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
