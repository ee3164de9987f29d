"""``create_table: true``: a missing target table is created from the legacy MySQL table's columns.

On the real servers, through ``ReferenceSyncService.sync_table``: the created table has the mapped types
(read back with ``format_type``), the primary key, the tracking columns exactly as ``ensure_tracking_columns``
adds them, and an index on ``_needs_review``; the rows are loaded; a second run syncs normally; ``plan_only``
shows the DDL and creates nothing (not even the schema); ``create_table: false`` keeps the "does not exist"
failure with a hint; an unmappable type, a YAML source and a failed load leave no table behind; concurrent
syncs of a missing table do not race.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig, SyncTableConfig
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.services.sources import MySqlSource, YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.warehouse.tracking import ensure_tracking_columns
from tests.conftest import mysql_connect

TABLE = "年金计划"
# source column → (target column, MySQL type, expected format_type of the created column)
PLAN_COLUMNS = [
    ("plan_code", "计划代码", "varchar(16) NOT NULL", "character varying(16)"),
    ("plan_name", "计划名称", "varchar(100)", "character varying(100)"),
    ("scale", "规模", "decimal(18,2)", "numeric(18,2)"),
    ("opened_at", "成立时间", "datetime(3)", "timestamp(3) without time zone"),
    ("headcount", "参保人数", "int unsigned", "bigint"),
    ("note", "备注", "text", "text"),
    ("attrs", "属性", "json", "jsonb"),
]
PLANS = [
    ("P001", "甲计划", "12345678901234.56", "2024-01-01 08:00:00.123", 4294967295, "说明\t一", '{"级别": 1}'),
    ("P002", "乙计划", "-0.01", "2024-02-29 23:59:59.999", 0, None, None),
    ("P003", None, None, None, None, "", '[1, "二", null]'),
]
EXPECTED_ROWS = [
    ("P001", "甲计划", Decimal("12345678901234.56"), datetime(2024, 1, 1, 8, 0, 0, 123000), 4294967295, "说明\t一",
     {"级别": 1}),
    ("P002", "乙计划", Decimal("-0.01"), datetime(2024, 2, 29, 23, 59, 59, 999000), 0, None, None),
    ("P003", None, None, None, None, "", [1, "二", None]),
]  # fmt: skip


class Env:
    def __init__(self, pg_dsn: str, mysql_dsn: str, schema: str, database: str) -> None:
        self.pg_dsn, self.mysql_dsn, self.schema, self.database = pg_dsn, mysql_dsn, schema, database

    def mysql(self, *statements: str | tuple[str, Any]) -> None:
        conn = mysql_connect(self.mysql_dsn, self.database)
        try:
            cur = conn.cursor()
            # TIMESTAMP literals below are wall-clock times in UTC, whatever the server's time_zone.
            cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
            for statement in statements:
                query, params = statement if isinstance(statement, tuple) else (statement, None)
                if isinstance(params, list):
                    cur.executemany(query, params)
                else:
                    cur.execute(query, params)
        finally:
            conn.close()

    def pg(self, statement: Any, params: Any = None) -> list[tuple]:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def exists(self, table: str, schema: str | None = None) -> bool:
        return self.pg(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema or self.schema, table)
        )[0][0]

    def columns(self, table: str, schema: str | None = None) -> list[tuple[str, str, bool, str | None]]:
        """(name, format_type, NOT NULL, default) per column, in order."""
        return self.pg(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
              FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum
            """,
            (schema or self.schema, table),
        )

    def primary_key(self, table: str) -> list[str]:
        return [
            r[0]
            for r in self.pg(
                """
                SELECT a.attname FROM pg_index i
                  JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND i.indisprimary ORDER BY k.ord
                """,
                (self.schema, table),
            )
        ]

    def indexed_columns(self, table: str) -> list[list[str]]:
        """The columns of each non-primary-key index."""
        rows = self.pg(
            """
            SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i
              JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND NOT i.indisprimary
             GROUP BY i.indexrelid
            """,
            (self.schema, table),
        )
        return [list(r[0]) for r in rows]

    def checks(self, table: str) -> list[str]:
        return [
            r[0]
            for r in self.pg(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND contype = 'c'",
                (self.schema, table),
            )
        ]

    def rows(self, table: str, columns: list[str], schema: str | None = None) -> list[tuple]:
        return self.pg(
            sql.SQL("SELECT {} FROM {}.{} ORDER BY 1").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.Identifier(schema or self.schema),
                sql.Identifier(table),
            )
        )

    def table_config(
        self,
        source_table: str,
        mappings: list[tuple[str, str]],
        key: str | list[str],
        *,
        target: str = TABLE,
        schema: str | None = None,
        create_table: bool = True,
    ) -> SyncTableConfig:
        entry = {
            "name": f"{source_table}_{target}",
            "target_schema": schema or self.schema,
            "target_table": target,
            "primary_key": key,
            "source_type": "legacy_mysql",
            "create_table": create_table,
            "source_config": {
                "table": source_table,
                "database": self.database,
                "columns": [{"source": s, "target": t} for s, t in mappings],
            },
        }
        return ReferenceSyncConfig.model_validate({"tables": [entry]}).tables[0]

    def sync(self, cfg: SyncTableConfig, **kwargs: Any) -> SyncResult:
        return ReferenceSyncService(retries=0).sync_table(
            cfg, MySqlSource.from_dsn(self.mysql_dsn), self.pg_dsn, **kwargs
        )

    def plan_table(self) -> SyncTableConfig:
        ddl = ", ".join(f"{s} {t}" for s, _, t, _ in PLAN_COLUMNS)
        self.mysql(
            f"CREATE TABLE legacy_plan ({ddl}, PRIMARY KEY (plan_code)) CHARACTER SET utf8mb4",
            ("INSERT INTO legacy_plan VALUES (%s, %s, %s, %s, %s, %s, %s)", PLANS),
        )
        return self.table_config("legacy_plan", [(s, t) for s, t, _, _ in PLAN_COLUMNS], "计划代码")


