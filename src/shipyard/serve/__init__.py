"""Serving: a FastAPI app answering Shipyard's JSON API, the Open Inference
Protocol (KServe v2, binary tensors included) and MLflow's scoring protocol
for registered models, with API keys, limits, metrics and a prediction log.

>>> from shipyard.serve import create_app                         # doctest: +SKIP
>>> app = create_app(ws, ["fraud@champion"])                       # doctest: +SKIP
>>> read_predictions(ws, model="fraud").shape                      # doctest: +SKIP

Heavy imports (FastAPI, pyarrow) happen when these names are first used.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "create_app": "shipyard.serve._app", "run": "shipyard.serve._app",
    "ModelSlot": "shipyard.serve._models", "ModelSlots": "shipyard.serve._models",
    "LoadedModel": "shipyard.serve._models", "Prediction": "shipyard.serve._models",
    "PredictionLog": "shipyard.serve._predlog",
    "read_predictions": "shipyard.serve._predlog", "read_feedback": "shipyard.serve._predlog",
    "Schema": "shipyard.serve._validation", "ServeError": "shipyard.serve._errors",
    "Deployment": "shipyard.serve._rollout", "DeploymentError": "shipyard.serve._rollout",
    "DeploymentRecord": "shipyard.serve._rollout", "Deployments": "shipyard.serve._rollout",
    "RollbackPolicy": "shipyard.serve._rollout", "load_deployments": "shipyard.serve._rollout",
}
__all__ = ["Deployment", "DeploymentError", "DeploymentRecord", "Deployments", "LoadedModel",
           "ModelSlot", "ModelSlots", "Prediction", "PredictionLog", "RollbackPolicy",
           "Schema", "ServeError", "create_app", "load_deployments", "read_feedback",
           "read_predictions", "run"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'shipyard.serve' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
