"""ReferenceSyncService against the real PostgreSQL and MariaDB: counts, idempotence, promotion, incremental."""

from __future__ import annotations

from datetime import datetime

import pytest
from psycopg import sql

from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.integration.services.sync_env import ORG, PLAN, PORTFOLIO, PRODUCT_LINE, SyncEnv


@pytest.fixture
def env(pg_server, mysql_server, pg_schema, mysql_db, tmp_path) -> SyncEnv:
    return SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)


def _by_table(results):
    return {r.table.split(".", 1)[1]: r for r in results}


def test_four_tables_sync_with_exact_counts_and_clean_values(env):
    results = ReferenceSyncService().sync_all(env.config, env.sources(), env.pg_dsn)
    by = _by_table(results)
    assert [(r.error, r.skipped_reason) for r in results] == [(None, None)] * 4
    assert [
        (by[t].rows_read, by[t].rows_inserted, by[t].rows_updated) for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE)
    ] == [
        (3, 3, 0),
        (2, 2, 0),
        (2, 2, 0),
        (3, 3, 0),
    ]
    assert all(r.attempts == 1 for r in results)
    # trimmed strings, COPY special characters intact, NULL kept, tracking columns authoritative
    assert env.rows(PLAN) == [
        ("P001", "甲计划", "单一", "客户A", None, "authoritative", False, None, None),
        ("P002", "乙计划\twith tab", "集合", "客户B\\C", None, "authoritative", False, None, None),
        ("P003", "丙计划\nline2", "单一", None, None, "authoritative", False, None, None),
    ]
    # zero date -> NULL; Chinese/space MySQL column name quoted
    assert [(r[0], r[2]) for r in env.rows(ORG)] == [("G01", datetime(2001, 5, 1).date()), ("G02", None)]
    # YAML: trimmed, NaN -> NULL, numeric key as text
    assert [r[:3] for r in env.rows(PRODUCT_LINE)] == [
        ("301", "团体养老保障", "保险业务"),
        ("PL201", "企业年金受托", "企业年金"),
        ("PL202", "企业年金投资", None),
    ]
    assert by[PLAN].watermark_before is None
    assert by[PLAN].watermark_after == datetime(2024, 1, 3, 8, 0)
    assert env.watermark(PLAN) == datetime(2024, 1, 3, 8, 0)
    # TIMESTAMP source column: the watermark is UTC whatever the server zone (11:00 at +08:00 is 03:00 UTC)
    assert env.watermark(ORG) == datetime(2024, 1, 1, 3, 0)
    logged = env.pg("SELECT subject, status FROM refdata.run_log WHERE subject LIKE %s", (f"{env.schema}.%",))
    assert sorted(logged) == sorted((f"{env.schema}.{t}", "success") for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE))


def test_rerun_changes_nothing_and_leaves_rows_untouched(env):
    service = ReferenceSyncService()
    env.add_auto_derived(PORTFOLIO, {"组合代码": "Q999", "组合名称": "推导组合"})
    service.sync_all(env.config, env.sources(), env.pg_dsn)
    before = {t: env.rows(t, with_xmin=True) for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE)}
    again = service.sync_all(env.config, env.sources(), env.pg_dsn, force_full=True)
    assert [(r.rows_inserted, r.rows_updated, r.rows_deleted, r.rows_promoted) for r in again] == [(0, 0, 0, 0)] * 4
    assert [r.rows_unchanged for r in again] == [3, 2, 2, 3]
    # xmin unchanged = not a single row rewritten; the auto-derived row keeps its _derived_at
    assert {t: env.rows(t, with_xmin=True) for t in before} == before
    derived = [r for r in env.rows(PORTFOLIO) if r[0] == "Q999"][0]
    assert derived[3:5] == ("auto_derived", True) and derived[6] is not None


