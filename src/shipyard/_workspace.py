"""The Workspace: one metadata DB + one artifact store, the one entry point."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shipyard.config import Settings, load_settings
from shipyard.store import ArtifactStore, Database, GcReport

if TYPE_CHECKING:
    from shipyard.data import Datasets
    from shipyard.registry import Registry
    from shipyard.security import AuditLog
    from shipyard.tracking import ActiveRun, Runs


class Workspace:
    """A Shipyard workspace.

    Open one with :meth:`Workspace.open`; it creates or upgrades the schema
    of its metadata DB.

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
    def referenced_digests(self) -> set[str]:
        """Every artifact digest some record points at."""
        from shipyard.store._models import Base

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
