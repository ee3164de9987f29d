"""``apply_review_file`` (issue 11 §5) on the real PostgreSQL with hand-written CSV (UTF-8 BOM, GBK) and XLSX
review files: applying approve / reject / remap, re-applying as a no-op, every invalid row reported with its
line (nothing applied), ``partial``, ``dry_run``, sensitive and read-only columns."""

from __future__ import annotations

import csv
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg import sql

from airflow_provider_refdata.config.review import ReviewConfig
from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataReviewError
from airflow_provider_refdata.services.review import ReviewService, apply_review_file
from airflow_provider_refdata.services.review_file import PROVENANCE_COLUMNS
from tests.integration.refdata_business_tables import PLAN, PORTFOLIO
from tests.integration.services.review_env import (
    ACTOR,
    FACT,
    add_facts,
    add_portfolios,
    aliases,
    column_values,
    ensure,
    fk_with_facts,
    placeholders,
    plan,
    plans,
    review_log,
    rows,
    setup,
)

KEY = "年金计划号"
BUSINESS = ["计划名称", "计划类型", "客户名称", "主拓代码", "主拓机构", "管理资格", "成立日期", "规模", "状态"]
HEADER = ["action", "remap_to", KEY, *BUSINESS, *PROVENANCE_COLUMNS, "_table"]


def _setup(conn, schema: str, codes: list[str], authoritative: dict[str, str] | None = None) -> None:
    """The plan table with typed and NOT NULL business columns besides the shipped ones, and its placeholders."""
    setup(conn, schema, [], authoritative)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "ALTER TABLE {}.{} ADD COLUMN 成立日期 date, ADD COLUMN 规模 numeric(18,2),"
                " ADD COLUMN 状态 varchar(10) NOT NULL DEFAULT '正常'"
            ).format(sql.Identifier(schema), sql.Identifier(PLAN))
        )
    if codes:
        ensure(conn, schema, codes)


def _decisions(conn, schema: str, decisions: list[tuple], table: str | None = None) -> list[dict]:
    """Review-file rows for ``(key, action, remap_to, {column: new text})``, from the stored rows (as exported)."""
    stored = plans(conn, schema)
    out = []
    for key, action, remap_to, edits in decisions:
        row = stored.get(key, {})
        cells = {c: (None if row.get(c) is None else str(row[c])) for c in BUSINESS}
        cells.update(edits)
        out.append(
            {"action": action, "remap_to": remap_to, KEY: key, **cells}
            | {p: "9" for p in PROVENANCE_COLUMNS}
            | {"_table": table or plan(schema)}
        )
    return out


def _write_csv(path: Path, records: list[dict], *, encoding: str = "utf-8-sig", header=HEADER) -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for record in records:
            writer.writerow(["" if record.get(c) is None else record[c] for c in header])
    return path


def _write_xlsx(path: Path, records: list[dict], header=HEADER) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for record in records:
        sheet.append([record.get(c) for c in header])
    workbook.save(path)
    return path


def _service(conn, schema: str, **kwargs) -> ReviewService:
    return ReviewService(conn, foreign_keys=fk_with_facts(schema), **kwargs)


