"""Promotion: move an alias (``champion``) to a model version only through gates.

:func:`promote` evaluates the challenger on a dataset version, predicts the
current alias holder on the same rows, checks a :class:`GatePolicy`, and
moves the alias only if every gate passes, or if an override reason is
given (audited with the failed gates). A worse challenger never replaces the
champion: on failure the registry is left exactly as it was.

Example (needs a workspace with a registered model and a test dataset)::

    policy = {"champion": {"metric": "accuracy"}}
    result = ws.promote("fraud@3", policy=policy, dataset_ref="fraud_test@1",
                        target="is_fraud")
    result.promoted          # False when a gate failed; the alias did not move
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import DataError, NotFoundError
from shipyard.evaluate._gates import GatePolicy, GateResult, check_gates

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.registry import ModelVersion

#: The audit log keeps reasons up to 4000 characters.
MAX_REASON = 3900


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` decided.

    Attributes
    ----------
    model
        The challenger's ref (``fraud@3``).
    alias
        The alias it was to take.
    previous
        The alias holder before (``fraud@2``), or None.
    promoted
        Whether the alias now points at the challenger.
    overridden
        True when it was moved although gates failed (``override_reason``).
    gates
        Every gate's verdict.
    report
        The challenger's evaluation report (dict).
    already
        The challenger held the alias already; nothing was evaluated.
    """

    model: str
    alias: str
    previous: str | None
    promoted: bool
    overridden: bool
    gates: GateResult
    report: dict[str, Any] = field(repr=False, default_factory=dict)
    already: bool = False

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return self.gates.passed


def promote(
    ws: Workspace,
    ref: str,
    *,
    to: str = "champion",
    policy: GatePolicy,
    dataset_ref: str,
    target: str,
    sensitive: Sequence[str] = (),
    actor: str | None = None,
    override_reason: str | None = None,
    evaluate_fn: Callable[..., Any] | None = None,
    force: bool = False,
) -> PromotionResult:
    """Promote model version ``ref`` to alias ``to`` if it passes ``policy``.

    Parameters
    ----------
    ws
        The workspace.
    ref
        The challenger: ``fraud@3`` (any ref; the version it names is promoted).
    to
        The alias to move.
    policy
        The gates (the ``gates:`` section of ``shipyard.yaml``).
    dataset_ref
        The test dataset version (``fraud_test@1``): the challenger is
        evaluated on it, and both models are predicted on its rows.
    target
        Its target column.
    sensitive
        Sensitive columns for the fairness figures.
    actor
        Who promotes (audit log); default ``$SHIPYARD_ACTOR`` or the OS user.
    override_reason
        Move the alias even if gates fail; the reason and the failed gates
        are audited.
    evaluate_fn
        Replaces :func:`shipyard.evaluate.evaluate` (same signature; returns
        a report with ``to_dict()`` or a dict).
    force
        Move the alias even when the challenger needs input columns the
        current holder does not take (see :meth:`Registry.set_alias`).

    Returns
    -------
    PromotionResult

    Raises
    ------
    NotFoundError
        No such model, version or dataset version.
    RegistryError
        A malformed ref or alias, or an archived challenger.
    DataError
        The test set is empty, or lacks the target, a sensitive column or a
        model input column.
    """
    from shipyard.registry import check_alias
    from shipyard.errors import RegistryError

    alias = check_alias(to)
    if not isinstance(policy, GatePolicy):
        policy = GatePolicy.model_validate(policy)
    challenger = ws.models.get(ref)
    if challenger.status != "READY":
        raise RegistryError(f"{challenger.ref} is {challenger.status} and cannot be promoted",
                            hint="restore it first")
    holder = _holder(ws, challenger.name, alias)
    if holder is not None and holder.version == challenger.version:
        return PromotionResult(challenger.ref, alias, holder.ref, True, False, GateResult(),
                               already=True)
    sensitive = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    frame = ws.datasets.load(dataset_ref)
    _check_frame(frame, dataset_ref, target, sensitive)
    models = [challenger] + ([holder] if holder is not None else [])
    inputs = {m.ref: _inputs(m, frame, target, dataset_ref) for m in models}

    if evaluate_fn is None:
        from shipyard.evaluate import evaluate as evaluate_fn
    report = evaluate_fn(ws, challenger.ref, dataset_ref, target=target, sensitive=sensitive)
    report = report.to_dict() if hasattr(report, "to_dict") else dict(report)

    y = frame[target].to_numpy()
    chal_pred = champ_pred = None
    if policy.champion is not None and holder is not None:
        chal_pred = _predict(challenger, frame[inputs[challenger.ref]])
        champ_pred = _predict(holder, frame[inputs[holder.ref]], classes=chal_pred.get("classes"))
    task = report.get("task") or _task(challenger)
    base_ref = (challenger.tags or {}).get("mitigation.base") if policy.base else None
    base_value = None
    if base_ref is not None:
        base_value = _base_metric(ws, base_ref, frame, target, dataset_ref, task,
                                  policy.base.metric)
    gates = check_gates(policy, report, challenger_predictions=chal_pred,
                        champion_predictions=champ_pred, y_true=y, task=task,
                        base_value=base_value, base_ref=base_ref)
    previous = holder.ref if holder is not None else None
    if gates.passed:
        reason = f"promotion gates passed on {dataset_ref}: {gates.summary()}"
    elif override_reason:
        failed = ", ".join(c.name for c in gates.failed)
        reason = (f"override: {override_reason}; failed gates: {failed}; on {dataset_ref}: "
                  f"{gates.summary()}")
    else:
        return PromotionResult(challenger.ref, alias, previous, False, False, gates, report)
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON - 3] + "..."
    ws.models.set_alias(challenger.name, alias, challenger.version, actor=actor, reason=reason,
                        force=force)
    return PromotionResult(challenger.ref, alias, previous, True, not gates.passed, gates,
                           report)


