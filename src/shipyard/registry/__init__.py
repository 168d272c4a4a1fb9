"""The model registry: named models, numbered versions, aliases, lineage.

Example (needs a workspace with data and a model)::

    import shipyard
    ws = shipyard.Workspace.open()
    v = ws.models.register("fraud", run_id, reason="beats v2")
    ws.models.set_alias("fraud", "champion", v.version)
    ws.models.load("fraud@champion").predict(X)
    ws.models.rollback("fraud", "champion", reason="bad canary")

    # a model trained elsewhere: one call (see shipyard.registry._byo)
    ws.models.register("fraud", clf, sample=X.head(100))
    ws.models.register("fraud", "fraud.onnx")

Every change is written to the audit log (``ws.audit``) in the same
transaction. See :class:`Registry` for refs and rollback semantics.
"""

from shipyard.registry._records import (STATUSES, AliasEvent, ModelLineage, ModelSummary,
                                        ModelVersion)
from shipyard.errors import RegistryError
from shipyard.registry._byo import IMPORT_EXPERIMENT, LoggedModel, import_mlflow
from shipyard.registry._formats import OnnxModel, XGBoostModel, load_stored, read_artifact
from shipyard.registry._onnx import load_onnx
from shipyard.registry._reference import REFERENCE_TAG, attach_reference, input_kinds, task_of
from shipyard.registry._registry import (DIGEST_TAG, RESERVED_ALIASES, Registry, check_alias,
                                         check_model_name, input_columns,
                                         parse_model_ref)

__all__ = ["DIGEST_TAG", "IMPORT_EXPERIMENT", "RESERVED_ALIASES", "STATUSES", "AliasEvent",
           "LoggedModel", "ModelLineage", "ModelSummary", "ModelVersion", "OnnxModel", "Registry",
           "RegistryError", "XGBoostModel", "check_alias", "check_model_name", "import_mlflow",
           "input_columns", "load_onnx", "load_stored", "parse_model_ref", "read_artifact",
           "REFERENCE_TAG", "attach_reference", "input_kinds", "task_of"]
