"""Traces of ``ws.rag.query`` and ``ws.rag.answer``: spans with timings and
attributes, stored in the workspace database, exported as OTLP/JSON.

A trace is one request. Its root span (``rag.answer``/``rag.query``) holds
the collection, the final chunk ids and scores; its children are ``guard``
(the guardrails' steps), ``embed`` (the question), ``retrieve`` (with
``dense``, ``bm25`` and ``fuse`` children), ``rerank``/``mmr`` when used, and
``generate`` (generator, prompt and completion tokens). Ids follow
OpenTelemetry: 32 hex digits for a trace, 16 for a span.

Tokens are the upstream ``usage`` for OpenAI-compatible generators, else
counted with the offline MiniLM's own ``tokenizers`` tokenizer (the question
and the context passages as the prompt, the answer text as the completion).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import http.client
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import GenAIError, TraceExportError, TraceNotFoundError
from shipyard.genai._guardrails import redact

if TYPE_CHECKING:
    from shipyard import Workspace

log = logging.getLogger(__name__)

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Most traces one ``traces()`` call returns.
MAX_LIMIT = 10_000
#: Traces per OTLP/HTTP request.
EXPORT_BATCH = 500


@dataclass(frozen=True)
class Span:
    """One timed step of a trace.

    Attributes
    ----------
    name
        ``rag.answer``, ``embed``, ``retrieve``, ``dense``, ``bm25``, ``fuse``,
        ``rerank``, ``mmr``, ``guard``, ``generate``.
    span_id, parent_id
        16 hex digits; the root's parent is ``None``.
    start_ns
        Start, UNIX epoch nanoseconds.
    duration_ns
        Duration in nanoseconds (a monotonic clock).
    status
        ``ok`` or ``error`` (then ``attributes["error"]`` says what).
    attributes
        Chunk ids, scores, token counts, guardrail counts... (JSON values).
    """

    name: str
    span_id: str
    parent_id: str | None
    start_ns: int
    duration_ns: int
    status: str = "ok"
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Span:
        return cls(**{k: data[k] for k in ("name", "span_id", "parent_id", "start_ns",
                                           "duration_ns", "status", "attributes")})


@dataclass(frozen=True)
class Trace:
    """One traced request (see the module docstring).

    Attributes
    ----------
    trace_id
        32 hex digits (``Answer.trace_id``).
    kind
        ``answer`` or ``query``.
    collection, ref
        The collection's name and the version queried (``docs@3``).
    started_at, duration_ms
        Start (epoch seconds) and length of the whole request.
    status
        ``ok``, ``refused`` (a refusal answer) or ``error``.
    generator, refusal
        Who wrote the answer; why it was refused.
    question
        The question as used: PII-redacted when guardrails redact.
    spans
        Every span, the root first, then by start time.
    """

    trace_id: str
    kind: str
    collection: str | None
    ref: str | None
    started_at: float
    duration_ms: float
    status: str
    generator: str | None
    refusal: str | None
    question: str | None
    spans: tuple[Span, ...] = ()

    def span(self, name: str) -> Span:
        """The first span called ``name``.

        Raises
        ------
        KeyError
            The trace has none.
        """
        for s in self.spans:
            if s.name == name:
                return s
        raise KeyError(f"trace {self.trace_id} has no {name!r} span "
                       f"(it has {sorted({s.name for s in self.spans})})")

    def spans_named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["spans"] = [s.to_dict() for s in self.spans]
        return out


class Tracer:
    """Records the spans of one request; :meth:`span` nests by call order."""

    def __init__(self, kind: str):
        self.kind = kind
        self.trace_id = secrets.token_hex(16)
        self.spans: list[Span] = []
        self._stack: list[str] = []
        #: Trace-level fields (collection, ref, generator, refusal, question).
        self.info: dict[str, Any] = {}

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        """Time the block as span ``name``; the yielded dict is its attributes."""
        span_id = secrets.token_hex(8)
        parent = self._stack[-1] if self._stack else None
        self._stack.append(span_id)
        start_ns = time.time_ns()
        t0 = time.perf_counter_ns()
        status = "ok"
        try:
            yield attributes
        except BaseException as exc:
            status = "error"
            # Messages may quote input: no PII in the trace.
            attributes["error"] = redact(f"{type(exc).__name__}: {str(exc)[:300]}").text
            raise
        finally:
            self._stack.pop()
            self.spans.append(Span(name, span_id, parent, start_ns,
                                   time.perf_counter_ns() - t0, status, attributes))

    def finish(self) -> Trace:
        """The trace of the finished request."""
        spans = sorted(self.spans, key=lambda s: (s.parent_id is not None, s.start_ns))
        root = spans[0]
        status = "error" if root.status == "error" else \
            "refused" if self.info.get("refusal") else "ok"
        return Trace(trace_id=self.trace_id, kind=self.kind,
                     collection=_cut(self.info.get("collection"), 200),
                     ref=_cut(self.info.get("ref"), 220), started_at=root.start_ns / 1e9,
                     duration_ms=root.duration_ms, status=status,
                     generator=_cut(self.info.get("generator"), 200),
                     refusal=self.info.get("refusal"), question=self.info.get("question"),
                     spans=tuple(spans))


@contextlib.contextmanager
def _no_span() -> Iterator[dict[str, Any]]:
    yield {}


def span(tracer: Tracer | None, name: str, **attributes: Any
         ) -> contextlib.AbstractContextManager[dict[str, Any]]:
    """``tracer.span(...)``, or a no-op when there is no tracer."""
    return tracer.span(name, **attributes) if tracer is not None else _no_span()


def _cut(value: Any, n: int) -> Any:
    return value[:n] if isinstance(value, str) else value


def hit_attributes(hits: Sequence[Any]) -> dict[str, Any]:
    """``chunk_ids`` and ``scores`` of a list of hits (in rank order)."""
    return {"chunk_ids": [h.chunk.id for h in hits],
            "scores": [round(float(h.score), 6) for h in hits]}


# ------------------------------------------------------------ token counts
_TOKEN_CACHE: OrderedDict[str, int] = OrderedDict()
_TOKEN_CACHE_SIZE = 16_384
_TOKEN_LOCK = threading.Lock()


def count_tokens(texts: Sequence[str]) -> int | None:
    """Tokens of ``texts`` under the offline MiniLM's tokenizer (None when
    the model is not installed). Counts of texts up to 8 KB are remembered:
    the same chunks are retrieved again and again."""
    from shipyard.errors import ConfigError
    from shipyard.genai._chunking import load_tokenizer, minilm_path

    try:
        tok = load_tokenizer(str(minilm_path() / "tokenizer.json"))
    except ConfigError:
        return None
    texts = [t for t in texts if t]
    with _TOKEN_LOCK:
        known = {t: _TOKEN_CACHE.get(t) for t in texts}
    missing = [t for t, n in known.items() if n is None]
    if missing:
        counts = [len(e.ids) for e in tok.encode_batch(missing, add_special_tokens=False)]
        known.update(zip(missing, counts))
        with _TOKEN_LOCK:
            for text, n in zip(missing, counts):
                if len(text) <= 8192:
                    _TOKEN_CACHE[text] = n
            while len(_TOKEN_CACHE) > _TOKEN_CACHE_SIZE:
                _TOKEN_CACHE.popitem(last=False)
    return sum(known[t] for t in texts)


# ------------------------------------------------------------------ times
def parse_since(since: Any, now: float | None = None) -> float | None:
    """Epoch seconds ``since`` names: a duration back from now (``"90s"``,
    ``"10m"``, ``"1h"``, ``"7d"``), epoch seconds, a datetime or ISO-8601 text.

    >>> parse_since("1h", now=7200.0), parse_since(5), parse_since(None)
    (3600.0, 5.0, None)
    """
    if since is None:
        return None
    if isinstance(since, bool):
        raise GenAIError(f"since must be a time or a duration, got {since!r}")
    if isinstance(since, (int, float)):
        if not math.isfinite(since) or since < 0:
            raise GenAIError(f"since must be a finite, non-negative time, got {since!r}")
        return float(since)
    if isinstance(since, _dt.datetime):
        return since.timestamp()
    if isinstance(since, str):
        match = _DURATION.fullmatch(since)
        if match:
            return (time.time() if now is None else now) - \
                float(match.group(1)) * _UNITS[match.group(2)]
        try:
            return _dt.datetime.fromisoformat(since.strip()).timestamp()
        except ValueError:
            pass
    raise GenAIError(f"since: {str(since)[:60]!r} is neither a duration nor a time",
                     hint="write a duration back from now (90s, 10m, 1h, 7d), epoch seconds, "
                          "a datetime or an ISO time (2024-05-01T12:00)")


# ------------------------------------------------------------------ store
def _row_trace(row: Any) -> Trace:
    return Trace(trace_id=row.trace_id, kind=row.kind, collection=row.collection, ref=row.ref,
                 started_at=row.started_at, duration_ms=row.duration_ms, status=row.status,
                 generator=row.generator, refusal=row.refusal, question=row.question,
                 spans=tuple(Span.from_dict(s) for s in row.spans))


class TraceStore:
    """The ``rag_traces`` table of a workspace."""

    def __init__(self, workspace: Workspace):
        self._ws = workspace

    def record(self, trace: Trace) -> None:
        self.record_many([trace])

    def record_many(self, traces: Sequence[Trace]) -> None:
        """Store traces in one transaction."""
        from shipyard.store.tables import RagTraceRow

        rows = [RagTraceRow(trace_id=t.trace_id, kind=t.kind, collection=t.collection,
                            ref=t.ref, started_at=t.started_at, duration_ms=t.duration_ms,
                            status=t.status, generator=t.generator, refusal=t.refusal,
                            question=t.question, spans=[s.to_dict() for s in t.spans])
                for t in traces]
        with self._ws.db.write() as session:
            session.add_all(rows)

    def list(self, collection: str | None = None, since: Any = None, limit: int | None = 50,
             *, oldest_first: bool = False) -> list[Trace]:
        from sqlalchemy import select

        from shipyard.genai._collections import parse_collection_ref
        from shipyard.store.tables import RagTraceRow

        query = select(RagTraceRow)
        if collection is not None:
            if not isinstance(collection, str):
                raise GenAIError(f"collection must be a name or a ref, got "
                                 f"{type(collection).__name__}")
            name, version = parse_collection_ref(collection)
            if isinstance(version, str):
                raise GenAIError(f"resolve the alias of {collection!r} to a version first")
            query = query.where(RagTraceRow.collection == name)
            if version is not None:
                query = query.where(RagTraceRow.ref == f"{name}@{version}")
        start = parse_since(since)
        if start is not None:
            query = query.where(RagTraceRow.started_at >= start)
        order = RagTraceRow.started_at.asc() if oldest_first else RagTraceRow.started_at.desc()
        query = query.order_by(order, RagTraceRow.trace_id)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) \
                    or not 1 <= limit <= MAX_LIMIT:
                raise GenAIError(f"limit must be an integer from 1 to {MAX_LIMIT:,} (or None "
                                 f"for all), got {limit!r}")
            query = query.limit(limit)
        with self._ws.db.read() as session:
            return [_row_trace(r) for r in session.execute(query).scalars()]

    def prune(self, older_than: Any) -> int:
        """Delete traces that started before ``older_than``; how many."""
        from sqlalchemy import delete

        from shipyard.store.tables import RagTraceRow

        if older_than is None:
            raise GenAIError("say which traces to delete: older_than='30d' (a duration back "
                             "from now) or a time")
        cutoff = parse_since(older_than)
        with self._ws.db.write() as session:
            return session.execute(
                delete(RagTraceRow).where(RagTraceRow.started_at < cutoff)).rowcount or 0

    def get(self, trace_id: str) -> Trace:
        from shipyard.store.tables import RagTraceRow

        if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id.lower()):
            raise TraceNotFoundError(
                f"{str(trace_id)[:80]!r} is not a trace id (32 hexadecimal digits)",
                hint="take it from Answer.trace_id or ws.rag.traces()")
        with self._ws.db.read() as session:
            row = session.get(RagTraceRow, trace_id.lower())
            if row is None:
                raise TraceNotFoundError(f"no RAG trace {trace_id}",
                                         hint="list recent ones with ws.rag.traces(); traces "
                                              "of calls with trace=False are not kept")
            return _row_trace(row)


_WRITERS: weakref.WeakSet[TraceWriter] = weakref.WeakSet()


@atexit.register
def _flush_writers() -> None:
    """Traces still queued when the interpreter exits are written."""
    for writer in list(_WRITERS):
        writer._flush_quietly()


class TraceWriter:
    """Stores traces off the request path: :meth:`submit` queues one (no I/O),
    a daemon thread writes the queue in one transaction every ``interval``
    seconds (an fsync per answer would cost more than the rest of tracing).
    :meth:`flush` writes what is queued now; readers call it first, so this
    process always reads its own traces; :meth:`close` flushes and stops.
    A process killed hard loses at most the last ``interval`` of traces.

    Parameters
    ----------
    store
        Where the traces go.
    interval
        Seconds between two writes.
    max_queued
        More traces waiting than this (the database is down) drops the oldest,
        with a warning: tracing never holds memory without bound.
    """

    def __init__(self, store: TraceStore, *, interval: float = 0.25, max_queued: int = 10_000):
        self.store = store
        self.interval = interval
        self.max_queued = max_queued
        self._queue: list[Trace] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stop = threading.Event()
        self.dropped = 0
        _WRITERS.add(self)

    def submit(self, trace: Trace) -> None:
        with self._cond:
            if self._closed:
                raise GenAIError("this Rag is closed; its traces can no longer be recorded")
            self._queue.append(trace)
            if len(self._queue) > self.max_queued:
                del self._queue[0]
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.warning("shipyard: %d RAG traces dropped: the database does not take "
                                "them", self.dropped)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shipyard-rag-traces",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            if self._stop.wait(self.interval):  # gather a batch; close() ends the wait
                return
            if not self._flush_quietly() and self._stop.wait(5.0):
                return  # the database is down: retry, but not in a busy loop

    def flush(self) -> None:
        """Write every queued trace now (one transaction). On a database
        error the traces stay queued and the error is raised."""
        with self._write_lock:
            with self._cond:
                batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                self.store.record_many(batch)
            except BaseException:
                with self._cond:
                    self._queue[:0] = batch
                raise

    def _flush_quietly(self) -> bool:
        try:
            self.flush()
            return True
        except Exception as exc:  # noqa: BLE001 - a background write: warn, retry later
            log.warning("shipyard: could not store %d RAG traces (will retry): %s",
                        len(self._queue), exc)
            return False

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._flush_quietly()


# ----------------------------------------------------------------- export
def _any_value(value: Any) -> dict[str, Any] | None:
    """An OTLP ``AnyValue`` (JSON mapping: int64 as a string)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value} if math.isfinite(value) else {"stringValue": str(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _key_values(value)}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [v for v in map(_any_value, value) if v is not None]}}
    return {"stringValue": str(value)}


