"""Answering from retrieved chunks: an offline extractive answerer, and any
OpenAI-compatible chat backend.

Every answer carries citations (chunk, document, section/page, character
offsets). Retrieved text is data, never instructions: the extractive
answerer only quotes it, and the chat prompt fences it and tells the model so.
"""

from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from shipyard.errors import GenAIError, GenerationError
from shipyard.genai._bm25 import analyse
from shipyard.genai._embeddings import Embedder, openai_client
from shipyard.genai._prompts import (
    SYSTEM_PROMPT,
    USER_TEMPLATE,
    PromptTemplate,
    format_passages,
    render_template,
)
from shipyard.genai._records import Answer, Chunk, Citation, Hit

NO_ANSWER = "I could not find an answer to this question in the collection."
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "inc", "ltd", "co", "jr",
                  "sr", "no", "fig", "eg", "ie", "al", "gen", "gov", "sen", "rep", "mt", "jan",
                  "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+(?![a-z])")
_MARKER = re.compile(r"\s*\[(\d{1,3})\]")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (line breaks end a
    sentence too; common abbreviations do not).

    >>> text = "Mr. Smith went home. He slept.\\nThe end"
    >>> [text[a:b] for a, b in split_sentences(text)]
    ['Mr. Smith went home.', 'He slept.', 'The end']
    """
    spans: list[tuple[int, int]] = []
    offset = 0
    for line in text.split("\n"):
        start = 0
        for match in _BOUNDARY.finditer(line):
            before = line[start:match.start()].split()
            word = before[-1].lower().rstrip(".").replace(".", "") if before else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
            end = match.end() - (len(match.group()) - len(match.group().rstrip()))
            spans.append((offset + start, offset + end))
            start = match.end()
        spans.append((offset + start, offset + len(line)))
        offset += len(line) + 1
    out = []
    for a, b in spans:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        a, b = a + lead, a + lead + len(piece.strip())
        if b > a:
            out.append((a, b))
    return out


def _citation(marker: int, chunk: Chunk, start: int, end: int) -> Citation:
    """A citation of ``chunk.text[start:end]`` (offsets in the chunk)."""
    return Citation(marker=marker, chunk_id=chunk.id, doc_id=chunk.doc_id, source=chunk.source,
                    title=chunk.title, section=chunk.section, page=chunk.page,
                    start=chunk.start + start, end=chunk.start + end,
                    quote=chunk.text[start:end])


class Generator(ABC):
    """Writes an :class:`~shipyard.genai.Answer` from a question and the
    retrieved hits; every answer cites the chunks it used."""

    #: Shown as ``Answer.generator``.
    name: str = "generator"

    @abstractmethod
    def generate(self, question: str, hits: Sequence[Hit]) -> Answer:
        """Answer ``question`` from ``hits`` (may be a refusal)."""

    def with_prompt(self, prompt: PromptTemplate) -> Generator:
        """A copy of this generator that writes with ``prompt`` (its answers
        record ``prompt.ref``). Generators that use no prompt refuse.

        Raises
        ------
        GenAIError
            This generator does not write from a prompt.
        """
        raise GenAIError(f"the {self.name} generator writes no prompt, so prompt "
                         f"{prompt.ref} would change nothing",
                         hint="pass generator=OpenAIChatGenerator(...) to answer with a "
                              "prompt template")

    def _refuse(self, question: str, hits: Sequence[Hit], why: str) -> Answer:
        return Answer(question=question, text=NO_ANSWER, citations=(), hits=tuple(hits),
                      generator=self.name, refusal=why)


class ExtractiveGenerator(Generator):
    """Offline answers: the sentences of the retrieved chunks that best support
    the question, each with its citation. No model writes anything, so an
    answer is never more than its sources say.

    A sentence's support is the share of the question's terms it holds
    (stemmed, without stopwords), averaged with its embedding similarity to
    the question when an embedder is given.

    Parameters
    ----------
    embedder
        Adds semantic similarity to the lexical score (optional).
    max_sentences
        Most sentences in an answer.
    min_score
        Sentences below this support are never used; if none reaches it the
        answer is a refusal.
    relative
        Keep only sentences scoring at least this share of the best one.

    >>> from shipyard.genai import Chunk, Hit
    >>> c = Chunk(id="d:0", doc_id="d", text="Paris is big. The Eiffel Tower is 330 m tall.",
    ...           start=100, end=145, source="d", title="Paris")
    >>> a = ExtractiveGenerator().generate("How tall is the Eiffel Tower?", [Hit(c, 1.0)])
    >>> a.text, a.citations[0].start, a.citations[0].end
    ('The Eiffel Tower is 330 m tall. [1]', 114, 145)
    """

    name = "extractive"

    def __init__(self, embedder: Embedder | None = None, *, max_sentences: int = 3,
                 min_score: float = 0.3, relative: float = 0.6):
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.min_score = min_score
        self.relative = relative

    def __repr__(self) -> str:
        return (f"ExtractiveGenerator(embedder={self.embedder!r}, max_sentences="
                f"{self.max_sentences}, min_score={self.min_score}, relative={self.relative})")

    def generate(self, question: str, hits: Sequence[Hit]) -> Answer:
        if not hits:
            return self._refuse(question, hits, "nothing was retrieved for this question")
        q_terms = set(analyse([question])[0])
        candidates: list[tuple[Hit, int, int, str]] = []
        seen: set[tuple[str, int]] = set()
        for hit in hits:
            for a, b in split_sentences(hit.chunk.text):
                sentence = hit.chunk.text[a:b]
                key = (hit.chunk.doc_id, hit.chunk.start + a)
                heading = sentence.strip() in (hit.chunk.title, hit.chunk.section) \
                    and not sentence.rstrip().endswith((".", "!", "?"))
                if key in seen or heading or len(sentence.split()) < 3 \
                        or sentence.lstrip().startswith("#"):
                    continue
                seen.add(key)
                candidates.append((hit, a, b, sentence))
        if not candidates:
            return self._refuse(question, hits, "the retrieved chunks hold no sentences")
        lexical = _coverage(q_terms, [set(t) for t in analyse([c[3] for c in candidates])])
        scores = lexical
        if self.embedder is not None:
            vectors = self.embedder.embed([question, *(c[3] for c in candidates)])
            scores = 0.5 * lexical + 0.5 * np.clip(vectors[1:] @ vectors[0], 0.0, 1.0)
        best = float(scores.max())
        if best < self.min_score:
            return self._refuse(question, hits, f"no retrieved sentence supports an answer "
                                                f"(best support {best:.2f} < {self.min_score})")
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
        chosen = [i for i in order if scores[i] >= max(self.min_score, self.relative * best)]
        chosen = chosen[:self.max_sentences]
        citations = []
        parts = []
        for marker, i in enumerate(chosen, start=1):
            hit, a, b, sentence = candidates[i]
            citations.append(_citation(marker, hit.chunk, a, b))
            parts.append(f"{sentence} [{marker}]")
        return Answer(question=question, text=" ".join(parts), citations=tuple(citations),
                      hits=tuple(hits), generator=self.name)


def _coverage(q_terms: set[str], sentences: list[set[str]]) -> np.ndarray:
    """IDF-weighted share of the question's terms each sentence holds (IDF over
    the candidate sentences: a term every sentence has decides little)."""
    if not q_terms:
        return np.zeros(len(sentences))
    n = len(sentences)
    idf = {t: np.log(1.0 + (n + 1) / (0.5 + sum(t in s for s in sentences))) for t in q_terms}
    total = sum(idf.values())
    return np.array([sum(idf[t] for t in q_terms if t in s) / total for s in sentences])


def build_messages(question: str, hits: Sequence[Hit], *, system_prompt: str = SYSTEM_PROMPT,
                   template: str = USER_TEMPLATE) -> list[dict[str, str]]:
    """The chat messages for ``question`` over ``hits`` (passage ``[n]`` is
    ``hits[n-1]``), fenced so a passage cannot pass for the prompt.

    ``template`` is the user message with ``{question}`` and ``{context}``
    (the fenced passages); see :class:`~shipyard.genai.PromptTemplate`.

    >>> build_messages("Why?", [], template="Q: {question}{context}")[1]["content"]
    'Q: Why?'
    """
    return [{"role": "system", "content": system_prompt},
            {"role": "user", "content": render_template(template, question=question,
                                                        context=format_passages(hits))}]


class ChatGenerator(Generator):
    """A chat model writing from the fenced passages, citing them as ``[n]``.

    Subclasses implement :meth:`complete` (messages in, text and token
    counts out); this class builds the messages (default prompts or a
    registered :class:`~shipyard.genai.PromptTemplate`), refuses when nothing
    was retrieved or the model wrote nothing, and turns the ``[n]`` markers
    into citations. A model that cites nothing (small local models rarely
    do) gets markers where an answer sentence is supported by a passage:
    at least half of the sentence's terms (stemmed, no stopwords) in it.
    """

    system_prompt: str = SYSTEM_PROMPT
    prompt: PromptTemplate | None = None

    def with_prompt(self, prompt: PromptTemplate) -> ChatGenerator:
        if not isinstance(prompt, PromptTemplate):
            raise GenAIError(f"prompt must be a PromptTemplate, got {type(prompt).__name__}")
        twin = copy.copy(self)  # shares the client or the loaded model
        twin.prompt = prompt
        return twin

    def messages(self, question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
        """The chat messages for ``question`` over ``hits``."""
        if self.prompt is not None:
            return self.prompt.render(question, hits)
        return build_messages(question, hits, system_prompt=self.system_prompt)

    @abstractmethod
    def complete(self, messages: list[dict[str, str]]
                 ) -> tuple[str, dict[str, int] | None]:
        """The model's reply to ``messages`` and its ``{"prompt_tokens",
        "completion_tokens"}`` (None when unknown). Raises
        :class:`~shipyard.errors.GenerationError` when the model fails."""

    def generate(self, question: str, hits: Sequence[Hit]) -> Answer:
        if not hits:
            return self._refuse(question, hits, "nothing was retrieved for this question")
        text, usage = self.complete(self.messages(question, hits))
        text = (text or "").strip()
        prompt = self.prompt.ref if self.prompt is not None else None
        if not text:
            return replace(self._refuse(question, hits, "the model returned an empty answer"),
                           prompt=prompt)
        if not _MARKER.search(text):
            text = mark_support(text, hits)
        return Answer(question=question, text=text, citations=tuple(self._cite(text, hits)),
                      hits=tuple(hits), generator=self.name, prompt=prompt, usage=usage)

    @staticmethod
    def _cite(text: str, hits: Sequence[Hit]) -> list[Citation]:
        used = sorted({int(m) for m in _MARKER.findall(text)})
        return [_citation(n, hits[n - 1].chunk, 0, len(hits[n - 1].chunk.text))
                for n in used if 1 <= n <= len(hits)]


def mark_support(text: str, hits: Sequence[Hit], *, min_share: float = 0.5) -> str:
    """``text`` with ``[n]`` after each sentence that passage ``n`` supports
    (the passage holding the largest share of the sentence's terms, if that
    share reaches ``min_share``); unsupported sentences stay unmarked.

    >>> from shipyard.genai import Chunk, Hit
    >>> c = Chunk(id="d:0", doc_id="d", text="Profits rose 76% to $1.13bn.", start=0, end=28,
    ...           source="d", title="Results")
    >>> mark_support("Profits rose to $1.13bn. I like cake.", [Hit(c, 1.0)])
    'Profits rose to $1.13bn. [1] I like cake.'
    """
    spans = split_sentences(text)
    if not spans or not hits:
        return text
    sentences = analyse([text[a:b] for a, b in spans])
    passages = [set(terms) for terms in analyse([h.chunk.text for h in hits])]
    out, last = [], 0
    for (a, b), terms in zip(spans, sentences):
        terms = set(terms)
        shares = [len(terms & p) / len(terms) if terms else 0.0 for p in passages]
        best = int(np.argmax(shares))
        out.append(text[last:b] + (f" [{best + 1}]" if shares[best] >= min_share else ""))
        last = b
    return "".join(out) + text[last:]


class OpenAIChatGenerator(ChatGenerator):
    """Answers written by any OpenAI-compatible chat endpoint (official
    ``openai`` client), citing passages as ``[n]``.

    Parameters
    ----------
    model
        The endpoint's model name.
    base_url
        E.g. ``http://localhost:8000/v1``; default OpenAI's.
    api_key, api_key_env
        The key, or the environment variable holding it.
    temperature, max_tokens
        Sampling settings (0: repeatable).
    system_prompt
        Replaces :data:`SYSTEM_PROMPT`.
    prompt
        A :class:`~shipyard.genai.PromptTemplate` (e.g.
        ``ws.rag.prompts.get("qa@champion")``): its system prompt and user
        template replace the defaults, and answers record its ref.
    timeout, max_retries
        Per request; the client's retries.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.0,
                 max_tokens: int = 512, system_prompt: str = SYSTEM_PROMPT,
                 prompt: PromptTemplate | None = None,
                 timeout: float = 60.0, max_retries: int = 2):
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        if prompt is not None and not isinstance(prompt, PromptTemplate):
            raise GenAIError(f"prompt must be a PromptTemplate, got {type(prompt).__name__}",
                             hint="pass ws.rag.prompts.get('name@alias')")
        self.prompt = prompt
        self.timeout = timeout
        self.max_retries = max_retries
        self._client: Any = None

    def __repr__(self) -> str:  # never the key
        return (f"OpenAIChatGenerator(model={self.model!r}, base_url={self.base_url!r}, "
                f"temperature={self.temperature}, max_tokens={self.max_tokens}"
                + (f", prompt={self.prompt.ref!r})" if self.prompt is not None else ")"))

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"openai:{self.model}"

    def _client_(self):
        return openai_client(self)

    def complete(self, messages: list[dict[str, str]]
                 ) -> tuple[str, dict[str, int] | None]:
        import openai

        try:
            response = self._client_().chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature,
                max_tokens=self.max_tokens)
        except openai.OpenAIError as exc:
            raise GenerationError(f"the chat endpoint {self.base_url or 'OpenAI'} failed for "
                                  f"model {self.model!r}: {exc}",
                                  hint="check base_url, the model name and the API key") from exc
        if not response.choices or response.choices[0].message.content is None:
            raise GenerationError(f"the chat endpoint returned no answer for {self.model!r}")
        usage = getattr(response, "usage", None)
        usage = {"prompt_tokens": usage.prompt_tokens,
                 "completion_tokens": usage.completion_tokens} \
            if usage is not None and isinstance(usage.prompt_tokens, int) else None
        return response.choices[0].message.content, usage


