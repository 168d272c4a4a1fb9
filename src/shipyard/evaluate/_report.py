"""The evaluation report of a model on a held-out dataset, and the
workspace-level :func:`evaluate` that records it as a tracked run.

Report schema (``EvaluationReport.to_dict()``, strict JSON: undefined numbers
are ``null``)::

    schema        "shipyard.evaluation/1"
    task          "binary" | "multiclass" | "regression"
    target        target column; n_rows: evaluated rows; classes: labels or null
    headline      {"metric", "value", "ci_low", "ci_high", "direction"}
    metrics       {name: {"value", "ci_low", "ci_high", "direction"}}
    bootstrap     {"n", "confidence", "seed", "method": "percentile"}
    confusion_matrix  {"labels": [...], "matrix": [[true x predicted]]} | null
    curves        binary: {"roc": {"fpr", "tpr"}, "pr": {"recall", "precision",
                  "prevalence"}, "calibration": {"bins", "mean_predicted",
                  "fraction_positive", "count"}}; else {}
    slices        {"metric", "direction", "overall", "threshold", "relative",
                  "min_rows", "columns": {col: {"kind", "groups": [{"group",
                  "rows", "value", "ci_low", "ci_high", "gap", "flagged"}]}},
                  "flagged": [{"column", "group", "rows", "value", "gap"}]} | null
    fairness      {"positive_label", "features": {col: {"groups": [{"group",
                  "count", "selection_rate", "accuracy", "tpr", "fpr"}],
                  "demographic_parity_difference", "demographic_parity_ratio",
                  "equalized_odds_difference", "equalized_odds_ratio",
                  "accuracy_difference"}}} | null   (regression groups:
                  count, mae, mean_prediction; gaps mae_difference, mae_ratio)
    explanations  {"method", "explained", "rows", "background_rows",
                  "base_value", "importance": [{"feature", "importance"}]} | null
    robustness    see shipyard.evaluate._robustness.robustness_report | null
    operational   {"artifact_bytes", "load_seconds", "single_row": {"calls",
                  "p50_ms", "p99_ms", "mean_ms"}, "batch": {"rows", "repeats",
                  "p50_ms", "p99_ms", "rows_per_second"}} | null
    model         {"ref", "run_id", "artifact_digest", "dataset_version", ...} | {}
    dataset       {"ref", "content_hash", "num_rows", ...} | {}
    sections      the sections computed; skipped: {section: why}
    run_id        the evaluation run that stored the report, or null
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.data import jsonable
from shipyard.errors import ConfigError, DataError
from shipyard.evaluate._signature import (
    check_schema,
    normalized_signature,
    signature_output,
)

if TYPE_CHECKING:
    from shipyard import Workspace

SCHEMA = "shipyard.evaluation/1"
SECTIONS = ("metrics", "slices", "fairness", "explanations", "robustness", "operational")
EXPERIMENT = "evaluation"
REPORT_PATH = "evaluation/report.json"
HTML_PATH = "evaluation/report.html"
CARD_PATH = "evaluation/model_card.md"


@dataclass
class EvaluationReport:
    """Everything known about a model on one dataset; see the module docstring
    for the dict schema. Render with :meth:`to_json`, :meth:`to_html` and
    :meth:`model_card`."""

    task: str
    target: str
    n_rows: int
    classes: list | None
    metrics: dict[str, Any]
    bootstrap: dict[str, Any]
    headline_metric: str
    confusion_matrix: dict[str, Any] | None = None
    curves: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, Any] | None = None
    fairness: dict[str, Any] | None = None
    explanations: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    operational: dict[str, Any] | None = None
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def headline(self) -> dict[str, Any]:
        """The main metric: ``{"metric", "value", "ci_low", "ci_high", "direction"}``."""
        return {"metric": self.headline_metric, **self.metrics.get(self.headline_metric, {})}

    def to_dict(self) -> dict[str, Any]:
        """The report as strict-JSON data (no NaN: None instead)."""
        data = asdict(self)
        data.pop("headline_metric")
        return jsonable({"schema": SCHEMA, "headline": self.headline, **data})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. a stored JSON)."""
        if data.get("schema") != SCHEMA:
            raise DataError(f"not an evaluation report: schema is {data.get('schema')!r}, "
                            f"expected {SCHEMA!r}")
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        return cls(headline_metric=data["headline"]["metric"], **kwargs)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as strict JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, allow_nan=False,
                          ensure_ascii=False)

    def to_html(self, *, title: str | None = None) -> str:
        """One self-contained HTML page (inline CSS and images, no external
        URLs); every value from the data or model is escaped."""
        from shipyard.evaluate._html import render_html

        return render_html(self.to_dict(), title=title)

    def model_card(self, *, intended_use: str | None = None,
                   limitations: str | Sequence[str] | None = None) -> str:
        """A Markdown model card built from the same facts (see
        :func:`shipyard.evaluate._card.model_card`)."""
        from shipyard.evaluate._card import model_card

        return model_card(self.to_dict(), intended_use=intended_use, limitations=limitations)

    def __repr__(self) -> str:
        h = self.headline
        value = "-" if h.get("value") is None else f"{h['value']:.4g}"
        return (f"EvaluationReport(task={self.task!r}, rows={self.n_rows}, "
                f"{h['metric']}={value}, sections={self.sections})")


