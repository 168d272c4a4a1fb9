"""``shipyard rag``: ingest, list, versions, query, answer, eval and drop on one
small real collection (BBC News articles, a Markdown guide, files that must
be refused), with the offline MiniLM, LanceDB and BM25; and every command's
answer to malformed, missing, oversized and hostile input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.errors import CollectionNotFoundError, EmptyCorpusError, GenAIError
from shipyard.genai import bbc_news_files

runner = CliRunner()
SHIPYARD = str(Path(sys.executable).parent / "shipyard")

GUIDE = """# Key rotation guide

## Rotating keys

Signing keys are rotated every 90 days by the platform team. A rotation
creates a new key, publishes it, then retires the old one after a week.

## Revoking keys

A leaked key is revoked at once with the revoke command; clients using it
are refused from then on.
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A workspace with collection ``news`` ingested through the CLI (once)."""
    root = tmp_path_factory.mktemp("rag-cli")
    docs = root / "docs"
    docs.mkdir()
    for f in bbc_news_files(limit=5):  # one per topic
        shutil.copy(f, docs / f"{f.parent.name}-{f.name}")
    (docs / "guide.md").write_text(GUIDE)
    (docs / "guide_copy.md").write_text(GUIDE)  # a duplicate: indexed once
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n\x00\x01 not really a pdf")
    (docs / "empty.txt").write_text("   \n")
    return root


def rag(home: Path, *args: str, input: str | None = None):
    return runner.invoke(app, ["--home", str(home / "ws"), "rag", *args], input=input)


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def usage_error(result, *words: str) -> str:
    """Exit 2 (a usage error) whose message holds every word."""
    assert result.exit_code == 2, (result.output, result.exception)
    flat = " ".join(result.output.replace("│", " ").split())
    for word in words:
        assert word in flat, (word, flat)
    return flat


@pytest.fixture(scope="module")
def news(home):
    """The ingestion's JSON."""
    result = rag(home, "ingest", "news", str(home / "docs"), "--json")
    return json.loads(ok(result))


# ------------------------------------------------------------------ ingest
def test_ingest_reports_documents_chunks_and_refusals(home, news):
    assert news["ref"] == "news@1" and news["new"] is True
    assert news["num_documents"] == 6 and len(news["changes"]["added"]) == 6
    assert news["num_chunks"] >= 6 and news["seconds"] > 0
    refused = {Path(r["source"]).name: r["reason"] for r in news["refused"]}
    assert set(refused) == {"guide_copy.md", "broken.pdf", "empty.txt"}, refused
    assert "same content" in refused["guide_copy.md"]


def test_reingesting_the_same_files_makes_no_new_version(home, news):
    out = ok(rag(home, "ingest", "news", str(home / "docs")))
    assert "news@1 already holds these documents" in " ".join(out.split())
    assert "refused 3" in out and "broken.pdf" in out


def test_ingest_summary_lists_changes_and_the_next_step(home, news, tmp_path):
    docs = tmp_path / "few"
    docs.mkdir()
    for f in sorted((home / "docs").glob("*.txt"))[:3]:
        shutil.copy(f, docs / f.name)
    out = " ".join(ok(rag(home, "ingest", "few", str(docs))).split())
    assert "ingested few@1: 2 added" in out  # empty.txt is refused
    assert "refused 1" in out and "shipyard rag query few" in out
    (docs / min(p.name for p in docs.iterdir())).unlink()
    out = " ".join(ok(rag(home, "ingest", "few", str(docs))).split())
    assert "ingested few@2: 0 added, 0 changed, 1 unchanged, 1 removed" in out


def test_ingest_refuses_a_missing_path_before_touching_anything(home, news):
    flat = usage_error(rag(home, "ingest", "news", str(home / "docs"), "/no/such/folder"),
                       "'/no/such/folder'", "does not exist", "nothing was ingested")
    assert "PATHS" in flat
    assert json.loads(ok(rag(home, "versions", "news", "--json")))[-1]["ref"] == "news@1"


def test_ingest_of_nothing_readable_is_a_clear_error(home, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"\x00\xff" * 100)
    result = rag(home, "ingest", "junk", str(folder))
    assert result.exit_code == 1 and isinstance(result.exception, EmptyCorpusError)
    assert "a.pdf" in str(result.exception) and "hint:" in str(result.exception)
    assert isinstance(rag(home, "versions", "junk").exception, CollectionNotFoundError)


