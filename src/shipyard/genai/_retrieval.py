"""Retrieval: dense, BM25 and hybrid (convex score or reciprocal-rank fusion), with metadata
filters, maximal marginal relevance and pluggable rerankers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np

from shipyard.errors import GenAIError
from shipyard.genai._bm25 import BM25Index, analyse
from shipyard.genai._collections import ChunkTable
from shipyard.genai._embeddings import Embedder
from shipyard.genai._filters import matches, parse_where
from shipyard.genai._records import Chunk, Hit
from shipyard.genai._tracing import Tracer, hit_attributes, span
from shipyard.genai._vectorstore import VectorStore

#: Retrieval modes.
MODES = ("dense", "bm25", "hybrid")
#: Fusion methods of hybrid search: reciprocal-rank fusion, or a convex sum
#: of each retriever's normalised scores.
FUSIONS = ("rrf", "convex")
#: The fusion ``ws.rag`` uses unless a collection has a tuned one (see
#: benchmarks/RESULTS.md, RAG): convex, weights chosen on the tuning halves of
#: three BBC News question sets (copied titles and sentences, where BM25 is
#: strong, and the same questions in WordNet synonyms, where dense is).
DEFAULT_FUSION = "convex"
#: The RRF constant (k=60 is Cormack et al.'s).
DEFAULT_RRF_K = 60
#: Default weights per fusion method.
DEFAULT_FUSION_WEIGHTS = {"rrf": {"dense": 1.0, "bm25": 1.0},
                          "convex": {"dense": 0.1, "bm25": 0.9}}
#: The lowest score each retriever can give (cosine similarity, BM25), the
#: floor of convex fusion's normalisation.
SCORE_FLOORS = {"dense": -1.0, "bm25": 0.0}
DEFAULT_WEIGHTS = DEFAULT_FUSION_WEIGHTS[DEFAULT_FUSION]


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[Hit]], *, k: float = DEFAULT_RRF_K,
                           weights: Mapping[str, float] | None = None,
                           limit: int | None = None) -> list[Hit]:
    """Fuse ranked lists: ``score(c) = Σ weight_r / (k + rank_r(c))``.

    Ties go to the chunk ranked higher in the first list it appears in.

    >>> from shipyard.genai import Chunk
    >>> a, b, c = (Chunk(id=x, doc_id=x, text=x, start=0, end=1, source=x, title=x)
    ...            for x in "abc")
    >>> fused = reciprocal_rank_fusion({"dense": [Hit(a, .9), Hit(b, .8)],
    ...                                 "bm25": [Hit(b, 7.0, retriever="bm25"),
    ...                                          Hit(c, 5.0, retriever="bm25")]})
    >>> [h.chunk.id for h in fused], fused[0].retriever
    (['b', 'a', 'c'], 'hybrid')
    """
    return _fuse_by(rankings, weights, limit, "rrf",
                    lambda _, hits: [1.0 / (k + rank) for rank in range(1, len(hits) + 1)])


def _fuse_by(rankings: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None,
             limit: int | None, label: str,
             parts: Callable[[str, Sequence[Hit]], Sequence[float]],
             missing: Callable[[str, Sequence[Hit], Sequence[float]], float] | None = None
             ) -> list[Hit]:
    """``score(c) = Σ weight_r · part_r(c)`` over the lists, ``parts(name,
    hits)`` giving each hit's part in its list and ``missing(name, hits,
    parts)`` the part of a chunk the list lacks (0 by default); ties go to the
    chunk ranked higher in the first list it appears in. The fused hits keep
    every retriever's score and the fused one under ``label``."""
    weights = dict(weights or {})
    fused: dict[str, float] = {}
    first: dict[str, tuple[int, int]] = {}
    found: dict[str, Chunk] = {}
    components: dict[str, dict[str, float]] = {}
    absent: list[tuple[float, set[str]]] = []
    for order, (name, hits) in enumerate(rankings.items()):
        weight = float(weights.get(name, 1.0))
        shares = parts(name, hits)
        for rank, (hit, part) in enumerate(zip(hits, shares), start=1):
            cid = hit.chunk.id
            fused[cid] = fused.get(cid, 0.0) + weight * part
            first.setdefault(cid, (rank, order))
            found.setdefault(cid, hit.chunk)
            components.setdefault(cid, {}).update(hit.scores or {name: hit.score})
        if missing is not None:
            absent.append((weight * missing(name, hits, shares), {h.chunk.id for h in hits}))
    for share, listed in absent:
        for cid in fused.keys() - listed:
            fused[cid] += share
    ids = sorted(fused, key=lambda c: (-fused[c], first[c]))
    if limit is not None:
        ids = ids[:limit]
    return [Hit(chunk=found[c], score=fused[c], rank=i + 1, retriever="hybrid",
                scores={**components[c], label: fused[c]}) for i, c in enumerate(ids)]


