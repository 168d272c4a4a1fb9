"""What every CLI command shares: the console, options, the workspace."""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from shipyard import Workspace

console = Console()
err_console = Console(stderr=True)
state = {"debug": False}


def open_workspace() -> Workspace:
    """The workspace named by --home / SHIPYARD_HOME (the callback sets it)."""
    from shipyard import Workspace

    return Workspace.open()


def set_home(home: str | None) -> None:
    if home:
        os.environ["SHIPYARD_HOME"] = home


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return _dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_num(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)