def _base_metric(ws: Workspace, base_ref: str, frame: pd.DataFrame, target: str,
                 dataset_ref: str, task: str, metric: str) -> float | None:
    """``metric`` of the version ``base_ref`` on the same test rows."""
    from shipyard.train import needs_proba, score

    base = ws.models.get(base_ref)
    got = _predict(base, frame[_inputs(base, frame, target, dataset_ref)])
    try:
        return float(score(task, metric, frame[target].to_numpy(), got["label"],
                           got.get("proba") if needs_proba(metric) else None,
                           labels=list(got.get("classes", [])) or None))
    except (ValueError, TypeError):
        return None


def _holder(ws: Workspace, name: str, alias: str) -> ModelVersion | None:
    try:
        return ws.models.get(f"{name}@{alias}")
    except NotFoundError:
        return None  # the model exists (the challenger was found): the alias is unset


def _check_frame(frame: pd.DataFrame, dataset_ref: str, target: str,
                 sensitive: list[str]) -> None:
    if len(frame) == 0:
        raise DataError(f"test set {dataset_ref} has no rows", hint="promote on a non-empty "
                        "held-out dataset version")
    missing = [c for c in (target, *sensitive) if c not in frame.columns]
    if missing:
        raise DataError(f"test set {dataset_ref} has no column "
                        f"{', '.join(map(repr, missing))}",
                        hint=f"its columns are: {', '.join(map(str, frame.columns))}")
    if frame[target].isna().any():
        raise DataError(f"target {target!r} of {dataset_ref} has missing values",
                        hint="register a test set with every target known")


def _inputs(version: ModelVersion, frame: pd.DataFrame, target: str,
            dataset_ref: str) -> list[str]:
    """The model's input columns (from its signature), checked against ``frame``."""
    sig = version.signature or {}
    names = [str(i["name"]) for i in sig.get("inputs") or () if isinstance(i, dict)
             and "name" in i]
    if not names:
        return [c for c in frame.columns if c != target]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"test set {dataset_ref} does not match the schema of {version.ref}: "
                        f"it lacks {', '.join(map(repr, missing))}",
                        hint="promote on a dataset with the model's input columns")
    return names


def _task(version: ModelVersion) -> str | None:
    output = (version.signature or {}).get("output")
    return output.get("task") if isinstance(output, dict) else None


def _predict(version: ModelVersion, X: pd.DataFrame, *, classes: Any = None) -> dict[str, Any]:
    model = version.load()
    out: dict[str, Any] = {"label": np.asarray(model.predict(X))}
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        proba = np.asarray(model.predict_proba(X))
        own = list(np.asarray(model.classes_))
        if classes is not None and list(classes) != own and set(own) == set(classes):
            proba = proba[:, [own.index(c) for c in classes]]  # the challenger's column order
            own = list(classes)
        out["proba"], out["classes"] = proba, np.asarray(own)
    return out
