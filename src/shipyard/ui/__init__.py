"""The web UI: runs, datasets, models, deployments, monitoring and the audit
log in a browser. The top stage beside ``serve`` and ``cli``: it calls the
library through the workspace and renders; it holds no logic of its own.

Pages are rendered on the server (Jinja2, autoescaped) and updated in part
with htmx; curves are drawn by uPlot from points the server has already cut
down with LTTB. Both libraries ship inside the package (``static/vendor``):
the UI works offline, with no build step.

Run it with ``shipyard ui``, beside the prediction server with ``shipyard
serve MODEL --ui`` (under ``/ui``, same port, same API keys), or mount the
app elsewhere::

    import shipyard
    from shipyard.ui import create_ui_app
    app = create_ui_app(shipyard.Workspace.open())   # an ASGI app

Names resolve lazily, so ``import shipyard.ui`` loads no FastAPI.
"""

from __future__ import annotations

from shipyard.lazy import lazy_exports

_EXPORTS = {
    "create_ui_app": "shipyard.ui._app",
    "run": "shipyard.ui._app",
    "lttb": "shipyard.ui._lttb",
    "MAX_POINTS": "shipyard.ui._lttb",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
