"""OpenAI-compatible endpoints, so the official ``openai`` SDK (and what is
built on it) talks to a Shipyard server unchanged::

    client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=KEY)

* ``GET /v1/models`` lists the served RAG collections and the embedding
  model (OpenAI's list object; the same document keeps Shipyard's
  ``models`` list of served ML models), ``GET /v1/models/{model}`` describes one.
* ``POST /v1/embeddings`` embeds text with the workspace's embedding model
  (the offline all-MiniLM-L6-v2): ``float`` or ``base64`` (little-endian
  float32), ``dimensions`` (the first *d* components, L2-renormalised), usage
  counted by the model's own tokenizer.
* ``POST /v1/chat/completions`` answers the last user message from a served
  RAG collection (``model`` = ``docs`` or ``docs@2``) with ``ws.rag.answer``:
  the answer keeps its ``[n]`` markers and the response carries a top-level
  ``citations`` list; ``stream: true`` sends Server-Sent Events.

Same API keys and the same ``predict`` scope as predictions. Errors are
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the status
codes that make the SDK raise the matching class (400 ``BadRequestError``,
401 ``AuthenticationError``, 404 ``NotFoundError``, ...).

Decisions (documented in the README):

* token-id ``input`` (lists of integers) is refused with 400: token ids
  belong to one tokenizer, and OpenAI clients that send them (LangChain's
  ``OpenAIEmbeddings``) send tiktoken ids, which would be embedded as
  nonsense;
* an input over the model's 254 tokens (256 with ``[CLS]`` and ``[SEP]``) is
  refused with 400, unless the request says ``"truncate": true`` (an
  extension), which embeds its first 254 tokens;
* chat answers the *last user message*; earlier turns and system messages
  are validated but not used (the default generator is extractive: it only
  quotes the collection; ``shipyard serve --generator local`` or
  ``openai:MODEL`` has a chat model write from the retrieved passages);
* ``prompt_tokens`` and ``completion_tokens`` are the chat model's own
  counts where one wrote the answer; for extractive answers, the tokens of
  the question and of the retrieved chunks the answer was drawn from, and
  those of the answer, counted with the embedding model's tokenizer.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from shipyard.errors import ConfigError, OpenAIRequestError, ShipyardError
from shipyard.serve._auth import requires
from shipyard.serve._inference import read_json, require_json, serving
from shipyard.serve._openapi import json_body
from shipyard.serve._responses import ORJSON_OPTIONS, FastJSONResponse, json_default

if TYPE_CHECKING:
    from starlette.types import Scope

    from shipyard import Workspace

log = logging.getLogger("shipyard.serve")

#: Most inputs in one embeddings request (OpenAI's limit).
MAX_INPUTS = 2048
#: Most tokens summed over the inputs of one request (OpenAI's limit).
MAX_REQUEST_TOKENS = 300_000
#: Tokens MiniLM reads, without ``[CLS]`` and ``[SEP]`` (its maximum sequence is 256).
MAX_INPUT_TOKENS = 254
#: Most ``stop`` sequences (OpenAI's limit).
MAX_STOP = 4
TRACE_HEADER = "x-shipyard-trace-id"
_PIECE = re.compile(r"\s*\S+\s*|\s+")
_MARKER = re.compile(r"\[(\d{1,3})\]")

router = APIRouter(tags=["openai"], default_response_class=FastJSONResponse)


# ----------------------------------------------------------------- errors
def speaks_openai(scope: Scope) -> bool:
    """True for the requests whose errors are written in OpenAI's format:
    the embeddings and chat paths, and reads of ``/v1/models``."""
    path = scope.get("path", "")
    if path in ("/v1/embeddings", "/v1/chat/completions"):
        return True
    return scope.get("method") in ("GET", "HEAD") and (
        path == "/v1/models" or path.startswith("/v1/models/"))


_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_CODES = {"unauthorized": "invalid_api_key", "rate_limited": "rate_limit_exceeded"}


def openai_error_body(status: int, code: str, message: str, param: str | None = None
                      ) -> dict[str, Any]:
    """OpenAI's error document. It keeps ``code`` and ``message`` where
    Shipyard's own errors have them, so clients of either read it."""
    kind = _TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": _CODES.get(code, code)}}


def _bad(message: str, param: str | None = None, code: str = "invalid_value"
         ) -> OpenAIRequestError:
    return OpenAIRequestError(400, code, message, param=param)


