"""Deterministic evaluation, no LLM: retrieval quality on labelled questions,
answer groundedness and citation precision by lexical (and optionally
embedding) support.

Scores are never NaN: a score that cannot be computed is ``None`` with its
reason in ``not_scorable``; an empty result or an empty context scores 0.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shipyard.errors import GenAIError
from shipyard.genai._bm25 import analyse
from shipyard.genai._embeddings import Embedder
from shipyard.genai._generation import answer_sentences, split_sentences
from shipyard.genai._records import Answer, Document, Hit
from shipyard.genai._retrieval import (
    DEFAULT_FUSION,
    DEFAULT_FUSION_WEIGHTS,
    FUSIONS,
    MODES,
    Retriever,
    fuse,
    hybrid_depth,
)

NDCG_AT = 10
#: Longest question text accepted, in characters.
MAX_QUESTION_CHARS = 10_000
#: Most questions one evaluation or promotion takes.
MAX_QUESTIONS = 20_000


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
            text = item["text"]
            if not isinstance(text, str) or not text.strip() or "\x00" in text \
                    or len(text) > MAX_QUESTION_CHARS:
                raise GenAIError(f"a question's text must be 1 to {MAX_QUESTION_CHARS:,} "
                                 f"characters without NUL, got {str(text)[:60]!r}"
                                 + (f" ({len(text):,} characters)" if isinstance(text, str)
                                    else ""))
            rel = item.get("relevant") or ()
            rel = (rel,) if isinstance(rel, str) else tuple(rel)
            if not all(isinstance(r, str) for r in rel):
                raise GenAIError(f"the relevant documents of question {text[:60]!r} must be "
                                 "document ids (text)")
            return cls(text=text, relevant=rel, id=item.get("id"))
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
        One dict per question: text, relevant, each mode's ranking and scores
        (and ``answer``, ``judge`` when answers were evaluated).
    judge
        The LLM judge's means and accounting (:meth:`JudgeReport.to_dict`),
        or ``{"dry_run": True, "estimate": ...}``; ``None`` without a judge.
    prompt
        The prompt template version the answers were written with, if any.
    """

    k: int
    n_questions: int
    retrieval: dict[str, dict[str, float | None]]
    answers: dict[str, float | None] | None = None
    not_scorable: dict[str, str] = field(default_factory=dict)
    per_question: list[dict[str, Any]] = field(default_factory=list, repr=False)
    judge: dict[str, Any] | None = None
    prompt: str | None = None

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
        judge = self.judge or {}
        if judge.get("dry_run"):
            estimate = judge.get("estimate") or {}
            for name in ("calls", "prompt_tokens", "completion_tokens", "cost"):
                out[f"judge.estimated_{name}"] = float(estimate.get(name, 0))
        else:
            for name, value in (judge.get("means") or {}).items():
                if value is not None:
                    out[f"judge.{name}"] = value
            for name in ("calls", "cached", "prompt_tokens", "completion_tokens",
                         "usage_missing", "cost"):
                if name in judge:
                    out[f"judge.{name}"] = float(judge[name])
        return out

    def values(self) -> dict[str, float | None]:
        """Every score by its gate name (``hybrid.ndcg@10``,
        ``answers.groundedness``, ``judge.faithfulness``); ``None``: not
        scorable."""
        out: dict[str, float | None] = {}
        for mode, scores in self.retrieval.items():
            for name, value in scores.items():
                out[f"{mode}.{name}"] = value
        for name, value in (self.answers or {}).items():
            out[f"answers.{name}"] = value
        if self.judge and not self.judge.get("dry_run"):
            for name, value in (self.judge.get("means") or {}).items():
                out[f"judge.{name}"] = value
        return out

    def question_values(self, metric: str) -> list[float | None]:
        """``metric`` (a gate name, see :meth:`values`) per question, in order."""
        part, _, name = metric.partition(".")
        out: list[float | None] = []
        for item in self.per_question:
            if part == "answers":
                value = ((item.get("answer") or {}).get("scores") or {}).get(name)
            elif part == "judge":
                value = ((item.get("judge") or {}).get("scores") or {}).get(name)
            else:
                value = ((item.get(part) or {}).get("scores") or {}).get(name)
            out.append(float(value) if isinstance(value, (int, float)) else None)
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
    questions = coerce_questions(questions)
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


