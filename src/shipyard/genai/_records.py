"""The records every RAG step passes on: documents, chunks, hits, answers.

Plain frozen dataclasses with no heavy imports, so any layer above (serving,
tracing, the CLI) can build, compare and serialise them.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

#: The metadata fields a chunk carries and a filter (``where=``) may name.
METADATA_FIELDS = ("doc_id", "source", "title", "section", "page")


def sha256_text(text: str) -> str:
    """sha256 of ``text`` encoded as UTF-8.

    >>> sha256_text("abc")[:12]
    'ba7816bf8f01'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Section:
    """A span ``[start, end)`` of a document's text under one heading and on one
    page. Chunks never straddle two sections.

    Attributes
    ----------
    start, end
        Character offsets in :attr:`Document.text`.
    title
        The heading that opens the section (Markdown heading, HTML h1-h3);
        ``None`` before the first heading and in plain text.
    page
        1-based PDF page; ``None`` for other kinds.
    """

    start: int
    end: int
    title: str | None = None
    page: int | None = None


@dataclass(frozen=True)
class Document:
    """One document's extracted text, with where it came from.

    Build one with :func:`shipyard.genai.read_document` (files) or
    :meth:`Document.from_text`.

    Attributes
    ----------
    source
        Where it came from: the resolved file path, or the name given. Also
        the document's identity for re-ingestion (:attr:`doc_id`).
    text
        The extracted text; citations hold offsets into it.
    title
        From the file (first Markdown/HTML heading, ``<title>``, PDF
        metadata) or its first line.
    kind
        ``text``, ``markdown``, ``html`` or ``pdf``.
    sections
        Consecutive spans covering the text (see :class:`Section`).
    content_hash
        sha256 of the raw bytes: unchanged documents are skipped on
        re-ingestion.
    size_bytes
        Size of the raw bytes.
    notes
        What extraction dropped or noticed (hidden HTML elements, empty PDF
        pages), for the ingestion record.

    >>> doc = Document.from_text("Hello world.", source="greeting")
    >>> doc.doc_id, doc.title, doc.sections[0].end
    ('greeting', 'Hello world.', 12)
    """

    source: str
    text: str
    title: str
    kind: str
    sections: tuple[Section, ...]
    content_hash: str
    size_bytes: int
    notes: tuple[str, ...] = ()

    @property
    def doc_id(self) -> str:
        return self.source

    @classmethod
    def from_text(cls, text: str, *, source: str, title: str | None = None) -> Document:
        """A plain-text document from a string (one section)."""
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return cls(source=source, text=text, title=title or first[:200] or source,
                   kind="text", sections=(Section(0, len(text)),),
                   content_hash=sha256_text(text), size_bytes=len(text.encode("utf-8")))


@dataclass(frozen=True)
class Chunk:
    """A piece of one section of a document: what is embedded and retrieved.

    Attributes
    ----------
    id
        Stable id: ``<doc key>:<position>``.
    doc_id, source, title, section, page
        Metadata, filterable (``where={"page": 3}``).
    text
        The chunk's text, ``document.text[start:end]``.
    start, end
        Character offsets in the document's text.
    position
        Index of the chunk in its document.
    """

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    source: str
    title: str
    section: str | None = None
    page: int | None = None
    position: int = 0

    @property
    def indexed_text(self) -> str:
        """What is embedded and BM25-indexed: the text preceded by its title and
        section (a contextual header), unless the text already starts with the
        title. The header lets a chunk deep in a document still match a query
        about the document's subject."""
        head = " - ".join(x for x in (self.title, self.section) if x)
        if not head or self.text.lstrip().startswith(self.title):
            return self.text
        return f"{head}\n{self.text}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk.

    Attributes
    ----------
    chunk
        The chunk.
    score
        Higher is better; its scale depends on ``retriever`` (cosine
        similarity for ``dense``, BM25 for ``bm25``, fused RRF for
        ``hybrid``, the reranker's own).
    rank
        1-based position in the result.
    retriever
        What ranked it last: ``dense``, ``bm25``, ``hybrid``, ``mmr`` or a
        reranker's name.
    scores
        The component scores seen on the way (``{"dense": 0.71, "bm25": 9.2}``).
    """

    chunk: Chunk
    score: float
    rank: int = 1
    retriever: str = "dense"
    scores: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"chunk": self.chunk.to_dict(), "score": self.score, "rank": self.rank,
                "retriever": self.retriever, "scores": dict(self.scores)}


@dataclass(frozen=True)
class Citation:
    """Where a part of an answer comes from.

    Attributes
    ----------
    marker
        The ``[n]`` that refers to it in :attr:`Answer.text`.
    chunk_id, doc_id, source, title, section, page
        The cited chunk and its document.
    start, end
        Character offsets of the quoted span in the document's text.
    quote
        ``document.text[start:end]``.
    """

    marker: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    section: str | None
    page: int | None
    start: int
    end: int
    quote: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """An answer with its citations.

    Attributes
    ----------
    question
        What was asked.
    text
        The answer; each sentence ends with the ``[n]`` markers of its
        citations. Plain text: escape it before putting it into HTML.
    citations
        One per marker.
    hits
        The retrieved context the answer was drawn from.
    generator
        Which generator wrote it (``extractive``, ``openai:<model>``).
    refusal
        Why there is no answer (nothing relevant retrieved, an empty
        collection), else ``None``.
    prompt
        The prompt template version the generator wrote from (``qa@2``),
        or ``None`` (the built-in prompt, or no prompt).
    usage
        Token counts the generator's backend reported (``prompt_tokens``,
        ``completion_tokens``), else ``None``.
    trace_id
        The trace of the request (``ws.rag.trace(trace_id)``); ``None`` when
        not traced.
    """

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    generator: str
    refusal: str | None = None
    prompt: str | None = None
    usage: dict[str, int] | None = field(default=None, compare=False)
    trace_id: str | None = field(default=None, compare=False)

    @property
    def refused(self) -> bool:
        return self.refusal is not None

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "text": self.text,
                "citations": [c.to_dict() for c in self.citations],
                "hits": [h.to_dict() for h in self.hits], "generator": self.generator,
                "refusal": self.refusal, "prompt": self.prompt, "usage": self.usage,
                "trace_id": self.trace_id}
