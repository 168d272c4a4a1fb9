"""One exception hierarchy for all of Shipyard.

Every error says what was wrong, where, and how to fix it. The CLI prints
``str(error)`` without a traceback, so messages must stand on their own.
"""

from __future__ import annotations


class ShipyardError(Exception):
    """Base class of every error Shipyard raises on purpose.

    Parameters
    ----------
    message
        What went wrong and where.
    hint
        How to fix it; appended to the message on its own line.
    """

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ConfigError(ShipyardError):
    """A setting, environment variable or project file is invalid."""


class NotFoundError(ShipyardError):
    """A named object (dataset, version, run, blob, ...) does not exist."""


class StoreError(ShipyardError):
    """The metadata database could not be used."""


class ArtifactError(ShipyardError):
    """The artifact store could not store or return a blob."""


class ArtifactNotFoundError(ArtifactError, NotFoundError):
    """No blob with the requested digest is in the store."""


class ArtifactCorruptedError(ArtifactError):
    """A blob's content no longer matches its sha256 digest."""


class EncryptionError(ArtifactError):
    """An encrypted blob could not be read: missing or wrong key, or tampering."""


class DataError(ShipyardError):
    """Data could not be read from a source, or is not what was expected."""


class SourceError(DataError):
    """A data source (file, SQL query, HTTP API) could not be read."""


class ExpectationsFailed(DataError):
    """A dataset failed its expectations; nothing was registered.

    Attributes
    ----------
    report
        The per-column, per-check validation report (see ``shipyard.data``).
    """

    def __init__(self, message: str, report, *, hint: str | None = None):
        self.report = report
        super().__init__(message, hint=hint)


class TrackingError(ShipyardError):
    """A run, metric or parameter could not be recorded."""


class FilterSyntaxError(ShipyardError):
    """A search filter expression could not be parsed."""


class TrainingError(ShipyardError):
    """A training or search could not run, or gave no model."""
