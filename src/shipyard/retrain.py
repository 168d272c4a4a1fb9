"""Continuous learning: retrain a served model from its labelled feedback,
and promote the result only when it is shown better (docs/monitoring.md,
"Continuous learning").

:func:`retrain` (``ws.retrain``, ``shipyard monitor retrain MODEL``) runs
one loop, each step an audit entry (object ``retrain``/MODEL):

1. **Feedback → dataset.** The model's logged predictions with a label
   (feedback joined by ``request_id``; a window, by default since the last
   retrain that promoted) become a version of ``<model>-feedback``, one row
   per labelled input row with its ``request_id``, ``version``, ``role`` and
   ``prediction`` (the lineage to the predictions), its description naming
   the window and the counts.
   Requests are split by a hash of their id: ``holdout_share`` of them
   (default 30 %) are held out and never trained on.
2. **Retrain.** The project file trains on its own dataset plus the
   feedback rows not held out (registered as ``<model>-retrain``, parents:
   both). The old rows are kept so that the model does not forget the
   population it still serves; the new ones teach it the present one. A
   champion that is a fairness-mitigated version is mitigated again the same
   way. The candidate is registered with that lineage.
3. **Judge.** Candidate and champion are scored on the *same* holdout
   (``<model>-holdout``: the held-out feedback, plus a dataset of your
   choice) through the project's ``gates:`` with the champion rule's
   paired test (McNemar or paired bootstrap; added on the project's metric
   when the file has no champion rule). A failing candidate is refused and
   nothing else changes.
4. **Canary.** When the model has a deployment, the candidate is rolled out
   as a canary (``primary: <model>@champion``) and its live traffic is read
   back from the prediction log: after ``canary_requests`` answered requests
   its error rate, and its realized accuracy (error) on labelled rows next
   to the primary's, decide. Pass: the champion alias moves to the candidate
   and the deployment serves ``@champion`` alone. Fail (or too little
   traffic in ``canary_timeout``, or a server already rolled it back): the
   deployment is rolled back, the champion stays.
5. **Record.** The outcome is a run of experiment ``retrain`` (tags
   ``model``, ``outcome``, ``candidate``...; ``retrain.json``) and the
   audit entry ``retrain.promote`` / ``retrain.refuse`` / ``retrain.rollback``.

A worse model is never promoted: the alias moves only after the gates and
the canary both passed, and only if the champion is still the one judged.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, NotFoundError, RetrainError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.evaluate import GatePolicy, GateResult
    from shipyard.project import Project
    from shipyard.registry import ModelVersion

__all__ = ["OUTCOMES", "RetrainResult", "feedback_frame", "retrain"]

#: What a retrain can end in.
OUTCOMES = ("promoted", "refused", "rolled_back", "unchanged", "skipped")
EXPERIMENT = "retrain"
#: Columns of the feedback dataset besides the inputs and the target.
LINEAGE_COLUMNS = ("request_id", "version", "role", "prediction", "split")
#: Share of the labelled requests a mitigated champion's candidate fits its
#: per-group thresholds on: rows it was not trained on (thresholds fitted on
#: in-sample scores do not hold on new rows).
CALIBRATION_SHARE = 0.2


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` did.

    Attributes
    ----------
    model
        The model name.
    outcome
        ``promoted`` (the champion alias moved to ``candidate``), ``refused``
        (the gates said no), ``rolled_back`` (the canary said no),
        ``unchanged`` (retraining gave the champion again) or ``skipped``
        (``on_alert`` and no alert).
    reason
        Why, in one line.
    champion_before, champion_after
        Refs of the champion before and after (``fraud@3``).
    candidate
        The retrained version's ref, when one was trained.
    feedback, train_data, holdout
        Refs of the dataset versions made (feedback rows; training rows;
        the rows both models were judged on).
    labels, holdout_rows
        Labelled rows found; rows held out.
    window
        ``{"start", "end"}`` of the prediction log read (epoch seconds).
    gates
        The verdict of every gate on the holdout.
    canary
        The canary's figures (``requests``, ``error_rate``, ``candidate``
        and ``primary`` realized metric, ``passed``, ``reason``), or None.
    run_id
        The ``retrain`` run that records the outcome.
    steps
        ``(audit action, one-line detail)`` in order.
    """

    model: str
    outcome: str
    reason: str
    champion_before: str | None = None
    champion_after: str | None = None
    candidate: str | None = None
    feedback: str | None = None
    train_data: str | None = None
    holdout: str | None = None
    labels: int = 0
    holdout_rows: int = 0
    window: dict[str, float | None] = field(default_factory=dict)
    gates: GateResult | None = field(default=None, repr=False)
    canary: dict[str, Any] | None = None
    run_id: str | None = None
    steps: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "outcome": self.outcome, "reason": self.reason,
                "champion_before": self.champion_before, "champion_after": self.champion_after,
                "candidate": self.candidate, "feedback": self.feedback,
                "train_data": self.train_data, "holdout": self.holdout, "labels": self.labels,
                "holdout_rows": self.holdout_rows, "window": dict(self.window),
                "gates": self.gates.to_dict() if self.gates is not None else None,
                "canary": self.canary, "run_id": self.run_id,
                "steps": [{"action": a, "detail": d} for a, d in self.steps]}


