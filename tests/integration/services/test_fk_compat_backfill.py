"""foreign_keys.yml in the existing format, end to end on the real PostgreSQL.

The file lists the key as the first backfill column (``{source: 组合代码, target: 组合代码}``), has key-only
FKs (only the key-mapped column, or no ``backfill_columns`` at all) and replaces the one real ``lambda`` by
``template: "{月度:%y%m}新建"``.  Backfilled through ``GenericBackfillService.run`` and
``HybridReferenceService.ensure_references``; key-only rows hold the key and the tracking columns only, and
a second run changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata import BackfillResult, GenericBackfillService, HybridReferenceService
from airflow_provider_refdata.config import ForeignKeyConfig, load_fk_configs
from tests.integration.refdata_business_tables import DOMAIN, PRODUCT, create_business_tables, rows

PORTFOLIO, CHANNEL = "新组合", "渠道"
TRACKING = {"_source", "_needs_review", "_derived_from_domain", "_derived_at"}

EXISTING_FORMAT = """\
schema_version: "1.2"
domains:
  annuity_performance:
    foreign_keys:
      - name: fk_portfolio
        source_column: 组合代码
        target_schema: {schema}
        target_table: 新组合
        target_key: 组合代码
        backfill_columns:
          - {{source: 组合代码, target: 组合代码}}
          - {{source: 组合名称, target: 组合名称}}
          - source: 月度
            target: 组合说明
            aggregation: {{type: template, template: "{{月度:%y%m}}新建"}}
          - source: 期末资产规模
            target: 规模
            aggregation: {{type: template, template: "{{期末资产规模:,.2f}}"}}
      - name: fk_product_line
        source_column: 产品线代码
        target_schema: {schema}
        target_table: 产品线
        target_key: 产品线代码
        backfill_columns:
          - {{source: 产品线代码, target: 产品线代码}}
      - name: fk_channel
        source_column: 渠道代码
        target_schema: {schema}
        target_table: 渠道
        target_key: 渠道代码
"""

# The same configuration as written for this provider: no key column, key-only FKs with an empty list.
TODAYS_FORMAT = """\
schema_version: "1.0"
domains:
  annuity_performance:
    foreign_keys:
      - name: fk_portfolio
        source_column: 组合代码
        target_schema: {schema}
        target_table: 新组合
        target_key: 组合代码
        backfill_columns:
          - {{source: 组合名称, target: 组合名称}}
          - source: 月度
            target: 组合说明
            aggregation: {{type: template, template: "{{月度:%y%m}}新建"}}
          - source: 期末资产规模
            target: 规模
            aggregation: {{type: template, template: "{{期末资产规模:,.2f}}"}}
      - name: fk_product_line
        source_column: 产品线代码
        target_schema: {schema}
        target_table: 产品线
        target_key: 产品线代码
        backfill_columns: []
      - name: fk_channel
        source_column: 渠道代码
        target_schema: {schema}
        target_table: 渠道
        target_key: 渠道代码
        backfill_columns: []
