"""Re-run a recorded training and say what, if anything, came out different."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.errors import NotFoundError, TrainingError

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.train._study import Progress


@dataclass(frozen=True)
class ReproItem:
    """One compared value: what the record says, what the re-run gave."""

    name: str
    expected: Any
    actual: Any
    ok: bool


@dataclass
class ReproReport:
    """The comparison of a recorded study run with its re-run.

    ``ok`` is True when every item matched (metrics within ``tolerance``,
    digests exactly).
    """

    run_id: str
    reproduced_run_id: str
    tolerance: float
    items: list[ReproItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def differences(self) -> list[ReproItem]:
        return [item for item in self.items if not item.ok]


def reproduce(ws: Workspace, run_id: str, *, tolerance: float = 1e-9,
              experiment: str | None = None, n_jobs: int | None = None,
              executor: str | None = None, progress: Progress | None = None) -> ReproReport:
    """Re-run the training recorded by ``run_id`` and compare.

    The recorded spec (``spec.json``, its dataset pinned to the version
    trained on) and seed are trained again, from scratch, in the experiment
    ``<experiment>-reproduce``; then the dataset, split, best candidate, every
    recorded ``best.*``/``test.*`` metric and the model digest are compared.

    Parameters
    ----------
    run_id
        The study run (or its final run, or one of its trials), or a unique
        prefix of its id.
    tolerance
        Relative and absolute tolerance for metrics.

    Raises
    ------
    NotFoundError
        No such run, or it is not part of a training (no ``spec.json``).
    """
    from shipyard.train._spec import ProjectSpec
    from shipyard.train._trainer import train

    info = ws.runs.get(run_id)
    while info.tags.get("kind") != "study" and info.parent_id is not None:
        info = ws.runs.get(info.parent_id)
    try:
        raw = ws.runs.load_artifact(info.id, "spec.json")
    except NotFoundError as exc:
        raise NotFoundError(f"run {info.short_id} was not made by `shipyard train`: it has no "
                            "spec.json to re-run", hint="pass the id of a training's study run"
                            ) from exc
    spec = ProjectSpec.model_validate(json.loads(raw))
    if info.status != "FINISHED":
        raise TrainingError(f"run {info.short_id} ended {info.status}; only a finished "
                            "training can be reproduced")
    result = train(ws, spec, resume=False, n_jobs=n_jobs, executor=executor, progress=progress,
                   experiment=experiment or f"{info.experiment}-reproduce")
    new = ws.runs.get(result.study_run_id)
    report = ReproReport(info.id, new.id, tolerance)
    for tag in ("dataset.ref", "dataset.content_hash", "split.digest", "best.candidate"):
        expected, actual = info.tags.get(tag), new.tags.get(tag)
        if expected is None and tag == "dataset.content_hash":
            continue  # a record older than this tag: compare what it holds
        report.items.append(ReproItem(tag, expected, actual, expected == actual))
    for key in sorted(k for k in info.metrics if k.startswith(("best.", "test."))
                      or ".best_" in k):
        expected, actual = info.metrics[key], new.metrics.get(key)
        ok = actual is not None and (math.isclose(expected, actual, rel_tol=tolerance,
                                                  abs_tol=tolerance)
                                     or (math.isnan(expected) and math.isnan(actual)))
        report.items.append(ReproItem(key, expected, actual, ok))
    expected, actual = info.tags.get("model.digest"), new.tags.get("model.digest")
    report.items.append(ReproItem("model.digest", expected, actual, expected == actual))
    return report
