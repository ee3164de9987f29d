"""Plain-text tables for logs, the CLI and the demo report, aligned even with Chinese table names.

``str.ljust`` counts characters, but a CJK character takes two terminal columns, so tables that name
``business.年金计划`` drift out of line; these helpers pad by display width instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_NUMERIC = re.compile(r"(?:[-+]?[\d.,]+%?|-)?")  # blank cells do not make a column text


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: two for wide and full-width characters, one otherwise."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> list[str]:
    """The lines of a table: text columns left-aligned, columns of numbers right-aligned.

    :param header: the column titles.
    :param rows: the rows; ints get thousands separators, ``None`` is blank.
    :param indent: a prefix for every line.
    """
    cells = [[str(h) for h in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(header))]
    numeric = [bool(rows) and all(_NUMERIC.fullmatch(row[i]) for row in cells[1:]) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - display_width(cell))
            parts.append(pad + cell if numeric[i] else cell + pad)
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines
