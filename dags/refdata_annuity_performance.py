"""Monthly annuity performance facts: make every FK value exist before the facts are loaded.

``load_staging`` (the month's fact file → a staging table) → ``coverage_check`` (coverage only, a check)
→ ``selective_backfill`` (missing keys only, auto-derived and flagged for review) → ``decide`` (reads the
:class:`~airflow_provider_refdata.results.HybridResult` from XCom: fail when degraded, hold the facts when a
threshold is exceeded or in plan-only mode) → ``load_facts`` or ``hold_facts``.

Triggered manually (form: ``month``, ``fact_file``, ``auto_derived_threshold``, ``plan_only``) or by the
Asset the reference-sync DAG emits, so a fresh authoritative sync re-checks the current month.

Every form field is optional: an empty form checks and loads the previous month (Asia/Shanghai) from
``$REFDATA_FACT_DIR/annuity_performance_<YYYYMM>.csv``.  A month not written ``YYYY-MM`` or a missing file
fails ``load_staging`` with one line naming it and the months whose files exist.

Settings read at run time, never at parse time: ``REFDATA_CONFIG_DIR`` (``foreign_keys.yml``),
``REFDATA_FACT_DIR`` (default folder of the fact files, ``annuity_performance_<YYYYMM>.csv``),
``REFDATA_STAGING_SCHEMA`` (default ``staging``) and ``REFDATA_FACT_SCHEMA`` (default ``business``).

Only the provider's public API is used (operators, assets, results), so the file is a template to copy.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET
from airflow_provider_refdata.operators import FactLoadOperator, FactStageOperator, HybridReferenceOperator

DOMAIN = "annuity_performance"
WAREHOUSE_CONN_ID = "refdata_warehouse"
FACT_TABLE = "规模明细"
MONTH_COLUMN = "月度"
TZ = "Asia/Shanghai"

log = logging.getLogger(__name__)


with DAG(
    dag_id="refdata_annuity_performance",
    description="Coverage check and selective backfill of reference data, then load the month's annuity facts",
    schedule=[REFERENCE_SYNC_ASSET],
    start_date=datetime(2024, 1, 1, tzinfo=pendulum.timezone(TZ)),
    catchup=False,
    max_active_runs=1,
    tags=["refdata", "annuity"],
    params={
        # Optional fields take null, or the Airflow UI marks them required and an empty form cannot submit.
        "month": Param(
            None,
            type=["null", "string"],
            title="Month",
            description="Fact month as YYYY-MM; empty = the previous month (Asia/Shanghai).",
        ),
        "fact_file": Param(
            None,
            type=["null", "string"],
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
    # The staging table's name, e.g. "staging"."annuity_performance_202611", is the XCom the next tasks read.
    staged = FactStageOperator(
        task_id="load_staging",
        domain=DOMAIN,
        month="{{ params.month or '' }}",
        fact_file="{{ params.fact_file or '' }}",
        timezone=TZ,
        warehouse_conn_id=WAREHOUSE_CONN_ID,
    ).output

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

    load_facts = FactLoadOperator(
        task_id="load_facts",
        staging_table=staged,
        fact_table=FACT_TABLE,
        replace_column=MONTH_COLUMN,  # re-running a month replaces its rows instead of duplicating them
        warehouse_conn_id=WAREHOUSE_CONN_ID,
    )

    @task
    def hold_facts() -> None:
        """Nothing is loaded: review the auto-derived rows (or re-run without plan_only / with a higher threshold)."""
        log.warning("Facts held back; see the selective_backfill result")

    staged >> coverage_check >> selective_backfill >> decide() >> [load_facts, hold_facts()]
