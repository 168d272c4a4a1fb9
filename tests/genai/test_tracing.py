"""Every ``ws.rag.query``/``answer`` is a trace of timed spans in the
workspace database (SQLite and PostgreSQL), readable from Python and
exported as OTLP/JSON that the reference protobuf schema parses, to a file
or to a real OTLP/HTTP collector on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from shipyard.errors import (
    CollectionNotFoundError,
    GenAIError,
    TraceExportError,
    TraceNotFoundError,
)
from shipyard.genai import (
    Document,
    LexicalReranker,
    OpenAIChatGenerator,
    Rag,
    Trace,
    otlp_request,
)
from shipyard.genai._tracing import export_url

DOCS = [
    Document.from_text("The Eiffel Tower is 330 metres tall. It was finished in 1889.",
                       source="paris"),
    Document.from_text("Big Ben is the bell of the clock tower in London.", source="london"),
    Document.from_text("The Colosseum in Rome held fifty thousand people.", source="rome"),
]
QUESTION = "How tall is the Eiffel Tower?"


@pytest.fixture
def cities(workspace, embedder):
    """``ws.rag`` with a small collection, on SQLite and on PostgreSQL."""
    rag = Rag(workspace, embedder=embedder)
    rag.ingest("cities", DOCS)
    yield rag
    rag.close()


@pytest.fixture
def sqlite_cities(ws, embedder):
    rag = Rag(ws, embedder=embedder)
    rag.ingest("cities", DOCS)
    yield rag
    rag.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, embedder):
    """One traced collection for the tests that only read (bad input)."""
    from shipyard import Workspace

    workspace = Workspace.open(tmp_path_factory.mktemp("shared") / "home")
    rag = Rag(workspace, embedder=embedder)
    rag.ingest("cities", DOCS)
    rag.answer("cities", QUESTION)
    yield rag
    rag.close()
    workspace.close()


class Collector:
    """A real HTTP server on loopback: an OTLP/HTTP JSON collector that
    parses every request with the reference schema, and a chat endpoint that
    reports token usage. ``mode`` makes it fail: ``"500"`` or ``"slow"``."""

    def __init__(self):
        self.received: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.mode = "ok"
        self.release = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.paths.append(self.path)
                if collector.mode == "slow":
                    collector.release.wait(5)
                if self.path.endswith("/chat/completions"):
                    out = {"id": "c", "object": "chat.completion", "created": 0,
                           "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant",
                                                                  "content": "330 m. [1]"}}],
                           "usage": {"prompt_tokens": 123, "completion_tokens": 7,
                                     "total_tokens": 130}}
                    return self._send(200, out)
                if collector.mode == "500":
                    return self._send(500, {"error": "collector down"})
                if self.headers.get("Content-Type") != "application/json":
                    return self._send(415, {})
                message = ExportTraceServiceRequest()
                json_format.Parse(body.decode("utf-8"), message)  # strict: unknown fields fail
                collector.received.append(message)
                self._send(200, {})

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    with Collector() as c:
        yield c


def _children(trace: Trace, parent: str) -> list[str]:
    root = trace.span(parent)
    return [s.name for s in trace.spans if s.parent_id == root.span_id]


# ---------------------------------------------------------------- recording
def test_an_answer_is_a_trace_of_timed_spans(cities):
    answer = cities.answer("cities", QUESTION)
    assert answer.trace_id is not None and len(answer.trace_id) == 32
    trace = cities.trace(answer.trace_id)
    assert (trace.kind, trace.collection, trace.ref, trace.status) == \
        ("answer", "cities", "cities@1", "ok")
    assert trace.generator == "extractive" and trace.question == QUESTION
    root = trace.spans[0]
    assert root.name == "rag.answer" and root.parent_id is None
    assert _children(trace, "rag.answer") == ["guard", "embed", "retrieve", "guard",
                                              "generate", "guard"]
    assert _children(trace, "retrieve") == ["dense", "bm25", "fuse"]
    for span in trace.spans:  # children lie inside the root, in time
        assert len(span.span_id) == 16 and span.duration_ns >= 0
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns + 1_000_000
    assert abs(trace.duration_ms - root.duration_ms) < 1e-9
    hit_ids = [h.chunk.id for h in answer.hits]
    assert root.attributes["chunk_ids"] == hit_ids
    assert root.attributes["scores"] == pytest.approx([h.score for h in answer.hits], abs=1e-6)
    assert root.attributes["collection"] == "cities@1"
    assert trace.span("retrieve").attributes["mode"] == "hybrid"
    assert len(trace.span("dense").attributes["scores"]) == \
        len(trace.span("dense").attributes["chunk_ids"])
    generate = trace.span("generate").attributes
    assert generate["generator"] == "extractive" and generate["token_source"] == "minilm"
    assert generate["prompt_tokens"] > generate["completion_tokens"] > 0
    assert generate["answer"] == answer.text and answer.citations
    assert generate["citations"] == [
        {"marker": c.marker, "chunk_id": c.chunk_id, "source": c.source, "section": c.section,
         "page": c.page, "start": c.start, "end": c.end} for c in answer.citations]
    assert [s.attributes["stage"] for s in trace.spans_named("guard")] == \
        ["question", "context", "answer"]


def test_traces_are_listed_filtered_and_limited(cities):
    first = cities.answer("cities", QUESTION)
    cities.query("cities", "Where is Big Ben?")
    cities.query("cities", "Rome", mode="bm25")
    listed = cities.traces()
    assert [t.kind for t in listed] == ["query", "query", "answer"]  # newest first
    assert listed[-1].trace_id == first.trace_id
    assert [t.kind for t in cities.traces(limit=1)] == ["query"]
    assert len(cities.traces(collection="cities")) == 3
    assert len(cities.traces(collection="cities@1")) == 3
    assert cities.traces(collection="cities@2") == []
    assert cities.traces(collection="other") == []
    assert len(cities.traces(since="1h")) == 3
    assert cities.traces(since=time.time() + 60) == []
    bm25 = cities.traces(limit=1)[0]
    assert _children(bm25, "rag.query") == ["retrieve"]  # no embedding for BM25
    assert _children(bm25, "retrieve") == ["bm25"]


def test_rerank_and_mmr_are_spans_of_their_own(sqlite_cities):
    sqlite_cities.query("cities", QUESTION, reranker=LexicalReranker(), mmr=0.5, k=2)
    trace = sqlite_cities.traces(limit=1)[0]
    assert _children(trace, "rag.query") == ["embed", "retrieve", "rerank", "mmr"]
    rerank = trace.span("rerank").attributes
    assert rerank["reranker"] == "lexical" and rerank["candidates"] >= 2
    assert trace.spans[0].attributes["chunk_ids"] == trace.span("mmr").attributes["chunk_ids"]


def test_trace_false_records_nothing(sqlite_cities):
    answer = sqlite_cities.answer("cities", QUESTION, trace=False)
    sqlite_cities.query("cities", QUESTION, trace=False)
    assert answer.trace_id is None and answer.text
    assert sqlite_cities.traces() == []


def test_a_failed_request_is_traced_with_its_error(sqlite_cities):
    with pytest.raises(CollectionNotFoundError):
        sqlite_cities.answer("nosuch", QUESTION)
    trace = sqlite_cities.traces(limit=1)[0]
    assert (trace.status, trace.collection) == ("error", "nosuch")
    assert "CollectionNotFoundError" in trace.spans[0].attributes["error"]


def test_upstream_usage_gives_the_token_counts(sqlite_cities, collector):
    generator = OpenAIChatGenerator("m", base_url=f"{collector.base}/v1", api_key="k",
                                    max_retries=0)
    answer = sqlite_cities.answer("cities", QUESTION, generator=generator)
    assert answer.usage == {"prompt_tokens": 123, "completion_tokens": 7}
    generate = sqlite_cities.trace(answer.trace_id).span("generate").attributes
    assert (generate["prompt_tokens"], generate["completion_tokens"],
            generate["token_source"], generate["generator"]) == (123, 7, "upstream", "openai:m")


def test_answers_from_several_threads_are_all_recorded(sqlite_cities):
    ids: list[str] = []
    errors: list[BaseException] = []

    def ask():
        try:
            for _ in range(3):
                ids.append(sqlite_cities.answer("cities", QUESTION).trace_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 12
    assert {t.trace_id for t in sqlite_cities.traces()} == set(ids)


def test_the_table_matches_its_migration(cities):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shipyard.store.tables import Base

    with cities._ws.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if "rag_traces" in repr(d)] == []


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("trace_id", ["0" * 32, "f" * 32])
def test_an_unknown_trace_id_is_not_found(shared, trace_id):
    with pytest.raises(TraceNotFoundError, match="no RAG trace"):
        shared.trace(trace_id)


@pytest.mark.parametrize("trace_id", ["", "xyz", "0" * 31, "g" * 32, 12, None, "0" * 33,
                                      "' OR 1=1 --", "0" * 10_000])
def test_a_malformed_trace_id_is_a_clear_error(shared, trace_id):
    with pytest.raises(TraceNotFoundError, match="not a trace id"):
        shared.trace(trace_id)


@pytest.mark.parametrize("since", ["yesterday", "1y", "-1h", float("nan"), float("inf"), -5,
                                   True, [1], "x" * 100_000])
def test_a_bad_since_is_a_clear_error(shared, since):
    with pytest.raises(GenAIError, match="since"):
        shared.traces(since=since)


@pytest.mark.parametrize("limit", [0, -1, 10_001, "5", 2.5, True])
def test_a_bad_limit_is_a_clear_error(shared, limit):
    with pytest.raises(GenAIError, match="limit"):
        shared.traces(limit=limit)


@pytest.mark.parametrize("collection", ["bad name!", "cities@x", 5, "../etc"])
def test_a_bad_collection_filter_is_a_clear_error(shared, collection):
    with pytest.raises(GenAIError):
        shared.traces(collection=collection)


@pytest.mark.parametrize("question", ["", "   ", None, 42, "x" * 8001])
def test_bad_questions_are_refused_before_any_trace(shared, question):
    before = len(shared.traces(limit=None))
    with pytest.raises(GenAIError, match="question"):
        shared.answer("cities", question)
    with pytest.raises(GenAIError, match="question"):
        shared.query("cities", question)
    assert len(shared.traces(limit=None)) == before


@pytest.mark.parametrize("ref", ["bad name!", "", None, 5, "x" * 10_000, "cities@-1"])
def test_a_malformed_collection_ref_is_refused_before_any_trace(shared, ref):
    before = len(shared.traces(limit=None))
    with pytest.raises(GenAIError):
        shared.answer(ref, QUESTION)
    with pytest.raises(GenAIError):
        shared.query(ref, QUESTION)
    assert len(shared.traces(limit=None)) == before


def test_trace_must_be_a_bool(shared):
    with pytest.raises(GenAIError, match="trace must be"):
        shared.answer("cities", QUESTION, trace="yes")


# ------------------------------------------------------------------ export
def test_export_to_a_file_is_otlp_json(cities, tmp_path):
    answer = cities.answer("cities", QUESTION)
    cities.query("cities", "Big Ben", reranker=LexicalReranker())
    stored = cities.traces(limit=None)
    result = cities.export_traces(tmp_path / "traces.json")
    assert (result.traces, result.spans, result.requests) == \
        (2, sum(len(t.spans) for t in stored), 0)
    text = (tmp_path / "traces.json").read_text()
    message = json_format.Parse(text, ExportTraceServiceRequest())  # the reference schema
    resource = message.resource_spans[0]
    assert {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"] \
        == "shipyard"
    spans = resource.scope_spans[0].spans
    assert resource.scope_spans[0].scope.name == "shipyard.genai"
    assert len(spans) == result.spans
    raw = json.loads(text)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    by_id = {s["spanId"]: s for s in raw}
    for s in raw:  # OTLP/JSON: hex ids, times as decimal strings
        assert len(s["traceId"]) == 32 and int(s["traceId"], 16)
        assert len(s["spanId"]) == 16 and int(s["spanId"], 16) >= 0
        assert s.get("parentSpanId") is None or s["parentSpanId"] in by_id
        assert isinstance(s["startTimeUnixNano"], str)
        assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) > 1.6e18
    ours = [s for s in spans if s.name == "generate"
            and any(r["traceId"] == answer.trace_id and r["name"] == "generate" for r in raw)]
    attrs = {a.key: a.value for a in ours[0].attributes}
    assert attrs["gen_ai.usage.input_tokens"].int_value == attrs["rag.prompt_tokens"].int_value > 0
    root = next(s for s in spans if s.name == "rag.answer")
    root_attrs = {a.key: a.value for a in root.attributes}
    assert [v.string_value for v in root_attrs["rag.chunk_ids"].array_value.values] == \
        [h.chunk.id for h in answer.hits]
    assert root_attrs["rag.collection.ref"].string_value == "cities@1"
    assert {s.name for s in spans} >= {"rag.answer", "rag.query", "embed", "retrieve", "dense",
                                       "bm25", "fuse", "rerank", "guard", "generate"}


def test_export_posts_otlp_http_json_to_a_collector(sqlite_cities, collector):
    sqlite_cities.answer("cities", QUESTION)
    sqlite_cities.answer("cities", "Where is Big Ben?")
    result = sqlite_cities.export_traces(collector.base, headers={"X-Team": "rag"})
    assert collector.paths == ["/v1/traces"]  # a bare host gets the OTLP path
    assert (result.traces, result.requests, result.rejected_spans) == (2, 1, 0)
    spans = collector.received[0].resource_spans[0].scope_spans[0].spans
    assert len(spans) == result.spans
    assert len({s.trace_id for s in spans}) == 2
    again = sqlite_cities.export_traces(f"{collector.base}/v1/traces", since="1h",
                                        collection="cities", limit=1)
    assert again.traces == 1 and len(collector.received) == 2


def test_a_collector_answering_500_is_a_clear_error_and_nothing_is_lost(sqlite_cities,
                                                                         collector):
    sqlite_cities.answer("cities", QUESTION)
    collector.mode = "500"
    with pytest.raises(TraceExportError, match="HTTP 500.*stay in the workspace"):
        sqlite_cities.export_traces(collector.base)
    assert len(sqlite_cities.traces()) == 1
    collector.mode = "ok"
    assert sqlite_cities.export_traces(collector.base).traces == 1


def test_a_collector_that_times_out_is_a_clear_error(sqlite_cities, collector):
    sqlite_cities.answer("cities", QUESTION)
    collector.mode = "slow"
    started = time.monotonic()
    with pytest.raises(TraceExportError, match="timed out"):
        sqlite_cities.export_traces(collector.base, timeout=0.3)
    assert time.monotonic() - started < 3
    assert len(sqlite_cities.traces()) == 1


def test_a_closed_port_is_a_clear_error(shared):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TraceExportError, match="failed"):
        shared.export_traces(f"http://127.0.0.1:{port}/v1/traces", timeout=2)


@pytest.mark.parametrize("destination", [
    "ftp://example.com/v1/traces", "file:///tmp/x.json", "http://", "http:///v1/traces",
    "https://user:secret@example.com/v1/traces", "http://exa mple.com/v1/traces",
    "http://example.com:99999/v1/traces", "", "   ", None, 5,
])
def test_bad_destinations_are_clear_errors(shared, destination):
    with pytest.raises(TraceExportError):
        shared.export_traces(destination)


def test_bad_file_destinations_are_clear_errors_and_leave_nothing(shared, tmp_path):
    with pytest.raises(TraceExportError, match="folder"):
        shared.export_traces(tmp_path)
    with pytest.raises(TraceExportError, match="does not exist"):
        shared.export_traces(tmp_path / "missing" / "t.json")
    with pytest.raises(TraceExportError, match="NUL"):
        shared.export_traces(str(tmp_path / "a\x00b.json"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": -1}, {"timeout": "5"},
                                    {"headers": {"X": "a\r\nInjected: 1"}},
                                    {"headers": {"X": 5}}, {"service_name": ""},
                                    {"service_name": "s" * 201}])
def test_bad_export_options_are_clear_errors(shared, collector, kwargs):
    with pytest.raises(TraceExportError):
        shared.export_traces(collector.base, **kwargs)
    assert collector.received == []


def test_the_otlp_path_is_added_only_to_a_bare_host():
    assert export_url("http://localhost:4318") == "http://localhost:4318/v1/traces"
    assert export_url("https://otel.example.com/") == "https://otel.example.com/v1/traces"
    assert export_url("http://h:1/custom/v1/traces") == "http://h:1/custom/v1/traces"
    assert export_url("traces.json") is None


def test_an_empty_export_is_valid_otlp(shared, tmp_path):
    result = shared.export_traces(tmp_path / "none.json", since=time.time() + 60)
    assert result.traces == 0
    json_format.Parse((tmp_path / "none.json").read_text(), ExportTraceServiceRequest())
    json_format.Parse(json.dumps(otlp_request([])), ExportTraceServiceRequest())


def test_traces_are_written_off_the_request_path_and_on_close(ws, embedder):
    from shipyard.genai._tracing import TraceStore

    rag = Rag(ws, embedder=embedder)
    rag.ingest("cities", DOCS)
    first = rag.answer("cities", QUESTION).trace_id
    deadline = time.monotonic() + 10
    while not TraceStore(ws).list() and time.monotonic() < deadline:
        time.sleep(0.05)  # the background writer stores it within its interval
    assert [t.trace_id for t in TraceStore(ws).list()] == [first]
    second = rag.answer("cities", QUESTION).trace_id
    rag.close()  # writes what is still queued
    assert {t.trace_id for t in TraceStore(ws).list()} == {first, second}
    third = rag.answer("cities", QUESTION).trace_id  # usable after close
    assert rag.trace(third).trace_id == third
    rag.close()


def test_old_traces_are_pruned(sqlite_cities):
    sqlite_cities.answer("cities", QUESTION)
    assert sqlite_cities.prune_traces("1h") == 0
    assert sqlite_cities.prune_traces(time.time() + 1) == 1
    assert sqlite_cities.traces() == []


@pytest.mark.parametrize("older_than", [None, "soon", -1, True])
def test_pruning_needs_a_clear_cutoff(shared, older_than):
    before = len(shared.traces(limit=None))
    with pytest.raises(GenAIError):
        shared.prune_traces(older_than)
    assert len(shared.traces(limit=None)) == before
