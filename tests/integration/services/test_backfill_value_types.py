"""Backfill values of the wrong type for their column, on the real PostgreSQL (issue 10, item 13).

A fact value that PostgreSQL cannot convert to the target column's type ("2024-13-45" for a ``date``, "abc"
for an ``integer``, bad JSON for a ``jsonb``…) must not fail the whole FK: like an over-long value it
becomes NULL (nullable column) or leaves its row out (NOT NULL column, counted in ``rejected``), the table is
reported naming the FK, table, column, key and value, and every valid key of the FK is still inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import ForeignKeyConfig, GenericBackfillService, HybridReferenceService
from airflow_provider_refdata.results import BackfillTableResult

DOMAIN = "value_types"
TABLE = "类型表"
TRACKING = """,
    _source varchar(20) NOT NULL DEFAULT 'authoritative',
    _needs_review boolean NOT NULL DEFAULT false,
    _derived_from_domain varchar(64),
    _derived_at timestamptz"""


@dataclass(frozen=True)
class Case:
    """A target type, valid fact values with how they read back (``::text``), and invalid fact values."""

    pg_type: str
    valid: tuple[tuple[object, str], ...]
    invalid: tuple[object, ...]

    @property
    def id(self) -> str:
        return self.pg_type.split("(")[0]


CASES = [
    Case("date", (("2024-06-30", "2024-06-30"), ("20240101", "2024-01-01")), ("2024-13-45", "n/a")),
    Case(
        "timestamp",
        (("2024-06-30 08:30:00", "2024-06-30 08:30:00"), ("2024-01-01T00:00:01", "2024-01-01 00:00:01")),
        ("2024-02-30 10:00", "soon"),
    ),
    Case("integer", (("42", "42"), (7.0, "7")), ("abc", "99999999999999999999", float("1e400"), "1e400", 1.5)),
    Case("bigint", (("9223372036854775807", "9223372036854775807"), ("-1", "-1")), ("9223372036854775808", "x1")),
    Case("numeric(18,2)", (("1234.5", "1234.50"), ("-0.01", "-0.01")), ("abc", "12345678901234567")),
    Case("boolean", (("true", "true"), ("N", "false")), ("maybe",)),
    Case("jsonb", (('{"a": 1}', '{"a": 1}'), ("[1, 2]", "[1, 2]")), ('{"a":', "{bad}")),
    Case(
        "uuid",
        (("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),),
        ("not-a-uuid", "a0eebc99-9c0b-4ef8-bb6d"),
    ),
]


def _create_table(conn: psycopg.Connection, schema: str, pg_type: str, *, not_null: bool = False) -> None:
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (代码 varchar(32) PRIMARY KEY, 成立日期 {} {}, 名称 varchar(50){})").format(
                sql.Identifier(schema),
                sql.Identifier(TABLE),
                sql.SQL(pg_type),
                sql.SQL("NOT NULL" if not_null else ""),
                sql.SQL(TRACKING),
            )
        )


def _fk(schema: str, mode: str = "insert_missing") -> ForeignKeyConfig:
    return ForeignKeyConfig(
        name="fk_types",
        source_column="代码",
        target_schema=schema,
        target_table=TABLE,
        target_key="代码",
        mode=mode,
        backfill_columns=[{"source": "成立日期", "target": "成立日期"}, {"source": "名称", "target": "名称"}],
    )


def _facts(case: Case) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Facts with the valid values first (keys V0, V1, …), then the invalid ones (keys B0, B1, …); each key
    has two fact rows (the second one's value is blank, so ``first`` takes the first)."""
    valid_keys = [f"V{i}" for i in range(len(case.valid))]
    bad_keys = [f"B{i}" for i in range(len(case.invalid))]
    values = [v for v, _ in case.valid] + list(case.invalid)
    keys = valid_keys + bad_keys
    return (
        pd.DataFrame(
            {
                "代码": keys + keys,
                "成立日期": pd.Series(values + [None] * len(values), dtype=object),
                "名称": [f"名称{k}" for k in keys] * 2,
            }
        ),
        valid_keys,
        bad_keys,
    )


def _stored(conn: psycopg.Connection, schema: str) -> list[tuple]:
    with conn.transaction():
        return conn.execute(
            sql.SQL("SELECT 代码, 成立日期::text, 名称, _source, _needs_review FROM {}.{} ORDER BY 1").format(
                sql.Identifier(schema), sql.Identifier(TABLE)
            )
        ).fetchall()


