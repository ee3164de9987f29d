"""Backfill SQL: insert missing keys as auto-derived rows, fill NULL business columns of existing rows.

The derived candidate rows are COPYed into a temporary stage (key + one text column per backfill target);
one ``INSERT … SELECT … ON CONFLICT (key) DO NOTHING`` writes the missing ones and counts what it really
inserted, so concurrent or repeated runs never duplicate or overwrite a row, and the counts add up across
callers.  Tracking columns of existing rows are never written here.

Values of the wrong type (``"2024-13-45"`` for a ``date``, ``"abc"`` for an ``integer``, bad JSON for a
``jsonb``) are found before anything is written, by :func:`invalid_values`: one probe statement converts
every staged value the way the insert will; only when it fails does a diagnostic query per failing column
ask PostgreSQL's own input function about each distinct value (see :func:`invalid_values` for why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import TableInfo
from airflow_provider_refdata.warehouse.sqlbits import ident_list, table_ref
from airflow_provider_refdata.warehouse.staging import converted_value, copy_frame, create_stage, stage_type
from airflow_provider_refdata.warehouse.tracking import (
    AUTO_DERIVED,
    DERIVED_AT,
    DERIVED_FROM_DOMAIN,
    NEEDS_REVIEW,
    SOURCE,
)

#: Candidate stage column holding each row's position in the staged frame (0, 1, …): how a value found
#: invalid on the server is traced back to its candidate row.
ROW_COLUMN = "_refdata_row"

#: ``pg_temp`` helper for :func:`invalid_values`: NULL when ``value`` converts to ``type_name``, else why not
#: (the message, cut to 300 characters: it may quote the whole value).  A domain's CHECK counts as its type's.
_INPUT_ERROR_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.refdata_input_error(value text, type_name text) RETURNS text
LANGUAGE plpgsql AS $function$
DECLARE
    detail text;
BEGIN
    EXECUTE format('SELECT CAST($1 AS %s)', type_name) USING value;
    RETURN NULL;
EXCEPTION WHEN data_exception OR check_violation THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN left(SQLERRM || COALESCE(': ' || NULLIF(detail, ''), ''), 300);
END
$function$
"""
_DROP_INPUT_ERROR_FUNCTION = "DROP FUNCTION IF EXISTS pg_temp.refdata_input_error(text, text)"


def stage_candidates(conn: psycopg.Connection, stage: str, frame: pd.DataFrame, info: TableInfo, key: str) -> None:
    """Create the candidate stage (key typed like the coverage stage, other columns text) and COPY ``frame``.

    The stage also gets :data:`ROW_COLUMN`, each row's position in ``frame``.  Calling it again replaces the
    stage (e.g. after values were rejected).

    :param conn: a connection inside the transaction that uses the stage.
    :param stage: the temporary table's name.
    :param frame: candidate rows: ``key`` first, then one column per backfill target (named like the target).
    :param info: the reference table's catalog entry.
    :param key: the reference table's key column.
    """
    columns = [str(c) for c in frame.columns]
    types = [stage_type(info.columns[key]) if c == key else "text" for c in columns]
    create_stage(conn, stage, [*columns, ROW_COLUMN], [*types, "integer"])
    copy_frame(conn, stage, frame.assign(**{ROW_COLUMN: np.arange(len(frame))}))


@dataclass(frozen=True)
class InvalidValues:
    """The staged values of one backfill column that do not convert to the column's type.

    ``positions`` are the rows (:data:`ROW_COLUMN`, ascending) holding such a value; ``reason`` is
    PostgreSQL's message for the first of them (e.g. ``invalid input syntax for type integer: "abc"``).
    """

    column: str
    positions: list[int]
    reason: str


