"""The review export (issue 11 §4) on the real PostgreSQL: open placeholders of a reference table, made by a real
``HybridReferenceService().ensure_references``, written to CSV and XLSX by ``export_review``."""

from __future__ import annotations

import csv
import io
import re
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService
from airflow_provider_refdata.config import ReviewConfig, load_sync_config
from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataReviewError
from airflow_provider_refdata.services import review_export, review_xlsx
from airflow_provider_refdata.services.review_export import export_review
from airflow_provider_refdata.services.review_file import CSV_ENCODING, PROVENANCE_COLUMNS, read_review_file
from airflow_provider_refdata.warehouse.state import ensure_state_tables
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    PLAN,
    create_business_tables,
    insert,
    plan_facts,
    plan_fk_configs,
    rows,
)
from tests.integration.services.test_placeholder_provenance import OTHER_DOMAIN, _ensure, _placeholders

BOM = b"\xef\xbb\xbf"
KEY = "年金计划号"
BUSINESS = ["计划名称", "计划类型", "客户名称", "主拓代码", "主拓机构", "管理资格"]
SECRET = "机密客户甲乙丙"


def _header(business: list[str] = BUSINESS) -> list[str]:
    return ["action", "remap_to", KEY, *business, *PROVENANCE_COLUMNS, "_table"]


def _read_csv(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    assert data.startswith(BOM)
    return list(csv.reader(io.StringIO(data.decode(CSV_ENCODING), newline="")))


def _state(conn: psycopg.Connection, schema: str) -> tuple:
    """What an export must leave as it is: the table's rows (with xmin) and its placeholder rows."""
    return rows(conn, schema, PLAN, KEY), _placeholders(conn, schema)


def _db_rows(conn: psycopg.Connection, schema: str, keys: list[str]) -> dict[str, dict[str, str | None]]:
    """The business columns of the given keys as text, by key."""
    with conn.transaction():
        cur = conn.execute(
            sql.SQL("SELECT {}, {} FROM {}.{} WHERE {} = ANY(%s)").format(
                sql.Identifier(KEY),
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in BUSINESS),
                sql.Identifier(schema),
                sql.Identifier(PLAN),
                sql.Identifier(KEY),
            ),
            (keys,),
        )
        return {row[0]: dict(zip(BUSINESS, row[1:], strict=True)) for row in cur.fetchall()}


def _ensure_facts(conn: psycopg.Connection, schema: str, codes: list[str], *, client: str = "客户") -> None:
    facts = plan_facts(codes)
    facts["客户名称"] = client
    result = HybridReferenceService().ensure_references(DOMAIN, facts, plan_fk_configs(schema), conn)
    assert not result.degraded_mode, result.degradation_reason


def _execute(conn: psycopg.Connection, statement: sql.Composable, params: tuple = ()) -> None:
    with conn.transaction():
        conn.execute(statement, params)


def _plan(schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(PLAN))


# --------------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------------