def test_csv_applies_each_action_and_reapplying_it_is_a_no_op(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["A", "B", "C", "D", "P0O1"], authoritative={"P001": "权威"})
    add_facts(pg_conn, pg_schema, ["P0O1", "P0O1", "A"])
    add_portfolios(pg_conn, pg_schema, {"Q1": "P0O1"})
    records = _decisions(
        pg_conn,
        pg_schema,
        [
            ("A", "approve", None, {"计划名称": "审核后的名称", "成立日期": "2024-01-31", "规模": "1000.5"}),
            ("B", " Reject ", None, {}),
            ("P0O1", "remap", "P001", {"计划名称": "ignored: not an approval"}),
            ("D", None, None, {"计划名称": "ignored: no action"}),
            ("C", "approve", None, {}),
        ],
    )
    records[0]["_fact_rows_total"] = "12345"  # read-only provenance: edits are ignored
    path = _write_csv(tmp_path / "review.csv", records)
    before = plans(pg_conn, pg_schema)

    result = _service(pg_conn, pg_schema).apply_review_file(path, actor=ACTOR)

    assert result.errors == [] and result.applied and not result.dry_run
    assert (result.approved, result.rejected, result.remapped, result.unchanged) == (2, 1, 1, 1)
    assert (result.table, result.source_file, result.action) == (plan(pg_schema), str(path), "apply_review_file")
    assert result.fact_rows_rewritten == {f"{pg_schema}.{FACT}.计划代码": 2, f"{pg_schema}.{PORTFOLIO}.年金计划号": 1}
    after = plans(pg_conn, pg_schema)
    assert sorted(after) == ["A", "C", "D", "P001"]
    a = after["A"]
    assert (a["计划名称"], a["成立日期"], a["规模"], a["_needs_review"], a["_source"]) == (
        "审核后的名称",
        date(2024, 1, 31),
        Decimal("1000.50"),
        False,
        "auto_derived",
    )
    assert {c: a[c] for c in ("计划类型", "客户名称", "主拓代码", "状态")} == {
        c: before["A"][c] for c in ("计划类型", "客户名称", "主拓代码", "状态")
    }
    assert after["C"]["_needs_review"] is False and after["C"]["计划名称"] == before["C"]["计划名称"]
    assert after["D"] == before["D"]
    assert column_values(pg_conn, pg_schema, FACT, "计划代码") == ["A", "P001", "P001"]
    assert rows(pg_conn, pg_schema, PORTFOLIO, "组合代码")["Q1"]["年金计划号"] == "P001"
    assert aliases(pg_conn, plan(pg_schema)) == {"P0O1": "P001"}
    log = review_log(pg_conn, plan(pg_schema))
    assert sorted((e["key"], e["action"], e["remap_to"]) for e in log) == [
        ("A", "approve", None),
        ("B", "reject", None),
        ("C", "approve", None),
        ("P0O1", "remap", "P001"),
    ]
    assert {(e["review_id"], e["source_file"], e["actor"]) for e in log} == {(result.review_id, str(path), ACTOR)}
    seen = placeholders(pg_conn, plan(pg_schema))
    assert {k: seen[k]["resolution"] for k in seen} == {
        "A": "approved",
        "B": "rejected",
        "C": "approved",
        "D": None,
        "P0O1": "remapped",
    }
    assert seen["A"]["fact_rows_total"] == 1

    again = apply_review_file(pg_conn, path, actor=ACTOR, foreign_keys=fk_with_facts(pg_schema))

    assert (again.errors, again.approved, again.rejected, again.remapped, again.unchanged) == ([], 0, 0, 0, 5)
    assert again.fact_rows_rewritten == {}
    assert plans(pg_conn, pg_schema) == after
    assert review_log(pg_conn, plan(pg_schema)) == log


