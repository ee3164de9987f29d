"""HybridReferenceOperator with ``table=`` / ``sql=``: the facts stay in PostgreSQL (no frame is read).

Fault injection: ``read_query`` (the frame read of the DataFrame path) is replaced by a function that fails
the test, so a run that still pulled the facts into the worker would fail; the result must equal the
DataFrame path's on the same facts (read here with ``SELECT *``) against an identical copy of the tables.
"""

from __future__ import annotations

import uuid

import pandas as pd
import psycopg
import pytest
from psycopg import sql

import airflow_provider_refdata.operators.hybrid as operator_module
from airflow_provider_refdata import HybridReferenceService
from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    ORG_AND_PRODUCT_LINE,
    create_business_tables,
    fk_configs,
    insert,
    insert_key_aliases,
    write_fk_yaml,
)
from tests.integration.services.test_relation_facts import comparable

FACTS = "事实.暂存"
ROWS = [
    ("001", "北京", "PL1"),
    (" 002 ", "上海", "PL2"),
    ("X01", "错码", "PL1"),
    ("(空白)", "?", "PL9"),
    (None, None, "PL9"),
    ("003", "深圳", None),
]


def _facts_table(conn: psycopg.Connection, schema: str) -> None:
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (机构代码 text, 机构名称 text, 产品线代码 text)").format(
                sql.Identifier(schema), sql.Identifier(FACTS)
            )
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {}.{} VALUES (%s, %s, %s)").format(sql.Identifier(schema), sql.Identifier(FACTS)),
                ROWS,
            )


@pytest.fixture
def baseline(pg_server: str):
    name = f"b_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.mark.parametrize("source", ["table", "sql"])
def test_table_and_sql_facts_are_not_read_into_the_worker(
    airflow_connections, pg_conn, pg_schema, baseline, tmp_path, monkeypatch, source
):
    for schema in (pg_schema, baseline):
        create_business_tables(pg_conn, schema)
        insert(pg_conn, schema, ORG, [{"机构代码": "001", "机构名称": "北京分公司"}])
    with pg_conn.transaction():
        insert_key_aliases(pg_conn, [(f"{s}.{ORG}", "X01", "001") for s in (pg_schema, baseline)])
    _facts_table(pg_conn, pg_schema)
    with pg_conn.transaction(), pg_conn.cursor() as cur:  # the DataFrame path's frame, read before the patch
        cur.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(FACTS)))
        frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])

    def no_frame(*_args, **_kwargs):
        raise AssertionError("the facts were read into a DataFrame")

    monkeypatch.setattr(operator_module, "read_query", no_frame)
    facts = (
        {"table": f'{pg_schema}."{FACTS}"'}
        if source == "table"
        else {"sql": f'SELECT * FROM "{pg_schema}"."{FACTS}" WHERE true;'}
    )
    op = HybridReferenceOperator(
        task_id="ensure",
        domain=DOMAIN,
        fk_config_path=str(write_fk_yaml(tmp_path / "foreign_keys.yml", pg_schema, only=ORG_AND_PRODUCT_LINE)),
        **facts,
    )

    result = op.execute(context={})

    configs = [fk for fk in fk_configs(baseline) if fk.name in ORG_AND_PRODUCT_LINE]
    expected = HybridReferenceService().ensure_references(DOMAIN, frame, configs, pg_conn)
    assert comparable(result, pg_schema) == comparable(expected, baseline)
    org = next(m for m in result.coverage_metrics if m.fk_name == "fk_organization")
    assert (org.total_fk_values, org.covered_values, org.remapped_values, org.blank_rows) == (3, 1, 1, 2)
    assert result.fact_rows == len(ROWS) and not result.degraded_mode
    with pg_conn.transaction():
        codes = pg_conn.execute(
            sql.SQL("SELECT 机构代码 FROM {}.{} ORDER BY 1").format(sql.Identifier(pg_schema), sql.Identifier(FACTS))
        ).fetchall()
    # table=: the remapped key is rewritten in the fact table too (UPDATE … FROM refdata.key_alias); sql=: never.
    assert ("X01",) not in codes if source == "table" else ("X01",) in codes