"""


def _configs(tmp_path: Path, schema: str, text: str = EXISTING_FORMAT) -> list[ForeignKeyConfig]:
    path = tmp_path / ("existing.yml" if text is EXISTING_FORMAT else "todays.yml")
    path.write_text(text.format(schema=schema), encoding="utf-8")
    return load_fk_configs(path, DOMAIN)


def _create_tables(conn: psycopg.Connection, schema: str) -> None:
    """The business tables (产品线 with tracking columns) plus two tables without them: the backfill adds them."""
    create_business_tables(conn, schema)
    s = sql.Identifier(schema)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.{} (组合代码 varchar(32) PRIMARY KEY, 组合名称 varchar(200), "
                "组合说明 varchar(20), 规模 varchar(30))"
            ).format(s, sql.Identifier(PORTFOLIO))
        )
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (渠道代码 varchar(32) PRIMARY KEY, 渠道名称 varchar(100))").format(
                s, sql.Identifier(CHANNEL)
            )
        )


def _facts(month_q3: object = "2025-12") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "组合代码": ["Q1", "Q2", "Q3", "Q1"],
            "组合名称": ["组合一", "组合二", "组合三", None],
            "月度": pd.Series([pd.Timestamp("2025-10-01"), "202511", month_q3, None], dtype=object),
            "期末资产规模": pd.Series([1234.5, "2,000", 3, None], dtype=object),
            "产品线代码": ["PL201", "PL202", None, "PL201"],
            "渠道代码": ["C1", "C1", "C2", " C2 "],
        }
    )


def _portfolios(conn: psycopg.Connection, schema: str) -> list[tuple]:
    with conn.transaction():
        return conn.execute(
            sql.SQL("SELECT 组合代码, 组合名称, 组合说明, 规模, _source, _needs_review FROM {}.{} ORDER BY 1").format(
                sql.Identifier(schema), sql.Identifier(PORTFOLIO)
            )
        ).fetchall()


def _non_null_columns(conn: psycopg.Connection, schema: str, table: str, key: str) -> list[tuple[str, set[str]]]:
    """Per row, sorted by key: (key, the columns holding a value), read from the whole row (every column)."""
    with conn.transaction():
        found = conn.execute(
            sql.SQL("SELECT jsonb_strip_nulls(to_jsonb(t)) FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        ).fetchall()
    return sorted((row[key], set(row)) for (row,) in found)


def test_existing_format_backfills_key_mapped_key_only_and_formatted_template(tmp_path, pg_conn, pg_schema):
    _create_tables(pg_conn, pg_schema)
    configs = _configs(tmp_path, pg_schema)
    assert [len(fk.backfill_columns) for fk in configs] == [3, 0, 0]  # the key columns are dropped
    facts = _facts(month_q3="2025/12")  # not a date: Q3's 组合说明 is NULL, counted and named
    service = GenericBackfillService(DOMAIN)

    planned = service.run(facts, configs, pg_conn, plan_only=True)
    assert [(t.fk_name, t.inserted, t.template_unparsed) for t in planned.tables] == [
        ("fk_portfolio", 3, 1),
        ("fk_product_line", 2, 0),
        ("fk_channel", 2, 0),
    ]
    with pg_conn.transaction():  # plan only: nothing written, not even the tracking columns
        assert pg_conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(PORTFOLIO))
        ).fetchone() == (0,)

    result = service.run(facts, configs, pg_conn)

    assert isinstance(result, BackfillResult)
    by_fk = {t.fk_name: t for t in result.tables}
    assert [(t.fk_name, t.candidates, t.inserted, t.rejected, t.template_unparsed) for t in result.tables] == [
        ("fk_portfolio", 3, 3, 0, 1),
        ("fk_product_line", 2, 2, 0, 0),
        ("fk_channel", 2, 2, 0, 0),
    ]
    error = by_fk["fk_portfolio"].error
    assert "1 value(s) of column '组合说明'" in error and f"{pg_schema}.{PORTFOLIO}" in error
    assert "'{月度:%y%m}'" in error and "as a date" in error and "key 'Q3': '2025/12'" in error
    assert by_fk["fk_product_line"].error is None and by_fk["fk_channel"].error is None
    assert _portfolios(pg_conn, pg_schema) == [
        ("Q1", "组合一", "2510新建", "1,234.50", "auto_derived", True),
        ("Q2", "组合二", "2511新建", "2,000.00", "auto_derived", True),
        ("Q3", "组合三", None, "3.00", "auto_derived", True),
    ]
    # Key-only placeholders: the key and the tracking columns, nothing else (产品线名称 / 渠道名称 stay NULL).
    for table, key, values in ((PRODUCT, "产品线代码", ["PL201", "PL202"]), (CHANNEL, "渠道代码", ["C1", "C2"])):
        assert _non_null_columns(pg_conn, pg_schema, table, key) == [(value, {key, *TRACKING}) for value in values]
    before = {table: rows(pg_conn, pg_schema, table, key) for table, key in _tables()}

    again = service.run(facts, configs, pg_conn)

    assert again.total_inserted == 0
    assert [(t.skipped, t.template_unparsed, t.error) for t in again.tables] == [
        (3, 0, None),
        (2, 0, None),
        (2, 0, None),
    ]
    assert {table: rows(pg_conn, pg_schema, table, key) for table, key in _tables()} == before  # same text, same xmin
    assert pg_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _tables() -> list[tuple[str, str]]:
    return [(PORTFOLIO, "组合代码"), (PRODUCT, "产品线代码"), (CHANNEL, "渠道代码")]


def test_ensure_references_on_the_existing_format_matches_todays_format(tmp_path, pg_conn, pg_schema):
    _create_tables(pg_conn, pg_schema)
    configs = _configs(tmp_path, pg_schema)
    todays = _configs(tmp_path, pg_schema, TODAYS_FORMAT)
    assert configs == todays  # same meaning: the key column adds nothing, key-only is key-only

    result = HybridReferenceService().ensure_references(DOMAIN, _facts(), configs, pg_conn)

    assert not result.degraded_mode, result.degradation_reason
    assert result.backfill_count == 7
    assert [(m.fk_name, m.total_fk_values, m.missing_values) for m in result.coverage_metrics] == [
        ("fk_portfolio", 3, 3),
        ("fk_product_line", 2, 2),
        ("fk_channel", 2, 2),
    ]
    assert [t.template_unparsed for t in result.backfill_result.tables] == [0, 0, 0]
    assert [row[2] for row in _portfolios(pg_conn, pg_schema)] == ["2510新建", "2511新建", "2512新建"]
    assert _non_null_columns(pg_conn, pg_schema, PRODUCT, "产品线代码") == [
        ("PL201", {"产品线代码", *TRACKING}),
        ("PL202", {"产品线代码", *TRACKING}),
    ]
    with pg_conn.transaction():
        derived = pg_conn.execute(
            sql.SQL(
                "SELECT 产品线代码, _source, _needs_review, _derived_from_domain, _derived_at IS NOT NULL "
                "FROM {}.{} ORDER BY 1"
            ).format(sql.Identifier(pg_schema), sql.Identifier(PRODUCT))
        ).fetchall()
    assert derived == [("PL201", "auto_derived", True, DOMAIN, True), ("PL202", "auto_derived", True, DOMAIN, True)]
    before = {table: rows(pg_conn, pg_schema, table, key) for table, key in _tables()}

    again = HybridReferenceService().ensure_references(DOMAIN, _facts(), configs, pg_conn)

    assert again.backfill_count == 0 and not again.degraded_mode
    assert [m.covered_values for m in again.coverage_metrics] == [3, 2, 2]
    assert {table: rows(pg_conn, pg_schema, table, key) for table, key in _tables()} == before
