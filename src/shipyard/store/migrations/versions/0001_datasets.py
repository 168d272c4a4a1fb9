"""Datasets, their versions and lineage.

Revision ID: 0001_datasets
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_datasets"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("snapshot_digest", sa.String(64), nullable=False),
        sa.Column("num_rows", sa.BigInteger, nullable=False),
        sa.Column("num_columns", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("source", sa.JSON, nullable=False),
        sa.Column("expectations", sa.JSON),
        sa.Column("validation", sa.JSON),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("transform", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_version"),
        sa.UniqueConstraint("dataset_id", "content_hash", name="uq_dataset_content"),
    )
    op.create_table(
        "dataset_lineage",
        sa.Column("child_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("dataset_lineage")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
