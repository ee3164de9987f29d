"""Checks and diagnoses of one table's sync, run inside its transaction against the stage.

Each names what a person must fix — the table, the key(s), the column, the constraint — and raises
:class:`~airflow_provider_refdata.exceptions.RefdataSyncError`, which rolls the whole table back.  Also the
``delete_insert`` delete guard and the creation of a missing target (``create_table``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataSyncError
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.warehouse import merge, references
from airflow_provider_refdata.warehouse.catalog import TableInfo, table_info
from airflow_provider_refdata.warehouse.sqlbits import ident_list

logger = logging.getLogger("airflow_provider_refdata.services.sync")

#: The temporary stage of a table's sync (dropped at commit).
STAGE_NAME = "_refdata_sync_stage"


def delete_absent(pg: psycopg.Connection, cfg: Any, info: TableInfo, key: list[str], result: SyncResult) -> None:
    """``delete_insert``: delete the authoritative rows the source lacks, never one a foreign key still needs."""
    if not references.absent_rows_exist(pg, info, STAGE_NAME, key):
        return
    constraints = references.referencing_constraints(pg, info)
    references.hold_referencing_tables(pg, info, constraints)
    confirmed = references.recently_confirmed(
        pg, cfg.qualified_table, key, float(getattr(cfg, "protect_confirmed_hours", 0))
    )
    if getattr(cfg, "still_referenced", "keep_for_review") == "fail":
        if confirmed is not None:
            count, keys = references.confirmed_keys(pg, info, STAGE_NAME, key, confirmed)
            if count:
                raise RefdataSyncError(
                    f"{cfg.qualified_table}: {count} row(s) the source no longer has were used by the facts of an "
                    f"ensure_references within protect_confirmed_hours ({cfg.protect_confirmed_hours:g}), whose "
                    f"facts may not be loaded yet, e.g. key {', '.join(key_text(key, k) for k in keys)}; "
                    "still_referenced is 'fail', nothing was changed",
                    table=cfg.qualified_table,
                    key=keys[0],
                )
        for constraint in constraints:
            count, keys = references.still_referenced_keys(pg, info, STAGE_NAME, key, constraint)
            if count:
                raise RefdataSyncError(
                    f"{cfg.qualified_table}: {count} row(s) the source no longer has are still referenced by "
                    f"{constraint.qualified_table} (constraint {constraint.name}, ON DELETE {constraint.on_delete}), "
                    f"e.g. key {', '.join(key_text(key, k) for k in keys)}; still_referenced is 'fail', "
                    "nothing was changed",
                    table=cfg.qualified_table,
                    key=keys[0],
                )
    else:
        result.rows_kept_referenced = references.keep_referenced_for_review(
            pg, info, STAGE_NAME, key, constraints, confirmed
        )
        if result.rows_kept_referenced:
            logger.warning(
                "Sync %s: %s row(s) the source no longer has are still referenced (%s) or used by recently "
                "checked facts; kept as auto-derived rows to review instead of deleting them",
                cfg.qualified_table,
                result.rows_kept_referenced,
                ", ".join(f"{c.qualified_table} ON DELETE {c.on_delete}" for c in constraints),
            )
    result.rows_deleted = references.delete_absent_unreferenced(pg, info, STAGE_NAME, key, constraints, confirmed)


def check_duplicates(pg: psycopg.Connection, info: TableInfo, key: Sequence[str]) -> None:
    """Fail the table, naming the keys, when the stage holds a key more than once (set-based, one query)."""
    duplicates = merge.find_duplicate_keys(pg, STAGE_NAME, key)
    if duplicates:
        table = f"{info.schema}.{info.table}"
        shown = "; ".join(f"{key_text(key, k)} ({n} rows)" for k, n in duplicates)
        raise RefdataSyncError(
            f"the source has duplicate keys for {table}: {shown}; nothing was changed",
            table=table,
            key=duplicates[0][0],
            column=", ".join(key),
        )


def check_blank_keys(pg: psycopg.Connection, info: TableInfo, key: Sequence[str]) -> None:
    """Fail the table, naming it and the key column(s), when staged rows have a NULL or empty key."""
    blank = merge.count_blank_keys(pg, STAGE_NAME, key)
    if blank:
        table = f"{info.schema}.{info.table}"
        raise RefdataSyncError(
            f"{table}: the source has {blank} row(s) with a blank key ({', '.join(map(repr, key))} NULL, empty "
            "or only whitespace); keys must not be blank, nothing was changed",
            table=table,
            column=", ".join(key),
        )


def key_text(key: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(key, values, strict=False))


def create_missing_table(pg: psycopg.Connection, cfg: Any, source: Any, result: SyncResult) -> TableInfo:
    """Create the missing target table from the source's columns (``create_table: true``), or refuse.

    Runs in the table's transaction under its advisory lock (taken by ``_run``): a failed sync leaves no table
    behind, ``plan_only`` rolls it back with everything else, and a concurrent sync of the same table waits and
    then finds the table.  ``result.ddl`` gets the DDL run (also in plan mode).  Without ``create_table`` or
    with a source that cannot describe its columns (``DescribableSource``; YAML files carry no types), this is
    the "does not exist" failure, saying when ``create_table: true`` would help.
    """
    from airflow_provider_refdata.services.sources import DescribableSource
    from airflow_provider_refdata.warehouse.ddl import create_reference_table

    name = result.table
    describable = isinstance(source, DescribableSource)
    if not getattr(cfg, "create_table", False):
        hint = "; set create_table: true to create it from the source's columns" if describable else ""
        raise RefdataSyncError(f"target table {name} does not exist{hint}", table=name)
    if not describable:
        why = (
            "a YAML reference file declares no column types"
            if cfg.source_type == "config_file"
            else f"its {cfg.source_type} source cannot describe its columns"
        )
        raise RefdataSyncError(
            f"target table {name} does not exist and create_table cannot create it: {why}; create the table yourself",
            table=name,
        )
    columns = source.describe_columns(cfg)
    result.ddl = create_reference_table(pg, cfg.target_schema, cfg.target_table, columns, list(cfg.primary_key))
    logger.info(
        "Sync %s: target table does not exist, %s it (create_table: true):\n%s",
        name,
        "plan_only: would create" if result.plan_only else "creating",
        result.ddl,
    )
    info = table_info(pg, cfg.target_schema, cfg.target_table)
    if info is None:  # pragma: no cover - the CREATE TABLE above succeeded in this transaction
        raise RefdataSyncError(f"target table {name} was created but cannot be read back", table=name)
    return info


def explain_null_in_not_null_column(
    pg: psycopg.Connection,
    cfg: Any,
    info: TableInfo,
    columns: Sequence[str],
    key: Sequence[str],
    exc: psycopg.errors.NotNullViolation,
) -> None:
    """Fail the table naming the NOT NULL column, the rows' count and first keys when staged values are NULL.

    A MySQL zero date (``0000-00-00``, a zero month or day) arrives as NULL (it is no date), so into a ``NOT
    NULL`` date/timestamp column the message says so.  Returns when the stage has no such row.
    """
    column = exc.diag.column_name
    if column is None or column not in columns or column not in info.columns:
        return
    rows = pg.execute(
        sql.SQL("SELECT {}, count(*) OVER () FROM {} WHERE {} IS NULL ORDER BY 1 LIMIT 3").format(
            ident_list(key), sql.Identifier(STAGE_NAME), sql.Identifier(column)
        )
    ).fetchall()
    if not rows:
        return
    table = cfg.qualified_table
    keys = [row[: len(key)] for row in rows]
    why = "the source value is NULL"
    if cfg.source_type == "legacy_mysql" and info.columns[column].data_type.startswith(("date", "timestamp")):
        why = (
            "the MySQL zero date 0000-00-00 (or a date with a zero month or day) became NULL, as every MySQL zero "
            "date does, or the MySQL value is NULL"
        )
    raise RefdataSyncError(
        f"{table}: column {column!r} is NOT NULL, but {rows[0][-1]} source row(s) have no value for it, e.g. key "
        f"{'; '.join(key_text(key, k) for k in keys)}: {why}; make the column nullable or fix the source rows, "
        "nothing was changed",
        table=table,
        key=keys[0],
        column=column,
    ) from exc
