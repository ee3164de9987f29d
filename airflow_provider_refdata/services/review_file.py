"""The review file: what ``export_review`` writes and ``apply_review_file`` reads back (CSV or XLSX).

One file per reference table, one row per open placeholder, columns in this order:

1. ``action`` and ``remap_to``: empty in the export, filled in by the steward (``approve``, ``reject``,
   ``remap``; ``remap_to`` is the authoritative key a ``remap`` points at).  A row without an action is left
   alone.
2. the table's key column, under its own name (e.g. ``年金计划号``);
3. the table's business columns in table order, under their own names, without the tracking columns and
   without the columns configured as sensitive for the table.  For an ``approve`` the steward may complete or
   correct them: a cell that differs from the stored value is written (an empty cell is NULL);
4. provenance, read-only and prefixed with ``_``: :data:`PROVENANCE_COLUMNS`;
5. ``_table``: the schema-qualified table, the same in every row, so the file alone says where it belongs.

Line numbers are those a spreadsheet shows: the header is line 1, the first placeholder line 2.

:func:`read_review_file` opens such a file again for ``apply_review_file`` (CSV in UTF-8 or, re-saved by Excel
on a Chinese Windows, GB18030; XLSX through openpyxl), streaming its rows as text.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataReviewError

ACTION = "action"
REMAP_TO = "remap_to"
STEWARD_COLUMNS = (ACTION, REMAP_TO)

APPROVE = "approve"
REJECT = "reject"
REMAP = "remap"
ACTIONS = (APPROVE, REJECT, REMAP)

#: Read-only provenance columns of the export (from ``refdata.placeholder`` and the tracking columns).
PROVENANCE_COLUMNS = (
    "_fact_rows_total",
    "_fact_rows_last",
    "_first_seen_at",
    "_last_seen_at",
    "_domains",
    "_derived_from_domain",
    "_derived_at",
)
TABLE_COLUMN = "_table"

FORMATS = ("csv", "xlsx")
#: CSV files start with a UTF-8 byte-order mark so that Excel opens Chinese text correctly.
CSV_ENCODING = "utf-8-sig"

#: The encoding a CSV falls back to when it is not UTF-8: Excel on a Chinese Windows re-saves CSV files in the
#: ANSI code page (GBK), of which GB18030 is a superset.
CSV_FALLBACK_ENCODING = "gb18030"
#: Columns every review file must have (besides the key column, the first column that is neither one of
#: these nor a ``_…`` provenance column).
REQUIRED_COLUMNS = (ACTION, REMAP_TO, TABLE_COLUMN)
_CHUNK = 1 << 20

Row = tuple[int, dict[str, str | None]]


@dataclass(frozen=True)
class ReviewFile:
    """A review file opened by :func:`read_review_file`: its header, and its rows when iterated.

    Iterating reads the file again from the start, one row at a time (a 1,000,000-row file is never held in
    memory); each item is ``(line, {column: text or None})`` with the line a spreadsheet shows (header = 1).
    Blank lines are skipped (their line numbers still count).

    :param path: the file's path, as given.
    :param format: ``csv`` or ``xlsx``.
    :param header: the column names, in file order.
    :param key_column: the table's key column (the first column that is neither a steward column nor ``_…``).
    :param encoding: the text encoding a CSV was read with (``utf-8-sig`` or ``gb18030``); ``None`` for XLSX.
    """

    path: str
    format: str
    header: tuple[str, ...]
    key_column: str
    encoding: str | None = None

    def __iter__(self) -> Iterator[Row]:
        raw = _csv_records(self.path, self.encoding) if self.format == "csv" else _xlsx_records(self.path)
        next(raw, None)  # the header, read and checked by read_review_file
        width = len(self.header)
        for line, cells in raw:
            if all(cell is None or not cell.strip() for cell in cells):
                continue
            if len(cells) > width and any(c is not None and c.strip() for c in cells[width:]):
                raise RefdataConfigError(
                    f"line {line} has {len(cells)} cells but the header has {width} columns",
                    file=self.path,
                    line=line,
                )
            cells = list(cells[:width]) + [None] * (width - len(cells))
            yield line, dict(zip(self.header, cells, strict=True))


def read_review_file(path: str | os.PathLike[str]) -> ReviewFile:
    """Open a review file (CSV or XLSX, by its extension) and check its header.

    CSV is read as UTF-8 (with or without the byte-order mark) and, when it is not valid UTF-8 (Excel re-saved
    it on a Chinese Windows), as GB18030.  XLSX is read with openpyxl in read-only mode, the first sheet;
    cells become text: ``1`` and ``1.0`` → ``"1"``, ``1.5`` → ``"1.5"``, a date or a datetime at midnight →
    ``"2024-01-31"``, another datetime → ISO text, booleans → ``"true"``/``"false"``, an empty cell → ``None``
    (an empty CSV cell too).

    :param path: the review file.
    :raises RefdataConfigError: naming the file, when it cannot be read, its format is unknown, or a required
        column (``action``, ``remap_to``, ``_table``, the key column) is missing or a column is named twice.
    """
    file = os.fspath(path)
    suffix = Path(file).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise RefdataConfigError(
            f"unknown review file format {suffix or '(no extension)'!r}; expected one of {', '.join(FORMATS)}",
            file=file,
            value=suffix,
        )
    if not Path(file).is_file():
        raise RefdataConfigError(f"review file not found: {str(Path(file).absolute())!r}", file=file, value=file)
    encoding = _csv_encoding(file) if suffix == "csv" else None
    records = _csv_records(file, encoding) if suffix == "csv" else _xlsx_records(file)
    try:
        first = next(records, None)
    finally:
        records.close()
    if first is None:
        raise RefdataConfigError("the review file is empty; expected a header line", file=file, line=1)
    header = [("" if cell is None else cell.strip()) for cell in first[1]]
    while header and not header[-1]:
        header.pop()
    if "" in header:
        raise RefdataConfigError(f"column {header.index('') + 1} of the header has no name", file=file, line=1)
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise RefdataConfigError(
            f"the header names {', '.join(repr(c) for c in repeated)} more than once", file=file, line=1
        )
    key_column = next((c for c in header if c not in STEWARD_COLUMNS and not c.startswith("_")), None)
    missing = [c for c in REQUIRED_COLUMNS if c not in header] + (["<the key column>"] if key_column is None else [])
    if missing:
        raise RefdataConfigError(
            f"the review file lacks the column(s) {', '.join(missing)}; its header is {', '.join(header)} "
            f"(expected {ACTION}, {REMAP_TO}, the key column, business columns, _… provenance, {TABLE_COLUMN})",
            file=file,
            value=missing,
            line=1,
        )
    return ReviewFile(path=file, format=suffix, header=tuple(header), key_column=key_column, encoding=encoding)


def decisions(
    review_file: ReviewFile, rows: Iterable[Row], table: str, key: str, columns: Sequence[str]
) -> Iterator[tuple]:
    """The steward's decisions in ``rows``: ``(line, key, action, remap_to, *values)`` per row, as text.

    Key, action and ``remap_to`` are trimmed (an empty one is ``None``); a known action is lower-cased
    (``" Approve "`` is ``approve``), an unknown one kept as written (it is reported).  ``values`` are the cells
    of ``columns`` for an ``approve`` and ``None`` otherwise (they are only read for an approval).

    :param review_file: the file the rows come from (for messages).
    :param rows: its rows (see :class:`ReviewFile`).
    :param table: the schema-qualified table the file is for: a row naming another one in ``_table`` stops
        the reading.
    :param key: the key column.
    :param columns: the business columns an approval may write.
    :raises RefdataReviewError: a row's ``_table`` names another table.
    """
    empty = (None,) * len(columns)
    for line, cells in rows:
        named = (cells.get(TABLE_COLUMN) or "").strip()
        if named and named != table:
            raise RefdataReviewError(
                f"{review_file.path}, line {line}: {TABLE_COLUMN} is {named!r}, but the file is for {table}; "
                "one review file holds one table",
                table=table,
            )
        raw = (cells.get(ACTION) or "").strip()
        action = raw.lower() if raw.lower() in ACTIONS else raw or None
        values = tuple(cells.get(c) for c in columns) if action == APPROVE else empty
        to = (cells.get(REMAP_TO) or "").strip() or None
        yield (line, (cells.get(key) or "").strip() or None, action, to, *values)


def cell_text(value: Any) -> str | None:
    """A spreadsheet cell as the text a review file means (see :func:`read_review_file`)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        # Excel has no date type: a date cell comes back as a datetime at midnight.
        if value.tzinfo is None and value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _csv_encoding(file: str) -> str:
    """``utf-8-sig`` when the whole file decodes as UTF-8 (checked in chunks, constant memory), else GB18030."""
    for encoding in (CSV_ENCODING, CSV_FALLBACK_ENCODING):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with open(file, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            last = exc
            continue
        return encoding
    raise RefdataConfigError(
        f"the CSV file is neither UTF-8 nor GB18030/GBK text ({last}); save it again as 'CSV UTF-8'", file=file
    )


def _csv_records(file: str, encoding: str | None) -> Iterator[tuple[int, list[str | None]]]:
    """(line, cells) per CSV record; a record is one spreadsheet line even when a quoted cell spans several."""
    with open(file, encoding=encoding or CSV_ENCODING, newline="") as handle:
        for line, cells in enumerate(csv.reader(handle), start=1):
            yield line, [cell if cell != "" else None for cell in cells]


def _xlsx_records(file: str) -> Iterator[tuple[int, list[str | None]]]:
    """(line, cells) per row of the workbook's first sheet, read in read-only (streaming) mode."""
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - depends on the installation
        raise RefdataConfigError(
            "reading an XLSX review file needs openpyxl (pip install 'airflow-provider-refdata[excel]')", file=file
        ) from None
    try:
        workbook = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException for a broken file
        raise RefdataConfigError(f"cannot read the XLSX file: {type(exc).__name__}: {exc}", file=file) from None
    try:
        sheet = workbook.worksheets[0]
        for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield line, [cell_text(v) for v in values]
    finally:
        workbook.close()
