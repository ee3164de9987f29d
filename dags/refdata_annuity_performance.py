"""Monthly annuity performance facts: make every FK value exist before the facts are loaded.

``load_staging`` (the month's fact file → a staging table) → ``coverage_check`` (coverage only, a check)
→ ``selective_backfill`` (missing keys only, auto-derived and flagged for review) → ``decide`` (reads the
:class:`~airflow_provider_refdata.results.HybridResult` from XCom: fail when degraded, hold the facts when a
threshold is exceeded or in plan-only mode) → ``load_facts`` or ``hold_facts``.

Triggered manually (form: ``month``, ``fact_file``, ``auto_derived_threshold``, ``plan_only``) or by the
Asset the reference-sync DAG emits, so a fresh authoritative sync re-checks the current month.

Settings read at run time, never at parse time: ``REFDATA_CONFIG_DIR`` (``foreign_keys.yml``),
``REFDATA_FACT_DIR`` (default folder of the fact files, ``annuity_performance_<YYYYMM>.csv``),
``REFDATA_STAGING_SCHEMA`` (default ``staging``) and ``REFDATA_FACT_SCHEMA`` (default ``business``).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET
from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator

DOMAIN = "annuity_performance"
WAREHOUSE_CONN_ID = "refdata_warehouse"
FACT_TABLE = "规模明细"
MONTH_COLUMN = "月度"
TZ = "Asia/Shanghai"

log = logging.getLogger(__name__)


def _month(params: dict[str, Any]) -> str:
    """``YYYY-MM`` from the params, or the previous month (Asia/Shanghai) when empty."""
    if params.get("month"):
        return str(params["month"])
    return pendulum.now(TZ).subtract(months=1).format("YYYY-MM")


def _warehouse():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=WAREHOUSE_CONN_ID)


with DAG(
    dag_id="refdata_annuity_performance",
    description="Coverage check and selective backfill of reference data, then load the month's annuity facts",
    schedule=[REFERENCE_SYNC_ASSET],
    start_date=datetime(2024, 1, 1, tzinfo=pendulum.timezone(TZ)),
    catchup=False,
    max_active_runs=1,
    tags=["refdata", "annuity"],
    params={
        "month": Param(
            "",
            type="string",
            pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
            title="Month",
            description="Fact month as YYYY-MM; empty = the previous month (Asia/Shanghai).",
        ),
        "fact_file": Param(
            "",
            type="string",
            title="Fact file",
            description="CSV, Parquet or Excel file with the month's facts; empty = "
            "$REFDATA_FACT_DIR/annuity_performance_<YYYYMM>.csv.",
        ),
        "auto_derived_threshold": Param(
            0.10,
            type="number",
            minimum=0,
            maximum=1,
            title="Auto-derived threshold",
            description="Hold the facts for review when more than this share of a reference table is auto-derived.",
        ),
        "plan_only": Param(
            False,
            type="boolean",
            title="Plan only",
            description="Report what would be backfilled; write no reference rows and load no facts.",
        ),
    },
) as dag:

    @task
    def load_staging(params: dict[str, Any] | None = None) -> str:
        """Load the month's fact file into a fresh staging table (all columns text) with COPY; returns its name."""
        from psycopg import sql

        from airflow_provider_refdata.operators.hybrid import read_fact_file
        from airflow_provider_refdata.warehouse.connection import warehouse_connection
        from airflow_provider_refdata.warehouse.staging import copy_frame

        params = params or {}
        month = _month(params)
        fact_file = params.get("fact_file") or str(
            Path(os.environ.get("REFDATA_FACT_DIR", "data/facts")) / f"annuity_performance_{month.replace('-', '')}.csv"
        )
        facts = read_fact_file(fact_file)
        schema = os.environ.get("REFDATA_STAGING_SCHEMA", "staging")
        table = f"annuity_performance_{month.replace('-', '')}"
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        with warehouse_connection(_warehouse()) as pg, pg.transaction():
            pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            pg.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    target, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(str(c))) for c in facts.columns)
                )
            )
            copy_frame(pg, table, facts, schema=schema)
        log.info("Staged %d fact rows of %s from %s into %s.%s", len(facts), month, fact_file, schema, table)
        return f'"{schema}"."{table}"'

    staged = load_staging()

    coverage_check = HybridReferenceOperator(
        task_id="coverage_check",
        domain=DOMAIN,
        table=staged,
        coverage_only=True,
        auto_derived_threshold="{{ params.auto_derived_threshold }}",
        warehouse_conn_id=WAREHOUSE_CONN_ID,
    )

    selective_backfill = HybridReferenceOperator(
        task_id="selective_backfill",
        domain=DOMAIN,
        table=staged,
        auto_derived_threshold="{{ params.auto_derived_threshold }}",
        plan_only="{{ params.plan_only }}",
        warehouse_conn_id=WAREHOUSE_CONN_ID,
    )

    @task.branch
    def decide(ti=None) -> str:
        """Fail on a degraded run; hold the facts on threshold warnings or in plan-only mode; else load."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_provider_refdata.results import HybridResult

        check = ti.xcom_pull(task_ids="coverage_check")
        if isinstance(check, HybridResult) and check.coverage_only:
            log.info(
                "Coverage check before backfill: %.2f%% of the FK values covered, auto-derived ratio %.2f%%",
                check.pre_load_coverage * 100,
                check.auto_derived_ratio * 100,
            )
        result = ti.xcom_pull(task_ids="selective_backfill")
        if not isinstance(result, HybridResult):
            raise TypeError(f"expected a HybridResult from selective_backfill, got {type(result).__name__}")
        if result.coverage_only:
            # A check measured coverage and backfilled nothing: it must never be taken for a backfill.
            raise AirflowFailException("selective_backfill returned a coverage check, not a backfill")
        if result.degraded_mode:
            raise AirflowFailException(f"reference data degraded: {result.degradation_reason}")
        if result.plan_only:
            log.info("Plan only: the facts are not loaded")
            return "hold_facts"
        if result.threshold_warnings:
            for warning in result.threshold_warnings:
                log.warning("Threshold exceeded: %s", warning)
            return "hold_facts"
        return "load_facts"

    @task
    def load_facts(staging_table: str) -> int:
        """Replace the month's rows of the fact table with the staged rows; returns the rows loaded."""
        from psycopg import sql

        from airflow_provider_refdata.operators.hybrid import split_table_name
        from airflow_provider_refdata.warehouse.catalog import table_info
        from airflow_provider_refdata.warehouse.connection import warehouse_connection
        from airflow_provider_refdata.warehouse.sqlbits import ident_list
        from airflow_provider_refdata.warehouse.staging import converted_value

        stage_schema, stage_table = split_table_name(staging_table)
        fact_schema = os.environ.get("REFDATA_FACT_SCHEMA", "business")
        stage = sql.SQL("{}.{}").format(sql.Identifier(stage_schema), sql.Identifier(stage_table))
        fact = sql.SQL("{}.{}").format(sql.Identifier(fact_schema), sql.Identifier(FACT_TABLE))
        with warehouse_connection(_warehouse()) as pg, pg.transaction():
            staged_columns = list(table_info(pg, stage_schema, stage_table).columns)
            pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(fact_schema)))
            pg.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(fact, stage))
            fact_columns = table_info(pg, fact_schema, FACT_TABLE).columns
            columns = [c for c in staged_columns if c in fact_columns]

            def typed(column: str) -> sql.Composable:
                # The stage is all text: convert to the fact column's type, never truncating text.
                return converted_value(sql.Identifier("s", column), fact_columns[column])

            if MONTH_COLUMN in columns:
                # Re-running a month replaces its rows instead of duplicating them.
                pg.execute(
                    sql.SQL("DELETE FROM {} WHERE {} IN (SELECT DISTINCT {} FROM {} AS s)").format(
                        fact, sql.Identifier(MONTH_COLUMN), typed(MONTH_COLUMN), stage
                    )
                )
            loaded = pg.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} AS s").format(
                    fact, ident_list(columns), sql.SQL(", ").join(typed(c) for c in columns), stage
                )
            ).rowcount
        log.info("Loaded %d fact rows into %s.%s", loaded, fact_schema, FACT_TABLE)
        return loaded

    @task
    def hold_facts() -> None:
        """Nothing is loaded: review the auto-derived rows (or re-run without plan_only / with a higher threshold)."""
        log.warning("Facts held back; see the selective_backfill result")

    staged >> coverage_check >> selective_backfill >> decide() >> [load_facts(staged), hold_facts()]