def answer_sentences(answer: Answer) -> list[tuple[str, list[Citation]]]:
    """The answer's sentences, each without its ``[n]`` markers and with the
    citations those markers name (for scoring groundedness and citation
    precision). A marker belongs to the sentence it is in, or to the one it
    follows ("... tall. [1] Next ...").

    >>> c = Citation(1, "d:0", "d", "d", "T", None, None, 0, 4, "Tall")
    >>> a = Answer("q", "It is tall. [1] It is old.", (c,), (), "x")
    >>> [(s, [x.marker for x in cs]) for s, cs in answer_sentences(a)]
    [('It is tall.', [1]), ('It is old.', [])]
    """
    if answer.refused:
        return []
    by_marker = {c.marker: c for c in answer.citations}
    clean_parts: list[str] = []
    marks: list[tuple[int, int]] = []  # (position in the clean text, marker)
    last = length = 0
    for match in _MARKER.finditer(answer.text):
        clean_parts.append(answer.text[last:match.start()])
        length += match.start() - last
        marks.append((length, int(match.group(1))))
        last = match.end()
    clean_parts.append(answer.text[last:])
    clean = "".join(clean_parts)
    spans = split_sentences(clean)
    cited: list[list[int]] = [[] for _ in spans]
    for pos, marker in marks:
        index = max((i for i, (a, _) in enumerate(spans) if a < pos), default=0)
        if spans:
            cited[index].append(marker)
    return [(clean[a:b], [by_marker[m] for m in dict.fromkeys(ms) if m in by_marker])
            for (a, b), ms in zip(spans, cited)]


def check_generator(generator: object) -> Generator:
    if not isinstance(generator, Generator):
        raise GenAIError(f"a generator must be a shipyard.genai.Generator, got "
                         f"{type(generator).__name__}")
    return generator
