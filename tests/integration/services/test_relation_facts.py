"""In-warehouse ensure_references (WarehouseRelation) against the real PostgreSQL, beside the DataFrame path.

The equivalence tests load the same facts into a warehouse table and read them as the DataFrame the
DataFrame path gets from ``SELECT *`` (psycopg → pandas, so each PostgreSQL type arrives as pandas sees it),
run ``ensure_references`` both ways on two fresh, identical copies of the reference tables, and compare
everything: the rows written (all columns but the timestamp), coverage metrics, backfill counts, ratios,
warnings, degradation reasons and the placeholder provenance.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService, WarehouseRelation
from airflow_provider_refdata.config import ForeignKeyConfig
from tests.integration.refdata_business_tables import insert_key_aliases

DOMAIN = "relation_test"
FACTS = "事实"
TRACKING = (
    "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
    "_derived_from_domain varchar(64), _derived_at timestamptz"
)
REF_COLUMNS = "代码 varchar(32) PRIMARY KEY, 名称 varchar(200), 值 varchar(200), 数量 integer, 标签 varchar(12)"
FACT_COLUMNS = {
    "键": "text",
    "整数键": "integer",
    "浮点键": "double precision",
    "数值键": "numeric",
    "名称": "text",
    "权重": "double precision",
    "文本权重": "text",
    "标签": "varchar(40)",
    "日期": "date",
    "月份": "text",
    "金额": "numeric",
    "序号": "integer",
}
NBSP, IDEOGRAPHIC = "\xa0", "\u3000"

# 20 fact rows: blanks of every kind, trimming that merges keys, numeric codes, ties and unparsable values.
ROWS = [
    # 键, 整数键, 浮点键, 数值键, 名称, 权重, 文本权重, 标签, 日期, 月份, 金额, 序号
    ("A", 1, 1001.0, Decimal("1.50"), "甲", 5.0, "1,200", "x", "2024-06-30", "202406", Decimal("1234.5"), 9),
    (" A ", 2, 1002.5, Decimal("2"), "  乙 ", 7.0, "abc", "y", "2024-05-31", "2024-05", Decimal("10"), 3),
    ("B", 1, 1001.0, Decimal("1.5"), None, None, " 3,000.5 ", "x", None, "not a month", None, 1),
    ("B", None, None, None, "丙", 7.0, "2e3", "z", "2023-01-01", "202301", Decimal("0.5"), 12),
    ("", 3, math.nan, Decimal("NaN"), "丁", 1.0, "", "", "2024-01-15", "202401", Decimal("1"), 2),
    ("  ", 4, 3.0, Decimal("3.0"), "戊", 2.0, None, "  ", "2024-02-29", "202402", Decimal("2"), 4),
    (IDEOGRAPHIC, 5, 4.0, Decimal("4"), "己", 3.0, "7", IDEOGRAPHIC, "2024-03-01", "202403", Decimal("3"), 5),
    (NBSP + "C" + NBSP, 6, 5.0, Decimal("5.25"), "庚", 4.0, "8", "w", "2024-04-01", "202404", Decimal("4"), 6),
    ("(空白)", 7, 6.0, Decimal("6"), "辛", 5.0, "9", "v", "2024-05-01", "202405", Decimal("5"), 7),
    ("C", 8, 7.0, Decimal("7"), "壬", math.nan, "10", "u", "2024-06-01", "202406", Decimal("6"), 8),
    (None, 9, 8.0, Decimal("8"), "癸", 6.0, "11", "t", "2024-07-01", "202407", Decimal("7"), 10),
    ("D", 10, 9.0, Decimal("9"), "子", 6.0, "12", "s", "2024-08-01", "202408", Decimal("8"), 11),
    ("D", 10, 9.0, Decimal("9"), "丑", 6.0, "12", "s", "2024-08-01", "202408", Decimal("8"), 0),
    ("E", 11, 1e20, Decimal("1E+3"), "寅", -1.0, "-5", "r", "2024-09-01", "202409", Decimal("-9"), 13),
    ("F", 12, -0.0, Decimal("0.000"), "卯", 0.0, "0", "q", "2024-10-01", "202410", Decimal("1e6"), 14),
    ("existing", 100, 100.0, Decimal("100"), "已有", 1.0, "1", "p", "2024-11-01", "202411", Decimal("1"), 15),
    ("G", 13, 2.0**53 + 2, Decimal("13"), "辰", 1.0, "1", "o" * 20, "2024-12-01", "202412", Decimal("1"), 16),
    ("H", 14, 0.1, Decimal("0.1"), "巳", 1.0, "1", "n", "2024-12-01", "202412", Decimal("1"), 17),
    ("B", 1, 1001.0, Decimal("1.50"), "午", 9.0, "9", "m", "2025-01-01", "202501", Decimal("2"), 18),
    ("A", 2, 1002.5, Decimal("2.0"), "未", 5.0, "1200", "x", "2025-02-01", "202502", Decimal("3"), 19),
]
EXISTING = {"existing", "100", "1"}  # keys the reference tables hold before the run (one authoritative row each)


@dataclass
class World:
    """Two copies of the reference tables (``frame`` and ``relation`` schemas) and the facts table."""

    dsn: str
    frame: str
    relation: str
    tables: list[str]

    def configs(self, schema: str, make: Callable[[str], list[ForeignKeyConfig]]) -> list[ForeignKeyConfig]:
        return make(schema)


def _create_reference(conn: psycopg.Connection, schema: str, table: str, existing: set[str]) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {}.{} (" + REF_COLUMNS + ", " + TRACKING + ")").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
    )
    for key in sorted(existing):
        conn.execute(
            sql.SQL("INSERT INTO {}.{} (代码, 名称) VALUES (%s, '权威')").format(
                sql.Identifier(schema), sql.Identifier(table)
            ),
            (key,),
        )


def _create_facts(conn: psycopg.Connection, schema: str, rows: list[tuple] = ROWS) -> None:
    columns = list(FACT_COLUMNS)
    conn.execute(
        sql.SQL("CREATE TABLE {}.{} ({})").format(
            sql.Identifier(schema),
            sql.Identifier(FACTS),
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in FACT_COLUMNS.items()),
        )
    )
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
                sql.Identifier(schema),
                sql.Identifier(FACTS),
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                sql.SQL(", ").join(sql.Placeholder() for _ in columns),
            ),
            rows,
        )


@pytest.fixture
def world(pg_server: str) -> Iterator[World]:
    names = [f"r_{uuid.uuid4().hex[:8]}", f"w_{uuid.uuid4().hex[:8]}"]
    tables = ["参考甲", "参考乙", "参考丙"]
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            for table in tables:
                _create_reference(conn, name, table, EXISTING)
        _create_facts(conn, names[1])
    yield World(pg_server, names[0], names[1], tables)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def frame_of(conn: psycopg.Connection, schema: str, order_by: str | None = None, table: str = FACTS) -> pd.DataFrame:
    """The facts as the DataFrame path reads them (``SELECT *`` through psycopg into pandas)."""
    order = sql.SQL(" ORDER BY {}").format(sql.Identifier(order_by)) if order_by else sql.SQL("")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {}.{}{}").format(sql.Identifier(schema), sql.Identifier(table), order))
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def fk(schema: str, name: str, column: str, table: str, columns: list[dict], **extra) -> ForeignKeyConfig:
    return ForeignKeyConfig(
        name=name,
        source_column=column,
        target_schema=schema,
        target_table=table,
        target_key="代码",
        backfill_columns=columns,
        **extra,
    )


def reference_rows(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, list[tuple]]:
    out = {}
    with conn.transaction():
        for table in tables:
            out[table] = conn.execute(
                sql.SQL(
                    "SELECT 代码, 名称, 值, 数量, 标签, _source, _needs_review, _derived_from_domain, "
                    "_derived_at IS NOT NULL FROM {}.{} ORDER BY 代码"
                ).format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchall()
    return out


def provenance(conn: psycopg.Connection, schema: str) -> list[tuple]:
    with conn.transaction():
        if conn.execute("SELECT to_regclass('refdata.placeholder') IS NULL").fetchone()[0]:
            return []
        return conn.execute(
            "SELECT split_part(table_name, '.', 2), key, domains, fact_rows_total, fact_rows_last, resolution"
            " FROM refdata.placeholder WHERE table_name LIKE %s ORDER BY 1, 2",
            (schema + ".%",),
        ).fetchall()


def without_examples(text: str | None) -> str | None:
    """A message with its examples cut: the in-warehouse path names the first key in key order, the DataFrame
    path the first in fact order (everything else in the message is the same)."""
    return None if text is None else re.sub(r"e\.g\. .*?(?=; S\.|$)", "e.g. …", text)


def comparable(result, schema: str) -> dict:
    """The result without run id and timings, the schema name replaced, the messages' examples cut."""
    data = result.model_dump(mode="json", exclude={"run_id", "duration_seconds"})
    if data.get("backfill_result"):
        data["backfill_result"].pop("duration_seconds")
        data["backfill_result"].pop("rows_per_second")
    data = json.loads(json.dumps(data, ensure_ascii=False).replace(schema, "S"))
    data["degradation_reason"] = without_examples(data["degradation_reason"])
    for entry in data["coverage_metrics"] + (data["backfill_result"] or {}).get("tables", []):
        entry["error"] = without_examples(entry["error"])
    return data


