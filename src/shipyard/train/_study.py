"""One candidate's hyperparameter search: an Optuna study, run batch by batch.

The coordinator owns the study (persisted in the workspace DB) and works in
batches of ``search.batch_size`` trials: ask them all, send them to the
executor, then tell the results in trial order. The sampler is re-created
for each batch with a seed derived from ``(seed, candidate, first trial
number)``, so what it suggests depends only on the seed and the study's
history — not on ``n_jobs``, the executor, timing, or on whether the search
was interrupted and resumed between batches.

Each trial is a nested tracked run of the study run, logged here (never by
workers): params, each fold's score as a metric step, the mean score, its
cost, and its Optuna state. The study run and its trials record the
coordinator's process, so that runs a killed coordinator left ``RUNNING`` are
ended ``KILLED`` when a search starts again (see
:meth:`~shipyard.tracking.Runs.reap_orphans`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.tracking import process_tags
from shipyard.train._cost import CostModel
from shipyard.train._executors import Executor
from shipyard.train._spec import CandidateSpec, ProjectSpec
from shipyard.train._trial import HistoryEntry, TrialTask

log = logging.getLogger("shipyard.train")

INTERRUPTED = "interrupted"
#: ``progress(candidate, finished, total)`` after each told trial.
Progress = Callable[[str, int, int], None]


@dataclass
class CandidateResult:
    """How one candidate's search went (over the whole study, resumes included).

    Attributes
    ----------
    best_value, best_std
        Mean and standard deviation across folds of the best complete trial
        (None when no trial completed).
    n_complete, n_pruned, n_failed
        Trials by final state.
    fit_seconds, cpu_seconds
        Summed over this study's trials (worker wall and CPU time).
    ran
        Trials evaluated by this call (the rest came from an earlier one).
    """

    name: str
    estimator: str
    study_name: str
    best_value: float | None = None
    best_std: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial: int | None = None
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    fit_seconds: float = 0.0
    cpu_seconds: float = 0.0
    ran: int = 0
    timed_out: bool = False


def study_name(spec: ProjectSpec, candidate: CandidateSpec, dataset_ref: str,
               experiment: str, split_digest: str) -> str:
    """A name that changes exactly when the search's results could change.

    ``n_trials``, ``timeout``, ``n_jobs`` and the executor are left out:
    raising ``n_trials`` continues the same study, and the others do not
    change results.
    """
    search = spec.train.search
    key = {"candidate": candidate.model_dump(mode="json"), "kind": search.kind,
           "pruner": search.pruner, "metric": spec.metric, "batch_size": search.batch_size,
           "split": spec.train.split.model_dump(mode="json"), "split_digest": split_digest,
           "seed": spec.seed, "imbalance": spec.train.imbalance, "target": spec.target,
           "task": spec.task, "features": spec.features.model_dump(mode="json"),
           "train_on_sensitive": spec.train.train_on_sensitive}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{experiment}.{candidate.name}.{dataset_ref}.{digest}"


def storage_for(url: str) -> Any:
    """Optuna's RDBStorage on the workspace DB (its tables beside ours)."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def open_study(storage: Any, name: str, spec: ProjectSpec, candidate: CandidateSpec, *,
               resume: bool) -> Any:
    """Create or load the study; trials a killed process left RUNNING become FAIL.

    With ``resume=False`` an existing study of that name is deleted first.
    """
    import optuna
    from optuna.trial import TrialState

    from shipyard.train._space import make_pruner, make_sampler

    if not resume:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    study = optuna.create_study(
        storage=storage, study_name=name, direction=spec.direction, load_if_exists=True,
        sampler=make_sampler(spec.train.search.kind, spec.seed, candidate),
        pruner=make_pruner(spec.train.search.pruner))
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                          TrialState.WAITING)):
        storage.set_trial_user_attr(stale._trial_id, "error",
                                    f"{INTERRUPTED}: its process stopped before it finished")
        storage.set_trial_state_values(stale._trial_id, TrialState.FAIL)
    return study