def convex_fusion(rankings: Mapping[str, Sequence[Hit]], *,
                  weights: Mapping[str, float] | None = None,
                  limit: int | None = None, depth: int | None = None) -> list[Hit]:
    """Fuse ranked lists by score: ``score(c) = Σ weight_r · norm_r(c)``.

    ``norm_r`` scales list ``r``'s scores from the lowest score its retriever
    can give (:data:`SCORE_FLOORS`: -1 for cosine, 0 for BM25; a list of
    another name uses its own lowest) to its best score: 0 to 1
    ("theoretical min-max", Bruch et al., 2023). Unlike min-max over the list
    this does not depend on how deep the list goes, and a retriever whose
    candidates all score alike (dense near-ties) does not get a spread it
    does not have.

    A chunk missing from a list that came back full (``depth`` hits) scored
    at most the list's last score there, and gets that: both lists fetched
    the same depth, so each is credited alike for what it did not show. A
    chunk missing from a shorter list (or with ``depth`` None) gets 0: that
    list holds everything its retriever found.

    Unlike RRF it keeps how far apart the scores are, so a retriever that is
    sure (a large BM25 margin) is not outvoted by a near-tie in the other.
    Ties go to the chunk ranked higher in the first list it appears in.

    >>> from shipyard.genai import Chunk
    >>> a, b, c = (Chunk(id=x, doc_id=x, text=x, start=0, end=1, source=x, title=x)
    ...            for x in "abc")
    >>> fused = convex_fusion({"dense": [Hit(a, .9), Hit(b, .8)],
    ...                        "bm25": [Hit(b, 8.0, retriever="bm25"),
    ...                                 Hit(c, 4.0, retriever="bm25")]},
    ...                       weights={"dense": 0.5, "bm25": 0.5}, depth=2)
    >>> [(h.chunk.id, round(h.score, 3)) for h in fused]  # c: dense at most .8
    [('b', 0.974), ('a', 0.75), ('c', 0.724)]
    """
    return _fuse_by(rankings, weights, limit, "convex", _normalised,
                    lambda _, hits, parts: min(parts) if depth and len(hits) >= depth else 0.0)


def _normalised(name: str, hits: Sequence[Hit]) -> list[float]:
    """The hits' scores scaled from their retriever's floor (see
    :data:`SCORE_FLOORS`; else the lowest of them) to the best of them: 0 to
    1 (all 1 when they are equal)."""
    if not hits:
        return []
    scores = [h.score for h in hits]
    low = min(SCORE_FLOORS.get(name, min(scores)), min(scores))
    spread = max(scores) - low
    return [(s - low) / spread if spread > 0 else 1.0 for s in scores]


def fuse(rankings: Mapping[str, Sequence[Hit]], method: str = DEFAULT_FUSION, *,
         rrf_k: float = DEFAULT_RRF_K, weights: Mapping[str, float] | None = None,
         limit: int | None = None, depth: int | None = None) -> list[Hit]:
    """Fuse ranked lists with ``method`` (one of :data:`FUSIONS`); ``weights``
    default to :data:`DEFAULT_FUSION_WEIGHTS` of the method, ``depth`` is
    how many hits each list was asked for (see :func:`convex_fusion`)."""
    if method not in FUSIONS:
        raise GenAIError(f"unknown fusion {method!r}", hint=f"use one of {FUSIONS}")
    weights = DEFAULT_FUSION_WEIGHTS[method] if weights is None else weights
    if method == "rrf":
        return reciprocal_rank_fusion(rankings, k=rrf_k, weights=weights, limit=limit)
    return convex_fusion(rankings, weights=weights, limit=limit, depth=depth)


