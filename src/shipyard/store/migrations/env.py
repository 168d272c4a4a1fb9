"""Alembic environment: runs on the connection handed over by ``upgrade``."""

from alembic import context
from sqlalchemy import text

from shipyard.store._models import Base
from shipyard.store.migrations import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
    # Not the default "alembic_version": Optuna keeps its studies in the same DB
    # and runs its own Alembic migrations with that table name.
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Serialise concurrent openers: the second waits, then sees the new head.
        connection.execute(text("SELECT pg_advisory_xact_lock(7263513)"))
    context.run_migrations()
