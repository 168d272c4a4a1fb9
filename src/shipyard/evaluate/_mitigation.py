"""Fairness mitigation: a registered classifier post-processed with per-group
thresholds (fairlearn's ``ThresholdOptimizer``), tracked and registered as a
new model version.

fairlearn's fitted optimizer is not a type Shipyard's safe model files may
hold, so the result is saved as a :class:`ThresholdedModel`: the base
model's artifact (by digest) plus each group's thresholds and mixing
probabilities in JSON, in the ``thresholded`` artifact format.

Example (needs a workspace with a registered model and a dataset)::

    result = ws.mitigate("credit@2", "credit_fit@1", target="default", sensitive="sex")
    result.before["demographic_parity_difference"]   # e.g. 0.31
    result.after["demographic_parity_difference"]    # e.g. 0.02
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from shipyard.errors import ConfigError, DataError
from shipyard.train import ThresholdedModel

if TYPE_CHECKING:
    from shipyard import Workspace
    from shipyard.registry import ModelVersion

METHODS = ("threshold", "exponentiated_gradient")
CONSTRAINTS = ("demographic_parity", "equalized_odds")

# -------------------------------------------------------------- mitigation
@dataclass(frozen=True)
class MitigationResult:
    """What :func:`mitigate` produced.

    Attributes
    ----------
    version
        The new registered model version.
    base
        The mitigated version's ref (``credit@2``).
    run_id
        The tracked run (experiment ``mitigation``).
    method, constraint, sensitive
        How it was mitigated.
    before, after
        ``accuracy``, ``demographic_parity_difference`` and
        ``equalized_odds_difference`` of the base and the mitigated model on
        the dataset version.
    """

    version: ModelVersion
    base: str
    run_id: str
    method: str
    constraint: str
    sensitive: str
    before: dict[str, float]
    after: dict[str, float]


def mitigate(
    ws: Workspace,
    model_ref: str,
    dataset_ref: str,
    *,
    target: str,
    sensitive: str,
    method: Literal["threshold", "exponentiated_gradient"] = "threshold",
    constraint: Literal["demographic_parity", "equalized_odds"] = "demographic_parity",
    register_as: str | None = None,
    actor: str | None = None,
    seed: int = 0,
) -> MitigationResult:
    """Post-process a registered binary classifier to shrink a fairness gap.

    Fits per-group thresholds on dataset version ``dataset_ref`` (fairlearn
    ``ThresholdOptimizer`` on the base model's ``predict_proba``, prefit),
    tracks a run in experiment ``mitigation`` (params, before/after
    metrics), and registers the :class:`ThresholdedModel` as a new version
    of the same model (or of ``register_as``), tagged ``mitigation.*``.

    Parameters
    ----------
    ws
        The workspace.
    model_ref
        The base version (``credit@2``, ``credit@champion``).
    dataset_ref
        The data the thresholds are fitted on (ideally not the training rows);
        the before/after figures are measured on it too.
    target, sensitive
        Its target and sensitive columns.
    method
        ``threshold``. ``exponentiated_gradient`` (refitting the pipeline
        under a reductions constraint) is not available yet.
    constraint
        ``demographic_parity`` or ``equalized_odds``.
    register_as
        Model name of the new version (default: the base's name).
    actor
        Who (audit log).
    seed
        Salt of the per-row draw of :meth:`ThresholdedModel.predict`.

    Returns
    -------
    MitigationResult

    Raises
    ------
    ConfigError
        Unknown or unavailable method or constraint.
    NotFoundError
        No such model version or dataset version.
    DataError
        The model is not a binary classifier with ``predict_proba``; the
        dataset is empty or lacks the target, the sensitive column or an
        input column; a group has a single label. Nothing is recorded then.
    """
    from shipyard.registry import check_model_name

    if method not in METHODS:
        raise ConfigError(f"unknown mitigation method {method!r}; expected "
                          f"{' or '.join(METHODS)}")
    if method == "exponentiated_gradient":
        raise ConfigError("mitigation method 'exponentiated_gradient' is not available yet",
                          hint="use method='threshold' (post-processing, no refit)")
    if constraint not in CONSTRAINTS:
        raise ConfigError(f"unknown fairness constraint {constraint!r}; expected "
                          f"{' or '.join(CONSTRAINTS)}")
    if register_as is not None:
        check_model_name(register_as)
    base = ws.models.get(model_ref)
    output = (base.signature or {}).get("output")
    if isinstance(output, dict) and output.get("task") not in (None, "binary"):
        raise DataError(f"{base.ref} is a {output.get('task')} model: threshold mitigation "
                        "needs a binary classifier")
    frame = ws.datasets.load(dataset_ref)
    if len(frame) == 0:
        raise DataError(f"dataset {dataset_ref} has no rows")
    missing = [c for c in (target, sensitive) if c not in frame.columns]
    if missing:
        raise DataError(f"dataset {dataset_ref} has no column {', '.join(map(repr, missing))}",
                        hint=f"its columns are: {', '.join(map(str, frame.columns))}")
    features = _features(base, frame, target, sensitive, dataset_ref)
    model = base.load()
    classes = np.asarray(getattr(model, "classes_", []))
    if not hasattr(model, "predict_proba") or len(classes) != 2:
        raise DataError(f"{base.ref} is not a binary classifier with predict_proba: "
                        "threshold mitigation needs class probabilities")
    y = frame[target].to_numpy()
    unknown = set(pd.unique(y)) - set(classes.tolist())
    if unknown:
        raise DataError(f"target {target!r} of {dataset_ref} holds labels "
                        f"{sorted(map(str, unknown))[:5]} that {base.ref} does not predict "
                        f"(its classes: {classes.tolist()})")
    if frame[sensitive].isna().any():
        raise DataError(f"sensitive column {sensitive!r} of {dataset_ref} has missing values")
    X, groups_of_rows = frame[features], frame[sensitive].astype(str)
    y01 = (y == classes[1]).astype(int)
    groups = _fit_thresholds(model, X, y01, groups_of_rows, constraint)
    mitigated = ThresholdedModel(base=model, sensitive=sensitive, features=features,
                                 classes=classes, groups=groups,
                                 base_digest=base.artifact_digest, seed=seed)
    before = _figures(y01, (np.asarray(model.predict(X)) == classes[1]).astype(int),
                      groups_of_rows)
    after = _figures(y01, (mitigated.predict(frame) == classes[1]).astype(int), groups_of_rows)

    artifact = mitigated.save(ws.artifacts)
    signature = _signature(base, frame, sensitive)
    tags = {"mitigation.method": method, "mitigation.constraint": constraint,
            "mitigation.base": base.ref, "mitigation.base_digest": base.artifact_digest,
            "mitigation.sensitive": sensitive, "mitigation.dataset": dataset_ref}
    with ws.start_run("mitigation", name=f"{method} {base.ref}", inputs=[dataset_ref],
                      params={"method": method, "constraint": constraint,
                              "base_model": base.ref, "sensitive": sensitive,
                              "target": target, "seed": seed},
                      tags={"model.digest": artifact.digest, **tags}) as run:
        run.log_metrics({f"{when}.{k}": v for when, figures in (("before", before),
                                                                ("after", after))
                         for k, v in figures.items()})
        run.log_dict("model/signature.json", signature)
        run.log_dict("mitigation/thresholds.json", {"sensitive": sensitive, "groups": groups})
    version = ws.models.register(
        register_as or base.name, run.id, signature=signature, tags=tags, actor=actor,
        description=f"{base.ref} with {constraint.replace('_', ' ')} thresholds on "
                    f"{sensitive!r}",
        reason=f"fairness mitigation of {base.ref} ({method}, {constraint}) on {dataset_ref}")
    return MitigationResult(version, base.ref, run.id, method, constraint, sensitive,
                            before, after)


def _features(base: ModelVersion, frame: pd.DataFrame, target: str, sensitive: str,
              dataset_ref: str) -> list[str]:
    sig = base.signature or {}
    names = [str(i["name"]) for i in sig.get("inputs") or ()
             if isinstance(i, dict) and "name" in i]
    if not names:
        return [c for c in frame.columns if c not in (target, sensitive)]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"dataset {dataset_ref} does not match the schema of {base.ref}: it "
                        f"lacks {', '.join(map(repr, missing))}")
    return names


def _fit_thresholds(model: Any, X: pd.DataFrame, y01: np.ndarray, groups: pd.Series,
                    constraint: str) -> dict[str, dict[str, Any]]:
    import warnings

    from fairlearn.postprocessing import ThresholdOptimizer

    single = [g for g, labels in pd.Series(y01).groupby(groups.to_numpy()) if labels.nunique() < 2]
    if single:
        raise DataError(f"group(s) {', '.join(map(str, single))} of the sensitive column have "
                        "a single label: thresholds cannot be fitted",
                        hint="fit on more rows so that every group has both labels")
    optimizer = ThresholdOptimizer(estimator=model, prefit=True, predict_method="predict_proba",
                                   constraints=constraint)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fairlearn warns about prefit estimators
            optimizer.fit(X, y01, sensitive_features=groups.to_numpy())
    except ValueError as exc:
        raise DataError(f"fairlearn could not fit thresholds: {exc}") from exc
    out = {}
    for key, g in optimizer.interpolated_thresholder_.interpolation_dict.items():
        entry = {"p0": float(g["p0"]), "op0": [g["operation0"].operator,
                                               float(g["operation0"].threshold)],
                 "p1": float(g["p1"]), "op1": [g["operation1"].operator,
                                               float(g["operation1"].threshold)]}
        if "p_ignore" in g:
            entry["p_ignore"] = float(g["p_ignore"])
            entry["prediction_constant"] = float(g["prediction_constant"])
        out[str(key)] = entry
    return out


def _figures(y: np.ndarray, pred: np.ndarray, groups: pd.Series) -> dict[str, float]:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    s = groups.to_numpy()
    return {"accuracy": float(np.mean(pred == y)),
            "demographic_parity_difference": float(
                demographic_parity_difference(y, pred, sensitive_features=s)),
            "equalized_odds_difference": float(
                equalized_odds_difference(y, pred, sensitive_features=s))}


def _signature(base: ModelVersion, frame: pd.DataFrame, sensitive: str) -> dict[str, Any]:
    """The base signature, with the sensitive column as an input."""
    sig = json.loads(json.dumps(base.signature or {}))
    inputs = sig.setdefault("inputs", [])
    if not any(isinstance(i, dict) and i.get("name") == sensitive for i in inputs):
        values = sorted(frame[sensitive].astype(str).unique())
        inputs.append({"name": sensitive, "dtype": str(frame[sensitive].dtype),
                       "kind": "categorical", "nullable": False, "categories": values[:100]})
    return sig
