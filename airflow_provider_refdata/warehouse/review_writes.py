"""The writes of the steward's review actions, over the decisions stage of
:mod:`~airflow_provider_refdata.warehouse.review` (statuses already set, every row validated).

One statement each, whatever the row count: :func:`rewrite_holder` per column holding the table's key (the
remaps' children first, so no foreign key check fails), :func:`apply_approvals` (one ``UPDATE`` with the audit
rows and the placeholder closing in the same statement), :func:`delete_resolved` for rejects and remaps
(``DELETE … RETURNING`` the row before into ``refdata.review_log``), and :func:`record_aliases`
(``refdata.key_alias``, chains collapsed).  Each audited row gets its ``refdata.placeholder`` row closed
(inserted closed when the key had no provenance yet).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import TableInfo
from airflow_provider_refdata.warehouse.review import (
    APPROVE,
    KEY,
    REMAP,
    RESOLUTIONS,
    STAGE_IDS,
    TARGET,
    KeyHolder,
    differs,
    key_match,
    stage_ids,
    text_match,
)
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.staging import converted_value
from airflow_provider_refdata.warehouse.tracking import AUTO_DERIVED, NEEDS_REVIEW, SOURCE


def rewrite_holder(conn: psycopg.Connection, holder: KeyHolder) -> int:
    """Rewrite the remapped keys (``remap`` rows) in ``holder``'s column to their targets; returns rows rewritten."""
    column = holder.column
    statement = sql.SQL(
        "WITH u AS (UPDATE {r} AS r SET {c} = {new} FROM {s} AS s WHERE s.{status} = %s AND {match} RETURNING 1)"
        " SELECT count(*) FROM u"
    ).format(
        **STAGE_IDS,
        r=table_ref(holder.schema, holder.table),
        c=sql.Identifier(holder.columns[0]),
        new=converted_value(sql.Identifier("s", TARGET), column),
        match=text_match(sql.Identifier("r", holder.columns[0]), column, sql.Identifier("s", KEY)),
    )
    return conn.execute(statement, (REMAP,)).fetchone()[0]


def _audit_and_close(action: str) -> sql.Composable:
    """The CTEs that write the audit rows and close the placeholders of the rows written by CTE ``w``.

    ``w`` returns ``line, k, before, after, remap_to, at, dom`` (``k`` the key as text, ``before``/``after`` the
    row as jsonb, ``at``/``dom`` its ``_derived_at``/``_derived_from_domain``, for a placeholder row inserted
    closed when none existed).

    :param action: the action audited.
    """
    return sql.SQL(
        """
        log AS (
            INSERT INTO refdata.review_log (review_id, table_name, key, action, actor, before, after, remap_to,
                                            source_file)
            SELECT %(rid)s, %(table)s, w.k, {action}, %(actor)s, w.before, w.after, w.remap_to, %(file)s
              FROM w ORDER BY w.line
            RETURNING 1
        ), closed AS (
            INSERT INTO refdata.placeholder AS p
                   (table_name, key, first_seen_at, first_seen_run, last_seen_at, last_seen_run, domains,
                    fact_rows_total, fact_rows_last, resolution, resolved_at, resolved_by)
            SELECT %(table)s, w.k, COALESCE(w.at, now()), %(rid)s, COALESCE(w.at, now()), %(rid)s,
                   array_remove(ARRAY[w.dom::text], NULL), 0, 0, {resolution}, now(), %(actor)s
              FROM w ORDER BY w.k
            ON CONFLICT (table_name, key) DO UPDATE
               SET resolution = EXCLUDED.resolution, resolved_at = EXCLUDED.resolved_at,
                   resolved_by = EXCLUDED.resolved_by
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM log), (SELECT count(*) FROM closed)
        """
    ).format(action=sql.Literal(action), resolution=sql.Literal(RESOLUTIONS[action]))


