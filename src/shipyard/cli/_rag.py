"""``shipyard rag ...``: ingest documents into versioned collections, query
them, answer with citations, evaluate retrieval, drop a collection.

Thin: parse, call ``ws.rag``, render. Heavy libraries (onnxruntime, lancedb,
bm25s) load inside the commands, when the library needs them.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from shipyard.cli._common import (
    console,
    err_console,
    fmt_when,
    json_option,
    open_workspace,
    print_json,
    record,
    stdout_reserved,
)
from shipyard.cli._tables import Col, choose, columns_option, fit, print_table

if TYPE_CHECKING:
    from shipyard.genai import CollectionVersion, Hit

#: Retrieval modes, as ``ws.rag.query`` names them.
MODES = ("hybrid", "dense", "bm25")
#: ``--embedder`` names: the bundled MiniLM in each precision.
LOCAL_EMBEDDERS = {"minilm": "fp32", "minilm-int8": "int8"}
#: Longest question accepted (the embedding model reads its first 256 tokens).
MAX_QUESTION_CHARS = 4000
#: Largest question file ``rag eval --questions`` reads.
MAX_QUESTIONS_BYTES = 20 * 1024 * 1024
MAX_QUESTIONS = 50_000
SNIPPET_CHARS = 100

app = typer.Typer(
    no_args_is_help=True,
    help="Retrieval-augmented generation: ingest .txt, .md, .html and .pdf files into "
         "versioned collections (NAME@N, NAME@latest or NAME), query them (hybrid, dense, "
         "BM25), answer with citations, evaluate retrieval. Everything runs offline (MiniLM "
         "embeddings, LanceDB under the workspace).",
)

_NAME_HELP = "Collection name (a letter, then letters, digits, '_', '.', '-'), e.g. docs."
_REF_HELP = "Collection: NAME, NAME@latest or NAME@N (e.g. docs@2)."


def _check_name(name: str) -> str:
    """A collection NAME (no ``@version``), checked before any work."""
    from shipyard.genai import parse_collection_ref

    if "@" in name:
        raise typer.BadParameter(f"{name!r} names a version; give the collection name "
                                 f"alone ({name.partition('@')[0]!r})", param_hint="'NAME'")
    parse_collection_ref(name)  # raises GenAIError naming the rule
    return name


@contextlib.contextmanager
def _workspace() -> Iterator[Any]:
    """The workspace, closed at the end of the command: queued traces are
    written, vector stores closed."""
    ws = open_workspace()
    try:
        yield ws
    finally:
        ws.close()


@contextlib.contextmanager
def cli_hints() -> Iterator[None]:
    """The library's "no such collection" error, with the commands to fix it."""
    from shipyard.errors import CollectionNotFoundError

    try:
        yield
    except CollectionNotFoundError as exc:
        message = str(exc).split("\n  hint:")[0]
        raise CollectionNotFoundError(
            message, hint="`shipyard rag list` shows the collections; `shipyard rag ingest "
                          "NAME PATH...` makes one") from exc


