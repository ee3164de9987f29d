"""``source_type: sql`` (SqlSource) synced into the real warehouse, from three real legacy databases.

* ``sqlite``: a real SQLite database file read through :meth:`SqlSource.from_sqlite_url` (stdlib ``sqlite3``).
  Airflow's sqlite provider is not installed (requirements/lock.txt has no apache-airflow-providers-sqlite),
  so the Airflow side of ``sql`` is tested with the ``sql`` hooks of the installed providers instead:
* ``airflow_postgres``: an Airflow ``postgres`` connection to the test PostgreSQL server, read through
  ``source_for_connection("sql", conn_id)`` = an SqlSource over its ``PostgresHook`` (psycopg 3, ``%s``,
  double-quoted identifiers, server-side cursor);
* ``airflow_mysql``: an Airflow ``mysql`` connection to the test MariaDB, through its ``MySqlHook``
  (MySQLdb, ``%s``, backtick identifiers, ``SSCursor``).

Every scenario runs on all three: initial load into an empty target, re-sync into a non-empty one, a rerun
that rewrites nothing, incremental reads from the watermark, a blank key failing the table, and an unknown
column failing at once without retries.  The legacy table and column names need quoting (a space, ``%``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig
from airflow_provider_refdata.exceptions import RefdataSourceError
from airflow_provider_refdata.services.source_sql import SqlSource
from airflow_provider_refdata.services.sources import SourceColumn, SourceUnavailableError
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.services.type_mapping import sql_type_to_postgres
from tests.conftest import airflow_conn_uri, mysql_connect

TARGET = "年金计划"
LEGACY_TABLE = "legacy plans"
ROWS = [
    ("P001", "  甲计划  ", Decimal("0.0125"), "2024-01-01 08:00:00"),
    ("\u3000P002\u00a0", "乙计划\twith tab", Decimal("0.5"), "2024-01-02 08:00:00"),
    ("P003", "   ", None, "2024-01-03 08:00:00"),
]
EXPECTED = [("P001", "甲计划", Decimal("0.0125")), ("P002", "乙计划\twith tab", Decimal("0.5000")), ("P003", "", None)]
BACKENDS = ["sqlite", "airflow_postgres", "airflow_mysql"]


@dataclass
class LegacyDb:
    """One legacy database holding ``legacy plans``, and the SqlSource that reads it."""

    kind: str
    run: Any  # (statement with {p} placeholders, params) -> None
    placeholder: str
    schema: str | None
    source: Any

    def execute(self, statement: str, params: tuple = ()) -> None:
        self.run(statement.replace("{p}", self.placeholder), params)

    def insert(self, *rows: tuple) -> None:
        for row in rows:
            self.execute(f"INSERT INTO {self.table} VALUES ({{p}}, {{p}}, {{p}}, {{p}})", row)

    @property
    def table(self) -> str:
        q = (lambda n: f"`{n}`") if self.kind == "airflow_mysql" else (lambda n: f'"{n}"')
        return f"{q(self.schema)}.{q(LEGACY_TABLE)}" if self.schema else q(LEGACY_TABLE)

    def column(self, name: str) -> str:
        return f"`{name}`" if self.kind == "airflow_mysql" else f'"{name}"'


def _ddl(kind: str) -> str:
    changed = "datetime" if kind == "airflow_mysql" else "timestamp"
    q = (lambda n: f"`{n}`") if kind == "airflow_mysql" else (lambda n: f'"{n}"')
    return (
        f"({q('Plan Code')} varchar(16), {q('plan_name')} varchar(100), {q('rate%')} decimal(9,4), "
        f"{q('updated_at')} {changed} NOT NULL)"
    )


@pytest.fixture(params=BACKENDS)
def legacy(request, tmp_path, monkeypatch) -> Iterator[LegacyDb]:
    kind = request.param
    if kind == "sqlite":
        path = tmp_path / "legacy.db"

        def run(statement: str, params: tuple) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(statement, [str(p) if isinstance(p, Decimal) else p for p in params])
            conn.close()

        db = LegacyDb(kind, run, "?", None, SqlSource.from_sqlite_url(f"sqlite:///{path}"))
    elif kind == "airflow_postgres":
        pg_server, schema = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_schema")
        monkeypatch.setenv("AIRFLOW_CONN_LEGACY_SQL_PG", airflow_conn_uri(pg_server, "postgres"))

        def run(statement: str, params: tuple) -> None:
            with psycopg.connect(pg_server, autocommit=True) as conn:
                conn.execute(statement, params or None)

        db = LegacyDb(kind, run, "%s", schema, _airflow_sql_source("legacy_sql_pg"))
    else:
        mysql_server, database = request.getfixturevalue("mysql_server"), request.getfixturevalue("mysql_db")
        uri = airflow_conn_uri(mysql_server, "mysql").rsplit("/", 1)[0] + f"/{database}"
        monkeypatch.setenv("AIRFLOW_CONN_LEGACY_SQL_MY", uri)

        def run(statement: str, params: tuple) -> None:
            conn = mysql_connect(mysql_server, database)
            try:
                conn.cursor().execute(statement, params or None)
            finally:
                conn.close()

        db = LegacyDb(kind, run, "%s", database, _airflow_sql_source("legacy_sql_my"))
    db.execute(f"CREATE TABLE {db.table} {_ddl(kind)}")
    db.insert(*ROWS)
    yield db


def _airflow_sql_source(conn_id: str) -> SqlSource:
    from airflow_provider_refdata.hooks.connections import source_for_connection

    source = source_for_connection("sql", conn_id)
    assert isinstance(source, SqlSource)
    return source


@pytest.fixture
def target(pg_server, pg_schema) -> str:
    with psycopg.connect(pg_server, autocommit=True) as pg:
        pg.execute(
            sql.SQL("CREATE TABLE {}.{} ({} varchar(16) PRIMARY KEY, {} text, {} numeric(9,4))").format(
                sql.Identifier(pg_schema),
                sql.Identifier(TARGET),
                *map(sql.Identifier, ["年金计划号", "计划名称", "费率"]),
            )
        )
    return pg_schema


def table_config(legacy: LegacyDb, target_schema: str, *, incremental: bool = False, **overrides: Any) -> Any:
    source_config: dict[str, Any] = {
        "table": LEGACY_TABLE,
        "columns": [
            {"source": "Plan Code", "target": "年金计划号"},
            {"source": "plan_name", "target": "计划名称"},
            {"source": "rate%", "target": "费率"},
        ],
    }
    if legacy.schema:
        source_config["schema"] = legacy.schema
    if incremental:
        source_config["incremental"] = {"updated_at_column": "updated_at", "lookback_seconds": 0}
    source_config.update(overrides.pop("source_config", {}))
    entry = {
        "name": "plans",
        "target_schema": target_schema,
        "target_table": TARGET,
        "primary_key": "年金计划号",
        "source_type": "sql",
        "source_config": source_config,
        **overrides,
    }
    return ReferenceSyncConfig.model_validate({"tables": [entry]}).tables[0]


def target_rows(pg_dsn: str, schema: str, *, with_xmin: bool = False) -> list[tuple]:
    extra = sql.SQL(", xmin::text") if with_xmin else sql.SQL("")
    with psycopg.connect(pg_dsn) as pg:
        return pg.execute(
            sql.SQL("SELECT 年金计划号, 计划名称, 费率{} FROM {}.{} ORDER BY 1").format(
                extra, sql.Identifier(schema), sql.Identifier(TARGET)
            )
        ).fetchall()


def service(sleeps: list[float] | None = None) -> ReferenceSyncService:
    return ReferenceSyncService(retries=2, retry_wait_seconds=0.01, sleep=(sleeps if sleeps is not None else []).append)


# ----------------------------------------------------------------------------------------------------------
# every backend
# ----------------------------------------------------------------------------------------------------------


def test_initial_load_resync_and_a_rerun_that_rewrites_nothing(legacy, target, pg_dsn):
    cfg = table_config(legacy, target)
    first = service().sync_table(cfg, legacy.source, pg_dsn)
    assert first.error is None, first.error
    assert (first.rows_read, first.rows_inserted, first.attempts) == (3, 3, 1)
    assert target_rows(pg_dsn, target) == EXPECTED

    legacy.execute(
        f"UPDATE {legacy.table} SET {legacy.column('plan_name')} = {{p}} WHERE {legacy.column('Plan Code')} = {{p}}",
        ("甲计划（新）", "P001"),
    )
    legacy.insert(("P004", "丁计划", Decimal("1.25"), "2024-01-04 08:00:00"))
    second = service().sync_table(cfg, legacy.source, pg_dsn)
    assert second.error is None, second.error
    assert (second.rows_read, second.rows_inserted, second.rows_updated, second.rows_unchanged) == (4, 1, 1, 2)
    rows = target_rows(pg_dsn, target, with_xmin=True)
    assert [r[:3] for r in rows] == [
        ("P001", "甲计划（新）", Decimal("0.0125")),
        *EXPECTED[1:],
        ("P004", "丁计划", Decimal("1.2500")),
    ]

    rerun = service().sync_table(cfg, legacy.source, pg_dsn)
    assert rerun.error is None, rerun.error
    assert (rerun.rows_read, rerun.rows_inserted, rerun.rows_updated, rerun.rows_unchanged) == (4, 0, 0, 4)
    assert target_rows(pg_dsn, target, with_xmin=True) == rows, "a rerun must not rewrite a single row"


def test_incremental_reads_from_the_watermark(legacy, target, pg_dsn):
    cfg = table_config(legacy, target, incremental=True)
    first = service().sync_table(cfg, legacy.source, pg_dsn)
    assert first.error is None, first.error
    assert (first.rows_read, first.watermark_after) == (3, datetime(2024, 1, 3, 8))

    update = (
        f"UPDATE {legacy.table} SET {legacy.column('plan_name')} = {{p}}, {legacy.column('updated_at')} = {{p}} "
        f"WHERE {legacy.column('Plan Code')} = {{p}}"
    )
    legacy.execute(update, ("乙计划（改）", "2024-01-05 09:30:00", "\u3000P002\u00a0"))
    legacy.execute(update, ("旧值不读", "2023-12-31 00:00:00", "P001"))  # changed, but dated before the watermark
    legacy.insert(("P005", "戊计划", Decimal("2"), "2024-01-04 00:00:00"))
    second = service().sync_table(cfg, legacy.source, pg_dsn)
    assert second.error is None, second.error
    # updated_at >= watermark: P003 (exactly at it), P005 and P002
    assert (second.rows_read, second.rows_inserted, second.rows_updated, second.rows_unchanged) == (3, 1, 1, 1)
    assert second.watermark_after == datetime(2024, 1, 5, 9, 30)
    assert target_rows(pg_dsn, target) == [
        EXPECTED[0],
        ("P002", "乙计划（改）", Decimal("0.5000")),
        EXPECTED[2],
        ("P005", "戊计划", Decimal("2.0000")),
    ]

    rows = target_rows(pg_dsn, target, with_xmin=True)
    third = service().sync_table(cfg, legacy.source, pg_dsn)
    assert (third.error, third.rows_read, third.rows_updated, third.rows_inserted) == (None, 1, 0, 0)
    assert target_rows(pg_dsn, target, with_xmin=True) == rows
    forced = service().sync_table(cfg, legacy.source, pg_dsn, force_full=True)
    assert (forced.error, forced.rows_read, forced.rows_updated) == (None, 4, 1)  # P001's old-dated change


def test_a_blank_key_fails_the_table_naming_it(legacy, target, pg_dsn):
    cfg = table_config(legacy, target)
    assert service().sync_table(cfg, legacy.source, pg_dsn).error is None
    before = target_rows(pg_dsn, target, with_xmin=True)
    legacy.insert((" \u3000\t", "无代码", Decimal("1"), "2024-01-09 00:00:00"))
    result = service().sync_table(cfg, legacy.source, pg_dsn)
    assert result.error is not None
    assert f"{target}.{TARGET}" in result.error and "年金计划号" in result.error and "blank" in result.error
    assert result.attempts == 1
    assert target_rows(pg_dsn, target, with_xmin=True) == before, "nothing changed"


def test_a_blank_key_fails_an_empty_target_too(legacy, target, pg_dsn):
    legacy.insert(("", "空代码", None, "2024-01-09 00:00:00"))
    result = service().sync_table(table_config(legacy, target), legacy.source, pg_dsn)
    assert result.error is not None and "年金计划号" in result.error and f"{target}.{TARGET}" in result.error
    assert target_rows(pg_dsn, target) == []


def test_an_unknown_column_fails_at_once_without_retries(legacy, target, pg_dsn):
    sleeps: list[float] = []
    cfg = table_config(
        legacy,
        target,
        source_config={
            "columns": [{"source": "Plan Code", "target": "年金计划号"}, {"source": "nope", "target": "计划名称"}]
        },
    )
    result = service(sleeps).sync_table(cfg, legacy.source, pg_dsn)
    assert result.error is not None
    assert "nope" in result.error and LEGACY_TABLE in result.error and "Plan Code" in result.error
    assert (result.attempts, sleeps) == (1, [])
    # a case mismatch gets a hint (names are quoted, so case matters)
    wrong_case = table_config(
        legacy, target, source_config={"columns": [{"source": "plan code", "target": "年金计划号"}]}
    )
    hinted = service(sleeps).sync_table(wrong_case, legacy.source, pg_dsn)
    assert hinted.error is not None and "'Plan Code'" in hinted.error and hinted.attempts == 1


def test_an_unknown_table_fails_at_once(legacy, target, pg_dsn):
    sleeps: list[float] = []
    cfg = table_config(legacy, target, source_config={"table": "no such table here"})
    result = service(sleeps).sync_table(cfg, legacy.source, pg_dsn)
    assert result.error is not None and "no such table here" in result.error
    assert (result.attempts, sleeps) == (1, [])


def test_describe_columns(legacy, target):
    cfg = table_config(
        legacy,
        target,
        source_config={
            "columns": [
                {"source": "Plan Code", "target": "年金计划号"},
                {"source": "rate%", "target": "费率"},
                {"source": "updated_at", "target": "变更时间"},
            ]
        },
    )
    described = legacy.source.describe_columns(cfg)
    assert [c.name for c in described] == ["年金计划号", "费率", "变更时间"]
    assert all(isinstance(c, SourceColumn) for c in described)
    # from SQLite's declared types, or information_schema.columns (lengths in characters, not bytes)
    assert [c.pg_type for c in described] == ["varchar(16)", "numeric(9,4)", "timestamp"]
    assert [c.nullable for c in described] == [True, True, False]


# ----------------------------------------------------------------------------------------------------------
# SQLite specifics and errors
# ----------------------------------------------------------------------------------------------------------


def test_sqlite_url_forms_and_a_missing_file(tmp_path, pg_dsn, target):
    missing = tmp_path / "missing.db"
    for url in (f"sqlite://{missing}", f"sqlite:///{missing}"):  # sqlite:///abs and SQLAlchemy's sqlite:////abs
        assert SqlSource.from_sqlite_url(url).name == f"SQLite {missing}"
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://x/y", "sqlite://host/x.db"):
        with pytest.raises(RefdataSourceError):
            SqlSource.from_sqlite_url(bad)
    sleeps: list[float] = []
    legacy = LegacyDb("sqlite", lambda *_: None, "?", None, SqlSource.from_sqlite_url(f"sqlite://{missing}"))
    result = service(sleeps).sync_table(table_config(legacy, target), legacy.source, pg_dsn)
    assert result.error is not None and str(missing) in result.error and "not found" in result.error
    assert (result.attempts, sleeps) == (1, [])
    assert not missing.exists(), "a missing database file is never created"


def test_sqlite_is_read_only_and_reads_in_batches(tmp_path):
    path = tmp_path / "big.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (k text, v integer)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", ((f"K{i:05d}", i) for i in range(2500)))
    conn.close()
    cfg = ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "t",
                    "target_table": "t",
                    "primary_key": "k",
                    "source_type": "sql",
                    "source_config": {
                        "table": "t",
                        "columns": [{"source": "k", "target": "k"}, {"source": "v", "target": "v"}],
                    },
                }
            ]
        }
    ).tables[0]
    source = SqlSource.from_sqlite_url(f"sqlite://{path}")
    with source.stream(cfg, None, 1000) as read:
        sizes = [len(batch) for batch in read.batches]
        conn = source.connect()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM t")
        conn.close()
    assert sizes == [1000, 1000, 500]


def test_an_updated_at_that_is_not_a_time_names_the_column(tmp_path, target, pg_dsn):
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f'CREATE TABLE "{LEGACY_TABLE}" {_ddl("sqlite")}')
        conn.execute(f'INSERT INTO "{LEGACY_TABLE}" VALUES (?, ?, ?, ?)', ("P001", "甲", 1, "yesterday"))
    conn.close()
    legacy = LegacyDb("sqlite", lambda *_: None, "?", None, SqlSource.from_sqlite_url(f"sqlite://{path}"))
    result = service().sync_table(table_config(legacy, target, incremental=True), legacy.source, pg_dsn)
    assert result.error is not None and "updated_at" in result.error and LEGACY_TABLE in result.error
    assert result.attempts == 1 and target_rows(pg_dsn, target) == []


def test_an_unreachable_database_is_retried_and_no_password_shows(monkeypatch, pg_server, target, pg_dsn):
    unreachable = "postgres://refdata:refdata-secret-pw@127.0.0.1:1/legacy"  # nothing listens on port 1
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_SQL_DOWN", unreachable)
    source = _airflow_sql_source("legacy_sql_down")
    legacy = LegacyDb("airflow_postgres", lambda *_: None, "%s", "public", source)
    sleeps: list[float] = []
    result = service(sleeps).sync_table(table_config(legacy, target), source, pg_dsn)
    assert result.error is not None and "legacy_sql_down" in result.error and "gave up after 3" in result.error
    assert result.attempts == 3 and len(sleeps) == 2
    assert "refdata-secret-pw" not in result.error and "refdata-secret-pw" not in repr(source)


def test_errors_are_classified_as_transient_only_for_connection_errors(tmp_path):
    source = SqlSource(connect=lambda: None, name="test db")

    class OperationalError(Exception):  # a driver's DB-API class, by name
        pass

    class ProgrammingError(Exception):
        pass

    assert type(source._error(OperationalError("server closed the connection"), "t")) is SourceUnavailableError
    assert type(source._error(OperationalError("no such table: t"), "t")) is RefdataSourceError
    assert type(source._error(ProgrammingError("boom"), "t")) is RefdataSourceError
    masked = SqlSource(connect=lambda: None, secrets=("hunter22",))._error(OperationalError("bad hunter22"), "t")
    assert "hunter22" not in str(masked) and "***" in str(masked)


def test_create_table_from_sqlite_declared_types(tmp_path, pg_schema, pg_dsn):
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f'CREATE TABLE "{LEGACY_TABLE}" {_ddl("sqlite")}')
        conn.executemany(
            f'INSERT INTO "{LEGACY_TABLE}" VALUES (?, ?, ?, ?)',
            [(r[0], r[1], str(r[2]) if r[2] is not None else None, r[3]) for r in ROWS],
        )
    conn.close()
    legacy = LegacyDb("sqlite", lambda *_: None, "?", None, SqlSource.from_sqlite_url(f"sqlite://{path}"))
    cfg = table_config(legacy, pg_schema, create_table=True)
    result = service().sync_table(cfg, legacy.source, pg_dsn)
    assert result.error is None, result.error
    assert result.rows_inserted == 3
    with psycopg.connect(pg_dsn) as pg:
        types = dict(
            pg.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (f'"{pg_schema}"."{TARGET}"',),
            ).fetchall()
        )
    assert (types["年金计划号"], types["计划名称"], types["费率"]) == (
        "character varying(16)",
        "character varying(100)",
        "numeric(9,4)",
    )
    assert target_rows(pg_dsn, pg_schema) == EXPECTED


def test_sql_type_mapping_is_a_pure_function():
    assert sql_type_to_postgres("VARCHAR(16)") == "varchar(16)"
    assert sql_type_to_postgres("nvarchar(max)") == "text"
    assert sql_type_to_postgres("DECIMAL(18, 2)") == "numeric(18,2)"
    assert sql_type_to_postgres("NUMBER(10)") == "numeric(10)"
    assert sql_type_to_postgres("INTEGER") == "integer"
    assert sql_type_to_postgres("INTEGER", sqlite=True) == "bigint"
    assert sql_type_to_postgres("REAL", sqlite=True) == "double precision"
    assert sql_type_to_postgres("timestamp(3) with time zone") == "timestamptz(3)"
    assert sql_type_to_postgres("DATETIME") == "timestamp"
    assert sql_type_to_postgres("BLOB") == "bytea"
    assert sql_type_to_postgres("UNSIGNED BIG INT") == "bigint"  # SQLite affinity rules
    assert sql_type_to_postgres("") == sql_type_to_postgres(None) == sql_type_to_postgres("whatever") == "text"


def test_the_airflow_hooks_read_through_iterating_cursors(legacy):
    import MySQLdb.cursors

    from airflow_provider_refdata.services.source_sql import iterating_cursor

    conn = legacy.source.connect()
    try:
        cursor = iterating_cursor(conn)
        expected = {
            "sqlite": sqlite3.Cursor,
            "airflow_postgres": psycopg.ServerCursor,
            "airflow_mysql": MySQLdb.cursors.SSCursor,
        }[legacy.kind]
        assert isinstance(cursor, expected)
        cursor.close()
    finally:
        conn.close()
    quoted = legacy.source.quote_identifier('a`b"c')
    assert quoted == ('`a``b"c`' if legacy.kind == "airflow_mysql" else '"a`b""c"')


def test_a_timestamptz_watermark_is_the_same_instant_in_any_session_time_zone(pg_server, target, pg_dsn, monkeypatch):
    # The legacy connection's sessions run in New York time; the watermark is UTC.
    zoned = airflow_conn_uri(pg_server, "postgres") + "?options=-c%20timezone%3DAmerica%2FNew_York"
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_SQL_NY", zoned)
    with psycopg.connect(pg_server, autocommit=True) as pg:
        pg.execute(
            sql.SQL("CREATE TABLE {}.events (code text, name text, changed_at timestamptz)").format(
                sql.Identifier(target)
            )
        )
        pg.execute(
            sql.SQL(
                "INSERT INTO {}.events VALUES ('E1', 'one', '2024-03-01 10:00+00'),"
                " ('E2', 'two', '2024-03-02 10:00+00')"
            ).format(sql.Identifier(target))
        )
    source = _airflow_sql_source("legacy_sql_ny")
    cfg = ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "events",
                    "target_schema": target,
                    "target_table": TARGET,
                    "primary_key": "年金计划号",
                    "source_type": "sql",
                    "source_config": {
                        "schema": target,
                        "table": "events",
                        "columns": [
                            {"source": "code", "target": "年金计划号"},
                            {"source": "name", "target": "计划名称"},
                        ],
                        "incremental": {"updated_at_column": "changed_at"},
                    },
                }
            ]
        }
    ).tables[0]
    first = service().sync_table(cfg, source, pg_dsn)
    assert (first.error, first.rows_read, first.watermark_after) == (None, 2, datetime(2024, 3, 2, 10))
    with psycopg.connect(pg_server, autocommit=True) as pg:
        pg.execute(
            sql.SQL("INSERT INTO {}.events VALUES ('E3', 'three', '2024-03-02 12:00+00')").format(
                sql.Identifier(target)
            )
        )
    second = service().sync_table(cfg, source, pg_dsn)
    assert (second.error, second.rows_read, second.rows_inserted) == (None, 2, 1)  # E2 (at the watermark), E3
    assert second.watermark_after == datetime(2024, 3, 2, 12)
