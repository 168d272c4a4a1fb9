"""Evaluation without an LLM: retrieval metrics, groundedness and citation
precision, never NaN; known-item questions from BBC News."""

from __future__ import annotations

import math

import pytest

from shipyard.genai import (
    Answer,
    Chunk,
    Citation,
    EvaluationReport,
    Hit,
    Question,
    bbc_news,
    known_item_questions,
    retrieval_scores,
    score_answer,
    split_questions,
    support,
)
from shipyard.genai._evaluation import aggregate_answer_scores, mean_scores


def test_retrieval_metrics_by_hand():
    assert retrieval_scores(["x", "a", "y", "b"], {"a", "b"}, k=2) == {
        "hit_rate@2": 1.0, "recall@2": 0.5, "mrr@2": 0.5,
        "ndcg@10": round((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)), 4)}
    assert retrieval_scores(["a"], {"a"}, k=10)["ndcg@10"] == 1.0


def test_empty_results_score_zero_and_unlabelled_questions_are_not_scorable():
    assert retrieval_scores([], {"a"}, k=5) == {"hit_rate@5": 0.0, "recall@5": 0.0,
                                                 "mrr@5": 0.0, "ndcg@10": 0.0}
    assert retrieval_scores(["a"], set(), k=5) is None
    means, skipped = mean_scores([None, None], ["recall@5"])
    assert means == {"recall@5": None} and skipped == 2  # None, never NaN


def chunk(text: str, cid: str = "d:0") -> Chunk:
    return Chunk(id=cid, doc_id=cid.split(":")[0], text=text, start=0, end=len(text),
                 source="d", title="D")


def answer(text: str, citations: list[Citation], hits: list[Hit]) -> Answer:
    return Answer(question="q", text=text, citations=tuple(citations), hits=tuple(hits),
                  generator="test")


def cite(marker: int, c: Chunk) -> Citation:
    return Citation(marker, c.id, c.doc_id, c.source, c.title, None, None, 0, len(c.text),
                    c.text)


def test_a_faithful_answer_is_grounded_and_precisely_cited():
    c = chunk("The tower is 330 metres tall. It opened in 1889.")
    scores = score_answer(answer("The tower is 330 metres tall. [1]", [cite(1, c)], [Hit(c, 1)]))
    assert (scores.groundedness, scores.citation_precision, scores.citation_recall) == (1, 1, 1)


def test_an_invented_sentence_lowers_groundedness_and_a_wrong_citation_precision():
    tall, other = chunk("The tower is 330 metres tall.", "a:0"), chunk("Paris has cafes.", "b:0")
    text = "The tower is 330 metres tall [1]. The tower is painted gold every week [2]."
    scores = score_answer(answer(text, [cite(1, tall), cite(2, other)],
                                 [Hit(tall, 1), Hit(other, 0.5)]))
    assert scores.groundedness == 0.5
    assert scores.citation_precision == 0.5 and scores.citation_recall == 0.5


def test_an_empty_context_scores_zero_and_a_refusal_is_not_scorable():
    c = chunk("The tower is 330 metres tall.")
    empty = score_answer(answer("The tower is 330 metres tall. [1]", [cite(1, c)], []))
    assert (empty.groundedness, empty.citation_precision, empty.citation_recall) == (0, 0, 0)
    refused = score_answer(Answer("q", "I could not find it.", (), (), "x", refusal="nothing"))
    assert refused.groundedness is None and "refused" in refused.not_scorable["groundedness"]
    uncited = score_answer(answer("The tower is 330 metres tall.", [], [Hit(c, 1)]))
    assert uncited.groundedness == 1.0 and uncited.citation_precision is None
    assert uncited.not_scorable == {"citation_precision": "the answer cites nothing"}
    means, why = aggregate_answer_scores([refused, empty])
    assert means["groundedness"] == 0.0 and means["refusal_rate"] == 0.5
    assert why["answers.groundedness"] == "1 of 2 answers not scorable"
    assert not any(isinstance(v, float) and math.isnan(v) for v in means.values())


def test_support_is_lexical_or_semantic(embedder):
    assert support("the the of", "anything") is None
    lexical = support("A man is eating food.", "Someone is having a meal.")
    semantic = support("A man is eating food.", "Someone is having a meal.", embedder=embedder)
    assert lexical == 0.0 and semantic > 0.6


def test_known_item_questions_over_bbc_news():
    docs = bbc_news(limit=40)
    questions = known_item_questions(docs + docs[:2])  # duplicates count once
    assert len(questions) == 40
    titled = [q for q in questions if any(q.text == d.title for d in docs)]
    assert 15 <= len(titled) <= 25
    by_id = {d.doc_id: d for d in docs}
    assert all(q.relevant and all(r in by_id for r in q.relevant) for q in questions)
    assert all(q.text in by_id[q.relevant[0]].text for q in questions)
    tune, held_out = split_questions(questions, 0.5, seed=1)
    assert len(tune) == 20 and not {q.id for q in tune} & {q.id for q in held_out}
    assert known_item_questions(docs, n=10, seed=3) == known_item_questions(docs, n=10, seed=3)


def test_a_sentence_that_near_duplicates_share_lists_them_all_as_relevant():
    from shipyard.genai import Document

    shared = "The central bank lifted interest rates to fight inflation."
    docs = [Document.from_text(f"{title}\n\n{body}", source=f"d{i}.txt", title=title)
            for i, (title, body) in enumerate([
                ("Bank raises rates", f"{shared} Markets fell."),
                ("Rates rise again", f"{shared} Shares slid on the news."),
                ("Striker wins cup", "The striker scored twice as the club won the final.")])]
    questions = {q.text: q.relevant for q in known_item_questions(docs)}
    # odd positions ask the first sentence: both articles hold d1's
    assert questions[shared] == (docs[1].doc_id, docs[0].doc_id)
    assert questions["Bank raises rates"] == (docs[0].doc_id,)  # titles: their own article
    assert questions["Striker wins cup"] == (docs[2].doc_id,)


def test_questions_coerce_from_mappings():
    q = Question.coerce({"text": "why?", "relevant": "a.md"})
    assert q == Question("why?", ("a.md",))
    report = EvaluationReport(k=5, n_questions=1, retrieval={"bm25": {"recall@5": None}})
    assert "n/a" in report.table() and report.metrics() == {}
    with pytest.raises(Exception, match="a question is a Question"):
        Question.coerce(42)
