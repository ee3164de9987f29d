"""PostgresSource (``source_type: postgres``) → warehouse, end to end through ReferenceSyncService.

The legacy database is a second database on the test PostgreSQL server (``CREATE DATABASE`` per test,
dropped afterwards) with Chinese schema, table and column names; its defaults are set to unusual output
settings (``DateStyle SQL, DMY``, ``TimeZone Asia/Shanghai``, ``IntervalStyle sql_standard``,
``bytea_output escape``, ``extra_float_digits -3``) so the tests prove the reader's own settings win.  Each
test states the semantics it proves:

* an empty target is loaded by COPY straight into it; a filled one through the stage and the guarded merge;
  a re-run rewrites nothing (same ``xmin``); ``delete_insert`` removes authoritative rows gone from the source;
* incremental reads take ``updated_at >= watermark - lookback``; the watermark is the legacy server's exact
  ``max(updated_at)`` (microseconds, ``timestamptz`` as naive UTC);
* types arrive exactly: numeric(38,10), timestamptz, date, boolean, text[], jsonb, bytea, interval, floats,
  text with tab/newline/backslash/emoji; NaN becomes NULL; uuid, time, inet, ranges, bit strings … arrive
  as the same text;
* keys are trimmed like ``str.strip()``, other strings of edge spaces; a blank key fails the table naming it;
* identifiers are quoted exactly (Chinese, spaces, quotes, ``%``);
* a missing table or column, a failed login, an unknown database, a missing privilege fail at once
  (one attempt); a refused connection and a connection lost mid-read are retried; no password is ever shown;
  errors are classified by SQLSTATE (and, for a refused connection, which has none, by libpq's message);
* ``describe_columns`` gives the legacy types (``format_type``) for ``create_table``.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from airflow_provider_refdata.config import ReferenceSyncConfig, SyncTableConfig
from airflow_provider_refdata.exceptions import RefdataSourceError
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.services.source_postgres import STRIP_CHARACTERS, PostgresSource
from airflow_provider_refdata.services.source_resolver import source_from_dsn, source_from_env
from airflow_provider_refdata.services.sources import SourceUnavailableError
from airflow_provider_refdata.services.sync import ReferenceSyncService
from devtools.servers import PostgresServer, free_port

LEGACY_SCHEMA = "旧系统"
PASSWORD = "Leg4cy-s3cret-pw"


def with_database(dsn: str, database: str) -> str:
    return urlsplit(dsn)._replace(path=f"/{database}").geturl()


@pytest.fixture
def legacy_dsn(pg_server: str) -> Iterator[str]:
    """DSN of a fresh legacy database on the test server (odd output defaults, a Chinese schema); dropped after."""
    name = f"legacy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for setting, value in (
            ("DateStyle", "SQL, DMY"),
            ("TimeZone", "Asia/Shanghai"),
            ("IntervalStyle", "sql_standard"),
            ("bytea_output", "escape"),
            ("extra_float_digits", "-3"),
        ):
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting.lower()), sql.Literal(value)
                )
            )
    dsn = with_database(pg_server, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(LEGACY_SCHEMA)))
    yield dsn
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Env:
    """The legacy database and the warehouse schema; a helper per side and a one-table sync."""

    def __init__(self, warehouse_dsn: str, legacy_dsn: str, schema: str) -> None:
        self.pg_dsn, self.legacy_dsn, self.schema = warehouse_dsn, legacy_dsn, schema

    @staticmethod
    def _run(dsn: str, statement: Any, params: Any = None) -> list[tuple]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def legacy(self, statement: str, params: Any = None, *, many: list[tuple] | None = None) -> list[tuple]:
        """Run one statement in the legacy database (``{s}`` is the quoted legacy schema)."""
        query = sql.SQL(statement).format(s=sql.Identifier(LEGACY_SCHEMA))
        if many is not None:
            with psycopg.connect(self.legacy_dsn, autocommit=True) as conn:
                conn.cursor().executemany(query, many)
            return []
        return self._run(self.legacy_dsn, query, params)

    def pg(self, statement: Any, params: Any = None) -> list[tuple]:
        return self._run(self.pg_dsn, statement, params)

    def create_target(self, table: str, columns_sql: str) -> None:
        self.pg(
            sql.SQL("CREATE TABLE {}.{} (" + columns_sql + ")").format(
                sql.Identifier(self.schema), sql.Identifier(table)
            )
        )

    def rows(self, table: str, columns: str = "*") -> list[tuple]:
        return self.pg(
            sql.SQL("SELECT " + columns + " FROM {}.{} ORDER BY 1").format(
                sql.Identifier(self.schema), sql.Identifier(table)
            )
        )

    def table_config(
        self,
        table: str,
        columns: list[str] | list[tuple[str, str]],
        *,
        key: str | list[str] = "k",
        target: str | None = None,
        incremental: dict | None = None,
        mode: str = "upsert",
    ) -> SyncTableConfig:
        mappings = [(c, c) if isinstance(c, str) else c for c in columns]
        source: dict[str, Any] = {
            "schema": LEGACY_SCHEMA,
            "table": table,
            "columns": [{"source": s, "target": t} for s, t in mappings],
        }
        if incremental:
            source["incremental"] = incremental
        entry = {
            "name": f"t_{table}",
            "target_schema": self.schema,
            "target_table": target or table,
            "primary_key": key,
            "source_type": "postgres",
            "sync_mode": mode,
            "source_config": source,
        }
        return ReferenceSyncConfig.model_validate({"tables": [entry]}).tables[0]

    def source(self, **kwargs: Any) -> PostgresSource:
        return PostgresSource.from_dsn(self.legacy_dsn, **kwargs)

    def sync(self, cfg: SyncTableConfig, source: Any = None, *, retries: int = 0, **kwargs: Any) -> SyncResult:
        service = ReferenceSyncService(retries=retries, sleep=lambda seconds: None)
        return service.sync_table(cfg, source or self.source(), self.pg_dsn, **kwargs)

    def watermark(self, table: str) -> datetime | None:
        rows = self.pg("SELECT watermark FROM refdata.sync_state WHERE table_name = %s", (f"{self.schema}.{table}",))
        return rows[0][0] if rows else None


@pytest.fixture
def env(pg_server: str, legacy_dsn: str, pg_schema: str) -> Env:
    return Env(pg_server, legacy_dsn, pg_schema)


def _ok(result: SyncResult) -> SyncResult:
    assert result.error is None and result.skipped_reason is None, result.error or result.skipped_reason
    return result


def _plain(row: tuple) -> tuple:
    return tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in row)


# ----------------------------------------------------------------------------------------------------------
# 1. initial load, re-sync through the stage, re-run, delete_insert
# ----------------------------------------------------------------------------------------------------------

PLAN_DDL = (
    'CREATE TABLE {s}."年金计划表" ("计划代码" varchar(16) PRIMARY KEY, "计划名称" text, "客户名称" varchar(100),'
    ' "规模" numeric(18,2), "更新时间" timestamptz NOT NULL)'
)
PLAN_COLUMNS = [("计划代码", "年金计划号"), ("计划名称", "计划名称"), ("客户名称", "客户名称"), ("规模", "规模")]
PLAN_TARGET = '"年金计划号" varchar(16) PRIMARY KEY, "计划名称" text, "客户名称" varchar(100), "规模" numeric(18,2)'
PLANS = [
    (" P001\u3000", "  甲计划  ", "客户A", "100.50", "2024-01-01 08:00:00+08"),
    ("P002", "乙计划\twith tab", "客户B\\C", "0.00", "2024-01-02 08:00:00+08"),
    ("P003", "丙计划\nline2", None, None, "2024-01-03 08:00:00+08"),
]


def _plan_env(env: Env, **kwargs: Any) -> SyncTableConfig:
    env.legacy(PLAN_DDL)
    env.legacy('INSERT INTO {s}."年金计划表" VALUES (%s, %s, %s, %s, %s)', many=PLANS)
    env.create_target("年金计划", PLAN_TARGET)
    return env.table_config("年金计划表", PLAN_COLUMNS, key="年金计划号", target="年金计划", **kwargs)


def test_initial_load_then_resync_through_the_stage_and_a_rerun_rewrites_nothing(env):
    cfg = _plan_env(env)
    first = _ok(env.sync(cfg))
    assert (first.rows_read, first.rows_inserted, first.attempts) == (3, 3, 1)
    columns = '"年金计划号", "计划名称", "客户名称", "规模", _source'
    assert env.rows("年金计划", columns) == [
        ("P001", "甲计划", "客户A", Decimal("100.50"), "authoritative"),  # key: str.strip(); value: edge spaces
        ("P002", "乙计划\twith tab", "客户B\\C", Decimal("0.00"), "authoritative"),
        ("P003", "丙计划\nline2", None, None, "authoritative"),
    ]
    # one changed, one new, one unchanged row: the filled target goes through the stage and the merge
    env.legacy('UPDATE {s}."年金计划表" SET "计划名称" = %s WHERE "计划代码" = %s', ("甲计划（改）", " P001\u3000"))
    env.legacy('INSERT INTO {s}."年金计划表" VALUES (%s, %s, %s, %s, now())', ("P004", "丁计划", "客户D", "4"))
    before = dict(env.rows("年金计划", '"年金计划号", xmin::text'))
    second = _ok(env.sync(cfg))
    assert (second.rows_read, second.rows_inserted, second.rows_updated, second.rows_unchanged) == (4, 1, 1, 2)
    after = dict(env.rows("年金计划", '"年金计划号", xmin::text'))
    assert after["P002"] == before["P002"] and after["P003"] == before["P003"] and after["P001"] != before["P001"]
    assert env.rows("年金计划", '"年金计划号", "计划名称"')[0] == ("P001", "甲计划（改）")
    # a re-run reads everything and rewrites nothing
    third = _ok(env.sync(cfg))
    assert (third.rows_read, third.rows_inserted, third.rows_updated, third.rows_unchanged) == (4, 0, 0, 4)
    assert dict(env.rows("年金计划", '"年金计划号", xmin::text')) == after


def test_delete_insert_removes_authoritative_rows_gone_from_the_source(env):
    cfg = _plan_env(env, mode="delete_insert")
    _ok(env.sync(cfg))
    env.legacy('DELETE FROM {s}."年金计划表" WHERE "计划代码" = %s', ("P002",))
    result = _ok(env.sync(cfg))
    assert (result.rows_read, result.rows_deleted, result.rows_updated) == (2, 1, 0)
    assert env.rows("年金计划", '"年金计划号"') == [("P001",), ("P003",)]
    # an empty source never empties the table
    env.legacy('DELETE FROM {s}."年金计划表"')
    skipped = env.sync(cfg)
    assert skipped.skipped_reason is not None and "no rows" in skipped.skipped_reason
    assert env.rows("年金计划", '"年金计划号"') == [("P001",), ("P003",)]


def test_a_view_is_a_source_too(env):
    env.legacy(PLAN_DDL)
    env.legacy('INSERT INTO {s}."年金计划表" VALUES (%s, %s, %s, %s, %s)', many=PLANS)
    env.legacy('CREATE VIEW {s}."计划视图" AS SELECT "计划代码", "计划名称" FROM {s}."年金计划表" WHERE "规模" > 0')
    env.create_target("视图目标", '"年金计划号" varchar(16) PRIMARY KEY, "计划名称" text')
    cfg = env.table_config(
        "计划视图", [("计划代码", "年金计划号"), ("计划名称", "计划名称")], key="年金计划号", target="视图目标"
    )
    assert _ok(env.sync(cfg)).rows_inserted == 1
    assert env.rows("视图目标", '"年金计划号", "计划名称"') == [("P001", "甲计划")]


# ----------------------------------------------------------------------------------------------------------
# 2. incremental
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("column_type", ["timestamptz", "timestamp(6)"])
def test_incremental_reads_from_the_watermark_which_is_the_exact_max(env, column_type):
    t0 = datetime(2024, 5, 1, 10, 0, 0, 123456)  # UTC wall time
    env.legacy(f'CREATE TABLE {{s}}."变更" (k text PRIMARY KEY, v text, "更新时间" {column_type} NOT NULL)')
    literal = "%s AT TIME ZONE 'UTC'" if column_type == "timestamptz" else "%s"
    env.legacy(
        f'INSERT INTO {{s}}."变更" VALUES (%s, %s, {literal})',
        many=[
            ("w1", "one", t0 - timedelta(days=1)),
            ("w2", "two", t0),
            ("w3", "three", t0 - timedelta(microseconds=1)),
        ],
    )
    env.create_target("变更", "k text PRIMARY KEY, v text")
    cfg = env.table_config("变更", ["k", "v"], incremental={"updated_at_column": "更新时间", "lookback_seconds": 0})
    first = _ok(env.sync(cfg))
    assert first.rows_read == 3 and first.watermark_after == t0 == env.watermark("变更")
    # the row whose updated_at equals the watermark is read again (>=), nothing older
    second = _ok(env.sync(cfg))
    assert (second.rows_read, second.rows_unchanged, second.watermark_before, second.watermark_after) == (1, 1, t0, t0)
    # a change one microsecond later arrives, and the watermark moves exactly to it
    t1 = t0 + timedelta(microseconds=1)
    env.legacy(f'UPDATE {{s}}."变更" SET v = %s, "更新时间" = {literal} WHERE k = %s', ("uno", t1, "w1"))
    third = _ok(env.sync(cfg))
    assert (third.rows_read, third.rows_updated, third.watermark_after) == (2, 1, t1)
    assert env.watermark("变更") == t1
    assert env.rows("变更", "k, v") == [("w1", "uno"), ("w2", "two"), ("w3", "three")]
    # nothing newer: the re-run re-reads the watermark row only and rewrites nothing
    fourth = _ok(env.sync(cfg))
    assert (fourth.rows_read, fourth.rows_updated, fourth.watermark_after) == (1, 0, t1)
    # force_full reads every row again and keeps the watermark
    full = _ok(env.sync(cfg, force_full=True))
    assert (full.rows_read, full.rows_updated, full.watermark_after) == (3, 0, t1)


def test_lookback_re_reads_the_window(env):
    t0 = datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
    env.legacy("CREATE TABLE {s}.lw (k text PRIMARY KEY, v text, updated_at timestamptz NOT NULL)")
    env.legacy(
        "INSERT INTO {s}.lw VALUES (%s, %s, %s)",
        many=[
            ("a", "1", t0 - timedelta(seconds=5)),
            ("b", "2", t0 - timedelta(seconds=5, microseconds=1)),
            ("c", "3", t0),
        ],
    )
    env.create_target("lw", "k text PRIMARY KEY, v text")
    cfg = env.table_config("lw", ["k", "v"], incremental={"updated_at_column": "updated_at", "lookback_seconds": 5})
    _ok(env.sync(cfg))
    # since = t0 - 5 s exactly: 'a' (== since) and 'c' are re-read, 'b' (1 µs older) is not
    assert _ok(env.sync(cfg)).rows_read == 2


def test_an_incremental_column_must_be_a_date_or_time(env):
    env.legacy("CREATE TABLE {s}.bad_inc (k text PRIMARY KEY, version bigint)")
    env.create_target("bad_inc", "k text PRIMARY KEY")
    cfg = env.table_config("bad_inc", ["k"], incremental={"updated_at_column": "version"})
    result = env.sync(cfg, retries=3)
    assert result.attempts == 1 and "version" in result.error and "bigint" in result.error


# ----------------------------------------------------------------------------------------------------------
# 3. types
# ----------------------------------------------------------------------------------------------------------

LONG_TEXT = ("长文本\t\\N\\\n\r😀 " * 20_000).strip()

TYPES_DDL = """CREATE TABLE {s}."类型" (
    k text PRIMARY KEY, amount numeric(38,10), ts timestamptz, d date, flag boolean, tags text[],
    doc jsonb, raw bytea, note text, dur interval, f8 double precision, f4 real, n numeric, big bigint,
    ints integer[], ts0 timestamp)"""
TYPES_TARGET = (
    "k text PRIMARY KEY, amount numeric(38,10), ts timestamptz, d date, flag boolean, tags text[], doc jsonb, "
    "raw bytea, note text, dur interval, f8 double precision, f4 real, n numeric, big bigint, ints integer[], "
    "ts0 timestamp"
)
TYPE_COLUMNS = "k amount ts d flag tags doc raw note dur f8 f4 n big ints ts0".split()
TRICKY_BYTES = bytes([0x00, 0x09, 0x0A, 0x0D, 0x5C, 0x4E, 0x5C, 0x5C, 0x27, 0x22, 0x7F, 0x80, 0xFF, 0x00])
TYPE_ROWS = [
    (
        "t1",
        "1234567890123456789012345678.0123456789",
        datetime(2024, 6, 30, 16, 0, 0, 1, tzinfo=UTC),
        date(2024, 2, 29),
        True,
        ["a", "b c", 'q"uote', "back\\slash", "逗,号", None, ""],
        '{"名称": "甲", "n": 1.50, "nested": {"a": [1, null, "x\\ty"]}}',
        TRICKY_BYTES,
        "tab\there\nnew line\\backslash 😀👍🏽 \\N",
        timedelta(days=-3, hours=4, microseconds=5),
        0.1 + 0.2,
        1.1,
        "NaN",
        9007199254740993,
        [1, None, -3],
        datetime(1999, 12, 31, 23, 59, 59, 999999),
    ),
    (
        "t2",
        "-0.0000000001",
        datetime(1970, 1, 1, tzinfo=UTC),
        date(1, 1, 1),
        False,
        [],
        "[]",
        b"",
        "",
        timedelta(0),
        float("nan"),
        float("inf"),
        "12345678901234567890.123456789",
        -9223372036854775808,
        [],
        datetime(2000, 1, 1),
    ),
    ("t3", None, None, None, None, None, None, None, LONG_TEXT, None, None, None, None, None, None, None),
    (
        "t4",
        "0",
        datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
        date(9999, 12, 31),
        None,
        ["{brace}", "NULL"],
        '"just a string"',
        bytes(range(256)),
        "  edge spaces  ",
        timedelta(days=400, seconds=1),
        -0.0,
        -1e-45,
        "-Infinity",
        0,
        [2147483647],
        None,
    ),
]


def _expected_type_rows() -> list[tuple]:
    expected = []
    for row in TYPE_ROWS:
        values = list(row)
        values[1] = None if values[1] is None else Decimal(values[1])
        values[6] = None if values[6] is None else json.loads(values[6])
        values[8] = values[8].strip(" ") if values[8] is not None else None
        values[10] = None if isinstance(values[10], float) and math.isnan(values[10]) else values[10]
        values[12] = None if values[12] in (None, "NaN") else Decimal(values[12])
        expected.append(tuple(values))
    return expected


def test_types_arrive_exactly_initially_and_through_the_merge(env):
    env.legacy(TYPES_DDL)
    placeholders = ", ".join(["%s"] * len(TYPE_COLUMNS))
    rows = [(*r[:6], None if r[6] is None else Jsonb(json.loads(r[6])), *r[7:]) for r in TYPE_ROWS]
    env.legacy(f'INSERT INTO {{s}}."类型" VALUES ({placeholders})', many=rows)
    env.create_target("类型", TYPES_TARGET)
    cfg = env.table_config("类型", TYPE_COLUMNS)
    columns = ", ".join(TYPE_COLUMNS)
    expected = _expected_type_rows()
    first = _ok(env.sync(cfg))
    assert first.rows_inserted == len(TYPE_ROWS)
    # real: the exact bits (the text the test's own connection gets depends on extra_float_digits)
    bits = "k, float4send(f4)"
    assert [_plain(r) for r in env.rows("类型", bits)] == [
        _plain(r) for r in env.legacy("SELECT " + bits + ' FROM {s}."类型" ORDER BY 1')
    ]
    expected = [(*e[:11], *e[12:]) for e in expected]
    columns = ", ".join(c for c in TYPE_COLUMNS if c != "f4")
    got = [_plain(r) for r in env.rows("类型", columns)]
    for got_row, want in zip(got, expected, strict=True):
        assert got_row == want, want[0]
    # exact as text too: numeric digits, the float's shortest round-trip form, the instant in UTC
    assert env.rows("类型", "k, amount::text, f8::text, ts::text, big::text")[0] == (
        "t1",
        "1234567890123456789012345678.0123456789",
        "0.30000000000000004",
        env.pg("SELECT %s::timestamptz::text", (datetime(2024, 6, 30, 16, 0, 0, 1, tzinfo=UTC),))[0][0],
        "9007199254740993",
    )
    assert env.pg(
        sql.SQL("SELECT count(*) FROM {}.{} WHERE f8 = 'NaN' OR n = 'NaN'").format(
            sql.Identifier(env.schema), sql.Identifier("类型")
        )
    ) == [(0,)]
    # through the stage and the merge: spoil every row, re-sync, the same values; then nothing changes
    env.pg(
        sql.SQL("UPDATE {}.{} SET _source = 'auto_derived'").format(sql.Identifier(env.schema), sql.Identifier("类型"))
    )
    merged = _ok(env.sync(cfg))
    assert (merged.rows_updated, merged.rows_promoted) == (len(TYPE_ROWS), len(TYPE_ROWS))
    assert [_plain(r) for r in env.rows("类型", columns)] == expected
    again = _ok(env.sync(cfg))
    assert (again.rows_updated, again.rows_unchanged) == (0, len(TYPE_ROWS))


# ----------------------------------------------------------------------------------------------------------
# 4. strings and keys
# ----------------------------------------------------------------------------------------------------------


def test_strip_characters_are_exactly_what_str_strip_removes():
    assert STRIP_CHARACTERS == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_keys_are_stripped_like_str_strip_and_other_strings_of_edge_spaces(env):
    values = [
        ("\u3000K1\t", "  a  ", "x "),
        ("\u00a0K2\u2028", "\tb\t", " \u3000y\u3000 "),
        ("K3 \x1c", "", "   "),
        ("\nK4\r\n", None, "inner  spaces"),
    ]
    env.legacy("CREATE TABLE {s}.strs (k varchar(20) PRIMARY KEY, v text, c char(16))")
    env.legacy("INSERT INTO {s}.strs VALUES (%s, %s, %s)", many=values)
    env.create_target("strs", "k varchar(20) PRIMARY KEY, v text, c text")
    _ok(env.sync(env.table_config("strs", ["k", "v", "c"])))
    assert env.rows("strs", "k, v, c") == [
        ("K1", "a", "x"),
        ("K2", "\tb\t", "\u3000y\u3000"),  # non-key: only spaces go, like MySQL TRIM
        ("K3", "", ""),  # '' stays '' (a value), whitespace-only trims to ''
        ("K4", None, "inner  spaces"),
    ]


@pytest.mark.parametrize(
    "bad_key",
    [
        pytest.param("", id="empty"),
        pytest.param("  \t", id="whitespace"),
        pytest.param("\u3000", id="ideographic"),
        pytest.param(None, id="null"),
    ],
)
@pytest.mark.parametrize("target_filled", [False, True], ids=["empty-target", "filled-target"])
def test_blank_key_fails_the_table_by_name_and_changes_nothing(env, bad_key, target_filled):
    env.legacy("CREATE TABLE {s}.b (k varchar(16) UNIQUE, v varchar(20))")
    env.legacy("INSERT INTO {s}.b VALUES (%s, %s)", many=[("K1", "one"), ("K2", "two")])
    env.create_target("b", "k varchar(16) PRIMARY KEY, v varchar(20)")
    cfg = env.table_config("b", ["k", "v"])
    if target_filled:
        _ok(env.sync(cfg))
    before = env.rows("b", "*, xmin::text")
    env.legacy("INSERT INTO {s}.b VALUES (%s, 'blank')", (bad_key,))
    waits: list[float] = []
    result = ReferenceSyncService(sleep=waits.append).sync_table(cfg, env.source(), env.pg_dsn)
    # not retried (an empty target is read a second time, into the stage, to name the problem)
    assert result.error is not None and waits == [] and result.attempts == (1 if target_filled else 2)
    assert f"{env.schema}.b" in result.error and "blank" in result.error and "'k'" in result.error
    assert env.rows("b", "*, xmin::text") == before


def test_a_numeric_nan_key_is_a_blank_key(env):
    env.legacy("CREATE TABLE {s}.nk (k numeric, v text)")
    env.legacy("INSERT INTO {s}.nk VALUES (%s, %s)", many=[("1", "a"), ("NaN", "b")])
    env.create_target("nk", "k numeric PRIMARY KEY, v text")
    result = env.sync(env.table_config("nk", ["k", "v"]))
    assert result.error is not None and "blank" in result.error and env.rows("nk") == []


# ----------------------------------------------------------------------------------------------------------
# 5. errors and retries
# ----------------------------------------------------------------------------------------------------------


def test_missing_column_or_table_fails_at_once_naming_it(env):
    env.legacy(PLAN_DDL)
    env.create_target("年金计划", PLAN_TARGET)
    cases = [
        (
            env.table_config("年金计划表", [*PLAN_COLUMNS, ("备注", "计划名称2")], key="年金计划号", target="年金计划"),
            "备注",
        ),
        (
            env.table_config(
                "年金计划表",
                PLAN_COLUMNS,
                key="年金计划号",
                target="年金计划",
                incremental={"updated_at_column": "修改时间"},
            ),
            "修改时间",
        ),
        (env.table_config("不存在的表", PLAN_COLUMNS, key="年金计划号", target="年金计划"), "does not exist"),
    ]
    for cfg, named in cases:
        result = env.sync(cfg, retries=3)
        assert result.error is not None and result.attempts == 1, result.error
        assert named in result.error and f"{LEGACY_SCHEMA}." in result.error
    assert "has no column(s) 备注" in env.sync(cases[0][0]).error
    with pytest.raises(RefdataSourceError, match="备注") as raised:
        env.source().describe_columns(cases[0][0])
    assert not isinstance(raised.value, SourceUnavailableError)


def test_unknown_database_and_missing_privilege_fail_at_once(env, pg_server):
    env.legacy(PLAN_DDL)
    env.create_target("年金计划", PLAN_TARGET)
    cfg = env.table_config("年金计划表", PLAN_COLUMNS, key="年金计划号", target="年金计划")
    result = env.sync(cfg, PostgresSource.from_dsn(with_database(env.legacy_dsn, "no_such_db")), retries=3)
    assert result.attempts == 1 and "no_such_db" in result.error and "does not exist" in result.error
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        env.legacy(f'GRANT USAGE ON SCHEMA {{s}} TO "{role}"')
        source = PostgresSource.from_dsn(
            urlsplit(env.legacy_dsn)
            ._replace(netloc=f"{role}@{urlsplit(env.legacy_dsn).netloc.split('@')[-1]}")
            .geturl()
        )
        denied = env.sync(cfg, source, retries=3)
        assert denied.attempts == 1 and "42501" in denied.error and "permission denied" in denied.error
    finally:
        env.legacy(f'REVOKE ALL ON SCHEMA {{s}} FROM "{role}"')
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_refused_connection_is_retried_then_fails_without_the_password(env):
    cfg = _plan_env(env)
    port = free_port()  # nothing listens there
    source = PostgresSource(host="127.0.0.1", port=port, user="postgres", password=PASSWORD, database="legacy")
    waits: list[float] = []
    service = ReferenceSyncService(sleep=waits.append)  # the default policy: 3 retries, 2 s / 4 s / 8 s
    result = service.sync_table(cfg, source, env.pg_dsn)
    assert result.attempts == 4 and waits == [2.0, 4.0, 8.0]
    assert f"127.0.0.1:{port}/legacy" in result.error and "Connection refused" in result.error
    assert "after 4 attempt(s)" in result.error
    assert PASSWORD not in result.error and PASSWORD not in repr(source)
    assert env.rows("年金计划") == []


class _TerminatedOnce:
    """A real PostgresSource whose first read loses its connection after the first chunk (the backend is
    terminated from another session, as a server restart or a failover would)."""

    def __init__(self, inner: PostgresSource, admin_dsn: str) -> None:
        self.inner, self.admin_dsn, self.calls = inner, admin_dsn, 0

    @contextmanager
    def stream(self, table_config, since, batch_size):
        self.calls += 1
        with self.inner.stream(table_config, since, batch_size) as read:
            if self.calls == 1:
                original = read.batches

                def batches():
                    for i, batch in enumerate(original):
                        if i == 1:
                            with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
                                admin.execute(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                                    (self.inner.application_name,),
                                )
                        yield batch

                read.batches = batches()
            yield read


def test_connection_lost_mid_read_is_retried_from_an_empty_stage(env):
    env.legacy("CREATE TABLE {s}.big (k text PRIMARY KEY, v text)")
    env.legacy(
        "INSERT INTO {s}.big SELECT 'K' || lpad(g::text, 7, '0'), repeat('值', 40) FROM generate_series(1, 200000) g"
    )
    env.create_target("big", "k text PRIMARY KEY, v text")
    cfg = env.table_config("big", ["k", "v"])
    marker = f"refdata-test-{uuid.uuid4().hex[:8]}"
    source = _TerminatedOnce(env.source(application_name=marker), env.legacy_dsn)
    result = _ok(env.sync(cfg, source, retries=2, batch_size=1000))
    assert (result.attempts, result.rows_read, result.rows_inserted) == (2, 200_000, 200_000)
    assert env.pg(sql.SQL("SELECT count(*) FROM {}.big").format(sql.Identifier(env.schema))) == [(200_000,)]


# ----------------------------------------------------------------------------------------------------------
# 6. password authentication (a server of our own that asks for passwords)
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_server(tmp_path_factory) -> Iterator[PostgresServer]:
    """A PostgreSQL server where role ``legacy_reader`` must log in with a SCRAM password."""
    server = PostgresServer(Path(tmp_path_factory.mktemp("pw-postgres")), database="legacy")
    server.start()
    try:
        hba = server.datadir / "pg_hba.conf"
        hba.write_text("host all legacy_reader 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE legacy_reader LOGIN PASSWORD {}").format(sql.Literal(PASSWORD)))
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE TABLE public.plans (k text PRIMARY KEY, v text)")
            conn.execute("INSERT INTO public.plans VALUES ('A', 'x'), ('B', 'y')")
            conn.execute("GRANT SELECT ON public.plans TO legacy_reader")
        yield server
    finally:
        server.stop()


def test_password_login_works_and_a_wrong_password_fails_at_once_unshown(env, password_server):
    env.create_target("plans", "k text PRIMARY KEY, v text")
    cfg = ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "plans",
                    "target_schema": env.schema,
                    "target_table": "plans",
                    "primary_key": "k",
                    "source_type": "postgres",
                    "source_config": {
                        "table": "plans",
                        "columns": [{"source": "k", "target": "k"}, {"source": "v", "target": "v"}],
                    },
                }
            ]
        }
    ).tables[0]
    port = password_server.port
    good = PostgresSource.from_dsn(f"postgresql://legacy_reader:{PASSWORD.replace('-', '%2D')}@127.0.0.1:{port}/legacy")
    assert good.password == PASSWORD
    assert _ok(env.sync(cfg, good)).rows_inserted == 2
    wrong = "Wr0ng-pa55word"
    bad = PostgresSource.from_dsn(f"postgresql://legacy_reader:{wrong}@127.0.0.1:{port}/legacy")
    result = env.sync(cfg, bad, retries=3)
    assert result.attempts == 1 and "password authentication failed" in result.error
    assert wrong not in result.error and PASSWORD not in result.error and wrong not in repr(bad)
    missing = PostgresSource(host="127.0.0.1", port=port, user="legacy_reader", database="legacy")
    no_password = env.sync(cfg, missing, retries=3)
    assert no_password.attempts == 1 and "password" in no_password.error


# ----------------------------------------------------------------------------------------------------------
# 7. describe_columns, DSNs, the resolver
# ----------------------------------------------------------------------------------------------------------


def test_describe_columns_gives_the_legacy_types_in_configuration_order(env):
    env.legacy("CREATE TYPE {s}.颜色 AS ENUM ('红', '绿')")
    env.legacy("CREATE DOMAIN {s}.代码 AS varchar(12) NOT NULL")
    env.legacy("CREATE DOMAIN {s}.金额 AS numeric(18,2)")
    env.legacy("CREATE DOMAIN {s}.正金额 AS {s}.金额 CHECK (VALUE >= 0)")
    env.legacy(
        'CREATE TABLE {s}."描述" (k {s}.代码 PRIMARY KEY, amount numeric(38,10) NOT NULL, pos {s}.正金额, '
        "ts timestamptz(3), tags text[], grid integer[][], color {s}.颜色, colors {s}.颜色[], doc jsonb, raw bytea, "
        "fixed char(4), name varchar, r tstzrange)"
    )
    order = ["doc", "k", "amount", "pos", "ts", "tags", "grid", "color", "colors", "raw", "fixed", "name", "r"]
    cfg = env.table_config("描述", [(c, f"目标_{c}") for c in order], key="目标_k")
    columns = env.source().describe_columns(cfg)
    assert [(c.name, c.pg_type, c.nullable) for c in columns] == [
        ("目标_doc", "jsonb", True),
        ("目标_k", "character varying(12)", False),
        ("目标_amount", "numeric(38,10)", False),
        ("目标_pos", "numeric(18,2)", True),
        ("目标_ts", "timestamp(3) with time zone", True),
        ("目标_tags", "text[]", True),
        ("目标_grid", "integer[]", True),
        ("目标_color", "text", True),
        ("目标_colors", "text[]", True),
        ("目标_raw", "bytea", True),
        ("目标_fixed", "character(4)", True),
        ("目标_name", "character varying", True),
        ("目标_r", "tstzrange", True),
    ]
    assert columns[1].source_type.endswith('"代码"') and columns[7].source_type.endswith('"颜色"')
    # the created table takes the values: a target of exactly these types syncs (k is NOT NULL through the domain)
    env.legacy(
        'INSERT INTO {s}."描述" (k, amount, color, colors, pos) VALUES (%s, %s, %s, %s::{s}.颜色[], %s)',
        (" A1 ", Decimal("1.5"), "红", ["绿", "红"], 2),
    )
    env.create_target("描述", ", ".join(f'"{c.name}" {c.pg_type}' for c in columns) + ', PRIMARY KEY ("目标_k")')
    _ok(env.sync(cfg))
    assert env.rows("描述", '"目标_k", "目标_color", "目标_colors", "目标_pos"') == [
        ("A1", "红", ["绿", "红"], Decimal("2.00"))
    ]


def test_from_dsn_and_the_resolver_build_the_source_without_showing_the_password():
    source = PostgresSource.from_dsn(
        "postgresql://us%40er:p%3Ass@db.example:6543/%E6%97%A7%E5%BA%93?sslmode=require&connect_timeout=5&statement_timeout=90"
    )
    assert (source.host, source.port, source.user, source.password, source.database) == (
        "db.example",
        6543,
        "us@er",
        "p:ss",
        "旧库",
    )
    assert (source.connect_timeout, source.statement_timeout, source.conninfo) == (5, 90, {"sslmode": "require"})
    assert "p:ss" not in repr(source) and source.describe() == "db.example:6543/旧库"
    assert isinstance(source_from_dsn("postgres://u@h/db", "postgres"), PostgresSource)
    env_source = source_from_env(
        "LEGACY_PG",
        "postgres",
        {"LEGACY_PG_HOST": "h", "LEGACY_PG_USER": "u", "LEGACY_PG_PASSWORD": "pw", "LEGACY_PG_DATABASE": "d"},
    )
    assert isinstance(env_source, PostgresSource) and (env_source.port, env_source.password) == (5432, "pw")


def test_stream_yields_copy_text_and_the_watermark_without_python_rows(env):
    env.legacy("CREATE TABLE {s}.s (k text PRIMARY KEY, v text, updated_at timestamptz NOT NULL)")
    env.legacy(
        "INSERT INTO {s}.s VALUES (%s, %s, %s)",
        many=[("a", "x\ty", datetime(2024, 1, 1, 8, tzinfo=UTC)), ("b", None, datetime(2024, 1, 2, 8, tzinfo=UTC))],
    )
    cfg = env.table_config("s", ["k", "v"], incremental={"updated_at_column": "updated_at"})
    with env.source().stream(cfg, None, 1) as read:
        batches = list(read.batches)
        assert read.columns == ["k", "v"] and read.max_updated_at == datetime(2024, 1, 2, 8)
    assert all(type(b) is bytes for b in batches) and b"".join(batches) in (
        b"a\tx\\ty\nb\t\\N\n",
        b"b\t\\N\na\tx\\ty\n",
    )
    assert len(batches) == 2  # batch_size rows per chunk
    with env.source().stream(cfg, datetime(2024, 1, 2, 8), 100) as read:
        assert b"".join(read.batches) == b"b\t\\N\n" and read.max_updated_at == datetime(2024, 1, 2, 8)
    # leaving early (the consumer failed) abandons the COPY: the connection is closed, not drained
    source = env.source(application_name=f"refdata-test-{uuid.uuid4().hex[:8]}")
    with pytest.raises(RuntimeError, match="consumer failed"), source.stream(cfg, None, 1) as read:
        next(read.batches)
        raise RuntimeError("consumer failed")
    assert env.legacy(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (source.application_name,)
    ) == [(0,)]


MORE_TYPES = {
    "u": ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "tm": ("time(6)", "23:59:59.999999"),
    "tz": ("timetz", "08:30:00+08"),
    "ip": ("inet", "2001:db8::1/64"),
    "net": ("cidr", "10.1.0.0/16"),
    "mac": ("macaddr", "08:00:2b:01:02:03"),
    "bits": ("bit(4)", "1010"),
    "vbits": ("varbit", "101"),
    "r": ("int4range", "[1,10)"),
    "tr": ("tstzrange", '["2024-01-01 00:00:00+08","2024-06-01 00:00:00+00")'),
    "j": ("json", '{"b": 1,  "a": [1, 2]}'),
    "iv": ("interval", "1 year 2 mons -3 days 04:05:06.000007"),
    "xs": ("numeric[]", "{1.50,NaN,-0.0000001}"),
}


def test_other_types_arrive_as_the_same_text(env):
    """Beyond the table above: each value's text in the warehouse equals its text in the legacy database
    (both read with the same output settings)."""
    names = list(MORE_TYPES)
    ddl = ", ".join(f"{name} {pg_type}" for name, (pg_type, _) in MORE_TYPES.items())
    env.legacy(f"CREATE TABLE {{s}}.more (k text PRIMARY KEY, {ddl})")
    values = [value for _, value in MORE_TYPES.values()]
    env.legacy(f"INSERT INTO {{s}}.more VALUES ('m1', {', '.join(['%s'] * len(names))})", values)
    env.legacy("INSERT INTO {s}.more (k) VALUES ('m2')")
    env.create_target("more", f"k text PRIMARY KEY, {ddl}")
    _ok(env.sync(env.table_config("more", ["k", *names])))
    settings = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3"
    as_text = ", ".join(f"{name}::text" for name in names)

    def texts(dsn: str, table: sql.Composable) -> list[tuple]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(settings)
            return conn.execute(sql.SQL("SELECT k, " + as_text + " FROM {} ORDER BY k").format(table)).fetchall()

    legacy = texts(env.legacy_dsn, sql.Identifier(LEGACY_SCHEMA, "more"))
    warehouse = texts(env.pg_dsn, sql.Identifier(env.schema, "more"))
    assert warehouse == legacy and legacy[1] == ("m2", *[None] * len(names))
    assert dict(zip(names, legacy[0][1:], strict=True))["tz"] == "08:30:00+08"  # a time with zone keeps its offset


@pytest.mark.parametrize("with_values", [True, False], ids=["with-bound-values", "without-bound-values"])
def test_identifiers_with_percent_signs_quotes_and_spaces_are_quoted_exactly(env, with_values):
    # psycopg reads a statement with values for %s placeholders: a % inside a name must not be taken for one
    # (the integer-only variant has no bound values at all on its first, full read).
    value_type = "text" if with_values else "integer"
    env.legacy(
        f'CREATE TABLE {{s}}."费率%s 表" ("键%s" integer PRIMARY KEY, "值""引号%%" {value_type}, "upd%" timestamptz)'
    )
    value = " 12 " if with_values else 12
    env.legacy('INSERT INTO {s}."费率%%s 表" VALUES (1, %s, %s)', (value, datetime(2024, 1, 1, tzinfo=UTC)))
    env.create_target("费率", 'k integer PRIMARY KEY, "值" integer')
    cfg = env.table_config(
        "费率%s 表",
        [("键%s", "k"), ('值"引号%%', "值")],
        key="k",
        target="费率",
        incremental={"updated_at_column": "upd%"},
    )
    first = _ok(env.sync(cfg))
    assert (first.rows_inserted, first.watermark_after) == (1, datetime(2024, 1, 1))
    assert _ok(env.sync(cfg)).rows_read == 1  # the incremental read binds the watermark: values now
    assert env.rows("费率", 'k, "值"') == [(1, 12)]


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("57P01", True),  # admin shutdown (terminated, server restarting)
        ("57014", True),  # statement timeout / cancel
        ("40001", True),  # serialization failure
        ("40P01", True),  # deadlock
        ("55P03", True),  # lock not available
        ("28P01", False),  # wrong password
        ("3D000", False),  # unknown database
        ("42P01", False),  # undefined table
        ("42703", False),  # undefined column
        ("42501", False),  # permission denied
        ("42601", False),  # syntax error
        ("22P02", False),  # invalid text representation
        ("57P04", False),  # database dropped
    ],
)
def test_errors_by_sqlstate_are_transient_or_final(sqlstate, transient):
    source = PostgresSource(host="h", port=5432, password="s3cret-pw", database="d")
    exc = psycopg.errors.lookup(sqlstate)("it went wrong, password s3cret-pw")
    error = source.error(exc, "旧系统.表")
    assert isinstance(error, SourceUnavailableError) is transient
    assert sqlstate in str(error) and "h:5432/d" in str(error) and "旧系统.表" in str(error)
    assert "s3cret-pw" not in str(error) and error.table == "旧系统.表"


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ('connection to server at "h", port 5432 failed: Connection refused', True),
        ('connection to server at "h", port 5432 failed: timeout expired', True),
        ('could not translate host name "nowhere" to address: Name or service not known', True),
        ("connection failed: FATAL:  sorry, too many clients already", True),
        ("connection failed: FATAL:  the database system is starting up", True),
        ("connection failed: FATAL:  the database system is shutting down", True),
        ("connection failed: server closed the connection unexpectedly", True),
        ('connection failed: FATAL:  password authentication failed for user "u"', False),
        ("connection failed: fe_sendauth: no password supplied", False),
        ('connection failed: FATAL:  database "x" does not exist', False),
        ('connection failed: FATAL:  role "x" does not exist', False),
        ('connection failed: FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "u"', False),
        ('connection failed: FATAL:  role "u" is not permitted to log in', False),
        ('connection failed: FATAL:  permission denied for database "d"', False),
        ('invalid sslmode value: "sometimes"', False),
    ],
)
def test_connection_errors_without_sqlstate_are_classified_by_libpq_message(message, transient):
    error = PostgresSource(host="h").error(psycopg.OperationalError(message), "s.t", connecting=True)
    assert isinstance(error, SourceUnavailableError) is transient
