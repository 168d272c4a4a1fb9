"""Deterministic evaluation, no LLM: retrieval quality on labelled questions,
answer groundedness and citation precision by lexical (and optionally
embedding) support.

Scores are never NaN: a score that cannot be computed is ``None`` with its
reason in ``not_scorable``; an empty result or an empty context scores 0.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shipyard.errors import GenAIError
from shipyard.genai._bm25 import analyse
from shipyard.genai._embeddings import Embedder
from shipyard.genai._generation import answer_sentences, split_sentences
from shipyard.genai._records import Answer, Document, Hit
from shipyard.genai._retrieval import MODES, Retriever, reciprocal_rank_fusion

NDCG_AT = 10


@dataclass(frozen=True)
class Question:
    """A labelled question.

    Attributes
    ----------
    text
        The question.
    relevant
        Ids of the relevant documents (``Document.doc_id``, the source).
    id
        Optional label.
    """

    text: str
    relevant: tuple[str, ...]
    id: str | None = None

    @classmethod
    def coerce(cls, item: Question | Mapping[str, Any]) -> Question:
        if isinstance(item, Question):
            return item
        if isinstance(item, Mapping) and "text" in item:
            rel = item.get("relevant") or ()
            rel = (rel,) if isinstance(rel, str) else tuple(rel)
            return cls(text=str(item["text"]), relevant=rel, id=item.get("id"))
        raise GenAIError(f"a question is a Question or a mapping with 'text' and 'relevant', "
                         f"got {type(item).__name__}")


# ------------------------------------------------------------------ retrieval
def doc_ranking(hits: Sequence[Hit]) -> list[str]:
    """Document ids in the order their first chunk was retrieved."""
    return list(dict.fromkeys(h.chunk.doc_id for h in hits))


def retrieval_scores(ranking: Sequence[str], relevant: Iterable[str], k: int
                     ) -> dict[str, float] | None:
    """hit rate@k, recall@k, MRR@k and nDCG@10 of one ranking of document ids;
    ``None`` when no document is relevant (not scorable).

    >>> retrieval_scores(["a", "b", "c"], {"b"}, k=2)
    {'hit_rate@2': 1.0, 'recall@2': 1.0, 'mrr@2': 0.5, 'ndcg@10': 0.6309}
    """
    rel = set(relevant)
    if not rel:
        return None
    top = list(ranking[:k])
    found = [d for d in top if d in rel]
    first = next((i for i, d in enumerate(top, start=1) if d in rel), None)
    dcg = sum(1.0 / math.log2(i + 1) for i, d in enumerate(ranking[:NDCG_AT], start=1)
              if d in rel)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), NDCG_AT) + 1))
    return {f"hit_rate@{k}": 1.0 if found else 0.0,
            f"recall@{k}": len(set(found)) / len(rel),
            f"mrr@{k}": 1.0 / first if first else 0.0,
            f"ndcg@{NDCG_AT}": round(dcg / ideal, 4)}


def mean_scores(rows: Sequence[dict[str, float] | None], names: Sequence[str]
                ) -> tuple[dict[str, float | None], int]:
    """Mean of each score over the scorable rows, and how many were not
    scorable; a score with no scorable row is ``None``."""
    scored = [r for r in rows if r is not None]
    out = {n: (float(np.mean([r[n] for r in scored])) if scored else None) for n in names}
    return out, len(rows) - len(scored)


# -------------------------------------------------------------------- answers
def support(sentence: str, text: str, *, embedder: Embedder | None = None) -> float | None:
    """How well ``text`` supports ``sentence``: the share of the sentence's
    content terms that ``text`` holds, or their embedding similarity if higher.
    ``None`` if the sentence has no content term.

    >>> support("The tower is 330 m tall.", "Built in 1889, the tower is 330 m tall.")
    1.0
    >>> support("The tower is blue.", "The tower is 330 m tall.")
    0.5
    """
    terms = set(analyse([sentence])[0])
    if not terms:
        return None
    lexical = len(terms & set(analyse([text])[0])) / len(terms)
    if embedder is None:
        return lexical
    vectors = embedder.embed([sentence, text])
    return max(lexical, float(vectors[0] @ vectors[1]))


@dataclass(frozen=True)
class AnswerScores:
    """Groundedness and citation quality of one answer.

    Attributes
    ----------
    groundedness
        Share of the answer's sentences supported by some retrieved chunk.
    citation_precision
        Share of the citations whose chunk supports the sentence citing it.
    citation_recall
        Share of the sentences with at least one supporting citation.
    not_scorable
        Score name → why it is ``None``.
    """

    groundedness: float | None
    citation_precision: float | None
    citation_recall: float | None
    not_scorable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_answer(answer: Answer, *, embedder: Embedder | None = None, threshold: float = 0.6
                 ) -> AnswerScores:
    """Score an answer against its own retrieved context (``answer.hits``).

    A sentence is supported by a chunk when :func:`support` reaches
    ``threshold``. An answer with sentences but an empty context scores 0; a
    refusal (no sentences) is not scorable.
    """
    names = ("groundedness", "citation_precision", "citation_recall")
    if answer.refused:
        why = f"refused: {answer.refusal}"
        return AnswerScores(None, None, None, {n: why for n in names})
    sentences = answer_sentences(answer)
    chunks = {h.chunk.id: h.chunk.text for h in answer.hits}
    graded = []
    for sentence, citations in sentences:
        if not analyse([sentence])[0]:
            continue  # no content terms: a connective sentence, not a claim
        scores = [support(sentence, t, embedder=embedder) or 0.0 for t in chunks.values()]
        cited = [(support(sentence, chunks[c.chunk_id], embedder=embedder) or 0.0) >= threshold
                 if c.chunk_id in chunks else False for c in citations]
        graded.append((any(x >= threshold for x in scores), cited))
    if not graded:
        why = "the answer has no sentence with content terms"
        return AnswerScores(None, None, None, {n: why for n in names})
    groundedness = sum(g for g, _ in graded) / len(graded)
    pairs = [ok for _, cited in graded for ok in cited]
    precision = sum(pairs) / len(pairs) if pairs else None
    recall = sum(any(cited) for _, cited in graded) / len(graded)
    missing = {} if pairs else {"citation_precision": "the answer cites nothing"}
    return AnswerScores(groundedness, precision, recall, missing)


# --------------------------------------------------------------------- report
@dataclass
class EvaluationReport:
    """Retrieval (per mode) and answer scores over a question set.

    Attributes
    ----------
    k
        Cut-off of hit rate, recall and MRR (nDCG is at 10).
    n_questions
        Questions asked.
    retrieval
        Mode → score → mean over scorable questions (``None``: none scorable).
    answers
        Mean answer scores (``None`` entries: none scorable), or ``None`` when
        answers were not evaluated.
    not_scorable
        ``"<mode or answers>.<score>"`` → why it is ``None`` or how many
        questions were left out.
    per_question
        One dict per question: text, relevant, each mode's ranking and scores.
    """

    k: int
    n_questions: int
    retrieval: dict[str, dict[str, float | None]]
    answers: dict[str, float | None] | None = None
    not_scorable: dict[str, str] = field(default_factory=dict)
    per_question: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, float]:
        """Flat ``mode.score`` → value, the scorable ones only (for tracking:
        ``@`` is written ``_at_``)."""
        out = {}
        for mode, scores in self.retrieval.items():
            for name, value in scores.items():
                if value is not None:
                    out[f"{mode}.{name.replace('@', '_at_')}"] = value
        for name, value in (self.answers or {}).items():
            if value is not None:
                out[f"answers.{name}"] = value
        return out

    def table(self) -> str:
        """The retrieval scores as a text table, one row per mode."""
        names = list(next(iter(self.retrieval.values()), {}))
        head = f"{'mode':<8}" + "".join(f"{n:>12}" for n in names)
        rows = [head]
        for mode, scores in self.retrieval.items():
            cells = "".join(f"{'n/a' if scores[n] is None else format(scores[n], '.3f'):>12}"
                            for n in names)
            rows.append(f"{mode:<8}{cells}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return self.table()


def evaluate_retrieval(retriever: Retriever, questions: Sequence[Question | Mapping], *,
                       k: int = 10, modes: Sequence[str] = MODES,
                       where: Mapping[str, Any] | None = None) -> EvaluationReport:
    """Ask every question in every mode and score the document rankings."""
    questions = [Question.coerce(q) for q in questions]
    if not questions:
        raise GenAIError("no questions to evaluate", hint="pass at least one labelled question")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise GenAIError(f"unknown retrieval mode {bad[0]!r}", hint=f"use one of {MODES}")
    depth = max(k, NDCG_AT)
    vectors = retriever.embedder.embed([q.text for q in questions]) \
        if any(m != "bm25" for m in modes) else None
    names = [f"hit_rate@{k}", f"recall@{k}", f"mrr@{k}", f"ndcg@{NDCG_AT}"]
    per_question: list[dict[str, Any]] = [{"text": q.text, "relevant": list(q.relevant)}
                                          for q in questions]
    report = EvaluationReport(k=k, n_questions=len(questions), retrieval={})
    for mode in modes:
        rows = []
        for i, q in enumerate(questions):
            hits = retriever.search(q.text, k=depth, mode=mode, where=where,
                                    vector=None if vectors is None else vectors[i])
            ranking = doc_ranking(hits)
            scores = retrieval_scores(ranking, q.relevant, k)
            rows.append(scores)
            per_question[i][mode] = {"ranking": ranking[:depth], "scores": scores}
        report.retrieval[mode], skipped = mean_scores(rows, names)
        if skipped:
            for n in names:
                report.not_scorable[f"{mode}.{n}"] = (
                    f"{skipped} of {len(rows)} questions have no relevant document"
                    if skipped < len(rows) else "no question has a relevant document")
    report.per_question = per_question
    return report


def aggregate_answer_scores(scores: Sequence[AnswerScores]) -> tuple[dict[str, float | None],
                                                                      dict[str, str]]:
    """Mean of each answer score over the answers where it is scorable."""
    out: dict[str, float | None] = {}
    why: dict[str, str] = {}
    for name in ("groundedness", "citation_precision", "citation_recall"):
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        out[name] = float(np.mean(values)) if values else None
        left = len(scores) - len(values)
        if left:
            why[f"answers.{name}"] = f"{left} of {len(scores)} answers not scorable"
    out["refusal_rate"] = (sum(1 for s in scores if s.groundedness is None
                               and any(v.startswith("refused") for v in s.not_scorable.values()))
                           / len(scores)) if scores else None
    return out, why


# ------------------------------------------------------------ question sets
def _first_sentence(text: str) -> str:
    for a, b in split_sentences(text):
        sentence = text[a:b].strip()
        if len(sentence.split()) >= 5:
            return sentence
    return ""


def known_item_questions(documents: Sequence[Document], *, n: int | None = None,
                         seed: int = 0) -> list[Question]:
    """A known-item question set: for each document, its title (even
    positions) or the first sentence of its body (odd positions) is the query
    and the document is the relevant one. Documents with identical content
    are counted once (the first, as ingestion keeps it); a query shared by
    several documents lists them all as relevant.

    Parameters
    ----------
    documents
        The collection's documents.
    n
        Sample this many questions (seeded); default one per document.
    seed
        Seed of the sample.
    """
    unique: dict[str, Document] = {}
    for doc in documents:
        unique.setdefault(doc.content_hash, doc)
    docs = list(unique.values())
    queries: list[tuple[str, str]] = []
    for i, doc in enumerate(docs):
        body = doc.text
        if body.lstrip().startswith(doc.title):
            body = body.lstrip()[len(doc.title):]
        query = doc.title if i % 2 == 0 else _first_sentence(body) or doc.title
        query = " ".join(query.split())
        if query:
            queries.append((query, doc.doc_id))
    relevant: dict[str, list[str]] = {}
    for query, doc_id in queries:
        relevant.setdefault(query.lower(), []).append(doc_id)
    out = [Question(text=q, relevant=tuple(relevant[q.lower()]), id=f"known-item-{i}")
           for i, (q, _) in enumerate(queries)]
    out = list({q.text.lower(): q for q in out}.values())
    if n is not None and n < len(out):
        out = random.Random(seed).sample(out, n)
    return out


def split_questions(questions: Sequence[Question], fraction: float = 0.5, *, seed: int = 0
                    ) -> tuple[list[Question], list[Question]]:
    """A seeded split into (tuning, held-out) parts."""
    items = list(questions)
    random.Random(seed).shuffle(items)
    cut = round(len(items) * fraction)
    return items[:cut], items[cut:]


def tune_fusion(retriever: Retriever, questions: Sequence[Question], *, k: int = 10,
                rrf_ks: Sequence[float] = (10, 30, 60, 100),
                bm25_weights: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0),
                fetch_k: int = 50) -> dict[str, Any]:
    """Choose the RRF constant and the BM25 weight (dense weight 1) that give
    the best recall@k (then MRR) on ``questions``: tune on one part of a
    question set, report on the other (:func:`split_questions`)."""
    vectors = retriever.embedder.embed([q.text for q in questions])
    lists = [(retriever.dense(q.text, fetch_k, vector=vectors[i]),
              retriever.bm25(q.text, fetch_k)) for i, q in enumerate(questions)]
    best: dict[str, Any] | None = None
    for rrf_k in rrf_ks:
        for weight in bm25_weights:
            rows = []
            for q, (dense, sparse) in zip(questions, lists):
                fused = reciprocal_rank_fusion({"dense": dense, "bm25": sparse}, k=rrf_k,
                                               weights={"dense": 1.0, "bm25": weight})
                rows.append(retrieval_scores(doc_ranking(fused), q.relevant, k))
            means, _ = mean_scores(rows, [f"recall@{k}", f"mrr@{k}"])
            key = (means[f"recall@{k}"] or 0.0, means[f"mrr@{k}"] or 0.0)
            if best is None or key > best["key"]:
                best = {"key": key, "rrf_k": rrf_k, "weights": {"dense": 1.0, "bm25": weight},
                        f"recall@{k}": key[0], f"mrr@{k}": key[1]}
    assert best is not None
    best.pop("key")
    return best
