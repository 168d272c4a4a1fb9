"""Prompt templates versioned in the model registry: content-hashed versions,
aliases and audit entries, templates checked before anything is recorded, and
answers that say which prompt version wrote them."""

from __future__ import annotations

import pytest

from shipyard.errors import GenAIError, PromptNotFoundError
from shipyard.genai import (
    USER_TEMPLATE,
    Document,
    ExtractiveGenerator,
    OpenAIChatGenerator,
    PromptTemplate,
    build_messages,
    template_fields,
)
from shipyard.genai._prompts import MAX_SYSTEM_CHARS, MAX_TEMPLATE_CHARS

TEMPLATE = "Passages:\n{context}\n\nAnswer this: {question}"
DOCS = [Document.from_text("The Eiffel Tower is 330 metres tall. It stands in Paris.",
                           source="paris"),
        Document.from_text("Big Ben is the bell of the clock tower in London.",
                           source="london")]


def test_register_versions_by_content_with_aliases_and_audit(ws):
    prompts = ws.rag.prompts
    first = prompts.register("qa", system="Answer from the passages.", template=TEMPLATE,
                             description="first", reason="baseline")
    assert (first.ref, first.new, first.template) == ("qa@1", True, TEMPLATE)
    again = prompts.register("qa", system="Answer from the passages.", template=TEMPLATE)
    assert (again.ref, again.new, again.digest) == ("qa@1", False, first.digest)
    second = prompts.register("qa", system="Answer briefly from the passages.",
                              template=TEMPLATE)
    assert second.ref == "qa@2" and second.digest != first.digest
    default = prompts.register("other")  # the built-in prompt, as a version
    assert default.template == USER_TEMPLATE

    assert [p.ref for p in prompts.versions("qa")] == ["qa@1", "qa@2"]
    assert prompts.versions("never") == []
    assert prompts.get("qa").ref == prompts.get("qa@latest").ref == "qa@2"
    assert sorted(p.ref for p in prompts.list()) == ["other@1", "qa@2"]

    prompts.set_alias("qa", "champion", 1, reason="first release")
    assert prompts.get("qa@champion").system == "Answer from the passages."
    prompts.set_alias("qa", "champion", 2)
    assert prompts.get("qa@champion").ref == "qa@2"
    assert prompts.rollback("qa", "champion").ref == "qa@1"
    assert [e.event for e in prompts.alias_history("qa")] == ["set", "set", "rollback"]
    # The registry's own records: the same versions, aliases and audit trail.
    model = ws.models.get("prompt.qa@champion")
    assert model.version == 1 and model.aliases == ("champion",)
    actions = [e.action for e in ws.audit.entries("model", "prompt.qa")]
    assert actions == ["model.register", "model.register", "model.alias.set",
                       "model.alias.set", "model.alias.rollback"]
    assert ws.audit.entries("model", "prompt.qa")[0].reason == "baseline"
    prompts.remove_alias("qa", "champion")
    with pytest.raises(PromptNotFoundError, match="champion"):
        prompts.get("qa@champion")


def test_prompt_versions_survive_garbage_collection(ws):
    p = ws.rag.prompts.register("qa", system="S", template=TEMPLATE)
    ws.gc(grace_seconds=0)
    ws.rag.prompts._loaded.clear()  # read the artifact again, not the memory
    assert ws.rag.prompts.get("qa@1").template == TEMPLATE
    assert ws.artifacts.exists(p.digest)