def test_csv_lists_open_placeholders_most_used_first(pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{KEY: "A", "计划名称": "权威计划"}])
    run = _ensure(pg_conn, pg_schema, ["B", "C", "B", "D", "B", "D", "A", "A", "A", "A"])
    # An approved placeholder (auto-derived, no longer flagged) is no longer open: not exported.
    _ensure(pg_conn, pg_schema, ["E"] * 9)
    _execute(
        pg_conn,
        sql.SQL("UPDATE {} SET _needs_review = false WHERE {} = 'E'").format(_plan(pg_schema), sql.Identifier(KEY)),
    )
    before = _state(pg_conn, pg_schema)
    target = tmp_path / "review" / "年金计划.csv"  # the folder does not exist yet

    result = export_review(pg_conn, f"{pg_schema}.{PLAN}", target, review=ReviewConfig())

    lines = _read_csv(target)
    assert lines[0] == _header() == result.columns
    assert [line[2] for line in lines[1:]] == ["B", "D", "C"]  # 3, 2, 1 fact rows; A authoritative, E approved
    assert (result.rows, result.format, result.table) == (3, "csv", f"{pg_schema}.{PLAN}")
    assert result.path == str(target.absolute()) and result.excluded_columns == []
    placeholders = _placeholders(pg_conn, pg_schema)
    stored = _db_rows(pg_conn, pg_schema, ["B", "C", "D"])
    for line in lines[1:]:
        record = dict(zip(lines[0], line, strict=True))
        key, p = record[KEY], placeholders[record[KEY]]
        assert (record["action"], record["remap_to"], record["_table"]) == ("", "", f"{pg_schema}.{PLAN}")
        assert {c: record[c] for c in BUSINESS} == {c: v or "" for c, v in stored[key].items()}
        assert record["计划名称"].startswith("计划") and record["计划类型"] == "单一计划"  # Chinese text intact
        assert (record["_fact_rows_total"], record["_fact_rows_last"]) == (
            str(p["fact_rows_total"]),
            str(p["fact_rows_last"]),
        )
        assert record["_domains"] == DOMAIN == record["_derived_from_domain"]
        # Readable ISO timestamps, in the session's time zone (the test server's Asia/Shanghai).
        assert record["_first_seen_at"].endswith("+08") and len(record["_first_seen_at"]) == len(
            "2026-01-02 03:04:05+08"
        )
        assert datetime.fromisoformat(record["_first_seen_at"]) == p["first_seen_at"].replace(microsecond=0)
        assert datetime.fromisoformat(record["_last_seen_at"]) == p["last_seen_at"].replace(microsecond=0)
        assert datetime.fromisoformat(record["_derived_at"]).tzinfo is not None
        assert p["first_seen_run"] == run.run_id
    # Reading is all an export does; no partial file is left next to it.
    assert _state(pg_conn, pg_schema) == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_rows_without_provenance_export_last_and_a_closed_placeholder_shows_none(pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["P", "P"])
    # Auto-derived before provenance existed: no refdata.placeholder row.
    insert(
        pg_conn,
        pg_schema,
        PLAN,
        [
            {KEY: k, "计划名称": f"旧{k}", "_source": "auto_derived", "_needs_review": True}
            | {"_derived_from_domain": DOMAIN, "_derived_at": datetime(2025, 1, 2, 3, 4, 5, 678)}
            for k in ("O2", "O1")
        ],
    )
    # Flagged again after its placeholder was closed (the next run reopens it): exported, without provenance.
    _ensure(pg_conn, pg_schema, ["Q"] * 5)
    _execute(
        pg_conn,
        "UPDATE refdata.placeholder SET resolution = 'rejected' WHERE table_name = %s AND key = 'Q'",
        (f"{pg_schema}.{PLAN}",),
    )

    export_review(pg_conn, f"{pg_schema}.{PLAN}", tmp_path / "r.csv", review=ReviewConfig())

    header, *body = _read_csv(tmp_path / "r.csv")
    records = [dict(zip(header, line, strict=True)) for line in body]
    assert [r[KEY] for r in records] == ["P", "O1", "O2", "Q"]  # unknown usage last, by key
    for record in records[1:]:
        assert [record[c] for c in ("_fact_rows_total", "_fact_rows_last", "_first_seen_at", "_domains")] == [""] * 4
    assert records[1]["_derived_at"] == "2025-01-02 03:04:05+08" and records[1]["计划名称"] == "旧O1"
    assert records[0]["_fact_rows_total"] == "2"


