"""Settings: the one place that reads Shipyard's environment variables.

=============================  ==============================================
variable                       meaning
=============================  ==============================================
``SHIPYARD_HOME``              workspace folder (default ``./.shipyard``)
``SHIPYARD_DB_URL``            metadata DB URL (default SQLite in the home)
``SHIPYARD_ARTIFACTS``         artifact store URL or path (default
                               ``<home>/artifacts``)
``SHIPYARD_ENCRYPTION_KEY``    32-byte key, base64 or hex, enables AES-256-GCM
                               encryption of artifacts at rest
``SHIPYARD_ENCRYPTION_KEY_FILE`` a file holding that key
=============================  ==============================================
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import ConfigError

KEY_BYTES = 32


@dataclass(frozen=True)
class Settings:
    """Resolved locations and secrets of one workspace."""

    home: Path
    db_url: str
    artifacts: str
    encryption_key: bytes | None = None

    def __repr__(self) -> str:  # never print the key
        key = "set" if self.encryption_key else "none"
        return (f"Settings(home={str(self.home)!r}, db_url={_redact(self.db_url)!r}, "
                f"artifacts={self.artifacts!r}, encryption_key={key})")


def _redact(url: str) -> str:
    """Hide a password in a database URL."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def parse_key(text: str, *, source: str) -> bytes:
    """Decode a 32-byte key written as 64 hex digits or base64.

    >>> len(parse_key("00" * 32, source="test"))
    32
    """
    text = text.strip()
    key: bytes | None = None
    if len(text) == 2 * KEY_BYTES:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != KEY_BYTES:
        raise ConfigError(
            f"the encryption key from {source} is not a 32-byte key in hex or base64",
            hint="create one with `shipyard new-key` and keep it somewhere safe",
        )
    return key


def load_settings(
    home: str | os.PathLike | None = None,
    *,
    db_url: str | None = None,
    artifacts: str | None = None,
    encryption_key: bytes | str | None = None,
) -> Settings:
    """Resolve settings: explicit arguments win over environment variables,
    which win over defaults."""
    env = os.environ
    home_path = Path(home or env.get("SHIPYARD_HOME") or ".shipyard").expanduser().resolve()
    url = db_url or env.get("SHIPYARD_DB_URL") or f"sqlite:///{home_path / 'shipyard.db'}"
    store = artifacts or env.get("SHIPYARD_ARTIFACTS") or str(home_path / "artifacts")

    key: bytes | None
    if isinstance(encryption_key, bytes):
        if len(encryption_key) != KEY_BYTES:
            raise ConfigError(f"encryption_key must be {KEY_BYTES} bytes, got {len(encryption_key)}")
        key = encryption_key
    elif isinstance(encryption_key, str):
        key = parse_key(encryption_key, source="the encryption_key argument")
    elif env.get("SHIPYARD_ENCRYPTION_KEY"):
        key = parse_key(env["SHIPYARD_ENCRYPTION_KEY"], source="SHIPYARD_ENCRYPTION_KEY")
    elif env.get("SHIPYARD_ENCRYPTION_KEY_FILE"):
        path = Path(env["SHIPYARD_ENCRYPTION_KEY_FILE"]).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the key file {path} named by SHIPYARD_ENCRYPTION_KEY_FILE: {exc.strerror}"
            ) from exc
        key = parse_key(text, source=str(path))
    else:
        key = None
    return Settings(home=home_path, db_url=url, artifacts=store, encryption_key=key)
