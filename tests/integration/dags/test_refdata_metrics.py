"""The refdata metrics reach a real StatsD listener (a UDP socket on loopback) from real dag.test() runs.

Airflow is configured as a deployment would be (``AIRFLOW__METRICS__STATSD_*``, InfluxDB-style tags so the
tags travel in the line) and its metrics facade is initialized the way the task runner does it at start-up;
what arrives on the socket is parsed and compared with the rows and state the runs left in PostgreSQL.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
from psycopg import sql

from airflow_provider_refdata.metrics import tag_value
from tests.integration.operators.test_hybrid_operator import _only
from tests.integration.refdata_business_tables import ORG, PRODUCT, create_business_tables, insert
from tests.integration.services.sync_env import ORG as SYNC_ORG
from tests.integration.services.sync_env import PLAN, PRODUCT_LINE, SyncEnv
from tests.integration.steward_scenario import dag_in_metadata_db


@dataclass(frozen=True)
class Line:
    """One StatsD line: ``<name>,<tag>=<value>…:<value>|<type>``."""

    name: str
    tags: dict[str, str]
    value: float
    kind: str


class StatsdListener:
    """A UDP socket on 127.0.0.1 that keeps every StatsD line sent to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[Line] = []

    def drain(self) -> list[Line]:
        """Read what arrived (the sends are done: the run has finished) and return every line so far."""
        self.sock.settimeout(0.5)
        try:
            while True:
                for raw in self.sock.recv(65535).decode("ascii").splitlines():
                    self.received.append(_parse(raw))
        except TimeoutError:
            pass
        return self.received

    def refdata(self, name: str, **tags: str) -> list[Line]:
        """The ``airflow.refdata.<name>`` lines whose tags include ``tags``."""
        return [
            line
            for line in self.drain()
            if line.name == f"airflow.refdata.{name}" and all(line.tags.get(k) == v for k, v in tags.items())
        ]


def _parse(raw: str) -> Line:
    head, _, rest = raw.partition(":")
    value, _, kind = rest.partition("|")
    name, *pairs = head.split(",")
    return Line(name, dict(pair.split("=", 1) for pair in pairs), float(value), kind)


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    """Airflow configured for StatsD on a loopback listener, for this test only."""
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    listener = StatsdListener()

    def initialize() -> None:  # what the task runner does when a task process starts
        stats.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        mp.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
        mp.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
        mp.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
        mp.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", "True")
        initialize()
        try:
            yield listener
        finally:
            listener.sock.close()
    initialize()  # back to the configuration without StatsD


@pytest.fixture(autouse=True)
def _restore_dag_module():
    yield
    import dags.refdata_reference_sync as module

    importlib.reload(module)


def test_sync_run_sends_counts_outcomes_and_durations_per_table(
    statsd, airflow_db, airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch
):
    import dags.refdata_reference_sync as module

    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    env.mysql("DROP TABLE organization")
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path))

    run = importlib.reload(module).dag.test()

    assert run.state == "failed"  # check_all_synced names the organization table
    plan, org, lines = (
        tag_value(f"{pg_schema}.{PLAN}"),
        tag_value(f"{pg_schema}.{SYNC_ORG}"),
        tag_value(f"{pg_schema}.{PRODUCT_LINE}"),
    )
    assert plan == f"{pg_schema}.xn--{PLAN.encode('punycode').decode()}" and plan.isascii()
    assert [(m.value, m.kind) for m in statsd.refdata("sync.rows_inserted", table=plan)] == [(3.0, "c")]
    assert len(env.rows(PLAN)) == 3
    assert [m.value for m in statsd.refdata("sync.rows_read", table=plan)] == [3.0]
    assert [m.value for m in statsd.refdata("sync.rows_deleted", table=lines)] == [0.0]
    assert [m.value for m in statsd.refdata("sync.rows_inserted", table=lines)] == [len(env.rows(PRODUCT_LINE))]
    assert statsd.refdata("sync.tables", table=plan, status="ok")[0].value == 1.0
    assert statsd.refdata("sync.tables", table=org, status="failed")[0].value == 1.0
    assert statsd.refdata("sync.rows_inserted", table=org) == [], "no counts for a failed table"
    durations = statsd.refdata("sync.duration")
    assert {(m.tags["table"], m.tags["status"]) for m in durations} == {
        (tag_value(f"{pg_schema}.{t}"), "failed" if t == SYNC_ORG else "ok")
        for t in (PLAN, "组合计划", SYNC_ORG, PRODUCT_LINE)
    }
    assert all(m.kind == "ms" and m.value >= 0 for m in durations)


