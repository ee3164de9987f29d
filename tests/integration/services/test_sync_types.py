"""Data fidelity of the MySQL → PostgreSQL sync, end to end through ReferenceSyncService on the real servers.

Every value here travels the production path: MySQL renders each row as COPY text, PostgreSQL parses it
into the target's types, first straight into an empty target, then through the stage and the guarded merge.
Each test states the decided semantics it proves:

* strings: COPY's special characters (tab, newline, CR, backslash, a literal ``\\N``) arrive unchanged inside
  values; keys are trimmed of leading/trailing white space like ``str.strip`` (as the hybrid path trims fact
  keys), other string columns of leading/trailing spaces (MySQL ``TRIM``, for speed); an empty (or
  space-only) string stays ``''`` in non-key columns and NULL stays NULL; a
  blank or NULL *key* fails the table with a message naming it, and nothing changes;
* numbers are exact (DECIMAL as text, BIGINT beyond 2**53), ``TINYINT(1)``/``BIT(1)`` fill boolean columns;
* dates: zero dates are NULL, fractional seconds kept, ``TIMESTAMP`` arrives as the right instant whatever
  the MariaDB server's global ``time_zone``;
* binary columns arrive byte-exact in ``bytea`` targets;
* incremental watermarks are MySQL's exact ``max(updated_at)`` (microseconds too) and ``>=`` re-reads it;
* YAML ``.nan`` in a numeric column is NULL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig, SyncTableConfig
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.services.sources import STRIP_CHARACTERS, MySqlSource, YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import mysql_connect


class Env:
    """One MySQL database and one PostgreSQL schema; a helper per side and a one-table sync."""

    def __init__(self, pg_dsn: str, mysql_dsn: str, schema: str, database: str) -> None:
        self.pg_dsn, self.mysql_dsn, self.schema, self.database = pg_dsn, mysql_dsn, schema, database

    def mysql(self, *statements: str | tuple[str, Any], time_zone: str = "+00:00") -> list[tuple]:
        """Run statements in one session (sql_mode relaxed so zero dates are allowed, explicit time zone)."""
        conn = mysql_connect(self.mysql_dsn, self.database)
        try:
            cur = conn.cursor()
            cur.execute("SET SESSION sql_mode = ''")
            cur.execute("SET SESSION time_zone = %s", (time_zone,))
            rows: list[tuple] = []
            for statement in statements:
                query, params = statement if isinstance(statement, tuple) else (statement, None)
                if isinstance(params, list):
                    cur.executemany(query, params)
                else:
                    cur.execute(query, params)
                rows = list(cur.fetchall()) if cur.description else []
            return rows
        finally:
            conn.close()

    def pg(self, statement: Any, params: Any = None) -> list[tuple]:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

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
        self, table: str, columns: list[str], *, key: str = "k", incremental: dict | None = None, mode: str = "upsert"
    ) -> SyncTableConfig:
        source: dict[str, Any] = {
            "table": table,
            "database": self.database,
            "columns": [{"source": c, "target": c} for c in columns],
        }
        if incremental:
            source["incremental"] = incremental
        config = ReferenceSyncConfig.model_validate(
            {
                "tables": [
                    {
                        "name": table,
                        "target_schema": self.schema,
                        "target_table": table,
                        "primary_key": key,
                        "source_type": "legacy_mysql",
                        "sync_mode": mode,
                        "source_config": source,
                    }
                ]
            }
        )
        return config.tables[0]

    def sync(self, cfg: SyncTableConfig, **kwargs: Any) -> SyncResult:
        source = MySqlSource.from_dsn(self.mysql_dsn)
        return ReferenceSyncService(retries=0).sync_table(cfg, source, self.pg_dsn, **kwargs)

    def watermark(self, table: str) -> datetime | None:
        rows = self.pg("SELECT watermark FROM refdata.sync_state WHERE table_name = %s", (f"{self.schema}.{table}",))
        return rows[0][0] if rows else None


@pytest.fixture
def env(pg_server, mysql_server, pg_schema, mysql_db) -> Env:
    return Env(pg_server, mysql_server, pg_schema, mysql_db)


def _ok(result: SyncResult) -> SyncResult:
    assert result.error is None and result.skipped_reason is None, result.error or result.skipped_reason
    return result


def _resync_through_the_merge(env: Env, cfg: SyncTableConfig, table: str, expected: list[tuple]) -> None:
    """Spoil every target row, re-sync (stage + merge path), expect the same values; a third run changes nothing."""
    env.pg(
        sql.SQL("UPDATE {}.{} SET _source = 'auto_derived'").format(sql.Identifier(env.schema), sql.Identifier(table))
    )
    merged = _ok(env.sync(cfg, force_full=True))
    assert (merged.rows_updated, merged.rows_promoted) == (len(expected), len(expected))
    assert env.rows(table, ", ".join(f'"{c}"' for c in cfg.target_columns)) == expected
    again = _ok(env.sync(cfg, force_full=True))
    assert (again.rows_updated, again.rows_unchanged) == (0, len(expected))


# ----------------------------------------------------------------------------------------------------------
# 1. strings
# ----------------------------------------------------------------------------------------------------------

LONG_TEXT = ("长文本\t\\N\\\n\r😀 " * 20_000).strip()  # ~ 220K characters with every COPY special inside

STRINGS = [
    ("a01", "a\tb", "tab"),
    ("a02", "a\nb", "newline"),
    ("a03", "a\rb\r\nc", "carriage return"),
    ("a04", "a\\b\\\\c\\", "backslashes"),
    ("a05", "\\N", "literal \\N"),
    ("a06", "\\t\\n is not a tab", "escaped letters"),
    ("a07", 'it\'s "quoted" `x`', "quotes"),
    ("a08", "😀👍🏽🀄 𠀀", "4-byte UTF-8"),
    ("a09", "年金计划，全角（括号）", "Chinese"),
    ("a10", "  padded both  ", "spaces"),
    ("a11", "\t\n tabs and newlines around \r\n", "whitespace"),
    ("a12", "", "empty"),
    ("a13", "   ", "whitespace only"),
    ("a14", None, "NULL"),
    ("a15", "inner  double  spaces", "inner spaces"),
    ("a16", LONG_TEXT, "long text"),
    ("a17", "\u3000全角空格 \u3000", "ideographic spaces around"),
    ("a18", "\u00a0nbsp\u00a0", "no-break spaces around"),
    ("a19", "耀 \u3000中", "last byte 0x80, inner spaces"),
    ("a21", "\\.", "COPY's end-of-data marker"),
    ("a22", "x\n\\.\ny", "the end-of-data marker on a line of its own"),
    ("a23", 'a,b,"c",,', "CSV delimiters and quotes"),
    ('a24"', '"', "a quote alone, and in the key"),
    ("a25", '""', "two quotes (CSV's empty string)"),
    ("\u3000k20\t", "key trimmed", "a key with white space around"),
]


def _strip(value: str | None) -> str | None:
    # non-key MySQL string columns lose their edge spaces (MySQL TRIM); tabs, newlines etc. at the edges stay
    return None if value is None else value.strip(" ")


def test_strings_arrive_exactly_trimmed_with_empty_kept_and_null_kept(env):
    env.mysql(
        "CREATE TABLE s (k varchar(16) PRIMARY KEY, v longtext, vc varchar(300)) CHARACTER SET utf8mb4",
        ("INSERT INTO s VALUES (%s, %s, %s)", [(k, v, None if v is None else v[:300]) for k, v, _ in STRINGS]),
    )
    env.create_target("s", "k varchar(16) PRIMARY KEY, v text, vc varchar(300)")
    cfg = env.table_config("s", ["k", "v", "vc"])
    result = _ok(env.sync(cfg))
    assert (result.rows_read, result.rows_inserted) == (len(STRINGS), len(STRINGS))
    # keys are trimmed of all white space, like str.strip() (and the hybrid path's fact keys)
    expected = [(k.strip(), _strip(v), _strip(None if v is None else v[:300])) for k, v, _ in STRINGS]
    got = env.rows("s", "k, v, vc")
    for row, wanted, (_, _, label) in zip(got, expected, STRINGS, strict=True):
        assert row == wanted, label
    # decided semantics: '' stays '' (whitespace-only trims to ''), NULL stays NULL
    by_key = {r[0]: r for r in got}
    assert by_key["a12"][1] == "" and by_key["a13"][1] == "" and by_key["a14"][1] is None
    assert len(by_key["a16"][1]) == len(LONG_TEXT)
    _resync_through_the_merge(env, cfg, "s", expected)


@pytest.mark.parametrize("charset", ["utf8mb4", "gbk"])
def test_keys_lose_exactly_what_str_strip_removes_whatever_the_white_space(env, charset):
    # Every character str.isspace() knows, before and after a key: the fact keys of the hybrid path are
    # str.strip()ed, so a key that kept an em space (U+2003, pasted from a document) would never match.
    spaces = [c for c in STRIP_CHARACTERS if charset == "utf8mb4" or _in_gbk(c)]
    keys = [f"{c}K{i:02d}{c}" for i, c in enumerate(spaces)]
    env.mysql(
        f"CREATE TABLE ws (k varchar(16) PRIMARY KEY, v varchar(8)) CHARACTER SET {charset}",
        ("INSERT INTO ws VALUES (%s, %s)", [(k, str(i)) for i, k in enumerate(keys)]),
    )
    env.create_target("ws", "k varchar(16) PRIMARY KEY, v text")
    _ok(env.sync(env.table_config("ws", ["k", "v"])))
    got = dict((v, k) for k, v in env.rows("ws", "k, v"))
    wrong = {repr(keys[int(v)]): k for v, k in got.items() if k != keys[int(v)].strip()}
    assert not wrong and len(got) == len(keys), wrong


def _in_gbk(char: str) -> bool:
    try:
        char.encode("gbk")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize(
    "bad_key",
    [pytest.param("", id="empty"), pytest.param("   ", id="spaces"), pytest.param(None, id="null")],
)
@pytest.mark.parametrize("target_filled", [False, True], ids=["empty-target", "filled-target"])
def test_blank_key_fails_the_table_by_name_and_changes_nothing(env, bad_key, target_filled):
    env.mysql(
        "CREATE TABLE b (k varchar(16) NULL, v varchar(20), UNIQUE KEY (k))",
        ("INSERT INTO b VALUES (%s, %s)", [("K1", "one"), ("K2", "two")]),
    )
    env.create_target("b", "k varchar(16) PRIMARY KEY, v varchar(20)")
    cfg = env.table_config("b", ["k", "v"])
    if target_filled:
        _ok(env.sync(cfg))
    before = env.rows("b", "*, xmin::text")
    env.mysql(("INSERT INTO b VALUES (%s, 'blank')", (bad_key,)))
    result = env.sync(cfg)
    assert result.error is not None
    assert f"{env.schema}.b" in result.error and "blank" in result.error and "'k'" in result.error
    assert "1 row" in result.error
    assert env.rows("b", "*, xmin::text") == before


def test_blank_key_in_a_nullable_unique_key_is_caught_too(env):
    # the configured key is a UNIQUE column that PostgreSQL would happily fill with NULL
    env.mysql(
        "CREATE TABLE u (k varchar(16), v varchar(20))", ("INSERT INTO u VALUES (%s, %s)", [("K1", "a"), (None, "b")])
    )
    env.create_target("u", "k varchar(16) UNIQUE, v varchar(20)")
    result = env.sync(env.table_config("u", ["k", "v"]))
    assert result.error is not None and "blank" in result.error and f"{env.schema}.u" in result.error
    assert env.rows("u", "k") == []


# ----------------------------------------------------------------------------------------------------------
# 2. numbers
# ----------------------------------------------------------------------------------------------------------


def test_numbers_are_exact_and_tinyint_and_bit_fill_booleans(env):
    rows = [
        ("n1", "9999999999999999.99", 9007199254740993, -1, 1, 1),
        ("n2", "-9999999999999999.99", -9223372036854775808, 0, 0, 0),
        ("n3", "0.00", 9223372036854775807, 2147483648, 1, 0),
        ("n4", "0.10", 0, -2147483649, None, None),
        ("n5", None, None, None, 0, 1),
    ]
    env.mysql(
        "CREATE TABLE n (k varchar(8) PRIMARY KEY, amount decimal(18,2), big bigint, i bigint, flag tinyint(1), "
        "bit1 bit(1))",
        (
            "INSERT INTO n VALUES (%s, %s, %s, %s, %s, %s)",
            [(*r[:5], None if r[5] is None else bytes([r[5]])) for r in rows],
        ),
    )
    env.create_target(
        "n", "k text PRIMARY KEY, amount numeric(18,2), big bigint, i numeric, flag boolean, bit1 boolean"
    )
    cfg = env.table_config("n", ["k", "amount", "big", "i", "flag", "bit1"])
    _ok(env.sync(cfg))
    expected = [
        (
            k,
            None if amount is None else Decimal(amount),
            big,
            None if i is None else Decimal(i),
            None if flag is None else bool(flag),
            None if bit1 is None else bool(bit1),
        )
        for k, amount, big, i, flag, bit1 in rows
    ]
    assert env.rows("n", "k, amount, big, i, flag, bit1") == expected
    # exactness checked as text too (no float anywhere on the way)
    assert env.rows("n", "k, amount::text, big::text")[:2] == [
        ("n1", "9999999999999999.99", "9007199254740993"),
        ("n2", "-9999999999999999.99", "-9223372036854775808"),
    ]
    _resync_through_the_merge(env, cfg, "n", expected)


# ----------------------------------------------------------------------------------------------------------
# 3. dates and times
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def global_time_zone(mysql_server: str) -> Iterator[str]:
    """Set the MariaDB server's global time_zone to +08:00 for the test (restored afterwards)."""
    conn = mysql_connect(mysql_server)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@GLOBAL.time_zone")
        previous = cur.fetchone()[0]
        cur.execute("SET GLOBAL time_zone = '+08:00'")
        yield "+08:00"
    finally:
        conn.cursor().execute("SET GLOBAL time_zone = %s", (previous,))
        conn.close()


