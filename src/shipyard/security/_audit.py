"""The tamper-evident audit log: one hash-chained record of every change.

Entry ``n`` stores ``hash = sha256(canonical JSON of its fields + prev_hash)``
with ``prev_hash`` the hash of entry ``n - 1`` (64 zeros for the first), so
editing, deleting or reordering an entry breaks the chain at that point and
:meth:`AuditLog.verify` says where. Someone able to rewrite the table can
recompute the whole chain; with ``SHIPYARD_AUDIT_KEY`` set, hashes are
HMAC-SHA256 under that key and cannot be recomputed without it. Deleting the
newest entries leaves a valid shorter chain: record ``head_hash`` elsewhere
(a ticket, a commit) to detect that.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import select

from shipyard.errors import AuditError
from shipyard.names import has_control
from shipyard.store.tables import AuditEntryRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shipyard import Workspace

GENESIS = "0" * 64
#: The writer lock serialising appenders (``Database.lock``): a fixed number,
#: not a hashed key, so that older Shipyard processes on the same database
#: still exclude newer ones.
AUDIT_LOCK_ID = 7263514
MAX_ACTOR = 200
MAX_NAME = 64
MAX_OBJECT_ID = 500
MAX_REASON = 4000


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class AuditEntry:
    """One hash-chained record of a change.

    Attributes
    ----------
    seq
        Position in the chain, from 1, without gaps.
    ts
        Epoch seconds when it was written.
    actor, action, object_type, object_id, reason, details
        Who did what to which object, why, and particulars (a JSON object).
    keyed
        True when ``hash`` is an HMAC under ``SHIPYARD_AUDIT_KEY``.
    prev_hash, hash
        The previous entry's hash; this entry's.
    """

    seq: int
    ts: float
    actor: str
    action: str
    object_type: str
    object_id: str
    reason: str | None
    details: dict[str, Any] | None
    keyed: bool
    prev_hash: str
    hash: str

    @property
    def object(self) -> str:
        """``"type:id"``, e.g. ``"model:fraud"``."""
        return f"{self.object_type}:{self.object_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditVerification:
    """What :meth:`AuditLog.verify` found. True when the chain is intact.

    Attributes
    ----------
    ok
        Every entry matches its hash and links to its predecessor.
    checked
        Entries read.
    broken_seq, problem
        The first seq where the chain breaks and why (``None`` when ok).
    head_seq, head_hash
        The last entry read; record ``head_hash`` elsewhere to detect later
        truncation of the log.
    keyed_from
        The first seq hashed with a key (``None``: none were).
    """

    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    keyed_from: int | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            head = f"; head seq {self.head_seq} {self.head_hash}" if self.head_seq else ""
            return f"audit chain intact: {self.checked} entries{head}"
        return f"audit chain broken at seq {self.broken_seq}: {self.problem}"


# ------------------------------------------------------------------ hashing
def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the same value always gives the
    same bytes, which is what makes the hash reproducible.

    >>> canonical_json({"b": 1, "a": [1.5, None]})
    b'{"a":[1.5,null],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def entry_hash(*, seq: int, ts: float, actor: str, action: str, object_type: str,
               object_id: str, reason: str | None, details: Mapping[str, Any] | None,
               prev_hash: str, keyed: bool, key: bytes | None = None) -> str:
    """The hash of one entry: sha256 of its canonical JSON, or HMAC-SHA256 under
    ``key`` when ``keyed``."""
    payload = canonical_json({
        "seq": seq, "ts": ts, "actor": actor, "action": action,
        "object": {"type": object_type, "id": object_id}, "reason": reason,
        "details": details, "prev_hash": prev_hash, "keyed": keyed,
    })
    if keyed:
        if key is None:
            raise AuditError("a keyed audit entry needs the key to hash")
        return hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def verify_chain(entries: Iterable[AuditEntry], *, key: bytes | None = None
                 ) -> AuditVerification:
    """Walk ``entries`` in seq order and report the first break.

    Usable on the database (:meth:`AuditLog.verify`) or on an exported file
    (:func:`read_jsonl`). Checks, per entry: its seq follows the previous one
    (a gap is a deletion), its ``prev_hash`` is the previous hash (deletion,
    replacement or reordering), and its hash matches its content (an edit).
    Once one entry is keyed, an unkeyed one after it is a break (a downgrade,
    or a writer without the key).
    """
    expected_seq, prev, checked, keyed_from = 1, GENESIS, 0, None
    last: AuditEntry | None = None

    def broken(seq: int, problem: str) -> AuditVerification:
        return AuditVerification(ok=False, checked=checked, broken_seq=seq, problem=problem,
                                 head_seq=last.seq if last else None,
                                 head_hash=last.hash if last else None, keyed_from=keyed_from)

    for e in entries:
        checked += 1
        if e.seq != expected_seq:
            if e.seq > expected_seq:
                missing = (f"entry {expected_seq} is" if e.seq == expected_seq + 1
                           else f"entries {expected_seq}-{e.seq - 1} are")
                return broken(expected_seq, f"{missing} missing (deleted?): entry {e.seq} "
                                            f"follows {expected_seq - 1 or 'the start'}")
            return broken(e.seq, f"entry {e.seq} is out of order (after {expected_seq - 1})")
        if e.keyed:
            if key is None:
                return broken(e.seq, "entry is keyed (HMAC) but no key was given: set "
                                     "SHIPYARD_AUDIT_KEY to verify it")
            keyed_from = keyed_from or e.seq
        elif keyed_from is not None:
            return broken(e.seq, f"entry is not keyed although entries from {keyed_from} are "
                                 "(downgraded, or written without SHIPYARD_AUDIT_KEY)")
        try:
            recomputed = entry_hash(seq=e.seq, ts=e.ts, actor=e.actor, action=e.action,
                                    object_type=e.object_type, object_id=e.object_id,
                                    reason=e.reason, details=e.details, prev_hash=e.prev_hash,
                                    keyed=e.keyed, key=key)
        except (TypeError, ValueError) as exc:
            return broken(e.seq, f"entry content cannot be hashed ({exc})")
        if not hmac.compare_digest(recomputed, e.hash):
            return broken(e.seq, "hash does not match the entry's content (edited)")
        if e.prev_hash != prev:
            return broken(e.seq, f"prev_hash does not match the hash of entry {e.seq - 1} "
                                 "(an earlier entry was replaced, or entries were reordered)")
        prev, expected_seq, last = e.hash, e.seq + 1, e
    return AuditVerification(ok=True, checked=checked, head_seq=last.seq if last else None,
                             head_hash=last.hash if last else None, keyed_from=keyed_from)


def read_jsonl(path_or_file: str | os.PathLike | IO[str]) -> Iterator[AuditEntry]:
    """The entries of a file written by :meth:`AuditLog.export_jsonl`."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, encoding="utf-8") as f:
            yield from read_jsonl(f)
        return
    for number, line in enumerate(path_or_file, 1):
        if line.strip():
            try:
                yield AuditEntry(**json.loads(line))
            except (ValueError, TypeError) as exc:
                raise AuditError(f"line {number} is not an audit entry: {exc}") from exc


