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
    #: Whether values of the type have an equality operator (``json``, ``xml``, ``point`` … do not): the merge
    #: compares the others by their text.
    comparable: bool = True

    @property
    def is_text(self) -> bool:
        """Whether the column holds text (``text``, ``varchar``, ``char``; not arrays of them), so text is
        assigned to it as is."""
        return self.data_type.startswith(_TEXT_TYPE_PREFIXES) and not self.data_type.endswith("]")


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
               COALESCE(a.attnum = ANY(i.indkey), false),
               -- An array compares with its element type's equality; a domain with its base type's.
               EXISTS (SELECT 1
                         FROM pg_type AS t
                         JOIN pg_type AS e ON e.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem
                                                           WHEN t.typtype = 'd' THEN t.typbasetype
                                                           ELSE t.oid END
                         JOIN pg_opclass AS oc ON oc.opcintype = e.oid AND oc.opcdefault
                         JOIN pg_am AS am ON am.oid = oc.opcmethod AND am.amname IN ('btree', 'hash')
                        WHERE t.oid = a.atttypid)
               OR a.atttypid IN ('varchar'::regtype, 'varchar[]'::regtype)
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
        name: ColumnInfo(
            name=name, data_type=dtype, max_length=maxlen, nullable=nullable, has_default=hasdef, comparable=comparable
        )
        for name, dtype, maxlen, nullable, hasdef, _, comparable in rows
    }
    return TableInfo(schema=schema, table=table, columns=columns, primary_key=[r[0] for r in pk_rows])