def run_both(
    world: World,
    make: Callable[[str], list[ForeignKeyConfig]],
    *,
    order_by: str | None = None,
    relation: WarehouseRelation | None = None,
    **options,
):
    """Run ensure_references on the frame (frame schema) and on the relation (relation schema); compare."""
    service = HybridReferenceService()
    with psycopg.connect(world.dsn) as conn:
        df = frame_of(conn, world.relation, order_by)
        by_frame = service.ensure_references(DOMAIN, df, make(world.frame), conn, **options)
        rel = relation or WarehouseRelation(table=f"{world.relation}.{FACTS}", order_by=[order_by] if order_by else [])
        by_relation = service.ensure_references(DOMAIN, rel, make(world.relation), conn, **options)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert comparable(by_relation, world.relation) == comparable(by_frame, world.frame)
        assert reference_rows(conn, world.relation, world.tables) == reference_rows(conn, world.frame, world.tables)
        assert provenance(conn, world.relation) == provenance(conn, world.frame)
    return by_frame, by_relation


# ----------------------------------------------------------------------------------------------------
# Aggregations × key types and blank rules
# ----------------------------------------------------------------------------------------------------

AGGREGATIONS = {
    "first": [{"source": "名称", "target": "名称"}, {"source": "标签", "target": "标签"}],
    "max_by": [
        {"source": "名称", "target": "名称", "aggregation": {"type": "max_by", "order_column": "权重"}},
        {"source": "标签", "target": "值", "aggregation": {"type": "max_by", "order_column": "文本权重"}},
        {"source": "月份", "target": "标签", "aggregation": {"type": "max_by", "order_column": "金额"}},
    ],
    "concat_distinct": [
        {"source": "名称", "target": "名称", "aggregation": {"type": "concat_distinct", "separator": "、"}},
        {
            "source": "标签",
            "target": "值",
            "aggregation": {"type": "concat_distinct", "separator": " | ", "sort": False},
        },
    ],
    "count_distinct": [
        {"source": "标签", "target": "数量", "aggregation": {"type": "count_distinct"}},
        {"source": "金额", "target": "值", "aggregation": {"type": "count_distinct"}},
    ],
    "template": [
        {
            "source": "日期",
            "target": "名称",
            "aggregation": {"type": "template", "template": "{日期:%y%m}新建 {金额:,.2f}"},
        },
        {"source": "月份", "target": "值", "aggregation": {"type": "template", "template": "{月份:%Y年%m月}"}},
        {"source": "名称", "target": "标签", "aggregation": {"type": "template", "template": "待确认"}},
        {"source": "浮点键", "target": "数量", "aggregation": {"type": "template", "template": "{浮点键:d}"}},
    ],
}


