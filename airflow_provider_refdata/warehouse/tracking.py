"""The tracking columns every reference table carries, and adding them to a table idempotently.

``_source`` says where a row came from (``authoritative`` sync or ``auto_derived`` backfill),
``_needs_review`` flags auto-derived rows for a person, ``_derived_from_domain``/``_derived_at`` say which
fact domain derived the row and when.  Existing rows become authoritative when the columns are added.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import table_info
from airflow_provider_refdata.warehouse.sqlbits import table_ref

SOURCE = "_source"
NEEDS_REVIEW = "_needs_review"
DERIVED_FROM_DOMAIN = "_derived_from_domain"
DERIVED_AT = "_derived_at"

AUTHORITATIVE = "authoritative"
AUTO_DERIVED = "auto_derived"

TRACKING_COLUMNS: dict[str, str] = {
    SOURCE: "varchar(20) NOT NULL DEFAULT 'authoritative'",
    NEEDS_REVIEW: "boolean NOT NULL DEFAULT false",
    DERIVED_FROM_DOMAIN: "varchar(64)",
    DERIVED_AT: "timestamptz",
}
TRACKING_COLUMN_NAMES = frozenset(TRACKING_COLUMNS)


def missing_tracking_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """Tracking columns the table lacks (all of them if the table does not exist)."""
    info = table_info(conn, schema, table)
    present = set(info.columns) if info else set()
    return [name for name in TRACKING_COLUMNS if name not in present]


def ensure_tracking_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """Add the tracking columns the table lacks; returns the names added (empty when none were missing).

    Only runs DDL when something is missing, so the usual call takes no ACCESS EXCLUSIVE lock.  Existing rows
    get the defaults (authoritative, not in review).  A CHECK constraint keeps ``_source`` to the two values.
    """
    missing = missing_tracking_columns(conn, schema, table)
    if not missing:
        return []
    clauses = [
        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(sql.Identifier(name), sql.SQL(TRACKING_COLUMNS[name]))
        for name in missing
    ]
    conn.execute(sql.SQL("ALTER TABLE {} ").format(table_ref(schema, table)) + sql.SQL(", ").join(clauses))
    if SOURCE in missing:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IN ('authoritative', 'auto_derived'))").format(
                table_ref(schema, table), sql.Identifier(f"{table}__source_check"[:63]), sql.Identifier(SOURCE)
            )
        )
    return missing