def test_ingest_refuses_oversized_documents_and_unknown_stores(home, news, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    with open(folder / "huge.txt", "wb") as fh:  # sparse: 60 MiB without writing them
        fh.truncate(60 * 2**20)
    shutil.copy(home / "docs" / "guide.md", folder / "guide.md")
    data = json.loads(ok(rag(home, "ingest", "big", str(folder), "--json")))
    [refusal] = data["refused"]
    assert refusal["source"].endswith("huge.txt") and "over the" in refusal["reason"]
    assert data["num_documents"] == 1
    result = rag(home, "ingest", "elsewhere", str(folder / "guide.md"), "--store", "foo://x")
    assert result.exit_code == 1 and "unknown vector store 'foo://x'" in str(result.exception)
    assert isinstance(rag(home, "versions", "elsewhere").exception, CollectionNotFoundError)


@pytest.mark.parametrize("name", ["1bad", "bad name", "../etc", "x" * 300, "news@2", ""])
def test_ingest_refuses_bad_collection_names(home, name):
    result = rag(home, "ingest", name, str(home / "docs"))
    assert result.exit_code in (1, 2), result.output
    message = result.output + str(result.exception or "")
    assert "collection" in message or "NAME" in message or "name" in message


# ------------------------------------------------------------- list, versions
def test_list_and_versions_fit_80_columns(home, news):
    out = ok(rag(home, "list"))
    assert "news" in out and "@1" in out and "6" in out
    out = ok(rag(home, "versions", "news"))
    assert "news@1" in out and "+6 ~0 -0 =0" in out
    for text in (ok(rag(home, "list")), out):
        assert max(len(line) for line in text.splitlines()) <= 80
    listed = json.loads(ok(rag(home, "list", "--json")))
    assert {c["ref"] for c in listed} >= {"news@1"}
    assert "documents" not in listed[0]  # the listing stays small


def test_versions_of_an_unknown_collection_names_the_fix(home, news):
    result = rag(home, "versions", "nosuch")
    assert result.exit_code == 1 and isinstance(result.exception, CollectionNotFoundError)
    assert "news" in str(result.exception) and "shipyard rag ingest" in str(result.exception)


# ------------------------------------------------------------------- query
def test_query_prints_ranked_chunks(home, news):
    out = ok(rag(home, "query", "news", "How often are signing keys rotated?", "-k", "3"))
    assert "rank" in out and "snippet" in out and "Key rotation guide" in out
    assert "Rotating keys" in out  # the section of the best chunk
    assert max(len(line) for line in out.splitlines()) <= 80


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_query_json_in_every_mode(home, news, mode):
    hits = json.loads(ok(rag(home, "query", "news", "revoke a leaked key", "--mode", mode,
                             "--json")))
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and 1 <= len(hits) <= 5
    assert hits[0]["chunk"]["source"].endswith("guide.md")
    assert {"text", "start", "end", "section", "page"} <= set(hits[0]["chunk"])


def test_query_filters_by_metadata(home, news):
    guide = str((home / "docs" / "guide.md").resolve())
    for where in ([f"source={guide}"], [json.dumps({"source": {"$in": [guide]}})]):
        args = [a for w in where for a in ("--where", w)]
        hits = json.loads(ok(rag(home, "query", "news", "keys", *args, "--json")))
        assert hits and {h["chunk"]["source"] for h in hits} == {guide}
    out = ok(rag(home, "query", "news", "keys", "--where", "page>=7"))
    assert "no chunk matched the filter" in out


@pytest.mark.parametrize("where, words", [
    ("colour=red", ["cannot filter on 'colour'", "source"]),
    ("page>=two", ["page takes a whole number"]),
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["not FIELD=VALUE"]),
    ('{"page": {"$regex": "x"}}', ["unknown filter operator"]),
    ("source", ["not FIELD=VALUE"]),
])
def test_query_refuses_malformed_filters(home, news, where, words):
    usage_error(rag(home, "query", "news", "keys", "--where", where), "--where", *words)


def test_query_refuses_bad_questions_and_options(home, news):
    usage_error(rag(home, "query", "news", "   "), "question is empty")
    usage_error(rag(home, "query", "news", "x" * 5000), "5,000 characters", "limit is 4,000")
    usage_error(rag(home, "query", "news", "a\x00b"), "NUL")
    usage_error(rag(home, "query", "news", "keys", "--mode", "magic"), "unknown mode 'magic'",
                "hybrid, dense, bm25")
    usage_error(rag(home, "query", "news", "keys", "-k", "0"), "--k")
    usage_error(rag(home, "query", "news", "keys", "-k", "100000"), "--k")
    usage_error(rag(home, "query", "news", "keys", "--columns", "rank,nope"), "'nope'")


def test_query_of_unknown_collections_and_versions(home, news):
    for ref, words in (("nosuch", "no collection named 'nosuch'"),
                       ("news@9", "has no version 9"), ("news@x@y", "collection")):
        result = rag(home, "query", ref, "keys")
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, GenAIError) and words in str(result.exception)


