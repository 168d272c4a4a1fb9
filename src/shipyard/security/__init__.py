"""Security: the tamper-evident audit log and API keys (identities and roles to come).

>>> import tempfile, shipyard
>>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
>>> ws.audit.verify().ok
True
"""

from shipyard.errors import (ApiKeyError, AuditError, AuthenticationError, ExpiredKeyError,
                             RevokedKeyError, ScopeError, UnknownKeyError)
from shipyard.security._audit import (AuditEntry, AuditLog, AuditVerification,
                                      audit_key, canonical_json, entry_hash, read_jsonl,
                                      resolve_actor, verify_chain)
from shipyard.security._keys import SCOPES, ApiKeyInfo, ApiKeys

__all__ = ["SCOPES", "ApiKeyError", "ApiKeyInfo", "ApiKeys", "AuditEntry", "AuditError",
           "AuditLog", "AuditVerification", "AuthenticationError", "ExpiredKeyError",
           "RevokedKeyError", "ScopeError", "UnknownKeyError", "audit_key", "canonical_json",
           "entry_hash", "read_jsonl", "resolve_actor", "verify_chain"]
