"""Every table run leaves a trace, also one that dies, and a lost warehouse connection only costs one table.

A thin wrapper around the real ``MySqlSource`` looks at ``refdata.run_log`` from another session while a
table is being read (a ``running`` row is already committed), or kills the sync's warehouse backend in the
middle of a table (as a PostgreSQL restart would): that table fails and is recorded through a new
connection with zero write counts, and the next tables sync on a working connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig
from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import mysql_connect

TABLES = ["甲表", "乙表", "丙表"]


class InterceptingSource:
    """The real source, with a hook that runs when a given target table's read opens."""

    def __init__(self, inner: MySqlSource, table: str, action: Any) -> None:
        self.inner, self.table, self.action = inner, table, action

    @contextmanager
    def stream(self, table_config: Any, since: Any, batch_size: int) -> Iterator[Any]:
        if table_config.target_table == self.table:
            self.action(table_config)
        with self.inner.stream(table_config, since, batch_size) as read:
            yield read


@pytest.fixture
def setup(pg_dsn: str, pg_schema: str, mysql_server: str, mysql_db: str) -> ReferenceSyncConfig:
    conn = mysql_connect(mysql_server, mysql_db)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE codes (code varchar(16) PRIMARY KEY, name varchar(50))")
        cur.executemany("INSERT INTO codes VALUES (%s, %s)", [("A", "一"), ("B", "二")])
    finally:
        conn.close()
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        for table in TABLES:
            pg.execute(
                sql.SQL('CREATE TABLE {}.{} ("代码" varchar(16) PRIMARY KEY, "名称" text)').format(
                    sql.Identifier(pg_schema), sql.Identifier(table)
                )
            )
    return ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": f"t{i}",
                    "target_schema": pg_schema,
                    "target_table": table,
                    "primary_key": "代码",
                    "source_type": "legacy_mysql",
                    "source_config": {
                        "database": mysql_db,
                        "table": "codes",
                        "columns": [{"source": "code", "target": "代码"}, {"source": "name", "target": "名称"}],
                    },
                }
                for i, table in enumerate(TABLES)
            ]
        }
    )


def _log(pg_dsn: str, schema: str) -> list[tuple]:
    with psycopg.connect(pg_dsn) as pg:
        return pg.execute(
            "SELECT subject, status, (result->>'rows_inserted')::int FROM refdata.run_log"
            " WHERE subject LIKE %s ORDER BY id",
            (schema + ".%",),
        ).fetchall()


def test_a_running_row_is_committed_before_the_table_is_read(
    pg_dsn: str, pg_schema: str, mysql_server: str, setup: ReferenceSyncConfig
) -> None:
    seen: list = []
    source = InterceptingSource(
        MySqlSource.from_dsn(mysql_server), TABLES[1], lambda cfg: seen.extend(_log(pg_dsn, pg_schema))
    )
    results = ReferenceSyncService(retries=0).sync_all(setup, {"legacy_mysql": source}, pg_dsn)
    assert [r.error for r in results] == [None, None, None]
    assert seen == [(f"{pg_schema}.{TABLES[0]}", "success", 2), (f"{pg_schema}.{TABLES[1]}", "running", 0)]
    # One row per table run, closed at the end.
    assert _log(pg_dsn, pg_schema) == [(f"{pg_schema}.{t}", "success", 2) for t in TABLES]


def test_a_lost_warehouse_connection_fails_one_table_and_the_rest_reconnect(
    pg_dsn: str, pg_schema: str, mysql_server: str, setup: ReferenceSyncConfig
) -> None:
    with psycopg.connect(pg_dsn) as warehouse:  # the caller's connection, killed in the middle of table 2
        victim = warehouse.info.backend_pid

        def kill(cfg: Any) -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (victim,))

        source = InterceptingSource(MySqlSource.from_dsn(mysql_server), TABLES[1], kill)
        results = ReferenceSyncService(retries=0).sync_all(setup, {"legacy_mysql": source}, warehouse)
    assert results[0].error is None and results[2].error is None
    assert results[2].rows_inserted == 2
    failed = results[1]
    assert failed.error is not None and "connection" in failed.error.lower()
    assert (failed.rows_inserted, failed.rows_updated) == (0, 0)
    # The failure is recorded (through a new connection): run log and sync state say so.
    assert _log(pg_dsn, pg_schema) == [
        (f"{pg_schema}.{TABLES[0]}", "success", 2),
        (f"{pg_schema}.{TABLES[1]}", "failed", 0),
        (f"{pg_schema}.{TABLES[2]}", "success", 2),
    ]
    with psycopg.connect(pg_dsn) as pg:
        status = pg.execute(
            "SELECT last_status FROM refdata.sync_state WHERE table_name = %s", (f"{pg_schema}.{TABLES[1]}",)
        ).fetchone()
        rows = pg.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(TABLES[1]))
        ).fetchone()
    assert status == ("failed",) and rows == (0,)