def test_dates_datetimes_timestamps_zero_dates_and_fractions(env, global_time_zone):
    env.mysql(
        "CREATE TABLE d (k varchar(8) PRIMARY KEY, d date, dt datetime, dt6 datetime(6), ts timestamp(6) NULL, "
        "ts0 timestamp NULL)",
        (
            "INSERT INTO d VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    "d1",
                    "2024-02-29",
                    "2024-03-10 02:30:00",
                    "2024-01-01 23:59:59.123456",
                    "2024-06-30 16:00:00.000001",
                    "2024-06-30 16:00:00",
                ),
                (
                    "d2",
                    "0000-00-00",
                    "0000-00-00 00:00:00",
                    "0000-00-00 00:00:00.000000",
                    "0000-00-00 00:00:00",
                    "0000-00-00 00:00:00",
                ),
                ("d3", "2020-00-15", "1970-01-01 00:00:00", "9999-12-31 23:59:59.999999", "1970-01-01 00:00:01", None),
                ("d4", None, None, "2000-01-01 00:00:00.5", None, "2038-01-19 03:14:07"),
            ],
        ),
        time_zone="+00:00",  # the TIMESTAMP literals above are UTC instants
    )
    # the server's global zone really is +08:00 for a session that does not set its own
    assert env.mysql("SELECT @@GLOBAL.time_zone")[0][0] == "+08:00"
    env.create_target(
        "d", "k text PRIMARY KEY, d date, dt timestamp, dt6 timestamp(6), ts timestamptz, ts0 timestamptz"
    )
    cfg = env.table_config("d", ["k", "d", "dt", "dt6", "ts", "ts0"])
    _ok(env.sync(cfg))
    expected = [
        (
            "d1",
            date(2024, 2, 29),
            datetime(2024, 3, 10, 2, 30),
            datetime(2024, 1, 1, 23, 59, 59, 123456),
            datetime(2024, 6, 30, 16, 0, 0, 1, tzinfo=UTC),
            datetime(2024, 6, 30, 16, 0, tzinfo=UTC),
        ),
        ("d2", None, None, None, None, None),
        (
            "d3",
            None,
            datetime(1970, 1, 1),
            datetime(9999, 12, 31, 23, 59, 59, 999999),
            datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
            None,
        ),
        ("d4", None, None, datetime(2000, 1, 1, 0, 0, 0, 500000), None, datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC)),
    ]
    # the warehouse session's own zone must not matter for timestamptz: compare instants
    assert env.rows("d", "k, d, dt, dt6, ts, ts0") == expected
    _resync_through_the_merge(env, cfg, "d", expected)


