"""Shared scenario for the sync tests: legacy MySQL tables, Chinese-named PostgreSQL targets, a config file.

``SyncEnv.create`` builds three legacy tables in a fresh MySQL database, four reference tables in a fresh
PostgreSQL schema (年金计划, 组合计划, 组织架构, 产品线) and a ``reference_sync.yml`` pointing at both, loaded
with the real configuration loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig, load_sync_config
from airflow_provider_refdata.services.sources import MySqlSource, YamlFileSource
from airflow_provider_refdata.warehouse.tracking import ensure_tracking_columns
from tests.conftest import mysql_connect

PLAN, PORTFOLIO, ORG, PRODUCT_LINE = "年金计划", "组合计划", "组织架构", "产品线"

MYSQL_DDL = [
    """CREATE TABLE annuity_plan (
        plan_code varchar(16) PRIMARY KEY, plan_name varchar(200), plan_type varchar(20),
        client_name varchar(100), updated_at datetime NOT NULL, KEY (updated_at))""",
    """CREATE TABLE portfolio_plan (
        portfolio_code varchar(16), portfolio_name varchar(100), plan_code varchar(16),
        updated_at datetime NOT NULL)""",
    """CREATE TABLE organization (
        `机构 代码` varchar(16) PRIMARY KEY, org_name text, established date, updated_at timestamp NOT NULL)""",
]

PLANS = [
    ("P001", "  甲计划  ", "单一", "客户A", "2024-01-01 08:00:00"),
    ("P002", "乙计划\twith tab", "集合", "客户B\\C", "2024-01-02 08:00:00"),
    ("P003", "丙计划\nline2", "单一", None, "2024-01-03 08:00:00"),
]
PORTFOLIOS = [
    ("Q001", "组合一", "P001", "2024-01-01 09:00:00"),
    ("Q002", "组合二", "P001", "2024-01-02 09:00:00"),
]
ORGS = [
    ("G01", "总部", "2001-05-01", "2024-01-01 10:00:00"),
    ("G02", "分部", "0000-00-00", "2024-01-01 11:00:00"),
]

PG_DDL = {
    PLAN: "({} varchar(16) PRIMARY KEY, {} varchar(50), {} varchar(20), {} text, {} text)",
    PORTFOLIO: "({} varchar(16) PRIMARY KEY, {} text, {} varchar(16))",
    ORG: "({} varchar(16) PRIMARY KEY, {} text, {} date)",
    PRODUCT_LINE: "({} varchar(16) PRIMARY KEY, {} text, {} text)",
}
PG_COLUMNS = {
    PLAN: ["年金计划号", "计划名称", "计划类型", "客户名称", "备注"],
    PORTFOLIO: ["组合代码", "组合名称", "年金计划号"],
    ORG: ["机构代码", "机构名称", "成立日期"],
    PRODUCT_LINE: ["产品线代码", "产品线名称", "业务大类"],
}

CONFIG = """
schema_version: "1.0"
enabled: {enabled}
batch_size: 2
tables:
  - name: annuity_plan
    target_schema: {schema}
    target_table: 年金计划
    primary_key: 年金计划号
    source_type: legacy_mysql
    sync_mode: upsert
    source_config:
      table: annuity_plan
      database: {db}
      columns:
        - {{ source: plan_code, target: 年金计划号 }}
        - {{ source: plan_name, target: 计划名称 }}
        - {{ source: plan_type, target: 计划类型 }}
        - {{ source: client_name, target: 客户名称 }}
      incremental: {{ updated_at_column: updated_at, lookback_seconds: 60 }}
  - name: portfolio_plan
    target_schema: {schema}
    target_table: 组合计划
    primary_key: 组合代码
    source_type: legacy_mysql
    sync_mode: upsert
    source_config:
      table: portfolio_plan
      database: {db}
      columns:
        - {{ source: portfolio_code, target: 组合代码 }}
        - {{ source: portfolio_name, target: 组合名称 }}
        - {{ source: plan_code, target: 年金计划号 }}
      incremental: {{ updated_at_column: updated_at, lookback_seconds: 60 }}
  - name: organization
    target_schema: {schema}
    target_table: 组织架构
    primary_key: 机构代码
    source_type: legacy_mysql
    sync_mode: upsert
    source_config:
      table: organization
      database: {db}
      columns:
        - {{ source: "机构 代码", target: 机构代码 }}
        - {{ source: org_name, target: 机构名称 }}
        - {{ source: established, target: 成立日期 }}
      incremental: {{ updated_at_column: updated_at, lookback_seconds: 0 }}
  - name: product_line
    target_schema: {schema}
    target_table: 产品线
    primary_key: 产品线代码
    source_type: config_file
    sync_mode: delete_insert
    source_config:
      file_path: reference_data/product_lines.yml
      schema_version: "1.0"
      columns: [产品线代码, 产品线名称, 业务大类]
