"""Sync benchmark, legacy PostgreSQL: PostgreSQL → PostgreSQL beside the MySQL → PostgreSQL path, in one run.

``python -m benchmarks sync_postgres`` (or ``python -m benchmarks.bench_sync_postgres --rows 1000000
--repeat 3``).

It starts three throwaway servers (``devtools.servers``) in a temporary folder and stops them at the end:
the warehouse PostgreSQL, MariaDB (the MySQL path of ``bench_sync``) and a second PostgreSQL as the legacy
source.  Per size, the legacy table is generated inside PostgreSQL (``INSERT … SELECT`` from
``generate_series``: the same values as ``bench_sync`` generates in MariaDB, the same target table), then
each measurement runs in a **fresh Python process** (peak memory: RSS sampled every 5 ms minus the RSS after
imports, ``benchmarks.memory``):

* the MySQL path, exactly as ``bench_sync`` measures it (``bench_sync.measure_size``, no baselines);
* the PostgreSQL path: ``ReferenceSyncService`` with ``PostgresSource`` (``COPY (SELECT …) TO STDOUT``
  passed through into the warehouse ``COPY … FROM STDIN``): initial load (empty target), full re-sync with
  1% changed rows, incremental re-sync with 1% changed; with the CPU seconds of the sync process, the
  warehouse server and the legacy server (``/proc``: each server's processes, exited ones included);
* ``concurrency``: 4 legacy PostgreSQL tables of rows/4 each (250,000 at 1M) synced by one ``sync_all``
  with ``concurrency: 1`` and with ``concurrency: 4`` (initial load, then a full re-sync with 1% changed).

The machine is shared, so the compared measurements alternate round by round (a MySQL round, then a
PostgreSQL round; ``concurrency: 1``, then ``concurrency: 4``) and each figure is the median of ``--repeat``
rounds.

The targets of issue 9 are checked and printed as PASS/FAIL at the end, followed by Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bench_sync as base
from benchmarks.memory import PeakRss

LEGACY_TABLE = base.SOURCE_TABLE
CONCURRENT_TABLES = 4
MODULE = "benchmarks.bench_sync_postgres"


def _table_names(tables: int) -> list[tuple[str, str]]:
    """(legacy table, target table) of each benchmark table: one table, or ``tables`` numbered ones."""
    if tables == 1:
        return [(LEGACY_TABLE, base.TARGET_TABLE)]
    return [(f"{LEGACY_TABLE}_{i}", f"{base.TARGET_TABLE}_{i}") for i in range(1, tables + 1)]


# ------------------------------------------------------------------------------------------------------------
# child process: one measurement
# ------------------------------------------------------------------------------------------------------------


def pg_sync_config(tables: int = 1, concurrency: int = 1) -> Any:
    """The benchmark's configuration with ``source_type: postgres`` (the columns of ``bench_sync``)."""
    from airflow_provider_refdata.config import ReferenceSyncConfig

    entries = []
    for legacy, target in _table_names(tables):
        entries.append(
            {
                "name": target,
                "target_schema": base.TARGET_SCHEMA,
                "target_table": target,
                "primary_key": base.COLUMNS[0][1],
                "source_type": "postgres",
                "sync_mode": "upsert",
                "source_config": {
                    "schema": "public",
                    "table": legacy,
                    "columns": [{"source": s, "target": t} for s, t in base.COLUMNS],
                    "incremental": {"updated_at_column": "updated_at", "lookback_seconds": 300},
                },
            }
        )
    return ReferenceSyncConfig.model_validate({"batch_size": 10_000, "concurrency": concurrency, "tables": entries})


