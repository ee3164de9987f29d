"""Backfill SQL: insert missing keys as auto-derived rows, fill NULL business columns of existing rows.

The derived candidate rows are COPYed into a temporary stage (key + one text column per backfill target);
one ``INSERT … SELECT … ON CONFLICT (key) DO NOTHING`` writes the missing ones and counts what it really
inserted, so concurrent or repeated runs never duplicate or overwrite a row, and the counts add up across
callers.  Tracking columns of existing rows are never written here.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def stage_candidates(conn: psycopg.Connection, stage: str, frame: pd.DataFrame, info: TableInfo, key: str) -> None:
    """Create the candidate stage (key typed like the coverage stage, other columns text) and COPY ``frame``.

    :param conn: a connection inside the transaction that uses the stage.
    :param stage: the temporary table's name.
    :param frame: candidate rows: ``key`` first, then one column per backfill target (named like the target).
    :param info: the reference table's catalog entry.
    :param key: the reference table's key column.
    """
    columns = [str(c) for c in frame.columns]
    types = [stage_type(info.columns[key]) if c == key else "text" for c in columns]
    create_stage(conn, stage, columns, types)
    copy_frame(conn, stage, frame)


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
