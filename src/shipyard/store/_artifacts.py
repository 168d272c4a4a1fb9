"""Content-addressed artifact store over fsspec.

Blobs live at ``<root>/blobs/<first two hex digits>/<sha256>``. The digest is
the sha256 of the plaintext, so identical content is stored once whatever the
encryption. Writes are atomic (temporary file + rename on local disks; object
stores publish whole objects anyway). Every read re-hashes the content.

With a key, blobs are encrypted with AES-256-GCM: ``MAGIC | nonce | ciphertext``
with the digest as associated data, so a blob cannot be swapped for another.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shipyard.errors import (ArtifactCorruptedError, ArtifactError, ArtifactNotFoundError,
                             ConfigError, EncryptionError)

MAGIC = b"SHIPYARD-AESGCM1\n"
NONCE_BYTES = 12
CHUNK = 1 << 20
HEX = set("0123456789abcdef")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Refuse anything that is not a lowercase sha256 hex digest: digests end
    up in paths, so this also keeps ``../`` and friends out."""
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= HEX:
        raise ArtifactError(f"{digest!r} is not a sha256 digest (64 lowercase hex digits)")
    return digest


@dataclass
class GcReport:
    """What a garbage collection found and did."""

    scanned: int = 0
    referenced: int = 0
    deleted: list[str] = field(default_factory=list)
    kept_young: int = 0
    freed_bytes: int = 0


