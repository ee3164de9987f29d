"""GenericBackfillService: insert the FK values a fact frame needs and the reference tables lack.

Per FK configuration, parents before children (``depends_on``), in one transaction per table:

1. derive the distinct non-blank keys in pandas (:mod:`~airflow_provider_refdata.services.derivation`);
2. COPY them into a temporary stage and measure coverage with one join, which also says which are missing;
3. derive the backfill columns for the *missing* keys only, COPY them into a second stage;
4. ``INSERT … SELECT … ON CONFLICT (key) DO NOTHING`` as auto-derived rows flagged for review (and, in
   ``fill_null_only`` mode, fill NULL business columns of existing rows).

**Values that do not fit** (``varchar(n)``/``char(n)`` limits and column types from the catalog, checked
set-based before anything is written; nothing is ever truncated):

- a *key* longer than the key column can never exist in the table: the coverage join counts it as missing
  and sets it apart (``char_length`` on the server); it is left out of the backfill, the other keys are
  inserted, and the table is reported (``error`` on its coverage and backfill results, hence
  ``degraded_mode``) with the FK, the table, the key column, the limit, the count and an example key;
  ``rejected`` counts those keys;
- a *backfill value* longer than its column is stored as NULL when the column is nullable (the key is what
  the facts need; the row is flagged for review like every auto-derived row) and, when the column is
  NOT NULL, its row is left out (counted in ``rejected``); either way the table is reported the same way,
  naming the FK, table, column, limit and an example key and value;
- a *backfill value of the wrong type* for its column (``"2024-13-45"`` or ``"n/a"`` for a ``date``,
  ``"abc"`` or ``1.5`` for an ``integer``, ``"99999999999999999999"`` out of its range, ``"maybe"`` for a
  ``boolean``, bad JSON for a ``jsonb``) is treated the same way: NULL when the column is nullable, its row
  left out (``rejected``) when it is NOT NULL, and the table reported naming the FK, table, column and type,
  an example key and value and PostgreSQL's reason.  PostgreSQL decides (its own input functions, so
  exactly what the insert would accept), set-based: see
  :func:`~airflow_provider_refdata.warehouse.backfill.invalid_values`.  Values pandas typed (a float
  column's ``1.5``) arrive as their text and are judged the same way;
- a *template value* whose formatted placeholder (``{月度:%y%m}``, ``{金额:,.2f}``) meets a value that does not
  parse as a date or number is stored as NULL, counted in ``template_unparsed`` and reported the same way,
  naming the FK, table, column, placeholder and an example key and value.

**Several FK configurations on one table** (e.g. plan codes from two fact columns) are each measured
against the table *as it was before this call*: keys an earlier configuration of the same call inserted
count as missing for the later one (its ``coverage`` is the facts' real pre-call coverage, the same in plan
mode as in a real run), and they are not inserted again (``skipped``); in plan mode the keys an earlier
configuration would insert are not counted twice.  A configuration's ``inserted`` is what it really added.

Each table runs inside ``conn.transaction()``: on an idle connection that is the table's own transaction,
committed when the table is done; inside a caller's open transaction it is a savepoint.  Either way a
failing table is rolled back alone, recorded with its cause, and the next table proceeds; nothing is raised.

Locking: writers of a table serialize on a transaction-scoped advisory lock named after the table (the
name the sync uses too), taken as the first statement of the table's unit, so the tracking-column DDL, the
coverage that decides what is missing and the insert all happen under it; concurrent runs over
overlapping keys neither fail nor duplicate, and their inserted counts add up to the keys really added.
On an idle connection a unit holds one table lock and commits.  Inside a caller's open transaction the
locks outlive their savepoints until the caller commits, so every table lock the call needs is taken up
front, in one canonical order (:func:`lock_tables_up_front`): two callers processing overlapping tables in
different orders wait for each other instead of deadlocking.  Plan-only and coverage-only runs write
nothing and take no locks.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg.pq import TransactionStatus

from airflow_provider_refdata.config import ForeignKeyConfig, processing_order
from airflow_provider_refdata.exceptions import RefdataBackfillError
from airflow_provider_refdata.results import BackfillResult, BackfillTableResult, CoverageMetrics
from airflow_provider_refdata.services.derivation import FactKeys, UnparsedTemplateValues, derive_rows, extract_keys
from airflow_provider_refdata.warehouse.backfill import (
    InvalidValues,
    fill_null_columns,
    insert_missing,
    invalid_values,
    stage_candidates,
)
from airflow_provider_refdata.warehouse.catalog import TableInfo, table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.coverage import (
    KEY_COLUMN,
    CoverageCounts,
    measure_coverage,
    stage_earlier_keys,
    stage_keys,
)
from airflow_provider_refdata.warehouse.placeholders import fact_row_counts, record_placeholders
from airflow_provider_refdata.warehouse.state import (
    ensure_state_tables,
    lock_name,
    lock_names,
    record_confirmed_keys,
    synced_by_delete_insert,
)
from airflow_provider_refdata.warehouse.tracking import TRACKING_COLUMNS, ensure_tracking_columns

logger = logging.getLogger(__name__)

_KEY_STAGE = "refdata_fk_keys"
_ROW_STAGE = "refdata_fk_rows"
_EARLIER_STAGE = "refdata_fk_earlier"


@dataclass
class TableOutcome:
    """What happened to one FK configuration: its coverage (before backfill) and its backfill."""

    coverage: CoverageMetrics
    backfill: BackfillTableResult
    measured: bool = False  # coverage was measured (the table may still report rejected keys or values)

    @property
    def error(self) -> str | None:
        return self.backfill.error


def describe_error(exc: BaseException) -> str:
    """A one-line cause for results and logs: the exception type and its first message line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _example(value: object) -> str:
    """A value for a message: quoted, cut after 40 characters, with its length when cut."""
    text = str(value)
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}… ({len(text)} characters)"