def test_domain_and_since_filters(pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["X", "X", "W"])
    _ensure(pg_conn, pg_schema, ["Y", "W"], domain=OTHER_DOMAIN)
    insert(
        pg_conn,
        pg_schema,
        PLAN,
        [{KEY: "Z", "_source": "auto_derived", "_needs_review": True, "_derived_from_domain": OTHER_DOMAIN}],
    )
    _execute(
        pg_conn,
        sql.SQL("UPDATE {} SET _derived_at = now() - interval '30 days' WHERE {} = 'Z'").format(
            _plan(pg_schema), sql.Identifier(KEY)
        ),
    )
    # First seen 10 days ago by provenance, although its row was derived just now: provenance wins.
    _execute(
        pg_conn,
        "UPDATE refdata.placeholder SET first_seen_at = now() - interval '10 days' WHERE table_name = %s AND key = 'X'",
        (f"{pg_schema}.{PLAN}",),
    )
    table = f"{pg_schema}.{PLAN}"

    def keys(**filters) -> list[str]:
        path = tmp_path / "filtered.csv"
        result = export_review(pg_conn, table, path, review=ReviewConfig(), **filters)
        exported = [line[2] for line in _read_csv(path)[1:]]
        assert result.rows == len(exported)
        return exported

    assert keys() == ["W", "X", "Y", "Z"]  # W: 2 fact rows over both runs, X 2, Y 1; Z without provenance
    assert keys(domain=OTHER_DOMAIN) == ["W", "Y", "Z"]  # W used by both domains; Z derived by OTHER_DOMAIN
    assert keys(domain=DOMAIN) == ["W", "X"]
    assert keys(domain="payroll") == []
    assert keys(since=timedelta(days=1)) == ["W", "Y"]
    assert keys(since=timedelta(days=20)) == ["W", "X", "Y"]
    assert keys(since=(datetime.now(UTC) - timedelta(days=11)).date()) == ["W", "X", "Y"]
    assert keys(domain=DOMAIN, since=timedelta(days=1)) == ["W"]
    assert keys(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert _read_csv(tmp_path / "filtered.csv") == [_header()]  # an empty export still has its header


# --------------------------------------------------------------------------------------------------------
# Sensitive columns
# --------------------------------------------------------------------------------------------------------


def _sync_yaml(folder: Path, schema: str, sensitive: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "reference_sync.yml"
    path.write_text(
        f"""schema_version: "1.0"
tables:
  - name: plans
    target_schema: {schema}
    target_table: {PLAN}
    primary_key: {KEY}
    source_type: config_file
    source_config: {{file_path: plans.yml, schema_version: "1.0"}}
review:
  sensitive_columns:
    {schema}.{PLAN}: [{sensitive}]
""",
        encoding="utf-8",
    )
    return path


def _all_text(path: Path) -> bytes:
    """The file's bytes; for an XLSX (a zip) the bytes of every member, uncompressed."""
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as archive:
            return b"".join(archive.read(name) for name in archive.namelist())
    return path.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_sensitive_columns_never_reach_the_file(pg_conn, pg_schema, tmp_path, monkeypatch, fmt):
    create_business_tables(pg_conn, pg_schema)
    _ensure_facts(pg_conn, pg_schema, ["S1", "S2", "S1"], client=SECRET)
    expected = _header([c for c in BUSINESS if c != "客户名称"])
    config_file = _sync_yaml(tmp_path / "conf", pg_schema, "客户名称")
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(config_file.parent))
    table = f"{pg_schema}.{PLAN}"
    # The secret is in the table: the export has something to leave out.
    assert {r["客户名称"] for r in _db_rows(pg_conn, pg_schema, ["S1", "S2"]).values()} == {SECRET}

    for i, review in enumerate(
        [
            ReviewConfig(sensitive_columns={table: ["客户名称"]}),
            load_sync_config(config_file),
            config_file,  # the path of reference_sync.yml
            str(config_file),
            None,  # $REFDATA_CONFIG_DIR/reference_sync.yml
        ]
    ):
        path = tmp_path / f"out{i}.{fmt}"
        result = export_review(pg_conn, table, path, format=fmt, review=review)

        assert (result.rows, result.columns, result.excluded_columns) == (2, expected, ["客户名称"])
        data = _all_text(path)
        assert "客户名称".encode() not in data and SECRET.encode() not in data
        assert b"S1" in data and "单一计划".encode() in data  # the rest is there
        if fmt == "csv":
            assert _read_csv(path)[0] == expected
        else:
            sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
            assert [c.value for c in next(sheet.iter_rows(max_row=1))] == expected


def test_sensitive_key_or_unknown_column_is_a_configuration_error(pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["K"])
    table = f"{pg_schema}.{PLAN}"
    target = tmp_path / "out" / "r.csv"

    for column, text in [(KEY, "is the key of"), ("客户", "has no column '客户'")]:
        config_file = _sync_yaml(tmp_path / column, pg_schema, column)
        with pytest.raises(RefdataConfigError) as caught:
            export_review(pg_conn, table, target, review=config_file)
        error = caught.value
        assert text in str(error) and table in str(error)
        assert (error.file, error.key_path, error.value) == (
            str(config_file.resolve()),
            f"review.sensitive_columns.{table}",
            column,
        )
        assert not target.parent.exists()  # refused before anything was written

    with pytest.raises(RefdataConfigError, match="is the key of"):
        export_review(pg_conn, table, target, review=ReviewConfig(sensitive_columns={table: [KEY]}))


# --------------------------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------------------------


def test_xlsx_keeps_codes_as_text_and_matches_the_csv(pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["001", "001", "0012", "1e5"])
    # Values Excel would turn into a formula or an error code stay text.
    _execute(
        pg_conn,
        sql.SQL("UPDATE {} SET 计划名称 = '=1+1', 主拓代码 = '#N/A', 主拓机构 = NULL WHERE {} = '0012'").format(
            _plan(pg_schema), sql.Identifier(KEY)
        ),
    )
    table = f"{pg_schema}.{PLAN}"

    xlsx = export_review(pg_conn, table, tmp_path / "r.xlsx", format="xlsx", review=ReviewConfig())
    export_review(pg_conn, table, tmp_path / "r.csv", review=ReviewConfig())

    assert (xlsx.rows, xlsx.format) == (3, "xlsx")
    book = openpyxl.load_workbook(tmp_path / "r.xlsx")
    sheet = book.worksheets[0]
    assert sheet.title == PLAN and sheet.freeze_panes == "A2"
    grid = [[c.value for c in row] for row in sheet.iter_rows()]
    assert grid[0] == _header() == xlsx.columns
    assert all(c.font.bold for c in sheet[1])
    keys = [sheet.cell(row=r, column=3) for r in range(2, 5)]
    assert [c.value for c in keys] == ["001", "0012", "1e5"] and {c.data_type for c in keys} == {"s"}
    row = dict(zip(grid[0], grid[2], strict=True))
    assert (row["计划名称"], row["主拓代码"], row["主拓机构"]) == ("=1+1", "#N/A", None)
    assert sheet.cell(row=3, column=4).data_type == "s"  # not a formula
    assert (row["_fact_rows_total"], row["_domains"]) == (1, DOMAIN)  # counts are numbers
    assert sheet.cell(row=3, column=grid[0].index("_fact_rows_total") + 1).data_type == "n"
    assert {c.data_type for c in sheet[3] if c.value is not None} == {"s", "n"}
    # The steward picks the action from a list.
    (validation,) = sheet.data_validations.dataValidation
    assert validation.formula1 == '"approve,reject,remap"' and str(validation.sqref) == "A2:A4"
    # The same cells as the CSV, NULL and empty read as "".
    as_text = [["" if v is None else str(v) for v in line] for line in grid]
    assert as_text == _read_csv(tmp_path / "r.csv")
    # What apply_review_file reads back is the same for both files.
    assert list(read_review_file(tmp_path / "r.xlsx")) == list(read_review_file(tmp_path / "r.csv"))
    # The parts a spreadsheet program needs, as plain XML: a frozen first row, inline strings, a bold style.
    with zipfile.ZipFile(tmp_path / "r.xlsx") as archive:
        assert archive.testzip() is None
        assert archive.getinfo("xl/worksheets/sheet1.xml").compress_type == zipfile.ZIP_DEFLATED
        parts = {name: ElementTree.fromstring(archive.read(name)) for name in archive.namelist()}
    assert sorted(parts) == sorted(
        ["[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/styles.xml"]
        + ["xl/worksheets/sheet1.xml"]
    )
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    worksheet = parts["xl/worksheets/sheet1.xml"]
    pane = worksheet.find("m:sheetViews/m:sheetView/m:pane", ns)
    assert pane.attrib == {"ySplit": "1", "topLeftCell": "A2", "activePane": "bottomLeft", "state": "frozen"}
    cells = worksheet.findall("m:sheetData/m:row/m:c", ns)
    assert {c.get("t") for c in cells} == {"inlineStr", None}  # no shared strings, no formula, no "str" cell
    assert not worksheet.findall(".//m:f", ns)
    assert parts["xl/styles.xml"].find("m:fonts/m:font[2]/m:b", ns) is not None


def test_xlsx_refuses_more_rows_than_a_sheet_holds_and_leaves_no_file(pg_conn, pg_schema, tmp_path, monkeypatch):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["M1", "M2", "M3"])
    monkeypatch.setattr(review_export, "XLSX_MAX_ROWS", 2)  # a sheet of two rows: the limit without 1M rows
    target = tmp_path / "r.xlsx"

    with pytest.raises(RefdataReviewError, match="format='csv'") as caught:
        export_review(pg_conn, f"{pg_schema}.{PLAN}", target, format="xlsx", review=ReviewConfig())

    assert (caught.value.table, caught.value.count) == (f"{pg_schema}.{PLAN}", 3)
    assert list(tmp_path.iterdir()) == []
    assert export_review(pg_conn, f"{pg_schema}.{PLAN}", tmp_path / "r.csv", review=ReviewConfig()).rows == 3


