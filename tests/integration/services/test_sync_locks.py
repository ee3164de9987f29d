"""The sync never waits for a lock without limit, and never holds readers of the target behind its DDL.

Each case holds a lock from another session — ``LOCK TABLE … SHARE``, ``SELECT … FOR SHARE`` on a row the
sync rewrites, the table's advisory lock, a plain read while the sync must add tracking columns — and checks
that the sync finishes or fails within ``lock_timeout`` × attempts (+ slack), names the holder, and leaves the
table exactly as it was; a concurrent plain ``SELECT`` is never blocked for longer than ``lock_timeout``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import SyncTableConfig
from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.warehouse.state import lock_name
from tests.conftest import mysql_connect

TABLE = "机构"
LOCK_TIMEOUT = 0.5


@pytest.fixture
def legacy(mysql_server: str, mysql_db: str) -> Iterator[tuple[str, str]]:
    conn = mysql_connect(mysql_server, mysql_db)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE org (code varchar(16) PRIMARY KEY, name varchar(50))")
        cur.executemany("INSERT INTO org VALUES (%s, %s)", [("G01", "总部"), ("G02", "分部")])
    finally:
        conn.close()
    yield mysql_server, mysql_db


def _cfg(schema: str, database: str) -> SyncTableConfig:
    return SyncTableConfig.model_validate(
        {
            "name": "org",
            "target_schema": schema,
            "target_table": TABLE,
            "primary_key": "代码",
            "source_type": "legacy_mysql",
            "source_config": {
                "database": database,
                "table": "org",
                "columns": [{"source": "code", "target": "代码"}, {"source": "name", "target": "名称"}],
            },
        }
    )


def _service(lock_retries: int = 1) -> ReferenceSyncService:
    return ReferenceSyncService(
        retries=0, lock_timeout_seconds=LOCK_TIMEOUT, lock_retries=lock_retries, sleep=lambda seconds: None
    )


def _target(pg_dsn: str, schema: str, *, with_rows: bool) -> sql.Composed:
    ref = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(TABLE))
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(sql.SQL('CREATE TABLE {} ("代码" varchar(16) PRIMARY KEY, "名称" text)').format(ref))
        if with_rows:
            pg.execute(sql.SQL("INSERT INTO {} VALUES ('G01', '旧名'), ('G02', '旧名')").format(ref))
    return ref


def _rows(pg_dsn: str, ref: sql.Composed) -> list[tuple]:
    with psycopg.connect(pg_dsn) as pg:
        return pg.execute(sql.SQL("SELECT *, xmin::text FROM {} ORDER BY 1").format(ref)).fetchall()


def _holder_pid(holder: psycopg.Connection) -> int:
    return holder.info.backend_pid


@pytest.mark.parametrize(
    "hold",
    [
        pytest.param(
            lambda h, ref, name: h.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ref)), id="lock-share"
        ),
        pytest.param(
            lambda h, ref, name: h.execute(sql.SQL("SELECT * FROM {} WHERE \"代码\" = 'G01' FOR SHARE").format(ref)),
            id="row-for-share",
        ),
        pytest.param(lambda h, ref, name: lock_name(h, name), id="advisory-lock"),
    ],
)
def test_a_held_lock_fails_the_table_within_the_timeout_naming_the_holder(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str], hold
) -> None:
    ref = _target(pg_dsn, pg_schema, with_rows=True)
    cfg = _cfg(pg_schema, legacy[1])
    source = MySqlSource.from_dsn(legacy[0])
    assert _service().sync_table(cfg, source, pg_dsn).rows_updated == 2  # tracking columns added, rows renamed
    conn = mysql_connect(*legacy)
    try:
        conn.cursor().execute("UPDATE org SET name = CONCAT(name, '·新')")
    finally:
        conn.close()
    before = _rows(pg_dsn, ref)
    with psycopg.connect(pg_dsn) as holder:
        hold(holder, ref, cfg.qualified_table)
        started = time.monotonic()
        result = _service(lock_retries=1).sync_table(cfg, source, pg_dsn)
        elapsed = time.monotonic() - started
        assert result.error is not None and result.error.startswith("table busy:"), result.error
        assert f"pid {_holder_pid(holder)}" in result.error and "2 attempt(s)" in result.error
        assert result.rows_updated == 0 and result.rows_inserted == 0
        assert elapsed < 2 * LOCK_TIMEOUT + 3, elapsed
        assert _rows(pg_dsn, ref) == before
    # The holder is gone: the next run proceeds.
    again = _service().sync_table(cfg, source, pg_dsn)
    assert (again.error, again.rows_updated) == (None, 2)


def test_a_lock_released_within_the_timeout_lets_the_sync_proceed(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str]
) -> None:
    ref = _target(pg_dsn, pg_schema, with_rows=True)
    cfg = _cfg(pg_schema, legacy[1])
    service = ReferenceSyncService(retries=0, lock_timeout_seconds=5, lock_retries=0)
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ref))
        threading.Timer(0.5, holder.rollback).start()
        result = service.sync_table(cfg, MySqlSource.from_dsn(legacy[0]), pg_dsn)
    assert (result.error, result.rows_updated) == (None, 2)


def test_a_lock_released_during_the_retries_is_one_success_timed_from_the_first_attempt(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str]
) -> None:
    ref = _target(pg_dsn, pg_schema, with_rows=True)
    cfg = _cfg(pg_schema, legacy[1])
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ref))
        threading.Timer(LOCK_TIMEOUT + 0.3, holder.rollback).start()  # the first attempt times out, the second waits
        result = _service(lock_retries=1).sync_table(cfg, MySqlSource.from_dsn(legacy[0]), pg_dsn)
    assert (result.error, result.rows_updated) == (None, 2)  # not "table busy": the second attempt got the lock
    assert result.duration_seconds >= LOCK_TIMEOUT + 0.3
    # The run log holds the very figure the call returned (it is written before the commit, so it is timed there).
    with psycopg.connect(pg_dsn) as pg:
        (logged,) = pg.execute(
            "SELECT (result->>'duration_seconds')::float8 FROM refdata.run_log "
            "WHERE subject = %s AND status = 'success'",
            (cfg.qualified_table,),
        ).fetchone()
    assert logged == result.duration_seconds


def test_tracking_column_ddl_never_holds_readers_longer_than_the_timeout(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str]
) -> None:
    ref = _target(pg_dsn, pg_schema, with_rows=True)  # no tracking columns yet: the sync must ALTER TABLE
    cfg = _cfg(pg_schema, legacy[1])
    results: list = []
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(sql.SQL("SELECT count(*) FROM {}").format(ref))  # an open read: ACCESS SHARE kept
        sync = threading.Thread(
            target=lambda: results.append(
                ReferenceSyncService(
                    retries=0, lock_timeout_seconds=1.0, lock_retries=2, sleep=lambda s: None
                ).sync_table(cfg, MySqlSource.from_dsn(legacy[0]), pg_dsn)
            )
        )
        sync.start()
        with psycopg.connect(pg_dsn, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'"
                ).fetchone()[0]
                if waiting:
                    break
                time.sleep(0.02)
            assert waiting, "the sync's ALTER TABLE never queued"
            # A plain reader arriving now queues behind the ALTER: it must get through within lock_timeout.
            started = time.monotonic()
            with psycopg.connect(pg_dsn, autocommit=True) as reader:
                assert reader.execute(sql.SQL("SELECT count(*) FROM {}").format(ref)).fetchone()[0] == 2
            blocked = time.monotonic() - started
        sync.join(30)
        assert blocked < 1.0 + 1.0, blocked
    assert results[0].error.startswith("table busy:") and "3 attempt(s)" in results[0].error
    # Nothing was added meanwhile: the table is as it was, and the next run adds the columns and syncs.
    with psycopg.connect(pg_dsn) as pg:
        columns = pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (pg_schema, TABLE),
        ).fetchall()
    assert sorted(c for (c,) in columns) == ["代码", "名称"]
    assert ReferenceSyncService(retries=0).sync_table(cfg, MySqlSource.from_dsn(legacy[0]), pg_dsn).error is None
