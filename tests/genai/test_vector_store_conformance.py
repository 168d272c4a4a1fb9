"""Every vector store honours the VectorStore contract: one suite, run on
LanceDB (embedded) and on a real PostgreSQL server with pgvector."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from shipyard.errors import ConfigError, EmbeddingDimensionError, GenAIError, VectorStoreError
from shipyard.genai import Chunk, VectorStore, open_vector_store

DIM = 8


@pytest.fixture(scope="module")
def pg_vector_uri(pg_server):
    """A new database with the vector extension on the session's server."""
    import psycopg

    name = f"v_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix, query = pg_server.get_uri().split("?", 1)
    uri = f"{prefix.rsplit('/', 1)[0]}/{name}?{query}"
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    return uri.replace("postgresql://", "postgresql+pgvector://")


@pytest.fixture(params=["lancedb", "pgvector"])
def store(request, tmp_path):
    if request.param == "lancedb":
        uri = f"lancedb://{tmp_path / 'lance'}?index_threshold=300"
    else:
        uri = request.getfixturevalue("pg_vector_uri") + "&index_threshold=300"
    opened = open_vector_store(uri)
    yield opened
    for table in opened.tables():
        opened.drop(table)
    opened.close()


def chunk(i: int, *, doc: str = "a", section: str | None = None, page: int | None = None,
          source: str | None = None) -> Chunk:
    return Chunk(id=f"{doc}:{i}", doc_id=doc, text=f"text {i} of {doc}", start=10 * i,
                 end=10 * i + 9, source=source or f"{doc}.md", title=f"Title {doc}",
                 section=section, page=page, position=i)


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[:len(values)] = values
    return v / np.linalg.norm(v)


