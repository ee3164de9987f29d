"""MySQL types: what arrives — every row of that table in docs/configuration.md, proved on the real servers.

Each case is one MySQL column (``CREATE TABLE … (k varchar(8) PRIMARY KEY, v <type>)``, rows inserted in a
MariaDB session with ``time_zone`` +08:00 while the server's global ``time_zone`` is +08:00 too) mapped to
one or more PostgreSQL columns of the types a user would choose for it, synced by ``ReferenceSyncService`` into
a warehouse session with ``TimeZone`` Asia/Shanghai, through both paths:

* ``empty``: COPY straight into an empty target;
* ``filled``: the target already holds an unrelated row, so the rows go through the stage and the merge;

then synced again, which must rewrite nothing (every row's ``xmin`` unchanged, ``rows_updated == 0``).

Beside the table: keys trimmed alike in every character set (latin1, utf8mb3, utf8mb4, gbk), generated
columns, reserved-word and mixed-case column names, spatial columns (WKT/WKB, refused otherwise before
anything is read, never retried), a zero date into a ``NOT NULL`` column (the error says so), and the
transient/permanent classification of MySQL error codes.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig, SyncTableConfig
from airflow_provider_refdata.exceptions import RefdataSourceError
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.services.sources import MySqlSource, SourceUnavailableError
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.integration.services.test_sync_types import Env, global_time_zone  # noqa: F401 - a fixture

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def fidelity(pg_server, mysql_server, pg_schema, mysql_db, global_time_zone) -> Env:  # noqa: F811
    """An Env whose warehouse sessions (the sync's and the checks') run with TimeZone Asia/Shanghai."""
    separator = "&" if "?" in pg_server else "?"
    return Env(f"{pg_server}{separator}options=-c%20TimeZone%3DAsia%2FShanghai", mysql_server, pg_schema, mysql_db)


@dataclass(frozen=True)
class Raw:
    """A value written as MySQL SQL (``b'101'``, ``-0e0``, ``ST_GeomFromText(…)``), not bound as a parameter."""

    sql: str


@dataclass(frozen=True)
class Target:
    """One PostgreSQL column for the case's MySQL column: its type, what arrives, and how it is read back.

    :param read: SQL reading the column (``{}`` is the quoted column), e.g. ``{}::text`` to compare exact text.
    """

    pg_type: str
    expected: list[Any]
    read: str = "{}"


@dataclass(frozen=True)
class Case:
    """One MySQL column type, the values written into it, and the PostgreSQL columns it is synced into."""

    mysql_type: str
    values: list[Any]
    targets: list[Target]
    setup_pg: list[str] = field(default_factory=list)  # run first in the schema (``{schema}`` replaced)


def f32(value: float) -> float:
    """The float32 nearest ``value``, as the double it exactly is."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


FLOATS = [
    16777216.0,
    30.123456,
    0.1,
    3.4028234663852886e38,  # max
    -3.4028234663852886e38,
    1.1754943508222875e-38,  # smallest normal
    1.1754942106924411e-38,  # largest denormal
    1.401298464324817e-45,  # smallest denormal
    -1.401298464324817e-45,
    16777217.0,  # not a float32: 16777216
    1.0e-10,
]
DOUBLES = [
    0.1,
    1 / 3,
    0.1 + 0.2,
    1.7976931348623157e308,  # max
    -1.7976931348623157e308,
    2.2250738585072014e-308,  # smallest normal
    2.225073858507201e-308,  # largest denormal
    5e-324,  # smallest denormal
    -5e-324,
    9007199254740993.0,  # 2**53 + 1 is no double: 2**53
    1e16,
    123456789.12345679,
]

BYTES = bytes([0x00, 0x09, 0x0A, 0x0D, 0x5C, 0x4E, 0x5C, 0x5C, 0x27, 0x22, 0x7F, 0x80, 0xFF, 0x00])
TEXTS = ["a\tb", "a\nb", "a\rb\r\nc", "a\\b\\\\c\\", "\\N", "\\t is no tab", "😀👍🏽🀄 𠀀", "  padded  ", "", None]
JSON_TEXT = '{"b": 1, "a": [1, 2.50], "s": "😀\\t\\\\ \\n", "n": null}'


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