# ------------------------------------------------------------------ ingest
@app.command("ingest")
def ingest(
    name: Annotated[str, typer.Argument(help=_NAME_HELP)],
    paths: Annotated[list[Path], typer.Argument(
        help="Files (.txt, .md, .html, .pdf) and folders (walked). Together they are the "
             "whole collection: documents of the previous version that are not among them "
             "are removed (unless --keep-missing).")],
    store: Annotated[str | None, typer.Option(
        "--store", metavar="URI",
        help="Vector store for a new collection: lancedb:///path or "
             "postgresql+pgvector://user@host/db (default: LanceDB in the workspace; an "
             "existing collection keeps its store).")] = None,
    chunk_tokens: Annotated[int, typer.Option(
        "--chunk-tokens", min=16, max=256, help="Chunk size in the embedding model's tokens.")
    ] = 200,
    overlap: Annotated[int, typer.Option(
        "--overlap", min=0, max=128, help="Tokens shared by consecutive chunks.")] = 40,
    keep_missing: Annotated[bool, typer.Option(
        "--keep-missing", help="Keep documents of the previous version that PATHS lack "
                               "(add or update only).")] = False,
    embedder: Annotated[str | None, typer.Option(
        "--embedder", metavar="NAME",
        help="Embedding model of a new collection: minilm-int8 (the default: the offline "
             "MiniLM quantised to int8, about 4x faster on a CPU, retrieval as good) or "
             "minilm (float32, the vectors of sentence-transformers). An existing "
             "collection keeps its own.")] = None,
    as_json: Annotated[bool, json_option(
        "Print the version (ref, new, changes, chunks, refused with reasons, seconds) as "
        "JSON; progress goes to stderr.")] = False,
) -> None:
    """Ingest PATHS as the next version of collection NAME.

    Unchanged documents (same content hash) are skipped, changed ones are
    re-chunked and re-embedded, missing ones removed from every index. Files
    that cannot be read (binary, encrypted PDF, over 50 MB, duplicates) are
    refused and listed; the rest is indexed. The new version becomes visible
    only once its index is complete.

    Examples:

      shipyard rag ingest handbook docs/ faq.md report.pdf

      shipyard rag ingest handbook docs/ --json | jq .changes

      shipyard rag ingest exact docs/ --embedder minilm
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from shipyard.genai import iter_document_files

    _check_name(name)
    if embedder is not None and embedder not in LOCAL_EMBEDDERS:
        raise typer.BadParameter(f"unknown embedder {embedder!r}; use one of "
                                 f"{', '.join(LOCAL_EMBEDDERS)}", param_hint="'--embedder'")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # before anything: a typo must not remove documents
        raise typer.BadParameter(
            f"{', '.join(map(repr, missing[:5]))} do{'es' if len(missing) == 1 else ''} not "
            "exist; check the path (nothing was ingested)", param_hint="'PATHS...'")
    files: list[Path] = []
    for path in paths:  # folders walked here, so the bar counts files
        files.extend(iter_document_files([path]) if path.is_dir() else [path])
    with _workspace() as ws:
        started = time.perf_counter()
        labels = {"read": "documents read", "embed": "chunks embedded", "write": "chunks written",
                  "index": "indexes built"}  # BM25, then the vector index
        with stdout_reserved(as_json), Progress(
                "[bold]{task.description:<16}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=console, transient=False,
                disable=not console.is_terminal) as bars:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bars.add_task(labels.get(stage, stage), total=total)
                bars.update(tasks[stage], completed=done, total=total)

            version = ws.rag.ingest(name, files, store=store, chunk_tokens=chunk_tokens,
                                    overlap=overlap, remove_missing=not keep_missing,
                                    embedder=None if embedder is None else
                                    {"kind": "local", "precision": LOCAL_EMBEDDERS[embedder]},
                                    progress=progress)
        seconds = time.perf_counter() - started
        if as_json:
            print_json(_version_json(version, seconds=round(seconds, 3)))
            return
        _print_ingested(version, seconds)


def _print_ingested(version: CollectionVersion, seconds: float) -> None:
    changes = version.changes
    if not version.new:
        console.print(f"[bold]{version.ref}[/] already holds these documents "
                      f"({len(version.documents):,} documents, {version.num_chunks:,} chunks); "
                      f"no new version ({seconds:.1f}s)")
    else:
        console.print(
            f"ingested [bold]{version.ref}[/]: {len(changes.get('added', ())):,} added, "
            f"{len(changes.get('changed', ())):,} changed, {changes.get('unchanged', 0):,} "
            f"unchanged, {len(changes.get('removed', ())):,} removed; "
            f"{len(version.documents):,} documents, {version.num_chunks:,} chunks in "
            f"{seconds:.1f}s")
    if version.refused:
        console.print(f"[yellow]refused {len(version.refused)}[/] (not indexed):")
        for refusal in version.refused[:20]:
            console.print(f"  {escape(refusal.source)}: {escape(refusal.reason)}",
                          highlight=False)
        if len(version.refused) > 20:
            console.print(f"  ... and {len(version.refused) - 20} more (--json lists all)")
    console.print(f"next: [cyan]shipyard rag query {version.name} \"your question\"[/]")


def _version_json(v: CollectionVersion, *, full: bool = True, **extra: Any) -> dict:
    data = record(v, ref=v.ref, num_documents=len(v.documents), **extra)
    if not full:
        data.pop("documents")
    return data


# -------------------------------------------------------------- list, versions
COLLECTION_COLUMNS = {col.name: col for col in (
    Col("name", lambda v: escape(v.name)),
    Col("latest", lambda v: f"@{v.version}", whole=True),
    Col("documents", lambda v: f"{len(v.documents):,}", justify="right", whole=True),
    Col("chunks", lambda v: f"{v.num_chunks:,}", justify="right", whole=True),
    Col("refused", lambda v: str(len(v.refused)), justify="right", whole=True),
    Col("updated", lambda v: fmt_when(v.created_at), whole=True),
    Col("embedder", lambda v: escape(str(v.embedder.get("name", "-")))),
    Col("store", lambda v: escape(v.store)),
)}
COLLECTION_DEFAULT = ("name", "latest", "documents", "chunks", "updated", "embedder")


@app.command("list")
def list_(
    columns: Annotated[str | None, columns_option(COLLECTION_COLUMNS, COLLECTION_DEFAULT)
                       ] = None,
    as_json: Annotated[bool, json_option(
        "Print the collections' latest versions (without their document lists) as a JSON "
        "list.")] = False,
) -> None:
    """List collections with their latest version."""
    with _workspace() as ws:
        found = ws.rag.list()
    if as_json:
        print_json([_version_json(v, full=False) for v in found])
        return
    cols, explicit = choose(columns, COLLECTION_COLUMNS, COLLECTION_DEFAULT)
    if not found:
        console.print("no collections yet; make one with `shipyard rag ingest NAME PATH...`")
        return
    print_table(console, found, cols, optional=("embedder", "updated"), explicit=explicit)


def _changes_cell(v: CollectionVersion) -> str:
    c = v.changes
    return (f"+{len(c.get('added', ()))} ~{len(c.get('changed', ()))} "
            f"-{len(c.get('removed', ()))} ={c.get('unchanged', 0)}")


VERSION_COLUMNS = {col.name: col for col in (
    Col("version", lambda v: v.ref, whole=True),
    Col("documents", lambda v: f"{len(v.documents):,}", justify="right", whole=True),
    Col("chunks", lambda v: f"{v.num_chunks:,}", justify="right", whole=True),
    Col("changes", _changes_cell, whole=True),
    Col("refused", lambda v: str(len(v.refused)), justify="right", whole=True),
    Col("created", lambda v: fmt_when(v.created_at), whole=True),
    Col("parent", lambda v: v.parent or "-", whole=True),
    Col("run", lambda v: v.run_id[:12], whole=True),
)}
VERSION_DEFAULT = ("version", "documents", "chunks", "changes", "refused", "created")


@app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    columns: Annotated[str | None, columns_option(VERSION_COLUMNS, VERSION_DEFAULT)] = None,
    as_json: Annotated[bool, json_option("Print the versions as a JSON list.")] = False,
) -> None:
    """List every version of collection NAME, oldest first, with what changed.

    Example: shipyard rag versions handbook
    """
    _check_name(name)
    with _workspace() as ws:
        with cli_hints():
            found = ws.rag.versions(name)
            if not found:
                ws.rag.get(name)  # raises: the error names the collections there are
        if as_json:
            print_json([_version_json(v, full=False) for v in found])
            return
        cols, explicit = choose(columns, VERSION_COLUMNS, VERSION_DEFAULT)
        print_table(console, found, cols, optional=("created", "refused", "changes"),
                    explicit=explicit)
        if any(c.name == "changes" for c in cols):
            console.print("changes: +added ~changed -removed =unchanged documents, against the "
                          "parent version", style="dim")


# ------------------------------------------------------------------- query
def _check_question(question: str) -> str:
    if not question.strip():
        raise typer.BadParameter("the question is empty; ask something, e.g. "
                                 "\"How do I rotate a key?\"", param_hint="'QUESTION'")
    if len(question) > MAX_QUESTION_CHARS:
        raise typer.BadParameter(
            f"the question is {len(question):,} characters; the limit is "
            f"{MAX_QUESTION_CHARS:,} (the embedding model reads only its first 256 tokens): "
            "ask a shorter question", param_hint="'QUESTION'")
    if "\x00" in question:
        raise typer.BadParameter("the question holds a NUL byte", param_hint="'QUESTION'")
    return question


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; use one of {', '.join(MODES)}",
                                 param_hint="'--mode'")
    return mode


_WHERE_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(==|=|!=|>=|<=|>|<)\s*(.*?)\s*$")
_WHERE_OPS = {"=": "$eq", "==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt",
              "<=": "$lte"}
_WHERE_HELP = ("Metadata filter: FIELD=VALUE, FIELD!=VALUE, page>=2 (fields doc_id, source, "
               "title, section, page), or a JSON object such as "
               "'{\"source\": {\"$in\": [\"a.md\", \"b.md\"]}}'. Repeat to require several.")


def parse_where_option(values: list[str] | None) -> dict[str, Any] | None:
    """``--where`` values as the library's filter mapping.

    >>> parse_where_option(["source=guide.md", "page>=2"])
    {'source': {'$eq': 'guide.md'}, 'page': {'$gte': 2}}
    """
    from shipyard.genai import METADATA_FIELDS, parse_where

    if not values:
        return None
    where: dict[str, Any] = {}
    for text in values:
        if text.lstrip().startswith("{"):
            try:
                part = json.loads(text)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{text!r} is not valid JSON ({exc.msg} at "
                                         f"character {exc.pos})", param_hint="'--where'") from exc
            if not isinstance(part, dict):
                raise typer.BadParameter("a JSON filter is an object", param_hint="'--where'")
            for field, spec in part.items():
                where.setdefault(field, {}).update(
                    spec if isinstance(spec, dict) else
                    {"$in": spec} if isinstance(spec, list) else {"$eq": spec})
            continue
        match = _WHERE_RE.match(text)
        if not match:
            raise typer.BadParameter(
                f"{text!r} is not FIELD=VALUE, FIELD>=NUMBER or a JSON object; e.g. "
                "--where source=guide.md --where 'page>=2'", param_hint="'--where'")
        field, op, raw = match.groups()
        if field not in METADATA_FIELDS:
            raise typer.BadParameter(f"cannot filter on {field!r}; use one of "
                                     f"{', '.join(METADATA_FIELDS)}", param_hint="'--where'")
        value: Any = raw.strip("'\"")
        if field == "page":
            if not re.fullmatch(r"-?\d{1,9}", value):
                raise typer.BadParameter(f"page takes a whole number, got {raw!r}",
                                         param_hint="'--where'")
            value = int(value)
        where.setdefault(field, {})[_WHERE_OPS[op]] = value
    try:
        parse_where(where)  # the library's checks: operators, types, sizes
    except Exception as exc:
        raise typer.BadParameter(str(getattr(exc, "message", exc)).splitlines()[0],
                                 param_hint="'--where'") from exc
    return where


def _place(chunk: Any) -> str:
    """Section and page of a chunk, or ``-``."""
    parts = []
    if chunk.section:
        parts.append(chunk.section)
    if chunk.page is not None:
        parts.append(f"p. {chunk.page}")
    return ", ".join(parts) or "-"


def _document(chunk: Any) -> str:
    """A document as a person names it: its title, else its file name."""
    return chunk.title or Path(chunk.source).name or chunk.source


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


HIT_COLUMNS = {col.name: col for col in (
    Col("rank", lambda h: str(h.rank), justify="right", whole=True),
    Col("score", lambda h: f"{h.score:.4f}", justify="right", whole=True),
    Col("document", lambda h: escape(_document(h.chunk))),
    Col("where", lambda h: escape(_place(h.chunk)), header="section/page"),
    Col("snippet", lambda h: escape(_snippet(h.chunk.text))),
    Col("source", lambda h: escape(h.chunk.source)),
    Col("chunk", lambda h: escape(h.chunk.id)),
    Col("offsets", lambda h: f"{h.chunk.start}-{h.chunk.end}", whole=True),
)}
HIT_DEFAULT = ("rank", "score", "document", "where", "snippet")


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {"rank": hit.rank, "score": hit.score, "retriever": hit.retriever,
            "scores": hit.scores, "chunk": hit.chunk.to_dict()}


@app.command("query")
def query(
    ref: Annotated[str, typer.Argument(help=_REF_HELP)],
    question: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many chunks.")] = 5,
    mode: Annotated[str, typer.Option(
        "--mode", help="hybrid (dense + BM25, fused by reciprocal rank), dense or bm25.")
    ] = "hybrid",
    where: Annotated[list[str] | None, typer.Option("--where", metavar="EXPR",
                                                       help=_WHERE_HELP)] = None,
    columns: Annotated[str | None, columns_option(HIT_COLUMNS, HIT_DEFAULT)] = None,
    as_json: Annotated[bool, json_option(
        "Print the hits (rank, score, per-retriever scores, chunk with text, source, "
        "section, page, offsets) as a JSON list.")] = False,
) -> None:
    """The K chunks of collection REF that best match QUESTION.

    Examples:

      shipyard rag query handbook "How do I rotate a key?"

      shipyard rag query handbook "key rotation" --mode bm25 --where 'page>=2' -k 10
    """
    _check_question(question)
    _check_mode(mode)
    filters = parse_where_option(where)
    cols, explicit = choose(columns, HIT_COLUMNS, HIT_DEFAULT)
    with _workspace() as ws:
        with stdout_reserved(as_json), cli_hints():
            hits = ws.rag.query(ref, question, k=k, mode=mode, where=filters)
        if as_json:
            print_json([_hit_json(h) for h in hits])
            return
        if not hits:
            console.print("no chunk matched" + (" the filter" if filters else "") + "; try "
                          "other words" + (" or a wider --where" if filters else ""))
            return
        if not explicit and all(_place(h.chunk) == "-" for h in hits):
            cols = [c for c in cols if c.name != "where"]  # plain texts: no section, no page
        print_table(console, hits, cols, optional=("where", "score"), explicit=explicit)


# ------------------------------------------------------------------ answer
@app.command("answer")
def answer(
    ref: Annotated[str, typer.Argument(help=_REF_HELP)],
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=50,
                                   help="Chunks retrieved as the answer's context.")] = 5,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")] = "hybrid",
    where: Annotated[list[str] | None, typer.Option("--where", metavar="EXPR",
                                                       help=_WHERE_HELP)] = None,
    as_json: Annotated[bool, json_option(
        "Print the answer (text, refusal, citations with document, section, page, offsets "
        "and quote, the retrieved hits) as JSON.")] = False,
    generator: Annotated[str, typer.Option(
        "--generator", metavar="SPEC",
        help="Who writes the answer: extractive (offline quotes, the default), local (the "
             "bundled SmolLM2-135M in-process; the first use converts it, ~20 s), "
             "local:PATH.gguf, or openai:MODEL (an OpenAI-compatible endpoint at "
             "$OPENAI_BASE_URL with $OPENAI_API_KEY).")] = "extractive",
) -> None:
    """Answer QUESTION from collection REF, citing the chunks it comes from.

    The default answerer is offline and extractive: it quotes the sentences
    of the retrieved chunks that best answer the question, each with its
    citation, and says so when nothing does. A chat model (--generator)
    writes from the same passages and cites them as [n].

    Example: shipyard rag answer handbook "How often are keys rotated?"
    """
    from shipyard.genai import generator_from_spec

    _check_question(question)
    _check_mode(mode)
    filters = parse_where_option(where)
    with _workspace() as ws:
        with stdout_reserved(as_json), cli_hints():
            writer = generator_from_spec(generator)
            result = ws.rag.answer(ref, question, k=k, mode=mode, where=filters,
                                   generator=writer)
        if as_json:
            print_json(result.to_dict())
            return
        console.print(escape(result.text), highlight=False)
        if result.refusal:
            console.print(f"[yellow]no answer:[/] {escape(result.refusal)}", highlight=False)
        if result.citations:
            console.print()
            console.print("[bold]sources[/]")
            for c in result.citations:
                place = _place(c)
                console.print(
                    f"  [{c.marker}] {escape(c.title or Path(c.source).name)}"
                    f"{'' if place == '-' else ', ' + escape(place)}; chars {c.start}-{c.end} of "
                    f"{escape(c.source)}", highlight=False)
        if result.usage:
            console.print(f"[dim]written by {escape(result.generator)}: "
                          f"{result.usage['prompt_tokens']} prompt + "
                          f"{result.usage['completion_tokens']} completion tokens[/]")


# -------------------------------------------------------------------- eval
def load_questions(path: Path) -> list[Any]:
    """Labelled questions from a JSONL file: one ``{"text": ..., "relevant":
    [doc ids]}`` per line (blank lines and ``#`` comments skipped)."""
    from shipyard.genai import Question

    if not path.is_file():
        raise typer.BadParameter(f"{str(path)!r} is not a file", param_hint="'--questions'")
    size = path.stat().st_size
    if size > MAX_QUESTIONS_BYTES:
        raise typer.BadParameter(
            f"{str(path)!r} is {size / 2**20:.1f} MiB; the limit is "
            f"{MAX_QUESTIONS_BYTES // 2**20} MiB: split it", param_hint="'--questions'")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{str(path)!r} is not UTF-8 text (byte {exc.start}); a "
                                 "question file is JSON lines", param_hint="'--questions'"
                                 ) from exc
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(
                f"{where} is not JSON ({exc.msg}); each line is "
                '{"text": "question", "relevant": ["document source", ...]}',
                param_hint="'--questions'") from exc
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) \
                or not item["text"].strip():
            raise typer.BadParameter(f"{where} needs a non-empty \"text\"",
                                     param_hint="'--questions'")
        relevant = item.get("relevant")
        if isinstance(relevant, str):
            relevant = [relevant]
        if not isinstance(relevant, list) or not relevant \
                or not all(isinstance(r, str) and r for r in relevant):
            raise typer.BadParameter(
                f"{where} needs \"relevant\": a list of document sources (as `shipyard rag "
                "query --json` shows them in chunk.source)", param_hint="'--questions'")
        if len(item["text"]) > MAX_QUESTION_CHARS:
            raise typer.BadParameter(f"{where}: the question is over {MAX_QUESTION_CHARS:,} "
                                     "characters", param_hint="'--questions'")
        out.append(Question(text=item["text"], relevant=tuple(relevant),
                            id=str(item.get("id") or f"line-{number}")))
        if len(out) > MAX_QUESTIONS:
            raise typer.BadParameter(f"{path.name} holds over {MAX_QUESTIONS:,} questions; "
                                     "evaluate a sample", param_hint="'--questions'")
    if not out:
        raise typer.BadParameter(f"{str(path)!r} holds no question",
                                 param_hint="'--questions'")
    return out


