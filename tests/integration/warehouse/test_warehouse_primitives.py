"""The shared warehouse layer against the real PostgreSQL: connections, catalog, tracking, state, staging."""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataError
from airflow_provider_refdata.warehouse.catalog import table_info
from airflow_provider_refdata.warehouse.connection import warehouse_connection
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.staging import converted_value, copy_rows, create_stage, stage_type
from airflow_provider_refdata.warehouse.state import (
    ensure_state_tables,
    lock_name,
    read_watermark,
    write_run_log,
    write_sync_state,
)
from airflow_provider_refdata.warehouse.tracking import TRACKING_COLUMNS, ensure_tracking_columns


def _make_plan_table(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {} ({} varchar(8) PRIMARY KEY, {} text NOT NULL DEFAULT '')").format(
            table_ref(schema, "年金计划"), sql.Identifier("年金计划号"), sql.Identifier("计划名称")
        )
    )
    conn.execute(sql.SQL("INSERT INTO {} VALUES ('P1', '甲'), ('P2', '乙')").format(table_ref(schema, "年金计划")))
    conn.commit()


def test_every_supported_connection_form_yields_the_same_psycopg_session(pg_dsn, pg_conn, airflow_connections):
    import sqlalchemy
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    engine = sqlalchemy.create_engine(pg_dsn.replace("postgresql://", "postgresql+psycopg://"))
    seen = []
    with warehouse_connection(pg_conn) as conn:
        assert conn is pg_conn
        seen.append(conn.execute("SELECT current_database()").fetchone()[0])
    assert not pg_conn.closed, "a caller's connection stays open"
    with warehouse_connection(pg_dsn) as conn:
        seen.append(conn.execute("SELECT current_database()").fetchone()[0])
    assert conn.closed, "a connection opened from a DSN is closed afterwards"
    with warehouse_connection(PostgresHook(postgres_conn_id="refdata_warehouse")) as conn:
        seen.append(conn.execute("SELECT current_database()").fetchone()[0])
    with warehouse_connection(engine) as conn:
        seen.append(conn.execute("SELECT current_database()").fetchone()[0])
    with engine.connect() as sa_conn, warehouse_connection(sa_conn) as conn:
        seen.append(conn.execute("SELECT current_database()").fetchone()[0])
    engine.dispose()
    assert len(set(seen)) == 1 and len(seen) == 5


def test_unsupported_connection_objects_are_refused_by_name():
    with pytest.raises(RefdataError, match="int"), warehouse_connection(42):
        pass


def test_catalog_reads_columns_lengths_and_primary_key(pg_conn, pg_schema):
    _make_plan_table(pg_conn, pg_schema)
    info = table_info(pg_conn, pg_schema, "年金计划")
    assert info is not None
    assert list(info.columns) == ["年金计划号", "计划名称"]
    assert info.primary_key == ["年金计划号"]
    assert info.columns["年金计划号"].max_length == 8
    assert info.columns["计划名称"].has_default
    assert table_info(pg_conn, pg_schema, "不存在") is None


def test_tracking_columns_are_added_once_and_existing_rows_become_authoritative(pg_conn, pg_schema):
    _make_plan_table(pg_conn, pg_schema)
    assert ensure_tracking_columns(pg_conn, pg_schema, "年金计划") == list(TRACKING_COLUMNS)
    pg_conn.commit()
    assert ensure_tracking_columns(pg_conn, pg_schema, "年金计划") == []
    rows = pg_conn.execute(
        sql.SQL("SELECT _source, _needs_review, _derived_from_domain, _derived_at FROM {} ORDER BY 1").format(
            table_ref(pg_schema, "年金计划")
        )
    ).fetchall()
    assert rows == [("authoritative", False, None, None)] * 2
    with pytest.raises(psycopg.errors.CheckViolation):
        pg_conn.execute(sql.SQL("UPDATE {} SET _source = 'made_up'").format(table_ref(pg_schema, "年金计划")))
    pg_conn.rollback()


def test_state_tables_survive_concurrent_creation_and_keep_watermarks(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("DROP SCHEMA IF EXISTS refdata CASCADE")
    errors: list[BaseException] = []

    def create() -> None:
        try:
            with psycopg.connect(pg_dsn) as conn:
                ensure_state_tables(conn)
                conn.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    name = "business.年金计划-watermark-test"
    mark = datetime(2026, 11, 1, 8, 30)
    with psycopg.connect(pg_dsn) as conn:
        assert read_watermark(conn, name) is None
        write_sync_state(conn, name, status="success", watermark=mark, counts={"rows_read": 3})
        conn.commit()
        # a failed run keeps the watermark of the last success
        write_sync_state(conn, name, status="failed", watermark=datetime(2030, 1, 1), counts={})
        conn.commit()
        assert read_watermark(conn, name) == mark
        started = conn.execute("SELECT now()").fetchone()[0]
        log_id = write_run_log(
            conn, run_type="sync", subject=name, status="success", started_at=started, result={"表": "年金计划"}
        )
        conn.commit()
        row = conn.execute("SELECT subject, result FROM refdata.run_log WHERE id = %s", (log_id,)).fetchone()
        assert row == (name, {"表": "年金计划"})


def test_advisory_lock_serializes_two_transactions_on_the_same_name(pg_dsn):
    with psycopg.connect(pg_dsn) as first, psycopg.connect(pg_dsn) as second:
        lock_name(first, "business.年金计划")
        second.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            lock_name(second, "business.年金计划")
        second.rollback()
        lock_name(second, "business.组合计划")  # another name is not blocked
        first.commit()
        lock_name(second, "business.年金计划")  # released at commit
        second.rollback()


def test_stage_copy_round_trips_awkward_text_and_nulls_and_drops_at_commit(pg_conn):
    values = [("P1", "tab\there"), ("P2", "new\nline \\ back"), ("P3", None), ("P4", "年金")]
    with pg_conn.transaction():
        create_stage(pg_conn, "stage_test", ["年金计划号", "计划名称"])
        assert copy_rows(pg_conn, "stage_test", ["年金计划号", "计划名称"], iter(values)) == 4
        assert pg_conn.execute("SELECT * FROM stage_test ORDER BY 1").fetchall() == values
    with pytest.raises(psycopg.errors.UndefinedTable):
        pg_conn.execute("SELECT * FROM stage_test")
    pg_conn.rollback()


def test_converted_values_cast_non_text_and_never_truncate_text(pg_conn, pg_schema):
    pg_conn.execute(
        sql.SQL("CREATE TABLE {} (code varchar(3), amount numeric(18, 2), month date)").format(
            table_ref(pg_schema, "t")
        )
    )
    info = table_info(pg_conn, pg_schema, "t")
    assert [stage_type(info.columns[c]) for c in ("code", "amount", "month")] == ["text", "numeric(18,2)", "date"]
    values = sql.SQL(", ").join(
        converted_value(sql.Literal(v), info.columns[c])
        for c, v in (("code", "abc"), ("amount", "1234.5"), ("month", "2026-10-01"))
    )
    pg_conn.execute(sql.SQL("INSERT INTO {} SELECT {}").format(table_ref(pg_schema, "t"), values))
    assert pg_conn.execute(sql.SQL("SELECT amount, month FROM {}").format(table_ref(pg_schema, "t"))).fetchone() == (
        Decimal("1234.50"),
        date(2026, 10, 1),
    )
    too_long = converted_value(sql.Literal("abcdef"), info.columns["code"])
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        pg_conn.execute(sql.SQL("INSERT INTO {} (code) SELECT {}").format(table_ref(pg_schema, "t"), too_long))
    pg_conn.rollback()
