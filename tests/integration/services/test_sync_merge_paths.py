"""ReferenceSyncService's two merge paths (issue 13): the key check and the counts on each, end to end.

A full re-sync merges with one ``FULL JOIN`` of the whole target and learns from its counts whether a key
was staged twice; a stage much smaller than the target is probed by key and checked with a ``GROUP BY``
first.  Either way a duplicated source key fails the table and changes nothing — also when both copies
equal the row already in the target, which the pre-filter keeps out of the ``INSERT``.  The incremental
MySQL read asks for key-ordered lookups (Multi-Range Read), which MariaDB uses for the ``updated_at`` range.
"""

from __future__ import annotations

import pytest
from psycopg import sql

from airflow_provider_refdata.services.source_mysql import _prefer_key_ordered_lookups
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.services.sync_merge import SMALL_STAGE_RATIO
from tests.conftest import mysql_connect
from tests.integration.services.sync_env import PORTFOLIO, SyncEnv


@pytest.fixture
def env(pg_server, mysql_server, pg_schema, mysql_db, tmp_path) -> SyncEnv:
    return SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)


def _grow_target(env: SyncEnv, rows: int) -> None:
    """Auto-derived rows the source does not have, so the two staged rows are a small stage; analyzed."""
    for i in range(rows):
        env.add_auto_derived(PORTFOLIO, {"组合代码": f"Z{i:03}", "组合名称": "推导"})
    env.pg(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(env.schema), sql.Identifier(PORTFOLIO)))


@pytest.mark.parametrize("small_stage", [False, True], ids=["full join", "key probes"])
def test_a_key_twice_in_the_source_fails_even_when_both_copies_equal_the_target(env, small_stage):
    service = ReferenceSyncService()
    assert service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"])[0].error is None
    if small_stage:
        _grow_target(env, 3 * SMALL_STAGE_RATIO + 5)  # 3 staged rows
    before = env.rows(PORTFOLIO, with_xmin=True)
    # an exact copy of Q001 (same values as the target row, so no copy differs from it)
    env.mysql("INSERT INTO portfolio_plan SELECT * FROM portfolio_plan WHERE portfolio_code = 'Q001'")
    result = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"], force_full=True)[0]
    assert result.error is not None and "duplicate keys" in result.error and "组合代码='Q001' (2 rows)" in result.error
    assert (result.rows_inserted, result.rows_updated) == (0, 0)
    assert env.rows(PORTFOLIO, with_xmin=True) == before


@pytest.mark.parametrize("small_stage", [False, True], ids=["full join", "key probes"])
def test_counts_are_exact_on_both_paths(env, small_stage):
    service = ReferenceSyncService()
    service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"])
    if small_stage:
        _grow_target(env, 4 * SMALL_STAGE_RATIO + 5)  # 4 staged rows
    env.add_auto_derived(PORTFOLIO, {"组合代码": "Q003", "组合名称": "新"})  # promoted: same values as the source
    env.mysql(
        "INSERT INTO portfolio_plan VALUES ('Q003', '新', NULL, '2024-05-01'), ('Q004', '四', 'P001', '2024-05-01')"
    )
    env.mysql("UPDATE portfolio_plan SET portfolio_name = NULL WHERE portfolio_code = 'Q002'")  # value → NULL
    before = {row[0]: row[-1] for row in env.rows(PORTFOLIO, with_xmin=True)}
    result = service.sync_all(env.config, env.sources(), env.pg_dsn, tables=["portfolio_plan"], force_full=True)[0]
    assert result.error is None
    assert (result.rows_read, result.rows_inserted, result.rows_updated, result.rows_promoted) == (4, 1, 2, 1)
    assert result.rows_unchanged == 1
    after = {row[0]: row for row in env.rows(PORTFOLIO, with_xmin=True)}
    assert after["Q001"][-1] == before["Q001"], "the unchanged row is not rewritten"
    assert after["Q002"][1] is None and after["Q003"][3] == "authoritative" and after["Q004"][1] == "四"


def test_the_incremental_read_uses_key_ordered_lookups_on_mariadb(env):
    # enough older rows that the optimizer reads the recent ones through the updated_at index
    env.mysql(
        "INSERT INTO annuity_plan (plan_code, plan_name, updated_at) "
        "SELECT CONCAT('X', seq), 'x', '2020-01-01' FROM seq_1_to_2000"
    )
    my = mysql_connect(env.mysql_dsn, env.database)
    try:
        _prefer_key_ordered_lookups(my)
        cur = my.cursor()
        cur.execute("SELECT @@optimizer_switch, @@mrr_buffer_size, @@read_rnd_buffer_size")
        switches, mrr_buffer, rnd_buffer = cur.fetchone()
        switches = switches.decode() if isinstance(switches, bytes) else switches
        assert "mrr=on" in switches and "mrr_cost_based=off" in switches and "mrr_sort_keys=on" in switches
        assert mrr_buffer == rnd_buffer == 16 * 1024 * 1024
        cur.execute("EXPLAIN SELECT plan_name FROM annuity_plan WHERE updated_at >= '2024-01-02'")  # 2 of 2003 rows
        extra = cur.fetchone()[-1]
        assert "Rowid-ordered scan" in (extra.decode() if isinstance(extra, bytes) else extra)
    finally:
        my.close()
