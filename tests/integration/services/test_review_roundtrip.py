"""Export → edit → apply (issue 11 acceptance) on the real PostgreSQL, for CSV and XLSX: Chinese text survives,
a sensitive column never appears in the file and is never written, re-applying the file is a no-op."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg import sql

from airflow_provider_refdata.config.review import ReviewConfig
from airflow_provider_refdata.services.review import apply_review_file
from airflow_provider_refdata.services.review_export import export_review
from airflow_provider_refdata.services.review_file import read_review_file
from tests.integration.refdata_business_tables import PLAN, insert
from tests.integration.services.review_env import (
    ACTOR,
    FACT,
    add_facts,
    aliases,
    column_values,
    fk_with_facts,
    placeholders,
    plan,
    plans,
    review_log,
    setup,
)

SECRET = "保密客户甲"


def _edit_csv(path: Path, edits: dict[str, dict[str, str]]) -> None:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.reader(fh))
    header = records[0]
    for record in records[1:]:
        for column, value in edits.get(record[header.index("年金计划号")], {}).items():
            record[header.index(column)] = value
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(records)


def _edit_xlsx(path: Path, edits: dict[str, dict[str, str]]) -> None:
    import openpyxl

    workbook = openpyxl.load_workbook(path)
    sheet = workbook.worksheets[0]
    header = [c.value for c in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        for column, value in edits.get(row[header.index("年金计划号")].value, {}).items():
            row[header.index(column)].value = value
    workbook.save(path)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_edit_apply_round_trip(pg_conn, pg_schema, tmp_path, fmt):
    setup(pg_conn, pg_schema, [], authoritative={"P001": "权威计划"})
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("ALTER TABLE {}.{} ADD COLUMN 成立日期 date, ADD COLUMN 规模 numeric(18,2)").format(
                sql.Identifier(pg_schema), sql.Identifier(PLAN)
            )
        )
    insert(
        pg_conn,
        pg_schema,
        PLAN,
        [
            {"年金计划号": k, "计划名称": n, "客户名称": SECRET, "成立日期": date(2020, 5, 1), "规模": Decimal("12.30")}
            | {"_source": "auto_derived", "_needs_review": True, "_derived_from_domain": "annuity_performance"}
            for k, n in [("P0O1", "错别字计划"), ("甲计划", "企业年金甲"), ("乙计划", "待删除"), ("丙计划", "未处理")]
        ],
    )
    add_facts(pg_conn, pg_schema, ["P0O1", "P0O1"])
    review = ReviewConfig(sensitive_columns={plan(pg_schema): ["客户名称"]})
    path = tmp_path / f"review.{fmt}"

    exported = export_review(pg_conn, plan(pg_schema), path, format=fmt, review=review)

    assert exported.rows == 4 and exported.excluded_columns == ["客户名称"]
    opened = read_review_file(path)
    assert "客户名称" not in opened.header and opened.key_column == "年金计划号"
    assert SECRET not in str([cells for _, cells in opened])
    before = plans(pg_conn, pg_schema)

    (_edit_csv if fmt == "csv" else _edit_xlsx)(
        path,
        {
            "甲计划": {"action": "approve", "计划名称": "企业年金甲（已审核）", "规模": "99.5"},
            "乙计划": {"action": "reject"},
            "P0O1": {"action": "remap", "remap_to": "P001"},
        },
    )
    result = apply_review_file(pg_conn, path, actor=ACTOR, review=review, foreign_keys=fk_with_facts(pg_schema))

    assert result.errors == [] and result.applied
    assert (result.approved, result.rejected, result.remapped, result.unchanged) == (1, 1, 1, 1)
    assert result.fact_rows_rewritten == {f"{pg_schema}.{FACT}.计划代码": 2}
    after = plans(pg_conn, pg_schema)
    assert sorted(after) == ["P001", "丙计划", "甲计划"]
    approved = after["甲计划"]
    assert (approved["计划名称"], approved["规模"], approved["_needs_review"], approved["_source"]) == (
        "企业年金甲（已审核）",
        Decimal("99.50"),
        False,
        "auto_derived",
    )
    # Unedited cells came back as exported and were not written: the sensitive one was never in the file.
    assert (approved["客户名称"], approved["成立日期"]) == (SECRET, date(2020, 5, 1))
    assert after["丙计划"] == before["丙计划"]
    assert column_values(pg_conn, pg_schema, FACT, "计划代码") == ["P001", "P001"]
    assert aliases(pg_conn, plan(pg_schema)) == {"P0O1": "P001"}
    log = review_log(pg_conn, plan(pg_schema))
    assert sorted((e["key"], e["action"]) for e in log) == [
        ("P0O1", "remap"),
        ("乙计划", "reject"),
        ("甲计划", "approve"),
    ]
    assert {e["source_file"] for e in log} == {str(path)}
    assert {k: v["resolution"] for k, v in placeholders(pg_conn, plan(pg_schema)).items()} == {
        "P0O1": "remapped",
        "乙计划": "rejected",
        "甲计划": "approved",
    }

    again = apply_review_file(pg_conn, path, actor=ACTOR, review=review, foreign_keys=fk_with_facts(pg_schema))

    assert (again.errors, again.approved, again.rejected, again.remapped, again.unchanged) == ([], 0, 0, 0, 4)
    assert plans(pg_conn, pg_schema) == after and review_log(pg_conn, plan(pg_schema)) == log
