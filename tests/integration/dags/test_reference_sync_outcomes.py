"""What people see after a sync in which one table failed: a red run naming it, Assets of the other tables.

Real ``dag.test()`` runs of the DAG ``refdata_reference_sync`` against the harness's servers; the Asset events
and the scheduler's queue are read back from the Airflow metadata database, and consumer DAGs scheduled on one
table's Asset are asked, as the scheduler asks them (``DagModel.dags_needing_dagruns``), whether they are due.
"""

from __future__ import annotations

import importlib

import pytest

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET, table_asset
from tests.integration.services.sync_env import ORG, ORGS, PLAN, PORTFOLIO, PRODUCT_LINE, SyncEnv
from tests.integration.steward_scenario import dag_in_metadata_db

CONSUMERS = """
import pendulum
from airflow.sdk import DAG, task

from airflow_provider_refdata.assets import table_asset

for dag_id, schedule in (
    ("{plans}", table_asset("{schema}", "年金计划")),
    ("{orgs}", table_asset("{schema}", "组织架构")),
    ("{both}", table_asset("{schema}", "年金计划") & table_asset("{schema}", "组织架构")),
):
    with DAG(dag_id, schedule=schedule, start_date=pendulum.datetime(2025, 1, 1), catchup=False):
        task(task_id="consume")(lambda: None)()
"""


@pytest.fixture(autouse=True)
def _restore_dag_module():
    yield
    import dags.refdata_reference_sync as module

    importlib.reload(module)


def _sync_dag():
    import dags.refdata_reference_sync as module

    return importlib.reload(module).dag


def _events(run_id: str) -> dict[str, dict]:
    """Asset name -> extra of the events the run emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.name, AssetModel.uri, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_run_id == run_id)
            .all()
        )
    events = {name: extra for name, _, extra in rows}
    assert len(events) == len(rows), f"one event per Asset: {rows}"
    uris = {name: uri for name, uri, _ in rows}
    for name, uri in uris.items():
        if name.startswith("refdata.t_"):
            schema, _, table = name.removeprefix("refdata.").partition(".")
            assert uri == table_asset(schema, table).uri
    return events


def _due(dag_ids: set[str]) -> set[str]:
    """Those of ``dag_ids`` the scheduler would create an Asset-triggered run for now."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        _, triggered = DagModel.dags_needing_dagruns(session)
        due = set(triggered) & dag_ids
        session.rollback()  # only asked: the queue stays as it is
    return due


def _consumers(tmp_path, schema: str) -> dict[str, str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    ids = {"plans": f"plans_of_{schema}", "orgs": f"orgs_of_{schema}", "both": f"plans_and_orgs_of_{schema}"}
    folder = tmp_path / "consumers"
    folder.mkdir()
    dag_in_metadata_db(folder, ids["plans"], CONSUMERS.format(schema=schema, **ids))
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id.in_(ids.values())).update(
            {DagModel.is_paused: False}, synchronize_session=False
        )
    return ids


def test_one_failed_table_turns_the_run_red_and_the_other_tables_assets_fire(
    airflow_db, airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch, capsys
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path))
    consumers = _consumers(tmp_path, pg_schema)
    assert _due(set(consumers.values())) == set()
    env.mysql("RENAME TABLE organization TO organization_gone")  # one table's source is broken

    run = _sync_dag().test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_enabled": "success", "sync_reference_tables": "success", "check_all_synced": "failed"}
    assert run.state == "failed"
    logged = "".join(capsys.readouterr())
    assert f"1 of 4 reference table(s) failed: {pg_schema}.{ORG}: " in logged and "organization" in logged
    # every other table synced, each in its own transaction; the failed one wrote nothing
    assert [len(env.rows(t)) for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE)] == [3, 2, 0, 3]

    events = _events(run.run_id)
    tables = {f"refdata.{pg_schema}.{t}" for t in (PLAN, PORTFOLIO, PRODUCT_LINE)}
    assert set(events) == {REFERENCE_SYNC_ASSET.name, *tables}, "no event for the failed table"
    assert events[REFERENCE_SYNC_ASSET.name]["tables"][f"{pg_schema}.{ORG}"] == "failed"
    plan = events[f"refdata.{pg_schema}.{PLAN}"]
    assert (plan["status"], plan["rows_read"], plan["rows_inserted"], plan["rows_updated"]) == ("ok", 3, 3, 0)
    assert plan["watermark_after"] == env.watermark(PLAN).isoformat() == "2024-01-03T08:00:00"
    product_lines = events[f"refdata.{pg_schema}.{PRODUCT_LINE}"]
    assert (product_lines["sync_mode"], product_lines["rows_inserted"]) == ("delete_insert", 3)
    assert "watermark_after" not in product_lines  # a YAML table has no watermark

    # the scheduler would run the DAG on the plans' Asset, not the ones that need the organizations
    assert _due(set(consumers.values())) == {consumers["plans"]}

    # once the source is back, syncing that table alone makes the other consumers due
    env.mysql("RENAME TABLE organization_gone TO organization")
    again = _sync_dag().test(run_conf={"tables": ["organization"]})
    assert {ti.task_id: ti.state for ti in again.get_task_instances()}["check_all_synced"] == "success"
    assert again.state == "success"
    orgs = _events(again.run_id)
    assert set(orgs) == {REFERENCE_SYNC_ASSET.name, f"refdata.{pg_schema}.{ORG}"}
    assert orgs[f"refdata.{pg_schema}.{ORG}"]["rows_inserted"] == len(ORGS) == len(env.rows(ORG))
    assert _due(set(consumers.values())) == set(consumers.values())


def test_a_plan_only_run_emits_no_table_asset(
    airflow_db, airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path))
    run = _sync_dag().test(run_conf={"plan_only": True, "tables": ["annuity_plan"]})
    assert run.state == "success"
    assert env.rows(PLAN) == [] and env.watermark(PLAN) is None
    events = _events(run.run_id)
    assert set(events) == {REFERENCE_SYNC_ASSET.name}
    assert events[REFERENCE_SYNC_ASSET.name] == {"plan_only": True, "tables": {f"{pg_schema}.{PLAN}": "ok"}}