@pytest.mark.parametrize(("system", "template", "message"), [
    ("S", "{context} {question} {answer}", r"unknown placeholder \{answer\}"),
    ("S", "{context} only", r"lacks \{question\}"),
    ("S", "no placeholders", r"lacks \{question\} and \{context\}"),
    ("S", "{context} {question", "unbalanced braces"),
    ("S", "{context} {question} }", "unbalanced braces"),
    ("S", "{context} {question.__class__}", "unknown placeholder"),
    ("S", "{context} {question!r}", "conversion"),
    ("S", "{context} {question:>10}", "format spec"),
    ("S", "{0} {context} {question}", r"unknown placeholder \{0\}"),
    ("S", "{context} {question} {}", r"unknown placeholder \{\}"),
    ("Use {context}", TEMPLATE, "system prompt may not hold placeholders"),
    ("", TEMPLATE, "system prompt is empty"),
    ("S", "   ", "template is empty"),
    ("S", 42, "template must be text"),
    (42, TEMPLATE, "system prompt must be text"),
    ("x" * (MAX_SYSTEM_CHARS + 1), TEMPLATE, "over the limit"),
    ("S", "{context}{question}" + "x" * MAX_TEMPLATE_CHARS, "over the limit"),
    ("S\x00", TEMPLATE, "NUL"),
])
def test_bad_templates_are_refused_and_nothing_is_recorded(ws, system, template, message):
    with pytest.raises(GenAIError, match=message):
        ws.rag.prompts.register("qa", system=system, template=template)
    assert ws.models.list() == [] and ws.audit.entries("model") == []


def test_literal_braces_and_hostile_questions_are_text(ws):
    p = ws.rag.prompts.register("json", system="Reply as {{\"answer\": ...}}.",
                                template="{{literal}} {context}\nQ: {question}")
    assert template_fields(p.template) == ["context", "question"]
    messages = p.render("What is {context} and {0.__class__}?", [])
    assert messages[0]["content"] == 'Reply as {"answer": ...}.'
    assert messages[1]["content"] == "{literal} \nQ: What is {context} and {0.__class__}?"
    with pytest.raises(GenAIError, match="unknown placeholder"):
        build_messages("q", [], template="{context}{question}{secret}")


@pytest.mark.parametrize("bad", ["1qa", "", "a" * 199, "qa@", "qa@0", "qa@Champion!", 42, None,
                                 "qa@99999999999"])
def test_malformed_refs_and_names_are_refused(ws, bad):
    with pytest.raises(GenAIError):
        ws.rag.prompts.get(bad)
    if isinstance(bad, str) and "@" not in bad:
        with pytest.raises(GenAIError):
            ws.rag.prompts.register(bad, system="S", template=TEMPLATE)
        with pytest.raises(GenAIError):
            ws.rag.prompts.versions(bad)


def test_unknown_prompts_versions_and_aliases(ws):
    with pytest.raises(PromptNotFoundError, match="no model named 'qa'"):
        ws.rag.prompts.get("qa")
    ws.rag.prompts.register("qa", system="S", template=TEMPLATE)
    with pytest.raises(PromptNotFoundError, match="no version 7"):
        ws.rag.prompts.get("qa@7")
    with pytest.raises(PromptNotFoundError, match="no alias 'champion'"):
        ws.rag.prompts.get("qa@champion")
    with pytest.raises(PromptNotFoundError, match="no version 9"):
        ws.rag.prompts.set_alias("qa", "champion", 9)
    for alias in ("latest", "Champion", "", "x" * 80):
        with pytest.raises(GenAIError, match="alias"):
            ws.rag.prompts.set_alias("qa", alias, 1)
    with pytest.raises(PromptNotFoundError, match="no alias 'champion'"):
        ws.rag.prompts.remove_alias("qa", "champion")
    with pytest.raises(GenAIError, match="no earlier holder"):
        ws.rag.prompts.set_alias("qa", "champion", 1)
        ws.rag.prompts.rollback("qa", "champion")
    with pytest.raises(PromptNotFoundError):
        ws.rag.prompts.alias_history("never")
    with pytest.raises(GenAIError, match="description"):
        ws.rag.prompts.register("qa", system="S2", template=TEMPLATE, description="x" * 5000)
    assert [p.ref for p in ws.rag.prompts.versions("qa")] == ["qa@1"]


def test_a_model_that_is_not_a_prompt_is_not_read_as_one(ws):
    """A registered model of another kind under the prompt prefix is refused
    (it has no prompt artifact)."""
    prompts = ws.rag.prompts
    prompts.register("qa", system="S", template=TEMPLATE)
    version = ws.models.get("prompt.qa@1")
    forged = type(version)(**{**version.__dict__, "tags": {}})
    with pytest.raises(GenAIError, match="not a prompt template"):
        prompts._from_version(forged)


