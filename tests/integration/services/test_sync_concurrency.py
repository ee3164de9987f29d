"""Parallel sync (``concurrency``) on the real servers: same rows as one at a time, dependencies respected.

Eight legacy MariaDB tables: six independent ones, a parent (``机构``) and a child that ``depends_on`` it, plus
one entry whose legacy table does not exist.  A thin wrapper around the real ``MySqlSource`` records when each
table's read opens and closes (and holds each read open briefly, so overlap is visible on a slow machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import load_sync_config
from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import mysql_connect

INDEPENDENT = [f"代码表{i}" for i in range(1, 7)]
PARENT, CHILD = "机构", "部门"
ROWS_PER_TABLE = 300


class RecordingSource:
    """Delegates to a real source; records each read's open/close times and the peak number open at once."""

    def __init__(self, inner: MySqlSource, hold_seconds: float = 0.3) -> None:
        self.inner = inner
        self.hold_seconds = hold_seconds
        self.spans: dict[str, tuple[float, float]] = {}
        self.open_now = 0
        self.peak = 0
        self._lock = threading.Lock()

    @contextmanager
    def stream(self, table_config: Any, since: Any, batch_size: int) -> Iterator[Any]:
        with self._lock:
            self.open_now += 1
            self.peak = max(self.peak, self.open_now)
        started = time.monotonic()
        try:
            time.sleep(self.hold_seconds)
            with self.inner.stream(table_config, since, batch_size) as read:
                yield read
        finally:
            with self._lock:
                self.open_now -= 1
                self.spans[table_config.target_table] = (started, time.monotonic())


def _config_text(schema: str, database: str, concurrency: int, parent_depends_on: str = "") -> str:
    def entry(name: str, table: str, legacy: str, depends_on: str = "") -> str:
        return f"""
  - name: {name}
    target_schema: {schema}
    target_table: {table}
    primary_key: 代码
    source_type: legacy_mysql
    {depends_on}
    source_config:
      database: {database}
      table: {legacy}
      columns:
        - {{ source: code, target: 代码 }}
        - {{ source: label, target: 名称 }}
        - {{ source: parent_code, target: 上级代码 }}
"""

    body = "".join(entry(f"t{i}", table, f"legacy_{i}") for i, table in enumerate(INDEPENDENT, 1))
    body += entry("parent", PARENT, "legacy_parent", depends_on=parent_depends_on)
    body += entry("child", CHILD, "legacy_child", depends_on="depends_on: [parent]")
    body += entry("broken", "坏表", "no_such_table")
    return f'schema_version: "1.2"\nconcurrency: {concurrency}\ntables:{body}'


@pytest.fixture
def legacy(mysql_server: str, mysql_db: str) -> str:
    conn = mysql_connect(mysql_server, mysql_db)
    try:
        cur = conn.cursor()
        for legacy_table in [f"legacy_{i}" for i in range(1, 7)] + ["legacy_parent", "legacy_child"]:
            cur.execute(
                f"CREATE TABLE {legacy_table}"
                " (code varchar(16) PRIMARY KEY, label varchar(50), parent_code varchar(16))"
            )
            cur.executemany(
                f"INSERT INTO {legacy_table} VALUES (%s, %s, %s)",
                [(f"C{n:04d}", f"名称 {n} of {legacy_table}", f"C{n // 10:04d}") for n in range(ROWS_PER_TABLE)],
            )
    finally:
        conn.close()
    return mysql_db


