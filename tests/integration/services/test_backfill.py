"""GenericBackfillService against the real PostgreSQL: order, fill_null_only, plan_only, per-table errors."""

from __future__ import annotations

import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata import BackfillResult, GenericBackfillService
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    PLAN,
    create_business_tables,
    fk_configs,
    insert,
    rows,
)


def _plan_portfolio(schema: str, mode: str = "insert_missing"):
    plan, portfolio = fk_configs(schema)[:2]
    return [portfolio, plan.model_copy(update={"mode": mode})]


def _facts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "计划代码": ["P1", "P2", "P2"],
            "计划名称": ["计划一", "计划二", "计划二b"],
            "计划类型": ["单一", "集合", None],
            "客户名称": ["甲", "乙", "乙"],
            "主拓代码": ["G1", "G2", "G3"],
            "主拓机构": ["北京", "上海", "广州"],
            "期末资产规模": [1, 5, 9],
            "业务类型": ["受托", "投资", "受托"],
            "组合代码": ["Q1", "Q2", "Q3"],
            "组合名称": ["组合一", "组合二", "组合三"],
            "组合类型": ["固收", "权益", "混合"],
        }
    )


def _plans(conn, schema: str) -> list[tuple]:
    with conn.transaction():
        return conn.execute(
            sql.SQL(
                "SELECT 年金计划号, 计划名称, 计划类型, 主拓代码, _source, _needs_review, _derived_at IS NULL "
                "FROM {}.{} ORDER BY 1"
            ).format(sql.Identifier(schema), sql.Identifier(PLAN))
        ).fetchall()


def test_run_inserts_parents_before_children_through_a_dsn(pg_server, pg_schema):
    with psycopg.connect(pg_server) as conn:
        create_business_tables(conn, pg_schema)

    result = GenericBackfillService(DOMAIN).run(_facts(), _plan_portfolio(pg_schema), pg_server)

    assert isinstance(result, BackfillResult)
    assert result.processing_order == ["fk_plan", "fk_portfolio"]
    assert [(t.fk_name, t.candidates, t.inserted, t.skipped, t.error) for t in result.tables] == [
        ("fk_plan", 2, 2, 0, None),
        ("fk_portfolio", 3, 3, 0, None),
    ]
    assert result.total_inserted == 5 and result.rows_per_second > 0
    with psycopg.connect(pg_server) as conn:
        assert _plans(conn, pg_schema) == [
            ("P1", "计划一", "单一", "G1", "auto_derived", True, False),
            ("P2", "计划二", "集合", "G3", "auto_derived", True, False),
        ]


