"""Shipyard: the AI-engineering lifecycle, embedded by default.

>>> import shipyard, tempfile
>>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
>>> ws.counts()["models"]
0

Names resolve lazily, so ``import shipyard`` (and ``shipyard --help``) loads
no SQLAlchemy, pandas or scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    from shipyard._workspace import Workspace

__version__ = "0.1.0"
__all__ = ["ShipyardError", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from shipyard._workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