def _too_long_keys(fk: ForeignKeyConfig, info: TableInfo, keys: FactKeys, positions: Sequence[int]) -> str:
    """The message for missing keys longer than the key column allows (they are left out)."""
    limit = info.columns[fk.target_key].max_length
    return (
        f"foreign key {fk.name!r}: {len(positions)} key(s) longer than the {limit} characters of key column "
        f"{fk.target_key!r} in {fk.qualified_table} left out of the backfill, e.g. {_example(keys.keys[positions[0]])}"
    )


def _fit_values(frame: pd.DataFrame, info: TableInfo, fk: ForeignKeyConfig, notes: list[str]) -> np.ndarray:
    """Apply the over-long value policy to the candidate rows; returns the mask of the rows to keep.

    A value longer than its ``varchar(n)``/``char(n)`` column becomes NULL when the column is nullable, else
    its row is left out; either way one message per column names the FK, table, column, limit and an example.
    Vectorised per column (string lengths in pandas), never per value.
    """
    keep = np.ones(len(frame), dtype=bool)
    for column in frame.columns[1:]:  # the key comes first; too-long keys never reach the frame
        target = info.columns[column]
        if target.max_length is None:
            continue
        lengths = frame[column].astype("string").str.len()
        too_long = (lengths > target.max_length).fillna(False).to_numpy(dtype=bool)
        if not too_long.any():
            continue
        first = int(np.flatnonzero(too_long)[0])
        example = f"key {frame.iat[first, 0]!r}: {_example(frame[column].iat[first])}"
        if target.nullable:
            frame.loc[too_long, column] = None
            outcome = "stored as NULL"
        else:
            keep &= ~too_long
            outcome = "left their rows out (the column is NOT NULL)"
        notes.append(
            f"foreign key {fk.name!r}: {int(too_long.sum())} value(s) longer than the {target.max_length} "
            f"characters of column {column!r} in {fk.qualified_table} {outcome}, e.g. {example}"
        )
    return keep


