"""The provider's own bookkeeping in schema ``refdata``: per-table sync state, the run log, key confirmations.

``refdata.sync_state`` keeps, per target table, the incremental watermark and the last run's counts; it is
written in the same transaction as the data it describes.  ``refdata.run_log`` has one row per sync table
run and per ``ensure_references`` call, with the result model as jsonb.  ``refdata.key_confirmation`` has
one row per writing ``ensure_references`` and reference table: the keys the facts use (one array), so a
``delete_insert`` sync does not delete a key whose facts may not have been loaded yet.  ``refdata.placeholder``
has one row per (reference table, auto-derived key) with its provenance (first/last seen, domains, fact-row
counts, resolution); its SQL is in :mod:`~airflow_provider_refdata.warehouse.placeholders`.
``refdata.review_log`` audits every steward action (approve, reject, remap) with the row before and after;
``refdata.key_alias`` holds the remapped keys that ``ensure_references`` maps in the facts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

STATE_SCHEMA = "refdata"

# Advisory-lock namespace ("RefD") for pg_advisory_xact_lock(int, int); the second key is hashtext(name).
_LOCK_NAMESPACE = 0x52656644

_DDL = """
CREATE SCHEMA IF NOT EXISTS refdata;
CREATE TABLE IF NOT EXISTS refdata.sync_state (
    table_name      text PRIMARY KEY,
    watermark       timestamp,
    last_run_at     timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz,
    last_status     text NOT NULL,
    rows_read       bigint NOT NULL DEFAULT 0,
    rows_inserted   bigint NOT NULL DEFAULT 0,
    rows_updated    bigint NOT NULL DEFAULT 0,
    rows_deleted    bigint NOT NULL DEFAULT 0,
    rows_promoted   bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refdata.run_log (
    id          bigserial PRIMARY KEY,
    run_type    text NOT NULL,
    subject     text NOT NULL,
    status      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    result      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS run_log_subject_idx ON refdata.run_log (run_type, subject, finished_at DESC);
CREATE TABLE IF NOT EXISTS refdata.key_confirmation (
    id           bigserial PRIMARY KEY,
    table_name   text NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    keys         text[] NOT NULL
);
CREATE INDEX IF NOT EXISTS key_confirmation_table_idx ON refdata.key_confirmation (table_name, confirmed_at);
CREATE TABLE IF NOT EXISTS refdata.health_snapshot (
    id                 bigserial PRIMARY KEY,
    taken_at           timestamptz NOT NULL,
    table_name         text NOT NULL,
    filtered           boolean NOT NULL DEFAULT false,
    total_rows         bigint,
    auto_derived_rows  bigint,
    needs_review_rows  bigint,
    auto_derived_ratio double precision,
    open_placeholders  bigint,
    error              text,
    health             jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS health_snapshot_table_idx ON refdata.health_snapshot (table_name, taken_at);
CREATE TABLE IF NOT EXISTS refdata.placeholder (
    table_name      text        NOT NULL,
    key             text        NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    first_seen_run  text        NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    last_seen_run   text        NOT NULL,
    domains         text[]      NOT NULL,
    fact_rows_total bigint      NOT NULL,
    fact_rows_last  bigint      NOT NULL,
    resolution      text,
    resolved_at     timestamptz,
    resolved_by     text,
    PRIMARY KEY (table_name, key)
) WITH (fillfactor = 70);  -- every run rewrites last_seen_*: room on the page keeps those updates HOT
-- No updated column in an index (last_seen_* change every run): the updates stay HOT, no index writes.
CREATE INDEX IF NOT EXISTS placeholder_open_idx ON refdata.placeholder (table_name) WHERE resolution IS NULL;
-- One row per key and steward action (approve | reject | remap), with the row before and after it.
CREATE TABLE IF NOT EXISTS refdata.review_log (
    id          bigserial   PRIMARY KEY,
    review_id   text        NOT NULL,   -- one call (approve/reject/remap/apply_review_file): its rows share it
    table_name  text        NOT NULL,
    key         text        NOT NULL,
    action      text        NOT NULL,
    actor       text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    before      jsonb,
    after       jsonb,
    remap_to    text,
    source_file text
);
CREATE INDEX IF NOT EXISTS review_log_table_idx ON refdata.review_log (table_name, key, at);
CREATE INDEX IF NOT EXISTS review_log_review_idx ON refdata.review_log (review_id);
-- A remapped placeholder key and the authoritative key it stands for: ensure_references maps the facts'
-- from_key to to_key before it measures coverage, so the typo never comes back as a placeholder.
CREATE TABLE IF NOT EXISTS refdata.key_alias (
    table_name  text        NOT NULL,
    from_key    text        NOT NULL,
    to_key      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    review_id   text        NOT NULL,
    PRIMARY KEY (table_name, from_key),
    CHECK (from_key <> to_key)
);
"""
_STATE_TABLES = (
    "sync_state",
    "run_log",
    "key_confirmation",
    "placeholder",
    "health_snapshot",
    "review_log",
    "key_alias",
)
#: How long key confirmations are kept (the longest protection window a sync table may ask for).
CONFIRMATION_RETENTION_DAYS = 7


def lock_name(conn: psycopg.Connection, name: str) -> None:
    """Take a transaction-scoped advisory lock on ``name`` (e.g. a schema-qualified table).

    Two transactions locking the same name serialize; the lock is released at commit or rollback.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, name))


def lock_names(conn: psycopg.Connection, names: Iterable[str]) -> None:
    """Take the transaction-scoped advisory locks of several names at once, in one canonical order.

    The locks are taken in ascending order of their lock key (``hashtext``), by one statement, so that two
    transactions needing overlapping sets can never each hold a lock the other waits for (and two names that
    happen to share a key are one lock, taken once).  Locks already held by the transaction are re-entrant.
    Use it when a transaction will take several names' locks and keep them to its end.

    :param conn: a connection inside the transaction that keeps the locks.
    :param names: the names (e.g. schema-qualified tables, as passed to :func:`lock_name`).
    """
    wanted = sorted(set(names))
    if not wanted:
        return
    conn.execute(
        """
        SELECT count(pg_advisory_xact_lock(%s, k.key))
          FROM (SELECT DISTINCT hashtext(n) AS key FROM unnest(%s::text[]) AS n ORDER BY 1) AS k
        """,
        (_LOCK_NAMESPACE, wanted),
    )


def ensure_state_tables(conn: psycopg.Connection) -> None:
    """Create schema ``refdata`` and its tables if missing, safely under concurrency.

    ``CREATE … IF NOT EXISTS`` still races on the catalog when two sessions run it at once, so the DDL runs
    under an advisory lock, and only when the tables are not there yet.
    """
    present = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)",
        (STATE_SCHEMA, list(_STATE_TABLES)),
    ).fetchone()[0]
    if present == len(_STATE_TABLES):
        return
    with conn.transaction():
        lock_name(conn, "refdata.__ddl__")
        conn.execute(_DDL)


