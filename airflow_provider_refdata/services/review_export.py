"""Export a reference table's open placeholders as a review file (CSV or XLSX) for the data steward.

``export_review(conn, "business.年金计划", "review.xlsx", format="xlsx")`` writes one row per open placeholder
of the table, most-used first, in the layout :mod:`~airflow_provider_refdata.services.review_file` documents
(``action``, ``remap_to``, the key, the business columns, the ``_…`` provenance, ``_table``); the steward fills
in ``action`` and the file goes back through ``apply_review_file``.

* **Rows**: the table's rows with ``_source = 'auto_derived' AND _needs_review``, with their open provenance row
  of ``refdata.placeholder`` when there is one (rows derived before provenance was recorded still export, with
  empty provenance), ordered by ``fact_rows_total`` (descending, unknown last), then key.  Filters: ``domain``
  (in the placeholder's ``domains`` or the row's ``_derived_from_domain``) and ``since`` (first seen, or
  derived, at or after it).
* **Columns**: a single-column primary key is required; the columns configured as sensitive
  (``review.sensitive_columns`` of ``reference_sync.yml``) are never selected, so neither their name nor
  their values can reach the file.  Values are exported as the database renders them as text (``DateStyle``
  ISO), NULL as an empty cell; timestamps as ``YYYY-MM-DD HH:MM:SS+08``; ``_domains`` comma-joined.
* **CSV**: UTF-8 with a byte-order mark (Excel then reads the Chinese text correctly); the server renders the
  file with one ``COPY (SELECT …) TO STDOUT (FORMAT csv, HEADER)`` whose chunks go straight to disk
  (constant memory, whatever the table's size).  Excel still reads a code such as ``001`` in a CSV as the
  number 1: prefer XLSX for files a person opens in Excel.
* **XLSX**: :mod:`~airflow_provider_refdata.services.review_xlsx` writes it without a spreadsheet library: the
  server renders each row as SpreadsheetML in one ``COPY (SELECT …) TO STDOUT`` whose chunks are deflated
  straight into the sheet's zip entry (constant memory, no per-cell work in Python).  Every key and text is a
  text cell (``001`` stays ``001``, ``=…`` is never a formula), the fact-row counts are numbers; a bold,
  frozen header and a drop-down list on ``action``.  A value XML or an Excel cell cannot hold (a control
  character, a text over 32,767 characters) is refused naming its key and column, pointing at CSV.  A sheet
  holds 1,048,575 rows below its header: more is refused, pointing at CSV.
* The file is written next to ``path`` under a temporary name and renamed at the end, so a failed export never
  leaves a half-written file behind; the folder is created when missing.

Before reading, the export takes the table's advisory lock (the one the sync and the backfill take) in a
short transaction of its own: it waits for a sync or backfill of the table that is writing, so their rows
are in the file, and releases the lock at once, so a long export never holds them up (the export itself is
one statement: a consistent snapshot).  Inside a caller's open transaction the lock lasts until that
transaction ends.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg import sql

from airflow_provider_refdata.config.review import ReviewConfig, resolve_review_config
from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataReviewError
from airflow_provider_refdata.results import ReviewExportResult
from airflow_provider_refdata.services.health import resolve_tables
from airflow_provider_refdata.services.review_file import (
    ACTION,
    ACTIONS,
    CSV_ENCODING,
    FORMATS,
    PROVENANCE_COLUMNS,
    STEWARD_COLUMNS,
    TABLE_COLUMN,
)
from airflow_provider_refdata.services.review_xlsx import Sheet, write_sheet
from airflow_provider_refdata.warehouse.catalog import TableInfo, table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.placeholders import PLACEHOLDER_TABLE
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.state import ensure_state_tables, lock_name
from airflow_provider_refdata.warehouse.tracking import (
    AUTO_DERIVED,
    DERIVED_AT,
    DERIVED_FROM_DOMAIN,
    NEEDS_REVIEW,
    SOURCE,
    TRACKING_COLUMN_NAMES,
)

logger = logging.getLogger("airflow_provider_refdata.services.review_export")

#: Rows below the header that one Excel worksheet holds.
XLSX_MAX_ROWS = 1_048_575
#: ``to_char`` format of the provenance timestamps: ISO date and time, offset of the session's time zone.
TIMESTAMP_FORMAT = "YYYY-MM-DD HH24:MI:SSOF"
_SENSITIVE_KEY_PATH = "review.sensitive_columns"

_P, _T = "p", "t"  # aliases of refdata.placeholder and of the reference table in the export's query
_TS = sql.SQL("to_char({}, %(ts)s)")
#: The SQL of each provenance column, by its name in the file (the order is :data:`PROVENANCE_COLUMNS`').
_PROVENANCE_SQL: dict[str, sql.Composable] = {
    "_fact_rows_total": sql.Identifier(_P, "fact_rows_total"),
    "_fact_rows_last": sql.Identifier(_P, "fact_rows_last"),
    "_first_seen_at": _TS.format(sql.Identifier(_P, "first_seen_at")),
    "_last_seen_at": _TS.format(sql.Identifier(_P, "last_seen_at")),
    "_domains": sql.SQL("array_to_string({}, ',')").format(sql.Identifier(_P, "domains")),
    "_derived_from_domain": sql.SQL("{}::text").format(sql.Identifier(_T, DERIVED_FROM_DOMAIN)),
    "_derived_at": _TS.format(sql.Identifier(_T, DERIVED_AT)),
}
if tuple(_PROVENANCE_SQL) != PROVENANCE_COLUMNS:  # pragma: no cover - guards a change of review_file's layout
    raise RuntimeError("review_export's provenance columns are out of step with review_file.PROVENANCE_COLUMNS")
#: Columns of the file that are not the table's own: a business column may not be called like one of them.
_FILE_COLUMNS = frozenset((*STEWARD_COLUMNS, *PROVENANCE_COLUMNS, TABLE_COLUMN))
#: The provenance columns an XLSX holds as numbers (the others, like every column of the table, as text).
_NUMBER_COLUMNS = frozenset(("_fact_rows_total", "_fact_rows_last"))


@dataclass(frozen=True)
class _Export:
    """What one export selects: the file's columns, the SQL of each, and the query (with its parameters).

    ``select`` is the whole query (one column per file column, in order); ``values``, ``source`` and ``order``
    are its parts, for the XLSX writer, which renders each row itself.
    """

    table: str
    key: str
    columns: list[str]
    excluded: list[str]
    values: list[sql.Composable]
    source: sql.Composed
    order: list[tuple[sql.Composable, str]]
    select: sql.Composed
    count: sql.Composed
    params: dict[str, Any]


def export_review(
    conn: WarehouseLike,
    table: str,
    path: str | os.PathLike[str],
    *,
    format: str = "csv",
    domain: str | None = None,
    since: datetime | date | timedelta | None = None,
    review: ReviewConfig | Any = None,
) -> ReviewExportResult:
    """Write the open placeholders of ``table`` to a review file at ``path`` (see the module docstring).

    :param conn: the warehouse (psycopg connection, ``PostgresHook``, SQLAlchemy connection/engine, DSN).
    :param table: the schema-qualified reference table, e.g. ``business.年金计划``.
    :param path: the file to write (replaced when it exists; its folder is created when missing).
    :param format: ``csv`` or ``xlsx``; a ``path`` ending in the other format's suffix is refused.
    :param domain: only placeholders this domain's facts used (``refdata.placeholder.domains``) or derived
        (``_derived_from_domain``).
    :param since: only placeholders first seen (``first_seen_at``; ``_derived_at`` without provenance) at or
        after this time; a ``timedelta``: that long before now.
    :param review: the review settings (sensitive columns): a ``ReviewConfig``, a ``ReferenceSyncConfig``, the
        path of a ``reference_sync.yml``, or None for ``$REFDATA_CONFIG_DIR/reference_sync.yml`` when it exists.
    :raises RefdataReviewError: the table is missing, lacks the tracking columns or a single-column primary key,
        or an XLSX would exceed a sheet (or a cell) of Excel.
    :raises RefdataConfigError: a sensitive column is the key or is not a column of the table.
    """
    started = time.perf_counter()
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    target = Path(path)
    other = [f for f in FORMATS if f != format and target.suffix.lower() == f".{f}"]
    if other:
        raise ValueError(f"{str(target)!r} ends in .{other[0]} but format is {format!r}")
    ((schema, name),) = resolve_tables(table)
    settings = resolve_review_config(review)
    qualified = f"{schema}.{name}"
    with warehouse_connection(conn) as pg:
        with pg.transaction():
            ensure_state_tables(pg)
            # Wait for a sync or backfill of this table that is writing now (its rows belong in the file); the
            # lock ends with this short transaction, so the export never holds up the next one.
            lock_name(pg, qualified)
        with pg.transaction():
            # Dates and timestamps of the business columns as ISO text, whatever the server's default.
            pg.execute("SELECT set_config('DateStyle', 'ISO, YMD', true)")
            export = _plan(pg, schema, name, settings, domain, since)
            if format == "csv":
                rows = _write_atomically(target, lambda fh: _write_csv(pg, export, fh))
            else:
                rows = _write_atomically(target, lambda fh: _write_xlsx(pg, export, fh))
    result = ReviewExportResult(
        table=qualified,
        path=str(target.absolute()),
        format=format,
        rows=rows,
        columns=export.columns,
        excluded_columns=export.excluded,
        duration_seconds=round(time.perf_counter() - started, 3),
    )
    logger.info(
        "exported %d open placeholder(s) of %s to %s (%s%s) in %.2f s",
        rows,
        qualified,
        result.path,
        format,
        f", without sensitive {', '.join(export.excluded)}" if export.excluded else "",
        result.duration_seconds,
    )
    return result


# --------------------------------------------------------------------------------------------------------
# What to select
# --------------------------------------------------------------------------------------------------------


def _plan(
    pg: psycopg.Connection,
    schema: str,
    name: str,
    settings: ReviewConfig,
    domain: str | None,
    since: datetime | date | timedelta | None,
) -> _Export:
    """Check the table and the sensitive columns; build the export's query."""
    qualified = f"{schema}.{name}"
    info = table_info(pg, schema, name)
    if info is None:
        raise RefdataReviewError(f"reference table {qualified} does not exist", table=qualified)
    missing = sorted(TRACKING_COLUMN_NAMES - set(info.columns))
    if missing:
        raise RefdataReviewError(
            f"{qualified} has no tracking column(s) {', '.join(missing)}: it is not a reference table the provider "
            "manages, so it has no placeholders to review",
            table=qualified,
        )
    if len(info.primary_key) != 1:
        shape = f"a composite primary key ({', '.join(info.primary_key)})" if info.primary_key else "no primary key"
        raise RefdataReviewError(
            f"{qualified} has {shape}; a review file identifies each row by a single key column", table=qualified
        )
    key = info.primary_key[0]
    excluded = _sensitive_columns(info, qualified, settings)
    business = [c for c in info.columns if c != key and c not in TRACKING_COLUMN_NAMES and c not in excluded]
    clash = [c for c in (key, *business) if c in _FILE_COLUMNS]
    if clash:
        raise RefdataReviewError(
            f"{qualified} has a column called {clash[0]!r}, a name the review file uses for its own column "
            f"({', '.join(sorted(_FILE_COLUMNS))}); it cannot be exported for review",
            table=qualified,
        )

    key_ref = sql.Identifier(_T, key)
    columns = [*STEWARD_COLUMNS, key, *business, *PROVENANCE_COLUMNS, TABLE_COLUMN]
    values: list[sql.Composable] = [sql.SQL("NULL::text") for _ in STEWARD_COLUMNS]
    values += [sql.SQL("{}::text").format(sql.Identifier(_T, c)) for c in (key, *business)]
    values += _PROVENANCE_SQL.values()
    values.append(sql.SQL("%(table)s::text"))
    items = [sql.SQL("{} AS {}").format(v, sql.Identifier(c)) for c, v in zip(columns, values, strict=True)]

    where = [
        sql.SQL("{} = %(auto)s").format(sql.Identifier(_T, SOURCE)),
        sql.Identifier(_T, NEEDS_REVIEW),
    ]
    params: dict[str, Any] = {"table": qualified, "auto": AUTO_DERIVED, "ts": TIMESTAMP_FORMAT}
    if domain is not None:
        params["domain"] = domain
        where.append(
            sql.SQL("(%(domain)s = ANY({}) OR {} = %(domain)s)").format(
                sql.Identifier(_P, "domains"), sql.Identifier(_T, DERIVED_FROM_DOMAIN)
            )
        )
    if since is not None:
        params["since"] = since
        first_seen = sql.SQL("coalesce({}, {})").format(
            sql.Identifier(_P, "first_seen_at"), sql.Identifier(_T, DERIVED_AT)
        )
        bound = "statement_timestamp() - %(since)s::interval" if isinstance(since, timedelta) else "%(since)s"
        where.append(sql.SQL("{} >= ").format(first_seen) + sql.SQL(bound))
    state_schema, state_table = PLACEHOLDER_TABLE.split(".")
    source = sql.SQL(
        "FROM {table} AS {t} LEFT JOIN {placeholder} AS {p} "
        "ON {p_table} = %(table)s AND {p_key} = {key}::text AND {p_resolution} IS NULL "
        "WHERE {where}"
    ).format(
        table=table_ref(schema, name),
        t=sql.Identifier(_T),
        placeholder=table_ref(state_schema, state_table),
        p=sql.Identifier(_P),
        p_table=sql.Identifier(_P, "table_name"),
        p_key=sql.Identifier(_P, "key"),
        key=key_ref,
        p_resolution=sql.Identifier(_P, "resolution"),
        where=sql.SQL(" AND ").join(where),
    )
    order = [(sql.Identifier(_P, "fact_rows_total"), "DESC NULLS LAST"), (key_ref, "ASC")]
    return _Export(
        table=qualified,
        key=key,
        columns=columns,
        excluded=excluded,
        values=values,
        source=source,
        order=order,
        select=sql.SQL("SELECT {} {} ORDER BY {}").format(
            sql.SQL(", ").join(items),
            source,
            sql.SQL(", ").join(sql.SQL("{} {}").format(e, sql.SQL(d)) for e, d in order),
        ),
        count=sql.SQL("SELECT count(*) {}").format(source),
        params=params,
    )


