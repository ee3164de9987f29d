"""Shared set-up of the review tests: business tables with placeholders made by a real ``ensure_references``,
a fact table configured in ``fact_tables``, and readers of the rows, ``refdata.review_log``,
``refdata.placeholder`` and ``refdata.key_alias``."""

from __future__ import annotations

import psycopg
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService
from airflow_provider_refdata.config import ForeignKeyConfig
from tests.integration.refdata_business_tables import (
    DOMAIN,
    PLAN,
    PORTFOLIO,
    create_business_tables,
    insert,
    plan_facts,
    plan_fk_configs,
)

FACT = "规模明细"  # a fact table without a constraint: only fact_tables says it holds plan codes
ACTOR = "steward@example.com"


def setup(conn: psycopg.Connection, schema: str, codes: list[str], authoritative: dict[str, str] | None = None):
    """Business tables, authoritative plans ``{key: name}``, the fact table, and placeholders for ``codes``."""
    create_business_tables(conn, schema)
    insert(conn, schema, PLAN, [{"年金计划号": k, "计划名称": v} for k, v in (authoritative or {}).items()])
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (id serial PRIMARY KEY, 月度 date, 计划代码 varchar(32), 金额 numeric)").format(
                sql.Identifier(schema), sql.Identifier(FACT)
            )
        )
    ensure(conn, schema, codes)


def ensure(conn: psycopg.Connection, schema: str, codes: list[str]):
    result = HybridReferenceService().ensure_references(DOMAIN, plan_facts(codes), plan_fk_configs(schema), conn)
    assert not result.degraded_mode, result.degradation_reason
    return result


def fk_with_facts(schema: str) -> list[ForeignKeyConfig]:
    """fk_plan with ``fact_tables: [<schema>.规模明细.计划代码]`` (validated like a file's entry)."""
    (fk,) = plan_fk_configs(schema)
    data = fk.model_dump(exclude_defaults=True) | {"fact_tables": [f"{schema}.{FACT}.计划代码"]}
    return [ForeignKeyConfig.model_validate(data)]


def plan(schema: str) -> str:
    return f"{schema}.{PLAN}"


def add_facts(conn: psycopg.Connection, schema: str, codes: list[str]) -> None:
    insert(conn, schema, FACT, [{"月度": "2024-01-01", "计划代码": c, "金额": 1} for c in codes])


def add_portfolios(conn: psycopg.Connection, schema: str, plans: dict[str, str]) -> None:
    """Portfolio rows ``{组合代码: 年金计划号}`` (a real FK constraint on the plan)."""
    insert(conn, schema, PORTFOLIO, [{"组合代码": k, "年金计划号": v} for k, v in plans.items()])


def _records(conn: psycopg.Connection, query: str | sql.Composable, params: tuple | None = None) -> list[dict]:
    """The rows of a query as dicts (column → value), read in their own transaction."""
    with conn.transaction():
        cur = conn.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def rows(conn: psycopg.Connection, schema: str, table: str, key: str) -> dict[str, dict]:
    """``{key: row as dict (with xmin)}`` of a table."""
    query = sql.SQL("SELECT t.*, t.xmin::text AS xmin FROM {}.{} AS t ORDER BY {}").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(key)
    )
    return {r[key]: r for r in _records(conn, query)}


def plans(conn: psycopg.Connection, schema: str) -> dict[str, dict]:
    return rows(conn, schema, PLAN, "年金计划号")


def column_values(conn: psycopg.Connection, schema: str, table: str, column: str) -> list:
    with conn.transaction():
        return [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT {c} FROM {s}.{t} ORDER BY {c}").format(
                    c=sql.Identifier(column), s=sql.Identifier(schema), t=sql.Identifier(table)
                )
            ).fetchall()
        ]


def review_log(conn: psycopg.Connection, table: str) -> list[dict]:
    return _records(
        conn,
        "SELECT review_id, key, action, actor, before, after, remap_to, source_file, at"
        " FROM refdata.review_log WHERE table_name = %s ORDER BY id",
        (table,),
    )


def placeholders(conn: psycopg.Connection, table: str) -> dict[str, dict]:
    query = (
        "SELECT key, resolution, resolved_by, resolved_at, fact_rows_total, first_seen_run"
        " FROM refdata.placeholder WHERE table_name = %s ORDER BY key"
    )
    return {r["key"]: r for r in _records(conn, query, (table,))}


def aliases(conn: psycopg.Connection, table: str) -> dict[str, str]:
    with conn.transaction():
        return dict(
            conn.execute(
                "SELECT from_key, to_key FROM refdata.key_alias WHERE table_name = %s ORDER BY 1", (table,)
            ).fetchall()
        )
