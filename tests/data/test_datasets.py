import json
import os
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from shipyard import Workspace
from shipyard.data import (DatasetVersion, Datasets, SqlSource, check_name, content_hash,
                           parse_ref)
from shipyard.errors import (ArtifactCorruptedError, DataError, ExpectationsFailed,
                             NotFoundError, SourceError)


def test_register_records_a_complete_version(workspace, people):
    v = workspace.datasets.register("people", people, description="first cut",
                                    transform="raw export", created_by="ana")
    assert isinstance(v, DatasetVersion)
    assert (v.name, v.version, v.ref, v.new) == ("people", 1, "people@1", True)
    assert (v.num_rows, v.num_columns) == (8, 5)
    assert v.columns == ["id", "age", "city", "member", "joined"]
    assert v.content_hash == content_hash(pa.Table.from_pandas(people, preserve_index=False))
    assert workspace.artifacts.exists(v.snapshot_digest)
    assert v.size_bytes == len(workspace.artifacts.get_bytes(v.snapshot_digest))
    assert v.schema[1] == {"name": "age", "type": "float64", "arrow_type": "double",
                           "nullable": True}
    assert v.schema[0]["nullable"] is False
    assert v.profile["columns"]["age"]["mean"] == pytest.approx(people["age"].mean())
    assert v.source == {"kind": "dataframe", "rows": 8,
                        "columns": ["id", "age", "city", "member", "joined"]}
    assert (v.transform, v.description, v.created_by) == ("raw export", "first cut", "ana")
    assert v.expectations is None and v.validation is None and v.forced is False
    assert v.parents == ()
    json.dumps([v.schema, v.profile, v.source], allow_nan=False)  # stored as strict JSON
    assert workspace.datasets.get("people@1") == v


def test_identical_content_returns_the_existing_version_without_a_new_row(
        workspace, people, counts):
    first = workspace.datasets.register("people", people)
    again = workspace.datasets.register("people", people.copy())
    assert again.ref == "people@1" and again.new is False
    assert again.content_hash == first.content_hash
    assert counts(workspace) == (1, 1, 0)
    # the same content under another name is another dataset
    assert workspace.datasets.register("people_copy", people).ref == "people_copy@1"


def test_same_content_from_csv_and_parquet_is_the_same_version(workspace, tmp_path, people):
    table = people[["id", "age", "city"]]
    table.to_csv(tmp_path / "p.csv", index=False)
    table.to_parquet(tmp_path / "p.parquet", index=False)
    from_csv = workspace.datasets.register("p", tmp_path / "p.csv")
    from_parquet = workspace.datasets.register("p", str(tmp_path / "p.parquet"))
    assert from_parquet.ref == from_csv.ref == "p@1"
    assert from_parquet.new is False
    assert from_csv.source["format"] == "csv"


def test_versions_number_up_and_refs_resolve(workspace, people):
    ds = workspace.datasets
    refs = [ds.register("people", people.iloc[:n]).ref for n in (3, 5, 8)]
    assert refs == ["people@1", "people@2", "people@3"]
    assert ds.get("people").version == 3
    assert ds.get("people@latest").version == 3
    assert ds.get("people@2").num_rows == 5
    assert [v.version for v in ds.versions("people")] == [1, 2, 3]
    ds.register("alpha", people.iloc[:1])
    listed = ds.list()
    assert [(s.name, s.latest_version, s.num_versions, s.num_rows) for s in listed] == [
        ("alpha", 1, 1, 1), ("people", 3, 3, 8)]
    assert listed[1].ref == "people@3"


def test_round_trip_keeps_dtypes(workspace):
    df = pd.DataFrame({
        "i": np.array([1, 2, 3], dtype="int64"),
        "i32": np.array([1, 2, 3], dtype="int32"),
        "ni": pd.array([1, None, 3], dtype="Int64"),
        "f": [0.5, np.nan, 2.25],
        "s": ["a", None, "c"],
        "b": [True, False, True],
        "nb": pd.array([True, None, False], dtype="boolean"),
        "d": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
        "dz": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]).tz_localize("UTC"),
        "c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
    })
    workspace.datasets.register("types", df)
    back = workspace.datasets.load("types@1")
    pd.testing.assert_frame_equal(back, df)
    table = workspace.datasets.load_arrow("types")
    assert table.num_rows == 3 and table.schema.field("i32").type == pa.int32()


def test_dataframe_index_is_not_part_of_the_dataset(workspace):
    df = pd.DataFrame({"x": [1, 2]}, index=[10, 20])
    v = workspace.datasets.register("ix", df)
    assert workspace.datasets.load(v).index.tolist() == [0, 1]
    assert workspace.datasets.register("ix", df.reset_index(drop=True)).new is False


