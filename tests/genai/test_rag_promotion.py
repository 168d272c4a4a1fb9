"""Gated promotion of collection and prompt versions: the candidate and the
champion answer the same questions, absolute and paired gates decide, only a
passing candidate takes the alias, and every attempt is a run and an audit
entry. A deliberately worse index or prompt leaves the champion untouched."""

from __future__ import annotations

import pytest

from shipyard.errors import CollectionNotFoundError, GenAIError
from shipyard.genai import Document, ExtractiveGenerator, OpenAIChatGenerator, Rag
from shipyard.genai._evaluation import champion_check, load_rag_gates

from .fake_openai import FakeOpenAI, first_passage_answer

TOPICS = [
    "Volcanoes erupt molten basalt lava from magma chambers deep underground.",
    "Honeybees build hexagonal wax combs and store nectar as honey in the hive.",
    "Glaciers carve U-shaped valleys as compacted ice slowly grinds over bedrock.",
    "Chess openings such as the Sicilian Defence fight for the central squares.",
    "Sourdough bread rises because wild yeast ferments the flour in the starter.",
    "Submarines dive by flooding ballast tanks and surface by blowing them with air.",
    "Violins are strung with four strings tuned in perfect fifths: G, D, A and E.",
    "Lighthouses warn ships with a rotating lamp magnified by a Fresnel lens.",
]
QUESTIONS = [
    {"text": "How does a volcano erupt basalt lava from magma?", "relevant": ["t0"]},
    {"text": "Where do honeybees store nectar and honey in wax combs?", "relevant": ["t1"]},
    {"text": "How do glaciers carve valleys from bedrock?", "relevant": ["t2"]},
    {"text": "Which chess openings fight for the central squares?", "relevant": ["t3"]},
    {"text": "Why does sourdough bread rise with wild yeast?", "relevant": ["t4"]},
    {"text": "How does a submarine dive with ballast tanks?", "relevant": ["t5"]},
    {"text": "How are the four violin strings tuned?", "relevant": ["t6"]},
    {"text": "How do lighthouses warn ships with a lamp and lens?", "relevant": ["t7"]},
]
GATES = ["hybrid.ndcg@10 >= 0.6", "hybrid.ndcg@10 >= champion - 0.05"]


def corpus(shift: int = 0, extra: bool = False) -> list[Document]:
    """The topics; ``shift`` puts each topic's text under another source (a
    deliberately broken index: every question finds the wrong document)."""
    docs = [Document.from_text(TOPICS[(i + shift) % len(TOPICS)], source=f"t{i}")
            for i in range(len(TOPICS))]
    if extra:
        docs.append(Document.from_text("Penguins huddle together to survive the Antarctic "
                                       "winter.", source="t8"))
    return docs


@pytest.fixture
def docs_rag(ws, embedder):
    rag = Rag(ws, embedder=embedder)
    rag.ingest("docs", corpus())                 # docs@1: good
    rag.ingest("docs", corpus(shift=3))          # docs@2: deliberately worse
    rag.ingest("docs", corpus(extra=True))       # docs@3: good, one document more
    yield rag
    rag.close()


def test_a_worse_index_is_refused_and_a_good_one_promoted(ws, docs_rag):
    rag = docs_rag
    first = rag.promote("docs@1", QUESTIONS, gates=GATES, reason="first release")
    assert first.promoted and first.champion is None
    assert [c.reason for c in first.gates.checks][1] == "no current champion"
    assert rag.aliases("docs") == {"champion": 1}
    assert rag.get("docs@champion").version == 1

    worse = rag.promote("docs@2", QUESTIONS, gates=GATES)
    assert not worse.promoted and worse.champion == "docs@1"
    assert [c.passed for c in worse.gates.checks] == [False, False]
    assert worse.candidate_scores["hybrid.ndcg@10"] < 0.6 <= worse.champion_scores[
        "hybrid.ndcg@10"]
    table = str(worse)
    assert "FAIL" in table and "refused: @champion stays on docs@1" in table
    assert "champion.hybrid.ndcg@10.paired_bootstrap" in table
    assert rag.aliases("docs") == {"champion": 1}  # untouched
    hits = rag.query("docs@champion", "How do glaciers carve valleys?", k=1)
    assert hits[0].chunk.doc_id == "t2" and "Glaciers" in hits[0].chunk.text

    better = rag.promote("docs@3", QUESTIONS, gates=GATES)
    assert better.promoted and better.passed and rag.aliases("docs") == {"champion": 3}
    assert rag.get("docs@champion").version == 3
    assert rag.query("docs@champion", "penguins antarctic", k=1)[0].chunk.doc_id == "t8"
    again = rag.promote("docs@3", QUESTIONS, gates=GATES)
    assert again.already and again.run_id is None and "nothing to do" in str(again)

    # Every attempt is audited with its gates, and is a run with both sides' scores.
    entries = ws.audit.entries("rag.collection", "docs")
    assert [e.action for e in entries] == ["rag.alias.set", "rag.promote", "rag.promote",
                                           "rag.alias.set", "rag.promote"]
    refused = entries[2].details
    assert refused["promoted"] is False and refused["candidate"] == "docs@2"
    assert [c["passed"] for c in refused["gates"]["checks"]] == [False, False]
    assert entries[0].reason.startswith("first release; gates passed")
    runs = ws.runs.search("tags.`rag.kind` = 'promote'", experiment="rag")
    assert sorted(r.tags["rag.promoted"] for r in runs) == ["false", "true", "true"]
    run = ws.runs.get(worse.run_id)
    assert run.metrics["candidate.hybrid.ndcg_at_10"] < run.metrics["champion.hybrid.ndcg_at_10"]
    assert run.metrics["gates_failed"] == 2
    history = rag.alias_history("docs")
    assert [(h["event"], h["version"], h["previous_version"]) for h in history] == [
        ("set", 1, None), ("set", 3, 1)]


