"""Set-based SQL of the steward's review actions (approve, reject, remap), over a stage of decisions.

Every decision — a review-file row or a key handed to ``approve``/``reject``/``remap`` — is COPYed into one
temporary stage (:func:`create_review_stage`): its line, key, action, remap target, a status and, for
approvals, the business values as text.  Then a fixed number of statements run, whatever the row count
(never one query per key):

1. with rejects or remaps staged, :func:`lock_tables` locks the tables holding the key (``SHARE ROW
   EXCLUSIVE``: no writer can make a row hold a key between the check and the delete); then
   :func:`lock_review_rows` locks the staged keys' rows (``FOR UPDATE``) and the remap targets (``FOR KEY
   SHARE``: they cannot disappear), in key order;
2. :func:`classify` gives every row its status in one ``UPDATE … FROM`` over the stage joined to the table,
   ``refdata.placeholder`` and ``refdata.key_alias``: the action to apply, ``unchanged`` (no action, or already
   in the asked state) or an error code (:data:`ERRORS`);
3. :func:`value_problems` finds approval values that do not fit their column (type, length, NOT NULL) and
   :func:`mark_unchanged_approvals` turns approvals whose row already holds every value into ``unchanged``;
4. :func:`holder_counts` counts, per column that holds the table's key (a real foreign key of another table,
   or a configured fact column), the rows still holding each rejected or remapped key;
5. the writes, in :mod:`~airflow_provider_refdata.warehouse.review_writes`.

:func:`open_placeholder_rows` reads the open placeholders, most used first, for a steward to look at.

Keys are compared as text (``t.key::text``, as ``refdata.placeholder`` stores them); for a text key column the
comparison is the column itself, so its index serves the join.  The caller runs all of it in one transaction
holding the table's advisory lock (:func:`~airflow_provider_refdata.warehouse.state.lock_name`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.backfill import ROW_COLUMN, invalid_values
from airflow_provider_refdata.warehouse.catalog import ColumnInfo, TableInfo
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.staging import converted_value, copy_rows, create_stage
from airflow_provider_refdata.warehouse.tracking import (
    AUTHORITATIVE,
    AUTO_DERIVED,
    DERIVED_AT,
    DERIVED_FROM_DOMAIN,
    NEEDS_REVIEW,
    SOURCE,
)

STAGE = "refdata_review_rows"
LINE = ROW_COLUMN  # the stage's line column: what invalid_values reports positions by
KEY = "_refdata_key"
ACTION = "_refdata_action"
TARGET = "_refdata_to"
STATUS = "_refdata_status"
#: The stage's own columns, before the business values.
STAGE_COLUMNS = (LINE, KEY, ACTION, TARGET, STATUS)

APPROVE, REJECT, REMAP = "approve", "reject", "remap"
NO_ACTION, UNCHANGED = "none", "unchanged"
#: Error statuses :func:`classify` (and the later checks) give a row.
ERRORS = (
    "err_action",
    "err_no_key",
    "err_duplicate",
    "err_no_target",
    "err_same_key",
    "err_missing",
    "err_authoritative",
    "err_target_missing",
    "err_target_in_file",
    "err_value",
    "err_referenced",
)
#: ``refdata.placeholder.resolution`` per action.
RESOLUTIONS = {APPROVE: "approved", REJECT: "rejected", REMAP: "remapped"}
#: The stage's and the tracking columns' identifiers, shared by the statements' ``format`` calls.
STAGE_IDS = {
    "s": sql.Identifier(STAGE),
    "line": sql.Identifier(LINE),
    "key": sql.Identifier(KEY),
    "action": sql.Identifier(ACTION),
    "to": sql.Identifier(TARGET),
    "status": sql.Identifier(STATUS),
    "src": sql.Identifier(SOURCE),
    "review": sql.Identifier(NEEDS_REVIEW),
    "at": sql.Identifier(DERIVED_AT),
    "dom": sql.Identifier(DERIVED_FROM_DOMAIN),
}


def stage_ids(info: TableInfo, key: str, **more: sql.Composable) -> dict[str, sql.Composable]:
    """:data:`STAGE_IDS` plus the reference table ``t``, its key column ``tkey`` and ``match`` (``t`` ↔ ``s``)."""
    return {
        **STAGE_IDS,
        "t": table_ref(info.schema, info.table),
        "tkey": sql.Identifier(key),
        "match": key_match("t", info, key),
        **more,
    }


@dataclass(frozen=True)
class KeyHolder:
    """A column (or column group) of some table that holds the reference table's key values.

    :param schema: the holding table's schema.
    :param table: the holding table.
    :param columns: its columns holding the key (several for a multi-column foreign key).
    :param referenced: the reference table's columns they match, same order.
    :param column: the catalog entry of the single holding column (``None`` for a multi-column one).
    :param origin: where it comes from, for messages (``foreign key constraint x``, ``fact_tables of fk_plan``).
    :param rewritable: a single column holding the key itself: a remap rewrites it.
    """

    schema: str
    table: str
    columns: tuple[str, ...]
    referenced: tuple[str, ...]
    column: ColumnInfo | None
    origin: str
    rewritable: bool

    @property
    def name(self) -> str:
        """``schema.table.column`` (``schema.table.(a, b)`` for several columns)."""
        cols = self.columns[0] if len(self.columns) == 1 else f"({', '.join(self.columns)})"
        return f"{self.schema}.{self.table}.{cols}"


def text_match(left: sql.Composable, column: ColumnInfo, right: sql.Composable) -> sql.Composable:
    """``left = right`` with ``left`` (a column) compared as text: as is for a text column (its index serves)."""
    if column.is_text:
        return sql.SQL("{} = {}").format(left, right)
    return sql.SQL("{}::text = {}").format(left, right)


def key_match(alias: str, info: TableInfo, key: str, staged: str = KEY, stage_alias: str = "s") -> sql.Composable:
    """``alias.key`` matches the stage's text column ``staged``."""
    return text_match(sql.Identifier(alias, key), info.columns[key], sql.Identifier(stage_alias, staged))