def _key_values(attributes: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for key, value in attributes.items():
        any_value = _any_value(value)
        if any_value is not None:
            out.append({"key": f"{prefix}{key}", "value": any_value})
    return out


_SEMCONV = {"prompt_tokens": "gen_ai.usage.input_tokens",
            "completion_tokens": "gen_ai.usage.output_tokens"}


def otlp_request(traces: Sequence[Trace], *, service_name: str = "shipyard") -> dict[str, Any]:
    """An OTLP ``ExportTraceServiceRequest`` in its JSON mapping: one resource
    (``service.name``), one scope (``shipyard.genai``), every span. Span
    attributes get the prefix ``rag.``; token counts also appear under the
    OpenTelemetry GenAI names (``gen_ai.usage.input_tokens``/``output_tokens``)."""
    version = _shipyard_version()
    spans = []
    for trace in traces:
        for s in trace.spans:
            attributes = _key_values(s.attributes, "rag.")
            attributes += [{"key": _SEMCONV[k], "value": _any_value(v)}
                           for k, v in s.attributes.items()
                           if k in _SEMCONV and isinstance(v, int)]
            if s.parent_id is None:
                attributes += _key_values({"trace.kind": trace.kind, "trace.status":
                                           trace.status, "collection.ref": trace.ref},
                                          "rag.")
            span_json: dict[str, Any] = {
                "traceId": trace.trace_id, "spanId": s.span_id, "name": s.name,
                "kind": 1,  # SPAN_KIND_INTERNAL
                "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.end_ns),
                "attributes": attributes,
                "status": {"code": 2, "message": str(s.attributes.get("error", ""))}
                if s.status == "error" else {"code": 1}}
            if s.parent_id is not None:
                span_json["parentSpanId"] = s.parent_id
            spans.append(span_json)
    return {"resourceSpans": [{
        "resource": {"attributes": _key_values({"service.name": service_name,
                                                "telemetry.sdk.name": "shipyard",
                                                "telemetry.sdk.language": "python",
                                                "telemetry.sdk.version": version})},
        "scopeSpans": [{"scope": {"name": "shipyard.genai", "version": version},
                        "spans": spans}]}]}


def _shipyard_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("shipyard")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class TraceExport:
    """What :meth:`Rag.export_traces` sent.

    Attributes
    ----------
    destination
        The file written or the URL posted to.
    traces, spans
        How many were exported.
    requests
        OTLP/HTTP requests made (0 for a file).
    rejected_spans
        Spans the collector reported as rejected (OTLP partial success).
    """

    destination: str
    traces: int
    spans: int
    requests: int = 0
    rejected_spans: int = 0


def export_url(destination: str) -> str | None:
    """The OTLP/HTTP traces URL ``destination`` names, or None for a path.

    >>> export_url("http://localhost:4318"), export_url("traces.json")
    ('http://localhost:4318/v1/traces', None)
    """
    if "://" not in destination:
        return None
    try:
        parts = urllib.parse.urlsplit(destination)
        port = parts.port
    except ValueError as exc:
        raise TraceExportError(f"{destination[:200]!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TraceExportError(
            f"cannot export traces to {destination[:200]!r}",
            hint="give a file path, or an OTLP/HTTP collector URL such as "
                 "http://localhost:4318/v1/traces")
    if re.search(r"[\s\x00-\x1f\x7f]", destination):
        raise TraceExportError(f"the URL {destination[:200]!r} holds spaces or control "
                               f"characters")
    path = parts.path if parts.path not in ("", "/") else "/v1/traces"
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:
        netloc = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    if parts.username or parts.password:
        raise TraceExportError("a URL with a user or password would be logged",
                               hint="pass credentials in headers={'Authorization': ...}")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def write_otlp_file(path: str | os.PathLike, traces: Sequence[Trace], service_name: str
                    ) -> TraceExport:
    target = Path(path)
    if target.is_dir():
        raise TraceExportError(f"{str(path)!r} is a folder", hint="give a file name in it")
    if not target.parent.is_dir():
        raise TraceExportError(f"the folder of {str(path)!r} does not exist",
                               hint="create it first")
    body = json.dumps(otlp_request(traces, service_name=service_name), separators=(",", ":"))
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TraceExportError(f"cannot write traces to {str(path)!r}: {exc}") from exc
    return TraceExport(destination=str(target), traces=len(traces),
                       spans=sum(len(t.spans) for t in traces))


def post_otlp(url: str, traces: Sequence[Trace], service_name: str, *, timeout: float,
              headers: Mapping[str, str] | None = None) -> TraceExport:
    """POST the traces to an OTLP/HTTP JSON endpoint, in batches."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 < timeout <= 600:
        raise TraceExportError(f"timeout must be seconds between 0 and 600, got {timeout!r}")
    extra = dict(headers or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str) \
                or re.search(r"[\r\n]", key + value):
            raise TraceExportError("headers must map text to text, without line breaks")
    requests = rejected = 0
    sent_traces = 0
    for i in range(0, len(traces), EXPORT_BATCH):
        batch = traces[i:i + EXPORT_BATCH]
        body = json.dumps(otlp_request(batch, service_name=service_name),
                          separators=(",", ":")).encode("utf-8")
        request = urllib.request.Request(
            url, data=body, method="POST",
            headers={**extra, "Content-Type": "application/json"})
        done = f"{sent_traces} of {len(traces)} traces were sent before; " if sent_traces else ""
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                reply = response.read(1 << 20)
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace").strip()
            raise TraceExportError(
                f"the collector at {url} answered HTTP {exc.code} {exc.reason}"
                + (f": {detail}" if detail else "") + f"; {done}the traces stay in the "
                "workspace", hint="check the collector, then export again") from exc
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) \
                as exc:
            reason = getattr(exc, "reason", exc)
            what = "timed out" if isinstance(reason, TimeoutError) or \
                "timed out" in str(reason) else f"failed: {reason}"
            raise TraceExportError(
                f"sending traces to {url} {what} (timeout {timeout}s); {done}the traces stay "
                "in the workspace", hint="check that the collector is up, then export "
                "again") from exc
        requests += 1
        sent_traces += len(batch)
        rejected += _rejected_spans(reply)
    if rejected:
        log.warning("shipyard: the collector at %s rejected %d spans", url, rejected)
    return TraceExport(destination=url, traces=len(traces),
                       spans=sum(len(t.spans) for t in traces), requests=requests,
                       rejected_spans=rejected)


def _rejected_spans(reply: bytes) -> int:
    """``partialSuccess.rejectedSpans`` of an OTLP JSON response (0 if none)."""
    try:
        data = json.loads(reply or b"{}")
        return int(data.get("partialSuccess", {}).get("rejectedSpans", 0) or 0)
    except (ValueError, AttributeError, TypeError):
        return 0
