"""warehouse.merge.upsert_changed against the real PostgreSQL: the pre-filter, its counts and the key check.

Both merge paths run every case: the ``FULL JOIN`` of the whole target (full re-sync) and the primary-key
probes in key order (a stage much smaller than the target).  The pre-filter must let through a change in
every column type, NULL ↔ value both ways, and the promotion of an auto-derived row whose values did not
change; unchanged rows must not be written at all (their ``xmin`` stays).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from airflow_provider_refdata.warehouse import merge
from airflow_provider_refdata.warehouse.catalog import TableInfo, table_info
from airflow_provider_refdata.warehouse.sqlbits import ident_list, table_ref
from airflow_provider_refdata.warehouse.staging import copy_rows, create_stage
from airflow_provider_refdata.warehouse.tracking import ensure_tracking_columns

TABLE = "年金计划"
STAGE = "_test_merge_stage"
KEY = ["计划号"]
# (column, type, a value, another value): every row of the target starts with the first values.
COLUMNS = [
    ("名称", "varchar(50)", "甲计划", "乙计划"),
    ("备注", "text", "备注一", "备注二"),
    ("规模", "numeric(18,2)", Decimal("1.25"), Decimal("1.26")),
    ("成立日期", "date", date(2001, 5, 1), date(2001, 5, 2)),
    ("更新时间", "timestamptz", datetime(2024, 1, 1, 8, tzinfo=UTC), datetime(2024, 1, 1, 9, tzinfo=UTC)),
    ("有效", "boolean", True, False),
    ("人数", "integer", 10, 11),
    ("属性", "jsonb", Jsonb({"a": 1}), Jsonb({"a": 2})),
    ("原文", "json", Json({"a": 1}), Json({"a": 1, "b": 2})),
    ("附件", "bytea", b"\x00\x01", b"\x00\x02"),
    ("标签", "text[]", ["x", "y"], ["x", "z"]),
]
NAMES = [KEY[0]] + [c for c, *_ in COLUMNS]


def _setup(conn: psycopg.Connection, schema: str, rows: list[tuple], *, auto_derived: set[str] = frozenset()) -> None:
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t, *_ in COLUMNS)
    conn.execute(
        sql.SQL("CREATE TABLE {} ({} varchar(16) PRIMARY KEY, {})").format(
            table_ref(schema, TABLE), sql.Identifier(KEY[0]), columns
        )
    )
    ensure_tracking_columns(conn, schema, TABLE)
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table_ref(schema, TABLE), ident_list(NAMES))) as copy,
    ):
        for row in rows:
            copy.write_row(row)
    if auto_derived:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET _source = 'auto_derived', _needs_review = true, _derived_at = now() WHERE {} = ANY(%s)"
            ).format(table_ref(schema, TABLE), sql.Identifier(KEY[0])),
            (sorted(auto_derived),),
        )
    conn.commit()


def _stage(conn: psycopg.Connection, schema: str, rows: list[tuple]) -> TableInfo:
    info = table_info(conn, schema, TABLE)
    create_stage(conn, STAGE, NAMES, merge.stage_types(info, NAMES))
    copy_rows(conn, STAGE, NAMES, rows)
    return info


def _state(conn: psycopg.Connection, schema: str) -> dict[str, tuple]:
    query = sql.SQL("SELECT {}, _source, _needs_review, xmin::text FROM {} ORDER BY 1").format(
        sql.SQL(", ").join(
            sql.SQL("{}::text").format(sql.Identifier(c)) if c == "原文" else sql.Identifier(c) for c in NAMES
        ),
        table_ref(schema, TABLE),
    )
    return {row[0]: row[1:] for row in conn.execute(query).fetchall()}


@pytest.fixture
def db(pg_conn, pg_schema):
    """The connection and schema; the connection's transaction ends before the schema is dropped."""
    yield pg_conn, pg_schema
    pg_conn.rollback()


def _row(key: str, values: list) -> tuple:
    return (key, *values)


def _expected(row: tuple) -> tuple:
    """A staged row as :func:`_state` reads it back (jsonb as a dict, json as its text)."""
    return tuple(
        json.dumps(v.obj) if isinstance(v, Json) and not isinstance(v, Jsonb) else v.obj if isinstance(v, Jsonb) else v
        for v in row[1:]
    )


FIRST = [c[2] for c in COLUMNS]


def _variant(index: int, value: object) -> list:
    values = list(FIRST)
    values[index] = value
    return values


