"""ReferenceSyncService: make PostgreSQL reference tables equal their authoritative sources (no Airflow).

Per table, in **one** transaction under an advisory lock on the target table (two syncs of the same table
serialize; different tables run independently):

1. add missing tracking columns (idempotent), read the watermark from ``refdata.sync_state``;
2. stream the source into a ``TEMP`` stage with COPY (string columns as ``text``, other columns in the
   target's types).  Transient source errors are retried with exponential backoff (tenacity); each attempt
   starts from an empty stage (savepoint), and ``SyncResult.attempts`` counts them;
3. merge: an empty target gets one ``INSERT … SELECT``; otherwise one ``INSERT … ON CONFLICT DO UPDATE``
   writes new and *changed* rows only and promotes the auto-derived rows the stage covers.  A duplicated
   source key fails the table naming it: a stage much smaller than the target is checked first (one ``GROUP
   BY``), a big one by the merge's own counts (``merge.UpsertCounts.keys_unique``); ``delete_insert`` then
   deletes authoritative rows absent from the stage (auto-derived ones stay; a foreign key still needing a
   row fails the table).  A value longer than its ``varchar(n)`` column fails the table, naming the key
   and column (we chose "the table fails and rolls back" over "reject the row": a partial authoritative
   table is worse than yesterday's complete one).  A blank (NULL, empty or whitespace-only) key fails the
   table the same way, naming the table and key column(s); a key column that is nullable in the target
   (a UNIQUE index, not the primary key) always goes through the stage, whose keys are checked first;
4. write the new watermark (max ``updated_at`` staged) to ``refdata.sync_state`` and the result to
   ``refdata.run_log``, then commit.

Any failure rolls the whole table back (rows and watermark exactly as before) and is then recorded in
``run_log``/``sync_state`` in a separate small transaction that keeps the old watermark.  A skipped table
(missing file, wrong ``schema_version``, empty source in ``delete_insert``) changes nothing.
``plan_only=True`` runs the very same statements and rolls them back, so its counts are exactly those of a
real run, and nothing (not even a run-log row) is written.

Counts are exact, from the statements: ``rows_read`` = rows staged; ``rows_inserted`` new keys;
``rows_updated`` existing rows rewritten (including ``rows_promoted``, the auto-derived rows made
authoritative); ``rows_unchanged`` = read - inserted - updated; ``rows_deleted`` (``delete_insert`` only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from airflow_provider_refdata.config.foreign_keys import processing_order
from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataError, RefdataSyncError
from airflow_provider_refdata.results import SYNC_WRITE_COUNTS, SyncResult
from airflow_provider_refdata.services import sync_checks
from airflow_provider_refdata.services.copy_diagnosis import describe_copy_error
from airflow_provider_refdata.services.source_resolver import ConnectionFactory, SourceResolver
from airflow_provider_refdata.services.sources import (
    ReferenceSource,
    SourceRead,
    SourceSkipped,
    SourceUnavailableError,
)
from airflow_provider_refdata.services.sync_merge import merge_stage
from airflow_provider_refdata.services.sync_outcome import (
    RUN_TYPE,
    describe_error,
    ensure_state_tables_in_transaction,
    record_outcome,
    rollback_if_broken,
)
from airflow_provider_refdata.services.sync_schedule import run_in_order, run_in_parallel
from airflow_provider_refdata.warehouse import conversions, merge
from airflow_provider_refdata.warehouse.catalog import TableInfo, table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection, warehouse_connector
from airflow_provider_refdata.warehouse.sqlbits import ident_list, table_ref
from airflow_provider_refdata.warehouse.staging import create_stage
from airflow_provider_refdata.warehouse.state import (
    describe_lock_holders,
    finish_run_log,
    lock_name,
    read_watermark,
    write_run_log,
    write_sync_state,
)
from airflow_provider_refdata.warehouse.tracking import TRACKING_COLUMN_NAMES, ensure_tracking_columns

logger = logging.getLogger(__name__)

STAGE_NAME = sync_checks.STAGE_NAME
DEFAULT_BATCH_SIZE = 5000


class _Skip(Exception):  # internal control flow
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _NeedsStage(Exception):  # internal control flow: some column is converted in the stage first
    pass


class ReferenceSyncService:
    """Sync reference tables from their authoritative sources into PostgreSQL.

    :param config: default configuration for :meth:`sync_all` (a ``ReferenceSyncConfig``).
    :param sources: default sources for :meth:`sync_all`, by ``source_type`` (``legacy_mysql``,
        ``config_file``); any object with the :class:`~.sources.ReferenceSource` ``stream`` method.
    :param retries: retries per table after the first attempt fails with a transient source error (default
        3, so at most 4 attempts; 0 disables retrying).
    :param retry_wait_seconds: wait before the first retry; doubles each time (2 s → 4 s → 8 s).
    :param retry_max_wait_seconds: upper bound of one wait.
    :param sleep: the sleep function between attempts (tests pass a recorder).
    :param lock_timeout_seconds: longest wait for any lock in the warehouse (the table's advisory lock, the
        DDL adding tracking columns, rows another transaction holds), PostgreSQL's ``lock_timeout``; so a sync
        never queues without limit and never holds other readers of the table behind its DDL for longer.
    :param lock_retries: further attempts of the whole table after a lock wait timed out (the transaction
        rolled back), with the same backoff as source retries; then the table fails naming who holds the lock.
    """

    def __init__(
        self,
        config: Any | None = None,
        sources: Mapping[str, ReferenceSource] | None = None,
        *,
        retries: int = 3,
        retry_wait_seconds: float = 2.0,
        retry_max_wait_seconds: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        lock_timeout_seconds: float = 5.0,
        lock_retries: int = 2,
    ) -> None:
        if retries < 0 or lock_retries < 0:
            raise ValueError("retries and lock_retries must be 0 or more")
        if lock_timeout_seconds <= 0:
            raise ValueError("lock_timeout_seconds must be positive")
        self.lock_timeout_seconds = lock_timeout_seconds
        self.lock_retries = lock_retries
        self.config = config
        self.sources = dict(sources) if sources is not None else None
        self.retries = retries
        self.retry_wait_seconds = retry_wait_seconds
        self.retry_max_wait_seconds = retry_max_wait_seconds
        self._sleep = sleep

    # ------------------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------------------

    def sync_all(
        self,
        config_or_tables: Any | None = None,
        sources: Mapping[str, Any] | None = None,
        conn: WarehouseLike = None,
        *,
        plan_only: bool = False,
        force_full: bool = False,
        tables: Iterable[str] | None = None,
        concurrency: int | None = None,
        connection_factory: ConnectionFactory | None = None,
    ) -> list[SyncResult]:
        """Sync every enabled table (or those named in ``tables``); results in configuration order.

        One failing table never stops the others: its ``SyncResult.error`` says why.  Tables that do not
        depend on each other run in parallel on up to ``concurrency`` warehouse connections, each table in
        its own transaction; a table starts only after every table of its ``depends_on`` (that is part of
        this run) has finished, whatever its outcome.  With ``concurrency`` 1 the tables run one after the
        other on one connection, in configuration order (dependencies first).

        :param config_or_tables: a ``ReferenceSyncConfig`` or a list of ``SyncTableConfig``; default: the
            constructor's ``config``.  A disabled configuration syncs nothing and returns ``[]``.
        :param sources: sources (or DSNs) by ``conn_id`` or ``source_type``; default: the constructor's
            ``sources``.  How each table's source is found: :mod:`~.source_resolver`.
        :param conn: the warehouse (psycopg connection, ``PostgresHook``, SQLAlchemy connection/engine, DSN).
        :param plan_only: compute the counts, write nothing.
        :param force_full: ignore watermarks and read every source row.
        :param tables: names of the table entries to sync (default: all enabled ones); unknown names raise
            :class:`RefdataConfigError`.
        :param concurrency: tables synced at once (default: the configuration's ``concurrency``, else 1).
        :param connection_factory: builds a table's source from ``(source_type, conn_id)`` when ``sources``
            names none (the operator passes one backed by Airflow connections).
        """
        config_or_tables = self.config if config_or_tables is None else config_or_tables
        sources = self.sources if sources is None else sources
        if config_or_tables is None:
            raise RefdataConfigError("no sync configuration given (neither to sync_all nor to the constructor)")
        if conn is None:
            raise RefdataError("sync_all needs the warehouse connection (conn)")
        entries, batch_size_of = self._entries(config_or_tables, tables)
        if not entries:
            return []
        workers = concurrency or getattr(config_or_tables, "concurrency", 1)
        if workers < 1:
            raise ValueError("concurrency must be 1 or more")
        resolver = SourceResolver(sources, connection_factory=connection_factory)
        order = processing_order(entries)  # parents first, else configuration order

        def run(entry: Any, pg: WarehouseLike) -> SyncResult:
            try:
                source = resolver.for_table(entry)
            except RefdataError as exc:
                return self._unresolved(entry, exc, pg, plan_only)
            return self.sync_table(
                entry, source, pg, plan_only=plan_only, force_full=force_full, batch_size=batch_size_of(entry)
            )

        connect = warehouse_connector(conn)
        if workers == 1 or len(entries) == 1:
            by_name = run_in_order(order, conn, connect, run)
        else:
            by_name = run_in_parallel(entries, order, min(workers, len(entries)), connect, run, plan_only)
        return [by_name[entry.name] for entry in entries]

    def _unresolved(self, entry: Any, exc: Exception, pg: WarehouseLike, plan_only: bool) -> SyncResult:
        """The result of a table whose source cannot even be built (recorded like any failed table)."""
        result = SyncResult(
            table=entry.qualified_table,
            source_type=entry.source_type,
            sync_mode=entry.sync_mode,
            plan_only=plan_only,
            error=str(exc),
        )
        logger.warning("Sync %s: failed %s", result.table, result.error)
        if not plan_only:
            with warehouse_connection(pg) as conn:
                record_outcome(conn, result, "failed", datetime.now(UTC))
        return result

    def sync_table(
        self,
        table_config: Any,
        source: ReferenceSource | None,
        conn: WarehouseLike,
        *,
        plan_only: bool = False,
        force_full: bool = False,
        batch_size: int | None = None,
    ) -> SyncResult:
        """Sync one table in its own transaction; never raises for a table-level failure.

        :param table_config: the table's ``SyncTableConfig``.
        :param source: the source for its ``source_type``.
        :param conn: the warehouse.
        :param plan_only: compute the counts, write nothing.
        :param force_full: ignore the watermark.
        :param batch_size: rows per source batch (default: the table's ``batch_size`` or 5000).
        """
        result = SyncResult(
            table=table_config.qualified_table,
            source_type=table_config.source_type,
            sync_mode=table_config.sync_mode,
            plan_only=plan_only,
        )
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        batch_size = batch_size or table_config.batch_size or DEFAULT_BATCH_SIZE
        run_id: int | None = None
        reconnect = warehouse_connector(conn)  # now: a connection that breaks later no longer tells its parameters
        with warehouse_connection(conn) as pg:
            try:
                if source is None:
                    raise RefdataSyncError(
                        f"no source configured for source_type {table_config.source_type!r}",
                        table=result.table,
                    )
                if not plan_only:
                    ensure_state_tables_in_transaction(pg)
                    # Committed first, on its own: a run that dies (kill -9, lost server) leaves this trace.
                    with pg.transaction():
                        run_id = write_run_log(
                            pg,
                            run_type=RUN_TYPE,
                            subject=result.table,
                            status="running",
                            started_at=started_at,
                            result=result.model_dump(mode="json"),
                        )
                self._run_with_lock_retries(
                    pg, table_config, source, result, plan_only, force_full, batch_size, run_id, call_started=t0
                )
                status = "planned" if plan_only else "success"
            except _Skip as skip:
                _reset_counts(result)
                result.skipped_reason = skip.reason
                status = "skipped"
            except Exception as exc:  # one table's failure must not stop the others
                rollback_if_broken(pg)
                _reset_counts(result)  # everything was rolled back: nothing was inserted or updated
                result.error = describe_error(exc, result.table)
                if isinstance(exc, psycopg.errors.LockNotAvailable):
                    result.error = self._busy_message(pg, table_config, result.error)
                status = "failed"
            if status != "success":
                # A success has its duration already: the one its run log committed with (up to the commit).
                result.duration_seconds = round(time.perf_counter() - t0, 3)
            if status in ("failed", "skipped") and not plan_only:
                record_outcome(pg, result, status, started_at, run_id, reconnect)
        log = logger.warning if status == "failed" else logger.info
        log(
            "Sync %s: %s (read %s, inserted %s, updated %s, unchanged %s, deleted %s, promoted %s, attempts %s) %s",
            result.table,
            status,
            result.rows_read,
            result.rows_inserted,
            result.rows_updated,
            result.rows_unchanged,
            result.rows_deleted,
            result.rows_promoted,
            result.attempts,
            result.error or result.skipped_reason or "",
        )
        return result

    # ------------------------------------------------------------------------------------------------------
    # one table
    # ------------------------------------------------------------------------------------------------------

    def _run_with_lock_retries(
        self,
        pg: psycopg.Connection,
        cfg: Any,
        source: ReferenceSource,
        result: SyncResult,
        plan_only: bool,
        force_full: bool,
        batch_size: int,
        run_id: int | None,
        *,
        call_started: float,
    ) -> None:
        """:meth:`_run`, again from the start (the failed attempt rolled back) when a lock wait timed out."""
        retrying = Retrying(
            stop=stop_after_attempt(self.lock_retries + 1),
            wait=wait_exponential(
                multiplier=self.retry_wait_seconds, min=self.retry_wait_seconds, max=self.retry_max_wait_seconds
            ),
            retry=retry_if_exception_type(psycopg.errors.LockNotAvailable),
            reraise=True,
            sleep=self._sleep,
            before=lambda state: _reset_counts(result) if state.attempt_number > 1 else None,
            before_sleep=lambda state: logger.warning(
                "Sync %s: a lock was not granted within %s s (attempt %s of %s), retrying",
                result.table,
                self.lock_timeout_seconds,
                state.attempt_number,
                self.lock_retries + 1,
            ),
        )
        for attempt in retrying:
            with attempt:
                self._run(pg, cfg, source, result, plan_only, force_full, batch_size, run_id, call_started=call_started)

    def _busy_message(self, pg: psycopg.Connection, cfg: Any, error: str) -> str:
        holders = ""
        try:
            with pg.transaction():
                holders = describe_lock_holders(pg, cfg.target_schema, cfg.target_table, cfg.qualified_table)
        except psycopg.Error:
            rollback_if_broken(pg)
        return (
            f"table busy: {cfg.qualified_table} was locked by another session for more than "
            f"{self.lock_timeout_seconds:g} s in each of {self.lock_retries + 1} attempt(s)"
            + (f"; held by {holders}" if holders else "")
            + f"; nothing was changed ({error})"
        )

    def _run(
        self,
        pg: psycopg.Connection,
        cfg: Any,
        source: ReferenceSource,
        result: SyncResult,
        plan_only: bool,
        force_full: bool,
        batch_size: int,
        run_id: int | None = None,
        *,
        call_started: float,
    ) -> None:
        name = result.table
        key = list(cfg.primary_key)
        incremental = getattr(cfg.source_config, "incremental", None)
        started_at = datetime.now(UTC)
        with pg.transaction():
            # Bounded waits for every lock of this transaction (SET LOCAL: ends with it).  No JIT: the merge's
            # estimates exceed its cost thresholds while compiling costs more than it saves (measured: 0.2 s
            # of a 1M-row full re-sync).
            pg.execute(
                "SELECT set_config('lock_timeout', %s, true), set_config('jit', 'off', true)",
                (f"{int(self.lock_timeout_seconds * 1000)}ms",),
            )
            lock_name(pg, name)
            info = table_info(pg, cfg.target_schema, cfg.target_table)
            if info is None:
                info = sync_checks.create_missing_table(pg, cfg, source, result)
            missing_key = [k for k in key if k not in info.columns]
            if missing_key:
                raise RefdataSyncError(f"target table {name} has no key column(s) {', '.join(missing_key)}", table=name)
            ensure_tracking_columns(pg, cfg.target_schema, cfg.target_table)
            result.watermark_before = _read_watermark(pg, name)
            since = None
            if incremental is not None and result.watermark_before is not None and not force_full:
                since = result.watermark_before - timedelta(seconds=incremental.lookback_seconds)
            phase = time.perf_counter()
            loaded = False
            # A nullable key column (a UNIQUE index rather than the primary key) would take a NULL key in
            # silently, so such tables always go through the stage, which is checked for blank keys.
            key_nullable = any(info.columns[k].nullable for k in key)
            if not key_nullable and merge.table_is_empty(pg, info.schema, info.table):
                # Nothing to compare with: COPY straight into the target (its defaults are the authoritative
                # tracking values).  If PostgreSQL rejects a row (duplicate key, over-long value, bad type),
                # fall back to the staged path below, which re-reads the source and names the key and column.
                try:
                    with pg.transaction():
                        _, seen = self._load(pg, cfg, source, info, result, since, batch_size, into_target=True)
                        self._skip_if_empty_replace(cfg, result)
                        result.rows_inserted = result.rows_read
                    loaded = True
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                    logger.info("COPY into empty %s rejected (%s); staging to diagnose", name, exc.diag.message_primary)
                    result.rows_read = 0
                except _NeedsStage:
                    result.attempts -= 1  # nothing was read: the stage's read is the table's first
            if not loaded:
                columns, seen = self._load(pg, cfg, source, info, result, since, batch_size, into_target=False)
                self._skip_if_empty_replace(cfg, result)
                logger.debug("Sync %s: staged %s rows in %.3f s", name, result.rows_read, time.perf_counter() - phase)
                phase = time.perf_counter()
                merge_stage(pg, cfg, info, columns, key, result, check_blank_keys=key_nullable)
            logger.debug("Sync %s: loaded in %.3f s", name, time.perf_counter() - phase)
            result.watermark_after = seen if seen is not None and result.rows_read else result.watermark_before
            # From the call's start, earlier lock-retry attempts included: the figure the result returns too.
            result.duration_seconds = round(time.perf_counter() - call_started, 3)
            if plan_only:
                # Same statements, same counts; the rollback makes sure nothing is kept.
                raise psycopg.Rollback()
            write_sync_state(pg, name, status="success", watermark=result.watermark_after, counts=result.model_dump())
            if run_id is not None:
                finish_run_log(pg, run_id, status="success", result=result.model_dump(mode="json"))
            else:
                write_run_log(
                    pg,
                    run_type=RUN_TYPE,
                    subject=name,
                    status="success",
                    started_at=started_at,
                    result=result.model_dump(mode="json"),
                )

    @staticmethod
    def _skip_if_empty_replace(cfg: Any, result: SyncResult) -> None:
        if result.rows_read == 0 and cfg.sync_mode == "delete_insert":
            raise _Skip("the source returned no rows; delete_insert would empty the table, nothing changed")

    def _load(
        self,
        pg: psycopg.Connection,
        cfg: Any,
        source: ReferenceSource,
        info: TableInfo,
        result: SyncResult,
        since: datetime | None,
        batch_size: int,
        *,
        into_target: bool,
    ) -> tuple[list[str], datetime | None]:
        """COPY the source into the target (empty) or a new stage, retrying transient source errors.

        Returns the columns loaded and the largest ``updated_at`` read (incremental tables, else ``None``).
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(
                multiplier=self.retry_wait_seconds, min=self.retry_wait_seconds, max=self.retry_max_wait_seconds
            ),
            retry=retry_if_exception_type(SourceUnavailableError),
            reraise=True,
            sleep=self._sleep,
            before_sleep=lambda state: logger.warning(
                "Reading %s failed (attempt %s of %s), retrying: %s",
                result.table,
                state.attempt_number,
                self.retries + 1,
                state.outcome.exception() if state.outcome else None,
            ),
        )
        seen: datetime | None = None
        columns: list[str] = []
        try:
            for attempt in retrying:
                with attempt:
                    result.attempts += 1
                    # Each attempt starts from the state before the first one (savepoint).
                    with pg.transaction(), source.stream(cfg, since, batch_size) as read:
                        columns = self._validate_columns(cfg, info, read)
                        read.target_types = {c: info.columns[c].data_type for c in columns}
                        converted = conversions.conversions(info, columns, read.formats)
                        if into_target and converted:
                            raise _NeedsStage()
                        if into_target:
                            destination = table_ref(info.schema, info.table)
                        else:
                            types = merge.stage_types(info, columns)
                            types = ["text" if c in converted else t for c, t in zip(columns, types, strict=True)]
                            create_stage(pg, STAGE_NAME, columns, types)
                            destination = sql.Identifier(STAGE_NAME)
                        result.rows_read = _copy_batches(pg, destination, columns, read)
                        conversions.convert_stage(
                            pg, STAGE_NAME, converted, table=cfg.qualified_table, key=cfg.primary_key
                        )
                        seen = read.max_updated_at
        except SourceSkipped as skip:
            raise _Skip(str(skip)) from None
        except psycopg.errors.DataError as exc:
            if into_target:
                raise  # the caller falls back to the stage, where the row is diagnosed
            raise describe_copy_error(
                exc, cfg, source, since, batch_size, columns, {c: info.columns[c].data_type for c in columns}
            ) from exc
        except SourceUnavailableError as exc:
            raise RefdataSyncError(f"{exc} (gave up after {result.attempts} attempt(s))", table=result.table) from exc
        return columns, seen

    @staticmethod
    def _validate_columns(cfg: Any, info: TableInfo, read: SourceRead) -> list[str]:
        data_columns = list(read.columns)
        unknown = [c for c in data_columns if c not in info.columns or c in TRACKING_COLUMN_NAMES]
        if unknown:
            message = f"{read.description}: column(s) {', '.join(unknown)} are not columns of {cfg.qualified_table}"
            if cfg.source_type == "config_file":
                raise SourceSkipped(message)
            raise RefdataSyncError(message, table=cfg.qualified_table)
        missing_key = [k for k in cfg.primary_key if k not in data_columns]
        if missing_key:
            raise SourceSkipped(f"{read.description}: no value for key column(s) {', '.join(missing_key)}")
        return list(read.columns)

    # ------------------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------------------

    def _entries(self, config_or_tables: Any, tables: Iterable[str] | None) -> tuple[list[Any], Callable[[Any], int]]:
        if hasattr(config_or_tables, "tables"):
            config = config_or_tables
            if not config.enabled:
                logger.info("Reference sync is disabled in the configuration (enabled: false); nothing to do")
                return [], lambda entry: DEFAULT_BATCH_SIZE
            candidates = list(config.tables)
            batch_size_of = config.effective_batch_size
        else:
            candidates = list(config_or_tables)
            batch_size_of = lambda entry: entry.batch_size or DEFAULT_BATCH_SIZE  # noqa: E731
        wanted = [t for t in (tables or []) if t]
        if wanted:
            known = {t.name for t in candidates}
            unknown = [t for t in wanted if t not in known]
            if unknown:
                raise RefdataConfigError(
                    f"unknown sync table(s) {', '.join(unknown)}; configured: {', '.join(sorted(known))}",
                    key_path="tables",
                    value=unknown,
                )
            return [t for t in candidates if t.name in wanted], batch_size_of
        return [t for t in candidates if getattr(t, "enabled", True)], batch_size_of


def _reset_counts(result: SyncResult) -> None:
    """A rolled-back (or skipped, or retried) table wrote nothing: its write counts are 0."""
    for field in SYNC_WRITE_COUNTS:
        setattr(result, field, 0)
    result.watermark_after = result.watermark_before


def _copy_batches(pg: psycopg.Connection, destination: sql.Composable, columns: Sequence[str], read: SourceRead) -> int:
    """COPY every batch of ``read`` into ``destination`` (a table reference); returns the number of rows copied."""
    options = sql.SQL(" (FORMAT csv)" if read.copy_format == "csv" else "")
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(destination, ident_list(columns), options)
    with pg.cursor() as cur:
        with cur.copy(statement) as copy:
            for batch in read.batches:
                if isinstance(batch, bytes | bytearray | memoryview):
                    copy.write(batch)
                else:
                    for row in batch:
                        copy.write_row(row)
        return max(cur.rowcount, 0)


def _read_watermark(pg: psycopg.Connection, name: str) -> datetime | None:
    # plan_only on a fresh warehouse must not create the state tables just to find no watermark.
    exists = pg.execute("SELECT to_regclass('refdata.sync_state') IS NOT NULL").fetchone()[0]
    return read_watermark(pg, name) if exists else None