def read_watermark(conn: psycopg.Connection, table_name: str) -> datetime | None:
    """The stored watermark of ``table_name`` (schema-qualified), or ``None`` when there is none."""
    row = conn.execute("SELECT watermark FROM refdata.sync_state WHERE table_name = %s", (table_name,)).fetchone()
    return row[0] if row else None


def write_sync_state(
    conn: psycopg.Connection,
    table_name: str,
    *,
    status: str,
    watermark: datetime | None,
    counts: Mapping[str, int],
) -> None:
    """Upsert the table's state row.  A failed run keeps the previous watermark and last success time."""
    success = status == "success"
    conn.execute(
        """
        INSERT INTO refdata.sync_state AS s (table_name, watermark, last_run_at, last_success_at, last_status,
                                             rows_read, rows_inserted, rows_updated, rows_deleted, rows_promoted)
        VALUES (%(t)s, %(w)s, now(), CASE WHEN %(ok)s THEN now() END, %(status)s,
                %(read)s, %(ins)s, %(upd)s, %(del)s, %(pro)s)
        ON CONFLICT (table_name) DO UPDATE SET
            watermark       = CASE WHEN %(ok)s THEN COALESCE(EXCLUDED.watermark, s.watermark) ELSE s.watermark END,
            last_run_at     = now(),
            last_success_at = CASE WHEN %(ok)s THEN now() ELSE s.last_success_at END,
            last_status     = EXCLUDED.last_status,
            rows_read       = EXCLUDED.rows_read,
            rows_inserted   = EXCLUDED.rows_inserted,
            rows_updated    = EXCLUDED.rows_updated,
            rows_deleted    = EXCLUDED.rows_deleted,
            rows_promoted   = EXCLUDED.rows_promoted
        """,
        {
            "t": table_name,
            "w": watermark,
            "ok": success,
            "status": status,
            "read": counts.get("rows_read", 0),
            "ins": counts.get("rows_inserted", 0),
            "upd": counts.get("rows_updated", 0),
            "del": counts.get("rows_deleted", 0),
            "pro": counts.get("rows_promoted", 0),
        },
    )