def test_lineage_records_parents_and_transform(workspace, people, counts):
    ds = workspace.datasets
    raw = ds.register("raw", people)
    other = ds.register("lookup", people[["city"]].drop_duplicates())
    clean = ds.register("clean", people.dropna(), parents=[raw, "lookup@latest", "raw@1"],
                        transform="dropna()")
    assert clean.parents == ("lookup@1", "raw@1")
    assert clean.transform == "dropna()"
    assert [c.ref for c in ds.children("raw@1")] == ["clean@1"]
    assert [c.ref for c in ds.children(other)] == ["clean@1"]
    assert counts(workspace) == (3, 3, 2)

    def normalise(df):
        return df

    v = ds.register("clean", people.head(2), parents="clean@1", transform=normalise)
    assert v.transform.endswith("test_lineage_records_parents_and_transform.<locals>.normalise")
    assert v.parents == ("clean@1",)


def test_unknown_parent_is_refused_and_nothing_recorded(workspace, people, counts):
    with pytest.raises(NotFoundError, match="no dataset named 'ghost'"):
        workspace.datasets.register("kid", people, parents=["ghost@1"])
    assert counts(workspace) == (0, 0, 0)


@pytest.mark.parametrize("name", ["", "../x", "x/../../etc", "a b", "1abc", "_x", "a" * 201,
                                  "naïve", "x@1", "a\nb", None, 5])
def test_invalid_and_hostile_names_are_refused(workspace, people, counts, name):
    with pytest.raises(DataError, match="not a valid dataset name"):
        workspace.datasets.register(name, people)
    assert counts(workspace) == (0, 0, 0)
    assert list(workspace.artifacts.iter_blobs()) == []


def test_longest_valid_name_works(workspace, people):
    name = "a" * 200
    assert workspace.datasets.register(name, people).ref == f"{name}@1"
    assert workspace.datasets.get(f"{name}@latest").name == name


@pytest.mark.parametrize("ref, error, message", [
    ("people@0", DataError, "versions start at 1"),
    ("people@-1", DataError, "not a version number"),
    ("people@1.5", DataError, "not a version number"),
    ("people@", DataError, "not a version number"),
    ("people@1@2", DataError, "not a version number"),
    ("people@99999999999", DataError, "not a version number"),
    ("people@" + "9" * 10, DataError, "versions start at 1"),
    ("@3", DataError, "not a valid dataset name"),
    ("x" * 5000, DataError, "too long"),
    (None, DataError, "must be a string"),
    ("people@7", NotFoundError, "has no version 7; versions: 1-2"),
    ("people@2147483647", NotFoundError, "has no version 2147483647"),
    ("ghost", NotFoundError, "no dataset named 'ghost'; datasets: people"),
])
def test_bad_refs_are_clear_errors(workspace, people, ref, error, message):
    workspace.datasets.register("people", people.head(2))
    workspace.datasets.register("people", people.head(3))
    with pytest.raises(error) as info:
        workspace.datasets.load(ref)
    assert message in str(info.value)


def test_versions_of_an_unknown_dataset_is_not_found(workspace):
    with pytest.raises(NotFoundError, match="datasets: none yet"):
        workspace.datasets.versions("ghost")
    assert workspace.datasets.list() == []


def test_corrupted_snapshot_is_detected_on_load(workspace, people):
    v = workspace.datasets.register("people", people)
    path = workspace.artifacts.blob_path(v.snapshot_digest)
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"XXXX")
    with pytest.raises(ArtifactCorruptedError) as info:
        workspace.datasets.load("people@1")
    assert v.snapshot_digest in str(info.value)
    with pytest.raises(ArtifactCorruptedError):
        v.to_arrow()


def test_failing_source_records_nothing(workspace, tmp_path, counts):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n1,2,3,4\n")
    for source in (tmp_path / "bad.csv", tmp_path / "missing.csv", "file.xyz",
                   SqlSource("sqlite://", "select * from nope")):
        with pytest.raises(SourceError):
            workspace.datasets.register("d", source)
    assert counts(workspace) == (0, 0, 0)
    assert list(workspace.artifacts.iter_blobs()) == []


