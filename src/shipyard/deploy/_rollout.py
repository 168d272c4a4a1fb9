"""Rollouts: how a server splits one model name's traffic between versions.

A :class:`Deployment` per model name says how:

``single``
    Every request goes to ``primary``.
``canary``
    ``weight`` percent of requests go to ``candidate``, chosen by a hash of
    the request id (a retry with the same ``X-Request-ID`` gets the same
    version); with ``rollback`` thresholds the candidate is dropped
    automatically when it misbehaves.
``ab``
    ``weight`` percent of *keys* go to ``candidate``: the value of
    ``sticky_key`` (a request header, else a JSON field of the body: top
    level, first record, first value of a column, or ``parameters``) is
    hashed, so one user always sees the same version.
``shadow``
    ``primary`` answers; the same request is mirrored to ``candidate`` off
    the response path and both answers are logged (``role`` ``primary`` and
    ``shadow``, one request id).

Deployments live in the workspace DB (:class:`Deployments`, ``shipyard
deploy``), one row per model name, every change in the audit log
(``deployment.set``, ``deployment.remove``, ``deployment.rollback``);
servers pick changes up on their reload poll.

Automatic rollback: per candidate version, each server keeps a sliding
window of the candidate's outcomes (errors: 5xx or exceptions raised by the
model; latency: request start to prediction). Once the window holds
``min_requests``, an error rate above ``max_error_rate`` or a p99 above
``max_p99_ms`` stops routing to the candidate at once, and the deployment
becomes ``single`` on the primary in the DB with a ``deployment.rollback``
audit entry naming the threshold and the figures.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipyard.errors import ConfigError, DeploymentError, NotFoundError

if TYPE_CHECKING:


    from shipyard import Workspace
    from shipyard.security import AuditEntry
    from shipyard.deploy._loaded import LoadedModel

log = logging.getLogger("shipyard.serve.rollout")
STRATEGIES = ("single", "canary", "ab", "shadow")
#: Strategies that answer some requests with the candidate.
SPLITTING = ("canary", "ab")
DEFAULT_WEIGHT = 10.0
#: Most outcomes one window keeps, whatever its duration.
MAX_WINDOW = 100_000


# ------------------------------------------------------------------- spec
class RollbackPolicy(BaseModel):
    """When a canary's candidate is rolled back: after ``min_requests``
    outcomes within the last ``window_seconds``, an error rate above
    ``max_error_rate`` or a p99 latency above ``max_p99_ms``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float = Field(0.05, ge=0, le=1,
                                  description="Largest tolerated share of failed requests.")
    max_p99_ms: float | None = Field(None, gt=0,
                                     description="Largest tolerated p99 latency; none: no limit.")
    min_requests: int = Field(50, ge=1, description="Outcomes needed before judging.")
    window_seconds: float = Field(60.0, gt=0, description="How far back outcomes count.")