# ------------------------------------------------------------------ entry
def retrain(
    ws: Workspace,
    model: str,
    *,
    project: str | os.PathLike | Project,
    since: str | float | None = None,
    start: Any = None,
    end: Any = None,
    on_alert: bool = False,
    min_labels: int = 200,
    holdout_share: float = 0.3,
    holdout: str | None = None,
    gates: GatePolicy | Mapping[str, Any] | None = None,
    trials: int | None = None,
    candidates: Sequence[str] | None = None,
    base_rows: int | None = None,
    canary_weight: float = 20.0,
    canary_requests: int = 50,
    canary_timeout: float = 600.0,
    max_metric_drop: float = 0.05,
    late_arrival: str | float | None = None,
    actor: str | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> RetrainResult:
    """Retrain ``model`` from its labelled feedback; promote the candidate
    only if it beats the champion on the same holdout and survives a canary.

    Parameters
    ----------
    ws
        The workspace.
    model
        The served model's name; it needs a ``champion``.
    project
        Its project file (``shipyard.yaml``) or the loaded project: the
        training spec, the ``gates:`` and the ``monitor:`` sections.
    since, start, end
        The window of the prediction log whose labelled predictions are
        used: ``since`` a duration back from now (``"7d"``) or a time,
        ``start``/``end`` times. Default: from the end of the window of the
        last retrain that promoted (everything the first time) to now, so a
        refused retrain's feedback counts again next time.
    on_alert
        Retrain only when the model's newest monitor report is an alert or
        one of its alert rules is firing; else return outcome ``skipped``.
    min_labels
        Fewest labelled rows to retrain on (RetrainError below it).
    holdout_share
        Share of the labelled requests held out to judge on (0 < x < 1).
    holdout
        A dataset version whose rows join the holdout (e.g. the project's
        test set); it must not overlap the traffic.
    gates
        The gates to judge by; default the project's ``gates:``. A champion
        rule on the project's metric (paired bootstrap) is added if missing.
    trials
        Override the project's ``train.search.n_trials`` (a quicker retrain).
    candidates
        Search only these of the project's candidates (by name), e.g. the
        family the champion came from.
    base_rows
        Train on a seeded random sample of this many rows of the project's
        dataset (plus all the feedback rows) instead of all of it: a quicker
        retrain in which the present population weighs more.
    canary_weight, canary_requests, canary_timeout
        Percent of traffic the candidate gets; candidate requests to judge
        on; seconds to wait for them.
    max_metric_drop
        How much worse than the primary the candidate's realized accuracy
        (or larger its mean absolute error) on labelled canary rows may be.
    late_arrival
        How late a label may arrive; default the ``monitor:`` section's.
    actor
        Who retrains (audit log); default ``$SHIPYARD_ACTOR`` or the OS user.
    progress
        Called as ``progress(step, detail)`` after each step.

    Returns
    -------
    RetrainResult

    Raises
    ------
    NotFoundError
        No model is called ``model``, or the holdout dataset does not exist.
    RetrainError
        No champion, no or too few labelled predictions in the window, or
        too few to hold some out. Nothing was registered or changed.
    ConfigError
        A bad argument, or a project file that is missing, invalid or
        trains another target than the model predicts.
    """
    from shipyard.monitor import parse_duration
    from shipyard.security import resolve_actor

    spec = _project(project)
    model = _model_name(ws, model)
    _check_numbers(min_labels=min_labels, holdout_share=holdout_share, trials=trials,
                   base_rows=base_rows,
                   canary_weight=canary_weight, canary_requests=canary_requests,
                   canary_timeout=canary_timeout, max_metric_drop=max_metric_drop)
    if since is not None and start is not None:
        raise ConfigError("give since or start, not both")
    late = late_arrival if late_arrival is not None else \
        (spec.monitor.late_arrival if spec.monitor is not None else "7d")
    try:
        late_seconds = parse_duration(late)
    except ValueError as exc:
        raise ConfigError(f"late_arrival: {exc}") from exc
    actor = resolve_actor(actor)
    champion = _champion(ws, model)
    _check_fits(spec, champion)
    policy = _policy(spec, gates)
    if candidates is not None:
        spec = _only(spec, candidates)
    extra_holdout = ws.datasets.get(holdout) if holdout is not None else None
    log = _Steps(ws, model, actor, progress)

    why = _alerting(ws, model) if on_alert else None
    if on_alert and why is None:
        latest = ws.monitor.latest(model)
        reason = ("no monitor report is an alert and no alert is firing (newest report: "
                  f"{latest.verdict if latest else 'none'})")
        log.add("retrain.skip", reason, {"champion": champion.ref})
        return RetrainResult(model, "skipped", reason, champion.ref, champion.ref,
                             steps=log.steps)

    first, last = _window(ws, model, since=since, start=start, end=end)
    frame = feedback_frame(ws, model, champion, target=spec.target, start=first, end=last,
                           late_arrival_seconds=late_seconds)
    labelled = len(frame)
    where = f"{_when(first)} – {_when(last)}"
    if labelled == 0:
        raise RetrainError(f"no labelled predictions of {model} in the window {where}",
                           hint="send labels to POST /v1/feedback with the request ids, or "
                                "widen the window (since=\"30d\", --since 30d)")
    if labelled < min_labels:
        raise RetrainError(f"only {labelled} labelled rows of {model} in the window {where}; "
                           f"retraining needs at least {min_labels}",
                           hint="wait for more feedback, widen the window (--since), or lower "
                                "min_labels (--min-labels)")
    mitigated = "mitigation.base" in (champion.tags or {})
    frame["split"] = _split(frame["request_id"], model, holdout_share,
                            CALIBRATION_SHARE if mitigated else 0.0)
    kept = frame[frame["split"] == "holdout"]
    if kept.empty or (frame["split"] == "train").sum() == 0 \
            or (spec.task != "regression" and kept[spec.target].nunique() < 2):
        raise RetrainError(f"the {labelled} labelled rows of {model} cannot be split into "
                           f"training rows and a holdout with both classes "
                           f"({len(kept)} held out)",
                           hint="wait for more feedback, or change holdout_share "
                                "(--holdout-share)")

    base = _project_dataset(ws, spec)
    window = {"start": first, "end": last}
    log.add("retrain.start", f"{labelled} labelled rows of {model} in {where}; champion "
            f"{champion.ref}",
            {"champion": champion.ref, "window": window, "labels": labelled,
             "trigger": "alert" if on_alert else "manual", "alert": why,
             "min_labels": min_labels,
             "holdout_share": holdout_share})
    with ws.start_run(EXPERIMENT, name=f"retrain {model}", seed=0, params={
            "model": model, "champion": champion.ref, "window.start": first,
            "window.end": last, "min_labels": min_labels, "holdout_share": holdout_share,
            "holdout": holdout, "trials": trials, "base_rows": base_rows,
            "candidates": ",".join(c.name for c in spec.train.candidates),
            "canary_weight": canary_weight,
            "canary_requests": canary_requests, "on_alert": on_alert},
            tags={"model": model, "outcome": "running"}) as run:
        try:
            result = _loop(ws, run, log, spec, policy, model, champion, base, frame, window,
                           extra_holdout=extra_holdout, trials=trials, base_rows=base_rows,
                           canary_weight=canary_weight,
                           canary_requests=canary_requests, canary_timeout=canary_timeout,
                           max_metric_drop=max_metric_drop, late_seconds=late_seconds,
                           actor=actor)
        except Exception as exc:
            # The champion never moved; the run ends FAILED with the error.
            log.add("retrain.fail", f"{type(exc).__name__}: {exc}"[:3900],
                    {"champion": champion.ref, "run": run.id})
            raise
        run.set_tags({"outcome": result.outcome, "candidate": result.candidate or "",
                      "champion.before": result.champion_before or "",
                      "champion.after": result.champion_after or ""})
        run.log_metrics({"labels": result.labels, "holdout_rows": result.holdout_rows,
                         "promoted": float(result.promoted)})
        result = _with(result, run_id=run.id, steps=log.steps)
        run.log_dict("retrain.json", result.to_dict())
    return result


def _loop(ws: Workspace, run: Any, log: _Steps, spec: Project, policy: GatePolicy,
          model: str, champion: ModelVersion, base: Any, frame: pd.DataFrame,
          window: dict[str, float | None], *, extra_holdout: Any, trials: int | None,
          base_rows: int | None,
          canary_weight: float, canary_requests: int, canary_timeout: float,
          max_metric_drop: float, late_seconds: float, actor: str) -> RetrainResult:
    import pandas as pd

    versions = sorted({int(v) for v in frame["version"].dropna()})
    requests = frame["request_id"].nunique()
    ids = hashlib.sha256("\n".join(sorted(set(frame["request_id"]))).encode()).hexdigest()
    feedback = ws.datasets.register(
        f"{model}-feedback", frame.reset_index(drop=True),
        transform=(f"labelled predictions of {model} from the prediction log, "
                   f"{_when(window['start'])} – {_when(window['end'])}: {requests} requests "
                   f"answered by version(s) {', '.join(map(str, versions)) or '-'}, "
                   f"{len(frame)} rows; feedback joined by request_id (column request_id; "
                   f"column split: train, calibration or holdout)"),
        description=f"labelled production traffic of {model}, for retraining")
    inputs = [c for c in frame.columns if c not in LINEAGE_COLUMNS]
    train_rows = frame.loc[frame["split"] == "train", inputs]
    original = base.to_pandas()
    kept_base = original
    if base_rows is not None and base_rows < len(original):
        kept_base = original.sample(n=base_rows, random_state=spec.seed).sort_index()
    combined = pd.concat([kept_base, _like(train_rows, original)], ignore_index=True)
    sample = "" if kept_base is original else \
        f" ({len(kept_base)} rows sampled with seed {spec.seed})"
    train_data = ws.datasets.register(
        f"{model}-retrain", combined, parents=[base, feedback],
        transform=f"{base.ref}{sample} + the {len(train_rows)} training rows (split=train) "
                  f"of {feedback.ref}",
        description=f"training data of {model}'s retrains")
    held = _like(frame.loc[frame["split"] == "holdout", inputs], original)
    parents = [feedback]
    if extra_holdout is not None:
        held = pd.concat([held, _like(extra_holdout.to_pandas(), held)[held.columns]],
                         ignore_index=True)
        parents.append(extra_holdout)
    holdout = ws.datasets.register(
        f"{model}-holdout", held.reset_index(drop=True), parents=parents,
        transform=f"the {int((frame['split'] == 'holdout').sum())} held-out rows (split=holdout)"
                  f" of {feedback.ref}" + (f" + {extra_holdout.ref}" if extra_holdout else ""),
        description=f"rows {model}'s retrain candidates and champion are judged on")
    calibration = None
    if (frame["split"] == "calibration").any():
        calibration = ws.datasets.register(
            f"{model}-calibration",
            _like(frame.loc[frame["split"] == "calibration", inputs], original)
            .reset_index(drop=True), parents=[feedback],
            transform=f"the {int((frame['split'] == 'calibration').sum())} calibration rows "
                      f"(split=calibration) of {feedback.ref}",
            description=f"rows {model}'s retrain candidates fit their per-group thresholds on")
    for version in (feedback, train_data, holdout):
        run.log_input(version)
    log.add("retrain.dataset", f"{feedback.ref} ({len(frame)} labelled rows from {requests} "
            f"requests); trains on {train_data.ref}, judged on {holdout.ref}",
            {"feedback": feedback.ref, "train_data": train_data.ref, "holdout": holdout.ref,
             "window": window, "versions": versions, "requests": requests, "rows": len(frame),
             "request_ids_sha256": ids, "base": base.ref})
    common: dict[str, Any] = {
        "champion_before": champion.ref, "feedback": feedback.ref, "train_data": train_data.ref,
        "holdout": holdout.ref, "labels": len(frame), "holdout_rows": holdout.num_rows,
        "window": window}

    candidate = _train(ws, spec, model, champion, train_data, feedback,
                       calibration=calibration, trials=trials,
                       actor=actor)
    log.add("retrain.candidate", f"{candidate.ref} trained on {train_data.ref}",
            {"candidate": candidate.ref, "run": candidate.run_id, "train_data": train_data.ref,
             "mitigation": candidate.tags.get("mitigation.base")})
    if candidate.version == champion.version:
        reason = f"retraining gave {champion.ref} again (same model): nothing to promote"
        log.add("retrain.unchanged", reason, {"candidate": candidate.ref})
        return RetrainResult(model, "unchanged", reason, champion_after=champion.ref,
                             candidate=candidate.ref, **common)

    gates, report = _judge(ws, spec, policy, candidate, champion, holdout.ref)
    run.log_dict("evaluation.json", report)
    fairness = _fairness_beside(report)
    log.add("retrain.judge", f"{candidate.ref} vs {champion.ref} on {holdout.ref}: "
            f"{gates.summary()}" + "".join(f"; {line}" for line in fairness),
            {"candidate": candidate.ref, "champion": champion.ref, "holdout": holdout.ref,
             "passed": gates.passed, "gates": gates.to_dict()["checks"],
             "fairness": fairness})
    common.update(candidate=candidate.ref, gates=gates)
    if not gates.passed:
        reason = f"{candidate.ref} refused, {champion.ref} stays champion: {gates.summary()}"
        log.add("retrain.refuse", reason, {"candidate": candidate.ref, "champion": champion.ref,
                                           "failed": [c.name for c in gates.failed]})
        _record_attempt(ws, candidate, champion, holdout.ref, gates, "refused", run, actor)
        return RetrainResult(model, "refused", reason, champion_after=champion.ref, **common)

    canary = _canary(ws, log, model, candidate, champion, weight=canary_weight,
                     requests=canary_requests, timeout=canary_timeout,
                     max_metric_drop=max_metric_drop, late_seconds=late_seconds, actor=actor)
    common.update(canary=canary)
    if canary is not None and not canary["passed"]:
        reason = (f"{candidate.ref} rolled back, {champion.ref} stays champion: "
                  f"{canary['reason']}")
        log.add("retrain.rollback", reason, {"candidate": candidate.ref,
                                             "champion": champion.ref, "canary": canary})
        _record_attempt(ws, candidate, champion, holdout.ref, gates, "refused", run, actor,
                        error=f"canary: {canary['reason']}")
        return RetrainResult(model, "rolled_back", reason, champion_after=champion.ref,
                             **common)

    now = _champion(ws, model)
    if now.version != champion.version:
        reason = (f"the champion changed to {now.ref} while {candidate.ref} was judged "
                  f"against {champion.ref}: not promoted; retrain again")
        _restore(ws, model, candidate, reason, actor)
        log.add("retrain.refuse", reason, {"candidate": candidate.ref, "champion": now.ref})
        return RetrainResult(model, "refused", reason, champion_after=now.ref, **common)
    passed = "; ".join(f"{c.name}: {c.reason}" for c in gates.checks)
    why = (f"retrain: beat {champion.ref} on {holdout.ref} ({passed})"
           + (f"; canary passed: {canary['reason']}" if canary else "; no deployment, no "
              "canary"))
    ws.models.set_alias(model, "champion", candidate.version, actor=actor, reason=why[:3900])
    _record_attempt(ws, candidate, champion, holdout.ref, gates, "promoted", run, actor)
    if canary is not None:
        ws.deployments.set(model, {"strategy": "single", "primary": f"{model}@champion"},
                           actor=actor, reason=f"retrain: {candidate.ref} promoted after its "
                                               "canary")
    reason = f"{candidate.ref} promoted to champion (was {champion.ref})"
    log.add("retrain.promote", reason, {"candidate": candidate.ref, "previous": champion.ref,
                                        "canary": canary, "gates": gates.summary(),
                                        "window": window, "feedback": feedback.ref})
    return RetrainResult(model, "promoted", reason, champion_after=candidate.ref, **common)


# ----------------------------------------------------------------- checks
def _project(project: Any) -> Project:
    from shipyard.project import Project, load_project

    if isinstance(project, Project):
        return project
    if not isinstance(project, (str, os.PathLike)):
        raise ConfigError(f"project must be a shipyard.yaml path or a loaded Project, not "
                          f"{type(project).__name__}")
    return load_project(project)


def _model_name(ws: Workspace, model: Any) -> str:
    from shipyard.errors import RegistryError
    from shipyard.registry import check_model_name

    try:
        model = check_model_name(model)
    except RegistryError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from exc
    if not any(m.name == model for m in ws.models.list()):
        raise NotFoundError(f"no model is called {model!r}",
                            hint="see the registered models with `shipyard models list`")
    return model


def _check_numbers(**values: Any) -> None:
    limits = {"min_labels": (1, None, int), "holdout_share": (0, 1, float),
              "base_rows": (1, None, int),
              "trials": (1, 10_000, int), "canary_weight": (0, 100, float),
              "canary_requests": (1, 1_000_000, int), "canary_timeout": (0, 86_400, float),
              "max_metric_drop": (0, 1, float)}
    for name, value in values.items():
        if value is None and name in ("trials", "base_rows"):
            continue
        low, high, kind = limits[name]
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) \
            and (kind is float or isinstance(value, int)) and math.isfinite(value)
        if ok and name in ("holdout_share", "canary_weight"):
            ok = low < value < high if name == "holdout_share" else low < value <= high
        elif ok:
            ok = value >= low and (high is None or value <= high)
        if not ok:
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be a {'whole ' if kind is int else ''}number "
                              f"{bounds}, got {value!r}")