def create_review_stage(conn: psycopg.Connection, columns: Sequence[str]) -> None:
    """The decisions stage: :data:`STAGE_COLUMNS` (line ``integer``, the others text) and ``columns`` (text).

    :param conn: a connection inside the action's transaction.
    :param columns: the business columns whose values approvals write.
    """
    names = [*STAGE_COLUMNS, *columns]
    create_stage(conn, STAGE, names, ["integer", *["text"] * (len(names) - 1)])


def copy_review_rows(
    conn: psycopg.Connection, columns: Sequence[str], rows: Iterable[Sequence[str | int | None]]
) -> int:
    """COPY decisions (line, key, action, target, then one value per column of ``columns``) into the stage."""
    return copy_rows(conn, STAGE, [LINE, KEY, ACTION, TARGET, *columns], rows)


def analyze_stage(conn: psycopg.Connection) -> None:
    """Statistics for the fresh stage, so the planner joins it by its real size (index probes, not scans)."""
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(STAGE)))


def lock_review_rows(conn: psycopg.Connection, info: TableInfo, key: str) -> None:
    """Lock the rows of the staged keys (``FOR UPDATE``) and of the remap targets (``FOR KEY SHARE``)."""
    for staged, strength in ((KEY, "UPDATE"), (TARGET, "KEY SHARE")):
        conn.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT 1 FROM {t} AS t JOIN {s} AS s ON {match}"
                " WHERE s.{action} IS NOT NULL ORDER BY t.{tkey} FOR {strength} OF t) AS locked"
            ).format(**stage_ids(info, key, match=key_match("t", info, key, staged), strength=sql.SQL(strength)))
        )