def _not_found(model: str, served: str) -> OpenAIRequestError:
    return OpenAIRequestError(
        404, "model_not_found", f"the model {model[:200]!r} does not exist on this server; "
                                f"it serves: {served}", param="model")


# ----------------------------------------------------------- request bodies
class _Open(BaseModel):
    """Unknown fields are kept and ignored, as OpenAI does; known ones are
    checked strictly (no ``"1"`` for 1)."""

    model_config = ConfigDict(extra="allow", strict=True)


class EmbeddingRequest(_Open):
    """OpenAI's embeddings request (``input`` as text only, see the module)."""

    input: str | list[str] = Field(
        description="A string or a list of up to 2048 non-empty strings, each at most 254 "
                    "tokens of the model's tokenizer. Token-id arrays are refused (400).")
    model: str = Field(description="The embedding model id from `GET /v1/models`.")
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="`float` (default) or `base64` (little-endian float32 bytes).")
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first `dimensions` components and rescale to unit "
                                "length (at most the model's 384).")
    user: str | None = Field(None, description="Accepted and ignored.")
    truncate: bool = Field(False, description="Shipyard extension: embed the first 254 "
                                              "tokens of a longer input instead of refusing it.")


class ContentPart(_Open):
    type: str = Field(description="Only `text` parts are supported.")
    text: str | None = None


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ResponseFormat(_Open):
    type: str = Field(description="Only `text`.")


class ChatCompletionRequest(_Open):
    """OpenAI's chat completion request; ``model`` names a served RAG collection."""

    model: str = Field(description="A served RAG collection: `docs` or `docs@2`.")
    messages: list[ChatMessage] = Field(
        min_length=1, description="The last `user` message is the question; earlier turns "
                                  "and system messages are not used.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, description="Cap on the answer's tokens.")
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, description="Only 1.")
    temperature: float | None = Field(None, ge=0, le=2, description="Accepted; answers are "
                                                                    "deterministic.")
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = None
    stop: str | list[str] | None = Field(None, description="Up to 4 sequences; the answer "
                                                           "ends before the first found.")
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None


_UNION_MESSAGES = {
    "input": "expected a string or a list of strings",
    "content": "expected a string, a list of text parts ({\"type\": \"text\", \"text\": ...}) "
               "or null",
    "stop": "expected a string or a list of up to 4 strings",
}


def _validate(model: type[BaseModel], body: Any) -> Any:
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        # Pydantic names union branches in the location ("input.str"): cut them off.
        for i, part in enumerate(loc):
            if part in _UNION_MESSAGES:
                where = ".".join(loc[:i + 1])
                raise _bad(f"{where}: {_UNION_MESSAGES[part]}", where) from None
        where = ".".join(loc) or None
        raise _bad(f"{where}: {first.get('msg', 'invalid')}" if where else
                   str(first.get("msg", "invalid")), where) from None


# ------------------------------------------------------------------ service
@dataclass
class ChatResult:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    citations: list[dict[str, Any]]
    collection: str
    generator: str
    refusal: str | None
    trace_id: str | None = None