def test_promotion_of_auto_derived_rows(env):
    env.add_auto_derived(PLAN, {"年金计划号": "P002", "计划名称": "推导名", "备注": "手工备注"})
    env.add_auto_derived(PLAN, {"年金计划号": "P777", "计划名称": "未覆盖"})
    untouched = [r for r in env.rows(PLAN, with_xmin=True) if r[0] == "P777"]
    result = ReferenceSyncService().sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_promoted) == (3, 2, 1, 1)
    assert result.rows_unchanged == 0
    rows = {r[0]: r for r in env.rows(PLAN, with_xmin=True)}
    # business columns from the source, the column absent from the source kept, derived fields cleared
    assert rows["P002"][:9] == (
        "P002",
        "乙计划\twith tab",
        "集合",
        "客户B\\C",
        "手工备注",
        "authoritative",
        False,
        None,
        None,
    )
    assert [rows["P777"]] == untouched
    assert rows["P777"][5] == "auto_derived"


def test_incremental_reads_only_changed_rows_and_force_full_reads_all(env):
    service = ReferenceSyncService()
    first = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    assert first.rows_read == 3
    env.mysql("UPDATE annuity_plan SET plan_name = '甲计划（新）', updated_at = '2024-02-01' WHERE plan_code = 'P001'")
    second = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    # since = 2024-01-03 08:00 - 60 s: the changed row plus P003 (inside the lookback window)
    assert (second.rows_read, second.rows_updated, second.rows_unchanged) == (2, 1, 1)
    assert second.watermark_before == datetime(2024, 1, 3, 8, 0)
    assert second.watermark_after == datetime(2024, 2, 1)
    assert [r[1] for r in env.rows(PLAN) if r[0] == "P001"] == ["甲计划（新）"]
    third = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    assert (third.rows_read, third.rows_updated) == (1, 0)
    full = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"], force_full=True)[0]
    assert (full.rows_read, full.rows_unchanged) == (3, 3)


def test_overlong_value_fails_the_table_and_keeps_rows_and_watermark(env):
    service = ReferenceSyncService()
    service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])
    before = env.rows(PLAN, with_xmin=True)
    env.mysql(
        "UPDATE annuity_plan SET plan_name = %s, updated_at = '2024-03-01' WHERE plan_code = 'P002'", ("长" * 60,)
    )
    env.mysql("UPDATE annuity_plan SET plan_type = 'ok', updated_at = '2024-03-01' WHERE plan_code = 'P001'")
    failed = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    assert failed.error is not None
    assert f"{env.schema}.{PLAN}" in failed.error and "'P002'" in failed.error and "'计划名称'" in failed.error
    assert "60 characters" in failed.error and "allows 50" in failed.error
    assert env.rows(PLAN, with_xmin=True) == before
    assert env.watermark(PLAN) == datetime(2024, 1, 3, 8, 0)
    status = env.pg("SELECT last_status FROM refdata.sync_state WHERE table_name = %s", (f"{env.schema}.{PLAN}",))
    assert status == [("failed",)]
    assert env.pg(
        "SELECT count(*) FROM refdata.run_log WHERE subject = %s AND status = 'failed'", (f"{env.schema}.{PLAN}",)
    ) == [(1,)]
    # fixed at the source: the next run picks up from the old watermark
    env.mysql("UPDATE annuity_plan SET plan_name = '乙' WHERE plan_code = 'P002'")
    fixed = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    assert fixed.error is None and fixed.watermark_before == datetime(2024, 1, 3, 8, 0)
    assert fixed.rows_updated == 2


def test_duplicate_source_keys_fail_clearly_and_change_nothing(env):
    service = ReferenceSyncService()
    # into an empty target (plain INSERT path) ...
    env.mysql("INSERT INTO portfolio_plan VALUES ('Q001', '重复', 'P003', '2024-05-01')")
    first = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"])[0]
    assert "duplicate keys" in first.error and "组合代码='Q001' (2 rows)" in first.error
    assert env.rows(PORTFOLIO) == [] and env.watermark(PORTFOLIO) is None
    env.mysql("DELETE FROM portfolio_plan WHERE portfolio_name = '重复'")
    # ... and into a filled one (merge path)
    service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"])
    before = env.rows(PORTFOLIO, with_xmin=True)
    env.mysql(
        "INSERT INTO portfolio_plan VALUES ('Q002', '重复', 'P003', '2024-05-01'), ('Q003', '新', 'P003', '2024-05-01')"
    )
    result = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"], force_full=True)[0]
    assert result.error is not None
    assert "duplicate keys" in result.error and "组合代码='Q002' (2 rows)" in result.error
    assert env.rows(PORTFOLIO, with_xmin=True) == before
    assert env.watermark(PORTFOLIO) == datetime(2024, 1, 2, 9, 0)


