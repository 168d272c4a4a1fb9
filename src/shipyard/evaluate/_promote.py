"""Promotion: move an alias (``champion``) to a model version only through gates.

:func:`promote` evaluates the challenger on a dataset version, predicts the
current alias holder on the same rows, checks a :class:`GatePolicy`, and
moves the alias only if every gate passes, or if an override reason is
given (audited with the failed gates). A worse challenger never replaces the
champion: on failure the registry is left exactly as it was (only the
attempt's audit entry is added).

Every attempt that reaches the evaluation leaves one audit entry (action
``model.promote`` on the model): the challenger, the alias holder it was
compared with, the test set, the evaluation run, the outcome (``promoted``,
``refused``, ``overridden`` or ``error``), the override reason and every
gate's verdict with its figures. :func:`promotions` reads them back as
a list of :class:`PromotionRecord`.

Example (needs a workspace with a registered model and a test dataset)::

    policy = {"champion": {"metric": "accuracy"}}
    result = ws.promote("fraud@3", policy=policy, dataset_ref="fraud_test@1",
                        target="is_fraud")
    result.promoted          # False when a gate failed; the alias did not move
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shipyard.errors import DataError, NotFoundError, ShipyardError
from shipyard.evaluate._gates import GatePolicy, GateResult, check_gates

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.registry import ModelVersion

#: The audit log keeps reasons up to 4000 characters.
MAX_REASON = 3900
#: The audit action of a promotion attempt (object: the model).
PROMOTE_ACTION = "model.promote"
#: Version of the layout of that entry's details.
RECORD_SCHEMA = 1
#: Error messages kept in a record of a failed attempt.
MAX_ERROR = 500

Outcome = Literal["promoted", "refused", "overridden", "error"]
OUTCOMES = ("promoted", "refused", "overridden", "error")


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
    audit_seq
        The seq of the attempt's ``model.promote`` audit entry (None when
        ``already``).
    """

    model: str
    alias: str
    previous: str | None
    promoted: bool
    overridden: bool
    gates: GateResult
    report: dict[str, Any] = field(repr=False, default_factory=dict)
    already: bool = False
    audit_seq: int | None = None

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return self.gates.passed


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion attempt as the audit log holds it (see :func:`promotions`).

    Attributes
    ----------
    seq, ts, actor
        The audit entry's position in the chain, time (epoch seconds) and
        who promoted.
    model, version, candidate
        The model's name, the challenger's version number and ref.
    alias
        The alias it was to take.
    champion
        The alias holder it was compared with (``fraud@2``), or None.
    base
        The version it derives from (tag ``mitigation.base``) when the
        policy's base rule compared them, else None.
    dataset, target
        The test dataset version and its target column.
    evaluation_run
        The run holding the evaluation report, when one was recorded.
    outcome
        ``promoted`` (every gate passed, the alias moved), ``refused`` (a
        gate failed, nothing moved), ``overridden`` (moved although gates
        failed) or ``error`` (the attempt failed after evaluation began;
        nothing moved).
    override_reason
        The reason given to override failed gates, if any.
    gates
        Every gate's verdict (empty when an error came before the gates).
    headline
        The evaluation's headline metric ``{metric, value, ci_low, ci_high}``.
    error
        For ``error``: the exception's type and message.
    via
        What decided: ``promote``, or another caller of
        :func:`record_promotion` (``retrain``).
    """

    seq: int
    ts: float
    actor: str
    model: str
    version: int | None
    candidate: str
    alias: str
    champion: str | None
    base: str | None
    dataset: str | None
    target: str | None
    evaluation_run: str | None
    outcome: str
    override_reason: str | None
    gates: GateResult
    headline: dict[str, Any] | None = None
    error: str | None = None
    via: str = "promote"

    @property
    def moved(self) -> bool:
        """Whether the alias now points (or pointed) at the challenger."""
        return self.outcome in ("promoted", "overridden")

    @property
    def passed(self) -> bool:
        """Whether every gate passed (False when none was checked)."""
        return bool(self.gates.checks) and self.gates.passed

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor, "model": self.model,
                "version": self.version, "candidate": self.candidate, "alias": self.alias,
                "champion": self.champion, "base": self.base, "dataset": self.dataset,
                "target": self.target, "evaluation_run": self.evaluation_run,
                "outcome": self.outcome, "override_reason": self.override_reason,
                "gates": self.gates.to_dict(), "headline": self.headline, "error": self.error,
                "via": self.via}


def promotions(ws: Workspace, name: str, *, version: int | None = None,
               alias: str | None = None, limit: int | None = None) -> list[PromotionRecord]:
    """The promotion attempts of model ``name`` recorded in the audit log,
    oldest first.

    Parameters
    ----------
    ws
        The workspace.
    name
        The model.
    version, alias
        Only attempts of this version / to this alias.
    limit
        Only the newest ``limit`` attempts (still oldest first).

    Examples
    --------
    >>> import tempfile, shipyard
    >>> promotions(shipyard.Workspace.open(tempfile.mkdtemp()), "fraud")
    []
    """
    filtered = version is not None or alias is not None
    entries = ws.audit.entries("model", name, action=PROMOTE_ACTION,
                               limit=None if filtered else limit)
    records = [r for r in map(_read_record, entries) if r is not None
               and (version is None or r.version == version)
               and (alias is None or r.alias == alias)]
    if limit is not None and filtered:
        records = records[-limit:] if limit else []
    return records


def _read_record(entry: Any) -> PromotionRecord | None:
    d = entry.details if isinstance(entry.details, Mapping) else None
    if d is None or entry.action != PROMOTE_ACTION:
        return None

    def text(key: str) -> str | None:
        value = d.get(key)
        return value if isinstance(value, str) else None

    number = d.get("version")
    headline = d.get("headline")
    return PromotionRecord(
        seq=entry.seq, ts=entry.ts, actor=entry.actor, model=entry.object_id,
        version=number if isinstance(number, int) and not isinstance(number, bool) else None,
        candidate=text("candidate") or entry.object_id, alias=text("alias") or "",
        champion=text("champion"), base=text("base"), dataset=text("dataset"),
        target=text("target"), evaluation_run=text("evaluation_run"),
        outcome=text("outcome") or "unknown", override_reason=text("override_reason"),
        gates=GateResult.from_dict(d.get("gates")),
        headline=dict(headline) if isinstance(headline, Mapping) else None,
        error=text("error"), via=text("via") or "promote")


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
        Once evaluation has begun, the attempt is also recorded as one
        ``model.promote`` audit entry (see :func:`promotions`), whatever its
        outcome, including an error raised after that point. A challenger
        that already holds the alias is neither evaluated nor recorded.

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
    from shipyard.errors import RegistryError
    from shipyard.registry import check_alias
    from shipyard.security import resolve_actor

    alias = check_alias(to)
    actor = resolve_actor(actor)  # an invalid actor fails before anything is evaluated
    if override_reason is not None and (not isinstance(override_reason, str)
                                        or "\x00" in override_reason):
        raise RegistryError("the override reason must be text without NUL characters")
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

    previous = holder.ref if holder is not None else None
    base_ref = (challenger.tags or {}).get("mitigation.base") if policy.base else None
    attempt = {"candidate": challenger.ref, "alias": alias,
               "champion": previous, "base": base_ref, "dataset": dataset_ref,
               "target": target, "override_reason": override_reason}
    report: dict[str, Any] = {}
    gates: GateResult | None = None
    try:
        if evaluate_fn is None:
            from shipyard.evaluate import evaluate as evaluate_fn
        got = evaluate_fn(ws, challenger.ref, dataset_ref, target=target, sensitive=sensitive)
        report = got.to_dict() if hasattr(got, "to_dict") else dict(got)
        if getattr(got, "run_id", None) and not report.get("run_id"):
            report["run_id"] = got.run_id

        y = frame[target].to_numpy()
        chal_pred = champ_pred = None
        if policy.champion is not None and holder is not None:
            chal_pred = _predict(challenger, frame[inputs[challenger.ref]])
            champ_pred = _predict(holder, frame[inputs[holder.ref]],
                                  classes=chal_pred.get("classes"))
        task = report.get("task") or _task(challenger)
        base_value = None
        if base_ref is not None:
            base_value = _base_metric(ws, base_ref, frame, target, dataset_ref, task,
                                      policy.base.metric)
        gates = check_gates(policy, report, challenger_predictions=chal_pred,
                            champion_predictions=champ_pred, y_true=y, task=task,
                            base_value=base_value, base_ref=base_ref)
        moved = gates.passed or bool(override_reason)
        if moved:
            if gates.passed:
                reason = f"promotion gates passed on {dataset_ref}: {gates.summary()}"
            else:
                failed = ", ".join(c.name for c in gates.failed)
                reason = (f"override: {override_reason}; failed gates: {failed}; on "
                          f"{dataset_ref}: {gates.summary()}")
            ws.models.set_alias(challenger.name, alias, challenger.version, actor=actor,
                                reason=_clip(reason, MAX_REASON), force=force)
    except Exception as exc:
        _record_failure(ws, actor, attempt, gates, report, exc)
        raise
    # A move and its record are two transactions (the registry writes its
    # own): a crash between them leaves the move, whose reason still carries
    # the gate summary, without its record.
    outcome = "refused" if not moved else "promoted" if gates.passed else "overridden"
    seq = _record(ws, actor, attempt, outcome, gates, report)
    return PromotionResult(challenger.ref, alias, previous, moved, moved and not gates.passed,
                           gates, report, audit_seq=seq)


def _record(ws: Workspace, actor: str, attempt: dict[str, Any], outcome: Outcome,
            gates: GateResult | None, report: Mapping[str, Any], error: str | None = None
            ) -> int:
    run_id = report.get("run_id")
    headline = report.get("headline")
    return record_promotion(ws, attempt["candidate"], alias=attempt["alias"], outcome=outcome,
                            gates=gates, dataset=attempt["dataset"], target=attempt["target"],
                            champion=attempt["champion"], base=attempt["base"],
                            evaluation_run=run_id if isinstance(run_id, str) else None,
                            headline=headline if isinstance(headline, Mapping) else None,
                            override_reason=attempt["override_reason"], error=error,
                            actor=actor)


def record_promotion(ws: Workspace, candidate: str, *, alias: str, outcome: Outcome,
                     gates: GateResult | None, dataset: str | None,
                     target: str | None = None, champion: str | None = None,
                     base: str | None = None, evaluation_run: str | None = None,
                     headline: Mapping[str, Any] | None = None,
                     override_reason: str | None = None, error: str | None = None,
                     actor: str | None = None, via: str = "promote") -> int:
    """Append one ``model.promote`` audit entry for a promotion attempt
    decided elsewhere (:func:`promote` writes its own), so that
    :func:`promotions` and the UI list it with the others.

    Parameters
    ----------
    ws
        The workspace.
    candidate
        The challenger's ref, ``name@N``.
    alias, outcome, gates, dataset, target, champion, base, evaluation_run,
    override_reason, error
        See :class:`PromotionRecord`.
    headline
        ``{metric, value, ci_low, ci_high}`` of the evaluation (other keys
        are dropped).
    actor
        Who; see :func:`shipyard.security.resolve_actor`.
    via
        What decided (``promote``, ``retrain``).

    Returns
    -------
    int
        The entry's seq.

    Raises
    ------
    RegistryError
        ``candidate`` is not ``name@N`` or ``outcome`` is unknown.
    AuditError
        The actor or the override reason is not valid audit text.
    """
    from shipyard.data import jsonable
    from shipyard.errors import RegistryError

    name, _, number = candidate.rpartition("@")
    if not name or not number.isdigit():
        raise RegistryError(f"a promotion record needs the candidate as name@N, got "
                            f"{candidate[:80]!r}")
    if outcome not in OUTCOMES:
        raise RegistryError(f"unknown promotion outcome {outcome!r}",
                            hint=f"one of {', '.join(OUTCOMES)}")
    details = jsonable({
        "schema": RECORD_SCHEMA, "candidate": candidate, "version": int(number),
        "alias": alias, "champion": champion, "base": base, "dataset": dataset,
        "target": target, "override_reason": _clip(override_reason or None, MAX_REASON),
        "outcome": outcome, "evaluation_run": evaluation_run,
        "headline": ({k: headline.get(k) for k in ("metric", "value", "ci_low", "ci_high")}
                     if headline else None),
        "gates": (gates or GateResult()).to_dict(), "error": _clip(error, MAX_ERROR),
        "via": via})

    def write(session: Any) -> int:
        return ws.audit.append(session, actor=actor, action=PROMOTE_ACTION, object_type="model",
                               object_id=name, reason=details["override_reason"],
                               details=details).seq

    return ws.db.retry(write, what=f"record the promotion attempt of {candidate}")


def _record_failure(ws: Workspace, actor: str, attempt: dict[str, Any],
                    gates: GateResult | None, report: Mapping[str, Any],
                    exc: Exception) -> None:
    """Record an attempt that failed after evaluation began; never hides ``exc``."""
    message = getattr(exc, "message", None) or str(exc)
    try:
        _record(ws, actor, attempt, "error", gates, report,
                f"{type(exc).__name__}: {message}")
    except ShipyardError as failed:  # the original error matters more; keep both
        exc.add_note(f"the failed promotion attempt could not be audited: {failed}")


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit - 3] + "..."


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
