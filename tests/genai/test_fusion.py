"""Hybrid fusion: convex (scores scaled from each retriever's floor) and
reciprocal-rank fusion, and tune_fusion choosing between them."""

from __future__ import annotations

import pytest

from shipyard.errors import GenAIError
from shipyard.genai import Chunk, Hit
from shipyard.genai._retrieval import (
    DEFAULT_FUSION,
    DEFAULT_FUSION_WEIGHTS,
    FUSIONS,
    convex_fusion,
    fuse,
    hybrid_depth,
    reciprocal_rank_fusion,
)


def chunk(key: str) -> Chunk:
    return Chunk(id=key, doc_id=key, text=key, start=0, end=1, source=key, title=key)


A, B, C, D = (chunk(k) for k in "abcd")


def test_convex_fusion_scales_each_list_from_its_retrievers_floor():
    dense = [Hit(A, 0.80), Hit(B, 0.70), Hit(C, 0.60)]
    sparse = [Hit(C, 12.0, retriever="bm25", scores={"bm25": 12.0}),
              Hit(D, 4.0, retriever="bm25", scores={"bm25": 4.0})]
    fused = convex_fusion({"dense": dense, "bm25": sparse},
                          weights={"dense": 0.3, "bm25": 0.7})
    # cosine from -1: a 1.8/1.8, b 1.7/1.8, c 1.6/1.8; BM25 from 0: c 12/12, d 4/12
    # a: .3; b: .3*.944; c: .3*.889 + .7; d: .7*.333
    assert [h.chunk.id for h in fused] == ["c", "a", "b", "d"]
    assert [round(h.score, 6) for h in fused] == [0.966667, 0.3, 0.283333, 0.233333]
    assert fused[0].scores == {"dense": 0.6, "bm25": 12.0, "convex": pytest.approx(0.966667)}
    assert [h.rank for h in fused] == [1, 2, 3, 4] and fused[0].retriever == "hybrid"
    assert [h.chunk.id for h in convex_fusion({"dense": dense}, limit=2)] == ["a", "b"]


def test_a_lists_depth_does_not_change_its_scores():
    # min-max over the list would rescale a and b once a far lower e joins it
    short = convex_fusion({"dense": [Hit(A, 0.8), Hit(B, 0.7)]})
    deep = convex_fusion({"dense": [Hit(A, 0.8), Hit(B, 0.7), Hit(D, 0.1)]})
    assert [h.score for h in deep[:2]] == [h.score for h in short]
    other = convex_fusion({"votes": [Hit(A, 3.0), Hit(B, 2.0), Hit(C, 1.0)]})
    assert [h.score for h in other] == [1.0, 0.5, 0.0]  # no known floor: its own lowest


def test_a_chunk_one_list_lacks_gets_that_lists_last_score_when_the_list_is_full():
    dense = [Hit(A, 0.9), Hit(B, 0.8)]  # full: 2 of the 2 asked for
    sparse = [Hit(C, 6.0, retriever="bm25")]  # short: only c shares a term
    fused = convex_fusion({"dense": dense, "bm25": sparse},
                          weights={"dense": 0.5, "bm25": 0.5}, depth=2)
    # c is below dense's last (b: 1.8/1.9) at best, and gets that; a and b
    # share no term with the question: BM25 0 (not its last score)
    assert [(h.chunk.id, round(h.score, 4)) for h in fused] == [
        ("c", 0.9737), ("a", 0.5), ("b", 0.4737)]
    # without a depth each list is taken as complete: c gets dense 0, ties a
    # and goes after it (a comes first in the first list)
    flat = convex_fusion({"dense": dense, "bm25": sparse}, weights={"dense": 0.5, "bm25": 0.5})
    assert [(h.chunk.id, round(h.score, 4)) for h in flat] == [
        ("a", 0.5), ("c", 0.5), ("b", 0.4737)]
    assert fuse({"dense": dense, "bm25": sparse}, "convex",
                weights={"dense": 0.5, "bm25": 0.5}, depth=2) == fused


