"""``ws.rag``: versioned collections with incremental re-ingestion, queries,
cited answers, evaluation, and every kind of bad input refused or recorded
with no index left half-written."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import (CollectionNotFoundError, ConfigError, DocumentError,
                             EmbeddingDimensionError, EmptyCorpusError, GenAIError,
                             NotFoundError, VectorStoreError)
from shipyard.genai import Document, Embedder, OpenAIEmbedder, Rag
from shipyard.genai._collections import ChunkTable

from .documents import encrypt_pdf, make_pdf


def run_metrics(ws, version):
    return ws.runs.get(version.run_id).metrics


def test_ingest_query_and_answer_through_the_front_door(ws, corpus):
    version = ws.rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    assert version.ref == "docs@1" and version.new and version.parent is None
    assert sorted(d.kind for d in version.documents) == ["html", "markdown", "pdf", "text"]
    assert version.refused == () and version.dimension == 384
    assert version.store == "default" and version.num_chunks == len(ws.rag.chunks("docs"))

    hits = ws.rag.query("docs", "How do I rotate an API key?", k=3)
    assert hits[0].chunk.source.endswith("guide.md")
    assert hits[0].chunk.section == "Rotating keys"
    paged = ws.rag.query("docs", "audit log", k=3, where={"page": 2})
    assert [h.chunk.page for h in paged] == [2] and paged[0].chunk.source.endswith(".pdf")

    answer = ws.rag.answer("docs", "How do I rotate an API key?")
    assert "shipyard keys rotate" in answer.text and answer.citations
    cited = answer.citations[0]
    record = next(d for d in version.documents if d.doc_id == cited.doc_id)
    text = ws.artifacts.get_bytes(record.blob).decode()  # lineage: the document's text
    assert text[cited.start:cited.end] == cited.quote


def test_hostile_html_is_indexed_as_text_only(rag, corpus):
    rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    every = " ".join(c.text for c in rag.chunks("docs"))
    for hostile in ("evil.example", "Ignore all previous", "developer mode", "alert("):
        assert hostile not in every
    faq = next(d for d in rag.get("docs").documents if d.kind == "html")
    assert any("hidden" in note for note in faq.notes)


@pytest.mark.parametrize("batch_size", [16_384, 2])
def test_reingestion_skips_unchanged_replaces_changed_and_deletes_removed(ws, rag, corpus,
                                                                          batch_size):
    first = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8, batch_size=batch_size)
    (corpus / "guide.md").write_text("# Guide\n\nKeys are rotated by the zebra protocol.\n")
    (corpus / "notes.txt").unlink()
    (corpus / "new.md").write_text("# Pricing\n\nShipyard is free and open source.\n")
    second = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8, batch_size=batch_size)
    assert second.ref == "docs@2" and second.parent == "docs@1"
    name = {d.doc_id: d.source.rsplit("/", 1)[-1] for d in (*first.documents,
                                                             *second.documents)}
    assert [name[d] for d in second.changes["added"]] == ["new.md"]
    assert [name[d] for d in second.changes["changed"]] == ["guide.md"]
    assert [name[d] for d in second.changes["removed"]] == ["notes.txt"]
    assert second.changes["unchanged"] == 2
    new_chunks = sum(d.chunks for d in second.documents
                     if name[d.doc_id] in ("guide.md", "new.md"))
    assert run_metrics(ws, second)["embedded"] == new_chunks  # nothing else re-embedded

    for mode in ("dense", "bm25", "hybrid"):  # the removed document is in no index
        sources = {h.chunk.source for h in rag.query("docs", "hybrid retrieval BM25", k=10,
                                                     mode=mode)}
        assert not any(s.endswith("notes.txt") for s in sources), mode
    assert rag.query("docs", "zebra protocol", k=1, mode="bm25")[0].chunk.text.endswith(
        "zebra protocol.")
    old = rag.query("docs@1", "hybrid retrieval BM25", k=1, mode="bm25")
    assert old[0].chunk.source.endswith("notes.txt")  # docs@1 is as it was

    same = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    assert same.ref == "docs@2" and not same.new
    assert [v.ref for v in rag.versions("docs")] == ["docs@1", "docs@2"]


def test_rechunking_reuses_cached_vectors(ws, rag, corpus):
    rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    again = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8, remove_missing=False)
    assert not again.new
    other = rag.ingest("docs", [Document.from_text("Unrelated words.", source="x")],
                       chunk_tokens=48, overlap=8, remove_missing=False)
    assert other.ref == "docs@2" and len(other.documents) == 5
    assert run_metrics(ws, other)["embedded"] == 1


def test_lineage_survives_garbage_collection(ws, rag, corpus):
    version = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    report = ws.gc(grace_seconds=0)
    assert report.deleted == []
    run = ws.runs.get(version.run_id)
    assert run.params["parent"] == "none" and run.tags["rag.version"] == "1"
    paths = {a.path for a in ws.runs.artifacts(run)}
    assert {"manifest.json", "chunks.parquet"} <= paths
    assert sum(p.startswith("documents/") for p in paths) == 4
    for record in version.documents:  # documents → chunks: every offset indexes the text
        text = ws.artifacts.get_bytes(record.blob).decode()
        chunks = [c for c in rag.chunks("docs") if c.doc_id == record.doc_id]
        assert len(chunks) == record.chunks
        assert all(text[c.start:c.end] == c.text for c in chunks)


def test_refs_and_unknown_names(rag, corpus):
    rag.ingest("docs", corpus)
    assert rag.get("docs@latest").ref == rag.get("docs@1").ref == "docs@1"
    with pytest.raises(CollectionNotFoundError, match="no collection named 'nope'; "
                                                      "collections: docs"):
        rag.query("nope", "anything")
    with pytest.raises(NotFoundError, match="has no version 7; versions: 1"):
        rag.get("docs@7")
    with pytest.raises(GenAIError, match="not a valid collection name"):
        rag.get("../etc@1")
    assert [v.ref for v in rag.list()] == ["docs@1"]


def test_bad_documents_are_recorded_refusals(rag, corpus):
    (corpus / "locked.pdf").write_bytes(encrypt_pdf(make_pdf(["secret"])))
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (corpus / "copy.md").write_bytes((corpus / "guide.md").read_bytes())
    with open(corpus / "huge.txt", "wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    version = rag.ingest("docs", [corpus, corpus / "guide.md", corpus / "absent.md"])
    reasons = {r.source.rsplit("/", 1)[-1]: r.reason for r in version.refused}
    assert "encrypted PDF" in reasons["locked.pdf"]
    assert "looks binary" in reasons["binary.txt"]
    assert "same content as" in reasons["guide.md"] or "same content as" in reasons["copy.md"]
    assert "does not exist" in reasons["absent.md"]
    assert "over the 25 MiB limit" in reasons["huge.txt"]
    assert len(version.documents) == 4


def test_on_error_raise_stops_and_changes_nothing(rag, corpus):
    (corpus / "locked.pdf").write_bytes(encrypt_pdf(make_pdf(["secret"])))
    with pytest.raises(DocumentError, match="encrypted PDF"):
        rag.ingest("docs", corpus, on_error="raise")
    with pytest.raises(CollectionNotFoundError):
        rag.get("docs")


def test_an_empty_corpus_is_refused(ws, rag, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyCorpusError, match="no documents were given"):
        rag.ingest("docs", tmp_path / "empty")
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01" * 50)
    with pytest.raises(EmptyCorpusError, match="all 1 sources were refused .*looks binary"):
        rag.ingest("docs", [tmp_path / "bad.txt"])
    with pytest.raises(EmptyCorpusError):
        rag.ingest("docs", [])
    failed = ws.runs.search("tags.`rag.collection` = 'docs'", experiment="rag")
    assert {r.status for r in failed} == {"FAILED"}


class FailingEmbedder(Embedder):
    """The session's model, failing on its second batch."""

    batch_size = 2

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    @property
    def name(self):
        return self.inner.name

    def embed_batch(self, texts):
        self.calls += 1
        if self.calls == 2:
            raise GenAIError("the embedding service fell over")
        return self.inner.embed_batch(texts)