# ------------------------------------------------------------ evaluate
def _model_inputs(model: Any, frame: pd.DataFrame, target: str,
                  signature: Mapping[str, Any] | None) -> list[str]:
    columns = check_schema(frame, signature)
    if columns is not None:
        return columns
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise DataError(f"the data lacks the model's input column(s) "
                            f"{', '.join(map(repr, missing))}")
        return [str(c) for c in names]
    return [c for c in frame.columns if c != target]


def _classes(model: Any, signature: Mapping[str, Any] | None) -> list | None:
    found = getattr(model, "classes_", None)
    if found is None:
        found = signature_output(signature).get("classes")
    if found is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in found]


def _check_frame(frame: pd.DataFrame, target: str, sensitive: Sequence[str],
                 slices: Sequence[str], sections: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"evaluation takes a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise DataError("the test set is empty: nothing to evaluate",
                        hint="evaluate on a dataset version with rows")
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in the data",
                        hint=f"columns are: {', '.join(map(str, frame.columns[:30]))}")
    if frame[target].isna().any():
        raise DataError(f"target column {target!r} has {int(frame[target].isna().sum())} "
                        "missing values", hint="evaluate on rows with known outcomes")
    for what, cols in (("sensitive", sensitive), ("slice", slices)):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"{what} column(s) {', '.join(map(repr, missing))} not in the data",
                            hint=f"columns are: {', '.join(map(str, frame.columns[:30]))}")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown report section(s) {', '.join(map(repr, unknown))}",
                          hint=f"sections are: {', '.join(SECTIONS)}")