@dataclass
class OpenAICompat:
    """What the OpenAI endpoints serve: RAG collections (``refs``) and the
    workspace's embedding model. Kept on ``app.state.openai``.

    Parameters
    ----------
    ws
        The workspace of the collections.
    refs
        Collections to answer from, as given: ``docs`` (the latest version,
        followed as it moves) or ``docs@2``.
    generator
        Who writes chat answers (:func:`shipyard.genai.generator_from_spec`:
        ``extractive``, the default; ``local``; ``openai:MODEL``).

    Raises
    ------
    ConfigError
        A ref is malformed or given twice.
    CollectionNotFoundError
        A collection or version does not exist.
    """

    ws: Workspace
    refs: list[str] = field(default_factory=list)
    generator: str | None = None
    started: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        from shipyard.genai import generator_from_spec, parse_collection_ref

        self._writer = generator_from_spec(self.generator)  # a bad spec fails here
        self._lock = threading.Lock()
        self._embedder: Any = None
        self._tokenizer: Any = None
        self._dimension: int | None = None
        self._versions: dict[str, tuple[float, str]] = {}
        seen: set[str] = set()
        for ref in self.refs:
            try:
                parse_collection_ref(ref)
            except ShipyardError as exc:
                raise ConfigError(f"cannot serve RAG collection {ref!r}: {exc.message}",
                                  hint="name a collection as docs or docs@2") from exc
            if ref in seen:
                raise ConfigError(f"RAG collection {ref!r} is named twice",
                                  hint="serve each collection ref once")
            seen.add(ref)
            self.ws.rag.get(ref)  # fail before serving: CollectionNotFoundError

    def __repr__(self) -> str:
        return f"OpenAICompat(refs={self.refs!r})"

    # ------------------------------------------------------------ embedding
    def embedder(self) -> Any:
        """The workspace's default embedder, when it is a local model whose
        tokenizer can count tokens; else None (no embeddings endpoint)."""
        from shipyard.genai import LocalEmbedder

        with self._lock:
            if self._embedder is None:
                try:
                    embedder = self.ws.rag.default_embedder()
                    if not isinstance(embedder, LocalEmbedder):
                        return None
                    embedder.name  # noqa: B018 -- finds the model folder, or raises
                except ConfigError as exc:
                    log.warning("no embedding model to serve: %s", exc)
                    return None
                self._embedder = embedder
            return self._embedder

    def embedding_id(self) -> str | None:
        embedder = self.embedder()
        return embedder.name if embedder is not None else None

    def tokenizer(self) -> Any:
        """The embedding model's own ``tokenizers`` tokenizer (no truncation)."""
        with self._lock:
            if self._tokenizer is None:
                from pathlib import Path

                from tokenizers import Tokenizer

                from shipyard.genai import minilm_path

                embedder = self._embedder
                folder = Path(embedder.model_path) if embedder is not None and \
                    embedder.model_path is not None else minilm_path()
                tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
                tok.no_truncation()
                tok.no_padding()
                self._tokenizer = tok
            return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, without special tokens."""
        if not texts:
            return []
        encodings = self.tokenizer().encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def dimension(self) -> int:
        """The model's native dimension (embeds one word once)."""
        if self._dimension is None:
            self._dimension = int(self.embedder().embed(["dimension"]).shape[1])
        return self._dimension

    def warm(self) -> None:
        """Load what the first request would (tokenizer, embedding model, each
        collection's retriever), at start-up. Without collections nothing is
        loaded: an ML-only server loads the embedder on its first use."""
        if not self.refs:
            return
        for ref in self.refs:
            self.ws.rag.retriever(ref)
        if self.embedder() is not None:
            self.tokenizer()
            self.dimension()

    def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        """The response document of an embeddings request (run off the loop)."""
        import numpy as np

        model_id = self._embedding_model(request.model)
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        if not texts:
            raise _bad("input is an empty list; send at least one string", "input")
        if len(texts) > MAX_INPUTS:
            raise _bad(f"input has {len(texts)} items; at most {MAX_INPUTS} a request "
                       f"(split it into several requests)", "input")
        for i, text in enumerate(texts):
            if not text:
                raise _bad(f"input[{i}] is an empty string; every input must hold text",
                           "input")
        encodings = self.tokenizer().encode_batch(texts, add_special_tokens=False)
        counts = []
        for i, enc in enumerate(encodings):
            n = len(enc.ids)
            if n > MAX_INPUT_TOKENS:
                if not request.truncate:
                    raise _bad(f"input[{i}] is {n} tokens; {model_id} reads at most "
                               f"{MAX_INPUT_TOKENS} ({MAX_INPUT_TOKENS + 2} with [CLS] and "
                               f"[SEP]): shorten it, split it, or send \"truncate\": true to "
                               f"embed its first {MAX_INPUT_TOKENS} tokens", "input",
                               "context_length_exceeded")
                texts[i] = texts[i][:enc.offsets[MAX_INPUT_TOKENS - 1][1]]
                n = MAX_INPUT_TOKENS
            counts.append(n)
        total = sum(counts)
        if total > MAX_REQUEST_TOKENS:
            raise _bad(f"the inputs hold {total} tokens; at most {MAX_REQUEST_TOKENS} a "
                       f"request (split it into several requests)", "input",
                       "max_tokens_per_request")
        native = self.dimension()
        dims = request.dimensions
        if dims is not None and dims > native:
            raise _bad(f"dimensions is {dims}; {model_id} has {native}: ask for 1 to "
                       f"{native}", "dimensions")
        vectors = self.embedder().embed(texts)
        if dims is not None and dims < native:
            vectors = vectors[:, :dims]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1.0, norms)
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if request.encoding_format == "base64":
            data = [{"object": "embedding", "index": i,
                     "embedding": base64.b64encode(v.tobytes()).decode("ascii")}
                    for i, v in enumerate(vectors)]
        else:
            data = [{"object": "embedding", "index": i, "embedding": v}
                    for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": model_id,
                "usage": {"prompt_tokens": total, "total_tokens": total}}

    def _embedding_model(self, requested: str) -> str:
        model_id = self.embedding_id()
        if model_id is not None and requested in (model_id, model_id.split("@")[0]):
            return model_id
        if self.collection_for(requested) is not None:
            raise _bad(f"{requested[:200]!r} is a RAG collection, for chat completions; "
                       f"embeddings come from {model_id or '(no embedding model)'}", "model",
                       "model_not_supported")
        raise _not_found(requested, self.describe())

    # ----------------------------------------------------------------- chat
    def collection_for(self, model: str) -> str | None:
        """The ref to answer ``model`` from: a served ref as given, the bare
        name of a served collection (``docs@latest`` too), or any version of
        a collection served as its latest."""
        from shipyard.genai import parse_collection_ref

        if model in self.refs:
            return model
        try:
            name, version = parse_collection_ref(model)
        except ShipyardError:
            return None
        same = [r for r in self.refs if parse_collection_ref(r)[0] == name]
        if version is None:
            return same[0] if len(same) == 1 else (name if name in same else None)
        if name in same:  # the collection is served, following its latest
            return f"{name}@{version}"
        return None

    def describe(self) -> str:
        ids = [*self.refs]
        model_id = self.embedding_id()
        if model_id is not None:
            ids.append(model_id)
        return ", ".join(ids) or "(nothing)"

    def chat(self, model: str, question: str, *, max_tokens: int | None,
             stop: list[str]) -> ChatResult:
        """Answer ``question`` from the collection ``model`` names (run off the loop)."""
        from shipyard.errors import (
            CollectionNotFoundError,
            EmbeddingError,
            GenerationError,
            VectorStoreError,
        )

        ref = self.collection_for(model)
        if ref is None:
            embedding = self.embedding_id()
            if embedding is not None and model in (embedding, embedding.split("@")[0]):
                raise _bad(f"{model!r} is an embedding model; chat completions answer from a "
                           f"served RAG collection: {', '.join(self.refs) or '(none served)'}",
                           "model", "model_not_supported")
            raise _not_found(model, self.describe())
        asked = self.count_tokens([question])[0]
        if asked > MAX_INPUT_TOKENS:
            raise _bad(f"the question (the last user message) is {asked} tokens; the "
                       f"collection's embedding model reads at most {MAX_INPUT_TOKENS}: ask "
                       f"a shorter question", "messages", "context_length_exceeded")
        try:
            answer = self.ws.rag.answer(ref, question, generator=self._writer)
        except CollectionNotFoundError as exc:
            raise _not_found(ref, self.describe()) from exc
        except (VectorStoreError, EmbeddingError, GenerationError, ConfigError) as exc:
            raise OpenAIRequestError(503, "unavailable", f"collection {ref} cannot answer "
                                                         f"now: {exc}") from exc
        except ShipyardError as exc:
            raise _bad(f"collection {ref} refused the question: {exc}", "messages") from exc
        content, finish = answer.text, "stop"
        for sequence in stop:
            at = content.find(sequence)
            if at >= 0:
                content = content[:at]
        written = answer.usage or {}  # a chat model's own counts, where it has them
        completion = written.get("completion_tokens") if content == answer.text else None
        completion = completion if completion is not None else self.count_tokens([content])[0]
        if max_tokens is not None and completion > max_tokens:
            enc = self.tokenizer().encode(content, add_special_tokens=False)
            content = content[:enc.offsets[max_tokens - 1][1]]
            completion, finish = max_tokens, "length"
        markers = {int(m) for m in _MARKER.findall(content)}
        citations = [c.to_dict() for c in answer.citations if c.marker in markers]
        prompt = written.get("prompt_tokens") or sum(
            self.count_tokens([question, *(h.chunk.text for h in answer.hits)]))
        resolved = self._version_of(ref)
        trace_id = getattr(answer, "trace_id", None)
        return ChatResult(content=content, finish_reason=finish, prompt_tokens=prompt,
                          completion_tokens=completion, citations=citations,
                          collection=resolved, generator=answer.generator,
                          refusal=answer.refusal,
                          trace_id=str(trace_id) if trace_id is not None else None)

    def _version_of(self, ref: str) -> str:
        """``docs@3`` for ``docs``: looked up again at most every 2 s (as
        ``ws.rag`` re-resolves ``latest``), not on every request."""
        now = time.monotonic()
        hit = self._versions.get(ref)
        if hit is None or now - hit[0] > 2.0:
            hit = (now, self.ws.rag.get(ref).ref)
            self._versions[ref] = hit
        return hit[1]

    # --------------------------------------------------------------- models
    def model_objects(self) -> list[dict[str, Any]]:
        """OpenAI model objects; each also carries the fields of the JSON API's
        model description (``name``, ``ref``, ``version``, ``ready``, ``task``)."""
        out = []
        for ref in self.refs:
            version = self.ws.rag.get(ref)
            out.append({"id": ref, "object": "model", "created": int(version.created_at),
                        "owned_by": "shipyard", "name": ref, "ref": version.ref,
                        "version": version.version, "ready": True, "task": "rag",
                        "chunks": version.num_chunks, "documents": len(version.documents)})
        model_id = self.embedding_id()
        if model_id is not None:
            out.append({"id": model_id, "object": "model", "created": self.started,
                        "owned_by": "shipyard", "name": model_id, "ref": model_id,
                        "version": None, "ready": True, "task": "embedding"})
        return out


