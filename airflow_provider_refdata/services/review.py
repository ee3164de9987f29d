"""ReviewService: the data steward's decisions on auto-derived placeholders — approve, reject, remap — audited.

Each call is one transaction on the warehouse that takes the table's advisory lock (the one the sync and the
backfill take, :func:`~airflow_provider_refdata.warehouse.state.lock_name`: a review never races a backfill)
and the rows' locks, and runs a fixed number of set-based statements whatever the number of keys (the keys
are COPYed into a stage; :mod:`~airflow_provider_refdata.warehouse.review`).  Every key acted on gets one
``refdata.review_log`` row (the call's ``review_id``, the actor, the row before and after as jsonb, the remap
target, the review file) and its ``refdata.placeholder`` row is closed (``approved``, ``rejected``,
``remapped``; inserted closed when the key had no provenance yet).

- :meth:`ReviewService.approve`: ``_needs_review=false`` and optionally completed business columns; the row
  stays ``auto_derived`` unless ``authoritative=True`` (a later authoritative sync still overwrites it).
- :meth:`ReviewService.reject`: deletes the placeholder rows, refused while a foreign key of any table or a
  configured fact column (``fact_tables`` of the FK configurations targeting the table) still holds a key.
- :meth:`ReviewService.remap`: rewrites the configured fact columns and the single-column foreign keys
  holding ``from_key`` to ``to_key`` (children first), deletes the placeholder, records the pair in
  ``refdata.key_alias`` and collapses chains.
- :meth:`ReviewService.apply_review_file`: a review file (:mod:`~airflow_provider_refdata.services.review_file`)
  filled in by the steward; every row is validated first and reported with its line (:class:`ReviewRowError`);
  nothing is applied when a row is invalid unless ``partial=True``; ``dry_run=True`` reports what would happen.

Idempotent: an action whose result already holds (an approval with the same values, a reject of a rejected
or absent key, a remap already recorded with the same target) counts as ``unchanged``, writes no audit row and
raises nothing; re-applying a review file is a no-op.  A refused action (unknown key, authoritative key, a key
still referenced) raises :class:`~airflow_provider_refdata.exceptions.RefdataReviewError` naming the keys, and
changes nothing.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from airflow_provider_refdata.config import ForeignKeyConfig, ForeignKeysFileConfig, load_fk_domains
from airflow_provider_refdata.config.paths import FK_CONFIG_FILE, config_path
from airflow_provider_refdata.config.review import resolve_review_config
from airflow_provider_refdata.exceptions import RefdataReviewError
from airflow_provider_refdata.results import ReviewResult
from airflow_provider_refdata.services.backfill import finish_connection
from airflow_provider_refdata.services.review_file import (
    PROVENANCE_COLUMNS,
    STEWARD_COLUMNS,
    TABLE_COLUMN,
    ReviewFile,
    decisions,
    read_review_file,
)
from airflow_provider_refdata.services.review_rows import (
    Outcome,
    ReviewTable,
    check_approval_columns,
    key_text,
    numbered_keys,
    refusal,
    row_errors,
    value_text,
)
from airflow_provider_refdata.warehouse import review as rq
from airflow_provider_refdata.warehouse import review_writes as rw
from airflow_provider_refdata.warehouse.catalog import table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.references import referencing_constraints
from airflow_provider_refdata.warehouse.state import ensure_state_tables, lock_name
from airflow_provider_refdata.warehouse.tracking import (
    AUTHORITATIVE,
    AUTO_DERIVED,
    TRACKING_COLUMN_NAMES,
)


class ReviewService:
    """The steward's actions on the placeholders of reference tables.

    :param conn: the warehouse (psycopg connection, PostgresHook, SQLAlchemy Connection/Engine, DSN).  A
        connection handed in is left open; when it was idle, each action is committed before returning.
    :param foreign_keys: the FK configurations whose ``fact_tables`` hold the tables' keys (those of any domain
        whose qualified target is the table): a ``ForeignKeysFileConfig``, the path of a ``foreign_keys.yml``, a
        list of ``ForeignKeyConfig``, or None: ``$REFDATA_CONFIG_DIR/foreign_keys.yml`` when it exists, else
        none (real foreign-key constraints are always found in the catalog).
    :param review: the review settings (sensitive columns), as
        :func:`~airflow_provider_refdata.config.review.resolve_review_config` takes them.
    """

    def __init__(self, conn: WarehouseLike, *, foreign_keys: Any = None, review: Any = None) -> None:
        self.conn = conn
        self.fk_configs = _fk_configs(foreign_keys)
        self.review = resolve_review_config(review)

    # ----------------------------------------------------------------------------------------------------
    def approve(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        actor: str,
        values: Mapping[str, Any] | None = None,
        authoritative: bool = False,
    ) -> ReviewResult:
        """Approve placeholders: ``_needs_review=false``, ``values`` written to each of them.

        :param table: the schema-qualified reference table (``business.年金计划``).
        :param keys: the keys to approve.
        :param actor: who approves (``review_log.actor``, ``placeholder.resolved_by``).
        :param values: ``{business column: value}`` written to every key (``None`` stores NULL); the key, the
            tracking columns and unknown columns are refused.
        :param authoritative: make the rows ``_source='authoritative'`` (a later authoritative sync still
            overwrites them); otherwise they stay ``auto_derived``.
        :raises RefdataReviewError: a key is not in the table or is authoritative, a column or value is refused.
        """
        values = dict(values or {})
        columns = list(values)
        cells = [value_text(values[c]) for c in columns]
        rows = [(line, key, rq.APPROVE, None, *cells) for line, key in numbered_keys(keys)]
        source = AUTHORITATIVE if authoritative else AUTO_DERIVED
        return self._api("approve", table, rows, actor=actor, columns=columns, source=source)

    def reject(self, table: str, keys: Iterable[Any], *, actor: str) -> ReviewResult:
        """Delete placeholders that nothing references any more.

        :param table: the schema-qualified reference table.
        :param keys: the keys to reject (absent or already rejected ones are ``unchanged``).
        :param actor: who rejects.
        :raises RefdataReviewError: a key is authoritative, or a foreign key or a configured fact column still
            holds it (``referencing_table`` and ``count`` name the first); nothing is deleted.
        """
        rows = [(line, key, rq.REJECT, None) for line, key in numbered_keys(keys)]
        return self._api("reject", table, rows, actor=actor)

    def remap(self, table: str, from_key: Any, to_key: Any, *, actor: str) -> ReviewResult:
        """Replace the placeholder ``from_key`` by the existing key ``to_key`` everywhere it is used.

        :param table: the schema-qualified reference table.
        :param from_key: an auto-derived key of the table (e.g. the typo ``P0O1``).
        :param to_key: an existing key of the table, of any source (e.g. ``P001``).
        :param actor: who remaps.
        :raises RefdataReviewError: ``from_key`` is not an auto-derived key of the table, ``to_key`` is missing
            or the same key, or a multi-column foreign key holds ``from_key``.
        """
        return self._api("remap", table, [(1, key_text(from_key), rq.REMAP, key_text(to_key))], actor=actor)

    def apply_review_file(
        self, path: str | os.PathLike[str], *, actor: str, dry_run: bool = False, partial: bool = False
    ) -> ReviewResult:
        """Apply a review file a steward filled in (see :mod:`~airflow_provider_refdata.services.review_file`).

        Every row is validated first, set-based against the table: unknown action, remap without ``remap_to``
        or to a missing key, key not in the table or authoritative, the same key on several lines, a value
        that does not fit its column, a reject of a key still referenced.  Each problem is a
        :class:`ReviewRowError` with its line.  With any of them nothing is applied unless ``partial`` (then
        the valid rows are).  Rows without an action, and rows already in the asked state, are ``unchanged``.
        An approval writes the business cells that differ from the stored values; provenance (``_…``)
        columns are read-only and ignored, and a sensitive column is never written even if the file has one.

        :param path: the CSV or XLSX review file.
        :param actor: who applies it.
        :param dry_run: validate and count what would happen; change nothing.
        :param partial: apply the valid rows even when some are invalid.
        :returns: the counts (those a real run would have for a dry run; all zero when invalid rows stop the
            file) and the row errors.
        :raises RefdataConfigError: the file cannot be read or lacks a required column.
        :raises RefdataReviewError: the file names no table or several, or a column that is not the table's.
        """
        started = time.perf_counter()
        review_file = read_review_file(path)
        rows = iter(review_file)
        head = list(itertools.islice(rows, 1))
        result = ReviewResult(
            review_id=str(uuid.uuid4()),
            action="apply_review_file",
            actor=actor,
            source_file=review_file.path,
            dry_run=dry_run,
        )
        if not head:
            result.duration_seconds = round(time.perf_counter() - started, 6)
            return result
        table_name = (head[0][1].get(TABLE_COLUMN) or "").strip()
        if not table_name:
            raise RefdataReviewError(
                f"{review_file.path}, line {head[0][0]}: {TABLE_COLUMN} is empty; it must name the table",
                table="",
            )
        result.table = table_name
        with warehouse_connection(self.conn) as pg:
            was_idle = pg.info.transaction_status == TransactionStatus.IDLE
            try:
                with pg.transaction():
                    target = self._open(pg, table_name)
                    columns = self._file_columns(target, review_file)
                    stream = decisions(review_file, itertools.chain(head, rows), table_name, target.key, columns)
                    outcome = self._run(
                        pg, target, stream, columns, result, source=AUTO_DERIVED, dry_run=dry_run, partial=partial
                    )
                    if not result.applied:
                        raise psycopg.Rollback()
            finally:
                finish_connection(pg, was_idle)
        self._fill(result, outcome)
        result.duration_seconds = round(time.perf_counter() - started, 6)
        return result

    def open_placeholders(self, table: str, *, limit: int = 20, domain: str | None = None) -> list[dict[str, Any]]:
        """The most-used open placeholders of ``table`` (auto-derived, in review), most fact rows first.

        Each is ``{"key": text, "columns": {business column: value}, "provenance": {...}}``: the key as text
        (what :meth:`approve`/:meth:`reject`/:meth:`remap` take), the business columns without the sensitive
        ones, and the review file's provenance columns (``_fact_rows_total`` … ``_derived_at``; the
        ``refdata.placeholder`` ones ``None`` for a key without provenance).

        :param table: the schema-qualified reference table.
        :param limit: how many.
        :param domain: only placeholders that this domain derived or uses.
        """
        with warehouse_connection(self.conn) as pg:
            was_idle = pg.info.transaction_status == TransactionStatus.IDLE
            try:
                with pg.transaction():
                    target = self._open(pg, table, lock=False)
                    return self._open_placeholders(pg, target, limit, domain)
            finally:
                finish_connection(pg, was_idle)

    # ----------------------------------------------------------------------------------------------------
    def _api(
        self,
        action: str,
        table: str,
        rows: list[tuple],
        *,
        actor: str,
        columns: Sequence[str] = (),
        source: str = AUTO_DERIVED,
    ) -> ReviewResult:
        """Run one API action; refused rows raise (nothing changed)."""
        started = time.perf_counter()
        result = ReviewResult(review_id=str(uuid.uuid4()), table=table, action=action, actor=actor)
        with warehouse_connection(self.conn) as pg:
            was_idle = pg.info.transaction_status == TransactionStatus.IDLE
            try:
                with pg.transaction():
                    target = self._open(pg, table)
                    check_approval_columns(target, columns)
                    outcome = self._run(pg, target, rows, list(columns), result, source=source, partial=False)
                    if outcome.errors:
                        raise refusal(action, table, outcome)
            finally:
                finish_connection(pg, was_idle)
        self._fill(result, outcome)
        result.duration_seconds = round(time.perf_counter() - started, 6)
        return result

    def _open(self, pg: psycopg.Connection, table: str, *, lock: bool = True) -> ReviewTable:
        """Lock the table (advisory, as sync and backfill) and read its shape; refuse a table without placeholders."""
        schema, dot, name = table.partition(".")
        if not dot or not schema or not name:
            raise RefdataReviewError(f"{table!r} is not a schema-qualified table (schema.table)", table=table)
        ensure_state_tables(pg)
        if lock:
            lock_name(pg, table)
        info = table_info(pg, schema, name)
        if info is None:
            raise RefdataReviewError(f"reference table {table} does not exist", table=table)
        if len(info.primary_key) != 1:
            raise RefdataReviewError(
                f"reference table {table} needs a single-column primary key to be reviewed "
                f"(it has {', '.join(info.primary_key) or 'none'})",
                table=table,
            )
        missing = sorted(TRACKING_COLUMN_NAMES - set(info.columns))
        if missing:
            raise RefdataReviewError(
                f"reference table {table} has no tracking columns ({', '.join(missing)}): it has no placeholders",
                table=table,
            )
        return ReviewTable(name=table, info=info, key=info.primary_key[0])

    def _file_columns(self, target: ReviewTable, review_file: ReviewFile) -> list[str]:
        """The review file's business columns that approvals may write (not sensitive, not read-only)."""
        if review_file.key_column != target.key:
            raise RefdataReviewError(
                f"{review_file.path}: the file's key column {review_file.key_column!r} is not the key "
                f"{target.key!r} of {target.name}",
                table=target.name,
            )
        named = [
            c
            for c in review_file.header
            if c not in STEWARD_COLUMNS and c != target.key and not c.startswith("_") and c != TABLE_COLUMN
        ]
        unknown = [c for c in named if c not in target.info.columns]
        if unknown:
            raise RefdataReviewError(
                f"{review_file.path}: column(s) {', '.join(repr(c) for c in unknown)} are not columns of "
                f"{target.name} (its business columns: {', '.join(target.business_columns)})",
                table=target.name,
            )
        sensitive = set(self.review.sensitive(target.name))
        return [c for c in named if c not in sensitive]

    def _holders(self, pg: psycopg.Connection, target: ReviewTable) -> list[rq.KeyHolder]:
        """Every column holding the table's key: foreign-key constraints of any table, configured fact columns."""
        holders: dict[tuple, rq.KeyHolder] = {}
        for c in referencing_constraints(pg, target.info):
            rewritable = len(c.columns) == 1 and c.referenced == (target.key,)
            child = table_info(pg, c.schema, c.table) if rewritable else None
            holders[(c.schema, c.table, c.columns)] = rq.KeyHolder(
                c.schema,
                c.table,
                c.columns,
                c.referenced,
                child.columns[c.columns[0]] if child else None,
                f"foreign key constraint {c.name}",
                rewritable,
            )
        for fk in self.fk_configs:
            if fk.qualified_table != target.name:
                continue
            for schema, table, column in fk.fact_columns:
                if (schema, table, (column,)) in holders:
                    continue
                fact = table_info(pg, schema, table)
                if fact is None or column not in fact.columns:
                    raise RefdataReviewError(
                        f"{target.name}: fact_tables entry {schema}.{table}.{column} of foreign key {fk.name!r} "
                        f"does not exist ({'no table' if fact is None else 'no such column'}); fix the "
                        "configuration, a reject or remap must see every column holding the key",
                        table=target.name,
                        referencing_table=f"{schema}.{table}.{column}",
                    )
                holders[(schema, table, (column,))] = rq.KeyHolder(
                    schema, table, (column,), (target.key,), fact.columns[column], f"fact_tables of {fk.name}", True
                )
        return list(holders.values())

    def _run(
        self,
        pg: psycopg.Connection,
        target: ReviewTable,
        rows: Iterable[Sequence[Any]],
        columns: list[str],
        result: ReviewResult,
        *,
        source: str,
        dry_run: bool = False,
        partial: bool = True,
    ) -> Outcome:
        """Stage, validate and (unless a dry run or stopped by invalid rows) apply the decisions."""
        info, key, name = target.info, target.key, target.name
        outcome = Outcome()
        rq.create_review_stage(pg, columns)
        rq.copy_review_rows(pg, columns, rows)
        rq.analyze_stage(pg)
        holders: list[rq.KeyHolder] = []
        asked = rq.status_counts(pg, rq.ACTION)
        if asked.get(rq.REJECT) or asked.get(rq.REMAP):
            # The tables holding the key are locked before the rows: a backfill writing one of them (its FK
            # checks wait on our row locks) can then only wait for this review, never deadlock with it.
            holders = self._holders(pg, target)
            rq.lock_tables(pg, {(h.schema, h.table) for h in holders})
        rq.lock_review_rows(pg, info, key)
        rq.classify(pg, name, info, key, authoritative=source == AUTHORITATIVE)
        rq.clear_values(pg, columns)
        problems = rq.value_problems(pg, info, columns) if columns else []
        rq.mark(pg, sorted({p.line for p in problems}), "err_value")
        rq.clear_values(pg, columns)
        rq.mark_unchanged_approvals(pg, info, key, columns, source)
        if source == AUTHORITATIVE:
            rq.refuse_authoritative_changes(pg, info, key)
        rq.analyze_stage(pg)  # statistics of the statuses now set: the writes join by the real counts
        referenced: dict[int, list[str]] = {}
        for holder in holders:
            statuses = [rq.REJECT] if holder.rewritable else [rq.REJECT, rq.REMAP]
            for line, k, n in rq.holder_counts(pg, info, key, holder, statuses):
                why = "" if holder.rewritable else ", a multi-column foreign key a remap cannot rewrite"
                referenced.setdefault(line, []).append(f"{n} row(s) of {holder.name} ({holder.origin}{why})")
                outcome.referenced.append((k, holder.name, n))
        rq.mark(pg, sorted(referenced), "err_referenced")
        outcome.errors = row_errors(rq.error_rows(pg, name), problems, referenced, name)
        outcome.counts = rq.status_counts(pg)
        if outcome.errors and not partial:
            outcome.counts = {}
            return outcome
        try:
            self._write(pg, target, holders, columns, outcome, result, source=source, dry_run=dry_run)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            # A constraint or type the checks cannot see (a CHECK, a UNIQUE business column, a fact column too
            # short for a remap target): the whole action is rolled back with PostgreSQL's words.
            where = ".".join(filter(None, (exc.diag.schema_name, exc.diag.table_name, exc.diag.column_name)))
            raise RefdataReviewError(
                f"{name}: the review could not be written, nothing changed: {exc.diag.message_primary}"
                + (f" ({where})" if where else "")
                + (f"; {exc.diag.message_detail}" if exc.diag.message_detail else ""),
                table=name,
                referencing_table=where or None,
            ) from exc
        return outcome

    @staticmethod
    def _write(
        pg: psycopg.Connection,
        target: ReviewTable,
        holders: list[rq.KeyHolder],
        columns: list[str],
        outcome: Outcome,
        result: ReviewResult,
        *,
        source: str,
        dry_run: bool,
    ) -> None:
        """The remaps' rewrites (counted in a dry run; children before their parents are deleted), then the
        approvals, rejects, remaps and aliases; ``result.applied`` when written."""
        info, key, name, counts = target.info, target.key, target.name, outcome.counts
        for holder in holders:
            if holder.rewritable and counts.get(rq.REMAP):
                n = (
                    sum(c for _, _, c in rq.holder_counts(pg, info, key, holder, [rq.REMAP]))
                    if dry_run
                    else rw.rewrite_holder(pg, holder)
                )
                if n:
                    outcome.fact_rows[holder.name] = outcome.fact_rows.get(holder.name, 0) + n
        if dry_run:
            return
        audit = {"review_id": result.review_id, "actor": result.actor, "source_file": result.source_file}
        if counts.get(rq.APPROVE):
            counts[rq.APPROVE] = rw.apply_approvals(pg, name, info, key, columns, source=source, **audit)
        for action in (rq.REJECT, rq.REMAP):
            if counts.get(action):
                counts[action] = rw.delete_resolved(pg, name, info, key, action, **audit)
        if counts.get(rq.REMAP):
            rw.record_aliases(pg, name, review_id=result.review_id, actor=result.actor)
        result.applied = True

    @staticmethod
    def _fill(result: ReviewResult, outcome: Outcome) -> None:
        counts = outcome.counts
        result.approved = counts.get(rq.APPROVE, 0)
        result.rejected = counts.get(rq.REJECT, 0)
        result.remapped = counts.get(rq.REMAP, 0)
        result.unchanged = counts.get(rq.UNCHANGED, 0) + counts.get(rq.NO_ACTION, 0)
        result.fact_rows_rewritten = dict(sorted(outcome.fact_rows.items())) if counts else {}
        result.errors = outcome.errors

    def _open_placeholders(
        self, pg: psycopg.Connection, target: ReviewTable, limit: int, domain: str | None
    ) -> list[dict[str, Any]]:
        sensitive = set(self.review.sensitive(target.name))
        columns = [c for c in target.business_columns if c not in sensitive]
        out = []
        for row in rq.open_placeholder_rows(pg, target.name, target.info, target.key, columns, limit, domain):
            values = row[1 : 1 + len(columns)]
            out.append(
                {
                    "key": row[0],
                    "columns": dict(zip(columns, values, strict=True)),
                    "provenance": dict(zip(PROVENANCE_COLUMNS, row[1 + len(columns) :], strict=True)),
                }
            )
        return out