def _only(spec: Project, names: Sequence[str]) -> Project:
    from shipyard.names import did_you_mean

    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or not names:
        raise ConfigError(f"candidates must be a list of candidate names, got {names!r}")
    known = [c.name for c in spec.train.candidates]
    for name in names:
        if name not in known:
            raise ConfigError(f"the project has no candidate {name!r}"
                              f"{did_you_mean(name, known)}",
                              hint=f"its candidates: {', '.join(known)}")
    kept = [c for c in spec.train.candidates if c.name in names]
    return spec.model_copy(update={"train": spec.train.model_copy(update={"candidates": kept})})


def _champion(ws: Workspace, model: str) -> ModelVersion:
    try:
        return ws.models.get(f"{model}@champion")
    except NotFoundError as exc:
        raise RetrainError(f"{model} has no champion to judge a retrained model against",
                           hint=f"promote a version first: shipyard promote {model}@1 "
                                "--project shipyard.yaml") from exc


def _check_fits(spec: Project, champion: ModelVersion) -> None:
    output = (champion.signature or {}).get("output") or {}
    target, task = output.get("target"), output.get("task")
    if target is not None and target != spec.target:
        raise ConfigError(f"the project file trains target {spec.target!r}, but "
                          f"{champion.ref} predicts {target!r}",
                          hint="pass the project file this model was trained from")
    if task is not None and task != spec.task:
        raise ConfigError(f"the project file's task is {spec.task}, but {champion.ref} is a "
                          f"{task} model", hint="pass the project file this model was "
                                                "trained from")


