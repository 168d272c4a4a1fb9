"""Embeddings: the offline MiniLM (ONNX Runtime, equal to sentence-transformers;
its int8 graph, close to it), length-sorted batching, the content-hash cache,
and an OpenAI-compatible endpoint with its dimension check."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import ConfigError, EmbeddingDimensionError, EmbeddingError
from shipyard.genai import (
    Embedder,
    EmbeddingCache,
    LocalEmbedder,
    OpenAIEmbedder,
    embed_texts,
    embedder_from_spec,
)

SENTENCES = ["A man is eating food.", "Someone is having a meal.",
             "The stock market crashed today."]


@pytest.fixture(scope="module")
def fp32(xdg_cache):
    """The float32 MiniLM graph (the vectors of sentence-transformers)."""
    return LocalEmbedder(precision="fp32", cache_dir=xdg_cache / "shipyard" / "onnx", threads=1)


@pytest.fixture(scope="module")
def int8(xdg_cache):
    """The quantised MiniLM, quantised once into the session's cache."""
    return LocalEmbedder(precision="int8", cache_dir=xdg_cache / "shipyard" / "onnx", threads=1)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_minilm_is_offline_384_dimensional_and_semantic(precision, request):
    embedder = request.getfixturevalue(precision)
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6
    assert vectors[0] @ vectors[2] < 0.1
    assert embedder.name.startswith("all-MiniLM-L6-v2@53aa51172d14")


def test_onnx_and_sentence_transformers_give_the_same_vectors(fp32):
    torch_backend = LocalEmbedder(backend="torch", threads=1)
    assert np.abs(torch_backend.embed(SENTENCES) - fp32.embed(SENTENCES)).max() < 1e-4
    assert torch_backend.name == fp32.name  # one cache serves both


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_order_and_batching_do_not_change_vectors(precision, request):
    embedder = request.getfixturevalue(precision)
    texts = [f"text number {i} " + "word " * (i % 7) for i in range(10)]
    small = LocalEmbedder(cache_dir=embedder.cache_dir, precision=precision, batch_size=3,
                          threads=2)
    assert np.allclose(small.embed(texts), embedder.embed(texts), atol=1e-5)
    assert np.allclose(embedder.embed(texts[::-1])[::-1], embedder.embed(texts), atol=1e-5)


#: BBC-like passages of different lengths (one is longer than MiniLM's 256 tokens).
PASSAGES = [
    "Oil prices rose to a record as supplies from the Gulf were disrupted.",
    ("The striker scored twice in the second half and his club moved top of the league "
     "after a win that the manager called the best performance of the season."),
    ("Shares in the mobile phone maker fell by 5% after it warned that profits would be "
     "lower than expected this year because of strong competition. ") * 3,
    "Ministers want the new law in place before the election.",
    "The film won best picture at the awards ceremony in Los Angeles. " * 30,
]


def test_int8_vectors_are_close_to_fp32_and_keep_the_similarities(int8, fp32):
    texts = SENTENCES + PASSAGES
    fast, exact = int8.embed(texts), fp32.embed(texts)
    assert fast.shape == exact.shape == (8, 384) and fast.dtype == np.float32
    cosine = (fast * exact).sum(axis=1)
    assert cosine.min() >= 0.97  # measured: mean 0.994, min 0.986 on 512 BBC chunks
    assert not np.allclose(fast, exact, atol=1e-3)  # it is another graph, not fp32 again
    assert np.abs(fast @ fast.T - exact @ exact.T).max() < 0.05  # similarities kept


def test_int8_is_the_default_with_its_own_name_and_old_records_stay_fp32(int8, fp32):
    assert int8.name == f"{fp32.name}-int8"
    assert LocalEmbedder().name == int8.name
    assert LocalEmbedder(backend="torch").name == fp32.name  # torch has no int8 graph
    again = embedder_from_spec(int8.spec())
    assert again.precision == "int8" and again.name == int8.name
    assert embedder_from_spec(fp32.spec()).name == fp32.name
    recorded_before_int8 = {"kind": "local", "name": fp32.name, "model_path": None}
    assert embedder_from_spec(recorded_before_int8).name == fp32.name
    assert embedder_from_spec({"kind": "local"}).name == int8.name  # a new one: the default


def test_int8_vector_depends_on_its_text_alone(int8):
    together = int8.embed(PASSAGES)
    assert np.array_equal(int8.embed(PASSAGES), together)  # deterministic
    assert np.array_equal(int8.embed(PASSAGES[::-1])[::-1], together)  # input order
    alone = np.concatenate([int8.embed([text]) for text in PASSAGES])
    assert np.array_equal(alone, together)  # not its batch: the cache may keep it


def test_unknown_precision_or_int8_on_torch_is_refused():
    with pytest.raises(ConfigError, match="unknown embedding precision 'int4'"):
        LocalEmbedder(precision="int4").embed(["x"])
    with pytest.raises(ConfigError, match="runs on ONNX Runtime only"):
        LocalEmbedder(precision="int8", backend="torch").name  # noqa: B018
    with pytest.raises(ConfigError, match="unknown embedding backend 'tf'"):
        LocalEmbedder(backend="tf").embed(["x"])


class Counting(Embedder):
    """Counts the texts it embeds."""

    batch_size = 4

    def __init__(self, dim: int = 3):
        self.dim, self.seen, self.batches = dim, 0, []

    @property
    def name(self) -> str:
        return "counting"

    def embed_batch(self, texts):
        self.seen += len(texts)
        self.batches.append(list(texts))
        return np.array([[len(t), 1.0, 2.0] + [0.0] * (self.dim - 3) for t in texts])


def test_batches_hold_texts_of_similar_length_and_vectors_come_back_in_order():
    model = Counting()
    texts = ["a" * n for n in (9, 1, 7, 3, 8, 2, 6, 4, 5)]
    vectors = model.embed(texts)
    assert model.batches == [["a", "aa", "aaa", "aaaa"], ["a" * 5, "a" * 6, "a" * 7, "a" * 8],
                             ["a" * 9]]
    lengths = vectors[:, 0] / vectors[:, 1]  # each row is (len, 1, 2), normalised
    assert lengths.tolist() == pytest.approx([9, 1, 7, 3, 8, 2, 6, 4, 5])


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