def test_failed_xlsx_export_leaves_the_previous_file_and_no_partial_file(pg_conn, pg_schema, tmp_path, monkeypatch):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, [f"C{i}" for i in range(7)])
    monkeypatch.setattr(review_xlsx, "WRITE_BYTES", 64)  # rows reach the zip one at a time: C0…C5 before C6
    table = f"{pg_schema}.{PLAN}"
    target = tmp_path / "r.xlsx"
    export_review(pg_conn, table, target, format="xlsx", review=ReviewConfig())
    previous = target.read_bytes()
    # A control character an XLSX cannot hold, in the last batch (every key is used once: key order).
    _execute(
        pg_conn,
        sql.SQL("UPDATE {} SET 计划名称 = 'bad' || chr(1) WHERE {} = 'C6'").format(
            _plan(pg_schema), sql.Identifier(KEY)
        ),
    )

    with pytest.raises(RefdataReviewError, match="'计划名称' holds a control character") as caught:
        export_review(pg_conn, table, target, format="xlsx", review=ReviewConfig())

    assert caught.value.keys == ["C6"]
    assert target.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["r.xlsx"]
    # The CSV holds it.
    assert export_review(pg_conn, table, tmp_path / "r.csv", review=ReviewConfig()).rows == 7
    assert b"bad\x01" in (tmp_path / "r.csv").read_bytes()


