"""Metrics may be NaN: an ``is_nan`` flag on metrics and latest_metrics.

SQLite stores a bound NaN as NULL, which the NOT NULL ``value`` columns refuse,
so NaN is kept as ``value = 0, is_nan = true`` on every backend (as MLflow does).

Revision ID: 0003_metric_nan
Revises: 0002_tracking
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_metric_nan"
down_revision = "0002_tracking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("metrics", "latest_metrics"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("is_nan", sa.Boolean, nullable=False,
                                       server_default=sa.false()))


def downgrade() -> None:
    for table in ("metrics", "latest_metrics"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("is_nan")