class Deployment(BaseModel):
    """How one model name's requests are routed (see the module docstring).

    >>> Deployment(strategy="canary", primary="fraud@champion",
    ...            candidate="fraud@challenger").weight
    10.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["single", "canary", "ab", "shadow"] = "single"
    primary: str = Field(description="The ref that answers by default: fraud@champion.")
    candidate: str | None = Field(None, description="The ref under trial (canary, ab, shadow).")
    weight: float | None = Field(None, ge=0, le=100,
                                 description="Percent of requests (canary) or keys (ab) "
                                             "sent to the candidate; default 10.")
    sticky_key: str | None = Field(None, min_length=1, max_length=200,
                                   description="ab: the header or JSON field whose value "
                                               "assigns a version.")
    rollback: RollbackPolicy | None = Field(None, description="canary, ab: automatic "
                                                              "rollback thresholds.")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # A canary gets the default weight and rollback unless it says
        # otherwise; an explicit `rollback: null` turns rollback off.
        if isinstance(data, Mapping) and data.get("strategy") in SPLITTING:
            data = dict(data)
            if data.get("weight") is None:
                data["weight"] = DEFAULT_WEIGHT
            if data.get("strategy") == "canary" and "rollback" not in data:
                data["rollback"] = {}
        return data

    @model_validator(mode="after")
    def _check(self) -> Deployment:
        from shipyard.registry import RegistryError, parse_model_ref

        names = {}
        for role in ("primary", "candidate"):
            ref = getattr(self, role)
            if ref is not None:
                try:
                    names[role] = parse_model_ref(ref)[0]
                except RegistryError as exc:
                    raise ValueError(f"{role}: {exc.message}") from exc
        s = self.strategy
        if s == "single":
            if self.candidate is not None:
                raise ValueError("strategy single serves only the primary: drop candidate, or "
                                 "pick canary, ab or shadow")
        elif self.candidate is None:
            raise ValueError(f"strategy {s} needs a candidate (e.g. candidate: "
                             f"{names['primary']}@challenger)")
        elif names["candidate"] != names["primary"]:
            raise ValueError(f"primary and candidate must be versions of one model, not "
                             f"{names['primary']!r} and {names['candidate']!r}")
        elif self.candidate == self.primary:
            raise ValueError(f"primary and candidate are both {self.primary}")
        if s not in SPLITTING and self.weight:
            raise ValueError(f"weight applies to canary and ab, not {s}")
        if s == "ab" and self.sticky_key is None:
            raise ValueError("strategy ab needs sticky_key (a header or JSON field, e.g. "
                             "x-user-id) so that a user always sees the same version; use "
                             "canary for a per-request split")
        if s != "ab" and self.sticky_key is not None:
            raise ValueError(f"sticky_key applies to ab, not {s}")
        if s not in SPLITTING and self.rollback is not None:
            raise ValueError(f"rollback applies to canary and ab, not {s}: only they answer "
                             "with the candidate")
        return self

    @property
    def model(self) -> str:
        """The model name both refs belong to."""
        from shipyard.registry import parse_model_ref

        return parse_model_ref(self.primary)[0]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def describe(self) -> str:
        """One line: ``canary fraud@champion + 10% fraud@challenger``."""
        if self.strategy == "single":
            return f"single {self.primary}"
        if self.strategy == "shadow":
            return f"shadow {self.primary} (mirrored to {self.candidate})"
        sticky = f" by {self.sticky_key}" if self.sticky_key else ""
        return f"{self.strategy} {self.primary} + {self.weight:g}% {self.candidate}{sticky}"


def _problems(exc: ValidationError) -> str:
    out = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if e["type"] in ("value_error", "missing") or isinstance(value, Mapping) \
            else f", got {value!r}"
        out.append(f"{where + ': ' if where else ''}{msg}{shown}")
    return "; ".join(out)


def load_deployment(name: str, data: Deployment | Mapping[str, Any], *,
                    source: str = "deploy") -> Deployment:
    """Validate the deployment of model ``name``.

    Raises
    ------
    ConfigError
        It is invalid, or its refs are of another model; the message names
        each problem.
    """
    from shipyard.registry import RegistryError, check_model_name

    try:
        check_model_name(name)
    except RegistryError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from exc
    if isinstance(data, Deployment):
        deployment = data
    else:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}.{name}: expected a mapping (strategy, primary, ...), "
                              f"got {type(data).__name__}")
        try:
            deployment = Deployment.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(f"{source}.{name}: {_problems(exc)}",
                              hint="see shipyard.deploy.Deployment for the keys") from exc
    if deployment.model != name:
        raise ConfigError(f"{source}.{name}: primary {deployment.primary} is not a version of "
                          f"{name!r}")
    return deployment


def load_deployments(data: Mapping[str, Any] | None, *,
                     source: str = "deploy") -> dict[str, Deployment]:
    """Validate a ``deploy:`` section: ``{model name: deployment}``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of model names to deployments, got "
                          f"{type(data).__name__}")
    return {name: load_deployment(name, spec, source=source) for name, spec in data.items()}


# ------------------------------------------------------------------ store
@dataclass(frozen=True)
class DeploymentRecord:
    """A stored deployment: the spec, its revision (1, 2, ... per model name)
    and who changed it last, when and why."""

    model: str
    deployment: Deployment
    revision: int
    updated_at: float
    updated_by: str
    reason: str | None


def _record(row) -> DeploymentRecord:
    return DeploymentRecord(model=row.model, deployment=Deployment.model_validate(row.spec),
                            revision=row.revision, updated_at=row.updated_at,
                            updated_by=row.updated_by, reason=row.reason)