def test_failed_csv_rename_leaves_the_previous_file_and_no_partial_file(pg_conn, pg_schema, tmp_path, monkeypatch):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["F1"])
    table = f"{pg_schema}.{PLAN}"
    target = tmp_path / "r.csv"
    target.write_bytes(b"previous export")

    def disk_full(src, dst):  # the fault: the final rename fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(review_export.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_review(pg_conn, table, target, review=ReviewConfig())

    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_xlsx_export_needs_no_openpyxl(pg_conn, pg_schema, tmp_path, monkeypatch):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["X1"])
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as if the excel extra were not installed

    result = export_review(pg_conn, f"{pg_schema}.{PLAN}", tmp_path / "r.xlsx", format="xlsx", review=ReviewConfig())
    empty = export_review(
        pg_conn, f"{pg_schema}.{PLAN}", tmp_path / "e.xlsx", format="xlsx", domain="payroll", review=ReviewConfig()
    )

    monkeypatch.undo()
    assert (result.rows, empty.rows) == (1, 0)
    grid = [[c.value for c in row] for row in openpyxl.load_workbook(tmp_path / "r.xlsx").worksheets[0].iter_rows()]
    assert grid[0] == _header() and grid[1][2] == "X1" and len(grid) == 2
    sheet = openpyxl.load_workbook(tmp_path / "e.xlsx").worksheets[0]
    assert [[c.value for c in row] for row in sheet.iter_rows()] == [_header()]  # the header alone
    assert str(sheet.data_validations.dataValidation[0].sqref) == "A2"  # the list on the first line still


