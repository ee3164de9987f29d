"""Step 3 of a table sync: merge the stage into the target, with the checks and diagnoses around the merge.

An empty target gets one ``INSERT … SELECT``; otherwise :func:`~..warehouse.merge.upsert_changed` writes new
and changed rows and promotes auto-derived ones.  A stage much smaller than the target is checked for
duplicated keys first and probed by key; a big one is hash-joined and its duplicates are told by the merge's
own counts.  Every database error of the merge is turned into one naming the table, key and column.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataSyncError
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.services import sync_checks
from airflow_provider_refdata.warehouse import merge, placeholders
from airflow_provider_refdata.warehouse.catalog import TableInfo

STAGE_NAME = sync_checks.STAGE_NAME
#: A stage with fewer than 1/SMALL_STAGE_RATIO of the target's rows is merged by key probes.
SMALL_STAGE_RATIO = 20
#: A stage of at least this many rows is analyzed before the joins that follow the merge.
ANALYZE_MIN_ROWS = 50_000


def merge_stage(
    pg: psycopg.Connection,
    cfg: Any,
    info: TableInfo,
    columns: list[str],
    key: list[str],
    result: SyncResult,
    *,
    check_blank_keys: bool = False,
) -> None:
    """Merge the stage into the target table and set ``result``'s write counts (``rows_unchanged`` too).

    :param pg: the warehouse connection, inside the table's transaction.
    :param cfg: the table's ``SyncTableConfig``.
    :param info: the target table.
    :param columns: the staged columns.
    :param key: the primary-key columns.
    :param result: the table's result (``rows_read`` set); its counts are filled in.
    :param check_blank_keys: check the stage for blank keys first (a nullable key column takes NULL silently).
    :raises RefdataSyncError: a duplicated, blank or over-long key or value, or a row a foreign key still
        needs, naming the table, key and column.
    """
    if check_blank_keys:
        sync_checks.check_blank_keys(pg, info, key)
    try:
        with pg.transaction():  # savepoint: lets us diagnose a failed statement against the stage
            if merge.table_is_empty(pg, info.schema, info.table):
                # Nothing to compare with: one plain INSERT.  A duplicate key surfaces as UniqueViolation
                # (diagnosed below), which spares the empty-target load the separate duplicate check.
                result.rows_inserted = merge.insert_all(pg, info, STAGE_NAME, columns)
            else:
                small = result.rows_read * SMALL_STAGE_RATIO < merge.estimated_rows(pg, info.schema, info.table)
                if small:
                    # A few staged rows: checked for duplicated keys first (one GROUP BY of the small stage).
                    # No ANALYZE for the merge: the probes' plan is fixed (0.15-0.28 s for 100K rows, for
                    # nothing).
                    sync_checks.check_duplicates(pg, info, key)
                counts = merge.upsert_changed(pg, info, STAGE_NAME, columns, key, probe_by_key=small)
                if not small and not counts.keys_unique(result.rows_read):
                    # The merge's own counts say a key was staged twice (or another session inserted a
                    # new key meanwhile): the stage itself decides, and names the keys.
                    sync_checks.check_duplicates(pg, info, key)
                result.rows_inserted, result.rows_updated = counts.inserted, counts.updated
                result.rows_promoted = promoted = counts.promoted
                # The merge needs no stage statistics (a FULL JOIN is a hash or merge join; measured: the
                # same plan and time without them), but the joins below can turn into nested loops over a
                # big stage without them (the delete guard's anti-join of 1M rows did not finish in 50
                # minutes), so a big stage is analyzed before those, and only then.
                if result.rows_read >= ANALYZE_MIN_ROWS and (
                    (promoted and len(key) == 1) or cfg.sync_mode == "delete_insert"
                ):
                    pg.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(STAGE_NAME)))
                if promoted and len(key) == 1:
                    # Same transaction: the promoted keys' open placeholders close with the merge.
                    placeholders.close_promoted(pg, cfg.qualified_table, info, STAGE_NAME, key[0])
                if cfg.sync_mode == "delete_insert":
                    sync_checks.delete_absent(pg, cfg, info, key, result)
    except (psycopg.errors.UniqueViolation, psycopg.errors.CardinalityViolation):
        # CardinalityViolation: two staged rows with the same new key reached the INSERT … ON CONFLICT.
        sync_checks.check_duplicates(pg, info, key)
        raise
    except psycopg.errors.NotNullViolation as exc:
        sync_checks.check_blank_keys(pg, info, key)
        sync_checks.explain_null_in_not_null_column(pg, cfg, info, columns, key, exc)
        raise
    except psycopg.errors.StringDataRightTruncation as exc:
        bad = merge.find_overlong_value(pg, STAGE_NAME, info, columns, key)
        if bad is None:
            raise
        raise RefdataSyncError(
            f"{cfg.qualified_table}: value of column {bad.column!r} for key "
            f"{sync_checks.key_text(key, bad.key)} has "
            f"{bad.length} characters, the column allows {bad.max_length}; nothing was changed",
            table=cfg.qualified_table,
            key=bad.key,
            column=bad.column,
        ) from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise RefdataSyncError(
            f"{cfg.qualified_table}: {exc.diag.message_primary}"
            + (f" ({exc.diag.message_detail})" if exc.diag.message_detail else "")
            + "; a row still referenced by a foreign key cannot be deleted, nothing was changed",
            table=cfg.qualified_table,
        ) from exc
    result.rows_unchanged = result.rows_read - result.rows_inserted - result.rows_updated
