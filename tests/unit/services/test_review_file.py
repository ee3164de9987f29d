"""``read_review_file``: CSV in UTF-8 (BOM) or GBK, XLSX cells as text, line numbers, header checks."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from airflow_provider_refdata.exceptions import RefdataConfigError
from airflow_provider_refdata.services.review_file import cell_text, read_review_file

HEADER = ["action", "remap_to", "年金计划号", "计划名称", "_fact_rows_total", "_table"]


def _csv(path: Path, text: str, encoding: str = "utf-8-sig") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_utf8_bom_csv_header_rows_and_spreadsheet_line_numbers(tmp_path):
    path = _csv(
        tmp_path / "r.csv",
        ",".join(HEADER) + "\r\n"
        "approve,,P001,企业年金计划,3,business.年金计划\r\n"
        "\r\n"  # a blank line: skipped, but it is line 3 in a spreadsheet
        ',,P002,"两行\n的名称",1,business.年金计划\r\n'
        ",,,,,\r\n"  # only separators: blank too
        "remap,P001,P0O1,,2,business.年金计划\r\n",
    )

    review = read_review_file(path)

    assert (review.format, review.encoding, review.key_column) == ("csv", "utf-8-sig", "年金计划号")
    assert review.header == tuple(HEADER)
    got = list(review)
    assert [line for line, _ in got] == [2, 4, 6]
    assert got[0][1] == {
        "action": "approve",
        "remap_to": None,
        "年金计划号": "P001",
        "计划名称": "企业年金计划",
        "_fact_rows_total": "3",
        "_table": "business.年金计划",
    }
    assert got[1][1]["计划名称"] == "两行\n的名称" and got[1][1]["action"] is None
    assert (got[2][1]["action"], got[2][1]["remap_to"]) == ("remap", "P001")
    assert list(review) == got  # iterating again reads the file again


def test_a_csv_excel_saved_as_gbk_is_read_as_gb18030(tmp_path):
    text = ",".join(HEADER) + "\napprove,,甲计划,企业年金（审核）,1,business.年金计划\n"
    path = _csv(tmp_path / "gbk.csv", text, encoding="gbk")

    review = read_review_file(path)

    assert review.encoding == "gb18030"
    assert [cells["计划名称"] for _, cells in review] == ["企业年金（审核）"]


def test_utf8_without_bom_and_short_rows(tmp_path):
    path = _csv(tmp_path / "plain.csv", ",".join(HEADER) + "\nreject,,P9\n", encoding="utf-8")
    ((line, cells),) = list(read_review_file(path))
    assert line == 2 and cells["年金计划号"] == "P9" and cells["_table"] is None


def test_xlsx_cells_become_text(tmp_path):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append([*HEADER, "成立日期", "时刻", "规模", "启用"])
    sheet.append(["approve", None, 1001, "名称", 3.0, "business.年金计划", datetime(2024, 1, 31), None, 1.5, True])
    sheet.append([None] * 10)
    sheet.append(["reject", None, "001", None, 0, "business.年金计划", datetime(2024, 1, 31, 8, 30), None, 2, False])
    path = tmp_path / "r.xlsx"
    workbook.save(path)

    review = read_review_file(path)

    assert (review.format, review.encoding, review.key_column) == ("xlsx", None, "年金计划号")
    got = list(review)
    assert [line for line, _ in got] == [2, 4]
    first, second = got[0][1], got[1][1]
    assert (first["年金计划号"], first["_fact_rows_total"], first["成立日期"], first["规模"], first["启用"]) == (
        "1001",
        "3",
        "2024-01-31",
        "1.5",
        "true",
    )
    assert first["remap_to"] is None and first["时刻"] is None
    assert (second["年金计划号"], second["成立日期"], second["规模"], second["启用"]) == (
        "001",
        "2024-01-31T08:30:00",
        "2",
        "false",
    )


def test_cell_text_normalises_spreadsheet_values():
    assert [cell_text(v) for v in (None, "", "x", 1, 1.0, -2.0, 1.25, True)] == [
        None,
        None,
        "x",
        "1",
        "1",
        "-2",
        "1.25",
        "true",
    ]
    assert cell_text(date(2024, 2, 29)) == "2024-02-29"
    assert cell_text(time(8, 30)) == "08:30:00"
    assert cell_text(Decimal("1.50")) == "1.50"
    assert cell_text(1e20) == "1e+20"


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (["remap_to", "年金计划号", "_table"], "action"),
        (["action", "年金计划号", "_table"], "remap_to"),
        (["action", "remap_to", "年金计划号"], "_table"),
        (["action", "remap_to", "_fact_rows_total", "_table"], "<the key column>"),
    ],
)
def test_a_missing_required_column_names_the_file(tmp_path, header, missing):
    path = _csv(tmp_path / "bad.csv", ",".join(header) + "\n")
    with pytest.raises(RefdataConfigError, match=f"lacks the column\\(s\\) {missing}") as raised:
        read_review_file(path)
    assert raised.value.file == str(path) and raised.value.line == 1


def test_unreadable_files_are_refused_with_the_file(tmp_path):
    with pytest.raises(RefdataConfigError, match="unknown review file format 'txt'"):
        read_review_file(_csv(tmp_path / "r.txt", "x"))
    with pytest.raises(RefdataConfigError, match="not found"):
        read_review_file(tmp_path / "missing.csv")
    with pytest.raises(RefdataConfigError, match="empty"):
        read_review_file(_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(RefdataConfigError, match="names 'action' more than once"):
        read_review_file(_csv(tmp_path / "twice.csv", "action,action,remap_to,k,_table\n"))
    with pytest.raises(RefdataConfigError, match="cannot read the XLSX file"):
        read_review_file(_csv(tmp_path / "broken.xlsx", "not a zip"))
    extra = _csv(tmp_path / "extra.csv", ",".join(HEADER) + "\napprove,,P1,n,1,t,surplus\n")
    with pytest.raises(RefdataConfigError, match="line 2 has 7 cells but the header has 6 columns") as raised:
        list(read_review_file(extra))
    assert raised.value.line == 2


def test_a_large_csv_streams(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        fh.write(",".join(HEADER) + "\n")
        for i in range(50_000):
            fh.write(f"approve,,K{i:06d},名称{i},1,business.年金计划\n")
    rows = iter(read_review_file(path))
    assert next(rows) == (
        2,
        {
            **dict.fromkeys(HEADER),
            "action": "approve",
            "年金计划号": "K000000",
            "计划名称": "名称0",
            "_fact_rows_total": "1",
            "_table": "business.年金计划",
        },
    )
    assert sum(1 for _ in rows) == 49_999