# --------------------------------------------------------------------------------------------------------
# XLSX: texts that must come back exactly, and what XML or Excel cannot hold
# --------------------------------------------------------------------------------------------------------

TEXTS = "文本"  # a reference table of text columns (longer than the business tables' varchar(200))
#: key → (名称, 备注): every kind of text an XML writer can get wrong.
TRICKY = {
    "001": ("中文名称：年金计划（测试）", None),
    "0012": ("& < > \" '", "a&amp;b &#10; &lt;"),  # entities as text stay text
    "=1+1": ("=SUM(A1:A2)", "#N/A"),  # a formula or an error code stays text
    "#REF!": ("第一行\n第二行", "crlf\r\nend\rcr"),
    "tab\tkey": ("a\tb", "back\\slash \\N \\. \\\\"),  # what COPY's text format escapes
    " 空格 ": ("  leading and trailing  ", ""),  # an empty text reads back as no value, like NULL
    "😀": ("😀 𠀀 ́e", "\x7f\x85\u2028"),  # outside the BMP, combining, allowed control-like characters
    "<c>": ("]]>", '<c r="A1"><v>1</v></c></row>'),  # markup in a value is text
    "长": ("汉" * 20_000, "x" * review_xlsx.MAX_CELL_CHARS),  # 60,000 bytes; exactly the longest cell
    "1e5": ("1e5", "0.10"),  # numbers as text stay text
}


def _text_table(conn: psycopg.Connection, schema: str, records: dict[str, tuple[str | None, str | None]]) -> str:
    """A reference table ``文本`` (代码 text key, 名称, 备注) whose rows are all open placeholders."""
    with conn.transaction():
        ensure_state_tables(conn)
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.{} (代码 text PRIMARY KEY, 名称 text, 备注 text, _source varchar(20) NOT NULL "
                "DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, _derived_from_domain "
                "varchar(64), _derived_at timestamptz)"
            ).format(sql.Identifier(schema), sql.Identifier(TEXTS))
        )
    insert(
        conn,
        schema,
        TEXTS,
        [
            {"代码": key, "名称": name, "备注": note, "_source": "auto_derived", "_needs_review": True}
            | {"_derived_from_domain": DOMAIN, "_derived_at": datetime(2025, 1, 2, 3, 4, 5)}
            for key, (name, note) in records.items()
        ],
    )
    return f"{schema}.{TEXTS}"


