"""Tables that stay readable in any terminal, 80 columns or a pipe included.

A command describes the columns it can show (:class:`Col`), picks the
defaults, lets ``--columns`` choose others (:func:`choose`), and prints with
:func:`print_table`. Rich, left alone, squeezes every column of a table too
wide for the terminal until some read ``e…``. Here every column gets at
least its longest word (:func:`fit`); default columns that cannot get it are
left out, least useful first, and named under the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@dataclass(frozen=True)
class Col:
    """One column a command can show.

    Parameters
    ----------
    name
        What ``--columns`` calls it (and its header, unless ``header`` is given).
    cell
        Rich markup for one record.
    header
        The header when it differs from ``name`` (a metric's bare key).
    justify
        ``left`` or ``right`` (numbers).
    whole
        Never wrapped: ids, refs, times, numbers stay on one line, uncut.
    """

    name: str
    cell: Callable[[Any], str]
    header: str | None = None
    justify: str = "left"
    whole: bool = False


def columns_option(names: Iterable[str], default: Iterable[str], more: str = "") -> Any:
    """The ``--columns`` option of a table command, its help naming every column."""
    return typer.Option(
        "--columns", "-c", metavar="NAMES",
        help=f"Columns to show, comma-separated, in order: {', '.join(names)}{more}. "
             f"Default: {','.join(default)} (those that do not fit the terminal are left "
             "out and named under the table).")


def choose(requested: str | None, available: Mapping[str, Col], default: Sequence[str], *,
           dynamic: Callable[[str], Col | None] | None = None, more: str = "",
           ) -> tuple[list[Col], bool]:
    """The columns to show and whether the user named them.

    ``dynamic`` resolves names that are not in ``available`` (``metrics.auc``);
    ``more`` tells what else it accepts, for the error.

    Raises
    ------
    typer.BadParameter
        A name is unknown; the message lists the valid ones.
    """
    if requested is None:
        return [available[name] for name in default], False
    names = [name.strip() for name in requested.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter(f"name at least one column: {', '.join(available)}{more}",
                                 param_hint="'--columns'")
    chosen: list[Col] = []
    unknown: list[str] = []
    for name in names:
        col = available.get(name) or (dynamic(name) if dynamic else None)
        if col is None:
            unknown.append(name)
        elif col not in chosen:
            chosen.append(col)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise typer.BadParameter(
            f"unknown column{plural} {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(available)}{more}", param_hint="'--columns'")
    return chosen, True


def print_table(console: Console, records: Sequence[Any], cols: Sequence[Col], *,
                title: str | None = None, optional: Sequence[str] = (),
                explicit: bool = False, **table_kwargs: Any) -> None:
    """Print one row a record, fitted to the console's width.

    When the default columns do not all fit, those named in ``optional`` are
    left out in that order until the rest do, and a caption names them.
    Columns the user chose (``explicit``) are all shown, folded if they must.
    """
    shown = list(cols)
    hidden: list[str] = []
    while True:
        table = _build(records, shown, title, table_kwargs)
        if fit(table, console) or explicit:
            break
        left = [name for name in optional if any(c.name == name for c in shown)]
        if not left:
            break
        shown = [c for c in shown if c.name != left[0]]
        hidden.append(left[0])
    if hidden:
        table.caption = (f"hidden to fit {console.width} columns: {', '.join(hidden)}; "
                         "see --columns")
    console.print(table)


def _build(records: Sequence[Any], cols: Sequence[Col], title: str | None,
           table_kwargs: Mapping[str, Any]) -> Table:
    from rich.table import Table

    table = Table(title=title, **table_kwargs)
    for col in cols:
        table.add_column(col.header or col.name, justify=col.justify, no_wrap=col.whole,
                         overflow="fold")
    for record in records:
        table.add_row(*(col.cell(record) for col in cols))
    return table


def fit(table: Table, console: Console) -> bool:
    """Size ``table``'s columns for ``console``; True when each got its longest word.

    A table that fits as it is keeps Rich's layout. Otherwise the widest
    columns give way first, none below its longest word (nor, for a column
    that never wraps, below its longest line); Rich itself would squeeze every
    column alike, down to ``e…``. When even that is too wide, the result is
    False, headers stay whole as far as they can, and cells fold (never an
    ellipsis).
    """
    columns = table.columns
    if not columns:
        return True
    _, right, _, left = table.padding
    pads = [left + right] * len(columns)
    if not table.pad_edge:
        pads[0] -= left
        pads[-1] -= right
    borders = (2 if table.box and table.show_edge else 0) + (len(columns) - 1 if table.box else 0)
    room = console.width - borders - sum(pads)
    options = console.options.update_width(max(room, 1))
    lows: list[int] = []
    highs: list[int] = []
    for col in columns:
        cells = ([col.header] if table.show_header else []) + list(col.cells)
        sizes = [_measure(console, options, cell) for cell in cells]
        high = max((high for _, high in sizes), default=1)
        low = high if col.no_wrap else max((low for low, _ in sizes), default=1)
        col.overflow = "fold"  # a word longer than its column folds, never "wor…"
        lows.append(low)
        highs.append(high)
    if sum(highs) <= room:
        return True
    if sum(lows) <= room:
        widths = _water_fill(lows, highs, room)
        fits = True
    else:  # too narrow for some word: keep headers whole if possible, fold the cells
        heads = [_measure(console, options, col.header)[1] if table.show_header else 1
                 for col in columns]
        # ids, refs and times whole if the other headers still fit, else every header
        firsts = [low if col.no_wrap else head for col, low, head in zip(columns, lows, heads)]
        floors = next((f for f in (firsts, heads) if sum(f) <= room), [1] * len(columns))
        widths = _water_fill(floors, lows, room)
        for col, width, low in zip(columns, widths, lows):
            if width < low:
                col.no_wrap = False  # fold what does not fit rather than cut it
        fits = False
    for col, width in zip(columns, widths):
        col.width = max(width, 1)
    return fits


def _measure(console: Console, options: Any, cell: Any) -> tuple[int, int]:
    """A cell's (longest word, longest line). A word keeps the spaces before
    it, as Rich's wrapping does: an indented name needs its indent."""
    import re

    from rich.cells import cell_len
    from rich.measure import Measurement

    if not isinstance(cell, str):
        size = Measurement.get(console, options, cell)
        return size.minimum, size.maximum
    lines = console.render_str(cell).plain.splitlines() or [""]
    words = [w for line in lines for w in re.findall(r"\s*\S+", line)]
    return (max((cell_len(w) for w in words), default=0),
            max(cell_len(line) for line in lines))


def _water_fill(lows: list[int], highs: list[int], room: int) -> list[int]:
    """Widths between ``lows`` and ``highs`` summing to at most ``room``: the
    largest cap on every width that fits (narrow columns stay whole, wide ones
    give way)."""
    lo, hi = 0, max(highs)
    while lo < hi:
        cap = (lo + hi + 1) // 2
        if sum(max(low, min(high, cap)) for low, high in zip(lows, highs)) <= room:
            lo = cap
        else:
            hi = cap - 1
    widths = [max(low, min(high, lo)) for low, high in zip(lows, highs)]
    spare = room - sum(widths)
    for i, (width, high) in enumerate(zip(widths, highs)):  # the remainder, left to right
        if spare <= 0:
            break
        if width < high:
            widths[i] += 1
            spare -= 1
    return widths
