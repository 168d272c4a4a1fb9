import base64
import os
import time

import pytest

from shipyard import Workspace
from shipyard.config import load_settings
from shipyard.errors import (ArtifactCorruptedError, ArtifactError, ArtifactNotFoundError,
                             ConfigError, EncryptionError)
from shipyard.store import ArtifactStore, sha256_bytes
from shipyard.store._artifacts import MAGIC

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "blobs"))
    return ArtifactStore(f"memory://{tmp_path.name}")


def test_round_trip_is_content_addressed(store):
    digest = store.put_bytes(b"hello world")
    assert digest == sha256_bytes(b"hello world")
    assert store.get_bytes(digest) == b"hello world"
    assert store.put_bytes(b"hello world") == digest  # idempotent
    assert [d for d, _, _ in store.iter_blobs()] == [digest]


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    store = ArtifactStore(str(tmp_path))
    digest = store.put_bytes(os.urandom(3 << 20))
    assert list((tmp_path / "tmp").iterdir()) == []
    assert (tmp_path / "blobs" / digest[:2] / digest).stat().st_size == 3 << 20


def test_put_file_and_get_file(tmp_path):
    store = ArtifactStore(str(tmp_path / "s"))
    src = tmp_path / "model.bin"
    src.write_bytes(b"\x00\x01weights")
    digest = store.put_file(src)
    out = store.get_file(digest, tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == b"\x00\x01weights"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="cannot read"):
        ArtifactStore(str(tmp_path)).put_file(tmp_path / "nope.bin")


def test_corrupted_blob_is_refused_by_name(tmp_path):
    store = ArtifactStore(str(tmp_path))
    digest = store.put_bytes(b"original content")
    (tmp_path / "blobs" / digest[:2] / digest).write_bytes(b"original c0ntent")
    with pytest.raises(ArtifactCorruptedError) as info:
        store.get_bytes(digest)
    assert digest in str(info.value)


def test_unknown_digest_is_not_found(store):
    with pytest.raises(ArtifactNotFoundError, match="not in the artifact store"):
        store.get_bytes("0" * 64)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "abc", "G" * 64, "A" * 64, "", None, 42,
                                 "0" * 63 + "/"])
def test_hostile_digests_are_refused(store, bad):
    with pytest.raises(ArtifactError, match="not a sha256 digest"):
        store.get_bytes(bad)


def test_plaintext_that_starts_with_the_magic_is_still_readable(tmp_path):
    store = ArtifactStore(str(tmp_path), key=KEY)
    plain = ArtifactStore(str(tmp_path))
    data = MAGIC + b"looks encrypted but is not"
    digest = plain.put_bytes(data)
    assert store.get_bytes(digest) == data


class TestEncryption:
    def test_round_trip_and_ciphertext_on_disk(self, tmp_path):
        store = ArtifactStore(str(tmp_path), key=KEY)
        secret = b"patient 17: diagnosis X" * 100
        digest = store.put_bytes(secret)
        raw = (tmp_path / "blobs" / digest[:2] / digest).read_bytes()
        assert raw.startswith(MAGIC) and b"patient" not in raw
        assert store.get_bytes(digest) == secret
        assert digest == sha256_bytes(secret)  # same digest as unencrypted: dedupe works

    def test_wrong_key_is_refused(self, tmp_path):
        digest = ArtifactStore(str(tmp_path), key=KEY).put_bytes(b"secret")
        with pytest.raises(EncryptionError, match="key is wrong or the blob was tampered"):
            ArtifactStore(str(tmp_path), key=OTHER_KEY).get_bytes(digest)

    def test_missing_key_is_refused_with_a_hint(self, tmp_path):
        digest = ArtifactStore(str(tmp_path), key=KEY).put_bytes(b"secret")
        with pytest.raises(EncryptionError) as info:
            ArtifactStore(str(tmp_path)).get_bytes(digest)
        assert "SHIPYARD_ENCRYPTION_KEY" in str(info.value)

    def test_flipped_ciphertext_bit_is_detected(self, tmp_path):
        store = ArtifactStore(str(tmp_path), key=KEY)
        digest = store.put_bytes(b"amount=100")
        path = tmp_path / "blobs" / digest[:2] / digest
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0x01
        path.write_bytes(bytes(raw))
        with pytest.raises(EncryptionError, match="tampered"):
            store.get_bytes(digest)

    def test_swapping_two_encrypted_blobs_is_detected(self, tmp_path):
        store = ArtifactStore(str(tmp_path), key=KEY)
        a, b = store.put_bytes(b"model A"), store.put_bytes(b"model B")
        pa_, pb = (tmp_path / "blobs" / d[:2] / d for d in (a, b))
        pa_.write_bytes(pb.read_bytes())
        with pytest.raises(EncryptionError):
            store.get_bytes(a)