def classify(conn: psycopg.Connection, table_name: str, info: TableInfo, key: str, *, authoritative: bool) -> None:
    """Give every staged row its status (one statement; see the module docstring).

    An approval that asks for ``authoritative`` is classified ``approve`` for an authoritative row that an
    earlier approval made authoritative (placeholder ``approved``, not in review), so that repeating it is
    ``unchanged`` rather than refused; :func:`refuse_authoritative_changes` refuses it when values differ.

    :param conn: a connection inside the action's transaction (state tables created).
    :param table_name: the schema-qualified table, unquoted (as ``refdata.placeholder`` names it).
    :param info: its catalog entry.
    :param key: its key column.
    :param authoritative: the approvals make the rows authoritative.
    """
    ident = stage_ids(
        info, key, match=key_match("t", info, key, KEY, "s2"), match_to=key_match("t2", info, key, TARGET, "s2")
    )
    statement = sql.SQL(
        """
        UPDATE {s} AS s SET {status} = c.status
          FROM (
            SELECT s2.{line} AS line,
                   CASE
                     WHEN s2.{action} IS NULL THEN 'none'
                     WHEN s2.{action} NOT IN ('approve', 'reject', 'remap') THEN 'err_action'
                     WHEN s2.{key} IS NULL THEN 'err_no_key'
                     WHEN d.k IS NOT NULL THEN 'err_duplicate'
                     WHEN s2.{action} = 'remap' AND s2.{to} IS NULL THEN 'err_no_target'
                     WHEN s2.{action} = 'remap' AND s2.{to} = s2.{key} THEN 'err_same_key'
                     WHEN t.{tkey} IS NULL THEN
                          CASE WHEN s2.{action} = 'reject' THEN 'unchanged'
                               WHEN s2.{action} = 'remap' AND a.to_key = s2.{to} THEN 'unchanged'
                               ELSE 'err_missing' END
                     WHEN t.{src} = %(auth)s THEN
                          CASE WHEN s2.{action} = 'approve' AND %(authoritative)s AND NOT t.{review}
                                    AND p.resolution = 'approved' THEN 'approve'
                               ELSE 'err_authoritative' END
                     WHEN s2.{action} = 'remap' AND t2.{tkey} IS NULL THEN 'err_target_missing'
                     WHEN s2.{action} = 'remap' AND o.k IS NOT NULL THEN 'err_target_in_file'
                     ELSE s2.{action}
                   END AS status
              FROM {s} AS s2
              LEFT JOIN {t} AS t ON {match}
              LEFT JOIN {t} AS t2 ON s2.{action} = 'remap' AND {match_to}
              LEFT JOIN refdata.placeholder AS p ON p.table_name = %(table)s AND p.key = s2.{key}
              LEFT JOIN refdata.key_alias AS a ON a.table_name = %(table)s AND a.from_key = s2.{key}
              LEFT JOIN (SELECT {key} AS k FROM {s} WHERE {action} IS NOT NULL AND {key} IS NOT NULL
                          GROUP BY 1 HAVING count(*) > 1) AS d ON d.k = s2.{key}
              LEFT JOIN (SELECT DISTINCT {key} AS k FROM {s} WHERE {action} IN ('reject', 'remap')) AS o
                     ON s2.{action} = 'remap' AND o.k = s2.{to}
          ) AS c
         WHERE s.{line} = c.line
        """
    ).format(**ident)
    conn.execute(statement, {"auth": AUTHORITATIVE, "authoritative": authoritative, "table": table_name})


def clear_values(conn: psycopg.Connection, columns: Sequence[str]) -> None:
    """NULL the business values of every row that is not (or no longer) an approval: never checked or cast."""
    if not columns:
        return
    conn.execute(
        sql.SQL("UPDATE {s} SET {sets} WHERE {status} <> %s AND ({any})").format(
            **STAGE_IDS,
            sets=sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in columns),
            any=sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns),
        ),
        (APPROVE,),
    )


@dataclass(frozen=True)
class ValueProblem:
    """An approval value that does not fit its column.

    :param line: the staged row's line.
    :param key: its key.
    :param column: the column.
    :param value: the value (cut to 60 characters), ``None`` for a missing one.
    :param reason: why, in words.
    """

    line: int
    key: str
    column: str
    value: str | None
    reason: str


def value_problems(conn: psycopg.Connection, info: TableInfo, columns: Sequence[str]) -> list[ValueProblem]:
    """The approvals' values that the update could not store, by line: too long for a ``varchar(n)``/``char(n)``,
    empty for a NOT NULL column (one statement), or not valid for the column's type (PostgreSQL's own input
    functions, through :func:`~airflow_provider_refdata.warehouse.backfill.invalid_values`).

    :param conn: a connection holding the stage (non-approvals' values cleared by :func:`clear_values`).
    :param info: the reference table's catalog entry.
    :param columns: the staged business columns.
    """
    checks: list[tuple[str, sql.Composable, str]] = []
    for name in columns:
        column = info.columns[name]
        ident = sql.Identifier("s", name)
        if column.max_length is not None:
            checks.append(
                (
                    name,
                    sql.SQL("char_length({}) > {}").format(ident, sql.Literal(column.max_length)),
                    f"is longer than the {column.max_length} characters of {column.data_type}",
                )
            )
        if not column.nullable:
            checks.append((name, sql.SQL("{} IS NULL").format(ident), "is empty, but the column is NOT NULL"))
    found: list[ValueProblem] = []
    if checks:
        rows = conn.execute(
            sql.SQL("SELECT s.{line}, s.{key}, {flags} FROM {s} AS s WHERE s.{status} = %s AND ({any})").format(
                **STAGE_IDS,
                flags=sql.SQL(", ").join(
                    sql.SQL("CASE WHEN {} THEN ARRAY[left({}, 60)] END").format(cond, sql.Identifier("s", name))
                    for name, cond, _ in checks
                ),
                any=sql.SQL(" OR ").join(cond for _, cond, _ in checks),
            ),
            (APPROVE,),
        ).fetchall()
        for line, key, *flags in rows:
            for (name, _, reason), flag in zip(checks, flags, strict=True):
                if flag is not None:
                    found.append(ValueProblem(line, key, name, flag[0], reason))
    for bad in invalid_values(conn, STAGE, info, list(columns)):
        column = info.columns[bad.column]
        rows = conn.execute(
            sql.SQL("SELECT {line}, {key}, left({c}, 60) FROM {s} WHERE {line} = ANY(%s) ORDER BY 1").format(
                **STAGE_IDS, c=sql.Identifier(bad.column)
            ),
            (bad.positions,),
        ).fetchall()
        for i, (line, key, value) in enumerate(rows):
            reason = f"is not a valid {column.data_type}" + (f" ({bad.reason})" if i == 0 else "")
            found.append(ValueProblem(line, key, bad.column, value, reason))
    return sorted(found, key=lambda p: (p.line, p.column))


