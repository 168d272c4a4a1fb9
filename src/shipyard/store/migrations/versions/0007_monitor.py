"""Monitoring: one row per window's monitor report (the report as JSON) and
one per alert incident (fired, resolved, its webhook deliveries).

Revision ID: 0007_monitor
Revises: 0006_deployments
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_monitor"
down_revision = "0006_deployments"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitor_reports",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("role", sa.String(16)),
        sa.Column("window_start", sa.Float),
        sa.Column("window_end", sa.Float),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
    )
    op.create_index("ix_monitor_reports_model_created", "monitor_reports",
                    ["model", "created_at"])
    op.create_table(
        "monitor_alerts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("last_report_id", _ID, sa.ForeignKey("monitor_reports.id")),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("deliveries", sa.JSON, nullable=False),
    )
    op.create_index("ix_monitor_alerts_model_rule", "monitor_alerts", ["model", "rule", "id"])
    op.create_index("ix_monitor_alerts_state", "monitor_alerts", ["state"])


def downgrade() -> None:
    op.drop_table("monitor_alerts")
    op.drop_table("monitor_reports")