def test_answers_record_the_prompt_version_they_were_written_with(ws, embedder, fake_openai):
    from shipyard.genai import Rag

    rag = Rag(ws, embedder=embedder)
    try:
        rag.ingest("cities", DOCS)
        rag.prompts.register("qa", system="You are terse. Cite passages.", template=TEMPLATE)
        rag.prompts.set_alias("qa", "champion", 1)
        generator = OpenAIChatGenerator("fake-chat", base_url=fake_openai.url, api_key="k")
        answer = rag.answer("cities", "How tall is the Eiffel Tower?", generator=generator,
                            prompt="qa@champion")
        assert answer.prompt == "qa@1" and answer.citations
        _, body = fake_openai.requests[-1]
        assert body["messages"][0]["content"] == "You are terse. Cite passages."
        assert body["messages"][1]["content"].startswith("Passages:\n[1] ")
        assert body["messages"][1]["content"].endswith(
            "Answer this: How tall is the Eiffel Tower?")
        trace = rag.trace(answer.trace_id)
        assert trace.spans[0].attributes["prompt"] == "qa@1"
        # Without a prompt, the built-in one; the answer records none.
        plain = rag.answer("cities", "How tall is the Eiffel Tower?", generator=generator)
        assert plain.prompt is None
        assert fake_openai.requests[-1][1]["messages"][1]["content"].startswith(
            "Context passages:")
        # A generator that writes no prompt refuses one rather than ignoring it.
        with pytest.raises(GenAIError, match="needs a generator that writes from a prompt"):
            rag.answer("cities", "How tall is the Eiffel Tower?", prompt="qa@1")
        with pytest.raises(GenAIError, match="writes no prompt"):
            rag.answer("cities", "How tall is the Eiffel Tower?", prompt="qa@1",
                       generator=ExtractiveGenerator())
        with pytest.raises(PromptNotFoundError):
            rag.answer("cities", "How tall?", generator=generator, prompt="nope@1")
        with pytest.raises(GenAIError, match="PromptTemplate"):
            OpenAIChatGenerator("m", prompt="qa@1")
        # Evaluation with a prompt: the report and its run say which.
        report = rag.evaluate("cities", [{"text": "How tall is the Eiffel Tower?",
                                          "relevant": ["paris"]}], modes=["bm25"],
                              generator=generator, prompt="qa@champion")
        assert report.prompt == "qa@1" and report.per_question[0]["answer"]["prompt"] == "qa@1"
        run = ws.runs.search("tags.`rag.kind` = 'evaluate'", experiment="rag")[0]
        assert run.params["prompt"] == "qa@1"
        unregistered = PromptTemplate.unregistered("Be brief.", TEMPLATE)
        assert unregistered.version is None and unregistered.ref == "unregistered"
    finally:
        rag.close()


def test_loading_a_prompt_as_a_model_says_what_it_is(ws):
    from shipyard.errors import RegistryError

    ws.rag.prompts.register("qa", template=TEMPLATE)
    with pytest.raises(RegistryError, match="prompt template, not a model") as caught:
        ws.models.get("prompt.qa@1").load()
    assert "ws.rag.prompts.get('qa@1')" in caught.value.hint


def test_models_list_leaves_prompts_out_unless_asked(ws):
    import json

    from typer.testing import CliRunner

    from shipyard.cli import app

    ws.rag.prompts.register("qa", template=TEMPLATE)
    runner = CliRunner()
    home = str(ws.settings.home)
    plain = runner.invoke(app, ["--home", home, "models", "list"])
    assert plain.exit_code == 0, plain.output
    text = " ".join(plain.stdout.split())  # the console wraps at 80 columns
    assert "prompt.qa" not in text and "1 prompt template(s) hidden (--all)" in text
    listed = runner.invoke(app, ["--home", home, "models", "list", "--all", "--json"])
    assert [m["name"] for m in json.loads(listed.stdout)] == ["prompt.qa"]
    hidden = runner.invoke(app, ["--home", home, "models", "list", "--json"])
    assert json.loads(hidden.stdout) == []