def coerce_questions(questions: object) -> list[Question]:
    """Questions from :class:`Question` objects or mappings, checked: at least
    one, at most :data:`MAX_QUESTIONS`."""
    if isinstance(questions, (str, bytes, Mapping)) or not isinstance(questions, Iterable):
        raise GenAIError(f"questions must be a list of Questions or mappings, got "
                         f"{type(questions).__name__}")
    items = list(questions)
    if not items:
        raise GenAIError("no questions to evaluate", hint="pass at least one labelled question")
    if len(items) > MAX_QUESTIONS:
        raise GenAIError(f"{len(items):,} questions are over the limit of {MAX_QUESTIONS:,}",
                         hint="evaluate a sample (known_item_questions(..., n=500))")
    return [Question.coerce(q) for q in items]


def evaluate_answers(report: EvaluationReport, retriever: Retriever, generator: Any, *,
                     answer_k: int = 5, judge: Any = None, dry_run: bool = False) -> None:
    """Answer each question of ``report`` with ``generator`` (hybrid search,
    ``answer_k`` chunks), score the answers without an LLM and, with
    ``judge``, by the judge (``dry_run``: only its estimate); fill
    ``report.answers``, ``report.judge`` and the per-question entries."""
    scores = []
    answers = []
    for item in report.per_question:
        hits = retriever.search(item["text"], k=answer_k, mode="hybrid")
        result = generator.generate(item["text"], hits)
        answers.append(result)
        scored = score_answer(result)
        scores.append(scored)
        item["answer"] = {"text": result.text, "refusal": result.refusal,
                          "prompt": result.prompt, "scores": scored.to_dict()}
    report.answers, why = aggregate_answer_scores(scores)
    report.not_scorable.update(why)
    if judge is None:
        return
    if dry_run:
        report.judge = {"dry_run": True, "estimate": judge.estimate(answers).to_dict()}
        return
    judged = judge.judge_answers(answers)
    report.judge = judged.to_dict()
    report.not_scorable.update(judged.not_scorable)
    for item, verdict in zip(report.per_question, judged.verdicts):
        item["judge"] = verdict.to_dict()


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
    several documents (the same title, or a sentence that near-duplicate
    articles both hold) lists them all as relevant.

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
    for doc in docs:  # a sentence query has every document holding it as an answer
        for a, b in split_sentences(doc.text):
            held = relevant.get(" ".join(doc.text[a:b].split()).lower())
            if held is not None and doc.doc_id not in held:
                held.append(doc.doc_id)
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
                convex_bm25_weights: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                                        0.8, 0.9),
                fusions: Sequence[str] = FUSIONS, fetch_k: int | None = None
                ) -> dict[str, Any]:
    """Choose the fusion that gives the best recall@k (then MRR) on
    ``questions``: RRF over ``rrf_ks`` × ``bm25_weights`` (dense weight 1),
    convex fusion over ``convex_bm25_weights`` (dense weight 1 − w). The
    default fusion is tried first and kept on a tie: tuning leaves it only
    for a better score, not for an equal one found later in the grid. Tune on
    one part of a question set, report on the other (:func:`split_questions`).
    Candidates are those :meth:`Retriever.search` fuses for the depth
    :func:`evaluate_retrieval` asks for (``fetch_k``: as in ``search``).

    Returns ``{"fusion", "rrf_k", "weights", "recall@k", "mrr@k"}``; the first
    three are :class:`Retriever`'s arguments of the same names.
    """
    bad = [f for f in fusions if f not in FUSIONS]
    if bad:
        raise GenAIError(f"unknown fusion {bad[0]!r}", hint=f"use one of {FUSIONS}")
    vectors = retriever.embedder.embed([q.text for q in questions])
    depth = hybrid_depth(max(k, NDCG_AT), fetch_k)
    lists = [(retriever.dense(q.text, depth, vector=vectors[i]),
              retriever.bm25(q.text, depth)) for i, q in enumerate(questions)]
    grid: list[tuple[str, float, dict[str, float]]] = []
    if DEFAULT_FUSION in fusions:  # first, so that a tie keeps it
        grid.append((DEFAULT_FUSION, float(retriever.rrf_k),
                     dict(DEFAULT_FUSION_WEIGHTS[DEFAULT_FUSION])))
    if "rrf" in fusions:
        grid += [("rrf", float(c), {"dense": 1.0, "bm25": float(w)})
                 for c in rrf_ks for w in bm25_weights]
    if "convex" in fusions:
        grid += [("convex", float(retriever.rrf_k), {"dense": round(1.0 - w, 6),
                                                      "bm25": float(w)})
                 for w in convex_bm25_weights]
    best: dict[str, Any] | None = None
    for method, rrf_k, weights in grid:
        rows = []
        for q, (dense, sparse) in zip(questions, lists):
            fused = fuse({"dense": dense, "bm25": sparse}, method, rrf_k=rrf_k,
                         weights=weights, depth=depth)
            rows.append(retrieval_scores(doc_ranking(fused), q.relevant, k))
        means, _ = mean_scores(rows, [f"recall@{k}", f"mrr@{k}"])
        key = (means[f"recall@{k}"] or 0.0, means[f"mrr@{k}"] or 0.0)
        if best is None or key > best["key"]:
            best = {"key": key, "fusion": method, "rrf_k": rrf_k, "weights": weights,
                    f"recall@{k}": key[0], f"mrr@{k}": key[1]}
    if best is None:
        raise GenAIError("nothing to tune", hint="give at least one fusion and weight")
    best.pop("key")
    return best