def _configs_for(aggregation: str) -> Callable[[str], list[ForeignKeyConfig]]:
    columns = AGGREGATIONS[aggregation]

    def make(schema: str) -> list[ForeignKeyConfig]:
        return [
            fk(schema, "fk_text", "键", "参考甲", columns, skip_blank_values=True),
            fk(schema, "fk_int", "整数键", "参考乙", columns),
            fk(schema, "fk_float", "浮点键", "参考丙", columns),
        ]

    return make


@pytest.mark.parametrize("order_by", [None, "序号"], ids=["physical-order", "order_by"])
@pytest.mark.parametrize("aggregation", list(AGGREGATIONS))
def test_both_paths_write_and_report_the_same(world, aggregation, order_by):
    by_frame, by_relation = run_both(world, _configs_for(aggregation), order_by=order_by)

    metrics = {m.fk_name: m for m in by_relation.coverage_metrics}
    # Text keys: "", "  ", U+3000, None and the token (空白) are blank; " A ", NBSP C NBSP are trimmed.
    assert (metrics["fk_text"].blank_rows, metrics["fk_text"].total_fk_values) == (5, 9)
    assert metrics["fk_text"].covered_values == 1  # existing
    assert (metrics["fk_int"].blank_rows, metrics["fk_int"].total_fk_values) == (1, 15)
    # Floats: NaN and NULL blank; 1001.0 -> "1001", -0.0 -> "0", 2**53+2 keeps its float text.
    assert (metrics["fk_float"].blank_rows, metrics["fk_float"].total_fk_values) == (2, 14)
    assert by_relation.backfill_count == by_frame.backfill_count > 0
    assert by_relation.fact_rows == len(ROWS)


