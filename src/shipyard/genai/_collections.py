"""Collections: versioned corpora (``docs@2``), recorded in the workspace.

A collection version is recorded as a tracking run in the experiment
``rag`` (tags ``rag.collection``, ``rag.version``, ``rag.manifest``) with two
content-addressed artifacts: ``manifest.json`` (documents with their content
hashes and blobs, chunking, embedder, index table, parent version, changes,
refusals) and ``chunks.parquet`` (every chunk with its offsets). Lineage is
documents → chunks → index: each document's extracted text is a blob, each chunk
names its document and offsets, and the index table holds exactly the
manifest's chunks. No migration is needed, and ``ws.gc`` keeps every blob a
version refers to (run artifacts are referenced records).

A version becomes visible only when its run ends ``FINISHED``, after its
index table is complete: an ingestion that fails leaves the previous version
as it was and drops its half-built table.

Aliases (``docs@champion``) are entries of the audit log (object type
``rag.collection``, actions ``rag.alias.set`` / ``rag.alias.remove``): an
alias's holder is its latest entry, so every move is audited by construction
and needs no table of its own.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from shipyard.errors import CollectionNotFoundError, GenAIError
from shipyard.genai._records import Chunk
from shipyard.names import ALIAS_PATTERN, check_name, check_version_number, shown

if TYPE_CHECKING:
    from shipyard import Workspace

EXPERIMENT = "rag"
TAG_COLLECTION = "rag.collection"
TAG_KIND = "rag.kind"
TAG_VERSION = "rag.version"
TAG_MANIFEST = "rag.manifest"
TAG_DROPPED = "rag.dropped_through"
MANIFEST_FORMAT = 1
ALIAS_OBJECT = "rag.collection"
ALIAS_ACTION = "rag.alias"
_REF_HINT = ("refer to a collection as NAME, NAME@latest, NAME@N or NAME@ALIAS "
             "(e.g. docs@2, docs@champion)")


def check_collection_name(name: object) -> str:
    """Return ``name`` if it is a valid collection name (a dataset-style name)."""
    return check_name(name, "collection", GenAIError, example="docs")


def parse_collection_ref(ref: object) -> tuple[str, int | str | None]:
    """``"docs"``, ``"docs@latest"`` → ``("docs", None)``; ``"docs@2"`` →
    ``("docs", 2)``; ``"docs@champion"`` → ``("docs", "champion")``.

    >>> parse_collection_ref("docs@2"), parse_collection_ref("docs")
    (('docs', 2), ('docs', None))
    >>> parse_collection_ref("docs@champion")
    ('docs', 'champion')
    """
    if isinstance(ref, CollectionVersion):
        return ref.name, ref.version
    if not isinstance(ref, str):
        raise GenAIError(f"a collection ref is text, not {type(ref).__name__}", hint=_REF_HINT)
    name, sep, version = ref.partition("@")
    check_collection_name(name)
    if not sep or version == "latest":
        return name, None
    if version[:1].isalpha():
        return name, check_collection_alias(version)
    return name, check_version_number(version, ref, "collection", GenAIError, _REF_HINT)


def check_collection_alias(alias: object) -> str:
    """Return ``alias`` if it can name versions of a collection (as model
    aliases: lowercase letter first, then up to 63 lowercase letters, digits,
    ``_`` and ``-``; not ``latest``)."""
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias) or alias == "latest":
        raise GenAIError(f"{shown(alias)} is not a valid collection alias",
                         hint="start with a lowercase letter; use up to 64 lowercase letters, "
                              "digits, '_' and '-' (e.g. champion); 'latest' is reserved")
    return alias


@dataclass(frozen=True)
class DocumentRecord:
    """One document of a collection version.

    Attributes
    ----------
    doc_id, source, title, kind
        As on :class:`~shipyard.genai.Document`.
    content_hash
        sha256 of the document's bytes (unchanged documents are skipped).
    size_bytes, chunks
        Its size and how many chunks it gave.
    blob
        Digest of its extracted text (UTF-8) in the artifact store, which
        citations' offsets index (``None`` if not kept).
    notes
        What extraction dropped or noticed.
    """

    doc_id: str
    source: str
    title: str
    kind: str
    content_hash: str
    size_bytes: int
    chunks: int
    blob: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """A source that was not indexed, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class CollectionVersion:
    """One immutable version of a collection, as recorded.

    Attributes
    ----------
    name, version, ref
        ``docs``, ``2``, ``"docs@2"``.
    created_at
        Epoch seconds.
    run_id
        The tracking run that built it (its params, metrics and artifacts).
    store
        Vector store URI (``"default"``: LanceDB under the workspace home;
        never a password).
    table
        The index table of this version in the store.
    embedder
        How to make the embedder again (:meth:`Embedder.spec`).
    dimension
        The vectors' dimension.
    chunking
        The chunker's parameters.
    documents
        Every document (:class:`DocumentRecord`).
    num_chunks
        Chunks in the index.
    chunks_digest
        Artifact digest of ``chunks.parquet``.
    parent
        The version it was built from (``docs@1``), or ``None``.
    changes
        ``added``, ``changed``, ``removed`` (doc ids) and ``unchanged`` (count)
        against the parent.
    refused
        Sources left out, with the reason (:class:`Refusal`).
    manifest_digest
        Artifact digest of the manifest.
    new
        True when the call that returned it created it.
    """

    name: str
    version: int
    created_at: float
    run_id: str
    store: str
    table: str
    embedder: dict[str, Any]
    dimension: int
    chunking: dict[str, Any]
    documents: tuple[DocumentRecord, ...]
    num_chunks: int
    chunks_digest: str
    parent: str | None
    changes: dict[str, Any]
    refused: tuple[Refusal, ...] = ()
    manifest_digest: str = ""
    new: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.ref

    def __repr__(self) -> str:
        return (f"CollectionVersion({self.ref!r}, documents={len(self.documents)}, "
                f"chunks={self.num_chunks}, refused={len(self.refused)}, "
                f"embedder={self.embedder.get('name')!r}, store={self.store!r}, "
                f"table={self.table!r}, parent={self.parent!r})")

    def to_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("manifest_digest", "new"):
            data.pop(key)
        data["format"] = MANIFEST_FORMAT
        return data

    @classmethod
    def from_manifest(cls, data: dict[str, Any], *, digest: str) -> CollectionVersion:
        data = dict(data)
        data.pop("format", None)
        data["documents"] = tuple(DocumentRecord(**{**d, "notes": tuple(d.get("notes") or ())})
                                  for d in data["documents"])
        data["refused"] = tuple(Refusal(**r) for r in data.get("refused") or ())
        return cls(**data, manifest_digest=digest)


