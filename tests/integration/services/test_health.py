"""ReferenceHealthService on the real PostgreSQL: counts, ratio, age buckets, domains, filters, isolation, snapshots."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import ForeignKeyConfig
from airflow_provider_refdata.services.alerts import check_alerts
from airflow_provider_refdata.services.health import ReferenceHealthService

TRACKING = (
    "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
    "_derived_from_domain varchar(64), _derived_at timestamptz"
)
PLACEHOLDER_DDL = """
CREATE SCHEMA IF NOT EXISTS refdata;
CREATE TABLE IF NOT EXISTS refdata.placeholder (
    table_name text NOT NULL, key text NOT NULL, first_seen_at timestamptz NOT NULL,
    first_seen_run text NOT NULL, last_seen_at timestamptz NOT NULL,
    last_seen_run text NOT NULL, domains text[] NOT NULL, fact_rows_total bigint NOT NULL,
    fact_rows_last bigint NOT NULL, resolution text, resolved_at timestamptz, resolved_by text,
    PRIMARY KEY (table_name, key)
)
"""

# (key, source, needs_review, domain, age in days or None)
PLAN_ROWS = [
    ("A1", "authoritative", False, None, None),
    ("A2", "authoritative", False, None, None),
    ("A3", "authoritative", False, None, None),
    ("A4", "authoritative", False, None, None),
    ("D1", "auto_derived", True, "annuity", 0.5),  # ≤ 1 d
    ("D2", "auto_derived", True, "annuity", 3),  # ≤ 7 d
    ("D3", "auto_derived", True, "annuity", 20),  # ≤ 30 d
    ("D4", "auto_derived", True, "income", 45),  # older
    ("D5", "auto_derived", False, "income", 60),  # approved: auto-derived, not in review, not open
]


@pytest.fixture
def warehouse(pg_dsn: str, pg_schema: str):
    """Two reference tables with tracking columns (年金计划 with 9 rows, 组织架构 empty), no refdata.placeholder."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS refdata.placeholder")
        for table, key in (("年金计划", "年金计划号"), ("组织架构", "机构代码")):
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} ({} varchar(32) PRIMARY KEY, {})").format(
                    sql.Identifier(pg_schema), sql.Identifier(table), sql.Identifier(key), sql.SQL(TRACKING)
                )
            )
        for key, source, review, domain, age in PLAN_ROWS:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.年金计划 VALUES (%s, %s, %s, %s, now() - make_interval(secs => %s * 86400))"
                ).format(sql.Identifier(pg_schema)),
                (key, source, review, domain, age),
            )
    yield pg_schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS refdata.placeholder")
        if _exists(conn, "refdata.health_snapshot"):
            conn.execute("DELETE FROM refdata.health_snapshot WHERE table_name LIKE %s", (f"{pg_schema}.%",))