def test_numeric_codes_blank_tokens_and_too_long_values(world):
    def make(schema: str) -> list[ForeignKeyConfig]:
        return [
            fk(schema, "fk_numeric", "数值键", "参考甲", [{"source": "标签", "target": "标签"}]),
            fk(
                schema,
                "fk_tokens",
                "名称",
                "参考乙",
                [{"source": "键", "target": "名称"}],
                skip_blank_values=True,
                blank_values=["甲", " 乙 ", "(空白)"],
            ),
        ]

    _, result = run_both(world, make)

    metrics = {m.fk_name: m for m in result.coverage_metrics}
    # numeric keeps its scale ("1.50" and "1.5" are two keys); NaN and NULL are blank.
    assert metrics["fk_numeric"].blank_rows == 2
    assert metrics["fk_tokens"].blank_rows == 3  # NULL, 甲 and 乙 (trimmed)
    # 标签 'ooo…' (20 characters) does not fit varchar(12): stored as NULL and reported, on both paths alike.
    assert "longer than the 12 characters of column '标签'" in (result.degradation_reason or "")


# ----------------------------------------------------------------------------------------------------
# Modes, degradation, dependency order, idempotency
# ----------------------------------------------------------------------------------------------------


def _two_fks(schema: str) -> list[ForeignKeyConfig]:
    return [
        fk(schema, "fk_child", "整数键", "参考乙", [{"source": "名称", "target": "名称"}], depends_on=["fk_parent"]),
        fk(schema, "fk_parent", "键", "参考甲", [{"source": "标签", "target": "标签"}]),
        fk(schema, "fk_broken", "键", "不存在", []),
    ]


@pytest.mark.parametrize("mode", ["plan_only", "coverage_only"])
def test_plan_only_and_coverage_only_write_nothing(world, mode):
    with psycopg.connect(world.dsn) as conn:
        before = reference_rows(conn, world.relation, world.tables)
    _, result = run_both(world, _two_fks, **{mode: True})

    with psycopg.connect(world.dsn) as conn:
        assert reference_rows(conn, world.relation, world.tables) == before
        assert provenance(conn, world.relation) == []
    assert result.degraded_mode  # fk_broken
    if mode == "plan_only":
        assert result.backfill_count > 0


def test_failing_fk_degrades_without_stopping_the_others_parents_first_and_idempotent(world):
    by_frame, result = run_both(world, _two_fks)

    assert result.backfill_result.processing_order == ["fk_parent", "fk_child", "fk_broken"]
    assert "不存在 does not exist" in result.degradation_reason
    assert result.backfill_count == by_frame.backfill_count > 0
    again, again_relation = run_both(world, _two_fks)
    assert again.backfill_count == again_relation.backfill_count == 0
    assert {m.fk_name: m.auto_derived_values for m in again_relation.coverage_metrics}["fk_parent"] > 0


def test_key_aliases_are_mapped_in_sql_counted_the_same_and_reach_copied_columns(world):
    def make(schema: str) -> list[ForeignKeyConfig]:
        return [
            fk(schema, "fk_text", "键", "参考甲", [{"source": "名称", "target": "名称"}]),
            # Copies the aliased fact column 键 into 值: the copy carries the mapped key, as the frame does.
            fk(schema, "fk_copy", "整数键", "参考乙", [{"source": "键", "target": "值"}]),
        ]

    with psycopg.connect(world.dsn) as conn, conn.transaction():
        insert_key_aliases(
            conn,
            [(f"{s}.参考甲", k, v) for s in (world.frame, world.relation) for k, v in (("B", "existing"), ("C", "Z"))],
        )
    _, result = run_both(world, make)

    assert {m.fk_name: m.remapped_values for m in result.coverage_metrics} == {"fk_text": 5, "fk_copy": 0}
    with psycopg.connect(world.dsn) as conn:
        values = {row[2] for row in reference_rows(conn, world.relation, ["参考乙"])["参考乙"]}
    assert "Z" in values and "C" not in values  # keys 6 and 8 (rows of C) copied 键 as mapped