def test_fill_null_only_fills_null_business_columns_and_leaves_tracking_alone(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P1", "计划名称": "权威名称", "计划类型": None}])
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P9", "计划名称": "不在事实里"}])
    untouched = rows(pg_conn, pg_schema, PLAN, "年金计划号")[1]
    configs = _plan_portfolio(pg_schema, mode="fill_null_only")[1:]

    planned = GenericBackfillService(DOMAIN).run(_facts(), configs, pg_conn, plan_only=True)
    assert (planned.tables[0].inserted, planned.tables[0].updated) == (1, 1)
    assert _plans(pg_conn, pg_schema)[0][2] is None  # plan_only wrote nothing

    result = GenericBackfillService(DOMAIN).run(_facts(), configs, pg_conn)

    assert (result.tables[0].inserted, result.tables[0].updated, result.tables[0].skipped) == (1, 1, 1)
    plans = _plans(pg_conn, pg_schema)
    # P1: NULL columns filled, the non-NULL name kept, still authoritative and not in review
    assert plans[0] == ("P1", "权威名称", "单一", "G1", "authoritative", False, True)
    assert plans[1][4] == "auto_derived"
    assert rows(pg_conn, pg_schema, PLAN, "年金计划号")[2] == untouched
    again = GenericBackfillService(DOMAIN).run(_facts(), configs, pg_conn)
    assert (again.total_inserted, again.tables[0].updated) == (0, 0)


def test_value_too_long_is_stored_as_null_named_and_the_rest_proceeds(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    facts = _facts().assign(机构代码=["G1", "G1", "G1"], 机构名称=["北京", "北京", "北京"])
    facts.loc[1, "计划类型"] = "很长" * 30  # 计划类型 is varchar(50); P2's first non-blank type
    configs = [*_plan_portfolio(pg_schema), fk_configs(pg_schema)[2]]

    result = GenericBackfillService(DOMAIN).run(facts, configs, pg_conn)

    by_fk = {t.fk_name: t for t in result.tables}
    error = by_fk["fk_plan"].error
    assert "'计划类型'" in error and "'P2'" in error and "50 characters" in error and "stored as NULL" in error
    assert f"{pg_schema}.{PLAN}" in error and "(60 characters)" in error
    # Keys matter more than a descriptive value: both plans are there (flagged for review anyway), so the
    # portfolios that reference them go in too.
    assert (by_fk["fk_plan"].inserted, by_fk["fk_plan"].rejected) == (2, 0)
    assert by_fk["fk_portfolio"].error is None and by_fk["fk_portfolio"].inserted == 3
    assert by_fk["fk_organization"].error is None
    assert [(p[0], p[2]) for p in _plans(pg_conn, pg_schema)] == [("P1", "单一"), ("P2", None)]


def test_value_too_long_for_a_not_null_column_leaves_the_row_out(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("ALTER TABLE {}.{} ALTER COLUMN 机构名称 SET NOT NULL").format(
                sql.Identifier(pg_schema), sql.Identifier(ORG)
            )
        )
    facts = pd.DataFrame({"机构代码": ["G1", "G2", "G3"], "机构名称": ["北京", "长" * 201, "上海"]})

    (table,) = GenericBackfillService(DOMAIN).run(facts, [fk_configs(pg_schema)[2]], pg_conn).tables

    assert (table.inserted, table.rejected, table.skipped) == (2, 1, 0)
    assert "NOT NULL" in table.error and "'G2'" in table.error and "200 characters" in table.error
    with pg_conn.transaction():
        assert pg_conn.execute(
            sql.SQL("SELECT 机构代码 FROM {}.{} ORDER BY 1").format(sql.Identifier(pg_schema), sql.Identifier(ORG))
        ).fetchall() == [("G1",), ("G3",)]


def test_integer_key_and_numeric_columns_are_cast_from_text(pg_conn, pg_schema):
    from airflow_provider_refdata import ForeignKeyConfig

    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("CREATE TABLE {}.{} (编号 integer PRIMARY KEY, 组合数 integer, 起始 date)").format(
                sql.Identifier(pg_schema), sql.Identifier("数字表")
            )
        )
    fk = ForeignKeyConfig(
        name="fk_numeric",
        source_column="编号",
        target_schema=pg_schema,
        target_table="数字表",
        target_key="编号",
        backfill_columns=[
            {"source": "组合代码", "target": "组合数", "aggregation": {"type": "count_distinct"}},
            {"source": "日期", "target": "起始"},
        ],
    )
    facts = pd.DataFrame({"编号": [1001.0, 1001.0, 7.0], "组合代码": ["Q1", "Q2", None], "日期": ["2024-06-30"] * 3})

    result = GenericBackfillService(DOMAIN).run(facts, [fk], pg_conn)

    assert result.tables[0].error is None and result.total_inserted == 2
    with pg_conn.transaction():
        assert pg_conn.execute(
            sql.SQL("SELECT 编号, 组合数, 起始::text, _source FROM {}.{} ORDER BY 1").format(
                sql.Identifier(pg_schema), sql.Identifier("数字表")
            )
        ).fetchall() == [(7, 0, "2024-06-30", "auto_derived"), (1001, 2, "2024-06-30", "auto_derived")]

    bad = GenericBackfillService(DOMAIN).run(facts.assign(编号=["X1", "1001", "7"]), [fk], pg_conn)
    assert "InvalidTextRepresentation" in bad.tables[0].error  # reported, not raised
    assert pg_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