def child_refdata_pg(pg: str, legacy: str, mode: str, tables: int, concurrency: int) -> dict[str, Any]:
    import psycopg

    from airflow_provider_refdata.services.source_postgres import PostgresSource
    from airflow_provider_refdata.services.sync import ReferenceSyncService

    config = pg_sync_config(tables, concurrency)
    sources = {"postgres": PostgresSource.from_dsn(legacy)}
    with psycopg.connect(pg) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        with PeakRss() as rss:
            t0, cpu0 = time.perf_counter(), time.process_time()
            results = ReferenceSyncService().sync_all(config, sources, conn, force_full=(mode != "incremental"))
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    failed = [r.error for r in results if r.error]
    if failed:
        raise SystemExit(f"refdata sync failed: {failed}")
    summed = {key: sum(getattr(r, key) for r in results) for key in ("rows_read", "rows_inserted", "rows_updated")}
    return {"seconds": seconds, "mem_mb": rss.growth_mb, "python_cpu_s": cpu, "result": summed}


# ------------------------------------------------------------------------------------------------------------
# parent: legacy data, orchestration
# ------------------------------------------------------------------------------------------------------------


def generate_legacy(legacy: str, rows: int, table: str = LEGACY_TABLE, offset: int = 0) -> float:
    """(Re)create a legacy table of ``rows`` rows inside PostgreSQL (``bench_sync``'s values); seconds."""
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(legacy, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS public."{table}"')
        conn.execute(
            f"""CREATE TABLE public."{table}" (
                plan_code varchar(16) PRIMARY KEY, plan_name varchar(100), plan_type varchar(20),
                client_name varchar(100), branch_code varchar(16), amount numeric(18,2), start_date date,
                updated_at timestamp NOT NULL)"""
        )
        conn.execute(
            f"""INSERT INTO public."{table}"
                SELECT 'P' || lpad(seq::text, 9, '0'), '年金计划 ' || seq,
                       (ARRAY['单一', '集合', '职业'])[1 + seq %% 3],
                       '客户' || (seq %% 50000), 'G' || (seq %% 500), (seq %% 100000) * 1.25,
                       date '2000-01-01' + (seq %% 9000)::int,
                       timestamp '2024-01-01' + (seq %% 86400) * interval '1 second'
                  FROM generate_series(%s::bigint, %s::bigint) AS seq""",
            (offset + 1, offset + rows),
        )
        conn.execute(f'CREATE INDEX ON public."{table}" (updated_at)')
        conn.execute(f'VACUUM ANALYZE public."{table}"')
        conn.execute("CHECKPOINT")
    return time.perf_counter() - t0


def server_cpu_seconds(server: Any) -> float:
    """CPU seconds a PostgreSQL server has used so far: the postmaster, its live processes (backends,
    writers) and the ones that have exited (counted in the postmaster's ``cutime``/``cstime``)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])

    def stat(pid: int | str) -> list[str] | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None  # exited meanwhile: its time is in the postmaster's cutime

    own = stat(postmaster) or []
    total = sum(int(own[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat(entry.name)) and int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


_change_round = 0


def change_one_percent(legacy: str, table: str = LEGACY_TABLE) -> None:
    """Change 1% of the rows (spread over the table) and move their updated_at past every watermark."""
    import psycopg

    global _change_round
    _change_round += 1
    with psycopg.connect(legacy, autocommit=True) as conn:
        conn.execute(
            f"""UPDATE public."{table}"
                   SET plan_name = '改名' || %s || ' ' || plan_code,
                       updated_at = timestamp '2025-01-01' + %s * interval '1 hour'
                 WHERE substr(plan_code, 2)::bigint %% 100 = %s""",
            (_change_round, _change_round, _change_round % 100),
        )
        conn.execute(f'VACUUM ANALYZE public."{table}"')  # no autovacuum surprises during the next run
        conn.execute("CHECKPOINT")


def run_pg_child(pg: Any, legacy: Any, mode: str, tables: int = 1, concurrency: int = 1) -> dict[str, Any]:
    """One measurement in a fresh process, with the CPU seconds each server used meanwhile."""
    args = ["--child", "--pg", pg.dsn, "--legacy", legacy.dsn, "--mode", mode]
    args += ["--tables", str(tables), "--concurrency", str(concurrency)]
    before = server_cpu_seconds(pg), server_cpu_seconds(legacy)
    out = base.run_module_child(MODULE, args, f"postgres {mode} ×{tables} c={concurrency}")
    out["warehouse_cpu_s"] = server_cpu_seconds(pg) - before[0]
    out["legacy_cpu_s"] = server_cpu_seconds(legacy) - before[1]
    return out


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "mem_mb": max(r["mem_mb"] for r in runs),
        "runs": [round(r["seconds"], 3) for r in runs],
        "result": runs[-1]["result"],
        "cpu_s": {key: statistics.median(r[f"{key}_cpu_s"] for r in runs) for key in ("python", "warehouse", "legacy")},
    }


def measure_size(pg_server: Any, legacy_server: Any, my_server: Any | None, rows: int, repeat: int) -> dict[str, Any]:
    """Both paths at one size, round by round (a MySQL round, then a PostgreSQL round), so that a change in
    the shared machine's load hits both alike; medians over the rounds."""
    pg, legacy = pg_server.dsn, legacy_server.dsn
    out: dict[str, Any] = {"rows": rows}
    generated = generate_legacy(legacy, rows)
    print(f"\n=== {rows:,} rows (legacy PostgreSQL table generated in {generated:.1f} s)", flush=True)
    mysql_rounds: list[dict[str, Any]] = []
    initial, full, incr = [], [], []
    for i in range(repeat):
        if my_server is not None:
            mysql_rounds.append(base.measure_size(pg, my_server.dsn, my_server, rows, 1, False))
        base.reset_target(pg, base.TARGET_TABLE)
        initial.append(run_pg_child(pg_server, legacy_server, "initial"))
        base.vacuum(pg)
        change_one_percent(legacy)
        full.append(run_pg_child(pg_server, legacy_server, "full"))
        change_one_percent(legacy)
        incr.append(run_pg_child(pg_server, legacy_server, "incremental"))
        print(
            f"  postgres run {i + 1}: initial {initial[-1]['seconds']:.2f} s, full 1% {full[-1]['seconds']:.2f} s, "
            f"incremental 1% {incr[-1]['seconds']:.2f} s",
            flush=True,
        )
    out["postgres"] = {"initial": _median(initial), "full": _median(full), "incremental": _median(incr)}
    res_full, res_incr = out["postgres"]["full"]["result"], out["postgres"]["incremental"]["result"]
    print(
        f"  postgres counts: full re-sync read {res_full['rows_read']:,}, updated {res_full['rows_updated']:,}; "
        f"incremental read {res_incr['rows_read']:,}, updated {res_incr['rows_updated']:,}",
        flush=True,
    )
    if mysql_rounds:
        out["mysql"] = {
            key: {
                "seconds": statistics.median(r[key]["seconds"] for r in mysql_rounds),
                "mem_mb": max(r[key]["mem_mb"] for r in mysql_rounds),
                "runs": [run for r in mysql_rounds for run in r[key]["runs"]],
                "result": mysql_rounds[-1][key]["result"],
            }
            for key in ("refdata_initial", "refdata_full", "refdata_incremental")
        }
    return out


def measure_concurrency(pg_server: Any, legacy_server: Any, rows: int, repeat: int) -> dict[str, Any]:
    pg, legacy = pg_server.dsn, legacy_server.dsn
    per_table = rows // CONCURRENT_TABLES
    names = _table_names(CONCURRENT_TABLES)
    for i, (table, _) in enumerate(names):
        generate_legacy(legacy, per_table, table, offset=i * per_table)
    out: dict[str, Any] = {"tables": CONCURRENT_TABLES, "rows_per_table": per_table}
    print(f"\n=== concurrency: {CONCURRENT_TABLES} tables of {per_table:,} rows", flush=True)
    levels = (1, CONCURRENT_TABLES)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {c: {"initial": [], "full": []} for c in levels}
    for i in range(repeat):
        for concurrency in levels:
            for _, target in names:
                base.reset_target(pg, target)
            runs[concurrency]["initial"].append(
                run_pg_child(pg_server, legacy_server, "initial", CONCURRENT_TABLES, concurrency)
            )
            for table, target in names:
                base.vacuum(pg, target)
                change_one_percent(legacy, table)
            runs[concurrency]["full"].append(
                run_pg_child(pg_server, legacy_server, "full", CONCURRENT_TABLES, concurrency)
            )
            last = {key: values[-1]["seconds"] for key, values in runs[concurrency].items()}
            print(
                f"  round {i + 1}, concurrency {concurrency}: initial {last['initial']:.2f} s, "
                f"full 1% {last['full']:.2f} s",
                flush=True,
            )
    for concurrency in levels:
        out[f"c{concurrency}"] = {key: _median(values) for key, values in runs[concurrency].items()}
    return out


# ------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}"


def report(sizes: list[dict[str, Any]], concurrency: dict[str, Any] | None) -> str:
    lines = [
        "| rows | legacy source | initial load | full re-sync 1% | incremental 1% | rows/s initial · full · incr. "
        "| peak RSS growth |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        n = f"{s['rows']:,}"
        paths = [("PostgreSQL (`PostgresSource`, COPY pass-through)", s["postgres"])]
        if "mysql" in s:
            m = s["mysql"]
            mysql = {
                "initial": m["refdata_initial"],
                "full": m["refdata_full"],
                "incremental": m["refdata_incremental"],
            }
            paths.append(("MySQL/MariaDB (`MySqlSource`)", mysql))
        for label, p in paths:
            ini, full, inc = p["initial"], p["full"], p["incremental"]
            read_full, read_inc = full["result"]["rows_read"], inc["result"]["rows_read"]
            rates = " · ".join(
                (
                    _rate(s["rows"], ini["seconds"]),
                    _rate(read_full, full["seconds"]),
                    _rate(read_inc, inc["seconds"]),
                )
            )
            mem = max(ini["mem_mb"], full["mem_mb"], inc["mem_mb"])
            lines.append(
                f"| {n} | {label} | {ini['seconds']:.2f} s | {full['seconds']:.2f} s | {inc['seconds']:.2f} s | "
                f"{rates} | {mem:.0f} MiB |"
            )
    lines += [
        "",
        "| PostgreSQL path, CPU seconds (median) | wall | Python (sync process) | warehouse server | legacy server "
        "| sum |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        for key, label in (("initial", "initial load"), ("full", "full re-sync 1%"), ("incremental", "incremental 1%")):
            entry = s["postgres"][key]
            cpu = entry["cpu_s"]
            lines.append(
                f"| {s['rows']:,} rows, {label} | {entry['seconds']:.2f} s | {cpu['python']:.2f} | "
                f"{cpu['warehouse']:.2f} | {cpu['legacy']:.2f} | {sum(cpu.values()):.2f} |"
            )
    if concurrency:
        total = concurrency["tables"] * concurrency["rows_per_table"]
        lines += [
            "",
            f"| {concurrency['tables']} tables × {concurrency['rows_per_table']:,} rows | initial load | rows/s "
            "| full re-sync 1% | rows/s | CPU s (initial: Python · warehouse · legacy) | peak RSS growth |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key in ("c1", f"c{concurrency['tables']}"):
            c = concurrency[key]
            cpu = " · ".join(f"{c['initial']['cpu_s'][k]:.2f}" for k in ("python", "warehouse", "legacy"))
            lines.append(
                f"| `concurrency: {key[1:]}` | {c['initial']['seconds']:.2f} s | "
                f"{_rate(total, c['initial']['seconds'])} | {c['full']['seconds']:.2f} s | "
                f"{_rate(total, c['full']['seconds'])} | {cpu} | "
                f"{max(c['initial']['mem_mb'], c['full']['mem_mb']):.0f} MiB |"
            )
    return "\n".join(lines)


def check_targets(sizes: list[dict[str, Any]], concurrency: dict[str, Any] | None) -> list[str]:
    checks = []
    big = max(sizes, key=lambda s: s["rows"])
    ini = big["postgres"]["initial"]["seconds"]
    checks.append(
        f"PostgreSQL initial ≤ 1.2 s at {big['rows']:,} rows: {ini:.2f} s → {'PASS' if ini <= 1.2 else 'FAIL'}"
    )
    if "mysql" in big:
        for key, label in (("initial", "initial"), ("full", "full re-sync 1%"), ("incremental", "incremental 1%")):
            pg_s, my_s = big["postgres"][key]["seconds"], big["mysql"][f"refdata_{key}"]["seconds"]
            verdict = "PASS" if pg_s <= my_s else "FAIL"
            checks.append(f"PostgreSQL {label} at least as fast as MySQL: {pg_s:.2f} s vs {my_s:.2f} s → {verdict}")
    mem = max(big["postgres"][k]["mem_mb"] for k in ("initial", "full", "incremental"))
    checks.append(f"PostgreSQL peak memory growth ≤ 100 MiB: {mem:.0f} MiB → {'PASS' if mem <= 100 else 'FAIL'}")
    if concurrency:
        n = concurrency["tables"]
        for key, label in (("initial", "initial load"), ("full", "full re-sync 1%")):
            one, many = concurrency["c1"][key]["seconds"], concurrency[f"c{n}"][key]["seconds"]
            verdict = "PASS" if many < one else "FAIL"
            checks.append(
                f"concurrency {n} faster than 1 ({label}, {n} × {concurrency['rows_per_table']:,} rows): "
                f"{many:.2f} s vs {one:.2f} s ({one / many:.2f}×) → {verdict}"
            )
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="source sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median)")
    parser.add_argument("--no-mysql", action="store_true", help="skip the MySQL path")
    parser.add_argument("--no-concurrency", action="store_true", help="skip the concurrency measurement")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pg", help=argparse.SUPPRESS)
    parser.add_argument("--legacy", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="", help=argparse.SUPPRESS)
    parser.add_argument("--tables", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child_refdata_pg(args.pg, args.legacy, args.mode, args.tables, args.concurrency)))
        return 0

    from devtools.servers import MariaDbServer, PostgresServer

    started = time.perf_counter()
    concurrency = None
    with tempfile.TemporaryDirectory(prefix="refdata-bench-sync-pg-") as tmp:
        root = Path(tmp)
        pg_server = PostgresServer(root / "postgres", database="bench")
        legacy_server = PostgresServer(root / "legacy-postgres", database="legacy")
        my_server = MariaDbServer(root / "mariadb", database="legacy")
        try:
            pg_server.start()
            legacy_server.start()
            if not args.no_mysql:
                my_server.start()
            pg = pg_server.dsn
            versions = base._server_versions(pg, my_server) if not args.no_mysql else "PostgreSQL only"
            print(f"machine: {base.machine()}\nservers: {versions} (legacy PostgreSQL: a second server)", flush=True)
            mysql = None if args.no_mysql else my_server
            sizes = [measure_size(pg_server, legacy_server, mysql, rows, args.repeat) for rows in sorted(args.rows)]
            if not args.no_concurrency:
                concurrency = measure_concurrency(pg_server, legacy_server, max(args.rows), args.repeat)
        finally:
            my_server.stop()
            legacy_server.stop()
            pg_server.stop()
    print("\n" + report(sizes, concurrency) + "\n")
    for line in check_targets(sizes, concurrency):
        print(line)
    print(
        f"\nmachine: {base.machine()}\nservers: {versions}\ntotal benchmark time: {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