def _assert_named(message: str, schema: str, column: str, key: str, value: object, outcome: str) -> None:
    assert "'fk_types'" in message and f"{schema}.{TABLE}" in message, message
    assert f"column {column!r}" in message and f"key {key!r}" in message, message
    assert repr(str(value)) in message and outcome in message, message


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_wrong_type_into_a_nullable_column_is_stored_as_null_and_named(pg_conn, pg_schema, case):
    _create_table(pg_conn, pg_schema, case.pg_type)
    facts, valid_keys, bad_keys = _facts(case)

    result = HybridReferenceService().ensure_references(DOMAIN, facts, [_fk(pg_schema)], pg_conn)

    (table,) = result.backfill_result.tables
    assert (table.candidates, table.inserted, table.rejected, table.skipped) == (len(facts) // 2, len(facts) // 2, 0, 0)
    assert result.degraded_mode and result.backfill_count == len(facts) // 2
    (metrics,) = result.coverage_metrics
    for message in (table.error, metrics.error, result.degradation_reason):
        _assert_named(message, pg_schema, "成立日期", bad_keys[0], case.invalid[0], "stored as NULL")
        assert f"{len(case.invalid)} value(s)" in message and case.pg_type.split("(")[0] in message
    expected = [
        (k, text, f"名称{k}", "auto_derived", True) for k, (_, text) in zip(valid_keys, case.valid, strict=True)
    ]
    expected += [(k, None, f"名称{k}", "auto_derived", True) for k in bad_keys]  # the key and its name still go in
    assert _stored(pg_conn, pg_schema) == sorted(expected)
    assert pg_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    again = HybridReferenceService().ensure_references(DOMAIN, facts, [_fk(pg_schema)], pg_conn)

    assert again.backfill_count == 0 and not again.degraded_mode, again.degradation_reason
    assert _stored(pg_conn, pg_schema) == sorted(expected)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_wrong_type_into_a_not_null_column_leaves_the_row_out(pg_conn, pg_schema, case):
    _create_table(pg_conn, pg_schema, case.pg_type, not_null=True)
    facts, valid_keys, bad_keys = _facts(case)

    (table,) = GenericBackfillService(DOMAIN).run(facts, [_fk(pg_schema)], pg_conn).tables

    assert (table.inserted, table.rejected, table.skipped) == (len(valid_keys), len(bad_keys), 0)
    _assert_named(table.error, pg_schema, "成立日期", bad_keys[0], case.invalid[0], "NOT NULL")
    assert [row[:2] for row in _stored(pg_conn, pg_schema)] == [
        (k, text) for k, (_, text) in zip(valid_keys, case.valid, strict=True)
    ]

    (again,) = GenericBackfillService(DOMAIN).run(facts, [_fk(pg_schema)], pg_conn).tables

    assert (again.inserted, again.rejected, again.skipped) == (0, len(bad_keys), len(valid_keys))
    assert again.error == table.error
    assert len(_stored(pg_conn, pg_schema)) == len(valid_keys)


@pytest.mark.parametrize("not_null", [False, True], ids=["nullable", "not_null"])
def test_plan_only_reports_what_a_real_run_does(pg_conn, pg_schema, not_null):
    _create_table(pg_conn, pg_schema, "date", not_null=not_null)
    facts = pd.DataFrame({"代码": ["K1", "K2", "K3"], "成立日期": ["2024-06-30", "2024-13-45", "n/a"], "名称": "x"})

    plan = HybridReferenceService().ensure_references(DOMAIN, facts, [_fk(pg_schema)], pg_conn, plan_only=True)
    assert _stored(pg_conn, pg_schema) == []  # nothing written
    real = HybridReferenceService().ensure_references(DOMAIN, facts, [_fk(pg_schema)], pg_conn)

    ((planned,), (done,)) = (plan.backfill_result.tables, real.backfill_result.tables)
    counts = (1, 2, 0) if not_null else (3, 0, 0)
    assert (
        (planned.inserted, planned.rejected, planned.skipped) == (done.inserted, done.rejected, done.skipped) == counts
    )
    assert planned.error == done.error and plan.degraded_mode and real.degraded_mode
    assert "'K2'" in done.error and "'2024-13-45'" in done.error and "2 value(s)" in done.error


def test_coverage_only_is_not_affected_by_wrong_typed_values(pg_conn, pg_schema):
    _create_table(pg_conn, pg_schema, "integer")
    facts = pd.DataFrame({"代码": ["K1", "K2"], "成立日期": ["abc", "1"], "名称": "x"})

    result = HybridReferenceService().ensure_references(DOMAIN, facts, [_fk(pg_schema)], pg_conn, coverage_only=True)

    assert not result.degraded_mode, result.degradation_reason
    assert (result.coverage_metrics[0].missing_values, result.coverage_metrics[0].error) == (2, None)
    assert _stored(pg_conn, pg_schema) == []


def test_pandas_typed_float_into_an_integer_column(pg_conn, pg_schema):
    _create_table(pg_conn, pg_schema, "integer")
    facts = pd.DataFrame(
        {
            "代码": ["K1", "K2", "K3", "K4", "K5"],
            "成立日期": [1.0, 2.0, 1.5, float("nan"), float("inf")],  # float64, as pandas reads a numeric column
            "名称": "x",
        }
    )
    assert facts["成立日期"].dtype == "float64"

    (table,) = GenericBackfillService(DOMAIN).run(facts, [_fk(pg_schema)], pg_conn).tables

    assert (table.inserted, table.rejected) == (5, 0)
    _assert_named(table.error, pg_schema, "成立日期", "K3", "1.5", "stored as NULL")
    assert "2 value(s)" in table.error and "integer" in table.error
    assert [row[:2] for row in _stored(pg_conn, pg_schema)] == [
        ("K1", "1"),
        ("K2", "2"),
        ("K3", None),  # 1.5 is no integer: NULL, named
        ("K4", None),  # NaN is blank: NULL, not an error
        ("K5", None),  # inf: NULL, named
    ]


def test_only_the_failing_column_is_touched_and_other_fks_proceed(pg_conn, pg_schema):
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL(
                "CREATE TABLE {}.{} (代码 varchar(32) PRIMARY KEY, 成立日期 date, 人数 integer NOT NULL, "
                "金额 numeric(18,2), 名称 varchar(50))"
            ).format(sql.Identifier(pg_schema), sql.Identifier(TABLE))
        )
        pg_conn.execute(
            sql.SQL("CREATE TABLE {}.{} (编号 integer PRIMARY KEY, 起始 date)").format(
                sql.Identifier(pg_schema), sql.Identifier("其他")
            )
        )
    fk = ForeignKeyConfig(
        name="fk_types",
        source_column="代码",
        target_schema=pg_schema,
        target_table=TABLE,
        target_key="代码",
        backfill_columns=[{"source": c, "target": c} for c in ("成立日期", "人数", "金额", "名称")],
    )
    other = ForeignKeyConfig(
        name="fk_other",
        source_column="编号",
        target_schema=pg_schema,
        target_table="其他",
        target_key="编号",
        backfill_columns=[{"source": "成立日期", "target": "起始"}],
    )
    facts = pd.DataFrame(
        {
            "代码": ["K1", "K2", "K3", "K4"],
            "编号": [1, 2, 3, 4],
            "成立日期": ["2024-06-30", "2024-13-45", "2024-07-01", "2024-07-02"],
            "人数": ["10", "20", "many", "40"],
            "金额": ["1.5", "2.5", "3.5", "4.5"],
            "名称": ["一", "二", "三", "四"],
        }
    )

    result = GenericBackfillService(DOMAIN).run(facts, [fk, other], pg_conn)

    by_fk: dict[str, BackfillTableResult] = {t.fk_name: t for t in result.tables}
    table = by_fk["fk_types"]
    assert (table.inserted, table.rejected) == (3, 1)
    _assert_named(table.error, pg_schema, "成立日期", "K2", "2024-13-45", "stored as NULL")
    _assert_named(table.error, pg_schema, "人数", "K3", "many", "NOT NULL")
    assert "金额" not in table.error
    with pg_conn.transaction():
        assert pg_conn.execute(
            sql.SQL("SELECT 代码, 成立日期::text, 人数, 金额::text, 名称 FROM {}.{} ORDER BY 1").format(
                sql.Identifier(pg_schema), sql.Identifier(TABLE)
            )
        ).fetchall() == [
            ("K1", "2024-06-30", 10, "1.50", "一"),
            ("K2", None, 20, "2.50", "二"),
            ("K4", "2024-07-02", 40, "4.50", "四"),
        ]
    # The other FK reads the same bad date into its own date column: its bad value is its own, named there.
    assert by_fk["fk_other"].inserted == 4 and "'起始'" in by_fk["fk_other"].error


