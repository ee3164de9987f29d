"""Set-based FK coverage SQL: stage the distinct fact keys once, one join against the reference table.

The distinct keys travel to PostgreSQL with COPY into a temporary stage (never as ``IN`` lists or one query
per value); a single ``LEFT JOIN`` then splits them into authoritative, auto-derived and missing keys and
returns the positions of the missing ones, so only those need derived columns.  The same module counts
auto-derived vs all rows of a reference table for the ratios (one aggregate query per table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import ColumnInfo, TableInfo
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.staging import copy_frame, create_stage, stage_type
from airflow_provider_refdata.warehouse.tracking import AUTO_DERIVED, SOURCE

#: Stage column holding the candidate's position (index into the derived candidates).
POSITION_COLUMN = "_i"
#: Stage column holding the key.
KEY_COLUMN = "_k"


@dataclass(frozen=True)
class CoverageCounts:
    """How the distinct fact keys of one FK split against its reference table.

    ``missing_positions`` are the absent keys that fit the key column (the ones to derive and insert);
    ``too_long_positions`` the absent keys longer than the key column's ``varchar(n)``/``char(n)``, which
    no insert could store.  Both count as missing.
    """

    total: int
    covered: int
    auto_derived: int
    missing_positions: list[int] = field(default_factory=list)
    too_long_positions: list[int] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.total - self.covered

    @property
    def authoritative(self) -> int:
        return self.covered - self.auto_derived


def stage_keys(conn: psycopg.Connection, stage: str, keys: Sequence[str] | np.ndarray, key_column: ColumnInfo) -> None:
    """Create the key stage ``(_i integer, _k <key type>)`` and COPY the distinct keys into it.

    :param conn: a connection inside the transaction that uses the stage.
    :param stage: the temporary table's name.
    :param keys: the distinct normalised keys; ``_i`` is each key's position.
    :param key_column: the reference table's key column (for the stage key's type).
    """
    create_stage(conn, stage, [POSITION_COLUMN, KEY_COLUMN], ["integer", stage_type(key_column)])
    copy_frame(conn, stage, pd.DataFrame({POSITION_COLUMN: np.arange(len(keys)), KEY_COLUMN: keys}))
    # A fresh temp table has no statistics; with them the planner picks the right join for the key count.
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(stage)))


def stage_earlier_keys(conn: psycopg.Connection, stage: str, keys: Sequence[str], key_column: ColumnInfo) -> None:
    """Create a stage ``(_k <key type>)`` holding keys written (or planned) earlier in the same call, via COPY.

    :param conn: a connection inside the transaction that uses the stage.
    :param stage: the temporary table's name.
    :param keys: the keys as text.
    :param key_column: the reference table's key column (for the stage key's type).
    """
    create_stage(conn, stage, [KEY_COLUMN], [stage_type(key_column)])
    copy_frame(conn, stage, pd.DataFrame({KEY_COLUMN: list(keys)}))


def measure_coverage(
    conn: psycopg.Connection, stage: str, info: TableInfo, key: str, *, earlier_stage: str | None = None
) -> CoverageCounts:
    """One join of the key stage against the reference table: totals, split and missing positions.

    A table without the tracking columns counts every covered key as authoritative.  Absent keys longer
    than a length-limited text key column are told apart in the same statement (``char_length`` on the
    server, so the server's idea of a character decides).

    With ``earlier_stage`` (keys this call already inserted into the table for another FK configuration, or
    in plan mode would insert), coverage is measured as the table was before the call: those keys count as
    missing, not covered, and are not in ``missing_positions`` (nothing is left to insert for them).

    :param conn: the connection holding the stage.
    :param stage: the key stage made by :func:`stage_keys`.
    :param info: the reference table's catalog entry.
    :param key: the reference table's key column.
    :param earlier_stage: a stage made by :func:`stage_earlier_keys`, or ``None``.
    """
    if earlier_stage is None:
        earlier = sql.SQL("false")
    else:
        earlier = sql.SQL("EXISTS (SELECT 1 FROM {} e WHERE e.{k} = s.{k})").format(
            sql.Identifier(earlier_stage), k=sql.Identifier(KEY_COLUMN)
        )
    if info.has_column(SOURCE):
        auto = sql.SQL("count(*) FILTER (WHERE t.{} = %(auto)s AND NOT {})").format(sql.Identifier(SOURCE), earlier)
    else:
        auto = sql.SQL("0")
    column = info.columns[key]
    if column.max_length is not None and column.is_text:
        too_long = sql.SQL("char_length(s.{}) > %(limit)s").format(sql.Identifier(KEY_COLUMN))
    else:
        too_long = sql.SQL("false")
    statement = sql.SQL(
        """
        SELECT count(*), count(*) FILTER (WHERE t.{key} IS NOT NULL AND NOT {earlier}), {auto},
               COALESCE(array_agg(s.{pos} ORDER BY s.{pos})
                        FILTER (WHERE t.{key} IS NULL AND NOT {too_long} AND NOT {earlier}), '{{}}'),
               COALESCE(array_agg(s.{pos} ORDER BY s.{pos}) FILTER (WHERE t.{key} IS NULL AND {too_long}), '{{}}')
          FROM {stage} s
          LEFT JOIN {target} t ON t.{key} = s.{skey}
        """
    ).format(
        key=sql.Identifier(key),
        auto=auto,
        pos=sql.Identifier(POSITION_COLUMN),
        too_long=too_long,
        earlier=earlier,
        stage=sql.Identifier(stage),
        target=table_ref(info.schema, info.table),
        skey=sql.Identifier(KEY_COLUMN),
    )
    params = {"auto": AUTO_DERIVED, "limit": column.max_length}
    total, covered, auto_count, missing, too_long_keys = conn.execute(statement, params).fetchone()
    return CoverageCounts(
        total=total,
        covered=covered,
        auto_derived=auto_count,
        missing_positions=list(missing),
        too_long_positions=list(too_long_keys),
    )


def source_counts(conn: psycopg.Connection, info: TableInfo) -> tuple[int, int]:
    """``(all rows, auto-derived rows)`` of a reference table, in one aggregate query.

    :param conn: a warehouse connection.
    :param info: the reference table's catalog entry (a table without ``_source`` has no auto-derived rows).
    """
    if info.has_column(SOURCE):
        auto = sql.SQL("count(*) FILTER (WHERE {} = %(auto)s)").format(sql.Identifier(SOURCE))
    else:
        auto = sql.SQL("0")
    statement = sql.SQL("SELECT count(*), {} FROM {}").format(auto, table_ref(info.schema, info.table))
    total, auto_count = conn.execute(statement, {"auto": AUTO_DERIVED}).fetchone()
    return total, auto_count
