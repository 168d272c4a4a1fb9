"""What every CLI command shares: the console, options, the workspace, JSON output."""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from shipyard import Workspace

console = Console()
err_console = Console(stderr=True)


def follow_columns() -> None:
    """Size the consoles by ``$COLUMNS`` as it is now (Rich reads it once, when a
    console is made; a process running several commands may change it)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        console.width = err_console.width = int(columns)
state = {"debug": False}

JSON_HELP = "Print the result as JSON on stdout, and nothing else there."


def json_option(help: str = JSON_HELP) -> Any:
    """The ``--json`` flag of a command."""
    return typer.Option("--json", help=help)


def open_workspace() -> Workspace:
    """The workspace named by --home / SHIPYARD_HOME (the callback sets it)."""
    from shipyard import Workspace

    return Workspace.open()


def set_home(home: str | None) -> None:
    if home:
        os.environ["SHIPYARD_HOME"] = home


# ------------------------------------------------------------------- JSON
def record(obj: Any, **extra: Any) -> dict[str, Any]:
    """A library record (dataclass) as a dict of its public fields, plus ``extra``.

    Private fields (a workspace handle) are left out; nested records are
    converted too. Values are made strict JSON by :func:`print_json`.
    """
    import dataclasses

    data = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if not f.name.startswith("_")}
    data.update(extra)
    return data


def _plain(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return record(value)
    if hasattr(value, "model_dump"):  # a pydantic model
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def print_json(data: Any) -> None:
    """Write ``data`` to stdout as strict JSON: NaN and infinities become null,
    numpy numbers plain numbers, times ISO strings."""
    import json

    from shipyard.data import jsonable

    typer.echo(json.dumps(jsonable(_plain(data)), indent=2, ensure_ascii=False,
                          allow_nan=False))


@contextlib.contextmanager
def stdout_reserved(active: bool = True) -> Iterator[None]:
    """While a ``--json`` command works, send whatever else would reach stdout
    to stderr: progress, a library's prints, even a C extension's writes (the
    file descriptor is redirected too), so stdout holds only the JSON."""
    if not active:
        yield
        return
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
        target = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's stream: no descriptor
        fd = None
    saved = None
    if fd is not None:
        saved = os.dup(fd)
        os.dup2(target, fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


# ------------------------------------------------------------- formatting
def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return _dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def fmt_when(epoch: float | None) -> str:
    """A time in a table: to the minute, to keep the column narrow."""
    if epoch is None:
        return "-"
    return _dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_num(x: object) -> str:
    """A number for a table: 4 significant digits; missing (None, NaN) as ``-``."""
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.4g}"
    return "-" if x is None else str(x)