def test_timestamp_into_a_naive_timestamp_column_is_utc_wall_time(env, global_time_zone):
    env.mysql(
        "CREATE TABLE t (k varchar(8) PRIMARY KEY, ts timestamp NULL)",
        ("INSERT INTO t VALUES (%s, %s)", ("t1", "2024-06-30 08:00:00")),  # 08:00 at +08:00 = 00:00 UTC
        time_zone="+08:00",
    )
    env.create_target("t", "k text PRIMARY KEY, ts timestamp")
    _ok(env.sync(env.table_config("t", ["k", "ts"])))
    assert env.rows("t", "k, ts") == [("t1", datetime(2024, 6, 30, 0, 0))]


# ----------------------------------------------------------------------------------------------------------
# 4. binary
# ----------------------------------------------------------------------------------------------------------

TRICKY_BYTES = bytes([0x00, 0x09, 0x0A, 0x0D, 0x5C, 0x4E, 0x5C, 0x5C, 0x27, 0x22, 0x7F, 0x80, 0xFF, 0x00])


def test_binary_columns_arrive_byte_exact_in_bytea(env):
    rows = [
        ("b1", TRICKY_BYTES, TRICKY_BYTES * 1000, b"abc"),
        ("b2", b"", b"", b"\x00\x00\x00\x00"),
        ("b3", None, None, None),
        ("b4", b"\\N", b"\\x41", b"\xe4\xb8\xad"),  # text-looking bytes stay bytes
        ("b5", bytes(range(256)), bytes(range(256))[::-1], b"\x5c\x00\x5c\x00"),
    ]
    env.mysql(
        "CREATE TABLE bin (k varchar(8) PRIMARY KEY, vb varbinary(300), bl blob, fixed binary(4) NULL)",
        ("INSERT INTO bin VALUES (%s, %s, %s, %s)", rows),
    )
    env.create_target("bin", "k text PRIMARY KEY, vb bytea, bl bytea, fixed bytea")
    cfg = env.table_config("bin", ["k", "vb", "bl", "fixed"])
    _ok(env.sync(cfg))
    # BINARY(4) pads with 0x00, exactly as MySQL stores it
    expected = [(k, vb, bl, None if fixed is None else fixed.ljust(4, b"\x00")) for k, vb, bl, fixed in rows]
    got = [
        tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in r)
        for r in env.rows("bin", "k, vb, bl, fixed")
    ]
    assert got == expected
    env.pg(sql.SQL("UPDATE {}.bin SET _source = 'auto_derived'").format(sql.Identifier(env.schema)))
    merged = _ok(env.sync(cfg, force_full=True))
    assert merged.rows_updated == len(rows)
    got = [
        tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in r)
        for r in env.rows("bin", "k, vb, bl, fixed")
    ]
    assert got == expected
    assert _ok(env.sync(cfg, force_full=True)).rows_unchanged == len(rows)


