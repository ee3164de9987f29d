"""Values a source renders in its own way, converted in the stage to the target column's type.

A source renders each value once, without knowing the target's type: MySQL ``BIT`` as its number (right for
``boolean``, integer and numeric targets), MySQL ``SET`` as ``a,b`` (right for text targets).  When the target
column wants something else — ``bit(n)``/``bit varying(n)`` for a ``BIT``, an array (``text[]``) for a
``SET`` — the column is staged as text and converted in place by one ``ALTER TABLE … TYPE … USING`` on the
temporary stage (set-based, before the merge), so the merge itself only ever sees the target's types.

A source marks such columns in ``SourceRead.formats`` (target column → format name); a format/target pair
this module cannot convert is refused before any data moves, naming the column and both types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataSyncError
from airflow_provider_refdata.warehouse.catalog import TableInfo

MYSQL_BIT = "mysql_bit"  # the value's number, as decimal text
MYSQL_SET = "mysql_set"  # members joined with ',' ('' = the empty set)

_BIT_TYPE = re.compile(r"^bit(?: varying)?(?:\((?P<length>\d+)\))?$")


def _bit_expression(column: sql.Identifier, data_type: str) -> sql.Composable:
    """Decimal text of an unsigned 64-bit number → ``bit(n)`` / ``bit varying(n)``.

    The number goes through ``bigint::bit(64)`` (two's complement for values ≥ 2^63, so ``BIT(64)`` works), and
    the rightmost ``n`` bits are kept; a number that does not fit in ``n`` bits is refused by
    :func:`convert_stage` first, never silently cut.
    """
    match = _BIT_TYPE.match(data_type)
    assert match is not None
    length = int(match.group("length") or 64)
    number = sql.SQL("({}::numeric)").format(column)
    as_bits = sql.SQL(
        "right((({n} - CASE WHEN {n} >= 9223372036854775808 THEN 18446744073709551616 ELSE 0 END)"
        "::bigint::bit(64))::text, {len})"
    ).format(n=number, len=sql.Literal(length))
    # Values too large for n bits were refused by convert_stage before this runs.
    return sql.SQL("{bits}::{t}").format(bits=as_bits, t=sql.SQL(data_type))


def _set_expression(column: sql.Identifier, data_type: str) -> sql.Composable:
    return sql.SQL("string_to_array({}, ',')::{}").format(column, sql.SQL(data_type))


def conversions(
    info: TableInfo, columns: Sequence[str], formats: Mapping[str, str]
) -> dict[str, tuple[str, sql.Composable]]:
    """Stage columns to convert after COPY: ``{column: (target type, USING expression)}``; refuses unconvertible
    pairs.

    :param info: the target table.
    :param columns: the staged columns.
    :param formats: the source's ``SourceRead.formats``.
    """
    out: dict[str, tuple[str, sql.Composable]] = {}
    for column in columns:
        fmt = formats.get(column)
        if fmt is None:
            continue
        data_type = info.columns[column].data_type
        ident = sql.Identifier(column)
        if fmt == MYSQL_BIT and _BIT_TYPE.match(data_type):
            out[column] = (data_type, _bit_expression(ident, data_type))
        elif fmt == MYSQL_SET and data_type.endswith("[]"):
            out[column] = (data_type, _set_expression(ident, data_type))
        elif fmt == MYSQL_SET and data_type in ("json", "jsonb"):
            raise RefdataSyncError(
                f"{info.schema}.{info.table}: column {column!r} is {data_type}, but its source is a MySQL SET; "
                "use text[] (an array of the members) or text",
                table=f"{info.schema}.{info.table}",
                column=column,
            )
    return out


def convert_stage(
    conn: psycopg.Connection,
    stage: str,
    converted: Mapping[str, tuple[str, sql.Composable]],
    *,
    table: str,
    key: Sequence[str],
) -> None:
    """Convert the staged text columns to the target's types, in one statement (types from the catalog).

    A value that does not fit (a ``BIT`` number wider than the ``bit(n)`` target) fails the table naming the
    column, key and value, found by one query per converted column before anything is converted.
    """
    if not converted:
        return
    for column, (data_type, _) in converted.items():
        match = _BIT_TYPE.match(data_type)
        if match is None:
            continue
        length = int(match.group("length") or 64)
        bad = conn.execute(
            sql.SQL("SELECT {c}, {k} FROM {s} WHERE {c}::numeric >= power(2::numeric, {n}) LIMIT 1").format(
                c=sql.Identifier(column),
                k=sql.SQL(", ").join(map(sql.Identifier, key)),
                s=sql.Identifier(stage),
                n=sql.Literal(length),
            )
        ).fetchone()
        if bad is not None:
            raise RefdataSyncError(
                f"{table}: column {column!r} of the row with key "
                + ", ".join(f"{k}={v!r}" for k, v in zip(key, bad[1:], strict=True))
                + f": the number {bad[0]} does not fit in {data_type}; nothing was changed",
                table=table,
                key=tuple(bad[1:]),
                column=column,
            )
    clauses = [
        sql.SQL("ALTER COLUMN {} TYPE {} USING {}").format(sql.Identifier(column), sql.SQL(data_type), expression)
        for column, (data_type, expression) in converted.items()
    ]
    conn.execute(sql.SQL("ALTER TABLE {} ").format(sql.Identifier(stage)) + sql.SQL(", ").join(clauses))
