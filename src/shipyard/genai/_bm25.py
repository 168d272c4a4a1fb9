"""BM25 over chunk texts (``bm25s``: sparse matrices, far faster than rank-bm25).

Text is analysed the same way for chunks and queries: lowercased words of
two or more letters or digits, English stopwords removed, Snowball-stemmed.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import GenAIError

_WORD = re.compile(r"(?u)\b\w\w+\b")


#: Question words, on top of Lucene's English stopwords: they say what kind of
#: answer is wanted, never what it is about.
QUESTION_WORDS = frozenset({"how", "what", "when", "where", "which", "who", "whom", "whose",
                            "why", "does", "did", "do"})


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | QUESTION_WORDS


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def analyse(texts: Sequence[str]) -> list[list[str]]:
    """Terms of each text: lowercased, stopwords removed, stemmed.

    >>> analyse(["The cats are running!"])
    [['cat', 'run']]
    """
    stop = _stopwords()
    words = [[w for w in _WORD.findall(t.lower()) if w not in stop] for t in texts]
    stem = _stemmer().stemWords
    return [stem(ws) if ws else [] for ws in words]


def _learn(words: set[str], word_ids: dict[str, int], vocab: dict[str, int]) -> None:
    """Give each new word its term id (-1 for a stopword), stemming each once."""
    if not words:
        return
    stop = _stopwords()
    for w in words:
        if w in stop:
            word_ids[w] = -1
    fresh = [w for w in words if w not in stop]
    for w, stem in zip(fresh, _stemmer().stemWords(fresh)):
        word_ids[w] = vocab.setdefault(stem, len(vocab))


class BM25Index:
    """A BM25 index of a list of texts; positions index the texts.

    Parameters
    ----------
    k1, b
        BM25 parameters (Lucene's variant).

    >>> index = BM25Index().fit(["cats sit on mats", "dogs run", "a cat and a dog"])
    >>> [i for i, _ in index.search("cat", k=2)]  # the shorter text first
    [2, 0]
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1 = k1
        self.b = b
        self.retriever_: Any = None
        self.n_docs_ = 0

    def __repr__(self) -> str:
        return f"BM25Index(k1={self.k1}, b={self.b})"

    def fit(self, texts: Iterable[str], *, batch_size: int = 10_000) -> BM25Index:
        """Index ``texts`` (any iterable, consumed once, in batches).

        Terms go straight to integer ids (each distinct word is stemmed once)
        and the score matrix is built from numpy arrays, so memory is the
        index itself (a few bytes per distinct term of each text), not the
        analysed texts. Scores are ``bm25s``' Lucene BM25.
        """
        import bm25s
        import scipy.sparse as sp

        word_ids: dict[str, int] = {}  # word -> term id, -1 for a stopword
        vocab: dict[str, int] = {}  # stem -> term id
        terms_parts: list[np.ndarray] = []
        tf_parts: list[np.ndarray] = []
        nnz_parts: list[np.ndarray] = []
        len_parts: list[np.ndarray] = []
        df = [np.zeros(0, dtype=np.int64)]  # documents per term, grown per batch
        batch: list[str] = []

        def flush() -> None:
            words = [_WORD.findall(t.lower()) for t in batch]
            batch.clear()
            _learn({w for ws in words for w in ws if w not in word_ids}, word_ids, vocab)
            counts = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
            get = word_ids.__getitem__
            flat = np.fromiter((get(w) for ws in words for w in ws), dtype=np.int64,
                               count=int(counts.sum()))
            doc = np.repeat(np.arange(len(words), dtype=np.int64), counts)
            keep = flat >= 0
            key = doc[keep] * (len(vocab) + 1) + flat[keep]
            pairs, tf = np.unique(key, return_counts=True)
            rows = pairs // (len(vocab) + 1)
            terms = (pairs - rows * (len(vocab) + 1)).astype(np.int32)
            counts = np.bincount(terms, minlength=len(vocab) + 1)
            counts[: len(df[0])] += df[0]
            df[0] = counts
            terms_parts.append(terms)
            tf_parts.append(tf.astype(np.float32))
            nnz_parts.append(np.bincount(rows, minlength=len(words)).astype(np.int64))
            len_parts.append(np.bincount(doc[keep], minlength=len(words)).astype(np.float64))

        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        n_docs = int(sum(len(x) for x in len_parts))
        lengths = np.concatenate(len_parts) if len_parts else np.zeros(0)
        nnz = int(sum(int(x.sum()) for x in nnz_parts))
        # int32 offsets where they fit: scipy gives the indices the offsets' type
        indptr = np.zeros(n_docs + 1, dtype=np.int32 if nnz < 2**31 else np.int64)
        if n_docs:
            np.cumsum(np.concatenate(nnz_parts), out=indptr[1:])
        nnz_parts.clear()
        len_parts.clear()
        data = np.concatenate(tf_parts) if tf_parts else np.zeros(0, np.float32)
        tf_parts.clear()
        indices = np.concatenate(terms_parts) if terms_parts else np.zeros(0, np.int32)
        terms_parts.clear()
        n_vocab = len(vocab) + 1  # bm25s' empty token, last
        # (np.bincount over all indices would copy them to int64: counted per batch)
        freq = np.zeros(n_vocab, dtype=np.int64)
        freq[: len(df[0])] = df[0]
        idf = np.log(1.0 + (n_docs - freq + 0.5) / (freq + 0.5)).astype(np.float32)
        idf[freq == 0] = 0.0
        avg = float(lengths.mean()) if n_docs else 0.0
        step = 1 << 16  # score in row blocks: no nnz-sized temporaries
        for lo in range(0, n_docs, step):
            hi = min(lo + step, n_docs)
            a, z = int(indptr[lo]), int(indptr[hi])
            if a == z:
                continue
            norm = self.k1 * ((1 - self.b) + self.b * lengths[lo:hi] / avg)
            per = np.repeat(norm, np.diff(indptr[lo:hi + 1]))
            tf = data[a:z].astype(np.float64)
            data[a:z] = idf[indices[a:z]] * (tf / (per + tf))
        matrix = sp.csr_matrix((data, indices, indptr), shape=(n_docs, n_vocab))
        del data, indices, indptr
        csc = matrix.tocsc()
        del matrix
        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.scores = {"data": csc.data.astype(np.float32, copy=False),
                            "indices": csc.indices.astype(np.int32, copy=False),
                            "indptr": csc.indptr.astype(np.int32 if csc.nnz < 2**31 else np.int64,
                                                        copy=False),
                            "num_docs": n_docs}
        vocab[""] = n_vocab - 1
        retriever.vocab_dict = vocab
        retriever.nonoccurrence_array = None  # Lucene BM25 has none
        retriever.unique_token_ids_set = set(vocab.values())
        self.retriever_ = retriever
        self.n_docs_ = n_docs
        return self

    def _fitted(self):
        if self.retriever_ is None:
            raise GenAIError("the BM25 index is not fitted", hint="call fit(texts) first")
        return self.retriever_

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every text for ``query`` (zeros if no term is known)."""
        retriever = self._fitted()
        terms = [t for t in analyse([query])[0] if t in retriever.vocab_dict]
        if not terms:
            return np.zeros(self.n_docs_, dtype=np.float32)
        return np.asarray(retriever.get_scores(terms), dtype=np.float32)

    def search(self, query: str, k: int = 10, mask: np.ndarray | None = None
               ) -> list[tuple[int, float]]:
        """Positions and scores of the ``k`` best texts with a positive score
        (and ``mask`` true, when given), best first."""
        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0 or k < 1:
            return []
        if positive.size > k:
            top = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        else:
            top = positive
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by position
        return [(int(i), float(scores[i])) for i in top]

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the folder ``path`` (atomically)."""
        target = Path(path)
        part = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
        part.mkdir(parents=True)
        try:
            self._fitted().save(str(part), show_progress=False)
            (part / "n_docs").write_text(str(self.n_docs_))
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(part, target)
        finally:
            if part.exists():
                shutil.rmtree(part, ignore_errors=True)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True) -> BM25Index:
        """Read an index :meth:`save` wrote; ``mmap``: map its arrays from disk
        (near-instant, pages read on demand) instead of reading them in."""
        import bm25s

        folder = Path(path)
        try:
            retriever = bm25s.BM25.load(str(folder), mmap=mmap)
            n_docs = int((folder / "n_docs").read_text())
        except (OSError, ValueError) as exc:
            raise GenAIError(f"cannot load the BM25 index at {str(folder)!r}: {exc}") from exc
        index = cls(k1=retriever.k1, b=retriever.b)
        index.retriever_ = retriever
        index.n_docs_ = n_docs
        return index
