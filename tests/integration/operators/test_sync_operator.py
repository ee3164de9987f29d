"""ReferenceSyncOperator against the real servers through Airflow connections (execute called directly)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET, REFERENCE_TABLES_ALIAS
from airflow_provider_refdata.operators.sync import ReferenceSyncOperator
from airflow_provider_refdata.results import SyncResult
from tests.integration.services.sync_env import PLAN, PRODUCT_LINE, SyncEnv


@pytest.fixture
def env(airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path) -> SyncEnv:
    return SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)


def test_operator_init_does_no_io_and_declares_templates():
    op = ReferenceSyncOperator(task_id="sync", config_path="/does/not/exist.yml")
    assert set(op.template_fields) == {"config_path", "tables", "plan_only", "force_full"}
    assert op.outlets == [REFERENCE_SYNC_ASSET, REFERENCE_TABLES_ALIAS]
    assert op.fail_on == "any"
    assert (op.warehouse_conn_id, op.mysql_conn_id) == ("refdata_warehouse", "refdata_legacy_mysql")


def test_operator_syncs_and_returns_results(env, caplog, capsys):
    op = ReferenceSyncOperator(task_id="sync", config_path=str(env.config_path), tables="annuity_plan,product_line")
    with caplog.at_level("INFO"):
        results = op.execute(context={})
    assert [type(r) for r in results] == [SyncResult, SyncResult]
    assert [(r.rows_inserted, r.error) for r in results] == [(3, None), (3, None)]
    # the task logger is structlog in Airflow 3 (printed), the service logs through logging
    logged = caplog.text + "".join(capsys.readouterr())
    assert "Reference sync summary" in logged and f"{env.schema}.{PLAN}" in logged
    planned = ReferenceSyncOperator(task_id="plan", config_path=str(env.config_path), plan_only="true").execute({})
    assert [r.plan_only for r in planned] == [True] * 4
    assert (planned[0].rows_read, planned[0].rows_unchanged) == (1, 1)  # incremental: inside the lookback window


def test_operator_fails_when_any_table_failed_unless_fail_on_all(env):
    env.mysql("DROP TABLE organization")
    op = ReferenceSyncOperator(task_id="sync", config_path=str(env.config_path), source_retry_wait_seconds=0.01)
    # every table is attempted (each in its own transaction) before the task fails, naming the failed one
    with pytest.raises(AirflowException, match=r"^1 of 4 reference table\(s\) failed: .*组织架构: .*organization"):
        op.execute({})
    assert len(env.rows(PLAN)) == 3 and len(env.rows(PRODUCT_LINE)) == 3
    lenient = ReferenceSyncOperator(
        task_id="lenient", config_path=str(env.config_path), fail_on="all", source_retry_wait_seconds=0.01
    )
    results = lenient.execute({})
    assert [r.error is not None for r in results] == [False, False, True, False]
    only_failed = ReferenceSyncOperator(
        task_id="all_failed", config_path=str(env.config_path), fail_on="all", tables="organization"
    )
    with pytest.raises(AirflowException, match="1 of 1 reference table.*组织架构"):
        only_failed.execute({})


def test_fail_on_error_still_works_and_maps_to_fail_on(env):
    env.mysql("DROP TABLE organization")
    with pytest.warns(DeprecationWarning, match="fail_on"):
        strict = ReferenceSyncOperator(
            task_id="strict", config_path=str(env.config_path), fail_on_error=True, tables=["organization"]
        )
    assert strict.fail_on == "any"
    with pytest.raises(AirflowException, match="1 of 1 reference table"):
        strict.execute({})
    with pytest.warns(DeprecationWarning):
        lenient = ReferenceSyncOperator(
            task_id="lenient_old",
            config_path=str(env.config_path),
            fail_on_error=False,
            tables="annuity_plan,organization",
        )
    assert lenient.fail_on == "all"
    assert [r.error is not None for r in lenient.execute({})] == [False, True]
    with pytest.raises(ValueError, match="contradicts"):
        ReferenceSyncOperator(task_id="both", fail_on="all", fail_on_error=True)
    with pytest.raises(ValueError, match="fail_on must be one of any, all"):
        ReferenceSyncOperator(task_id="bad", fail_on="some")


def test_source_retries_do_not_touch_the_task_retries():
    op = ReferenceSyncOperator(task_id="sync_retries", retries=0, source_retries=1)
    assert op.retries == 0, "Airflow's task retries stay the caller's"
    assert op.source_retries == 1