class ArtifactStore:
    """Store and return blobs by sha256.

    Parameters
    ----------
    url
        A local path or any fsspec URL (``memory://x``, ``s3://bucket/prefix``).
    key
        Optional 32-byte AES key; when given, new blobs are encrypted.
    storage_options
        Passed to the fsspec filesystem.
    """

    def __init__(self, url: str, *, key: bytes | None = None, storage_options: dict | None = None):
        import fsspec

        self.url = str(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"cannot open artifact store {self.url!r}: {exc}",
                              hint="use a local path or an fsspec URL whose package is installed") from exc
        self.root = root.rstrip("/")
        self.local = _is_local(self.fs)
        self._key = key
        self._aead = None
        if key is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(key)
        if self.local:
            os.makedirs(self._path("blobs"), exist_ok=True)
            os.makedirs(self._path("tmp"), exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r}, encrypted={self._key is not None})"

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def blob_path(self, digest: str) -> str:
        check_digest(digest)
        return self._path("blobs", digest[:2], digest)

    # --------------------------------------------------------------- write
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its sha256 digest. Idempotent."""
        digest = sha256_bytes(data)
        if not self.exists(digest):
            self._write(digest, self._seal(digest, data))
        return digest

    def put_file(self, path: str | os.PathLike) -> str:
        """Store a local file's content; return its digest. Streams: the file
        is hashed, then copied (and encrypted) ``CHUNK`` bytes at a time, so
        memory does not grow with its size."""
        try:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                if not self.exists(digest):
                    fh.seek(0)
                    self._write_stream(digest, self._sealed_blocks(digest, fh))
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror}") from exc
        return digest

    def _sealed_blocks(self, digest: str, fh: BinaryIO) -> Iterator[bytes]:
        """The blob of a file's content, a block at a time: as :meth:`_seal`
        makes it (``MAGIC | nonce | ciphertext | tag``, AES-GCM encrypting
        block by block gives the same bytes as encrypting the whole)."""
        blocks = iter(lambda: fh.read(CHUNK), b"")
        if self._aead is None:
            yield from blocks
            return
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        nonce = os.urandom(NONCE_BYTES)
        encryptor = Cipher(algorithms.AES(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(digest.encode())
        yield MAGIC + nonce
        for block in blocks:
            yield encryptor.update(block)
        yield encryptor.finalize() + encryptor.tag

    def _seal(self, digest: str, data: bytes) -> bytes:
        if self._aead is None:
            return data
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, data, digest.encode())

    def _write(self, digest: str, payload: bytes) -> None:
        self._write_stream(digest, [payload])

    def _write_stream(self, digest: str, blocks: Iterable[bytes]) -> None:
        """Write a blob from its blocks: whole or not at all (a local blob is
        renamed into place once complete; an object store publishes the object
        when its upload is closed)."""
        final = self.blob_path(digest)
        try:
            if self.local:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                tmp = self._path("tmp", f"{digest}.{uuid.uuid4().hex}.part")
                try:
                    with open(tmp, "wb") as fh:
                        fh.writelines(blocks)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, final)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            else:
                try:
                    with self.fs.open(final, "wb") as fh:
                        fh.writelines(blocks)
                except BaseException:  # closing published a part: no blob rather than that
                    with contextlib.suppress(Exception):
                        self.fs.rm_file(final)
                    raise
        except OSError as exc:
            raise ArtifactError(f"cannot write blob {digest} to {self.url}: {exc}") from exc

    # ---------------------------------------------------------------- read
    def exists(self, digest: str) -> bool:
        return self.fs.exists(self.blob_path(digest))

    def get_bytes(self, digest: str) -> bytes:
        """Return a blob's content, verified against its digest.

        Raises
        ------
        ArtifactNotFoundError
            No such blob.
        ArtifactCorruptedError
            The content does not hash to ``digest``.
        EncryptionError
            The blob is encrypted and the key is missing or wrong, or the
            ciphertext was tampered with.
        """
        path = self.blob_path(digest)
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(
                f"blob {digest} is not in the artifact store {self.url}",
                hint="it may have been garbage-collected or the store URL may be wrong",
            ) from exc
        data = self._open(digest, raw, path)
        if sha256_bytes(data) != digest:
            raise ArtifactCorruptedError(
                f"blob {digest} at {path} is corrupted: its content hashes to "
                f"{sha256_bytes(data)}",
                hint="restore it from a backup or re-create the object that wrote it",
            )
        return data

    def _open(self, digest: str, raw: bytes, path: str) -> bytes:
        if not raw.startswith(MAGIC):
            return raw
        if sha256_bytes(raw) == digest:  # plaintext that happens to start with MAGIC
            return raw
        if self._aead is None:
            raise EncryptionError(
                f"blob {digest} is encrypted and no key is configured",
                hint="set SHIPYARD_ENCRYPTION_KEY or SHIPYARD_ENCRYPTION_KEY_FILE",
            )
        from cryptography.exceptions import InvalidTag

        body = raw[len(MAGIC):]
        nonce, ciphertext = body[:NONCE_BYTES], body[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, digest.encode())
        except InvalidTag as exc:
            raise EncryptionError(
                f"blob {digest} at {path} could not be decrypted: the key is wrong or "
                "the blob was tampered with",
                hint="check SHIPYARD_ENCRYPTION_KEY; if the key is right, the blob is corrupted",
            ) from exc

    def _not_found(self, digest: str) -> ArtifactNotFoundError:
        return ArtifactNotFoundError(
            f"blob {digest} is not in the artifact store {self.url}",
            hint="it may have been garbage-collected or the store URL may be wrong")

    def read_head(self, digest: str, max_bytes: int) -> bytes:
        """The first ``max_bytes`` of a blob, for a preview, reading no more
        than that of a plaintext blob. Not verified against the digest (that
        takes the whole content); an encrypted blob is decrypted and verified
        whole (AES-GCM authenticates only the whole ciphertext), then cut.
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        try:
            with self.fs.open(self.blob_path(digest), "rb") as fh:
                head = fh.read(max(max_bytes, len(MAGIC)))
        except FileNotFoundError as exc:
            raise self._not_found(digest) from exc
        if head.startswith(MAGIC):  # encrypted (or plaintext that looks so): the slow way
            return self.get_bytes(digest)[:max_bytes]
        return head[:max_bytes]

    def iter_bytes(self, digest: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """A blob's content in chunks of ``chunk_size``, in bounded memory,
        verified as it goes: each chunk is held back until the next has been
        read, and the last is given only once the whole hashes to ``digest``,
        so a corrupted blob raises :class:`ArtifactCorruptedError` before its
        end is sent. An encrypted blob is decrypted whole first (AES-GCM).
        """
        path = self.blob_path(digest)
        try:  # opened now, so that a missing blob is known before anything is sent
            fh = self.fs.open(path, "rb")
        except FileNotFoundError as exc:
            raise self._not_found(digest) from exc
        return self._chunks(fh, digest, path, chunk_size)

    def _chunks(self, fh, digest: str, path: str, chunk_size: int) -> Iterator[bytes]:
        with fh:
            pending = fh.read(chunk_size)
            if pending.startswith(MAGIC):
                data = self.get_bytes(digest)
                for i in range(0, len(data), chunk_size):
                    yield data[i:i + chunk_size]
                return
            hasher = hashlib.sha256()
            while True:
                hasher.update(pending)
                following = fh.read(chunk_size) if pending else b""
                if not following:
                    if hasher.hexdigest() != digest:
                        raise ArtifactCorruptedError(
                            f"blob {digest} at {path} is corrupted: its content hashes to "
                            f"{hasher.hexdigest()}",
                            hint="restore it from a backup or re-create the object that "
                                 "wrote it")
                    if pending:
                        yield pending
                    return
                yield pending
                pending = following

    def open(self, digest: str) -> BinaryIO:
        """A verified, in-memory file object of the blob."""
        import io

        return io.BytesIO(self.get_bytes(digest))

    def get_file(self, digest: str, dest: str | os.PathLike) -> Path:
        """Write a verified blob to ``dest`` atomically."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as fh:  # verified as it streams (see iter_bytes)
                fh.writelines(self.iter_bytes(digest))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    # ------------------------------------------------------------- listing
    def iter_blobs(self) -> Iterator[tuple[str, float, int]]:
        """Yield ``(digest, modified_time, size)`` of every blob."""
        base = self._path("blobs")
        if not self.fs.exists(base):
            return
        for info in self.fs.find(base, detail=True).values():
            name = info["name"].rsplit("/", 1)[-1]
            if len(name) != 64 or not set(name) <= HEX:
                continue
            yield name, _mtime(info), int(info.get("size") or 0)

    def delete(self, digest: str) -> None:
        try:
            self.fs.rm_file(self.blob_path(digest))
        except FileNotFoundError:
            pass

    def gc(self, referenced: Iterable[str], *, grace_seconds: float = 3600.0,
           dry_run: bool = False) -> GcReport:
        """Delete blobs that nothing references.

        Blobs younger than ``grace_seconds`` are kept: a writer stores its blob
        before it commits the record that references it.
        """
        keep = set(referenced)
        report = GcReport(referenced=len(keep))
        now = time.time()
        for digest, mtime, size in list(self.iter_blobs()):
            report.scanned += 1
            if digest in keep:
                continue
            if now - mtime < grace_seconds:
                report.kept_young += 1
                continue
            if not dry_run:
                self.delete(digest)
            report.deleted.append(digest)
            report.freed_bytes += size
        if self.local and not dry_run:  # temp files left by crashed writers
            for tmp in Path(self._path("tmp")).glob("*.part"):
                if now - tmp.stat().st_mtime >= grace_seconds:
                    tmp.unlink(missing_ok=True)
        return report


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _mtime(info: dict) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value)
