"""Placeholder provenance SQL: one row per (reference table, auto-derived key) in ``refdata.placeholder``.

Written set-based inside the FK unit of a writing ``ensure_references`` (the unit that holds the table's lock
and did the backfill), so a placeholder row commits or rolls back with the rows it describes:

- :func:`record_placeholders` COPYs the candidate keys with their fact-row counts (counted in numpy from the
  same normalised keys the coverage used) into a small stage, and writes (an UPDATE of the known keys, an
  INSERT of the new ones, one statement) one row per key that is
  **auto-derived in the reference table now** (inserted by this unit, or left by an earlier run);
  authoritative keys are never tracked.  ``first_seen_*`` is kept, ``last_seen_*`` is this run, ``domains``
  gains the call's domain (distinct, sorted), ``fact_rows_total`` adds this unit's count and
  ``fact_rows_last`` is this run's count (several FK configurations of one run on the same table add up:
  same ``last_seen_run``).
- A closed placeholder (``resolution`` set) whose key is auto-derived **and flagged for review** again (e.g.
  rejected, then re-inserted by a later run; or promoted, then kept as auto-derived by a ``delete_insert``
  sync) is **reopened** as a fresh placeholder: resolution cleared, ``first_seen_*`` = this run, counts and
  domains restarted.  An ``approved`` key (auto-derived, no longer flagged) stays closed; its
  ``last_seen_*``, counts and domains keep being updated.
- :func:`close_promoted` runs in the sync's transaction right after the merge promoted auto-derived rows: one
  ``UPDATE … FROM`` the sync stage joined on the target closes every open placeholder of a staged key that is
  now authoritative (``resolution='promoted'``, ``resolved_by='sync'``).

Keys are stored as the reference table's key value cast to text (``t.key::text``) on both paths, so a key
written by the backfill and the same key promoted by the sync always match.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import TableInfo
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.staging import copy_frame, create_stage, stage_type
from airflow_provider_refdata.warehouse.tracking import AUTHORITATIVE, AUTO_DERIVED, NEEDS_REVIEW, SOURCE

PLACEHOLDER_TABLE = "refdata.placeholder"
#: ``resolution`` written by :func:`close_promoted`, and its ``resolved_by``.
PROMOTED = "promoted"
RESOLVED_BY_SYNC = "sync"

_COUNT_STAGE = "refdata_fk_key_counts"
_KEY = "_k"
_COUNT = "_n"


def fact_row_counts(codes: np.ndarray, total: int) -> np.ndarray:
    """Fact rows per distinct key position (``codes`` as in ``FactKeys``: ``-1`` for blank rows)."""
    used = codes[codes >= 0]
    return np.bincount(used, minlength=total).astype(np.int64)


def record_placeholders(
    conn: psycopg.Connection,
    table_name: str,
    info: TableInfo,
    key: str,
    keys: np.ndarray,
    counts: np.ndarray,
    *,
    domain: str,
    run_id: str,
) -> int:
    """Upsert the provenance of the auto-derived keys among ``keys``; returns the rows written (inserted,
    updated or reopened).

    :param conn: a connection inside the FK unit's transaction (``refdata.placeholder`` must exist).
    :param table_name: the schema-qualified reference table, unquoted (as ``refdata.sync_state`` names it).
    :param info: the reference table's catalog entry (with the tracking columns).
    :param key: its key column.
    :param keys: distinct normalised keys that may be auto-derived (a superset is fine: the join on the
        reference table decides).
    :param counts: the fact rows that used each key (:func:`fact_row_counts`), aligned with ``keys``.
    :param domain: the call's domain.
    :param run_id: the call's run id.
    """
    if len(keys) == 0:
        return 0
    create_stage(conn, _COUNT_STAGE, [_KEY, _COUNT], [stage_type(info.columns[key]), "bigint"])
    copy_frame(conn, _COUNT_STAGE, pd.DataFrame({_KEY: keys, _COUNT: counts}))
    # Without statistics the planner takes the fresh stage for tiny and hash-joins the whole reference table
    # (measured: 70-90 ms per 5,000 keys against a 1M-row table); with them it probes the key index.
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(_COUNT_STAGE)))
    # Known keys are updated and new ones inserted by two set-based statements (an UPDATE … FROM and an
    # INSERT of the rest: ~2x faster than INSERT … ON CONFLICT DO UPDATE, whose speculative insertion costs
    # per row); the table's lock, held by the FK unit, keeps two calls from racing between them.  Reopen only a
    # closed key that is flagged for review again (rejected/promoted, then auto-derived anew); an approved
    # key (auto-derived, not flagged) stays closed.
    reopen = sql.SQL("(p.resolution IS NOT NULL AND c.review)")
    statement = sql.SQL(
        """
        WITH c AS MATERIALIZED (
            SELECT t.{key}::text AS key, c.{n} AS n, t.{review} AS review
              FROM {counts} c
              JOIN {target} t ON t.{key} = c.{skey}
             WHERE t.{source} = %(auto)s
        ), updated AS (
            UPDATE refdata.placeholder AS p SET
                first_seen_at   = CASE WHEN {reopen} THEN now() ELSE p.first_seen_at END,
                first_seen_run  = CASE WHEN {reopen} THEN %(run)s ELSE p.first_seen_run END,
                last_seen_at    = now(),
                last_seen_run   = %(run)s,
                domains         = CASE WHEN {reopen} THEN ARRAY[%(domain)s::text]
                                       WHEN %(domain)s = ANY (p.domains) THEN p.domains
                                       ELSE ARRAY(SELECT DISTINCT d FROM unnest(p.domains || %(domain)s::text) AS d
                                                  ORDER BY d) END,
                fact_rows_total = CASE WHEN {reopen} THEN c.n ELSE p.fact_rows_total + c.n END,
                fact_rows_last  = CASE WHEN NOT {reopen} AND p.last_seen_run = %(run)s
                                       THEN p.fact_rows_last + c.n ELSE c.n END,
                resolved_at     = CASE WHEN {reopen} THEN NULL ELSE p.resolved_at END,
                resolved_by     = CASE WHEN {reopen} THEN NULL ELSE p.resolved_by END,
                resolution      = CASE WHEN {reopen} THEN NULL ELSE p.resolution END
              FROM c
             WHERE p.table_name = %(table)s AND p.key = c.key
            RETURNING p.key
        ), inserted AS (
            INSERT INTO refdata.placeholder
                   (table_name, key, first_seen_at, first_seen_run, last_seen_at, last_seen_run, domains,
                    fact_rows_total, fact_rows_last)
            SELECT %(table)s, c.key, now(), %(run)s, now(), %(run)s, ARRAY[%(domain)s::text], c.n, c.n
              FROM c
             WHERE c.key NOT IN (SELECT u.key FROM updated u)  -- a hashed subplan (keys are never NULL)
             ORDER BY c.key
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
        """
    ).format(
        key=sql.Identifier(key),
        n=sql.Identifier(_COUNT),
        review=sql.Identifier(NEEDS_REVIEW),
        counts=sql.Identifier(_COUNT_STAGE),
        target=table_ref(info.schema, info.table),
        skey=sql.Identifier(_KEY),
        source=sql.Identifier(SOURCE),
        reopen=reopen,
    )
    params = {"table": table_name, "run": run_id, "domain": domain, "auto": AUTO_DERIVED}
    return conn.execute(statement, params).fetchone()[0]


def close_promoted(conn: psycopg.Connection, table_name: str, info: TableInfo, stage: str, key: str) -> int:
    """Close the open placeholders of the staged keys the merge just made authoritative; returns how many.

    :param conn: a connection inside the sync's table transaction, after the merge.
    :param table_name: the schema-qualified target table, unquoted.
    :param info: the target's catalog entry.
    :param stage: the sync stage (holds the key column ``key``).
    :param key: the single key column.
    """
    if conn.execute("SELECT to_regclass('refdata.placeholder') IS NULL").fetchone()[0]:
        return 0
    statement = sql.SQL(
        """
        UPDATE refdata.placeholder AS p
           SET resolution = %(promoted)s, resolved_at = now(), resolved_by = %(by)s
          FROM {stage} s
          JOIN {target} t ON t.{key} = s.{key}
         WHERE p.table_name = %(table)s AND p.resolution IS NULL
           AND p.key = t.{key}::text AND t.{source} = %(auth)s
        """
    ).format(
        stage=sql.Identifier(stage),
        target=table_ref(info.schema, info.table),
        key=sql.Identifier(key),
        source=sql.Identifier(SOURCE),
    )
    params = {"promoted": PROMOTED, "by": RESOLVED_BY_SYNC, "table": table_name, "auth": AUTHORITATIVE}
    return conn.execute(statement, params).rowcount
