"""``ws.rag``: ingest documents into versioned collections, query, answer and
evaluate them."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import (CollectionNotFoundError, ConfigError, DocumentError,
                             EmptyCorpusError, GenAIError, PromptNotFoundError, ShipyardError,
                             TraceExportError, VectorStoreError)
from shipyard.genai._bm25 import BM25Index
from shipyard.genai._chunking import TokenChunker, doc_key
from shipyard.genai._collections import (EXPERIMENT, TAG_COLLECTION, TAG_DROPPED, TAG_KIND,
                                         TAG_MANIFEST, TAG_VERSION, CollectionRecords,
                                         ChunkTable, CollectionVersion, DocumentRecord, Refusal,
                                         check_collection_alias, check_collection_name,
                                         chunk_file_writer, chunk_schema, chunks_from_arrow,
                                         chunks_from_parquet, chunks_to_table, indexed_texts,
                                         parse_collection_ref, write_chunk_table)
from shipyard.genai._documents import MAX_DOCUMENT_BYTES, iter_document_files, read_document
from shipyard.genai._embeddings import (Embedder, EmbeddingCache, LocalEmbedder, as_embedder,
                                        embed_texts, embedder_from_spec)
from shipyard.genai._evaluation import (EvaluationReport, Question, RagPromotion,
                                        check_rag_gates, coerce_questions, evaluate_answers,
                                        evaluate_retrieval, known_metrics, load_rag_gates,
                                        tune_fusion)
from shipyard.genai._generation import ExtractiveGenerator, Generator, check_generator
from shipyard.genai._judge import Judge
from shipyard.genai._prompts import PromptRegistry, PromptTemplate
from shipyard.genai._guardrails import (REFUSED_TEXT, Guardrails, as_guardrails,
                                        check_question, redact)
from shipyard.genai._records import Answer, Chunk, Document, Hit
from shipyard.genai._retrieval import DEFAULT_FUSION, DEFAULT_RRF_K, MODES, Reranker, Retriever
from shipyard.genai._tracing import (Trace, TraceExport, Tracer, TraceStore, TraceWriter,
                                     count_tokens, export_url, hit_attributes, post_otlp,
                                     span, write_otlp_file)
from shipyard.genai._vectorstore import VectorStore, open_vector_store

if TYPE_CHECKING:
    from shipyard import Workspace

log = logging.getLogger(__name__)

DEFAULT_STORE = "default"
_RETRIEVERS_KEPT = 4
_EMBED_SLICE = 256  # texts embedded between two progress reports
#: Chunks an ingestion embeds and writes to the index at a time.
INGEST_BATCH = 16_384


def strip_password(uri: str) -> str:
    """A store URI without its password (libpq then reads ``PGPASSWORD`` or
    ``~/.pgpass``).

    >>> strip_password("postgresql+pgvector://me:secret@db/rag")
    'postgresql+pgvector://me@db/rag'
    """
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1@", uri)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Give the memory an ingestion stage freed back to the operating system.

    Arrow's pool keeps the blocks it frees, and glibc's malloc the free pages
    of its heaps (one per thread), until asked: without this, each stage's
    peak stays in the process and adds to the next one's (a 1M-chunk ingestion
    peaked 400 MB higher; benchmarks/RESULTS.md, RAG).
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Rag:
    """Retrieval-augmented generation over versioned document collections.

    Reach it as ``ws.rag``. A collection is versioned like a dataset
    (``docs@2``); each version records its documents, chunks and index.

    Parameters
    ----------
    workspace
        The workspace that records the collections.
    embedder
        Embedder (or its spec, e.g. ``{"kind": "openai", "model": ...,
        "base_url": ..., "api_key": ...}``) for new collections and for
        querying collections it made (default: the collection's own, which
        for new ones is the offline MiniLM).
    store
        Vector store URI for new collections (default LanceDB under
        ``<home>/rag/lancedb``); also supplies the password of a PostgreSQL
        store whose URI the collection records without it.
    refresh_seconds
        Queries resolve ``docs``/``docs@latest`` again at most this often, so
        a version another process publishes is used within this delay (one
        made through this object is used at once).

    Example::

        import shipyard
        from shipyard.genai import Document
        ws = shipyard.Workspace.open()
        docs = [Document.from_text("The Eiffel Tower is 330 metres tall.", source="paris"),
                Document.from_text("Big Ben is a bell in London.", source="london")]
        ws.rag.ingest("cities", docs).ref                          # 'cities@1'
        ws.rag.answer("cities", "How tall is the Eiffel Tower?").text
        # 'The Eiffel Tower is 330 metres tall. [1]'
    """

    def __init__(self, workspace: Workspace, *, embedder: Embedder | dict | None = None,
                 store: str | None = None, refresh_seconds: float = 2.0):
        self._ws = workspace
        self.refresh_seconds = refresh_seconds
        self._resolved: dict[tuple[str, int | None], tuple[float, CollectionVersion]] = {}
        self.embedder = as_embedder(embedder) if embedder is not None else None
        self.store = store
        self.records = CollectionRecords(workspace)
        self._stores: dict[str, VectorStore] = {}
        self._embedders: dict[str, Embedder] = {}
        self._retrievers: OrderedDict[str, Retriever] = OrderedDict()
        self._lock = threading.RLock()
        self._writer: TraceWriter | None = None

    def __repr__(self) -> str:
        return f"Rag({self._ws!r}, embedder={self.embedder!r}, store={self.store!r})"

    def close(self) -> None:
        """Write queued traces; close the vector stores this object opened
        (connections, handles)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
            self._retrievers.clear()

    # ----------------------------------------------------------- locations
    @property
    def home(self) -> Path:
        """``<workspace home>/rag``: the default LanceDB, the embedding and BM25
        caches, locks. (The exported ONNX model is shared by all workspaces,
        in ``~/.cache/shipyard/onnx``, named by the weights' sha256.)"""
        return Path(self._ws.settings.home) / "rag"

    def _store_uri(self, recorded: str) -> str:
        if recorded == DEFAULT_STORE:
            return f"lancedb://{(self.home / 'lancedb').as_posix()}"
        if self.store and strip_password(self.store) == recorded:
            return self.store
        return recorded

    def open_store(self, recorded: str) -> VectorStore:
        """The vector store a collection records (opened once, then shared)."""
        uri = self._store_uri(recorded)
        with self._lock:
            if uri not in self._stores:
                self._stores[uri] = open_vector_store(uri)
            return self._stores[uri]

    def _embedder_for(self, spec: dict[str, Any]) -> Embedder:
        if self.embedder is not None and self.embedder.name == spec.get("name"):
            return self.embedder
        with self._lock:
            key = spec.get("name") or repr(spec)
            if key not in self._embedders:
                embedder = embedder_from_spec(spec)
                if embedder.name != spec.get("name"):
                    raise ConfigError(
                        f"the collection was embedded with {spec.get('name')!r} but the model "
                        f"found now is {embedder.name!r}",
                        hint="install the same model, or re-ingest with reembed=True")
                self._embedders[key] = embedder
            return self._embedders[key]

    def default_embedder(self) -> Embedder:
        """The embedder new collections get: ``embedder=`` or the offline MiniLM."""
        if self.embedder is not None:
            return self.embedder
        with self._lock:
            if "default" not in self._embedders:
                self._embedders["default"] = LocalEmbedder()
            return self._embedders["default"]

    @property
    def embedding_cache(self) -> EmbeddingCache:
        return EmbeddingCache(self.home / "embeddings.sqlite")

    @contextlib.contextmanager
    def _collection_lock(self, name: str) -> Iterator[None]:
        """Ingestions and drops of one collection run one at a time (a file lock
        in the workspace home: one machine)."""
        folder = self.home / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.lock"
        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- read
    def get(self, ref: str | CollectionVersion) -> CollectionVersion:
        """The version ``ref`` names: ``"docs"``/``"docs@latest"`` or ``"docs@2"``.

        Raises
        ------
        CollectionNotFoundError
            No such collection or version.
        """
        return self.records.get(ref)

    def versions(self, name: str) -> list[CollectionVersion]:
        """Every version of ``name``, oldest first (empty if none)."""
        return self.records.versions(name)

    def list(self) -> list[CollectionVersion]:
        """The latest version of every collection, by name."""
        return [self.records.get(n) for n in self.records.names()]

    def chunks(self, ref: str | CollectionVersion) -> list[Chunk]:
        """Every chunk of a version, in index order."""
        version = self.get(ref)
        return chunks_from_parquet(self._ws.artifacts.get_bytes(version.chunks_digest))

    # -------------------------------------------------------------- ingest
    def ingest(self, name: str, sources: str | os.PathLike | Document |
               Iterable[str | os.PathLike | Document], *, chunk_tokens: int = 200,
               overlap: int = 40, embedder: Embedder | dict | None = None,
               store: str | None = None,
               remove_missing: bool = True, on_error: str = "record",
               max_document_bytes: int = MAX_DOCUMENT_BYTES, keep_sources: bool = True,
               reembed: bool = False, keep_versions: int = 3,
               progress: Callable[[str, int, int], None] | None = None,
               batch_size: int = INGEST_BATCH) -> CollectionVersion:
        """Index documents as the next version of collection ``name``.

        Unchanged documents (same source, same content hash) keep their chunks
        and vectors; changed ones are re-chunked and re-embedded; documents of
        the previous version missing from ``sources`` are deleted from every
        index. Vectors are cached by content hash, so nothing is embedded twice.
        The new index is built as a new table and becomes visible only once
        complete. Ingestion streams: documents are read one at a time and
        their chunks embedded and written ``batch_size`` at a time, so memory
        does not grow with the collection (1M chunks: see benchmarks/rag.py).

        Parameters
        ----------
        name
            Collection name (like a dataset name: ``docs``).
        sources
            Files (``.txt``, ``.md``, ``.html``, ``.pdf``), folders (walked) and
            :class:`Document` objects. Together they are the whole collection,
            unless ``remove_missing`` is false.
        chunk_tokens, overlap
            Chunk size and overlap in tokens of the embedding model.
        embedder
            Default: the previous version's, else ``Rag(embedder=)``, else the
            offline MiniLM.
        store
            Vector store URI; default the previous version's, else
            ``Rag(store=)``, else LanceDB under the workspace home.
        remove_missing
            Delete documents of the previous version that ``sources`` lacks.
        on_error
            ``"record"``: a document that cannot be read is left out and listed
            in ``refused``; ``"raise"``: the first such document stops the
            ingestion (nothing is changed).
        max_document_bytes
            Larger documents are refused.
        keep_sources
            Store each document's extracted text in the artifact store (lineage:
            citations' offsets index it, and no original file is needed later).
        reembed
            Allow a different embedder than the previous version's (every chunk
            is embedded again, into a new table).
        keep_versions
            Index tables of this many latest versions are kept; older versions
            stay recorded but can no longer be queried.
        progress
            Called as ``progress(stage, done, total)`` while the ingestion
            works: ``"read"`` (sources read), ``"embed"`` (new chunks embedded
            or found in the cache), ``"write"`` (chunks written to the index),
            ``"index"`` (0 of 2: BM25, 1 of 2: the vector index, 2 of 2: done).
            ``total`` of ``"embed"`` and ``"write"`` counts the chunks queued
            so far: it grows while documents are read.
        batch_size
            Chunks embedded and written to the index at a time.

        Returns
        -------
        CollectionVersion
            The new version, or the latest one unchanged (``.new`` false) when
            nothing changed.

        Raises
        ------
        EmptyCorpusError
            No document had text.
        DocumentError
            A document could not be read and ``on_error="raise"``.
        EmbeddingDimensionError
            The embedder returned vectors of another dimension than the index.
        GenAIError, ConfigError
            Invalid arguments, or another embedder without ``reembed``.
        """
        check_collection_name(name)
        if on_error not in ("record", "raise"):
            raise GenAIError(f"on_error must be 'record' or 'raise', got {on_error!r}")
        if isinstance(keep_versions, bool) or not isinstance(keep_versions, int) \
                or keep_versions < 1:
            raise GenAIError(f"keep_versions must be a positive integer, got {keep_versions!r}")
        if embedder is not None:
            embedder = as_embedder(embedder)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GenAIError(f"batch_size must be a positive integer, got {batch_size!r}")
        chunker = TokenChunker(chunk_tokens=chunk_tokens, overlap=overlap)
        chunker._check()
        items = _as_items(sources)
        with self._collection_lock(name):
            try:
                return _Ingestion(self, name, chunker, embedder, store, remove_missing,
                                  on_error, max_document_bytes, keep_sources, reembed,
                                  keep_versions, progress, batch_size).run(items)
            finally:
                self._forget(name)

    def drop(self, name: str) -> int:
        """Delete a collection's index tables and hide its versions (their
        records stay, as history). Returns how many tables were dropped.

        Raises
        ------
        CollectionNotFoundError
            No such collection.
        """
        with self._collection_lock(name):
            self.get(name)  # raises if there is no such collection
            _, highest = self.records.numbers(name)
            dropped = 0
            for version in self.versions(name):
                store = self.open_store(version.store)
                if store.exists(version.table):
                    store.drop(version.table)
                    dropped += 1
            digests = {v.chunks_digest for v in self.versions(name) if v.chunks_digest}
            with self._ws.runs.start(EXPERIMENT, name=f"drop {name}",
                                     tags={TAG_COLLECTION: name, TAG_KIND: "drop",
                                           TAG_DROPPED: str(highest)}) as run:
                run.log_metric("tables_dropped", dropped)
            self._forget(name)
            self._remove_caches(digests)
            return dropped

    def _remove_caches(self, digests: set[str]) -> None:
        """Delete the query caches (mapped chunk table, BM25 index) of
        ``digests`` that no collection's version still uses; they are rebuilt
        from the stored chunks if ever needed (1M chunks: about 1.2 GB + 1 GB)."""
        used = {v.chunks_digest for c in self.records.names() for v in self.versions(c)}
        for digest in digests - used:
            self._chunk_table_file(digest).unlink(missing_ok=True)
            shutil.rmtree(self.home / "bm25" / digest, ignore_errors=True)

    def _resolve(self, ref: str | CollectionVersion) -> CollectionVersion:
        """``get``, remembered: versions never change, ``latest`` is looked up
        again after ``refresh_seconds``."""
        if isinstance(ref, CollectionVersion):
            return ref
        key = parse_collection_ref(ref)
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(key)
        # A version number never changes; latest and aliases are looked up again.
        if hit is not None and (isinstance(key[1], int) or now - hit[0] < self.refresh_seconds):
            return hit[1]
        version = self.records.get(ref)
        with self._lock:
            self._resolved[key] = (now, version)
        return version

    def _forget(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._resolved if k[0] == name]:
                del self._resolved[key]
            for key in [k for k in self._retrievers if k.split("@")[0] == name]:
                del self._retrievers[key]

    # --------------------------------------------------------------- query
    def retriever(self, ref: str | CollectionVersion) -> Retriever:
        """The :class:`Retriever` of a version (built once, then cached)."""
        version = self._resolve(ref)
        with self._lock:
            cached = self._retrievers.get(version.ref)
            if cached is not None:
                self._retrievers.move_to_end(version.ref)
                return cached
        store = self.open_store(version.store)
        if not store.exists(version.table):
            raise VectorStoreError(
                f"the index of {version.ref} ({version.table}) is no longer in its store",
                hint=f"it was pruned or dropped; query {version.name}@latest or ingest again")
        chunks = self._chunk_table(version)
        retriever = Retriever(store, version.table, self._embedder_for(version.embedder),
                              chunks, self._bm25(version, chunks), **self._fusion(version))
        with self._lock:
            self._retrievers[version.ref] = retriever
            while len(self._retrievers) > _RETRIEVERS_KEPT:
                self._retrievers.popitem(last=False)
        return retriever

    def _fusion_file(self, version: CollectionVersion) -> Path:
        return self.home / "fusion" / f"{version.table}.json"

    def _fusion(self, version: CollectionVersion) -> dict[str, Any]:
        """The version's tuned fusion (:meth:`tune_fusion`), else the defaults."""
        import json

        try:
            kept = json.loads(self._fusion_file(version).read_text())
            return {"fusion": str(kept["fusion"]), "rrf_k": float(kept["rrf_k"]),
                    "weights": {str(n): float(w) for n, w in kept["weights"].items()}}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {"fusion": DEFAULT_FUSION, "rrf_k": DEFAULT_RRF_K, "weights": None}

    def tune_fusion(self, ref: str | CollectionVersion, questions: Sequence[Question | Mapping],
                    *, k: int = 10) -> dict[str, Any]:
        """Tune the hybrid fusion of a version on labelled ``questions`` (see
        :func:`shipyard.genai.tune_fusion`; keep a held-out part to report on)
        and keep it: this version's retrievers use it from now on, in any
        process on this workspace (a small JSON file next to the BM25 cache,
        keyed by the version's table). Returns the chosen fusion."""
        import json

        version = self._resolve(ref)
        retriever = self.retriever(version)
        best = tune_fusion(retriever, coerce_questions(questions), k=k)
        path = self._fusion_file(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
        part.write_text(json.dumps({n: best[n] for n in ("fusion", "rrf_k", "weights")}))
        os.replace(part, path)
        retriever.fusion, retriever.rrf_k = best["fusion"], best["rrf_k"]
        retriever.weights = dict(best["weights"])
        return best

    def _chunk_table_file(self, digest: str) -> Path:
        return self.home / "chunks" / f"{digest}.arrow"

    def _chunk_table(self, version: CollectionVersion) -> ChunkTable:
        """The version's chunks, memory-mapped from an Arrow file in the
        workspace home that ingestion wrote (remade here from
        ``chunks.parquet`` if missing or not this version's)."""
        path = self._chunk_table_file(version.chunks_digest)
        with contextlib.suppress(OSError, ValueError):
            table = ChunkTable.open(path)
            if len(table) == version.num_chunks and table.table.schema.equals(chunk_schema()):
                return table
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="chunks-", dir=path.parent) as tmp:
            parquet = self._ws.artifacts.get_file(version.chunks_digest,
                                                  Path(tmp) / "chunks.parquet")
            write_chunk_table(parquet, path)
        return ChunkTable.open(path)

    def _bm25(self, version: CollectionVersion, chunks: Sequence[Chunk]) -> BM25Index:
        folder = self.home / "bm25" / version.chunks_digest
        if folder.is_dir():
            try:
                return BM25Index.load(folder)
            except GenAIError:
                pass  # damaged cache: rebuild below
        return BM25Index().build((c.indexed_text for c in chunks), folder)

    def query(self, ref: str | CollectionVersion, question: str, *, k: int = 5,
              mode: str = "hybrid", where: Mapping[str, Any] | None = None,
              mmr: float | None = None, reranker: Reranker | None = None,
              fetch_k: int | None = None, trace: bool = True) -> list[Hit]:
        """The ``k`` chunks of collection ``ref`` that best match ``question``.

        Parameters
        ----------
        mode
            ``"hybrid"`` (dense + BM25, fused by normalised scores weighted
            0.1 : 0.9, see ``Retriever``), ``"dense"`` or ``"bm25"``.
        where
            Metadata filter, e.g. ``{"source": "guide.md", "page": {"$gte": 2}}``.
        mmr
            Diversify results by maximal marginal relevance with this lambda.
        reranker
            A :class:`Reranker` applied to the candidates.
        fetch_k
            Candidates per retriever before fusion, reranking and MMR.
        trace
            Record the request as a trace (:meth:`traces`); the stored
            question is PII-redacted.

        Raises
        ------
        CollectionNotFoundError
            No such collection or version.
        GenAIError
            An empty question, or one longer than ``MAX_QUESTION_CHARS``.
        """
        check_question(question)
        _check_ref(ref)
        tracer = _tracer("query", trace)
        with self._traced(tracer, ref, redact(question).text) as root:
            version = self._resolve(ref)
            root["collection"] = version.ref
            if tracer is not None:
                tracer.info["ref"] = version.ref
            hits = self.retriever(version).search(question, k=k, mode=mode, where=where,
                                                  mmr=mmr, reranker=reranker,
                                                  fetch_k=fetch_k, tracer=tracer)
            if tracer is not None:
                root.update(hit_attributes(hits))
        return hits

    def answer(self, ref: str | CollectionVersion, question: str, *, k: int = 5,
               mode: str = "hybrid", where: Mapping[str, Any] | None = None,
               generator: Generator | None = None,
               guardrails: Guardrails | bool | None = True, trace: bool = True,
               prompt: str | PromptTemplate | None = None, **search: Any) -> Answer:
        """Answer ``question`` from collection ``ref``, with citations.

        Parameters
        ----------
        generator
            Writes the answer; default :class:`ExtractiveGenerator` with the
            collection's embedder (offline, quotes only its sources).
        guardrails
            A :class:`Guardrails` policy; ``True`` (default) for the default
            one, ``None``/``False`` for none. PII in the question is redacted
            before retrieval and generation (``Answer.question`` is the
            redacted text) and PII in the answer (text, citation quotes) is
            redacted; a question the injection screen flags is refused without
            retrieval or generation; flagged retrieved chunks are dropped from
            the context.
        trace
            Record the request as a trace; its id is ``Answer.trace_id``.
        prompt
            A prompt template version (``"qa@champion"``, ``"qa@2"``) the
            generator writes with; ``Answer.prompt`` and the trace record it.
            Needs a generator that writes from a prompt
            (:class:`OpenAIChatGenerator`).
        **search
            More arguments of :meth:`query` (``mmr``, ``reranker``, ``fetch_k``).

        Raises
        ------
        CollectionNotFoundError
            No such collection or version.
        GenAIError
            An empty question, or one longer than ``MAX_QUESTION_CHARS``.
        """
        check_question(question)
        _check_ref(ref)
        guard = as_guardrails(guardrails)
        if generator is not None:
            generator = check_generator(generator)
        if prompt is not None:
            generator = self._with_prompt(generator, prompt)
        tracer = _tracer("answer", trace)
        stored = guard.redact(question).text if guard is not None else redact(question).text
        with self._traced(tracer, ref, stored) as root:
            version = self._resolve(ref)
            root["collection"] = version.ref
            if tracer is not None:
                tracer.info["ref"] = version.ref
            result = self._answer(version, question, guard, generator, tracer, root,
                                  k=k, mode=mode, where=where, **search)
            if tracer is not None:
                tracer.info["generator"] = result.generator
                tracer.info["refusal"] = result.refusal
                root["generator"] = result.generator
                if result.prompt:
                    root["prompt"] = result.prompt
                if result.refusal:
                    root["refusal"] = result.refusal
        if tracer is not None and tracer.info.get("recorded"):
            result = replace(result, trace_id=tracer.trace_id)
        return result

    def _answer(self, version: CollectionVersion, question: str, guard: Guardrails | None,
                generator: Generator | None, tracer: Tracer | None, root: dict[str, Any],
                **search: Any) -> Answer:
        asked = question
        if guard is not None:
            with span(tracer, "guard") as attrs:
                asked, report = guard.check_question(question)
                attrs.update(report.attributes())
            if report.blocked:
                return Answer(question=asked, text=REFUSED_TEXT, citations=(), hits=(),
                              generator="guardrails", refusal=report.reason)
        retriever = self.retriever(version)
        hits = retriever.search(asked, tracer=tracer, **search)
        if tracer is not None:
            root.update(hit_attributes(hits))
        if guard is not None:
            with span(tracer, "guard") as attrs:
                hits, report = guard.check_hits(hits)
                attrs.update(report.attributes())
            if not hits and report.dropped:
                return Answer(question=asked, text=REFUSED_TEXT, citations=(), hits=(),
                              generator="guardrails",
                              refusal=f"the guardrails dropped every retrieved chunk "
                                      f"({len(report.dropped)}) as a suspected prompt "
                                      f"injection")
        generator = generator or ExtractiveGenerator(embedder=retriever.embedder)
        with span(tracer, "generate", generator=generator.name, passages=len(hits)) as attrs:
            result = generator.generate(asked, hits)
            if tracer is not None:
                attrs.update(_token_attributes(result, hits))
                if result.refusal:
                    attrs["refusal"] = result.refusal
            generated = attrs
        if guard is not None:
            with span(tracer, "guard") as attrs:
                result, report = guard.check_answer(result)
                attrs.update(report.attributes())
        if tracer is not None:  # what was answered and cited, after redaction
            generated["answer"] = result.text[:4000]
            generated["citations"] = [
                {"marker": c.marker, "chunk_id": c.chunk_id, "source": c.source,
                 "section": c.section, "page": c.page, "start": c.start, "end": c.end}
                for c in result.citations]
        return result

    # -------------------------------------------------------------- traces
    @property
    def _trace_writer(self) -> TraceWriter:
        with self._lock:
            if self._writer is None:
                self._writer = TraceWriter(TraceStore(self._ws))
            return self._writer

    @property
    def _trace_store(self) -> TraceStore:
        """The trace table, once this object's queued traces are in it."""
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.flush()
        return TraceStore(self._ws)

    @contextlib.contextmanager
    def _traced(self, tracer: Tracer | None, ref: Any, question: str
                ) -> Iterator[dict[str, Any]]:
        """The root span of a request; the trace is stored when it ends (also
        when it fails: then with the error)."""
        if tracer is None:
            yield {}
            return
        name = ref.name if isinstance(ref, CollectionVersion) else str(ref).split("@")[0]
        tracer.info.update(collection=name, question=question)
        try:
            with tracer.span(f"rag.{tracer.kind}") as root:
                yield root
        finally:
            # Queued, written by a background thread in batches (see TraceWriter).
            self._trace_writer.submit(tracer.finish())
            tracer.info["recorded"] = True

    def traces(self, collection: str | None = None, since: Any = None,
               limit: int | None = 50) -> list[Trace]:
        """Recorded traces, newest first (spans included).

        Parameters
        ----------
        collection
            Only this collection (``"docs"``) or version (``"docs@2"``, or an
            alias: the version it names now).
        since
            Only traces that started since: a duration back from now
            (``"1h"``, ``"7d"``), epoch seconds, a datetime or ISO text.
        limit
            At most this many (1 to 10,000; ``None``: all).

        Raises
        ------
        GenAIError
            A bad ``since``, ``limit`` or collection name.
        """
        return self._trace_store.list(self._trace_filter(collection), since, limit)

    def _trace_filter(self, collection: Any) -> Any:
        """``docs@champion`` → the version the alias names now (``docs@3``)."""
        if isinstance(collection, str) and "@" in collection \
                and isinstance(parse_collection_ref(collection)[1], str):
            return self.get(collection).ref
        return collection

    def prune_traces(self, older_than: Any) -> int:
        """Delete traces that started before ``older_than`` (``"30d"``: more
        than 30 days ago; or a time). Returns how many. Traces are kept until
        pruned.

        Raises
        ------
        GenAIError
            ``older_than`` is missing or neither a duration nor a time.
        """
        return self._trace_store.prune(older_than)

    def trace(self, trace_id: str) -> Trace:
        """One trace with its spans (``Answer.trace_id``).

        Raises
        ------
        TraceNotFoundError
            No trace has this id (or it is not 32 hex digits).
        """
        return self._trace_store.get(trace_id)

    def export_traces(self, destination: str | os.PathLike, *, since: Any = None,
                      collection: str | None = None, limit: int | None = None,
                      service_name: str = "shipyard", timeout: float = 10.0,
                      headers: Mapping[str, str] | None = None) -> TraceExport:
        """Export traces as OpenTelemetry OTLP/JSON (an
        ``ExportTraceServiceRequest``): to a file, or POSTed to an OTLP/HTTP
        collector when ``destination`` is an ``http(s)://`` URL (a bare
        ``http://host:4318`` gets ``/v1/traces``). The traces stay in the
        workspace; exporting again sends them again.

        Parameters
        ----------
        since, collection, limit
            Which traces (see :meth:`traces`); default all, oldest first.
        service_name
            The ``service.name`` resource attribute.
        timeout
            Seconds per HTTP request.
        headers
            Extra HTTP headers (e.g. ``Authorization``).

        Raises
        ------
        TraceExportError
            A bad path or URL, or a collector that failed, answered an error
            or timed out.
        """
        if not isinstance(service_name, str) or not service_name.strip() \
                or len(service_name) > 200:
            raise TraceExportError(f"service_name must be non-empty text of at most 200 "
                                   f"characters, got {str(service_name)[:60]!r}")
        if not isinstance(destination, (str, os.PathLike)) or not str(destination).strip():
            raise TraceExportError(f"the destination must be a file path or an http(s) URL, "
                                   f"got {destination!r}"[:300])
        destination = os.fspath(destination)
        url = export_url(destination)
        if url is None and isinstance(destination, str) and "\x00" in destination:
            raise TraceExportError("the file path holds a NUL character")
        traces = self._trace_store.list(self._trace_filter(collection), since, limit,
                                        oldest_first=True)
        if url is not None:
            return post_otlp(url, traces, service_name, timeout=timeout, headers=headers)
        return write_otlp_file(destination, traces, service_name)

    # ------------------------------------------------------------ evaluate
    def evaluate(self, ref: str | CollectionVersion,
                 questions: Sequence[Question | Mapping[str, Any]], *, k: int = 10,
                 modes: Sequence[str] = MODES, answers: bool = False,
                 generator: Generator | None = None, answer_k: int = 5,
                 record: bool = True, prompt: str | PromptTemplate | None = None,
                 judge: Judge | None = None, dry_run: bool = False) -> EvaluationReport:
        """Score retrieval (hit rate@k, recall@k, MRR@k, nDCG@10 per mode) and,
        with ``answers=True``, the groundedness and citation precision of the
        answers, on labelled questions. Recorded as a run in the experiment
        ``rag`` (tag ``rag.kind=evaluate``) unless ``record`` is false.

        Parameters
        ----------
        prompt
            Write the answers with this prompt template version (implies
            ``answers``; needs a generator that uses prompts).
        judge
            Also score the answers with this LLM :class:`Judge` (implies
            ``answers``); its means, token counts and cost go into
            ``report.judge`` and the run's metrics. Its cache defaults to
            ``<home>/rag/judge.sqlite``.
        dry_run
            With ``judge``: only estimate the judge's calls, tokens and cost
            (``report.judge["estimate"]``); nothing is sent to it.
        """
        if judge is not None and not isinstance(judge, Judge):
            raise GenAIError(f"judge must be a shipyard.genai.Judge, got "
                             f"{type(judge).__name__}")
        if not isinstance(dry_run, bool) or (dry_run and judge is None):
            raise GenAIError("dry_run=True estimates a judge's cost: pass judge=Judge(...) too")
        questions = coerce_questions(questions)
        version = self._resolve(ref)
        retriever = self.retriever(version)
        report = evaluate_retrieval(retriever, questions, k=k, modes=modes)
        if answers or prompt is not None or judge is not None:
            generator = check_generator(generator) if generator is not None else \
                ExtractiveGenerator(embedder=retriever.embedder)
            if prompt is not None:
                generator = self._with_prompt(generator, prompt)
                report.prompt = generator.prompt.ref
            if judge is not None and judge.cache is None:
                judge = judge.with_cache(self.home / "judge.sqlite")
            evaluate_answers(report, retriever, generator, answer_k=answer_k, judge=judge,
                             dry_run=dry_run)
        if record:
            params = {"k": k, "modes": ",".join(modes), "questions": len(questions),
                      "answers": report.answers is not None}
            if report.prompt:
                params["prompt"] = report.prompt
            if judge is not None:
                params.update({"judge": judge.model, "judge_dry_run": dry_run})
            with self._ws.runs.start(
                    EXPERIMENT, name=f"evaluate {version.ref}", params=params,
                    tags={TAG_COLLECTION: version.name, TAG_KIND: "evaluate",
                          TAG_VERSION: str(version.version)}) as run:
                run.log_metrics(report.metrics())
                run.log_dict("report.json", report.to_dict())
        return report

    # ------------------------------------------------------------- prompts
    @functools.cached_property
    def prompts(self) -> PromptRegistry:
        """Prompt templates, versioned in the model registry
        (:class:`PromptRegistry`): ``ws.rag.prompts.register("qa", ...)``."""
        return PromptRegistry(self._ws)

    def _with_prompt(self, generator: Generator | None,
                     prompt: str | PromptTemplate) -> Generator:
        if generator is None:
            raise GenAIError(f"prompt {prompt} needs a generator that writes from a prompt; "
                             "the default extractive one only quotes passages",
                             hint="pass generator=OpenAIChatGenerator(model, base_url=...)")
        template = self.prompts.get(prompt) if isinstance(prompt, str) else prompt
        if not isinstance(template, PromptTemplate):
            raise GenAIError(f"prompt must be a ref like 'qa@champion' or a PromptTemplate, "
                             f"got {type(prompt).__name__}")
        return generator.with_prompt(template)

    # ----------------------------------------------------------- promotion
    def aliases(self, name: str) -> dict[str, int]:
        """Alias → version number of collection ``name`` (``{"champion": 3}``)."""
        return self.records.aliases(name)

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of collection ``name``, oldest first (from the
        audit log)."""
        return self.records.alias_history(name)

    def set_alias(self, ref: str | CollectionVersion, alias: str, *, actor: str | None = None,
                  reason: str | None = None) -> CollectionVersion:
        """Point ``alias`` of a collection at the version ``ref`` names,
        without gates (audited as ``rag.alias.set``); gated moves are
        :meth:`promote`."""
        version = self.get(ref)
        self.records.set_alias(version.name, alias, version.version, actor=actor,
                               reason=_reason(reason))
        self._forget_refs(version.name)
        return version

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None,
                     reason: str | None = None) -> None:
        """Remove ``alias`` of collection ``name`` (audited)."""
        self.records.remove_alias(name, alias, actor=actor, reason=_reason(reason))
        self._forget_refs(name)

    def _forget_refs(self, name: str) -> None:
        with self._lock:
            for key in [key for key in self._resolved if key[0] == name]:
                del self._resolved[key]

    def promote(self, ref: str | CollectionVersion,
                questions: Sequence[Question | Mapping[str, Any]], *,
                gates: Any = None, alias: str = "champion", k: int = 10,
                modes: Sequence[str] = MODES, answers: bool = False,
                generator: Generator | None = None, judge: Judge | None = None,
                answer_k: int = 5, actor: str | None = None,
                reason: str | None = None) -> RagPromotion:
        """Move ``alias`` (``champion``) of a collection to the version ``ref``
        only if it passes ``gates``: the candidate and the current holder are
        evaluated on the same ``questions``, absolute thresholds are checked
        on the candidate and champion rules on per-question pairs. Whatever the
        outcome, the attempt is a run (``rag.kind=promote``) and an audit entry
        ``rag.promote`` with every gate's verdict; a refused candidate leaves
        the alias where it was.

        Parameters
        ----------
        ref
            The candidate (``docs@3``; ``docs`` is the newest version).
        questions
            Labelled questions (:class:`Question` or ``{"text", "relevant"}``).
        gates
            A mapping in the vocabulary of model gates —
            ``{"metrics": {"hybrid.ndcg@10": {"min": 0.8}}, "champion":
            {"metric": "hybrid.ndcg@10", "max_drop": 0.02, "test":
            "paired_bootstrap"}}`` — or lines (``"hybrid.ndcg@10 >= 0.8"``,
            ``"hybrid.mrr@10 >= champion - 0.02"``). Default: no worse than
            the champion on ``hybrid.ndcg@10`` (the first mode's without
            hybrid). Gate names are ``<mode>.<score>``, ``answers.<score>``
            (needs ``answers``) and ``judge.<criterion>`` (needs ``judge``).
        alias
            The alias to move.
        k, modes, answers, generator, judge, answer_k
            As in :meth:`evaluate`.
        actor, reason
            Recorded in the audit log.

        Returns
        -------
        RagPromotion
            Prints as a table of the gates.

        Raises
        ------
        CollectionNotFoundError
            No such collection or version.
        GenAIError
            Malformed gates or questions, an unknown gate metric.
        """
        candidate = self.get(ref)
        alias = check_collection_alias(alias)
        reason = _reason(reason)
        questions = coerce_questions(questions)
        default = "hybrid.ndcg@10" if "hybrid" in modes else f"{modes[0]}.ndcg@10"
        criteria = judge.criteria if isinstance(judge, Judge) else ()
        policy = load_rag_gates(gates, default_metric=default, known=known_metrics(
            modes, k, answers=answers or judge is not None, judge_criteria=criteria))
        holder_number = self.records.aliases(candidate.name).get(alias)
        holder = None
        if holder_number is not None:
            try:
                holder = self.get(f"{candidate.name}@{holder_number}")
            except CollectionNotFoundError:
                holder = None  # dropped: there is no champion to beat
        if holder is not None and holder.version == candidate.version:
            return RagPromotion("collection", candidate.ref, holder.ref, alias, True,
                                _no_gates(), already=True, questions=len(questions))
        options = {"k": k, "modes": modes, "answers": answers, "generator": generator,
                   "judge": judge, "answer_k": answer_k, "record": False}
        new = self.evaluate(candidate, questions, **options)
        old = self.evaluate(holder, questions, **options) if holder is not None else None
        return self._decide("collection", candidate.name, candidate.ref, candidate.version,
                            holder.ref if holder is not None else None, alias, policy, new,
                            old, actor, reason, {TAG_COLLECTION: candidate.name,
                                                 TAG_VERSION: str(candidate.version)})

    def promote_prompt(self, ref: str | PromptTemplate, collection: str | CollectionVersion,
                       questions: Sequence[Question | Mapping[str, Any]], *,
                       generator: Generator, gates: Any = None, alias: str = "champion",
                       judge: Judge | None = None, answer_k: int = 5,
                       actor: str | None = None, reason: str | None = None) -> RagPromotion:
        """Move ``alias`` of a prompt to the version ``ref`` only if the
        answers it makes pass ``gates``: the candidate and the current holder
        answer the same ``questions`` from ``collection`` with ``generator``,
        and their answers are scored (groundedness, citation precision and
        recall, refusal rate; the ``judge``'s criteria with one). Recorded as
        in :meth:`promote`; the alias move is the registry's
        (``model.alias.set`` on ``prompt.<name>``).

        Default gates: no worse than the champion on ``answers.groundedness``.
        """
        candidate = self.prompts.get(ref)
        if candidate.version is None:
            raise GenAIError("only a registered prompt version can be promoted",
                             hint="register it first: ws.rag.prompts.register(name, ...)")
        from shipyard.registry import check_alias

        try:
            check_alias(alias)
        except ShipyardError as exc:
            raise GenAIError(exc.message, hint=exc.hint) from exc
        reason = _reason(reason)
        if generator is None:
            raise GenAIError("promoting a prompt needs the generator that writes with it",
                             hint="pass generator=OpenAIChatGenerator(model, base_url=...)")
        check_generator(generator).with_prompt(candidate)  # refuses prompt-less generators
        questions = coerce_questions(questions)
        criteria = judge.criteria if isinstance(judge, Judge) else ()
        policy = load_rag_gates(gates, default_metric="answers.groundedness", known=known_metrics(
            ("hybrid",), 10, answers=True, judge_criteria=criteria))
        try:
            holder: PromptTemplate | None = self.prompts.get(f"{candidate.name}@{alias}")
        except PromptNotFoundError:
            holder = None
        version = self._resolve(collection)
        if holder is not None and holder.version == candidate.version:
            return RagPromotion("prompt", candidate.ref, holder.ref, alias, True, _no_gates(),
                                already=True, questions=len(questions))
        options = {"modes": ("hybrid",), "generator": generator, "judge": judge,
                   "answer_k": answer_k, "record": False, "answers": True}
        new = self.evaluate(version, questions, prompt=candidate, **options)
        old = self.evaluate(version, questions, prompt=holder, **options) \
            if holder is not None else None
        return self._decide("prompt", candidate.name, candidate.ref, candidate.version,
                            holder.ref if holder is not None else None, alias, policy, new,
                            old, actor, reason, {"rag.prompt": candidate.name,
                                                 TAG_COLLECTION: version.name,
                                                 "rag.collection_version": version.ref})

    def _decide(self, kind: str, name: str, candidate: str, number: int, champion: str | None,
                alias: str, policy: Any, new: EvaluationReport, old: EvaluationReport | None,
                actor: str | None, reason: str | None, tags: dict[str, str]) -> RagPromotion:
        """Check the gates, record the attempt (run + audit), move the alias
        if they passed."""
        import json

        result = check_rag_gates(policy, new, old)
        outcome = RagPromotion(kind, candidate, champion, alias, result.passed, result,
                               new.values(), old.values() if old is not None else None,
                               questions=new.n_questions)
        params = {"kind": kind, "candidate": candidate, "champion": champion or "none",
                  "alias": alias, "gates": json.dumps(policy.model_dump(), sort_keys=True)}
        with self._ws.runs.start(EXPERIMENT, name=f"promote {candidate}", params=params,
                                 tags={**tags, TAG_KIND: "promote"}) as run:
            metrics = {f"candidate.{k}": v for k, v in new.metrics().items()}
            if old is not None:
                metrics.update({f"champion.{k}": v for k, v in old.metrics().items()})
            metrics["gates_passed"] = float(sum(c.passed for c in result.checks))
            metrics["gates_failed"] = float(len(result.failed))
            run.log_metrics(metrics)
            run.log_dict("promotion.json", {**outcome.to_dict(), "candidate_report":
                                            new.to_dict(), "champion_report":
                                            old.to_dict() if old is not None else None})
            run.set_tags({"rag.promoted": str(result.passed).lower()})
        outcome = replace(outcome, run_id=run.id)
        summary = (f"gates passed on {new.n_questions} questions: " if result.passed else
                   f"gates failed on {new.n_questions} questions: ") + result.summary()
        why = f"{reason}; {summary}" if reason else summary
        why = why if len(why) <= 3900 else why[:3897] + "..."
        if result.passed:
            if kind == "collection":
                self.records.set_alias(name, alias, number, actor=actor, reason=why,
                                       details={"run_id": run.id, "champion": champion})
                self._forget_refs(name)
            else:
                self.prompts.set_alias(name, alias, number, actor=actor, reason=why)
        object_type, object_id = (("rag.collection", name) if kind == "collection"
                                  else ("model", f"prompt.{name}"))
        self._ws.db.retry(lambda session: self._ws.audit.append(
            session, actor=actor, action="rag.promote", object_type=object_type,
            object_id=object_id, reason=why, details=outcome.to_dict()),
            what=f"audit the promotion of {candidate}")
        return outcome


def _reason(reason: object) -> str | None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000
                               or "\x00" in reason):
        raise GenAIError("a reason is text of at most 2000 characters without NUL")
    return reason


def _no_gates():
    from shipyard.evaluate import GateResult

    return GateResult()


def _check_ref(ref: object) -> None:
    """A malformed ref is refused before a trace starts (an unknown one is
    traced, as an error)."""
    if not isinstance(ref, CollectionVersion):
        parse_collection_ref(ref)


def _tracer(kind: str, trace: object) -> Tracer | None:
    if not isinstance(trace, bool):
        raise GenAIError(f"trace must be True or False, got {trace!r}")
    return Tracer(kind) if trace else None


def _token_attributes(answer: Answer, hits: Sequence[Hit]) -> dict[str, Any]:
    """Prompt and completion tokens: the backend's ``usage``, else counted with
    the MiniLM tokenizer (question and passages in, answer text out)."""
    if answer.usage:
        return {"prompt_tokens": answer.usage.get("prompt_tokens"),
                "completion_tokens": answer.usage.get("completion_tokens"),
                "token_source": "upstream"}
    prompt = count_tokens([answer.question, *(h.chunk.text for h in hits)])
    if prompt is None:
        return {}
    completion = 0 if answer.refused else count_tokens([answer.text])
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "token_source": "minilm"}


# ------------------------------------------------------------------ ingestion
def _as_items(sources: Any) -> list[str | os.PathLike | Document]:
    if isinstance(sources, (str, os.PathLike, Document)):
        return [sources]
    try:
        items = list(sources)
    except TypeError as exc:
        raise GenAIError(f"sources must be paths, Documents or a list of them, got "
                         f"{type(sources).__name__}") from exc
    for item in items:
        if not isinstance(item, (str, os.PathLike, Document)):
            raise GenAIError(f"a source must be a path or a Document, got {type(item).__name__}")
    return items


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:24] or "c"
    return f"rag_{slug}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class _Ingestion:
    """One ingestion: read, diff, chunk, embed, index, record (under the
    collection's lock).

    It streams: documents are read one at a time, their new chunks embedded
    and appended to the new index table ``batch_size`` at a time and spilled
    to a Parquet file, which then feeds BM25. Memory holds one batch and one
    record per document, never the collection's texts or vectors."""

    def __init__(self, rag: Rag, name: str, chunker: TokenChunker, embedder: Embedder | None,
                 store: str | None, remove_missing: bool, on_error: str, max_bytes: int,
                 keep_sources: bool, reembed: bool, keep_versions: int,
                 progress: Callable[[str, int, int], None] | None = None,
                 batch_size: int = INGEST_BATCH):
        self.rag, self.ws, self.name = rag, rag._ws, name
        self.progress = progress or (lambda stage, done, total: None)
        self.chunker, self.embedder_arg, self.store_arg = chunker, embedder, store
        self.remove_missing, self.on_error, self.max_bytes = remove_missing, on_error, max_bytes
        self.keep_sources, self.reembed, self.keep_versions = keep_sources, reembed, keep_versions
        self.batch_size = batch_size
        self.refused: list[Refusal] = []

    # ---------------------------------------------------------- documents
    def _refuse(self, source: str, exc: Exception) -> None:
        if self.on_error == "raise":
            raise exc
        self.refused.append(Refusal(source=source, reason=str(getattr(exc, "message", exc))))

    def read(self, items: Sequence[str | os.PathLike | Document]) -> Iterator[Document]:
        """The documents of ``items``, one at a time (each source once; a
        document with the content of an earlier one is refused)."""
        seen: set[str] = set()
        by_hash: dict[str, str] = {}
        for number, item in enumerate(items, start=1):
            self.progress("read", number - 1, len(items))
            if isinstance(item, Document):
                found: Iterable[Document | Path] = [item]
            else:
                path = Path(item)
                if not path.exists():
                    self._refuse(str(item), DocumentError(f"{str(item)!r} does not exist"))
                    continue
                found = iter_document_files([path])
            for entry in found:
                if isinstance(entry, Document):
                    doc = entry
                else:
                    source = entry.resolve().as_posix()
                    if source in seen:
                        continue
                    try:
                        doc = read_document(entry, max_bytes=self.max_bytes)
                    except DocumentError as exc:
                        self._refuse(source, exc)
                        continue
                if doc.doc_id in seen:
                    continue  # the same source twice
                twin = by_hash.get(doc.content_hash)
                if twin is not None:
                    self._refuse(doc.source, DocumentError(
                        f"{doc.source!r} has the same content as {twin!r}; indexed once"))
                    continue
                by_hash[doc.content_hash] = doc.source
                seen.add(doc.doc_id)
                yield doc
        self.progress("read", len(items), len(items))

    # ---------------------------------------------------------------- run
    def run(self, items: Sequence[str | os.PathLike | Document]) -> CollectionVersion:
        started = time.perf_counter()
        rag = self.rag
        visible, highest = rag.records.numbers(self.name)
        previous = rag.records._load(visible[-1][1]) if visible else None
        embedder = self._embedder(previous)
        store_uri = self._store(previous)
        store = rag.open_store(store_uri)
        params = {"chunk_tokens": self.chunker.chunk_tokens, "overlap": self.chunker.overlap,
                  "embedder": embedder.name, "store": store_uri,
                  "remove_missing": self.remove_missing, "on_error": self.on_error,
                  "parent": previous.ref if previous else "none"}
        spill = rag.home / "tmp"
        spill.mkdir(parents=True, exist_ok=True)
        with self.ws.runs.start(EXPERIMENT, name=f"ingest {self.name}", params=params,
                                tags={TAG_COLLECTION: self.name, TAG_KIND: "ingest"}) as run, \
                tempfile.TemporaryDirectory(prefix="ingest-", dir=spill) as folder:
            build = _IndexBuild(self, run, previous, embedder, store_uri, store, Path(folder))
            try:
                build.add_documents(self.read(items))
                if build.unchanged():
                    run.set_tags({"rag.result": "unchanged", "rag.latest": previous.ref})
                    run.log_metrics({"documents": len(build.records), "refused":
                                     len(self.refused), "seconds": time.perf_counter() - started})
                    return replace(previous, new=False)
                version = build.publish(highest + 1, started)
            except BaseException:
                build.discard()
                raise
        try:
            self._prune(version)
        except Exception as exc:  # noqa: BLE001 - the new version stands; pruning waits
            log.warning("shipyard: could not prune old index tables of %s: %s",
                        self.name, exc)
        return version

    def _embedder(self, previous: CollectionVersion | None) -> Embedder:
        rag = self.rag
        if self.embedder_arg is not None:
            embedder = self.embedder_arg
        elif previous is not None:
            embedder = rag._embedder_for(previous.embedder)
        else:
            embedder = rag.default_embedder()
        if previous is not None and embedder.name != previous.embedder.get("name") \
                and not self.reembed:
            raise ConfigError(
                f"{previous.ref} was embedded with {previous.embedder.get('name')!r}, not "
                f"{embedder.name!r}; vectors of two models cannot share an index",
                hint="pass reembed=True to embed every chunk again, or use a new collection")
        return embedder

    def _store(self, previous: CollectionVersion | None) -> str:
        if self.store_arg is not None:
            return strip_password(self.store_arg)
        if previous is not None:
            return previous.store
        if self.rag.store is not None:
            return strip_password(self.rag.store)
        return DEFAULT_STORE

    def embed(self, embedder: Embedder, chunks: Sequence[Chunk], expected: int | None,
              done: int, total: int) -> tuple[Any, int]:
        """``embed_texts`` in slices (texts sorted by length, as the embedder
        batches them), reporting ``done + embedded`` of ``total`` after each."""
        import numpy as np

        texts = [c.indexed_text for c in chunks]
        if len(texts) <= _EMBED_SLICE:
            self.progress("embed", done, total)
            vectors, computed = embed_texts(embedder, texts, self.rag.embedding_cache,
                                            expected_dim=expected)
            self.progress("embed", done + len(texts), total)
            return vectors, computed
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors, computed = None, 0
        for start in range(0, len(order), _EMBED_SLICE):
            rows = order[start:start + _EMBED_SLICE]
            part, fresh = embed_texts(embedder, [texts[i] for i in rows],
                                      self.rag.embedding_cache, expected_dim=expected)
            if vectors is None:
                vectors = np.zeros((len(texts), part.shape[1]), dtype=np.float32)
            vectors[rows] = part
            expected = expected or int(part.shape[1])
            computed += fresh
            self.progress("embed", done + start + len(rows), total)
        return vectors, computed

    def _prune(self, version: CollectionVersion) -> None:
        """Drop index tables of versions older than the kept ones, and tables
        of this collection no version refers to (left by a killed ingestion)."""
        rag = self.rag
        versions = rag.records.versions(self.name)
        keep = {v.table for v in versions[-self.keep_versions:]} | {version.table}
        store = rag.open_store(version.store)
        prefix = _slug(self.name) + "_"
        for v in versions:
            if v.table not in keep and v.store == version.store and store.exists(v.table):
                store.drop(v.table)
        for table in store.tables():
            if table.startswith(prefix) and table not in keep:
                store.drop(table)


class _IndexBuild:
    """The new index of one ingestion: its table, written a batch of chunks at
    a time, its ``chunks.parquet`` and BM25 index, and its record.

    A changed or removed document's previous chunks are found by id in the
    previous ``chunks.parquet`` (its ``id`` and ``doc_id`` columns only). The
    table is created (or copied from the previous version's) when the first
    batch is written, so an ingestion that changes nothing writes nothing.
    """

    def __init__(self, ingestion: _Ingestion, run, previous: CollectionVersion | None,
                 embedder: Embedder, store_uri: str, store: VectorStore, folder: Path):
        self.ing, self.run, self.previous = ingestion, run, previous
        self.embedder, self.store_uri, self.store, self.folder = embedder, store_uri, store, folder
        chunking = ingestion.chunker.params()
        self.rebuild = (previous is None or embedder.name != previous.embedder.get("name")
                        or previous.chunking != chunking or previous.store != store_uri
                        or not store.exists(previous.table))
        self.same_chunking = previous is not None and previous.chunking == chunking
        self.prev_docs = {d.doc_id: d for d in previous.documents} if previous else {}
        self.dimension = None if self.rebuild else previous.dimension
        self.table = f"{_slug(ingestion.name)}_{uuid.uuid4().hex[:10]}"
        self.created = False
        self.records: list[DocumentRecord] = []
        self.added: list[str] = []
        self.changed: list[str] = []
        self.removed: list[str] = []
        self.kept: set[str] = set()  # documents whose previous chunks carry over
        self.stale: list[str] = []  # documents whose previous rows go before the next write
        self.pending: list[Chunk] = []
        self.queued = self.written = self.computed = 0
        self.embed_seconds = 0.0
        self.spill = folder / "new-chunks.parquet"
        self.writer: Any = None
        self._previous_ids: Any = None

    # ---------------------------------------------------------- documents
    def add_documents(self, docs: Iterable[Document]) -> None:
        """Diff each document against the previous version; chunk and queue
        the new and changed ones; keep each one's text as an artifact."""
        ing = self.ing
        for doc in docs:
            old = self.prev_docs.get(doc.doc_id)
            same = old is not None and old.content_hash == doc.content_hash
            if same and self.same_chunking:
                self.kept.add(doc.doc_id)
                count = old.chunks
            else:
                chunks = ing.chunker.split(doc)
                count = len(chunks)
                (self.changed if old is not None else self.added).append(doc.doc_id)
                if old is not None and not self.rebuild:
                    self.stale.append(doc.doc_id)
                self.queue(chunks)
            blob = old.blob if same else None
            if ing.keep_sources and blob is None:
                # Each new text is an artifact of the run that brought it: the
                # workspace's gc keeps it as long as that run exists.
                blob = self.run.log_bytes(f"documents/{doc_key(doc.doc_id)}.txt",
                                          doc.text.encode("utf-8"))
            self.records.append(DocumentRecord(
                doc_id=doc.doc_id, source=doc.source, title=doc.title, kind=doc.kind,
                content_hash=doc.content_hash, size_bytes=doc.size_bytes, chunks=count,
                blob=blob, notes=doc.notes))
        if not self.records and not (self.previous and not ing.remove_missing):
            refused = ing.refused
            raise EmptyCorpusError(
                f"nothing to index in {ing.name!r}: " + (
                    f"all {len(refused)} sources were refused ("
                    + "; ".join(f"{r.source}: {r.reason}" for r in refused[:3])
                    + (", ..." if len(refused) > 3 else "") + ")"
                    if refused else "no documents were given"),
                hint="pass .txt, .md, .html or .pdf files, folders or Documents with text")
        current = {r.doc_id for r in self.records}
        missing = [d for d in self.prev_docs if d not in current]
        if ing.remove_missing:
            self.removed = missing
            if not self.rebuild:
                self.stale.extend(missing)
        else:
            self.records.extend(self.prev_docs[d] for d in missing)
            self.kept.update(missing)

    def unchanged(self) -> bool:
        return self.previous is not None and not (self.added or self.changed or self.removed
                                                  or self.rebuild)

    # ------------------------------------------------------------- writes
    def queue(self, chunks: Sequence[Chunk]) -> None:
        self.pending.extend(chunks)
        self.queued += len(chunks)
        if len(self.pending) >= self.ing.batch_size:
            self.flush()
            release_memory()  # the batch's chunks, vectors and Arrow tables

    def flush(self) -> None:
        """Embed the pending chunks, delete the stale rows, append the
        chunks to the table and to the spill file."""
        chunks, self.pending = self.pending, []
        if chunks:
            t0 = time.perf_counter()
            vectors, computed = self.ing.embed(self.embedder, chunks, self.dimension,
                                               self.written, self.queued)
            self.embed_seconds += time.perf_counter() - t0
            self.computed += computed
            self.dimension = self.dimension or int(vectors.shape[1])
        if not self.created and self.dimension is not None:
            if self.rebuild:
                self.store.create(self.table, self.dimension)
            else:
                self.store.copy(self.previous.table, self.table)
            self.created = True
        if self.stale:
            ids = self._previous_chunk_ids(self.stale)
            if ids:
                self.store.delete(self.table, ids=ids)
            self.stale = []
        if chunks:
            self.store.add(self.table, chunks, vectors)
            if self.writer is None:
                self.writer = chunk_file_writer(self.spill)
            self.writer.write_table(chunks_to_table(chunks))
            self.written += len(chunks)
            self.ing.progress("write", self.written, self.queued)

    def _previous_file(self) -> Path:
        path = self.folder / "previous-chunks.parquet"
        if not path.exists():
            self.ing.ws.artifacts.get_file(self.previous.chunks_digest, path)
        return path

    def _previous_chunk_ids(self, doc_ids: Sequence[str]) -> list[str]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if self._previous_ids is None:
            self._previous_ids = pq.read_table(str(self._previous_file()),
                                               columns=["id", "doc_id"])
        rows = self._previous_ids
        mask = pc.is_in(rows["doc_id"], value_set=pa.array(list(doc_ids), pa.string()))
        return rows["id"].filter(mask).to_pylist()

    def _previous_batches(self):
        """The previous version's chunk rows of the kept documents, as Arrow
        record batches in their order."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if not self.kept:
            return
        kept = pa.array(sorted(self.kept), pa.string())
        for batch in pq.ParquetFile(str(self._previous_file())).iter_batches(
                batch_size=self.ing.batch_size):
            yield batch.filter(pc.is_in(batch["doc_id"], value_set=kept))

    def _chunks_file(self) -> Path:
        """``chunks.parquet`` of the new version: the kept documents' previous
        chunks, then the new ones (a rebuild re-embedded the kept ones, so they
        are in the spill already)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.rebuild:
            if not self.spill.exists():
                with chunk_file_writer(self.spill):
                    pass
            return self.spill
        import pyarrow.parquet as pq

        path = self.folder / "chunks.parquet"
        with chunk_file_writer(path) as out:
            for batch in self._previous_batches():
                out.write_batch(batch)
            if self.spill.exists():
                for batch in pq.ParquetFile(str(self.spill)).iter_batches(
                        batch_size=self.ing.batch_size):
                    out.write_batch(batch)
        return path

    # ------------------------------------------------------------ publish
    def publish(self, number: int, started: float) -> CollectionVersion:
        """Finish the table, record ``chunks.parquet``, build BM25 and
        record the version; the version becomes visible when the run ends."""
        ing, run, previous = self.ing, self.run, self.previous
        if self.rebuild:  # the kept documents' chunks go into the new table too
            for batch in self._previous_batches():
                self.queue(chunks_from_arrow(batch))
        self.flush()  # the last batch; with only removals, copies the table and deletes
        release_memory()
        expected = sum(r.chunks for r in self.records)
        if not expected:
            raise EmptyCorpusError(f"the documents of {ing.name!r} gave no chunks")
        rows = self.store.count(self.table)
        if rows != expected:
            raise VectorStoreError(
                f"the new index of {ing.name!r} holds {rows} rows, not {expected}; nothing "
                "was published")
        path = self._chunks_file()
        self._previous_ids = None
        with open(path, "rb") as fh:
            chunks_digest = hashlib.file_digest(fh, "sha256").hexdigest()
        run.log_artifact(path, "chunks.parquet")
        table_file = ing.rag._chunk_table_file(chunks_digest)
        table_file.parent.mkdir(parents=True, exist_ok=True)
        write_chunk_table(path, table_file)  # what a retriever maps
        # BM25 before the vector index: their peaks of memory come one after the other
        release_memory()
        ing.progress("index", 0, 2)
        BM25Index().build(indexed_texts(path), ing.rag.home / "bm25" / chunks_digest)
        release_memory()
        ing.progress("index", 1, 2)
        self.store.optimize(self.table)
        release_memory()
        ing.progress("index", 2, 2)
        version = CollectionVersion(
            name=ing.name, version=number, created_at=time.time(), run_id=run.id,
            store=self.store_uri, table=self.table, embedder=self.embedder.spec(),
            dimension=self.dimension, chunking=ing.chunker.params(),
            documents=tuple(self.records), num_chunks=expected, chunks_digest=chunks_digest,
            parent=previous.ref if previous else None,
            changes={"added": self.added, "changed": self.changed, "removed": self.removed,
                     "unchanged": len(self.records) - len(self.added) - len(self.changed)},
            refused=tuple(ing.refused))
        digest = run.log_dict("manifest.json", version.to_manifest())
        seconds = time.perf_counter() - started
        run.log_metrics({
            "documents": len(self.records), "chunks": expected,
            "added": len(self.added), "changed": len(self.changed),
            "removed": len(self.removed), "refused": len(ing.refused),
            "embedded": self.computed, "embedding_cache_hits": self.written - self.computed,
            "embed_seconds": self.embed_seconds, "seconds": seconds,
            "docs_per_second": (len(self.added) + len(self.changed)) / max(seconds, 1e-9),
            "chunks_per_second": self.written / max(seconds, 1e-9)})
        # Publishing: the version exists from the moment its run ends FINISHED.
        run.set_tags({TAG_VERSION: str(number), TAG_MANIFEST: digest, "rag.table": self.table})
        return replace(version, manifest_digest=digest, new=True)

    def discard(self) -> None:
        """Drop the half-built table (the run ends FAILED: no version)."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        if self.created:
            with contextlib.suppress(Exception):
                self.store.drop(self.table)
