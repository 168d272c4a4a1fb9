"""Deployments: how the prediction server routes each model (single, canary,
A/B, shadow), one row per model name; history lives in the audit log.

Revision ID: 0006_deployments
Revises: 0005_api_keys
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_deployments"
down_revision = "0005_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("deployments")
