"""DashboardService on the real servers: the page's data after a real sync, backfill and health checks."""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest

from airflow_provider_refdata.services.dashboard import Dashboard, DashboardService
from devtools import demo
from tests.conftest import REPO_ROOT
from tests.integration.dashboard_world import WARN_RATIO, build_world

PLAN = "business.年金计划"


@pytest.fixture(scope="module")
def world(pg_server, mysql_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    with demo.isolated_databases(pg_server, mysql_server, f"dash_{uuid.uuid4().hex[:10]}") as (pg_dsn, mysql_dsn):
        yield build_world(pg_dsn, mysql_dsn, folder)


def _sql(dsn: str, query: str, *params):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def test_summary_shows_counts_series_placeholders_syncs_and_alerts(world):
    dash = DashboardService(world.config_dir).summary(world.pg_dsn)
    assert dash.tables_from == "configuration"
    assert dash.tables[: len(world.tables)] == world.tables

    # Counts: what the tables hold right now, split for the stacked bar.
    counts = {c.table: c for c in dash.counts}
    for table in world.tables:
        schema, name = table.split(".")
        (expected,) = _sql(
            world.pg_dsn,
            f"SELECT count(*) FILTER (WHERE _source = 'authoritative'), count(*) FILTER (WHERE _source = "
            f"'auto_derived' AND NOT _needs_review), count(*) FILTER (WHERE _needs_review), count(*) "
            f'FROM "{schema}"."{name}"',
        )
        c = counts[table]
        assert (c.authoritative, c.auto_derived, c.needs_review, c.total_rows) == expected, table
        assert c.authoritative + c.auto_derived + c.needs_review == c.total_rows
    assert counts[PLAN].needs_review > 0

    # Ratio over time: two health snapshots and the two ensure_references runs per table, oldest first.
    plan_ratio = dash.ratio_series[PLAN]
    assert [p.source for p in plan_ratio] == ["health_snapshot", "ensure_references", "health_snapshot",
                                              "ensure_references"]  # fmt: skip
    assert [p.at for p in plan_ratio] == sorted(p.at for p in plan_ratio)
    assert plan_ratio[0].value == 0.0  # after the first sync nothing was derived yet
    assert plan_ratio[-1].value == pytest.approx(world.health_after_backfill[0].auto_derived_ratio, abs=1e-6)
    assert plan_ratio[1].value == pytest.approx(world.hybrid.per_table_ratio[PLAN], abs=1e-6)
    assert plan_ratio[1].domain == demo.FACTS_DOMAIN

    # Coverage over time: each run's pre-load coverage of the table (the backfill closed the gap).
    first, second = dash.coverage_series[PLAN]
    metric = next(m for m in world.hybrid.coverage_metrics if m.table == PLAN)
    assert first.value == pytest.approx(metric.covered_values / metric.total_fk_values)
    assert first.value < 1.0 and second.value == 1.0 and first.at < second.at

    # Open placeholders, most used first, limited per table; the same keys refdata.placeholder ranks first.
    assert dash.placeholders
    uses = [p.fact_rows_total for p in dash.placeholders]
    assert uses == sorted(uses, reverse=True)
    top_plan = _sql(
        world.pg_dsn,
        "SELECT key FROM refdata.placeholder WHERE table_name = %s AND resolution IS NULL "
        "ORDER BY fact_rows_total DESC, key LIMIT 10",
        PLAN,
    )
    assert [p.key for p in dash.placeholders if p.table == PLAN] == [k for (k,) in top_plan]
    assert all(p.domains == [demo.FACTS_DOMAIN] for p in dash.placeholders)

    # Last sync per table: the incremental second sync, with its counts and the stored watermark.
    syncs = {s.table: s for s in dash.last_syncs}
    for result in world.second_sync:
        s = syncs[result.table]
        assert s.status == "success"
        assert (s.rows_read, s.rows_inserted, s.rows_updated, s.rows_promoted) == (
            result.rows_read,
            result.rows_inserted,
            result.rows_updated,
            result.rows_promoted,
        )
        assert s.duration_seconds == result.duration_seconds  # one figure: the one its run log was written with
        assert s.source_type == result.source_type
    (watermark,) = _sql(world.pg_dsn, "SELECT watermark FROM refdata.sync_state WHERE table_name = %s", PLAN)[0]
    assert watermark is not None and syncs[PLAN].watermark == watermark

    # Alerts: the health rules of the configuration on the current counts.
    warned = {a.table for a in dash.alerts}
    assert warned == {c.table for c in dash.counts if c.auto_derived_ratio > WARN_RATIO}
    assert PLAN in warned and all(a.level == "warn" for a in dash.alerts)

    # JSON round trip (what the plugin's API returns).
    assert Dashboard.model_validate_json(dash.model_dump_json()) == dash


def test_a_page_view_writes_no_snapshot(world):
    before = _sql(world.pg_dsn, "SELECT count(*) FROM refdata.health_snapshot")
    DashboardService(world.config_dir).summary(world.pg_dsn)
    assert _sql(world.pg_dsn, "SELECT count(*) FROM refdata.health_snapshot") == before


def test_one_table_and_tables_from_the_warehouse_without_configuration(world, tmp_path):
    one = DashboardService(world.config_dir).summary(world.pg_dsn, [PLAN])
    assert one.tables == [PLAN] and [c.table for c in one.counts] == [PLAN]
    assert {p.table for p in one.placeholders} == {PLAN}
    assert DashboardService(world.config_dir).summary(world.pg_dsn, ["business.unknown"]).tables == []

    bare = DashboardService(tmp_path).summary(world.pg_dsn)  # no reference_sync.yml / foreign_keys.yml there
    assert bare.tables_from == "warehouse"
    assert set(world.tables) <= set(bare.tables)
    assert bare.alerts == []  # no rules without the configuration
    assert DashboardService(tmp_path).summary(world.pg_dsn, ["business.unknown"]).tables == []


def test_a_warehouse_without_refdata_tables(pg_server, tmp_path):
    name = f"dash_empty_{uuid.uuid4().hex[:8]}"
    dsn = demo.create_database(pg_server, name)
    try:
        dash = DashboardService(tmp_path).summary(dsn)
        assert dash.tables == [] and dash.counts == [] and dash.placeholders == [] and dash.last_syncs == []
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_service_imports_nothing_from_airflow(world):
    code = (
        "import sys\n"
        "from airflow_provider_refdata.services.dashboard import DashboardService\n"
        f"DashboardService({str(world.config_dir)!r}).summary({world.pg_dsn!r})\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"