# ------------------------------------------------------------------- chunks
_CHUNK_FIELDS = tuple(f.name for f in fields(Chunk))  # Chunk's positional order


def chunk_schema():
    """The Arrow schema of ``chunks.parquet``."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("doc_id", pa.string()), ("text", pa.string()),
                      ("start", pa.int64()), ("end", pa.int64()), ("source", pa.string()),
                      ("title", pa.string()), ("section", pa.string()),
                      ("page", pa.int32()), ("position", pa.int32())])


def chunks_to_table(chunks: Sequence[Chunk]):
    """The chunks as an Arrow table of :func:`chunk_schema`."""
    import pyarrow as pa

    return pa.table({f: [getattr(c, f) for c in chunks] for f in _CHUNK_FIELDS},
                    schema=chunk_schema())


def chunks_to_parquet(chunks: Sequence[Chunk]) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    # No timestamps or writer version noise: identical chunks give identical bytes.
    pq.write_table(chunks_to_table(chunks), sink, compression="zstd")
    return sink.getvalue()


def chunk_file_writer(path: str | os.PathLike):
    """A Parquet writer of chunk tables (``write_table(chunks_to_table(...))``
    batch by batch), the format of ``chunks.parquet``."""
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(path), chunk_schema(), compression="zstd")


def iter_chunk_batches(path: str | os.PathLike, batch_size: int = 16_384
                       ) -> Iterator[list[Chunk]]:
    """The chunks of a ``chunks.parquet`` file, a batch at a time."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=batch_size):
        yield chunks_from_arrow(batch)


