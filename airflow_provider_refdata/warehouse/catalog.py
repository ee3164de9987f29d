"""Read a table's shape from the PostgreSQL catalog: columns, types, lengths, primary key."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

_TEXT_TYPE_PREFIXES = ("text", "character varying", "character", "varchar", "bpchar")


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    data_type: str  # format_type(), e.g. "character varying(32)", "numeric(18,2)", "timestamp with time zone"
    max_length: int | None  # character_maximum_length for varchar/char columns
    nullable: bool
    has_default: bool

    @property
    def is_text(self) -> bool:
        """Whether the column holds text (``text``, ``varchar``, ``char``), so text is assigned to it as is."""
        return self.data_type.startswith(_TEXT_TYPE_PREFIXES)


@dataclass(frozen=True)
class TableInfo:
    schema: str
    table: str
    columns: dict[str, ColumnInfo]  # in ordinal order
    primary_key: list[str]

    def has_column(self, name: str) -> bool:
        return name in self.columns


def table_info(conn: psycopg.Connection, schema: str, table: str) -> TableInfo | None:
    """The table's columns (in order) and primary key, or ``None`` when the table does not exist."""
    rows = conn.execute(
        """
        SELECT a.attname,
               format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4
                    THEN a.atttypmod - 4 END,
               NOT a.attnotnull,
               a.atthasdef,
               COALESCE(a.attnum = ANY(i.indkey), false)
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
         WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
         ORDER BY a.attnum
        """,
        (schema, table),
    ).fetchall()
    if not rows:
        return None
    pk_rows = conn.execute(
        """
        SELECT a.attname
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
         WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
         ORDER BY k.ord
        """,
        (schema, table),
    ).fetchall()
    columns = {
        name: ColumnInfo(name=name, data_type=dtype, max_length=maxlen, nullable=nullable, has_default=hasdef)
        for name, dtype, maxlen, nullable, hasdef, _ in rows
    }
    return TableInfo(schema=schema, table=table, columns=columns, primary_key=[r[0] for r in pk_rows])