def test_plan_only_reports_the_same_counts_and_writes_nothing(env):
    env.add_auto_derived(PLAN, {"年金计划号": "P001", "计划名称": "推导"})
    before = env.rows(PLAN, with_xmin=True)
    service = ReferenceSyncService()
    planned = service.sync_all(env.config, env.sources(), env.pg_dsn, plan_only=True)
    assert all(r.plan_only and r.error is None for r in planned)
    assert env.rows(PLAN, with_xmin=True) == before
    assert env.rows(PORTFOLIO) == [] and env.rows(PRODUCT_LINE) == []
    assert env.pg(
        "SELECT to_regclass('refdata.run_log') IS NULL OR NOT EXISTS "
        "(SELECT 1 FROM refdata.run_log WHERE subject LIKE %s)",
        (f"{env.schema}.%",),
    ) == [(True,)]
    real = service.sync_all(env.config, env.sources(), env.pg_dsn)
    counts = ["rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted", "rows_promoted"]
    assert [[getattr(r, c) for c in counts] for r in planned] == [[getattr(r, c) for c in counts] for r in real]
    assert planned[0].rows_promoted == 1


def test_disabled_config_and_table_filter(env):
    service = ReferenceSyncService(env.config, env.sources())
    assert [r.table for r in service.sync_all(conn=env.pg_dsn, tables=["organization"])] == [f"{env.schema}.{ORG}"]
    env.write_config(enabled=False)
    assert service.sync_all(env.config, conn=env.pg_dsn) == []


def test_small_incremental_batch_against_a_larger_table_counts_and_promotes_exactly(env):
    # 3,003 rows in the target and 3 staged: the merge probes the primary key per staged row
    env.mysql(
        "INSERT INTO annuity_plan SELECT CONCAT('X', seq), CONCAT('计划', seq), '单一', NULL, '2023-01-01' "
        "FROM seq_1_to_3000"
    )
    service = ReferenceSyncService()
    assert service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0].rows_inserted == 3003
    env.pg(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(env.schema), sql.Identifier(PLAN)))
    env.mysql("UPDATE annuity_plan SET plan_name = '改', updated_at = '2024-09-01' WHERE plan_code = 'X7'")
    env.mysql("INSERT INTO annuity_plan VALUES ('P950', '新计划', '集合', NULL, '2024-09-01')")
    env.add_auto_derived(PLAN, {"年金计划号": "P950", "计划名称": "推导", "备注": "保留"})
    result = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    counts = (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_promoted, result.rows_unchanged)
    assert counts == (3, 0, 2, 1, 1)  # X7 changed, P950 promoted, P003 re-read inside the lookback window
    rows = {r[0]: r for r in env.rows(PLAN)}
    assert rows["P950"][:8] == ("P950", "新计划", "集合", None, "保留", "authoritative", False, None)
    assert rows["X7"][1] == "改"


def test_overlong_value_on_the_first_load_is_named_too(env):
    env.mysql("UPDATE annuity_plan SET plan_name = %s WHERE plan_code = 'P003'", ("长" * 51,))
    result = ReferenceSyncService().sync_all(env.config, env.sources(), env.pg_dsn, tables=["annuity_plan"])[0]
    # the direct COPY into the empty table is rejected; the staged retry names key and column
    assert "'P003'" in result.error and "'计划名称'" in result.error and "allows 50" in result.error
    assert env.rows(PLAN) == [] and env.watermark(PLAN) is None


def test_config_file_tables_need_no_source_object(env):
    # Only the MySQL source is given: reference files are read directly from the configured paths.
    sources = {"legacy_mysql": env.sources()["legacy_mysql"]}
    [result] = ReferenceSyncService().sync_all(env.config, sources, env.pg_dsn, tables=["product_line"])
    assert (result.error, result.skipped_reason, result.rows_inserted) == (None, None, 3)
    assert [r[0] for r in env.rows(PRODUCT_LINE)] == ["301", "PL201", "PL202"]