def indexed_texts(path: str | os.PathLike, batch_size: int = 16_384) -> Iterator[str]:
    """``Chunk.indexed_text`` of every chunk of a ``chunks.parquet`` file, in
    order, read a batch at a time (what BM25 indexes)."""
    for chunks in iter_chunk_batches(path, batch_size):
        yield from (c.indexed_text for c in chunks)


def chunks_from_parquet(data: bytes) -> list[Chunk]:
    import pyarrow.parquet as pq

    return chunks_from_arrow(pq.read_table(io.BytesIO(data)))


def chunks_from_arrow(table) -> list[Chunk]:
    """Chunks of an Arrow table or batch, built column-wise (3x faster than
    from ``to_pylist()``'s dicts)."""
    columns = [table.column(f).to_pylist() for f in _CHUNK_FIELDS]
    return [Chunk(*row) for row in zip(*columns)]


def write_chunk_table(parquet: str | os.PathLike, path: str | os.PathLike,
                      batch_size: int = 16_384) -> None:
    """Copy a ``chunks.parquet`` file to an uncompressed Arrow IPC file at
    ``path`` (atomically), a batch at a time: the file :class:`ChunkTable`
    memory-maps."""
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    part = f"{os.fspath(path)}.{uuid.uuid4().hex}.part"
    try:
        with pa.OSFile(part, "wb") as sink, pa.ipc.new_file(sink, chunk_schema()) as out:
            for batch in pq.ParquetFile(str(parquet)).iter_batches(batch_size=batch_size):
                out.write_batch(batch)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.unlink(part)


class ChunkTable(Sequence[Chunk]):
    """The chunks of a version, read-only and lazy: an Arrow table memory-mapped
    from an IPC file (:func:`write_chunk_table`). Opening it reads no rows; a
    :class:`Chunk` is built only for a row asked for, and :meth:`mask`
    evaluates a metadata filter over the columns, so a retriever over a
    million chunks holds none of them in memory.

    >>> from shipyard.genai._filters import parse_where
    >>> cs = [Chunk(id=f"d:{i}", doc_id="d", text=f"t{i}", start=i, end=i + 1, source="d",
    ...             title="", page=i) for i in range(3)]
    >>> table = ChunkTable(chunks_to_table(cs))
    >>> len(table), table[-1].text, table.mask(parse_where({"page": {"$gte": 1}})).tolist()
    (3, 't2', [False, True, True])
    """

    def __init__(self, table):
        self.table = table

    @classmethod
    def open(cls, path: str | os.PathLike) -> ChunkTable:
        """Memory-map the IPC file at ``path``."""
        import pyarrow as pa

        return cls(pa.ipc.open_file(pa.memory_map(os.fspath(path))).read_all())

    def __repr__(self) -> str:
        return f"ChunkTable({len(self)} chunks)"

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))
        n = len(self)
        if isinstance(index, bool) or not -n <= index < n:
            raise IndexError(f"chunk {index} of {n}")
        return chunks_from_arrow(self.table.slice(index % n, 1))[0]

    def __iter__(self) -> Iterator[Chunk]:
        for batch in self.table.to_batches(max_chunksize=4_096):
            yield from chunks_from_arrow(batch)

    def take(self, positions: Sequence[int]) -> list[Chunk]:
        """The chunks at ``positions``, in that order."""
        return chunks_from_arrow(self.table.take(list(positions)))

    def mask(self, conditions: tuple) -> Any:
        """Which chunks pass every condition (``parse_where``'s), as a boolean
        numpy array: the same as ``matches`` chunk by chunk, computed by Arrow
        over the columns (an empty field passes only ``$eq: None``)."""
        import numpy as np

        keep = np.ones(len(self), dtype=bool)
        for cond in conditions:
            passed = _condition(self.table.column(cond.field), cond)
            keep &= passed.fill_null(False).to_numpy(zero_copy_only=False)
        return keep