CASES: dict[str, Case] = {
    # --- integers and booleans ---------------------------------------------------------------------------
    "tinyint(1)-bool": Case(
        "tinyint(1)",
        [0, 1, None],
        [Target("boolean", [False, True, None]), Target("smallint", [0, 1, None])],
    ),
    "BOOL-full-range": Case(
        "BOOL",  # = tinyint(1): holds -128..127, so only smallint takes every value (boolean refuses 2)
        [-128, 127, 2],
        [Target("smallint", [-128, 127, 2]), Target("integer", [-128, 127, 2])],
    ),
    "bigint-unsigned": Case(
        "bigint unsigned",
        [18446744073709551615, 9223372036854775808, 0, None],
        [
            Target("numeric(20,0)", [18446744073709551615, 9223372036854775808, 0, None]),
            Target("numeric", ["18446744073709551615", "9223372036854775808", "0", None], "{}::text"),
            Target("text", ["18446744073709551615", "9223372036854775808", "0", None]),
        ],
    ),
    "decimal(65,30)": Case(
        "decimal(65,30)",
        [
            "99999999999999999999999999999999999.999999999999999999999999999999",
            "-99999999999999999999999999999999999.999999999999999999999999999999",
            "0.000000000000000000000000000001",
            "1.5",
            None,
        ],
        [
            Target(
                "numeric(65,30)",
                [
                    "99999999999999999999999999999999999.999999999999999999999999999999",
                    "-99999999999999999999999999999999999.999999999999999999999999999999",
                    "0.000000000000000000000000000001",
                    "1.500000000000000000000000000000",
                    None,
                ],
                "{}::text",
            ),
            Target(
                "text",
                [
                    "99999999999999999999999999999999999.999999999999999999999999999999",
                    "-99999999999999999999999999999999999.999999999999999999999999999999",
                    "0.000000000000000000000000000001",
                    "1.500000000000000000000000000000",
                    None,
                ],
            ),
        ],
    ),
    # --- floating point: the exact binary value ----------------------------------------------------------
    "float": Case(
        "float",
        [*FLOATS, Raw("-0e0"), None],
        [
            # read as float8: the float32 itself, widened exactly
            Target("real", [f32(v) for v in FLOATS] + [0.0, None], "{}::float8"),
            Target("double precision", [f32(v) for v in FLOATS] + [0.0, None]),
        ],
    ),
    "double": Case(
        "double",
        [*DOUBLES, Raw("-0e0"), None],
        [
            Target("double precision", [*DOUBLES, 0.0, None]),
            # the shortest decimal that reads back as the double
            Target("numeric", [Decimal(repr(v)) for v in DOUBLES] + [Decimal(0), None]),
        ],
    ),
    # --- BIT: its number ---------------------------------------------------------------------------------
    "bit(1)": Case(
        "bit(1)",
        [Raw("b'0'"), Raw("b'1'"), None],
        [Target("boolean", [False, True, None]), Target("smallint", [0, 1, None]), Target("bit(1)", ["0", "1", None])],
    ),
    "bit(8)": Case(
        "bit(8)",
        [Raw("b'00000000'"), Raw("b'11111111'"), Raw("b'101'"), None],
        [
            Target("smallint", [0, 255, 5, None]),
            Target("bit(8)", ["00000000", "11111111", "00000101", None]),
            Target("bit varying(8)", ["00000000", "11111111", "00000101", None]),  # n bits, as bit(n)
        ],
    ),
    "bit(64)": Case(
        "bit(64)",
        [Raw("0xFFFFFFFFFFFFFFFF"), Raw("0x8000000000000000"), Raw("b'0'"), None],
        [
            Target("numeric(20,0)", [18446744073709551615, 9223372036854775808, 0, None]),
            Target("bit(64)", ["1" * 64, "1" + "0" * 63, "0" * 64, None]),
        ],
    ),
    # --- dates and times ---------------------------------------------------------------------------------
    "year": Case(
        "year",
        [1901, 2155, 2024, Raw("0"), None],
        [Target("smallint", [1901, 2155, 2024, 0, None]), Target("text", ["1901", "2155", "2024", "0000", None])],
    ),
    "time": Case(
        "time",
        ["-838:59:59", "838:59:59", "-00:00:01", "25:30:00", "00:00:00", None],
        [
            Target(
                "interval",
                [
                    -timedelta(hours=838, minutes=59, seconds=59),
                    timedelta(hours=838, minutes=59, seconds=59),
                    -timedelta(seconds=1),
                    timedelta(hours=25, minutes=30),
                    timedelta(0),
                    None,
                ],
            ),
            Target("text", ["-838:59:59", "838:59:59", "-00:00:01", "25:30:00", "00:00:00", None]),
        ],
    ),
    "time(6)": Case(
        "time(6)",
        ["12:34:56.123456", "-01:02:03.000001", "837:00:00.5", None],
        [
            Target(
                "interval(6)",
                [
                    timedelta(hours=12, minutes=34, seconds=56, microseconds=123456),
                    -timedelta(hours=1, minutes=2, seconds=3, microseconds=1),
                    timedelta(hours=837, microseconds=500000),
                    None,
                ],
            ),
            Target("text", ["12:34:56.123456", "-01:02:03.000001", "837:00:00.500000", None]),
        ],
    ),
    "time(6)-of-day": Case(
        "time(6)",  # only values within a day: PostgreSQL time is never negative and stops at 24:00
        ["00:00:00", "23:59:59.999999", "12:00:00.5", None],
        [Target("time(6)", [clock(0), clock(23, 59, 59, 999999), clock(12, 0, 0, 500000), None])],
    ),
    "date": Case(
        "date",
        ["2024-02-29", "1000-01-01", "9999-12-31", "0000-00-00", "2020-00-15", "2020-05-00", "0000-01-01", None],
        [
            Target("date", [date(2024, 2, 29), date(1000, 1, 1), date(9999, 12, 31), None, None, None, None, None]),
            Target("text", ["2024-02-29", "1000-01-01", "9999-12-31", None, None, None, None, None]),
        ],
    ),
    "datetime": Case(
        "datetime",
        ["2024-03-10 02:30:00", "1970-01-01 00:00:00", "9999-12-31 23:59:59", "0000-00-00 00:00:00", None]
        + ["2020-00-00 10:00:00", "2020-01-00 10:00:00"],
        [
            Target(
                "timestamp",
                [datetime(2024, 3, 10, 2, 30), datetime(1970, 1, 1), datetime(9999, 12, 31, 23, 59, 59)]
                + [None, None, None, None],
            ),
            # naive text: a timestamptz target reads it in the warehouse session's TimeZone (Asia/Shanghai)
            Target(
                "timestamptz",
                [_sh(2024, 3, 10, 2, 30), _sh(1970, 1, 1), _sh(9999, 12, 31, 23, 59, 59), None, None, None, None],
            ),
            Target("text", ["2024-03-10 02:30:00", "1970-01-01 00:00:00", "9999-12-31 23:59:59"] + [None] * 4),
        ],
    ),
    "datetime(6)": Case(
        "datetime(6)",
        ["2024-01-01 23:59:59.123456", "9999-12-31 23:59:59.999999", "2000-01-01 00:00:00.000001"]
        + ["2000-01-01 00:00:00.5", "0000-00-00 00:00:00.000000", None],
        [
            Target(
                "timestamp(6)",
                [
                    datetime(2024, 1, 1, 23, 59, 59, 123456),
                    datetime(9999, 12, 31, 23, 59, 59, 999999),
                    datetime(2000, 1, 1, 0, 0, 0, 1),
                    datetime(2000, 1, 1, 0, 0, 0, 500000),
                    None,
                    None,
                ],
            ),
            Target(
                "text",
                ["2024-01-01 23:59:59.123456", "9999-12-31 23:59:59.999999", "2000-01-01 00:00:00.000001"]
                + ["2000-01-01 00:00:00.500000", None, None],
            ),
        ],
    ),
    "datetime(6)-rounded": Case(
        "datetime(6)",  # a target with fewer fractional digits rounds (PostgreSQL's rule), never truncates
        ["2000-01-01 00:00:00.5", "2024-01-01 23:59:59.4", "2024-01-01 23:59:59.999"],
        [
            Target(
                "timestamp(0)",
                [datetime(2000, 1, 1, 0, 0, 1), datetime(2024, 1, 1, 23, 59, 59), datetime(2024, 1, 2)],
            ),
            Target(
                "timestamp(2)",
                [datetime(2000, 1, 1, 0, 0, 0, 500000), datetime(2024, 1, 1, 23, 59, 59, 400000), datetime(2024, 1, 2)],
            ),
        ],
    ),
    "timestamp(6)": Case(
        "timestamp(6) NULL",  # written at +08:00; read by the sync in UTC whatever the server's zone
        ["2024-06-30 08:00:00.000001", "1970-01-01 08:00:01", "2038-01-19 11:14:07.999999", "0000-00-00", None],
        [
            Target(
                "timestamptz(6)",
                [_utc(2024, 6, 30, 0, 0, 0, 1), _utc(1970, 1, 1, 0, 0, 1), _utc(2038, 1, 19, 3, 14, 7, 999999)]
                + [None, None],
            ),
            # a naive target gets the UTC wall time
            Target(
                "timestamp(6)",
                [
                    datetime(2024, 6, 30, 0, 0, 0, 1),
                    datetime(1970, 1, 1, 0, 0, 1),
                    datetime(2038, 1, 19, 3, 14, 7, 999999),
                    None,
                    None,
                ],
            ),
            Target(
                "text",
                ["2024-06-30 00:00:00.000001+00", "1970-01-01 00:00:01.000000+00", "2038-01-19 03:14:07.999999+00"]
                + [None, None],
            ),
        ],
    ),
    # --- strings -----------------------------------------------------------------------------------------
    "enum": Case(
        "enum('a','b c','中文','')",
        ["a", "b c", "中文", "", None],
        [Target("text", ["a", "b c", "中文", "", None]), Target("varchar(4)", ["a", "b c", "中文", "", None])],
    ),
    "enum-pg-enum": Case(
        "enum('a','b c','中文')",
        ["a", "b c", "中文", None],
        [Target("{schema}.mood", ["a", "b c", "中文", None], "{}::text")],
        setup_pg=["CREATE TYPE {schema}.mood AS ENUM ('a', 'b c', '中文')"],
    ),
    "set": Case(
        "set('a','b','c d')",
        ["a,c d", "", "c d,a,b", None],
        [
            Target("text", ["a,c d", "", "a,b,c d", None]),
            Target("text[]", [["a", "c d"], [], ["a", "b", "c d"], None]),
            Target("varchar(3)[]", [["a", "c d"], [], ["a", "b", "c d"], None]),
        ],
    ),
    "json-jsonb": Case(
        "json",
        [JSON_TEXT, "[]", '"str"', "null", "  {}  ", None],
        [
            Target(
                "jsonb",
                ['{"a": [1, 2.50], "b": 1, "n": null, "s": "😀\\t\\\\ \\n"}', "[]", '"str"', "null", "{}", None],
                "{}::text",
            ),
            Target("text", [JSON_TEXT, "[]", '"str"', "null", "{}", None]),
        ],
    ),
    "json-json": Case(
        "json",
        [JSON_TEXT, "[]", "null", None],
        [Target("json", [JSON_TEXT, "[]", "null", None], "{}::text")],
    ),
    "text": Case(
        "text",
        TEXTS,
        [
            # non-key string columns lose their edge spaces (MySQL TRIM), nothing else
            Target("text", [None if t is None else t.strip(" ") for t in TEXTS]),
            Target("varchar(20)", [None if t is None else t.strip(" ") for t in TEXTS]),
        ],
    ),
    "char(5)": Case(
        "char(5)",
        ["ab", "  ab", "ab  ", "", None],
        [
            Target("varchar(5)", ["ab", "ab", "ab", "", None]),
            Target("char(5)", ["ab   ", "ab   ", "ab   ", "     ", None]),
            Target("text", ["ab", "ab", "ab", "", None]),
        ],
    ),
    "latin1": Case(
        "varchar(20) CHARACTER SET latin1",
        ["café", "ÿ½§", "\u00a0nbsp\u00a0", "a\tb", None],
        [Target("text", ["café", "ÿ½§", "\u00a0nbsp\u00a0", "a\tb", None])],
    ),
    "utf8mb3": Case(
        "varchar(20) CHARACTER SET utf8mb3",
        ["中文", "é\u3000x", "\u00a0", None],
        [Target("text", ["中文", "é\u3000x", "\u00a0", None])],
    ),
    "gbk": Case(
        "varchar(20) CHARACTER SET gbk",
        ["中文", "耀", "\u3000全角\u3000", "é", None],
        [Target("text", ["中文", "耀", "\u3000全角\u3000", "é", None])],
    ),
    # --- binary ------------------------------------------------------------------------------------------
    "varbinary": Case(
        "varbinary(300)",
        [BYTES, b"", b"\\N", bytes(range(256)), None],
        [Target("bytea", [BYTES, b"", b"\\N", bytes(range(256)), None])],
    ),
    "blob": Case(
        "longblob", [BYTES * 5000, b"\xe4\xb8\xad", None], [Target("bytea", [BYTES * 5000, b"\xe4\xb8\xad", None])]
    ),
    "binary(4)": Case(
        "binary(4)",
        [b"ab", b"", b"\x00\x00\x00\x01", None],
        [Target("bytea", [b"ab\x00\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", None])],
    ),
}