def test_unstorable_tables_are_clear_errors(workspace, counts):
    with pytest.raises(DataError, match="duplicate column names"):
        workspace.datasets.register("d", pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(DataError, match="column 'mixed' cannot be stored"):
        workspace.datasets.register("d", pd.DataFrame({"ok": [1, 2], "mixed": [1, "x"]}))
    assert counts(workspace) == (0, 0, 0)


def test_failing_expectations_register_nothing(workspace, people, counts):
    exps = [{"column": "age", "not_null": True}, {"column": "age", "range": {"max": 40}}]
    with pytest.raises(ExpectationsFailed) as info:
        workspace.datasets.register("people", people, expectations=exps)
    report = info.value.report
    assert not report.passed
    assert [(r.check, r.failing) for r in report.failures] == [("not_null", 1),
                                                                ("range", 2)]
    assert "nothing was registered" in str(info.value)
    assert "range (expectation 1): 2 values outside [-inf, 40]" in str(info.value)
    assert counts(workspace) == (0, 0, 0)
    assert list(workspace.artifacts.iter_blobs()) == []


def test_force_registers_and_records_the_failures(workspace, people):
    exps = [{"column": "age", "range": {"max": 40}}, {"column": "id", "unique": True}]
    v = workspace.datasets.register("people", people, expectations=exps, force=True)
    assert v.forced is True
    assert v.expectations == [{"column": "age", "range": {"max": 40}},
                              {"column": "id", "unique": True}]
    assert v.validation["passed"] is False and v.validation["num_failed"] == 1
    assert v.validation_report.failures[0].examples == (
        {"index": 3, "value": 41.0}, {"index": 5, "value": 52.0})
    stored = workspace.datasets.get("people@1")
    assert stored.forced is True and stored.validation == v.validation


def test_passing_expectations_are_recorded(workspace, people):
    v = workspace.datasets.register("people", people, expectations=[
        {"column": "id", "dtype": "int64", "unique": True}, {"rows": {"min": 1}}])
    assert v.forced is False
    assert v.validation["passed"] is True and v.validation["num_checks"] == 3


def test_a_failed_commit_leaves_no_partial_record(workspace, people, counts, monkeypatch):
    # Fail after the dataset and version rows were flushed, inside the transaction.
    def explode(self, session, row, name, *, new=False):
        raise RuntimeError("crash mid-transaction")

    workspace.datasets.register("raw", people.head(1))
    monkeypatch.setattr(Datasets, "_version", explode)
    with pytest.raises(RuntimeError):
        workspace.datasets.register("people", people, parents=["raw@1"])
    monkeypatch.undo()
    assert counts(workspace) == (1, 1, 0)
    assert workspace.datasets.register("people", people, parents=["raw@1"]).ref == "people@1"


def test_concurrent_registrations_of_one_name_get_distinct_versions(db_url, tmp_path):
    home = tmp_path / "home"
    Workspace.open(home, db_url=db_url, artifacts=str(tmp_path / "a")).close()
    start = threading.Barrier(4)
    results, errors = [], []

    def register(content: int) -> None:
        ws = Workspace.open(home, db_url=db_url, artifacts=str(tmp_path / "a"))
        try:
            start.wait()
            frame = pd.DataFrame({"x": [content // 2] * 50})  # pairs share content
            results.append((content // 2, ws.datasets.register("shared", frame).ref))
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)
        finally:
            ws.close()

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    by_content = {}
    for content, ref in results:
        by_content.setdefault(content, set()).add(ref)
    assert all(len(refs) == 1 for refs in by_content.values())  # same content, same version
    assert sorted(r.pop() for r in by_content.values()) == ["shared@1", "shared@2"]
    ws = Workspace.open(home, db_url=db_url, artifacts=str(tmp_path / "a"))
    assert [v.version for v in ws.datasets.versions("shared")] == [1, 2]
    ws.close()


def test_register_from_files_sql_and_http(workspace, tmp_path, api):
    (tmp_path / "r.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    assert workspace.datasets.register("jl", tmp_path / "r.jsonl").num_rows == 2
    v = workspace.datasets.register("sql", SqlSource("sqlite://", "select 1 as a, 'x' as b"))
    assert v.source["query"] == "select 1 as a, 'x' as b"
    h = workspace.datasets.register("api", f"{api.url}/links")
    assert h.num_rows == 7 and h.source["kind"] == "http"


def test_helpers_validate_names_and_refs():
    assert check_name("adult.v2-x_y") == "adult.v2-x_y"
    assert parse_ref("a@12") == ("a", 12)
    assert parse_ref("a@latest") == ("a", None)


def test_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, shipyard; assert 'pandas' not in sys.modules, 'pandas'; "
            "import shipyard.data; "
            "assert 'pandera' not in sys.modules, 'pandera'; "
            "assert 'httpx' not in sys.modules, 'httpx'")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_values_that_are_not_strict_json_are_stored_safely(workspace):
    df = pd.DataFrame({"x": [1.0, 2.0]})
    v = workspace.datasets.register("nan", df, force=True, expectations=[
        {"column": "x", "allowed": [1.0, float("nan")]}])
    assert v.expectations == [{"column": "x", "allowed": [1.0, None]}]
    assert v.validation["num_failed"] == 1
    with pytest.raises(DataError, match="created_by"):
        workspace.datasets.register("nan", df, created_by="x" * 201)