class TestKeys:
    def test_key_from_env_hex_base64_and_file(self, tmp_path, monkeypatch):
        monkeypatch.delenv("SHIPYARD_ENCRYPTION_KEY", raising=False)
        monkeypatch.setenv("SHIPYARD_ENCRYPTION_KEY", KEY.hex())
        assert load_settings(tmp_path).encryption_key == KEY
        monkeypatch.setenv("SHIPYARD_ENCRYPTION_KEY", base64.b64encode(KEY).decode())
        assert load_settings(tmp_path).encryption_key == KEY
        monkeypatch.delenv("SHIPYARD_ENCRYPTION_KEY")
        keyfile = tmp_path / "key"
        keyfile.write_text(base64.b64encode(KEY).decode() + "\n")
        monkeypatch.setenv("SHIPYARD_ENCRYPTION_KEY_FILE", str(keyfile))
        assert load_settings(tmp_path).encryption_key == KEY

    @pytest.mark.parametrize("bad", ["short", "00" * 31, base64.b64encode(b"x" * 16).decode(),
                                     "z" * 64, ""])
    def test_malformed_keys_are_refused(self, tmp_path, monkeypatch, bad):
        monkeypatch.setenv("SHIPYARD_ENCRYPTION_KEY", bad or " ")
        with pytest.raises(ConfigError, match="32-byte key"):
            load_settings(tmp_path)

    def test_missing_key_file_is_a_clear_error(self, tmp_path, monkeypatch):
        monkeypatch.delenv("SHIPYARD_ENCRYPTION_KEY", raising=False)
        monkeypatch.setenv("SHIPYARD_ENCRYPTION_KEY_FILE", str(tmp_path / "absent"))
        with pytest.raises(ConfigError, match="cannot read the key file"):
            load_settings(tmp_path)

    def test_settings_repr_never_shows_the_key(self, tmp_path):
        settings = load_settings(tmp_path, encryption_key=KEY,
                                 db_url="postgresql://u:hunter2@db/x")
        assert KEY.hex() not in repr(settings) and "hunter2" not in repr(settings)

    def test_workspace_encrypts_with_configured_key(self, tmp_path):
        ws = Workspace.open(tmp_path, encryption_key=KEY.hex())
        digest = ws.artifacts.put_bytes(b"at rest")
        assert b"at rest" not in (tmp_path / "artifacts" / "blobs" / digest[:2] / digest).read_bytes()
        ws.close()


def test_gc_removes_only_old_unreferenced_blobs(tmp_path):
    store = ArtifactStore(str(tmp_path))
    keep, old, young = (store.put_bytes(x) for x in (b"keep", b"old", b"young"))
    past = time.time() - 7200
    for d in (keep, old):
        os.utime(tmp_path / "blobs" / d[:2] / d, (past, past))
    dry = store.gc({keep}, grace_seconds=3600, dry_run=True)
    assert dry.deleted == [old] and store.exists(old)
    report = store.gc({keep}, grace_seconds=3600)
    assert report.deleted == [old] and report.kept_young == 1 and report.freed_bytes == 3
    assert store.exists(keep) and store.exists(young) and not store.exists(old)


def test_workspace_gc_keeps_blobs_referenced_by_records(workspace):
    from shipyard.store.tables import ExperimentRow, RunRow

    referenced = workspace.artifacts.put_bytes(b"environment json")
    orphan = workspace.artifacts.put_bytes(b"nobody points here")
    with workspace.db.write() as s:
        s.add(ExperimentRow(id=1, name="e", created_at=0.0))
        s.flush()
        s.add(RunRow(id="r1", experiment_id=1, status="FINISHED", start_time=0.0,
                     environment_digest=referenced))
    assert referenced in workspace.referenced_digests()
    report = workspace.gc(grace_seconds=0)
    assert report.deleted == [orphan]
    assert workspace.artifacts.get_bytes(referenced) == b"environment json"


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_put_file_streams_in_bounded_memory(tmp_path, key):
    import tracemalloc

    store = ArtifactStore(str(tmp_path / "s"), key=key)
    data = os.urandom(12 << 20)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    tracemalloc.start()
    try:
        digest = store.put_file(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == sha256_bytes(data)
    assert peak < 4 << 20  # a few 1 MiB blocks, not the 12 MiB file
    assert store.get_bytes(digest) == data
    assert store.get_file(digest, tmp_path / "copy.bin").read_bytes() == data
    assert store.put_file(src) == digest  # idempotent
    assert list((tmp_path / "s" / "tmp").iterdir()) == []


def test_put_file_to_an_object_store_round_trips(tmp_path):
    store = ArtifactStore(f"memory://{tmp_path.name}", key=KEY)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    digest = store.put_file(src)
    assert store.get_bytes(digest) == src.read_bytes()


def test_put_file_encrypts_as_put_bytes_does(tmp_path):
    store = ArtifactStore(str(tmp_path / "s"), key=KEY)
    src = tmp_path / "secret.txt"
    src.write_bytes(b"the launch code is 0000" * 100_000)
    digest = store.put_file(src)
    raw = (tmp_path / "s" / "blobs" / digest[:2] / digest).read_bytes()
    assert raw.startswith(MAGIC) and b"launch code" not in raw
    with pytest.raises(EncryptionError, match="no key"):
        ArtifactStore(str(tmp_path / "s")).get_bytes(digest)
    with pytest.raises(EncryptionError, match="could not be decrypted"):
        ArtifactStore(str(tmp_path / "s"), key=OTHER_KEY).get_bytes(digest)
    assert store.get_bytes(digest) == src.read_bytes()


def test_get_file_of_a_corrupted_blob_leaves_nothing(tmp_path):
    store = ArtifactStore(str(tmp_path / "s"))
    digest = store.put_bytes(os.urandom(3 << 20))
    path = tmp_path / "s" / "blobs" / digest[:2] / digest
    path.write_bytes(b"x" + path.read_bytes()[1:])
    with pytest.raises(ArtifactCorruptedError):
        store.get_file(digest, tmp_path / "out" / "copy.bin")
    assert list((tmp_path / "out").iterdir()) == []