def _reject_invalid(
    frame: pd.DataFrame, info: TableInfo, fk: ForeignKeyConfig, invalid: Sequence[InvalidValues], notes: list[str]
) -> np.ndarray:
    """Apply the wrong-type value policy to the staged candidate rows; returns the mask of the rows to keep.

    Like :func:`_fit_values`: a value that does not convert to its column's type becomes NULL when the column
    is nullable, else its row is left out; one message per column names the FK, table, column, type, an
    example key and value, and PostgreSQL's reason for that example.
    """
    keep = np.ones(len(frame), dtype=bool)
    for found in invalid:
        target = info.columns[found.column]
        bad = np.zeros(len(frame), dtype=bool)
        bad[found.positions] = True
        first = found.positions[0]
        example = f"key {frame.iat[first, 0]!r}: {_example(frame[found.column].iat[first])}"
        if target.nullable:
            frame.loc[bad, found.column] = None
            outcome = "stored as NULL"
        else:
            keep &= ~bad
            outcome = "left their rows out (the column is NOT NULL)"
        reason = found.reason if len(found.reason) <= 120 else f"{found.reason[:120]}…"
        notes.append(
            f"foreign key {fk.name!r}: {len(found.positions)} value(s) of column {found.column!r} in "
            f"{fk.qualified_table} not valid for its type {target.data_type} {outcome}, e.g. {example} ({reason})"
        )
    return keep


