"""Shipyard: the AI-engineering lifecycle, embedded by default.

>>> import shipyard
>>> ws = shipyard.Workspace.open()            # doctest: +SKIP
"""

from shipyard._workspace import Workspace
from shipyard.errors import ShipyardError

__version__ = "0.1.0"
__all__ = ["ShipyardError", "Workspace", "__version__"]
