"""The shipped example in the existing configuration format, end to end on the real servers.

``config/examples/existing_format/`` (loaded unchanged; only the target schema is re-pointed at a test
schema in memory) syncs a MariaDB table (connection from ``LEGACY_MYSQL_*`` environment variables), a table
of a legacy PostgreSQL database (a second database on the test server, conn_id ``refdata_legacy_postgres``)
and the YAML file, then backfills a fact frame through key-mapped, key-only and ``template``-with-format
FKs.  ``config/examples/current_format/`` describes the same setup in today's format; both must produce the
same rows, counts and ratios.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from urllib.parse import urlsplit

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService
from airflow_provider_refdata.config import load_fk_configs, load_sync_config
from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import REPO_ROOT, mysql_connect

EXAMPLES = REPO_ROOT / "config" / "examples"
DOMAIN = "annuity_performance"
TABLES = ["年金计划", "组合计划", "产品线"]

PLANS = [
    ("P001", "甲计划", "单一", "客户A", "2026-10-01 08:00:00"),
    ("P002", " 乙计划 ", "集合", "客户B", "2026-10-02 08:00:00"),
]
PORTFOLIOS = [
    ("Q001", "组合一", "固收", "P001", "2026-10-01 09:00:00+08"),
    ("Q002", "组合二", "权益", "P002", "2026-10-02 09:00:00+08"),
]
FACTS = pd.DataFrame(
    {
        "月度": [date(2025, 10, 1), date(2025, 10, 1), date(2025, 10, 1), date(2025, 10, 1)],
        "计划代码": ["P001", "P777", "P777", "P888"],
        "计划名称": ["甲计划", "新计划七", "新计划七", None],
        "组合代码": ["Q001", "Q777", "Q778", None],
        "组合名称": ["组合一", "新组合", "另一个", None],
        "产品线代码": ["PL201", "PL999", " PL999 ", ""],
    }
)


@pytest.fixture
def legacy_sources(pg_server: str, mysql_server: str, mysql_db: str) -> Iterator[dict[str, str]]:
    """The legacy MariaDB table and a legacy PostgreSQL database; yields their DSNs."""
    my = mysql_connect(mysql_server, mysql_db)
    try:
        cur = my.cursor()
        cur.execute(
            "CREATE TABLE annuity_plan (plan_code varchar(32) PRIMARY KEY, plan_name varchar(200), "
            "plan_type varchar(32), client_name varchar(200), updated_at datetime(6) NOT NULL)"
        )
        cur.executemany("INSERT INTO annuity_plan VALUES (%s, %s, %s, %s, %s)", PLANS)
    finally:
        my.close()
    legacy_db = f"legacy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(legacy_db)))
    legacy_dsn = urlsplit(pg_server)._replace(path=f"/{legacy_db}").geturl()
    try:
        with psycopg.connect(legacy_dsn, autocommit=True) as legacy:
            legacy.execute("CREATE SCHEMA legacy")
            legacy.execute(
                "CREATE TABLE legacy.portfolio_plan (portfolio_code varchar(32) PRIMARY KEY, portfolio_name text, "
                "portfolio_type varchar(32), plan_code varchar(32), updated_at timestamptz NOT NULL)"
            )
            with legacy.cursor() as cur:
                cur.executemany("INSERT INTO legacy.portfolio_plan VALUES (%s, %s, %s, %s, %s)", PORTFOLIOS)
        parts = urlsplit(mysql_server)
        yield {
            "mysql": mysql_server,
            "postgres": legacy_dsn,
            "mysql_db": mysql_db,
            "mysql_host": parts.hostname,
            "mysql_port": str(parts.port),
            "mysql_user": parts.username or "root",
            "mysql_password": parts.password or "",
        }
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(legacy_db)))


def _warehouse_schema(pg_dsn: str) -> str:
    schema = f"w_{uuid.uuid4().hex[:10]}"
    ddl = (REPO_ROOT / "sql" / "warehouse" / "business.sql").read_text(encoding="utf-8")
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(ddl.replace('"business"', f'"{schema}"'))
    return schema


def _retarget(items, schema: str):
    return [item.model_copy(update={"target_schema": schema}) for item in items]


def _rows(pg_dsn: str, schema: str) -> dict[str, list[tuple]]:
    with psycopg.connect(pg_dsn) as pg:
        out = {}
        for table in TABLES:
            cur = pg.execute(
                sql.SQL("SELECT * FROM {}.{} ORDER BY 1").format(sql.Identifier(schema), sql.Identifier(table))
            )
            names = [c.name for c in cur.description]
            # _derived_at is the time of the run: equal in kind (set or not), not in value.
            out[table] = [
                tuple(v is not None if n == "_derived_at" else v for n, v in zip(names, row, strict=True))
                for row in cur.fetchall()
            ]
        return out


def _run(folder: str, sources: dict, pg_dsn: str, schema: str):
    config = load_sync_config(EXAMPLES / folder / "reference_sync.yml")
    config = config.model_copy(update={"tables": _retarget(config.tables, schema)})
    sync = ReferenceSyncService(retries=0).sync_all(config, sources, pg_dsn)
    fks = _retarget(load_fk_configs(EXAMPLES / folder / "foreign_keys.yml", DOMAIN), schema)
    hybrid = HybridReferenceService().ensure_references(DOMAIN, FACTS, fks, pg_dsn)
    return sync, hybrid


def test_existing_format_syncs_and_backfills_like_todays_format(
    pg_dsn: str, legacy_sources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for suffix, key in (
        ("HOST", "mysql_host"),
        ("PORT", "mysql_port"),
        ("USER", "mysql_user"),
        ("PASSWORD", "mysql_password"),
        ("DATABASE", "mysql_db"),
    ):
        monkeypatch.setenv(f"LEGACY_MYSQL_{suffix}", legacy_sources[key])
    existing_schema, current_schema = _warehouse_schema(pg_dsn), _warehouse_schema(pg_dsn)
    try:
        existing_sync, existing = _run(
            "existing_format", {"refdata_legacy_postgres": legacy_sources["postgres"]}, pg_dsn, existing_schema
        )
        current_sync, current = _run(
            "current_format",
            {
                "legacy_mysql": replace(
                    MySqlSource.from_dsn(legacy_sources["mysql"]), database=legacy_sources["mysql_db"]
                ),
                "postgres": legacy_sources["postgres"],
            },
            pg_dsn,
            current_schema,
        )
        # Every table synced from its source: MariaDB, legacy PostgreSQL, the YAML file.
        assert [(r.source_type, r.error, r.skipped_reason) for r in existing_sync] == [
            ("legacy_mysql", None, None),
            ("postgres", None, None),
            ("config_file", None, None),
        ]
        assert [r.rows_inserted for r in existing_sync] == [2, 2, 12]
        assert [r.model_dump(exclude={"table", "duration_seconds", "watermark_before"}) for r in existing_sync] == [
            r.model_dump(exclude={"table", "duration_seconds", "watermark_before"}) for r in current_sync
        ]

        existing_rows = _rows(pg_dsn, existing_schema)
        assert existing_rows == _rows(pg_dsn, current_schema)
        plans = {row[0]: row for row in existing_rows["年金计划"]}
        # Key-mapped FK: the key column is the key, the listed key column adds nothing; the template with a
        # date format replaces the former lambda ("%y%m" of the month + "新建").
        assert plans["P777"][1:3] == ("新计划七", "2510新建")
        assert plans["P002"][1] == "乙计划" and plans["P002"][-4:-2] == ("authoritative", False)
        portfolios = {row[0]: row for row in existing_rows["组合计划"]}
        assert portfolios["Q777"][1] == "新组合" and portfolios["Q777"][3] == "P777"
        # Key-only FK: a key-only placeholder, blank product-line codes never become rows.
        product_lines = {row[0]: row for row in existing_rows["产品线"]}
        assert product_lines["PL999"][1:3] == (None, None) and product_lines["PL999"][3:5] == ("auto_derived", True)
        assert "" not in product_lines and len(product_lines) == 13

        assert existing.degraded_mode is False
        assert existing.backfill_count == current.backfill_count == 2 + 2 + 1
        assert [m.model_dump(exclude={"table"}) for m in existing.coverage_metrics] == [
            m.model_dump(exclude={"table"}) for m in current.coverage_metrics
        ]
        assert existing.auto_derived_ratio == current.auto_derived_ratio
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as pg:
            for schema in (existing_schema, current_schema):
                pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