def _unparsed_note(fk: ForeignKeyConfig, frame: pd.DataFrame, unparsed: UnparsedTemplateValues) -> str:
    """The message for template values stored as NULL because a formatted placeholder did not parse."""
    mask = unparsed.mask
    first = int(np.flatnonzero(mask)[0])
    piece = unparsed.pieces[first]
    return (
        f"foreign key {fk.name!r}: {int(mask.sum())} value(s) of column {unparsed.target!r} in "
        f"{fk.qualified_table} stored as NULL: the value of placeholder {piece.placeholder!r} of template "
        f"{unparsed.template!r} did not parse as a {piece.kind}, e.g. key {frame.iat[first, 0]!r}: "
        f"{_example(unparsed.values[first])}"
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
            if not plan_only:
                lock_tables_up_front(pg, order)
            earlier = shared_tables(order)
            outcomes = [self.process_table(pg, df, fk, plan_only=plan_only, earlier=earlier) for fk in order]
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
        earlier: dict[str, list[str]] | None = None,
        run_id: str | None = None,
        under_lock: Callable[[psycopg.Connection, pd.DataFrame, ForeignKeyConfig], int] | None = None,
        normalized: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TableOutcome:
        """Coverage and (unless ``backfill`` is false) backfill of one FK configuration, isolated.

        Never raises for a table-level problem: a missing table or column or a failing statement is rolled
        back to the table's transaction/savepoint and reported in both results' ``error``; keys or values
        too long for their columns, and values of the wrong type for theirs, are left out (see the module
        docstring), the rest is written, and the table's ``error`` says what was left out.

        :param pg: a psycopg connection (not inside a failed transaction).
        :param df: the fact frame, or facts that stay in the warehouse
            (:class:`~airflow_provider_refdata.services.relation_facts.RelationFacts`: keys, key stage and
            derivation in SQL; the rest of the unit is the same).
        :param fk: the foreign-key configuration.
        :param backfill: insert missing keys (false: measure coverage only, write nothing).
        :param plan_only: measure and count what would be written, write nothing.
        :param domain: written to ``_derived_from_domain`` (default: the service's domain).
        :param earlier: per qualified table targeted by several FK configurations of the call (see
            :func:`shared_tables`), the keys the call's earlier configurations inserted (in plan mode: would
            insert); coverage is measured as before them, and this configuration's keys are added.
        :param run_id: the ``ensure_references`` run id; when given, a writing unit records the provenance of
            the table's auto-derived keys in ``refdata.placeholder``, in the same transaction
            (:func:`~airflow_provider_refdata.warehouse.placeholders.record_placeholders`).
        :param under_lock: called as ``under_lock(pg, df, fk)`` first in the unit's transaction, under the
            table's lock (when the unit writes) and before the keys are extracted; it may rewrite ``df`` and
            returns the fact rows it remapped (added to ``coverage.remapped_values``), e.g.
            :func:`~airflow_provider_refdata.services.aliases.refresh_key_aliases`.
        :param normalized: the FK column's normalised codes when the caller has them for ``df`` as it is (see
            :func:`~airflow_provider_refdata.services.derivation.extract_keys`); ignored once ``under_lock``
            remapped rows.
        """
        table = fk.qualified_table
        coverage = CoverageMetrics(fk_name=fk.name, table=table)
        result = BackfillTableResult(fk_name=fk.name, table=table)
        notes: list[str] = []
        added: list[str] = []  # keys inserted (plan mode: to be inserted) by this unit, if the table is shared
        try:
            writes = backfill and not plan_only
            shared_before = bool(earlier and earlier.get(table))  # keys an earlier configuration inserted
            with pg.transaction() as tx:
                if writes:
                    # First statement of the table's unit: the table's lock covers the tracking DDL, the coverage
                    # that decides what is missing and the insert (the sync takes the same lock before its DDL
                    # and merge; a steward's remap too, so the keys are extracted after it).
                    lock_name(pg, fk.qualified_table)
                if under_lock is not None:
                    remapped = under_lock(pg, df, fk)
                    coverage.remapped_values += remapped
                    normalized = None if remapped else normalized
                if isinstance(df, pd.DataFrame):
                    keys = extract_keys(df, fk, normalized)
                else:  # facts in the warehouse (services.relation_facts.RelationFacts): keys grouped in SQL
                    keys = df.extract_keys(pg, fk)
                    coverage.remapped_values += keys.remapped
                coverage.blank_rows = keys.blank_rows
                coverage.total_fk_values = result.candidates = keys.total
                seen = self._process(
                    pg, df, fk, keys, coverage, result, backfill, writes, domain or self.domain, notes, earlier, added
                )
                if writes and run_id is not None and seen is not None:
                    _record_provenance(pg, fk, keys, *seen, shared_before, domain or self.domain, run_id)
                if not writes:
                    # Plan and coverage-only runs leave no trace, not even the stages.
                    raise psycopg.Rollback(tx)
        except Exception as exc:  # isolation: record the cause, let the other tables run
            cause = describe_error(exc)
            logger.warning("FK %s (%s): %s", fk.name, table, cause)
            coverage.error = result.error = cause
            result.inserted = result.updated = result.skipped = result.rejected = result.template_unparsed = 0
            return TableOutcome(coverage=coverage, backfill=result)
        if earlier is not None and table in earlier:
            earlier[table].extend(added)  # only once the unit has committed (or, in plan mode, completed)
        if notes:
            # The rest of the table went in; what did not fit is reported like a failure: degraded, with cause.
            coverage.error = result.error = "; ".join(notes)
            logger.warning("FK %s (%s): %s", fk.name, table, result.error)
        return TableOutcome(coverage=coverage, backfill=result, measured=True)

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
        notes: list[str],
        earlier: dict[str, list[str]] | None,
        added: list[str],
    ) -> tuple[TableInfo, CoverageCounts] | None:
        """The unit's work (under the table's lock when it writes); returns the table's catalog entry and
        coverage counts (``None``: no keys)."""
        info = _reference_table(pg, fk)
        if writes and any(name not in info.columns for name in TRACKING_COLUMNS):
            ensure_tracking_columns(pg, fk.target_schema, fk.target_table)
            info = _reference_table(pg, fk)
        if keys.total == 0:
            return None
        if isinstance(df, pd.DataFrame):
            stage_keys(pg, _KEY_STAGE, keys.keys, info.columns[fk.target_key])
        else:
            df.stage_keys(pg, _KEY_STAGE, keys, info.columns[fk.target_key])
        # Keys of this table written earlier in this call (another FK config on the same table), if any.
        shared = earlier is not None and fk.qualified_table in earlier
        done = earlier[fk.qualified_table] if shared else None
        if done:
            stage_earlier_keys(pg, _EARLIER_STAGE, done, info.columns[fk.target_key])
        counts = measure_coverage(pg, _KEY_STAGE, info, fk.target_key, earlier_stage=_EARLIER_STAGE if done else None)
        if writes and synced_by_delete_insert(pg, fk.qualified_table):
            # The facts about to be loaded use these keys: the delete_insert sync keeps them for a while.  Only
            # for such tables: an upsert sync never deletes, and recording costs ~10% of a 1M-fact run.
            record_confirmed_keys(pg, fk.qualified_table, _KEY_STAGE, KEY_COLUMN)
        coverage.covered_values = counts.covered
        coverage.missing_values = counts.missing
        coverage.coverage_rate = counts.covered / counts.total if counts.total else 1.0
        coverage.authoritative_values = counts.authoritative
        coverage.auto_derived_values = counts.auto_derived
        if counts.too_long_positions:
            notes.append(_too_long_keys(fk, info, keys, counts.too_long_positions))
        result.rejected = len(counts.too_long_positions)
        fill = fk.mode == "fill_null_only"
        if not backfill or not (counts.missing_positions or fill):
            result.skipped = keys.total - result.rejected
            return info, counts
        # fill_null_only needs values for existing keys too; otherwise only the missing keys are derived.
        missing = np.asarray(counts.missing_positions, dtype=np.intp)
        if fill:
            selected = np.setdiff1d(np.arange(keys.total, dtype=np.intp), counts.too_long_positions)
        else:
            selected = missing
        derived = (
            derive_rows(df, fk, keys, selected)
            if isinstance(df, pd.DataFrame)
            else df.derive_rows(pg, fk, keys, selected)
        )
        frame, unparsed = derived.frame, derived.unparsed
        keep = _fit_values(frame, info, fk, notes)
        if not keep.all():
            result.rejected += int(np.isin(selected[~keep], missing).sum())
            frame, selected = frame[keep], selected[keep]
            unparsed = [u.select(keep) for u in unparsed]
        columns = [c.target for c in fk.backfill_columns]
        stage_candidates(pg, _ROW_STAGE, frame, info, fk.target_key)
        # Values of the wrong type for their column: found on the server (one probe when all convert).
        invalid = invalid_values(pg, _ROW_STAGE, info, columns)
        if invalid:
            keep = _reject_invalid(frame, info, fk, invalid, notes)
            if not keep.all():
                result.rejected += int(np.isin(selected[~keep], missing).sum())
                frame, selected = frame[keep], selected[keep]
                unparsed = [u.select(keep) for u in unparsed]
            stage_candidates(pg, _ROW_STAGE, frame, info, fk.target_key)  # the stage holds what is written
        # Counted on the rows that are written (a row left out above stores nothing, parsed or not).
        unparsed = [u for u in unparsed if u.mask.any()]
        result.template_unparsed = sum(int(u.mask.sum()) for u in unparsed)
        notes.extend(_unparsed_note(fk, frame, u) for u in unparsed)
        if fill:
            result.updated = fill_null_columns(pg, _ROW_STAGE, info, fk.target_key, columns, plan_only=not writes)
        if writes:
            keys_out = added if shared else None
            result.inserted = insert_missing(pg, _ROW_STAGE, info, fk.target_key, columns, domain, keys_out=keys_out)
        else:
            would_insert = selected[np.isin(selected, missing)]  # what a real run would insert now
            result.inserted = len(would_insert)
            if shared:
                added.extend(str(k) for k in keys.keys[would_insert])
        result.skipped = keys.total - result.inserted - result.rejected
        logger.info(
            "FK %s (%s): %d candidates, %d missing, %d %s, %d rejected, %d filled, %d template values unparsed",
            fk.name,
            fk.qualified_table,
            keys.total,
            counts.missing,
            result.inserted,
            "inserted" if writes else "would be inserted",
            result.rejected,
            result.updated,
            result.template_unparsed,
        )
        return info, counts