# ------------------------------------------------------------------- actors
def resolve_actor(actor: str | None = None) -> str:
    """Who is acting: ``actor`` if given, else ``$SHIPYARD_ACTOR``, else the
    operating-system user (``"unknown"`` when there is none).

    Raises
    ------
    AuditError
        ``actor`` is not a printable string of at most 200 characters.
    """
    if actor is None:
        # Read here, not in config.py: the actor may change between calls of
        # one long-lived process (a server acting for several people).
        actor = os.environ.get("SHIPYARD_ACTOR") or _os_user()
    return _text(actor, "actor", MAX_ACTOR)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _text(value: object, what: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise AuditError(f"the audit {what} must be text, got {type(value).__name__}")
    if (not empty and not value.strip()) or len(value) > limit or has_control(value):
        raise AuditError(f"the audit {what} {value[:40]!r} must be 1 to {limit} printable "
                         "characters")
    return value


def audit_key() -> bytes | None:
    """The HMAC key from ``$SHIPYARD_AUDIT_KEY`` (its UTF-8 bytes), if set."""
    key = os.environ.get("SHIPYARD_AUDIT_KEY")
    return key.encode() if key else None


# -------------------------------------------------------------------- log
class AuditLog:
    """The audit log of a workspace: ``ws.audit``.

    Parameters
    ----------
    workspace
        Whose metadata DB holds the log.
    key
        HMAC key for new entries and verification; default
        ``$SHIPYARD_AUDIT_KEY``. Every writer must use the same key.

    Examples
    --------
    >>> import tempfile, shipyard
    >>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
    >>> with ws.db.write() as session:
    ...     e = ws.audit.append(session, actor="ana", action="note.add",
    ...                         object_type="note", object_id="n1", reason="why not")
    >>> e.seq, bool(ws.audit.verify())
    (1, True)
    """

    def __init__(self, workspace: Workspace, *, key: bytes | None = None):
        self._ws = workspace
        self._key = key if key is not None else audit_key()

    def __repr__(self) -> str:
        return f"AuditLog({self._ws!r}, keyed={self._key is not None})"

    def lock(self, session: Session) -> None:
        """Take the audit writer lock for the rest of ``session``'s transaction.

        SQLite's ``BEGIN IMMEDIATE`` already serialises writers; PostgreSQL
        needs this advisory lock so that two appenders cannot read the same
        tail (released at commit; the next holder's statements see the new
        tail). :meth:`append` takes it before reading the tail; a caller that
        reads state it is about to change and audit (an alias's holder) takes
        it first, so that those reads are not stale either. It is the last
        lock a transaction takes: take any ``Database.lock`` key before it.
        Taking it twice is harmless.
        """
        self._ws.db.lock(session, AUDIT_LOCK_ID)

    def append(self, session: Session, *, action: str, object_type: str, object_id: str,
               actor: str | None = None, reason: str | None = None,
               details: Mapping[str, Any] | None = None) -> AuditEntry:
        """Add an entry inside the caller's write transaction, so that the
        change and its entry commit together or not at all.

        Parameters
        ----------
        session
            A session from ``ws.db.write()`` / ``ws.db.retry``.
        action
            What happened, dotted: ``model.alias.set``.
        object_type, object_id
            What it happened to: ``model``, ``fraud``.
        actor
            Who; see :func:`resolve_actor`.
        reason
            Why, in the actor's words.
        details
            Particulars, a JSON object (stored as its canonical form).

        Raises
        ------
        AuditError
            An argument is invalid; the caller's transaction should roll back.
        """
        actor = resolve_actor(actor)
        action = _text(action, "action", MAX_NAME)
        object_type = _text(object_type, "object type", MAX_NAME)
        object_id = _text(object_id, "object id", MAX_OBJECT_ID)
        if reason is not None:
            if not isinstance(reason, str) or len(reason) > MAX_REASON or "\x00" in reason:
                raise AuditError(f"a reason is text of at most {MAX_REASON} characters "
                                 "without NUL")
            reason = reason or None
        if details is not None:
            if not isinstance(details, Mapping):
                raise AuditError(f"audit details must be a mapping, got "
                                 f"{type(details).__name__}")
            try:
                # Store exactly what is hashed: tuples become lists, numpy numbers floats.
                details = json.loads(canonical_json(dict(details)))
            except (TypeError, ValueError) as exc:
                raise AuditError(f"audit details are not JSON: {exc}") from exc

        self.lock(session)
        tail = session.execute(select(AuditEntryRow.seq, AuditEntryRow.hash)
                               .order_by(AuditEntryRow.seq.desc()).limit(1)).first()
        seq, prev = (tail[0] + 1, tail[1]) if tail else (1, GENESIS)
        ts = time.time()
        keyed = self._key is not None
        digest = entry_hash(seq=seq, ts=ts, actor=actor, action=action,
                            object_type=object_type, object_id=object_id, reason=reason,
                            details=details, prev_hash=prev, keyed=keyed, key=self._key)
        session.add(AuditEntryRow(seq=seq, ts=ts, actor=actor, action=action,
                                  object_type=object_type, object_id=object_id, reason=reason,
                                  details=details, keyed=keyed, prev_hash=prev, hash=digest))
        session.flush()
        return AuditEntry(seq=seq, ts=ts, actor=actor, action=action, object_type=object_type,
                          object_id=object_id, reason=reason, details=details, keyed=keyed,
                          prev_hash=prev, hash=digest)

    # -------------------------------------------------------------- read
    def entries(self, object_type: str | None = None, object_id: str | None = None, *,
                since: float | _dt.datetime | None = None, action: str | None = None,
                limit: int | None = None) -> list[AuditEntry]:
        """Entries in seq order, optionally only those about one object.

        Parameters
        ----------
        object_type, object_id
            Only entries about this kind of object (and this one).
        since
            Only entries written at or after this time (epoch seconds or a
            datetime; a naive datetime is local time).
        action
            Only this action, or actions under it (``model`` matches
            ``model.alias.set``).
        limit
            Only the newest ``limit`` matching entries (still in seq order).
        """
        query = select(AuditEntryRow)
        if object_type is not None:
            query = query.where(AuditEntryRow.object_type == object_type)
        if object_id is not None:
            query = query.where(AuditEntryRow.object_id == object_id)
        if since is not None:
            ts = since.timestamp() if isinstance(since, _dt.datetime) else float(since)
            query = query.where(AuditEntryRow.ts >= ts)
        if action is not None:
            query = query.where((AuditEntryRow.action == action)
                                | AuditEntryRow.action.startswith(action + ".", autoescape=True))
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise AuditError(f"limit must be a non-negative integer, got {limit!r}")
            query = query.order_by(AuditEntryRow.seq.desc()).limit(limit)
        else:
            query = query.order_by(AuditEntryRow.seq)
        with self._ws.db.read() as session:
            rows = [_entry(r) for r in session.execute(query).scalars()]
        return sorted(rows, key=lambda e: e.seq) if limit is not None else rows

    def _iter_all(self) -> Iterator[AuditEntry]:
        with self._ws.db.read() as session:
            result = session.execute(select(AuditEntryRow).order_by(AuditEntryRow.seq)
                                     .execution_options(yield_per=1000))
            for row in result.scalars():
                yield _entry(row)

    def verify(self) -> AuditVerification:
        """Walk the whole chain and report the first break (see
        :func:`verify_chain`)."""
        return verify_chain(self._iter_all(), key=self._key)

    def export_jsonl(self, path_or_file: str | os.PathLike | IO[str]) -> int:
        """Write every entry as one JSON line, in seq order; return how many.

        The file verifies on its own with ``verify_chain(read_jsonl(path))``.
        """
        if isinstance(path_or_file, (str, os.PathLike)):
            path = Path(path_or_file)
            tmp = path.with_name(path.name + ".partial")
            with open(tmp, "w", encoding="utf-8") as f:
                count = self.export_jsonl(f)
            tmp.replace(path)  # never leave a half-written export under the real name
            return count
        if isinstance(path_or_file, io.TextIOBase) or hasattr(path_or_file, "write"):
            count = 0
            for entry in self._iter_all():
                path_or_file.write(canonical_json(entry.to_dict()).decode() + "\n")
                count += 1
            return count
        raise AuditError(f"export_jsonl takes a path or a text file, got "
                         f"{type(path_or_file).__name__}")


def _entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(seq=int(row.seq), ts=row.ts, actor=row.actor, action=row.action,
                      object_type=row.object_type, object_id=row.object_id, reason=row.reason,
                      details=row.details, keyed=bool(row.keyed), prev_hash=row.prev_hash,
                      hash=row.hash)
