"""HybridReferenceOperator against the real PostgreSQL, through Airflow (dag.test) and directly."""

from __future__ import annotations

import logging
import warnings

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import HybridResult
from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator, read_fact_file, split_table_name
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    ORG_AND_PRODUCT_LINE,
    PRODUCT,
    create_business_tables,
    insert,
    write_fk_yaml,
)


def _facts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "机构代码": ["001", "002", "(空白)", None],
            "机构名称": ["北京", "上海", "?", None],
            "产品线代码": ["PL1", "PL2", "PL1", "PL9"],
        }
    )


def _only(fk_yaml_dir, schema: str):
    """A foreign_keys.yml for the test schema with only the organization and product-line FKs."""
    return write_fk_yaml(fk_yaml_dir / "foreign_keys.yml", schema, only=ORG_AND_PRODUCT_LINE)


_DAG_FILE = """
import pendulum
from pathlib import Path
from airflow.sdk import DAG, task
from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    ensure = HybridReferenceOperator(
        task_id="ensure",
        domain="annuity_performance",
        fact_file={folder!r} + "/{{{{ params.name }}}}",
        fk_config_path={config!r},
        params={{"name": "facts.csv"}},
    )

    @task
    def downstream(result):
        # Written to a file so the test sees what this task received, however the task was run.
        Path({folder!r}, "received.txt").write_text(type(result).__module__ + "." + type(result).__qualname__)
        Path({folder!r}, "received.json").write_text(result.model_dump_json())
        return result.backfill_count

    downstream(ensure.output)
"""