def _condition(column, cond):
    """Arrow boolean array of one filter condition over a column (null where
    the field is empty and the comparison has no answer)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type):  # filter values may be up to 2**31
        column = column.cast(pa.int64())
    op, value = cond.op, cond.value
    if op in ("in", "nin"):
        found = pc.is_in(column, value_set=pa.array(list(value), column.type))
        return found if op == "in" else pc.and_(pc.invert(found), pc.is_valid(column))
    if value is None:
        return pc.is_null(column) if op == "eq" else pc.is_valid(column)
    compare = {"eq": pc.equal, "ne": pc.not_equal, "gt": pc.greater, "gte": pc.greater_equal,
               "lt": pc.less, "lte": pc.less_equal}[op]
    return compare(column, pa.scalar(value, column.type))


# ------------------------------------------------------------------ records
class CollectionRecords:
    """Reads and writes collection versions through the workspace's runs."""

    def __init__(self, workspace: Workspace):
        self._ws = workspace
        self._manifests: dict[str, CollectionVersion] = {}

    def _runs(self, name: str, kind: str | None = None):
        filt = f"tags.`{TAG_COLLECTION}` = '{name}'"
        if kind is not None:
            filt += f" and tags.`{TAG_KIND}` = '{kind}'"
        return self._ws.runs.search(filt, experiment=EXPERIMENT, status="FINISHED", limit=None)

    def _load(self, digest: str) -> CollectionVersion:
        if digest not in self._manifests:
            data = json.loads(self._ws.artifacts.get_bytes(digest))
            self._manifests[digest] = CollectionVersion.from_manifest(data, digest=digest)
        return self._manifests[digest]

    def numbers(self, name: str) -> tuple[list[tuple[int, str]], int]:
        """``([(version, manifest digest)] visible, oldest first; highest
        version ever used)``."""
        runs = self._runs(name)
        dropped = max((int(r.tags[TAG_DROPPED]) for r in runs
                       if r.tags.get(TAG_KIND) == "drop" and TAG_DROPPED in r.tags), default=0)
        versions = sorted((int(r.tags[TAG_VERSION]), r.tags[TAG_MANIFEST]) for r in runs
                          if r.tags.get(TAG_KIND) == "ingest" and TAG_VERSION in r.tags
                          and TAG_MANIFEST in r.tags)
        highest = max([dropped, *(v for v, _ in versions)])
        return [(v, d) for v, d in versions if v > dropped], highest

    def versions(self, name: str) -> list[CollectionVersion]:
        """Every visible version of ``name``, oldest first."""
        check_collection_name(name)
        return [self._load(d) for _, d in self.numbers(name)[0]]

    def get(self, ref: str | CollectionVersion) -> CollectionVersion:
        """The version ``ref`` names.

        Raises
        ------
        CollectionNotFoundError
            No such collection or version; the message says what exists.
        """
        name, number = parse_collection_ref(ref)
        visible, _ = self.numbers(name)
        if not visible:
            known = ", ".join(self.names()[:20]) or "none yet"
            raise CollectionNotFoundError(f"no collection named {name!r}; collections: {known}",
                                          hint="create one with ws.rag.ingest(name, paths)")
        if number is None:
            return self._load(visible[-1][1])
        if isinstance(number, str):
            alias, aliases = number, self.aliases(name)
            if alias not in aliases:
                raise CollectionNotFoundError(
                    f"collection {name!r} has no alias {alias!r}; aliases: "
                    f"{', '.join(sorted(aliases)) or 'none'}",
                    hint=f"promote a version with ws.rag.promote('{name}@N', questions)")
            number = aliases[alias]
            if all(v != number for v, _ in visible):
                raise CollectionNotFoundError(
                    f"alias {alias!r} of {name!r} points at version {number}, which was "
                    "dropped", hint=f"promote a newer version of {name}")
        for version, digest in visible:
            if version == number:
                return self._load(digest)
        from shipyard.names import ranges

        raise CollectionNotFoundError(
            f"collection {name!r} has no version {number}; versions: "
            f"{ranges(v for v, _ in visible)}", hint=f"use {name}@latest for the newest")

    # ------------------------------------------------------------ aliases
    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of collection ``name``, oldest first: ``{alias,
        event ("set"/"remove"), version, previous_version, ts, actor,
        reason}``."""
        check_collection_name(name)
        return [_alias_event(e) for e in self._ws.audit.entries(
            ALIAS_OBJECT, name, action=ALIAS_ACTION)]

    def aliases(self, name: str) -> dict[str, int]:
        """Alias → version number of collection ``name`` now."""
        return _replay(self.alias_history(name))

    def set_alias(self, name: str, alias: str, version: int, *, actor: str | None = None,
                  reason: str | None = None, details: dict[str, Any] | None = None
                  ) -> int | None:
        """Point ``alias`` at ``version`` (an audit entry ``rag.alias.set``,
        whose ``details`` add to the move's); return the previous holder.
        The version must be visible."""
        return self._move(name, alias, version, actor=actor, reason=reason,
                          details=details)

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None,
                     reason: str | None = None) -> int | None:
        """Remove ``alias``; return the version it pointed at."""
        return self._move(name, alias, None, actor=actor, reason=reason, details=None)

    def _move(self, name: str, alias: str, version: int | None, *, actor: str | None,
              reason: str | None, details: dict[str, Any] | None) -> int | None:
        from sqlalchemy import select

        from shipyard.security import resolve_actor
        from shipyard.store.tables import AuditEntryRow

        check_collection_name(name)
        check_collection_alias(alias)
        if version is not None and all(v != version for v, _ in self.numbers(name)[0]):
            self.get(f"{name}@{version}")  # raises, naming the versions there are
        actor = resolve_actor(actor)

        def write(session) -> int | None:
            # Read the holder under the audit lock: two moves cannot both see it.
            self._ws.audit.lock(session)
            rows = session.execute(select(AuditEntryRow.action, AuditEntryRow.details).where(
                AuditEntryRow.object_type == ALIAS_OBJECT, AuditEntryRow.object_id == name,
                AuditEntryRow.action.startswith(ALIAS_ACTION + ".")
            ).order_by(AuditEntryRow.seq)).all()
            holders = _replay([{"event": a.rsplit(".", 1)[-1], **(d or {})} for a, d in rows])
            previous = holders.get(alias)
            if version is None and previous is None:
                raise CollectionNotFoundError(f"collection {name!r} has no alias {alias!r}")
            event = "set" if version is not None else "remove"
            self._ws.audit.append(session, actor=actor, action=f"{ALIAS_ACTION}.{event}",
                                  object_type=ALIAS_OBJECT, object_id=name, reason=reason,
                                  details={**(details or {}), "alias": alias,
                                           "version": version, "previous_version": previous})
            return previous

        return self._ws.db.retry(write, what=f"move alias {alias} of collection {name}",
                                 conflicts=True)

    def names(self) -> list[str]:
        """Names of the collections with a visible version."""
        runs = self._ws.runs.search(f"tags.`{TAG_KIND}` = 'ingest'", experiment=EXPERIMENT,
                                    status="FINISHED", limit=None)
        candidates = sorted({r.tags.get(TAG_COLLECTION) for r in runs} - {None})
        return [n for n in candidates if self.numbers(n)[0]]


def _alias_event(entry: Any) -> dict[str, Any]:
    details = entry.details or {}
    return {"alias": details.get("alias"), "event": entry.action.rsplit(".", 1)[-1],
            "version": details.get("version"), "previous_version":
            details.get("previous_version"), "ts": entry.ts, "actor": entry.actor,
            "reason": entry.reason}


def _replay(events: Sequence[dict[str, Any]]) -> dict[str, int]:
    holders: dict[str, int] = {}
    for event in events:
        alias = event.get("alias")
        if not isinstance(alias, str):
            continue
        if event.get("event") == "set" and isinstance(event.get("version"), int):
            holders[alias] = event["version"]
        elif event.get("event") == "remove":
            holders.pop(alias, None)
    return holders
