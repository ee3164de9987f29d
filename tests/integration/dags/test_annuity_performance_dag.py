"""The example DAG refdata_annuity_performance end to end with dag.test() against the real PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
from psycopg import sql

from tests.conftest import REPO_ROOT
from tests.integration.dags.dag_runs import parsed_without_io
from tests.integration.refdata_business_tables import (
    ORG,
    PLAN,
    PORTFOLIO,
    PRODUCT,
    create_business_tables,
    insert,
    write_fk_yaml,
)

DAG_ID = "refdata_annuity_performance"


def _fact_csv(path) -> None:
    pd.DataFrame(
        {
            "月度": ["202406"] * 4,
            "计划代码": ["P1", "P1", "P2", "P3"],
            "计划名称": ["计划一", "计划一", "计划二", "计划三"],
            "计划类型": ["单一计划", "单一计划", "集合计划", "单一计划"],
            "客户名称": ["客户甲", "客户甲", "客户乙", "客户丙"],
            "组合代码": ["Q1", "Q2", "Q3", None],
            "组合名称": ["组合一", "组合二", "组合三", None],
            "组合类型": ["固收", "权益", "固收", None],
            "机构代码": ["G1", "(空白)", "G2", "G1"],
            "机构名称": ["北京", "?", "上海", "北京"],
            "产品线代码": ["PL1", "PL1", "PL2", "PL1"],
            "业务类型": ["企年受托", "企年投资", "企年受托", "企年受托"],
            "期末资产规模": ["100.5", "2,000", "30", None],
            "主拓代码": ["G1", "G2", "G2", "G1"],
            "主拓机构": ["北京", "上海", "上海", "北京"],
        }
    ).to_csv(path, index=False)


def _count(conn, schema: str, table: str, where: str = "TRUE") -> int:
    with conn.transaction():
        return conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{} WHERE {}").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(where)
            )
        ).fetchone()[0]


@pytest.fixture
def annuity_dag(airflow_db, airflow_connections, pg_conn, pg_schema, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P1", "计划名称": "权威计划一"}])
    insert(pg_conn, pg_schema, PRODUCT, [{"产品线代码": f"PL{i}", "产品线名称": f"产品线{i}"} for i in range(1, 10)])
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_fk_yaml(config_dir / "foreign_keys.yml", pg_schema)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("REFDATA_STAGING_SCHEMA", pg_schema)
    monkeypatch.setenv("REFDATA_FACT_SCHEMA", pg_schema)
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def _states(run) -> dict[str, str | None]:
    return {ti.task_id: (str(ti.state) if ti.state else None) for ti in run.get_task_instances()}


def test_dag_runs_end_to_end_then_holds_and_fails_as_decided(annuity_dag, pg_conn, pg_schema, tmp_path):
    fact_file = tmp_path / "annuity_performance_202406.csv"
    _fact_csv(fact_file)
    conf = {"month": "2024-06", "fact_file": str(fact_file), "auto_derived_threshold": 1.0, "plan_only": False}

    run = annuity_dag.test(run_conf=conf)

    states = _states(run)
    assert states == {
        "load_staging": "success",
        "coverage_check": "success",
        "selective_backfill": "success",
        "decide": "success",  # it raises unless it received a HybridResult from XCom
        "load_facts": "success",
        "hold_facts": "skipped",
    }, states
    assert _count(pg_conn, pg_schema, "规模明细") == 4
    assert _count(pg_conn, pg_schema, PLAN, "_source = 'auto_derived'") == 2  # P2, P3; P1 authoritative
    assert _count(pg_conn, pg_schema, PORTFOLIO) == 3
    assert _count(pg_conn, pg_schema, ORG) == 2  # "(空白)" is not an organization
    assert _count(pg_conn, pg_schema, PRODUCT, "_source = 'auto_derived'") == 0
    with pg_conn.transaction():
        logged = pg_conn.execute(
            "SELECT run_type, count(*) FROM refdata.run_log WHERE result::text LIKE %s GROUP BY 1 ORDER BY 1",
            (f"%{pg_schema}%",),
        ).fetchall()
    assert logged == [("coverage_check", 1), ("ensure_references", 1)]

    # Re-run the month in plan-only mode: facts are held, nothing is loaded twice.
    held = annuity_dag.test(run_conf={**conf, "plan_only": True})
    assert _states(held)["hold_facts"] == "success" and _states(held)["load_facts"] == "skipped"
    assert _count(pg_conn, pg_schema, "规模明细") == 4

    # A strict threshold: the plans are half auto-derived now, so the facts are held for review.
    strict = annuity_dag.test(run_conf={**conf, "auto_derived_threshold": 0.1})
    assert _states(strict)["hold_facts"] == "success" and _states(strict)["load_facts"] == "skipped"

    # A degraded run (a reference table is gone) fails the decision task.
    with pg_conn.transaction():
        pg_conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(ORG)))
    degraded = annuity_dag.test(run_conf=conf)
    assert _states(degraded)["decide"] == "failed"
    assert _states(degraded)["load_facts"] in ("upstream_failed", None)


def test_dag_parses_without_io_and_has_the_form(monkeypatch):
    dag = parsed_without_io(monkeypatch, DAG_ID)
    params = dag.params
    assert set(params.keys()) == {"month", "fact_file", "auto_derived_threshold", "plan_only"}
    for name in params.keys():
        assert params.get_param(name).description
    # Triggered by the reference-sync Asset; manual runs always work.
    assert "Asset" in type(dag.timetable).__name__
    assert "refdata://reference_sync" in repr(dag.timetable.asset_condition)


def test_load_facts_never_truncates_text_into_a_shorter_column(annuity_dag, pg_conn, pg_schema, tmp_path):
    # A fact table whose name column is too short for the month's names: the load must fail, not cut them.
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("CREATE TABLE {}.{} ({} text, {} text, {} varchar(2))").format(
                sql.Identifier(pg_schema),
                sql.Identifier("规模明细"),
                sql.Identifier("月度"),
                sql.Identifier("计划代码"),
                sql.Identifier("计划名称"),
            )
        )
    fact_file = tmp_path / "annuity_performance_202406.csv"
    _fact_csv(fact_file)
    conf = {"month": "2024-06", "fact_file": str(fact_file), "auto_derived_threshold": 1.0, "plan_only": False}

    run = annuity_dag.test(run_conf=conf)

    assert _states(run)["load_facts"] == "failed"
    assert _count(pg_conn, pg_schema, "规模明细") == 0
