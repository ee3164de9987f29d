"""How a table sync's outcome is recorded and told: the run log and sync state of a failed or skipped table,
the error text, and the plain-text summary the operator logs and the CLI prints."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

import psycopg

from airflow_provider_refdata.exceptions import RefdataError
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.textable import text_table
from airflow_provider_refdata.warehouse.state import (
    ensure_state_tables,
    finish_run_log,
    write_run_log,
    write_sync_state,
)

logger = logging.getLogger(__name__)

RUN_TYPE = "reference_sync"


def record_outcome(
    pg: psycopg.Connection,
    result: SyncResult,
    status: str,
    started_at: datetime,
    run_id: int | None = None,
    reconnect: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
) -> None:
    """Record a failed or skipped table in its own small transaction (the watermark does not move).

    When the table failed because the warehouse connection was lost, a new connection records it.
    """
    if (pg.closed or pg.broken) and reconnect is not None:
        try:
            with reconnect() as fresh:
                record_outcome(fresh, result, status, started_at, run_id)
        except psycopg.Error as exc:
            logger.warning("Could not record the %s outcome of %s: %s", status, result.table, exc)
        return
    try:
        ensure_state_tables_in_transaction(pg)
        with pg.transaction():
            if status == "failed":
                write_sync_state(pg, result.table, status="failed", watermark=None, counts={})
            payload = result.model_dump(mode="json")
            if run_id is not None:
                finish_run_log(pg, run_id, status=status, result=payload)
            else:
                write_run_log(
                    pg,
                    run_type=RUN_TYPE,
                    subject=result.table,
                    status=status,
                    started_at=started_at,
                    result=payload,
                )
    except psycopg.Error as exc:
        rollback_if_broken(pg)
        logger.warning("Could not record the %s outcome of %s in refdata.run_log: %s", status, result.table, exc)


def rollback_if_broken(pg: psycopg.Connection) -> None:
    """End a transaction that a failed statement left aborted, so the connection can be used again."""
    if pg.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        pg.rollback()


def describe_error(exc: Exception, table: str) -> str:
    """The error text a failed table records: ours as is, a database error with its detail and context."""
    if isinstance(exc, RefdataError):
        return str(exc)
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        text = diag.message_primary or str(exc)
        if diag.message_detail:
            text += f" ({diag.message_detail})"
        if diag.context:
            text += f" [{diag.context.strip()}]"
        return f"{table}: {type(exc).__name__}: {text}"
    return f"{table}: {type(exc).__name__}: {exc}"


def format_summary(results: Sequence[SyncResult]) -> str:
    """One plain-text table of the results (used by the operator's log and the CLI)."""
    headers = ["table", "mode", "status", "read", "ins", "upd", "unch", "del", "prom", "att", "secs", "detail"]
    rows = []
    for r in results:
        status = "FAILED" if r.error else "skipped" if r.skipped_reason else "planned" if r.plan_only else "ok"
        counts = (r.rows_read, r.rows_inserted, r.rows_updated, r.rows_unchanged, r.rows_deleted, r.rows_promoted)
        detail = (r.error or r.skipped_reason or "")[:200]
        rows.append([r.table, r.sync_mode, status, *counts, r.attempts, f"{r.duration_seconds:.2f}", detail])
    return "\n".join(text_table(headers, rows))


def ensure_state_tables_in_transaction(pg: psycopg.Connection) -> None:
    """Create the ``refdata`` state tables if missing, in a transaction block of their own."""
    # Inside a transaction block, so the catalog probe does not leave an implicit transaction open on a
    # non-autocommit connection (which would turn every later transaction() into an uncommitted savepoint).
    with pg.transaction():
        ensure_state_tables(pg)
