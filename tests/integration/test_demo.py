"""``make demo`` end to end on a smaller world: the same functions, real servers, real ``airflow dags test``.

Run 1 loads the legacy database and syncs everything in full; the fact file's new plans and portfolios are
backfilled as auto-derived rows; the DAG loads every fact row into a table with real foreign keys.  Run 2
applies one mutation round: the sync reads only the changed rows (plus the previous newest row, inside the
lookback window), promotes the auto-derived rows of the plans that were entered, and the backfill inserts
nothing.  The numbers are checked against what the generator says it produced.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest

from devtools import demo, sample_data
from devtools.sample_data import BLANK_MARKER, SampleSpec

PLAN, PORTFOLIO, ORG, PRODUCT_LINE = (f"business.{t}" for t in ("年金计划", "组合计划", "组织架构", "产品线"))


@pytest.fixture
def demo_databases(pg_server, mysql_server):
    with demo.isolated_databases(pg_server, mysql_server, f"demo_{uuid.uuid4().hex[:10]}") as dsns:
        yield dsns


def _by_table(results) -> dict:
    return {r.table: r for r in results}


def test_demo_twice_full_then_incremental(tmp_path, airflow_db, demo_databases):
    pg_dsn, mysql_dsn = demo_databases
    layout = demo.DemoLayout(tmp_path / "demo", airflow_home_dir=airflow_db)
    spec = SampleSpec.small()
    world = sample_data.generate(spec)
    facts = world.fact_rows()
    legacy_plans = {p.code for p in world.legacy_plans}
    legacy_portfolios = {p.code for p in world.legacy_portfolios}
    new_plans = {r["计划代码"] for r in facts} - legacy_plans
    new_portfolios = {r["组合代码"] for r in facts} - legacy_portfolios
    blank_org_rows = sum(1 for r in facts if r["机构代码"] in ("", BLANK_MARKER))
    assert new_plans and new_portfolios and blank_org_rows  # the world has something to backfill and skip

    first = demo.run_demo(layout, spec, pg_dsn=pg_dsn, mysql_dsn=mysql_dsn, log=lambda _m: None)
    text = demo.format_report(first)
    assert first.problems == [], text
    assert first.preparation.first_load
    assert [run.dag_id for run in first.dag_runs] == [demo.SYNC_DAG_ID, demo.FACTS_DAG_ID]

    sync = _by_table(first.sync_results)
    assert set(sync) == {PLAN, PORTFOLIO, ORG, PRODUCT_LINE}
    expected_rows = {PLAN: len(legacy_plans), PORTFOLIO: len(legacy_portfolios), ORG: 38, PRODUCT_LINE: 12}
    for table, rows in expected_rows.items():
        assert (sync[table].watermark_before, sync[table].rows_read, sync[table].rows_inserted) == (None, rows, rows)

    [hybrid] = first.hybrid_results[-1:]
    before = {m.fk_name: m for m in hybrid.coverage_metrics}
    fact_plans = {r["计划代码"] for r in facts}
    assert before["fk_plan"].missing_values == len(new_plans)
    assert before["fk_plan"].coverage_rate == pytest.approx(1 - len(new_plans) / len(fact_plans))
    assert before["fk_portfolio"].missing_values == len(new_portfolios)
    assert before["fk_organization"].blank_rows == blank_org_rows
    assert hybrid.backfill_count == len(new_plans) + len(new_portfolios)
    assert hybrid.threshold_warnings == [] and not hybrid.degraded_mode
    assert all(c.covered == c.distinct_values for c in first.coverage_after)
    assert first.table_sources[PLAN] == {"authoritative": len(legacy_plans), "auto_derived": len(new_plans)}
    assert first.table_sources[PORTFOLIO]["auto_derived"] == len(new_portfolios)
    assert first.facts_loaded == len(facts) == spec.fact_rows
    with psycopg.connect(pg_dsn) as conn:  # the facts land typed: a date month and numeric amounts
        months, total = conn.execute(
            'SELECT array_agg(DISTINCT "月度"), sum("期末资产规模") FROM business."规模明细"'
        ).fetchone()
    assert [m.day for m in months] == [1]
    assert total == sum(Decimal(str(r["期末资产规模"])) for r in facts)
    assert "first run: full load" in text and "backfill inserted" in text
    _assert_steward_act(first, pg_dsn, text)

    second = demo.run_demo(layout, spec, pg_dsn=pg_dsn, mysql_dsn=mysql_dsn, log=lambda _m: None)
    text = demo.format_report(second)
    assert second.problems == [], text
    mutation = second.preparation.mutation
    assert mutation is not None and mutation.round == 1 and len(mutation.entered_plans) == 2
    sync = _by_table(second.sync_results)
    for table, source_table in ((PLAN, "annuity_plan"), (PORTFOLIO, "portfolio_plan"), (ORG, "organization")):
        result = sync[table]
        changed = mutation.changed_rows[source_table]
        assert result.watermark_before is not None, table  # incremental
        # Only the changed rows are written; anything else read is inside the lookback window, unchanged.
        assert result.rows_inserted + result.rows_updated == changed, table
        assert result.rows_read == changed + result.rows_unchanged, table
        assert result.rows_unchanged <= 2, table
        assert result.rows_read < expected_rows[table] / 4, table
    assert sync[PLAN].rows_promoted == len(mutation.entered_plans)
    assert sync[PORTFOLIO].rows_promoted == len(mutation.entered_portfolios)
    [hybrid] = second.hybrid_results[-1:]
    assert hybrid.backfill_count == 0
    assert hybrid.pre_load_coverage == 1.0
    assert second.table_sources[PLAN]["auto_derived"] == len(new_plans) - 2
    assert second.facts_loaded == len(facts)
    assert "run 2: incremental" in text and "promoted to authoritative: " in text
    _assert_steward_act(second, pg_dsn, text)


def _assert_steward_act(report: demo.DemoReport, pg_dsn: str, text: str) -> None:
    """The third act: health, export without the sensitive column, one approve/remap/reject, the alias."""
    act = report.steward
    assert act is not None and act.problems == []
    assert {h.table for h in act.health} == {PLAN, PORTFOLIO, ORG, PRODUCT_LINE}
    assert all(h.ok for h in act.health)
    assert act.export.rows >= 3 and act.export.excluded_columns == ["客户名称"]
    exported = open(act.export.path, encoding="utf-8-sig").read()
    assert "客户名称" not in exported.splitlines()[0]
    assert sorted(action for action, _ in act.decisions.values()) == ["approve", "reject", "remap"]
    assert (act.dry_run.applied, act.dry_run.approved, act.dry_run.remapped, act.dry_run.rejected) == (False, 1, 1, 1)
    applied = act.applied
    assert (applied.applied, applied.approved, applied.remapped, applied.rejected, applied.errors) == (
        True,
        1,
        1,
        1,
        [],
    )
    assert sum(m.remapped_values for m in act.late_again.coverage_metrics) == 1
    assert act.late_again.backfill_count == 0
    keys = {key: action for key, (action, _) in act.decisions.items()}
    with psycopg.connect(pg_dsn) as conn:
        audit = dict(
            conn.execute(
                "SELECT key, action FROM refdata.review_log WHERE actor = %s AND key = ANY(%s)",
                ("demo-steward", list(keys)),
            ).fetchall()
        )
        present = {
            k
            for (k,) in conn.execute(
                'SELECT "年金计划号" FROM business."年金计划" WHERE "年金计划号" = ANY(%s)', (list(keys),)
            )
        }
    assert audit == keys
    assert present == {k for k, a in keys.items() if a == "approve"}  # remapped and rejected keys are gone
    assert "Steward loop" in text and "audit (refdata.review_log" in text


def test_sample_world_is_deterministic_and_shaped_like_a_real_month():
    spec = SampleSpec()
    world = sample_data.generate(spec)
    facts = world.fact_rows()
    assert sample_data.generate(spec).fact_rows() == facts  # same seed, same rows
    assert len(world.legacy_plans) == 1200 and 1300 <= len(world.legacy_portfolios) <= 1500
    assert [b.code for b in world.branches] == [f"G{i:02d}" for i in range(38)]
    assert len(facts) == 37_000 and list(facts[0]) == sample_data.FACT_COLUMNS
    # Every portfolio points at a plan; legacy portfolios at legacy plans (the warehouse has a real FK).
    legacy_plans = {p.code for p in world.legacy_plans}
    assert all(p.plan_code in legacy_plans for p in world.legacy_portfolios)
    fact_plans = {r["计划代码"] for r in facts}
    fact_portfolios = {r["组合代码"] for r in facts}
    new_plan_share = len(fact_plans - legacy_plans) / len(fact_plans)
    new_portfolio_share = len(fact_portfolios - {p.code for p in world.legacy_portfolios}) / len(fact_portfolios)
    assert 0.01 < new_plan_share < 0.06 and 0.01 < new_portfolio_share < 0.08
    org_codes = [r["机构代码"] for r in facts]
    assert 0 < org_codes.count("") < 0.03 * len(facts) and 0 < org_codes.count(BLANK_MARKER) < 0.03 * len(facts)
    assert {r["产品线代码"] for r in facts} <= set(sample_data.load_product_lines(spec.config_dir))
    assert all("\u4e00" <= r["客户名称"][0] <= "\u9fff" for r in facts[:100])  # Chinese names
