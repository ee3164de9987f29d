"""Reference-data health: how much of each reference table is auto-derived, in review, and how old the open keys are.

``ReferenceHealthService().table_health(conn, tables)`` runs **one aggregate statement per table** (a
grouped scan of the table's tracking columns, plus the table's open placeholders of ``refdata.placeholder``
in the same statement), each in its own transaction (a savepoint inside a caller's transaction), so a table
that is missing, lacks the tracking columns or may not be read is reported with ``error`` and the others still
answer.  The results of a check are stored in ``refdata.health_snapshot`` by one multi-row ``INSERT`` (index
on ``(table_name, taken_at)``); :meth:`ReferenceHealthService.snapshots` reads them back by time for trends.

Open placeholders come from ``refdata.placeholder`` (provenance: ``resolution IS NULL``, age from
``first_seen_at``) when that table exists, else from the reference table itself (rows with
``_source = 'auto_derived' AND _needs_review``, age from ``_derived_at``); ``TableHealth.placeholder_source``
says which.

Filters:

* ``source`` (``authoritative`` | ``auto_derived``) counts only the rows of that source (no open
  placeholders with ``authoritative``);
* ``domain`` and the date range ``since`` / ``until`` (on ``_derived_at``; on ``first_seen_at`` and
  ``domains`` for provenance) select the *auto-derived* rows and placeholders; authoritative rows carry no
  derivation and always count, so ``auto_derived_ratio`` stays "the share of this table derived by that
  domain / in that window".  ``since`` may be a ``timedelta`` (that long before the check).

Plain Python: no Airflow import.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from airflow_provider_refdata.results import AgeBuckets, HealthFilters, TableHealth
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.state import ensure_state_tables
from airflow_provider_refdata.warehouse.tracking import missing_tracking_columns

logger = logging.getLogger("airflow_provider_refdata.services.health")

_SOURCES = ("authoritative", "auto_derived")
_SECONDS_PER_DAY = 86_400.0

_BUCKET_NAMES = ("b1", "b7", "b30", "bold", "bnull")


def _bucket_columns(open_expr: str | None, at: str) -> str:
    """Open-placeholder age buckets (≤ 1 d, ≤ 7 d, ≤ 30 d, older, unknown) of age column ``at`` at %(t)s.

    ``open_expr`` None: every row counted is open (refdata.placeholder); ``"-"``: constant zeros.
    """
    if open_expr == "-":
        return ", ".join(f"0::bigint AS {n}" for n in _BUCKET_NAMES)
    cond = f"{open_expr} AND " if open_expr else ""
    exprs = [
        f"{at} >= %(t)s - interval '1 day'",
        f"{at} < %(t)s - interval '1 day' AND {at} >= %(t)s - interval '7 days'",
        f"{at} < %(t)s - interval '7 days' AND {at} >= %(t)s - interval '30 days'",
        f"{at} < %(t)s - interval '30 days'",
        f"{at} IS NULL",
    ]
    return ",\n           ".join(
        f"count(*) FILTER (WHERE {cond}{e}) AS {n}" for e, n in zip(exprs, _BUCKET_NAMES, strict=True)
    )


# The reference table, grouped by (source, domain): a handful of groups, one scan.
_TABLE_GROUPS = """
    SELECT _source AS s, _derived_from_domain AS d, count(*) AS n,
           count(*) FILTER (WHERE _needs_review) AS review,
           {open_columns},
           {buckets}
      FROM {table}
     WHERE {where}
     GROUP BY 1, 2
"""
_GROUP_OPEN = """count(*) FILTER (WHERE {open}) AS open_n,
           min(_derived_at) FILTER (WHERE {open}) AS open_min,
           max(_derived_at) FILTER (WHERE {open}) AS open_max"""
_GROUP_NO_OPEN = "0::bigint AS open_n, NULL::timestamptz AS open_min, NULL::timestamptz AS open_max"

# Always exactly one row (an aggregate without GROUP BY), also for an empty table.
_OUTER = """
SELECT a.total, a.authoritative, a.auto_derived, a.review, a.by_domain,
       {p}.open_n, {p}.open_min, {p}.open_max, {p}.b1, {p}.b7, {p}.b30, {p}.bold, {p}.bnull, {p}.domains
  FROM (SELECT coalesce(sum(g.n), 0)::bigint AS total,
               coalesce(sum(g.n) FILTER (WHERE g.s = 'authoritative'), 0)::bigint AS authoritative,
               coalesce(sum(g.n) FILTER (WHERE g.s = 'auto_derived'), 0)::bigint AS auto_derived,
               coalesce(sum(g.review), 0)::bigint AS review,
               coalesce(jsonb_object_agg(g.d, g.n) FILTER (WHERE g.s = 'auto_derived' AND g.d IS NOT NULL),
                        '{{}}'::jsonb) AS by_domain,
               coalesce(sum(g.open_n), 0)::bigint AS open_n, min(g.open_min) AS open_min,
               max(g.open_max) AS open_max,
               coalesce(sum(g.b1), 0)::bigint AS b1, coalesce(sum(g.b7), 0)::bigint AS b7,
               coalesce(sum(g.b30), 0)::bigint AS b30, coalesce(sum(g.bold), 0)::bigint AS bold,
               coalesce(sum(g.bnull), 0)::bigint AS bnull, ARRAY[]::text[] AS domains
          FROM ({groups}) AS g) AS a {placeholders}