def _policy(spec: Project, gates: Any) -> GatePolicy:
    from shipyard.evaluate import ChampionRule, GatePolicy, load_policy

    if gates is None:
        policy = spec.gates or GatePolicy()
    elif isinstance(gates, GatePolicy):
        policy = gates
    else:
        policy = load_policy(gates, source="retrain gates")
    if policy.champion is None:
        policy = policy.model_copy(update={"champion": ChampionRule(metric=spec.metric)})
    return policy


def _alerting(ws: Workspace, model: str) -> str | None:
    firing = ws.monitor.alerts(model, state="firing", limit=10)
    if firing:
        return f"alert {', '.join(a.rule for a in firing)} firing"
    latest = ws.monitor.latest(model)
    if latest is not None and latest.verdict == "alert":
        return f"monitor report {latest.id} is an alert"
    return None


# --------------------------------------------------------------- feedback
def _window(ws: Workspace, model: str, *, since: Any, start: Any, end: Any
            ) -> tuple[float | None, float]:
    """``[start, end)`` of the prediction log to read; by default from the end
    of the last promoting retrain's window to now."""
    from shipyard.monitor import parse_duration

    last = _epoch(end, "end") if end is not None else time.time()
    if since is not None:
        if isinstance(since, str) and not _looks_like_time(since):
            try:
                first = last - parse_duration(since)
            except ValueError as exc:
                raise ConfigError(f"since: {exc}") from exc
        else:
            first = _epoch(since, "since")
    elif start is not None:
        first = _epoch(start, "start")
    else:
        # Feedback counts until a retrain promoted a model trained on it: after a
        # refusal the next retrain sees the same rows and the new ones.
        previous = ws.audit.entries("retrain", model, action="retrain.promote", limit=1)
        first = ((previous[0].details or {}).get("window") or {}).get("end") \
            if previous else None
    if first is not None and first >= last:
        raise ConfigError(f"the window starts ({_when(first)}) at or after it ends "
                          f"({_when(last)})")
    return first, last


