"""Review-export benchmark: ``export_review`` of 100,000 open placeholders (CSV and XLSX) beside naive baselines.

``python -m benchmarks review_export`` (or ``python -m benchmarks.bench_review_export --rows 100000 1000000
--xlsx-rows 100000 --repeat 3``).

It starts its own throwaway PostgreSQL (``devtools.servers.PostgresServer``) in a temporary folder and stops it
at the end.  Per size ``--rows`` N, a reference table ``bench."年金计划"`` (varchar key, six business columns,
the tracking columns) gets N open placeholders (auto-derived, in review, from three domains) plus N/10
authoritative rows that are not exported, all generated in SQL; ``refdata.placeholder`` holds the provenance
of 95% of the placeholders (``fact_rows_total`` spread over 1–1024, so the most-used-first sort has work to
do; the other 5% have none, as rows derived before provenance existed).  ``客户名称`` is configured sensitive.

Every measurement runs in a **fresh Python process** (imports done, connection open, one warm-up export of
zero rows for plan and catalog caches), timed end to end while a psutil thread samples RSS every 5 ms; memory
growth = peak RSS during the export − RSS before it:

* ``refdata csv`` — ``export_review(..., format="csv")``: one ``COPY (SELECT …) TO STDOUT (FORMAT csv,
  HEADER)``, the server's chunks written to the file after the byte-order mark;
* ``refdata xlsx`` — ``export_review(..., format="xlsx")``: the server renders every row as SpreadsheetML
  (one ``COPY (SELECT …) TO STDOUT``), deflated straight into the sheet's zip entry (``services/review_xlsx``);
* ``naive csv`` — the same SELECT (same columns and order) with ``fetchall()`` and ``csv.writer``;
* ``openpyxl xlsx`` — the previous XLSX export: an openpyxl write-only workbook fed from a server-side
  cursor, 10,000 rows per fetch, each text a text cell (the baseline the SpreadsheetML writer replaces);
* ``naive xlsx`` — ``fetchall()`` and a regular (not write-only) openpyxl workbook.

The naive CSV file is checked byte for byte equal to refdata's, and refdata's XLSX cell for cell equal to its
CSV (read with python-calamine when it is installed: the test extra has it).  PASS/FAIL against the targets of
issue 11 (≤ 3 s and ≤ 100 MB memory growth for 100,000 placeholders, CSV and XLSX; constant memory: the peak
at the largest size within 10 MB of the peak at the smallest), then a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_sync import run_module_child

SCHEMA = "bench"
TABLE = "年金计划"
QUALIFIED = f"{SCHEMA}.{TABLE}"
DOMAINS = ["annuity_performance", "annuity_income", "payroll"]
TARGET_ROWS = 100_000
TARGET_SECONDS = 3.0
MEMORY_TARGET_MB = 100
CONSTANT_MEMORY_SLACK_MB = 10
APPROACHES = ("refdata_csv", "refdata_xlsx", "naive_csv", "openpyxl_xlsx", "naive_xlsx")
LABELS = {
    "refdata_csv": "refdata `export_review` CSV (server COPY)",
    "refdata_xlsx": "refdata `export_review` XLSX (server-rendered SpreadsheetML, COPY)",
    "naive_csv": "naive CSV: `fetchall` + `csv.writer`",
    "openpyxl_xlsx": "previous XLSX: openpyxl write-only, server-side cursor",
    "naive_xlsx": "naive XLSX: `fetchall` + openpyxl workbook",
}


# ------------------------------------------------------------------------------------------------------------
# child: one export in a fresh process
# ------------------------------------------------------------------------------------------------------------


def review_config():
    from airflow_provider_refdata.config import ReviewConfig

    return ReviewConfig(sensitive_columns={QUALIFIED: ["客户名称"]})


def naive_rows(conn) -> tuple[list[str], list[tuple]]:
    """The export's own SELECT, fetched whole (what an export written without care would do)."""
    from airflow_provider_refdata.services.review_export import _plan

    export = _plan(conn, SCHEMA, TABLE, review_config(), None, None)
    cur = conn.execute(export.select, export.params)
    return export.columns, cur.fetchall()