# ----------------------------------------------------------------------------------------------------------
# 5. incremental watermark
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("column_type", ["datetime(6)", "timestamp(6)", "datetime"])
def test_watermark_is_mysqls_exact_max_and_an_equal_row_is_re_read(env, global_time_zone, column_type):
    fraction = column_type.endswith("(6)")
    t0 = datetime(2024, 5, 1, 10, 0, 0, 123456 if fraction else 0)
    env.mysql(
        f"CREATE TABLE w (k varchar(8) PRIMARY KEY, v varchar(20), updated_at {column_type} NOT NULL)",
        (
            "INSERT INTO w VALUES (%s, %s, %s)",
            [("w1", "one", t0 - timedelta(days=1)), ("w2", "two", t0), ("w3", "three", t0 - timedelta(microseconds=1))],
        ),
        time_zone="+00:00",
    )
    env.create_target("w", "k text PRIMARY KEY, v text")
    cfg = env.table_config("w", ["k", "v"], incremental={"updated_at_column": "updated_at", "lookback_seconds": 0})
    first = _ok(env.sync(cfg))
    mysql_max = env.mysql("SELECT max(updated_at) FROM w", time_zone="+00:00")[0][0]
    assert first.watermark_after == mysql_max == env.watermark("w")
    assert env.watermark("w") == t0
    # lookback 0: the row whose updated_at equals the watermark exactly is read again (>=), nothing older
    second = _ok(env.sync(cfg))
    assert (second.rows_read, second.rows_unchanged, second.watermark_before) == (1, 1, t0)
    # a row changed a microsecond (or a second) after the watermark arrives; the watermark moves exactly to it
    t1 = t0 + timedelta(microseconds=1 if fraction else 1_000_000)
    env.mysql(("UPDATE w SET v = 'uno', updated_at = %s WHERE k = 'w1'", (t1,)), time_zone="+00:00")
    third = _ok(env.sync(cfg))
    assert (third.rows_read, third.rows_updated, third.watermark_after) == (2, 1, t1)
    assert env.watermark("w") == t1 == env.mysql("SELECT max(updated_at) FROM w", time_zone="+00:00")[0][0]
    assert env.rows("w", "k, v") == [("w1", "uno"), ("w2", "two"), ("w3", "three")]