def test_a_gbk_csv_saved_by_excel_applies_like_utf8(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["甲计划", "乙计划"])
    records = _decisions(
        pg_conn,
        pg_schema,
        [
            ("甲计划", "approve", None, {"计划名称": "企业年金（审核）", "客户名称": "某某公司"}),
            ("乙计划", "reject", None, {}),
        ],
    )
    path = _write_csv(tmp_path / "review.csv", records, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        path.read_text(encoding="utf-8")

    result = _service(pg_conn, pg_schema).apply_review_file(path, actor=ACTOR)

    assert (result.errors, result.approved, result.rejected) == ([], 1, 1)
    stored = plans(pg_conn, pg_schema)
    assert sorted(stored) == ["甲计划"]
    assert (stored["甲计划"]["计划名称"], stored["甲计划"]["客户名称"]) == ("企业年金（审核）", "某某公司")


def test_an_xlsx_file_with_typed_cells_applies(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["1001", "1002", "1003"])
    records = _decisions(
        pg_conn,
        pg_schema,
        [
            ("1001", "approve", None, {"成立日期": datetime(2023, 6, 30), "规模": 1000.0, "计划名称": "中文名称"}),
            ("1002", "approve", None, {"规模": 2.5, "管理资格": None}),
            ("1003", "reject", None, {}),
        ],
    )
    for record in records:
        record[KEY] = int(record[KEY])  # Excel turned the codes into numbers
    path = _write_xlsx(tmp_path / "review.xlsx", records)

    result = _service(pg_conn, pg_schema).apply_review_file(path, actor=ACTOR)

    assert (result.errors, result.approved, result.rejected) == ([], 2, 1)
    stored = plans(pg_conn, pg_schema)
    assert sorted(stored) == ["1001", "1002"]
    assert (stored["1001"]["成立日期"], stored["1001"]["规模"], stored["1001"]["计划名称"]) == (
        date(2023, 6, 30),
        Decimal("1000.00"),
        "中文名称",
    )
    assert (stored["1002"]["规模"], stored["1002"]["管理资格"]) == (Decimal("2.50"), None)
    assert review_log(pg_conn, plan(pg_schema))[0]["source_file"] == str(path)
    assert _service(pg_conn, pg_schema).apply_review_file(path, actor=ACTOR).unchanged == 3


def _invalid_file(conn, schema: str, tmp_path: Path) -> Path:
    decisions = [
        ("A", "approve", None, {"计划名称": "有效的审核"}),  # line 2: valid
        ("B", "approv", None, {}),  # 3: unknown action
        ("C", "remap", None, {}),  # 4: no remap_to
        ("D", "remap", "NOPE", {}),  # 5: target missing
        ("GONE", "approve", None, {}),  # 6: not in the table
        ("E", "approve", None, {}),  # 7: duplicate …
        ("E", "reject", None, {}),  # 8: … key
        ("F", "approve", None, {"成立日期": "2024-13-45"}),  # 9: not a date
        ("G", "approve", None, {"计划类型": "长" * 51}),  # 10: too long
        ("H", "approve", None, {"状态": None}),  # 11: NOT NULL
        ("Q", "reject", None, {}),  # 12: referenced by a portfolio (FK)
        ("P001", "approve", None, {}),  # 13: authoritative
        ("I", "remap", "I", {}),  # 14: remap to itself
        ("J", "approve", None, {"规模": "12x", "成立日期": "昨天"}),  # 15: two bad values
        ("K", None, None, {"成立日期": "garbage, but no action"}),  # 16: left alone
    ]
    return _write_csv(tmp_path / "invalid.csv", _decisions(conn, schema, decisions))


EXPECTED_ERRORS = [
    (3, "B", "approv", "unknown action 'approv'"),
    (4, "C", "remap", "remap without remap_to"),
    (5, "D", "remap", "remap target 'NOPE' is not in"),
    (6, "GONE", "approve", "key 'GONE' is not in"),
    (7, "E", "approve", "key 'E' has a decision on several lines (7, 8)"),
    (8, "E", "reject", "key 'E' has a decision on several lines (7, 8)"),
    (9, "F", "approve", "column '成立日期': value '2024-13-45' is not a valid date"),
    (10, "G", "approve", "column '计划类型': value '长长"),
    (11, "H", "approve", "column '状态' is empty, but the column is NOT NULL"),
    (12, "Q", "reject", "key 'Q' is still held by 1 row(s) of"),
    (13, "P001", "approve", "key 'P001' is authoritative"),
    (14, "I", "remap", "remap_to 'I' is the key itself"),
    (15, "J", "approve", "column '成立日期': value '昨天' is not a valid date"),
    (15, "J", "approve", "column '规模': value '12x' is not a valid numeric(18,2)"),
]


def _assert_errors(errors) -> None:
    assert [(e.line, e.key, e.action) for e in errors] == [e[:3] for e in EXPECTED_ERRORS]
    for error, (_, _, _, text) in zip(errors, EXPECTED_ERRORS, strict=True):
        assert text in error.message, (error, text)


def test_every_invalid_row_is_reported_with_its_line_and_nothing_is_applied(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, list("ABCDEFGHIJKQ"), authoritative={"P001": "权威"})
    add_portfolios(pg_conn, pg_schema, {"Q1": "Q"})
    path = _invalid_file(pg_conn, pg_schema, tmp_path)
    before = plans(pg_conn, pg_schema)
    service = _service(pg_conn, pg_schema)

    result = service.apply_review_file(path, actor=ACTOR)

    _assert_errors(result.errors)
    assert not result.applied and not result.ok
    assert (result.approved, result.rejected, result.remapped, result.unchanged) == (0, 0, 0, 0)
    assert plans(pg_conn, pg_schema) == before
    assert review_log(pg_conn, plan(pg_schema)) == []
    assert {v["resolution"] for v in placeholders(pg_conn, plan(pg_schema)).values()} == {None}

    # A dry run validates the same way and, with partial, counts what the valid rows would do.
    dry = service.apply_review_file(path, actor=ACTOR, dry_run=True, partial=True)
    _assert_errors(dry.errors)
    assert (dry.dry_run, dry.applied, dry.approved, dry.unchanged) == (True, False, 1, 1)
    assert plans(pg_conn, pg_schema) == before and review_log(pg_conn, plan(pg_schema)) == []

    applied = service.apply_review_file(path, actor=ACTOR, partial=True)

    _assert_errors(applied.errors)
    assert (applied.applied, applied.approved, applied.rejected, applied.remapped, applied.unchanged) == (
        True,
        1,
        0,
        0,
        1,
    )
    after = plans(pg_conn, pg_schema)
    assert (after["A"]["计划名称"], after["A"]["_needs_review"]) == ("有效的审核", False)
    assert {k: v for k, v in after.items() if k != "A"} == {k: v for k, v in before.items() if k != "A"}
    assert [e["key"] for e in review_log(pg_conn, plan(pg_schema))] == ["A"]


def test_a_dry_run_counts_what_would_happen_and_changes_nothing(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["A", "B", "P0O1"], authoritative={"P001": "权威"})
    add_facts(pg_conn, pg_schema, ["P0O1", "P0O1", "B"])
    path = _write_csv(
        tmp_path / "review.csv",
        _decisions(
            pg_conn,
            pg_schema,
            [("A", "approve", None, {"计划名称": "新"}), ("B", "approve", None, {}), ("P0O1", "remap", "P001", {})],
        ),
    )
    before = plans(pg_conn, pg_schema)
    service = _service(pg_conn, pg_schema)

    dry = service.apply_review_file(path, actor=ACTOR, dry_run=True)

    assert (dry.dry_run, dry.applied, dry.approved, dry.remapped, dry.errors) == (True, False, 2, 1, [])
    assert dry.fact_rows_rewritten == {f"{pg_schema}.{FACT}.计划代码": 2}
    assert plans(pg_conn, pg_schema) == before
    assert column_values(pg_conn, pg_schema, FACT, "计划代码") == ["B", "P0O1", "P0O1"]
    assert (review_log(pg_conn, plan(pg_schema)), aliases(pg_conn, plan(pg_schema))) == ([], {})

    real = service.apply_review_file(path, actor=ACTOR)
    assert (real.approved, real.remapped, real.fact_rows_rewritten) == (2, 1, dry.fact_rows_rewritten)


def test_sensitive_columns_in_a_file_are_never_written(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["A"])
    before = plans(pg_conn, pg_schema)["A"]
    records = _decisions(pg_conn, pg_schema, [("A", "approve", None, {"客户名称": "泄露的客户", "计划名称": "改名"})])
    path = _write_csv(tmp_path / "review.csv", records)
    review = ReviewConfig(sensitive_columns={plan(pg_schema): ["客户名称"]})

    result = _service(pg_conn, pg_schema, review=review).apply_review_file(path, actor=ACTOR)

    assert result.approved == 1
    after = plans(pg_conn, pg_schema)["A"]
    assert (after["计划名称"], after["客户名称"]) == ("改名", before["客户名称"])


def test_files_naming_another_table_or_unknown_columns_are_refused(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["A", "B"])
    before = plans(pg_conn, pg_schema)
    service = _service(pg_conn, pg_schema)
    records = _decisions(pg_conn, pg_schema, [("A", "reject", None, {}), ("B", "reject", None, {})])
    records[1]["_table"] = f"{pg_schema}.{PORTFOLIO}"
    with pytest.raises(RefdataReviewError, match=r"line 3: _table is .*组合计划.*one review file holds one table"):
        service.apply_review_file(_write_csv(tmp_path / "two.csv", records), actor=ACTOR)

    header = [*HEADER[:3], "不存在的列", *HEADER[3:]]
    with pytest.raises(RefdataReviewError, match="'不存在的列' are not columns of"):
        service.apply_review_file(_write_csv(tmp_path / "unknown.csv", records[:1], header=header), actor=ACTOR)

    renamed = [h if h != KEY else "计划名称" for h in HEADER if h != "计划名称"]
    with pytest.raises(RefdataReviewError, match="key column '计划名称' is not the key '年金计划号'"):
        service.apply_review_file(_write_csv(tmp_path / "key.csv", records[:1], header=renamed), actor=ACTOR)

    no_action = [h for h in HEADER if h != "action"]
    with pytest.raises(RefdataConfigError, match="lacks the column.*action") as missing:
        service.apply_review_file(_write_csv(tmp_path / "bad.csv", records[:1], header=no_action), actor=ACTOR)
    assert missing.value.file == str(tmp_path / "bad.csv")
    assert plans(pg_conn, pg_schema) == before
    assert review_log(pg_conn, plan(pg_schema)) == []


def test_a_header_only_file_does_nothing(pg_conn, pg_schema, tmp_path):
    _setup(pg_conn, pg_schema, ["A"])
    result = _service(pg_conn, pg_schema).apply_review_file(_write_csv(tmp_path / "empty.csv", []), actor=ACTOR)
    assert (result.table, result.approved, result.unchanged, result.errors) == (None, 0, 0, [])
    assert plans(pg_conn, pg_schema)["A"]["_needs_review"] is True
