"""BM25 over chunk texts (``bm25s``: sparse matrices, far faster than rank-bm25).

Text is analysed the same way for chunks and queries: lowercased words of
two or more letters or digits, English stopwords removed, Snowball-stemmed.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Sequence
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

    def fit(self, texts: Sequence[str]) -> BM25Index:
        import bm25s

        terms = analyse(texts)
        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.index(terms, show_progress=False)
        self.retriever_ = retriever
        self.n_docs_ = len(terms)
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
    def load(cls, path: str | os.PathLike) -> BM25Index:
        import bm25s

        folder = Path(path)
        try:
            retriever = bm25s.BM25.load(str(folder), mmap=False)
            n_docs = int((folder / "n_docs").read_text())
        except (OSError, ValueError) as exc:
            raise GenAIError(f"cannot load the BM25 index at {str(folder)!r}: {exc}") from exc
        index = cls(k1=retriever.k1, b=retriever.b)
        index.retriever_ = retriever
        index.n_docs_ = n_docs
        return index