def _one_question_source(questions: Path | None, known_items: int | None) -> None:
    if (questions is None) == (known_items is None):
        raise typer.BadParameter("pass exactly one of --questions FILE.jsonl or "
                                 "--known-items N", param_hint="'--questions' / '--known-items'")


def _questions_for(ws: Any, ref: str, asked: list | None, known_items: int | None
                   ) -> tuple[Any, list]:
    """The collection version ``ref`` and its questions: the file's, matched
    to its documents, or ``known_items`` generated from it."""
    with cli_hints():
        version = ws.rag.get(ref)
    asked = _match_relevant(asked, version) if asked is not None else \
        _known_items(ws, version, known_items)
    return version, asked


def _match_relevant(questions: list[Any], version: CollectionVersion) -> list[Any]:
    """Relevant ids as the collection's document ids: an exact id, or a path
    that ends exactly one document's source (``faq.md``, ``docs/faq.md``)."""
    from dataclasses import replace

    ids = [d.doc_id for d in version.documents]
    known = set(ids)
    unknown: list[str] = []
    out = []
    for q in questions:
        mapped = []
        for rel in q.relevant:
            if rel in known:
                mapped.append(rel)
                continue
            tail = "/" + rel.lstrip("./")
            found = [i for i in ids if i.endswith(tail)]
            if len(found) == 1:
                mapped.append(found[0])
            else:
                unknown.append(rel)
        out.append(replace(q, relevant=tuple(mapped)))
    if unknown:
        raise typer.BadParameter(
            f"{len(unknown)} relevant document(s) are not in {version.ref} or match several "
            f"(e.g. {unknown[0]!r}); name documents by their source path as `shipyard rag query "
            "--json` shows it (a unique tail such as faq.md works)",
            param_hint="'--questions'")
    return out


