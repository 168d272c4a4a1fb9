"""The model registry: named models, numbered versions, aliases, lineage.

Example (needs a workspace with data and a model)::

    import shipyard
    ws = shipyard.Workspace.open()
    v = ws.models.register("fraud", run_id, reason="beats v2")
    ws.models.set_alias("fraud", "champion", v.version)
    ws.models.load("fraud@champion").predict(X)
    ws.models.rollback("fraud", "champion", reason="bad canary")

Every change is written to the audit log (``ws.audit``) in the same
transaction. See :class:`Registry` for refs and rollback semantics.
"""

from shipyard.registry._records import (STATUSES, AliasEvent, ModelLineage, ModelSummary,
                                        ModelVersion)
from shipyard.errors import RegistryError
from shipyard.registry._onnx import load_onnx
from shipyard.registry._registry import (DIGEST_TAG, RESERVED_ALIASES, Registry, check_alias,
                                         check_model_name, input_columns,
                                         parse_model_ref)

__all__ = ["DIGEST_TAG", "RESERVED_ALIASES", "STATUSES", "AliasEvent", "ModelLineage", "ModelSummary",
           "ModelVersion", "Registry", "RegistryError", "check_alias", "check_model_name",
           "input_columns", "load_onnx", "parse_model_ref"]
