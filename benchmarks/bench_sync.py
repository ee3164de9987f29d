"""Sync benchmark: a legacy MySQL table → PostgreSQL upsert, ReferenceSyncService beside two naive baselines.

``python -m benchmarks sync`` (or ``python -m benchmarks.bench_sync --rows 100000 1000000 --repeat 3``).

It starts its own throwaway PostgreSQL and MariaDB (``devtools.servers``) in a temporary folder and stops
them at the end.  Per size it generates the source table inside MariaDB (``INSERT … SELECT`` from the
``seq_1_to_N`` sequence table: no rows travel through Python), then measures, each in a **fresh Python
process** (so peak memory is that operation's alone: RSS sampled every 5 ms by a psutil thread, minus the
RSS after imports, in MiB):

* ``refdata`` — ReferenceSyncService: unbuffered MySQL read rendered as COPY CSV → temp stage → guarded
  merge; initial load (empty target), full re-sync with 1% changed rows, incremental re-sync with 1% changed;
* ``pandas`` — ``pandas.read_sql`` + ``DataFrame.to_sql`` (SQLAlchemy, default settings), initial load only
  (it cannot upsert);
* ``insert_rows`` — Airflow's ``PostgresHook.insert_rows(replace=True, commit_every=5000)`` (an
  ``INSERT … ON CONFLICT DO UPDATE`` executemany per 5,000 rows; connection from an ``AIRFLOW_CONN_*``
  variable) fed by an unbuffered MySQL cursor; initial load and full re-sync 1%.

The targets of issue 4 are checked and printed as PASS/FAIL at the end, followed by a Markdown table, and
issue 13's: the incremental time per re-synced row at the largest size within 1.5× of that at 1,000,000 rows
(``--rows 1000000 5000000``: 20,000 rows of 1M and 100,000 of 5M, the same 2%).

``--baseline-tree DIR`` also runs the full and the incremental re-sync with the code in ``DIR`` (e.g. the
committed tree: ``git archive HEAD | tar -x -C DIR``) in the same rounds, alternating which goes first, so
before/after are compared under the same load; its rows in the table say "baseline".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.memory import PeakRss

TARGET_SCHEMA = "bench"
TARGET_TABLE = "年金计划"
BASELINE_TABLE = "年金计划_baseline"
SOURCE_TABLE = "annuity_plan"
COLUMNS = [
    ("plan_code", "年金计划号"),
    ("plan_name", "计划名称"),
    ("plan_type", "计划类型"),
    ("client_name", "客户名称"),
    ("branch_code", "主拓代码"),
    ("amount", "规模"),
    ("start_date", "成立日期"),
]
PG_DDL = (
    '("年金计划号" varchar(16) PRIMARY KEY, "计划名称" varchar(100), "计划类型" varchar(20), '
    '"客户名称" varchar(100), "主拓代码" varchar(16), "规模" numeric(18,2), "成立日期" date)'
)


# ------------------------------------------------------------------------------------------------------------
# child process: one measurement
# ------------------------------------------------------------------------------------------------------------


def _sync_config(incremental: bool) -> Any:
    from airflow_provider_refdata.config import ReferenceSyncConfig

    source: dict[str, Any] = {"table": SOURCE_TABLE, "columns": [{"source": s, "target": t} for s, t in COLUMNS]}
    if incremental:
        source["incremental"] = {"updated_at_column": "updated_at", "lookback_seconds": 300}
    return ReferenceSyncConfig.model_validate(
        {
            "batch_size": 10_000,
            "tables": [
                {
                    "name": "annuity_plan",
                    "target_schema": TARGET_SCHEMA,
                    "target_table": TARGET_TABLE,
                    "primary_key": "年金计划号",
                    "source_type": "legacy_mysql",
                    "sync_mode": "upsert",
                    "source_config": source,
                }
            ],
        }
    )


def child_refdata(pg: str, mysql: str, mode: str) -> dict[str, Any]:
    import psycopg

    from airflow_provider_refdata.services.source_mysql import MySqlSource
    from airflow_provider_refdata.services.sync import ReferenceSyncService

    config = _sync_config(incremental=True)
    sources = {"legacy_mysql": MySqlSource.from_dsn(mysql)}
    with psycopg.connect(pg) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        with PeakRss() as rss:
            t0 = time.perf_counter()
            result = ReferenceSyncService().sync_all(config, sources, conn, force_full=(mode != "incremental"))[0]
            seconds = time.perf_counter() - t0
    if result.error:
        raise SystemExit(f"refdata sync failed: {result.error}")
    return {"seconds": seconds, "mem_mb": rss.growth_mb, "result": result.model_dump(mode="json")}


def child_pandas(pg: str, mysql: str) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    my_engine = sa.create_engine(mysql.replace("mysql://", "mysql+mysqldb://", 1) + "?charset=utf8mb4")
    pg_engine = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1))
    select = ", ".join(f"`{s}` AS `{t}`" for s, t in COLUMNS)
    with PeakRss() as rss:
        t0 = time.perf_counter()
        frame = pd.read_sql(f"SELECT {select} FROM {SOURCE_TABLE}", my_engine)
        frame.to_sql(BASELINE_TABLE, pg_engine, schema=TARGET_SCHEMA, if_exists="append", index=False)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "mem_mb": rss.growth_mb, "rows": len(frame)}


def child_insert_rows(pg: str, mysql: str) -> dict[str, Any]:
    import MySQLdb.cursors

    os.environ["AIRFLOW_CONN_BENCH_WAREHOUSE"] = pg.replace("postgresql://", "postgres://", 1)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_provider_refdata.services.source_mysql import MySqlSource

    hook = PostgresHook(postgres_conn_id="bench_warehouse")
    source = MySqlSource.from_dsn(mysql)
    targets = [t for _, t in COLUMNS]
    with PeakRss() as rss:
        t0 = time.perf_counter()
        my = source.connect()
        cur = my.cursor(MySQLdb.cursors.SSCursor)
        cur.execute(f"SELECT {', '.join(s for s, _ in COLUMNS)} FROM {SOURCE_TABLE}")

        def rows():
            while batch := cur.fetchmany(10_000):
                for row in batch:
                    yield tuple(v.decode() if isinstance(v, bytes) else v for v in row)

        hook.insert_rows(
            f'"{TARGET_SCHEMA}"."{BASELINE_TABLE}"',
            rows(),
            target_fields=targets,
            commit_every=5000,
            replace=True,
            replace_index=["年金计划号"],
        )
        my.close()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "mem_mb": rss.growth_mb}


# ------------------------------------------------------------------------------------------------------------
# parent: servers, data, orchestration
# ------------------------------------------------------------------------------------------------------------


def _mysql_root(server: Any, database: str | None = None) -> Any:
    conn = server.root_connect(database)
    conn.autocommit(True)
    return conn


def generate_source(server: Any, rows: int) -> float:
    """(Re)create the MySQL source table with ``rows`` rows, generated inside MariaDB; returns seconds."""
    t0 = time.perf_counter()
    conn = _mysql_root(server, server.database)
    cur = conn.cursor()
    cur.execute(f"DROP TABLE IF EXISTS {SOURCE_TABLE}")
    cur.execute(
        f"""CREATE TABLE {SOURCE_TABLE} (
            plan_code varchar(16) PRIMARY KEY, plan_name varchar(100), plan_type varchar(20),
            client_name varchar(100), branch_code varchar(16), amount decimal(18,2), start_date date,
            updated_at datetime NOT NULL, KEY (updated_at)) ENGINE=InnoDB"""
    )
    cur.execute(
        f"""INSERT INTO {SOURCE_TABLE}
            SELECT CONCAT('P', LPAD(seq, 9, '0')), CONCAT('年金计划 ', seq), ELT(1 + seq % 3, '单一', '集合', '职业'),
                   CONCAT('客户', seq % 50000), CONCAT('G', seq % 500), (seq % 100000) * 1.25,
                   DATE_ADD('2000-01-01', INTERVAL seq % 9000 DAY),
                   DATE_ADD('2024-01-01', INTERVAL seq % 86400 SECOND)
              FROM seq_1_to_{int(rows)}"""
    )
    conn.close()
    return time.perf_counter() - t0


_change_round = 0


def change_one_percent(server: Any, rows: int) -> None:
    """Change 1% of the rows (spread over the table) and move their updated_at past every watermark."""
    global _change_round
    _change_round += 1
    conn = _mysql_root(server, server.database)
    conn.cursor().execute(
        f"""UPDATE {SOURCE_TABLE}
               SET plan_name = CONCAT('改名', %s, ' ', plan_code),
                   updated_at = DATE_ADD('2025-01-01', INTERVAL %s HOUR)
             WHERE CAST(SUBSTRING(plan_code, 2) AS UNSIGNED) %% 100 = %s""",
        (_change_round, _change_round, _change_round % 100),
    )
    conn.close()


def reset_target(pg: str, table: str) -> None:
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{TARGET_SCHEMA}"')
        conn.execute(f'DROP TABLE IF EXISTS "{TARGET_SCHEMA}"."{table}"')
        conn.execute(f'CREATE TABLE "{TARGET_SCHEMA}"."{table}" {PG_DDL}')
        conn.execute(
            "DELETE FROM refdata.sync_state WHERE table_name = %s"
            if conn.execute("SELECT to_regclass('refdata.sync_state')").fetchone()[0]
            else "SELECT %s",
            (f"{TARGET_SCHEMA}.{table}",),
        )
        conn.execute("CHECKPOINT")


def vacuum(pg: str, table: str = TARGET_TABLE) -> None:
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{TARGET_SCHEMA}"."{table}"')
        conn.execute("CHECKPOINT")


def run_child(kind: str, pg: str, mysql: str, mode: str = "", tree: Path | None = None) -> dict[str, Any]:
    return run_module_child(
        "benchmarks.bench_sync",
        ["--child", kind, "--pg", pg, "--mysql", mysql, "--mode", mode],
        f"{kind} {mode}",
        tree=tree,
    )


def run_module_child(module: str, args: list[str], label: str, tree: Path | None = None) -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh process (from ``tree``: another checkout's code); its last
    stdout line is the JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tree or Path(__file__).resolve().parent.parent,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {label} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_size(
    pg: str, mysql: str, server: Any, rows: int, repeat: int, baselines: bool, baseline_tree: Path | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows}
    out["generate_s"] = generate_source(server, rows)
    print(f"\n--- {rows:,} rows (source generated in {out['generate_s']:.1f} s)", flush=True)

    def median(key: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "mem_mb": max(r["mem_mb"] for r in runs),
            "runs": [round(r["seconds"], 3) for r in runs],
            "result": runs[-1].get("result"),
        }

    initial, full, incr, base_full, base_incr = [], [], [], [], []

    def one(mode: str, runs: list[dict[str, Any]], tree: Path | None) -> None:
        change_one_percent(server, rows)
        runs.append(run_child("refdata", pg, mysql, mode, tree=tree))

    for i in range(repeat):
        reset_target(pg, TARGET_TABLE)
        initial.append(run_child("refdata", pg, mysql, "initial"))
        vacuum(pg)
        for mode, runs, base_runs in (("full", full, base_full), ("incremental", incr, base_incr)):
            if baseline_tree is None:
                one(mode, runs, None)
            elif i % 2 == 0:  # alternate which code goes first
                one(mode, runs, None)
                one(mode, base_runs, baseline_tree)
            else:
                one(mode, base_runs, baseline_tree)
                one(mode, runs, None)
        line = (
            f"  refdata run {i + 1}: initial {initial[-1]['seconds']:.2f} s, full 1% {full[-1]['seconds']:.2f} s, "
            f"incremental 1% {incr[-1]['seconds']:.2f} s"
        )
        if baseline_tree is not None:
            b_full, b_incr = base_full[-1]["seconds"], base_incr[-1]["seconds"]
            line += f"; baseline: full 1% {b_full:.2f} s, incremental {b_incr:.2f} s"
        print(f"{line} (load {os.getloadavg()[0]:.1f})", flush=True)
    out["refdata_initial"] = median("initial", initial)
    out["refdata_full"] = median("full", full)
    out["refdata_incremental"] = median("incremental", incr)
    if baseline_tree is not None:
        out["baseline_full"] = median("full", base_full)
        out["baseline_incremental"] = median("incremental", base_incr)
    res_full, res_incr = out["refdata_full"]["result"], out["refdata_incremental"]["result"]
    print(
        f"  counts: full re-sync read {res_full['rows_read']:,}, updated {res_full['rows_updated']:,}; "
        f"incremental read {res_incr['rows_read']:,}, updated {res_incr['rows_updated']:,}",
        flush=True,
    )
    if baselines:
        reset_target(pg, BASELINE_TABLE)
        out["pandas_initial"] = run_child("pandas", pg, mysql)
        print(f"  pandas read_sql+to_sql: {out['pandas_initial']['seconds']:.2f} s", flush=True)
        reset_target(pg, BASELINE_TABLE)
        out["insert_rows_initial"] = run_child("insert_rows", pg, mysql)
        change_one_percent(server, rows)
        out["insert_rows_full"] = run_child("insert_rows", pg, mysql)
        print(
            f"  PostgresHook.insert_rows(replace=True): initial {out['insert_rows_initial']['seconds']:.2f} s, "
            f"re-sync {out['insert_rows_full']['seconds']:.2f} s",
            flush=True,
        )
        reset_target(pg, BASELINE_TABLE)
    return out


def _fmt(entry: dict[str, Any] | None) -> tuple[str, str]:
    if not entry:
        return "—", "—"
    return f"{entry['seconds']:.2f} s", f"{entry['mem_mb']:.0f} MB"


def report(sizes: list[dict[str, Any]]) -> str:
    lines = [
        "| rows | approach | initial load | full re-sync 1% | incremental 1% | peak RSS growth |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for s in sizes:
        n = f"{s['rows']:,}"
        ini, full, inc = s["refdata_initial"], s["refdata_full"], s["refdata_incremental"]
        mem = max(ini["mem_mb"], full["mem_mb"], inc["mem_mb"])
        lines.append(
            f"| {n} | refdata `ReferenceSyncService` | {ini['seconds']:.2f} s | {full['seconds']:.2f} s | "
            f"{inc['seconds']:.2f} s | {mem:.0f} MiB |"
        )
        if "baseline_full" in s:
            bf, bi = s["baseline_full"], s["baseline_incremental"]
            lines.append(
                f"| {n} | baseline (`--baseline-tree`), same rounds | — | {bf['seconds']:.2f} s | "
                f"{bi['seconds']:.2f} s | {max(bf['mem_mb'], bi['mem_mb']):.0f} MiB |"
            )
        if "pandas_initial" in s:
            p = s["pandas_initial"]
            lines.append(
                f"| {n} | pandas `read_sql` + `to_sql` | {p['seconds']:.2f} s | — | — | {p['mem_mb']:.0f} MiB |"
            )
            a, b = s["insert_rows_initial"], s["insert_rows_full"]
            lines.append(
                f"| {n} | `PostgresHook.insert_rows(replace=True)` | {a['seconds']:.2f} s | {b['seconds']:.2f} s | — | "
                f"{max(a['mem_mb'], b['mem_mb']):.0f} MiB |"
            )
    return "\n".join(lines)


def check_targets(sizes: list[dict[str, Any]]) -> list[str]:
    checks = []
    by_rows = {s["rows"]: s for s in sizes}
    big = by_rows[max(by_rows)]
    ini = big["refdata_initial"]["seconds"]
    checks.append(f"initial load ≤ 7 s at {big['rows']:,} rows: {ini:.2f} s → {'PASS' if ini <= 7 else 'FAIL'}")
    if "pandas_initial" in big:
        ratio = big["pandas_initial"]["seconds"] / ini
        checks.append(f"≥ 4× faster than pandas: {ratio:.1f}× → {'PASS' if ratio >= 4 else 'FAIL'}")
    full = big["refdata_full"]["seconds"]
    checks.append(f"full re-sync 1% ≤ 6 s: {full:.2f} s → {'PASS' if full <= 6 else 'FAIL'}")
    inc = big["refdata_incremental"]["seconds"]
    checks.append(f"incremental re-sync 1% ≤ 0.5 s: {inc:.2f} s → {'PASS' if inc <= 0.5 else 'FAIL'}")
    mems = {
        s["rows"]: max(s[k]["mem_mb"] for k in ("refdata_initial", "refdata_full", "refdata_incremental"))
        for s in sizes
    }
    worst = max(mems.values())
    text = ", ".join(f"{m:.0f} MiB at {r:,}" for r, m in sorted(mems.items()))
    checks.append(f"peak memory growth ≤ 100 MiB at every size ({text}) → {'PASS' if worst <= 100 else 'FAIL'}")
    checks.extend(incremental_scaling(sizes))
    return checks


def per_row_us(entry: dict[str, Any]) -> float:
    """Microseconds of an incremental re-sync per row it re-synced (read since the watermark)."""
    return entry["seconds"] / max(entry["result"]["rows_read"], 1) * 1e6


def incremental_scaling(sizes: list[dict[str, Any]]) -> list[str]:
    """Issue 13: the incremental time per re-synced row at the largest size within 1.5× of that at 1M rows."""
    by_rows = {s["rows"]: s for s in sizes}
    if 1_000_000 not in by_rows or max(by_rows) <= 1_000_000:
        return []
    small, big = by_rows[1_000_000], by_rows[max(by_rows)]
    lines = []
    for label, key in (("", "refdata_incremental"), ("baseline: ", "baseline_incremental")):
        if key not in small:
            continue
        a, b = small[key], big[key]
        ratio = per_row_us(b) / per_row_us(a)
        lines.append(
            f"{label}incremental per re-synced row: {per_row_us(a):.1f} µs at 1,000,000 "
            f"({a['result']['rows_read']:,} rows, {a['seconds']:.2f} s), {per_row_us(b):.1f} µs at {big['rows']:,} "
            f"({b['result']['rows_read']:,} rows, {b['seconds']:.2f} s): {ratio:.2f}× "
            + ("" if label else f"→ {'PASS' if ratio <= 1.5 else 'FAIL'} (≤ 1.5×)")
        )
    return lines


def machine() -> str:
    import MySQLdb
    import pandas
    import psutil
    import psycopg

    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, psycopg {psycopg.__version__}, "
        f"mysqlclient {'.'.join(map(str, MySQLdb.version_info[:3]))}, pandas {pandas.__version__}; "
        f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="source sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the refdata measurements (median)")
    parser.add_argument("--no-baselines", action="store_true", help="skip pandas and insert_rows")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also run the full and incremental re-syncs with the code of this checkout, in the same rounds",
    )
    parser.add_argument("--child", choices=["refdata", "pandas", "insert_rows"], help=argparse.SUPPRESS)
    parser.add_argument("--pg", help=argparse.SUPPRESS)
    parser.add_argument("--mysql", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        func = {"refdata": child_refdata, "pandas": child_pandas, "insert_rows": child_insert_rows}[args.child]
        result = func(args.pg, args.mysql, args.mode) if args.child == "refdata" else func(args.pg, args.mysql)
        print(json.dumps(result, default=str))
        return 0

    from devtools.servers import MariaDbServer, PostgresServer

    baseline_tree = args.baseline_tree.resolve() if args.baseline_tree else None
    if baseline_tree is not None and not (baseline_tree / "benchmarks" / "bench_sync.py").exists():
        parser.error(f"--baseline-tree {baseline_tree}: no benchmarks/bench_sync.py there")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="refdata-bench-sync-") as tmp:
        root = Path(tmp)
        pg_server = PostgresServer(root / "postgres", database="bench")
        my_server = MariaDbServer(root / "mariadb", database="legacy")
        try:
            pg_server.start()
            my_server.start()
            pg, mysql = pg_server.dsn, my_server.dsn
            versions = _server_versions(pg, my_server)
            print(f"machine: {machine()}\nservers: {versions}", flush=True)
            sizes = [
                measure_size(pg, mysql, my_server, rows, args.repeat, not args.no_baselines, baseline_tree)
                for rows in sorted(args.rows)
            ]
        finally:
            my_server.stop()
            pg_server.stop()
    print("\n" + report(sizes))
    print()
    for line in check_targets(sizes):
        print(line)
    print(f"\nmachine: {machine()}\nservers: {versions}\ntotal benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


def _server_versions(pg: str, my_server: Any) -> str:
    import psycopg

    with psycopg.connect(pg) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    conn = _mysql_root(my_server)
    cur = conn.cursor()
    cur.execute("SELECT VERSION()")
    my_version = cur.fetchone()[0]
    conn.close()
    host = urlsplit(pg).hostname
    my_version = my_version.decode() if isinstance(my_version, bytes) else my_version
    return f"PostgreSQL {pg_version} and MariaDB {my_version} on {host}"


if __name__ == "__main__":
    raise SystemExit(main())