def _looks_like_time(text: str) -> bool:
    return len(text) >= 10 and text[:4].isdigit() and text[4] == "-"


def _epoch(value: Any, what: str) -> float:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip()).timestamp()
        except ValueError as exc:
            raise ConfigError(f"{what}: {value[:60]!r} is not a time; write ISO text "
                              "(2025-01-31T12:00) or epoch seconds") from exc
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a time (epoch seconds, a datetime or ISO text), "
                          f"got {value!r}")
    return float(value)


def _when(seconds: float | None) -> str:
    import datetime as dt

    if seconds is None:
        return "the first prediction"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _split(request_ids: pd.Series, model: str, share: float,
           calibration: float = 0.0) -> list[str]:
    """``holdout`` for ``share`` of the requests, ``calibration`` for the next
    ``calibration`` share (by a hash of their id, so a request's rows stay
    together and a later retrain holds out the same ones), else ``train``."""
    from shipyard.deploy import bucket

    def split(rid: object) -> str:
        b = bucket(str(rid), f"retrain:{model}")
        return "holdout" if b < share * 100 else \
            "calibration" if b < (share + calibration) * 100 else "train"

    return [split(rid) for rid in request_ids]


def _like(rows: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``reference``'s dtypes where they convert (JSON gives
    back ints as floats when a value is missing, labels as text)."""
    out = rows.copy()
    for column in out.columns:
        if column in reference.columns and out[column].dtype != reference[column].dtype:
            try:
                out[column] = out[column].astype(reference[column].dtype)
            except (TypeError, ValueError):
                pass
    return out


def _project_dataset(ws: Workspace, spec: Project) -> Any:
    ds = spec.dataset
    if ds.source is not None:
        from pathlib import Path

        return ws.datasets.register(ds.name or Path(ds.source).stem, ds.source,
                                    description=f"ingested by project {spec.name or ds.name}")
    return ws.datasets.get(ds.ref)


def feedback_frame(ws: Workspace, model: str, version: ModelVersion, *, target: str,
                   start: float | None, end: float, late_arrival_seconds: float = 7 * 86400.0
                   ) -> pd.DataFrame:
    """The labelled rows of ``model``'s logged predictions in ``[start, end)``:
    ``version``'s input columns, ``target`` (the label), and ``request_id``,
    ``version``, ``role``, ``prediction`` of the logged answer. The answered
    requests of every version and role count, except those of a version that
    does not take all of ``version``'s inputs (the log keeps only the
    columns the answering version took); a list label labels its request's
    rows one by one."""
    import pandas as pd

    from shipyard.monitor import Window, labels_for, output_names, window_data

    inputs = [str(c["name"]) for c in (version.signature or {}).get("inputs", [])
              if isinstance(c, dict) and "name" in c]
    names = output_names(inputs)
    window = Window(model=model, version=None, role=None, start=start if start is not None
                    else 0.0, end=end, n=0)
    labels = labels_for(ws, window, late_arrival_seconds=late_arrival_seconds)
    columns = [*inputs, target, *LINEAGE_COLUMNS[:-1]]
    if labels.empty:
        return pd.DataFrame(columns=columns)
    by_id = dict(zip(labels["request_id"], labels["label"]))
    takes: dict[int, bool] = {}

    def complete(v: Any) -> bool:
        # The log holds the columns the answering version took: a version that
        # does not take all of ``version``'s inputs left some out of its rows.
        if v not in takes:
            try:
                got = ws.models.get(f"{model}@{int(v)}").signature or {}
            except (NotFoundError, TypeError, ValueError):
                got = {}
            names_ = {c.get("name") for c in got.get("inputs", []) if isinstance(c, dict)}
            takes[v] = set(inputs) <= names_
        return takes[v]

    parts = []
    for chunk in window_data(ws, window):
        chunk = chunk[chunk[names["status"]] == 200]
        chunk = chunk[[complete(v) for v in chunk[names["version"]]]]
        hit = chunk[chunk[names["request_id"]].isin(by_id.keys())]
        if hit.empty:
            continue
        values = []
        for rid, row in zip(hit[names["request_id"]], hit[names["row"]]):
            label = by_id[rid]
            if isinstance(label, list):
                label = label[int(row)] if int(row) < len(label) else None
            values.append(label)
        part = pd.DataFrame({c: hit[c].to_numpy() if c in hit.columns else None
                             for c in inputs})
        part[target] = values
        part["request_id"] = hit[names["request_id"]].to_numpy()
        part["version"] = hit[names["version"]].to_numpy()
        part["role"] = hit[names["role"]].to_numpy()
        part["prediction"] = hit[names["prediction"]].to_numpy()
        parts.append(part[part[target].notna()])
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


# ------------------------------------------------------------ train, judge
def _train(ws: Workspace, spec: Project, model: str, champion: ModelVersion, train_data: Any,
           feedback: Any, *, calibration: Any, trials: int | None, actor: str
           ) -> ModelVersion:
    """Train the project on ``train_data``; register the result; mitigate it
    as the champion was, when it was, with thresholds fitted on
    ``calibration`` (rows it did not train on)."""
    from shipyard.train import DatasetRef, train

    search = spec.train.search
    if trials is not None:
        search = search.model_copy(update={"n_trials": trials})
    retrain_spec = spec.model_copy(update={
        "dataset": DatasetRef(name=train_data.name, version=train_data.version),
        "train": spec.train.model_copy(update={"search": search})})
    trained = train(ws, retrain_spec)
    tags = {"retrain.feedback": feedback.ref, "retrain.dataset": train_data.ref,
            "retrain.champion": champion.ref}
    base = ws.models.register(model, trained.study_run_id, tags=tags, actor=actor,
                              description=f"retrained on {train_data.ref} (feedback "
                                          f"{feedback.ref})",
                              reason=f"retrain of {model} on {train_data.ref}")
    mitigation = {k.split(".", 1)[1]: v for k, v in (champion.tags or {}).items()
                  if k.startswith("mitigation.")}
    if "base" not in mitigation or base.version == champion.version:
        return base
    from shipyard.evaluate import mitigate

    mitigated = mitigate(ws, base.ref, (calibration or train_data).ref, target=spec.target,
                         sensitive=mitigation.get("sensitive"),
                         method=mitigation.get("method", "threshold"),
                         constraint=mitigation.get("constraint", "demographic_parity"),
                         actor=actor)
    return mitigated.version


def _judge(ws: Workspace, spec: Project, policy: GatePolicy, candidate: ModelVersion,
           champion: ModelVersion, holdout_ref: str) -> tuple[GateResult, dict[str, Any]]:
    """The gates on ``holdout_ref`` and the candidate's evaluation report
    there; both models predict its rows for the champion rule's paired test."""
    from shipyard.evaluate import check_gates
    from shipyard.train import needs_proba, score

    frame = ws.datasets.load(holdout_ref)
    sections = ["metrics"]
    if policy.fairness is not None:
        sections.append("fairness")
    if policy.robustness is not None:
        sections.append("robustness")
    if policy.latency is not None:
        sections.append("operational")
    sensitive = [c for c in spec.features.sensitive if c in frame.columns] \
        if policy.fairness is not None else []
    # Recorded in the retrain run (retrain.json, evaluation.json), not as a run of its own.
    report = ws.evaluate(candidate.ref, holdout_ref, target=spec.target, sensitive=sensitive,
                         sections=sections, log_to_run=False).to_dict()
    y = frame[spec.target].to_numpy()
    chal = _predict(candidate, frame)
    champ = _predict(champion, frame, classes=chal.get("classes"))
    task = report.get("task") or spec.task
    if sensitive:  # context for the fairness verdict: the champion's gaps on the same rows
        from shipyard.evaluate import fairness_report

        boot = (report.get("fairness") or {}).get("bootstrap") or {}
        report["champion_fairness"] = fairness_report(
            frame[sensitive], y, champ["label"], task=task, classes=report.get("classes"),
            n_bootstrap=int(boot.get("n", 0)), seed=int(boot.get("seed", 0)))
    base_ref = (candidate.tags or {}).get("mitigation.base") if policy.base else None
    base_value = None
    if base_ref is not None:
        got = _predict(ws.models.get(base_ref), frame)
        metric = policy.base.metric
        try:
            base_value = float(score(task, metric, y, got["label"],
                                     got.get("proba") if needs_proba(metric) else None,
                                     labels=list(got.get("classes", [])) or None))
        except (ValueError, TypeError):
            base_value = None
    return check_gates(policy, report, challenger_predictions=chal,
                       champion_predictions=champ, y_true=y, task=task,
                       base_value=base_value, base_ref=base_ref), report