def _known_items(ws: Any, version: CollectionVersion, n: int) -> list[Any]:
    """Known-item questions from the collection's own stored texts."""
    from shipyard.errors import GenAIError
    from shipyard.genai import Document, known_item_questions

    docs = []
    for d in version.documents:
        if d.blob is None:
            raise GenAIError(f"{version.ref} keeps no text of {d.source!r}, so known-item "
                             "questions cannot be written from it",
                             hint="pass --questions FILE.jsonl")
        text = ws.artifacts.get_bytes(d.blob).decode("utf-8")
        docs.append(Document(source=d.source, text=text, title=d.title, kind=d.kind,
                             sections=(), content_hash=d.content_hash, size_bytes=d.size_bytes))
    return known_item_questions(docs, n=n, seed=0)


@app.command("eval")
def eval_(
    ref: Annotated[str, typer.Argument(help=_REF_HELP)],
    questions: Annotated[Path | None, typer.Option(
        "--questions", metavar="FILE.jsonl",
        help='Labelled questions, one JSON object a line: {"text": "...", "relevant": '
             '["docs/faq.md"]} (relevant: document sources, or a unique tail of one).')
    ] = None,
    known_items: Annotated[int | None, typer.Option(
        "--known-items", metavar="N", min=1, max=MAX_QUESTIONS,
        help="Instead, N known-item questions written from the collection's documents (a "
             "title or first sentence; the document is the answer), seeded.")] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100,
                                   help="Cut-off of hit rate, recall and MRR.")] = 10,
    mode: Annotated[list[str] | None, typer.Option(
        "--mode", help="Modes to score (repeatable; default all: hybrid, dense, bm25).")
    ] = None,
    as_json: Annotated[bool, json_option(
        "Print the report (k, questions, per-mode scores, not-scorable reasons) as JSON; "
        "add --per-question for each question's rankings.")] = False,
    per_question: Annotated[bool, typer.Option(
        "--per-question", help="With --json: include each question's ranking and scores.")
    ] = False,
) -> None:
    """Score retrieval on labelled questions, per mode (no LLM).

    Hit rate@k, recall@k, MRR@k and nDCG@10 for each retrieval mode,
    deterministic; recorded as a run in the experiment 'rag'.

    Examples:

      shipyard rag eval handbook --questions questions.jsonl

      shipyard rag eval bbc --known-items 200 --json
    """
    _one_question_source(questions, known_items)
    modes = tuple(_check_mode(m) for m in dict.fromkeys(mode)) if mode else MODES
    asked = load_questions(questions) if questions is not None else None
    with _workspace() as ws:
        version, asked = _questions_for(ws, ref, asked, known_items)
        started = time.perf_counter()
        with stdout_reserved(as_json):
            report = ws.rag.evaluate(version, asked, k=k, modes=modes)
        seconds = time.perf_counter() - started
        if as_json:
            data = report.to_dict()
            if not per_question:
                data.pop("per_question")
            print_json({"collection": version.ref, "seconds": round(seconds, 3), **data})
            return
        print_eval_table(report, title=f"{version.ref}: {report.n_questions} questions, k={k}")
        for key, why in report.not_scorable.items():
            console.print(f"  [yellow]{escape(key)}[/]: {escape(why)}", highlight=False)
        console.print(f"{seconds:.1f}s; recorded in the experiment 'rag' "
                      "(`shipyard runs list --experiment rag`)")