def test_a_view_and_a_query_with_params(world):
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE VIEW {}.v AS SELECT * FROM {}.{} WHERE 序号 < 15 ORDER BY 序号").format(
                sql.Identifier(world.relation), sql.Identifier(world.relation), sql.Identifier(FACTS)
            )
        )
    make = _configs_for("first")
    service = HybridReferenceService()
    view = WarehouseRelation(table=f"{world.relation}.v")
    query = WarehouseRelation(
        query=f'SELECT * FROM "{world.relation}"."{FACTS}" WHERE 序号 < %(limit)s'
        " AND COALESCE(名称, '') NOT LIKE '%%x' ORDER BY 序号;",
        params={"limit": 15},
    )
    positional = WarehouseRelation(
        query=f'SELECT * FROM "{world.relation}"."{FACTS}" WHERE 序号 < %s ORDER BY 序号', params=[15]
    )
    with psycopg.connect(world.dsn) as conn:
        df = frame_of(conn, world.relation, "序号")
        df = df[df["序号"] < 15].reset_index(drop=True)
        expected = service.ensure_references(DOMAIN, df, make(world.frame), conn, plan_only=True)
        for relation in (view, query, positional):
            got = service.ensure_references(DOMAIN, relation, make(world.relation), conn, plan_only=True)
            assert comparable(got, world.relation) == comparable(expected, world.frame), relation
            assert got.fact_rows == len(df)


# ----------------------------------------------------------------------------------------------------
# One scan per FK: first values read by row, outputs of the key itself
# ----------------------------------------------------------------------------------------------------


def _located_configs(schema: str) -> list[ForeignKeyConfig]:
    def columns(key: str) -> list[dict]:
        return [
            {"source": "名称", "target": "名称"},
            {"source": "标签", "target": "标签"},
            {"source": key, "target": "值", "aggregation": {"type": "template", "template": f"{{{key}}}待确认"}},
        ]

    return [
        fk(schema, "fk_text", "键", "参考甲", columns("键"), skip_blank_values=True),
        fk(schema, "fk_int", "整数键", "参考乙", columns("整数键")),
        # Only the key itself: nothing to read from the facts after the key aggregate.
        fk(schema, "fk_float", "浮点键", "参考丙", [{"source": "浮点键", "target": "名称"}]),
    ]


@pytest.fixture
def derive_scans(monkeypatch) -> list[tuple[str, set[str]]]:
    """Each derivation scan of the facts: (FK column, the raw values it derives)."""
    from airflow_provider_refdata.services import relation_facts

    scans: list[tuple[str, set[str]]] = []
    real = relation_facts.derive_statement

    def spy(shape, column, raws, *args, **kwargs):
        scans.append((column, set(raws)))
        return real(shape, column, raws, *args, **kwargs)

    monkeypatch.setattr(relation_facts, "derive_statement", spy)
    return scans


def test_first_values_are_read_by_row_and_only_blank_firsts_are_scanned(world, derive_scans):
    with psycopg.connect(world.dsn, autocommit=True) as conn:  # key 3's first non-blank 标签 is on a later row
        conn.execute(
            sql.SQL("INSERT INTO {}.{} (整数键, 名称, 标签, 序号) VALUES (3, '后', '后来', 20)").format(
                sql.Identifier(world.relation), sql.Identifier(FACTS)
            )
        )
    run_both(world, _located_configs)
    with psycopg.connect(world.dsn) as conn:
        labels = dict(
            conn.execute(sql.SQL("SELECT 代码, 标签 FROM {}.参考乙").format(sql.Identifier(world.relation))).fetchall()
        )
    assert (labels["3"], labels["4"]) == ("后来", None)

    # 键 and 浮点键: every first value came from its located row, or is the key itself.  整数键 3, 4 and 5 have a
    # blank first 标签 ("", "  ", U+3000) on their located row: only they are derived by a scan.
    assert derive_scans == [("整数键", {"3", "4", "5"})]