def _fairness_beside(report: Mapping[str, Any]) -> list[str]:
    """``equalized_odds_difference by sex: candidate 0.054 [0.007, 0.162],
    champion 0.118 [0.050, 0.218]`` for each difference gap of each sensitive
    feature: the candidate's verdict beside the champion's figure on the
    same rows (a champion that is itself outside a bound on them is worth
    knowing when a candidate is refused)."""
    def shown(entry: Mapping[str, Any], gap: str) -> str:
        value, ci = entry.get(gap), (entry.get("ci") or {}).get(gap) or {}
        if value is None:
            return "n/a"
        low, high = ci.get("ci_low"), ci.get("ci_high")
        return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")

    mine = ((report.get("fairness") or {}).get("features")) or {}
    theirs = ((report.get("champion_fairness") or {}).get("features")) or {}
    return [f"{gap} by {feature}: candidate {shown(entry, gap)}, champion "
            f"{shown(theirs.get(feature) or {}, gap)}"
            for feature, entry in mine.items()
            for gap in ("demographic_parity_difference", "equalized_odds_difference")
            if gap in entry]


def _predict(version: ModelVersion, frame: pd.DataFrame, *, classes: Any = None
             ) -> dict[str, Any]:
    import numpy as np

    from shipyard.errors import DataError

    names = [str(i["name"]) for i in (version.signature or {}).get("inputs") or ()
             if isinstance(i, dict) and "name" in i]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"the holdout lacks {version.ref}'s input column(s) "
                        f"{', '.join(map(repr, missing))}",
                        hint="pass a holdout dataset with the model's input columns")
    model = version.load()
    X = frame[names] if names else frame
    out: dict[str, Any] = {"label": np.asarray(model.predict(X))}
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        proba = np.asarray(model.predict_proba(X))
        own = list(np.asarray(model.classes_))
        if classes is not None and list(classes) != own and set(own) == set(classes):
            proba = proba[:, [own.index(c) for c in classes]]
            own = list(classes)
        out["proba"], out["classes"] = proba, np.asarray(own)
    return out