def search_candidate(study: Any, spec: ProjectSpec, candidate: CandidateSpec,
                     executor: Executor, study_run: Any, *, cost: CostModel,
                     deadline: float | None = None,
                     progress: Progress | None = None) -> CandidateResult:
    """Run ``candidate``'s remaining trials (``n_trials`` minus those already
    finished, not counting trials an interrupted process left) and summarise
    the study. A trial whose estimator raised counts as finished (FAIL).

    Stops early at ``deadline`` (a ``time.monotonic()`` value), between batches.

    First, runs of this host whose process is gone (a coordinator killed
    before it could end them) are ended ``KILLED``.
    """
    from optuna.trial import TrialState

    from shipyard.train._space import grid_of, make_sampler, suggest

    this_process = process_tags()
    study_run.set_tags(this_process)
    try:
        reaped = [c.run_id[:8] for c in study_run.runs.reap_orphans() if c.killed]
    except ShipyardError as exc:  # housekeeping: never the reason a training fails
        log.warning("shipyard: could not look for runs orphaned by a killed process: %s", exc)
        reaped = []
    if reaped:
        more = f" and {len(reaped) - 5} more" if len(reaped) > 5 else ""
        log.warning("shipyard: marked KILLED %d run(s) left RUNNING by a process that is "
                    "gone: %s%s", len(reaped), ", ".join(reaped[:5]), more)
    search = spec.train.search
    n_trials = search.n_trials
    if search.kind == "grid":
        n_trials = min(n_trials, math.prod(len(v) for v in grid_of(candidate).values()))
    result = CandidateResult(candidate.name, candidate.estimator, study.study_name)
    report = progress or (lambda *args: None)
    done = _finished(study)
    report(candidate.name, min(done, n_trials), n_trials)
    while done < n_trials:
        if deadline is not None and time.monotonic() >= deadline:
            result.timed_out = True
            break
        first = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(search.kind, _batch_seed(spec.seed, candidate.name, first),
                                     candidate)
        if search.kind == "grid":
            # GridSampler stops optimize() loops when the grid is used up; in
            # ask-and-tell there is no loop to stop (and stop() would raise).
            study.sampler.after_trial = lambda *args, **kwargs: None
        batch = [study.ask() for _ in range(min(search.batch_size, n_trials - done))]
        sampled = [suggest(trial, candidate) for trial in batch]
        history = _history(study)
        tasks = [TrialTask(trial.number, study.study_name, candidate.estimator,
                           {**candidate.params, **values}, history)
                 for trial, values in zip(batch, sampled, strict=True)]
        runs = [study_run.start_run(
            name=f"{candidate.name}-{trial.number}", seed=spec.seed,
            params={"candidate": candidate.name, "estimator": candidate.estimator,
                    **candidate.params, **values},
            tags={"optuna.study": study.study_name, "optuna.trial": trial.number,
                  "candidate": candidate.name, **this_process})
            for trial, values in zip(batch, sampled, strict=True)]
        try:
            results = executor.run(tasks)
        except BaseException as exc:
            for trial, run in zip(batch, runs, strict=True):
                study.tell(trial, state=TrialState.FAIL)
                run.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED",
                        error=f"{type(exc).__name__}: {exc}")
            raise
        for trial, values, run, res in zip(batch, sampled, runs, results, strict=True):
            _tell(study, trial, values, run, res, spec.metric, cost)
            result.ran += 1
            done += 1
            report(candidate.name, min(done, n_trials), n_trials)
    _summarise(study, result, spec.direction)
    return result


def _tell(study: Any, trial: Any, values: dict, run: Any, res: Any, metric: str,
          cost: CostModel) -> None:
    from optuna.trial import TrialState

    for step, value in enumerate(res.fold_scores):
        run.log_metric(f"fold.{metric}", value, step=step)
    run.log_metrics({"fit_seconds": res.wall_seconds, **cost.metrics(res.cpu_seconds)})
    trial.set_user_attr("params", _jsonable(values))
    trial.set_user_attr("fold_scores", res.fold_scores)
    trial.set_user_attr("fit_seconds", res.wall_seconds)
    trial.set_user_attr("cpu_seconds", res.cpu_seconds)
    if res.imbalance is not None:
        trial.set_user_attr("imbalance", res.imbalance)
    for step, value in enumerate(res.intermediate):
        trial.report(value, step)
    if res.status == "complete":
        run.log_metrics({metric: res.value, f"{metric}.std": _std(res.fold_scores)})
        run.set_tag("optuna.state", "COMPLETE")
        study.tell(trial, res.value)
        run.end("FINISHED")
    elif res.status == "pruned":
        run.log_metric(metric, res.value)
        run.set_tag("optuna.state", "PRUNED")
        study.tell(trial, state=TrialState.PRUNED)
        run.end("FINISHED")
    else:
        trial.set_user_attr("error", (res.error or "")[:2000])
        run.set_tag("optuna.state", "FAIL")
        study.tell(trial, state=TrialState.FAIL)
        run.end("FAILED", error=res.error)


def _finished(study: Any) -> int:
    """Trials that count towards ``n_trials``: all finished ones except those
    a killed process left behind (they are run again)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished()
               and not str(t.user_attrs.get("error", "")).startswith(INTERRUPTED))


def _history(study: Any) -> tuple[HistoryEntry, ...]:
    """Every trial so far, in number order, as the pruner needs it; those
    still running (this batch) stand in as FAIL without values."""
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state.is_finished():
            value = t.value if t.state.name == "COMPLETE" else None
            out.append((t.state.name, value, dict(t.intermediate_values)))
        else:
            out.append(("FAIL", None, {}))
    return tuple(out)


def _summarise(study: Any, result: CandidateResult, direction: str) -> None:
    best = None
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state == "COMPLETE":
            result.n_complete += 1
            if best is None or (t.value > best.value if direction == "maximize"
                                else t.value < best.value):
                best = t
        elif state == "PRUNED":
            result.n_pruned += 1
        elif state == "FAIL":
            result.n_failed += 1
        result.fit_seconds += t.user_attrs.get("fit_seconds", 0.0)
        result.cpu_seconds += t.user_attrs.get("cpu_seconds", 0.0)
    if best is not None:
        result.best_value = best.value
        result.best_std = _std(best.user_attrs.get("fold_scores", []))
        result.best_params = dict(best.user_attrs.get("params", best.params))
        result.best_trial = best.number


def _batch_seed(seed: int, candidate: str, first_trial: int) -> int:
    raw = hashlib.sha256(f"{seed}:{candidate}:{first_trial}".encode()).digest()
    return int.from_bytes(raw[:4], "big")


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _jsonable(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))