def _dag_in_metadata_db(folder, dag_id: str, config: str):
    """Write a DAG file into ``folder``, load it and serialize it to the metadata DB (dag.test needs that)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()

    dag_file = folder / f"{dag_id}.py"
    dag_file.write_text(_DAG_FILE.format(dag_id=dag_id, folder=str(folder), config=config), encoding="utf-8")
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="dags-folder")
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags[dag_id]


def test_downstream_task_receives_a_hybrid_result(airflow_db, airflow_connections, pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PRODUCT, [{"产品线代码": "PL1", "产品线名称": "企业年金"}])
    _facts().to_csv(tmp_path / "facts.csv", index=False)
    config = _only(tmp_path, pg_schema)
    dag = _dag_in_metadata_db(tmp_path, f"test_hybrid_operator_{pg_schema}", str(config))

    run = dag.test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"ensure": "success", "downstream": "success"}, states
    assert (tmp_path / "received.txt").read_text() == "airflow_provider_refdata.results.HybridResult"
    result = HybridResult.model_validate_json((tmp_path / "received.json").read_text())
    assert not result.degraded_mode, result.degradation_reason
    assert result.backfill_count == 2 + 2  # organizations "001", "002"; product lines PL2, PL9
    org = next(m for m in result.coverage_metrics if m.fk_name == "fk_organization")
    assert (org.total_fk_values, org.blank_rows) == (2, 2)  # read as text: "001" keeps its zeros
    with pg_conn.transaction():
        names = pg_conn.execute(
            sql.SQL("SELECT 机构代码 FROM {}.{} ORDER BY 1").format(sql.Identifier(pg_schema), sql.Identifier(ORG))
        ).fetchall()
    assert names == [("001",), ("002",)]


def test_table_source_coverage_only_logs_a_coverage_table(
    airflow_connections, pg_conn, pg_schema, tmp_path, caplog: pytest.LogCaptureFixture
):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, ORG, [{"机构代码": "001"}])
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("CREATE TABLE {}.{} (机构代码 text, 机构名称 text, 产品线代码 text)").format(
                sql.Identifier(pg_schema), sql.Identifier("事实.暂存")
            )
        )
        with pg_conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {}.{} VALUES (%s, %s, %s)").format(
                    sql.Identifier(pg_schema), sql.Identifier("事实.暂存")
                ),
                [tuple(None if pd.isna(v) else v for v in row) for row in _facts().itertuples(index=False)],
            )
    op = HybridReferenceOperator(
        task_id="check",
        domain=DOMAIN,
        table=f'{pg_schema}."事实.暂存"',
        fk_config_path=str(_only(tmp_path, pg_schema)),
        coverage_only=True,
    )
    caplog.set_level(logging.INFO)
    op._cached_logger = logging.getLogger("test_hybrid_operator")  # stdlib logger, so caplog sees the lines

    result = op.execute(context={})

    org = next(m for m in result.coverage_metrics if m.fk_name == "fk_organization")
    assert (org.total_fk_values, org.covered_values, org.missing_values) == (2, 1, 1)
    assert result.backfill_result is None
    text = caplog.text
    assert "Coverage of domain annuity_performance (coverage only)" in text
    org_line = next(line for line in text.splitlines() if line.startswith("fk_organization"))
    assert org_line.split()[:5] == ["fk_organization", f"{pg_schema}.{ORG}", "2", "1", "1"]
    with pg_conn.transaction():
        assert pg_conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(ORG))
        ).fetchone() == (1,)


def test_sql_source_plan_only_string_and_fail_on_degraded(airflow_connections, pg_conn, pg_schema, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    create_business_tables(pg_conn, pg_schema)
    config = str(_only(tmp_path, pg_schema))
    query = "SELECT '009' AS 机构代码, '深圳' AS 机构名称, 'PL5' AS 产品线代码"
    planned = HybridReferenceOperator(
        task_id="plan", domain=DOMAIN, sql=query, fk_config_path=config, plan_only="True"
    ).execute(context={})
    assert planned.plan_only and planned.backfill_count == 2
    with pg_conn.transaction():
        pg_conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(PRODUCT)))
    strict = HybridReferenceOperator(
        task_id="strict", domain=DOMAIN, sql=query, fk_config_path=config, fail_on_degraded=True
    )
    with pytest.raises(AirflowFailException, match="does not exist"):
        strict.execute(context={})
    with pg_conn.transaction():  # the organization was still backfilled before the task failed
        assert pg_conn.execute(
            sql.SQL("SELECT 机构代码, _source FROM {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(ORG))
        ).fetchall() == [("009", "auto_derived")]


def test_fact_file_types_and_table_names(tmp_path):
    frame = pd.DataFrame({"计划代码": ["001", "P2"], "期末资产规模": ["1.5", "2"]})
    frame.to_csv(tmp_path / "f.csv", index=False)
    frame.to_parquet(tmp_path / "f.parquet")
    frame.to_excel(tmp_path / "f.xlsx", index=False)
    for name in ("f.csv", "f.parquet", "f.xlsx"):
        with warnings.catch_warnings():  # e.g. pandas' notice that its default xlsx engine will change
            warnings.simplefilter("error")
            assert read_fact_file(tmp_path / name)["计划代码"].tolist() == ["001", "P2"], name
    with pytest.raises(ValueError, match="unsupported"):
        read_fact_file(tmp_path / "f.json")
    assert split_table_name("staging.年金") == ("staging", "年金")
    assert split_table_name("年金") == ("public", "年金")
    assert split_table_name('"a.b"."c""d"') == ("a.b", 'c"d')
    with pytest.raises(ValueError):
        split_table_name("a.b.c")
    with pytest.raises(ValueError, match="exactly one"):
        HybridReferenceOperator(task_id="x", domain=DOMAIN, sql="SELECT 1", table="t")


def test_operator_does_no_io_in_init(monkeypatch):
    def boom(*_args, **_kwargs):
        raise AssertionError("I/O at construction time")

    monkeypatch.setattr(psycopg, "connect", boom)
    monkeypatch.setattr("airflow_provider_refdata.operators.hybrid.read_fact_file", boom)
    op = HybridReferenceOperator(task_id="x", domain=DOMAIN, fact_file="/nonexistent/{{ ds }}.csv")
    assert "hook" not in op.__dict__
    assert "fact_file" in HybridReferenceOperator.template_fields
