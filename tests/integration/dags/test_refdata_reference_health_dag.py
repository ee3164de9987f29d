"""The DAG refdata_reference_health: parses without I/O, runs for real with dag.test() (PostgreSQL, webhook)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_refdata.results import Alert, TableHealth
from tests.integration.dags.dag_runs import load_dag, parsed_without_io, task_states, xcom_result
from tests.integration.notifications.webhook_server import WebhookServer
from tests.integration.steward_scenario import HEALTH_WITH_FAIL, dag_in_metadata_db

DAG_ID = "refdata_reference_health"
DAG_MODULE = f"dags.{DAG_ID}"


@pytest.fixture(autouse=True)
def _restore_dag_module():
    yield
    load_dag(DAG_MODULE)


@pytest.fixture
def webhook(monkeypatch):
    with WebhookServer() as server:
        conn = {"conn_type": "http", "host": server.url, "extra": {"endpoint": "/hook", "payload_format": "wecom"}}
        monkeypatch.setenv("AIRFLOW_CONN_REFDATA_HEALTH_WEBHOOK", json.dumps(conn))
        yield server


def test_dag_shape_and_no_io_at_parse_time(monkeypatch):
    dag = parsed_without_io(monkeypatch, DAG_ID)
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.params) == {"tables", "fail_on_alerts"}
    assert all(dag.params.get_param(p).description for p in dag.params)
    assert "Asset" in type(dag.timetable).__name__
    assert "refdata://reference_sync" in repr(dag.timetable.asset_condition)
    assert [t.task_id for t in dag.tasks] == ["check_reference_health"]


def test_warn_alerts_are_sent_and_the_run_succeeds(scenario, webhook):
    run = load_dag(DAG_MODULE).test()
    assert task_states(run) == {"check_reference_health": "success"}
    result = xcom_result(run, "check_reference_health")
    assert [type(h) for h in result["tables"]] == [TableHealth] * 4
    assert [(a.table, a.rule, a.level) for a in result["alerts"]] == [(scenario.plan, "auto_derived_ratio", "warn")]
    assert [type(a) for a in xcom_result(run, "check_reference_health", "refdata_alerts")] == [Alert]
    assert [s[:3] for s in scenario.snapshots()][0] == (scenario.plan, 5, 3)
    assert len(scenario.snapshots()) == 4
    (request,) = webhook.received
    assert request.path == "/hook" and request.json["msgtype"] == "text"
    assert request.json["text"]["content"].splitlines()[0] == (
        f"Reference data health in {DAG_ID}.check_reference_health: 1 alert (0 fail, 1 warn)"
    )


def test_fail_alerts_fail_the_run_after_notifying_unless_switched_off(scenario, webhook):
    scenario.write_sync_config(HEALTH_WITH_FAIL)
    dag = load_dag(DAG_MODULE)
    failed = dag.test(run_conf={"tables": ["annuity_plan"]})
    assert task_states(failed) == {"check_reference_health": "failed"}
    assert len(webhook.received) == 1 and "[FAIL]" in webhook.received[0].json["text"]["content"]
    lenient = load_dag(DAG_MODULE).test(run_conf={"tables": [scenario.plan], "fail_on_alerts": False})
    assert task_states(lenient) == {"check_reference_health": "success"}
    assert len(webhook.received) == 2
    assert [s[:3] for s in scenario.snapshots()] == [(scenario.plan, 5, 3)] * 2


def test_without_the_webhook_connection_the_check_still_runs(scenario, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_REFDATA_HEALTH_WEBHOOK", raising=False)
    run = load_dag(DAG_MODULE).test(run_conf={"tables": ["annuity_plan"]})
    assert task_states(run) == {"check_reference_health": "success"}
    assert [a.rule for a in xcom_result(run, "check_reference_health")["alerts"]] == ["auto_derived_ratio"]


CALLBACK_DAG = """
import pendulum
from airflow.sdk import DAG

from airflow_provider_refdata.notifications import ReferenceHealthNotifier
from airflow_provider_refdata.operators.health import ReferenceHealthOperator

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1)) as dag:
    ReferenceHealthOperator(
        task_id="health",
        tables={tables!r},
        on_failure_callback=ReferenceHealthNotifier(webhook_url={url!r}, payload_format="wecom"),
    )
"""


def test_notifier_as_failure_callback_of_the_health_task_lists_the_alerts(scenario, tmp_path):
    scenario.write_sync_config(HEALTH_WITH_FAIL)
    dag_id = f"refdata_test_health_callback_{scenario.schema}"
    with WebhookServer() as server:
        source = CALLBACK_DAG.format(dag_id=dag_id, tables=[scenario.plan], url=server.url)
        run = dag_in_metadata_db(tmp_path, dag_id, source).test()
        assert task_states(run) == {"health": "failed"}
        (request,) = server.received
    lines = request.json["text"]["content"].splitlines()
    assert lines[0] == f"Reference data health in {dag_id}.health: 2 alerts (1 fail, 1 warn)"
    assert lines[1].startswith(f"[FAIL] {scenario.plan}: 3 rows need review")
    assert lines[2].startswith(f"[WARN] {scenario.plan}: auto-derived ratio 60.00%")
