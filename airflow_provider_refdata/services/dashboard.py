"""The "Reference data" page's data: everything it shows, read from the warehouse in a few set-based queries.

:meth:`DashboardService.summary` returns one :class:`Dashboard` (pydantic, JSON-able) for the reference
tables of the configuration:

* **now** — per table the counts of :meth:`ReferenceHealthService.table_health
  <airflow_provider_refdata.services.health.ReferenceHealthService.table_health>` (one aggregate statement per
  table; *not* stored as a snapshot: looking at the page writes nothing) and the alerts that
  :func:`~airflow_provider_refdata.services.alerts.check_alerts` raises on them with the ``health:`` rules of
  ``reference_sync.yml``;
* **over time** — one statement for the auto-derived ratio of every table: the stored health checks
  (``refdata.health_snapshot``, unfiltered ones) and the ``per_table_ratio`` of each ``ensure_references`` run
  in ``refdata.run_log``; one statement for the pre-load coverage (covered / distinct FK values before the
  backfill, summed over the run's FK configurations of the table) of each ``ensure_references`` /
  ``coverage_check`` run;
* **open placeholders** — one statement over ``refdata.placeholder``: the most-used open keys of each table
  (most fact rows first), without business columns (they may be sensitive; the review export has them);
* **last sync** — one statement: ``refdata.sync_state`` of each table joined to its latest finished
  ``reference_sync`` row of ``refdata.run_log`` (status, counts, watermark, duration, error).

Which tables: the ones :func:`~airflow_provider_refdata.services.health_tables.health_tables` chooses from
``reference_sync.yml`` and ``foreign_keys.yml`` in the configuration folder; without either file, every table
the ``refdata`` state tables know.  A warehouse without the ``refdata`` tables gives empty history sections.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_refdata.config.paths import config_dir as default_config_dir
from airflow_provider_refdata.exceptions import RefdataConfigError
from airflow_provider_refdata.results import Alert, TableHealth
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection

logger = logging.getLogger("airflow_provider_refdata.services.dashboard")


# --------------------------------------------------------------------------------------------------------
# The models (the JSON API of the UI plugin returns them as they are)
# --------------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TableCounts(_Model):
    """A table's rows split for the stacked bar (the three parts add up to ``total_rows`` as long as only
    auto-derived rows are flagged for review, which is how the provider writes them)."""

    table: str
    total_rows: int = 0
    authoritative: int = 0
    auto_derived: int = Field(0, description="auto-derived rows no longer flagged for review (approved)")
    needs_review: int = Field(0, description="rows flagged for review (open placeholders in the table)")
    auto_derived_rows: int = Field(0, description="all auto-derived rows (auto_derived + the auto-derived in review)")
    auto_derived_ratio: float = 0.0
    open_placeholders: int = 0
    oldest_open_placeholder_age_days: float | None = None
    error: str | None = None


class SeriesPoint(_Model):
    """One value of a table at one time."""

    at: datetime
    value: float
    source: str = Field(description="health_snapshot, ensure_references or coverage_check")
    domain: str | None = None


class OpenPlaceholder(_Model):
    """An open placeholder (auto-derived key awaiting review) with its use by the facts."""

    table: str
    key: str
    fact_rows_total: int
    fact_rows_last: int
    domains: list[str] = Field(default_factory=list)
    first_seen_at: datetime
    last_seen_at: datetime
    age_days: float


class LastSync(_Model):
    """A table's last authoritative sync: ``refdata.sync_state`` and its latest finished run-log row."""

    table: str
    status: str | None = Field(None, description="the run's status (success, failed, skipped); None = never synced")
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    source_type: str | None = None
    sync_mode: str | None = None
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_deleted: int = 0
    rows_promoted: int = 0
    watermark: datetime | None = Field(None, description="the stored incremental watermark (sync_state)")
    error: str | None = None
    skipped_reason: str | None = None