def _exists(conn, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def test_counts_ratio_buckets_and_domains_from_the_tracking_columns(pg_conn, warehouse):
    plan, org = f"{warehouse}.年金计划", f"{warehouse}.组织架构"
    health = ReferenceHealthService().table_health(pg_conn, [plan, org], store=False)
    assert [h.table for h in health] == [plan, org]
    h = health[0]
    assert h.error is None and h.placeholder_source == "tracking_columns"
    assert (h.total_rows, h.authoritative_rows, h.auto_derived_rows, h.needs_review_rows) == (9, 4, 5, 4)
    assert h.auto_derived_ratio == pytest.approx(5 / 9, abs=1e-6)
    assert h.open_placeholders == 4
    assert h.age_buckets.model_dump() == {"up_to_1d": 1, "up_to_7d": 1, "up_to_30d": 1, "older": 1, "unknown": 0}
    assert h.oldest_open_placeholder_age_days == pytest.approx(45, abs=0.01)
    assert h.newest_open_placeholder_age_days == pytest.approx(0.5, abs=0.01)
    assert h.oldest_open_placeholder_at < h.newest_open_placeholder_at
    assert h.domains == ["annuity", "income"] and h.rows_by_domain == {"annuity": 3, "income": 2}
    empty = health[1]
    assert empty.error is None and empty.total_rows == 0 and empty.auto_derived_ratio == 0.0
    assert empty.open_placeholders == 0 and empty.oldest_open_placeholder_at is None
    # JSON round trip
    assert type(h).model_validate_json(h.model_dump_json()) == h


def test_filters_by_domain_source_and_derivation_time(pg_conn, warehouse):
    plan = f"{warehouse}.年金计划"
    service = ReferenceHealthService()
    (income,) = service.table_health(pg_conn, plan, domain="income", store=False)
    # authoritative rows always count; only income's auto-derived rows and placeholders
    assert (income.total_rows, income.auto_derived_rows, income.needs_review_rows, income.open_placeholders) == (
        6,
        2,
        1,
        1,
    )
    assert income.domains == ["income"] and income.filters.domain == "income"
    (auto,) = service.table_health(pg_conn, plan, source="auto_derived", store=False)
    assert (auto.total_rows, auto.authoritative_rows, auto.auto_derived_ratio) == (5, 0, 1.0)
    (authoritative,) = service.table_health(pg_conn, plan, source="authoritative", store=False)
    assert (authoritative.total_rows, authoritative.open_placeholders) == (4, 0)
    (recent,) = service.table_health(pg_conn, plan, since=timedelta(days=10), store=False)
    assert (recent.auto_derived_rows, recent.open_placeholders) == (2, 2)
    assert recent.age_buckets.up_to_1d == 1 and recent.age_buckets.up_to_7d == 1 and recent.age_buckets.older == 0
    (window,) = service.table_health(
        pg_conn,
        plan,
        since=recent.taken_at - timedelta(days=50),
        until=recent.taken_at - timedelta(days=10),
        store=False,
    )
    assert (window.auto_derived_rows, window.open_placeholders) == (2, 2)  # D3 (20 d), D4 (45 d)
    with pytest.raises(ValueError, match="source must be one of"):
        service.table_health(pg_conn, plan, source="nonsense")


def test_a_failing_table_is_reported_and_the_others_still_answer(pg_conn, pg_dsn, warehouse):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {}.plain (k text PRIMARY KEY)").format(sql.Identifier(warehouse)))
    plan = f"{warehouse}.年金计划"
    names = [f"{warehouse}.missing", plan, f"{warehouse}.plain", f"{warehouse}.组织架构"]
    health = ReferenceHealthService().table_health(pg_conn, names, store=False)
    assert [h.table for h in health] == names
    assert "does not exist" in health[0].error
    assert health[1].error is None and health[1].total_rows == 9
    assert "lacks the tracking columns _source, _needs_review" in health[2].error
    assert health[3].error is None
    alerts = check_alerts(health, {"needs_review_count": {"warn": 1}})
    assert [(a.table, a.rule, a.level) for a in alerts] == [
        (names[0], "health_check_failed", "fail"),
        (plan, "needs_review_count", "warn"),
        (names[2], "health_check_failed", "fail"),
    ]


def test_inside_a_caller_transaction_a_failure_only_rolls_back_its_savepoint(pg_conn, warehouse):
    pg_conn.execute("CREATE TEMP TABLE caller_work (x int)")  # the caller's open transaction
    health = ReferenceHealthService().table_health(pg_conn, [f"{warehouse}.nope", f"{warehouse}.年金计划"], store=False)
    assert health[0].error and health[1].total_rows == 9
    assert pg_conn.execute("SELECT count(*) FROM caller_work").fetchone()[0] == 0  # still usable, not rolled back
    pg_conn.rollback()


def test_tables_from_fk_configs(pg_conn, warehouse):
    fk = ForeignKeyConfig(
        name="fk_plan",
        source_column="计划代码",
        target_schema=warehouse,
        target_table="年金计划",
        target_key="年金计划号",
    )
    health = ReferenceHealthService().table_health(pg_conn, [fk, fk], store=False)
    assert [h.table for h in health] == [f"{warehouse}.年金计划"]


def test_with_a_placeholder_table_open_placeholders_come_from_provenance(pg_conn, pg_dsn, warehouse):
    plan, org = f"{warehouse}.年金计划", f"{warehouse}.组织架构"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        if not _exists(conn, "refdata.placeholder"):
            conn.execute(PLACEHOLDER_DDL)
        rows = [  # (table, key, age days, domains, resolution)
            (plan, "D1", 2, ["annuity"], None),
            (plan, "D2", 10, ["annuity", "payroll"], None),
            (plan, "D3", 40, ["income"], None),
            (plan, "D4", 90, ["income"], "promoted"),  # closed: not open
            (org, "G9", 0.1, ["annuity"], None),  # on a table with no rows at all
            (f"{warehouse}.other", "X", 5, ["annuity"], None),
        ]
        for table, key, age, domains, resolution in rows:
            conn.execute(
                "INSERT INTO refdata.placeholder (table_name, key, first_seen_at, first_seen_run, last_seen_at,"
                " last_seen_run, domains, fact_rows_total, fact_rows_last, resolution)"
                " VALUES (%s, %s, now() - make_interval(secs => %s * 86400), 'r1', now(), 'r1', %s, 10, 1, %s)",
                (table, key, age, domains, resolution),
            )
    service = ReferenceHealthService()
    h, o = service.table_health(pg_conn, [plan, org], store=False)
    assert h.placeholder_source == "provenance"
    assert (h.total_rows, h.auto_derived_rows, h.needs_review_rows) == (9, 5, 4)  # still the table's own rows
    assert h.open_placeholders == 3
    assert h.age_buckets.model_dump() == {"up_to_1d": 0, "up_to_7d": 1, "up_to_30d": 1, "older": 1, "unknown": 0}
    assert h.oldest_open_placeholder_age_days == pytest.approx(40, abs=0.01)
    assert h.domains == ["annuity", "income", "payroll"]
    assert (o.total_rows, o.open_placeholders, o.age_buckets.up_to_1d, o.domains) == (0, 1, 1, ["annuity"])
    (payroll,) = service.table_health(pg_conn, plan, domain="payroll", store=False)
    assert payroll.open_placeholders == 1 and payroll.auto_derived_rows == 0
    (auth,) = service.table_health(pg_conn, plan, source="authoritative", store=False)
    assert auth.open_placeholders == 0


def test_snapshots_are_written_by_each_check_and_read_back_by_time(pg_conn, pg_dsn, warehouse):
    plan, org = f"{warehouse}.年金计划", f"{warehouse}.组织架构"
    service = ReferenceHealthService()
    first = service.table_health(pg_conn, [plan, org, f"{warehouse}.missing"])
    service.table_health(pg_conn, [plan], domain="income")  # filtered: not part of the trend by default
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("DELETE FROM {}.年金计划 WHERE _source = 'auto_derived'").format(sql.Identifier(warehouse))
        )
    second = service.table_health(pg_conn, [plan, org])
    assert pg_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed, nothing left open
    trend = service.snapshots(pg_dsn, [plan])  # another connection sees them
    assert [(s.taken_at, s.auto_derived_rows) for s in trend] == [(first[0].taken_at, 5), (second[0].taken_at, 0)]
    assert trend[0] == first[0]  # the whole model round-trips through jsonb
    assert len(service.snapshots(pg_conn, [plan], include_filtered=True)) == 3
    assert [s.taken_at for s in service.snapshots(pg_conn, [plan], since=second[0].taken_at)] == [second[0].taken_at]
    assert service.snapshots(pg_conn, [plan], until=first[0].taken_at) == []
    failed = service.snapshots(pg_conn, [f"{warehouse}.missing"])
    assert len(failed) == 1 and "does not exist" in failed[0].error
    # one snapshot row per table per check, indexed by (table_name, taken_at)
    with pg_conn.transaction():
        n = pg_conn.execute(
            "SELECT count(*) FROM refdata.health_snapshot WHERE table_name = ANY(%s)", ([plan, org],)
        ).fetchone()[0]
        index = pg_conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'refdata' AND indexname = 'health_snapshot_table_idx'"
        ).fetchone()[0]
    assert n == 5 and "(table_name, taken_at)" in index