def invalid_values(
    conn: psycopg.Connection, stage: str, info: TableInfo, columns: Sequence[str]
) -> list[InvalidValues]:
    """The staged values that the insert (or fill) could not convert to their columns' types, per column.

    Only columns that are converted with a cast (not text ones: their only limit, the length, is checked
    before staging) are looked at.  Set-based, and cheap when every value converts:

    1. one probe statement converts every staged value of those columns exactly as :func:`insert_missing`
       and :func:`fill_null_columns` will (``count(CAST(s.c AS <type>))``), inside a savepoint; when it
       succeeds, the answer is "none" (the usual case costs one scan of the stage);
    2. otherwise, per column (a probe per column when there are several, to find the failing ones), one
       query asks PostgreSQL's own input function about each *distinct* value of the column through a small
       ``pg_temp`` PL/pgSQL helper that returns the error message instead of raising it.

    Why a helper: PostgreSQL 15 has no error-returning input test (``pg_input_is_valid`` is 16+), and a
    regex or range test per type would disagree with the server (``DateStyle``, the many date formats,
    special values, JSON, typmods such as ``numeric(18,2)``): it would either miss a bad value, so the insert
    still fails, or reject a good one.  The helper is exactly the server's conversion.  Its exception block is
    a subtransaction per distinct value (read-only, no transaction id is assigned), run inside one statement
    (no query per value), and only for the columns the probe found failing; it is dropped again afterwards.
    A domain's ``CHECK`` counts as part of its type; array columns are judged element by element, as the cast
    does.

    :param conn: the connection holding the stage (inside a transaction; savepoints are used).
    :param stage: the candidate stage made by :func:`stage_candidates`.
    :param info: the reference table's catalog entry.
    :param columns: backfill target columns present in both the stage and the table.
    :returns: one entry per column with at least one invalid value, in ``columns`` order.
    """
    cast = [c for c in columns if not info.columns[c].is_text]
    if not cast or _converts(conn, stage, info, cast):
        return []
    failing = [c for c in cast if len(cast) == 1 or not _converts(conn, stage, info, [c])]
    if not failing:  # pragma: no cover - together they failed, so one of them fails alone
        return []
    conn.execute(_INPUT_ERROR_FUNCTION)
    found: list[InvalidValues] = []
    for column in failing:
        positions, reason = conn.execute(
            sql.SQL(
                """
                WITH d AS (SELECT DISTINCT s.{c} AS v FROM {stage} s WHERE s.{c} IS NOT NULL),
                     bad AS (SELECT d.v, pg_temp.refdata_input_error(d.v, %(type)s) AS why FROM d),
                     hit AS (SELECT s.{row} AS r, bad.why FROM {stage} s JOIN bad ON bad.v = s.{c}
                              WHERE bad.why IS NOT NULL)
                SELECT COALESCE((SELECT array_agg(r ORDER BY r) FROM hit), '{{}}'),
                       (SELECT why FROM hit ORDER BY r LIMIT 1)
                """
            ).format(c=sql.Identifier(column), stage=sql.Identifier(stage), row=sql.Identifier(ROW_COLUMN)),
            {"type": info.columns[column].data_type},
        ).fetchone()
        if positions:
            found.append(InvalidValues(column=column, positions=list(positions), reason=reason))
    conn.execute(_DROP_INPUT_ERROR_FUNCTION)  # leave nothing behind in the caller's session
    return found


def _converts(conn: psycopg.Connection, stage: str, info: TableInfo, columns: Sequence[str]) -> bool:
    """Whether every staged value of ``columns`` converts to its column's type (one statement, savepoint)."""
    statement = sql.SQL("SELECT {} FROM {} s").format(
        sql.SQL(", ").join(sql.SQL("count({})").format(_value(info, c)) for c in columns), sql.Identifier(stage)
    )
    try:
        with conn.transaction():
            conn.execute(statement)
    except (psycopg.errors.DataError, psycopg.errors.CheckViolation):  # CheckViolation: a domain's CHECK
        return False
    return True


def _value(info: TableInfo, column: str) -> sql.Composable:
    """``s."column"`` converted to the target column's type (assignment for text, explicit cast otherwise)."""
    return converted_value(sql.Identifier("s", column), info.columns[column])