class Dashboard(_Model):
    """Everything the "Reference data" page shows."""

    generated_at: datetime
    tables: list[str] = Field(default_factory=list, description="schema-qualified reference tables, in order")
    tables_from: str = Field(description="configuration (reference_sync.yml / foreign_keys.yml) or warehouse")
    counts: list[TableCounts] = Field(default_factory=list)
    health: list[TableHealth] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    ratio_series: dict[str, list[SeriesPoint]] = Field(default_factory=dict)
    coverage_series: dict[str, list[SeriesPoint]] = Field(default_factory=dict)
    placeholders: list[OpenPlaceholder] = Field(default_factory=list)
    last_syncs: list[LastSync] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------------
# SQL (values always bound; the table names are data here: text columns of the refdata tables)
# --------------------------------------------------------------------------------------------------------

_PRESENT = """
SELECT statement_timestamp(), to_regclass('refdata.run_log') IS NOT NULL, to_regclass('refdata.sync_state') IS NOT NULL,
       to_regclass('refdata.health_snapshot') IS NOT NULL, to_regclass('refdata.placeholder') IS NOT NULL
"""

# Every table the state tables know (no configuration).
_KNOWN_TABLES = {
    "sync_state": "SELECT table_name FROM refdata.sync_state",
    "health_snapshot": "SELECT DISTINCT table_name FROM refdata.health_snapshot",
    "placeholder": "SELECT DISTINCT table_name FROM refdata.placeholder",
}

# The newest %(n)s points per table, oldest first: health snapshots and ensure_references ratios.
_RATIO_SNAPSHOTS = """
SELECT table_name, taken_at AS at, auto_derived_ratio AS value, 'health_snapshot' AS source, NULL AS domain
  FROM refdata.health_snapshot
 WHERE table_name = ANY(%(tables)s::text[]) AND NOT filtered AND error IS NULL AND auto_derived_ratio IS NOT NULL
"""
_RATIO_RUNS = """
SELECT r.table_name, l.finished_at, r.ratio::double precision, l.run_type, l.subject
  FROM refdata.run_log AS l
 CROSS JOIN LATERAL jsonb_each_text(COALESCE(l.result->'per_table_ratio', '{}'::jsonb)) AS r(table_name, ratio)
 WHERE l.run_type = 'ensure_references' AND r.table_name = ANY(%(tables)s::text[])
"""
_SERIES = """
SELECT table_name, at, value, source, domain
  FROM (SELECT s.*, row_number() OVER (PARTITION BY s.table_name ORDER BY s.at DESC) AS rn
          FROM ({points}) AS s(table_name, at, value, source, domain)) AS ranked
 WHERE rn <= %(n)s
 ORDER BY table_name, at
"""
# Pre-load coverage per run and table: the run's FK configurations of that table summed.
_COVERAGE_RUNS = """
SELECT m->>'table', l.finished_at,
       CASE WHEN sum((m->>'total_fk_values')::bigint) > 0
            THEN sum((m->>'covered_values')::bigint)::double precision / sum((m->>'total_fk_values')::bigint)
            ELSE 1.0 END,
       l.run_type, l.subject
  FROM refdata.run_log AS l
 CROSS JOIN LATERAL jsonb_array_elements(COALESCE(l.result->'coverage_metrics', '[]'::jsonb)) AS m
 WHERE l.run_type IN ('ensure_references', 'coverage_check') AND m->>'table' = ANY(%(tables)s::text[])
   AND m->>'error' IS NULL AND m->>'skipped_reason' IS NULL
 GROUP BY l.id, m->>'table', l.finished_at, l.run_type, l.subject
"""

_PLACEHOLDERS = """
SELECT table_name, key, fact_rows_total, fact_rows_last, domains, first_seen_at, last_seen_at,
       extract(epoch FROM statement_timestamp() - first_seen_at) / 86400.0
  FROM (SELECT p.*, row_number() OVER (PARTITION BY p.table_name ORDER BY p.fact_rows_total DESC, p.key) AS rn
          FROM refdata.placeholder AS p
         WHERE p.resolution IS NULL AND p.table_name = ANY(%(tables)s::text[])) AS ranked
 WHERE rn <= %(n)s
 ORDER BY fact_rows_total DESC, table_name, key
"""

