"""Data sources: where a dataset version's rows come from.

Every source has two verbs: :meth:`Source.read` returns a
:class:`pandas.DataFrame`, and :meth:`Source.describe` returns a JSON-able
dict recorded as the version's ``source``. Descriptions never hold secrets:
URL passwords, credential-like query parameters and header values are
replaced by ``***``.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pandas as pd

from shipyard.errors import SourceError

REDACTED = "***"
# Header, query-parameter and option names whose values are credentials.
_SECRET_NAME = re.compile(r"auth|token|secret|pass|pwd|key|cookie|session|signature|credential",
                          re.IGNORECASE)


# ------------------------------------------------------------------ base
class Source(ABC):
    """Where rows come from. Subclasses store their arguments and read on demand."""

    kind: str = "source"

    @abstractmethod
    def read(self) -> pd.DataFrame:
        """Read the rows.

        Raises
        ------
        SourceError
            The source could not be read or held no table.
        """

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description of the source, free of secrets."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "kind")
        return f"{type(self).__name__}({args})"


def redact_url(url: str) -> str:
    """Hide the password of a URL and credential-like query parameters.

    >>> redact_url("postgresql://bob:s3cret@db/x?sslmode=require&api_key=abc")
    'postgresql://bob:***@db/x?sslmode=require&api_key=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        if ":" in creds:
            creds = f"{creds.split(':', 1)[0]}:{REDACTED}"
        netloc = f"{creds}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_NAME.search(k) else v) for k, v in pairs],
                          safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_mapping(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Copy of ``values`` with credential-like entries replaced by ``***``."""
    if values is None:
        return None
    return {str(k): REDACTED if _SECRET_NAME.search(str(k)) else _jsonable_option(v)
            for k, v in values.items()}


def _jsonable_option(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable_option(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable_option(v) for k, v in value.items()}
    return repr(value)


def _require_columns(df: pd.DataFrame, where: str) -> pd.DataFrame:
    if df.shape[1] == 0:
        raise SourceError(f"{where} holds no columns, so there is no table to register",
                          hint="check that the source is not empty")
    return df


# ----------------------------------------------------------------- files
class FileSource(Source):
    """A table in a local file. Subclasses parse one format.

    Parameters
    ----------
    path
        The file.
    **options
        Passed to the pandas reader (``sep=";"``, ``encoding="latin-1"``...).
    """

    kind = "file"
    format = "file"

    def __init__(self, path: str | os.PathLike, **options: Any):
        self.path = Path(path).expanduser()
        self.options = options

    def __repr__(self) -> str:  # cheap: describe() hashes the file
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({str(self.path)!r}{options})"

    def describe(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"kind": self.kind, "format": self.format,
                                "path": str(self.path.resolve())}
        if self.options:
            desc["options"] = redact_mapping(self.options)
        try:  # provenance: which bytes were read
            desc["size_bytes"] = self.path.stat().st_size
            desc["sha256"] = _file_sha256(self.path)
        except OSError:
            pass
        return desc

    def read(self) -> pd.DataFrame:
        if not self.path.exists():
            raise SourceError(f"{self.format} file {self.path} does not exist",
                              hint="check the path (relative paths start from the current folder)")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a file")
        try:
            df = self._parse()
        except SourceError:
            raise
        except pd.errors.EmptyDataError as exc:
            raise SourceError(f"{self.format} file {self.path} is empty") from exc
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.format} file {self.path} is not valid {exc.encoding} text "
                f"(byte {exc.start})", hint="pass encoding=... if it uses another encoding",
            ) from exc
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        except Exception as exc:  # each parser has its own exception zoo
            raise SourceError(f"{self.path} is not a readable {self.format} file: "
                              f"{_first_line(exc)}") from exc
        return _require_columns(df, f"{self.format} file {self.path}")

    @abstractmethod
    def _parse(self) -> pd.DataFrame: ...


class CsvSource(FileSource):
    """A CSV file (or TSV with ``sep="\\t"``); compression inferred from the name."""

    kind = "file"
    format = "csv"

    def _parse(self) -> pd.DataFrame:
        return pd.read_csv(self.path, **self.options)


class ParquetSource(FileSource):
    """A Parquet file."""

    format = "parquet"

    def _parse(self) -> pd.DataFrame:
        return pd.read_parquet(self.path, **self.options)


class JsonSource(FileSource):
    """A JSON file holding a list of records, or an object with that list
    under the dotted path ``records``.

    Parameters
    ----------
    path
        The file.
    records
        Dotted path to the list of records inside the document; ``None``
        when the document itself is the list.
    """

    format = "json"

    def __init__(self, path: str | os.PathLike, *, records: str | None = None, **options: Any):
        super().__init__(path, **options)
        self.records = records

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", records={self.records!r})"

    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        if self.records is not None:
            desc["records"] = self.records
        return desc

    def _parse(self) -> pd.DataFrame:
        import json

        text = self.path.read_bytes().decode(self.options.get("encoding", "utf-8"))
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"json file {self.path} is not valid JSON: {exc.msg} "
                              f"(line {exc.lineno}, column {exc.colno})") from exc
        rows = _records_at(doc, self.records, f"json file {self.path}")
        return _records_frame(rows, f"json file {self.path}")


class JsonlSource(FileSource):
    """A JSON Lines file: one JSON object per line."""

    format = "jsonl"

    def _parse(self) -> pd.DataFrame:
        import json

        rows = []
        with open(self.path, encoding=self.options.get("encoding", "utf-8")) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SourceError(f"jsonl file {self.path} line {lineno} is not valid "
                                      f"JSON: {exc.msg}") from exc
        return _records_frame(rows, f"jsonl file {self.path}")


# Suffix → reader; the longest matching suffix wins.
_SUFFIXES: dict[str, tuple[type[FileSource], dict[str, Any]]] = {
    ".csv": (CsvSource, {}), ".csv.gz": (CsvSource, {}), ".csv.zst": (CsvSource, {}),
    ".tsv": (CsvSource, {"sep": "\t"}), ".tsv.gz": (CsvSource, {"sep": "\t"}),
    ".parquet": (ParquetSource, {}), ".pq": (ParquetSource, {}),
    ".json": (JsonSource, {}),
    ".jsonl": (JsonlSource, {}), ".ndjson": (JsonlSource, {}),
}


def file_source(path: str | os.PathLike) -> FileSource:
    """The reader for ``path``, chosen by its extension.

    Raises
    ------
    SourceError
        The extension is not one Shipyard reads.
    """
    name = Path(path).name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            cls, options = _SUFFIXES[suffix]
            return cls(path, **options)
    known = ", ".join(sorted(_SUFFIXES))
    raise SourceError(f"cannot tell the format of {path}: unknown extension",
                      hint=f"use one of {known}, or pass CsvSource/ParquetSource/JsonSource/"
                           "JsonlSource explicitly")


# ------------------------------------------------------------- DataFrame
class DataFrameSource(Source):
    """An in-memory :class:`pandas.DataFrame` (its index is not kept)."""

    kind = "dataframe"

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def read(self) -> pd.DataFrame:
        return _require_columns(self.frame, "the DataFrame")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": int(self.frame.shape[0]),
                "columns": [str(c) for c in self.frame.columns]}

    def __repr__(self) -> str:
        return f"DataFrameSource(<{self.frame.shape[0]} rows x {self.frame.shape[1]} columns>)"


# ------------------------------------------------------------------- SQL
class SqlSource(Source):
    """The result of a SQL query on any SQLAlchemy database URL.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://user:pw@host/db``).
    query
        The query; use ``:name`` placeholders for ``params``.
    params
        Bound parameters of the query.
    """

    kind = "sql"

    def __init__(self, url: str, query: str, params: Mapping[str, Any] | None = None):
        self.url = url
        self.query = query
        self.params = dict(params) if params else None

    def describe(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"kind": self.kind, "url": redact_url(self.url),
                                "query": self.query}
        if self.params:
            desc["params"] = redact_mapping(self.params)
        return desc

    def read(self) -> pd.DataFrame:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

        from shipyard.store import normalise_url

        safe = redact_url(self.url)
        if not isinstance(self.query, str) or not self.query.strip():
            raise SourceError(f"the SQL query for {safe} is empty")
        try:
            engine = create_engine(normalise_url(self.url))
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise SourceError(f"{safe!r} is not a usable SQLAlchemy URL: {_first_line(exc)}",
                              hint="e.g. sqlite:///data.db or postgresql://user:pass@host/db"
                              ) from exc
        except ImportError as exc:
            raise SourceError(f"the driver for {safe!r} is not installed: {exc}") from exc
        try:
            with engine.connect() as conn:
                df = pd.read_sql_query(text(self.query), conn, params=self.params)
        except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
            # pandas wraps the SQLAlchemy error, which wraps the driver's.
            cause = exc.__cause__ if isinstance(exc.__cause__, SQLAlchemyError) else exc
            orig = getattr(cause, "orig", None) or cause
            raise SourceError(f"SQL query on {safe} failed: {_first_line(orig)}",
                              hint="check the query, the table names and that the database "
                                   "is reachable") from exc
        finally:
            engine.dispose()
        return _require_columns(df, f"the SQL query on {safe}")


# ------------------------------------------------------------------ HTTP
class HttpJsonSource(Source):
    """Records from a paged HTTP JSON API.

    Pages are followed while each page links to a next one (``next``) or,
    when paging by number (``page_param``), until a page holds no records.
    An empty page always ends the data. A next link, when present, wins over
    the page number.

    Parameters
    ----------
    url
        The first page.
    records
        Dotted path to the list of records in each page (``"data.items"``);
        ``None`` when the page itself is the list.
    next
        Dotted path to the next page's URL in each page (relative URLs are
        resolved against the page's); ``None`` to ignore.
    page_param
        Query parameter holding the page number; ``None`` to page by links only.
    start_page
        The first page number when paging by number.
    params, headers
        Query parameters and HTTP headers sent with every request.
    max_pages
        Refuse to read more pages than this (an API that never stops).
    timeout
        Seconds to wait for each response.
    """

    kind = "http"

    def __init__(self, url: str, *, records: str | None = "items", next: str | None = "next",
                 page_param: str | None = None, start_page: int = 1,
                 params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None,
                 max_pages: int = 1000, timeout: float = 30.0):
        self.url = url
        self.records = records
        self.next = next
        self.page_param = page_param
        self.start_page = start_page
        self.params = dict(params) if params else None
        self.headers = dict(headers) if headers else None
        self.max_pages = max_pages
        self.timeout = timeout

    def describe(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"kind": self.kind, "url": redact_url(self.url),
                                "records": self.records, "next": self.next}
        if self.page_param:
            desc["page_param"] = self.page_param
            desc["start_page"] = self.start_page
        if self.params:
            desc["params"] = redact_mapping(self.params)
        if self.headers:
            desc["headers"] = redact_mapping(self.headers)
        desc["max_pages"] = self.max_pages
        return desc

    def read(self) -> pd.DataFrame:
        import httpx

        safe = redact_url(self.url)
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise SourceError(f"{safe!r} is not an http(s) URL")
        if self.max_pages < 1:
            raise SourceError(f"max_pages must be at least 1, got {self.max_pages}")
        rows: list[Any] = []
        seen: set[str] = set()
        url: str | None = self.url
        page: int | None = self.start_page if self.page_param else None
        with httpx.Client(headers=self.headers, timeout=self.timeout,
                          follow_redirects=True) as client:
            fetched = 0
            while url is not None:
                if fetched == self.max_pages:
                    raise SourceError(
                        f"{safe} still had more pages after max_pages={self.max_pages}",
                        hint="raise max_pages if the data really is that large, or check "
                             "that the API's next link/page parameter ends")
                params = dict(self.params or {})
                if page is not None:
                    params[self.page_param] = page
                key = f"{url} {sorted(params.items(), key=repr)}"
                if key in seen:
                    raise SourceError(f"{safe} paginates in a loop: page {fetched + 1} "
                                      f"repeats {redact_url(url)}")
                seen.add(key)
                fetched += 1
                where = f"page {fetched} of {safe}"
                doc = self._fetch(client, url, params, where)
                batch = _records_at(doc, self.records, where)
                rows.extend(batch)
                link = _dotted(doc, self.next) if self.next and isinstance(doc, dict) else None
                if not batch:  # an empty page ends the data, whatever it links to
                    url = None
                elif link:
                    if not isinstance(link, str):
                        raise SourceError(f"{where}: {self.next!r} is not a URL: {link!r}")
                    # A next link carries its own position: stop counting pages.
                    url, page = urljoin(url, link), None
                elif page is not None:
                    page += 1
                else:
                    url = None
        if not rows:
            raise SourceError(f"{safe} returned no records",
                              hint=f"check records={self.records!r} and the query parameters")
        return _records_frame(rows, safe)

    def _fetch(self, client, url: str, params: dict[str, Any], where: str) -> Any:
        import httpx

        try:
            response = client.get(url, params=params or None)
        except httpx.TimeoutException as exc:
            raise SourceError(f"{where}: no response within {self.timeout:g}s",
                              hint="raise timeout= or check the server") from exc
        except httpx.HTTPError as exc:
            raise SourceError(f"{where}: cannot connect: {_first_line(exc)}",
                              hint="check the URL and that the server is up") from exc
        if response.status_code >= 400:
            body = response.text[:200].strip()
            raise SourceError(f"{where}: HTTP {response.status_code} {response.reason_phrase}"
                              + (f": {body}" if body else ""))
        try:
            return response.json()
        except ValueError as exc:
            ctype = response.headers.get("content-type", "no content type")
            raise SourceError(f"{where} is not JSON ({ctype}): {response.text[:80]!r}") from exc


# ------------------------------------------------------------ resolution
def as_source(source: Any) -> Source:
    """Turn what a user passed (a path, a URL, a DataFrame, a Source) into a Source.

    Raises
    ------
    SourceError
        It is none of those, or a path with an unknown extension.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, pd.DataFrame):
        return DataFrameSource(source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        scheme = urlsplit(text).scheme.lower() if "://" in text else ""
        if scheme in ("http", "https"):
            return HttpJsonSource(text)
        if scheme and scheme != "file":
            raise SourceError(f"{redact_url(text)!r} is a URL, not a file",
                              hint="for a database use SqlSource(url, query)")
        if scheme == "file":
            text = urlsplit(text).path
        return file_source(text)
    raise SourceError(f"cannot read data from a {type(source).__name__}",
                      hint="pass a file path, an http(s) URL, a pandas DataFrame or a Source")


def _dotted(doc: Any, path: str | None) -> Any:
    """``doc["a"]["b"]`` for ``path="a.b"``; ``None`` when a key is missing."""
    if path is None:
        return doc
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _records_at(doc: Any, path: str | None, where: str) -> list[Any]:
    rows = _dotted(doc, path)
    if rows is None and path is not None:
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise SourceError(f"{where} has no list of records at {path!r}; found {keys}",
                          hint="set records= to the dotted path of the list "
                               "(None when the page is the list)")
    if not isinstance(rows, list):
        what = "the document" if path is None else repr(path)
        raise SourceError(f"{where}: {what} is a {type(rows).__name__}, not a list of records",
                          hint="set records= to the dotted path of the list")
    return rows


def _records_frame(rows: list[Any], where: str) -> pd.DataFrame:
    if not rows:
        raise SourceError(f"{where} holds no records")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise SourceError(f"{where}: record {bad} is a {type(rows[bad]).__name__}, "
                          "not a JSON object")
    # Nested objects become dotted columns ("address.city"), like most JSON loaders.
    return pd.json_normalize(rows)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: BaseException | object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
