"""ReferenceHealthOperator against the real PostgreSQL and a real webhook server (execute called directly)."""

from __future__ import annotations

import pytest
from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_refdata.exceptions import RefdataConfigError
from airflow_provider_refdata.notifications import ReferenceHealthNotifier
from airflow_provider_refdata.operators.health import ReferenceHealthOperator
from airflow_provider_refdata.results import Alert, TableHealth
from tests.integration.notifications.webhook_server import WebhookServer
from tests.integration.steward_scenario import HEALTH_WITH_FAIL, scenario_in_env


class RecordingNotifier(BaseNotifier):
    """A user's notifier: keeps what it was asked to send (its template rendered with the context)."""

    template_fields = ("text",)

    def __init__(self, text: str = "{{ refdata_message }}") -> None:
        super().__init__()
        self.text = text
        self.sent: list[tuple[str, list[str]]] = []

    def notify(self, context) -> None:
        self.sent.append((self.text, [f"{a.level}:{a.rule}" for a in context["refdata_alerts"]]))


@pytest.fixture
def scenario(airflow_connections, pg_server, pg_schema, tmp_path, monkeypatch):
    yield from scenario_in_env(pg_server, pg_schema, tmp_path, monkeypatch)


@pytest.fixture
def server():
    with WebhookServer() as running:
        yield running


def test_init_does_no_io_and_declares_templates(monkeypatch):
    monkeypatch.setenv("REFDATA_CONFIG_DIR", "/does/not/exist")
    op = ReferenceHealthOperator(task_id="health", webhook_conn_id="refdata_health_webhook", webhook_format="wecom")
    assert set(op.template_fields) == {"tables", "config_path", "fk_config_path", "domain", "fail_on_alerts"}
    (notifier,) = op.notifiers
    assert isinstance(notifier, ReferenceHealthNotifier) and notifier.payload_format == "wecom"
    with pytest.raises(ValueError, match="table_source"):
        ReferenceHealthOperator(task_id="bad", table_source="everything")
    with pytest.raises(TypeError, match="notifiers"):
        ReferenceHealthOperator(task_id="bad2", notifiers=["not a notifier"])


def test_warn_alerts_are_sent_to_every_notifier_and_the_snapshot_is_stored(scenario, server):
    recording = RecordingNotifier("{{ refdata_alerts | length }} alert(s): {{ refdata_message }}")
    op = ReferenceHealthOperator(
        task_id="health", notifiers=[ReferenceHealthNotifier(webhook_url=server.url), recording]
    )
    result = op.execute({})
    tables = [f"{scenario.schema}.{t}" for t in ("年金计划", "组合计划", "组织架构", "产品线")]
    assert [h.table for h in result["tables"]] == tables  # sync tables and FK targets, once each
    assert all(isinstance(h, TableHealth) for h in result["tables"])
    plan = result["tables"][0]
    assert (plan.total_rows, plan.auto_derived_rows, plan.needs_review_rows, plan.open_placeholders) == (5, 3, 3, 3)
    (alert,) = result["alerts"]
    assert isinstance(alert, Alert) and (alert.table, alert.rule, alert.level) == (
        scenario.plan,
        "auto_derived_ratio",
        "warn",
    )
    assert scenario.snapshots() == [(t, n, o, None) for t, n, o in zip(tables, (5, 0, 0, 0), (3, 0, 0, 0), strict=True)]
    (request,) = server.received
    assert request.json["text"].splitlines() == [
        "Reference data health: 1 alert (0 fail, 1 warn)",
        f"[WARN] {alert.message}",
    ]
    assert recording.sent == [
        (
            f"1 alert(s): Reference data health: 1 alert (0 fail, 1 warn)\n[WARN] {alert.message}",
            ["warn:auto_derived_ratio"],
        )
    ]


def test_fail_alerts_notify_first_then_fail_the_task_unless_switched_off(scenario, server):
    scenario.write_sync_config(HEALTH_WITH_FAIL)
    recording = RecordingNotifier()
    op = ReferenceHealthOperator(task_id="health", tables="annuity_plan", notifiers=[recording], store=False)
    with pytest.raises(AirflowFailException, match=r"1 fail-level health alert\(s\): .*3 rows need review"):
        op.execute({})
    assert recording.sent[0][1] == ["warn:auto_derived_ratio", "fail:needs_review_count"]
    assert scenario.snapshots() == []  # store=False
    lenient = ReferenceHealthOperator(task_id="lenient", tables=[scenario.plan], fail_on_alerts="false")
    result = lenient.execute({})
    assert [a.level for a in result["alerts"]] == ["warn", "fail"]
    assert scenario.snapshots() == [(scenario.plan, 5, 3, None)]


def test_a_failing_table_is_isolated_and_fails_the_check(scenario):
    missing = f"{scenario.schema}.不存在"
    op = ReferenceHealthOperator(task_id="health", tables=[scenario.plan, missing])
    with pytest.raises(AirflowFailException, match="health check failed"):
        op.execute({})
    rows = scenario.snapshots()
    assert [r[:3] for r in rows] == [(scenario.plan, 5, 3), (missing, 0, 0)]
    assert rows[0][3] is None and "does not exist" in rows[1][3]


def test_a_notifier_that_fails_does_not_stop_the_others_and_fails_the_task(scenario, server):
    server.status, server.answer = 500, {"error": "down"}
    recording = RecordingNotifier()
    notifiers = [ReferenceHealthNotifier(webhook_url=f"{server.url}/x?key=secret-token-123"), recording]
    op = ReferenceHealthOperator(task_id="health", tables=[scenario.plan], notifiers=notifiers)
    with pytest.raises(
        AirflowException, match=r"1 notifier\(s\) failed: ReferenceHealthNotifier: .*HTTP 500"
    ) as caught:
        op.execute({})
    assert "secret-token-123" not in str(caught.value)
    assert len(recording.sent) == 1 and len(server.received) == 1
    quiet = ReferenceHealthOperator(
        task_id="quiet", tables=[scenario.plan], notifiers=[ReferenceHealthNotifier(webhook_url=server.url)],
        fail_on_notify_error=False,
    )  # fmt: skip
    assert len(quiet.execute({})["alerts"]) == 1


def test_table_names_and_configuration_errors(scenario, tmp_path, monkeypatch):
    with pytest.raises(RefdataConfigError, match=r"unknown table\(s\) nope.*annuity_plan, portfolio_plan"):
        ReferenceHealthOperator(task_id="h", tables="nope").execute({})
    alone = ReferenceHealthOperator(
        task_id="h2", tables=[scenario.plan], config_path=None, fk_config_path=None, table_source="sync"
    )
    assert alone.resolve()[0] == [scenario.plan]
    fk_only = ReferenceHealthOperator(task_id="h3", table_source="foreign_keys", config_path=str(scenario.sync_config))
    assert fk_only.resolve()[0] == [f"{scenario.schema}.{t}" for t in ("年金计划", "组合计划", "组织架构", "产品线")]
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = ReferenceHealthOperator(task_id="h4", fk_config_path=None)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(empty))
    with pytest.raises(RefdataConfigError, match="no tables to check"):
        nothing.execute({})
    # Without any configuration, explicit tables are checked and only failed checks alert.
    result = ReferenceHealthOperator(task_id="h5", tables=[scenario.plan]).execute({})
    assert result["alerts"] == [] and result["tables"][0].open_placeholders == 3