def mark(conn: psycopg.Connection, lines: Sequence[int], status: str) -> None:
    """Set the status of the staged rows at ``lines``."""
    if lines:
        conn.execute(
            sql.SQL("UPDATE {s} SET {status} = %s WHERE {line} = ANY(%s)").format(**STAGE_IDS),
            (status, list(lines)),
        )


def differs(info: TableInfo, name: str) -> sql.Composable:
    """``t.name`` differs from the staged value (an empty cell and a stored ``''`` count as the same)."""
    column = info.columns[name]
    stored, staged = sql.Identifier("t", name), sql.Identifier("s", name)
    if column.is_text:
        return sql.SQL("({t} IS DISTINCT FROM {s} AND NOT ({t} = '' AND {s} IS NULL))").format(t=stored, s=staged)
    new = converted_value(staged, column)
    if column.comparable:
        return sql.SQL("{} IS DISTINCT FROM {}").format(stored, new)
    return sql.SQL("{}::text IS DISTINCT FROM {}::text").format(stored, new)


def _changes(info: TableInfo, columns: Sequence[str], source: str) -> sql.Composable:
    """Predicate on ``t`` and ``s``: approving would change the row (review flag, source, or a value)."""
    parts = [
        sql.SQL("t.{}").format(sql.Identifier(NEEDS_REVIEW)),
        sql.SQL("t.{} <> {}").format(sql.Identifier(SOURCE), sql.Literal(source)),
        *(differs(info, c) for c in columns),
    ]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def mark_unchanged_approvals(
    conn: psycopg.Connection, info: TableInfo, key: str, columns: Sequence[str], source: str
) -> None:
    """Approvals whose row is already approved with ``source`` and every staged value become ``unchanged``."""
    conn.execute(
        sql.SQL(
            "UPDATE {s} AS s SET {status} = %s WHERE s.{status} = %s"
            " AND EXISTS (SELECT 1 FROM {t} AS t WHERE {match} AND NOT {changes})"
        ).format(**stage_ids(info, key, changes=_changes(info, columns, source))),
        (UNCHANGED, APPROVE),
    )


def refuse_authoritative_changes(conn: psycopg.Connection, info: TableInfo, key: str) -> None:
    """Approvals still to apply to an authoritative row (values differ) become ``err_authoritative``."""
    conn.execute(
        sql.SQL(
            "UPDATE {s} AS s SET {status} = 'err_authoritative' WHERE s.{status} = %s"
            " AND EXISTS (SELECT 1 FROM {t} AS t WHERE {match} AND t.{src} = %s)"
        ).format(**stage_ids(info, key)),
        (APPROVE, AUTHORITATIVE),
    )


def status_counts(conn: psycopg.Connection, column: str = STATUS) -> dict[str, int]:
    """``{status: rows}`` of the stage (or, with ``column=ACTION``, ``{action: rows}``)."""
    rows = conn.execute(
        sql.SQL("SELECT {}, count(*) FROM {s} GROUP BY 1").format(sql.Identifier(column), **STAGE_IDS)
    ).fetchall()
    return {status: count for status, count in rows}


def error_rows(conn: psycopg.Connection, table_name: str) -> list[tuple]:
    """(line, key, action, target, status, placeholder resolution, alias target) of the rows with an error."""
    return conn.execute(
        sql.SQL(
            """
            SELECT s.{line}, s.{key}, s.{action}, s.{to}, s.{status}, p.resolution, a.to_key
              FROM {s} AS s
              LEFT JOIN refdata.placeholder AS p ON p.table_name = %(table)s AND p.key = s.{key}
              LEFT JOIN refdata.key_alias AS a ON a.table_name = %(table)s AND a.from_key = s.{key}
             WHERE s.{status} LIKE 'err\\_%%'
             ORDER BY s.{line}
            """
        ).format(**STAGE_IDS),
        {"table": table_name},
    ).fetchall()