HEALTH_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_refdata.operators.health import ReferenceHealthOperator
from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    ensure = HybridReferenceOperator(
        task_id="ensure", domain="annuity_performance", fact_file={facts!r}, fk_config_path={config!r}
    )

    health = ReferenceHealthOperator(task_id="health", tables=[{org!r}, {product!r}], fail_on_alerts=False)

    ensure >> health
"""


def test_hybrid_and_health_runs_send_coverage_ratios_and_review_backlog(
    statsd, airflow_db, airflow_connections, pg_conn, pg_schema, tmp_path
):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PRODUCT, [{"产品线代码": "PL1", "产品线名称": "企业年金"}])
    facts = tmp_path / "facts.csv"
    pd.DataFrame({"机构代码": ["001", "002"], "机构名称": ["北京", "上海"], "产品线代码": ["PL1", "PL1"]}).to_csv(
        facts, index=False
    )
    org, product = f"{pg_schema}.{ORG}", f"{pg_schema}.{PRODUCT}"
    dag_id = f"test_metrics_{pg_schema}"
    (tmp_path / "dags").mkdir()
    source = HEALTH_DAG.format(
        dag_id=dag_id, facts=str(facts), config=str(_only(tmp_path, pg_schema)), org=org, product=product
    )

    run = dag_in_metadata_db(tmp_path / "dags", dag_id, source).test()

    assert run.state == "success"
    with pg_conn.transaction():
        in_review = pg_conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{} WHERE _needs_review").format(
                sql.Identifier(pg_schema), sql.Identifier(ORG)
            )
        ).fetchone()[0]
    assert in_review == 2
    domain = "annuity_performance"
    coverage = statsd.refdata("coverage.rate", domain=domain, table=tag_value(org), fk="fk_organization")
    assert [(m.value, m.kind) for m in coverage] == [(0.0, "g")]
    assert statsd.refdata("coverage.rate", table=tag_value(product))[0].value == 1.0
    assert statsd.refdata("coverage.missing_values", table=tag_value(org))[0].value == 2.0
    assert [m.value for m in statsd.refdata("backfill.inserted", table=tag_value(org))] == [2.0]
    assert statsd.refdata("coverage.auto_derived_ratio", table=tag_value(org))[0].value == 1.0
    assert statsd.refdata("domain.auto_derived_ratio", domain=domain)[0].value == pytest.approx(2 / 3, abs=1e-6)
    assert statsd.refdata("domain.degraded", domain=domain)[0].value == 0.0
    assert statsd.refdata("domain.duration", domain=domain)[0].kind == "ms"
    # the health check after it: the two derived organizations wait for review
    assert statsd.refdata("health.needs_review_rows", table=tag_value(org))[0].value == in_review
    assert statsd.refdata("health.auto_derived_rows", table=tag_value(org))[0].value == 2.0
    assert statsd.refdata("health.authoritative_rows", table=tag_value(product))[0].value == 1.0
    assert statsd.refdata("health.auto_derived_ratio", table=tag_value(product))[0].value == 0.0
    [age] = statsd.refdata("health.oldest_placeholder_age_days", table=tag_value(org))
    assert age.kind == "g" and 0 <= age.value < 1  # derived during this run
    assert statsd.refdata("health.oldest_placeholder_age_days", table=tag_value(product)) == []
