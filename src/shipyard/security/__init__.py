"""Security: the tamper-evident audit log (identities, roles and API keys to come).

>>> import tempfile, shipyard
>>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
>>> ws.audit.verify().ok
True
"""

from shipyard.security._audit import (AuditEntry, AuditError, AuditLog, AuditVerification,
                                      audit_key, canonical_json, entry_hash, read_jsonl,
                                      resolve_actor, verify_chain)

__all__ = ["AuditEntry", "AuditError", "AuditLog", "AuditVerification", "audit_key",
           "canonical_json", "entry_hash", "read_jsonl", "resolve_actor", "verify_chain"]
