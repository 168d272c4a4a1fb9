import gzip
import json
import socket
import sqlite3

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard.data import (CsvSource, DataFrameSource, HttpJsonSource, JsonlSource, JsonSource,
                           ParquetSource, SqlSource, as_source)
from shipyard.data._sources import redact_url
from shipyard.errors import SourceError

ROWS = [{"id": 1, "name": "ann", "score": 1.5}, {"id": 2, "name": "bob", "score": 2.5}]
EXPECTED = pd.DataFrame(ROWS)


# ------------------------------------------------------------------ files
def _write_all_formats(tmp_path):
    EXPECTED.to_csv(tmp_path / "t.csv", index=False)
    EXPECTED.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    with gzip.open(tmp_path / "t.csv.gz", "wt") as fh:
        EXPECTED.to_csv(fh, index=False)
    EXPECTED.to_parquet(tmp_path / "t.parquet", index=False)
    (tmp_path / "t.json").write_text(json.dumps(ROWS))
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    (tmp_path / "t.ndjson").write_text("\n".join(json.dumps(r) for r in ROWS))


@pytest.mark.parametrize("name, cls", [
    ("t.csv", CsvSource), ("t.tsv", CsvSource), ("t.csv.gz", CsvSource),
    ("t.parquet", ParquetSource), ("t.json", JsonSource), ("t.jsonl", JsonlSource),
    ("t.ndjson", JsonlSource),
])
def test_every_file_format_reads_the_same_table(tmp_path, name, cls):
    _write_all_formats(tmp_path)
    source = as_source(tmp_path / name)
    assert type(source) is cls
    pd.testing.assert_frame_equal(source.read(), EXPECTED, check_dtype=False)
    desc = source.describe()
    assert desc["path"] == str((tmp_path / name).resolve())
    assert desc["size_bytes"] == (tmp_path / name).stat().st_size
    assert len(desc["sha256"]) == 64


def test_explicit_source_objects_take_reader_options(tmp_path):
    (tmp_path / "semi.txt").write_text("a;b\n1;x\n2;y\n")
    df = CsvSource(tmp_path / "semi.txt", sep=";").read()
    assert df.columns.tolist() == ["a", "b"] and df["a"].tolist() == [1, 2]
    assert CsvSource(tmp_path / "semi.txt", sep=";").describe()["options"] == {"sep": ";"}


def test_json_records_path_and_nested_objects_become_dotted_columns(tmp_path):
    doc = {"meta": {"n": 2}, "data": {"rows": [{"a": 1, "loc": {"city": "Oslo"}},
                                               {"a": 2, "loc": {"city": "Lima"}}]}}
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    df = JsonSource(tmp_path / "doc.json", records="data.rows").read()
    assert df.to_dict("list") == {"a": [1, 2], "loc.city": ["Oslo", "Lima"]}


@pytest.mark.parametrize("name, content, message", [
    ("bad.csv", "a,b\n1,2\n3,4,5,6\n", "not a readable csv"),
    ("bin.csv", b"\xff\xfe\x00garbage\xff\n\x80\x81", "is not valid utf-8"),
    ("empty.csv", "", "is empty"),
    ("bad.json", '[{"a": 1}, {"a": ', "is not valid JSON"),
    ("obj.json", '{"a": 1}', "not a list of records"),
    ("scalars.json", "[1, 2, 3]", "record 0 is a int, not a JSON object"),
    ("none.json", "[]", "holds no records"),
    ("bad.jsonl", '{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
    ("bad.parquet", b"PAR1 this is not parquet", "not a readable parquet"),
])
def test_malformed_files_are_clear_source_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SourceError) as info:
        as_source(path).read()
    assert message in str(info.value)
    assert name in str(info.value)


def test_missing_file_and_directory_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        as_source(tmp_path / "nope.csv").read()
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(SourceError, match="is not a file"):
        as_source(tmp_path / "dir.csv").read()


@pytest.mark.parametrize("path", ["data.xlsx", "data", "archive.tar.gz", "x.csv.bak"])
def test_unknown_extension_is_refused_with_the_known_ones(path):
    with pytest.raises(SourceError) as info:
        as_source(path)
    assert "unknown extension" in str(info.value) and ".parquet" in str(info.value)


def test_as_source_dispatch():
    df = pd.DataFrame({"a": [1]})
    assert isinstance(as_source(df), DataFrameSource)
    src = SqlSource("sqlite://", "select 1 as a")
    assert as_source(src) is src
    assert isinstance(as_source("https://example.org/api"), HttpJsonSource)
    with pytest.raises(SourceError, match="SqlSource"):
        as_source("postgresql://u:pw@host/db")
    with pytest.raises(SourceError, match="cannot read data from a int"):
        as_source(42)


def test_dataframe_without_columns_is_refused():
    with pytest.raises(SourceError, match="no columns"):
        DataFrameSource(pd.DataFrame()).read()


def test_redaction_hides_passwords_and_credential_parameters():
    assert redact_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    red = redact_url("https://u:pw@api.example.org/v1?api_key=K&token=T&page=2")
    assert "pw" not in red and "=K" not in red and "=T" not in red and "page=2" in red


# -------------------------------------------------------------------- SQL
@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table people (id integer, name text, score real)")
        conn.executemany("insert into people values (?, ?, ?)",
                         [(r["id"], r["name"], r["score"]) for r in ROWS])
    return f"sqlite:///{path}"


