"""What the server serves: one :class:`ModelSlot` per model name, holding the
loaded :class:`LoadedModel` of the ref it follows (``fraud@champion``).

A slot swaps its model atomically when the alias moves (polled every few
seconds, or on :meth:`ModelSlots.refresh`): the new version is loaded off the
request path, then one attribute assignment publishes it. A request takes its
model once (:meth:`ModelSlot.pick`) and keeps that object to the end, so
in-flight requests finish on the old version and none is dropped.

A slot also follows its model's stored deployment (:mod:`shipyard.deploy._rollout`):
:meth:`ModelSlot.pick` chooses between the primary and a candidate (canary,
A/B), :meth:`ModelSlot.shadow_for` names the version a request is mirrored to,
and :meth:`ModelSlot.observe` feeds a canary's automatic rollback.
"""

from __future__ import annotations

import logging
from dataclasses import replace
import threading
from typing import TYPE_CHECKING


from shipyard.deploy import Breach, Deployment, LoadedModel, OutcomeWindow, Routing, Schema
from shipyard.errors import ServeError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from shipyard import Workspace
    from shipyard.registry import ModelVersion

log = logging.getLogger("shipyard.serve")


class ModelSlot:
    """One served model name and the ref it follows.

    With a stored deployment for the name, the deployment's primary replaces
    ``ref`` and its candidate is loaded beside it.

    Parameters
    ----------
    ws
        Workspace of the registry.
    ref
        ``fraud@champion``, ``fraud@7`` or ``fraud``.
    max_rows
        Most rows one request may hold.
    onnx
        Predict with a version's verified ONNX graph when it has one.
    """

    def __init__(self, ws: Workspace, ref: str, *, max_rows: int = 10_000, onnx: bool = True):
        from shipyard.registry import parse_model_ref

        self.ws, self.ref, self.max_rows, self.onnx = ws, ref, max_rows, onnx
        self.name = parse_model_ref(ref)[0]
        self.routing: Routing | None = None
        self.last_error: str | None = None
        self._load_lock = threading.Lock()
        self._route_lock = threading.Lock()
        # Revisions this process rolled back: ignored until the DB moves past them.
        self._rolled_back: set[int] = set()

    def __repr__(self) -> str:
        version = self.current.number if self.current else None
        return f"ModelSlot({self.ref!r}, version={version})"

    @property
    def current(self) -> LoadedModel | None:
        """The primary version: what answers unless a rollout says otherwise."""
        routing = self.routing
        return routing.primary if routing is not None else None

    @property
    def candidate(self) -> LoadedModel | None:
        routing = self.routing
        return routing.candidate if routing is not None else None

    @property
    def ready(self) -> bool:
        return self.routing is not None

    def refresh(self) -> bool:
        """Read the deployment, resolve the refs; load what changed (off the
        request path) and publish it in one assignment. Return True when the
        routing changed."""
        from shipyard.deploy import Deployments

        with self._load_lock:  # one loader at a time; requests never wait on it
            record = Deployments(self.ws).get(self.name)
            deployment = record.deployment if record is not None else None
            revision = record.revision if record is not None else None
            old = self.routing
            primary = self._load(self.ws.models.get(
                deployment.primary if deployment is not None else self.ref), old)
            candidate, error = None, None
            if deployment is not None and deployment.candidate is not None:
                try:
                    version = self.ws.models.get(deployment.candidate)
                    if version.version != primary.number:
                        candidate = self._load(version, old)
                except Exception as exc:  # noqa: BLE001 -- serve the primary alone
                    error = f"candidate {deployment.candidate}: {exc}"
                    log.error("%s: %s; serving %s only", self.name, error, primary.version.ref)
            with self._route_lock:
                if revision in self._rolled_back:
                    deployment, candidate = _single(deployment), None
                if old is not None and old.primary is primary and old.candidate is candidate \
                        and old.revision == revision and old.deployment == deployment:
                    self.last_error = error
                    return False
                policy = deployment.rollback if deployment is not None else None
                self.routing = Routing(primary, deployment, revision, candidate,
                                       OutcomeWindow(policy) if policy and candidate else None)
                self.last_error = error
            if old is not None and old.primary is not primary:
                log.info("%s now serves %s (was version %s)", self.ref, primary.version.ref,
                         old.primary.number)
            if deployment is not None and (old is None or old.deployment != deployment):
                log.info("%s routes by %s", self.name, deployment.describe())
            return True

    def _load(self, version: ModelVersion, old: Routing | None) -> LoadedModel:
        for held in ((old.primary, old.candidate) if old is not None else ()):
            if held is not None and held.number == version.version \
                    and held.version.artifact_digest == version.artifact_digest:
                return held
        model = version.load()
        fast = None
        if self.onnx:
            from shipyard.registry import load_onnx

            fast = load_onnx(self.ws, version, classes=getattr(model, "classes_", None))
        schema = Schema.from_signature(version.signature, max_rows=self.max_rows)
        return LoadedModel(version, model, replace(schema, tolerated=self._other_columns(schema)),
                           onnx=fast)

    def _other_columns(self, schema: Schema) -> frozenset[str]:
        """Input columns other versions of this model take: clients written for
        the version an alias held before (or will hold) send them."""
        from shipyard.registry import input_columns

        names = {c for v in self.ws.models.versions(self.name)
                 for c in input_columns(v.signature)}
        return frozenset(names - set(schema.names))

    def pick(self, request_key: str | None = None) -> LoadedModel:
        """The model that answers a request keyed ``request_key``: the
        primary, or the candidate for the deployment's share of keys (canary:
        the request id; ab: the sticky key). Without a key, the primary.

        Raises
        ------
        ServeError
            503 while no version is loaded yet.
        """
        routing = self.routing
        if routing is None:
            raise ServeError(503, "model_not_ready", f"model {self.name!r} is not loaded yet")
        return routing.choose(request_key, self.name)

    def adapt(self, loaded: LoadedModel, build: Callable[[Schema], pd.DataFrame]
              ) -> Callable[[Schema], pd.DataFrame]:
        """``build`` for ``loaded``. Clients send the primary's columns, so a
        candidate that takes fewer (a model without ``sex``) gets the request
        validated against the primary's signature, then only its own columns."""
        routing = self.routing
        if routing is None or loaded is routing.primary:
            return build
        contract = routing.primary.schema
        names = loaded.schema.names
        if names == contract.names or not set(names) <= set(contract.names):
            return build

        def build_projected(schema: Schema) -> pd.DataFrame:
            return build(contract)[schema.names]

        return build_projected

    def role_of(self, loaded: LoadedModel) -> str:
        """``candidate`` or ``primary``: the part ``loaded`` plays now."""
        routing = self.routing
        return "candidate" if routing is not None and loaded is routing.candidate \
            else "primary"

    def shadow_for(self, answered: LoadedModel) -> LoadedModel | None:
        """The version a request answered by ``answered`` is mirrored to (shadow)."""
        routing = self.routing
        if routing is None or routing.strategy != "shadow" or answered is not routing.primary:
            return None
        return routing.candidate

    def observe(self, loaded: LoadedModel, *, error: bool, latency_ms: float) -> None:
        """Count one outcome of ``loaded``; roll the candidate back when its
        window crosses a threshold of the deployment's rollback policy."""
        routing = self.routing
        if routing is None or routing.window is None or loaded is not routing.candidate:
            return
        breach = routing.window.add(error, latency_ms)
        if breach is not None:
            self._roll_back(routing, breach)

    def _roll_back(self, routing: Routing, breach: Breach) -> None:
        with self._route_lock:
            if self.routing is not routing:  # already replaced, perhaps rolled back
                return
            self._rolled_back.add(routing.revision)
            self.routing = Routing(routing.primary, _single(routing.deployment),
                                   routing.revision)
        candidate = routing.candidate.version.ref
        reason = f"canary {candidate} rolled back: {breach.describe()}"
        log.warning("%s: %s", self.name, reason)
        threading.Thread(target=self._record_rollback, name="shipyard-rollback",
                         args=(routing, breach, reason), daemon=True).start()

    def _record_rollback(self, routing: Routing, breach: Breach, reason: str) -> None:
        from shipyard.deploy import Deployments, rollback_actor

        try:
            Deployments(self.ws).rollback(
                self.name, revision=routing.revision, reason=reason, actor=rollback_actor(),
                details={"breached": breach.threshold, "figures": breach.to_dict(),
                         "candidate": routing.candidate.version.ref,
                         "candidate_version": routing.candidate.number,
                         "primary_version": routing.primary.number})
        except Exception:  # routing already stopped; the DB may catch up
            log.exception("could not record the rollback of %s", self.name)

    def versions(self) -> dict[int, LoadedModel]:
        """Every version this slot holds, by number."""
        routing = self.routing
        if routing is None:
            return {}
        held = {routing.primary.number: routing.primary}
        if routing.candidate is not None:
            held[routing.candidate.number] = routing.candidate
        return held


