"""Vector stores behind one interface, chosen by URI.

=================================  ==========================================
URI                                backend
=================================  ==========================================
``lancedb://<path>``               LanceDB, embedded (the default, under the
                                   workspace home: ``<home>/rag/lancedb``)
``postgresql+pgvector://...``      PostgreSQL with the pgvector extension
=================================  ==========================================

Backends are listed as ``scheme → "module:Class"`` and imported only when a
URI of theirs is opened, so a new backend is one line in
:data:`VECTOR_STORES` plus a class that passes
``tests/genai/test_vector_store_conformance.py``.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.errors import ConfigError, VectorStoreError
from shipyard.genai._records import Chunk, Hit

#: URI scheme → ``"module:Class"`` of its backend, imported lazily.
VECTOR_STORES: dict[str, str] = {
    "lancedb": "shipyard.genai._lancedb:LanceDBStore",
    "postgresql+pgvector": "shipyard.genai._pgvector:PgVectorStore",
}
#: Table names: a letter, then letters, digits and ``_`` (portable to SQL).
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def check_table(name: object) -> str:
    """Return ``name`` if it is a valid table name, else raise."""
    if not isinstance(name, str) or TABLE_NAME.fullmatch(name) is None:
        raise VectorStoreError(f"{name!r} is not a valid vector table name",
                               hint="use a lowercase letter, then up to 62 lowercase letters, "
                                    "digits and '_'")
    return name


class VectorStore(ABC):
    """Tables of chunks with their vectors: create, upsert, delete, search.

    Every table holds one dimension of vectors, compared by cosine
    similarity (``Hit.score``, higher is closer). Rows are :class:`Chunk`
    objects keyed by ``Chunk.id``; their metadata fields can be filtered on
    (see :func:`shipyard.genai.parse_where`).

    Parameters
    ----------
    uri
        The URI the store was opened with (see :func:`open_vector_store`).
    """

    def __init__(self, uri: str):
        self.uri = uri

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.safe_uri!r})"

    @property
    def safe_uri(self) -> str:
        """The URI without a password."""
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", self.uri)

    # ------------------------------------------------------------ tables
    @abstractmethod
    def tables(self) -> list[str]:
        """Names of the tables in the store."""

    @abstractmethod
    def create(self, table: str, dimension: int) -> None:
        """Create an empty table for ``dimension``-dimensional vectors.

        Raises
        ------
        VectorStoreError
            The table exists.
        """

    @abstractmethod
    def drop(self, table: str) -> None:
        """Delete a table (nothing happens if it does not exist)."""

    @abstractmethod
    def copy(self, source: str, target: str) -> None:
        """Create ``target`` with the rows of ``source`` (a new table, so
        writes to it never show in ``source``)."""

    @abstractmethod
    def dimension(self, table: str) -> int:
        """The dimension of the table's vectors."""

    @abstractmethod
    def count(self, table: str) -> int:
        """How many rows the table holds."""

    # -------------------------------------------------------------- rows
    @abstractmethod
    def upsert(self, table: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert the chunks, replacing rows with the same id.

        Raises
        ------
        EmbeddingDimensionError
            The vectors do not have the table's dimension; nothing written.
        """

    @abstractmethod
    def delete(self, table: str, *, ids: Sequence[str] | None = None,
               where: Mapping[str, Any] | None = None) -> int:
        """Delete the rows with these ids and/or matching ``where``; return how
        many were deleted."""

    @abstractmethod
    def search(self, table: str, vector: np.ndarray, k: int = 10,
               where: Mapping[str, Any] | None = None) -> list[Hit]:
        """The ``k`` rows closest to ``vector`` (passing ``where``), closest first."""

    @abstractmethod
    def get(self, table: str, ids: Sequence[str]) -> list[tuple[Chunk, np.ndarray]]:
        """Rows (chunk, vector) with these ids, in the order asked (missing
        ids are left out)."""

    # ---------------------------------------------------------- optional
    def add(self, table: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert chunks whose ids the table does not hold yet (an ingestion's
        new chunks). Backends may skip the id lookup of :meth:`upsert`; by
        default it is :meth:`upsert`.

        Raises
        ------
        EmbeddingDimensionError
            The vectors do not have the table's dimension; nothing written.
        """
        self.upsert(table, chunks, vectors)

    def optimize(self, table: str) -> None:
        """Build or refresh an approximate-nearest-neighbour index when the
        table is large enough to need one (no-op by default)."""

    def exists(self, table: str) -> bool:
        return table in self.tables()

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------- helpers
    def _require(self, table: str) -> str:
        check_table(table)
        if not self.exists(table):
            raise VectorStoreError(f"no table {table!r} in {self.safe_uri}",
                                   hint="it may have been dropped or pruned")
        return table


def check_vectors(chunks: Sequence[Chunk], vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` as float32 ``(len(chunks), dim)``, else raise."""
    from shipyard.errors import EmbeddingDimensionError

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
        raise VectorStoreError(f"{len(chunks)} chunks need {len(chunks)} vectors, got an "
                               f"array of shape {vectors.shape}")
    if len(chunks) and vectors.shape[1] != dim:
        raise EmbeddingDimensionError(
            f"vectors of dimension {vectors.shape[1]} cannot go into a table of dimension "
            f"{dim}; nothing was written",
            hint="embed with the model the table was built with, or rebuild it")
    if not np.isfinite(vectors).all():
        raise VectorStoreError("vectors hold NaN or infinite numbers; nothing was written")
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        raise VectorStoreError("two chunks share an id in one upsert; nothing was written")
    return vectors


def open_vector_store(uri: str, **options: Any) -> VectorStore:
    """Open the vector store a URI names (its backend is imported now).

    >>> open_vector_store("faiss:///tmp/x")
    Traceback (most recent call last):
    ...
    shipyard.errors.ConfigError: unknown vector store 'faiss:///tmp/x'
      hint: use one of lancedb://<path>, postgresql+pgvector://<server>
    """
    scheme = uri.split("://", 1)[0] if isinstance(uri, str) and "://" in uri else None
    target = VECTOR_STORES.get(scheme or "")
    if target is None:
        raise ConfigError(f"unknown vector store {uri!r}",
                          hint="use one of lancedb://<path>, postgresql+pgvector://<server>")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"the {scheme} vector store is not installed: {exc}",
                          hint="pip install 'shipyard[genai]' (and 'shipyard[postgres]' for "
                               "pgvector) -c constraints.txt") from exc
    return getattr(module, cls_name)(uri, **options)