def _stored_texts(conn: psycopg.Connection, schema: str) -> dict[str, tuple[str | None, str | None]]:
    with conn.transaction():
        cur = conn.execute(
            sql.SQL("SELECT 代码, 名称, 备注 FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(TEXTS))
        )
        return {key: (name, note) for key, name, note in cur.fetchall()}


def test_xlsx_round_trips_every_text_exactly(pg_conn, pg_schema, tmp_path):
    table = _text_table(pg_conn, pg_schema, TRICKY)
    stored = _stored_texts(pg_conn, pg_schema)
    assert stored == TRICKY  # the database holds them exactly, the file must too

    result = export_review(pg_conn, table, tmp_path / "t.xlsx", format="xlsx", review=ReviewConfig())

    assert result.rows == len(TRICKY)
    expected = {k: tuple(v or None for v in values) for k, values in stored.items()}  # "" is no value
    for read_only in (False, True):
        book = openpyxl.load_workbook(tmp_path / "t.xlsx", read_only=read_only)
        header, *body = [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
        assert header[:5] == ["action", "remap_to", "代码", "名称", "备注"]
        body = [row + [None] * (len(header) - len(row)) for row in body]
        assert {row[2]: (row[3], row[4]) for row in body} == expected
        assert [row[2] for row in body] == sorted(TRICKY)  # no usage known: by key (collation C)
        assert {row[-1] for row in body} == {table} and {row[-2] for row in body} == {"2025-01-02 03:04:05+08"}
        book.close()
    # A cell is an inline string: never a formula, a number or an error.
    sheet = openpyxl.load_workbook(tmp_path / "t.xlsx").worksheets[0]
    assert {c.data_type for row in sheet.iter_rows(min_row=2) for c in row if c.value is not None} == {"s"}
    # What apply_review_file reads: the same as from the CSV export.
    export_review(pg_conn, table, tmp_path / "t.csv", review=ReviewConfig())
    assert list(read_review_file(tmp_path / "t.xlsx")) == list(read_review_file(tmp_path / "t.csv"))


def test_xlsx_reads_the_same_in_calamine(pg_conn, pg_schema, tmp_path):
    calamine = pytest.importorskip("python_calamine")  # an independent reader (Rust), in the test extra
    table = _text_table(pg_conn, pg_schema, TRICKY)
    export_review(pg_conn, table, tmp_path / "t.xlsx", format="xlsx", review=ReviewConfig())

    workbook = calamine.CalamineWorkbook.from_path(str(tmp_path / "t.xlsx"))
    assert workbook.sheet_names == [TEXTS]
    header, *body = workbook.get_sheet_by_index(0).to_python()
    assert header[:5] == ["action", "remap_to", "代码", "名称", "备注"] and len(body) == len(TRICKY)
    assert {row[2]: (row[3] or None, row[4] or None) for row in body} == {
        k: tuple(v or None for v in values) for k, values in TRICKY.items()
    }


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("名称", "bad\x01", "'名称' holds a control character"),
        ("备注", "vertical\x0btab", "'备注' holds a control character"),
        ("备注", "\ufffe", "'备注' holds U+FFFE or U+FFFF"),
        ("名称", "汉" * (review_xlsx.MAX_CELL_CHARS + 1), "'名称' is longer than the 32,767 characters"),
        ("代码", "K\x1f", "'代码' holds a control character"),
    ],
)
def test_xlsx_refuses_what_xml_or_a_cell_cannot_hold(pg_conn, pg_schema, tmp_path, column, value, problem):
    records = {"A": ("好", "好"), "B": ("好", "好"), "Z": ("好", "好")}
    key = value if column == "代码" else "B"
    records[key] = {"名称": (value, "好"), "备注": ("好", value), "代码": ("好", "好")}[column]
    table = _text_table(pg_conn, pg_schema, records)
    target = tmp_path / "t.xlsx"

    with pytest.raises(RefdataReviewError, match=re.escape(problem)) as caught:
        export_review(pg_conn, table, target, format="xlsx", review=ReviewConfig())

    assert (caught.value.table, caught.value.keys) == (table, [key])
    assert f"key {key!r}" in str(caught.value) and "format='csv'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    # The CSV holds it, exactly.
    export_review(pg_conn, table, tmp_path / "t.csv", review=ReviewConfig())
    assert value in (tmp_path / "t.csv").read_bytes().decode(CSV_ENCODING)
    assert _stored_texts(pg_conn, pg_schema)[key] == records[key]


def test_xlsx_sheet_larger_than_a_zip_entry_is_refused(pg_conn, pg_schema, tmp_path, monkeypatch):
    table = _text_table(pg_conn, pg_schema, {f"K{i}": ("名称", "备注") for i in range(50)})
    monkeypatch.setattr(review_xlsx, "WRITE_BYTES", 1000)
    monkeypatch.setattr(review_xlsx, "SHEET_MAX_BYTES", 5000)  # the 2 GiB of a zip entry, for 50 rows

    with pytest.raises(RefdataReviewError, match="larger than the 5,000 bytes a zip entry holds") as caught:
        export_review(pg_conn, table, tmp_path / "t.xlsx", format="xlsx", review=ReviewConfig())

    assert caught.value.table == table and "format='csv'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(review_xlsx, "SHEET_MAX_BYTES", 10**6)
    assert export_review(pg_conn, table, tmp_path / "t.xlsx", format="xlsx", review=ReviewConfig()).rows == 50