def state_of(request: Request) -> OpenAICompat:
    return request.app.state.openai


# ------------------------------------------------------------------ schemas
class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage
    citations: list[dict[str, Any]] = Field(description="Shipyard: one per `[n]` marker of "
                                                        "the answer (chunk, document, "
                                                        "section/page, offsets, quote).")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIError, "description": text} for code, text in (
        (400, "Invalid request (OpenAI's invalid_request_error)."),
        (401, "Missing or invalid API key."), (403, "The key lacks the predict scope."),
        (404, "Unknown model."), (413, "Body over the limit."),
        (415, "Unsupported content type."), (429, "Rate limit exceeded."))}


# ------------------------------------------------------------------- routes
# The two reads of /v1/models answer in both dialects and are routed before
# the JSON API's routes of the same paths (serve._simple), which describe them
# in the OpenAPI document: the bodies below hold every field those describe.
@router.get("/v1/models", dependencies=[requires("predict")], include_in_schema=False)
async def list_openai_models(request: Request):
    """OpenAI's model list (``data``: served RAG collections and the embedding
    model) and the JSON API's ``models`` list of served ML models, in one
    document."""
    from shipyard.serve._simple import _info

    state = state_of(request)
    data = await run_in_threadpool(state.model_objects)
    return FastJSONResponse({"object": "list", "data": data, "models": [
        _info(s, detail=False) for s in serving(request).slots.slots.values()]})