def test_a_failed_ingestion_leaves_no_half_written_index(ws, rag, embedder, corpus):
    first = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    store = rag.open_store(first.store)
    tables = store.tables()
    (corpus / "more.md").write_text("# More\n\n" + "Fresh words about sailing boats. " * 40)
    broken = Rag(ws, embedder=FailingEmbedder(embedder))
    with pytest.raises(GenAIError, match="fell over"):
        broken.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    assert store.tables() == tables and rag.get("docs").ref == "docs@1"
    assert rag.query("docs", "sailing boats", k=1, mode="bm25") == []


def many_documents(n: int) -> list[Document]:
    """``n`` documents of a few 16-token chunks each, document ``i`` with its
    own word ``kw{i}zz``."""
    return [Document.from_text(f"Report kw{i}zz number {i}. " + "Ships sail from the busy "
                               "harbour at dawn and come back with fish. " * 3,
                               source=f"report-{i}") for i in range(n)]


class FailingAfter(Embedder):
    """The session's model, failing from its ``calls``-th batch on."""

    def __init__(self, inner, calls):
        self.inner, self.fail_at, self.calls = inner, calls, 0

    @property
    def name(self):
        return self.inner.name

    def embed_batch(self, texts):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise GenAIError("the embedding service fell over")
        return self.inner.embed_batch(texts)


