"""Serving: a FastAPI app answering Shipyard's JSON API, the Open Inference
Protocol (KServe v2, binary tensors included) and MLflow's scoring protocol
for registered models, with API keys, limits, metrics and a prediction log;
and an OpenAI-compatible API (``/v1/models``, ``/v1/embeddings``,
``/v1/chat/completions`` answering from RAG collections) on the same keys.

Only HTTP lives here; what the server calls (deployments, loaded models,
signature checks, the prediction log) is in :mod:`shipyard.deploy`.

Example (needs a workspace with data and a model)::

    from shipyard.serve import create_app
    app = create_app(ws, ["fraud@champion"])
    app = create_app(ws, [], rag=["docs"])    # RAG collections only, OpenAI-compatible

Heavy imports (FastAPI, pyarrow) happen when these names are first used.
"""

from __future__ import annotations

from shipyard.lazy import lazy_exports

_EXPORTS = {
    "create_app": "shipyard.serve._app", "run": "shipyard.serve._app",
    "ModelSlot": "shipyard.serve._slots", "ModelSlots": "shipyard.serve._slots",
    "ServeError": "shipyard.errors",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