@pytest.fixture
def env(pg_server, mysql_server, pg_schema, mysql_db) -> Env:
    return Env(pg_server, mysql_server, pg_schema, mysql_db)


def _ok(result: SyncResult) -> SyncResult:
    assert result.error is None and result.skipped_reason is None, result.error or result.skipped_reason
    return result


def test_missing_table_is_created_with_mapped_types_key_tracking_columns_and_index(env):
    cfg = env.plan_table()
    assert not env.exists(TABLE)
    result = _ok(env.sync(cfg))
    assert (result.rows_read, result.rows_inserted) == (3, 3)
    assert result.ddl is not None and f'CREATE TABLE "{env.schema}"."{TABLE}" (' in result.ddl
    assert "CREATE SCHEMA" not in result.ddl  # the schema exists

    columns = env.columns(TABLE)
    targets = [t for _, t, _, _ in PLAN_COLUMNS]
    assert [(name, dtype) for name, dtype, _, _ in columns[: len(targets)]] == [(t, pg) for _, t, _, pg in PLAN_COLUMNS]
    not_null = {name for name, _, notnull, _ in columns if notnull}
    assert not_null == {"计划代码", "_source", "_needs_review"}  # the key; the other columns stay nullable
    assert env.primary_key(TABLE) == ["计划代码"]
    assert env.indexed_columns(TABLE) == [["_needs_review"]]

    # The tracking columns are exactly what ensure_tracking_columns gives an existing table.
    env.pg(sql.SQL("CREATE TABLE {}.ref (k text PRIMARY KEY)").format(sql.Identifier(env.schema)))
    with psycopg.connect(env.pg_dsn, autocommit=True) as conn:
        ensure_tracking_columns(conn, env.schema, "ref")
    assert columns[len(targets) :] == env.columns("ref")[1:]
    assert env.checks(TABLE) == env.checks("ref")

    assert env.rows(TABLE, targets) == EXPECTED_ROWS
    sources = env.rows(TABLE, ["计划代码", "_source", "_needs_review"])
    assert {(s, r) for _, s, r in sources} == {("authoritative", False)}
    logged = env.pg("SELECT status, result->>'ddl' FROM refdata.run_log WHERE subject = %s", (f"{env.schema}.{TABLE}",))
    assert logged == [("success", result.ddl)]

    # A second run is an ordinary sync: no DDL, the changed row updated, the others unchanged.
    env.mysql("UPDATE legacy_plan SET scale = 1.50 WHERE plan_code = 'P002'")
    again = _ok(env.sync(cfg))
    assert again.ddl is None
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 1, 2)
    assert env.rows(TABLE, ["计划代码", "规模"])[1] == ("P002", Decimal("1.50"))


