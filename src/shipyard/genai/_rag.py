"""``ws.rag``: ingest documents into versioned collections, query, answer and
evaluate them."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import (ConfigError, DocumentError, EmptyCorpusError, GenAIError,
                             VectorStoreError)
from shipyard.genai._bm25 import BM25Index
from shipyard.genai._chunking import TokenChunker, doc_key
from shipyard.genai._collections import (EXPERIMENT, TAG_COLLECTION, TAG_DROPPED, TAG_KIND,
                                         TAG_MANIFEST, TAG_VERSION, CollectionRecords,
                                         CollectionVersion, DocumentRecord, Refusal,
                                         check_collection_name, chunks_from_parquet,
                                         chunks_to_parquet, parse_collection_ref)
from shipyard.genai._documents import MAX_DOCUMENT_BYTES, iter_document_files, read_document
from shipyard.genai._embeddings import (Embedder, EmbeddingCache, LocalEmbedder, as_embedder,
                                        embed_texts, embedder_from_spec)
from shipyard.genai._evaluation import (EvaluationReport, Question, aggregate_answer_scores,
                                        evaluate_retrieval, score_answer)
from shipyard.genai._generation import ExtractiveGenerator, Generator, check_generator
from shipyard.genai._records import Answer, Chunk, Document, Hit
from shipyard.genai._retrieval import (DEFAULT_RRF_K, DEFAULT_WEIGHTS, MODES, Reranker,
                                       Retriever)
from shipyard.genai._vectorstore import VectorStore, open_vector_store

if TYPE_CHECKING:
    from shipyard import Workspace

log = logging.getLogger(__name__)

DEFAULT_STORE = "default"
_RETRIEVERS_KEPT = 4


def strip_password(uri: str) -> str:
    """A store URI without its password (libpq then reads ``PGPASSWORD`` or
    ``~/.pgpass``).

    >>> strip_password("postgresql+pgvector://me:secret@db/rag")
    'postgresql+pgvector://me@db/rag'
    """
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1@", uri)


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

    def __repr__(self) -> str:
        return f"Rag({self._ws!r}, embedder={self.embedder!r}, store={self.store!r})"

    def close(self) -> None:
        """Close the vector stores this object opened (connections, handles)."""
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
               reembed: bool = False, keep_versions: int = 3) -> CollectionVersion:
        """Index documents as the next version of collection ``name``.

        Unchanged documents (same source, same content hash) keep their chunks
        and vectors; changed ones are re-chunked and re-embedded; documents of
        the previous version missing from ``sources`` are deleted from every
        index. Vectors are cached by content hash, so nothing is embedded twice.
        The new index is built as a new table and becomes visible only once
        complete.

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
        chunker = TokenChunker(chunk_tokens=chunk_tokens, overlap=overlap)
        chunker._check()
        items = _as_items(sources)
        with self._collection_lock(name):
            try:
                return _Ingestion(self, name, chunker, embedder, store, remove_missing,
                                  on_error, max_document_bytes, keep_sources, reembed,
                                  keep_versions).run(items)
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
            with self._ws.runs.start(EXPERIMENT, name=f"drop {name}",
                                     tags={TAG_COLLECTION: name, TAG_KIND: "drop",
                                           TAG_DROPPED: str(highest)}) as run:
                run.log_metric("tables_dropped", dropped)
            self._forget(name)
            return dropped

    def _resolve(self, ref: str | CollectionVersion) -> CollectionVersion:
        """``get``, remembered: versions never change, ``latest`` is looked up
        again after ``refresh_seconds``."""
        if isinstance(ref, CollectionVersion):
            return ref
        key = parse_collection_ref(ref)
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(key)
        if hit is not None and (key[1] is not None or now - hit[0] < self.refresh_seconds):
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
        chunks = chunks_from_parquet(self._ws.artifacts.get_bytes(version.chunks_digest))
        retriever = Retriever(store, version.table, self._embedder_for(version.embedder),
                              chunks, self._bm25(version, chunks), rrf_k=DEFAULT_RRF_K,
                              weights=DEFAULT_WEIGHTS)
        with self._lock:
            self._retrievers[version.ref] = retriever
            while len(self._retrievers) > _RETRIEVERS_KEPT:
                self._retrievers.popitem(last=False)
        return retriever

    def _bm25(self, version: CollectionVersion, chunks: Sequence[Chunk]) -> BM25Index:
        folder = self.home / "bm25" / version.chunks_digest
        if folder.is_dir():
            try:
                return BM25Index.load(folder)
            except GenAIError:
                pass  # damaged cache: rebuild below
        index = BM25Index().fit([c.indexed_text for c in chunks])
        index.save(folder)
        return index

    def query(self, ref: str | CollectionVersion, question: str, *, k: int = 5,
              mode: str = "hybrid", where: Mapping[str, Any] | None = None,
              mmr: float | None = None, reranker: Reranker | None = None,
              fetch_k: int | None = None) -> list[Hit]:
        """The ``k`` chunks of collection ``ref`` that best match ``question``.

        Parameters
        ----------
        mode
            ``"hybrid"`` (dense + BM25 by reciprocal-rank fusion), ``"dense"``
            or ``"bm25"``.
        where
            Metadata filter, e.g. ``{"source": "guide.md", "page": {"$gte": 2}}``.
        mmr
            Diversify results by maximal marginal relevance with this lambda.
        reranker
            A :class:`Reranker` applied to the candidates.
        fetch_k
            Candidates per retriever before fusion, reranking and MMR.

        Raises
        ------
        CollectionNotFoundError
            No such collection or version.
        """
        return self.retriever(ref).search(question, k=k, mode=mode, where=where, mmr=mmr,
                                          reranker=reranker, fetch_k=fetch_k)

    def answer(self, ref: str | CollectionVersion, question: str, *, k: int = 5,
               mode: str = "hybrid", where: Mapping[str, Any] | None = None,
               generator: Generator | None = None, **search: Any) -> Answer:
        """Answer ``question`` from collection ``ref``, with citations.

        Parameters
        ----------
        generator
            Writes the answer; default :class:`ExtractiveGenerator` with the
            collection's embedder (offline, quotes only its sources).
        **search
            More arguments of :meth:`query` (``mmr``, ``reranker``, ``fetch_k``).
        """
        retriever = self.retriever(ref)
        hits = retriever.search(question, k=k, mode=mode, where=where, **search)
        generator = check_generator(generator) if generator is not None else \
            ExtractiveGenerator(embedder=retriever.embedder)
        return generator.generate(question, hits)

    # ------------------------------------------------------------ evaluate
    def evaluate(self, ref: str | CollectionVersion,
                 questions: Sequence[Question | Mapping[str, Any]], *, k: int = 10,
                 modes: Sequence[str] = MODES, answers: bool = False,
                 generator: Generator | None = None, answer_k: int = 5,
                 record: bool = True) -> EvaluationReport:
        """Score retrieval (hit rate@k, recall@k, MRR@k, nDCG@10 per mode) and,
        with ``answers=True``, the groundedness and citation precision of the
        answers, on labelled questions. Recorded as a run in the experiment
        ``rag`` (tag ``rag.kind=evaluate``) unless ``record`` is false.
        """
        version = self._resolve(ref)
        retriever = self.retriever(version)
        report = evaluate_retrieval(retriever, questions, k=k, modes=modes)
        if answers:
            generator = check_generator(generator) if generator is not None else \
                ExtractiveGenerator(embedder=retriever.embedder)
            scores = []
            for item in report.per_question:
                hits = retriever.search(item["text"], k=answer_k, mode="hybrid")
                result = generator.generate(item["text"], hits)
                scored = score_answer(result)
                scores.append(scored)
                item["answer"] = {"text": result.text, "refusal": result.refusal,
                                  "scores": scored.to_dict()}
            report.answers, why = aggregate_answer_scores(scores)
            report.not_scorable.update(why)
        if record:
            with self._ws.runs.start(
                    EXPERIMENT, name=f"evaluate {version.ref}",
                    params={"k": k, "modes": ",".join(modes), "questions": len(questions),
                            "answers": answers},
                    tags={TAG_COLLECTION: version.name, TAG_KIND: "evaluate",
                          TAG_VERSION: str(version.version)}) as run:
                run.log_metrics(report.metrics())
                run.log_dict("report.json", report.to_dict())
        return report


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
    collection's lock)."""

    def __init__(self, rag: Rag, name: str, chunker: TokenChunker, embedder: Embedder | None,
                 store: str | None, remove_missing: bool, on_error: str, max_bytes: int,
                 keep_sources: bool, reembed: bool, keep_versions: int):
        self.rag, self.ws, self.name = rag, rag._ws, name
        self.chunker, self.embedder_arg, self.store_arg = chunker, embedder, store
        self.remove_missing, self.on_error, self.max_bytes = remove_missing, on_error, max_bytes
        self.keep_sources, self.reembed, self.keep_versions = keep_sources, reembed, keep_versions
        self.refused: list[Refusal] = []
        self.texts: dict[str, bytes] = {}  # doc key → extracted text, logged with the run

    # ---------------------------------------------------------- documents
    def _refuse(self, source: str, exc: Exception) -> None:
        if self.on_error == "raise":
            raise exc
        self.refused.append(Refusal(source=source, reason=str(getattr(exc, "message", exc))))

    def read(self, items: Sequence[str | os.PathLike | Document]) -> list[Document]:
        docs: dict[str, Document] = {}
        by_hash: dict[str, str] = {}
        for item in items:
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
                    if source in docs:
                        continue
                    try:
                        doc = read_document(entry, max_bytes=self.max_bytes)
                    except DocumentError as exc:
                        self._refuse(source, exc)
                        continue
                if doc.doc_id in docs:
                    continue  # the same source twice
                twin = by_hash.get(doc.content_hash)
                if twin is not None:
                    self._refuse(doc.source, DocumentError(
                        f"{doc.source!r} has the same content as {twin!r}; indexed once"))
                    continue
                by_hash[doc.content_hash] = doc.source
                docs[doc.doc_id] = doc
        return list(docs.values())

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
        with self.ws.runs.start(EXPERIMENT, name=f"ingest {self.name}", params=params,
                                tags={TAG_COLLECTION: self.name, TAG_KIND: "ingest"}) as run:
            docs = self.read(items)
            if not docs and not (previous and not self.remove_missing):
                raise EmptyCorpusError(
                    f"nothing to index in {self.name!r}: " + (
                        f"all {len(self.refused)} sources were refused ("
                        + "; ".join(f"{r.source}: {r.reason}" for r in self.refused[:3])
                        + (", ..." if len(self.refused) > 3 else "") + ")"
                        if self.refused else "no documents were given"),
                    hint="pass .txt, .md, .html or .pdf files, folders or Documents with text")
            plan = self._plan(docs, previous, embedder, store_uri, store)
            if previous is not None and not (plan["added"] or plan["changed"]
                                             or plan["removed"] or plan["rebuild"]):
                run.set_tags({"rag.result": "unchanged", "rag.latest": previous.ref})
                run.log_metrics({"documents": len(plan["records"]), "refused":
                                 len(self.refused), "seconds": time.perf_counter() - started})
                return replace(previous, new=False)
            version = self._build(run, plan, previous, embedder, store_uri, store, highest + 1,
                                  started)
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

    def _plan(self, docs: list[Document], previous: CollectionVersion | None,
              embedder: Embedder, store_uri: str, store: VectorStore) -> dict[str, Any]:
        prev_docs = {d.doc_id: d for d in previous.documents} if previous else {}
        rebuild = (previous is None
                   or embedder.name != previous.embedder.get("name")
                   or previous.chunking != self.chunker.params()
                   or previous.store != store_uri
                   or not store.exists(previous.table))
        prev_chunks: dict[str, list[Chunk]] = {}
        if previous is not None:
            for chunk in chunks_from_parquet(self.ws.artifacts.get_bytes(previous.chunks_digest)):
                prev_chunks.setdefault(chunk.doc_id, []).append(chunk)
        records: list[DocumentRecord] = []
        chunks: list[Chunk] = []
        new_chunks: list[Chunk] = []
        added, changed = [], []
        current = {d.doc_id for d in docs}
        for doc in docs:
            old = prev_docs.get(doc.doc_id)
            if old is not None and old.content_hash == doc.content_hash \
                    and previous.chunking == self.chunker.params():
                mine = prev_chunks.get(doc.doc_id, [])
                if rebuild:
                    new_chunks.extend(mine)
            else:
                mine = self.chunker.split(doc)
                new_chunks.extend(mine)
                (changed if old is not None else added).append(doc.doc_id)
            blob = old.blob if old is not None and old.content_hash == doc.content_hash \
                else None
            if self.keep_sources and blob is None:
                data = doc.text.encode("utf-8")
                blob = hashlib.sha256(data).hexdigest()
                self.texts[doc_key(doc.doc_id)] = data
            records.append(DocumentRecord(
                doc_id=doc.doc_id, source=doc.source, title=doc.title, kind=doc.kind,
                content_hash=doc.content_hash, size_bytes=doc.size_bytes, chunks=len(mine),
                blob=blob, notes=doc.notes))
            chunks.extend(mine)
        removed = [d for d in prev_docs if d not in current]
        if not self.remove_missing:
            for doc_id in removed:
                records.append(prev_docs[doc_id])
                kept = prev_chunks.get(doc_id, [])
                chunks.extend(kept)
                if rebuild:
                    new_chunks.extend(kept)
            removed = []
        if not chunks:
            raise EmptyCorpusError(f"the documents of {self.name!r} gave no chunks")
        stale = [c.id for d in (*changed, *removed) for c in prev_chunks.get(d, [])]
        return {"records": records, "chunks": chunks, "new_chunks": new_chunks,
                "added": added, "changed": changed, "removed": removed, "stale": stale,
                "rebuild": rebuild}

    def _build(self, run, plan: dict[str, Any], previous: CollectionVersion | None,
               embedder: Embedder, store_uri: str, store: VectorStore, number: int,
               started: float) -> CollectionVersion:
        rag = self.rag
        new_chunks: list[Chunk] = plan["new_chunks"]
        incremental = previous is not None and not plan["rebuild"]
        expected = previous.dimension if incremental else None
        t0 = time.perf_counter()
        vectors, computed = embed_texts(embedder, [c.indexed_text for c in new_chunks],
                                        rag.embedding_cache, expected_dim=expected)
        embed_seconds = time.perf_counter() - t0
        dimension = expected or int(vectors.shape[1])
        table = f"{_slug(self.name)}_{uuid.uuid4().hex[:10]}"
        try:
            if incremental:
                store.copy(previous.table, table)
                if plan["stale"]:
                    store.delete(table, ids=plan["stale"])
            else:
                store.create(table, dimension)
            for i in range(0, len(new_chunks), 2048):
                store.upsert(table, new_chunks[i:i + 2048], vectors[i:i + 2048])
            if store.count(table) != len(plan["chunks"]):
                raise VectorStoreError(
                    f"the new index of {self.name!r} holds {store.count(table)} rows, not "
                    f"{len(plan['chunks'])}; nothing was published")
            store.optimize(table)
            # Each new text is an artifact of the run that brought it: the
            # workspace's gc keeps it as long as that run exists.
            for key, data in self.texts.items():
                run.log_bytes(f"documents/{key}.txt", data)
            chunks_bytes = chunks_to_parquet(plan["chunks"])
            chunks_digest = run.log_bytes("chunks.parquet", chunks_bytes)
            BM25Index().fit([c.indexed_text for c in plan["chunks"]]).save(
                rag.home / "bm25" / chunks_digest)
            version = CollectionVersion(
                name=self.name, version=number, created_at=time.time(), run_id=run.id,
                store=store_uri, table=table, embedder=embedder.spec(), dimension=dimension,
                chunking=self.chunker.params(), documents=tuple(plan["records"]),
                num_chunks=len(plan["chunks"]), chunks_digest=chunks_digest,
                parent=previous.ref if previous else None,
                changes={"added": plan["added"], "changed": plan["changed"],
                         "removed": plan["removed"],
                         "unchanged": len(plan["records"]) - len(plan["added"])
                         - len(plan["changed"])},
                refused=tuple(self.refused))
            digest = run.log_dict("manifest.json", version.to_manifest())
            seconds = time.perf_counter() - started
            run.log_metrics({
                "documents": len(plan["records"]), "chunks": len(plan["chunks"]),
                "added": len(plan["added"]), "changed": len(plan["changed"]),
                "removed": len(plan["removed"]), "refused": len(self.refused),
                "embedded": computed, "embedding_cache_hits": len(new_chunks) - computed,
                "embed_seconds": embed_seconds, "seconds": seconds,
                "docs_per_second": (len(plan["added"]) + len(plan["changed"]))
                / max(seconds, 1e-9),
                "chunks_per_second": len(new_chunks) / max(seconds, 1e-9)})
            # Publishing: the version exists from the moment its run ends FINISHED.
            run.set_tags({TAG_VERSION: str(number), TAG_MANIFEST: digest, "rag.table": table})
        except BaseException:
            with contextlib.suppress(Exception):
                store.drop(table)
            raise
        return replace(version, manifest_digest=digest, new=True)

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
