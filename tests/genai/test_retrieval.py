"""Retrieval: dense, BM25 and hybrid search, filters, MMR and rerankers over a
real LanceDB table embedded with the offline MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import GenAIError
from shipyard.genai import (
    BM25Index,
    Chunk,
    EmbeddingReranker,
    Hit,
    LexicalReranker,
    Reranker,
    Retriever,
    mmr_select,
    open_vector_store,
    reciprocal_rank_fusion,
)

TEXTS = {
    "rates": "The central bank raised interest rates to curb inflation.",
    "rates2": "Interest rates rose again as the central bank fought inflation.",
    "rates3": "The bank lifted interest rates for the third time to slow inflation.",
    "football": "The striker scored twice and the club won the cup final.",
    "tennis": "She won the Wimbledon title after a five-set match.",
    "phones": "The new smartphone has a faster chip and a brighter screen.",
    "xk9": "Error code XK-9 means the cooling fan of the server has failed.",
    "film": "The film won the Oscar for best picture at the Academy Awards.",
}
SECTIONS = {"rates": "Economy", "rates2": "Economy", "rates3": "Economy", "football": "Sport",
            "tennis": "Sport", "phones": "Tech", "xk9": "Tech", "film": "Culture"}


def chunk(key: str) -> Chunk:
    return Chunk(id=f"{key}:0", doc_id=key, text=TEXTS[key], start=0, end=len(TEXTS[key]),
                 source=f"{key}.txt", title=key, section=SECTIONS[key],
                 page=1 if SECTIONS[key] == "Sport" else None)


@pytest.fixture(scope="module")
def retriever(embedder, tmp_path_factory):
    store = open_vector_store(f"lancedb://{tmp_path_factory.mktemp('lance')}")
    chunks = [chunk(k) for k in TEXTS]
    store.create("news", 384)
    store.upsert("news", chunks, embedder.embed([c.indexed_text for c in chunks]))
    return Retriever(store, "news", embedder, chunks)


def ids(hits: list[Hit]) -> list[str]:
    return [h.chunk.doc_id for h in hits]


def test_dense_finds_meaning_without_shared_words(retriever):
    hits = retriever.search("Which team lifted the trophy?", k=2, mode="dense")
    assert ids(hits)[0] == "football" and hits[0].retriever == "dense"


def test_bm25_finds_rare_exact_terms(retriever):
    hits = retriever.search("what does XK-9 mean", k=3, mode="bm25")
    assert ids(hits)[0] == "xk9" and hits[0].scores["bm25"] > 0
    assert retriever.search("zzzz qqqq", k=3, mode="bm25") == []


def test_hybrid_fuses_both_and_reports_component_scores(retriever):
    hits = retriever.search("XK-9 cooling fan", k=3, mode="hybrid")
    assert ids(hits)[0] == "xk9"
    assert retriever.fusion == "convex"  # the default
    assert hits[0].retriever == "hybrid" and {"dense", "bm25", "convex"} <= set(hits[0].scores)
    rrf = Retriever(retriever.store, retriever.table, retriever.embedder, retriever.chunks,
                    retriever.bm25_index, fusion="rrf")
    hits = rrf.search("XK-9 cooling fan", k=3, mode="hybrid")
    assert ids(hits)[0] == "xk9" and {"dense", "bm25", "rrf"} <= set(hits[0].scores)
    with pytest.raises(GenAIError, match="unknown fusion"):
        Retriever(retriever.store, retriever.table, retriever.embedder, retriever.chunks,
                  retriever.bm25_index, fusion="max")
    assert [h.rank for h in hits] == [1, 2, 3]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_filters_apply_in_every_mode(retriever, mode):
    hits = retriever.search("who won the match", k=5, mode=mode, where={"section": "Sport"})
    assert hits and set(ids(hits)) <= {"football", "tennis"}
    paged = retriever.search("won", k=5, mode=mode, where={"page": 1, "doc_id": ["tennis"]})
    assert ids(paged) == ["tennis"]


def test_mmr_trades_relevance_for_diversity(retriever):
    plain = retriever.search("interest rates inflation bank", k=3, mode="dense")
    assert set(ids(plain)) == {"rates", "rates2", "rates3"}
    diverse = retriever.search("interest rates inflation bank", k=3, mode="dense", mmr=0.3)
    assert ids(diverse)[0] == ids(plain)[0]
    assert len({SECTIONS[d] for d in ids(diverse)}) >= 2
    assert all(h.retriever == "mmr" for h in diverse)


def test_mmr_select_picks_the_most_relevant_first():
    v = np.eye(3, dtype=np.float32)
    assert mmr_select(np.array([0.2, 1.0, 0.1], dtype=np.float32), v, 2, 1.0) == [1, 0]
    with pytest.raises(GenAIError, match="between 0 and 1"):
        mmr_select(v[0], v, 1, 2.0)


def test_reciprocal_rank_fusion_weights_and_ties():
    a, b, c = (chunk(k) for k in ("rates", "football", "film"))
    dense, sparse = [Hit(a, 0.9), Hit(b, 0.5)], [Hit(c, 9.0), Hit(a, 3.0)]
    fused = reciprocal_rank_fusion({"dense": dense, "bm25": sparse}, k=60)
    assert ids(fused) == ["rates", "film", "football"]
    heavy = reciprocal_rank_fusion({"dense": dense, "bm25": sparse}, k=60,
                                   weights={"dense": 1.0, "bm25": 3.0}, limit=2)
    assert ids(heavy) == ["rates", "film"]


class ReverseAlphabet(Reranker):
    """A reranker as a plug-in: any class with ``score``."""

    name = "reverse"

    def score(self, question, chunks):
        return np.array([-ord(c.doc_id[0]) for c in chunks], dtype=float)


@pytest.mark.parametrize("reranker", [LexicalReranker(), ReverseAlphabet()])
def test_rerankers_plug_into_search(retriever, reranker):
    hits = retriever.search("interest rates", k=3, mode="hybrid", reranker=reranker)
    assert len(hits) == 3 and all(h.retriever == reranker.name for h in hits)
    assert all(reranker.name in h.scores for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_lexical_reranker_prefers_the_exact_phrase():
    a = Chunk(id="1", doc_id="1", text="rates of interest fell", start=0, end=1, source="1",
              title="")
    b = Chunk(id="2", doc_id="2", text="interest rates fell", start=0, end=1, source="2",
              title="")
    reranked = LexicalReranker().rerank("interest rates", [Hit(a, 1.0), Hit(b, 0.5)])
    assert [h.chunk.id for h in reranked] == ["2", "1"]


def test_embedding_reranker_rescues_a_semantic_match(embedder):
    food = Chunk(id="f", doc_id="f", text="Someone is having a meal.", start=0, end=1,
                 source="f", title="")
    stock = Chunk(id="s", doc_id="s", text="The stock market crashed today.", start=0, end=1,
                  source="s", title="")
    reranked = EmbeddingReranker(embedder).rerank("A man is eating food.",
                                                  [Hit(stock, 9.0), Hit(food, 1.0)], k=1)
    assert [h.chunk.id for h in reranked] == ["f"]


def test_bad_requests_are_refused(retriever):
    with pytest.raises(GenAIError, match="unknown retrieval mode"):
        retriever.search("x", mode="sparse")
    with pytest.raises(GenAIError, match="question is empty"):
        retriever.search("  ")
    with pytest.raises(GenAIError, match="k must be"):
        retriever.search("x", k=0)
    with pytest.raises(GenAIError, match="cannot filter on"):
        retriever.search("x", where={"secret": 1})


def test_bm25_index_saves_and_loads(tmp_path):
    index = BM25Index().fit(["cats sit on mats", "dogs run fast", "a cat and a dog"])
    index.save(tmp_path / "bm25")
    again = BM25Index.load(tmp_path / "bm25")
    assert again.search("cat", k=2) == index.search("cat", k=2)
    mask = np.array([False, True, True])
    assert [i for i, _ in again.search("cat", k=2, mask=mask)] == [2]
