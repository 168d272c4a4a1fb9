"""Names, refs and text: the one set of rules every stage checks against.

A *name* (dataset, model, candidate) starts with a letter and holds up to 200
letters, digits, ``_``, ``.`` and ``-``. An *alias* is lowercase. *Text*
(keys, tag values, reasons) is printable: no control characters. Errors are
raised in the caller's own exception class, so a dataset name is refused with
a ``DataError`` and a model name with a ``RegistryError``.

>>> check_name("adult_income", "dataset")
'adult_income'
>>> is_name("9lives"), is_name("adult.v2")
(False, True)
>>> ranges([1, 2, 3, 5, 7, 8])
'1-3, 5, 7-8'
>>> shown("x" * 100, 10)
"'xxxxxx..."
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from shipyard.errors import ShipyardError

#: A dataset, model or candidate name.
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,199}")
#: Registered model names of RAG prompt templates start with this
#: (``ws.rag.prompts``; ``shipyard models list`` leaves them out by default).
PROMPT_PREFIX = "prompt."
#: An alias on a model version (``champion``).
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")
#: A version number fits the 32-bit integer column of PostgreSQL.
MAX_VERSION = 2**31 - 1
#: Control characters, refused in every key, name and piece of text.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NAME_HINT = "start with a letter; use up to 200 letters, digits, '_', '.' and '-'"


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_name(name: object) -> bool:
    """Whether ``name`` is a valid name."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object, what: str, error: type[ShipyardError] = ShipyardError,
               example: str = "adult_income") -> str:
    """Return ``name`` if it is a valid name of a ``what``, else raise ``error``."""
    if not is_name(name):
        raise error(f"{shown(name)} is not a valid {what} name",
                    hint=f"{NAME_HINT} (e.g. {example})")
    return name  # type: ignore[return-value]


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character."""
    return CONTROL.search(text) is not None


def check_text(value: object, what: str, limit: int, error: type[ShipyardError] = ShipyardError,
               *, empty: bool = False) -> str:
    """Return ``value`` if it is text of 1 (0 with ``empty``) to ``limit``
    printable characters, else raise ``error`` naming ``what``."""
    if not isinstance(value, str):
        raise error(f"{what} must be text, got {type(value).__name__}")
    if (not empty and not value.strip()) or len(value) > limit or has_control(value):
        low = 0 if empty else 1
        raise error(f"{what} {shown(value, 40)} must be {low} to {limit} printable characters")
    return value


def check_version_number(text: str, ref: str, what: str,
                         error: type[ShipyardError] = ShipyardError,
                         hint: str | None = None) -> int:
    """The version number ``text`` of ``ref`` (1 to 2³¹-1)."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise error(f"{shown(ref)} is not a valid {what} ref: {shown(text)} is not a version "
                    "number", hint=hint)
    number = int(text)
    if not 1 <= number <= MAX_VERSION:
        raise error(f"{shown(ref)} is not a valid {what} ref: versions start at 1 (at most "
                    f"{MAX_VERSION})", hint=hint)
    return number


def ranges(numbers: Iterable[int]) -> str:
    """Sorted numbers as compact ranges: ``[1, 2, 3, 5]`` → ``"1-3, 5"``."""
    parts: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(parts)


def did_you_mean(word: object, options: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options``, else ``""``.

    >>> did_you_mean("acuracy", ["accuracy", "roc_auc"])
    "; did you mean 'accuracy'?"
    """
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