def apply_approvals(
    conn: psycopg.Connection,
    table_name: str,
    info: TableInfo,
    key: str,
    columns: Sequence[str],
    *,
    source: str,
    review_id: str,
    actor: str,
    source_file: str | None,
) -> int:
    """Approve the ``approve`` rows: ``_needs_review=false``, ``_source=source``, the staged values that differ;
    audit each row (before and after) and close its placeholder, in one statement.  Returns rows approved.

    :param conn: a connection inside the action's transaction.
    :param table_name: the schema-qualified table, unquoted.
    :param info: its catalog entry.
    :param key: its key column.
    :param columns: the staged business columns (their cells that differ are written).
    :param source: ``auto_derived`` or ``authoritative``.
    :param review_id: the call's review id.
    :param actor: who approves.
    :param source_file: the review file, or ``None``.
    """
    sets = [
        sql.SQL("{} = false").format(sql.Identifier(NEEDS_REVIEW)),
        sql.SQL("{} = {}").format(sql.Identifier(SOURCE), sql.Literal(source)),
        *(
            sql.SQL("{c} = CASE WHEN {differs} THEN {new} ELSE t.{c} END").format(
                c=sql.Identifier(c),
                differs=differs(info, c),
                new=converted_value(sql.Identifier("s", c), info.columns[c]),
            )
            for c in columns
        ),
    ]
    # The row before comes from a second reference to the table in FROM: it reads the statement's snapshot.
    statement = sql.SQL(
        """
        WITH w AS (
            UPDATE {t} AS t SET {sets}
              FROM {s} AS s JOIN {t} AS o ON {match}
             WHERE s.{status} = 'approve' AND t.{tkey} = o.{tkey}
            RETURNING s.{line} AS line, t.{tkey}::text AS k, to_jsonb(o) AS before, to_jsonb(t) AS after,
                      NULL::text AS remap_to, t.{at} AS at, t.{dom} AS dom
        ), {audit}
        """
    ).format(
        **stage_ids(info, key, match=key_match("o", info, key)),
        sets=sql.SQL(", ").join(sets),
        audit=_audit_and_close(APPROVE),
    )
    params = {"rid": review_id, "table": table_name, "actor": actor, "file": source_file}
    return conn.execute(statement, params).fetchone()[0]


def delete_resolved(
    conn: psycopg.Connection,
    table_name: str,
    info: TableInfo,
    key: str,
    action: str,
    *,
    review_id: str,
    actor: str,
    source_file: str | None,
) -> int:
    """Delete the auto-derived rows of the ``action`` rows (``reject`` or ``remap``), audit each (the row before,
    no row after, the remap target) and close its placeholder, in one statement.  Returns rows deleted.

    :param conn: a connection inside the action's transaction (holders already checked or rewritten).
    :param table_name: the schema-qualified table, unquoted.
    :param info: its catalog entry.
    :param key: its key column.
    :param action: ``reject`` or ``remap``.
    :param review_id: the call's review id.
    :param actor: who decided.
    :param source_file: the review file, or ``None``.
    """
    statement = sql.SQL(
        """
        WITH w AS (
            DELETE FROM {t} AS t USING {s} AS s
             WHERE s.{status} = {wanted} AND {match} AND t.{src} = {auto}
            RETURNING s.{line} AS line, t.{tkey}::text AS k, to_jsonb(t) AS before, NULL::jsonb AS after,
                      CASE WHEN s.{status} = 'remap' THEN s.{to} END AS remap_to, t.{at} AS at, t.{dom} AS dom
        ), {audit}
        """
    ).format(
        **stage_ids(info, key),
        wanted=sql.Literal(action),
        auto=sql.Literal(AUTO_DERIVED),
        audit=_audit_and_close(action),
    )
    params = {"rid": review_id, "table": table_name, "actor": actor, "file": source_file}
    return conn.execute(statement, params).fetchone()[0]


def record_aliases(conn: psycopg.Connection, table_name: str, *, review_id: str, actor: str) -> None:
    """Record ``from_key → to_key`` of the ``remap`` rows in ``refdata.key_alias`` and collapse chains.

    An alias that pointed at a key remapped now points at its new target (``X → K`` and ``K → T`` give
    ``X → T``); an alias from the new target back to the remapped key (``T → K``) is dropped first, since the
    target exists again and the collapse would make it point at itself.
    """
    params = {"table": table_name, "rid": review_id, "actor": actor, "remap": REMAP}
    conn.execute(
        sql.SQL(
            "DELETE FROM refdata.key_alias AS a USING {s} AS s WHERE s.{status} = %(remap)s"
            " AND a.table_name = %(table)s AND a.from_key = s.{to} AND a.to_key = s.{key}"
        ).format(**STAGE_IDS),
        params,
    )
    conn.execute(
        sql.SQL(
            "UPDATE refdata.key_alias AS a SET to_key = s.{to} FROM {s} AS s WHERE s.{status} = %(remap)s"
            " AND a.table_name = %(table)s AND a.to_key = s.{key}"
        ).format(**STAGE_IDS),
        params,
    )
    conn.execute(
        sql.SQL(
            """
            INSERT INTO refdata.key_alias AS a (table_name, from_key, to_key, created_by, review_id)
            SELECT %(table)s, s.{key}, s.{to}, %(actor)s, %(rid)s FROM {s} AS s WHERE s.{status} = %(remap)s
             ORDER BY s.{key}
            ON CONFLICT (table_name, from_key) DO UPDATE
               SET to_key = EXCLUDED.to_key, created_at = now(), created_by = EXCLUDED.created_by,
                   review_id = EXCLUDED.review_id
            """
        ).format(**STAGE_IDS),
        params,
    )