def evaluate_model(
    model: Any,
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    sensitive: Sequence[str] = (),
    slices: Sequence[str] = (),
    signature: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_bootstrap: int = 200,
    sections: Sequence[str] = SECTIONS,
    model_info: Mapping[str, Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
    artifact_bytes: int | None = None,
    load_seconds: float | None = None,
    headline: str | None = None,
    slice_threshold: float = 0.05,
    slice_min_rows: int = 30,
    explain_rows: int = 100,
) -> EvaluationReport:
    """Evaluate ``model`` on the rows of ``frame``.

    Parameters
    ----------
    model
        Anything with ``predict`` (and ``predict_proba`` for probabilities),
        e.g. what :func:`shipyard.train.load_model` returns.
    frame
        Held-out rows: the model's input columns, the target, and any
        sensitive or slice columns (which the model need not take).
    target
        The target column.
    task
        ``binary``, ``multiclass``, ``classification`` (either, by the number
        of classes) or ``regression``.
    sensitive
        Columns to measure group fairness over.
    slices
        Columns to slice metrics by (numeric ones in quantile bins).
    signature
        The model signature; its ``inputs`` name (and type) the model's input
        columns. Default: the model's ``feature_names_in_``, else every
        column but the target.
    seed, n_bootstrap
        Seed of every random choice; bootstrap resamples (0: no intervals).
    sections
        Which of :data:`SECTIONS` to compute (``metrics`` always is).
    model_info, dataset_info
        Lineage facts recorded verbatim (refs, run id, digests).
    artifact_bytes, load_seconds
        Operational facts measured by the caller.
    headline
        The main metric; default ROC-AUC (binary), accuracy (multiclass),
        RMSE (regression).
    slice_threshold, slice_min_rows
        Flagging rule of :func:`~shipyard.evaluate._slices.slice_report`.
    explain_rows
        Rows explained for global importance.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    DataError
        Empty data; target, sensitive or slice column missing; target values
        missing or unknown to the model; data not matching the signature.
    ConfigError
        Unknown task, section or headline metric.
    """
    _check_frame(frame, target, sensitive, slices, sections)
    inputs = _model_inputs(model, frame, target, signature)
    classes = _classes(model, signature) if task != "regression" else None
    from shipyard.evaluate._scores import resolve_task, task_metrics

    task = resolve_task(task, classes)
    y = frame[target].to_numpy()
    classes = _check_target(frame, target, task, classes)
    X = frame[inputs]
    signature = normalized_signature(signature, inputs)
    pred, proba = _predict(model, X, task)
    metrics = task_metrics(y, pred, proba, task=task, classes=classes,
                           n_bootstrap=n_bootstrap, seed=seed, headline=headline)
    report = EvaluationReport(
        task=task, target=target, n_rows=len(frame), classes=classes,
        metrics=metrics["values"], bootstrap=metrics["bootstrap"],
        headline_metric=metrics["headline"], confusion_matrix=metrics["confusion_matrix"],
        curves=metrics["curves"], model=dict(model_info or {}),
        dataset=dict(dataset_info or {}), sections=["metrics"])
    ctx = _Context(model=model, frame=frame, X=X, y=y, pred=pred, proba=proba, task=task,
                   classes=classes, signature=signature, seed=seed, n_bootstrap=n_bootstrap,
                   headline=metrics["headline"],
                   overall=metrics["values"][metrics["headline"]]["value"],
                   sensitive=list(sensitive), slices=list(slices),
                   slice_threshold=slice_threshold, slice_min_rows=slice_min_rows,
                   explain_rows=explain_rows, artifact_bytes=artifact_bytes,
                   load_seconds=load_seconds)
    for name, compute in _SECTIONS.items():
        if name not in sections:
            continue
        try:
            result = compute(ctx)
        except ImportError as exc:  # an optional library of this section is missing
            report.skipped[name] = f"needs a library that is not installed: {exc.name}"
            continue
        if result is not None:
            setattr(report, name, result)
            report.sections.append(name)
    return report


@dataclass
class _Context:
    """What every report section is computed from."""

    model: Any
    frame: pd.DataFrame
    X: pd.DataFrame
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None
    task: str
    classes: list | None
    signature: dict[str, Any]
    seed: int
    n_bootstrap: int
    headline: str
    overall: float
    sensitive: list[str]
    slices: list[str]
    slice_threshold: float
    slice_min_rows: int
    explain_rows: int
    artifact_bytes: int | None
    load_seconds: float | None


def _check_target(frame: pd.DataFrame, target: str, task: str, classes: list | None
                  ) -> list | None:
    """The classes (from the data when the model names none); refuse a
    non-numeric regression target or labels the model does not know."""
    y = frame[target]
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            raise DataError(f"a regression target must be numeric; {target!r} is {y.dtype}")
        return classes
    values = pd.unique(y.to_numpy()).tolist()
    if classes is None:
        classes = sorted(values)
    unknown = sorted(set(values) - set(classes), key=str)
    if unknown:
        raise DataError(f"target {target!r} holds label(s) {unknown[:5]} the model does "
                        f"not know; its classes are {classes}",
                        hint="evaluate on data labelled like the training data")
    return classes


def _predict(model: Any, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        pred = np.asarray(model.predict(X))
        proba = None
        if task != "regression" and hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"the model could not predict on the data: {exc}",
                        hint="check the columns and their types against the model's "
                             "signature") from exc
    return pred, proba


def _slices_section(c: _Context) -> Any:
    if not c.slices:
        return None
    from shipyard.evaluate._slices import slice_report

    return slice_report(c.frame, c.y, c.pred, c.proba, columns=c.slices, task=c.task,
                        metric=c.headline, overall=c.overall, classes=c.classes,
                        threshold=c.slice_threshold, min_rows=c.slice_min_rows,
                        n_bootstrap=c.n_bootstrap, seed=c.seed)


def _fairness_section(c: _Context) -> Any:
    if not c.sensitive:
        return None
    from shipyard.evaluate._fairness import fairness_report

    return fairness_report(c.frame[c.sensitive], c.y, c.pred, task=c.task, classes=c.classes,
                           n_bootstrap=c.n_bootstrap, seed=c.seed)


def _explanations_section(c: _Context) -> Any:
    from shipyard.evaluate._explain import global_importance

    return global_importance(c.model, c.X, task=c.task, classes=c.classes,
                             signature=c.signature, max_rows=c.explain_rows, seed=c.seed)


def _robustness_section(c: _Context) -> Any:
    from shipyard.evaluate._robustness import robustness_report

    return robustness_report(c.model, c.X, c.y, task=c.task, signature=c.signature,
                             seed=c.seed)


def _operational_section(c: _Context) -> Any:
    from shipyard.evaluate._operational import operational_report

    return operational_report(c.model, c.X, artifact_bytes=c.artifact_bytes,
                              load_seconds=c.load_seconds, seed=c.seed)


#: Report section -> how it is computed (``metrics`` always is; a section
#: that returns None, e.g. fairness without sensitive columns, is left out).
_SECTIONS = {
    "slices": _slices_section,
    "fairness": _fairness_section,
    "explanations": _explanations_section,
    "robustness": _robustness_section,
    "operational": _operational_section,
}


def evaluate(
    ws: Workspace,
    model_ref: str,
    dataset_ref: str,
    *,
    target: str | None = None,
    sensitive: Sequence[str] = (),
    slices: Sequence[str] = (),
    log_to_run: bool = True,
    sections: Sequence[str] = SECTIONS,
    seed: int = 0,
    n_bootstrap: int = 200,
    intended_use: str | None = None,
    limitations: str | Sequence[str] | None = None,
    **options: Any,
) -> EvaluationReport:
    """Evaluate a registered model version on a dataset version, and record
    the report (JSON, HTML, model card) as artifacts of a new run in the
    ``evaluation`` experiment.

    Parameters
    ----------
    ws
        The workspace.
    model_ref, dataset_ref
        ``fraud@7`` / ``fraud@champion``; ``adult@3`` / ``adult@latest``.
    target
        Target column; default the one the model's signature records.
    sensitive, slices, sections, seed, n_bootstrap
        See :func:`evaluate_model`.
    log_to_run
        Record the run (params: model and dataset refs; metrics: each metric's
        value and the largest fairness gaps; input: the dataset version;
        artifacts :data:`REPORT_PATH`, :data:`HTML_PATH`, :data:`CARD_PATH`).
    intended_use, limitations
        Model card text; intended use defaults to the version's description.
    **options
        Passed to :func:`evaluate_model` (``headline``, ``slice_threshold``, ...).

    Returns
    -------
    EvaluationReport
        With ``run_id`` set when recorded.

    Raises
    ------
    NotFoundError
        No such model version or dataset version.
    ConfigError
        No target given and none recorded.
    DataError
        See :func:`evaluate_model`. Nothing is recorded when evaluation fails.
    """
    version = ws.models.get(model_ref)
    data = ws.datasets.get(dataset_ref)
    out = signature_output(version.signature)
    target = target or out.get("target")
    if target is None:
        raise ConfigError(f"{version.ref}'s signature records no target column",
                          hint="pass target= (--target on the command line)")
    task = out.get("task") or ("classification" if out.get("classes") else "regression")
    frame = data.to_pandas()
    start = time.perf_counter()
    model = version.load()
    load_seconds = time.perf_counter() - start
    lineage = ws.models.lineage(version)
    model_info = {
        "ref": version.ref, "name": version.name, "version": version.version,
        "run_id": version.run_id, "artifact_digest": version.artifact_digest,
        "dataset_version": version.dataset_version,
        "dataset_versions": list(lineage.dataset_versions), "description": version.description,
        "tags": dict(version.tags), "aliases": list(version.aliases),
        "training_metrics": dict(version.metrics)}
    dataset_info = {"ref": data.ref, "content_hash": data.content_hash,
                    "num_rows": data.num_rows, "num_columns": data.num_columns,
                    "description": data.description}
    report = evaluate_model(
        model, frame, target=target, task=task, sensitive=sensitive, slices=slices,
        signature=version.signature, seed=seed, n_bootstrap=n_bootstrap, sections=sections,
        model_info=model_info, dataset_info=dataset_info,
        artifact_bytes=_artifact_bytes(ws, version.artifact_digest),
        load_seconds=load_seconds, **options)
    if intended_use is None:
        intended_use = version.description or version.tags.get("intended_use")
    if log_to_run:
        _record(ws, report, version.ref, data, intended_use=intended_use,
                limitations=limitations, seed=seed, n_bootstrap=n_bootstrap)
    return report


def _artifact_bytes(ws: Workspace, digest: str) -> int:
    from shipyard.registry import read_artifact

    artifact = read_artifact(ws.artifacts, digest)
    sizes = artifact.metadata.get("part_sizes") or {}
    if set(sizes) >= set(artifact.parts):
        return int(sum(sizes.values()))
    return sum(len(ws.artifacts.get_bytes(d)) for d in artifact.parts.values())


def _record(ws: Workspace, report: EvaluationReport, model_ref: str, data: Any, *,
            intended_use: str | None, limitations: Any, seed: int, n_bootstrap: int) -> None:
    from shipyard.evaluate._fairness import max_gap

    # Everything is rendered before the run starts, so a failure records
    # nothing; the stored report names no run id (the run holding it is its id).
    document = report.to_dict()
    html = report.to_html()
    card = report.model_card(intended_use=intended_use, limitations=limitations)
    params = {"model": model_ref, "dataset": data.ref, "target": report.target,
              "task": report.task,
              "sensitive": ",".join((report.fairness or {}).get("features", {})),
              "slices": ",".join((report.slices or {}).get("columns", {})),
              "seed": seed, "n_bootstrap": n_bootstrap}
    metrics = {name: m["value"] for name, m in report.metrics.items() if m["value"] is not None}
    metrics.update({f"fairness.{k}": v for k, v in max_gap(report.fairness).items()})
    with ws.start_run(EXPERIMENT, params=params, inputs=[data], seed=seed,
                      tags={"model": model_ref, "headline": report.headline_metric}) as run:
        run.log_metrics(metrics)
        run.log_dict(REPORT_PATH, document)
        run.log_text(HTML_PATH, html)
        run.log_text(CARD_PATH, card)
    report.run_id = run.id
