"""From a project spec to a tracked, tuned, stored model: :func:`train`.

1. Resolve the dataset version (ingesting a ``source`` first), pick the
   features, split; only train + validation rows go to the search.
2. Start the *study run* (experiment = the project's name) recording the
   spec, the split and the dataset version as its input.
3. Search each candidate (:mod:`shipyard.train._study`), trials nested under
   the study run.
4. Refit the best (candidate, params) on train + validation, score it once
   on the test rows, save it (:func:`~shipyard.train.save_model`) and log
   every blob of it, its signature and its lineage on a nested *final* run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ConfigError, DataError, TrainingError
from shipyard.tracking import process_tags
from shipyard.train._cost import CostModel
from shipyard.train._spec import ProjectSpec
from shipyard.train._study import CandidateResult, Progress

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.train._artifacts import ModelArtifact

#: Categorical columns with at most this many values list them in the signature.
MAX_SIGNATURE_CATEGORIES = 100


@dataclass
class TrainResult:
    """What :func:`train` did and made.

    Attributes
    ----------
    study_run_id, final_run_id
        The parent run and the nested run of the refit model.
    best_candidate, best_params, best_score
        The winner and its cross-validation (or validation) score.
    test_metrics
        Every metric of the task on the test rows (scored once).
    model
        The stored model; ``model.digest`` is the model hash.
    candidates
        Each candidate's search summary.
    """

    experiment: str
    dataset_ref: str
    metric: str
    direction: str
    study_run_id: str
    final_run_id: str
    best_candidate: str
    best_params: dict[str, Any]
    best_score: float
    test_metrics: dict[str, float]
    model: ModelArtifact
    candidates: list[CandidateResult]
    signature: dict[str, Any] = field(repr=False, default_factory=dict)
    split: dict[str, Any] = field(repr=False, default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def model_digest(self) -> str:
        return self.model.digest

    @property
    def leaderboard(self) -> pd.DataFrame:
        """One row a candidate, best first: score, std across folds, trial
        counts, fit time and best params."""
        import pandas as pd

        rows = [{"candidate": c.name, "estimator": c.estimator,
                 f"best_{self.metric}": c.best_value, "std": c.best_std,
                 "complete": c.n_complete, "pruned": c.n_pruned, "failed": c.n_failed,
                 "fit_seconds": round(c.fit_seconds, 3), "best_params": c.best_params}
                for c in self.candidates]
        frame = pd.DataFrame(rows)
        return frame.sort_values(f"best_{self.metric}",
                                 ascending=self.direction == "minimize", na_position="last",
                                 kind="stable").reset_index(drop=True)


def train(ws: Workspace, spec: ProjectSpec, *, progress: Progress | None = None,
          resume: bool = True, n_jobs: int | None = None, executor: str | None = None,
          address: str | None = None, experiment: str | None = None) -> TrainResult:
    """Search every candidate of ``spec``, refit the best, store it.

    Parameters
    ----------
    ws
        The workspace: data, tracking, artifacts, and the Optuna studies.
    spec
        The validated project (see :func:`~shipyard.train.load_project`).
    progress
        Called as ``progress(candidate, finished, total)`` after each trial.
    resume
        Continue the studies an earlier, interrupted call left (default);
        False starts each candidate's search over.
    n_jobs, executor, address
        Override ``train.search`` (they do not change results).
    experiment
        Experiment of the runs; default the project's ``name``, else the
        dataset's name.

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        An estimator, column or setting in the spec does not fit the data.
    NotFoundError
        The dataset version does not exist.
    TrainingError
        No trial of any candidate completed, or the executor failed.
    """
    import optuna

    spec = _override(spec, n_jobs=n_jobs, executor=executor, address=address)
    cost = CostModel.resolve(spec.cost)
    version = _resolve_dataset(ws, spec)
    frame = version.to_pandas()
    features = spec.training_features(list(frame.columns))
    _check_target(frame, spec)
    for cand in spec.train.candidates:
        _check_estimator(cand, spec.task)
    prepared = prepare(frame, spec, features)
    experiment = experiment or spec.name or version.name
    search = spec.train.search
    cpu0 = time.process_time()
    deadline = time.monotonic() + search.timeout if search.timeout else None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with ws.start_run(
                experiment, name="study", seed=spec.seed, inputs=[version],
                params=flat_params(spec),
                tags={"kind": "study", "dataset.ref": version.ref,
                      "dataset.content_hash": version.content_hash,
                      "split.digest": prepared.split.digest, "executor": search.executor,
                      "n_jobs": search.n_jobs, "metric": spec.metric,
                      **process_tags()}) as study_run:
            # Exactly as run, key order included: the order of a search space
            # is the order Optuna draws in, so a sorted copy would not reproduce.
            study_run.log_text("spec.json", json.dumps(spec_record(spec, version.ref),
                                                       indent=2, ensure_ascii=False))
            study_run.log_dict("split.json", prepared.split.describe())
            results, worker_cpu = _search_candidates(
                ws, spec, prepared, version, experiment, study_run, cost=cost,
                deadline=deadline, resume=resume, progress=progress)
            best, final = _refit_best(ws, spec, study_run, prepared, version, experiment,
                                      results, cost)
            total_cpu = time.process_time() - cpu0 + worker_cpu
            study_run.log_metrics(cost.metrics(total_cpu))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return TrainResult(
        experiment=experiment, dataset_ref=version.ref, metric=spec.metric,
        direction=spec.direction, study_run_id=study_run.id, final_run_id=final["run_id"],
        best_candidate=best.name, best_params=best.best_params, best_score=best.best_value,
        test_metrics=final["test"], model=final["model"], candidates=results,
        signature=final["signature"], split=prepared.split.describe(),
        cost=cost.metrics(total_cpu))


def _search_candidates(ws: Workspace, spec: ProjectSpec, prepared: Prepared, version: Any,
                       experiment: str, study_run: Any, *, cost: CostModel,
                       deadline: float | None, resume: bool, progress: Progress | None
                       ) -> tuple[list[CandidateResult], float]:
    """One tracked Optuna study a candidate, on one executor; return the
    results and the CPU seconds its workers spent (0 when in process)."""
    from shipyard.train._executors import make_executor
    from shipyard.train._study import open_study, search_candidate, storage_for, study_name

    search = spec.train.search
    storage = storage_for(ws.db.url)
    results: list[CandidateResult] = []
    with make_executor(search.executor, n_jobs=search.n_jobs, address=search.address) as pool:
        pool.start(prepared.data)
        for cand in spec.train.candidates:
            name = study_name(spec, cand, version.ref, experiment, prepared.split.digest)
            study = open_study(storage, name, spec, cand, resume=resume)
            results.append(search_candidate(study, spec, cand, pool, study_run, cost=cost,
                                            deadline=deadline, progress=progress))
        worker_cpu = 0.0 if pool.in_process else sum(r.cpu_seconds for r in results)
    for r in results:
        if r.best_value is not None:
            study_run.log_metrics({f"{r.name}.best_{spec.metric}": r.best_value,
                                   f"{r.name}.complete": r.n_complete,
                                   f"{r.name}.pruned": r.n_pruned,
                                   f"{r.name}.failed": r.n_failed})
    return results, worker_cpu


def _refit_best(ws: Workspace, spec: ProjectSpec, study_run: Any, prepared: Prepared,
                version: Any, experiment: str, results: list[CandidateResult],
                cost: CostModel) -> tuple[CandidateResult, dict[str, Any]]:
    """Refit the best candidate on train+validation, score it once on the test
    rows, and record the model contract on the study run."""
    best = _best(results, spec.direction)
    if best is None:
        raise TrainingError(
            f"no trial of any candidate completed ({sum(r.n_failed for r in results)} "
            "failed)", hint="see the failed trial runs' errors with "
            f"`shipyard runs list --experiment {experiment}`")
    final = _refit(ws, spec, study_run, prepared, best, version, cost)
    study_run.log_metrics({f"best.{spec.metric}": best.best_value,
                           **{f"test.{k}": v for k, v in final["test"].items()}})
    # The study run carries the model contract too, so either run id can be
    # registered: the signature beside the model digest.
    study_run.log_dict("model/signature.json", final["signature"])
    study_run.set_tags({"model.digest": final["model"].digest,
                        "best.candidate": best.name, "final.run": final["run_id"]})
    return best, final


def train_project(ws: Workspace, spec: ProjectSpec, *, console: Any = None,
                  **kwargs: Any) -> TrainResult:
    """:func:`train` a validated project; with a Rich ``console``, show a
    progress bar per candidate and print the results.

    Load the project file with :func:`shipyard.project.load_project`, or
    call ``ws.train("shipyard.yaml")``, which does both.

    Example (needs a workspace with data and a model)::

        from shipyard.project import load_project
        result = train_project(ws, load_project("examples/adult/shipyard.yaml"))
        result.leaderboard

    """
    if not isinstance(spec, ProjectSpec):
        raise ConfigError(f"train_project takes a validated project, not "
                          f"{type(spec).__name__}",
                          hint="load the file first: shipyard.project.load_project(path), "
                               "or call ws.train(path)")
    if console is None:
        return train(ws, spec, **kwargs)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bars:
        ids: dict[str, Any] = {}

        def progress(candidate: str, done: int, total: int) -> None:
            if candidate not in ids:
                ids[candidate] = bars.add_task(candidate, total=total)
            bars.update(ids[candidate], completed=done, total=total)

        result = train(ws, spec, progress=progress, **kwargs)
    print_result(result, console)
    return result


def print_result(result: TrainResult, console: Any) -> None:
    """The leaderboard and the final model, as Rich tables."""
    from rich.table import Table

    table = Table(title=f"{result.experiment}: {result.metric} "
                        f"({'higher' if result.direction == 'maximize' else 'lower'} is better)")
    # Few, narrow columns: the table stays readable in an 80-column terminal or a pipe.
    table.add_column("candidate", no_wrap=True)
    table.add_column(f"best {result.metric}", justify="right", no_wrap=True)
    table.add_column("trials", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    table.add_column("best params", overflow="fold", min_width=16)
    for row in result.leaderboard.to_dict("records"):
        score, std = row[f"best_{result.metric}"], row["std"]
        best = "-" if score is None or score != score else f"{score:.4f}"
        if best != "-" and std is not None and std == std:
            best += f" ±{std:.4f}"
        trials = ", ".join(f"{n} {what}" for n, what in ((row["complete"], "ok"),
                                                         (row["pruned"], "pruned"),
                                                         (row["failed"], "failed"))
                           if n or what == "ok")
        table.add_row(row["candidate"], best, trials, f"{row['fit_seconds']:.1f}",
                      ", ".join(f"{k}={_short(v)}" for k, v in row["best_params"].items()))
    console.print(table)
    final = Table(show_header=False, box=None)
    final.add_column("what", style="bold")
    final.add_column("value", overflow="fold")
    final.add_row("best", f"{result.best_candidate} ({result.metric} {result.best_score:.4f})")
    for name, value in result.test_metrics.items():
        final.add_row(f"test {name}", f"{value:.4f}")
    final.add_row("model", result.model.digest)
    final.add_row("study run", result.study_run_id)
    final.add_row("dataset", result.dataset_ref)
    final.add_row("cost", f"{result.cost['cost.cpu_seconds']:.1f} CPU-s, "
                          f"{result.cost['cost.energy_kwh'] * 1000:.3f} Wh, "
                          f"{result.cost['cost.co2e_g']:.3f} gCO2e")
    console.print(final)


# ---------------------------------------------------------------- prepare
@dataclass(eq=False)
class Prepared:
    """The split, the data the search sees, and the test rows."""

    split: Any
    data: Any
    X_test: Any
    y_test: np.ndarray
    features: list[str]


def prepare(frame: pd.DataFrame, spec: ProjectSpec, features: list[str]) -> Prepared:
    """Split ``frame`` and build the trial data: train + validation rows only,
    CV folds (or the train/validation pair) as positions into them."""
    from shipyard.train._preprocess import column_kinds
    from shipyard.train._split import cv_folds, make_split
    from shipyard.train._trial import TrialData

    split_spec = spec.train.split
    split = make_split(frame, spec.target, split_spec, spec.seed)
    rows = np.sort(np.concatenate([split.train, split.validation]))
    if split_spec.folds:
        folds = cv_folds(frame, spec.target, split_spec, spec.seed)
    elif len(split.validation):
        folds = [(split.train, split.validation)]
    else:  # neither folds nor a validation part: 3-fold CV, as the spec docs say
        folds = cv_folds(frame, spec.target, split_spec.model_copy(update={"folds": 3}),
                         spec.seed)
    kinds = column_kinds(frame, features, text_columns=spec.features.text,
                         date_columns=spec.features.dates)
    X = frame.iloc[rows][features].reset_index(drop=True)
    y = frame[spec.target].to_numpy()
    data = TrialData(
        X=X, y=y[rows],
        folds=[(np.searchsorted(rows, fit), np.searchsorted(rows, ev)) for fit, ev in folds],
        kinds=kinds, task=spec.task, metric=spec.metric, direction=spec.direction,
        imbalance=spec.train.imbalance, seed=spec.seed, pruner=spec.train.search.pruner)
    X_test = frame.iloc[split.test][features].reset_index(drop=True)
    return Prepared(split, data, X_test, y[split.test], features)


def _refit(ws: Workspace, spec: ProjectSpec, study_run: Any, prepared: Prepared,
           best: CandidateResult, version: Any, cost: CostModel) -> dict[str, Any]:
    from shipyard.train._artifacts import save_model
    from shipyard.train._metrics import METRICS
    from shipyard.train._trial import fit_model, make_estimator, score_model, single_threaded

    cand = next(c for c in spec.train.candidates if c.name == best.name)
    params = {**cand.params, **best.best_params}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with study_run.start_run(
            name="final", seed=spec.seed, inputs=[version],
            params={"candidate": cand.name, "estimator": cand.estimator, **params},
            tags={"kind": "final", "candidate": cand.name, "dataset.ref": version.ref,
                  "optuna.trial": best.best_trial}) as run:
        data = prepared.data
        with single_threaded():
            estimator = make_estimator(cand.estimator, spec.task, params, spec.seed)
            model, record = fit_model(data.X, data.y, data.kinds, estimator,
                                      imbalance=spec.train.imbalance, task=spec.task,
                                      seed=spec.seed)
            fit_seconds = time.perf_counter() - wall0
            # The one and only look at the test rows.
            test = score_model(model, prepared.X_test, prepared.y_test, spec.task,
                               list(METRICS[spec.task]))
        if record is not None:
            run.log_dict("imbalance.json", record)
            run.set_tag("imbalance", record["strategy"])
        artifact = save_model(model, ws.artifacts)
        _log_model(run, ws, artifact)
        signature = model_signature(data.X, data.kinds, model, spec)
        run.log_dict("model/signature.json", signature)
        run.set_tags({"model.digest": artifact.digest, "model.format": artifact.format})
        run.log_metrics({**{f"test.{k}": v for k, v in test.items()},
                         f"cv.{spec.metric}": best.best_value, "fit_seconds": fit_seconds})
        run.log_metrics(cost.metrics(time.process_time() - cpu0))
    if record is not None:
        study_run.log_dict("imbalance.json", record)
        study_run.set_tag("imbalance", record["strategy"])
    return {"run_id": run.id, "test": test, "model": artifact, "signature": signature}


def _log_model(run: Any, ws: Workspace, artifact: ModelArtifact) -> None:
    """Reference every blob of the model from the run, so garbage collection
    keeps them: the manifest and each part, under ``model/``."""
    run.log_dict("model/artifact.json", artifact.model_dump(mode="json"))
    run.log_bytes("model/manifest.json", ws.artifacts.get_bytes(artifact.digest))
    for role, digest in sorted(artifact.parts.items()):
        stored = run.log_bytes(f"model/{role}", ws.artifacts.get_bytes(digest))
        if stored != digest:  # content addressing makes this impossible; say so if not
            raise TrainingError(f"model part {role} was stored as {stored}, not {digest}")


def model_signature(X: pd.DataFrame, kinds: dict[str, str], model: Any,
                    spec: ProjectSpec) -> dict[str, Any]:
    """The signature of a model trained from ``spec``: see :func:`infer_signature`."""
    return infer_signature(X, model, task=spec.task, target=spec.target, kinds=kinds)


def infer_signature(X: pd.DataFrame, model: Any, *, task: str, target: str | None = None,
                    kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """Input columns (dtype, kind, nullability, allowed categories) and the
    output kind (``probabilities``, ``label`` or ``value``) with the classes.

    Parameters
    ----------
    X
        Rows the model takes (training rows, or a sample of them).
    model
        The fitted model: its ``classes_`` and whether it has ``predict_proba``.
    task
        ``binary``, ``multiclass`` or ``regression``.
    target
        Name of the predicted column, when known.
    kinds
        Preprocessing kind of each column; default inferred from ``X``
        (:func:`~shipyard.train.column_kinds`).

    >>> import pandas as pd
    >>> from sklearn.linear_model import LinearRegression
    >>> X = pd.DataFrame({"a": [1.0, None, 3.0], "b": [1, 2, 3]})
    >>> sig = infer_signature(X, LinearRegression(), task="regression")
    >>> [(c["name"], c["dtype"], c["nullable"]) for c in sig["inputs"]], sig["output"]
    ([('a', 'float64', True), ('b', 'int64', False)], {'task': 'regression', 'kind': 'value'})
    """
    if kinds is None:
        from shipyard.train._preprocess import column_kinds

        kinds = column_kinds(X, list(X.columns))
    inputs = []
    for col, kind in kinds.items():
        entry: dict[str, Any] = {"name": col, "dtype": str(X[col].dtype), "kind": kind,
                                 "nullable": bool(X[col].isna().any())}
        if kind == "categorical":
            values = X[col].dropna().unique()
            if len(values) <= MAX_SIGNATURE_CATEGORIES:
                entry["categories"] = sorted(_plain(v) for v in values)
        inputs.append(entry)
    output: dict[str, Any] = {"target": target, "task": task} if target is not None \
        else {"task": task}
    if task == "regression":
        output["kind"] = "value"
    else:
        output["kind"] = "probabilities" if hasattr(model, "predict_proba") else "label"
        output["classes"] = [_plain(c) for c in model.classes_]
    return {"inputs": inputs, "output": output}


# ----------------------------------------------------------------- checks
def _override(spec: ProjectSpec, **changes: Any) -> ProjectSpec:
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return spec
    data = spec.model_dump(mode="json")
    data["train"]["search"].update(changes)
    if changes.get("executor") == "local":
        data["train"]["search"]["address"] = None
    try:
        return type(spec).model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid search override {changes}: {exc}") from exc


def _resolve_dataset(ws: Workspace, spec: ProjectSpec) -> Any:
    ds = spec.dataset
    if ds.source is not None:
        name = ds.name or Path(ds.source).stem
        return ws.datasets.register(name, ds.source,
                                    description=f"ingested by project {spec.name or name}")
    return ws.datasets.get(ds.ref)


def _check_target(frame: pd.DataFrame, spec: ProjectSpec) -> None:
    import pandas as pd

    target = frame[spec.target]
    missing = int(target.isna().sum())
    if missing:
        raise DataError(f"target {spec.target!r} has {missing} missing values",
                        hint="drop those rows (register a cleaned dataset version)")
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    n_classes = target.nunique()
    example = target.iloc[0] if len(target) else None
    if spec.task == "regression":
        if not numeric:
            raise ConfigError(
                f"task regression needs a numeric target, but {spec.target!r} holds "
                f"{target.dtype} values such as {example!r}",
                hint="use task: binary or multiclass for labels")
        return
    if numeric and pd.api.types.is_float_dtype(target) and \
            not np.all(np.mod(target.to_numpy(), 1) == 0):
        raise ConfigError(f"task {spec.task} needs class labels, but {spec.target!r} holds "
                          f"continuous numbers such as {example!r}",
                          hint="use task: regression")
    if spec.task == "binary" and n_classes != 2:
        raise ConfigError(f"task binary needs exactly 2 classes, but {spec.target!r} has "
                          f"{n_classes}",
                          hint="use task: multiclass" if n_classes > 2 else None)
    if spec.task == "multiclass" and n_classes < 3:
        raise ConfigError(f"task multiclass needs 3 or more classes, but {spec.target!r} has "
                          f"{n_classes}", hint="use task: binary" if n_classes == 2 else None)


def _check_estimator(cand: Any, task: str) -> None:
    from shipyard.train._spec import validate_estimator

    try:
        validate_estimator(cand.estimator, task)
    except ConfigError as exc:
        raise ConfigError(f"candidate {cand.name!r}: {exc.message}", hint=exc.hint) from exc


def _best(results: list[CandidateResult], direction: str) -> CandidateResult | None:
    best = None
    for r in results:
        if r.best_value is None:
            continue
        if best is None or (r.best_value > best.best_value if direction == "maximize"
                            else r.best_value < best.best_value):
            best = r
    return best


def flat_params(spec: ProjectSpec) -> dict[str, str]:
    """The spec as flat ``section.key`` params (candidates keyed by name;
    lists and search-space entries as JSON)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value and not prefix.endswith("search_space"):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix == "train.candidates":
            for cand in value:
                walk(f"{prefix}.{cand['name']}", {k: v for k, v in cand.items() if k != "name"})
        elif isinstance(value, (dict, list)):
            if value:
                out[prefix] = json.dumps(value, sort_keys=True)
        elif value is not None:
            out[prefix] = str(value)

    data = spec.model_dump(mode="json")
    data["metric"], data["direction"] = spec.metric, spec.direction
    walk("", data)
    return out


def spec_record(spec: ProjectSpec, dataset_ref: str) -> dict[str, Any]:
    """The training sections of the spec as JSON (the other stages' sections
    of a :class:`shipyard.project.Project` are left out), with the dataset
    pinned to the version trained on."""
    data = spec.model_dump(mode="json", include=set(ProjectSpec.model_fields))
    data["dataset"] = {"name": dataset_ref.split("@")[0],
                       "version": int(dataset_ref.split("@")[1]), "source": None}
    return data


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value

