"""Alembic environment: runs on the connection handed over by ``upgrade``."""

from alembic import context

from shipyard.store.migrations import VERSION_TABLE
from shipyard.store.tables import Base

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
# ``upgrade`` has begun the transaction and taken the lock; Alembic joins it.
with context.begin_transaction():
    context.run_migrations()