# ----------------------------------------------------------------- canary
def _canary(ws: Workspace, log: _Steps, model: str, candidate: ModelVersion,
            champion: ModelVersion, *, weight: float, requests: int, timeout: float,
            max_metric_drop: float, late_seconds: float, actor: str) -> dict[str, Any] | None:
    """Roll ``candidate`` out as a canary beside ``@champion`` when ``model``
    has a deployment; judge its live traffic; roll back when it fails.
    None when there is no deployment."""
    current = ws.deployments.get(model)
    if current is None:
        log.add("retrain.canary", f"{model} has no deployment: no canary, the gates decide",
                {"candidate": candidate.ref, "deployment": None})
        return None
    previous = current.deployment
    spec: dict[str, Any] = {"strategy": "canary", "primary": f"{model}@champion",
                            "candidate": candidate.ref, "weight": weight}
    if previous.rollback is not None:
        spec["rollback"] = previous.rollback.model_dump()
    max_error_rate = previous.rollback.max_error_rate if previous.rollback else 0.05
    started = time.time()
    record = ws.deployments.set(model, spec, actor=actor,
                                reason=f"retrain: canary of {candidate.ref}")
    log.add("retrain.canary", f"{record.deployment.describe()} (revision {record.revision}); "
            f"judged after {requests} candidate requests, at most {timeout:g} s",
            {"candidate": candidate.ref, "deployment": record.deployment.to_dict(),
             "revision": record.revision, "previous": previous.to_dict()})
    deadline = time.monotonic() + timeout
    changed = None
    try:
        figures = _canary_figures(ws, model, candidate, champion, started, late_seconds)
        while figures["requests"] < requests and time.monotonic() < deadline:
            now = ws.deployments.get(model)
            if now is None or now.revision != record.revision:
                changed = now
                break
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            figures = _canary_figures(ws, model, candidate, champion, started, late_seconds)
    except BaseException:  # interrupted or failed: never leave the candidate serving
        ws.deployments.rollback(model, revision=record.revision, actor=actor,
                                reason=f"retrain: canary of {candidate.ref} interrupted")
        raise
    if changed is not None or (ws.deployments.get(model) or record).revision != record.revision:
        figures.update(passed=False, reason=(
            f"the deployment changed during the canary (now "
            f"{changed.deployment.describe() if changed else 'removed'}), e.g. a server "
            "rolled the candidate back"))
        log.add("retrain.canary_check", figures["reason"], figures)
        return figures
    figures.update(_canary_verdict(figures, requests=requests, timeout=timeout,
                                   max_error_rate=max_error_rate,
                                   max_metric_drop=max_metric_drop))
    log.add("retrain.canary_check", figures["reason"], figures)
    if not figures["passed"]:
        ws.deployments.rollback(model, revision=record.revision,
                                reason=f"retrain: canary of {candidate.ref} failed: "
                                       f"{figures['reason']}"[:3900],
                                details={"canary": figures}, actor=actor)
    return figures