def test_fill_null_only_rejects_wrong_typed_values_and_fills_the_rest(pg_conn, pg_schema):
    _create_table(pg_conn, pg_schema, "numeric(18,2)")
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("INSERT INTO {}.{} (代码, 成立日期, 名称) VALUES ('E1', NULL, NULL), ('E2', 5, NULL)").format(
                sql.Identifier(pg_schema), sql.Identifier(TABLE)
            )
        )
    facts = pd.DataFrame(
        {
            "代码": ["E1", "E2", "E3", "N1", "N2"],
            "成立日期": ["abc", "1.25", "7", "1e400", "8"],
            "名称": ["一", "二", "三", "四", "五"],
        }
    )

    service, fks = GenericBackfillService(DOMAIN), [_fk(pg_schema, "fill_null_only")]
    (plan,) = service.run(facts, fks, pg_conn, plan_only=True).tables
    (table,) = service.run(facts, fks, pg_conn).tables

    # E3 is absent from the table (as are N1, N2): inserted.  E1's "abc" is NULL, its name is filled anyway.
    assert (plan.inserted, plan.updated, plan.rejected) == (table.inserted, table.updated, table.rejected) == (3, 2, 0)
    assert plan.error == table.error
    _assert_named(table.error, pg_schema, "成立日期", "E1", "abc", "stored as NULL")
    assert "2 value(s)" in table.error and "'1e400'" not in table.error  # one example, the first
    assert [row[:3] for row in _stored(pg_conn, pg_schema)] == [
        ("E1", None, "一"),
        ("E2", "5.00", "二"),  # not NULL: kept, its name filled
        ("E3", "7.00", "三"),
        ("N1", None, "四"),  # 1e400 overflows numeric(18,2)
        ("N2", "8.00", "五"),
    ]

    (again,) = service.run(facts, fks, pg_conn).tables
    assert (again.inserted, again.updated, again.rejected) == (0, 0, 0)