@pytest.mark.parametrize("bad", ["not a number", "9" * 140 + "x"], ids=["short", "cut-in-the-context"])
def test_a_rejected_value_is_named_with_its_key_after_rows_holding_line_breaks_quotes_and_commas(env, bad):
    # PostgreSQL's CSV line numbers do not count every quoted line break: the row is found by its value (which
    # COPY's error context cuts after 100 bytes).
    env.mysql(
        "CREATE TABLE bad (k varchar(8) PRIMARY KEY, v text, n varchar(200))",
        (
            "INSERT INTO bad VALUES (%s, %s, %s)",
            [("a", 'line1\nline2 "q", x\r\n', "1"), ("b", "\n\n\r", "2"), ("c", "ok", bad), ("d", "", "4")],
        ),
    )
    env.create_target("bad", "k text PRIMARY KEY, v text, n numeric")
    result = env.sync(env.table_config("bad", ["k", "v", "n"]))
    assert result.error is not None and "k='c'" in result.error and f"'{bad[:20]}" in result.error, result.error
    assert env.rows("bad") == []


@pytest.mark.parametrize("engine", ["InnoDB", "MyISAM"])
def test_a_zero_date_is_never_the_watermark_whatever_the_engine(env, engine):
    # '2024-06-00' sorts above every real May date: the index's MAX is that zero-day date, which is no instant.
    env.mysql(
        "CREATE TABLE zw (k varchar(8) PRIMARY KEY, v varchar(20), updated_at datetime NOT NULL, KEY (updated_at))"
        f" ENGINE={engine}",
        (
            "INSERT INTO zw VALUES (%s, %s, %s)",
            [("a", "1", "2024-05-01 10:00:00"), ("b", "2", "2024-05-31 23:00:00"), ("z", "0", "2024-06-00 00:00:00")],
        ),
    )
    env.create_target("zw", "k text PRIMARY KEY, v text")
    cfg = env.table_config("zw", ["k", "v"], incremental={"updated_at_column": "updated_at", "lookback_seconds": 0})
    first = _ok(env.sync(cfg))
    assert (first.rows_read, first.watermark_after) == (3, datetime(2024, 5, 31, 23, 0))
    assert env.watermark("zw") == datetime(2024, 5, 31, 23, 0)
    env.mysql("UPDATE zw SET v = 'uno', updated_at = '2024-07-01 08:00:00' WHERE k = 'a'")
    second = _ok(env.sync(cfg))
    # since 2024-05-31 23:00: 'b' (equal) and the changed 'a'; the zero-day row sorts above since, so it too
    assert (second.rows_read, second.rows_updated, second.watermark_after) == (3, 1, datetime(2024, 7, 1, 8, 0))


