"""Small helpers that build quoted SQL fragments with ``psycopg.sql`` (identifiers are often Chinese)."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql


def table_ref(schema: str, table: str) -> sql.Composed:
    """``"schema"."table"``."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def ident_list(columns: Iterable[str], prefix: str | None = None) -> sql.Composed:
    """``"a", "b"`` or, with a prefix (table alias), ``t."a", t."b"``."""
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL(", ").join(sql.Identifier(prefix, c) for c in columns)