def _create_targets(pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        for table in [*INDEPENDENT, PARENT, CHILD, "坏表"]:
            pg.execute(
                sql.SQL(
                    'CREATE TABLE {}.{} ("代码" varchar(16) PRIMARY KEY, "名称" text, "上级代码" varchar(16))'
                ).format(sql.Identifier(schema), sql.Identifier(table))
            )


def _rows(pg_dsn: str, schema: str) -> dict[str, list[tuple]]:
    with psycopg.connect(pg_dsn) as pg:
        return {
            table: pg.execute(
                sql.SQL("SELECT * FROM {}.{} ORDER BY 1").format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchall()
            for table in [*INDEPENDENT, PARENT, CHILD]
        }


def _run(pg_dsn: str, mysql_server: str, schema: str, database: str, folder: Path, concurrency: int):
    path = folder / f"reference_sync_{concurrency}.yml"
    path.write_text(_config_text(schema, database, concurrency), encoding="utf-8")
    config = load_sync_config(path)
    assert config.concurrency == concurrency
    source = RecordingSource(MySqlSource.from_dsn(mysql_server))
    service = ReferenceSyncService(retries=0)
    with psycopg.connect(pg_dsn) as warehouse:  # a caller's connection: parallel tables open their own
        started = time.monotonic()
        results = service.sync_all(config, {"legacy_mysql": source}, warehouse)
        elapsed = time.monotonic() - started
    return config, results, source, elapsed


def test_concurrency_4_same_rows_as_1_parents_first_failures_isolated(
    pg_dsn: str, mysql_server: str, legacy: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        serial_schema, parallel_schema = "并发1_" + legacy[-6:], "并发4_" + legacy[-6:]
        for schema in (serial_schema, parallel_schema):
            pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        for schema in (serial_schema, parallel_schema):
            _create_targets(pg_dsn, schema)
        config1, serial, source1, serial_seconds = _run(pg_dsn, mysql_server, serial_schema, legacy, tmp_path, 1)
        config4, parallel, source4, parallel_seconds = _run(pg_dsn, mysql_server, parallel_schema, legacy, tmp_path, 4)

        # Results in configuration order, same outcomes.
        assert [r.table.split(".", 1)[1] for r in parallel] == [t.target_table for t in config4.tables]
        for one, four in zip(serial, parallel, strict=True):
            assert (one.rows_read, one.rows_inserted, bool(one.error)) == (
                four.rows_read,
                four.rows_inserted,
                bool(four.error),
            )
        # The failing table fails alone, naming the missing legacy table; every other table loaded.
        broken = parallel[-1]
        assert broken.error and "no_such_table" in broken.error
        assert all(r.error is None and r.rows_inserted == ROWS_PER_TABLE for r in parallel[:-1])
        # Same rows either way.
        assert _rows(pg_dsn, serial_schema) == _rows(pg_dsn, parallel_schema)
        assert all(len(rows) == ROWS_PER_TABLE for rows in _rows(pg_dsn, parallel_schema).values())

        # concurrency 1: one read at a time; 4: several at once, never more than 4.
        assert source1.peak == 1
        assert 2 <= source4.peak <= 4
        # The child never starts before its parent finished (both modes).
        for source in (source1, source4):
            assert source.spans[CHILD][0] >= source.spans[PARENT][1]
        # Nine tables holding their read 0.3 s each: parallel must be clearly faster than serial.
        assert parallel_seconds < serial_seconds * 0.75, (parallel_seconds, serial_seconds)

        # A second parallel run rewrites nothing.
        _, again, _, _ = _run(pg_dsn, mysql_server, parallel_schema, legacy, tmp_path, 4)
        assert all(r.rows_unchanged == ROWS_PER_TABLE and r.rows_updated == 0 for r in again[:-1])
        with psycopg.connect(pg_dsn) as pg:
            statuses = pg.execute(
                "SELECT table_name, last_status FROM refdata.sync_state WHERE table_name LIKE %s",
                (parallel_schema + ".%",),
            ).fetchall()
        assert dict(statuses)[f"{parallel_schema}.坏表"] == "failed"
        assert sum(1 for _, status in statuses if status == "success") == 8
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as pg:
            for schema in (serial_schema, parallel_schema):
                pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_depends_on_unknown_table_and_cycles_are_refused(tmp_path: Path) -> None:
    from airflow_provider_refdata.exceptions import RefdataConfigError

    text = _config_text("s", "d", 2).replace("depends_on: [parent]", "depends_on: [parnet]")
    path = tmp_path / "reference_sync.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RefdataConfigError) as info:
        load_sync_config(path)
    assert info.value.key_path == "tables[7].depends_on[0]" and info.value.line is not None
    assert "'parnet'" in str(info.value) and "reference_sync.yml" in str(info.value)

    cyclic = _config_text("s", "d", 2, parent_depends_on="depends_on: [child]")
    path.write_text(cyclic, encoding="utf-8")
    with pytest.raises(
        RefdataConfigError, match="dependency cycle: (parent -> child -> parent|child -> parent -> child)"
    ):
        load_sync_config(path)
