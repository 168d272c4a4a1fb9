"""The table layout: every column keeps its longest word, or is left out and named."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from shipyard.cli._tables import Col, fit, print_table


def _render(table_or_print, width: int = 80) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    with console.capture() as capture:
        table_or_print(console)
    return capture.get()


def _rows(n: int = 3) -> list[dict]:
    return [{"id": f"{i:032x}"[:8], "experiment": "a-long-experiment-name",
             "name": f"trial-{i}", "status": "FINISHED", "start": "2026-12-03 05:28",
             "note": "a long free-text note that can wrap over several lines " * 2}
            for i in range(n)]


COLS = [Col(key, (lambda r, key=key: r[key]), whole=key in ("id", "status", "start"))
        for key in ("id", "experiment", "name", "status", "start", "note")]


def _header_lines(text: str) -> list[str]:
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    return lines[top + 1:bottom]


def test_rich_alone_collapses_columns_print_table_keeps_them_whole():
    def plain(console):
        table = Table()
        for col in COLS:
            table.add_column(col.name, no_wrap=col.whole)
        for row in _rows():
            table.add_row(*(col.cell(row) for col in COLS))
        console.print(table)

    assert "…" in _render(plain)  # what the CLI used to print: `e…`

    def fitted(console):
        print_table(console, _rows(), COLS, optional=("note",))

    out = _render(fitted)
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    [header] = _header_lines(out)  # one line: no header folded
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "id", "experiment", "name", "status", "start"]
    assert "a-long-experiment-name" in out  # never broken inside a word
    assert "hidden to fit 80 columns: note; see --columns" in out

    wide = _render(fitted, width=120)  # room for the note: nothing hidden
    assert "…" not in wide and "hidden" not in wide and "several" in wide


def test_default_columns_that_cannot_fit_are_left_out_and_named():
    narrow = [dict(row, note="z" * 60) for row in _rows()]  # one 60-character word

    out = _render(lambda console: print_table(console, narrow, COLS, optional=("note",)))
    assert "z" * 20 not in out and "hidden to fit 80 columns: note" in out
    [header] = _header_lines(out)
    assert "note" not in header and "experiment" in header


def test_columns_the_user_chose_fold_but_never_show_an_ellipsis():
    narrow = [dict(row, note="z" * 60) for row in _rows()]
    out = _render(lambda console: print_table(console, narrow, COLS, explicit=True))
    assert "…" not in out and "hidden" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert out.count("z") == 3 * 60  # folded, every character kept


def test_fit_leaves_a_table_that_fits_alone():
    table = Table("a", "b")
    table.add_row("1", "2")
    assert fit(table, Console(width=80))
    assert [c.width for c in table.columns] == [None, None]


def test_fit_keeps_indented_names_whole():
    table = Table("id", "name")
    for i in range(3):
        table.add_row(f"{i:08d}", "  lightgbm-5")
    out = _render(lambda console: (fit(table, console), console.print(table)), width=30)
    assert "lightgbm-5" in out