def test_sql_source_reads_a_sqlite_file_with_params(sqlite_db):
    df = SqlSource(sqlite_db, "select * from people where id >= :lo order by id",
                   params={"lo": 2}).read()
    assert df.to_dict("records") == [ROWS[1]]
    all_rows = SqlSource(sqlite_db, "select * from people order by id").read()
    pd.testing.assert_frame_equal(all_rows, EXPECTED)


def test_sql_source_reads_postgresql(pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table people (id int, name text, score float8)"))
        conn.execute(sa.text("insert into people values (:id, :name, :score)"), ROWS)
    engine.dispose()
    df = SqlSource(pg_url, "select * from people order by id").read()
    pd.testing.assert_frame_equal(df, EXPECTED, check_dtype=False)
    assert SqlSource(pg_url, "select 1").describe()["kind"] == "sql"


def test_sql_empty_result_keeps_its_columns(sqlite_db):
    df = SqlSource(sqlite_db, "select * from people where id > 99").read()
    assert df.shape == (0, 3) and df.columns.tolist() == ["id", "name", "score"]


@pytest.mark.parametrize("url, message", [
    ("not a url", "not a usable SQLAlchemy URL"),
    ("nosuchdialect://u:topsecret@x/y", "not a usable SQLAlchemy URL"),
])
def test_bad_sql_url_is_a_source_error_without_the_password(url, message):
    with pytest.raises(SourceError) as info:
        SqlSource(url, "select 1").read()
    assert message in str(info.value)
    assert "topsecret" not in str(info.value)


def test_sql_errors_are_source_errors(sqlite_db, tmp_path):
    with pytest.raises(SourceError, match="no such table: nope"):
        SqlSource(sqlite_db, "select * from nope").read()
    with pytest.raises(SourceError, match="query .* is empty"):
        SqlSource(sqlite_db, "  ").read()
    with pytest.raises(SourceError, match="SQL query on"):
        SqlSource(f"sqlite:///{tmp_path}/missing/dir/x.db", "select 1").read()


def test_sql_describe_redacts_password_and_secret_params():
    desc = SqlSource("postgresql://bob:hunter2@db/x", "select :token",
                     params={"token": "abc", "n": 1}).describe()
    assert desc == {"kind": "sql", "url": "postgresql://bob:***@db/x",
                    "query": "select :token", "params": {"token": "***", "n": 1}}


# ------------------------------------------------------------------- HTTP
def test_http_follows_next_links_until_there_is_none(api):
    df = HttpJsonSource(f"{api.url}/links").read()
    assert df["id"].tolist() == list(range(1, 8))
    assert api.requests == ["/links", "/links?page=2", "/links?page=3"]


def test_http_pages_by_number_until_an_empty_page(api):
    src = HttpJsonSource(f"{api.url}/numbered", next=None, page_param="page", start_page=1)
    assert src.read()["id"].tolist() == list(range(1, 8))
    assert api.requests[-1] == "/numbered?page=4"  # the empty page ended it
    assert len(api.requests) == 4


def test_http_page_that_is_a_list_and_nested_paths(api):
    assert len(HttpJsonSource(f"{api.url}/list", records=None).read()) == 7
    df = HttpJsonSource(f"{api.url}/nested", records="data.rows", next="links.next").read()
    assert df["name"].tolist() == [f"p{i}" for i in range(1, 8)]


def test_http_sends_headers_and_params_but_never_records_secrets(api):
    src = HttpJsonSource(f"{api.url}/auth", headers={"Authorization": "Bearer sesame",
                                                    "Accept": "application/json"},
                         params={"api_key": "k123", "lang": "en"})
    assert len(src.read()) == 2
    assert api.headers_seen[-1]["Authorization"] == "Bearer sesame"
    assert "api_key=k123" in api.requests[-1]
    text = json.dumps(src.describe())
    assert "sesame" not in text and "k123" not in text
    assert src.describe()["headers"] == {"Authorization": "***", "Accept": "application/json"}


def test_http_endless_pagination_hits_the_page_cap(api):
    with pytest.raises(SourceError) as info:
        HttpJsonSource(f"{api.url}/endless", max_pages=5).read()
    assert "max_pages=5" in str(info.value)
    assert len(api.requests) == 5


def test_http_pagination_loop_is_detected(api):
    with pytest.raises(SourceError, match="paginates in a loop"):
        HttpJsonSource(f"{api.url}/loop").read()


@pytest.mark.parametrize("path, kwargs, message", [
    ("/status/500", {}, "HTTP 500"),
    ("/status/404", {}, "HTTP 404"),
    ("/auth", {}, "HTTP 401"),
    ("/notjson", {}, "is not JSON (text/html)"),
    ("/notlist", {}, "'items' is a int, not a list of records"),
    ("/scalars", {}, "record 0 is a int"),
    ("/empty", {}, "returned no records"),
    ("/links", {"records": "data"}, "no list of records at 'data'; found ['items', 'next']"),
    ("/badnext", {}, "'next' is not a URL: 42"),
    ("/list", {}, "no list of records at 'items'; found list"),
])
def test_http_errors_are_clear_source_errors(api, path, kwargs, message):
    with pytest.raises(SourceError) as info:
        HttpJsonSource(f"{api.url}{path}", **kwargs).read()
    assert message in str(info.value)


def test_http_connection_refused_is_a_source_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError, match="cannot connect"):
        HttpJsonSource(f"http://127.0.0.1:{port}/x", timeout=5).read()


def test_http_refuses_non_http_urls_and_bad_caps():
    with pytest.raises(SourceError, match="not an http"):
        HttpJsonSource("ftp://example.org/x").read()
    with pytest.raises(SourceError, match="max_pages must be at least 1"):
        HttpJsonSource("http://127.0.0.1:9/x", max_pages=0).read()
