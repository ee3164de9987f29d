"""GenericBackfillService: insert the FK values a fact frame needs and the reference tables lack.

Per FK configuration, parents before children (``depends_on``), in one transaction per table:

1. derive the distinct non-blank keys in pandas (:mod:`~airflow_provider_refdata.services.derivation`);
2. COPY them into a temporary stage and measure coverage with one join, which also says which are missing;
3. derive the backfill columns for the *missing* keys only, COPY them into a second stage;
4. ``INSERT … SELECT … ON CONFLICT (key) DO NOTHING`` as auto-derived rows flagged for review (and, in
   ``fill_null_only`` mode, fill NULL business columns of existing rows).

Each table runs inside ``conn.transaction()``: on an idle connection that is the table's own transaction,
committed when the table is done; inside a caller's open transaction it is a savepoint.  Either way a
failing table is rolled back alone, recorded with its cause, and the next table proceeds; nothing is raised.
Writers of the same table serialize on a transaction-scoped advisory lock, so concurrent runs over
overlapping keys neither fail nor duplicate, and their inserted counts add up to the keys really added.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg.pq import TransactionStatus

from airflow_provider_refdata.config import ForeignKeyConfig, processing_order
from airflow_provider_refdata.exceptions import RefdataBackfillError
from airflow_provider_refdata.results import BackfillResult, BackfillTableResult, CoverageMetrics
from airflow_provider_refdata.services.derivation import FactKeys, candidates_frame, extract_keys
from airflow_provider_refdata.warehouse.backfill import fill_null_columns, insert_missing, stage_candidates
from airflow_provider_refdata.warehouse.catalog import TableInfo, table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.coverage import measure_coverage, stage_keys
from airflow_provider_refdata.warehouse.state import lock_name
from airflow_provider_refdata.warehouse.tracking import TRACKING_COLUMNS, ensure_tracking_columns

logger = logging.getLogger(__name__)

_KEY_STAGE = "refdata_fk_keys"
_ROW_STAGE = "refdata_fk_rows"


@dataclass
class TableOutcome:
    """What happened to one FK configuration: its coverage (before backfill) and its backfill."""

    coverage: CoverageMetrics
    backfill: BackfillTableResult

    @property
    def error(self) -> str | None:
        return self.backfill.error


def describe_error(exc: BaseException) -> str:
    """A one-line cause for results and logs: the exception type and its first message line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_lengths(frame: pd.DataFrame, info: TableInfo, fk: ForeignKeyConfig) -> None:
    """Name the key and column of the first value longer than its varchar(n) column, before writing."""
    for column in frame.columns:
        limit = info.columns[column].max_length
        if limit is None:
            continue
        lengths = frame[column].dropna().astype(str).str.len()  # per candidate, not per fact row
        too_long = lengths.index[lengths.to_numpy() > limit]
        if len(too_long):
            row = frame.loc[too_long[0]]
            raise RefdataBackfillError(
                f"foreign key {fk.name!r}: value {row[column]!r} for column {column!r} of key "
                f"{row[fk.target_key]!r} is longer than {limit} characters",
                fk_name=fk.name,
                table=fk.qualified_table,
                column=column,
            )


