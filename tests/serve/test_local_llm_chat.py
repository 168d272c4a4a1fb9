"""Chat completions written by the local model (``shipyard serve --rag docs
--generator local``) through the official ``openai`` SDK: the model's own
token counts, citations, streaming, and a bad generator refused at start."""

from __future__ import annotations

import os

import openai
import pytest
from typer.testing import CliRunner

from shipyard import Workspace
from shipyard.cli import app as cli_app
from shipyard.errors import ConfigError
from shipyard.genai import LocalChatGenerator
from shipyard.security import ApiKeys

from .conftest import LiveServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTION = "How often are API keys rotated?"
HANDBOOK = ("# Security handbook\n## Keys\nAPI keys are rotated every ninety days by the "
            "platform team. A revoked key stops working within five seconds.\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from shipyard.serve import create_app

    folder = tmp_path_factory.mktemp("docs")
    (folder / "security.md").write_text(HANDBOOK)
    ws = Workspace.open(tmp_path_factory.mktemp("local-llm") / "home")
    ws.rag.ingest("handbook", folder)
    _, secret = ApiKeys(ws).create("chat", ["predict"], actor="tests")
    app = create_app(ws, [], rag=["handbook"], generator="local", reload_interval=0)
    with LiveServer(app) as live, openai.OpenAI(base_url=f"{live.url}/v1", api_key=secret,
                                                 max_retries=0, timeout=120) as sdk:
        yield ws, sdk
    ws.close()


def test_the_local_model_answers_through_the_sdk_with_its_own_token_counts(served):
    ws, sdk = served
    ask = [{"role": "user", "content": QUESTION}]
    completion = sdk.chat.completions.create(model="handbook", messages=ask)
    content = completion.choices[0].message.content
    generator = LocalChatGenerator()
    assert content and completion.shipyard["generator"] == generator.name
    expected = ws.rag.answer("handbook", QUESTION, generator=generator, trace=False)
    assert content == expected.text  # greedy: the same passages give the same answer
    assert completion.usage.prompt_tokens == expected.usage["prompt_tokens"]
    assert completion.usage.completion_tokens == expected.usage["completion_tokens"]
    assert [c["chunk_id"] for c in completion.citations] == \
        [c.chunk_id for c in expected.citations]
    streamed = list(sdk.chat.completions.create(model="handbook", messages=ask, stream=True,
                                                stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == content
    assert streamed[-1].usage == completion.usage


def test_a_bad_generator_is_refused_before_serving(tmp_path):
    from shipyard.serve import create_app

    ws = Workspace.open(tmp_path / "home")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text(HANDBOOK)
    ws.rag.ingest("handbook", folder)
    with pytest.raises(ConfigError, match="unknown generator 'gpt'"):
        create_app(ws, [], rag=["handbook"], generator="gpt")
    result = CliRunner().invoke(cli_app, ["--home", str(tmp_path / "home"), "serve", "--rag",
                                          "handbook", "--generator", "local:/no/such.gguf"])
    assert result.exit_code == 1 and "is not a file" in str(result.exception)
    result = CliRunner().invoke(cli_app, ["--home", str(tmp_path / "home"), "serve",
                                          "m@1", "--generator", "local"])
    assert result.exit_code == 1 and "need --rag" in str(result.exception)
    ws.close()
