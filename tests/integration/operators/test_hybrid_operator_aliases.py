"""HybridReferenceOperator and key aliases (issue 11 §5) against the real PostgreSQL: the remapped keys of
``table`` facts are rewritten in that table; for ``sql`` facts only the result counts them."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.operators.hybrid import HybridReferenceOperator
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    ORG_AND_PRODUCT_LINE,
    PRODUCT,
    create_business_tables,
    insert,
    insert_key_aliases,
    write_fk_yaml,
)

STAGE = "事实.暂存"
ROWS = [(1001, "北京", " PLX "), (1001, "北京", "PL1"), (3001, "深圳", "PLX"), (None, None, None)]


def _config(folder: Path, schema: str) -> str:
    """foreign_keys.yml for the test schema with only the organization and product-line FKs."""
    return str(write_fk_yaml(folder / "foreign_keys.yml", schema, only=ORG_AND_PRODUCT_LINE))


def _setup(conn: psycopg.Connection, schema: str, org_alias: str = "2001") -> None:
    """Reference rows, aliases and a staging table whose organization codes are integers."""
    create_business_tables(conn, schema)
    insert(conn, schema, ORG, [{"机构代码": org_alias}])
    insert(conn, schema, PRODUCT, [{"产品线代码": "PL1", "产品线名称": "企业年金"}])
    with conn.transaction():
        insert_key_aliases(conn, [(f"{schema}.{ORG}", "1001", org_alias), (f"{schema}.{PRODUCT}", "PLX", "PL1")])
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (id serial, 机构代码 integer, 机构名称 text, 产品线代码 text)").format(
                sql.Identifier(schema), sql.Identifier(STAGE)
            )
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {}.{} (机构代码, 机构名称, 产品线代码) VALUES (%s, %s, %s)").format(
                    sql.Identifier(schema), sql.Identifier(STAGE)
                ),
                ROWS,
            )


def _staged(conn: psycopg.Connection, schema: str) -> list[tuple]:
    with conn.transaction():
        return conn.execute(
            sql.SQL("SELECT 机构代码, 产品线代码 FROM {}.{} ORDER BY id").format(
                sql.Identifier(schema), sql.Identifier(STAGE)
            )
        ).fetchall()


def _orgs(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    with conn.transaction():
        return dict(
            conn.execute(
                sql.SQL("SELECT 机构代码, _source FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(ORG))
            ).fetchall()
        )


def _remapped(result) -> dict[str, int]:
    return {m.fk_name: m.remapped_values for m in result.coverage_metrics}


def _operator(schema: str, folder: Path, **kwargs) -> HybridReferenceOperator:
    return HybridReferenceOperator(
        task_id="ensure", domain=DOMAIN, table=f'{schema}."{STAGE}"', fk_config_path=_config(folder, schema), **kwargs
    )


def test_table_facts_are_rewritten_with_the_aliases(airflow_connections, pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema)

    result = _operator(pg_schema, tmp_path).execute(context={})

    assert not result.degraded_mode, result.degradation_reason
    assert _remapped(result) == {"fk_organization": 2, "fk_product_line": 2}
    assert result.backfill_count == 1  # organization 3001; PLX is PL1
    # The staging table now holds the authoritative keys (integer column: the target cast to integer).
    assert _staged(pg_conn, pg_schema) == [(2001, "PL1"), (2001, "PL1"), (3001, "PL1"), (None, None)]
    assert _orgs(pg_conn, pg_schema) == {"2001": "authoritative", "3001": "auto_derived"}
    with pg_conn.transaction():
        logged = pg_conn.execute(
            "SELECT result FROM refdata.run_log WHERE result->>'run_id' = %s", (result.run_id,)
        ).fetchone()[0]
    assert {m["fk_name"]: m["remapped_values"] for m in logged["coverage_metrics"]} == _remapped(result)

    # A second run finds nothing left to map and leaves the table as it is.
    again = _operator(pg_schema, tmp_path).execute(context={})
    assert _remapped(again) == {"fk_organization": 0, "fk_product_line": 0} and again.backfill_count == 0
    assert _staged(pg_conn, pg_schema) == [(2001, "PL1"), (2001, "PL1"), (3001, "PL1"), (None, None)]


def test_switched_off_plan_only_and_sql_facts_leave_the_table_alone(airflow_connections, pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema)
    original = _staged(pg_conn, pg_schema)
    expected = {"fk_organization": 2, "fk_product_line": 2}

    off = _operator(pg_schema, tmp_path, rewrite_fact_table=False).execute(context={})
    assert _remapped(off) == expected and not off.degraded_mode
    assert _staged(pg_conn, pg_schema) == original

    planned = _operator(pg_schema, tmp_path, plan_only=True).execute(context={})
    assert _remapped(planned) == expected and planned.plan_only
    checked = _operator(pg_schema, tmp_path, coverage_only=True).execute(context={})
    assert _remapped(checked) == expected
    assert _staged(pg_conn, pg_schema) == original

    query = sql.SQL("SELECT 机构代码, 机构名称, 产品线代码 FROM {}.{}").format(
        sql.Identifier(pg_schema), sql.Identifier(STAGE)
    )
    from_sql = HybridReferenceOperator(
        task_id="sql",
        domain=DOMAIN,
        sql=query.as_string(pg_conn),
        fk_config_path=_config(tmp_path, pg_schema),
    ).execute(context={})
    assert _remapped(from_sql) == expected and not from_sql.degraded_mode
    assert _staged(pg_conn, pg_schema) == original  # only counted: a query's rows cannot be rewritten
    assert _orgs(pg_conn, pg_schema) == {"2001": "authoritative", "3001": "auto_derived"}


def test_a_failing_table_rewrite_degrades_the_result_and_changes_nothing(
    airflow_connections, pg_conn, pg_schema, tmp_path
):
    from airflow.sdk.exceptions import AirflowFailException

    # The organization's target is text: the frame maps to it, the integer staging column cannot hold it.
    _setup(pg_conn, pg_schema, org_alias="G2001")
    original = _staged(pg_conn, pg_schema)

    result = _operator(pg_schema, tmp_path).execute(context={})

    assert result.degraded_mode
    assert f"fact table {pg_schema}.{STAGE}: key aliases not rewritten" in result.degradation_reason
    assert _remapped(result) == {"fk_organization": 2, "fk_product_line": 2}
    assert _staged(pg_conn, pg_schema) == original  # one transaction: the product lines were not rewritten either
    with pytest.raises(AirflowFailException, match="key aliases not rewritten"):
        _operator(pg_schema, tmp_path, fail_on_degraded=True).execute(context={})
