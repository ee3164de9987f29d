"""Three fact-domain DAGs for ``make test-celery``: stage the month's facts, backfill, check, (load).

``refdata_celery_annuity_performance`` and ``refdata_celery_annuity_income`` use the shipped
``$REFDATA_CONFIG_DIR/foreign_keys.yml`` and both reference ``business.年金计划`` and ``business.组合计划``: run at
the same time on different Celery workers, they backfill overlapping missing keys concurrently.
``refdata_celery_branch_report`` uses the FK file shipped next to this DAG (``branch_report.yml``, domain
``branch_report``: branches and product lines only), which every worker has because it is part of the bundle.

Each DAG: ``load_staging`` (the month's ``$REFDATA_FACT_DIR/<domain>_<YYYYMM>.csv`` into a staging table) →
``ensure_references`` (coverage + selective backfill; a degraded result fails the task) → ``check_coverage``
(coverage only, after the backfill) → ``assert_covered`` (fails unless every FK value is covered); the
annuity-performance DAG then loads its facts into ``business."规模明细"`` (real foreign keys).  Manual triggers
only (``month``: ``YYYY-MM``), no retries.  Only the provider's public API is used; parsing does no I/O.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_refdata.operators import FactLoadOperator, FactStageOperator, HybridReferenceOperator

TIMEZONE = "Asia/Shanghai"
BRANCH_REPORT_FK_FILE = str(Path(__file__).resolve().with_name("branch_report.yml"))


@task
def assert_covered(ti=None) -> float:
    """Fail unless the coverage check after the backfill found every FK value in its reference table."""
    from airflow.sdk.exceptions import AirflowFailException

    result = ti.xcom_pull(task_ids="check_coverage")
    missing = {m.fk_name: m.missing_values for m in result.coverage_metrics if m.missing_values}
    if missing or result.degraded_mode:
        reason = missing or result.degradation_reason
        raise AirflowFailException(f"FK values still missing after the backfill: {reason}")
    return result.pre_load_coverage


def domain_dag(domain: str, *, fk_config_path: str | None = None, fact_table: str | None = None) -> DAG:
    """The DAG ``refdata_celery_<domain>``; with ``fact_table`` it also loads the staged facts there."""
    with DAG(
        dag_id=f"refdata_celery_{domain}",
        description=f"make test-celery: backfill and check the references of the {domain} facts",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
        catchup=False,
        default_args={"retries": 0},
        tags=["refdata", "test-celery"],
        params={"month": Param(None, type=["null", "string"], description="YYYY-MM; empty = the previous month")},
    ) as dag:
        staged = FactStageOperator(
            task_id="load_staging", domain=domain, month="{{ params.month or '' }}", timezone=TIMEZONE
        ).output
        ensure = HybridReferenceOperator(
            task_id="ensure_references",
            domain=domain,
            table=staged,
            fk_config_path=fk_config_path,
            auto_derived_threshold=1.0,  # this test counts the rows itself; no threshold warnings
            fail_on_degraded=True,
        )
        check = HybridReferenceOperator(
            task_id="check_coverage",
            domain=domain,
            table=staged,
            fk_config_path=fk_config_path,
            coverage_only=True,
            fail_on_degraded=True,
        )
        covered = assert_covered()
        ensure >> check >> covered
        if fact_table:
            covered >> FactLoadOperator(
                task_id="load_facts", staging_table=staged, fact_table=fact_table, replace_column="月度"
            )
    return dag


annuity_performance = domain_dag("annuity_performance", fact_table="规模明细")
annuity_income = domain_dag("annuity_income")
branch_report = domain_dag("branch_report", fk_config_path=BRANCH_REPORT_FK_FILE)