def test_plan_only_shows_the_ddl_and_creates_nothing_not_even_the_schema(env):
    cfg = env.plan_table()
    schema = f"{env.schema}_新"
    cfg = env.table_config("legacy_plan", [(s, t) for s, t, _, _ in PLAN_COLUMNS], "计划代码", schema=schema)
    try:
        planned = _ok(env.sync(cfg, plan_only=True))
        assert planned.plan_only and planned.rows_inserted == 3  # the counts of a real run
        assert planned.ddl is not None
        assert planned.ddl.startswith(f'CREATE SCHEMA IF NOT EXISTS "{schema}";\nCREATE TABLE "{schema}"."{TABLE}" (')
        assert '    "计划代码" varchar(16) NOT NULL,\n' in planned.ddl
        assert '    "规模" numeric(18,2),\n' in planned.ddl
        assert '    PRIMARY KEY ("计划代码"),\n' in planned.ddl
        assert planned.ddl.rstrip().endswith(f'CREATE INDEX ON "{schema}"."{TABLE}" ("_needs_review");')
        assert env.pg("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)) == [(0,)]
        if env.pg("SELECT to_regclass('refdata.run_log') IS NOT NULL")[0][0]:  # plan_only logs nothing either
            assert env.pg("SELECT count(*) FROM refdata.run_log WHERE subject = %s", (f"{schema}.{TABLE}",)) == [(0,)]

        done = _ok(env.sync(cfg))  # the real run creates the schema too, with the same DDL
        assert done.ddl == planned.ddl and done.rows_inserted == 3
        assert env.rows(TABLE, [t for _, t, _, _ in PLAN_COLUMNS], schema=schema) == EXPECTED_ROWS
    finally:
        env.pg(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_without_create_table_the_missing_table_fails_with_a_hint(env):
    env.plan_table()
    cfg = env.table_config("legacy_plan", [(s, t) for s, t, _, _ in PLAN_COLUMNS], "计划代码", create_table=False)
    result = env.sync(cfg)
    assert result.error == (
        f"target table {env.schema}.{TABLE} does not exist; set create_table: true to create it from the source's "
        "columns"
    )
    assert result.ddl is None and not env.exists(TABLE)


def test_an_unmappable_source_type_is_refused_naming_the_column_and_nothing_is_created(env):
    env.mysql("CREATE TABLE places (code varchar(8) PRIMARY KEY, name varchar(20), location point)")
    cfg = env.table_config("places", [("code", "代码"), ("name", "名称"), ("location", "位置")], "代码")
    result = env.sync(cfg)
    assert result.error is not None
    assert "column 'location' (target '位置') has type point: spatial types are not mapped" in result.error
    assert not env.exists(TABLE)


def test_a_failed_first_load_leaves_no_half_created_table(env):
    # No key in MySQL: a duplicated code fails the table; the CREATE TABLE is rolled back with it.
    env.mysql(
        "CREATE TABLE dup (code varchar(8), name varchar(20))",
        ("INSERT INTO dup VALUES (%s, %s)", [("A", "一"), ("A", "二"), ("B", "三")]),
    )
    cfg = env.table_config("dup", [("code", "代码"), ("name", "名称")], "代码")
    result = env.sync(cfg)
    assert result.error is not None and "duplicate keys" in result.error and "代码='A' (2 rows)" in result.error
    assert result.ddl is not None  # what was tried (and rolled back)
    assert not env.exists(TABLE)
    failed = env.pg("SELECT last_status FROM refdata.sync_state WHERE table_name = %s", (f"{env.schema}.{TABLE}",))
    assert failed == [("failed",)]


def test_a_config_file_table_cannot_be_created(env, tmp_path):
    (tmp_path / "lines.yml").write_text('schema_version: "1.0"\ndata:\n  - { 代码: A }\n', encoding="utf-8")
    entry = {
        "name": "lines",
        "target_schema": env.schema,
        "target_table": "产品线",
        "primary_key": "代码",
        "source_type": "config_file",
        "create_table": True,
        "source_config": {"file_path": str(tmp_path / "lines.yml"), "schema_version": "1.0"},
    }
    cfg = ReferenceSyncConfig.model_validate({"tables": [entry]}).tables[0]
    result = ReferenceSyncService(retries=0).sync_table(cfg, YamlFileSource(), env.pg_dsn)
    assert result.error == (
        f"target table {env.schema}.产品线 does not exist and create_table cannot create it: a YAML reference file "
        "declares no column types; create the table yourself"
    )
    cfg = ReferenceSyncConfig.model_validate({"tables": [{**entry, "create_table": False}]}).tables[0]
    result = ReferenceSyncService(retries=0).sync_table(cfg, YamlFileSource(), env.pg_dsn)
    assert result.error == f"target table {env.schema}.产品线 does not exist"  # no hint: it would not help


def test_concurrent_syncs_of_missing_tables_in_a_new_schema_do_not_race(env):
    env.plan_table()
    schema = f"s_{uuid.uuid4().hex[:8]}"
    mappings = [(s, t) for s, t, _, _ in PLAN_COLUMNS]
    configs = [
        env.table_config("legacy_plan", mappings, "计划代码", schema=schema),
        env.table_config("legacy_plan", mappings, "计划代码", schema=schema),
        env.table_config("legacy_plan", mappings, "计划代码", schema=schema, target="年金计划副本"),
    ]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(env.sync, configs))
        for result in results:
            _ok(result)
        same_table = results[:2]
        assert sorted(r.ddl is None for r in same_table) == [False, True]  # one created it, one found it
        assert sorted(r.rows_inserted for r in same_table) == [0, 3]
        assert results[2].ddl is not None
        for table in (TABLE, "年金计划副本"):
            assert env.rows(table, [t for _, t in mappings], schema=schema) == EXPECTED_ROWS
    finally:
        env.pg(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# ----------------------------------------------------------------------------------------------------------
# Every mapped type holds what the MySQL source renders for it (edge values included), and a re-sync through
# the stage and merge finds every row unchanged (the comparisons work on the created types).
# ----------------------------------------------------------------------------------------------------------

# column, MySQL type, expected format_type, MySQL value, PostgreSQL value
TYPES = [
    ("k", "varchar(8) NOT NULL", "character varying(8)", "k1", "k1"),
    ("seq", "smallint unsigned NOT NULL", "integer", 65535, 65535),
    ("c", "char(5)", "character varying(5)", "ab   ", "ab"),
    ("flag", "tinyint(1)", "smallint", 2, 2),
    ("ti", "tinyint", "smallint", -128, -128),
    ("tu", "tinyint unsigned", "smallint", 255, 255),
    ("mi", "mediumint unsigned", "integer", 16777215, 16777215),
    ("bi", "bigint", "bigint", -9223372036854775808, -9223372036854775808),
    ("bu", "bigint unsigned", "numeric(20,0)", 18446744073709551615, Decimal("18446744073709551615")),
    ("d0", "decimal(10,0) unsigned", "numeric(10,0)", 9999999999, Decimal("9999999999")),
    ("f", "float", "real", 1.5, 1.5),
    ("db", "double", "double precision", 2.000000000000001, 2.000000000000001),
    ("dt", "date", "date", "2024-02-29", datetime(2024, 2, 29).date()),
    ("zd", "datetime", "timestamp(0) without time zone", "0000-00-00 00:00:00", None),
    ("ts", "timestamp(6) NULL", "timestamp(6) with time zone", "2024-03-01 12:00:00.654321",
     datetime(2024, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)),
    ("neg", "time", "interval(0)", "-01:30:00", timedelta(hours=-1, minutes=-30)),
    ("big", "time(2)", "interval(2)", "838:59:59.50", timedelta(hours=838, minutes=59, seconds=59.5)),
    ("y", "year", "smallint", 2024, 2024),
    ("e", "enum('小','大')", "text", "大", "大"),
    ("st", "set('a','b')", "text", "a,b", "a,b"),
    ("bin", "binary(4)", "bytea", b"ab", b"ab\x00\x00"),
    ("blb", "blob", "bytea", b"\x00\xff\x10", b"\x00\xff\x10"),
    ("b1", "bit(1)", "boolean", 1, True),
    ("b64", "bit(64)", "numeric(20,0)", 18446744073709551615, Decimal("18446744073709551615")),
    ("u", "uuid", "uuid", "123e4567-e89b-12d3-a456-426614174000", uuid.UUID("123e4567-e89b-12d3-a456-426614174000")),
    ("ip", "inet6", "inet", "2001:db8::1", "2001:db8::1"),
]  # fmt: skip


def test_every_mapped_type_loads_what_the_source_renders_and_resyncs_unchanged(env):
    definitions = ", ".join(f"`{c}` {t}" for c, t, _, _, _ in TYPES)
    env.mysql(
        f"CREATE TABLE all_types ({definitions}) CHARACTER SET utf8mb4",
        (
            f"INSERT INTO all_types VALUES ({', '.join(['%s'] * len(TYPES))})",
            [tuple(v for _, t, _, v, _ in TYPES), ("k2", 0, *([None] * (len(TYPES) - 2)))],
        ),
    )
    cfg = env.table_config("all_types", [(c, f"列_{c}") for c, *_ in TYPES], ["列_k", "列_seq"], target="全类型")
    result = _ok(env.sync(cfg))
    assert result.rows_inserted == 2
    created = env.columns("全类型")
    assert [(name, dtype) for name, dtype, _, _ in created[: len(TYPES)]] == [(f"列_{c}", t) for c, _, t, _, _ in TYPES]
    assert env.primary_key("全类型") == ["列_k", "列_seq"]
    rows = env.pg(
        sql.SQL("SELECT {} FROM {}.{} ORDER BY 1").format(
            sql.SQL(", ").join(
                sql.SQL("host({})").format(sql.Identifier(f"列_{c}")) if c == "ip" else sql.Identifier(f"列_{c}")
                for c, *_ in TYPES
            ),
            sql.Identifier(env.schema),
            sql.Identifier("全类型"),
        )
    )
    expected = tuple(v for *_, v in TYPES)
    got = rows[0]
    for (column, *_), want, have in zip(TYPES, expected, got, strict=True):
        assert have == want, column
    assert rows[1] == ("k2", 0, *([None] * (len(TYPES) - 2)))
    again = _ok(env.sync(cfg))
    assert again.ddl is None and (again.rows_updated, again.rows_unchanged) == (0, 2)


def test_postgresql_validates_each_type_and_names_the_column_without_breaking_the_transaction(env):
    from airflow_provider_refdata.exceptions import RefdataSyncError
    from airflow_provider_refdata.services.sources import SourceColumn
    from airflow_provider_refdata.warehouse.ddl import create_reference_table

    good = [SourceColumn("代码", "character varying(8)"), SourceColumn("时长", "interval day to second(3)")]
    with psycopg.connect(env.pg_dsn) as conn:
        with conn.transaction():
            for bad_type in ("no_such_type", "time zone", "varchar(8)[] "):
                with pytest.raises(RefdataSyncError, match="'值'") as info:
                    create_reference_table(conn, env.schema, "t", [*good, SourceColumn("值", bad_type)], "代码")
                assert info.value.column == "值"
            # the probes ran in savepoints: the transaction is still usable and nothing was created
            ddl = create_reference_table(conn, env.schema, "t", good, ["代码"])
            assert f'CREATE TABLE "{env.schema}"."t" (' in ddl
            count = sql.SQL("SELECT count(*) FROM {}.t").format(sql.Identifier(env.schema))
            assert conn.execute(count).fetchone() == (0,)
            raise psycopg.Rollback()
    assert not env.exists("t")