# ----------------------------------------------------------------------------------------------------------
# the runner: both paths, then a re-run that rewrites nothing
# ----------------------------------------------------------------------------------------------------------

PATHS = ("empty", "filled")


def _config(env: Env, table: str, mapping: list[tuple[str, str]], key: str | list[str] = "k") -> SyncTableConfig:
    return ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": table,
                    "target_schema": env.schema,
                    "target_table": table,
                    "primary_key": key,
                    "source_type": "legacy_mysql",
                    "source_config": {
                        "table": table,
                        "database": env.database,
                        "columns": [{"source": s, "target": t} for s, t in mapping],
                    },
                }
            ]
        }
    ).tables[0]


def _ok(result: SyncResult) -> SyncResult:
    assert result.error is None and result.skipped_reason is None, result.error or result.skipped_reason
    return result


def _comparable(value: Any) -> Any:
    """Floats by their bits (``-0.0`` ≠ ``0.0``), bytea as bytes."""
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def _select(env: Env, table: str, reads: list[sql.Composable], key: str = "k") -> list[tuple]:
    return env.pg(
        sql.SQL("SELECT {}, {} FROM {}.{} WHERE {} <> 'zz' ORDER BY 1").format(
            sql.Identifier(key),
            sql.SQL(", ").join(reads),
            sql.Identifier(env.schema),
            sql.Identifier(table),
            sql.Identifier(key),
        )
    )


