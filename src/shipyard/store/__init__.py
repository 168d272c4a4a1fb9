"""Storage under everything: the metadata DB and the artifact store."""

from shipyard.store._artifacts import ArtifactStore, GcReport, sha256_bytes
from shipyard.store._db import Database, normalise_url

__all__ = ["ArtifactStore", "Database", "GcReport", "normalise_url", "sha256_bytes"]
