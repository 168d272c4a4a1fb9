"""Embeddings: the offline MiniLM (ONNX Runtime, equal to sentence-transformers),
the content-hash cache, and an OpenAI-compatible endpoint with its dimension
check."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import EmbeddingDimensionError, EmbeddingError
from shipyard.genai import (Embedder, EmbeddingCache, LocalEmbedder, OpenAIEmbedder,
                            embed_texts, embedder_from_spec)

SENTENCES = ["A man is eating food.", "Someone is having a meal.",
             "The stock market crashed today."]


def test_minilm_is_offline_384_dimensional_and_semantic(embedder):
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6
    assert vectors[0] @ vectors[2] < 0.1
    assert embedder.name.startswith("all-MiniLM-L6-v2@53aa51172d14")


def test_onnx_and_sentence_transformers_give_the_same_vectors(embedder):
    torch_backend = LocalEmbedder(backend="torch", threads=1)
    assert np.abs(torch_backend.embed(SENTENCES) - embedder.embed(SENTENCES)).max() < 1e-4
    assert torch_backend.name == embedder.name  # one cache serves both


def test_order_and_batching_do_not_change_vectors(embedder):
    texts = [f"text number {i} " + "word " * (i % 7) for i in range(10)]
    small = LocalEmbedder(cache_dir=embedder.cache_dir, batch_size=3, threads=1)
    assert np.allclose(small.embed(texts), embedder.embed(texts), atol=1e-5)
    assert np.allclose(embedder.embed(texts[::-1])[::-1], embedder.embed(texts), atol=1e-5)


class Counting(Embedder):
    """Counts the texts it embeds."""

    batch_size = 4

    def __init__(self, dim: int = 3):
        self.dim, self.seen = dim, 0

    @property
    def name(self) -> str:
        return "counting"

    def embed_batch(self, texts):
        self.seen += len(texts)
        return np.array([[len(t), 1.0, 2.0] + [0.0] * (self.dim - 3) for t in texts])


def test_the_cache_embeds_each_text_once(tmp_path):
    cache, model = EmbeddingCache(tmp_path / "e.sqlite"), Counting()
    first, computed = embed_texts(model, ["a", "bb", "a"], cache)
    assert computed == 2 and model.seen == 2
    again, computed = embed_texts(model, ["bb", "a", "ccc"], cache)
    assert computed == 1 and model.seen == 3
    assert np.allclose(again[0], first[1]) and np.allclose(again[1], first[0])
    assert cache.clear("counting") == 3


def test_a_model_that_changes_dimension_is_refused(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embed_texts(Counting(dim=3), ["a"], cache)
    with pytest.raises(EmbeddingDimensionError, match="now returns 5-dimensional"):
        embed_texts(Counting(dim=5), ["new text"], cache)
    with pytest.raises(EmbeddingDimensionError, match="index holds 7-dimensional"):
        embed_texts(Counting(dim=3), ["a"], cache, expected_dim=7)


def test_openai_compatible_endpoint(fake_openai):
    model = OpenAIEmbedder("fake-embed", base_url=fake_openai.url, api_key="k", batch_size=2)
    vectors = model.embed(["cats purr", "dogs bark", "cats purr loudly"])
    assert vectors.shape == (3, 32)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    assert [len(body["input"]) for _, body in fake_openai.requests] == [2, 1]
    assert model.name == f"openai:{fake_openai.url}:fake-embed"
    spec = model.spec()
    assert "api_key" not in spec and spec["api_key_env"] == "OPENAI_API_KEY"
    assert "k" not in repr(model).replace("fake", "").replace("batch", "")
    again = embedder_from_spec(spec)
    assert isinstance(again, OpenAIEmbedder) and again.name == model.name


def test_openai_endpoint_dimension_check(fake_openai):
    model = OpenAIEmbedder("fake-embed", base_url=fake_openai.url, dimension=32)
    model.embed(["fine"])
    fake_openai.dim = 48  # the model behind the endpoint changed
    with pytest.raises(EmbeddingDimensionError, match="48-dimensional vectors; 32 were expected"):
        model.embed(["not fine"])


def test_openai_endpoint_down_is_a_clear_error():
    model = OpenAIEmbedder("m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(EmbeddingError, match="embeddings endpoint .* failed"):
        model.embed(["x"])