"""

# refdata.placeholder: the table's open placeholders (one aggregate row).
_PROVENANCE = """
 CROSS JOIN (
    SELECT count(*) AS open_n, min(first_seen_at) AS open_min, max(first_seen_at) AS open_max,
           {buckets},
           coalesce((SELECT array_agg(DISTINCT u.d ORDER BY u.d)
                       FROM refdata.placeholder AS q, unnest(q.domains) AS u(d)
                      WHERE q.table_name = %(name)s AND q.resolution IS NULL AND {pwhere_q}), ARRAY[]::text[])
               AS domains
      FROM refdata.placeholder
     WHERE table_name = %(name)s AND resolution IS NULL AND {pwhere}
 ) AS p
"""

_INSERT_SNAPSHOTS = """
INSERT INTO refdata.health_snapshot (taken_at, table_name, filtered, total_rows, auto_derived_rows,
                                     needs_review_rows, auto_derived_ratio, open_placeholders, error, health)
SELECT (h->>'taken_at')::timestamptz, h->>'table', %s, (h->>'total_rows')::bigint, (h->>'auto_derived_rows')::bigint,
       (h->>'needs_review_rows')::bigint, (h->>'auto_derived_ratio')::double precision,
       (h->>'open_placeholders')::bigint, h->>'error', h
  FROM jsonb_array_elements(%s::jsonb) AS h