def print_eval_table(report: Any, *, title: str | None = None) -> None:
    """One row per mode, one column per score; the best value of each bold."""
    from rich.table import Table

    names = list(next(iter(report.retrieval.values()), {}))
    table = Table(title=title)
    table.add_column("mode", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    best = {n: max((s[n] for s in report.retrieval.values() if s[n] is not None),
                   default=None) for n in names}
    for mode, scores in report.retrieval.items():
        cells = []
        for n in names:
            value = scores[n]
            cell = "n/a" if value is None else f"{value:.3f}"
            cells.append(f"[bold]{cell}[/]" if value is not None and value == best[n]
                         and len(report.retrieval) > 1 else cell)
        table.add_row(mode, *cells)
    fit(table, console)
    console.print(table)


# -------------------------------------------------------------------- drop
@app.command("drop")
def drop(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")
                   ] = False,
    as_json: Annotated[bool, json_option("Print what was dropped as JSON.")] = False,
) -> None:
    """Delete collection NAME's indexes (asks first unless --yes).

    Its versions stay recorded as history but can no longer be queried.

    Example: shipyard rag drop handbook --yes
    """
    _check_name(name)
    with _workspace() as ws:
        with cli_hints():
            latest = ws.rag.get(name)
        if not yes:
            try:
                sure = typer.confirm(f"drop {name} (latest {latest.ref}, "
                                     f"{len(latest.documents):,} documents)? Its indexes are "
                                     "deleted", default=False, err=True)
            except typer.Abort:  # end of input: no answer is no
                sure = False
            if not sure:
                err_console.print(f"not dropped; nothing changed (pass --yes to drop {name} "
                                  "without asking)")
                raise typer.Exit(1)
        tables = ws.rag.drop(name)
        if as_json:
            print_json({"name": name, "latest": latest.ref, "tables_dropped": tables})
            return
        console.print(f"dropped {name}: {tables} index table(s) deleted; its versions stay "
                      "recorded (`shipyard runs list --experiment rag`)")


