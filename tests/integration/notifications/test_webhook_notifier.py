"""ReferenceHealthNotifier against a real HTTP server on loopback: bodies, connections, errors, secrets, callbacks."""

from __future__ import annotations

import json

import pytest

from airflow_provider_refdata.notifications import RefdataNotifyError, ReferenceHealthNotifier
from airflow_provider_refdata.results import Alert
from tests.integration.notifications.webhook_server import WebhookServer
from tests.integration.steward_scenario import dag_in_metadata_db

TOKEN = "wecom-secret-key-0123456789"

ALERTS = [
    Alert(
        table="business.年金计划",
        rule="auto_derived_ratio",
        level="warn",
        value=0.2,
        threshold=0.1,
        message="business.年金计划: auto-derived ratio 20.00% is above the warn threshold 10.00%",
    ),
    Alert(
        table="business.组合计划",
        rule="placeholder_age_days",
        level="fail",
        value=40.0,
        threshold=30.0,
        message="business.组合计划: the oldest of 3 open placeholders is 40.0 days old",
    ),
]


@pytest.fixture
def server():
    with WebhookServer() as running:
        yield running


def _logged(caplog, capsys) -> str:
    return caplog.text + "".join(capsys.readouterr())


def test_url_target_wecom_body_with_alerts_fail_first(server, caplog, capsys):
    notifier = ReferenceHealthNotifier(webhook_url=f"{server.url}/hook?key={TOKEN}", payload_format="wecom")
    with caplog.at_level("INFO"):
        notifier({"refdata_alerts": ALERTS})
    (request,) = server.received
    assert request.path == f"/hook?key={TOKEN}"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    body = request.json
    assert body["msgtype"] == "text" and set(body) == {"msgtype", "text"}
    lines = body["text"]["content"].splitlines()
    assert lines == [
        "Reference data health: 2 alerts (1 fail, 1 warn)",
        "[FAIL] business.组合计划: the oldest of 3 open placeholders is 40.0 days old",
        "[WARN] business.年金计划: auto-derived ratio 20.00% is above the warn threshold 10.00%",
    ]
    assert "年金计划".encode() in request.body  # UTF-8 on the wire, not \\u escapes
    logged = _logged(caplog, capsys)
    assert f"127.0.0.1:{server.port}" in logged and TOKEN not in logged


def test_http_connection_with_token_param_endpoint_and_header_extras(server, monkeypatch, caplog, capsys):
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": server.port,
        "schema": "http",
        "password": TOKEN,
        "extra": {
            "endpoint": "/cgi-bin/webhook/send?debug=1",
            "token_param": "key",
            "X-Team": "refdata",
            "payload_format": "dingtalk",
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_REFDATA_TEST_WEBHOOK", json.dumps(conn))
    notifier = ReferenceHealthNotifier(webhook_conn_id="refdata_test_webhook")  # format from the extra
    with caplog.at_level("INFO"):
        notifier({"refdata_alerts": ALERTS[:1]})
    (request,) = server.received
    assert request.path == f"/cgi-bin/webhook/send?debug=1&key={TOKEN}"
    assert request.headers["x-team"] == "refdata"
    assert "authorization" not in request.headers and "payload_format" not in request.headers
    assert request.json["text"]["content"].startswith("Reference data health: 1 alert (0 fail, 1 warn)")
    assert TOKEN not in _logged(caplog, capsys)


def test_basic_auth_from_login_and_password_and_feishu_body(server, monkeypatch):
    conn = {"conn_type": "http", "host": f"{server.url}/open-apis/bot/v2/hook", "login": "bot", "password": "pw"}
    monkeypatch.setenv("AIRFLOW_CONN_REFDATA_TEST_FEISHU", json.dumps(conn))
    ReferenceHealthNotifier(webhook_conn_id="refdata_test_feishu", payload_format="feishu")({"refdata_alerts": ALERTS})
    (request,) = server.received
    assert request.path == "/open-apis/bot/v2/hook"
    assert request.headers["authorization"] == "Basic Ym90OnB3"  # bot:pw
    assert request.json["msg_type"] == "text" and "[FAIL]" in request.json["content"]["text"]


def test_custom_payload_and_message_templates_render_per_call(server):
    notifier = ReferenceHealthNotifier(
        webhook_url=server.url,
        message="{{ refdata_alerts | length }} alert(s) on {{ refdata_alerts[0].table }}",
        payload={"content": "{{ refdata_message }}", "tags": ["refdata", "{{ refdata_alerts[0].level }}"]},
    )
    notifier({"refdata_alerts": ALERTS})
    notifier({"refdata_alerts": ALERTS[1:]})  # the same object again: rendered from its templates, not stale text
    first, second = (r.json for r in server.received)
    assert first == {"content": "2 alert(s) on business.年金计划", "tags": ["refdata", "warn"]}
    assert second == {"content": "1 alert(s) on business.组合计划", "tags": ["refdata", "fail"]}
    assert notifier.payload == {
        "content": "{{ refdata_message }}",
        "tags": ["refdata", "{{ refdata_alerts[0].level }}"],
    }


def test_long_messages_are_cut_at_whole_lines_to_the_format_limit(server):
    many = [
        ALERTS[0].model_copy(update={"table": f"business.表{i}", "message": f"business.表{i}: 自动派生比例过高 " * 4})
        for i in range(100)
    ]
    ReferenceHealthNotifier(webhook_url=server.url, payload_format="wecom")({"refdata_alerts": many})
    content = server.received[0].json["text"]["content"]
    assert len(content.encode()) <= 2000
    lines = content.splitlines()
    assert lines[0] == "Reference data health: 100 alerts (0 fail, 100 warn)"
    kept = len(lines) - 2
    assert kept > 5 and lines[-1] == f"… and {100 - kept} more alerts"
    assert all(line.startswith("[WARN] business.表") for line in lines[1:-1])


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (200, {"errcode": 93000, "errmsg": "invalid webhook url"}, "errcode 93000: invalid webhook url"),
        (200, {"code": 19021, "msg": "sign match fail"}, "code 19021: sign match fail"),
        (500, {"error": "boom"}, "HTTP 500"),
    ],
)
def test_refused_messages_raise_naming_only_the_host(server, status, answer, expected, caplog, capsys):
    server.status, server.answer = status, answer
    notifier = ReferenceHealthNotifier(webhook_url=f"{server.url}/send?key={TOKEN}", payload_format="wecom")
    with pytest.raises(RefdataNotifyError) as caught:
        notifier({"refdata_alerts": ALERTS})
    assert expected in str(caught.value) and f"http://127.0.0.1:{server.port}" in str(caught.value)
    assert caught.value.target == f"http://127.0.0.1:{server.port}" and caught.value.status == status
    assert TOKEN not in str(caught.value) + _logged(caplog, capsys)
    assert len(server.received) == 1