@pytest.mark.parametrize("probe_by_key", [False, True], ids=["full join", "key probes"])
def test_every_column_type_change_and_null_either_way_reaches_the_merge_unchanged_rows_stay_unwritten(db, probe_by_key):
    pg_conn, pg_schema = db
    n = len(COLUMNS)
    # target: per column i a row "C{i}" (to get the other value), "N{i}" (to become NULL), "V{i}" (NULL → value),
    # plus unchanged rows and one auto-derived row with exactly the staged values.
    target = [_row(f"C{i:02}", FIRST) for i in range(n)]
    target += [_row(f"N{i:02}", FIRST) for i in range(n)]
    target += [_row(f"V{i:02}", _variant(i, None)) for i in range(n)]
    target += [_row(f"U{i:02}", FIRST) for i in range(5)] + [_row("AUTO", FIRST)]
    _setup(pg_conn, pg_schema, target, auto_derived={"AUTO"})
    before = _state(pg_conn, pg_schema)
    staged = [_row(f"C{i:02}", _variant(i, COLUMNS[i][3])) for i in range(n)]
    staged += [_row(f"N{i:02}", _variant(i, None)) for i in range(n)]
    staged += [_row(f"V{i:02}", FIRST) for i in range(n)]
    staged += [_row(f"U{i:02}", FIRST) for i in range(5)] + [_row("AUTO", FIRST), _row("NEW", FIRST)]
    with pg_conn.transaction():
        info = _stage(pg_conn, pg_schema, staged)
        counts = merge.upsert_changed(pg_conn, info, STAGE, NAMES, KEY, probe_by_key=probe_by_key)
    assert (counts.inserted, counts.updated, counts.promoted) == (1, 3 * n + 1, 1)
    if probe_by_key:
        assert counts.keys_unique(len(staged)) is None  # the probe path leaves the key check to the caller
    else:
        assert (counts.target_rows, counts.absent) == (len(target), 0)
        assert counts.keys_unique(len(staged)) is True
    after = _state(pg_conn, pg_schema)
    for row in staged:
        values = _expected(row)
        assert after[row[0]][: len(values)] == values, row[0]
        assert after[row[0]][len(values) : len(values) + 2] == ("authoritative", False), row[0]
    # unchanged rows were not rewritten; every other row was
    for key in [f"U{i:02}" for i in range(5)]:
        assert after[key][-1] == before[key][-1], key
    for key in [r[0] for r in staged if not r[0].startswith(("U", "NEW"))]:
        assert after[key][-1] != before[key][-1], key


@pytest.mark.parametrize(
    "duplicates",
    [
        pytest.param([_row("U00", FIRST), _row("U00", FIRST)], id="both copies equal the target"),
        pytest.param([_row("U00", FIRST), _row("U00", _variant(0, "改"))], id="one copy changed"),
        pytest.param([_row("U00", _variant(0, "改")), _row("U00", FIRST)], id="changed copy first"),
    ],
)
def test_a_key_staged_twice_is_told_by_the_full_join_counts(db, duplicates):
    pg_conn, pg_schema = db
    _setup(pg_conn, pg_schema, [_row(f"U{i:02}", FIRST) for i in range(4)] + [_row("GONE", FIRST)])
    staged = [_row(f"U{i:02}", FIRST) for i in range(1, 4)] + duplicates + [_row("NEW", FIRST)]
    with pg_conn.transaction(force_rollback=True):
        info = _stage(pg_conn, pg_schema, staged)
        counts = merge.upsert_changed(pg_conn, info, STAGE, NAMES, KEY)
        assert (counts.target_rows, counts.absent, counts.inserted) == (5, 1, 1)
        assert counts.keys_unique(len(staged)) is False
        assert merge.find_duplicate_keys(pg_conn, STAGE, KEY) == [(("U00",), 2)]
    # without the duplicate the same counts say the keys are distinct
    with pg_conn.transaction(force_rollback=True):
        info = _stage(pg_conn, pg_schema, staged[:-3] + staged[-2:])
        counts = merge.upsert_changed(pg_conn, info, STAGE, NAMES, KEY)
        assert counts.keys_unique(len(staged) - 1) is True


def test_a_new_key_staged_twice_fails_the_statement(db):
    pg_conn, pg_schema = db
    _setup(pg_conn, pg_schema, [_row("U00", FIRST)])
    with pytest.raises(psycopg.errors.CardinalityViolation), pg_conn.transaction():
        info = _stage(pg_conn, pg_schema, [_row("NEW", FIRST), _row("NEW", _variant(0, "改"))])
        merge.upsert_changed(pg_conn, info, STAGE, NAMES, KEY)
    assert set(_state(pg_conn, pg_schema)) == {"U00"}


def test_key_probes_look_up_each_staged_row_in_key_order(db):
    pg_conn, pg_schema = db
    _setup(pg_conn, pg_schema, [_row(f"U{i:03}", FIRST) for i in range(200)])
    pg_conn.execute(sql.SQL("ANALYZE {}").format(table_ref(pg_schema, TABLE)))
    with pg_conn.transaction(force_rollback=True):
        info = _stage(pg_conn, pg_schema, [_row("U150", _variant(0, "改")), _row("U020", _variant(0, "改"))])
        captured = []

        class Capture:
            def execute(self, query, params=None):
                captured.append(query.as_string(pg_conn))
                return pg_conn.execute(query, params)

        counts = merge.upsert_changed(Capture(), info, STAGE, NAMES, KEY, probe_by_key=True)
        assert (counts.inserted, counts.updated) == (0, 2)
        plan = "\n".join(r[0] for r in pg_conn.execute("EXPLAIN " + captured[0]).fetchall())
        cand = plan.split("CTE m")[0]
        # one lookup per staged row (a nested loop, never a hash of the target), the stage sorted by key first
        assert "Nested Loop Left Join" in cand and "Hash" not in cand
        assert f'Sort Key: {STAGE}."计划号"' in cand