_LAST_SYNCS = """
SELECT t.name, r.status, s.last_run_at, s.last_success_at, r.started_at, r.finished_at,
       (r.result->>'duration_seconds')::double precision, r.result->>'source_type', r.result->>'sync_mode',
       COALESCE((r.result->>'rows_read')::bigint, s.rows_read, 0),
       COALESCE((r.result->>'rows_inserted')::bigint, s.rows_inserted, 0),
       COALESCE((r.result->>'rows_updated')::bigint, s.rows_updated, 0),
       COALESCE((r.result->>'rows_unchanged')::bigint, 0),
       COALESCE((r.result->>'rows_deleted')::bigint, s.rows_deleted, 0),
       COALESCE((r.result->>'rows_promoted')::bigint, s.rows_promoted, 0),
       s.watermark, r.result->>'error', r.result->>'skipped_reason'
  FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS t(name, ord)
  LEFT JOIN refdata.sync_state AS s ON s.table_name = t.name
  LEFT JOIN LATERAL (
        SELECT l.status, l.started_at, l.finished_at, l.result
          FROM refdata.run_log AS l
         WHERE l.run_type = 'reference_sync' AND l.subject = t.name AND l.status NOT IN ('running', 'planned')
         ORDER BY l.finished_at DESC
         LIMIT 1) AS r ON true
 ORDER BY t.ord
"""


def counts_of(health: TableHealth) -> TableCounts:
    """The stacked-bar split of one table's health (approved auto-derived rows vs. rows in review)."""
    return TableCounts(
        table=health.table,
        total_rows=health.total_rows,
        authoritative=health.authoritative_rows,
        auto_derived=max(health.auto_derived_rows - health.needs_review_rows, 0),
        needs_review=health.needs_review_rows,
        auto_derived_rows=health.auto_derived_rows,
        auto_derived_ratio=health.auto_derived_ratio,
        open_placeholders=health.open_placeholders,
        oldest_open_placeholder_age_days=health.oldest_open_placeholder_age_days,
        error=health.error,
    )