def test_unreachable_webhook_and_missing_connections(server, caplog, capsys):
    from airflow.sdk.exceptions import AirflowNotFoundException

    port = server.port
    server.__exit__(None, None, None)  # nothing listens on the port any more
    with pytest.raises(RefdataNotifyError, match=rf"cannot reach webhook http://127.0.0.1:{port}"):
        ReferenceHealthNotifier(webhook_url=f"http://127.0.0.1:{port}/x?key={TOKEN}")({"refdata_alerts": ALERTS})
    with caplog.at_level("WARNING"):
        ReferenceHealthNotifier(webhook_conn_id="refdata_no_such_webhook", missing_connection="warn")({})
    assert "refdata_no_such_webhook is not defined" in _logged(caplog, capsys)
    with pytest.raises(AirflowNotFoundException):
        ReferenceHealthNotifier(webhook_conn_id="refdata_no_such_webhook")({})


def test_arguments_are_checked_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="exactly one of webhook_conn_id or webhook_url"):
        ReferenceHealthNotifier()
    with pytest.raises(ValueError, match="payload_format"):
        ReferenceHealthNotifier(webhook_url="http://x", payload_format="teams")
    with pytest.raises(RefdataNotifyError, match="must be http"):
        ReferenceHealthNotifier(webhook_url="file:///etc/passwd")({})


CALLBACK_DAG = """
import pendulum
from airflow.sdk import DAG, task

from airflow_provider_refdata.notifications import ReferenceHealthNotifier


@task(on_failure_callback=ReferenceHealthNotifier(webhook_url={url!r}, payload_format="text"))
def breaks() -> None:
    raise RuntimeError("计划表不可读\\nsecond line")


with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1)) as dag:
    breaks()
"""


def test_as_failure_callback_of_a_task_in_a_real_dag_run(server, airflow_db, tmp_path):
    dag_id = "refdata_test_notifier_callback"
    dag = dag_in_metadata_db(tmp_path, dag_id, CALLBACK_DAG.format(url=f"{server.url}/hook", dag_id=dag_id))
    run = dag.test()
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"breaks": "failed"}
    (request,) = server.received
    lines = request.json["text"].splitlines()
    assert lines[0] == f"Airflow {dag_id}.breaks (run {run.run_id}): failed"
    assert lines[1:] == ["RuntimeError: 计划表不可读"]