# ------------------------------------------------------------------ promotion
#: Champion comparisons: a bootstrap bound on the mean paired change, or a
#: sign test on per-question wins and losses.
CHAMPION_TESTS = ("paired_bootstrap", "sign")
_GATE_TEXT = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][\w.@-]*)\s*(?P<op>>=|<=)\s*"
    r"(?:(?P<champion>champion)\s*(?:-\s*(?P<drop>\d+(?:\.\d+)?))?|(?P<value>-?\d+(?:\.\d+)?))"
    r"\s*$")
_GATES_HINT = ('gates are {"metrics": {"hybrid.ndcg@10": {"min": 0.8}}, "champion": '
               '{"metric": "hybrid.ndcg@10", "max_drop": 0.02}} or lines like '
               '"hybrid.ndcg@10 >= 0.8" and "hybrid.ndcg@10 >= champion - 0.02"')


def _pydantic_rules():
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    from shipyard.evaluate import MetricRule

    class ChampionRule(BaseModel):
        """The candidate may be worse than the alias holder on ``metric`` by
        at most ``max_drop``, on the same questions (see
        :func:`champion_check`)."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        metric: str
        max_drop: float = Field(0.0, ge=0, le=1)
        test: str = "paired_bootstrap"
        alpha: float = Field(0.05, gt=0, lt=1)
        n_resamples: int = Field(2000, ge=100, le=100_000)
        seed: int = 0

        @field_validator("test")
        @classmethod
        def _test(cls, value: str) -> str:
            if value not in CHAMPION_TESTS:
                raise ValueError(f"test must be one of {CHAMPION_TESTS}")
            return value

    class Policy(BaseModel):
        """Gates of a collection or prompt version (see :func:`load_rag_gates`)."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        metrics: dict[str, MetricRule] = {}
        champion: list[ChampionRule] = []

        @field_validator("champion", mode="before")
        @classmethod
        def _one_or_many(cls, value: Any) -> Any:
            return [value] if isinstance(value, Mapping) else value

    return Policy, ChampionRule


def load_rag_gates(gates: Any, *, default_metric: str, known: Sequence[str]) -> Any:
    """A checked gate policy from a mapping (the model gates' ``metrics``
    vocabulary plus ``champion`` rules with ``max_drop``) or a list of lines
    (``"hybrid.ndcg@10 >= 0.8"``, ``"hybrid.mrr@10 >= champion - 0.02"``).
    ``None``: the candidate may not be worse than the champion on
    ``default_metric``. Metric names must be among ``known``.

    Raises
    ------
    GenAIError
        A malformed policy, a line that does not parse, an unknown metric.
    """
    from pydantic import ValidationError

    policy_cls, _ = _pydantic_rules()
    if gates is None:
        gates = {"champion": {"metric": default_metric}}
    if isinstance(gates, str):
        gates = [gates]
    if isinstance(gates, Sequence) and not isinstance(gates, Mapping):
        gates = _gates_from_lines(gates)
    if not isinstance(gates, Mapping):
        raise GenAIError(f"gates must be a mapping or a list of lines, got "
                         f"{type(gates).__name__}", hint=_GATES_HINT)
    try:
        policy = policy_cls.model_validate(dict(gates))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
                             for e in exc.errors())
        raise GenAIError(f"invalid gates: {problems}", hint=_GATES_HINT) from exc
    names = [*policy.metrics, *(r.metric for r in policy.champion)]
    unknown = [n for n in names if n.replace("_at_", "@") not in known]
    if unknown:
        raise GenAIError(f"unknown gate metric {unknown[0]!r}",
                         hint=f"gate on one of: {', '.join(known)}")
    if not names:
        raise GenAIError("the gates hold no rule", hint=_GATES_HINT)
    lower = [r.metric for r in policy.champion if r.metric.endswith("refusal_rate")]
    if lower:
        raise GenAIError(f"{lower[0]} is better when lower; champion rules compare scores "
                         "where higher is better",
                         hint=f"bound it instead: '{lower[0]} <= 0.2'")
    return policy