def basis(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def test_is_a_vector_store(store):
    assert isinstance(store, VectorStore)
    assert repr(store).startswith(type(store).__name__)


def test_repr_hides_a_password():
    store = open_vector_store("postgresql+pgvector://me:s3cret@db.example/rag")
    assert "s3cret" not in repr(store) and "me:***@db.example" in repr(store)


def test_create_count_dimension_and_drop(store):
    name = table_name()
    store.create(name, DIM)
    assert store.exists(name) and name in store.tables()
    assert store.dimension(name) == DIM and store.count(name) == 0
    with pytest.raises(VectorStoreError, match="already exists"):
        store.create(name, DIM)
    store.drop(name)
    assert not store.exists(name)
    store.drop(name)  # dropping twice is fine


def test_refuses_bad_table_names(store):
    for bad in ["Robert'); DROP TABLE students;--", "", "1abc", "a" * 80, "UPPER"]:
        with pytest.raises(VectorStoreError, match="not a valid vector table name"):
            store.create(bad, DIM)


def test_upsert_inserts_then_replaces_by_id(store):
    name = table_name()
    store.create(name, DIM)
    store.upsert(name, [chunk(0), chunk(1)], np.stack([basis(0), basis(1)]))
    assert store.count(name) == 2
    replaced = Chunk(**{**chunk(1).to_dict(), "text": "new text"})
    store.upsert(name, [replaced, chunk(2)], np.stack([basis(3), basis(2)]))
    assert store.count(name) == 3
    [(got, vector)] = store.get(name, ["a:1"])
    assert got.text == "new text" and np.allclose(vector, basis(3))


def test_search_orders_by_cosine_similarity(store):
    name = table_name()
    store.create(name, DIM)
    store.upsert(name, [chunk(0), chunk(1), chunk(2)],
                 np.stack([unit(1, 0), unit(1, 1), unit(0, 1)]))
    hits = store.search(name, unit(1, 0.1), k=3)
    assert [h.chunk.id for h in hits] == ["a:0", "a:1", "a:2"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score == pytest.approx(float(unit(1, 0) @ unit(1, 0.1)), abs=1e-4)
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].chunk == chunk(0)  # every field comes back
    assert len(store.search(name, unit(1), k=1)) == 1


def test_metadata_filters(store):
    name = table_name()
    store.create(name, DIM)
    chunks = [chunk(0, doc="a", section="Intro", page=1),
              chunk(1, doc="a", section="Usage", page=2),
              chunk(2, doc="b", section=None, page=3, source="it's.md"),
              chunk(3, doc="c", section="Usage", page=None)]
    store.upsert(name, chunks, np.stack([basis(i) for i in range(4)]))

    def ids(where):
        return sorted(h.chunk.id for h in store.search(name, unit(1, 1, 1, 1), k=10,
                                                       where=where))

    assert ids({"doc_id": "a"}) == ["a:0", "a:1"]
    assert ids({"doc_id": ["b", "c"]}) == ["b:2", "c:3"]
    assert ids({"section": "Usage", "doc_id": "a"}) == ["a:1"]
    assert ids({"section": None}) == ["b:2"]
    assert ids({"section": {"$ne": None}}) == ["a:0", "a:1", "c:3"]
    assert ids({"page": {"$gte": 2}}) == ["a:1", "b:2"]
    assert ids({"page": {"$gt": 1, "$lt": 3}}) == ["a:1"]
    assert ids({"doc_id": {"$nin": ["a"]}}) == ["b:2", "c:3"]
    assert ids({"source": "it's.md"}) == ["b:2"]  # quotes are data
    assert ids({"source": "x' OR '1'='1"}) == []  # and never SQL


def test_filter_mistakes_are_refused(store):
    name = table_name()
    store.create(name, DIM)
    with pytest.raises(GenAIError, match="cannot filter on 'text'"):
        store.search(name, unit(1), where={"text": "x"})
    with pytest.raises(GenAIError, match="unknown filter operator"):
        store.search(name, unit(1), where={"page": {"$regex": "1"}})
    with pytest.raises(GenAIError, match="whole numbers"):
        store.search(name, unit(1), where={"page": "1; DROP TABLE x"})


def test_delete_by_ids_and_by_filter(store):
    name = table_name()
    store.create(name, DIM)
    chunks = [chunk(i, doc="a" if i < 3 else "b") for i in range(6)]
    store.upsert(name, chunks, np.stack([basis(i) for i in range(6)]))
    assert store.delete(name, ids=["a:0", "missing"]) == 1
    assert store.delete(name, where={"doc_id": "b"}) == 3
    assert sorted(h.chunk.id for h in store.search(name, unit(1, 1, 1), k=10)) == ["a:1", "a:2"]
    with pytest.raises(VectorStoreError, match="needs ids or a filter"):
        store.delete(name)


def test_copy_is_independent(store):
    source, target = table_name(), table_name()
    store.create(source, DIM)
    store.upsert(source, [chunk(0), chunk(1)], np.stack([basis(0), basis(1)]))
    store.copy(source, target)
    store.delete(target, ids=["a:0"])
    store.upsert(target, [chunk(5)], basis(5)[None])
    assert store.count(source) == 2 and store.count(target) == 2
    assert store.dimension(target) == DIM
    assert [c.id for c, _ in store.get(source, ["a:0", "a:1"])] == ["a:0", "a:1"]


def test_wrong_dimensions_are_refused_and_nothing_written(store):
    name = table_name()
    store.create(name, DIM)
    with pytest.raises(EmbeddingDimensionError, match="dimension 5"):
        store.upsert(name, [chunk(0)], np.ones((1, 5), dtype=np.float32))
    assert store.count(name) == 0
    with pytest.raises(EmbeddingDimensionError):
        store.search(name, np.ones(5, dtype=np.float32))
    with pytest.raises(VectorStoreError, match="NaN"):
        store.upsert(name, [chunk(0)], np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(VectorStoreError, match="share an id"):
        store.upsert(name, [chunk(0), chunk(0)], np.stack([basis(0), basis(1)]))
    assert store.count(name) == 0


def test_unknown_tables_are_clear_errors(store):
    with pytest.raises(VectorStoreError, match="no table 'nope'"):
        store.count("nope")
    with pytest.raises(VectorStoreError, match="no table 'nope'"):
        store.search("nope", unit(1))


def test_optimize_builds_an_index_that_still_finds_neighbours(store):
    name = table_name()
    store.create(name, DIM)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert(name, [chunk(i) for i in range(400)], vectors)
    store.optimize(name)  # 400 rows >= index_threshold=300: an ANN index
    hits = store.search(name, vectors[17], k=5)
    assert hits[0].chunk.id == "a:17" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    filtered = store.search(name, vectors[17], k=5, where={"doc_id": "a"})
    assert filtered[0].chunk.id == "a:17"


def test_unknown_schemes_and_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown vector store"):
        open_vector_store("chroma://x")
    with pytest.raises(ConfigError, match="unknown option"):
        open_vector_store(f"lancedb://{tmp_path}?nprobe=3")