def test_hybrid_search_asks_both_legs_for_the_same_depth():
    assert hybrid_depth(5) == 5  # plain hybrid: k from each
    assert hybrid_depth(5, deep=True) == 20 and hybrid_depth(5, 8) == 8
    assert hybrid_depth(30, 10) == 30  # never fewer than k


def test_convex_fusion_keeps_score_margins_rrf_drops():
    # BM25 is sure of c (a large margin), dense barely prefers a over c
    dense = [Hit(A, 0.81), Hit(C, 0.80), Hit(B, 0.10)]
    sparse = [Hit(C, 20.0), Hit(A, 2.0), Hit(B, 1.9)]
    rrf = reciprocal_rank_fusion({"dense": dense, "bm25": sparse})
    convex = convex_fusion({"dense": dense, "bm25": sparse}, weights={"dense": .5, "bm25": .5})
    assert rrf[0].chunk.id == "a"  # tie on rank sums, broken by the first list
    assert convex[0].chunk.id == "c"


def test_equal_scores_and_empty_lists():
    same = convex_fusion({"dense": [Hit(A, 0.5), Hit(B, 0.5)], "bm25": []}, depth=2)
    assert [(h.chunk.id, h.score) for h in same] == [("a", 1.0), ("b", 1.0)]
    floor = convex_fusion({"bm25": [Hit(A, 0.0, retriever="bm25")]})
    assert [h.score for h in floor] == [1.0]  # all at the floor: equal, not 0/0
    assert convex_fusion({"dense": [], "bm25": []}) == []


def test_fuse_dispatches_and_refuses_unknown_methods():
    lists = {"dense": [Hit(A, 0.9), Hit(B, 0.1)], "bm25": [Hit(B, 3.0), Hit(A, 1.0)]}
    assert DEFAULT_FUSION in FUSIONS and set(DEFAULT_FUSION_WEIGHTS) == set(FUSIONS)
    assert fuse(lists, "rrf") == reciprocal_rank_fusion(lists, weights={"dense": 1, "bm25": 1})
    assert fuse(lists, "convex") == convex_fusion(lists, weights=DEFAULT_FUSION_WEIGHTS["convex"])
    with pytest.raises(GenAIError, match="unknown fusion"):
        fuse(lists, "borda")


def test_a_tuned_fusion_is_kept_for_its_collection_version(ws, embedder):
    from shipyard.genai import Document, Rag, known_item_questions

    docs = [Document.from_text(f"{title}. {body}", source=f"d{i}.txt", title=title)
            for i, (title, body) in enumerate([
                ("Bank raises rates", "The central bank lifted interest rates to fight inflation."),
                ("Striker wins cup", "The striker scored twice as the club won the cup final."),
                ("New phone chip", "The smartphone has a faster chip and a brighter screen."),
                ("Oscar for best film", "The film won the Oscar for best picture."),
                ("Server fan failure", "Error XK-9 means the server's cooling fan failed."),
            ])]
    rag = Rag(ws, embedder=embedder)
    try:
        version = rag.ingest("news", docs)
        assert rag.retriever("news").fusion == DEFAULT_FUSION
        best = rag.tune_fusion("news", known_item_questions(docs), k=3)
        # every fusion finds each article first here: the tie keeps the default
        assert (best["recall@3"], best["mrr@3"]) == (1.0, 1.0)
        assert (best["fusion"], best["weights"]) == (DEFAULT_FUSION,
                                                     DEFAULT_FUSION_WEIGHTS[DEFAULT_FUSION])
        kept = {"fusion": best["fusion"], "rrf_k": best["rrf_k"], "weights": best["weights"]}
        current = rag.retriever("news")
        assert {"fusion": current.fusion, "rrf_k": current.rrf_k,
                "weights": current.weights} == kept
    finally:
        rag.close()
    again = Rag(ws, embedder=embedder)  # a new front: read back from disk
    try:
        fresh = again.retriever(f"news@{version.version}")
        assert {"fusion": fresh.fusion, "rrf_k": fresh.rrf_k, "weights": fresh.weights} == kept
        hits = again.query("news", "server fan error", k=1)
        assert hits[0].chunk.source == "d4.txt"
    finally:
        again.close()