def test_ingestion_streams_documents_through_small_batches(rag):
    events = []
    version = rag.ingest("many", many_documents(12), chunk_tokens=16, overlap=0, batch_size=8,
                         progress=lambda stage, done, total: events.append((stage, done, total)))
    assert version.num_chunks > 3 * 8  # several batches
    assert rag.open_store(version.store).count(version.table) == version.num_chunks
    assert rag.retriever("many").bm25_index.n_docs_ == version.num_chunks
    writes = [i for i, e in enumerate(events) if e[0] == "write"]
    reads = [i for i, e in enumerate(events) if e[0] == "read" and e[1] < e[2]]
    assert len(writes) >= 3 and writes[0] < reads[-1]  # written while documents were read
    assert events[writes[-1]][1:] == (version.num_chunks, version.num_chunks)
    chunks = rag.chunks("many")
    assert sorted({c.doc_id for c in chunks}) == sorted(f"report-{i}" for i in range(12))
    for i in (0, 5, 11):  # every batch is in both indexes
        assert rag.query("many", f"kw{i}zz", k=1, mode="bm25")[0].chunk.doc_id == f"report-{i}"
        opening = next(c for c in chunks if c.doc_id == f"report-{i}" and c.position == 0)
        assert rag.query("many", opening.indexed_text, k=1, mode="dense")[0].chunk == opening


def test_a_missing_bm25_cache_is_built_again(ws, rag, embedder, corpus):
    import shutil

    version = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    shutil.rmtree(rag.home / "bm25")
    fresh = Rag(ws, embedder=embedder)
    hit = fresh.query("docs", "shipyard keys rotate", k=1, mode="bm25")[0]
    assert hit.chunk.source.endswith("guide.md")
    assert (rag.home / "bm25" / version.chunks_digest / "n_docs").read_text() == str(
        version.num_chunks)
    fresh.close()


def test_a_failure_after_some_batches_leaves_the_previous_version_intact(ws, rag, embedder):
    first = rag.ingest("many", many_documents(3), chunk_tokens=16, overlap=0, batch_size=8)
    before = [h.chunk.id for h in rag.query("many", "kw1zz harbour", k=5)]
    store = rag.open_store(first.store)
    tables = store.tables()
    writes = []
    broken = Rag(ws, embedder=FailingAfter(embedder, calls=3))
    with pytest.raises(GenAIError, match="fell over"):
        broken.ingest("many", many_documents(14), chunk_tokens=16, overlap=0, batch_size=8,
                      progress=lambda stage, done, total: stage == "write" and writes.append(done))
    assert len(writes) >= 2  # batches were written to the new table before the failure
    assert store.tables() == tables  # ... which is gone
    assert [v.ref for v in rag.versions("many")] == ["many@1"]
    assert [h.chunk.id for h in rag.query("many", "kw1zz harbour", k=5)] == before
    assert rag.query("many", "kw12zz", k=1, mode="bm25") == []
    assert list((rag.home / "tmp").iterdir()) == []  # no spill files left
    statuses = {r.status for r in ws.runs.search("tags.`rag.kind` = 'ingest'", experiment="rag")}
    assert statuses == {"FINISHED", "FAILED"}


def test_an_embeddings_endpoint_that_changes_dimension_is_refused(ws, fake_openai, corpus):
    rag = Rag(ws, embedder={"kind": "openai", "model": "fake", "base_url": fake_openai.url,
                            "api_key": "sk-never-stored"})
    first = rag.ingest("api", corpus, chunk_tokens=48, overlap=8)
    assert first.dimension == 32 and first.embedder["kind"] == "openai"
    assert "sk-never-stored" not in str(first.to_manifest())
    tables = rag.open_store(first.store).tables()
    fake_openai.dim = 64
    (corpus / "notes.txt").write_text("Changed notes about something else entirely.")
    with pytest.raises(EmbeddingDimensionError, match="64-dimensional") as info:
        rag.ingest("api", corpus, chunk_tokens=48, overlap=8)
    assert "reembed=True" in str(info.value)
    assert rag.open_store(first.store).tables() == tables
    assert rag.get("api").ref == "api@1"
    fake_openai.dim = 32
    assert rag.query("api", "rotate keys", k=1)  # the old index still answers


