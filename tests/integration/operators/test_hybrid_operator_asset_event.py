"""HybridReferenceOperator attaches coverage and ratios to its fact Asset's event (a real dag.test run)."""

from __future__ import annotations

import pandas as pd
from psycopg import sql

from tests.integration.operators.test_hybrid_operator import _only
from tests.integration.refdata_business_tables import ORG, PRODUCT, create_business_tables, insert
from tests.integration.steward_scenario import dag_in_metadata_db

FACT_ASSET = "refdata_test_facts_{schema}"

DAG_FILE = """
import pendulum
from airflow.sdk import DAG, Asset, AssetAlias
from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    HybridReferenceOperator(
        task_id="ensure",
        domain="annuity_performance",
        fact_file={facts!r},
        fk_config_path={config!r},
        outlets=[Asset(name={asset!r}, uri="file:///facts/{asset}.csv"), AssetAlias("unrelated_{asset}")],
    )
"""


def test_fact_asset_event_carries_coverage_and_ratios(airflow_db, airflow_connections, pg_conn, pg_schema, tmp_path):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PRODUCT, [{"产品线代码": "PL1", "产品线名称": "企业年金"}])
    facts = tmp_path / "facts.csv"
    pd.DataFrame(
        {"机构代码": ["001", "002", "001"], "机构名称": ["北京", "上海", "北京"], "产品线代码": ["PL1"] * 3}
    ).to_csv(facts, index=False)
    asset = FACT_ASSET.format(schema=pg_schema)
    dag_id = f"test_hybrid_asset_{pg_schema}"
    source = DAG_FILE.format(dag_id=dag_id, facts=str(facts), config=str(_only(tmp_path, pg_schema)), asset=asset)
    (tmp_path / "dags").mkdir()
    dag = dag_in_metadata_db(tmp_path / "dags", dag_id, source)

    run = dag.test()

    assert run.state == "success"
    with create_session() as session:
        rows = (
            session.query(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == asset, AssetEvent.source_run_id == run.run_id)
            .all()
        )
    assert len(rows) == 1
    extra = rows[0][0]
    with pg_conn.transaction():
        derived = pg_conn.execute(
            sql.SQL("SELECT 机构代码, _source FROM {}.{} ORDER BY 1").format(
                sql.Identifier(pg_schema), sql.Identifier(ORG)
            )
        ).fetchall()
    assert derived == [("001", "auto_derived"), ("002", "auto_derived")]
    assert (extra["domain"], extra["backfill_count"], extra["degraded"]) == ("annuity_performance", 2, False)
    assert extra["pre_load_coverage"] < 1.0
    org = extra["coverage"]["fk_organization"]
    assert (org["table"], org["total_fk_values"], org["missing_values"]) == (f"{pg_schema}.{ORG}", 2, 2)
    assert extra["coverage"]["fk_product_line"]["coverage_rate"] == 1.0
    assert extra["per_table_ratio"] == {f"{pg_schema}.{ORG}": 1.0, f"{pg_schema}.{PRODUCT}": 0.0}
    # rows of the reference tables: two derived organizations, one authoritative product line
    assert extra["auto_derived_ratio"] == round(2 / 3, 6)