"""

PRODUCT_LINES_YAML = """
schema_version: "1.0"
description: 产品线（测试）
data:
  - { 产品线代码: PL201, 产品线名称: " 企业年金受托 ", 业务大类: 企业年金 }
  - { 产品线代码: PL202, 产品线名称: 企业年金投资, 业务大类: .nan }
  - { 产品线代码: 301, 产品线名称: 团体养老保障, 业务大类: 保险业务 }
"""


@dataclass
class SyncEnv:
    pg_dsn: str
    mysql_dsn: str
    schema: str
    database: str
    config_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, pg_dsn: str, mysql_dsn: str, schema: str, database: str, folder: Path) -> SyncEnv:
        env = cls(pg_dsn, mysql_dsn, schema, database, folder / "reference_sync.yml")
        my = mysql_connect(mysql_dsn, database)
        try:
            cur = my.cursor()
            # sql_mode '' allows the zero date we want to see turned into NULL; the users' zone (+08:00) makes the
            # TIMESTAMP literals the same instants on any server.
            cur.execute("SET SESSION sql_mode = '', time_zone = '+08:00'")
            for ddl in MYSQL_DDL:
                cur.execute(ddl)
            cur.executemany("INSERT INTO annuity_plan VALUES (%s, %s, %s, %s, %s)", PLANS)
            cur.executemany("INSERT INTO portfolio_plan VALUES (%s, %s, %s, %s)", PORTFOLIOS)
            cur.executemany("INSERT INTO organization VALUES (%s, %s, %s, %s)", ORGS)
        finally:
            my.close()
        with psycopg.connect(pg_dsn, autocommit=True) as pg:
            for table, ddl in PG_DDL.items():
                pg.execute(
                    sql.SQL("CREATE TABLE {}.{} " + ddl).format(
                        sql.Identifier(schema), sql.Identifier(table), *map(sql.Identifier, PG_COLUMNS[table])
                    )
                )
        (folder / "reference_data").mkdir(parents=True, exist_ok=True)
        env.write_product_lines(PRODUCT_LINES_YAML)
        env.write_config()
        return env

    def write_config(self, enabled: bool = True) -> None:
        self.config_path.write_text(
            CONFIG.format(schema=self.schema, db=self.database, enabled=str(enabled).lower()), encoding="utf-8"
        )

    def write_product_lines(self, text: str) -> None:
        (self.config_path.parent / "reference_data" / "product_lines.yml").write_text(text, encoding="utf-8")

    @property
    def config(self) -> ReferenceSyncConfig:
        return load_sync_config(self.config_path)

    def sources(self, **mysql_kwargs: Any) -> dict[str, Any]:
        return {"legacy_mysql": MySqlSource.from_dsn(self.mysql_dsn, **mysql_kwargs), "config_file": YamlFileSource()}

    def mysql(self, statement: str, params: Any = None) -> None:
        my = mysql_connect(self.mysql_dsn, self.database)
        try:
            cur = my.cursor()
            cur.execute("SET SESSION sql_mode = '', time_zone = '+08:00'")
            cur.execute(statement, params)
        finally:
            my.close()

    def pg(self, statement: Any, params: Any = None) -> list[tuple]:
        with psycopg.connect(self.pg_dsn, autocommit=True) as pg:
            cur = pg.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def rows(self, table: str, *, with_xmin: bool = False) -> list[tuple]:
        """Every row (all columns incl. tracking, plus xmin when asked), ordered by key."""
        extra = sql.SQL(", xmin::text") if with_xmin else sql.SQL("")
        return self.pg(
            sql.SQL("SELECT *{} FROM {}.{} ORDER BY 1").format(
                extra, sql.Identifier(self.schema), sql.Identifier(table)
            )
        )

    def watermark(self, table: str) -> Any:
        rows = self.pg("SELECT watermark FROM refdata.sync_state WHERE table_name = %s", (f"{self.schema}.{table}",))
        return rows[0][0] if rows else None

    def add_auto_derived(self, table: str, row: dict[str, Any], domain: str = "annuity_performance") -> None:
        with psycopg.connect(self.pg_dsn, autocommit=True) as pg:
            ensure_tracking_columns(pg, self.schema, table)
        columns = [*row, "_source", "_needs_review", "_derived_from_domain", "_derived_at"]
        self.pg(
            sql.SQL("INSERT INTO {}.{} ({}) VALUES ({}, 'auto_derived', true, %s, now())").format(
                sql.Identifier(self.schema),
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(row)),
            ),
            [*row.values(), domain],
        )
