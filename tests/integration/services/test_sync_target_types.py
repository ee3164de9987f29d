"""Target types a user maps MySQL columns to load and re-sync; data errors name table, column, key and value.

``json``/``jsonb`` (MySQL JSON), arrays (MySQL ``SET`` → ``text[]``; a ``{a,b}`` string → ``varchar[]``),
``bit(n)``/``bit varying(n)`` and ``boolean``/``smallint`` (MySQL ``BIT``): the first sync (COPY into an empty
target, or the stage when a column is converted there) and the re-sync into a non-empty target (stage +
merge), which must rewrite nothing when nothing changed and exactly the changed row otherwise.

A value PostgreSQL rejects — a NUL byte, a number too large for ``numeric(5,2)``, text in an integer column —
fails the table with the reference table, column, key and value, never the internal stage or a line number.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import SyncTableConfig
from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import mysql_connect

TABLE = "类型表"
MYSQL_DDL = """CREATE TABLE typed (
    code varchar(16) PRIMARY KEY, doc JSON, tags SET('a','b','c'), braces varchar(40),
    flag BIT(1), flags BIT(8), wide BIT(64), note TEXT, amount decimal(12,2), qty varchar(10))"""
ROWS = [
    ("K1", '{"b": 1, "a": [1, 2]}', "a,c", "{x,y}", 1, 5, 18446744073709551615, "甲", 1.5, "7"),
    ("K2", "[]", "", "{}", 0, 255, 9223372036854775808, "乙\t丙", 0, "0"),
    ("K3", None, None, None, None, None, None, None, None, None),
]
# target column, PostgreSQL type, MySQL column
COLUMNS = [
    ("代码", "varchar(16) PRIMARY KEY", "code"),
    ("文档", "json", "doc"),
    ("文档b", "jsonb", "doc"),
    ("标签", "text[]", "tags"),
    ("标签文本", "text", "tags"),
    ("花括号", "varchar(10)[]", "braces"),
    ("开关", "boolean", "flag"),
    ("开关位", "bit(1)", "flag"),
    ("标志", "bit(8)", "flags"),
    ("标志数", "smallint", "flags"),
    ("宽位", "bit varying(64)", "wide"),
    ("宽数", "numeric(20,0)", "wide"),
]


@pytest.fixture
def legacy(mysql_server: str, mysql_db: str) -> Iterator[tuple[str, str]]:
    conn = mysql_connect(mysql_server, mysql_db)
    try:
        cur = conn.cursor()
        cur.execute(MYSQL_DDL)
        cur.executemany("INSERT INTO typed VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", ROWS)
    finally:
        conn.close()
    yield mysql_server, mysql_db


def _mysql(legacy: tuple[str, str], statement: str) -> None:
    conn = mysql_connect(*legacy)
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


def _cfg(schema: str, database: str, columns: list[tuple[str, str, str]]) -> SyncTableConfig:
    return SyncTableConfig.model_validate(
        {
            "name": "typed",
            "target_schema": schema,
            "target_table": TABLE,
            "primary_key": "代码",
            "source_type": "legacy_mysql",
            "source_config": {
                "database": database,
                "table": "typed",
                "columns": [{"source": source, "target": target} for target, _, source in columns],
            },
        }
    )


def _create(pg: psycopg.Connection, schema: str, columns: list[tuple[str, str, str]]) -> None:
    pg.execute(
        sql.SQL("CREATE TABLE {}.{} ({})").format(
            sql.Identifier(schema),
            sql.Identifier(TABLE),
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(t), sql.SQL(ddl)) for t, ddl, _ in columns),
        )
    )


def _rows(pg: psycopg.Connection, schema: str) -> list[tuple]:
    return pg.execute(
        sql.SQL("SELECT {}, xmin::text FROM {}.{} ORDER BY 1").format(
            sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(t)) if "json" in ddl else sql.Identifier(t)
                for t, ddl, _ in COLUMNS
            ),
            sql.Identifier(schema),
            sql.Identifier(TABLE),
        )
    ).fetchall()


def test_json_array_and_bit_targets_load_and_resync(pg_dsn: str, pg_schema: str, legacy: tuple[str, str]) -> None:
    cfg = _cfg(pg_schema, legacy[1], COLUMNS)
    source = MySqlSource.from_dsn(legacy[0])
    service = ReferenceSyncService(retries=0)
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        _create(pg, pg_schema, COLUMNS)
        first = service.sync_table(cfg, source, pg_dsn)
        assert (first.error, first.rows_inserted, first.attempts) == (None, 3, 1)
        rows = {row[0]: row[1:-1] for row in _rows(pg, pg_schema)}
        assert rows["K1"] == (
            '{"b": 1, "a": [1, 2]}',
            '{"a": [1, 2], "b": 1}',
            ["a", "c"],
            "a,c",
            ["x", "y"],
            True,
            "1",
            "00000101",
            5,
            "1" * 64,
            18446744073709551615,
        )
        assert rows["K2"] == ("[]", "[]", [], "", [], False, "0", "11111111", 255, "1" + "0" * 63, 9223372036854775808)
        assert rows["K3"] == (None,) * 11

        # Nothing changed: the re-sync into the non-empty target rewrites nothing.
        before = _rows(pg, pg_schema)
        again = service.sync_table(cfg, source, pg_dsn)
        assert (again.error, again.rows_updated, again.rows_unchanged) == (None, 0, 3)
        assert _rows(pg, pg_schema) == before
        replace = service.sync_table(cfg.model_copy(update={"sync_mode": "delete_insert"}), source, pg_dsn)
        assert (replace.error, replace.rows_updated, replace.rows_deleted) == (None, 0, 0)
        assert _rows(pg, pg_schema) == before

        # One JSON document, one set, one bit changed: exactly that row is rewritten.
        _mysql(legacy, "UPDATE typed SET doc = '{\"a\": [1, 2], \"b\": 2}', tags = 'b', flags = 6 WHERE code = 'K1'")
        changed = service.sync_table(cfg, source, pg_dsn)
        assert (changed.error, changed.rows_updated, changed.rows_unchanged) == (None, 1, 2)
        k1 = {row[0]: row for row in _rows(pg, pg_schema)}["K1"]
        assert (k1[2], k1[3], k1[8], k1[9]) == ('{"a": [1, 2], "b": 2}', ["b"], "00000110", 6)


def test_a_bit_target_too_narrow_for_the_value_fails_the_table(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str]
) -> None:
    columns = [COLUMNS[0], ("标志", "bit(4)", "flags")]
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        _create(pg, pg_schema, columns)
    result = ReferenceSyncService(retries=0).sync_table(
        _cfg(pg_schema, legacy[1], columns), MySqlSource.from_dsn(legacy[0]), pg_dsn
    )
    assert result.error == (
        f"{pg_schema}.{TABLE}: column '标志' of the row with key 代码='K2': the number 255 does not fit in bit(4); "
        "nothing was changed"
    )
    with psycopg.connect(pg_dsn) as pg:
        assert pg.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(TABLE))
        ).fetchone() == (0,)


@pytest.mark.parametrize("non_empty_target", [False, True], ids=["empty-target", "non-empty-target"])
@pytest.mark.parametrize(
    ("column", "mysql_update", "message", "value"),
    [
        (
            ("备注", "text", "note"),
            "UPDATE typed SET note = CONCAT('坏', CHAR(0), '值') WHERE code = 'K2'",
            "NUL byte",
            None,
        ),
        (
            ("金额", "numeric(5,2)", "amount"),
            "UPDATE typed SET amount = 123456.78 WHERE code = 'K2'",
            "overflow",
            "123456.78",
        ),
        (("数量", "integer", "qty"), "UPDATE typed SET qty = 'abc' WHERE code = 'K2'", "invalid input syntax", "abc"),
    ],
    ids=["nul-byte", "numeric-overflow", "text-in-integer"],
)
def test_data_errors_name_table_column_key_and_value(
    pg_dsn: str,
    pg_schema: str,
    legacy: tuple[str, str],
    non_empty_target: bool,
    column: tuple[str, str, str],
    mysql_update: str,
    message: str,
    value: str | None,
) -> None:
    columns = [COLUMNS[0], column]
    cfg = _cfg(pg_schema, legacy[1], columns)
    source = MySqlSource.from_dsn(legacy[0])
    service = ReferenceSyncService(retries=0)
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        _create(pg, pg_schema, columns)
        if non_empty_target:
            assert service.sync_table(cfg, source, pg_dsn).error is None
        before = pg.execute(
            sql.SQL("SELECT *, xmin::text FROM {}.{} ORDER BY 1").format(
                sql.Identifier(pg_schema), sql.Identifier(TABLE)
            )
        ).fetchall()
        _mysql(legacy, mysql_update)
        result = service.sync_table(cfg, source, pg_dsn)
        error = result.error or ""
        assert error.startswith(f"{pg_schema}.{TABLE}: column {column[0]!r} of the row with key 代码='K2'"), error
        assert message in error and "nothing was changed" in error
        if value is not None:
            assert value in error
        assert "_refdata_sync_stage" not in error and "line " not in error
        # Never retried: one read (an empty target: the direct COPY, then the stage that names the row).
        assert result.attempts == (1 if non_empty_target else 2)
        after = pg.execute(
            sql.SQL("SELECT *, xmin::text FROM {}.{} ORDER BY 1").format(
                sql.Identifier(pg_schema), sql.Identifier(TABLE)
            )
        ).fetchall()
        assert after == before