def _xmins(env: Env, table: str) -> list[tuple]:
    return env.pg(
        sql.SQL("SELECT t::text, xmin::text FROM {}.{} AS t ORDER BY 1").format(
            sql.Identifier(env.schema), sql.Identifier(table)
        )
    )


def _sync_both_paths(env: Env, cfg: SyncTableConfig, path: str, rows: int, key: str = "k") -> None:
    """Sync once: into the empty target (``empty``: COPY straight in) or, ``filled``, into a target holding an
    unrelated row ``zz`` (so the rows go through the stage and the merge); every source row is inserted."""
    table = cfg.target_table
    if path == "filled":
        env.pg(
            sql.SQL("INSERT INTO {}.{} ({}) VALUES ('zz')").format(
                sql.Identifier(env.schema), sql.Identifier(table), sql.Identifier(key)
            )
        )
    first = _ok(env.sync(cfg))
    assert (first.rows_read, first.rows_inserted, first.rows_updated) == (rows, rows, 0)


def _resync_rewrites_nothing(env: Env, cfg: SyncTableConfig, rows: int) -> None:
    """A re-run (upsert) rewrites nothing; so does a ``delete_insert`` run, which only removes what the source
    lacks (the unrelated ``zz`` row of the ``filled`` path)."""
    before = _xmins(env, cfg.target_table)
    again = _ok(env.sync(cfg))
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, rows)
    assert _xmins(env, cfg.target_table) == before
    keys = [
        row[0]
        for row in env.pg(
            sql.SQL("SELECT {}::text FROM {}.{}").format(
                sql.Identifier(cfg.primary_key[0]), sql.Identifier(env.schema), sql.Identifier(cfg.target_table)
            )
        )
    ]
    replace = _ok(env.sync(cfg.model_copy(update={"sync_mode": "delete_insert"})))
    removed = 1 if "zz" in keys else 0
    assert (replace.rows_inserted, replace.rows_updated, replace.rows_deleted) == (0, 0, removed)
    after = _xmins(env, cfg.target_table)
    assert len(after) == len(before) - removed and set(after) <= set(before)