def naive_csv(conn, path: Path) -> int:
    import csv

    from airflow_provider_refdata.services.review_file import CSV_ENCODING

    with conn.transaction():
        conn.execute("SELECT set_config('DateStyle', 'ISO, YMD', true)")
        header, rows = naive_rows(conn)
    with open(path, "w", encoding=CSV_ENCODING, newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


def naive_xlsx(conn, path: Path) -> int:
    from openpyxl import Workbook

    with conn.transaction():
        conn.execute("SELECT set_config('DateStyle', 'ISO, YMD', true)")
        header, rows = naive_rows(conn)
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return len(rows)


def openpyxl_xlsx(conn, path: Path) -> int:
    """The previous XLSX export: a write-only workbook from a server-side cursor, every text a text cell."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.worksheet.datavalidation import DataValidation

    from airflow_provider_refdata.services.review_export import _plan

    with conn.transaction():
        conn.execute("SELECT set_config('DateStyle', 'ISO, YMD', true)")
        export = _plan(conn, SCHEMA, TABLE, review_config(), None, None)
        book = Workbook(write_only=True)
        sheet = book.create_sheet(TABLE)
        sheet.freeze_panes = "A2"
        bold = Font(bold=True)

        def text(value: str, font: Font | None = None) -> WriteOnlyCell:
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"
            if font is not None:
                cell.font = font
            return cell

        sheet.append([text(c, bold) for c in export.columns])
        rows = 0
        with conn.cursor(name="bench_openpyxl") as cur:
            cur.execute(export.select, export.params)
            while batch := cur.fetchmany(10_000):
                for row in batch:
                    sheet.append([text(v) if isinstance(v, str) and v[:1] in ("=", "#") else v for v in row])
                rows += len(batch)
        validation = DataValidation(type="list", formula1='"approve,reject,remap"', allow_blank=True)
        validation.add(f"A2:A{rows + 1}")
        sheet.data_validations.append(validation)
        book.save(path)
    return rows


def child(approach: str, dsn: str, out: Path) -> dict[str, Any]:
    import openpyxl  # noqa: F401  (imported before the baseline RSS, for every approach alike)
    import psycopg

    from airflow_provider_refdata.services.review_export import export_review
    from benchmarks.memory import PeakRss

    review = review_config()
    with psycopg.connect(dsn) as conn:
        fmt = approach.split("_")[1]
        # Warm-up: a filter no placeholder matches (catalog and plan caches), nothing exported.
        export_review(conn, QUALIFIED, out.with_name(f"warmup.{fmt}"), format=fmt, domain="none", review=review)
        with PeakRss() as rss:
            started = time.perf_counter()
            if approach.startswith("refdata"):
                exported = export_review(conn, QUALIFIED, out, format=fmt, review=review).rows
            elif approach == "naive_csv":
                exported = naive_csv(conn, out)
            elif approach == "openpyxl_xlsx":
                exported = openpyxl_xlsx(conn, out)
            else:
                exported = naive_xlsx(conn, out)
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "growth_mb": rss.growth_mb, "rows": exported, "bytes": out.stat().st_size}


# ------------------------------------------------------------------------------------------------------------
# parent: server, data, runs, report
# ------------------------------------------------------------------------------------------------------------


def setup(dsn: str, rows: int) -> None:
    import psycopg

    from airflow_provider_refdata.warehouse.state import ensure_state_tables

    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_state_tables(conn)
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f'CREATE TABLE {SCHEMA}."{TABLE}" ("年金计划号" varchar(32) PRIMARY KEY, '
            '"计划名称" varchar(200), "计划类型" varchar(50), "客户名称" varchar(200), "主拓代码" varchar(32), '
            '"主拓机构" varchar(100), "管理资格" varchar(200), '
            "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
            "_derived_from_domain varchar(64), _derived_at timestamptz)"
        )
        conn.execute(
            f"""
            INSERT INTO {SCHEMA}."{TABLE}"
            SELECT 'P' || lpad(g::text, 8, '0'), '年金计划' || g, (ARRAY['单一计划', '集合计划'])[1 + g % 2],
                   '客户' || g, 'G' || lpad((g % 100)::text, 3, '0'), '北京分公司', '企年受托+企年投资',
                   CASE WHEN g <= {rows} THEN 'auto_derived' ELSE 'authoritative' END, g <= {rows},
                   CASE WHEN g <= {rows} THEN (ARRAY{DOMAINS!r})[1 + g % 3] END,
                   CASE WHEN g <= {rows} THEN now() - make_interval(secs => g % 5184000) END
              FROM generate_series(1, {rows + rows // 10}) AS g
            """
        )
        conn.execute("DELETE FROM refdata.placeholder WHERE table_name = %s", (QUALIFIED,))
        conn.execute(
            f"""
            INSERT INTO refdata.placeholder (table_name, key, first_seen_at, first_seen_run, last_seen_at,
                                             last_seen_run, domains, fact_rows_total, fact_rows_last)
            SELECT %s, "年金计划号", _derived_at, 'bench', now(), 'bench', ARRAY[_derived_from_domain],
                   1 + (hashtext("年金计划号") & 1023), 1 + (hashtext("年金计划号") & 7)
              FROM {SCHEMA}."{TABLE}"
             WHERE _source = 'auto_derived' AND right("年金计划号", 2)::int %% 20 <> 0
            """,
            (QUALIFIED,),
        )
        conn.execute(f'VACUUM ANALYZE {SCHEMA}."{TABLE}"')
        conn.execute("VACUUM ANALYZE refdata.placeholder")


def run_child(approach: str, dsn: str, out: Path) -> dict[str, Any]:
    return run_module_child(
        "benchmarks.bench_review_export", ["--child", approach, "--dsn", dsn, "--out", str(out)], approach
    )


def machine() -> str:
    import openpyxl
    import psycopg

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, psycopg {psycopg.__version__}, "
        f"openpyxl {openpyxl.__version__} (lxml: {'yes' if openpyxl.LXML else 'no'})"
    )


def xlsx_matches_csv(xlsx: Path, csv_file: Path) -> bool | None:
    """Whether every cell of the XLSX reads (python-calamine) as the CSV's text; None without calamine."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:
        return None
    import csv

    from airflow_provider_refdata.services.review_file import CSV_ENCODING, cell_text

    sheet = CalamineWorkbook.from_path(str(xlsx)).get_sheet_by_index(0).to_python()
    with open(csv_file, encoding=CSV_ENCODING, newline="") as fh:
        lines = list(csv.reader(fh))
    return len(sheet) == len(lines) and all(
        [cell_text(v) or "" for v in row] == line for row, line in zip(sheet, lines, strict=True)
    )


def digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_review_export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[TARGET_ROWS, 1_000_000], help="open placeholders")
    parser.add_argument("--xlsx-rows", type=int, nargs="*", default=[TARGET_ROWS], help="sizes that also run XLSX")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each refdata export (baselines run once)")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--child", choices=APPROACHES)
    parser.add_argument("--dsn")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.dsn, args.out)))
        return 0

    from devtools.servers import PostgresServer

    print(machine(), flush=True)
    measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="refdata-bench-review-") as tmp:
        server = PostgresServer(Path(tmp) / "postgres", database="bench", timezone="Asia/Shanghai")
        try:
            server.start()
            for rows in args.rows:
                started = time.perf_counter()
                setup(server.dsn, rows)
                print(f"\n{rows:,} open placeholders generated in {time.perf_counter() - started:.1f} s", flush=True)
                approaches = ["refdata_csv"] + (["refdata_xlsx"] if rows in args.xlsx_rows else [])
                if not args.no_baselines:
                    approaches += ["naive_csv"] + (["openpyxl_xlsx", "naive_xlsx"] if rows in args.xlsx_rows else [])
                files: dict[str, Path] = {}
                for approach in approaches:
                    repeat = args.repeat if approach.startswith("refdata") else 1
                    out = Path(tmp) / f"{approach}_{rows}.{approach.split('_')[1]}"
                    runs = [run_child(approach, server.dsn, out) for _ in range(repeat)]
                    assert all(r["rows"] == rows for r in runs), runs
                    measured[(approach, rows)] = runs
                    files[approach] = out
                    print(
                        f"{approach} {rows:,}: "
                        + ", ".join(f"{r['seconds']:.2f} s / {r['growth_mb']:.0f} MiB" for r in runs)
                        + f"; {runs[0]['bytes'] / 2**20:.1f} MiB file",
                        flush=True,
                    )
                if "naive_csv" in files:
                    same = digest(files["refdata_csv"]) == digest(files["naive_csv"])
                    print(f"refdata CSV {'==' if same else '!='} naive CSV (sha256)", flush=True)
                    assert same, "the naive CSV differs from refdata's"
                if "refdata_xlsx" in files:
                    started = time.perf_counter()
                    same = xlsx_matches_csv(files["refdata_xlsx"], files["refdata_csv"])
                    took = f"{time.perf_counter() - started:.1f} s"
                    print(
                        "refdata XLSX: python-calamine is not installed, not compared with the CSV"
                        if same is None
                        else f"refdata XLSX {'==' if same else '!='} refdata CSV, cell for cell (calamine, {took})",
                        flush=True,
                    )
                    assert same is not False, "refdata's XLSX differs from its CSV"
                for path in files.values():
                    path.unlink()
        finally:
            server.stop()

    print(f"\n| open placeholders | approach | median s ({args.repeat} runs; baselines 1) | rows/s | peak RSS growth |")
    print("|---:|---|---:|---:|---:|")
    for (approach, rows), runs in measured.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        growth = max(r["growth_mb"] for r in runs)
        print(f"| {rows:,} | {LABELS[approach]} | {seconds:.2f} | {rows / seconds:,.0f} | {growth:.0f} MiB |")

    failures = 0
    for approach in ("refdata_csv", "refdata_xlsx"):
        runs = measured.get((approach, TARGET_ROWS))
        if not runs:
            continue
        seconds = statistics.median(r["seconds"] for r in runs)
        growth = max(r["growth_mb"] for r in runs)
        ok = seconds <= TARGET_SECONDS and growth <= MEMORY_TARGET_MB
        failures += not ok
        print(
            f"{'PASS' if ok else 'FAIL'}: {approach} {TARGET_ROWS:,} placeholders: {seconds:.2f} s "
            f"(target ≤ {TARGET_SECONDS} s), {growth:.0f} MiB growth (target ≤ {MEMORY_TARGET_MB} MB)"
        )
    for approach in ("refdata_csv", "refdata_xlsx"):
        sizes = sorted(rows for a, rows in measured if a == approach)
        if len(sizes) < 2:
            continue
        small, large = (max(r["growth_mb"] for r in measured[(approach, n)]) for n in (sizes[0], sizes[-1]))
        ok = large <= small + CONSTANT_MEMORY_SLACK_MB
        failures += not ok
        print(
            f"{'PASS' if ok else 'FAIL'}: constant memory: {approach} peak growth {large:.0f} MiB at "
            f"{sizes[-1]:,} rows, {small:.0f} MiB at {sizes[0]:,} (allowed +{CONSTANT_MEMORY_SLACK_MB} MiB)"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