def _gates_from_lines(lines: Sequence[Any]) -> dict[str, Any]:
    metrics: dict[str, dict[str, float]] = {}
    champion: list[dict[str, Any]] = []
    for line in lines:
        if not isinstance(line, str) or len(line) > 300:
            raise GenAIError(f"a gate line must be text of at most 300 characters, got "
                             f"{str(line)[:60]!r}", hint=_GATES_HINT)
        match = _GATE_TEXT.match(line)
        if match is None:
            raise GenAIError(f"cannot read the gate {line!r}", hint=_GATES_HINT)
        metric = match["metric"]
        if match["champion"]:
            if match["op"] != ">=":
                raise GenAIError(f"gate {line!r}: compare with the champion as "
                                 "'METRIC >= champion - DROP'", hint=_GATES_HINT)
            champion.append({"metric": metric, "max_drop": float(match["drop"] or 0.0)})
        else:
            metrics.setdefault(metric, {})["min" if match["op"] == ">=" else "max"] = \
                float(match["value"])
    return {"metrics": metrics, "champion": champion}


def known_metrics(modes: Sequence[str], k: int, *, answers: bool,
                  judge_criteria: Sequence[str] = ()) -> list[str]:
    """The gate names an evaluation with these settings measures."""
    names = [f"{m}.{s}" for m in modes
             for s in (f"hit_rate@{k}", f"recall@{k}", f"mrr@{k}", f"ndcg@{NDCG_AT}")]
    if answers:
        names += [f"answers.{s}" for s in ("groundedness", "citation_precision",
                                           "citation_recall", "refusal_rate")]
    names += [f"judge.{c}" for c in judge_criteria]
    return names


def champion_check(rule: Any, candidate: Sequence[float | None],
                   champion: Sequence[float | None] | None) -> Any:
    """Whether the candidate is no worse than the champion by more than
    ``rule.max_drop`` on ``rule.metric``, paired over the questions both
    could be scored on.

    ``paired_bootstrap``: the mean per-question change ``candidate −
    champion`` is resampled ``n_resamples`` times (seeded); it passes iff the
    lower ``1 − alpha`` bound is at least ``−max_drop`` (identical versions
    pass: every change is 0). ``sign``: questions where the candidate is
    worse by more than ``max_drop`` are losses, better ones wins; it fails
    iff losses outnumber wins and P(Binomial(wins + losses, ½) ≥ losses) <
    ``alpha``.
    """
    from shipyard.evaluate import GateCheck

    metric = rule.metric.replace("_at_", "@")
    name = f"champion.{metric}.{rule.test}"
    threshold = -rule.max_drop
    if champion is None:
        return GateCheck(name, True, None, threshold, "no current champion")
    pairs = [(a, b) for a, b in zip(candidate, champion) if a is not None and b is not None]
    if not pairs:
        return GateCheck(name, False, None, threshold,
                         "not measured: no question is scorable for both versions")
    diff = np.array([a - b for a, b in pairs], dtype=float)
    observed = float(diff.mean())
    if rule.test == "sign":
        from scipy.stats import binomtest

        losses = int(np.sum(diff < -rule.max_drop - 1e-12))
        wins = int(np.sum(diff > 1e-12))
        p = float(binomtest(losses, wins + losses, 0.5, alternative="greater").pvalue) \
            if wins + losses else 1.0
        ok = not (losses > wins and p < rule.alpha)
        return GateCheck(name, ok, observed, threshold,
                         f"{metric}: candidate better on {wins}, worse by more than "
                         f"{rule.max_drop:g} on {losses} of {len(diff)} questions, p={p:.3g} "
                         f"vs alpha {rule.alpha:g}: {'no worse' if ok else 'worse'}")
    rng = np.random.default_rng(rule.seed)
    idx = rng.integers(0, len(diff), size=(rule.n_resamples, len(diff)))
    low = float(np.quantile(diff[idx].mean(axis=1), rule.alpha))
    ok = low >= threshold - 1e-12
    return GateCheck(name, ok, observed, threshold,
                     f"{metric}: mean change {observed:+.4g} over {len(diff)} questions, lower "
                     f"{1 - rule.alpha:.0%} bound {low:+.4g} vs {threshold:+.4g}: "
                     f"{'no worse' if ok else 'worse'}")