def _case_params() -> list[Any]:
    return [pytest.param(name, path, id=f"{name}-{path}") for name in CASES for path in PATHS]


@pytest.mark.parametrize(("name", "path"), _case_params())
def test_mysql_type_arrives_as_documented(fidelity: Env, name: str, path: str) -> None:
    case = CASES[name]
    env = fidelity
    schema = sql.Identifier(env.schema).as_string()
    inserts: list[Any] = [f"CREATE TABLE c (k varchar(8) PRIMARY KEY, v {case.mysql_type})"]
    for i, value in enumerate(case.values):
        if isinstance(value, Raw):
            inserts.append((f"INSERT INTO c VALUES (%s, {value.sql})", (f"r{i:02d}",)))
        else:
            inserts.append(("INSERT INTO c VALUES (%s, %s)", (f"r{i:02d}", value)))
    env.mysql(*inserts, time_zone="+08:00")
    for statement in case.setup_pg:
        env.pg(statement.format(schema=schema))
    targets = [f"v{i}" for i in range(len(case.targets))]
    env.create_target(
        "c",
        "k varchar(8) PRIMARY KEY, "
        + ", ".join(f"{c} {t.pg_type.format(schema=schema)}" for c, t in zip(targets, case.targets, strict=True)),
    )
    cfg = _config(env, "c", [("k", "k")] + [("v", c) for c in targets])
    _sync_both_paths(env, cfg, path, len(case.values))

    reads = [sql.SQL(t.read).format(sql.Identifier(c)) for c, t in zip(targets, case.targets, strict=True)]
    got = _select(env, "c", reads)
    assert [row[0] for row in got] == [f"r{i:02d}" for i in range(len(case.values))]
    for i, target in enumerate(case.targets):
        arrived = [_comparable(row[1 + i]) for row in got]
        assert arrived == [_comparable(v) for v in target.expected], f"{name} → {target.pg_type}"
    _resync_rewrites_nothing(env, cfg, len(case.values))


