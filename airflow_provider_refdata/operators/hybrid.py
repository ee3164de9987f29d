"""HybridReferenceOperator: coverage check and selective backfill of a fact dataset as an Airflow task.

The facts come from exactly one of: ``sql`` (one SELECT on the warehouse), ``table`` (a schema-qualified
table or view, quoted safely) or ``fact_file`` (CSV, Parquet or Excel, chosen by suffix).  ``sql`` and ``table``
facts stay in the warehouse: they become a
:class:`~airflow_provider_refdata.config.relation.WarehouseRelation` and coverage and backfill run in PostgreSQL,
so no fact row is read into the worker; only a ``fact_file`` is read into a frame.  The operator loads
the domain's FK configurations, runs
:meth:`~airflow_provider_refdata.services.hybrid.HybridReferenceService.ensure_references` (or, with
``coverage_only``, only measures coverage) and returns the
:class:`~airflow_provider_refdata.results.HybridResult` through XCom as the model itself: the result classes
are registered with ``airflow.sdk.serde.allow_class`` when this module is imported.

CSV and Excel files are read with every column as text, so codes such as ``"001"`` keep their zeros; the
services coerce numbers where an aggregation needs them.

Remapped keys (``refdata.key_alias``, written by a steward's remap) are mapped in the facts by the
service (in SQL for ``sql``/``table`` facts), whatever the source, and counted in each coverage metric's
``remapped_values``.  When the facts come from a warehouse ``table`` (a staging table loaded into the fact
table next), a writing run also rewrites them in that table — one ``UPDATE … FROM refdata.key_alias`` per FK
column that had remapped values — so the load passes its FKs (``rewrite_fact_table=False`` leaves the table
alone).  A ``sql`` query or a ``fact_file`` cannot be rewritten: for them only the counts tell the caller to
map the keys itself.

Each run emits the metrics of :mod:`~airflow_provider_refdata.metrics` (coverage, ratios, backfill counts),
and when the task has Asset outlets (the fact dataset it prepares), each outlet's event carries the
coverage and ratios as extra (:func:`fact_event_extra`), so a DAG scheduled on the facts sees them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.serde import allow_class

from airflow_provider_refdata.config.paths import FK_CONFIG_FILE, config_path
from airflow_provider_refdata.config.relation import split_relation_name
from airflow_provider_refdata.lineage import HybridReferenceLineageMixin
from airflow_provider_refdata.metrics import emit_hybrid_metrics
from airflow_provider_refdata.operators.templated import as_bool, as_float
from airflow_provider_refdata.results import (
    BackfillResult,
    BackfillTableResult,
    CoverageMetrics,
    HybridResult,
)
from airflow_provider_refdata.textable import text_table

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import Context

    from airflow_provider_refdata.config import ForeignKeyConfig
    from airflow_provider_refdata.config.relation import WarehouseRelation

for _result_class in (HybridResult, CoverageMetrics, BackfillResult, BackfillTableResult):
    allow_class(_result_class)


def default_fk_config_path() -> str:
    """``$REFDATA_CONFIG_DIR/foreign_keys.yml``, else ``config/foreign_keys.yml`` (relative to the cwd)."""
    return str(config_path(FK_CONFIG_FILE))


def split_table_name(name: str) -> tuple[str, str]:
    """``schema.table`` (or ``table`` → ``public``) into its parts; double quotes around a part are removed.

    :param name: the table name as written by the user, e.g. ``staging.年金业绩`` or ``"my.schema"."t"``.
    :raises ValueError: not one or two non-empty parts, an unclosed quote, or a part PostgreSQL would truncate.
    """
    return split_relation_name(name)


def read_fact_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a fact file by suffix: ``.csv``, ``.parquet``/``.pq``, ``.xlsx``/``.xlsm`` (openpyxl).

    :param path: the file.
    """
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=True, encoding="utf-8-sig")
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".xlsx", ".xlsm"):
        # openpyxl is what the `excel` extra installs; pandas 4 would default to calamine, which it does not.
        return pd.read_excel(path, dtype=str, engine="openpyxl")
    raise ValueError(f"unsupported fact file type {suffix!r} ({path}); use .csv, .parquet or .xlsx")


def read_query(pg: psycopg.Connection, statement: Any, params: Any = None) -> pd.DataFrame:
    """Run a query on the warehouse and return its rows as a DataFrame (inside its own transaction)."""
    import pandas as pd

    with pg.transaction(), pg.cursor() as cur:
        cur.execute(statement, params)
        columns = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def describe_facts(facts: pd.DataFrame | WarehouseRelation) -> str:
    """``"<n> fact rows"`` for a frame, ``"facts in <relation>"`` for facts that stay in the warehouse."""
    from airflow_provider_refdata.config.relation import WarehouseRelation

    return f"facts in {facts.describe()}" if isinstance(facts, WarehouseRelation) else f"{len(facts)} fact rows"