def test_aliases_can_be_set_and_removed_and_refs_read_them(ws, docs_rag):
    rag = docs_rag
    with pytest.raises(CollectionNotFoundError, match="no alias 'champion'; aliases: none"):
        rag.get("docs@champion")
    rag.set_alias("docs@2", "canary", reason="try it")
    assert rag.get("docs@canary").version == 2
    assert rag.query("docs@canary", "glaciers", k=1)[0].chunk.doc_id != "t2"
    rag.remove_alias("docs", "canary")
    with pytest.raises(CollectionNotFoundError, match="no alias 'canary'"):
        rag.query("docs@canary", "glaciers")
    with pytest.raises(CollectionNotFoundError):
        rag.remove_alias("docs", "canary")
    with pytest.raises(CollectionNotFoundError, match="no version 9"):
        rag.set_alias("docs@9", "canary")
    for bad in ("docs@Champion", "docs@latest!", "docs@-1", "docs@"):
        with pytest.raises(GenAIError):
            rag.get(bad)
    with pytest.raises(GenAIError, match="reserved"):
        rag.set_alias("docs@1", "latest")
    assert [e.action for e in ws.audit.entries("rag.collection", "docs")] == [
        "rag.alias.set", "rag.alias.remove"]


BAD_GATES = [
    (["hybrid.nope >= 0.5"], "unknown gate metric 'hybrid.nope'"),
    (["answers.groundedness >= 0.5"], "unknown gate metric"),   # answers not evaluated
    (["judge.faithfulness >= 0.5"], "unknown gate metric"),     # no judge
    (["ndcg > 3"], "cannot read the gate"),
    (["hybrid.ndcg@10 <= champion - 0.1"], "compare with the champion"),
    ([42], "gate line must be text"),
    (["x" * 400], "at most 300"),
    (42, "mapping or a list"),
    ({"metrics": {"hybrid.ndcg@10": {"min": "high"}}}, "invalid gates"),
    ({"metrics": {"hybrid.ndcg@10": {}}}, "invalid gates"),
    ({"champion": {"metric": "hybrid.ndcg@10", "max_drop": -1}}, "invalid gates"),
    ({"champion": {"metric": "hybrid.ndcg@10", "test": "vibes"}}, "invalid gates"),
    ({"champion": {"metric": "hybrid.ndcg@10", "alpha": 2}}, "invalid gates"),
    ({"bogus": 1}, "invalid gates"),
    ({}, "hold no rule"),
    (["answers.refusal_rate >= champion - 0.1"], "unknown gate metric"),
]


def test_malformed_gates_are_refused_before_anything_runs(ws, docs_rag):
    for gates, message in BAD_GATES:
        with pytest.raises(GenAIError, match=message):
            docs_rag.promote("docs@1", QUESTIONS, gates=gates)
    assert docs_rag.aliases("docs") == {}
    assert ws.runs.search("tags.`rag.kind` = 'promote'", experiment="rag") == []


def test_bad_candidates_questions_and_aliases_change_nothing(ws, docs_rag):
    rag = docs_rag
    rag.promote("docs@1", QUESTIONS, gates=GATES)
    for ref, questions, kwargs, error in [
            ("nope@1", QUESTIONS, {}, CollectionNotFoundError),
            ("docs@9", QUESTIONS, {}, CollectionNotFoundError),
            ("docs@3", [], {}, GenAIError),
            ("docs@3", "How?", {}, GenAIError),
            ("docs@3", [{"text": "x" * 20_000, "relevant": ["t0"]}], {}, GenAIError),
            ("docs@3", [{"text": "", "relevant": ["t0"]}], {}, GenAIError),
            ("docs@3", [{"text": "ok?", "relevant": [3]}], {}, GenAIError),
            ("docs@3", [{"relevant": ["t0"]}], {}, GenAIError),
            ("docs@3", QUESTIONS, {"alias": "Champion"}, GenAIError),
            ("docs@3", QUESTIONS, {"reason": "x" * 5000}, GenAIError),
            (42, QUESTIONS, {}, GenAIError)]:
        with pytest.raises(error):
            rag.promote(ref, questions, gates=GATES, **kwargs)
    assert rag.aliases("docs") == {"champion": 1}
    assert len(ws.runs.search("tags.`rag.kind` = 'promote'", experiment="rag")) == 1