def _holder_join(holder: KeyHolder, info: TableInfo, key: str) -> sql.Composable:
    """``JOIN`` clauses from stage ``s`` to the holding rows ``r`` of each staged key."""
    r = table_ref(holder.schema, holder.table)
    if holder.rewritable:
        return sql.SQL("JOIN {} AS r ON {}").format(
            r, text_match(sql.Identifier("r", holder.columns[0]), holder.column, sql.Identifier("s", KEY))
        )
    match = sql.SQL(" AND ").join(
        sql.SQL("r.{} = t.{}").format(sql.Identifier(c), sql.Identifier(ref))
        for c, ref in zip(holder.columns, holder.referenced, strict=True)
    )
    return sql.SQL("JOIN {t} AS t ON {key_match} JOIN {r} AS r ON {match}").format(
        t=table_ref(info.schema, info.table), key_match=key_match("t", info, key), r=r, match=match
    )


def holder_counts(
    conn: psycopg.Connection, info: TableInfo, key: str, holder: KeyHolder, statuses: Sequence[str]
) -> list[tuple[int, str, int]]:
    """(line, key, rows of ``holder`` holding it) of the staged rows with one of ``statuses`` (one statement).

    :param conn: a connection holding the stage.
    :param info: the reference table's catalog entry.
    :param key: its key column.
    :param holder: the column(s) that may hold the keys.
    :param statuses: the statuses looked at (``reject``, ``remap``).
    """
    return conn.execute(
        sql.SQL(
            "SELECT s.{line}, s.{key}, count(*) FROM {s} AS s {join}"
            " WHERE s.{status} = ANY(%s) GROUP BY 1, 2 ORDER BY 1"
        ).format(**STAGE_IDS, join=_holder_join(holder, info, key)),
        (list(statuses),),
    ).fetchall()


def lock_tables(conn: psycopg.Connection, tables: Iterable[tuple[str, str]]) -> None:
    """``LOCK … IN SHARE ROW EXCLUSIVE MODE`` the tables holding the keys, in name order, to the transaction's end.

    Writers of those tables wait (no fact row can start to hold a rejected key between the check and the
    delete); readers pass.  The mode conflicts with itself, so two reviews whose remaps rewrite the same fact
    table queue up instead of deadlocking on a lock upgrade.
    """
    ordered = sorted(set(tables))
    if ordered:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                sql.SQL(", ").join(table_ref(s, t) for s, t in ordered)
            )
        )


def open_placeholder_rows(
    conn: psycopg.Connection,
    table_name: str,
    info: TableInfo,
    key: str,
    columns: Sequence[str],
    limit: int,
    domain: str | None,
) -> list[tuple]:
    """The open placeholders (auto-derived rows in review), most fact rows first: ``(key as text, *columns,
    fact_rows_total, fact_rows_last, first_seen_at, last_seen_at, domains, _derived_from_domain, _derived_at)``.

    A row without provenance (derived before ``refdata.placeholder`` existed) comes last, with ``None`` there.

    :param conn: a connection (state tables created).
    :param table_name: the schema-qualified table, unquoted.
    :param info: its catalog entry.
    :param key: its key column.
    :param columns: the business columns returned.
    :param limit: how many rows.
    :param domain: only rows this domain derived (``_derived_from_domain``) or uses (``domains``).
    """
    provenance = ("fact_rows_total", "fact_rows_last", "first_seen_at", "last_seen_at", "domains")
    query = sql.SQL(
        """
        SELECT t.{tkey}::text, {columns}, t.{dom}, t.{at}
          FROM {t} AS t
          LEFT JOIN refdata.placeholder AS p ON p.table_name = %(table)s AND p.key = t.{tkey}::text
         WHERE t.{src} = %(auto)s AND t.{review}
           AND (%(domain)s::text IS NULL OR %(domain)s = ANY(p.domains) OR t.{dom} = %(domain)s)
         ORDER BY COALESCE(p.fact_rows_total, 0) DESC, t.{tkey}
         LIMIT %(limit)s
        """
    ).format(
        **stage_ids(info, key),
        columns=sql.SQL(", ").join(
            [*(sql.Identifier("t", c) for c in columns), *(sql.Identifier("p", c) for c in provenance)]
        ),
    )
    params = {"table": table_name, "auto": AUTO_DERIVED, "domain": domain, "limit": limit}
    return conn.execute(query, params).fetchall()