def test_domain_checks_and_array_elements_count_as_the_type(pg_conn, pg_schema):
    schema = sql.Identifier(pg_schema)
    with pg_conn.transaction():
        pg_conn.execute(sql.SQL("CREATE DOMAIN {}.正整数 AS integer CHECK (VALUE > 0)").format(schema))
        pg_conn.execute(
            sql.SQL("CREATE TABLE {}.{} (代码 varchar(32) PRIMARY KEY, 人数 {}.正整数, 标签 integer[])").format(
                schema, sql.Identifier(TABLE), schema
            )
        )
    fk = ForeignKeyConfig(
        name="fk_types",
        source_column="代码",
        target_schema=pg_schema,
        target_table=TABLE,
        target_key="代码",
        backfill_columns=[{"source": c, "target": c} for c in ("人数", "标签")],
    )
    facts = pd.DataFrame({"代码": ["K1", "K2", "K3"], "人数": ["5", "-1", "7"], "标签": ["{1,2}", "{3}", "{a}"]})

    (table,) = GenericBackfillService(DOMAIN).run(facts, [fk], pg_conn).tables

    assert (table.inserted, table.rejected) == (3, 0)
    _assert_named(table.error, pg_schema, "人数", "K2", "-1", "stored as NULL")
    _assert_named(table.error, pg_schema, "标签", "K3", "{a}", "stored as NULL")
    assert "violates check constraint" in table.error
    with pg_conn.transaction():
        assert pg_conn.execute(
            sql.SQL("SELECT 代码, 人数, 标签 FROM {}.{} ORDER BY 1").format(schema, sql.Identifier(TABLE))
        ).fetchall() == [("K1", 5, [1, 2]), ("K2", None, [3]), ("K3", 7, None)]
        # The diagnostic helper is gone again: nothing is left in the caller's session.
        assert pg_conn.execute("SELECT to_regprocedure('pg_temp.refdata_input_error(text, text)')").fetchone() == (
            None,
        )