def test_switching_embedders_needs_reembed(ws, rag, fake_openai, corpus):
    rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    other = OpenAIEmbedder("fake", base_url=fake_openai.url)
    with pytest.raises(ConfigError, match="vectors of two models cannot share an index"):
        rag.ingest("docs", corpus, embedder=other)
    version = Rag(ws, embedder=other).ingest("docs", corpus, chunk_tokens=48, overlap=8,
                                             embedder=other, reembed=True)
    assert version.ref == "docs@2" and version.dimension == 32


def test_old_versions_are_pruned_and_say_so(rag, corpus):
    rag.ingest("docs", corpus, keep_versions=1)
    (corpus / "notes.txt").write_text("Other notes.")
    rag.ingest("docs", corpus, keep_versions=1)
    with pytest.raises(VectorStoreError, match="no longer in its store"):
        rag.query("docs@1", "notes")
    assert rag.query("docs@2", "notes")


def test_drop_hides_versions_and_numbering_continues(rag, corpus):
    first = rag.ingest("docs", corpus)
    rag.query("docs", "API keys")  # builds the query caches
    shared = rag.ingest("copy", corpus)  # the same chunks: caches of the same digest
    caches = [rag.home / "chunks" / f"{first.chunks_digest}.arrow",
              rag.home / "bm25" / first.chunks_digest]
    assert shared.chunks_digest == first.chunks_digest and all(p.exists() for p in caches)
    assert rag.drop("docs") == 1
    assert not rag.open_store(first.store).exists(first.table)
    assert all(p.exists() for p in caches)  # "copy" still reads them
    rag.drop("copy")
    assert not any(p.exists() for p in caches)
    with pytest.raises(CollectionNotFoundError):
        rag.get("docs")
    assert rag.ingest("docs", corpus).ref == "docs@2"
    with pytest.raises(CollectionNotFoundError):
        rag.drop("never")


def test_evaluate_scores_and_records_a_run(ws, rag, corpus):
    version = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    guide = next(d.doc_id for d in version.documents if d.kind == "markdown")
    pdf = next(d.doc_id for d in version.documents if d.kind == "pdf")
    questions = [{"text": "How do I rotate an API key?", "relevant": [guide]},
                 {"text": "Is the audit log hash-chained?", "relevant": [pdf]},
                 {"text": "unlabelled", "relevant": []}]
    report = rag.evaluate("docs", questions, k=3, answers=True)
    assert set(report.retrieval) == {"dense", "bm25", "hybrid"}
    assert report.retrieval["hybrid"]["hit_rate@3"] == 1.0
    assert "1 of 3 questions" in report.not_scorable["hybrid.recall@3"]
    assert report.answers["groundedness"] == 1.0
    values = [v for m in report.retrieval.values() for v in m.values()]
    assert all(v is not None and not np.isnan(v) for v in values)
    [run] = ws.runs.search("tags.`rag.kind` = 'evaluate'", experiment="rag")
    assert run.metrics["hybrid.hit_rate_at_3"] == 1.0 and run.tags["rag.version"] == "1"


def test_a_collection_in_postgresql_with_pgvector(rag, corpus, pg_server):
    import uuid

    import psycopg

    name = f"r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix, query = pg_server.get_uri().split("?", 1)
    uri = f"postgresql+pgvector://{prefix.split('://', 1)[1].rsplit('/', 1)[0]}/{name}?{query}"
    version = rag.ingest("pgdocs", corpus, store=uri, chunk_tokens=48, overlap=8)
    assert version.store.startswith("postgresql+pgvector://")
    hits = rag.query("pgdocs", "How do I rotate an API key?", k=2)
    assert hits[0].chunk.source.endswith("guide.md")
    (corpus / "notes.txt").unlink()
    second = rag.ingest("pgdocs", corpus, chunk_tokens=48, overlap=8)
    assert second.store == version.store and rag.open_store(second.store).count(
        second.table) == second.num_chunks