class DashboardService:
    """Reads the page's data (see the module docstring).  Stateless apart from its settings; safe to share.

    :param config_dir: the folder with ``reference_sync.yml`` / ``foreign_keys.yml`` (default
        :func:`~airflow_provider_refdata.config.paths.config_dir`, read on each call).
    :param placeholder_limit: open placeholders per table.
    :param history_points: the newest points per table and series.
    """

    def __init__(
        self,
        config_dir: str | os.PathLike[str] | None = None,
        *,
        placeholder_limit: int = 10,
        history_points: int = 200,
    ) -> None:
        self.config_dir = Path(config_dir) if config_dir is not None else None
        self.placeholder_limit = placeholder_limit
        self.history_points = history_points

    def configured_tables(self) -> tuple[list[str], Any]:
        """(the configured tables, the loaded ``ReferenceSyncConfig`` or ``None``); ``([], None)`` without files."""
        from airflow_provider_refdata.services.health_tables import health_tables

        folder = self.config_dir or default_config_dir()
        try:
            return health_tables([], folder / "reference_sync.yml", folder / "foreign_keys.yml")
        except RefdataConfigError as exc:
            if "no tables to check" not in str(exc):
                raise
            return [], None

    def summary(self, conn: WarehouseLike, tables: list[str] | None = None) -> Dashboard:
        """The page's data for ``tables`` (default: the configured tables, else those the warehouse knows).

        :param conn: the warehouse (psycopg connection, ``PostgresHook``, SQLAlchemy connection/engine, DSN).
        :param tables: schema-qualified names: only those of the page's tables (e.g. one table's detail).
        :raises RefdataConfigError: an invalid ``reference_sync.yml`` / ``foreign_keys.yml``.
        """
        from airflow_provider_refdata.services.alerts import check_alerts
        from airflow_provider_refdata.services.health import ReferenceHealthService

        configured, sync_config = self.configured_tables()
        with warehouse_connection(conn) as pg:
            with pg.transaction():
                now, *flags = pg.execute(_PRESENT).fetchone()
                present = dict(zip(("run_log", "sync_state", "health_snapshot", "placeholder"), flags, strict=True))
                tables_from = "configuration" if configured else "warehouse"
                names = configured or self._known_tables(pg, present)
                if tables is not None:
                    names = [t for t in tables if t in names]
            health = ReferenceHealthService().table_health(pg, names, store=False) if names else []
            with pg.transaction():
                dashboard = Dashboard(
                    generated_at=now,
                    tables=names,
                    tables_from=tables_from,
                    counts=[counts_of(h) for h in health],
                    health=health,
                    alerts=check_alerts(health, sync_config),
                    ratio_series=self._ratio_series(pg, names, present),
                    coverage_series=self._coverage_series(pg, names, present),
                    placeholders=self._placeholders(pg, names, present),
                    last_syncs=self._last_syncs(pg, names, present),
                )
        logger.info(
            "dashboard of %d table(s): %d alert(s), %d open placeholder(s) listed",
            len(names),
            len(dashboard.alerts),
            len(dashboard.placeholders),
        )
        return dashboard

    # ----------------------------------------------------------------------------------------------------

    @staticmethod
    def _known_tables(pg: psycopg.Connection, present: dict[str, bool]) -> list[str]:
        parts = [query for name, query in _KNOWN_TABLES.items() if present[name]]
        if not parts:
            return []
        rows = pg.execute(" UNION ".join(parts) + " ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def _series(self, pg: psycopg.Connection, parts: list[str], names: list[str]) -> dict[str, list[SeriesPoint]]:
        out: dict[str, list[SeriesPoint]] = {name: [] for name in names}
        if not parts or not names:
            return out
        query = _SERIES.format(points=" UNION ALL ".join(parts))
        for table, at, value, source, domain in pg.execute(query, {"tables": names, "n": self.history_points}):
            out[table].append(SeriesPoint(at=at, value=round(value, 6), source=source, domain=domain))
        return out

    def _ratio_series(
        self, pg: psycopg.Connection, names: list[str], present: dict[str, bool]
    ) -> dict[str, list[SeriesPoint]]:
        parts = [_RATIO_SNAPSHOTS] if present["health_snapshot"] else []
        parts += [_RATIO_RUNS] if present["run_log"] else []
        return self._series(pg, parts, names)

    def _coverage_series(
        self, pg: psycopg.Connection, names: list[str], present: dict[str, bool]
    ) -> dict[str, list[SeriesPoint]]:
        return self._series(pg, [_COVERAGE_RUNS] if present["run_log"] else [], names)

    def _placeholders(
        self, pg: psycopg.Connection, names: list[str], present: dict[str, bool]
    ) -> list[OpenPlaceholder]:
        if not present["placeholder"] or not names:
            return []
        rows = pg.execute(_PLACEHOLDERS, {"tables": names, "n": self.placeholder_limit}).fetchall()
        return [
            OpenPlaceholder(
                table=table,
                key=key,
                fact_rows_total=total,
                fact_rows_last=last,
                domains=list(domains or []),
                first_seen_at=first,
                last_seen_at=seen,
                age_days=round(float(age), 4),
            )
            for table, key, total, last, domains, first, seen, age in rows
        ]

    @staticmethod
    def _last_syncs(pg: psycopg.Connection, names: list[str], present: dict[str, bool]) -> list[LastSync]:
        if not (present["sync_state"] and present["run_log"]) or not names:
            return [LastSync(table=name) for name in names]
        fields = [f for f in LastSync.model_fields if f != "table"]
        rows = pg.execute(_LAST_SYNCS, {"tables": names}).fetchall()
        return [
            LastSync(table=row[0], **{k: v for k, v in zip(fields, row[1:], strict=True) if v is not None})
            for row in rows
        ]
