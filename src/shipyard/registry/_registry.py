"""The model registry: named models, numbered versions, movable aliases.

Every change (register, alias set/remove/rollback, archive, restore) writes an
audit entry in the same transaction, so the registry and its audit log never
disagree.

Rollback semantics
------------------
Each alias keeps a history of moves. :meth:`Registry.rollback` works like
*undo*: it reverts the most recent move of the alias that has not been undone
yet, so a second rollback goes one holder further back (``1 → 2 → 3``, then
rollback gives ``2``, rollback again gives ``1``), never back and forth.
Setting an alias pushes its new holder; removing an alias (or archiving its
holder with ``force``) clears its history, so rollback cannot resurrect it.
Rollback refuses to move an alias onto an archived version.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from shipyard.errors import (
    ArtifactNotFoundError,
    NotFoundError,
    RegistryError,
)
from shipyard.names import (
    ALIAS_PATTERN,
    MAX_VERSION,
    check_name,
    has_control,
    ranges,
    shown,
)
from shipyard.registry._records import (
    STATUSES,
    AliasEvent,
    ModelLineage,
    ModelSummary,
    ModelVersion,
)
from shipyard.security import resolve_actor
from shipyard.store.tables import (
    DatasetRow,
    DatasetVersionRow,
    ModelAliasEventRow,
    ModelAliasRow,
    ModelVersionBlobRow,
    ModelVersionRow,
    RegisteredModelRow,
    RunInputRow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shipyard import Workspace
    from shipyard.registry._byo import LoggedModel
    from shipyard.tracking import ActiveRun, RunInfo

#: Aliases the registry computes itself; they cannot be set.
RESERVED_ALIASES = frozenset({"latest"})
MAX_REF_LENGTH = 200 + 1 + 64
MAX_TEXT = 10_000
MAX_TAG_KEY = 250
DIGEST_TAG = "model.digest"
SIGNATURE_PATH = "model/signature.json"
LISTED = 20
_DIGEST = re.compile(r"[0-9a-f]{64}")
READY, ARCHIVED = STATUSES


# --------------------------------------------------------------------- refs
def check_model_name(name: object) -> str:
    """Return ``name`` if it is a valid model name: a letter, then up to 199
    letters, digits, ``_``, ``.`` and ``-``.

    Raises
    ------
    RegistryError
        It is not.
    """
    return check_name(name, "model", RegistryError, example="fraud_detector")


def check_alias(alias: object) -> str:
    """Return ``alias`` if it can be set: lowercase letter first, then up to
    63 lowercase letters, digits, ``_`` and ``-``; not ``latest``.

    Raises
    ------
    RegistryError
        It cannot.
    """
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
        raise RegistryError(f"{shown(alias)} is not a valid alias",
                            hint="start with a lowercase letter; use up to 64 lowercase "
                                 "letters, digits, '_' and '-' (e.g. champion)")
    if alias in RESERVED_ALIASES:
        raise RegistryError(f"alias {alias!r} is reserved: it always means the newest READY "
                            "version", hint="pick another name, e.g. champion")
    return alias


def parse_model_ref(ref: object) -> tuple[str, int | str | None]:
    """Split a model ref into ``(name, selector)``: a version number, an
    alias, or ``None`` for the newest READY version.

    >>> parse_model_ref("fraud@7"), parse_model_ref("fraud@champion")
    (('fraud', 7), ('fraud', 'champion'))
    >>> parse_model_ref("fraud"), parse_model_ref("fraud@latest")
    (('fraud', None), ('fraud', None))
    """
    hint = "refer to a model as NAME, NAME@latest, NAME@N or NAME@ALIAS (e.g. fraud@champion)"
    if not isinstance(ref, str):
        raise RegistryError(f"a model ref must be a string, not {type(ref).__name__}", hint=hint)
    if len(ref) > MAX_REF_LENGTH:
        raise RegistryError(f"model ref {ref[:40]!r}... is too long ({len(ref)} characters)",
                            hint=hint)
    name, sep, selector = ref.partition("@")
    check_model_name(name)
    if not sep or selector == "latest":
        return name, None
    if selector.isascii() and selector.isdigit():
        return name, _version_number(selector)
    if not ALIAS_PATTERN.fullmatch(selector):
        raise RegistryError(f"{shown(ref)} is not a valid model ref: {shown(selector)} is "
                            "neither a version number nor an alias", hint=hint)
    return name, selector


def _version_number(version: object) -> int:
    if isinstance(version, str) and version.isascii() and version.isdigit() \
            and len(version) <= 10:
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 1 <= version <= MAX_VERSION:
        raise RegistryError(f"{shown(version)} is not a model version number",
                            hint="versions are whole numbers from 1")
    return version


def _text(value: object, what: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise RegistryError(f"{what} must be text of at most {limit} characters without NUL")
    return value


def _json_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RegistryError(f"the {what} must be a JSON object, got {type(value).__name__}")
    try:
        # Strict JSON: PostgreSQL's JSON type refuses NaN; round-tripping also
        # copies it, so later changes to the caller's dict change nothing here.
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"the {what} is not JSON-serialisable: {exc}") from exc


def _tags(tags: object) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise RegistryError(f"tags must be a mapping, got {type(tags).__name__}")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_TAG_KEY \
                or has_control(key):
            raise RegistryError(f"tag key {shown(key)} must be 1 to {MAX_TAG_KEY} printable "
                                "characters")
        out[key] = _text(str(value), f"tag {key!r}")  # type: ignore[assignment]
    return out


# ----------------------------------------------------------------- registry
class Registry:
    """Registered models of a workspace: ``ws.models``.

    A *model* is a name; each :meth:`register` adds an immutable *version*
    (1, 2, 3, ...) pointing at a training run's saved model. *Aliases*
    (``champion``, ``challenger``) are movable names on versions; ``latest``
    always means the newest READY version. Refs: ``fraud``, ``fraud@latest``,
    ``fraud@7``, ``fraud@champion``.

    See the module docstring for what :meth:`rollback` does.
    """

    def __init__(self, workspace: Workspace):
        self._ws = workspace

    def __repr__(self) -> str:
        return f"Registry({self._ws!r})"

    # ---------------------------------------------------------- register
    def register(
        self,
        name: str,
        source: str | RunInfo | Any,
        *,
        sample: Any = None,
        run: ActiveRun | None = None,
        task: str | None = None,
        classes: Any = None,
        target: str | None = None,
        artifact_digest: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        actor: str | None = None,
        reason: str | None = None,
        onnx: bool = True,
    ) -> ModelVersion:
        """Record the model a run produced, or a model trained elsewhere, as
        the next version of ``name``.

        Parameters
        ----------
        name
            Model name; created on first use.
        source
            The training run (id, unique id prefix, RunInfo or ActiveRun);
            or a model trained outside ``shipyard train``: a fitted model
            object, a model file or an MLflow model folder, saved in a safe
            format and logged into a run first (see
            :mod:`shipyard.registry._byo` for what is accepted).
        sample
            Input rows (DataFrame, 2-D array or data file). For a model
            object or file: the signature is inferred from them and the saved
            model checked on them (needed except for ONNX graphs). For a run:
            the rows the ONNX fast path is verified on, instead of the run's
            logged sample or its dataset.
        run
            For a model object or file: the active run it was trained in,
            which then holds it (lineage: its inputs and metrics); default a
            new run in experiment ``import``.
        task, classes
            For an ONNX graph or torch module (``classes`` also for a bare
            LightGBM/XGBoost booster): read its outputs as ``regression``,
            ``binary`` or ``multiclass``, with these class labels in output
            order; default inferred.
        target
            For a model object or file: the name of the column it predicts,
            recorded in the signature.
        artifact_digest
            The ModelArtifact manifest digest; default the run's
            ``model.digest`` tag.
        signature
            Input columns and dtypes, output kind, classes; default the run's
            ``model/signature.json`` artifact.
        description
            What this version is; also the model's description when new.
        tags
            Free-form ``{key: text}``.
        actor, reason
            Who registers it and why (audit log); actor defaults to
            ``$SHIPYARD_ACTOR`` or the OS user.
        onnx
            Also convert the model to ONNX and keep it when it predicts the
            same as the model on a sample of the training rows (the serving
            fast path); the outcome is tag ``onnx`` (see
            :mod:`shipyard.registry._onnx`).

        Returns
        -------
        ModelVersion
            The new version, or the existing version of ``name`` holding the
            same artifact (``.new`` tells which).

        Raises
        ------
        NotFoundError
            No such run or model file, or the model blobs are missing.
        RegistryError
            Invalid name or arguments; the run failed, or has no model or no
            signature; a model object, file or sample is refused (a pickle,
            types outside the skops allow-list, no sample where one is
            needed, a sample the model does not take): nothing is registered
            and no run is started then.
        """
        from shipyard.registry._byo import is_run_ref, register_model

        check_model_name(name)
        actor = resolve_actor(actor)
        description = _text(description, "description")
        reason = _text(reason, "reason")
        tag_map = _tags(tags)
        if not is_run_ref(source):
            if artifact_digest is not None or signature is not None:
                raise RegistryError("artifact_digest= and signature= describe a run's model; a "
                                    "model object's are saved and inferred",
                                    hint="leave them out, or register the run")
            return register_model(self._ws, name, source, sample=sample, run=run, task=task,
                                  classes=classes, target=target, description=description,
                                  tags=tag_map, actor=actor, reason=reason, onnx=onnx)
        given = [k for k, v in (("run", run), ("task", task), ("classes", classes),
                                ("target", target)) if v is not None]
        if given:
            raise RegistryError(f"{'=, '.join(given)}= describe a model object or file; a run's "
                                "model is described by the run", hint="leave them out")
        run = self._ws.runs.get(source)
        if run.status in ("FAILED", "KILLED"):
            raise RegistryError(f"run {run.short_id} is {run.status}: its model is not "
                                "registered", hint="register the model of a finished run")
        digest = artifact_digest if artifact_digest is not None else run.tags.get(DIGEST_TAG)
        if digest is None:
            raise RegistryError(f"run {run.short_id} has no model: it has no {DIGEST_TAG!r} tag",
                                hint="register a run that saved a model, or pass "
                                     "artifact_digest=")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise RegistryError(f"{shown(digest)} is not a model digest (64 lowercase hex "
                                "digits)")
        artifact = self._artifact(digest)
        sig = self._signature(run, signature)
        metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in run.metrics.items()}
        onnx_blobs: builtins.list[str] = []
        if onnx:
            from shipyard.registry._byo import as_frame, logged_sample
            from shipyard.registry._formats import load_stored
            from shipyard.registry._onnx import prepare_onnx

            inputs = self._ws.runs.inputs(run.id)
            rows = as_frame(sample) if sample is not None else logged_sample(self._ws, run.id)
            loaded = load_stored(self._ws.artifacts, digest)
            onnx_tags, onnx_digest = prepare_onnx(self._ws, loaded, sig,
                                                  inputs[0] if inputs else None, sample=rows)
            tag_map = {**tag_map, **onnx_tags}
            onnx_blobs = [onnx_digest] if onnx_digest else []
        # The monitor's baseline (docs/monitoring.md §1); skipped with a warning.
        from shipyard.registry._reference import prepare_reference

        reference_tags, reference_blobs = prepare_reference(
            self._ws, _loader(self._ws, digest), sig,
            next(iter(self._ws.runs.inputs(run.id)), None), tags=tag_map,
            what=f"the new version of {name}", run_id=run.id)
        tag_map = {**tag_map, **reference_tags}

        def write(session: Session) -> ModelVersion:
            # Before anything is read: the next version number below must not
            # be one another writer of this name is about to take.
            self._ws.db.lock(session, f"model:{name}")
            self._ws.audit.lock(session)
            now = time.time()
            model = session.execute(select(RegisteredModelRow)
                                    .where(RegisteredModelRow.name == name)).scalar_one_or_none()
            if model is None:
                model = RegisteredModelRow(name=name, description=description, created_at=now)
                session.add(model)
                session.flush()
            same = session.execute(select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id,
                ModelVersionRow.artifact_digest == digest)).scalar_one_or_none()
            if same is not None:
                return self._versions(session, [same], name)[0]
            latest = session.execute(select(func.max(ModelVersionRow.version))
                                     .where(ModelVersionRow.model_id == model.id)).scalar() or 0
            if latest >= MAX_VERSION:
                raise RegistryError(f"model {name!r} has no version numbers left")
            data_id = session.execute(select(func.min(RunInputRow.dataset_version_id))
                                      .where(RunInputRow.run_id == run.id)).scalar()
            row = ModelVersionRow(model_id=model.id, version=latest + 1, run_id=run.id,
                                  artifact_digest=digest, signature=sig, metrics=metrics,
                                  tags=tag_map, description=description, status=READY,
                                  dataset_version_id=data_id, created_at=now, created_by=actor)
            session.add(row)
            session.flush()
            session.add_all(ModelVersionBlobRow(version_id=row.id, digest=d)
                            for d in dict.fromkeys([*artifact.digests, *onnx_blobs,
                                                    *reference_blobs]))
            version = self._versions(session, [row], name, new=True)[0]
            self._ws.audit.append(
                session, actor=actor, action="model.register", object_type="model",
                object_id=name, reason=reason,
                details={"version": version.version, "run_id": run.id,
                         "artifact_digest": digest, "dataset_version": version.dataset_version})
            return version

        return self._write(write, f"register {name}")

    def log_model(self, run: ActiveRun, model: Any, *, sample: Any = None,
                  task: str | None = None, classes: Any = None, target: str | None = None,
                  registered_model_name: str | None = None, **register: Any) -> LoggedModel:
        """Save ``model`` into the active ``run`` (what
        :meth:`~shipyard.tracking.ActiveRun.log_model` calls): in a safe
        format, with its signature inferred from ``sample``, tag
        ``model.digest`` and ``model/signature.json`` as training writes them.
        With ``registered_model_name`` it is also registered as that model's
        next version; otherwise ``register(name, run.id)`` registers it later.

        ``sample``, ``task``, ``classes`` and ``target`` are as in
        :meth:`register`, and so are ``register``'s keywords (``description``,
        ``tags``, ``reason``, ``onnx``, ...).

        Raises
        ------
        RegistryError
            The run has ended or already holds another model, or the model
            or sample is refused (nothing is logged then).
        """
        from shipyard.registry._byo import log_model

        return log_model(self._ws, run, model, sample=sample, task=task, classes=classes,
                         target=target, registered_model_name=registered_model_name,
                         **register)

    def _artifact(self, digest: str):
        from shipyard.registry._formats import read_artifact

        artifact = read_artifact(self._ws.artifacts, digest)
        missing = [d for d in artifact.digests if not self._ws.artifacts.exists(d)]
        if missing:
            raise ArtifactNotFoundError(f"model {digest[:12]} lacks blobs "
                                        f"{', '.join(d[:12] for d in missing)}",
                                        hint="the model was not saved completely; save it again")
        return artifact

    def _signature(self, run: RunInfo, signature: Mapping[str, Any] | None) -> dict[str, Any]:
        if signature is not None:
            return _json_object(signature, "signature")
        try:
            raw = self._ws.runs.load_artifact(run.id, SIGNATURE_PATH)
        except NotFoundError as exc:
            raise RegistryError(f"run {run.short_id} logged no {SIGNATURE_PATH}, so the model's "
                                "signature is unknown",
                                hint="log it in the run, or pass signature=") from exc
        try:
            return _json_object(json.loads(raw), "signature")
        except ValueError as exc:
            raise RegistryError(f"{SIGNATURE_PATH} of run {run.short_id} is not JSON: {exc}"
                                ) from exc

    def _write(self, fn, what: str):
        # conflicts: a backstop for a writer that takes no lock (an older
        # Shipyard on the same database); the next attempt sees its rows.
        return self._ws.db.retry(fn, what=what, conflicts=True)

    # -------------------------------------------------------------- read
    def get(self, ref: str | ModelVersion) -> ModelVersion:
        """The version ``ref`` names: ``fraud@7``, ``fraud@champion``,
        ``fraud@latest`` or ``fraud`` (both the newest READY version).

        Raises
        ------
        NotFoundError
            No such model, version or alias.
        RegistryError
            ``ref`` is malformed.
        """
        if isinstance(ref, ModelVersion):
            ref = ref.ref
        name, selector = parse_model_ref(ref)
        with self._ws.db.read() as session:
            model = self._model(session, name)
            return self._versions(session, [self._row(session, model, selector)], name)[0]

    def list(self) -> builtins.list[ModelSummary]:
        """Every registered model with its newest version and aliases, by name."""
        with self._ws.db.read() as session:
            stats = {mid: (latest, n, updated) for mid, latest, n, updated in session.execute(
                select(ModelVersionRow.model_id, func.max(ModelVersionRow.version),
                       func.count(), func.max(ModelVersionRow.created_at))
                .group_by(ModelVersionRow.model_id))}
            aliases: dict[int, dict[str, int]] = {}
            for mid, alias, version in session.execute(
                    select(ModelAliasRow.model_id, ModelAliasRow.alias, ModelVersionRow.version)
                    .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
                    .order_by(ModelAliasRow.alias)):
                aliases.setdefault(mid, {})[alias] = version
            models = session.execute(select(RegisteredModelRow)
                                     .order_by(RegisteredModelRow.name)).scalars().all()
            return [ModelSummary(name=m.name, description=m.description,
                                 latest_version=stats[m.id][0], num_versions=int(stats[m.id][1]),
                                 aliases=aliases.get(m.id, {}), created_at=m.created_at,
                                 updated_at=stats[m.id][2])
                    for m in models if m.id in stats]

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Every version of ``name``, oldest first (archived ones included).

        Raises
        ------
        NotFoundError
            No model is called ``name``.
        """
        check_model_name(name)
        with self._ws.db.read() as session:
            model = self._model(session, name)
            rows = session.execute(select(ModelVersionRow)
                                   .where(ModelVersionRow.model_id == model.id)
                                   .order_by(ModelVersionRow.version)).scalars().all()
            return self._versions(session, rows, name)

    def alias_history(self, name: str, alias: str | None = None
                      ) -> builtins.list[AliasEvent]:
        """Every move of ``name``'s aliases (or of one), oldest first."""
        check_model_name(name)
        if alias is not None and (not isinstance(alias, str)
                                  or not ALIAS_PATTERN.fullmatch(alias)):
            raise RegistryError(f"{shown(alias)} is not a valid alias")
        with self._ws.db.read() as session:
            model = self._model(session, name)
            query = (select(ModelAliasEventRow).where(ModelAliasEventRow.model_id == model.id)
                     .order_by(ModelAliasEventRow.id))
            if alias is not None:
                query = query.where(ModelAliasEventRow.alias == alias)
            rows = session.execute(query).scalars().all()
            numbers = dict(session.execute(select(ModelVersionRow.id, ModelVersionRow.version)
                                           .where(ModelVersionRow.model_id == model.id)).all())
            return [AliasEvent(alias=r.alias, event=r.event,
                               version=numbers.get(r.version_id),
                               previous_version=numbers.get(r.previous_version_id),
                               ts=r.ts, actor=r.actor, reason=r.reason) for r in rows]

    def load(self, ref: str | ModelVersion) -> Any:
        """The model ``ref`` names, loaded safely (see
        :func:`shipyard.train.load_model`): it has ``predict``, and
        ``predict_proba`` for classifiers."""
        return self.get(ref).load()

    def lineage(self, ref: str | ModelVersion) -> ModelLineage:
        """Dataset version(s) → run → artifact → model version, for ``ref``."""
        version = self.get(ref)
        return ModelLineage(model=version.ref, run_id=version.run_id,
                            artifact_digest=version.artifact_digest,
                            dataset_version=version.dataset_version,
                            dataset_versions=tuple(self._ws.runs.inputs(version.run_id)))

    # ----------------------------------------------------------- aliases
    def set_alias(self, name: str, alias: str, version: int | str, *,
                  actor: str | None = None, reason: str | None = None,
                  force: bool = False) -> ModelVersion:
        """Point ``alias`` of ``name`` at ``version`` (moving it if it is set).

        A move that makes an input column required which the current holder
        does not take (clients of the alias do not send it) is refused unless
        ``force``; a forced move records those columns in the audit entry.

        Raises
        ------
        NotFoundError
            No such model or version.
        RegistryError
            Invalid alias, the version is archived, or the move needs new
            input columns and ``force`` is not set.
        """
        check_model_name(name)
        check_alias(alias)
        number = _version_number(version)
        actor = resolve_actor(actor)
        reason = _text(reason, "reason")

        def write(session: Session) -> ModelVersion:
            self._ws.audit.lock(session)
            model = self._model(session, name)
            target = self._row(session, model, number)
            if target.status == ARCHIVED:
                raise RegistryError(f"{name}@{number} is archived and cannot receive an alias",
                                    hint=f"restore it first (ws.models.restore({name!r}, "
                                         f"{number})) or pick a READY version")
            current = session.get(ModelAliasRow, (model.id, alias))
            if current is not None and current.version_id == target.id:
                return self._versions(session, [target], name)[0]
            previous = self._number(session, current.version_id) if current else None
            added = _new_columns(session, current, target, f"{name}@{alias}", force)
            self._move(session, model, alias, current, target.id, "set", actor, reason)
            self._ws.audit.append(session, actor=actor, action="model.alias.set",
                                  object_type="model", object_id=name, reason=reason,
                                  details={"alias": alias, "version": number,
                                           "previous_version": previous,
                                           **({"new_required_columns": added} if added
                                              else {})})
            return self._versions(session, [target], name)[0]

        return self._write(write, f"set alias {alias} of {name}")

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None,
                     reason: str | None = None) -> None:
        """Remove ``alias`` from ``name``; its rollback history is cleared.

        Raises
        ------
        NotFoundError
            No such model or alias.
        """
        check_model_name(name)
        check_alias(alias)
        actor = resolve_actor(actor)
        reason = _text(reason, "reason")

        def write(session: Session) -> None:
            self._ws.audit.lock(session)
            model = self._model(session, name)
            current = self._alias(session, model, alias)
            previous = self._number(session, current.version_id)
            self._move(session, model, alias, current, None, "remove", actor, reason)
            self._ws.audit.append(session, actor=actor, action="model.alias.remove",
                                  object_type="model", object_id=name, reason=reason,
                                  details={"alias": alias, "previous_version": previous})

        self._write(write, f"remove alias {alias} of {name}")

    def rollback(self, name: str, alias: str, *, actor: str | None = None,
                 reason: str | None = None, force: bool = False) -> ModelVersion:
        """Undo the latest not-yet-undone move of ``alias``: point it back at
        the version that held it before. Repeated rollbacks walk further back.

        Returns
        -------
        ModelVersion
            The alias's new holder.

        Raises
        ------
        NotFoundError
            No such model or alias.
        RegistryError
            The alias has no earlier holder, or that holder is archived, or
            it needs input columns the current holder does not take and
            ``force`` is not set (see :meth:`set_alias`).
        """
        check_model_name(name)
        check_alias(alias)
        actor = resolve_actor(actor)
        reason = _text(reason, "reason")

        def write(session: Session) -> ModelVersion:
            self._ws.audit.lock(session)
            model = self._model(session, name)
            current = self._alias(session, model, alias)
            stack: builtins.list[int] = []
            for event, version_id in session.execute(
                    select(ModelAliasEventRow.event, ModelAliasEventRow.version_id)
                    .where(ModelAliasEventRow.model_id == model.id,
                           ModelAliasEventRow.alias == alias)
                    .order_by(ModelAliasEventRow.id)):
                if event == "set":
                    stack.append(version_id)
                elif event == "rollback":
                    stack.pop()
                else:  # remove
                    stack.clear()
            holder = self._number(session, current.version_id)
            if len(stack) < 2 or stack[-1] != current.version_id:
                raise RegistryError(f"alias {alias!r} of {name} has no earlier holder to roll "
                                    f"back to (it points at version {holder})",
                                    hint=f"set it explicitly: shipyard models alias {name} "
                                         f"{alias} VERSION")
            target = session.get(ModelVersionRow, stack[-2])
            if target.status == ARCHIVED:
                raise RegistryError(f"cannot roll {name}@{alias} back to version "
                                    f"{target.version}: it is archived",
                                    hint="restore that version first, or set the alias "
                                         "explicitly")
            added = _new_columns(session, current, target, f"{name}@{alias}", force)
            self._move(session, model, alias, current, target.id, "rollback", actor, reason)
            self._ws.audit.append(session, actor=actor, action="model.alias.rollback",
                                  object_type="model", object_id=name, reason=reason,
                                  details={"alias": alias, "version": target.version,
                                           "previous_version": holder,
                                           **({"new_required_columns": added} if added
                                              else {})})
            return self._versions(session, [target], name)[0]

        return self._write(write, f"roll back alias {alias} of {name}")

    def _move(self, session: Session, model: RegisteredModelRow, alias: str,
              current: ModelAliasRow | None, version_id: int | None, event: str, actor: str,
              reason: str | None) -> None:
        now = time.time()
        previous = current.version_id if current is not None else None
        if version_id is None:
            session.delete(current)
        elif current is None:
            session.add(ModelAliasRow(model_id=model.id, alias=alias, version_id=version_id,
                                      updated_at=now))
        else:
            current.version_id, current.updated_at = version_id, now
        session.add(ModelAliasEventRow(model_id=model.id, alias=alias, event=event,
                                       version_id=version_id, previous_version_id=previous,
                                       ts=now, actor=actor, reason=reason))
        session.flush()

    # ----------------------------------------------------------- archive
    def archive(self, name: str, version: int | str, *, force: bool = False,
                actor: str | None = None, reason: str | None = None) -> ModelVersion:
        """Mark a version ARCHIVED: it keeps its record and blobs but can
        receive no alias and is never ``latest``.

        Parameters
        ----------
        force
            Archive it even if aliases point at it, removing them.

        Raises
        ------
        NotFoundError
            No such model or version.
        RegistryError
            An alias points at it and ``force`` is false.
        """
        return self._set_status(name, version, ARCHIVED, force=force, actor=actor,
                                reason=reason)

    def restore(self, name: str, version: int | str, *, actor: str | None = None,
                reason: str | None = None) -> ModelVersion:
        """Make an archived version READY again."""
        return self._set_status(name, version, READY, force=False, actor=actor, reason=reason)

    def _set_status(self, name: str, version: int | str, status: str, *, force: bool,
                    actor: str | None, reason: str | None) -> ModelVersion:
        check_model_name(name)
        number = _version_number(version)
        actor = resolve_actor(actor)
        reason = _text(reason, "reason")

        def write(session: Session) -> ModelVersion:
            self._ws.audit.lock(session)
            model = self._model(session, name)
            row = self._row(session, model, number)
            if row.status == status:
                return self._versions(session, [row], name)[0]
            holders = session.execute(select(ModelAliasRow).where(
                ModelAliasRow.version_id == row.id).order_by(ModelAliasRow.alias)
            ).scalars().all()
            removed = [h.alias for h in holders]
            if status == ARCHIVED and holders:
                if not force:
                    raise RegistryError(
                        f"{name}@{number} holds alias {', '.join(removed)}: archiving it "
                        "would leave the alias on an archived model",
                        hint="move the alias first, or pass force=True (--force) to remove it")
                for holder in holders:
                    self._move(session, model, holder.alias, holder, None, "remove", actor,
                               reason)
            row.status = status
            session.flush()
            details: dict[str, Any] = {"version": number}
            if status == ARCHIVED:
                details["removed_aliases"] = removed
            self._ws.audit.append(session, actor=actor,
                                  action="model.archive" if status == ARCHIVED
                                  else "model.restore",
                                  object_type="model", object_id=name, reason=reason,
                                  details=details)
            return self._versions(session, [row], name)[0]

        return self._write(write, f"change the status of {name}@{number}")

    # ----------------------------------------------------------- lookups
    def _model(self, session: Session, name: str) -> RegisteredModelRow:
        model = session.execute(select(RegisteredModelRow)
                                .where(RegisteredModelRow.name == name)).scalar_one_or_none()
        if model is None:
            names = session.execute(select(RegisteredModelRow.name)
                                    .order_by(RegisteredModelRow.name).limit(LISTED + 1)
                                    ).scalars().all()
            known = (", ".join(names[:LISTED]) + (", ..." if len(names) > LISTED else "")
                     if names else "none yet")
            raise NotFoundError(f"no model named {name!r}; models: {known}",
                                hint="`shipyard models list` shows them all")
        return model

    def _alias(self, session: Session, model: RegisteredModelRow, alias: str) -> ModelAliasRow:
        row = session.get(ModelAliasRow, (model.id, alias))
        if row is None:
            have = session.execute(select(ModelAliasRow.alias)
                                   .where(ModelAliasRow.model_id == model.id)
                                   .order_by(ModelAliasRow.alias)).scalars().all()
            raise NotFoundError(f"model {model.name!r} has no alias {alias!r}; aliases: "
                                f"{', '.join(have) or 'none'}",
                                hint=f"set one with `shipyard models alias {model.name} "
                                     f"{alias} VERSION`")
        return row

    def _row(self, session: Session, model: RegisteredModelRow,
             selector: int | str | None) -> ModelVersionRow:
        query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
        if selector is None:
            row = session.execute(query.where(ModelVersionRow.status == READY)
                                  .order_by(ModelVersionRow.version.desc()).limit(1)
                                  ).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"model {model.name!r} has no READY version",
                                    hint=f"name an archived one explicitly ({model.name}@N) "
                                         "or register a new one")
            return row
        if isinstance(selector, str):
            return session.get(ModelVersionRow, self._alias(session, model, selector).version_id)
        row = session.execute(query.where(ModelVersionRow.version == selector)
                              ).scalar_one_or_none()
        if row is None:
            have = session.execute(select(ModelVersionRow.version)
                                   .where(ModelVersionRow.model_id == model.id)
                                   .order_by(ModelVersionRow.version)).scalars().all()
            raise NotFoundError(f"model {model.name!r} has no version {selector}; versions: "
                                f"{ranges(have) or 'none'}",
                                hint=f"use {model.name}@latest for the newest")
        return row

    @staticmethod
    def _number(session: Session, version_id: int | None) -> int | None:
        if version_id is None:
            return None
        return session.execute(select(ModelVersionRow.version)
                               .where(ModelVersionRow.id == version_id)).scalar()

    def _versions(self, session: Session, rows: builtins.list[ModelVersionRow], name: str, *,
                  new: bool = False) -> builtins.list[ModelVersion]:
        """Records for ``rows`` of one model, with aliases, blobs and dataset
        refs fetched in one query each."""
        ids = [r.id for r in rows]
        aliases: dict[int, builtins.list[str]] = {i: [] for i in ids}
        blobs: dict[int, builtins.list[str]] = {i: [] for i in ids}
        datasets: dict[int, str] = {}
        for chunk in (ids[i:i + 900] for i in range(0, len(ids), 900)):
            for vid, alias in session.execute(
                    select(ModelAliasRow.version_id, ModelAliasRow.alias)
                    .where(ModelAliasRow.version_id.in_(chunk)).order_by(ModelAliasRow.alias)):
                aliases[vid].append(alias)
            for vid, digest in session.execute(
                    select(ModelVersionBlobRow.version_id, ModelVersionBlobRow.digest)
                    .where(ModelVersionBlobRow.version_id.in_(chunk))):
                blobs[vid].append(digest)
        data_ids = {r.dataset_version_id for r in rows if r.dataset_version_id is not None}
        if data_ids:
            for vid, dname, number in session.execute(
                    select(DatasetVersionRow.id, DatasetRow.name, DatasetVersionRow.version)
                    .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
                    .where(DatasetVersionRow.id.in_(data_ids))):
                datasets[vid] = f"{dname}@{number}"
        return [ModelVersion(
            name=name, version=r.version, run_id=r.run_id, artifact_digest=r.artifact_digest,
            # manifest first, like ModelArtifact.digests
            blob_digests=tuple(sorted(blobs[r.id], key=lambda d: (d != r.artifact_digest, d))),
            signature=r.signature, metrics=dict(r.metrics or {}), tags=dict(r.tags or {}),
            description=r.description, status=r.status,
            dataset_version=datasets.get(r.dataset_version_id), aliases=tuple(aliases[r.id]),
            created_at=r.created_at, created_by=r.created_by, new=new, _workspace=self._ws)
            for r in rows]