def _single(deployment: Deployment | None) -> Deployment | None:
    """``deployment`` reduced to its primary (after a rollback)."""
    if deployment is None:
        return None
    return deployment.model_copy(update={"strategy": "single", "candidate": None,
                                         "weight": None, "sticky_key": None,
                                         "rollback": None})


class ModelSlots:
    """The slots of one server process, by model name, and the thread that
    follows their aliases.

    Parameters
    ----------
    ws
        Workspace of the registry.
    refs
        Refs to serve, one per model name.
    reload_interval
        Seconds between polls of the registry; 0 disables polling.
    max_rows
        Most rows one request may hold.
    onnx
        Use verified ONNX graphs where versions have one.
    """

    def __init__(self, ws: Workspace, refs: list[str], *, reload_interval: float = 10.0,
                 max_rows: int = 10_000, onnx: bool = True):
        from shipyard.errors import ConfigError

        self.ws, self.reload_interval = ws, reload_interval
        self.slots: dict[str, ModelSlot] = {}
        for ref in refs:
            slot = ModelSlot(ws, ref, max_rows=max_rows, onnx=onnx)
            if slot.name in self.slots:
                raise ConfigError(f"{ref} and {self.slots[slot.name].ref} are both model "
                                  f"{slot.name!r}: serve one ref per model name")
            self.slots[slot.name] = slot
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ModelSlots({list(self.slots.values())!r})"

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.slots.values())

    def get(self, name: str) -> ModelSlot:
        """The slot serving ``name``; 404 naming the served models otherwise."""
        slot = self.slots.get(name)
        if slot is None:
            served = ", ".join(self.slots) or "(none)"
            raise ServeError(404, "model_not_found",
                             f"model {name[:200]!r} is not served here; served models: {served}")
        return slot

    def load(self) -> None:
        """Load every slot (at start-up: errors propagate)."""
        for slot in self.slots.values():
            slot.refresh()

    def refresh(self) -> dict[str, bool]:
        """Re-resolve every slot now; a failing slot keeps its model."""
        changed = {}
        for name, slot in self.slots.items():
            try:
                changed[name] = slot.refresh()
            except Exception as exc:  # noqa: BLE001 -- any failure: keep serving the old version
                slot.last_error = str(exc)
                changed[name] = False
                log.error("could not reload %s: %s", slot.ref, exc)
        return changed

    def start(self) -> None:
        """Start polling the registry every ``reload_interval`` seconds."""
        if self.reload_interval and self.reload_interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="shipyard-model-reload",
                                            daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.reload_interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