def apply_review_file(
    conn: WarehouseLike,
    path: str | os.PathLike[str],
    *,
    actor: str,
    dry_run: bool = False,
    partial: bool = False,
    foreign_keys: Any = None,
    review: Any = None,
) -> ReviewResult:
    """Apply a filled-in review file: :meth:`ReviewService.apply_review_file` of a service for ``conn``.

    :param conn: the warehouse.
    :param path: the CSV or XLSX review file.
    :param actor: who applies it.
    :param dry_run: validate and count what would happen; change nothing.
    :param partial: apply the valid rows even when some are invalid.
    :param foreign_keys: the FK configurations with the ``fact_tables`` (see :class:`ReviewService`).
    :param review: the review settings (sensitive columns; see :class:`ReviewService`).
    """
    service = ReviewService(conn, foreign_keys=foreign_keys, review=review)
    return service.apply_review_file(path, actor=actor, dry_run=dry_run, partial=partial)


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _fk_configs(foreign_keys: Any) -> list[ForeignKeyConfig]:
    """The FK configurations (all domains) that ``foreign_keys`` stands for (see :class:`ReviewService`)."""
    if foreign_keys is None:
        path = config_path(FK_CONFIG_FILE)
        if not path.is_file():
            return []
        foreign_keys = path
    if isinstance(foreign_keys, ForeignKeysFileConfig):
        return [fk for domain in foreign_keys.domains.values() for fk in domain.foreign_keys]
    if isinstance(foreign_keys, str | os.PathLike):
        return [fk for fks in load_fk_domains(foreign_keys).values() for fk in fks]
    configs = list(foreign_keys)
    if not all(isinstance(fk, ForeignKeyConfig) for fk in configs):
        raise TypeError(
            "foreign_keys must be a ForeignKeysFileConfig, the path of a foreign_keys.yml, a list of "
            f"ForeignKeyConfig or None, got {type(foreign_keys).__name__}"
        )
    return configs
