"""The model registry: named models, numbered versions, aliases, lineage.

>>> import shipyard                                            # doctest: +SKIP
>>> ws = shipyard.Workspace.open()                             # doctest: +SKIP
>>> v = ws.models.register("fraud", run_id, reason="beats v2")  # doctest: +SKIP
>>> ws.models.set_alias("fraud", "champion", v.version)        # doctest: +SKIP
>>> ws.models.load("fraud@champion").predict(X)                # doctest: +SKIP
>>> ws.models.rollback("fraud", "champion", reason="bad canary")  # doctest: +SKIP

Every change is written to the audit log (``ws.audit``) in the same
transaction. See :class:`Registry` for refs and rollback semantics.
"""

from shipyard.registry._records import (STATUSES, AliasEvent, ModelLineage, ModelSummary,
                                        ModelVersion)
from shipyard.registry._registry import (RESERVED_ALIASES, Registry, RegistryError, check_alias,
                                         check_model_name, parse_model_ref)

__all__ = ["RESERVED_ALIASES", "STATUSES", "AliasEvent", "ModelLineage", "ModelSummary",
           "ModelVersion", "Registry", "RegistryError", "check_alias", "check_model_name",
           "parse_model_ref"]
