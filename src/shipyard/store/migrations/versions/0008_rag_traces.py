"""RAG traces: one row per traced ``ws.rag.query``/``answer``, its spans as JSON.

Revision ID: 0008_rag_traces
Revises: 0007_monitor
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_rag_traces"
down_revision = "0007_monitor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rag_traces",
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("collection", sa.String(200)),
        sa.Column("ref", sa.String(220)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("generator", sa.String(200)),
        sa.Column("refusal", sa.Text),
        sa.Column("question", sa.Text),
        sa.Column("spans", sa.JSON, nullable=False),
    )
    op.create_index("ix_rag_traces_collection_started", "rag_traces",
                    ["collection", "started_at"])
    op.create_index("ix_rag_traces_started_at", "rag_traces", ["started_at"])


def downgrade() -> None:
    op.drop_table("rag_traces")