def test_the_documented_example(rag):
    docs = [Document.from_text("The Eiffel Tower is 330 metres tall.", source="paris"),
            Document.from_text("Big Ben is a bell in London.", source="london")]
    assert rag.ingest("cities", docs).ref == "cities@1"
    answer = rag.answer("cities", "How tall is the Eiffel Tower?")
    assert answer.text == "The Eiffel Tower is 330 metres tall. [1]"


def test_a_version_published_elsewhere_is_seen_after_refresh_seconds(ws, embedder):
    reader = Rag(ws, embedder=embedder, refresh_seconds=3600)
    writer = Rag(ws, embedder=embedder)
    writer.ingest("c", [Document.from_text("Apples are red.", source="a")])
    assert reader.retriever("c").table == writer.get("c@1").table
    writer.ingest("c", [Document.from_text("Pears are green.", source="p")])
    assert reader.retriever("c").table == writer.get("c@1").table  # remembered
    reader.refresh_seconds = 0
    assert reader.retriever("c").table == writer.get("c@2").table


def live_chunks() -> int:
    import gc

    from shipyard.genai import Chunk

    gc.collect()
    return sum(type(o) is Chunk for o in gc.get_objects())


def test_a_reopened_collection_builds_only_the_chunks_a_query_returns(ws, rag, embedder):
    version = rag.ingest("many", many_documents(40), chunk_tokens=16, overlap=0)
    assert version.num_chunks >= 100
    fresh = Rag(ws, embedder=embedder)  # a new process would do the same
    before = live_chunks()
    retriever = fresh.retriever("many")
    assert isinstance(retriever.chunks, ChunkTable) and len(retriever.chunks) == version.num_chunks
    assert live_chunks() == before  # opening it built no chunk
    hits = fresh.query("many", "kw7zz harbour", k=3, mode="hybrid", where={"source": "report-7"})
    kept = live_chunks() - before
    assert [h.chunk.doc_id for h in hits][:1] == ["report-7"] and kept <= len(hits)
    every = {c.id: c for c in rag.chunks("many")}
    assert all(every[h.chunk.id] == h.chunk for h in hits)
    assert retriever.chunks[-1] == every[retriever.chunks[-1].id]
    fresh.close()


FILTERS = [{"page": 2}, {"page": None}, {"page": {"$ne": 2}}, {"page": {"$ne": None}},
           {"page": {"$gt": 1}}, {"page": {"$gte": 2}}, {"page": {"$lt": 2}},
           {"page": {"$lte": 1, "$gte": 1}}, {"page": [1, 3]}, {"page": {"$nin": [1]}},
           {"section": None}, {"section": {"$ne": "Rotating keys"}},
           {"title": {"$gt": "M"}}, {"source": {"$nin": ["nothing.md"]}},
           {"doc_id": {"$in": ["x", "y"]}}, {"page": 2**31}]


@pytest.mark.parametrize("where", FILTERS, ids=str)
def test_filters_over_the_chunk_table_match_filters_over_chunks(ws, rag, embedder, corpus,
                                                                where):
    from shipyard.genai import Retriever, parse_where
    from shipyard.genai._filters import matches

    rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    fresh = Rag(ws, embedder=embedder)
    lazy = fresh.retriever("docs")
    chunks = rag.chunks("docs")
    conditions = parse_where(where)
    expected = [matches(conditions, c) for c in chunks]
    assert lazy.chunks.mask(conditions).tolist() == expected
    listed = Retriever(lazy.store, lazy.table, embedder, chunks, lazy.bm25_index)
    for question in ("audit log retention", "rotate an API key"):
        assert lazy.bm25(question, 10, where) == listed.bm25(question, 10, where)
    fresh.close()


def test_a_missing_or_damaged_chunk_table_is_made_again(ws, rag, embedder, corpus):
    import shutil

    version = rag.ingest("docs", corpus, chunk_tokens=48, overlap=8)
    table = rag.home / "chunks" / f"{version.chunks_digest}.arrow"
    assert table.is_file()
    expected = rag.query("docs", "shipyard keys rotate", k=2)
    for damage in (lambda: table.write_bytes(b"not arrow"), lambda: shutil.rmtree(table.parent)):
        damage()
        fresh = Rag(ws, embedder=embedder)
        assert fresh.query("docs", "shipyard keys rotate", k=2) == expected
        assert len(ChunkTable.open(table)) == version.num_chunks
        fresh.close()