def test_with_order_by_the_first_values_are_derived_by_a_scan(world, derive_scans):
    run_both(world, _located_configs, order_by="序号")

    assert [column for column, _ in derive_scans] == ["键", "整数键"]


ROW_CHANGES = {
    # The located row of key D is updated: its new version comes last in physical order.
    "updated": ["UPDATE {t} SET 名称 = '新' WHERE 键 = 'D' AND 序号 = 11"],
    # It is deleted.  (Its ctid cannot be reused meanwhile: the call's open transaction holds back VACUUM.)
    "deleted": ["DELETE FROM {t} WHERE 键 = 'D' AND 序号 = 11"],
}


@pytest.mark.parametrize("change", list(ROW_CHANGES))
def test_a_row_changed_after_the_key_aggregate_is_derived_by_a_scan(world, monkeypatch, change):
    """Another transaction changes the located row of key D between the key aggregate and the derivation."""
    from airflow_provider_refdata.services.relation_facts import RelationFacts

    real = RelationFacts.stage_keys
    table = sql.SQL("{}.{}").format(sql.Identifier(world.relation), sql.Identifier(FACTS))

    def stage_then_change(pg, stage, keys, key_column):
        real(pg, stage, keys, key_column)
        if keys.fk_name == "fk_text":
            with psycopg.connect(world.dsn, autocommit=True) as other:
                for statement in ROW_CHANGES[change]:
                    other.execute(sql.SQL(statement).format(t=table))

    monkeypatch.setattr(RelationFacts, "stage_keys", staticmethod(stage_then_change))
    service = HybridReferenceService()
    configs = [fk(world.relation, "fk_text", "键", "参考甲", [{"source": "名称", "target": "名称"}])]
    with psycopg.connect(world.dsn) as conn:
        service.ensure_references(DOMAIN, WarehouseRelation(table=f"{world.relation}.{FACTS}"), configs, conn)
        rows = dict(
            conn.execute(
                sql.SQL("SELECT 代码, 名称 FROM {}.参考甲 WHERE _source = 'auto_derived'").format(
                    sql.Identifier(world.relation)
                )
            ).fetchall()
        )
    # D's first 名称 now is its other row's, read by the scan.
    assert rows["D"] == "丑"
    assert rows["A"] == "甲"


def test_a_table_with_inheritance_children_is_read_child_after_parent(world):
    """Rows of an inheritance child share ctids with the parent's: row order is (tableoid, ctid) as for a
    partitioned table, and the first values are not read by ctid."""
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {}.子表 () INHERITS ({}.{})").format(
                sql.Identifier(world.relation), sql.Identifier(world.relation), sql.Identifier(FACTS)
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {}.子表 (键, 整数键, 名称, 标签, 序号) VALUES ('A', 1, '子', 'c', 30)").format(
                sql.Identifier(world.relation)
            )
        )
    run_both(world, _located_configs)


@pytest.mark.parametrize(
    ("session", "work_mem", "seen"),
    [("4MB", "64MB", "64MB"), ("4MB", None, "4MB"), ("128MB", "64MB", "128MB")],
    ids=["raised", "left-alone", "session-has-more"],
)
def test_the_fact_statements_run_with_at_least_the_relations_work_mem(world, session, work_mem, seen):
    """The facts record the work_mem their derivation ran with; the session's own setting is back afterwards."""
    relation = WarehouseRelation(
        query=f'SELECT *, current_setting(\'work_mem\') AS wm FROM "{world.relation}"."{FACTS}"',
        work_mem=work_mem,
    )
    configs = [
        fk(world.relation, "fk_text", "键", "参考甲", [{"source": "wm", "target": "值"}]),  # seen by the derivation
        fk(world.relation, "fk_setting", "wm", "参考乙", []),  # seen by the key GROUP BY: the key is the setting
    ]
    with psycopg.connect(world.dsn, options=f"-c work_mem={session}") as conn:
        result = HybridReferenceService().ensure_references(DOMAIN, relation, configs, conn)
        assert result.backfill_count > 0
        for table, column in (("参考甲", "值"), ("参考乙", "代码")):
            values = conn.execute(
                sql.SQL("SELECT DISTINCT {} FROM {}.{} WHERE _source = 'auto_derived'").format(
                    sql.Identifier(column), sql.Identifier(world.relation), sql.Identifier(table)
                )
            ).fetchall()
            assert values == [(seen,)], table
        assert conn.execute("SHOW work_mem").fetchone() == (session,)
