"""Datasets and their immutable, content-addressed versions."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from shipyard.data._diff import DatasetDiff, diff_versions
from shipyard.data._expectations import (
    Expectation,
    ValidationReport,
    parse_expectations,
    validate,
)
from shipyard.data._jsonable import jsonable
from shipyard.data._profile import profile_frame
from shipyard.data._snapshot import (
    content_hash,
    from_parquet,
    table_schema,
    to_arrow,
    to_parquet,
)
from shipyard.data._sources import Source, as_source
from shipyard.errors import DataError, ExpectationsFailed, NotFoundError
from shipyard.names import check_name as _check_name
from shipyard.names import check_version_number, ranges
from shipyard.security import resolve_actor
from shipyard.store.tables import DatasetLineageRow, DatasetRow, DatasetVersionRow

if TYPE_CHECKING:
    from shipyard import Workspace

log = logging.getLogger(__name__)

MAX_REF_LENGTH = 200 + 1 + len("latest")
LISTED = 20


# ------------------------------------------------------------------- refs
def check_name(name: object) -> str:
    """Return ``name`` if it is a valid dataset name.

    A name starts with a letter and holds up to 200 letters, digits, ``_``,
    ``.`` and ``-``.

    Raises
    ------
    DataError
        It is not.
    """
    return _check_name(name, "dataset", DataError, example="adult_income")


def parse_ref(ref: object) -> tuple[str, int | None]:
    """Split ``"name"``, ``"name@latest"`` or ``"name@N"`` into
    ``(name, N or None for the latest)``.

    >>> parse_ref("adult@3"), parse_ref("adult"), parse_ref("adult@latest")
    (('adult', 3), ('adult', None), ('adult', None))
    """
    hint = "refer to a version as NAME, NAME@latest or NAME@N (e.g. adult@3)"
    if not isinstance(ref, str):
        raise DataError(f"a dataset ref must be a string, not {type(ref).__name__}", hint=hint)
    if len(ref) > MAX_REF_LENGTH:
        raise DataError(f"dataset ref {ref[:40]!r}... is too long ({len(ref)} characters)",
                        hint=hint)
    name, sep, version = ref.partition("@")
    check_name(name)
    if not sep or version == "latest":
        return name, None
    return name, check_version_number(version, ref, "dataset", DataError, hint)


# --------------------------------------------------------------- versions
@dataclass(frozen=True)
class DatasetVersion:
    """One immutable snapshot of a dataset, as recorded.

    Attributes
    ----------
    name, version, ref
        ``adult``, ``3``, ``"adult@3"``.
    content_hash
        sha256 of the table's names, types and values (format-independent).
    snapshot_digest
        Digest of the Parquet snapshot in the artifact store.
    num_rows, num_columns, size_bytes
        Shape, and the snapshot's size.
    schema
        ``[{name, type, arrow_type, nullable}]``.
    profile
        Per-column statistics (see :func:`shipyard.data.profile_frame`).
    source
        How the rows were read (secrets redacted).
    expectations, validation
        The expectations checked and the validation report (dicts), if any.
    forced
        Registered although expectations failed.
    transform, description, created_by, created_at
        Free-text provenance; ``created_at`` is epoch seconds.
    parents
        Refs of the versions this one was derived from.
    new
        True when the call that returned it created it; False when it
        returned an existing version with the same content.
    """

    name: str
    version: int
    content_hash: str
    snapshot_digest: str
    num_rows: int
    num_columns: int
    size_bytes: int
    schema: list[dict[str, Any]]
    profile: dict[str, Any]
    source: dict[str, Any]
    expectations: list[dict[str, Any]] | None
    validation: dict[str, Any] | None
    forced: bool
    transform: str | None
    description: str | None
    parents: tuple[str, ...]
    created_at: float
    created_by: str | None
    new: bool = field(default=False, compare=False)
    _workspace: Workspace | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def columns(self) -> list[str]:
        return [c["name"] for c in self.schema]

    @property
    def validation_report(self) -> ValidationReport | None:
        """The validation report as an object, if expectations were checked."""
        return None if self.validation is None else ValidationReport.from_dict(self.validation)

    def to_arrow(self) -> pa.Table:
        """Read the snapshot back (hash-verified)."""
        if self._workspace is None:
            raise DataError(f"{self.ref} is not attached to a workspace")
        return from_parquet(self._workspace.artifacts.get_bytes(self.snapshot_digest))

    def to_pandas(self) -> pd.DataFrame:
        """Read the snapshot back as a DataFrame, with its original dtypes."""
        return self.to_arrow().to_pandas()

    def __str__(self) -> str:
        return self.ref


@dataclass(frozen=True)
class DatasetSummary:
    """One line of :meth:`Datasets.list`: a dataset and its latest version."""

    name: str
    description: str | None
    latest_version: int
    num_versions: int
    num_rows: int
    num_columns: int
    created_at: float
    updated_at: float

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.latest_version}"


# --------------------------------------------------------------- datasets
class Datasets:
    """Register, load, list and compare dataset versions of a workspace.

    Reach it as ``ws.datasets``.

    Examples
    --------
    >>> import tempfile, pandas as pd, shipyard
    >>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
    >>> v = ws.datasets.register("toy", pd.DataFrame({"x": [1, 2, 3]}))
    >>> v.ref, v.num_rows, v.profile["columns"]["x"]["mean"]
    ('toy@1', 3, 2.0)
    >>> ws.datasets.register("toy", pd.DataFrame({"x": [1, 2, 3]})).ref  # same content
    'toy@1'
    >>> ws.datasets.load("toy@latest")["x"].tolist()
    [1, 2, 3]
    """

    def __init__(self, workspace: Workspace):
        self._ws = workspace

    def __repr__(self) -> str:
        return f"Datasets({self._ws!r})"

    # ---------------------------------------------------------- register
    def register(
        self,
        name: str,
        source: Source | pd.DataFrame | str | Any,
        *,
        expectations: Iterable[Expectation | Mapping[str, Any]] | None = None,
        force: bool = False,
        parents: Sequence[DatasetVersion | str] | None = None,
        transform: str | Callable[..., Any] | None = None,
        description: str | None = None,
        created_by: str | None = None,
    ) -> DatasetVersion:
        """Read ``source``, validate it, and record it as the next version of ``name``.

        Parameters
        ----------
        name
            Dataset name (a letter, then up to 199 letters, digits, ``_.-``).
        source
            A file path (``.csv``, ``.tsv``, ``.parquet``, ``.json``,
            ``.jsonl``...), an http(s) URL of a paged JSON API, a DataFrame,
            or a :class:`Source` (``SqlSource``, ``HttpJsonSource``...).
        expectations
            :class:`Expectation` objects or dicts the data must pass.
        force
            Register even if expectations fail (recorded as ``forced``).
        parents
            Versions (or refs like ``"adult@2"``) this one was derived from.
        transform
            How it was made: free text, a code reference, or a function
            (recorded by its qualified name).
        description
            What this version is; also the dataset's description when the
            dataset is new.
        created_by
            Who registers it; default the operating-system user.

        Returns
        -------
        DatasetVersion
            The new version, or the existing one when ``name`` already has a
            version with identical content (``.new`` tells which).

        Raises
        ------
        SourceError
            The source could not be read.
        ExpectationsFailed
            The data failed its expectations and ``force`` is false; its
            ``report`` says which rows failed which check.
        DataError, ConfigError, NotFoundError
            Invalid name, expectations or table; unknown parent.
        """
        check_name(name)
        if created_by is not None and (not isinstance(created_by, str) or len(created_by) > 200):
            raise DataError("created_by must be text of at most 200 characters")
        exps = parse_expectations(expectations)
        parent_ids = self._resolve_parents(parents)
        src = as_source(source)
        frame = src.read()
        table = to_arrow(frame)

        report = validate(frame, exps) if exps else None
        if report is not None and not report.passed:
            if not force:
                raise ExpectationsFailed(
                    f"{name} failed {len(report.failures)} of {len(report.results)} "
                    f"expectation checks; nothing was registered\n{report}",
                    report, hint="fix the data or the expectations, or pass force=True "
                                 "(--force) to register it anyway")
            log.info("registering %s although %d checks failed (forced)", name,
                        len(report.failures))

        digest = content_hash(table)
        existing = self._find_content(name, digest)
        if existing is not None:
            return existing

        data = to_parquet(table)
        # Blob first: gc keeps young unreferenced blobs, and a failed commit
        # below leaves at most an orphan blob, never a record without its blob.
        snapshot = self._ws.artifacts.put_bytes(data)
        fields = dict(
            content_hash=digest, snapshot_digest=snapshot, num_rows=table.num_rows,
            num_columns=table.num_columns, size_bytes=len(data),
            schema=table_schema(table, frame), profile=profile_frame(frame),
            # Strict JSON: PostgreSQL's JSON type refuses NaN, which user values may hold.
            source=jsonable(src.describe()),
            expectations=jsonable([e.to_dict() for e in exps]) or None,
            validation=report.to_dict() if report is not None else None,
            forced=bool(report is not None and not report.passed),
            transform=_transform_text(transform), description=description,
            created_by=created_by if created_by is not None else resolve_actor(),
        )
        # The audit actor follows created_by when given, else $SHIPYARD_ACTOR / the OS user.
        return self._commit(name, fields, parent_ids, description, actor=created_by or None)

    def _commit(self, name: str, fields: dict[str, Any], parent_ids: list[int],
                description: str | None, *, actor: str | None = None) -> DatasetVersion:
        def write(session: Session) -> DatasetVersion:
            # Before anything is read: the next version number below must not
            # be one another writer of this name is about to take.
            self._ws.db.lock(session, f"dataset:{name}")
            now = time.time()
            dataset = session.execute(
                select(DatasetRow).where(DatasetRow.name == name)).scalar_one_or_none()
            if dataset is None:
                dataset = DatasetRow(name=name, description=description, created_at=now)
                session.add(dataset)
                session.flush()
            same = session.execute(select(DatasetVersionRow).where(
                DatasetVersionRow.dataset_id == dataset.id,
                DatasetVersionRow.content_hash == fields["content_hash"])).scalar_one_or_none()
            if same is not None:
                return self._version(session, same, name, new=False)
            latest = session.execute(select(func.max(DatasetVersionRow.version)).where(
                DatasetVersionRow.dataset_id == dataset.id)).scalar() or 0
            row = DatasetVersionRow(dataset_id=dataset.id, version=latest + 1,
                                    created_at=now, **fields)
            session.add(row)
            session.flush()
            session.add_all(DatasetLineageRow(child_id=row.id, parent_id=pid)
                            for pid in parent_ids)
            session.flush()
            version = self._version(session, row, name, new=True)
            # Same transaction: the version and its audit entry commit together or not at all.
            self._ws.audit.append(
                session, actor=actor, action="dataset.register", object_type="dataset",
                object_id=name,
                details={"version": version.version, "content_hash": version.content_hash,
                         "snapshot_digest": version.snapshot_digest,
                         "num_rows": version.num_rows, "forced": version.forced,
                         "parents": list(version.parents)})
            return version

        # conflicts: a backstop for a writer that takes no lock (an older
        # Shipyard on the same database); the next attempt sees its rows.
        return self._ws.db.retry(write, what=f"register {name}", conflicts=True)

    def _resolve_parents(self, parents: Sequence[DatasetVersion | str] | None) -> list[int]:
        if parents is None:
            return []
        if isinstance(parents, (str, DatasetVersion)):
            parents = [parents]
        ids: list[int] = []
        with self._ws.db.read() as session:
            for parent in parents:
                if isinstance(parent, DatasetVersion):
                    parent = parent.ref
                row = self._row(session, parent)
                if row.id not in ids:
                    ids.append(row.id)
        return ids

    def _find_content(self, name: str, digest: str) -> DatasetVersion | None:
        with self._ws.db.read() as session:
            row = session.execute(
                select(DatasetVersionRow).join(DatasetRow)
                .where(DatasetRow.name == name, DatasetVersionRow.content_hash == digest)
            ).scalar_one_or_none()
            return None if row is None else self._version(session, row, name, new=False)

    # -------------------------------------------------------------- read
    def get(self, ref: str | DatasetVersion) -> DatasetVersion:
        """The version ``ref`` names: ``"adult"``/``"adult@latest"`` (newest) or
        ``"adult@3"``.

        Raises
        ------
        NotFoundError
            No such dataset or version; the message lists what exists.
        DataError
            ``ref`` is malformed.
        """
        if isinstance(ref, DatasetVersion):
            ref = ref.ref
        with self._ws.db.read() as session:
            row = self._row(session, ref)
            return self._version(session, row, parse_ref(ref)[0])

    def load(self, ref: str | DatasetVersion) -> pd.DataFrame:
        """The data of version ``ref`` as a DataFrame (snapshot hash-verified).

        Raises
        ------
        ArtifactCorruptedError
            The snapshot no longer matches its digest.
        """
        return self.get(ref).to_pandas()

    def load_arrow(self, ref: str | DatasetVersion) -> pa.Table:
        """The data of version ``ref`` as an Arrow table (snapshot hash-verified)."""
        return self.get(ref).to_arrow()

    def list(self) -> builtins.list[DatasetSummary]:
        """Every dataset with its latest version, by name."""
        stats = (select(DatasetVersionRow.dataset_id,
                        func.max(DatasetVersionRow.version).label("latest"),
                        func.count().label("n"))
                 .group_by(DatasetVersionRow.dataset_id).subquery())
        query = (select(DatasetRow, DatasetVersionRow, stats.c.n)
                 .join(stats, stats.c.dataset_id == DatasetRow.id)
                 .join(DatasetVersionRow, and_(DatasetVersionRow.dataset_id == DatasetRow.id,
                                               DatasetVersionRow.version == stats.c.latest))
                 .order_by(DatasetRow.name))
        with self._ws.db.read() as session:
            return [DatasetSummary(name=d.name, description=d.description,
                                   latest_version=v.version, num_versions=int(n),
                                   num_rows=v.num_rows, num_columns=v.num_columns,
                                   created_at=d.created_at, updated_at=v.created_at)
                    for d, v, n in session.execute(query)]

    def versions(self, name: str) -> builtins.list[DatasetVersion]:
        """Every version of ``name``, oldest first.

        Raises
        ------
        NotFoundError
            No dataset is called ``name``.
        """
        check_name(name)
        with self._ws.db.read() as session:
            dataset = self._dataset(session, name)
            rows = session.execute(select(DatasetVersionRow)
                                   .where(DatasetVersionRow.dataset_id == dataset.id)
                                   .order_by(DatasetVersionRow.version)).scalars().all()
            return [self._version(session, r, name) for r in rows]

    def children(self, ref: str | DatasetVersion) -> builtins.list[DatasetVersion]:
        """The versions registered with ``ref`` among their parents."""
        if isinstance(ref, DatasetVersion):
            ref = ref.ref
        with self._ws.db.read() as session:
            row = self._row(session, ref)
            query = (select(DatasetVersionRow, DatasetRow.name)
                     .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
                     .join(DatasetLineageRow, DatasetLineageRow.child_id == DatasetVersionRow.id)
                     .where(DatasetLineageRow.parent_id == row.id)
                     .order_by(DatasetRow.name, DatasetVersionRow.version))
            return [self._version(session, v, n) for v, n in session.execute(query)]

    def diff(self, a: str | DatasetVersion, b: str | DatasetVersion) -> DatasetDiff:
        """How version ``b`` differs from version ``a`` (schema, rows, statistics)."""
        return diff_versions(self.get(a), self.get(b))

    # ----------------------------------------------------------- lookups
    def _dataset(self, session: Session, name: str) -> DatasetRow:
        dataset = session.execute(
            select(DatasetRow).where(DatasetRow.name == name)).scalar_one_or_none()
        if dataset is None:
            names = session.execute(
                select(DatasetRow.name).order_by(DatasetRow.name).limit(LISTED + 1)
            ).scalars().all()
            known = (", ".join(names[:LISTED]) + (", ..." if len(names) > LISTED else "")
                     if names else "none yet")
            raise NotFoundError(f"no dataset named {name!r}; datasets: {known}",
                                hint="`shipyard data list` shows them all")
        return dataset

    def _row(self, session: Session, ref: str) -> DatasetVersionRow:
        name, number = parse_ref(ref)
        dataset = self._dataset(session, name)
        query = select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
        if number is None:
            query = query.order_by(DatasetVersionRow.version.desc()).limit(1)
        else:
            query = query.where(DatasetVersionRow.version == number)
        row = session.execute(query).scalar_one_or_none()
        if row is None:
            existing = session.execute(
                select(DatasetVersionRow.version)
                .where(DatasetVersionRow.dataset_id == dataset.id)
                .order_by(DatasetVersionRow.version)).scalars().all()
            shown = ranges(existing) or "none"
            raise NotFoundError(f"dataset {name!r} has no version {number}; versions: {shown}",
                                hint=f"use {name}@latest for the newest")
        return row

    def _version(self, session: Session, row: DatasetVersionRow, name: str,
                 *, new: bool = False) -> DatasetVersion:
        parents = session.execute(
            select(DatasetRow.name, DatasetVersionRow.version)
            .join(DatasetVersionRow, DatasetVersionRow.dataset_id == DatasetRow.id)
            .join(DatasetLineageRow, DatasetLineageRow.parent_id == DatasetVersionRow.id)
            .where(DatasetLineageRow.child_id == row.id)
            .order_by(DatasetRow.name, DatasetVersionRow.version)).all()
        return DatasetVersion(
            name=name, version=row.version, content_hash=row.content_hash,
            snapshot_digest=row.snapshot_digest, num_rows=int(row.num_rows),
            num_columns=row.num_columns, size_bytes=int(row.size_bytes), schema=row.schema,
            profile=row.profile, source=row.source, expectations=row.expectations,
            validation=row.validation, forced=bool(row.forced), transform=row.transform,
            description=row.description, parents=tuple(f"{n}@{v}" for n, v in parents),
            created_at=row.created_at, created_by=row.created_by, new=new,
            _workspace=self._ws,
        )


def _transform_text(transform: str | Callable[..., Any] | None) -> str | None:
    if transform is None or isinstance(transform, str):
        return transform
    if callable(transform):
        module = getattr(transform, "__module__", None) or "?"
        return f"{module}:{getattr(transform, '__qualname__', repr(transform))}"
    raise DataError(f"transform must be text or a function, not {type(transform).__name__}")



