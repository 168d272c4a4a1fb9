"""Reading logged files in pieces: a preview's head, a verified stream."""

import os

import pytest

from shipyard.errors import ArtifactCorruptedError, NotFoundError, TrackingError
from shipyard.store import ArtifactStore


@pytest.fixture
def logged(sqlite_workspace):
    data = bytes(range(256)) * 4096  # 1 MiB
    with sqlite_workspace.start_run("exp") as run:
        run.log_bytes("data.bin", data)
        run.log_bytes("empty.bin", b"")
    return sqlite_workspace, run.id, data


def test_a_stream_gives_the_file_in_chunks(logged):
    ws, rid, data = logged
    record, chunks = ws.runs.stream_artifact(rid, "data.bin", chunk_size=100_000)
    parts = list(chunks)
    assert record.size_bytes == len(data) and b"".join(parts) == data
    assert len(parts) == 11 and max(map(len, parts)) == 100_000
    assert b"".join(ws.runs.stream_artifact(rid, "empty.bin")[1]) == b""


def test_a_head_reads_only_its_bytes(logged):
    ws, rid, data = logged
    record, head = ws.runs.artifact_head(rid, "data.bin", 1000)
    assert head == data[:1000] and record.size_bytes == len(data)
    assert ws.runs.artifact_head(rid, "data.bin", 10**9)[1] == data
    with pytest.raises(TrackingError, match="max_bytes"):
        ws.runs.artifact_head(rid, "data.bin", -1)


def test_a_corrupted_file_stops_before_its_last_chunk(logged):
    ws, rid, data = logged
    record = ws.runs.artifact(rid, "data.bin")
    path = ws.artifacts.blob_path(record.digest)
    with open(path, "r+b") as fh:  # flip one byte in the middle
        fh.seek(len(data) // 2)
        fh.write(b"\xff" if data[len(data) // 2] != 255 else b"\x00")
    got = []
    with pytest.raises(ArtifactCorruptedError, match="corrupted"):
        for chunk in ws.runs.stream_artifact(rid, "data.bin", chunk_size=100_000)[1]:
            got.append(chunk)
    assert 0 < sum(map(len, got)) < len(data)  # the end was never given


def test_missing_files_are_reported_before_streaming(logged):
    ws, rid, _ = logged
    with pytest.raises(NotFoundError, match="no artifact 'nope.bin'"):
        ws.runs.stream_artifact(rid, "nope.bin")
    os.remove(ws.artifacts.blob_path(ws.runs.artifact(rid, "data.bin").digest))
    with pytest.raises(NotFoundError, match="not in the artifact store"):
        ws.runs.stream_artifact(rid, "data.bin")  # raised at once, not on first chunk


def test_encrypted_blobs_stream_and_preview_decrypted(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), key=os.urandom(32))
    data = b"secret " * 50_000
    digest = store.put_bytes(data)
    assert b"secret" not in open(store.blob_path(digest), "rb").read(4096)
    assert store.read_head(digest, 14) == b"secret secret "
    assert b"".join(store.iter_bytes(digest, 4096)) == data