def _canary_figures(ws: Workspace, model: str, candidate: ModelVersion,
                    champion: ModelVersion, started: float, late_seconds: float
                    ) -> dict[str, Any]:
    """The canary's traffic so far: candidate requests and errors, and the
    realized metric of both versions on their labelled rows."""
    from shipyard.deploy import read_predictions

    log = read_predictions(ws, model=model, since=started)
    figures: dict[str, Any] = {"requests": 0, "errors": 0, "error_rate": None,
                               "primary_requests": 0, "metric": None, "candidate": None,
                               "primary": None, "labelled": 0, "since": started}
    if log.empty:
        return figures
    mine = log[(log["version"] == candidate.version) & (log["role"] == "candidate")]
    theirs = log[(log["version"] == champion.version) & (log["role"] == "primary")]
    errors = int((mine["status"] != 200).sum())
    figures.update(requests=len(mine), errors=errors,
                   error_rate=errors / len(mine) if len(mine) else None,
                   primary_requests=len(theirs))
    if len(mine):
        rows = feedback_frame(ws, model, candidate, target="__label__", start=started,
                              end=time.time() + 1, late_arrival_seconds=late_seconds)
        if len(rows):
            task = ((candidate.signature or {}).get("output") or {}).get("task")
            figures["metric"] = "mean_absolute_error" if task == "regression" else "accuracy"
            for role, version, key in (("candidate", candidate.version, "candidate"),
                                       ("primary", champion.version, "primary")):
                part = rows[(rows["role"] == role) & (rows["version"] == version)]
                if len(part):
                    figures[key] = _realized(figures["metric"], part)
                    figures[f"{key}_labelled"] = len(part)
            figures["labelled"] = int(figures.get("candidate_labelled", 0))
    return figures


def _realized(metric: str, rows: pd.DataFrame) -> float:
    """``metric`` of the logged predictions of ``rows`` against their labels."""
    import numpy as np

    predicted = rows["prediction"].to_numpy()
    truth = rows["__label__"].to_numpy()
    if metric == "mean_absolute_error":
        return float(np.mean(np.abs(predicted.astype(float) - truth.astype(float))))
    return float(np.mean(predicted.astype(str) == truth.astype(str)))


def _canary_verdict(figures: dict[str, Any], *, requests: int, timeout: float,
                    max_error_rate: float, max_metric_drop: float) -> dict[str, Any]:
    n = figures["requests"]
    if n < requests:
        return {"passed": False, "reason": f"the candidate answered {n} of the {requests} "
                                           f"requests needed within {timeout:g} s"}
    rate = figures["error_rate"] or 0.0
    if rate > max_error_rate:
        return {"passed": False, "reason": f"candidate error rate {rate:.3f} > "
                                           f"{max_error_rate:g} over {n} requests"}
    text = f"{n} candidate requests, error rate {rate:.3f} <= {max_error_rate:g}"
    metric, mine, theirs = figures["metric"], figures["candidate"], figures["primary"]
    if metric is not None and mine is not None and theirs is not None:
        lower = metric == "mean_absolute_error"
        drop = (mine - theirs) if lower else (theirs - mine)
        text += (f"; realized {metric} {mine:.3f} on {figures.get('candidate_labelled', 0)} "
                 f"labelled rows vs primary {theirs:.3f} on "
                 f"{figures.get('primary_labelled', 0)}")
        if drop > max_metric_drop:
            return {"passed": False, "reason": f"{text}: {drop:.3f} worse, more than "
                                               f"{max_metric_drop:g}"}
    else:
        text += "; no labelled canary rows yet (realized metric not compared)"
    return {"passed": True, "reason": text}


def _restore(ws: Workspace, model: str, candidate: ModelVersion, reason: str,
             actor: str) -> None:
    """Take ``candidate`` out of ``model``'s canary, if it is in one."""
    record = ws.deployments.get(model)
    if record is not None and record.deployment.candidate == candidate.ref:
        ws.deployments.rollback(model, revision=record.revision, reason=reason[:3900],
                                actor=actor)


# ------------------------------------------------------------------ audit
def _record_attempt(ws: Workspace, candidate: Any, champion: Any, holdout: str, gates: Any,
                    outcome: str, run: Any, actor: str | None, *, error: str | None = None
                    ) -> None:
    """The attempt as a ``model.promote`` entry too, so that
    ``shipyard.evaluate.promotions`` and the UI list it with the others."""
    from shipyard.evaluate import record_promotion

    record_promotion(ws, candidate.ref, alias="champion", outcome=outcome, gates=gates,
                     dataset=holdout, champion=champion.ref,
                     evaluation_run=getattr(run, "id", None), error=error, actor=actor,
                     via="retrain")


class _Steps:
    """Audit entries ``retrain.*`` of one retrain, each its own transaction,
    kept in order for the result."""

    def __init__(self, ws: Workspace, model: str, actor: str,
                 progress: Callable[[str, str], None] | None):
        self.ws, self.model, self.actor, self.progress = ws, model, actor, progress
        self.steps: list[tuple[str, str]] = []

    def add(self, action: str, detail: str, details: Mapping[str, Any]) -> None:
        from shipyard.data import jsonable

        self.ws.db.retry(lambda session: self.ws.audit.append(
            session, actor=self.actor, action=action, object_type="retrain",
            object_id=self.model, reason=detail[:3900], details=jsonable(dict(details))),
            what=f"audit {action} of {self.model}")
        self.steps.append((action, detail))
        if self.progress is not None:
            self.progress(action, detail)


def _with(result: RetrainResult, **changes: Any) -> RetrainResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


