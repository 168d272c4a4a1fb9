"""The Workspace: one metadata DB + one artifact store, the one entry point."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from shipyard.config import Settings, load_settings

if TYPE_CHECKING:
    from pathlib import Path

    from shipyard.data import Datasets
    from shipyard.deploy import Deployments, ScoreResult
    from shipyard.evaluate import EvaluationReport, MitigationResult, PromotionResult
    from shipyard.genai import Rag
    from shipyard.monitor import Monitor
    from shipyard.project import Project
    from shipyard.registry import Registry
    from shipyard.retrain import RetrainResult
    from shipyard.security import ApiKeys, AuditLog
    from shipyard.store import ArtifactStore, Database, GcReport
    from shipyard.tracking import ActiveRun, Runs
    from shipyard.train import ReproReport, TrainResult


class Workspace:
    """A Shipyard workspace: the one front door to every stage.

    Open one with :meth:`Workspace.open`; it creates or upgrades the schema
    of its metadata DB. Stores are attributes (``ws.datasets``, ``ws.runs``,
    ``ws.models``, ``ws.deployments``, ``ws.monitor``, ``ws.keys``, ``ws.audit``); the
    lifecycle's verbs are methods (:meth:`train`, :meth:`reproduce`,
    :meth:`evaluate`, :meth:`mitigate`, :meth:`promote`, :meth:`retrain`,
    :meth:`score`).

    >>> import tempfile
    >>> ws = Workspace.open(tempfile.mkdtemp())
    >>> ws.db.dialect
    'sqlite'
    """

    def __init__(self, settings: Settings, db: Database, artifacts: ArtifactStore):
        self.settings = settings
        self.db = db
        self.artifacts = artifacts
        self._datasets: Datasets | None = None
        self._runs: Runs | None = None
        self._models: Registry | None = None
        self._audit: AuditLog | None = None
        self._deployments: Deployments | None = None
        self._keys: ApiKeys | None = None
        self._rag: Rag | None = None
        self._monitor: Monitor | None = None

    @classmethod
    def open(
        cls,
        home: str | os.PathLike | None = None,
        *,
        db_url: str | None = None,
        artifacts: str | None = None,
        encryption_key: bytes | str | None = None,
    ) -> Workspace:
        """Open (creating if needed) the workspace at ``home``.

        Parameters
        ----------
        home
            Workspace folder; default ``$SHIPYARD_HOME`` or ``./.shipyard``.
        db_url
            Metadata DB URL; default ``$SHIPYARD_DB_URL`` or
            ``sqlite:///<home>/shipyard.db``.
        artifacts
            Artifact store path or fsspec URL; default ``$SHIPYARD_ARTIFACTS``
            or ``<home>/artifacts``.
        encryption_key
            32-byte AES key (bytes, hex or base64) to encrypt artifacts at
            rest; default ``$SHIPYARD_ENCRYPTION_KEY`` or the file named by
            ``$SHIPYARD_ENCRYPTION_KEY_FILE``.
        """
        from shipyard.store import ArtifactStore, Database

        settings = load_settings(home, db_url=db_url, artifacts=artifacts,
                                 encryption_key=encryption_key)
        db = Database(settings.db_url)
        db.upgrade()
        store = ArtifactStore(settings.artifacts, key=settings.encryption_key)
        return cls(settings, db, store)

    def __repr__(self) -> str:
        return f"Workspace(db={self.db.safe_url!r}, artifacts={self.artifacts.url!r})"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._rag is not None:
            self._rag.close()
        if self._runs is not None:
            self._runs.close()
        self.db.dispose()

    # ------------------------------------------------------------ datasets
    @property
    def datasets(self) -> Datasets:
        """Register, load, profile and compare dataset versions."""
        if self._datasets is None:
            from shipyard.data import Datasets

            self._datasets = Datasets(self)
        return self._datasets

    # ------------------------------------------------------------ registry
    @property
    def models(self) -> Registry:
        """Registered models: versions, aliases, rollback, lineage, loading."""
        if self._models is None:
            from shipyard.registry import Registry

            self._models = Registry(self)
        return self._models

    # ------------------------------------------------------------ security
    @property
    def audit(self) -> AuditLog:
        """The tamper-evident audit log: entries, verify, export."""
        if self._audit is None:
            from shipyard.security import AuditLog

            self._audit = AuditLog(self)
        return self._audit

    @property
    def keys(self) -> ApiKeys:
        """API keys: create, list, revoke, authenticate."""
        if self._keys is None:
            from shipyard.security import ApiKeys

            self._keys = ApiKeys(self)
        return self._keys

    # -------------------------------------------------------------- deploy
    @property
    def deployments(self) -> Deployments:
        """How servers route each model name: set, get, rollback, history."""
        if self._deployments is None:
            from shipyard.deploy import Deployments

            self._deployments = Deployments(self)
        return self._deployments

    # ------------------------------------------------------------- monitor
    @property
    def monitor(self) -> Monitor:
        """Monitoring of served models: check a window, reports, alerts."""
        if self._monitor is None:
            from shipyard.monitor import Monitor

            self._monitor = Monitor(self)
        return self._monitor

    # --------------------------------------------------------------- genai
    @property
    def rag(self) -> Rag:
        """Retrieval-augmented generation: ingest versioned document
        collections, query, answer with citations, evaluate."""
        if self._rag is None:
            from shipyard.genai import Rag

            self._rag = Rag(self)
        return self._rag

    def score(self, ref: str, input: str | Path, output: str | Path, **kwargs: Any
              ) -> ScoreResult:
        """Batch-score the rows of a file with model ``ref`` into Parquet. See
        :func:`shipyard.deploy.score_file`."""
        from shipyard.deploy import score_file

        return score_file(self, ref, input, output, **kwargs)

    # ------------------------------------------------------------- training
    def train(self, project: str | os.PathLike | Project, **kwargs: Any) -> TrainResult:
        """Tune and fit the project file at ``project`` (or a loaded
        :class:`~shipyard.project.Project`). See :func:`shipyard.train.train`."""
        from shipyard.train import ProjectSpec, train

        if not isinstance(project, ProjectSpec):
            from shipyard.project import load_project

            project = load_project(project)
        return train(self, project, **kwargs)

    def reproduce(self, run_id: str, **kwargs: Any) -> ReproReport:
        """Re-run a recorded training and compare. See :func:`shipyard.train.reproduce`."""
        from shipyard.train import reproduce

        return reproduce(self, run_id, **kwargs)

    # ----------------------------------------------------------- evaluation
    def evaluate(self, model_ref: str, dataset_ref: str, **kwargs: Any) -> EvaluationReport:
        """Evaluate a model version on a dataset version. See
        :func:`shipyard.evaluate.evaluate`."""
        from shipyard.evaluate import evaluate

        return evaluate(self, model_ref, dataset_ref, **kwargs)

    def mitigate(self, model_ref: str, dataset_ref: str, **kwargs: Any) -> MitigationResult:
        """Fit per-group thresholds and register the result. See
        :func:`shipyard.evaluate.mitigate`."""
        from shipyard.evaluate import mitigate

        return mitigate(self, model_ref, dataset_ref, **kwargs)

    def promote(self, ref: str, **kwargs: Any) -> PromotionResult:
        """Move an alias to ``ref`` only through the gates. See
        :func:`shipyard.evaluate.promote`."""
        from shipyard.evaluate import promote

        return promote(self, ref, **kwargs)

    def retrain(self, model: str, *, project: str | os.PathLike | Project, **kwargs: Any
                ) -> RetrainResult:
        """Retrain ``model`` from its labelled feedback with the project file
        ``project``; promote the candidate only when it beats the champion on
        the same holdout and passes a canary. See :func:`shipyard.retrain.retrain`."""
        from shipyard.retrain import retrain

        return retrain(self, model, project=project, **kwargs)

    # ------------------------------------------------------------ tracking
    @property
    def runs(self) -> Runs:
        """Experiments and runs: start, search, compare."""
        if self._runs is None:
            from shipyard.tracking import Runs

            self._runs = Runs(self)
        return self._runs

    def start_run(self, experiment: str = "default", **kwargs: Any) -> ActiveRun:
        """Start a tracked run; use it as a context manager. See
        :meth:`shipyard.tracking.Runs.start`."""
        return self.runs.start(experiment, **kwargs)

    def search_runs(self, filter: str | None = None, **kwargs: Any):
        """Search runs with a filter expression. See
        :meth:`shipyard.tracking.Runs.search`."""
        return self.runs.search(filter, **kwargs)

    # ------------------------------------------------------------- storage
    def counts(self) -> dict[str, int]:
        """How many of each kind of record the workspace holds.

        >>> import tempfile
        >>> Workspace.open(tempfile.mkdtemp()).counts()["runs"]
        0
        """
        from sqlalchemy import func, select

        from shipyard.store.tables import (AuditEntryRow, DatasetRow, DatasetVersionRow,
                                           ExperimentRow, ModelVersionRow, RegisteredModelRow,
                                           RunRow)

        kinds = (("datasets", DatasetRow), ("dataset versions", DatasetVersionRow),
                 ("experiments", ExperimentRow), ("runs", RunRow),
                 ("models", RegisteredModelRow), ("model versions", ModelVersionRow),
                 ("audit entries", AuditEntryRow))
        with self.db.read() as session:
            return {label: session.execute(select(func.count()).select_from(row)).scalar_one()
                    for label, row in kinds}

    def referenced_digests(self) -> set[str]:
        """Every artifact digest some record points at."""
        from sqlalchemy import select

        from shipyard.store.tables import Base

        digests: set[str] = set()
        with self.db.read() as session:
            for table in Base.metadata.sorted_tables:
                for column in table.columns:
                    if column.info.get("blob"):
                        digests.update(
                            d for d in session.execute(select(column).distinct()).scalars() if d
                        )
        return digests

    def gc(self, *, grace_seconds: float = 3600.0, dry_run: bool = False) -> GcReport:
        """Delete artifact blobs that no record references (see
        :meth:`ArtifactStore.gc`)."""
        return self.artifacts.gc(self.referenced_digests(), grace_seconds=grace_seconds,
                                 dry_run=dry_run)
