"""Chunks are counted in the embedding model's own tokens, overlap, and never
straddle a section."""

from __future__ import annotations

from itertools import pairwise

import pytest

from shipyard.errors import ConfigError
from shipyard.genai import Document, TokenChunker, parse_document

from .documents import GUIDE_MD

LONG = " ".join(f"Sentence number {i} talks about interest rates and markets." for i in range(60))


def test_chunks_fit_the_token_budget_and_overlap():
    chunker = TokenChunker(chunk_tokens=40, overlap=10)
    doc = Document.from_text(LONG, source="long")
    chunks = chunker.split(doc)
    assert len(chunks) > 10
    assert all(chunker.count_tokens(c.text) <= 40 for c in chunks)
    for a, b in pairwise(chunks):
        assert b.start < a.end  # consecutive chunks share text
    assert chunks[0].start == 0 and chunks[-1].end == len(LONG)
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)


def test_chunks_end_at_sentence_ends_and_never_inside_a_word():
    chunks = TokenChunker(chunk_tokens=30, overlap=5).split(Document.from_text(LONG, source="x"))
    assert all(c.text.endswith(".") for c in chunks[:-1])
    words = set(LONG.split())
    assert all(c.text.split()[0] in words for c in chunks)


def test_chunks_never_straddle_sections_and_carry_their_metadata():
    doc = parse_document(GUIDE_MD.encode(), "markdown", source="guide.md")
    chunks = TokenChunker(chunk_tokens=16, overlap=4).split(doc)
    bounds = [(s.start, s.end, s.title) for s in doc.sections]
    for c in chunks:
        assert any(a <= c.start and c.end <= b and c.section == t for a, b, t in bounds)
    assert {c.section for c in chunks} == {"Shipyard guide", "Installing", "Rotating keys"}
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)
    assert all(c.title == "Shipyard guide" and c.doc_id == "guide.md" for c in chunks)


def test_chunk_ids_are_stable_across_runs():
    doc = Document.from_text(LONG, source="same")
    first = [c.id for c in TokenChunker(40, 10).split(doc)]
    assert first == [c.id for c in TokenChunker(40, 10).split(doc)]


def test_indexed_text_carries_a_contextual_header():
    doc = parse_document(GUIDE_MD.encode(), "markdown", source="guide.md")
    chunk = next(c for c in TokenChunker(16, 4).split(doc) if c.section == "Installing")
    assert chunk.indexed_text.startswith("Shipyard guide - Installing\n")


@pytest.mark.parametrize("size, overlap, message", [
    (300, 10, "from 8 to 254"), (4, 0, "from 8 to 254"), (100, 60, "overlap must be"),
    (100, -1, "overlap must be"), (True, 0, "from 8 to 254")])
def test_bad_sizes_are_refused(size, overlap, message):
    with pytest.raises(ConfigError, match=message):
        TokenChunker(size, overlap).split(Document.from_text("x y z", source="s"))