# ------------------------------------------------------------------ traces
TRACE_COLUMNS = {col.name: col for col in (
    Col("trace", lambda t: t.trace_id, whole=True),
    Col("when", lambda t: fmt_when(t.started_at), whole=True),
    Col("kind", lambda t: t.kind, whole=True),
    Col("ref", lambda t: escape(t.ref or "-"), whole=True),
    Col("ms", lambda t: f"{t.duration_ms:.1f}", justify="right", whole=True),
    Col("status", lambda t: t.status, whole=True),
    Col("question", lambda t: escape(_snippet(t.question or "", 60))),
    Col("generator", lambda t: escape(t.generator or "-")),
)}
TRACE_DEFAULT = ("trace", "when", "ref", "ms", "status", "question")


@app.command("traces")
def traces(
    trace_id: Annotated[str | None, typer.Argument(
        help="Show this trace's spans (32 hex digits, as the list shows them).")] = None,
    collection: Annotated[str | None, typer.Option(
        "--collection", help="Only this collection (docs) or version (docs@2).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only traces since: a duration back from now (90s, 10m, 1h, 7d) or an "
                        "ISO time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000,
                                       help="At most this many, newest first.")] = 20,
    columns: Annotated[str | None, columns_option(TRACE_COLUMNS, TRACE_DEFAULT)] = None,
    as_json: Annotated[bool, json_option(
        "Print the traces (or the one trace) with every span as JSON.")] = False,
) -> None:
    """List traced queries and answers, or show one trace's spans.

    Every `rag query`/`rag answer` (and every served chat request) is a trace
    of spans: embed, retrieve, rerank, generate, with timings, chunk ids,
    scores and token counts.

    Examples:

      shipyard rag traces --collection handbook --since 1h

      shipyard rag traces 4bf92f3577b34da6a3ce929d0e0e4736 --json
    """
    with _workspace() as ws:
        if trace_id is not None:
            trace = ws.rag.trace(trace_id.strip())
            if as_json:
                print_json(trace.to_dict())
                return
            _print_trace(trace)
            return
        found = ws.rag.traces(collection, since=since, limit=limit)
        if as_json:
            print_json([t.to_dict() for t in found])
            return
        cols, explicit = choose(columns, TRACE_COLUMNS, TRACE_DEFAULT)
        if not found:
            console.print("no traces" + (" match" if collection or since else " yet") +
                          "; every `shipyard rag query` or `rag answer` records one")
            return
        print_table(console, found, cols, optional=("question", "when", "ref"), explicit=explicit)