@pytest.fixture(params=["REPEATABLE-READ", "READ-COMMITTED"])
def server_isolation(request, mysql_server: str) -> Iterator[str]:
    """The MariaDB server's default isolation for new sessions (restored afterwards)."""
    conn = mysql_connect(mysql_server)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@GLOBAL.tx_isolation")
        previous = cur.fetchone()[0]
        cur.execute("SET GLOBAL tx_isolation = %s", (request.param,))
        yield request.param
    finally:
        conn.cursor().execute("SET GLOBAL tx_isolation = %s", (previous,))
        conn.close()


def test_a_row_written_after_the_watermark_was_read_waits_for_the_next_run(env, monkeypatch, server_isolation):
    """The watermark and the rows come from one InnoDB snapshot (whatever the server's default isolation):
    a commit in between is in neither."""
    env.mysql(
        "CREATE TABLE cw (k varchar(8) PRIMARY KEY, v varchar(20), updated_at datetime NOT NULL, KEY (updated_at))",
        ("INSERT INTO cw VALUES (%s, %s, %s)", [("a", "1", "2024-05-01 10:00:00"), ("b", "2", "2024-05-02 10:00:00")]),
    )
    env.create_target("cw", "k text PRIMARY KEY, v text")
    cfg = env.table_config("cw", ["k", "v"], incremental={"updated_at_column": "updated_at", "lookback_seconds": 0})
    read_watermark = MySqlSource._max_updated_at_in_snapshot
    writes = iter([("INSERT INTO cw VALUES ('c', '3', '2024-05-03 10:00:00')",)])

    def then_another_session_commits(self, conn, table_config, since):
        latest = read_watermark(self, conn, table_config, since)
        for statement in writes:  # the first run only
            env.mysql(*statement)
        return latest

    monkeypatch.setattr(MySqlSource, "_max_updated_at_in_snapshot", then_another_session_commits)
    first = _ok(env.sync(cfg))
    assert (first.rows_read, first.watermark_after) == (2, datetime(2024, 5, 2, 10, 0))
    assert env.rows("cw", "k") == [("a",), ("b",)]
    second = _ok(env.sync(cfg))  # since = the watermark: 'b' again and the new 'c'
    assert (second.rows_read, second.rows_inserted, second.watermark_after) == (2, 1, datetime(2024, 5, 3, 10, 0))
    assert env.rows("cw", "k") == [("a",), ("b",), ("c",)]