def _sensitive_columns(info: TableInfo, qualified: str, settings: ReviewConfig) -> list[str]:
    """The configured sensitive columns of the table, checked against it (a configuration error otherwise)."""
    columns = settings.sensitive(qualified)
    file = str(settings.source_path) if settings.source_path is not None else None
    for column in columns:
        if column == info.primary_key[0]:
            problem = f"{column!r} is the key of {qualified}; the key cannot be left out of a review file"
        elif column not in info.columns:
            known = ", ".join(c for c in info.columns if c not in TRACKING_COLUMN_NAMES)
            problem = f"{qualified} has no column {column!r} (its columns: {known})"
        else:
            continue
        raise RefdataConfigError(problem, file=file, key_path=f"{_SENSITIVE_KEY_PATH}.{qualified}", value=column)
    return columns


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


def _write_atomically(target: Path, write: Callable[[BinaryIO], int]) -> int:
    """Run ``write`` on a new file next to ``target`` and rename it to ``target``; on failure remove it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (the rename stays on one file system), a dot name (hidden while it is written); opened with
    # "x" so the umask gives the usual permissions and no other file is ever overwritten.
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with open(partial, "xb") as fh:
            rows = write(fh)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def _write_csv(pg: psycopg.Connection, export: _Export, fh: BinaryIO) -> int:
    """The server renders the CSV (header included); its chunks go to the file after the byte-order mark."""
    fh.write("".encode(CSV_ENCODING))  # utf-8-sig: just the byte-order mark
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER, ENCODING 'UTF8')").format(export.select)
    with pg.cursor() as cur:
        with cur.copy(statement, export.params) as copy:
            for chunk in copy:
                fh.write(chunk)
        return cur.rowcount


def _write_xlsx(pg: psycopg.Connection, export: _Export, fh: BinaryIO) -> int:
    """Refuse more rows than a sheet holds, then let :func:`review_xlsx.write_sheet` write the workbook."""
    total = pg.execute(export.count, export.params).fetchone()[0]
    if total > XLSX_MAX_ROWS:
        raise RefdataReviewError(
            f"{export.table} has {total:,} open placeholders to export, more than the {XLSX_MAX_ROWS:,} rows an "
            "Excel sheet holds; export with format='csv', or narrow the export with domain= or since=",
            table=export.table,
            count=total,
        )
    sheet = Sheet(
        table=export.table,
        columns=export.columns,
        values=export.values,
        key=export.key,
        source=export.source,
        order=export.order,
        params=export.params,
        numbers=_NUMBER_COLUMNS,
        choices={ACTION: ACTIONS},
    )
    rows = write_sheet(pg, sheet, fh)
    if rows > XLSX_MAX_ROWS:  # rows added between the count and the read
        raise RefdataReviewError(
            f"{export.table}: {rows:,} rows are more than an Excel sheet holds; export with format='csv'",
            table=export.table,
            count=rows,
        )
    return rows
