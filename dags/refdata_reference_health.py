"""DAG ``refdata_reference_health``: the daily health check of the reference tables, after the sync.

Scheduled on :data:`airflow_provider_refdata.assets.REFERENCE_SYNC_ASSET`, so it runs each time
``refdata_reference_sync`` finishes (daily after 01:00 Asia/Shanghai); manual runs work too.  The trigger
form takes ``tables`` (empty = the tables of ``reference_sync.yml`` and the targets of ``foreign_keys.yml``
in ``$REFDATA_CONFIG_DIR``) and ``fail_on_alerts``.

One task, ``check_reference_health``
(:class:`~airflow_provider_refdata.operators.health.ReferenceHealthOperator`): one aggregate query per
table (a failing table is reported, the others still answer), the result stored in
``refdata.health_snapshot`` for trends, the ``health:`` rules of ``reference_sync.yml`` applied, every alert
logged and sent as one message to the webhook of the connection ``refdata_health_webhook`` (an HTTP
connection; its ``payload_format`` extra picks ``text`` / ``wecom`` / ``dingtalk`` / ``feishu``; without the
connection a warning is logged and nothing is sent); then a ``fail``-level alert fails the run.

Parsing this file does no I/O: the configuration and the connection are read when the task runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET
from airflow_provider_refdata.notifications import ReferenceHealthNotifier
from airflow_provider_refdata.operators.health import ReferenceHealthOperator

TIMEZONE = "Asia/Shanghai"

with DAG(
    dag_id="refdata_reference_health",
    description="Health of the reference tables (auto-derived share, review backlog, placeholder age) and alerts",
    schedule=[REFERENCE_SYNC_ASSET],
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["refdata", "reference-data", "steward"],
    doc_md=__doc__,
    params={
        "tables": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Tables",
            description="schema.table names or reference_sync.yml entry names to check; empty = every configured "
            "reference table (reference_sync.yml and foreign_keys.yml targets).",
        ),
        "fail_on_alerts": Param(
            True,
            type="boolean",
            title="Fail on fail-level alerts",
            description="Fail the run when an alert reaches its fail level (after the alerts were sent).",
        ),
    },
) as dag:
    ReferenceHealthOperator(
        task_id="check_reference_health",
        tables="{{ params.tables }}",
        fail_on_alerts="{{ params.fail_on_alerts }}",
        notifiers=[ReferenceHealthNotifier(webhook_conn_id="refdata_health_webhook", missing_connection="warn")],
        retries=0,  # the data, not the run, is at fault: a retry would only repeat the alerts
    )
