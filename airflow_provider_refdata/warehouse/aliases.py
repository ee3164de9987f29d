"""Key-alias SQL: read ``refdata.key_alias`` and rewrite aliased keys in a warehouse fact table.

A steward's remap of a placeholder key (``P0O1``) to the authoritative key (``P001``) leaves one row
``(table_name, from_key, to_key)`` in ``refdata.key_alias``; ``ensure_references`` maps the facts with them
(:mod:`~airflow_provider_refdata.services.aliases`).  Here:

- :func:`read_aliases` reads the aliases of several reference tables in one query (``None`` when the alias
  table does not exist yet: nothing was ever remapped);
- :func:`rewrite_fact_column` rewrites one column of a fact table with one ``UPDATE … FROM refdata.key_alias``
  (set-based; no value leaves the server), matching values the way the pandas side normalises them: text
  trimmed of the characters Python's ``str.strip()`` removes, blank tokens never matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import ColumnInfo
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.staging import converted_value

ALIAS_TABLE = "refdata.key_alias"

#: The characters ``str.strip()`` removes (``str.isspace()``), so ``btrim`` on the server trims like the facts'
#: normalisation in pandas (ideographic space U+3000 included).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def alias_table_exists(conn: psycopg.Connection) -> bool:
    """Whether ``refdata.key_alias`` exists (it is created with the other state tables).

    :param conn: a warehouse connection.
    """
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ALIAS_TABLE,)).fetchone()[0]


def read_aliases(conn: psycopg.Connection, tables: Iterable[str]) -> dict[str, dict[str, str]] | None:
    """``{table: {from_key: to_key}}`` for the given reference tables that have aliases, in one query.

    ``None`` when ``refdata.key_alias`` does not exist (checked first: a statement naming a missing table
    fails at parse time, whatever guards it).  Tables without aliases are absent from the result.

    :param conn: a warehouse connection.
    :param tables: schema-qualified, unquoted reference tables (``business.年金计划``), as the alias rows name them.
    """
    wanted = sorted(set(tables))
    if not alias_table_exists(conn):
        return None
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT table_name, from_key, to_key FROM refdata.key_alias WHERE table_name = ANY(%s)", (wanted,)
    ).fetchall()
    aliases: dict[str, dict[str, str]] = {}
    for table, from_key, to_key in rows:
        aliases.setdefault(table, {})[from_key] = to_key
    return aliases


def rewrite_fact_column(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    column: ColumnInfo,
    alias_table_name: str,
    blank_tokens: Sequence[str] = (),
) -> int:
    """Rewrite the aliased keys of one fact column to their targets; returns the rows updated.

    A value matches an alias when its text, trimmed, equals ``from_key`` and is not a blank token; it becomes
    ``to_key`` converted to the column's type (as is for text columns, so an over-long target is refused,
    never truncated).  The caller holds the transaction (and the reference table's lock).

    :param conn: a connection inside the caller's transaction.
    :param schema: the fact table's schema.
    :param table: the fact table.
    :param column: the fact column's catalog entry.
    :param alias_table_name: the reference table whose aliases apply, schema-qualified and unquoted.
    :param blank_tokens: values (trimmed) that count as blank for this FK and are never rewritten.
    """
    target = sql.Identifier(column.name)
    statement = sql.SQL(
        """
        UPDATE {fact} AS f
           SET {col} = {value}
          FROM refdata.key_alias AS a
         WHERE a.table_name = %(table)s
           AND btrim(f.{col}::text, %(ws)s) = a.from_key
           AND NOT (a.from_key = ANY(%(blank)s::text[]))
        """
    ).format(
        fact=table_ref(schema, table),
        col=target,
        value=converted_value(sql.Identifier("a", "to_key"), column),
    )
    with conn.cursor() as cur:
        cur.execute(statement, {"table": alias_table_name, "ws": WHITESPACE, "blank": list(blank_tokens)})
        return cur.rowcount
