"""RAG tracing and guardrails: what they cost per answer, and how often the
injection screen fires on real news.

Prints ``name: value`` lines. Run: ``python benchmarks/rag_guard_trace.py``
(``--smoke`` for fewer rounds).

(a) Overhead per ``ws.rag.answer`` on a BBC News collection (300 articles,
    SQLite workspace, offline MiniLM, extractive answers): the same questions
    answered in interleaved rounds with tracing on/off and guardrails on/off;
    median of the paired differences. Also the parts alone: storing one
    trace (one SQLite transaction), counting tokens, the guardrail steps.
(b) False positives of the injection screen over all 2,225 BBC News
    articles (whole articles and 200-token chunks), and the PII the
    redactor finds in them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def overhead(rounds: int) -> None:
    from shipyard import Workspace
    from shipyard.genai import (
        Guardrails,
        LocalEmbedder,
        Rag,
        _guardrails,
        _tracing,
        bbc_news,
    )
    from shipyard.genai._rag import _token_attributes
    from shipyard.genai._tracing import Tracer, TraceStore

    docs = bbc_news(limit=300)
    questions = [d.title for d in docs[:40]]
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "home")
        rag = Rag(ws, embedder=LocalEmbedder(threads=1))
        rag.ingest("bbc", docs)
        for q in questions[:5]:  # warm up
            rag.answer("bbc", q)
        cases = {"bare": {"trace": False, "guardrails": None},
                 "traced": {"trace": True, "guardrails": None},
                 "guarded": {"trace": False, "guardrails": True},
                 "both": {"trace": True, "guardrails": True}}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(rounds):
            q = questions[r % len(questions)]
            for name, kwargs in (cases.items() if r % 2 else reversed(cases.items())):
                t0 = time.perf_counter()
                rag.answer("bbc", q, **kwargs)
                times[name].append(time.perf_counter() - t0)
        for name in cases:
            print(f"answer_{name}_p50_ms: {_ms(statistics.median(times[name]))}")
        for name in ("traced", "guarded", "both"):
            diffs = [a - b for a, b in zip(times[name], times["bare"])]
            print(f"added_{name}_p50_ms: {_ms(statistics.median(diffs))}")

        # The parts alone.
        store = TraceStore(ws)
        trace = rag.trace(rag.answer("bbc", questions[0]).trace_id)
        records = []
        for _ in range(200):
            tracer = Tracer("answer")
            for s in trace.spans:
                with tracer.span(s.name, **s.attributes):
                    pass
            t0 = time.perf_counter()
            store.record(tracer.finish())
            records.append(time.perf_counter() - t0)
        print(f"spans_per_answer: {len(trace.spans)}")
        print(f"store_one_trace_p50_ms: {_ms(statistics.median(records))}")
        t0 = time.perf_counter()
        for _ in range(200):
            tracer = Tracer("answer")
            for sp in trace.spans:
                with tracer.span(sp.name, **sp.attributes):
                    pass
            tracer.finish()
        print(f"spans_and_finish_ms: {_ms((time.perf_counter() - t0) / 200)}")
        answer = rag.answer("bbc", questions[1], trace=False, guardrails=None)
        for cached in (False, True):
            t0 = time.perf_counter()
            for _ in range(200):
                if not cached:
                    _tracing._TOKEN_CACHE.clear()
                _token_attributes(answer, answer.hits)
            print(f"count_tokens_{'cached' if cached else 'cold'}_ms: "
                  f"{_ms((time.perf_counter() - t0) / 200)}")
        guard = Guardrails()
        for cached in (False, True):
            t0 = time.perf_counter()
            for _ in range(200):
                if not cached:
                    _guardrails._evidence.cache_clear()
                guard.check_question(questions[2])
                guard.check_hits(answer.hits)
                guard.check_answer(answer)
            print(f"guardrail_steps_{'cached' if cached else 'cold'}_ms: "
                  f"{_ms((time.perf_counter() - t0) / 200)} ({len(answer.hits)} chunks)")
        rag.close()
        ws.close()


def false_positives() -> None:
    from collections import Counter

    from shipyard.genai import InjectionScreen, TokenChunker, bbc_news, redact

    docs = bbc_news()
    screen = InjectionScreen()
    t0 = time.perf_counter()
    flagged = [d.source for d in docs if screen.screen(d.text).flagged]
    seconds = time.perf_counter() - t0
    print(f"articles: {len(docs)}")
    print(f"articles_flagged: {len(flagged)} ({len(flagged) / len(docs):.4%})")
    print(f"screen_ms_per_article: {seconds * 1000 / len(docs):.3f}")
    chunks = [c for d in docs for c in TokenChunker().split(d)]
    flagged_chunks = sum(screen.screen(c.text).flagged for c in chunks)
    print(f"chunks: {len(chunks)}")
    print(f"chunks_flagged: {flagged_chunks} ({flagged_chunks / len(chunks):.4%})")
    found: Counter[str] = Counter()
    for d in docs:
        found.update(redact(d.text).counts)
    print(f"pii_found_in_articles: {dict(found)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    overhead(rounds=20 if args.smoke else 200)
    false_positives()


if __name__ == "__main__":
    main()