class Deployments:
    """The deployments of a workspace, one per model name. Every change is
    written to the audit log in the same transaction.

    Reach it as ``ws.deployments``::

        ws.deployments.set("fraud", {"strategy": "canary", "primary": "fraud@champion",
                                     "candidate": "fraud@challenger", "weight": 5})
    """

    def __init__(self, workspace: Workspace):
        self._ws = workspace

    def __repr__(self) -> str:
        return f"Deployments({self._ws!r})"

    def set(self, name: str, deployment: Deployment | Mapping[str, Any], *,
            actor: str | None = None, reason: str | None = None) -> DeploymentRecord:
        """Store how ``name`` is served; running servers follow within their
        reload interval. Setting the same spec again changes nothing.

        Raises
        ------
        ConfigError
            The spec is invalid.
        DeploymentError
            A ref does not resolve in the registry, or both resolve to one version.
        """
        from shipyard.security import resolve_actor
        from shipyard.store.tables import DeploymentRow

        spec = load_deployment(name, deployment)
        resolved = self._resolve(name, spec)
        actor = resolve_actor(actor)

        def write(session) -> DeploymentRecord:
            # The revision is read below and bumped: one writer of this name at a time.
            self._ws.db.lock(session, f"deployment:{name}")
            self._ws.audit.lock(session)
            row = session.get(DeploymentRow, name)
            if row is not None and row.spec == spec.to_dict():
                return _record(row)
            previous = row.spec if row is not None else None
            if row is None:
                row = DeploymentRow(model=name, revision=0)
                session.add(row)
            row.spec, row.revision = spec.to_dict(), row.revision + 1
            row.updated_at, row.updated_by, row.reason = time.time(), actor, reason
            session.flush()
            self._ws.audit.append(session, actor=actor, action="deployment.set",
                                  object_type="deployment", object_id=name, reason=reason,
                                  details={"deployment": spec.to_dict(), "previous": previous,
                                           "revision": row.revision, "resolved": resolved})
            return _record(row)

        return self._ws.db.retry(write, what=f"set the deployment of {name}", conflicts=True)

    def _resolve(self, name: str, spec: Deployment) -> dict[str, int]:
        resolved = {}
        for role in ("primary", "candidate"):
            ref = getattr(spec, role)
            if ref is None:
                continue
            try:
                resolved[role] = self._ws.models.get(ref).version
            except NotFoundError as exc:
                raise DeploymentError(f"deployment of {name!r}: {role} {ref} does not resolve: "
                                      f"{exc.message}",
                                      hint=f"see the versions and aliases with `shipyard models "
                                           f"show {name}`") from exc
        if resolved.get("candidate") == resolved["primary"]:
            raise DeploymentError(f"deployment of {name!r}: primary {spec.primary} and "
                                  f"candidate {spec.candidate} are both version "
                                  f"{resolved['primary']}",
                                  hint="deploy a candidate that differs from the primary")
        if spec.candidate is not None:
            columns = {role: [c.get("name") for c in (self._ws.models.get(ref).signature or {})
                              .get("inputs", [])]
                       for role, ref in (("primary", spec.primary),
                                         ("candidate", spec.candidate))}
            extra = [c for c in columns["candidate"] if c not in columns["primary"]]
            if extra:
                raise DeploymentError(
                    f"deployment of {name!r}: candidate {spec.candidate} takes columns that "
                    f"primary {spec.primary} does not ({', '.join(map(str, extra[:5]))}), so "
                    "requests shaped for the primary cannot reach it",
                    hint="swap primary and candidate, or retrain the candidate on the "
                         "primary's columns")
        return resolved

    def get(self, name: str) -> DeploymentRecord | None:
        """The deployment of ``name``; None when it has none (servers then
        serve the ref they were started with)."""
        from shipyard.store.tables import DeploymentRow

        with self._ws.db.read() as session:
            row = session.get(DeploymentRow, name)
            return _record(row) if row is not None else None

    def list(self) -> list[DeploymentRecord]:
        """Every stored deployment, by model name."""
        from sqlalchemy import select

        from shipyard.store.tables import DeploymentRow

        with self._ws.db.read() as session:
            rows = session.execute(select(DeploymentRow).order_by(DeploymentRow.model))
            return [_record(r) for r in rows.scalars()]

    def remove(self, name: str, *, actor: str | None = None,
               reason: str | None = None) -> bool:
        """Forget ``name``'s deployment (servers go back to the ref they were
        started with). Return whether there was one."""
        from shipyard.security import resolve_actor
        from shipyard.store.tables import DeploymentRow

        actor = resolve_actor(actor)

        def write(session) -> bool:
            self._ws.db.lock(session, f"deployment:{name}")
            self._ws.audit.lock(session)
            row = session.get(DeploymentRow, name)
            if row is None:
                return False
            self._ws.audit.append(session, actor=actor, action="deployment.remove",
                                  object_type="deployment", object_id=name, reason=reason,
                                  details={"previous": row.spec, "revision": row.revision})
            session.delete(row)
            return True

        return self._ws.db.retry(write, what=f"remove the deployment of {name}", conflicts=True)

    def rollback(self, name: str, *, revision: int, reason: str,
                 details: Mapping[str, Any] | None = None,
                 actor: str | None = None) -> DeploymentRecord | None:
        """Make revision ``revision`` of ``name``'s deployment ``single`` on its
        primary, with a ``deployment.rollback`` audit entry. None when the
        deployment has changed since (another server, or a person, got there first).
        """
        from shipyard.security import resolve_actor
        from shipyard.store.tables import DeploymentRow

        actor = resolve_actor(actor)

        def write(session) -> DeploymentRecord | None:
            self._ws.db.lock(session, f"deployment:{name}")
            self._ws.audit.lock(session)
            row = session.get(DeploymentRow, name)
            if row is None or row.revision != revision:
                return None
            previous = row.spec
            single = Deployment(primary=previous["primary"]).to_dict()
            row.spec, row.revision = single, row.revision + 1
            row.updated_at, row.updated_by, row.reason = time.time(), actor, reason
            session.flush()
            self._ws.audit.append(session, actor=actor, action="deployment.rollback",
                                  object_type="deployment", object_id=name, reason=reason,
                                  details={**(details or {}), "previous": previous,
                                           "deployment": single, "revision": row.revision})
            return _record(row)

        return self._ws.db.retry(write, what=f"roll back the deployment of {name}", conflicts=True)

    def history(self, name: str, limit: int | None = None) -> list[AuditEntry]:
        """The audit entries of ``name``'s deployment, oldest first."""
        return self._ws.audit.entries("deployment", name, limit=limit)


