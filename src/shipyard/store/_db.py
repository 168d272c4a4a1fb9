"""The metadata database: engine set-up, transactions, migrations."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 60_000
#: Advisory lock number of schema migrations, fixed before lock keys were hashed:
#: kept so that an older Shipyard migrating the same database still excludes this one.
MIGRATION_LOCK = 7263513
#: PostgreSQL error codes worth another attempt: serialization failure,
#: deadlock detected, lock not available.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
UNIQUE_VIOLATION = "23505"


def lock_id(key: str | int) -> int:
    """The PostgreSQL advisory lock number of ``key``: an int as it is, a
    string by a 64-bit hash that every process computes alike (unlike
    ``hash()``, which is salted per process).

    >>> lock_id("dataset:adult") == lock_id("dataset:adult") != lock_id("dataset:adults")
    True
    >>> lock_id(7263513)
    7263513
    """
    if isinstance(key, int):
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy defaults to psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """One metadata database, SQLite or PostgreSQL.

    SQLite runs in WAL mode with a busy timeout, and every write transaction
    starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue for the
    lock instead of failing when a read transaction tries to upgrade. Reads use
    a second engine with deferred transactions, so they never wait on writers.
    """

    def __init__(self, url: str):
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise ConfigError(
                f"{url!r} is not a database URL",
                hint="use sqlite:///path/to/file.db or postgresql://user:pass@host/db",
            ) from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            self.engine = self._sqlite_engine(immediate=True)
            self.read_engine = self._sqlite_engine(immediate=False)
        else:
            try:
                self.engine = create_engine(self.url, pool_pre_ping=True)
            except Exception as exc:  # missing driver and similar
                raise ConfigError(f"cannot use database URL {url!r}: {exc}",
                                  hint="for PostgreSQL install shipyard[postgres]") from exc
            self.read_engine = self.engine
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    def _sqlite_engine(self, *, immediate: bool) -> Engine:
        engine = create_engine(self.url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _enable_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql(begin)

        return engine

    # ------------------------------------------------------------ sessions
    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction: committed on success, rolled back
        on any error, so a failure leaves no partial record."""
        with self._write() as session:
            try:
                with session.begin():
                    yield session
            except OperationalError as exc:
                raise self._store_error(exc) from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only."""
        with self._read() as session:
            try:
                yield session
            except OperationalError as exc:
                raise self._store_error(exc) from exc
            finally:
                session.rollback()

    @staticmethod
    def lock(session: Session | Connection, key: str | int) -> None:
        """Hold the writer lock ``key`` (``"dataset:adult"``) until the end of
        ``session``'s write transaction.

        Take it before reading the number a write allocates (the next version,
        revision or sequence number), so that writers of the same key allocate
        one after another instead of reading the same number. On PostgreSQL it
        is a transaction-scoped advisory lock: released at commit or rollback,
        after the commit is visible, and the next holder's statements see the
        committed rows (READ COMMITTED reads a new snapshot per statement). On
        SQLite it does nothing: a write transaction starts with ``BEGIN
        IMMEDIATE`` and so already holds the database's one write lock.

        Against deadlocks, a transaction takes at most one key lock, and takes
        it before the audit log's lock (which ``AuditLog.append`` takes last).
        Taking the same key twice is harmless.
        """
        bind = session.get_bind() if isinstance(session, Session) else session
        if bind.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id(key)})

    def retry(self, fn: Callable[[Session], T], *, what: str | None = None, attempts: int = 8,
              conflicts: bool = False) -> T:
        """Run ``fn(session)`` in a write transaction, and again when another
        writer got in the way; the one place that retries writes.

        Parameters
        ----------
        fn
            The work; it must read what it depends on inside the transaction,
            so that a new attempt sees what the other writer committed.
        what
            What the write does, for the error message (``"register adult"``).
        attempts
            How many times to try; between tries it backs off exponentially
            from 20 ms to 1 s, jittered.
        conflicts
            Also retry unique-constraint violations: another writer inserted
            the same key first (two writers creating one new name). Without
            it, only transient errors are retried: SQLite busy, PostgreSQL
            serialization failures, deadlocks and lock timeouts.

        Raises
        ------
        StoreError
            Still failing after ``attempts`` tries; it names ``what`` and the
            last cause (chained).
        """
        delay = 0.02
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as session:
                    return fn(session)
            except StoreError as exc:
                if not _transient(exc.__cause__):
                    raise
                last, kind = exc.__cause__, "a transient error"
            except IntegrityError as exc:
                if not (conflicts and _unique_violation(exc)):
                    raise
                last, kind = exc, "a unique-key conflict"
            cause = getattr(last, "orig", None) or last
            if attempt == attempts:
                raise StoreError(
                    f"could not {what or 'write to ' + self.safe_url}: still conflicting with "
                    f"other writers after {attempts} attempts ({cause})",
                    hint="try again; if it keeps failing, fewer processes should write at once",
                ) from last
            log.debug("retrying %s after %s: %s", what or "a write", kind, cause)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _store_error(self, exc: OperationalError) -> StoreError:
        return StoreError(f"metadata database {self.safe_url} failed: {exc.orig}",
                          hint="check that the database is reachable and not full")

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # ---------------------------------------------------------- migrations
    def current_revision(self) -> str | None:
        from shipyard.store.migrations import VERSION_TABLE

        with self.read_engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (default: the newest), in one
        transaction that concurrent openers wait on."""
        from shipyard.store.migrations import HEAD, upgrade

        for attempt in range(5):
            try:
                if revision == "head" and self.current_revision() == HEAD:
                    return
                # One transaction holding the writer lock from its first
                # statement (on SQLite the write engine begins IMMEDIATE), in
                # which Alembic reads the revision it starts from.
                with self.engine.connect() as conn, conn.begin():
                    self.lock(conn, MIGRATION_LOCK)
                    upgrade(conn, revision)
                return
            except OperationalError as exc:
                if attempt < 4 and _transient(exc):
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise self._migration_error(revision, exc.orig) from exc
            except SQLAlchemyError as exc:
                raise self._migration_error(revision, exc) from exc

    def _migration_error(self, revision: str, cause: object) -> StoreError:
        return StoreError(
            f"could not bring the schema of {self.safe_url} to {revision}: {cause}",
            hint="if this database holds tables Shipyard did not make, point SHIPYARD_DB_URL "
                 "(or --home) at an empty database",
        )

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def _enable_wal(cur) -> None:
    """Switch to WAL. Several processes opening a brand-new file at once can
    get SQLITE_BUSY here without the busy handler being consulted, so retry."""
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _transient(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)


def _transient(exc: BaseException | None) -> bool:
    """Whether another attempt may succeed: the error came from another writer."""
    if getattr(getattr(exc, "orig", exc), "sqlstate", None) in TRANSIENT_SQLSTATES:
        return True
    msg = str(exc).lower()
    return any(s in msg for s in ("database is locked", "could not serialize", "deadlock",
                                  "database table is locked"))


def _unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == UNIQUE_VIOLATION:
        return True
    return "UNIQUE constraint failed" in str(orig)