def check_rag_gates(policy: Any, candidate: EvaluationReport,
                    champion: EvaluationReport | None) -> Any:
    """Every gate's verdict (:class:`~shipyard.evaluate.GateResult`): the
    absolute ``metrics`` rules on the candidate's scores (a score that is not
    scorable fails: "not measured"), then each champion rule."""
    from shipyard.evaluate import GatePolicy, GateResult, check_gates

    values = {k: v for k, v in candidate.values().items() if v is not None}
    absolute = check_gates(GatePolicy(metrics={k.replace("_at_", "@"): v
                                               for k, v in policy.metrics.items()}),
                           {"metrics": values})
    checks = list(absolute.checks)
    for rule in policy.champion:
        metric = rule.metric.replace("_at_", "@")
        checks.append(champion_check(rule, candidate.question_values(metric),
                                     None if champion is None
                                     else champion.question_values(metric)))
    return GateResult(checks)


@dataclass(frozen=True)
class RagPromotion:
    """What :meth:`Rag.promote` / :meth:`Rag.promote_prompt` decided.

    Attributes
    ----------
    kind
        ``"collection"`` or ``"prompt"``.
    candidate
        The version tried (``docs@3``, ``qa@2``).
    champion
        The alias holder it was compared with, or ``None``.
    alias
        The alias it was to take.
    promoted
        Whether the alias now points at the candidate.
    gates
        Every gate's verdict (:class:`~shipyard.evaluate.GateResult`).
    candidate_scores, champion_scores
        Scores by gate name (``None``: not scorable / no champion).
    run_id
        The tracking run that records the attempt (``None`` if ``already``).
    already
        The candidate held the alias already; nothing was evaluated.
    questions
        How many questions both were evaluated on.
    """

    kind: str
    candidate: str
    champion: str | None
    alias: str
    promoted: bool
    gates: Any
    candidate_scores: dict[str, float | None] = field(default_factory=dict)
    champion_scores: dict[str, float | None] | None = None
    run_id: str | None = None
    already: bool = False
    questions: int = 0

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return self.gates.passed

    def table(self) -> str:
        """The gates as a text table, then the verdict."""
        head = (f"{self.kind} {self.candidate} -> @{self.alias} (champion: "
                f"{self.champion or 'none'}, {self.questions} questions)")
        if self.already:
            return f"{head}\nalready holds @{self.alias}: nothing to do"
        rows = [("gate", "observed", "threshold", "result", "why")]
        for c in self.gates.checks:
            rows.append((c.name, "n/a" if c.observed is None else f"{c.observed:+.4f}"
                         if c.name.startswith("champion.") else f"{c.observed:.4f}",
                         "n/a" if c.threshold is None else f"{c.threshold:g}",
                         "pass" if c.passed else "FAIL", c.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head] + ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4]
                          for r in rows]
        verdict = (f"promoted: @{self.alias} -> {self.candidate}" if self.promoted else
                   f"refused: @{self.alias} stays on {self.champion or '(unset)'}")
        return "\n".join([*lines, verdict])

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "candidate": self.candidate, "champion": self.champion,
                "alias": self.alias, "promoted": self.promoted, "passed": self.passed,
                "gates": self.gates.to_dict(), "candidate_scores": self.candidate_scores,
                "champion_scores": self.champion_scores, "run_id": self.run_id,
                "already": self.already, "questions": self.questions}