def _record_provenance(
    pg: psycopg.Connection,
    fk: ForeignKeyConfig,
    keys: FactKeys,
    info: TableInfo,
    counts: CoverageCounts,
    shared_before: bool,
    domain: str,
    run_id: str,
) -> None:
    """Record the auto-derived keys of this unit in ``refdata.placeholder`` (inside the unit, under its lock).

    Under the table's lock the keys the coverage found missing are exactly the ones this unit inserts, so
    when the coverage saw no auto-derived key (and no earlier configuration of the call inserted any) only
    the missing positions are staged; otherwise every position is, and the join on the reference table keeps
    the auto-derived ones.  Nothing is staged when no key can be auto-derived.  The keys are the coverage's
    own normalised distinct keys (blank rules, trimming, numbers without ``.0``); their fact-row counts come
    from the same factorisation (``keys.codes``), so no per-row work happens on the server.
    """
    if counts.auto_derived or shared_before:
        positions = np.arange(keys.total, dtype=np.int64)
    else:
        positions = np.asarray(counts.missing_positions, dtype=np.int64)
    if len(positions) == 0:
        return
    ensure_state_tables(pg)
    if isinstance(keys, FactKeys):
        chosen, used = keys.keys[positions], fact_row_counts(keys.codes, keys.total)[positions]
    else:  # keys staged from warehouse facts: their fact-row counts are in the stage
        chosen, used = keys.keys_and_counts(positions)
    record_placeholders(pg, fk.qualified_table, info, fk.target_key, chosen, used, domain=domain, run_id=run_id)


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


