"""SQLAlchemy 2 models of the metadata DB.

Times are UNIX epoch seconds (float). Columns holding an artifact digest carry
``info={"blob": True}`` so that garbage collection finds every reference
without a list to keep in sync.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, BigInteger, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DIGEST = String(64)


def blob_column(nullable: bool = False) -> Mapped[Any]:
    return mapped_column(DIGEST, nullable=nullable, info={"blob": True})


class Base(DeclarativeBase):
    pass


# ---------------------------------------------------------------- datasets
class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_version"),
        UniqueConstraint("dataset_id", "content_hash", name="uq_dataset_content"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content_hash: Mapped[str] = mapped_column(DIGEST, nullable=False)
    snapshot_digest: Mapped[str] = blob_column()
    num_rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    num_columns: Mapped[int] = mapped_column(Integer, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    schema: Mapped[list] = mapped_column(JSON, nullable=False)
    profile: Mapped[dict] = mapped_column(JSON, nullable=False)
    source: Mapped[dict] = mapped_column(JSON, nullable=False)
    expectations: Mapped[list | None] = mapped_column(JSON)
    validation: Mapped[dict | None] = mapped_column(JSON)
    forced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    transform: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class DatasetLineageRow(Base):
    __tablename__ = "dataset_lineage"
    child_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)


# ---------------------------------------------------------------- tracking
class ExperimentRow(Base):
    __tablename__ = "experiments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_experiment_start", "experiment_id", "start_time"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), nullable=False)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    start_time: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    end_time: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    environment_digest: Mapped[str | None] = blob_column(nullable=True)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)


class ParamRow(Base):
    __tablename__ = "params"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class TagRow(Base):
    __tablename__ = "tags"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key_step", "run_id", "key", "step"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), nullable=False)
    key: Mapped[str] = mapped_column(String(250), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    timestamp: Mapped[float] = mapped_column(Float, nullable=False)
    # SQLite turns a bound NaN into NULL, so NaN is stored as value 0 + this flag.
    is_nan: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                         server_default=false())


class LatestMetricRow(Base):
    """The last-logged value of each metric of each run: what search filters on."""

    __tablename__ = "latest_metrics"
    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"),)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    timestamp: Mapped[float] = mapped_column(Float, nullable=False)
    # SQLite turns a bound NaN into NULL, so NaN is stored as value 0 + this flag.
    is_nan: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                         server_default=false())


class RunArtifactRow(Base):
    __tablename__ = "run_artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    digest: Mapped[str] = blob_column()
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class RunInputRow(Base):
    """Lineage: which dataset versions a run read."""

    __tablename__ = "run_inputs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"),
                                                    primary_key=True)


# ------------------------------------------------------------ audit log
class AuditEntryRow(Base):
    """One hash-chained record of a change (see :mod:`shipyard.security`)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    # Unique so that two writers that somehow read the same tail cannot both
    # commit: the backstop behind the writer lock.
    seq: Mapped[int] = mapped_column(BigInteger, unique=True, nullable=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    object_type: Mapped[str] = mapped_column(String(64), nullable=False)
    object_id: Mapped[str] = mapped_column(String(500), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSON)
    keyed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    prev_hash: Mapped[str] = mapped_column(DIGEST, nullable=False)
    hash: Mapped[str] = mapped_column(DIGEST, nullable=False)


# ------------------------------------------------------------- registry
class RegisteredModelRow(Base):
    __tablename__ = "registered_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_version"),
        UniqueConstraint("model_id", "artifact_digest", name="uq_model_artifact"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), nullable=False, index=True)
    artifact_digest: Mapped[str] = blob_column()
    signature: Mapped[dict | None] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON, nullable=False)
    tags: Mapped[dict] = mapped_column(JSON, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(200))


class ModelVersionBlobRow(Base):
    """Every blob a model version needs (manifest and parts), so gc keeps them
    whatever the run that produced them recorded."""

    __tablename__ = "model_version_blobs"
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True, info={"blob": True})


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), nullable=False,
                                            index=True)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class ModelAliasEventRow(Base):
    """Every move of an alias: what rollback replays."""

    __tablename__ = "model_alias_history"
    __table_args__ = (Index("ix_model_alias_history_alias", "model_id", "alias", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), nullable=False)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)


# ------------------------------------------------------------- api keys
class ApiKeyRow(Base):
    """A serving credential (see :mod:`shipyard.security`): only a salted hash
    of the secret is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    scopes: Mapped[list] = mapped_column(JSON, nullable=False)
    salt: Mapped[str] = mapped_column(String(64), nullable=False)
    secret_hash: Mapped[str] = mapped_column(DIGEST, nullable=False)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    revoked_by: Mapped[str | None] = mapped_column(String(200))


# ------------------------------------------------------------- deployments
class DeploymentRow(Base):
    """How servers route one model name (see :mod:`shipyard.serve`); every
    change is in the audit log (``deployment.*``)."""

    __tablename__ = "deployments"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    spec: Mapped[dict] = mapped_column(JSON, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)


# ------------------------------------------------------------- monitoring
class MonitorReportRow(Base):
    """One window's monitor report (see :mod:`shipyard.monitor`): the figures
    a query filters on as columns, the whole report as JSON."""

    __tablename__ = "monitor_reports"
    __table_args__ = (Index("ix_monitor_reports_model_created", "model", "created_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[str | None] = mapped_column(String(16))
    window_start: Mapped[float | None] = mapped_column(Float)
    window_end: Mapped[float | None] = mapped_column(Float)
    rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    verdict: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    report: Mapped[dict] = mapped_column(JSON, nullable=False)


class MonitorAlertRow(Base):
    """One alert incident of a rule on a model: fired, then resolved; its
    webhook deliveries with their outcomes. Every state change is also in the
    audit log (``monitor.alert``)."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (Index("ix_monitor_alerts_model_rule", "model", "rule", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    rule: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    fired_at: Mapped[float] = mapped_column(Float, nullable=False)
    resolved_at: Mapped[float | None] = mapped_column(Float)
    last_report_id: Mapped[int | None] = mapped_column(ForeignKey("monitor_reports.id"))
    details: Mapped[dict] = mapped_column(JSON, nullable=False)
    deliveries: Mapped[list] = mapped_column(JSON, nullable=False)


# ---------------------------------------------------------------- RAG traces
class RagTraceRow(Base):
    """One traced ``ws.rag.query``/``answer`` (see :mod:`shipyard.genai`): the
    fields a query filters on as columns, its spans (name, ids, start, duration,
    attributes) as JSON. Never raw PII: questions are stored as redacted."""

    __tablename__ = "rag_traces"
    __table_args__ = (Index("ix_rag_traces_collection_started", "collection", "started_at"),)
    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    collection: Mapped[str | None] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(220))
    started_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    generator: Mapped[str | None] = mapped_column(String(200))
    refusal: Mapped[str | None] = mapped_column(Text)
    question: Mapped[str | None] = mapped_column(Text)
    spans: Mapped[list] = mapped_column(JSON, nullable=False)