# A value the chosen target type cannot hold fails the table (naming the column), and nothing changes.
REFUSED = {
    "tinyint(1)-2-into-boolean": ("tinyint(1)", 2, "boolean"),
    "bigint-unsigned-max-into-bigint": ("bigint unsigned", 18446744073709551615, "bigint"),
    "double-max-into-real": ("double", 1.7976931348623157e308, "real"),
    "time-past-24h-into-time": ("time", "25:30:00", "time"),
    "negative-time-into-time": ("time", "-00:00:01", "time"),
    "decimal-into-smaller-numeric": ("decimal(65,30)", "12345.5", "numeric(6,2)"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(REFUSED))
def test_a_value_the_target_type_cannot_hold_fails_the_table_naming_the_column(
    fidelity: Env, name: str, path: str
) -> None:
    env = fidelity
    mysql_type, value, pg_type = REFUSED[name]
    env.mysql(
        f"CREATE TABLE r (k varchar(8) PRIMARY KEY, v {mysql_type})",
        ("INSERT INTO r VALUES (%s, %s)", [("r1", None), ("r2", value)]),
    )
    env.create_target("r", f"k varchar(8) PRIMARY KEY, v {pg_type}")
    if path == "filled":
        env.pg(sql.SQL("INSERT INTO {}.r (k) VALUES ('zz')").format(sql.Identifier(env.schema)))
    before = env.rows("r", "k, xmin::text")
    result = env.sync(_config(env, "r", [("k", "k"), ("v", "v")]))
    assert result.error is not None and f"{env.schema}.r" in result.error
    assert "'v'" in result.error and "k='r2'" in result.error
    assert env.rows("r", "k, xmin::text") == before


# ----------------------------------------------------------------------------------------------------------
# keys are trimmed alike in every character set
# ----------------------------------------------------------------------------------------------------------

# The white space each character set can hold: latin1 has no U+3000, gbk no NBSP.
_ASCII_SPACES = {"tab": "\t", "newline": "\n", "cr": "\r", "space": " "}
KEY_SPACES = {
    "latin1": {"nbsp": "\u00a0", **_ASCII_SPACES},
    "utf8mb3": {"nbsp": "\u00a0", "ideographic": "\u3000", **_ASCII_SPACES},
    "utf8mb4": {"nbsp": "\u00a0", "ideographic": "\u3000", **_ASCII_SPACES},
    "gbk": {"ideographic": "\u3000", **_ASCII_SPACES},
}


def _spaced_keys(spaces: dict[str, str]) -> list[tuple[str, str]]:
    keys = []
    for label, space in spaces.items():
        keys += [
            (f"{space}L-{label}", f"leading {label}"),
            (f"T-{label}{space}", f"trailing {label}"),
            (f"{space}{space} B-{label} {space}", f"both {label}"),
            (f"I{space}-{label}", f"inner {label} (kept)"),
        ]
    mixed = "".join(spaces.values())
    return [*keys, (f"{mixed}M{mixed}", "every space at both ends"), ("plain", "no space")]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("charset", list(KEY_SPACES))
def test_keys_are_trimmed_the_same_in_every_character_set(fidelity: Env, charset: str, path: str) -> None:
    env = fidelity
    keys = _spaced_keys(KEY_SPACES[charset])
    env.mysql(
        f"CREATE TABLE ks (k varchar(24) CHARACTER SET {charset} PRIMARY KEY, v varchar(40)) CHARACTER SET utf8mb4",
        ("INSERT INTO ks VALUES (%s, %s)", keys),
        time_zone="+08:00",
    )
    # the keys really are stored in that character set (a latin1 NBSP is the single byte 0xA0)
    stored = dict(env.mysql("SELECT v, HEX(k) FROM ks"))
    if charset == "latin1":
        assert stored["leading nbsp"].startswith("A0")
    if charset == "gbk":
        assert stored["leading ideographic"].startswith("A1A1")
    env.create_target("ks", "k varchar(24) PRIMARY KEY, v text")
    cfg = _config(env, "ks", [("k", "k"), ("v", "v")])
    _sync_both_paths(env, cfg, path, len(keys))
    assert _select(env, "ks", [sql.Identifier("v")]) == sorted((k.strip(), v) for k, v in keys)
    _resync_rewrites_nothing(env, cfg, len(keys))


# ----------------------------------------------------------------------------------------------------------
# generated columns, reserved-word and mixed-case names
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_generated_columns_arrive_as_their_values(fidelity: Env, path: str) -> None:
    env = fidelity
    env.mysql(
        "CREATE TABLE gen (k varchar(8) PRIMARY KEY, a int, doubled int AS (a * 2) VIRTUAL, "
        "label varchar(20) AS (CONCAT('x-', a)) PERSISTENT, upper_k varchar(8) AS (UPPER(k)) STORED UNIQUE)",
        ("INSERT INTO gen (k, a) VALUES (%s, %s)", [("g1", 1), ("g2", None), ("g3", -21)]),
    )
    env.create_target("gen", "k varchar(8) PRIMARY KEY, a integer, doubled integer, label text, upper_k text")
    cfg = _config(env, "gen", [(c, c) for c in ("k", "a", "doubled", "label", "upper_k")])
    _sync_both_paths(env, cfg, path, 3)
    assert _select(env, "gen", [sql.SQL("a, doubled, label, upper_k")]) == [
        ("g1", 1, 2, "x-1", "G1"),
        ("g2", None, None, None, "G2"),
        ("g3", -21, -42, "x--21", "G3"),
    ]
    _resync_rewrites_nothing(env, cfg, 3)


RESERVED = ["Key", "select", "MixedCase", "group by", "a`b", 'quote"d', "中文 列"]


@pytest.mark.parametrize("path", PATHS)
def test_reserved_word_and_mixed_case_column_names(fidelity: Env, path: str) -> None:
    env = fidelity
    columns = ", ".join(f"`{c.replace('`', '``')}` varchar(10)" for c in RESERVED[1:])
    env.mysql(
        f"CREATE TABLE `Order` (`Key` varchar(8) PRIMARY KEY, {columns})",
        (
            "INSERT INTO `Order` VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [("o1", "s", "M", "g", "ab", "q", "中"), ("o2", None, "", " x ", None, "\\", "文")],
        ),
    )
    env.pg(
        sql.SQL("CREATE TABLE {}.{} ({} varchar(8) PRIMARY KEY, {})").format(
            sql.Identifier(env.schema),
            sql.Identifier("Order"),
            sql.Identifier("Key"),
            sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in RESERVED[1:]),
        )
    )
    cfg = _config(env, "Order", [(c, c) for c in RESERVED], key="Key")
    _sync_both_paths(env, cfg, path, 2, key="Key")
    assert _select(env, "Order", [sql.Identifier(c) for c in RESERVED[1:]], key="Key") == [
        ("o1", "s", "M", "g", "ab", "q", "中"),
        ("o2", None, "", "x", None, "\\", "文"),
    ]
    _resync_rewrites_nothing(env, cfg, 2)


