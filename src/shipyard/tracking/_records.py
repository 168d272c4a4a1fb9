"""Read-only records returned by searches and look-ups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class RunInfo:
    """One run as stored: attributes, params, latest metrics and tags.

    ``peak_memory_mb`` is the peak resident memory of the process that ran it
    (up to the run's end), not of the run alone; ``cpu_seconds`` counts the
    process and its waited-for children during the run.
    """

    id: str
    experiment: str
    name: str | None
    status: str
    parent_id: str | None
    start_time: float
    end_time: float | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    peak_memory_mb: float | None = None
    error: str | None = None
    environment_digest: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        if self.wall_seconds is not None:
            return self.wall_seconds
        return None if self.end_time is None else self.end_time - self.start_time

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return (f"RunInfo(id={self.short_id!r}, experiment={self.experiment!r}{name}, "
                f"status={self.status!r}, metrics={self.metrics!r})")


@dataclass(frozen=True)
class Experiment:
    """A named group of runs."""

    id: int
    name: str
    created_at: float
    num_runs: int = 0


@dataclass(frozen=True)
class RunArtifact:
    """One file logged by a run: its logical path and the blob holding it."""

    path: str
    digest: str
    size_bytes: int
    created_at: float


@dataclass(frozen=True)
class MetricSeries:
    """The points of one metric of one run, as numpy arrays sorted by step.

    ``total`` counts every point logged; ``steps`` and ``values`` hold them
    all, or for an envelope read (see :meth:`Runs.metric_series`) only the
    lowest and highest finite point of each step range, plus the first and
    the last.
    """

    steps: Any
    values: Any
    total: int

    @property
    def reduced(self) -> bool:
        """Whether only an envelope of the points was read."""
        return len(self.steps) < self.total

    def __repr__(self) -> str:
        return f"MetricSeries(points={len(self.steps)}, total={self.total})"
