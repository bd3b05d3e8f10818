"""Plain-text tables for the console and text files: columns padded to one width each.

Used by ``compare`` (which also fits the terminal), ``diff`` (its metrics) and a sweep's summary
(``tracking.sweep``). Not to be confused with ``core.tables``, which reads users' CSV and
Parquet files.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

GAP = "  "
ELLIPSIS = "…"


def format_table(
    rows: Sequence[Sequence[str]],
    right: Sequence[bool] | None = None,
    widths: Sequence[int] | None = None,
) -> list[str]:
    """``rows`` (the header first) as lines: each column padded to its width, left-aligned or,
    where ``right`` says so, right-aligned; columns ``GAP`` apart, no trailing blanks.

    ``widths``: each column's width (default: its longest cell); a longer cell is shortened
    with an ellipsis (``fit_widths`` picks widths that fit a terminal).
    """
    right = right or [False] * len(rows[0])
    widths = widths or [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        GAP.join(
            shorten(cell, w).rjust(w) if r else shorten(cell, w).ljust(w)
            for cell, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]


def fit_widths(widths: Sequence[int], steps: Sequence[Sequence[int]], width: int) -> list[int]:
    """Column widths whose table (gaps included) fits ``width``: narrow the widest column by one
    character at a time, down to the first step's floors, then the next step's, ..."""
    narrowed = list(widths)
    budget = width - len(GAP) * (len(narrowed) - 1)
    for floors in steps:
        while sum(narrowed) > budget:
            movable = [i for i, w in enumerate(narrowed) if w > floors[i]]
            if not movable:
                break
            narrowed[max(movable, key=lambda i: narrowed[i])] -= 1
    return narrowed


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def terminal_width() -> int | None:
    """The width a table should fit: the terminal's when stdout is one, ``$COLUMNS`` when set
    (a width asked for), else None: piped to a file or a program, the whole table."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return shutil.get_terminal_size().columns
    return None