@router.get("/v1/models/{name}", dependencies=[requires("predict")], include_in_schema=False)
async def retrieve_openai_model(name: str, request: Request):
    """A RAG collection or the embedding model (OpenAI's model object, with
    the JSON API's fields), or a served ML model (the JSON API's description)."""
    from shipyard.serve._simple import model_info

    slots = serving(request).slots.slots
    if name in slots or name.rpartition(":")[2] in ("predict", "explain"):
        return await model_info(name, request)
    state = state_of(request)
    for item in await run_in_threadpool(state.model_objects):
        if item["id"] == name:
            return FastJSONResponse(item)
    raise _not_found(name, ", ".join([*slots, state.describe()]))


@router.post("/v1/embeddings", response_model=EmbeddingResponse,
             dependencies=[requires("predict")], responses=OPENAI_ERRORS,
             openapi_extra=json_body(EmbeddingRequest))
async def create_embeddings(request: Request):
    """Embed text with the embedding model listed by `GET /v1/models`."""
    require_json(request)
    body = _validate(EmbeddingRequest, await read_json(request))
    state = state_of(request)
    request.state.model = "embeddings"
    return FastJSONResponse(await run_in_threadpool(state.embed, body))


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse,
             dependencies=[requires("predict")], responses=OPENAI_ERRORS,
             openapi_extra=json_body(ChatCompletionRequest))