def _print_trace(trace: Any) -> None:
    from rich.table import Table

    console.print(f"trace [bold]{trace.trace_id}[/] {trace.kind} {escape(trace.ref or '-')} "
                  f"{fmt_when(trace.started_at)}, {trace.duration_ms:.1f} ms, {trace.status}",
                  highlight=False)
    if trace.question:
        console.print(f"question: {escape(trace.question)}", highlight=False)
    if trace.refusal:
        console.print(f"[yellow]refused:[/] {escape(trace.refusal)}", highlight=False)
    depth: dict[str | None, int] = {None: -1}
    table = Table()
    table.add_column("span", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attributes")
    for span in trace.spans:
        level = depth.get(span.parent_id, -1) + 1
        depth[span.span_id] = level
        attrs = "; ".join(f"{k}={_short_value(v)}" for k, v in span.attributes.items())
        table.add_row("  " * level + escape(span.name), f"{span.duration_ns / 1e6:.1f}",
                      span.status, escape(attrs))
    fit(table, console)
    console.print(table)


def _short_value(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ----------------------------------------------------------------- promote
@app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="The candidate version, e.g. docs@3.")],
    questions: Annotated[Path | None, typer.Option(
        "--questions", metavar="FILE.jsonl",
        help="Labelled questions (as for `rag eval`) both versions are scored on.")] = None,
    known_items: Annotated[int | None, typer.Option(
        "--known-items", metavar="N", min=1, max=MAX_QUESTIONS,
        help="Instead, N known-item questions from the candidate's documents.")] = None,
    gate: Annotated[list[str] | None, typer.Option(
        "--gate", metavar="RULE",
        help="A gate, repeatable: 'hybrid.ndcg@10 >= 0.8' or 'hybrid.mrr@10 >= champion - "
             "0.02'. Default: no worse than the champion on hybrid.ndcg@10.")] = None,
    alias: Annotated[str, typer.Option("--alias", help="The alias to move.")] = "champion",
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100,
                                   help="Cut-off of hit rate, recall and MRR.")] = 10,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why; recorded in the audit log.")] = None,
    as_json: Annotated[bool, json_option(
        "Print the decision (promoted, every gate, both sides' scores) as JSON; the exit "
        "status is the same.")] = False,
) -> None:
    """Move a collection alias (champion) to REF only if it passes the gates.

    The candidate and the alias's current version are evaluated on the same
    questions; exit status 0 when the alias moved, 1 when a gate failed.

    Example:

      shipyard rag promote docs@3 --known-items 200 --gate 'hybrid.ndcg@10 >= 0.8'
    """
    _one_question_source(questions, known_items)
    asked = load_questions(questions) if questions is not None else None
    with _workspace() as ws:
        version, asked = _questions_for(ws, ref, asked, known_items)
        with stdout_reserved(as_json), cli_hints():
            result = ws.rag.promote(version, asked, gates=gate or None, alias=alias, k=k,
                                    reason=reason)
        if as_json:
            print_json(result.to_dict())
        else:
            console.print(escape(result.table()), highlight=False)
        if not (result.promoted or result.already):
            raise typer.Exit(1)