def _loader(ws: Workspace, digest: str):
    """A function that loads the model ``digest`` when first called."""
    loaded: builtins.list[Any] = []

    def model() -> Any:
        if not loaded:
            from shipyard.registry._formats import load_stored

            loaded.append(load_stored(ws.artifacts, digest))
        return loaded[0]

    return model


def input_columns(signature: dict | None) -> list[str]:
    """The input column names of a signature, in order."""
    return [str(entry.get("name")) for entry in (signature or {}).get("inputs", [])
            if isinstance(entry, dict)]


def _new_columns(session: Session, current: ModelAliasRow | None, target: ModelVersionRow,
                 ref: str, force: bool) -> builtins.list[str]:
    """The input columns ``target`` requires that the alias's current holder
    does not take; refused unless ``force``."""
    if current is None or current.version_id == target.id:
        return []
    holder = session.get(ModelVersionRow, current.version_id)
    have = set(input_columns(holder.signature))
    added = [c for c in input_columns(target.signature) if c not in have]
    if added and not force:
        raise RegistryError(
            f"moving {ref} from version {holder.version} to {target.version} makes column(s) "
            f"{', '.join(map(repr, added))} required, which clients of version "
            f"{holder.version} do not send: their requests would be refused",
            hint="update the clients first, or move it anyway with force=True (--force)")
    return added