def grounded_only_when_told(messages):
    """A fake model that cites the passages only when its system prompt says
    CITE; otherwise it makes something up."""
    if "CITE" in messages[0]["content"]:
        return first_passage_answer(messages)
    return "Bananas are a yellow fruit that monkeys enjoy eating."


def test_a_worse_prompt_is_refused_and_the_champion_prompt_kept(ws, embedder):
    rag = Rag(ws, embedder=embedder)
    try:
        rag.ingest("docs", corpus())
        with FakeOpenAI(reply=grounded_only_when_told) as server:
            generator = OpenAIChatGenerator("fake-chat", base_url=server.url, api_key="k")
            good = rag.prompts.register("qa", system="CITE the passages as [n].",
                                        template="{context}\n\nQuestion: {question}")
            bad = rag.prompts.register("qa", system="Answer creatively.",
                                       template="{context}\n\nQuestion: {question}")
            first = rag.promote_prompt(good.ref, "docs", QUESTIONS, generator=generator)
            assert first.promoted and first.kind == "prompt"
            assert rag.prompts.get("qa@champion").ref == "qa@1"
            assert first.candidate_scores["answers.groundedness"] == 1.0
            calls = server.chat_calls
            worse = rag.promote_prompt(bad.ref, "docs", QUESTIONS, generator=generator,
                                       gates=["answers.groundedness >= champion - 0.1",
                                              "answers.citation_recall >= 0.5"])
            assert server.chat_calls == calls + 2 * len(QUESTIONS)  # both sides answered
            assert not worse.promoted and worse.champion == "qa@1"
            assert worse.candidate_scores["answers.groundedness"] == 0.0
            assert rag.prompts.get("qa@champion").ref == "qa@1"  # untouched
            signed = rag.promote_prompt(bad.ref, "docs", QUESTIONS, generator=generator,
                                        gates={"champion": {"metric": "answers.groundedness",
                                                            "test": "sign"}})
            assert not signed.promoted
            assert "worse by more than 0 on 8 of 8 questions" in signed.gates.checks[0].reason
            with pytest.raises(GenAIError, match="writes no prompt"):
                rag.promote_prompt(bad.ref, "docs", QUESTIONS, generator=ExtractiveGenerator())
            with pytest.raises(GenAIError, match="reserved"):
                rag.promote_prompt(bad.ref, "docs", QUESTIONS, generator=generator,
                                   alias="latest")
            with pytest.raises(CollectionNotFoundError):
                rag.promote_prompt(bad.ref, "nope", QUESTIONS, generator=generator)
        attempts = [e for e in ws.audit.entries("model", "prompt.qa")
                    if e.action == "rag.promote"]
        assert [e.details["promoted"] for e in attempts] == [True, False, False]
        assert [e.action for e in ws.audit.entries("model", "prompt.qa")
                if e.action.startswith("model.alias")] == ["model.alias.set"]
    finally:
        rag.close()


def test_champion_check_pairs_questions():
    policy = load_rag_gates(["hybrid.mrr@10 >= champion - 0.1"], default_metric="x",
                            known=["hybrid.mrr@10"])
    rule = policy.champion[0]
    same = [0.5, 1.0, None, 0.0]
    assert champion_check(rule, same, same).passed          # identical: no worse
    assert champion_check(rule, same, None).reason == "no current champion"
    worse = champion_check(rule, [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0])
    assert not worse.passed and worse.observed == -1.0
    slight = champion_check(rule, [0.95, 0.95, 0.95, 0.95], [1.0, 1.0, 1.0, 1.0])
    assert slight.passed  # within the allowed drop of 0.1
    unmeasured = champion_check(rule, [None, 1.0], [1.0, None])
    assert not unmeasured.passed and "not measured" in unmeasured.reason
    with pytest.raises(GenAIError, match="better when lower"):
        load_rag_gates(["answers.refusal_rate >= champion - 0.1"], default_metric="x",
                       known=["answers.refusal_rate"])
    bounded = load_rag_gates(["answers.refusal_rate <= 0.2"], default_metric="x",
                             known=["answers.refusal_rate"])
    assert bounded.metrics["answers.refusal_rate"].max == 0.2
