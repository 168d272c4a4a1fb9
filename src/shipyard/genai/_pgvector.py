"""The PostgreSQL + pgvector store: ``postgresql+pgvector://user:pw@host/db``.

The rest of the URI is a libpq URI (``?host=/socket/dir`` works). Options as
query parameters or keywords:

* ``index_threshold`` (20,000): from this many rows :meth:`optimize` builds
  an HNSW index (cosine); below it a search scans every row (exact).
* ``ef_search`` (100): HNSW candidates per search (pgvector's
  ``hnsw.ef_search``); filtered searches use pgvector's iterative scans.

The ``vector`` extension is created on first use when the role may.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np

from shipyard.errors import ConfigError, VectorStoreError
from shipyard.genai._filters import parse_where, to_sql
from shipyard.genai._records import Chunk, Hit
from shipyard.genai._vectorstore import VectorStore, check_table, check_vectors

_COLUMNS = ("id", "doc_id", "text", "start", "end", "source", "title", "section", "page",
            "position")
_OPTIONS = {"index_threshold", "ef_search"}


class PgVectorStore(VectorStore):
    """Tables of a PostgreSQL database with the pgvector extension."""

    def __init__(self, uri: str, *, index_threshold: int | None = None,
                 ef_search: int | None = None):
        super().__init__(uri)
        rest = uri.split("://", 1)[1]
        base, _, query = rest.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        ours = {k: v for k, v in params if k in _OPTIONS}
        libpq = [(k, v) for k, v in params if k not in _OPTIONS]
        self._conninfo = "postgresql://" + base + (f"?{urlencode(libpq)}" if libpq else "")
        try:
            self.index_threshold = int(index_threshold if index_threshold is not None
                                       else ours.get("index_threshold", 20_000))
            self.ef_search = int(ef_search if ef_search is not None
                                 else ours.get("ef_search", 100))
        except ValueError as exc:
            raise ConfigError(f"invalid option in {self.safe_uri}: {exc}") from exc
        self._conn_: Any = None

    # -------------------------------------------------------------- base
    def _conn(self):
        if self._conn_ is None or self._conn_.closed:
            try:
                import psycopg
            except ImportError as exc:
                raise ConfigError("the pgvector store needs psycopg",
                                  hint="pip install 'shipyard[postgres]'") from exc
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                raise VectorStoreError(f"cannot connect to {self.safe_uri}: {exc}") from exc
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                found = conn.execute(
                    "SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
                if not found:
                    conn.close()
                    raise VectorStoreError(
                        f"the pgvector extension is not installed in {self.safe_uri}: {exc}",
                        hint="as a superuser: CREATE EXTENSION vector") from exc
            conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")
            try:
                conn.execute("SET hnsw.iterative_scan = relaxed_order")
            except psycopg.Error:
                pass  # pgvector < 0.8: filtered HNSW searches may return fewer rows
            self._conn_ = conn
        return self._conn_

    def _run(self, query, params: Sequence[Any] | None = None, *, many: bool = False):
        import psycopg

        conn = self._conn()
        try:
            if many:
                with conn.cursor() as cur:
                    cur.executemany(query, params or [])
                return None
            return conn.execute(query, params)
        except psycopg.Error as exc:
            raise VectorStoreError(f"{self.safe_uri}: {exc}".strip()) from exc

    @staticmethod
    def _ident(name: str):
        from psycopg import sql

        return sql.Identifier(name)

    def tables(self) -> list[str]:
        rows = self._run(
            "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.attname = 'embedding' AND c.relkind = 'r' AND NOT a.attisdropped "
            "AND n.nspname = current_schema() "
            "AND format_type(a.atttypid, a.atttypmod) LIKE 'vector(%%' "
            "ORDER BY c.relname", ()).fetchall()
        return [r[0] for r in rows]

    def exists(self, table: str) -> bool:
        return table in self.tables()

    def create(self, table: str, dimension: int) -> None:
        from psycopg import sql

        check_table(table)
        if isinstance(dimension, bool) or not isinstance(dimension, int) \
                or not 1 <= dimension <= 16000:
            raise VectorStoreError(f"dimension must be an integer from 1 to 16000, got "
                                   f"{dimension!r}")
        if self.exists(table):
            raise VectorStoreError(f"table {table!r} already exists in {self.safe_uri}")
        conn = self._conn()
        with conn.transaction():
            self._run(sql.SQL(
                "CREATE TABLE {t} (id text PRIMARY KEY, doc_id text NOT NULL, text text, "
                "start bigint, \"end\" bigint, source text, title text, section text, "
                "page integer, position integer, embedding vector({d}) NOT NULL)").format(
                    t=self._ident(table), d=sql.Literal(dimension)))
            self._run(sql.SQL("CREATE INDEX {i} ON {t} (doc_id)").format(
                i=self._ident(f"{table[:55]}_doc"), t=self._ident(table)))

    def drop(self, table: str) -> None:
        from psycopg import sql

        check_table(table)
        self._run(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._ident(table)))

    def copy(self, source: str, target: str) -> None:
        from psycopg import sql

        self._require(source)
        check_table(target)
        if self.exists(target):
            raise VectorStoreError(f"table {target!r} already exists in {self.safe_uri}")
        src, dst = self._ident(source), self._ident(target)
        with self._conn().transaction():
            self._run(sql.SQL("CREATE TABLE {d} (LIKE {s} INCLUDING DEFAULTS INCLUDING "
                              "CONSTRAINTS)").format(d=dst, s=src))
            self._run(sql.SQL("INSERT INTO {d} SELECT * FROM {s}").format(d=dst, s=src))
            self._run(sql.SQL("ALTER TABLE {d} ADD PRIMARY KEY (id)").format(d=dst))
            self._run(sql.SQL("CREATE INDEX {i} ON {d} (doc_id)").format(
                i=self._ident(f"{target[:55]}_doc"), d=dst))

    def dimension(self, table: str) -> int:
        self._require(table)
        row = self._run("SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON "
                        "c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relname = %s AND n.nspname = current_schema() "
                        "AND a.attname = 'embedding'", (table,)).fetchone()
        return int(row[0])

    def count(self, table: str) -> int:
        from psycopg import sql

        self._require(table)
        return int(self._run(sql.SQL("SELECT count(*) FROM {t}").format(
            t=self._ident(table))).fetchone()[0])

    # -------------------------------------------------------------- rows
    def _where(self, where: Mapping[str, Any] | None, params: list[Any]):
        from psycopg import sql

        def placeholder(value: Any) -> str:
            params.append(value)
            return "%s"

        clause = to_sql(parse_where(where), quote=placeholder,
                        column=lambda c: f'"{c}"')  # c is one of METADATA_FIELDS
        return sql.SQL(clause) if clause else None

    def upsert(self, table: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        from psycopg import sql

        vectors = check_vectors(chunks, vectors, self.dimension(table))
        if not len(chunks):
            return
        cols = sql.SQL(", ").join(self._ident(c) for c in (*_COLUMNS, "embedding"))
        marks = sql.SQL(", ").join([sql.Placeholder()] * len(_COLUMNS)
                                   + [sql.SQL("%s::real[]::vector")])
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=self._ident(c))
            for c in (*_COLUMNS[1:], "embedding"))
        query = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE "
                        "SET {updates}").format(t=self._ident(table), cols=cols, marks=marks,
                                                updates=updates)
        rows = [(*(getattr(c, name) for name in _COLUMNS), vec)
                for c, vec in zip(chunks, vectors.tolist())]
        with self._conn().transaction():
            self._run(query, rows, many=True)

    def delete(self, table: str, *, ids: Sequence[str] | None = None,
               where: Mapping[str, Any] | None = None) -> int:
        from psycopg import sql

        self._require(table)
        params: list[Any] = []
        clause = self._where(where, params)
        if ids is None and clause is None:
            raise VectorStoreError("delete needs ids or a filter",
                                   hint="drop the table to delete everything")
        parts = []
        if ids is not None:
            parts.append(sql.SQL("id = ANY(%s)"))
            params.insert(0, list(ids))
        if clause is not None:
            parts.append(clause)
        query = sql.SQL("DELETE FROM {t} WHERE {w}").format(
            t=self._ident(table), w=sql.SQL(" AND ").join(parts))
        with self._conn().transaction():
            return self._run(query, params).rowcount

    def _select(self):
        from psycopg import sql

        return sql.SQL(", ").join(self._ident(c) for c in _COLUMNS)

    def search(self, table: str, vector: np.ndarray, k: int = 10,
               where: Mapping[str, Any] | None = None) -> list[Hit]:
        from psycopg import sql

        dim = self.dimension(table)
        query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query_vector.shape[0] != dim:
            from shipyard.errors import EmbeddingDimensionError

            raise EmbeddingDimensionError(
                f"a {query_vector.shape[0]}-dimensional query cannot search table {table!r} "
                f"of dimension {dim}", hint="query with the embedder the collection was built "
                                            "with")
        if k < 1:
            return []
        params: list[Any] = [query_vector.tolist()]
        clause = self._where(where, params)
        query = sql.SQL("SELECT {cols}, embedding <=> q.v AS distance FROM {t}, "
                        "(SELECT %s::real[]::vector AS v) q {w} ORDER BY embedding <=> q.v "
                        "LIMIT {k}").format(
            cols=self._select(), t=self._ident(table),
            w=sql.SQL("WHERE ") + clause if clause is not None else sql.SQL(""),
            k=sql.Literal(int(k)))
        rows = self._run(query, params).fetchall()
        return [Hit(chunk=_chunk(row), score=1.0 - float(row[-1]), rank=i + 1,
                    retriever="dense", scores={"dense": 1.0 - float(row[-1])})
                for i, row in enumerate(rows)]

    def get(self, table: str, ids: Sequence[str]) -> list[tuple[Chunk, np.ndarray]]:
        from psycopg import sql

        self._require(table)
        ids = list(dict.fromkeys(ids))
        query = sql.SQL("SELECT {cols}, embedding::real[] FROM {t} WHERE id = ANY(%s)").format(
            cols=self._select(), t=self._ident(table))
        found = {row[0]: (_chunk(row), np.asarray(row[-1], dtype=np.float32))
                 for row in self._run(query, (ids,)).fetchall()}
        return [found[x] for x in ids if x in found]

    def optimize(self, table: str) -> None:
        from psycopg import sql

        index = self._ident(f"{table[:55]}_hnsw")
        if self.count(table) >= self.index_threshold:
            self._run(sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw "
                              "(embedding vector_cosine_ops)").format(
                i=index, t=self._ident(table)))
        else:
            self._run(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=index))

    def close(self) -> None:
        if self._conn_ is not None:
            self._conn_.close()
            self._conn_ = None


def _chunk(row: Sequence[Any]) -> Chunk:
    (id_, doc_id, text, start, end, source, title, section, page, position) = row[:10]
    return Chunk(id=id_, doc_id=doc_id, text=text, start=int(start), end=int(end), source=source,
                 title=title, section=section, page=page, position=int(position or 0))