# ----------------------------------------------------------------------------------------------------------
# spatial columns: WKT into text, WKB into bytea, refused otherwise — before anything is read, never retried
# ----------------------------------------------------------------------------------------------------------

POINT_WKB = bytes.fromhex("0101000000000000000000F83F00000000000000C0")  # POINT(1.5 -2), little-endian


@pytest.mark.parametrize("path", PATHS)
def test_spatial_columns_arrive_as_wkt_text_or_wkb_bytea(fidelity: Env, path: str) -> None:
    env = fidelity
    env.mysql(
        "CREATE TABLE geo (k varchar(8) PRIMARY KEY, p point, g geometry)",
        "INSERT INTO geo VALUES ('p1', POINT(1.5, -2), ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 0))')), "
        "('p2', POINT(0.1, 123456789.12345679), ST_GeomFromText('LINESTRING(1 1,2 2)')), ('p3', NULL, NULL), "
        "('p4', POINT(0, 0), ST_GeomFromText('POINT(121.47 31.23)', 4326))",  # the SRID is not carried
    )
    env.create_target("geo", "k varchar(8) PRIMARY KEY, p_wkt text, p_wkb bytea, g_wkt varchar(60)")
    cfg = _config(env, "geo", [("k", "k"), ("p", "p_wkt"), ("p", "p_wkb"), ("g", "g_wkt")])
    _sync_both_paths(env, cfg, path, 4)
    got = [tuple(_comparable(v) for v in row) for row in _select(env, "geo", [sql.SQL("p_wkt, p_wkb, g_wkt")])]
    p2_wkb = env.mysql("SELECT ST_AsBinary(p) FROM geo WHERE k = 'p2'")[0][0]
    assert got == [
        ("p1", "POINT(1.5 -2)", POINT_WKB, "POLYGON((0 0,10 0,10 10,0 0))"),
        ("p2", "POINT(0.1 123456789.12345679)", bytes(p2_wkb), "LINESTRING(1 1,2 2)"),
        ("p3", None, None, None),
        ("p4", "POINT(0 0)", bytes.fromhex("010100000000000000000000000000000000000000"), "POINT(121.47 31.23)"),
    ]
    _resync_rewrites_nothing(env, cfg, 4)


@pytest.mark.parametrize("target_type", ["integer", "jsonb", "text[]"])
def test_spatial_column_into_another_type_is_refused_naming_it_and_never_retried(
    fidelity: Env, target_type: str
) -> None:
    env = fidelity
    env.mysql("CREATE TABLE geo (k varchar(8) PRIMARY KEY, p point)", "INSERT INTO geo VALUES ('p1', POINT(1, 2))")
    env.create_target("geo", f"k varchar(8) PRIMARY KEY, p {target_type}")
    cfg = _config(env, "geo", [("k", "k"), ("p", "p")])
    sleeps: list[float] = []
    service = ReferenceSyncService(retries=3, sleep=sleeps.append)
    started = time.perf_counter()
    result = service.sync_table(cfg, MySqlSource.from_dsn(env.mysql_dsn), env.pg_dsn)
    assert time.perf_counter() - started < 5
    assert result.error is not None and (result.attempts, sleeps) == (1, [])
    assert "column 'p'" in result.error and "point" in result.error and target_type in result.error
    assert "WKT" in result.error and "WKB" in result.error
    assert env.rows("geo", "k") == []