async def create_chat_completion(request: Request):
    """Answer the last user message from the RAG collection named by `model`;
    `stream: true` answers with Server-Sent Events (`chat.completion.chunk`)."""
    require_json(request)
    body: ChatCompletionRequest = _validate(ChatCompletionRequest, await read_json(request))
    state = state_of(request)
    question, max_tokens, stop = _check_chat(body)
    result = await run_in_threadpool(state.chat, body.model, question, max_tokens=max_tokens,
                                     stop=stop)
    request.state.model = result.collection
    headers = {TRACE_HEADER: result.trace_id} if result.trace_id else None
    completion_id = f"chatcmpl-{request.state.request_id}"
    created = int(time.time())
    extra = {"citations": result.citations,
             "shipyard": {"collection": result.collection, "generator": result.generator,
                          "refusal": result.refusal, "trace_id": result.trace_id}}
    usage = {"prompt_tokens": result.prompt_tokens,
             "completion_tokens": result.completion_tokens,
             "total_tokens": result.prompt_tokens + result.completion_tokens}
    if not body.stream:
        return FastJSONResponse({
            "id": completion_id, "object": "chat.completion", "created": created,
            "model": result.collection, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": result.content, "refusal": None},
                         "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": usage, **extra}, headers=headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = _events(completion_id, created, result, usage if include_usage else None, extra)
    return StreamingResponse(events, media_type="text/event-stream", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})


def _check_chat(body: ChatCompletionRequest) -> tuple[str, int | None, list[str]]:
    """The question, the token cap and the stop sequences, or a 400."""
    if body.n is not None and body.n > 1:
        raise _bad(f"n is {body.n}; this server writes one answer a request (n=1)", "n")
    if body.stream_options is not None and not body.stream:
        raise _bad("stream_options is only allowed with \"stream\": true", "stream_options")
    if body.logprobs:
        raise _bad("logprobs are not available: answers are drawn from the collection, not "
                   "sampled from a language model", "logprobs")
    if body.response_format is not None and body.response_format.type != "text":
        raise _bad(f"response_format {body.response_format.type[:60]!r} is not supported; "
                   f"answers are text with [n] citation markers", "response_format")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > MAX_STOP or any(not s for s in stop):
        raise _bad(f"stop: at most {MAX_STOP} non-empty sequences", "stop")
    caps = [c for c in (body.max_tokens, body.max_completion_tokens) if c is not None]
    question = None
    for i, message in enumerate(body.messages):
        text = _text_of(message, i)
        if message.role == "user":
            if text is None:
                raise _bad(f"messages.{i}.content: a user message needs content",
                           f"messages.{i}.content")
            question = text
    if question is None:
        raise _bad("messages: no user message; the last user message is the question",
                   "messages")
    if not question.strip():
        raise _bad("the question (the last user message) is blank", "messages")
    return question, min(caps) if caps else None, stop


def _text_of(message: ChatMessage, i: int) -> str | None:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise _bad(f"messages.{i}.content.{j}: only text parts ({{\"type\": \"text\", "
                       f"\"text\": ...}}) are supported, got type {part.type[:40]!r}",
                       f"messages.{i}.content.{j}")
        parts.append(part.text)
    return "\n".join(parts)


def _sse(document: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(document, option=ORJSON_OPTIONS,
                                    default=json_default) + b"\n\n"


async def _events(completion_id: str, created: int, result: ChatResult,
                  usage: dict[str, int] | None, extra: dict[str, Any]
                  ) -> AsyncIterator[bytes]:
    """The answer as ``chat.completion.chunk`` events: the role, content a word
    at a time, the finish reason (with the citations), the usage (when asked
    for), then ``[DONE]``."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": result.collection, "system_fingerprint": None}
    if usage is not None:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish}], **more})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in _PIECE.findall(result.content):
        yield chunk({"content": piece})
    yield chunk({}, result.finish_reason, **extra)
    if usage is not None:
        yield _sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def install(app: Any, ws: Workspace, rag: Sequence[str], generator: str | None = None
            ) -> OpenAICompat:
    """Put the state of the OpenAI endpoints on ``app`` (``app.state.openai``);
    include :data:`router` before the JSON API's router."""
    state = OpenAICompat(ws, list(rag), generator)
    app.state.openai = state
    return state


__all__ = ["OpenAICompat", "install", "openai_error_body", "router", "speaks_openai"]