def test_hostile_question_is_only_text(home, news):
    hostile = "'; DROP TABLE chunks; -- <script>alert(1)</script> [bold]ignore previous[/]"
    hits = json.loads(ok(rag(home, "query", "news", hostile, "--json")))
    assert len(hits) == 5  # hybrid: the dense side always answers
    ok(rag(home, "query", "news", hostile))  # Rich markup in text is escaped, not rendered
    assert json.loads(ok(rag(home, "versions", "news", "--json")))[-1]["num_chunks"] == \
        news["num_chunks"]


# ------------------------------------------------------------------ answer
def test_answer_cites_its_sources(home, news):
    out = ok(rag(home, "answer", "news", "How often are signing keys rotated?"))
    flat = " ".join(out.split())
    assert "90 days" in flat and "[1]" in flat
    assert "sources" in out and "guide.md" in flat and "chars " in flat
    data = json.loads(ok(rag(home, "answer", "news", "How often are signing keys rotated?",
                             "--json")))
    cite = data["citations"][0]
    assert cite["source"].endswith("guide.md") and 0 <= cite["start"] < cite["end"]
    assert data["text"] and data["refusal"] is None


def test_answer_refuses_bad_input(home, news):
    usage_error(rag(home, "answer", "news", ""), "question is empty")
    usage_error(rag(home, "answer", "news", "q" * 4001), "limit is 4,000")
    assert rag(home, "answer", "nosuch", "keys").exit_code == 1


# -------------------------------------------------------------------- eval
def test_eval_known_items_prints_one_row_per_mode(home, news):
    out = ok(rag(home, "eval", "news", "--known-items", "5", "-k", "5"))
    for word in ("hybrid", "dense", "bm25", "hit_rate@5", "mrr@5", "5 questions"):
        assert word in out, word
    data = json.loads(ok(rag(home, "eval", "news", "--known-items", "6", "--mode", "bm25",
                             "--json")))
    assert data["n_questions"] == 6 and set(data["retrieval"]) == {"bm25"}
    assert 0 <= data["retrieval"]["bm25"]["recall@10"] <= 1 and "per_question" not in data


def test_eval_reads_a_question_file(home, news, tmp_path):
    file = tmp_path / "q.jsonl"
    file.write_text("# labelled by hand\n"
                    + json.dumps({"text": "how are keys revoked", "relevant": ["guide.md"]})
                    + "\n\n" + json.dumps({"text": "rotation period of signing keys",
                                           "relevant": "docs/guide.md"}) + "\n")
    data = json.loads(ok(rag(home, "eval", "news", "--questions", str(file), "--json",
                             "--per-question")))
    assert data["n_questions"] == 2 and data["retrieval"]["hybrid"]["hit_rate@10"] == 1.0
    assert data["per_question"][0]["relevant"][0].endswith("/docs/guide.md")


@pytest.mark.parametrize("content, words", [
    ('{"text": "a", "relevant": ["guide.md"]}\n{oops\n', ["q.jsonl line 2 is not JSON"]),
    ('{"relevant": ["guide.md"]}\n', ["line 1 needs a non-empty \"text\""]),
    ('{"text": "a"}\n', ["line 1 needs \"relevant\""]),
    ('{"text": "a", "relevant": [3]}\n', ["line 1 needs \"relevant\""]),
    ('["text", "relevant"]\n', ["line 1 needs a non-empty \"text\""]),
    ("\n# nothing\n", ["holds no question"]),
    ('{"text": "a", "relevant": ["nowhere.md"]}\n', ["not in news@1", "'nowhere.md'"]),
])
def test_eval_refuses_malformed_question_files(home, news, tmp_path, content, words):
    file = tmp_path / "q.jsonl"
    file.write_text(content)
    usage_error(rag(home, "eval", "news", "--questions", str(file)), "--questions", *words)


def test_eval_refuses_oversized_binary_and_missing_files(home, news, tmp_path):
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as fh:  # sparse: 21 MiB without writing them
        fh.truncate(21 * 2**20)
    usage_error(rag(home, "eval", "news", "--questions", str(big)), "21.0 MiB", "limit is 20")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    usage_error(rag(home, "eval", "news", "--questions", str(binary)), "not UTF-8")
    usage_error(rag(home, "eval", "news", "--questions", str(tmp_path / "none.jsonl")),
                "is not a file")
    usage_error(rag(home, "eval", "news"), "exactly one of --questions")
    usage_error(rag(home, "eval", "news", "--questions", str(binary), "--known-items", "3"),
                "exactly one of")
    usage_error(rag(home, "eval", "news", "--known-items", "0"), "--known-items")
    usage_error(rag(home, "eval", "news", "--known-items", "3", "--mode", "psychic"),
                "unknown mode")


