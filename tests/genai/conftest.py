"""Fixtures of the RAG tests: one offline MiniLM for the session (its ONNX
export is made once, in a temporary cache), small corpora of every kind, a
workspace whose ``ws.rag`` uses that embedder, and a fake OpenAI server."""

from __future__ import annotations

import os

import pytest

from shipyard import Workspace
from shipyard.genai import LocalEmbedder, Rag

from .documents import FAQ_HTML, GUIDE_MD, HANDBOOK_PAGES, NOTES_TXT, make_pdf
from .fake_openai import FakeOpenAI

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def xdg_cache(tmp_path_factory):
    """A cache folder for this session (the ONNX export lands in it)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="session")
def embedder(xdg_cache):
    """The offline MiniLM on ONNX Runtime, one thread (steady on busy cores)."""
    return LocalEmbedder(cache_dir=xdg_cache / "shipyard" / "onnx", threads=1)


@pytest.fixture
def ws(tmp_path, xdg_cache, monkeypatch):
    """A fresh workspace; ``ws.rag``'s default MiniLM finds the session's
    ONNX export."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    workspace = Workspace.open(tmp_path / "home")
    yield workspace
    workspace.close()


@pytest.fixture
def rag(ws, embedder):
    """``Rag`` of the workspace with the session's embedder."""
    front = Rag(ws, embedder=embedder)
    yield front
    front.close()


@pytest.fixture
def corpus(tmp_path):
    """A folder with one document of each kind."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "guide.md").write_text(GUIDE_MD)
    (folder / "faq.html").write_text(FAQ_HTML)
    (folder / "notes.txt").write_text(NOTES_TXT)
    (folder / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES, title="Security handbook"))
    return folder


@pytest.fixture
def fake_openai():
    with FakeOpenAI() as server:
        yield server
