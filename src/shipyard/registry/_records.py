"""Read-only records of the registry: versions, summaries, lineage, alias moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard import Workspace

STATUSES = ("READY", "ARCHIVED")


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered model version.

    Attributes
    ----------
    name, version, ref
        ``fraud``, ``7``, ``"fraud@7"``.
    run_id
        The run that trained it.
    artifact_digest
        Digest of its :class:`~shipyard.train.ModelArtifact` manifest (the model hash).
    blob_digests
        Every blob the model needs (manifest and parts); all kept by ``gc``.
    signature
        Input columns and dtypes, output kind, classes (JSON object).
    metrics
        The run's latest metrics when it was registered (NaN as ``None``).
    tags, description
        Free-form annotations.
    status
        ``READY`` or ``ARCHIVED``.
    dataset_version
        Ref of the dataset version it was trained on (``adult@3``), if the run
        recorded one.
    aliases
        Aliases now pointing at it, sorted.
    created_at, created_by
        Epoch seconds; who registered it.
    new
        True when the call that returned it created it.
    """

    name: str
    version: int
    run_id: str
    artifact_digest: str
    blob_digests: tuple[str, ...]
    signature: dict[str, Any] | None
    metrics: dict[str, float | None]
    tags: dict[str, str]
    description: str | None
    status: str
    dataset_version: str | None
    aliases: tuple[str, ...]
    created_at: float
    created_by: str | None
    new: bool = field(default=False, compare=False)
    _workspace: Workspace | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def load(self) -> Any:
        """The model (``predict``, and ``predict_proba`` for classifiers),
        every blob hash-verified."""
        from shipyard.registry._formats import load_stored

        if self._workspace is None:
            from shipyard.errors import RegistryError

            raise RegistryError(f"{self.ref} is not attached to a workspace")
        if self.tags.get("shipyard.kind") == "prompt":
            from shipyard.errors import RegistryError

            raise RegistryError(f"{self.ref} is a prompt template, not a model",
                                hint=f"read it with ws.rag.prompts.get("
                                     f"{self.ref.removeprefix('prompt.')!r})")
        return load_stored(self._workspace.artifacts, self.artifact_digest)

    def __str__(self) -> str:
        return self.ref


@dataclass(frozen=True)
class ModelSummary:
    """One line of :meth:`Registry.list`."""

    name: str
    description: str | None
    latest_version: int
    num_versions: int
    aliases: dict[str, int]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ModelLineage:
    """Where a model version came from: data → run → artifact → version.

    Attributes
    ----------
    model
        ``fraud@7``.
    run_id, artifact_digest
        The training run and the model hash.
    dataset_version
        The dataset version recorded with the model version (``None`` if the
        run read none).
    dataset_versions
        Every dataset version the run read.
    """

    model: str
    run_id: str
    artifact_digest: str
    dataset_version: str | None
    dataset_versions: tuple[str, ...]

    def __str__(self) -> str:
        data = ", ".join(self.dataset_versions) or "(no dataset recorded)"
        return (f"{data} → run {self.run_id[:8]} → model {self.artifact_digest[:12]} "
                f"→ {self.model}")


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: ``set``, ``rollback`` or ``remove``."""

    alias: str
    event: str
    version: int | None
    previous_version: int | None
    ts: float
    actor: str
    reason: str | None
