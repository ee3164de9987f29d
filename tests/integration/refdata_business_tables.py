"""Business-schema reference tables with Chinese identifiers, and the shipped FK config pointed at them.

Used by the coverage/backfill service, operator and DAG tests: each test creates the tables in its own
schema (``pg_schema``) and re-targets the shipped ``config/foreign_keys.yml`` at that schema.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd
import psycopg
import yaml
from psycopg import sql

from airflow_provider_refdata.config import ForeignKeyConfig, ReferenceSyncConfig, SyncTableConfig, load_fk_configs
from airflow_provider_refdata.warehouse.state import ensure_state_tables
from tests.conftest import REPO_ROOT

DOMAIN = "annuity_performance"
PLAN, PORTFOLIO, ORG, PRODUCT = "年金计划", "组合计划", "组织架构", "产品线"
#: The FK configurations of the tests whose facts hold only organization and product-line codes.
ORG_AND_PRODUCT_LINE = ("fk_organization", "fk_product_line")

_TRACKING = """,
    _source varchar(20) NOT NULL DEFAULT 'authoritative',
    _needs_review boolean NOT NULL DEFAULT false,
    _derived_from_domain varchar(64),
    _derived_at timestamptz"""


def create_business_tables(conn: psycopg.Connection, schema: str, *, org_tracking: bool = True) -> None:
    """Create plan, portfolio (real FK to plan), organization and product-line tables in ``schema``."""
    s = sql.Identifier(schema)
    tracking = sql.SQL(_TRACKING)
    org_tracking_sql = tracking if org_tracking else sql.SQL("")
    statements = [
        sql.SQL(
            "CREATE TABLE {}.{} (年金计划号 varchar(32) PRIMARY KEY, 计划名称 varchar(200), 计划类型 varchar(50), "
            "客户名称 varchar(200), 主拓代码 varchar(32), 主拓机构 varchar(100), 管理资格 varchar(200){})"
        ).format(s, sql.Identifier(PLAN), tracking),
        sql.SQL(
            "CREATE TABLE {}.{} (组合代码 varchar(32) PRIMARY KEY, 组合名称 varchar(200), 组合类型 varchar(50), "
            "年金计划号 varchar(32) REFERENCES {}.{} (年金计划号){})"
        ).format(s, sql.Identifier(PORTFOLIO), s, sql.Identifier(PLAN), tracking),
        sql.SQL("CREATE TABLE {}.{} (机构代码 varchar(32) PRIMARY KEY, 机构名称 varchar(200){})").format(
            s, sql.Identifier(ORG), org_tracking_sql
        ),
        sql.SQL("CREATE TABLE {}.{} (产品线代码 varchar(32) PRIMARY KEY, 产品线名称 varchar(200){})").format(
            s, sql.Identifier(PRODUCT), tracking
        ),
    ]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)


def fk_configs(schema: str, domain: str = DOMAIN) -> list[ForeignKeyConfig]:
    """The shipped domain's FK configurations, re-targeted at ``schema``."""
    configs = load_fk_configs(REPO_ROOT / "config" / "foreign_keys.yml", domain)
    return [fk.model_copy(update={"target_schema": schema}) for fk in configs]


def write_fk_yaml(path: Path, schema: str, only: Collection[str] | None = None) -> Path:
    """A copy of the shipped foreign_keys.yml whose target_schema is ``schema`` everywhere.

    :param path: the file to write.
    :param schema: the test's schema.
    :param only: keep only the FK configurations of these names (``None``: all of them).
    """
    data = yaml.safe_load((REPO_ROOT / "config" / "foreign_keys.yml").read_text(encoding="utf-8"))
    for domain in data["domains"].values():
        if only is not None:
            domain["foreign_keys"] = [fk for fk in domain["foreign_keys"] if fk["name"] in only]
        for fk in domain["foreign_keys"]:
            fk["target_schema"] = schema
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def rows(conn: psycopg.Connection, schema: str, table: str, order_by: str) -> list[tuple]:
    """Every row of the table as text (byte-for-byte comparable), with xmin (proves a row was not rewritten)."""
    with conn.transaction():
        return conn.execute(
            sql.SQL("SELECT t::text, t.xmin::text FROM {}.{} t ORDER BY {}").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(order_by)
            )
        ).fetchall()


def insert(conn: psycopg.Connection, schema: str, table: str, records: list[dict]) -> None:
    """Insert dict rows (column → value) into ``schema.table`` and commit."""
    with conn.transaction():
        for record in records:
            conn.execute(
                sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
                    sql.Identifier(schema),
                    sql.Identifier(table),
                    sql.SQL(", ").join(sql.Identifier(c) for c in record),
                    sql.SQL(", ").join(sql.Placeholder() for _ in record),
                ),
                list(record.values()),
            )


def plan_fk_configs(schema: str) -> list[ForeignKeyConfig]:
    """Only the shipped ``fk_plan`` configuration, re-targeted at ``schema``."""
    return [fk for fk in fk_configs(schema) if fk.name == "fk_plan"]


def plan_facts(codes: list) -> pd.DataFrame:
    """A fact frame with one row per plan code in ``codes`` and every column fk_plan's backfill reads."""
    n = len(codes)
    return pd.DataFrame(
        {
            "计划代码": codes,
            "计划名称": [f"计划{i}" for i in range(n)],
            "计划类型": ["单一计划"] * n,
            "客户名称": ["客户"] * n,
            "主拓代码": ["G01"] * n,
            "主拓机构": ["北京"] * n,
            "期末资产规模": [100.0] * n,
            "业务类型": ["企年受托"] * n,
        }
    )


def plan_sync_config(folder: Path, schema: str, names: dict[str, str]) -> SyncTableConfig:
    """An authoritative sync of the plan table from a YAML data file ``folder/plans.yml`` of ``{key: name}``.

    :param folder: where the data file goes.
    :param schema: the test's schema (the plan table's).
    :param names: the plans the source holds: 年金计划号 → 计划名称.
    """
    path = folder / "plans.yml"
    lines = ['schema_version: "1.0"', "data:"] + [f"  - {{ 年金计划号: {k}, 计划名称: {v} }}" for k, v in names.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    document = {
        "tables": [
            {
                "name": "plans",
                "target_schema": schema,
                "target_table": PLAN,
                "primary_key": "年金计划号",
                "source_type": "config_file",
                "sync_mode": "upsert",
                "source_config": {
                    "file_path": str(path),
                    "schema_version": "1.0",
                    "columns": ["年金计划号", "计划名称"],
                },
            }
        ]
    }
    return ReferenceSyncConfig.model_validate(document).tables[0]


def insert_key_aliases(conn: psycopg.Connection, aliases: list[tuple[str, str, str]]) -> None:
    """Record ``refdata.key_alias`` rows as a steward's remap leaves them, in the caller's transaction.

    :param conn: the connection (inside a transaction).
    :param aliases: ``(table_name, from_key, to_key)`` per alias, the table schema-qualified.
    """
    ensure_state_tables(conn)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO refdata.key_alias (table_name, from_key, to_key, created_by, review_id)"
            " VALUES (%s, %s, %s, 'steward', 'review-1')",
            aliases,
        )