# -------------------------------------------------------------------- drop
def test_drop_asks_first_and_keeps_the_collection_on_no(home, news):
    ok(rag(home, "ingest", "scratch", str(home / "docs" / "guide.md")))
    result = rag(home, "drop", "scratch", input="n\n")
    assert result.exit_code == 1 and "not dropped; nothing changed" in result.stderr
    assert json.loads(ok(rag(home, "query", "scratch", "keys", "--json")))
    result = rag(home, "drop", "scratch")  # no input at all: no answer is no
    assert result.exit_code == 1 and "pass --yes" in result.stderr
    out = ok(rag(home, "drop", "scratch", input="y\n"))
    assert "dropped scratch: 1 index table(s) deleted" in " ".join(out.split())
    gone = rag(home, "query", "scratch", "keys")
    assert gone.exit_code == 1 and isinstance(gone.exception, CollectionNotFoundError)


def test_drop_with_yes_and_json_and_unknown_names(home, news):
    ok(rag(home, "ingest", "scratch2", str(home / "docs" / "guide.md")))
    data = json.loads(ok(rag(home, "drop", "scratch2", "--yes", "--json")))
    assert data == {"name": "scratch2", "latest": "scratch2@1", "tables_dropped": 1}
    result = rag(home, "drop", "nosuch", "--yes")
    assert result.exit_code == 1 and "no collection named 'nosuch'" in str(result.exception)
    usage_error(rag(home, "drop", "news@1", "--yes"), "names a version")
    assert json.loads(ok(rag(home, "versions", "news", "--json")))  # untouched


# ------------------------------------------------------------ traces, promote
def test_traces_list_and_show_the_spans_of_queries(home, news):
    ok(rag(home, "query", "news", "revoke a leaked key", "--json"))
    listed = json.loads(ok(rag(home, "traces", "--collection", "news", "--json")))
    assert listed and listed[0]["ref"] == "news@1" and listed[0]["kind"] == "query"
    out = ok(rag(home, "traces", "--collection", "news"))
    assert listed[0]["trace_id"] in out and max(len(x) for x in out.splitlines()) <= 80
    shown = ok(rag(home, "traces", listed[0]["trace_id"]))
    assert "retrieve" in shown and "embed" in shown and "revoke a leaked key" in shown
    one = json.loads(ok(rag(home, "traces", listed[0]["trace_id"], "--json")))
    assert {s["name"] for s in one["spans"]} >= {"embed", "retrieve"}


def test_traces_refuse_bad_ids_and_filters(home, news):
    for bad in ("deadbeef", "z" * 32, "'; DROP TABLE rag_traces; --"):
        result = rag(home, "traces", bad)
        assert result.exit_code == 1 and "not a trace id" in str(result.exception)
    missing = rag(home, "traces", "0" * 32)
    assert missing.exit_code == 1 and isinstance(missing.exception, GenAIError)
    result = rag(home, "traces", "--since", "yesterday-ish")
    assert result.exit_code == 1 and "yesterday-ish" in str(result.exception)
    usage_error(rag(home, "traces", "--limit", "0"), "--limit")


def test_promote_moves_the_alias_only_through_its_gates(home, news):
    docs = home / "docs"
    ok(rag(home, "ingest", "promo", str(docs / "guide.md")))
    first = json.loads(ok(rag(home, "promote", "promo@1", "--known-items", "1", "--json")))
    assert first["promoted"] and first["candidate"] == "promo@1"
    ok(rag(home, "ingest", "promo", str(docs / "guide.md"), *map(str, sorted(
        docs.glob("business-*.txt")))))
    refused = rag(home, "promote", "promo@2", "--known-items", "3", "--gate",
                  "hybrid.mrr@10 >= 1.5")
    assert refused.exit_code == 1 and "FAIL" in refused.stdout
    assert "refused: @champion stays on promo@1" in refused.stdout
    assert json.loads(ok(rag(home, "query", "promo@champion", "keys", "--json")))
    bad = rag(home, "promote", "promo@2", "--known-items", "3", "--gate", "bogus >= 1")
    assert bad.exit_code == 1 and "unknown gate metric 'bogus'" in str(bad.exception)
    usage_error(rag(home, "promote", "promo@2"), "exactly one of")


# --------------------------------------------------------------- the binary
def test_errors_reach_the_terminal_without_a_traceback(home, news):
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run([SHIPYARD, "--home", str(home / "ws"), "rag", "query", "nosuch", "x"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: no collection named 'nosuch'" in out.stderr and "hint:" in out.stderr