def write_run_log(
    conn: psycopg.Connection,
    *,
    run_type: str,
    subject: str,
    status: str,
    started_at: datetime,
    result: Mapping[str, Any] | str,
) -> int:
    """Append one run-log row; ``result`` is the result model's JSON dict (or JSON text).  Returns its id."""
    payload = json.loads(result) if isinstance(result, str) else dict(result)
    row = conn.execute(
        """
        INSERT INTO refdata.run_log (run_type, subject, status, started_at, result)
        VALUES (%s, %s, %s, %s, %s) RETURNING id
        """,
        (run_type, subject, status, started_at, Jsonb(payload)),
    ).fetchone()
    return row[0]


def finish_run_log(conn: psycopg.Connection, run_id: int, *, status: str, result: Mapping[str, Any]) -> None:
    """Close a run-log row opened with status ``running``: its final status, result and finish time."""
    conn.execute(
        "UPDATE refdata.run_log SET status = %s, finished_at = now(), result = %s WHERE id = %s",
        (status, Jsonb(dict(result)), run_id),
    )


def describe_lock_holders(conn: psycopg.Connection, schema: str, table: str, lock: str, *, limit: int = 3) -> str:
    """Who holds locks on ``schema.table`` or the advisory lock of ``lock`` (:func:`lock_name`), for messages.

    ``pid 4242 (AccessShareLock, idle in transaction: "SELECT …")``; ``""`` when nobody else holds one.
    """
    rows = conn.execute(
        """
        SELECT DISTINCT ON (a.pid) a.pid, l.mode, a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120)
          FROM pg_locks AS l
          JOIN pg_stat_activity AS a ON a.pid = l.pid
         WHERE l.granted AND l.pid <> pg_backend_pid()
           AND ((l.locktype = 'relation' AND l.relation = to_regclass(format('%%I.%%I', %s::text, %s::text)))
             OR (l.locktype = 'advisory' AND l.classid::bigint = %s
                 AND l.objid::bigint = (hashtext(%s)::bigint + 4294967296) %% 4294967296 AND l.objsubid = 2))
         ORDER BY a.pid
         LIMIT %s
        """,
        (schema, table, _LOCK_NAMESPACE, lock, limit),
    ).fetchall()
    return ", ".join(f'pid {pid} ({mode}, {state}: "{query}")' for pid, mode, state, query in rows)


def synced_by_delete_insert(conn: psycopg.Connection, table_name: str) -> bool:
    """Whether the table's latest sync ran in ``delete_insert`` mode (the only mode that deletes rows).

    One index lookup in ``refdata.run_log``; ``False`` for a table never synced or before the state tables exist
    (checked first: a ``CASE`` around the lookup does not help, the statement is parsed before it runs).
    """
    if conn.execute("SELECT to_regclass('refdata.run_log') IS NULL").fetchone()[0]:
        return False
    row = conn.execute(
        """
        SELECT result->>'sync_mode' FROM refdata.run_log
         WHERE run_type = 'reference_sync' AND subject = %s ORDER BY finished_at DESC LIMIT 1
        """,
        (table_name,),
    ).fetchone()
    return row is not None and row[0] == "delete_insert"


def record_confirmed_keys(conn: psycopg.Connection, table_name: str, stage: str, key_column: str) -> None:
    """Record that the facts of this call use the keys in ``stage`` (one row, the keys as one array).

    Also forgets confirmations older than :data:`CONFIRMATION_RETENTION_DAYS` (indexed, cheap).

    :param conn: a connection inside the caller's (FK unit's) transaction.
    :param table_name: the schema-qualified reference table, as the sync names it.
    :param stage: the key stage of the coverage check.
    :param key_column: its key column.
    """
    ensure_state_tables(conn)
    conn.execute(
        sql.SQL(
            "INSERT INTO refdata.key_confirmation (table_name, keys)"
            " SELECT %s, array_agg({k}::text) FROM {s} HAVING count(*) > 0"
        ).format(k=sql.Identifier(key_column), s=sql.Identifier(stage)),
        (table_name,),
    )
    conn.execute(
        "DELETE FROM refdata.key_confirmation"
        " WHERE table_name = %s AND confirmed_at < now() - make_interval(days => %s)",
        (table_name, CONFIRMATION_RETENTION_DAYS),
    )
