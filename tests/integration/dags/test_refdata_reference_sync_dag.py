"""The DAG refdata_reference_sync: parses without I/O, and runs end to end with dag.test() on real servers."""

from __future__ import annotations

import importlib
import json

import pytest

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET
from airflow_provider_refdata.results import SyncResult
from tests.integration.services.sync_env import PLAN, PORTFOLIO, PRODUCT_LINE, SyncEnv


def _load_dag():
    import dags.refdata_reference_sync as module

    return importlib.reload(module).dag


def test_dag_shape_and_no_io_at_parse_time(monkeypatch, tmp_path):
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path / "does-not-exist"))
    dag = _load_dag()
    assert dag.dag_id == "refdata_reference_sync" and dag.catchup is False
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 1 * * *", "Asia/Shanghai")
    assert set(dag.params) == {"tables", "plan_only", "force_full"}
    assert all(dag.params.get_param(p).description for p in dag.params)
    assert [t.task_id for t in dag.tasks] == ["check_enabled", "sync_reference_tables", "check_all_synced"]


def _xcom(dag_run, task_id):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .one()
        )
        value = row.value
    # the stored form is serde's JSON; deserialize() turns it back into the registered SyncResult models
    from airflow.sdk.serde import deserialize

    return deserialize(json.loads(value) if isinstance(value, str) else value)


def test_dag_runs_end_to_end_with_results_in_xcom(
    airflow_db, airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path))
    dag = _load_dag()
    run = dag.test(run_conf={"tables": ["annuity_plan", "portfolio_plan", "product_line"]})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_enabled": "success", "sync_reference_tables": "success", "check_all_synced": "success"}
    results = _xcom(run, "sync_reference_tables")
    assert all(isinstance(r, SyncResult) for r in results)
    assert [r.rows_inserted for r in results] == [3, 2, 3]
    assert [r.table for r in results] == [f"{env.schema}.{t}" for t in (PLAN, PORTFOLIO, PRODUCT_LINE)]
    assert len(env.rows(PLAN)) == 3 and len(env.rows(PRODUCT_LINE)) == 3
    # domain DAGs scheduled on the asset see an event describing the run
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == REFERENCE_SYNC_ASSET.uri, AssetEvent.source_run_id == run.run_id)
            .all()
        )
        assert len(events) == 1
        assert events[0].extra["tables"] == {r.table: "ok" for r in results}


def test_dag_is_skipped_cleanly_when_disabled(
    airflow_db, airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    env.write_config(enabled=False)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path))
    run = _load_dag().test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_enabled": "skipped", "sync_reference_tables": "skipped", "check_all_synced": "skipped"}
    assert env.rows(PLAN) == []


@pytest.fixture(autouse=True)
def _restore_dag_module():
    yield
    import dags.refdata_reference_sync as module

    importlib.reload(module)


def test_default_config_path_is_the_shipped_configuration(monkeypatch):
    from airflow_provider_refdata.config import load_sync_config
    from airflow_provider_refdata.operators.sync import default_config_path
    from tests.conftest import REPO_ROOT

    monkeypatch.delenv("REFDATA_CONFIG_DIR", raising=False)
    assert default_config_path() == REPO_ROOT / "config" / "reference_sync.yml"
    config = load_sync_config(default_config_path())
    assert [(t.name, t.source_type, t.sync_mode) for t in config.tables] == [
        ("annuity_plan", "legacy_mysql", "upsert"),
        ("portfolio_plan", "legacy_mysql", "upsert"),
        ("organization", "legacy_mysql", "upsert"),
        ("product_line", "config_file", "delete_insert"),
    ]