def test_lookback_re_reads_the_window_with_fractional_watermark(env):
    t0 = datetime(2024, 5, 1, 10, 0, 0, 500000)
    env.mysql(
        "CREATE TABLE lw (k varchar(8) PRIMARY KEY, v varchar(20), updated_at datetime(6) NOT NULL)",
        (
            "INSERT INTO lw VALUES (%s, %s, %s)",
            [
                ("a", "1", t0 - timedelta(seconds=5)),
                ("b", "2", t0 - timedelta(seconds=5, microseconds=1)),
                ("c", "3", t0),
            ],
        ),
    )
    env.create_target("lw", "k text PRIMARY KEY, v text")
    cfg = env.table_config("lw", ["k", "v"], incremental={"updated_at_column": "updated_at", "lookback_seconds": 5})
    _ok(env.sync(cfg))
    again = _ok(env.sync(cfg))
    # since = t0 - 5 s exactly: 'a' (== since) and 'c' are re-read, 'b' (1 µs older) is not
    assert again.rows_read == 2


# ----------------------------------------------------------------------------------------------------------
# 6. YAML NaN
# ----------------------------------------------------------------------------------------------------------


def test_yaml_nan_in_numeric_columns_is_null_never_the_text_nan(env, tmp_path):
    (tmp_path / "rates.yml").write_text(
        'schema_version: "1.0"\n'
        "data:\n"
        "  - { code: R1, rate: .nan, amount: 12.5, label: .NaN }\n"
        "  - { code: R2, rate: 0.1, amount: .NAN, label: ok }\n"
        "  - { code: R3, rate: 1.25, amount: 100, label: '  x  ' }\n",
        encoding="utf-8",
    )
    env.create_target("rates", "code text PRIMARY KEY, rate double precision, amount numeric(10,2), label text")
    cfg = ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "rates",
                    "target_schema": env.schema,
                    "target_table": "rates",
                    "primary_key": "code",
                    "source_type": "config_file",
                    "sync_mode": "delete_insert",
                    "source_config": {"file_path": str(tmp_path / "rates.yml"), "schema_version": "1.0"},
                }
            ]
        }
    ).tables[0]
    for force_full in (False, True):  # empty target (COPY) and filled target (stage + merge)
        _ok(ReferenceSyncService().sync_table(cfg, YamlFileSource(), env.pg_dsn, force_full=force_full))
        assert env.rows("rates", "code, rate, amount, label") == [
            ("R1", None, Decimal("12.50"), None),
            ("R2", 0.1, None, "ok"),
            ("R3", 1.25, Decimal("100.00"), "x"),
        ]
        assert env.pg(
            sql.SQL("SELECT count(*) FROM {}.rates WHERE rate = 'NaN' OR amount = 'NaN' OR label ILIKE 'nan'").format(
                sql.Identifier(env.schema)
            )
        ) == [(0,)]