def insert_missing(
    conn: psycopg.Connection,
    stage: str,
    info: TableInfo,
    key: str,
    columns: Sequence[str],
    domain: str,
    *,
    keys_out: list[str] | None = None,
) -> int:
    """Insert the staged keys absent from the table as auto-derived rows; returns how many were inserted.

    Rows go in key order so that concurrent inserters touch keys in the same order (no deadlock), and
    ``ON CONFLICT (key) DO NOTHING`` makes a key inserted meanwhile by someone else a no-op, not an error.

    :param conn: the connection holding the stage.
    :param stage: the candidate stage.
    :param info: the reference table's catalog entry (must have the tracking columns).
    :param key: the key column (unique in the table).
    :param columns: backfill target columns present in both the stage and the table.
    :param domain: written to ``_derived_from_domain``.
    :param keys_out: when given, the inserted keys (as text) are appended to it.
    """
    target = table_ref(info.schema, info.table)
    key_ident = sql.Identifier(key)
    statement = sql.SQL(
        """
        WITH inserted AS (
            INSERT INTO {target} ({key}, {columns}{sep}{source}, {review}, {domain_col}, {at})
            SELECT s.{key}, {values}{sep}%(source)s, true, %(domain)s, now()
              FROM {stage} s
             WHERE s.{key} IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = s.{key})
             ORDER BY s.{key}
            ON CONFLICT ({key}) DO NOTHING
            RETURNING {key}::text AS k
        )
        SELECT count(*), {keys} FROM inserted
        """
    ).format(
        target=target,
        key=key_ident,
        columns=ident_list(columns),
        sep=sql.SQL(", ") if columns else sql.SQL(""),
        source=sql.Identifier(SOURCE),
        review=sql.Identifier(NEEDS_REVIEW),
        domain_col=sql.Identifier(DERIVED_FROM_DOMAIN),
        at=sql.Identifier(DERIVED_AT),
        values=sql.SQL(", ").join(_value(info, c) for c in columns),
        stage=sql.Identifier(stage),
        keys=sql.SQL("COALESCE(array_agg(k), '{}')" if keys_out is not None else "NULL"),
    )
    count, keys = conn.execute(statement, {"source": AUTO_DERIVED, "domain": domain}).fetchone()
    if keys_out is not None:
        keys_out.extend(keys)
    return count


def fill_null_columns(
    conn: psycopg.Connection,
    stage: str,
    info: TableInfo,
    key: str,
    columns: Sequence[str],
    *,
    plan_only: bool = False,
) -> int:
    """Fill NULL business columns of existing rows from the staged values; returns the rows changed.

    Only columns that are NULL in the table and non-NULL in the stage change (``COALESCE``); tracking
    columns are not touched, so authoritative rows stay authoritative.  With ``plan_only`` it only counts.

    :param conn: the connection holding the stage.
    :param stage: the candidate stage.
    :param info: the reference table's catalog entry.
    :param key: the key column.
    :param columns: backfill target columns present in both the stage and the table.
    :param plan_only: count the rows that would change, write nothing.
    """
    if not columns:
        return 0
    wanted = sql.SQL(" OR ").join(
        sql.SQL("(t.{c} IS NULL AND s.{c} IS NOT NULL)").format(c=sql.Identifier(c)) for c in columns
    )
    target = table_ref(info.schema, info.table)
    stage_ident = sql.Identifier(stage)
    key_ident = sql.Identifier(key)
    if plan_only:
        statement = sql.SQL("SELECT count(*) FROM {target} t JOIN {stage} s ON t.{key} = s.{key} WHERE {wanted}")
    else:
        statement = sql.SQL(
            """
            WITH updated AS (
                UPDATE {target} t SET {assignments}
                  FROM {stage} s
                 WHERE t.{key} = s.{key} AND ({wanted})
                RETURNING 1
            )
            SELECT count(*) FROM updated
            """
        )
    assignments = sql.SQL(", ").join(
        sql.SQL("{c} = COALESCE(t.{c}, {v})").format(c=sql.Identifier(c), v=_value(info, c)) for c in columns
    )
    statement = statement.format(
        target=target, stage=stage_ident, key=key_ident, wanted=wanted, assignments=assignments
    )
    return conn.execute(statement).fetchone()[0]
