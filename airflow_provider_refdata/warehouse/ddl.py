"""Create a missing reference table from its source's columns (``create_table: true``).

The table gets the configured target columns in configuration order, with the PostgreSQL types the source
describes (:class:`~airflow_provider_refdata.services.sources.SourceColumn`), the primary key (its columns
``NOT NULL``), the tracking columns of :mod:`~airflow_provider_refdata.warehouse.tracking` with their
``_source`` check, and an index on ``_needs_review``.  Other columns are nullable whatever the source says:
the hybrid backfill inserts auto-derived rows that carry only the key and the derived columns, and the MySQL
source turns zero dates into NULL.

Every identifier is quoted with :class:`psycopg.sql.Identifier`.  A type comes from source metadata, never
from configuration, but is still pasted only after two checks: it must look like a type name (a strict
pattern: a name, then only words such as ``precision``, ``varying``, ``with time zone``, ``day to second``,
at most one ``(n[,m])``, then ``[]``), and PostgreSQL must know it (``to_regtype``), so a source can never
inject anything but a type.  The statement
runs in the caller's transaction (the sync runs it under the table's advisory lock): a failed sync leaves no
table behind, and a second sync of the same table waits and then finds the table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataSyncError
from airflow_provider_refdata.warehouse.sqlbits import ident_list, table_ref
from airflow_provider_refdata.warehouse.state import lock_name
from airflow_provider_refdata.warehouse.tracking import (
    AUTHORITATIVE,
    AUTO_DERIVED,
    NEEDS_REVIEW,
    SOURCE,
    TRACKING_COLUMN_NAMES,
    TRACKING_COLUMNS,
)

if TYPE_CHECKING:
    from airflow_provider_refdata.services.sources import SourceColumn

# A type name as format_type() and the source mappings spell it: varchar(16), numeric(18,2), double precision,
# character varying(8), timestamp(3) with time zone, timestamptz(3), interval day to second(3), text[],
# public.citext.  After the name only these words (no NOT, NULL, DEFAULT, REFERENCES, COLLATE, ...) and one
# modifier may follow.
_TYPE_WORDS = "precision|varying|with|without|time|zone|year|month|day|hour|minute|second|to"
_TYPE_PATTERN = re.compile(
    r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?"
    rf"(?: (?:{_TYPE_WORDS})|\(\d{{1,4}}(?:, ?\d{{1,4}})?\))*"
    r"(?:\[\d*\])*",
    re.IGNORECASE,
)


def valid_type_text(pg_type: str) -> bool:
    """Whether ``pg_type`` has the shape of a PostgreSQL type name (see the module docstring)."""
    return len(pg_type) <= 100 and pg_type.count("(") <= 1 and _TYPE_PATTERN.fullmatch(pg_type) is not None


def create_table_statement(
    schema: str,
    table: str,
    columns: Sequence[SourceColumn],
    primary_key: str | Sequence[str],
    *,
    create_schema: bool = False,
) -> sql.Composed:
    """``CREATE TABLE`` (source columns, tracking columns, primary key, ``_source`` check) and the
    ``_needs_review`` index; with ``create_schema``, ``CREATE SCHEMA IF NOT EXISTS`` first.

    :param schema: target schema.
    :param table: target table.
    :param columns: the target columns with their PostgreSQL types, in order.
    :param primary_key: key column name(s); they must be among ``columns`` and become ``NOT NULL``.
    :param create_schema: also create the schema.
    :raises RefdataSyncError: no columns, a duplicated or tracking column name, a key column that is not a
        column, or a type that does not look like a type name (naming the column).
    """
    name = f"{schema}.{table}"
    key = [primary_key] if isinstance(primary_key, str) else list(primary_key)
    if not columns:
        raise RefdataSyncError(f"cannot create {name}: the source described no columns", table=name)
    if not key:
        raise RefdataSyncError(f"cannot create {name}: no primary key column given", table=name)
    seen: set[str] = set()
    for column in columns:
        if column.name in TRACKING_COLUMN_NAMES:
            raise RefdataSyncError(
                f"cannot create {name}: column {column.name!r} is a tracking column name",
                table=name,
                column=column.name,
            )
        if column.name in seen:
            raise RefdataSyncError(
                f"cannot create {name}: column {column.name!r} appears twice", table=name, column=column.name
            )
        seen.add(column.name)
        if not valid_type_text(column.pg_type):
            raise RefdataSyncError(
                f"cannot create {name}: column {column.name!r} has type {column.pg_type!r} "
                f"(source type {column.source_type or '?'}), which is not a PostgreSQL type name",
                table=name,
                column=column.name,
            )
    missing = [k for k in key if k not in seen]
    if missing:
        raise RefdataSyncError(
            f"cannot create {name}: primary key column(s) {', '.join(missing)} are not among the source's "
            f"columns ({', '.join(c.name for c in columns)})",
            table=name,
            column=", ".join(missing),
        )
    keys = set(key)
    definitions = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(column.name),
            sql.SQL(column.pg_type),
            sql.SQL(" NOT NULL" if column.name in keys else ""),
        )
        for column in columns
    ]
    # The tracking columns exactly as ensure_tracking_columns adds them (same definitions, same check name).
    definitions += [
        sql.SQL("{} {}").format(sql.Identifier(tracking), sql.SQL(definition))
        for tracking, definition in TRACKING_COLUMNS.items()
    ]
    definitions.append(sql.SQL("PRIMARY KEY ({})").format(ident_list(key)))
    definitions.append(
        sql.SQL("CONSTRAINT {} CHECK ({} IN ({}, {}))").format(
            sql.Identifier(f"{table}__source_check"[:63]),
            sql.Identifier(SOURCE),
            sql.Literal(AUTHORITATIVE),
            sql.Literal(AUTO_DERIVED),
        )
    )
    statements = []
    if create_schema:
        statements.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {};\n").format(sql.Identifier(schema)))
    statements.append(
        sql.SQL("CREATE TABLE {} (\n    {}\n);\n").format(
            table_ref(schema, table), sql.SQL(",\n    ").join(definitions)
        )
    )
    # No index name: PostgreSQL picks a unique one (a truncated name could collide with another table's).
    statements.append(
        sql.SQL("CREATE INDEX ON {} ({});").format(table_ref(schema, table), sql.Identifier(NEEDS_REVIEW))
    )
    return sql.Composed(statements)


def check_types(conn: psycopg.Connection, schema: str, table: str, columns: Sequence[SourceColumn]) -> None:
    """Let PostgreSQL confirm each column's type exists (``to_regtype``); raise naming the first that does not.

    Each probe runs in a savepoint, so a malformed type name does not abort the caller's transaction.
    """
    name = f"{schema}.{table}"
    for column in columns:
        try:
            with conn.transaction():
                known = conn.execute("SELECT to_regtype(%s) IS NOT NULL", (column.pg_type,)).fetchone()[0]
        except psycopg.Error:
            known = False
        if not known:
            raise RefdataSyncError(
                f"cannot create {name}: column {column.name!r} would have type {column.pg_type!r} "
                f"(source type {column.source_type or '?'}), which this PostgreSQL does not know",
                table=name,
                column=column.name,
            )


def create_reference_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    columns: Sequence[SourceColumn],
    primary_key: str | Sequence[str],
) -> str:
    """Create the table (and its schema when missing) in the caller's transaction; returns the DDL run.

    The caller holds the table's lock (the sync's ``lock_name``).  When the schema is missing, its creation
    is serialized by a lock on the schema's name, so two tables of one new schema do not race on it.

    :raises RefdataSyncError: see :func:`create_table_statement` and :func:`check_types`.
    """
    create_table_statement(schema, table, columns, primary_key)  # the pure checks first: no query for bad input
    check_types(conn, schema, table, columns)
    if not _schema_exists(conn, schema):
        lock_name(conn, f"{schema}.__create_schema__")
    statement = create_table_statement(
        schema, table, columns, primary_key, create_schema=not _schema_exists(conn, schema)
    )
    conn.execute(statement)
    return statement.as_string(conn)


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s)", (schema,)).fetchone()[0]