def mmr_select(query: np.ndarray, candidates: np.ndarray, k: int, lambda_: float = 0.5
               ) -> list[int]:
    """Maximal marginal relevance: pick ``k`` rows of ``candidates`` (unit
    vectors) trading similarity to ``query`` (``lambda_``) against similarity
    to the rows already picked (``1 - lambda_``).

    >>> v = np.array([[1, 0], [0.99, 0.14], [0.6, 0.8]], dtype="float32")
    >>> mmr_select(np.array([1, 0], dtype="float32"), v, 2, lambda_=1.0)  # relevance only
    [0, 1]
    >>> mmr_select(np.array([1, 0], dtype="float32"), v, 2, lambda_=0.3)  # diversity counts
    [0, 2]
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise GenAIError(f"the MMR lambda must be between 0 and 1, got {lambda_!r}")
    n = candidates.shape[0]
    if n == 0 or k < 1:
        return []
    relevance = candidates @ query
    chosen: list[int] = []
    redundancy = np.full(n, -np.inf)
    left = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = lambda_ * relevance - (1.0 - lambda_) * penalty
        score = np.where(left, score, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return chosen


# ------------------------------------------------------------------ rerankers
class Reranker(ABC):
    """Re-scores retrieved chunks for a question.

    Subclasses implement :meth:`score`; :meth:`rerank` is derived from it.
    """

    #: Shown as ``Hit.retriever`` and as the key of its score in ``Hit.scores``.
    name: str = "reranker"

    @abstractmethod
    def score(self, question: str, chunks: Sequence[Chunk]) -> np.ndarray:
        """One score per chunk, higher is better."""

    def rerank(self, question: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
        """``hits`` in the order of :meth:`score` (ties keep their order), cut
        to ``k``."""
        if not hits:
            return []
        scores = np.asarray(self.score(question, [h.chunk for h in hits]), dtype=float)
        if scores.shape != (len(hits),) or not np.isfinite(scores).all():
            raise GenAIError(f"reranker {self.name!r} returned {scores.shape} scores for "
                             f"{len(hits)} chunks (or non-finite ones)")
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        if k is not None:
            order = order[:k]
        return [replace(hits[i], score=float(scores[i]), rank=r + 1, retriever=self.name,
                        scores={**hits[i].scores, self.name: float(scores[i])})
                for r, i in enumerate(order)]


class LexicalReranker(Reranker):
    """Query-term coverage, no model: the IDF-weighted share of the question's
    terms a chunk holds, plus a bonus for each pair of consecutive question
    terms it holds in the same order.

    Parameters
    ----------
    phrase_weight
        Weight of the consecutive-pair bonus against plain coverage.

    >>> from shipyard.genai import Chunk
    >>> cs = [Chunk(id=str(i), doc_id="d", text=t, start=0, end=1, source="d", title="")
    ...       for i, t in enumerate(["interest rates rise", "rates of interest fall"])]
    >>> LexicalReranker().score("interest rates", cs).round(2).tolist()
    [1.0, 0.67]
    """

    name = "lexical"

    def __init__(self, phrase_weight: float = 0.5):
        self.phrase_weight = phrase_weight

    def __repr__(self) -> str:
        return f"LexicalReranker(phrase_weight={self.phrase_weight})"

    def score(self, question: str, chunks: Sequence[Chunk]) -> np.ndarray:
        q_terms = list(dict.fromkeys(analyse([question])[0]))
        if not q_terms or not chunks:
            return np.zeros(len(chunks))
        docs = analyse([c.text for c in chunks])
        n = len(docs)
        sets = [set(d) for d in docs]
        idf = {t: np.log(1.0 + (n + 1) / (0.5 + sum(t in s for s in sets))) for t in q_terms}
        total = sum(idf.values())
        pairs = list(pairwise(q_terms))
        out = np.zeros(n)
        for i, (terms, present) in enumerate(zip(docs, sets)):
            coverage = sum(idf[t] for t in q_terms if t in present) / total
            bonus = 0.0
            if pairs:
                adjacent = set(pairwise(terms))
                bonus = sum(p in adjacent for p in pairs) / len(pairs)
            out[i] = (coverage + self.phrase_weight * bonus) / (1.0 + self.phrase_weight)
        return out


class EmbeddingReranker(Reranker):
    """Cosine similarity of the question and each chunk under an embedder (a
    bi-encoder re-score: it puts BM25-only hits of a hybrid search on the
    dense scale).

    Parameters
    ----------
    embedder
        Any :class:`~shipyard.genai.Embedder`.
    """

    name = "embedding"

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"EmbeddingReranker(embedder={self.embedder!r})"

    def score(self, question: str, chunks: Sequence[Chunk]) -> np.ndarray:
        if not chunks:
            return np.zeros(0)
        vectors = self.embedder.embed([question, *(c.indexed_text for c in chunks)])
        return vectors[1:] @ vectors[0]


# ------------------------------------------------------------------ retriever
def hybrid_depth(k: int, fetch_k: int | None = None, *, deep: bool = False) -> int:
    """How many candidates hybrid search asks each leg (dense and BM25) for.

    Dense candidates are dear (an indexed vector store re-ranks ``refine ×
    n`` full vectors, so 40 cost about 3x as much as 10) and convex fusion
    wants both lists equally deep (see :func:`convex_fusion`). A plain hybrid
    search of ``k`` therefore takes ``k`` from each; with a reranker or MMR
    (``deep``), or an explicit ``fetch_k``, each fetches ``fetch_k`` (default
    ``max(4k, 20)``).

    >>> hybrid_depth(10), hybrid_depth(10, 50), hybrid_depth(10, deep=True)
    (10, 50, 40)
    """
    if deep or fetch_k is not None:
        return max(fetch_k or max(4 * k, 20), k)
    return k


class Retriever:
    """Search one index: dense (vector store), BM25, or both fused.

    Parameters
    ----------
    store, table
        The vector store and the table holding the chunks' vectors.
    embedder
        Embeds questions; must be the one the table was built with.
    chunks
        The indexed chunks, in the BM25 index's order: any sequence, kept
        as given (a :class:`~shipyard.genai._collections.ChunkTable` builds
        only the chunks a query returns); another iterable is listed.
    bm25
        A fitted :class:`BM25Index` over ``chunks`` (fitted here if omitted).
    fusion, rrf_k, weights
        Fusion of hybrid search (see :func:`fuse`): method, RRF constant and
        per-retriever weights (default: the method's
        :data:`DEFAULT_FUSION_WEIGHTS`).
    """

    def __init__(self, store: VectorStore, table: str, embedder: Embedder,
                 chunks: Sequence[Chunk], bm25: BM25Index | None = None, *,
                 fusion: str = DEFAULT_FUSION, rrf_k: float = DEFAULT_RRF_K,
                 weights: Mapping[str, float] | None = None):
        if fusion not in FUSIONS:
            raise GenAIError(f"unknown fusion {fusion!r}", hint=f"use one of {FUSIONS}")
        self.store = store
        self.table = table
        self.embedder = embedder
        self.chunks = chunks if isinstance(chunks, Sequence) else list(chunks)
        self.bm25_index = bm25 if bm25 is not None else \
            BM25Index().fit([c.indexed_text for c in self.chunks])
        self.rrf_k = rrf_k
        self.fusion = fusion
        self.weights = dict(DEFAULT_FUSION_WEIGHTS[fusion] if weights is None else weights)
        self._masks = lru_cache(maxsize=64)(self._mask)

    def __repr__(self) -> str:
        return (f"Retriever(store={self.store!r}, table={self.table!r}, chunks={len(self.chunks)},"
                f" fusion={self.fusion!r}, rrf_k={self.rrf_k}, weights={self.weights})")

    def embed_question(self, question: str) -> np.ndarray:
        return self.embedder.embed([question])[0]

    def _mask(self, conditions: tuple) -> np.ndarray:
        if isinstance(self.chunks, ChunkTable):  # over its columns, no Chunk built
            return self.chunks.mask(conditions)
        return np.fromiter((matches(conditions, c) for c in self.chunks), dtype=bool,
                           count=len(self.chunks))

    def dense(self, question: str, k: int = 10, where: Mapping[str, Any] | None = None, *,
              vector: np.ndarray | None = None) -> list[Hit]:
        """The ``k`` chunks closest to the question's embedding."""
        vector = self.embed_question(question) if vector is None else vector
        return self.store.search(self.table, vector, k, where)

    def bm25(self, question: str, k: int = 10, where: Mapping[str, Any] | None = None
             ) -> list[Hit]:
        """The ``k`` chunks with the best BM25 score (only chunks sharing a term)."""
        conditions = parse_where(where)
        mask = self._masks(conditions) if conditions else None
        return [Hit(chunk=self.chunks[i], score=s, rank=r + 1, retriever="bm25",
                    scores={"bm25": s})
                for r, (i, s) in enumerate(self.bm25_index.search(question, k, mask))]

    def search(self, question: str, *, k: int = 5, mode: str = "hybrid",
               where: Mapping[str, Any] | None = None, mmr: float | None = None,
               reranker: Reranker | None = None, fetch_k: int | None = None,
               vector: np.ndarray | None = None, tracer: Tracer | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``question``.

        Parameters
        ----------
        k
            How many chunks to return.
        mode
            ``dense``, ``bm25`` or ``hybrid`` (both, fused: see ``fusion``).
        where
            Metadata filter (see :func:`shipyard.genai.parse_where`).
        mmr
            Diversify with maximal marginal relevance, this lambda (1.0: pure
            relevance, 0.0: pure diversity); ``None`` for none.
        reranker
            Re-score the candidates before the cut to ``k``.
        fetch_k
            Candidates fetched per retriever before fusion, reranking or MMR;
            default ``max(4k, 20)``, except a plain hybrid search (no
            reranker, no MMR), whose legs fetch ``k`` each (see
            :func:`hybrid_depth`).
        vector
            The question's embedding, if already computed.
        tracer
            Records the steps as spans: ``embed``, ``retrieve`` (children
            ``dense``, ``bm25``, ``fuse``), ``rerank``, ``mmr``.
        """
        if mode not in MODES:
            raise GenAIError(f"unknown retrieval mode {mode!r}", hint=f"use one of {MODES}")
        if not isinstance(question, str) or not question.strip():
            raise GenAIError("the question is empty")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise GenAIError(f"k must be an integer from 1 to 1000, got {k!r}")
        parse_where(where)  # refuse a bad filter before any work
        deep = reranker is not None or mmr is not None
        fetch = max(fetch_k or max(4 * k, 20), k) if (deep or mode == "hybrid") else k
        if mode in ("dense", "hybrid") and vector is None:
            with span(tracer, "embed", embedder=self.embedder.name):
                vector = self.embed_question(question)
        with span(tracer, "retrieve", mode=mode, k=k, fetch_k=fetch,
                  filtered=where is not None) as attrs:
            if mode == "dense":
                with span(tracer, "dense") as sub:
                    hits = self.dense(question, fetch, where, vector=vector)
                    sub.update(hit_attributes(hits))
            elif mode == "bm25":
                with span(tracer, "bm25") as sub:
                    hits = self.bm25(question, fetch, where)
                    sub.update(hit_attributes(hits))
            else:
                depth = hybrid_depth(k, fetch_k, deep=deep)
                with span(tracer, "dense") as sub:
                    dense = self.dense(question, depth, where, vector=vector)
                    sub.update(hit_attributes(dense))
                with span(tracer, "bm25") as sub:
                    lexical = self.bm25(question, depth, where)
                    sub.update(hit_attributes(lexical))
                with span(tracer, "fuse", method=self.fusion, rrf_k=self.rrf_k) as sub:
                    hits = fuse({"dense": dense, "bm25": lexical}, self.fusion,
                                rrf_k=self.rrf_k, weights=self.weights, limit=fetch,
                                depth=depth)
                    sub.update(hit_attributes(hits))
            if tracer is not None:
                attrs.update(hit_attributes(hits[:k] if not deep else hits))
        if reranker is not None:
            with span(tracer, "rerank", reranker=reranker.name, candidates=len(hits)) as sub:
                hits = reranker.rerank(question, hits, k=fetch if mmr is not None else k)
                sub.update(hit_attributes(hits))
        if mmr is not None:
            with span(tracer, "mmr", mmr_lambda=mmr, candidates=len(hits)) as sub:
                hits = self._mmr(question, hits, k, mmr, vector)
                sub.update(hit_attributes(hits))
        return [replace(h, rank=i + 1) for i, h in enumerate(hits[:k])]

    def _mmr(self, question: str, hits: list[Hit], k: int, lambda_: float,
             vector: np.ndarray | None) -> list[Hit]:
        if not hits:
            return []
        vector = self.embed_question(question) if vector is None else vector
        rows = {c.id: v for c, v in self.store.get(self.table, [h.chunk.id for h in hits])}
        kept = [h for h in hits if h.chunk.id in rows]
        matrix = np.stack([rows[h.chunk.id] for h in kept])
        picked = mmr_select(np.asarray(vector, dtype=np.float32), matrix, k, lambda_)
        return [replace(kept[i], retriever="mmr") for i in picked]
