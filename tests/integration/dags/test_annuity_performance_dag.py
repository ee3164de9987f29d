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


def test_an_empty_form_submits_and_loads_the_previous_month(annuity_dag, pg_conn, pg_schema, tmp_path, monkeypatch):
    from airflow_provider_refdata import resolve_month

    # What the trigger form submits when nothing is typed: every optional field null, the rest their defaults.
    params = annuity_dag.params
    for name in ("month", "fact_file"):
        schema = params.get_param(name).schema
        assert "null" in schema["type"] and params.get_param(name).value is None, (name, schema)
    submitted = params.validate()
    assert submitted == {"month": None, "fact_file": None, "auto_derived_threshold": 0.10, "plan_only": False}

    previous = resolve_month(None)
    fact_dir = tmp_path / "facts"
    fact_dir.mkdir()
    _fact_csv(fact_dir / f"annuity_performance_{previous.replace('-', '')}.csv")
    monkeypatch.setenv("REFDATA_FACT_DIR", str(fact_dir))

    run = annuity_dag.test(run_conf={"auto_derived_threshold": 1.0})

    assert _states(run)["load_staging"] == "success" and _states(run)["load_facts"] == "success", _states(run)
    assert _count(pg_conn, pg_schema, f"annuity_performance_{previous.replace('-', '')}") == 4  # the stage
    assert _count(pg_conn, pg_schema, "规模明细") == 4
    assert _count(pg_conn, pg_schema, PLAN, "_source = 'auto_derived'") == 2


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"month": "2026/10"}, "month must be YYYY-MM, got '2026/10'"),
        (
            {"month": "2026-10"},
            "fact file for 2026-10 not found: {dir}/annuity_performance_202610.csv "
            "(fact files exist for 2024-05, 2024-06 in {dir})",
        ),
    ],
)
def test_a_wrong_month_or_missing_file_fails_with_one_line(
    annuity_dag, pg_conn, pg_schema, tmp_path, monkeypatch, capfd, conf, message
):
    fact_dir = tmp_path / "facts"
    fact_dir.mkdir()
    for month in ("202406", "202405"):
        _fact_csv(fact_dir / f"annuity_performance_{month}.csv")
    (fact_dir / "notes.txt").write_text("not a fact file")
    monkeypatch.setenv("REFDATA_FACT_DIR", str(fact_dir))

    run = annuity_dag.test(run_conf=conf)

    states = _states(run)
    assert states["load_staging"] == "failed", states
    assert states["load_facts"] in ("upstream_failed", None) and states["coverage_check"] in ("upstream_failed", None)
    # The task log (structlog, on stdout) ends the failure with exactly this line, and nothing of pandas.
    log = capfd.readouterr()
    output = log.out + log.err
    assert f"airflow.sdk.exceptions.AirflowFailException: {message.format(dir=fact_dir)}\n" in output, output[-3000:]
    assert "FileNotFoundError" not in output and "pandas" not in output
    with pg_conn.transaction():
        assert pg_conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema}"."规模明细"',)).fetchone()[0] is None


#: What a DAG people copy may import from the provider: the package root and its public modules.
PUBLIC_MODULES = {
    "airflow_provider_refdata",
    "airflow_provider_refdata.operators",
    "airflow_provider_refdata.assets",
    "airflow_provider_refdata.results",
}


def test_the_example_dag_imports_only_the_public_api():
    import ast

    tree = ast.parse((REPO_ROOT / "dags" / f"{DAG_ID}.py").read_text())
    imported = {
        name
        for node in ast.walk(tree)
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        if name.split(".")[0] == "airflow_provider_refdata"
    }
    assert "airflow_provider_refdata.operators" in imported  # the walk sees the imports, inside tasks too
    private = sorted(imported - PUBLIC_MODULES)
    assert private == [], f"the example DAG reaches into internals: {private}"
