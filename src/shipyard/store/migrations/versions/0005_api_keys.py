"""API keys for the prediction server: scopes, salted secret hash, expiry,
revocation and a per-key rate limit.

Revision ID: 0005_api_keys
Revises: 0004_registry_audit
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_api_keys"
down_revision = "0004_registry_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer),
        sa.Column("expires_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("revoked_by", sa.String(200)),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