class HybridReferenceOperator(HybridReferenceLineageMixin, BaseOperator):
    """Check FK coverage of a fact dataset and backfill missing reference rows before the facts load.

    :param domain: the fact domain (a key of ``domains`` in the FK configuration file).
    :param sql: a query on the warehouse returning the facts (templated).
    :param table: a schema-qualified table holding the facts (templated).
    :param fact_file: a CSV, Parquet or Excel file with the facts (templated).
    :param fk_config_path: the ``foreign_keys.yml`` (templated; default ``$REFDATA_CONFIG_DIR/foreign_keys.yml``).
    :param auto_derived_threshold: warn when an auto-derived ratio is above it (templated; default 0.10).
    :param table_thresholds: per-table thresholds keyed by schema-qualified table or FK name.
    :param skip_tables: FK names or tables to leave alone (templated).
    :param plan_only: report what would be inserted, write nothing (templated; "true"/"false" accepted).
    :param coverage_only: only measure coverage (a check task); no backfill.
    :param fail_on_degraded: fail the task when the result is degraded.
    :param warehouse_conn_id: the Airflow connection of the PostgreSQL warehouse.
    :param rewrite_fact_table: with ``table`` facts, rewrite the remapped keys in that table too (default on;
        not in plan-only and coverage-only runs, which write no facts).  A failing rewrite degrades the
        result (``fact table … : cause``).  ``sql`` and ``fact_file`` facts are never rewritten: only the
        result's ``remapped_values`` counts are available for them.
    """

    template_fields: Sequence[str] = (
        "domain",
        "sql",
        "table",
        "fact_file",
        "fk_config_path",
        "auto_derived_threshold",
        "skip_tables",
        "plan_only",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        domain: str,
        sql: str | None = None,
        table: str | None = None,
        fact_file: str | None = None,
        fk_config_path: str | None = None,
        auto_derived_threshold: float | str | None = 0.10,
        table_thresholds: Mapping[str, float] | None = None,
        skip_tables: Sequence[str] = (),
        plan_only: bool | str = False,
        coverage_only: bool = False,
        fail_on_degraded: bool = False,
        warehouse_conn_id: str = "refdata_warehouse",
        rewrite_fact_table: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [name for name, value in (("sql", sql), ("table", table), ("fact_file", fact_file)) if value]
        if len(given) != 1:
            raise ValueError(f"give exactly one of sql, table or fact_file (got {', '.join(given) or 'none'})")
        self.domain = domain
        self.sql = sql
        self.table = table
        self.fact_file = fact_file
        self.fk_config_path = fk_config_path
        self.auto_derived_threshold = auto_derived_threshold
        self.table_thresholds = dict(table_thresholds or {})
        self.skip_tables = skip_tables
        self.plan_only = plan_only
        self.coverage_only = coverage_only
        self.fail_on_degraded = fail_on_degraded
        self.warehouse_conn_id = warehouse_conn_id
        self.rewrite_fact_table = rewrite_fact_table

    @cached_property
    def hook(self) -> PostgresHook:
        """The warehouse hook (created on first use, never at DAG parse time)."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.warehouse_conn_id)

    def load_facts(self, pg: psycopg.Connection) -> pd.DataFrame | WarehouseRelation:
        """The facts: a frame read from ``fact_file``; for ``table`` and ``sql`` a
        :class:`~airflow_provider_refdata.config.relation.WarehouseRelation`, so coverage and backfill run in
        PostgreSQL and no fact row is read into the worker."""
        from airflow_provider_refdata.config.relation import WarehouseRelation

        if self.fact_file:
            self.log.info("Reading facts from file %s", self.fact_file)
            return read_fact_file(self.fact_file)
        if self.table:
            schema, table = split_table_name(self.table)
            self.log.info("Facts stay in the warehouse: table %s.%s", schema, table)
            return WarehouseRelation(table=self.table)
        self.log.info("Facts stay in the warehouse: a query")
        return WarehouseRelation(query=self.sql)

    def execute(self, context: Context) -> HybridResult:
        from airflow_provider_refdata.config import load_fk_configs
        from airflow_provider_refdata.services.hybrid import HybridReferenceService
        from airflow_provider_refdata.warehouse.connection import warehouse_connection

        plan_only = as_bool(self.plan_only, "plan_only")
        threshold = as_float(self.auto_derived_threshold, "auto_derived_threshold")
        config_path = self.fk_config_path or default_fk_config_path()
        fk_configs = load_fk_configs(config_path, self.domain)
        skip = [self.skip_tables] if isinstance(self.skip_tables, str) else list(self.skip_tables or ())
        service = HybridReferenceService(
            auto_derived_threshold=0.10 if threshold is None else threshold,
            table_thresholds=self.table_thresholds,
        )
        with warehouse_connection(self.hook) as pg:
            facts = self.load_facts(pg)
            self.log.info(
                "Domain %s: %s, %d FK configurations from %s",
                self.domain,
                describe_facts(facts),
                len(fk_configs),
                config_path,
            )
            result = service.ensure_references(
                self.domain,
                facts,
                fk_configs,
                pg,
                skip_tables=skip,
                plan_only=plan_only,
                coverage_only=self.coverage_only,
            )
            if self.table and self.rewrite_fact_table and not plan_only and not self.coverage_only:
                self.rewrite_table(pg, result, fk_configs)
        self.log_result(result)
        emit_hybrid_metrics(result)
        self._lineage_result = result  # for get_openlineage_facets_on_complete (also when failing below)
        self.record_asset_events(context, result)
        if result.degraded_mode and self.fail_on_degraded:
            raise AirflowFailException(f"domain {self.domain}: degraded run: {result.degradation_reason}")
        return result

    def record_asset_events(self, context: Context, result: HybridResult) -> None:
        """Attach the coverage and ratios to the event of each Asset outlet (aliases are left alone).

        :param context: the task context (``outlet_events``; absent when ``execute`` is called directly).
        :param result: the service's result.
        """
        from airflow.sdk import Asset

        events = context.get("outlet_events") if hasattr(context, "get") else None
        if events is None:
            return
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                events[outlet].extra = fact_event_extra(result)

    def rewrite_table(
        self, pg: psycopg.Connection, result: HybridResult, fk_configs: Sequence[ForeignKeyConfig]
    ) -> None:
        """Rewrite the remapped keys in the ``table`` the facts came from (only FKs with remapped values).

        :param pg: the warehouse connection (idle).
        :param result: the service's result; degraded when the rewrite fails.
        :param fk_configs: the domain's FK configurations.
        """
        from airflow_provider_refdata.services.aliases import rewrite_table_aliases
        from airflow_provider_refdata.services.backfill import describe_error

        remapped = {m.fk_name for m in result.coverage_metrics if m.remapped_values}
        wanted = [fk for fk in fk_configs if fk.name in remapped]
        if not wanted:
            return
        schema, table = split_table_name(self.table or "")
        try:
            counts = rewrite_table_aliases(pg, schema, table, wanted)
        except Exception as exc:  # the references are ensured; the table keeps the old keys: say so
            cause = f"fact table {schema}.{table}: key aliases not rewritten: {describe_error(exc)}"
            self.log.warning("%s", cause)
            result.degraded_mode = True
            result.degradation_reason = f"{result.degradation_reason}; {cause}" if result.degradation_reason else cause
            return
        for column, rows in counts.items():
            self.log.info("Rewrote %d remapped keys in %s", rows, column)

    def log_result(self, result: HybridResult) -> None:
        """Log a per-table coverage table, the backfill counts, ratios and warnings."""
        tables = {t.fk_name: t for t in (result.backfill_result.tables if result.backfill_result else [])}
        mode = "coverage only" if result.coverage_only else ("plan only" if result.plan_only else "backfill")
        header = "fk table values covered missing auth derived blank remapped inserted rejected note".split()
        rows = [
            [m.fk_name, m.table, m.total_fk_values, m.covered_values, m.missing_values, m.authoritative_values,
             m.auto_derived_values, m.blank_rows, m.remapped_values,
             tables[m.fk_name].inserted if m.fk_name in tables else "-",
             tables[m.fk_name].rejected if m.fk_name in tables else "-",
             m.skipped_reason or (f"ERROR {m.error}" if m.error else "")]
            for m in result.coverage_metrics
        ]  # fmt: skip
        self.log.info("Coverage of domain %s (%s):\n%s", result.domain, mode, "\n".join(text_table(header, rows)))
        self.log.info(
            "Coverage before backfill %.2f%%, inserted %d, auto-derived ratio %.2f%% (%d of %d rows)",
            result.pre_load_coverage * 100,
            result.backfill_count,
            result.auto_derived_ratio * 100,
            result.total_auto_derived,
            result.total_auto_derived + result.total_authoritative,
        )
        for warning in result.threshold_warnings:
            self.log.warning("Threshold: %s", warning)
        if result.degraded_mode:
            self.log.warning("Degraded: %s", result.degradation_reason)


def fact_event_extra(result: HybridResult) -> dict[str, Any]:
    """The extra of the fact Asset's event: coverage per FK, auto-derived ratios, backfill and degradation.

    :param result: the result of ``ensure_references``.
    """
    return {
        "domain": result.domain,
        "run_id": result.run_id,
        "plan_only": result.plan_only,
        "coverage_only": result.coverage_only,
        "pre_load_coverage": result.pre_load_coverage,
        "auto_derived_ratio": result.auto_derived_ratio,
        "per_table_ratio": dict(result.per_table_ratio),
        "backfill_count": result.backfill_count,
        "coverage": {
            m.fk_name: {
                "table": m.table,
                "coverage_rate": m.coverage_rate,
                "total_fk_values": m.total_fk_values,
                "missing_values": m.missing_values,
                "auto_derived_values": m.auto_derived_values,
                "remapped_values": m.remapped_values,
            }
            for m in result.coverage_metrics
        },
        "threshold_warnings": list(result.threshold_warnings),
        "degraded": result.degraded_mode,
        "degradation_reason": result.degradation_reason,
    }