def shared_tables(fk_configs: Sequence[ForeignKeyConfig]) -> dict[str, list[str]]:
    """``{table: []}`` for each reference table targeted by more than one of the FK configurations: the
    ``earlier`` bookkeeping :meth:`GenericBackfillService.process_table` fills for them.

    :param fk_configs: the FK configurations one call processes.
    """
    counts = Counter(fk.qualified_table for fk in fk_configs)
    return {table: [] for table, n in counts.items() if n > 1}


def lock_tables_up_front(pg: psycopg.Connection, fk_configs: Sequence[ForeignKeyConfig]) -> str | None:
    """Inside a caller's open transaction, take every table lock the call will need now, in canonical order.

    Per-table units are savepoints there, and releasing a savepoint does not release its advisory locks: they
    pile up until the caller commits.  Taken one by one in each caller's dependency order, two callers with
    overlapping tables in different orders could deadlock; taken together in one canonical order
    (:func:`~airflow_provider_refdata.warehouse.state.lock_names`), a caller either gets them all or waits
    holding none of them.  Does nothing on an idle connection (each table is its own short transaction there,
    holding one table lock at a time).  Returns the cause when the locks could not be taken (the call goes on
    with per-table locks), else ``None``.

    :param pg: the caller's connection.
    :param fk_configs: the FK configurations the call will write.
    """
    if pg.info.transaction_status != TransactionStatus.INTRANS or not fk_configs:
        return None
    try:
        with pg.transaction():
            lock_names(pg, [fk.qualified_table for fk in fk_configs])
    except Exception as exc:  # e.g. the caller's lock_timeout: degrade, do not abort the caller's transaction
        logger.warning("Could not take the table locks up front: %s", describe_error(exc))
        return f"table locks: {describe_error(exc)}"
    return None


def finish_connection(pg: psycopg.Connection, was_idle: bool) -> None:
    """Leave a connection that was idle when handed over idle again (commit anything left pending by us)."""
    if was_idle and pg.info.transaction_status == TransactionStatus.INTRANS:
        pg.commit()
    elif was_idle and pg.info.transaction_status == TransactionStatus.INERROR:
        pg.rollback()