# ----------------------------------------------------------------- router
def bucket(key: str, salt: str) -> float:
    """Where ``key`` falls in [0, 100): sha256 of ``salt`` and ``key``, so
    assignments are stable across processes and independent between models.

    >>> bucket("user-7", "fraud") == bucket("user-7", "fraud")
    True
    >>> 0 <= bucket("user-7", "fraud") < 100
    True
    """
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


@dataclass(frozen=True)
class Breach:
    """A rollback threshold a candidate crossed, with the window's figures."""

    threshold: str
    observed: float
    limit: float
    requests: int
    errors: int
    error_rate: float
    p99_ms: float
    window_seconds: float

    def describe(self) -> str:
        unit = " ms" if self.threshold == "max_p99_ms" else ""
        what = "p99 latency" if self.threshold == "max_p99_ms" else "error rate"
        return (f"{what} {self.observed:.4g}{unit} > {self.threshold} {self.limit:g}{unit} over "
                f"{self.requests} requests in the last {self.window_seconds:g} s "
                f"({self.errors} errors, error rate {self.error_rate:.3f}, p99 "
                f"{self.p99_ms:.1f} ms)")

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in self.__dict__.items()}


class OutcomeWindow:
    """The outcomes of the last ``policy.window_seconds``: errors and latencies."""

    def __init__(self, policy: RollbackPolicy):
        self.policy = policy
        self._items: collections.deque[tuple[float, bool, float]] = collections.deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OutcomeWindow({len(self._items)} outcomes, {self.policy!r})"

    def add(self, error: bool, latency_ms: float, now: float | None = None) -> Breach | None:
        """Record one outcome; return the threshold crossed, if any."""
        now = time.monotonic() if now is None else now
        p = self.policy
        with self._lock:
            items = self._items
            items.append((now, error, latency_ms))
            while items and (items[0][0] < now - p.window_seconds or len(items) > MAX_WINDOW):
                items.popleft()
            n = len(items)
            if n < p.min_requests:
                return None
            errors = sum(1 for _, e, _ in items if e)
            latencies = sorted(lat for _, _, lat in items)
        rate = errors / n
        p99 = latencies[max(0, math.ceil(0.99 * n) - 1)]
        figures = {"requests": n, "errors": errors, "error_rate": rate, "p99_ms": p99,
                   "window_seconds": p.window_seconds}
        if rate > p.max_error_rate:
            return Breach("max_error_rate", rate, p.max_error_rate, **figures)
        if p.max_p99_ms is not None and p99 > p.max_p99_ms:
            return Breach("max_p99_ms", p99, p.max_p99_ms, **figures)
        return None


@dataclass(eq=False)
class Routing:
    """What one slot routes by, published as a whole: the deployment (None:
    the slot's own ref), its stored revision, the loaded primary and candidate,
    and the candidate's outcome window."""

    primary: LoadedModel
    deployment: Deployment | None = None
    revision: int | None = None
    candidate: LoadedModel | None = None
    window: OutcomeWindow | None = None

    @property
    def strategy(self) -> str:
        return self.deployment.strategy if self.deployment is not None else "single"

    def choose(self, request_key: str | None, salt: str) -> LoadedModel:
        """The primary or, for its share of keys, the candidate."""
        if self.candidate is None or request_key is None or self.strategy not in SPLITTING:
            return self.primary
        return self.candidate if bucket(request_key, salt) < (self.deployment.weight or 0) \
            else self.primary


def rollback_actor() -> str:
    """Who rolls back automatically: this server process."""
    return f"shipyard-serve@{socket.gethostname()[:150]}/{os.getpid()}"