class GenericBackfillService:
    """Backfill missing reference rows for one fact domain.

    :param domain: the fact domain, written to ``_derived_from_domain`` of every row this service inserts.
    """

    def __init__(self, domain: str) -> None:
        self.domain = domain

    def run(
        self,
        df: pd.DataFrame,
        fk_configs: Sequence[ForeignKeyConfig],
        conn: WarehouseLike,
        *,
        plan_only: bool = False,
    ) -> BackfillResult:
        """Insert the missing keys of every FK configuration, parents first; one failing table never stops
        the others (its ``error`` says why).

        :param df: the fact frame.
        :param fk_configs: the domain's FK configurations (any order; ``depends_on`` decides).
        :param conn: the warehouse (psycopg connection, PostgresHook, SQLAlchemy Connection/Engine, DSN).
        :param plan_only: count what would be inserted/filled, write nothing.
        """
        started = time.perf_counter()
        order = processing_order(fk_configs)
        with warehouse_connection(conn) as pg:
            was_idle = pg.info.transaction_status == TransactionStatus.IDLE
            outcomes = [self.process_table(pg, df, fk, plan_only=plan_only) for fk in order]
            finish_connection(pg, was_idle)
        return self.summarize(order, [o.backfill for o in outcomes], len(df), time.perf_counter() - started, plan_only)

    @staticmethod
    def summarize(
        order: Sequence[ForeignKeyConfig],
        tables: list[BackfillTableResult],
        fact_rows: int,
        duration: float,
        plan_only: bool,
    ) -> BackfillResult:
        """Assemble a :class:`BackfillResult`; ``rows_per_second`` is fact rows processed per second."""
        return BackfillResult(
            processing_order=[fk.name for fk in order],
            tables=tables,
            total_inserted=sum(t.inserted for t in tables),
            total_skipped=sum(t.skipped for t in tables),
            duration_seconds=round(duration, 6),
            rows_per_second=round(fact_rows / duration, 1) if duration > 0 else 0.0,
            plan_only=plan_only,
        )

    def process_table(
        self,
        pg: psycopg.Connection,
        df: pd.DataFrame,
        fk: ForeignKeyConfig,
        *,
        backfill: bool = True,
        plan_only: bool = False,
        domain: str | None = None,
    ) -> TableOutcome:
        """Coverage and (unless ``backfill`` is false) backfill of one FK configuration, isolated.

        Never raises for a table-level problem: a missing table or column, a failing statement, a value too
        long are rolled back to the table's transaction/savepoint and reported in both results' ``error``.

        :param pg: a psycopg connection (not inside a failed transaction).
        :param df: the fact frame.
        :param fk: the foreign-key configuration.
        :param backfill: insert missing keys (false: measure coverage only, write nothing).
        :param plan_only: measure and count what would be written, write nothing.
        :param domain: written to ``_derived_from_domain`` (default: the service's domain).
        """
        table = fk.qualified_table
        coverage = CoverageMetrics(fk_name=fk.name, table=table)
        result = BackfillTableResult(fk_name=fk.name, table=table)
        try:
            keys = extract_keys(df, fk)
            coverage.blank_rows = keys.blank_rows
            coverage.total_fk_values = result.candidates = keys.total
            writes = backfill and not plan_only
            with pg.transaction() as tx:
                self._process(pg, df, fk, keys, coverage, result, backfill, writes, domain or self.domain)
                if not writes:
                    # Plan and coverage-only runs leave no trace, not even the stages.
                    raise psycopg.Rollback(tx)
        except Exception as exc:  # isolation: record the cause, let the other tables run
            cause = describe_error(exc)
            logger.warning("FK %s (%s): %s", fk.name, table, cause)
            coverage.error = result.error = cause
            result.inserted = result.updated = 0
            result.skipped = 0
        return TableOutcome(coverage=coverage, backfill=result)

    def _process(
        self,
        pg: psycopg.Connection,
        df: pd.DataFrame,
        fk: ForeignKeyConfig,
        keys: FactKeys,
        coverage: CoverageMetrics,
        result: BackfillTableResult,
        backfill: bool,
        writes: bool,
        domain: str,
    ) -> None:
        info = _reference_table(pg, fk)
        if writes and any(name not in info.columns for name in TRACKING_COLUMNS):
            # DDL under a lock: concurrent first runs on a bare table must not race on ALTER TABLE.
            lock_name(pg, f"{fk.qualified_table}#tracking")
            ensure_tracking_columns(pg, fk.target_schema, fk.target_table)
            info = _reference_table(pg, fk)
        if keys.total == 0:
            return
        stage_keys(pg, _KEY_STAGE, keys.keys, info.columns[fk.target_key])
        counts = measure_coverage(pg, _KEY_STAGE, info, fk.target_key)
        coverage.covered_values = counts.covered
        coverage.missing_values = counts.missing
        coverage.coverage_rate = counts.covered / counts.total if counts.total else 1.0
        coverage.authoritative_values = counts.authoritative
        coverage.auto_derived_values = counts.auto_derived
        fill = fk.mode == "fill_null_only"
        if not backfill or not (counts.missing or fill):
            result.skipped = keys.total
            return
        # fill_null_only needs values for existing keys too; otherwise only the missing keys are derived.
        frame = candidates_frame(df, fk, keys, None if fill else counts.missing_positions)
        _check_lengths(frame, info, fk)
        columns = [c.target for c in fk.backfill_columns]
        if writes:
            lock_name(pg, fk.qualified_table)
        stage_candidates(pg, _ROW_STAGE, frame, info, fk.target_key)
        if fill:
            result.updated = fill_null_columns(pg, _ROW_STAGE, info, fk.target_key, columns, plan_only=not writes)
        if writes:
            result.inserted = insert_missing(pg, _ROW_STAGE, info, fk.target_key, columns, domain)
        else:
            result.inserted = counts.missing  # what a real run would insert now
        result.skipped = keys.total - result.inserted
        logger.info(
            "FK %s (%s): %d candidates, %d missing, %d %s, %d filled",
            fk.name,
            fk.qualified_table,
            keys.total,
            counts.missing,
            result.inserted,
            "inserted" if writes else "would be inserted",
            result.updated,
        )


def _reference_table(pg: psycopg.Connection, fk: ForeignKeyConfig) -> TableInfo:
    """The reference table's catalog entry; raises when it or a configured column does not exist."""
    info = table_info(pg, fk.target_schema, fk.target_table)
    if info is None:
        raise RefdataBackfillError(
            f"reference table {fk.qualified_table} does not exist", fk_name=fk.name, table=fk.qualified_table
        )
    for column in [fk.target_key, *(c.target for c in fk.backfill_columns)]:
        if not info.has_column(column):
            raise RefdataBackfillError(
                f"column {column!r} does not exist in reference table {fk.qualified_table}",
                fk_name=fk.name,
                table=fk.qualified_table,
                column=column,
            )
    return info


def finish_connection(pg: psycopg.Connection, was_idle: bool) -> None:
    """Leave a connection that was idle when handed over idle again (commit anything left pending by us)."""
    if was_idle and pg.info.transaction_status == TransactionStatus.INTRANS:
        pg.commit()
    elif was_idle and pg.info.transaction_status == TransactionStatus.INERROR:
        pg.rollback()
