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


class RegistryError(ShipyardError):
    """A registry request is invalid: a malformed name or ref, a run without a
    model, a forbidden alias move. Nothing was changed."""


class DeploymentError(ShipyardError):
    """A deployment is invalid or cannot be stored; nothing was changed."""


class MonitorError(ShipyardError):
    """A monitoring request is invalid (an unknown model, an empty window, an
    alert rule that does not fit the report) or its result cannot be read."""


class RetrainError(ShipyardError):
    """Retraining from feedback cannot go ahead: too few labelled predictions,
    no champion to judge against, or a project that does not fit the model.
    Raised before anything is registered, deployed or promoted."""


class GenAIError(ShipyardError):
    """A retrieval-augmented generation request (ingest, query, answer,
    evaluation) is invalid or could not be carried out; no index was changed."""


class DocumentError(GenAIError):
    """A document could not be read as text: binary, encrypted, malformed, too
    large, or of an unknown kind."""


class EmptyCorpusError(GenAIError):
    """There is nothing to index: no documents, or no text in any of them."""


class CollectionNotFoundError(GenAIError, NotFoundError):
    """No collection (or no such version of one) exists."""


class EmbeddingError(GenAIError):
    """An embeddings backend failed or returned unusable vectors."""


class EmbeddingDimensionError(EmbeddingError):
    """An embeddings model returned vectors of another dimension than the index
    holds; the index was left untouched."""


class VectorStoreError(GenAIError):
    """A vector store could not be opened, read or written."""


class GenerationError(GenAIError):
    """A chat backend failed or returned no usable answer."""


class PromptNotFoundError(GenAIError, NotFoundError):
    """No prompt template, version or alias has the requested name."""


class JudgeError(GenAIError):
    """An LLM judge is misconfigured (model, prices, criteria, cache)."""


class TraceNotFoundError(GenAIError, NotFoundError):
    """No RAG trace has this id (``ws.rag.trace``)."""


class TraceExportError(GenAIError):
    """RAG traces could not be exported (a bad path or URL, a collector that
    failed or timed out); the traces stay in the workspace, nothing was lost."""


class AuditError(ShipyardError):
    """An audit entry could not be written, or its arguments are invalid."""


class ApiKeyError(ShipyardError):
    """An API key could not be created or used, or its arguments are invalid."""


class AuthenticationError(ApiKeyError):
    """A presented secret does not authenticate (base of the next three)."""


class UnknownKeyError(AuthenticationError):
    """No key has this secret (or the secret is malformed)."""


class RevokedKeyError(AuthenticationError):
    """The key was revoked."""


class ExpiredKeyError(AuthenticationError):
    """The key is past its expiry time."""


class ScopeError(ApiKeyError):
    """The key is valid but lacks the scope the operation needs."""


class ServeError(ShipyardError):
    """A request refused, with the HTTP status a server answers and a stable
    code. Raised by the serving path (decoding, validation, routing) and by
    the library pieces it calls (signature checks, explanation backgrounds).

    Parameters
    ----------
    status
        HTTP status (4xx for the client's mistakes).
    code
        Machine-readable: ``invalid_input``, ``invalid_json``, ``body_too_large``...
    message
        Names the field and the problem.
    headers
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status, self.code = status, code
        self.headers = headers


class OpenAIRequestError(ServeError):
    """A request to the server's OpenAI-compatible endpoints refused, in
    OpenAI's terms: ``param`` names the request field at fault
    (``messages.0.content``), ``code`` is OpenAI's (``model_not_found``,
    ``context_length_exceeded``...)."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None, hint: str | None = None):
        super().__init__(status, code, message, headers, hint=hint)
        self.param = param
