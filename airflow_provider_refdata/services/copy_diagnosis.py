"""Turn a PostgreSQL COPY data error into one a person can act on: table, column, key of the row, value.

PostgreSQL reports a rejected value of a COPY as ``… [COPY _refdata_sync_stage, line 2, column 规模: "1e400"]``
or, for bytes it cannot even decode (a NUL byte, ``0x00``), only ``line 2``: the internal stage and a line
number of a stream nobody sees.  The rows are never kept (they stream through), so on that rare failure the
source is read once more up to that line, and the row's key and offending field are taken from it.  This is
the failure path only; a successful load never pays for it.

NUL bytes: PostgreSQL text cannot hold them.  Rather than altering a value silently, the table fails naming
the column and key (fix the value in the source; nothing in the warehouse changes).
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg

from airflow_provider_refdata.exceptions import RefdataSyncError

_CONTEXT = re.compile(r'COPY [^,]+, line (?P<line>\d+)(?:, column (?P<column>[^:]+): "(?P<value>.*)")?', re.S)
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)


def copy_field(text: str) -> str | None:
    """One field of a COPY text line as the value it spells (``\\N`` is NULL; backslash escapes decoded)."""
    if text == "\\N":
        return None

    def unescape(match: re.Match[str]) -> str:
        octal, hexa, char = match.groups()
        if octal:
            return chr(int(octal, 8))
        if hexa:
            return chr(int(hexa, 16))
        return _ESCAPES.get(char, char)

    return _ESCAPE.sub(unescape, text)


def _lines(batches: Iterator[Any]) -> Iterator[str]:
    """The ``\\n``-ended lines of COPY bytes, decoded (an undecodable byte shown as U+FFFD), ``\\n`` kept."""
    pending = b""
    for batch in batches:
        lines = (pending + bytes(batch)).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line.decode("utf-8", errors="replace") + "\n"
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _rows(read: Any) -> Iterator[list[Any]]:
    """The rows of a read as lists of fields, in source order."""
    batches = iter(read.batches)
    first = next(batches, None)
    if first is None:
        return
    batches = itertools.chain([first], batches)
    if not isinstance(first, bytes | bytearray | memoryview):
        for batch in batches:
            yield from (list(row) for row in batch)
    elif read.copy_format == "csv":
        yield from csv.reader(_lines(batches))  # a quoted value may hold line breaks: the reader joins them
    else:
        for line in _lines(batches):
            yield [copy_field(field) for field in line.removesuffix("\n").split("\t")]


def _holds(field: Any, value: str | None) -> bool:
    """Whether ``field`` is what COPY's error context shows (``value``; ``None``: the context showed no field,
    as for a NUL byte, which the field then holds).  The context cuts a long value to its start and ``...``."""
    if not isinstance(field, str):
        return False
    if value is None:
        return "\x00" in field
    return field == value or (value.endswith("...") and field.startswith(value[:-3]))


def _rejected_fields(
    source: Any,
    cfg: Any,
    since: datetime | None,
    batch_size: int,
    line: int,
    target_types: dict[str, str] | None,
    field_index: int | None,
    value: str | None,
) -> list[Any] | None:
    """The fields of the rejected row in a fresh read of the source, or None when it is not found.

    COPY's text format numbers rows as lines (``line`` is the row).  Its CSV line numbers count some line breaks
    inside quoted values and not others (measured on PostgreSQL 15), so a CSV row is found by its content: the
    first that holds the shown value in the rejected column (or, with no column shown, a NUL byte in any).
    """
    with source.stream(cfg, since, batch_size) as read:
        read.target_types = target_types  # rendered as in the failed read
        rows = _rows(read)
        if read.copy_format != "csv":
            return next(itertools.islice(rows, line - 1, None), None)
        for fields in rows:
            candidates = fields if field_index is None else fields[field_index : field_index + 1]
            if any(_holds(field, value) for field in candidates):
                return fields
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_copy_error(
    exc: psycopg.errors.DataError,
    cfg: Any,
    source: Any,
    since: datetime | None,
    batch_size: int,
    columns: Sequence[str],
    target_types: dict[str, str] | None = None,
) -> RefdataSyncError:
    """A :class:`RefdataSyncError` naming the reference table, column, key and value of a rejected COPY row.

    :param exc: the data error COPY raised.
    :param cfg: the table's ``SyncTableConfig``.
    :param source: its source (read again up to the failing line).
    :param since: the incremental lower bound of the failed read.
    :param batch_size: the read's batch size.
    :param columns: the COPY columns, in the order of the fields.
    :param target_types: the target's column types the failed read was given (``SourceRead.target_types``).
    """
    table = cfg.qualified_table
    key = list(cfg.primary_key)
    problem = exc.diag.message_primary or str(exc)
    match = _CONTEXT.search(exc.diag.context or "")
    column = match.group("column") if match else None
    value: Any = match.group("value") if match and match.group("value") is not None else None
    key_values: list[Any] | None = None
    if match:
        try:
            fields = _rejected_fields(
                source,
                cfg,
                since,
                batch_size,
                int(match.group("line")),
                target_types,
                list(columns).index(column) if column in columns else None,
                value,
            )
        except Exception:  # the diagnosis must never hide the original failure
            fields = None
        if fields is not None and len(fields) == len(columns):
            if column is None:  # undecodable bytes (NUL): the field that holds them
                column = next(
                    (c for c, f in zip(columns, fields, strict=True) if isinstance(f, str) and "\x00" in f), None
                )
            if column in columns:
                value = fields[list(columns).index(column)]
            key_values = [fields[list(columns).index(k)] for k in key if k in columns]
    if "0x00" in problem:
        problem = "a NUL byte (0x00), which PostgreSQL text cannot hold; remove it in the source"
    where = f"column {column!r}" if column else "a column"
    which = (
        "with key " + ", ".join(f"{k}={v!r}" for k, v in zip(key, key_values, strict=False))
        if key_values
        else "whose key could not be read back"
    )
    shown = f" (value {_short(value)})" if value is not None else ""
    located = f"{where} of the row {which}: " if (column or key_values) else ""
    return RefdataSyncError(
        f"{table}: {located}{problem}{shown}; nothing was changed",
        table=table,
        key=tuple(key_values) if key_values else None,
        column=column,
    )