"""


def _split(name: str) -> tuple[str, str]:
    schema, dot, table = name.partition(".")
    if not dot or not schema or not table:
        raise ValueError(f"{name!r} is not a schema-qualified table name (schema.table)")
    return schema, table


def resolve_tables(tables: Any) -> list[tuple[str, str]]:
    """``[(schema, table)]`` of ``tables``, first occurrence order, without duplicates.

    ``tables``: a schema-qualified name, or an iterable of names, ``ForeignKeyConfig``s, ``SyncTableConfig``s;
    a ``ReferenceSyncConfig`` (all its tables); a mapping of domains to FK config lists (``load_fk_domains``).
    """
    if isinstance(tables, str):
        tables = [tables]
    elif hasattr(tables, "tables") and not isinstance(tables, Mapping):  # ReferenceSyncConfig
        tables = tables.tables
    elif isinstance(tables, Mapping):
        tables = [item for items in tables.values() for item in items]
    out: dict[tuple[str, str], None] = {}
    for item in tables:
        if isinstance(item, str):
            out.setdefault(_split(item))
        elif hasattr(item, "target_schema") and hasattr(item, "target_table"):
            out.setdefault((item.target_schema, item.target_table))
        else:
            raise TypeError(f"not a reference table: {item!r} (a schema.table name, an FK or sync table config)")
    return list(out)


def _days(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds() / _SECONDS_PER_DAY, 4)


class ReferenceHealthService:
    """Health of reference tables (see the module docstring).  Stateless; safe to share."""

    def table_health(
        self,
        conn: WarehouseLike,
        tables: Any,
        *,
        domain: str | None = None,
        source: str | None = None,
        since: datetime | date | timedelta | None = None,
        until: datetime | date | None = None,
        store: bool = True,
    ) -> list[TableHealth]:
        """One :class:`TableHealth` per table, in the order given; a failing table has ``error`` set.

        :param conn: the warehouse (psycopg connection, ``PostgresHook``, SQLAlchemy connection/engine, DSN).
        :param tables: schema-qualified names, FK or sync table configs, a ``ReferenceSyncConfig``.
        :param domain: count only the auto-derived rows / placeholders of this domain.
        :param source: ``authoritative`` or ``auto_derived``: count only rows of that source.
        :param since: auto-derived rows derived at or after this time (a ``timedelta``: before the check).
        :param until: auto-derived rows derived before this time.
        :param store: write the results to ``refdata.health_snapshot`` (one ``INSERT`` for all tables).
        """
        if source is not None and source not in _SOURCES:
            raise ValueError(f"source must be one of {', '.join(_SOURCES)} or None, got {source!r}")
        targets = resolve_tables(tables)
        with warehouse_connection(conn) as pg:
            with pg.transaction():
                taken_at, provenance = pg.execute(
                    "SELECT statement_timestamp(), to_regclass('refdata.placeholder') IS NOT NULL"
                ).fetchone()
            if isinstance(since, timedelta):
                since = taken_at - since
            filters = HealthFilters(domain=domain, source=source, since=since, until=until)
            filtered = any(v is not None for v in (domain, source, since, until))
            params = {"t": taken_at, "domain": domain, "source": source, "since": since, "until": until}
            results = [
                self._one(pg, schema, table, params, provenance, taken_at, filters if filtered else None)
                for schema, table in targets
            ]
            if store and results:
                self._store(pg, results, filtered)
        for health in results:
            if health.error:
                logger.warning("health of %s failed: %s", health.table, health.error)
            else:
                logger.info(
                    "health of %s: %d rows, %d auto-derived (%.2f%%), %d need review, %d open placeholders",
                    health.table,
                    health.total_rows,
                    health.auto_derived_rows,
                    100 * health.auto_derived_ratio,
                    health.needs_review_rows,
                    health.open_placeholders,
                )
        return results

    # ----------------------------------------------------------------------------------------------------

    def _query(self, schema: str, table: str, params: dict[str, Any], provenance: bool) -> sql.Composed:
        where = [sql.SQL("true")]
        if params["source"] is not None:
            where.append(sql.SQL("_source = %(source)s"))
        if params["domain"] is not None:
            where.append(sql.SQL("(_source = 'authoritative' OR _derived_from_domain = %(domain)s)"))
        if params["since"] is not None:
            where.append(sql.SQL("(_source = 'authoritative' OR _derived_at >= %(since)s)"))
        if params["until"] is not None:
            where.append(sql.SQL("(_source = 'authoritative' OR _derived_at < %(until)s)"))
        open_expr = "(_source = 'auto_derived' AND _needs_review)"
        groups = sql.SQL(_TABLE_GROUPS).format(
            open_columns=sql.SQL(_GROUP_NO_OPEN if provenance else _GROUP_OPEN.replace("{open}", open_expr)),
            buckets=sql.SQL(_bucket_columns("-" if provenance else open_expr, "_derived_at")),
            table=table_ref(schema, table),
            where=sql.SQL(" AND ").join(where),
        )
        placeholders = sql.SQL("")
        if provenance:
            placeholders = sql.SQL(_PROVENANCE).format(
                buckets=sql.SQL(_bucket_columns(None, "first_seen_at")),
                pwhere=self._provenance_where(params, ""),
                pwhere_q=self._provenance_where(params, "q."),
            )
        return sql.SQL(_OUTER).format(p=sql.SQL("p" if provenance else "a"), groups=groups, placeholders=placeholders)

    @staticmethod
    def _provenance_where(params: dict[str, Any], prefix: str) -> sql.Composable:
        conds = [sql.SQL("true")]
        if params["source"] == "authoritative":
            conds.append(sql.SQL("false"))  # placeholders are auto-derived keys
        if params["domain"] is not None:
            conds.append(sql.SQL(f"%(domain)s = ANY({prefix}domains)"))
        if params["since"] is not None:
            conds.append(sql.SQL(f"{prefix}first_seen_at >= %(since)s"))
        if params["until"] is not None:
            conds.append(sql.SQL(f"{prefix}first_seen_at < %(until)s"))
        return sql.SQL(" AND ").join(conds)

    def _one(
        self,
        pg: psycopg.Connection,
        schema: str,
        table: str,
        params: dict[str, Any],
        provenance: bool,
        taken_at: datetime,
        filters: HealthFilters | None,
    ) -> TableHealth:
        name = f"{schema}.{table}"
        started = time.perf_counter()
        base = {"table": name, "taken_at": taken_at, "filters": filters}
        try:
            with pg.transaction():
                row = pg.execute(self._query(schema, table, params, provenance), {**params, "name": name}).fetchone()
        except psycopg.Error as exc:
            return TableHealth(
                **base,
                error=self._describe_failure(pg, schema, table, exc),
                duration_seconds=time.perf_counter() - started,
            )
        total, authoritative, auto_derived, review, by_domain, open_n, oldest, newest, *buckets, p_domains = row
        by_domain = by_domain if isinstance(by_domain, dict) else json.loads(by_domain)
        return TableHealth(
            **base,
            total_rows=total,
            authoritative_rows=authoritative,
            auto_derived_rows=auto_derived,
            needs_review_rows=review,
            auto_derived_ratio=round(auto_derived / total, 6) if total else 0.0,
            open_placeholders=open_n or 0,
            oldest_open_placeholder_at=oldest,
            newest_open_placeholder_at=newest,
            oldest_open_placeholder_age_days=_days(taken_at - oldest) if oldest else None,
            newest_open_placeholder_age_days=_days(taken_at - newest) if newest else None,
            age_buckets=AgeBuckets(**dict(zip(AgeBuckets.model_fields, (b or 0 for b in buckets), strict=True))),
            domains=sorted(set(by_domain) | set(p_domains or [])),
            rows_by_domain=dict(sorted(by_domain.items())),
            placeholder_source="provenance" if provenance else "tracking_columns",
            duration_seconds=round(time.perf_counter() - started, 6),
        )

    @staticmethod
    def _describe_failure(pg: psycopg.Connection, schema: str, table: str, exc: psycopg.Error) -> str:
        """A message naming why the table could not be checked (missing table, tracking columns, the error)."""
        detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        try:
            with pg.transaction():
                missing = missing_tracking_columns(pg, schema, table)
                exists = pg.execute(
                    "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, table)
                ).fetchone()[0]
        except psycopg.Error:
            return detail
        if not exists:
            return f"table {schema}.{table} does not exist ({detail})"
        if missing:
            return f"table {schema}.{table} lacks the tracking columns {', '.join(missing)} ({detail})"
        return detail

    @staticmethod
    def _store(pg: psycopg.Connection, results: list[TableHealth], filtered: bool) -> None:
        payload = [h.model_dump(mode="json") for h in results]
        try:
            with pg.transaction():  # ensure_state_tables inside: its catalog read must not leave a transaction open
                ensure_state_tables(pg)
                pg.execute(_INSERT_SNAPSHOTS, (filtered, Jsonb(payload)))
        except psycopg.Error as exc:  # a snapshot that cannot be written must not hide the health itself
            logger.warning("could not store the health snapshot in refdata.health_snapshot: %s", exc)

    # ----------------------------------------------------------------------------------------------------

    def snapshots(
        self,
        conn: WarehouseLike,
        tables: Any = None,
        since: datetime | date | timedelta | None = None,
        *,
        until: datetime | date | None = None,
        include_filtered: bool = False,
    ) -> list[TableHealth]:
        """Stored health checks, by table then time (oldest first), for trends.

        :param tables: the tables (as for :meth:`table_health`); ``None`` = every table with snapshots.
        :param since: snapshots taken at or after this time (a ``timedelta``: that long ago).
        :param until: snapshots taken before this time.
        :param include_filtered: also the checks run with a domain/source/date filter.
        """
        names = None if tables is None else [f"{s}.{t}" for s, t in resolve_tables(tables)]
        with warehouse_connection(conn) as pg:
            with pg.transaction():
                if pg.execute("SELECT to_regclass('refdata.health_snapshot')").fetchone()[0] is None:
                    return []
                if isinstance(since, timedelta):
                    since = pg.execute("SELECT statement_timestamp()").fetchone()[0] - since
                rows = pg.execute(
                    """
                    SELECT health FROM refdata.health_snapshot
                     WHERE (%(names)s::text[] IS NULL OR table_name = ANY(%(names)s::text[]))
                       AND (%(since)s::timestamptz IS NULL OR taken_at >= %(since)s::timestamptz)
                       AND (%(until)s::timestamptz IS NULL OR taken_at < %(until)s::timestamptz)
                       AND (%(filtered)s OR NOT filtered)
                     ORDER BY table_name, taken_at, id
                    """,
                    {"names": names, "since": since, "until": until, "filtered": include_filtered},
                ).fetchall()
        return [TableHealth.model_validate(r[0]) for r in rows]


def snapshots(conn: WarehouseLike, tables: Any = None, since: datetime | date | timedelta | None = None, **kw: Any):
    """Shortcut of :meth:`ReferenceHealthService.snapshots`."""
    return ReferenceHealthService().snapshots(conn, tables, since, **kw)
