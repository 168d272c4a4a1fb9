"""The model registry (models, versions, their blobs, aliases and alias
history) and the hash-chained audit log.

Revision ID: 0004_registry_audit
Revises: 0003_metric_nan
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_registry_audit"
down_revision = "0003_metric_nan"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(500), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.JSON),
        sa.Column("keyed", sa.Boolean, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id"])
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("artifact_digest", sa.String(64), nullable=False),
        sa.Column("signature", sa.JSON),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dataset_version_id", sa.Integer, sa.ForeignKey("dataset_versions.id")),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.UniqueConstraint("model_id", "version", name="uq_model_version"),
        sa.UniqueConstraint("model_id", "artifact_digest", name="uq_model_artifact"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_version_blobs",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"),
                  primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
    )
    op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("registered_models.id"),
                  primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_model_aliases_version_id", "model_aliases", ["version_id"])
    op.create_table(
        "model_alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("registered_models.id"),
                  nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("previous_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_model_alias_history_alias", "model_alias_history",
                    ["model_id", "alias", "id"])


def downgrade() -> None:
    for name in ("model_alias_history", "model_aliases", "model_version_blobs",
                 "model_versions", "registered_models", "audit_log"):
        op.drop_table(name)