def test_a_type_the_sync_cannot_carry_is_refused_before_the_query(fidelity: Env) -> None:
    cfg = _config(fidelity, "vec", [("k", "k"), ("v", "v")])
    with pytest.raises(RefdataSourceError, match=r"column 'v' .*MySQL type 'vector'.*leave the column out"):
        MySqlSource().build_query(cfg, {"k": "varchar", "v": "vector"}, None)


# ----------------------------------------------------------------------------------------------------------
# a zero date into a NOT NULL column says so
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("column_type", ["datetime", "date"])
def test_zero_date_into_not_null_column_names_table_column_key_and_zero_date(
    fidelity: Env, path: str, column_type: str
) -> None:
    env = fidelity
    env.mysql(
        f"CREATE TABLE zd (k varchar(8) PRIMARY KEY, d {column_type} NOT NULL)",
        (
            "INSERT INTO zd VALUES (%s, %s)",
            [("z1", "2024-01-02"), ("z2", "0000-00-00"), ("z3", "2024-00-10"), ("z4", "2024-03-04")],
        ),
    )
    pg_type = "timestamp" if column_type == "datetime" else "date"
    env.create_target("zd", f"k varchar(8) PRIMARY KEY, d {pg_type} NOT NULL")
    if path == "filled":
        env.pg(sql.SQL("INSERT INTO {}.zd VALUES ('zz', '2000-01-01')").format(sql.Identifier(env.schema)))
    before = env.rows("zd", "k, xmin::text")
    result = env.sync(_config(env, "zd", [("k", "k"), ("d", "d")]))
    assert result.error is not None
    assert f"{env.schema}.zd" in result.error and "column 'd'" in result.error
    assert "2 source row(s)" in result.error and "k='z2'" in result.error and "k='z3'" in result.error
    assert "MySQL zero date 0000-00-00" in result.error and "became NULL" in result.error
    assert "_refdata_sync_stage" not in result.error
    assert env.rows("zd", "k, xmin::text") == before


# ----------------------------------------------------------------------------------------------------------
# which MySQL errors are retried
# ----------------------------------------------------------------------------------------------------------

TRANSIENT = [2002, 2003, 2006, 2013, 2055, 1040, 1053, 1205, 1213, 1159, 1161, 1927, 1969, 3024]
# data and type errors among them: incorrect value, truncated, illegal type for an operation, invalid JSON,
# out of range, too long, NULL into NOT NULL; and credentials, unknown table/column, syntax, privileges
PERMANENT = [1366, 1292, 4079, 3140, 1690, 1264, 1406, 1048, 1045, 1044, 1146, 1054, 1064, 1142, 1227, 1105]


@pytest.mark.parametrize("code", TRANSIENT + PERMANENT)
def test_only_connection_timeout_lock_and_server_gone_errors_are_retried(code: int) -> None:
    import MySQLdb

    error = MySqlSource(password="s3cret")._error(MySQLdb.OperationalError(code, "boom s3cret"), "db", "t")
    assert isinstance(error, SourceUnavailableError) is (code in TRANSIENT)
    assert isinstance(error, RefdataSourceError) and f"({code})" in str(error) and "s3cret" not in str(error)


def test_a_real_permanent_server_error_is_not_retried(fidelity: Env) -> None:
    env = fidelity
    # A view whose value MariaDB cannot compute: every read fails with 1690 (BIGINT UNSIGNED out of range),
    # which no retry fixes.
    env.mysql(
        "CREATE TABLE base (k varchar(8) PRIMARY KEY, u bigint unsigned)",
        "INSERT INTO base VALUES ('a', 1), ('b', 0)",
        "CREATE VIEW perm AS SELECT k, u - 1 AS v FROM base",
    )
    env.create_target("perm", "k varchar(8) PRIMARY KEY, v numeric")
    sleeps: list[float] = []
    service = ReferenceSyncService(retries=3, sleep=sleeps.append)
    result = service.sync_table(
        _config(env, "perm", [("k", "k"), ("v", "v")]), MySqlSource.from_dsn(env.mysql_dsn), env.pg_dsn
    )
    assert result.error is not None and "(1690)" in result.error
    assert (result.attempts, sleeps) == (1, [])
    assert env.rows("perm", "k") == []
