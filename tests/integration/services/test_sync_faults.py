"""Fault behaviour of the sync against real servers: MySQL down or restarting, mid-load errors, bad YAML,
delete_insert with foreign keys, and two concurrent syncs of one table (advisory lock)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.warehouse.state import lock_name
from devtools.servers import MariaDbServer
from tests.integration.services.sync_env import ORG, PLAN, PORTFOLIO, PRODUCT_LINE, SyncEnv


@pytest.fixture
def env(pg_server, mysql_server, pg_schema, mysql_db, tmp_path) -> SyncEnv:
    return SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)


@pytest.fixture(scope="module")
def own_mysql(tmp_path_factory):
    """A MariaDB server of our own, so stopping it cannot disturb other tests."""
    server = MariaDbServer(tmp_path_factory.mktemp("own-mariadb"))
    server.start()
    yield server
    server.stop()


def _no_sleep(waits):
    return lambda seconds: waits.append(seconds)


def test_mysql_stopped_fails_after_three_retries_while_yaml_syncs(own_mysql, pg_server, pg_schema, tmp_path):
    from tests.conftest import mysql_connect

    database = "fault_db"
    conn = mysql_connect(own_mysql.dsn)
    conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    conn.close()
    env = SyncEnv.create(pg_server, own_mysql.dsn, pg_schema, database, tmp_path)
    waits: list[float] = []
    # Default policy (3 retries, 2 s / 4 s / 8 s); the recorder stands in for the sleeps.
    service = ReferenceSyncService(sleep=_no_sleep(waits))
    sources = env.sources(connect_timeout=2, read_timeout=2)
    own_mysql.stop()
    try:
        results = service.sync_all(env.config, sources, env.pg_dsn, tables=["organization", "product_line"])
        org, lines = results
        assert org.error is not None and org.attempts == 4  # the first attempt and 3 retries
        assert f"127.0.0.1:{own_mysql.port}/{database}" in org.error
        assert "after 4 attempt(s)" in org.error and "Can't connect" in org.error
        assert own_mysql.password not in org.error and own_mysql.password not in repr(sources["legacy_mysql"])
        assert waits == [2.0, 4.0, 8.0]
        assert lines.error is None and lines.rows_inserted == 3
        assert env.rows(ORG) == []
        assert env.watermark(ORG) is None

        # Restarted between attempts: the wait before attempt 2 brings the server back.
        def restart(seconds: float) -> None:
            waits.append(seconds)
            own_mysql.launch()

        waits.clear()
        service = ReferenceSyncService(retry_wait_seconds=0.01, sleep=restart)
        result = service.sync_all(env.config, sources, env.pg_dsn, tables=["organization"])[0]
        assert result.error is None and result.attempts == 2
        assert result.rows_inserted == 2
    finally:
        if own_mysql.process is None:
            own_mysql.launch()


def test_wrong_password_is_not_retried_and_never_shown(env):
    source = MySqlSource.from_dsn(env.mysql_dsn.replace("refdata-secret-pw", "wrong-Pa55word"))
    service = ReferenceSyncService(retry_wait_seconds=0.01, sleep=lambda s: None)
    result = service.sync_all(env.config, {"legacy_mysql": source}, env.pg_dsn, tables=["annuity_plan"])[0]
    assert result.attempts == 1 and "Access denied" in result.error
    assert "wrong-Pa55word" not in result.error and "refdata-secret-pw" not in result.error


class _FailingAfterFirstBatch:
    """Wraps a real source and raises in the middle of its stream (fault injection)."""

    def __init__(self, inner):
        self.inner = inner

    @contextmanager
    def stream(self, table_config, since, batch_size):
        with self.inner.stream(table_config, since, batch_size) as read:
            original = read.batches

            def batches():
                for i, batch in enumerate(original):
                    if i == 1:
                        raise RuntimeError("disk on fire in the middle of the load")
                    yield batch

            read.batches = batches()
            yield read


def test_error_in_the_middle_of_a_load_leaves_the_table_exactly_as_before(env):
    service = ReferenceSyncService()
    service.sync_all(env.config, env.sources(), env.pg_dsn)
    env.add_auto_derived(PLAN, {"年金计划号": "P900", "计划名称": "推导"})
    env.mysql("UPDATE annuity_plan SET plan_name = '新名字', updated_at = '2024-06-01'")
    env.mysql("INSERT INTO annuity_plan VALUES ('P004', '丁', '单一', NULL, '2024-06-01')")
    before = {t: env.rows(t, with_xmin=True) for t in (PLAN, PRODUCT_LINE)}
    env.write_product_lines("schema_version: '1.0'\ndata:\n" + "".join(f"  - {{产品线代码: N{i}}}\n" for i in range(5)))
    sources = env.sources(fetch_size=1)  # several small batches, so the fault hits mid-load
    faulty = {
        "legacy_mysql": _FailingAfterFirstBatch(sources["legacy_mysql"]),
        "config_file": _FailingAfterFirstBatch(sources["config_file"]),
    }
    results = service.sync_all(env.config, faulty, env.pg_dsn, tables=["annuity_plan", "product_line"])
    assert all("disk on fire" in r.error for r in results)
    assert results[0].attempts == 1  # not a connection error: no retry
    assert {t: env.rows(t, with_xmin=True) for t in before} == before
    assert env.watermark(PLAN) == datetime(2024, 1, 3, 8, 0)


def test_bad_value_rejected_by_copy_fails_only_that_table(env):
    env.mysql("ALTER TABLE organization MODIFY established varchar(20)")
    env.mysql("UPDATE organization SET established = 'not a date' WHERE `机构 代码` = 'G02'")
    results = ReferenceSyncService().sync_all(env.config, env.sources(), env.pg_dsn)
    by = {r.table.split(".", 1)[1]: r for r in results}
    assert "not a date" in by[ORG].error and "成立日期" in by[ORG].error
    assert env.rows(ORG) == []
    assert by[PLAN].error is None and by[PRODUCT_LINE].error is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "not found"),
        ("schema_version: '2.0'\ndata: []\n", "schema_version '2.0'"),
        ("schema_version: '1.0'\ndata: [ {产品线代码: X1\n", "not valid YAML"),
        ("schema_version: '1.0'\ndata:\n  - {产品线代码: X1, 颜色: 红}\n", "unknown column '颜色'"),
        ("schema_version: '1.0'\ndata:\n  - {产品线名称: 无键}\n", "primary key column '产品线代码'"),
        ("schema_version: '1.0'\ndata: []\n", "no rows"),
    ],
)
def test_unusable_yaml_skips_the_table_and_leaves_it_untouched(env, content, reason):
    service = ReferenceSyncService()
    service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["product_line"])
    before = env.rows(PRODUCT_LINE, with_xmin=True)
    path = env.config_path.parent / "reference_data" / "product_lines.yml"
    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8")
    result = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["product_line"])[0]
    assert result.error is None and result.sync_mode == "delete_insert"
    assert reason in result.skipped_reason
    assert env.rows(PRODUCT_LINE, with_xmin=True) == before
    logged = env.pg(
        "SELECT status FROM refdata.run_log WHERE subject = %s ORDER BY id", (f"{env.schema}.{PRODUCT_LINE}",)
    )
    assert logged == [("success",), ("skipped",)]


def test_delete_insert_keeps_auto_derived_and_rolls_back_on_foreign_key(env):
    service = ReferenceSyncService()
    service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["product_line"])
    env.add_auto_derived(PRODUCT_LINE, {"产品线代码": "AUTO1", "产品线名称": "推导"})
    env.write_product_lines(
        "schema_version: '1.0'\ndata:\n  - {产品线代码: PL201, 产品线名称: 改名}\n  - {产品线代码: PL999}\n"
    )
    result = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["product_line"])[0]
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_deleted) == (2, 1, 1, 2)
    assert [r[:4] for r in env.rows(PRODUCT_LINE)] == [
        ("AUTO1", "推导", None, "auto_derived"),
        ("PL201", "改名", None, "authoritative"),
        ("PL999", None, None, "authoritative"),
    ]
    # a fact table still references PL999: removing it from the file keeps it, as a row to review
    # (tests/integration/services/test_sync_delete_guard.py covers every ON DELETE action and the "fail" choice)
    env.pg(
        sql.SQL("CREATE TABLE {s}.{f} ({c} varchar(16) REFERENCES {s}.{t})").format(
            s=sql.Identifier(env.schema),
            f=sql.Identifier("事实"),
            c=sql.Identifier("产品线代码"),
            t=sql.Identifier(PRODUCT_LINE),
        )
    )
    env.pg(sql.SQL("INSERT INTO {}.{} VALUES ('PL999')").format(sql.Identifier(env.schema), sql.Identifier("事实")))
    env.write_product_lines("schema_version: '1.0'\ndata:\n  - {产品线代码: PL201, 产品线名称: 再改}\n")
    kept = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["product_line"])[0]
    assert (kept.error, kept.rows_updated, kept.rows_deleted, kept.rows_kept_referenced) == (None, 1, 0, 1)
    assert [r[:5] for r in env.rows(PRODUCT_LINE)] == [
        ("AUTO1", "推导", None, "auto_derived", True),
        ("PL201", "再改", None, "authoritative", False),
        ("PL999", None, None, "auto_derived", True),
    ]


def test_two_concurrent_syncs_of_one_table_serialize_on_the_advisory_lock(env):
    table = f"{env.schema}.{PORTFOLIO}"
    results = []
    with psycopg.connect(env.pg_dsn) as holder:
        lock_name(holder, table)  # as if another sync of this table were running
        thread = threading.Thread(
            target=lambda: results.extend(
                ReferenceSyncService().sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"])
            )
        )
        thread.start()
        deadline = time.monotonic() + 20
        waiting = 0
        while time.monotonic() < deadline and not waiting:
            waiting = env.pg("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]
            time.sleep(0.05)
        assert waiting == 1 and thread.is_alive() and env.rows(PORTFOLIO) == []
        holder.rollback()  # the other "sync" ends
        thread.join(30)
    assert results[0].error is None and results[0].rows_inserted == 2

    # two real syncs at once: both succeed, one after the other, and the second finds nothing to do
    env.mysql("UPDATE portfolio_plan SET portfolio_name = '并发', updated_at = '2024-07-01'")
    both: list = []
    threads = [
        threading.Thread(
            target=lambda: both.extend(
                ReferenceSyncService().sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"])
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.rows_updated for r in both) == [0, 2]
    assert all(r.error is None for r in both)
