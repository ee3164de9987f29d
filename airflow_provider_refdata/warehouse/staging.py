"""Temporary staging tables filled with COPY: the one way bulk data enters PostgreSQL here.

A stage is a ``TEMP`` table dropped at commit, so it never outlives the transaction that merges it.  Its
columns are ``text`` unless told otherwise: the merge statement casts to the target's types, which lets a
set-based check name the offending key and column before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import ColumnInfo
from airflow_provider_refdata.warehouse.sqlbits import ident_list


def stage_type(column: ColumnInfo) -> str:
    """The stage column type for values headed to ``column``: ``text`` for text columns (unbounded, so an
    over-long value reaches a check that can name its key instead of failing inside COPY), else the column's
    own type from the catalog, so COPY converts once and joins can use the target's index."""
    return "text" if column.is_text else column.data_type


def converted_value(value: sql.Composable, column: ColumnInfo) -> sql.Composable:
    """``value`` converted for storing in ``column``: as is for text, ``CAST(… AS <type>)`` otherwise.

    Never an explicit cast to a text type: ``'abcdef'::varchar(3)`` silently truncates to ``'abc'``, while
    assigning the text makes PostgreSQL reject the over-long value.
    """
    if column.is_text:
        return value
    return sql.SQL("CAST({} AS {})").format(value, sql.SQL(column.data_type))


def create_stage(
    conn: psycopg.Connection,
    name: str,
    columns: Sequence[str],
    types: Sequence[str] | None = None,
) -> sql.Identifier:
    """Create ``TEMP TABLE name (columns…) ON COMMIT DROP``; column types default to ``text``.

    :param conn: a connection inside the transaction that will use the stage.
    :param name: the temporary table's name (unique within the session).
    :param columns: column names.
    :param types: SQL type names per column (trusted, from code or the catalog — never from config).
    """
    types = types or ["text"] * len(columns)
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            ident,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in zip(columns, types, strict=True)
            ),
        )
    )
    return ident


def copy_rows(conn: psycopg.Connection, stage: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` (tuples in ``columns`` order; ``None`` is NULL) into the stage; returns the row count."""
    count = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(stage), ident_list(columns))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_frame(conn: psycopg.Connection, stage: str, frame: Any, *, schema: str | None = None) -> int:
    """COPY a pandas DataFrame (columns named like the stage's) into the stage; returns the row count.

    The frame travels as one CSV text produced by pandas' C writer, which is several times faster than
    ``write_row`` per row for large frames.  In CSV, ``None``/``NaN`` and the empty string are both written
    as an unquoted empty field, so **empty strings arrive as NULL**: callers normalise blanks to ``None`` first.

    :param conn: a connection inside the transaction that will use the stage.
    :param stage: the temporary table's name.
    :param frame: a ``pandas.DataFrame``; its column names are the stage columns written.
    :param schema: the table's schema when it is a regular table rather than a temporary stage.
    """
    if len(frame) == 0:
        return 0
    payload = frame.to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")
    target = sql.Identifier(schema, stage) if schema else sql.Identifier(stage)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        target, ident_list([str(c) for c in frame.columns])
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(payload)
    return len(frame)
