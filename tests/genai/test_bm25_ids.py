"""BM25 built from integer term ids, in batches: the same scores as bare
``bm25s`` over the analysed texts, and a memory-mapped reload."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest

from shipyard.genai import BM25Index, bbc_news
from shipyard.genai._bm25 import analyse

QUERIES = ["government economy growth", "film award best actor", "mobile phone market",
           "cats running", "the of and", "zzzz qqqq", "said year people told"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = [d.text for d in bbc_news(limit=150)]
    return [*docs, "", "the and of it", "Cats cats CATS running runs ran", "x y z"]


def bare_scores(texts: list[str], query: str) -> np.ndarray:
    ref = bm25s.BM25(k1=1.5, b=0.75)
    ref.index(analyse(texts), show_progress=False)
    terms = [t for t in analyse([query])[0] if t in ref.vocab_dict]
    return ref.get_scores(terms) if terms else np.zeros(len(texts), np.float32)


def test_scores_match_bare_bm25s(texts):
    index = BM25Index().fit(texts)
    assert index.n_docs_ == len(texts)
    for query in QUERIES:
        np.testing.assert_allclose(index.scores(query), bare_scores(texts, query),
                                   rtol=1e-6, atol=1e-7)
    assert index.search("cats", k=1)[0][0] == len(texts) - 2


def test_batches_and_iterables_give_the_same_index(texts):
    whole = BM25Index().fit(texts)
    streamed = BM25Index().fit((t for t in texts), batch_size=7)
    for query in QUERIES:
        assert np.array_equal(whole.scores(query), streamed.scores(query))
        assert whole.search(query, k=5) == streamed.search(query, k=5)


def test_build_writes_the_same_index_a_range_of_terms_at_a_time(texts, tmp_path):
    whole = BM25Index().fit(texts, batch_size=50)  # (term ids follow the batches)
    built = BM25Index().build(texts, tmp_path / "bm25", batch_size=50, part_bytes=4096)
    assert isinstance(built.retriever_.scores["data"], np.memmap)  # saved, then mapped
    for name in ("data", "indices", "indptr"):
        assert np.array_equal(built.retriever_.scores[name], whole.retriever_.scores[name])
    for query in QUERIES:
        assert built.search(query, k=10) == whole.search(query, k=10)
    assert [p.name for p in tmp_path.iterdir()] == ["bm25"]  # no part folder left


def test_memory_mapped_reload_answers_the_same(texts, tmp_path):
    index = BM25Index(k1=1.2, b=0.6).fit(texts)
    index.save(tmp_path / "bm25")
    mapped = BM25Index.load(tmp_path / "bm25")
    assert isinstance(mapped.retriever_.scores["data"], np.memmap)
    assert (mapped.k1, mapped.b, mapped.n_docs_) == (1.2, 0.6, len(texts))
    read = BM25Index.load(tmp_path / "bm25", mmap=False)
    assert not isinstance(read.retriever_.scores["data"], np.memmap)
    for query in QUERIES:
        assert mapped.search(query, k=10) == index.search(query, k=10) == read.search(query, 10)


def test_empty_corpus_and_empty_texts():
    empty = BM25Index().fit([])
    assert empty.n_docs_ == 0 and empty.search("anything") == []
    stop = BM25Index().fit(["the and", "of it"])
    assert stop.search("the") == [] and stop.scores("cat").tolist() == [0.0, 0.0]
