"""HybridReferenceService: make sure every FK value of a fact frame exists before the facts are loaded.

``ensure_references`` runs, in order:

1. optional **pre-load**: the authoritative sync (``sync_service.sync_all(conn=…)``) so that real reference
   data arrives before anything is derived; an exception there is degradation, not failure;
2. **key aliases** (every mode): keys a steward remapped (``refdata.key_alias``, e.g. ``P0O1`` → ``P001``) are
   mapped in the facts (:func:`~airflow_provider_refdata.services.aliases.apply_key_aliases`: one query for
   every table, the caller's frame rewritten in place), so a remapped typo never comes back as a placeholder
   and a backfill column copied from a mapped column (``fk_portfolio`` copies 计划代码) carries the target
   too; ``CoverageMetrics.remapped_values`` counts the fact rows mapped per FK;
3. per FK configuration, parents first, each isolated in its own transaction/savepoint:
   **coverage** on the distinct non-blank values (one set-based join) and **selective backfill** of the
   missing keys only (:class:`~airflow_provider_refdata.services.backfill.GenericBackfillService`);
4. **ratios**: auto-derived rows / all rows of each referenced table after backfill (one aggregate query per
   table) and overall; a **warning** for each ratio strictly greater than its threshold;
5. one ``refdata.run_log`` row with the :class:`~airflow_provider_refdata.results.HybridResult` as jsonb.

Each call has a ``run_id`` (uuid4, in the result and so in the run log).  A writing call records, inside each
table's unit, the provenance of the table's auto-derived keys in ``refdata.placeholder`` (first / last seen
with their run id, domains, fact rows that used the key); see
:mod:`~airflow_provider_refdata.warehouse.placeholders`.  Plan-only and coverage-only calls record nothing.

Inside a caller's open transaction (the per-table units are savepoints, whose advisory locks last until the
caller commits), a writing call first takes the locks of every table it will write, in one canonical order,
before the pre-load and the first table: two callers with overlapping tables in different dependency orders
then wait for each other instead of deadlocking (see :mod:`~airflow_provider_refdata.services.backfill`).
The pre-load's own locks are the sync service's business and are not part of that set.

Key aliases and locks: a remap holds its table's lock while it deletes the placeholder row and records the
alias, so the aliases must be read under the same lock as the coverage that follows, or a remap committing
in between would let the typo (no longer in the table, not mapped) come back.  Inside a caller's
transaction the aliases are read after the up-front locks, so the whole call sees a remap fully or not at
all.  On an idle connection each table's unit commits on its own, so each writing unit re-reads its
table's aliases under its lock (a catalog check and one indexed query) and maps its column again if a
remap committed since the read; a column already copied into another table's rows by then keeps what it
had (run inside a transaction for one consistent view).  Plan-only and coverage-only calls take no locks:
they measure as of the read.  FK configurations in ``skip_tables`` are not mapped.  The mapping's
normalised codes of a column are reused by its coverage, so an aliased column is factorised once.

Several FK configurations on one reference table (e.g. plan codes from two fact columns): each one's
coverage is measured against the table **as it was before this call's backfill** — keys an earlier
configuration of the call inserted count as missing for the later one and are not inserted twice — so the
coverage numbers and ``pre_load_coverage`` (covered / total summed over the FK configurations) are the same
in a plan-only run as in a real one.  Ratios count each table once: ``per_table_ratio`` is keyed by table,
``total_auto_derived``/``total_authoritative``/``auto_derived_ratio`` sum over distinct tables, and
``tables_processed`` counts distinct tables.

Thresholds: ``auto_derived_threshold`` applies to the overall ratio and to every table;
``table_thresholds`` overrides it per table, keyed by the schema-qualified table (``business.年金计划``) or
by an FK configuration's name (``fk_plan``; the qualified table wins when both are given).
``skip_tables`` takes the same kind of keys (or the bare table name).

Modes: ``plan_only`` measures and reports what would be inserted (ratios are projected as if it were),
writes nothing at all — no backfill, no tracking columns, no run-log row.  ``coverage_only`` measures
coverage and the current ratios without backfilling; it writes only its run-log row (run_type
``coverage_check``).

Facts in the warehouse: ``df`` may be a :class:`~airflow_provider_refdata.config.relation.WarehouseRelation`
(a table, view or query with parameters) instead of a frame; the same units, locks, modes, ratios and
run log then work on keys grouped in SQL, and nothing per fact row leaves PostgreSQL
(:mod:`~airflow_provider_refdata.services.relation_facts`).

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.pq import TransactionStatus

from airflow_provider_refdata.config import ForeignKeyConfig, processing_order
from airflow_provider_refdata.config.relation import WarehouseRelation
from airflow_provider_refdata.results import BackfillTableResult, CoverageMetrics, HybridResult
from airflow_provider_refdata.services.aliases import (
    KeyAliases,
    map_key_aliases,
    read_key_aliases,
    refresh_key_aliases,
)
from airflow_provider_refdata.services.backfill import (
    GenericBackfillService,
    TableOutcome,
    describe_error,
    finish_connection,
    lock_tables_up_front,
    shared_tables,
)
from airflow_provider_refdata.services.relation_facts import RelationFacts
from airflow_provider_refdata.warehouse.catalog import table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.coverage import source_counts
from airflow_provider_refdata.warehouse.state import ensure_state_tables, write_run_log

logger = logging.getLogger(__name__)

SKIPPED_BY_CALLER = "skipped by skip_tables"


class HybridReferenceService:
    """Coverage check, selective backfill and auto-derived ratios for one fact frame.

    :param backfill_service: the backfill service (default: a :class:`GenericBackfillService` per call; the
        call's ``domain`` is what gets written to ``_derived_from_domain``).
    :param sync_service: an object with ``sync_all(conn=…) -> list[SyncResult]``, already configured, for
        the optional authoritative pre-load; ``None`` skips the pre-load.
    :param auto_derived_threshold: default threshold for the overall and per-table ratios.
    :param table_thresholds: per-table overrides, keyed by schema-qualified table or FK configuration name.
    """

    def __init__(
        self,
        backfill_service: GenericBackfillService | None = None,
        sync_service: Any = None,
        *,
        auto_derived_threshold: float = 0.10,
        table_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        self.backfill_service = backfill_service
        self.sync_service = sync_service
        self.auto_derived_threshold = auto_derived_threshold
        self.table_thresholds = dict(table_thresholds or {})

    # ----------------------------------------------------------------------------------------------------
    def ensure_references(
        self,
        domain: str,
        df: pd.DataFrame | WarehouseRelation,
        fk_configs: Sequence[ForeignKeyConfig],
        conn: WarehouseLike,
        *,
        auto_derived_threshold: float | None = None,
        skip_tables: Iterable[str] = (),
        plan_only: bool = False,
        coverage_only: bool = False,
    ) -> HybridResult:
        """Measure coverage, backfill what is missing and report the auto-derived ratios.

        Never raises for a table-level problem or a failing pre-load: those set ``degraded_mode`` and are
        described in ``degradation_reason`` (``table (fk): cause``); the other tables are fully processed.

        :param domain: the fact domain (``_derived_from_domain`` and the run-log subject).
        The fact frame is **rewritten in place**: each FK column's remapped placeholder keys
        (``refdata.key_alias``) become their authoritative keys, in every mode, so the facts the caller
        loads next carry keys the reference tables hold; ``remapped_values`` of each coverage metric counts
        the rows mapped.

        :param domain: the fact domain (``_derived_from_domain`` and the run-log subject).
        :param df: the fact frame (its aliased FK values are rewritten in place), or a
            :class:`~airflow_provider_refdata.config.relation.WarehouseRelation` (a table, view or query):
            then everything runs in PostgreSQL (:mod:`~airflow_provider_refdata.services.relation_facts`),
            no fact row is read into the worker, the relation is not rewritten and the aliases are applied
            in SQL (``remapped_values`` counted the same way).
        :param fk_configs: the domain's FK configurations (any order; ``depends_on`` decides).
        :param conn: the warehouse (psycopg connection, PostgresHook, SQLAlchemy Connection/Engine, DSN).
        :param auto_derived_threshold: overrides the service's default threshold for this call.
        :param skip_tables: FK names, schema-qualified or bare table names to leave alone.
        :param plan_only: report what would be inserted; write nothing.
        :param coverage_only: measure coverage and ratios; no pre-load, no backfill.
        """
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        threshold = self.auto_derived_threshold if auto_derived_threshold is None else auto_derived_threshold
        skip = {skip_tables} if isinstance(skip_tables, str) else set(skip_tables)
        order = processing_order(fk_configs)
        backfill = self.backfill_service or GenericBackfillService(domain)
        problems: list[str] = []
        run_id = str(uuid.uuid4())
        result = HybridResult(domain=domain, run_id=run_id, plan_only=plan_only, coverage_only=coverage_only)
        writes = not coverage_only and not plan_only
        active = [fk for fk in order if not _is_skipped(fk, skip)]
        with warehouse_connection(conn) as pg:
            was_idle = pg.info.transaction_status == TransactionStatus.IDLE
            locked_up_front = False
            if writes:
                in_transaction = pg.info.transaction_status == TransactionStatus.INTRANS
                locks_problem = lock_tables_up_front(pg, active)
                if locks_problem:
                    problems.append(locks_problem)
                locked_up_front = in_transaction and not locks_problem
            if self.sync_service is not None and writes:
                result.pre_load_available = self._pre_load(pg, problems)
            normalized: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # FK columns the mapping factorised
            if isinstance(df, WarehouseRelation):  # in-warehouse: each unit maps its keys in SQL, under its lock
                df = RelationFacts(df, pg, active)
                aliases, remapped = None, {}
            else:
                aliases, remapped = _map_aliases(pg, df, active, problems, normalized)
            # Without the locks held since before the read, each writing unit re-reads its aliases under its own.
            recheck = None
            if writes and aliases is not None and not locked_up_front:
                recheck = partial(refresh_key_aliases, aliases=aliases)
            outcomes: list[TableOutcome] = []
            earlier = shared_tables(active)
            for fk in order:
                if _is_skipped(fk, skip):
                    outcomes.append(_skipped(fk))
                    continue
                outcome = backfill.process_table(
                    pg,
                    df,
                    fk,
                    backfill=not coverage_only,
                    plan_only=plan_only,
                    domain=domain,
                    earlier=earlier,
                    run_id=run_id,
                    under_lock=recheck,
                    normalized=normalized.pop(fk.name, None),
                )
                if outcome.coverage.remapped_values:  # remapped under the lock: the column changed again
                    for other in active:
                        if other.source_column == fk.source_column:
                            normalized.pop(other.name, None)
                outcome.coverage.remapped_values += remapped.get(fk.name, 0)
                if outcome.error:
                    problems.append(f"{fk.qualified_table} ({fk.name}): {outcome.error}")
                outcomes.append(outcome)
            self._fill_result(result, order, outcomes, df, coverage_only, started)
            self._ratios(pg, result, order, outcomes, threshold, problems)
            result.degraded_mode = bool(problems)
            result.degradation_reason = "; ".join(problems) or None
            result.duration_seconds = round(time.perf_counter() - started, 6)
            for warning in result.threshold_warnings:
                logger.warning("%s", warning)
            if not plan_only:
                self._write_run_log(pg, result, started_at, coverage_only)
            finish_connection(pg, was_idle)
        return result

    def check_coverage(
        self,
        domain: str,
        df: pd.DataFrame | WarehouseRelation,
        fk_configs: Sequence[ForeignKeyConfig],
        conn: WarehouseLike,
        *,
        auto_derived_threshold: float | None = None,
        skip_tables: Iterable[str] = (),
    ) -> HybridResult:
        """Coverage and current ratios only (no pre-load, no backfill): ``ensure_references(coverage_only=True)``.

        :param domain: the fact domain.
        :param df: the fact frame.
        :param fk_configs: the domain's FK configurations.
        :param conn: the warehouse.
        :param auto_derived_threshold: overrides the service's default threshold for this call.
        :param skip_tables: FK names, schema-qualified or bare table names to leave alone.
        """
        return self.ensure_references(
            domain,
            df,
            fk_configs,
            conn,
            auto_derived_threshold=auto_derived_threshold,
            skip_tables=skip_tables,
            coverage_only=True,
        )

    # ----------------------------------------------------------------------------------------------------
    def _pre_load(self, pg: psycopg.Connection, problems: list[str]) -> bool:
        """Run the authoritative sync first; True when at least one table synced without error."""
        try:
            results = self.sync_service.sync_all(conn=pg)
        except Exception as exc:  # a failing pre-load degrades the run, it does not stop it
            problems.append(f"pre-load: {describe_error(exc)}")
            logger.warning("Pre-load failed, continuing without it: %s", describe_error(exc))
            if pg.info.transaction_status == TransactionStatus.INERROR:
                pg.rollback()
            return False
        results = list(results or [])
        for sync in results:
            if getattr(sync, "error", None):
                problems.append(f"pre-load {sync.table}: {sync.error}")
        return any(getattr(s, "error", None) is None and not getattr(s, "skipped_reason", None) for s in results)

    @staticmethod
    def _fill_result(
        result: HybridResult,
        order: Sequence[ForeignKeyConfig],
        outcomes: list[TableOutcome],
        df: pd.DataFrame,
        coverage_only: bool,
        started: float,
    ) -> None:
        result.fact_rows = len(df)
        result.coverage_metrics = [o.coverage for o in outcomes]
        measured = [o.coverage for o in outcomes if o.measured]
        total = sum(c.total_fk_values for c in measured)
        result.pre_load_coverage = round(sum(c.covered_values for c in measured) / total, 6) if total else 1.0
        result.tables_processed = len({c.table for c in measured})  # distinct tables, not FK configurations
        if not coverage_only:
            result.backfill_result = GenericBackfillService.summarize(
                order, [o.backfill for o in outcomes], len(df), time.perf_counter() - started, result.plan_only
            )
            result.backfill_count = result.backfill_result.total_inserted

    def _threshold_for(self, table: str, fk_names: list[str], default: float) -> float:
        if table in self.table_thresholds:
            return float(self.table_thresholds[table])
        for name in fk_names:
            if name in self.table_thresholds:
                return float(self.table_thresholds[name])
        return default

    def _ratios(
        self,
        pg: psycopg.Connection,
        result: HybridResult,
        order: Sequence[ForeignKeyConfig],
        outcomes: list[TableOutcome],
        threshold: float,
        problems: list[str],
    ) -> None:
        """Auto-derived / all rows per referenced table (projected with the would-be inserts in plan mode)."""
        tables: dict[tuple[str, str], list[str]] = {}
        pending: dict[str, int] = {}
        failed: set[str] = set()
        for fk, outcome in zip(order, outcomes, strict=True):
            if outcome.coverage.skipped_reason:
                continue
            tables.setdefault((fk.target_schema, fk.target_table), []).append(fk.name)
            if outcome.error:
                failed.add(fk.qualified_table)
            if result.plan_only:
                pending[fk.qualified_table] = pending.get(fk.qualified_table, 0) + outcome.backfill.inserted
        grand_total = grand_auto = 0
        for (schema, table), fk_names in tables.items():
            qualified = f"{schema}.{table}"
            try:
                with pg.transaction():
                    info = table_info(pg, schema, table)
                    if info is None:
                        if qualified not in failed:
                            problems.append(f"{qualified}: reference table does not exist")
                        continue
                    total, auto = source_counts(pg, info)
            except Exception as exc:  # one table's ratio must not cost the others theirs
                if qualified not in failed:
                    problems.append(f"{qualified} (ratio): {describe_error(exc)}")
                continue
            total += pending.get(qualified, 0)
            auto += pending.get(qualified, 0)
            grand_total += total
            grand_auto += auto
            ratio = auto / total if total else 0.0
            result.per_table_ratio[qualified] = round(ratio, 6)
            limit = self._threshold_for(qualified, fk_names, threshold)
            if ratio > limit:
                result.threshold_warnings.append(
                    f"{qualified}: auto-derived ratio {ratio:.2%} ({auto} of {total} rows) is above "
                    f"the threshold {limit:.2%}"
                )
        result.total_auto_derived = grand_auto
        result.total_authoritative = grand_total - grand_auto
        result.auto_derived_ratio = round(grand_auto / grand_total, 6) if grand_total else 0.0
        if result.auto_derived_ratio > threshold:
            result.threshold_warnings.insert(
                0,
                f"overall: auto-derived ratio {result.auto_derived_ratio:.2%} ({grand_auto} of {grand_total} "
                f"rows) is above the threshold {threshold:.2%}",
            )

    @staticmethod
    def _write_run_log(pg: psycopg.Connection, result: HybridResult, started_at: datetime, coverage_only: bool) -> None:
        try:
            with pg.transaction():
                ensure_state_tables(pg)
                write_run_log(
                    pg,
                    run_type="coverage_check" if coverage_only else "ensure_references",
                    subject=result.domain,
                    status="degraded" if result.degraded_mode else "success",
                    started_at=started_at,
                    result=result.model_dump(mode="json"),
                )
        except Exception as exc:  # the run itself succeeded; losing its log line degrades it
            logger.warning("Could not write the run log: %s", describe_error(exc))
            reason = f"run log: {describe_error(exc)}"
            result.degraded_mode = True
            previous = result.degradation_reason
            result.degradation_reason = f"{previous}; {reason}" if previous else reason


def _map_aliases(
    pg: psycopg.Connection,
    df: pd.DataFrame,
    fk_configs: Sequence[ForeignKeyConfig],
    problems: list[str],
    normalized: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[KeyAliases | None, dict[str, int]]:
    """Read the aliases (one query, in the call's transaction and lock scope) and map them in ``df``.

    ``normalized`` receives the FK columns' normalised codes the mapping computed (the coverage reuses them).
    A failure degrades the call (``key aliases: cause``) and leaves the facts as they are; ``None`` then.
    """
    try:
        with pg.transaction():
            aliases = read_key_aliases(pg, fk_configs)
        remapped = map_key_aliases(df, fk_configs, aliases, normalized=normalized)
    except Exception as exc:  # the coverage still runs, on the facts as given
        normalized.clear()
        problems.append(f"key aliases: {describe_error(exc)}")
        logger.warning("Could not map the key aliases: %s", describe_error(exc))
        return None, {}
    total = sum(remapped.values())
    if total:
        logger.info(
            "Key aliases: %d fact rows mapped to their authoritative keys (%s)",
            total,
            ", ".join(f"{name}: {rows}" for name, rows in remapped.items() if rows),
        )
    return aliases, remapped


def _is_skipped(fk: ForeignKeyConfig, skip: set[str]) -> bool:
    return bool(skip & {fk.name, fk.qualified_table, fk.target_table})


def _skipped(fk: ForeignKeyConfig) -> TableOutcome:
    return TableOutcome(
        coverage=CoverageMetrics(fk_name=fk.name, table=fk.qualified_table, skipped_reason=SKIPPED_BY_CALLER),
        backfill=BackfillTableResult(fk_name=fk.name, table=fk.qualified_table),
    )
