"""BM25 over chunk texts (``bm25s``: sparse matrices, far faster than rank-bm25).

Text is analysed the same way for chunks and queries: lowercased words of
two or more letters or digits, English stopwords removed, Snowball-stemmed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
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


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _postings(batch: list[str], word_ids: dict[str, int], vocab: dict[str, int]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Postings of a batch of texts: term ids and their counts (int32, text by
    text, terms ascending), distinct terms per text, and each text's length
    in terms."""
    words = [_WORD.findall(t.lower()) for t in batch]
    _learn({w for ws in words for w in ws if w not in word_ids}, word_ids, vocab)
    counts = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    get = word_ids.__getitem__
    flat = np.fromiter((get(w) for ws in words for w in ws), dtype=np.int64,
                       count=int(counts.sum()))
    doc = np.repeat(np.arange(len(words), dtype=np.int64), counts)
    keep = flat >= 0
    width = len(vocab) + 1
    pairs, tf = np.unique(doc[keep] * width + flat[keep], return_counts=True)
    rows = pairs // width
    terms = (pairs - rows * width).astype(np.int32)
    return (terms, tf.astype(np.int32), np.bincount(rows, minlength=len(words)),
            np.bincount(doc[keep], minlength=len(words)).astype(np.float64))


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

    def fit(self, texts: Iterable[str], *, batch_size: int = 4_096) -> BM25Index:
        """Index ``texts`` (any iterable, consumed once, in batches).

        Terms go straight to integer ids (each distinct word is stemmed once).
        Each batch's postings (term id and count per text) go to a temporary
        file; once document frequencies and lengths are known they are read
        back a batch at a time, scored and scattered into bm25s' term-major
        (CSC) score matrix. Memory is that matrix (8 bytes per distinct term of
        each text) and one batch: never the texts, the analysed texts or a
        second, text-major copy of the matrix. Scores are ``bm25s``' Lucene
        BM25. :meth:`build` does not even hold the matrix.
        """
        with _Postings.collect(texts, batch_size) as postings:
            self._use(postings, *postings.columns(0, postings.n_vocab, self.k1, self.b))
        return self

    def build(self, texts: Iterable[str], path: str | os.PathLike, *, batch_size: int = 4_096,
              part_bytes: int = 128 * 2**20) -> BM25Index:
        """:meth:`fit` and :meth:`save` to the folder ``path`` in one go, the
        score matrix written a range of terms at a time (about ``part_bytes``
        of it in memory at once); returns the saved index, memory-mapped."""
        target = Path(path)
        part = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
        part.mkdir(parents=True)
        try:
            with _Postings.collect(texts, batch_size) as postings:
                self._use(postings, np.zeros(0, np.float32), np.zeros(0, np.int32))
                self._fitted().save(str(part), show_progress=False)  # vocabulary, parameters
                with open(part / "data.csc.index.npy", "wb") as data, \
                        open(part / "indices.csc.index.npy", "wb") as indices:
                    _npy_header(data, np.float32, postings.nnz)
                    _npy_header(indices, np.int32, postings.nnz)
                    for lo, hi in postings.ranges(max(1, part_bytes // 8)):
                        scores, docs = postings.columns(lo, hi, self.k1, self.b)
                        data.write(memoryview(scores))
                        indices.write(memoryview(docs))
            (part / "n_docs").write_text(str(self.n_docs_))
            _replace_folder(part, target)
        finally:
            if part.exists():
                shutil.rmtree(part, ignore_errors=True)
        saved = BM25Index.load(target)
        self.retriever_, self.n_docs_ = saved.retriever_, saved.n_docs_
        return self

    def _use(self, postings: _Postings, data: np.ndarray, indices: np.ndarray) -> None:
        """Make the bm25s retriever of a score matrix."""
        import bm25s

        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.scores = {"data": data, "indices": indices, "indptr": postings.indptr,
                            "num_docs": postings.n_docs}
        vocab = dict(postings.vocab)
        vocab[""] = postings.n_vocab - 1  # bm25s' empty token, last
        retriever.vocab_dict = vocab
        retriever.nonoccurrence_array = None  # Lucene BM25 has none
        retriever.unique_token_ids_set = set(vocab.values())
        self.retriever_ = retriever
        self.n_docs_ = postings.n_docs

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
            _replace_folder(part, target)
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


def _replace_folder(part: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    os.replace(part, target)


def _npy_header(fh, dtype: Any, length: int) -> None:
    """The header of a ``.npy`` file of a 1-d array; its data follows."""
    np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": (length,)})


class _Postings:
    """Postings of a corpus, spilled to a temporary file batch by batch (term
    ids, then counts, int32, text by text); in memory only what scoring
    needs: vocabulary, distinct terms per text, text lengths, document
    frequencies."""

    def __init__(self, spill) -> None:
        self.spill = spill
        self.word_ids: dict[str, int] = {}  # word -> term id, -1 for a stopword
        self.vocab: dict[str, int] = {}  # stem -> term id
        self.per_text: list[np.ndarray] = []  # distinct terms of each text, per batch
        self.lengths = np.zeros(0)
        self.indptr = np.zeros(1, np.int64)

    @classmethod
    @contextlib.contextmanager
    def collect(cls, texts: Iterable[str], batch_size: int) -> Iterator[_Postings]:
        import tempfile

        with tempfile.TemporaryFile(prefix="bm25-postings-") as spill:
            postings = cls(spill)
            df = np.zeros(0, dtype=np.int64)  # texts per term, grown per batch
            lengths = []
            for batch in _batches(texts, batch_size):
                terms, tf, nnz, length = _postings(batch, postings.word_ids, postings.vocab)
                df = np.concatenate([df, np.zeros(len(postings.vocab) + 1 - len(df), np.int64)])
                df += np.bincount(terms, minlength=len(df))
                spill.write(memoryview(terms))
                spill.write(memoryview(tf))
                postings.per_text.append(nnz)
                lengths.append(length)
            postings.lengths = np.concatenate(lengths) if lengths else np.zeros(0)
            postings.freq = np.zeros(postings.n_vocab, dtype=np.int64)
            postings.freq[: len(df)] = df[: postings.n_vocab]
            # int32 offsets where they fit
            postings.indptr = np.zeros(postings.n_vocab + 1, dtype=np.int32
                                       if postings.nnz < 2**31 else np.int64)
            np.cumsum(postings.freq, out=postings.indptr[1:])
            yield postings

    @property
    def n_vocab(self) -> int:
        return len(self.vocab) + 1  # bm25s' empty token, last

    @property
    def n_docs(self) -> int:
        return len(self.lengths)

    @property
    def nnz(self) -> int:
        return int(self.freq.sum())

    def ranges(self, postings: int) -> Iterator[tuple[int, int]]:
        """Consecutive term ranges of at most ``postings`` postings each (a
        term with more gets a range of its own)."""
        lo = 0
        while lo < self.n_vocab:
            hi = int(np.searchsorted(self.indptr, int(self.indptr[lo]) + postings,
                                     side="right")) - 1
            hi = min(max(hi, lo + 1), self.n_vocab)
            yield lo, hi
            lo = hi

    def columns(self, lo: int, hi: int, k1: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        """Scores and text positions of terms ``lo``..``hi - 1`` (their CSC
        ``data`` and ``indices``): the spill read back batch by batch, each
        posting scored and put in its term's column."""
        n_docs, freq = self.n_docs, self.freq[lo:hi]
        idf = np.log(1.0 + (n_docs - freq + 0.5) / (freq + 0.5)).astype(np.float32)
        idf[freq == 0] = 0.0
        avg = float(self.lengths.mean()) if self.nnz else 1.0  # no postings: no lengths
        norm = k1 * ((1 - b) + b * self.lengths / avg)
        base = int(self.indptr[lo])
        data = np.empty(int(self.indptr[hi]) - base, dtype=np.float32)
        indices = np.empty(len(data), dtype=np.int32)
        fill = self.indptr[lo:hi].astype(np.int64) - base  # next free slot of each column
        whole = lo == 0 and hi == self.n_vocab
        self.spill.seek(0)
        first = 0
        for counts in self.per_text:
            n = int(counts.sum())
            terms = np.frombuffer(self.spill.read(4 * n), dtype=np.int32)
            tf = np.frombuffer(self.spill.read(4 * n), dtype=np.int32)
            docs = np.repeat(np.arange(first, first + len(counts), dtype=np.int32), counts)
            first += len(counts)
            if not whole:
                keep = (terms >= lo) & (terms < hi)
                terms, tf, docs = terms[keep], tf[keep], docs[keep]
            order = np.argsort(terms, kind="stable")  # texts stay in order within a term
            term = terms[order] - lo
            per_term = np.bincount(term, minlength=hi - lo)
            rank = np.arange(len(term)) - (np.cumsum(per_term) - per_term)[term]
            slot = fill[term] + rank
            doc = docs[order]
            count = tf[order].astype(np.float64)
            indices[slot] = doc
            data[slot] = idf[term] * (count / (norm[doc] + count))
            fill += per_term
        return data, indices