# --------------------------------------------------------------------------------------------------------
# Tables that cannot be exported
# --------------------------------------------------------------------------------------------------------


def test_tables_without_a_single_key_or_tracking_columns_are_refused(pg_conn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema, org_tracking=False)
    s = sql.Identifier(pg_schema)
    tracking = (
        "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
        "_derived_from_domain varchar(64), _derived_at timestamptz"
    )
    _execute(
        pg_conn,
        sql.SQL("CREATE TABLE {}.复合 (a text, b text, 名称 text, " + tracking + ", PRIMARY KEY (a, b))").format(s),
    )
    _execute(pg_conn, sql.SQL("CREATE TABLE {}.无键 (a text, " + tracking + ")").format(s))
    _execute(pg_conn, sql.SQL("CREATE TABLE {}.冲突 (a text PRIMARY KEY, action text, " + tracking + ")").format(s))
    target = tmp_path / "r.csv"

    for table, text in [
        ("复合", "composite primary key (a, b)"),
        ("无键", "no primary key"),
        ("冲突", "column called 'action'"),
        (ORG, "no tracking column"),
        ("不存在", "does not exist"),
    ]:
        with pytest.raises(RefdataReviewError, match=re.escape(text)) as caught:
            export_review(pg_conn, f"{pg_schema}.{table}", target, review=ReviewConfig())
        assert caught.value.table == f"{pg_schema}.{table}" and f"{pg_schema}.{table}" in str(caught.value)
    assert not target.exists()

    with pytest.raises(ValueError, match="schema-qualified"):
        export_review(pg_conn, PLAN, target, review=ReviewConfig())
    with pytest.raises(ValueError, match="format must be one of csv, xlsx"):
        export_review(pg_conn, f"{pg_schema}.{PLAN}", target, format="json", review=ReviewConfig())
    with pytest.raises(ValueError, match=r"ends in \.xlsx but format is 'csv'"):
        export_review(pg_conn, f"{pg_schema}.{PLAN}", tmp_path / "r.xlsx", review=ReviewConfig())
    assert list(tmp_path.iterdir()) == []


def test_integer_keys_join_their_provenance_and_sort_as_numbers(pg_conn, pg_schema, tmp_path, pg_dsn):
    with pg_conn.transaction():
        ensure_state_tables(pg_conn)
    _execute(
        pg_conn,
        sql.SQL(
            "CREATE TABLE {}.编号 (编号 integer PRIMARY KEY, 名称 text, 生效日 date, _source varchar(20) NOT NULL "
            "DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, _derived_from_domain varchar(64), "
            "_derived_at timestamptz)"
        ).format(sql.Identifier(pg_schema)),
    )
    _execute(
        pg_conn,
        sql.SQL(
            "INSERT INTO {}.编号 SELECT g, '名称' || g, DATE '2025-03-01' + g, 'auto_derived', true, %s, now() "
            "FROM generate_series(1, 12) g"
        ).format(sql.Identifier(pg_schema)),
        (DOMAIN,),
    )
    table = f"{pg_schema}.编号"
    _execute(
        pg_conn,
        "INSERT INTO refdata.placeholder (table_name, key, first_seen_at, first_seen_run, last_seen_at, last_seen_run,"
        " domains, fact_rows_total, fact_rows_last) SELECT %s, g::text, now(), 'r', now(), 'r', ARRAY[%s], 5, 5"
        " FROM generate_series(10, 11) g",
        (table, DOMAIN),
    )

    result = export_review(pg_dsn, table, tmp_path / "n.csv", review=ReviewConfig())  # a DSN works too

    header, *body = _read_csv(tmp_path / "n.csv")
    assert result.rows == 12 and header[:5] == ["action", "remap_to", "编号", "名称", "生效日"]
    assert [line[2] for line in body] == ["10", "11", *[str(i) for i in range(1, 10)], "12"]
    assert body[0][4] == "2025-03-11" and body[0][5] == "5"  # ISO date; the provenance of key 10 joined
