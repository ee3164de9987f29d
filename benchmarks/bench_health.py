"""Health benchmark: ``ReferenceHealthService.table_health`` of 4 tables of 1,000,000 rows beside a naive baseline.

``python -m benchmarks health`` (or ``python -m benchmarks.bench_health --rows 1000000 --repeat 5``).

It starts its own throwaway PostgreSQL (``devtools.servers.PostgresServer``) in a temporary folder and stops it
at the end.  Four reference tables (Chinese identifiers, tracking columns) of ``--rows`` rows each are generated
in SQL: 90% authoritative, 10% auto-derived from three domains with ``_derived_at`` spread over 60 days, 80%
of those in review.  No index on the tracking columns (as the provider creates them).

* ``refdata`` — ``ReferenceHealthService().table_health(conn, tables)``: one grouped aggregate per table
  (each in its own transaction), plus the snapshot ``INSERT`` into ``refdata.health_snapshot``; run once
  without ``refdata.placeholder`` (open placeholders from the tracking columns) and once with it (10% of the
  rows as open placeholders, from provenance);
* ``per_metric`` — the naive baseline: one ``SELECT count(*) … WHERE …`` (or ``min``/``max``) per metric per
  table (total, authoritative, auto-derived, needs review, open, oldest, newest, 4 buckets, unknown, one per
  domain): 15 queries per table, each a scan.

Each approach is timed ``--repeat`` times after one warm-up call (plans, buffers); the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SCHEMA = "bench"
TABLES = ["年金计划", "组合计划", "组织架构", "产品线"]
DOMAINS = ["annuity_performance", "annuity_income", "payroll"]
TARGET_SECONDS = 1.0
TRACKING_DDL = (
    "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
    "_derived_from_domain varchar(64), _derived_at timestamptz"
)


def setup(dsn: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for table in TABLES:
            conn.execute(
                f'CREATE TABLE {SCHEMA}."{table}" ("代码" varchar(32) PRIMARY KEY, "名称" varchar(200), {TRACKING_DDL})'
            )
            conn.execute(
                f"""
                INSERT INTO {SCHEMA}."{table}"
                SELECT 'K' || lpad(g::text, 8, '0'), '名称' || g,
                       CASE WHEN g % 10 = 0 THEN 'auto_derived' ELSE 'authoritative' END,
                       g % 10 = 0 AND g % 50 <> 0,
                       CASE WHEN g % 10 = 0 THEN (ARRAY{DOMAINS!r})[1 + (g / 10) % 3] END,
                       CASE WHEN g % 10 = 0 THEN now() - make_interval(secs => (g % 5184000)) END
                  FROM generate_series(1, {rows}) AS g
                """
            )
            conn.execute(f'VACUUM ANALYZE {SCHEMA}."{table}"')


def add_placeholders(dsn: str) -> int:
    """refdata.placeholder with the open auto-derived keys of every table (as provenance would record them)."""
    import psycopg

    from airflow_provider_refdata.warehouse.state import ensure_state_tables

    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_state_tables(conn)
        conn.execute("TRUNCATE refdata.placeholder")
        for table in TABLES:
            conn.execute(
                f"""
                INSERT INTO refdata.placeholder (table_name, key, first_seen_at, first_seen_run, last_seen_at,
                                                 last_seen_run, domains, fact_rows_total, fact_rows_last)
                SELECT %s, "代码", _derived_at, 'bench', _derived_at, 'bench', ARRAY[_derived_from_domain], 10, 1
                  FROM {SCHEMA}."{table}" WHERE _source = 'auto_derived' AND _needs_review
                """,
                (f"{SCHEMA}.{table}",),
            )
        conn.execute("VACUUM ANALYZE refdata.placeholder")
        return conn.execute("SELECT count(*) FROM refdata.placeholder").fetchone()[0]


def per_metric_baseline(conn, tables: list[str]) -> dict:
    """One query per metric per table: what a health page written without care would do."""
    out = {}
    open_ = "_source = 'auto_derived' AND _needs_review"
    for name in tables:
        schema, table = name.split(".", 1)
        ref = f'{schema}."{table}"'
        metrics = {}
        with conn.transaction():
            for metric, where in [
                ("total", "true"),
                ("authoritative", "_source = 'authoritative'"),
                ("auto_derived", "_source = 'auto_derived'"),
                ("needs_review", "_needs_review"),
                ("open", open_),
                ("up_to_1d", f"{open_} AND _derived_at >= now() - interval '1 day'"),
                (
                    "up_to_7d",
                    f"{open_} AND _derived_at < now() - interval '1 day' AND _derived_at >= now() - interval '7 days'",
                ),
                (
                    "up_to_30d",
                    f"{open_} AND _derived_at < now() - interval '7 days'"
                    " AND _derived_at >= now() - interval '30 days'",
                ),
                ("older", f"{open_} AND _derived_at < now() - interval '30 days'"),
                ("unknown", f"{open_} AND _derived_at IS NULL"),
                *[(d, f"_source = 'auto_derived' AND _derived_from_domain = '{d}'") for d in DOMAINS],
            ]:
                metrics[metric] = conn.execute(f"SELECT count(*) FROM {ref} WHERE {where}").fetchone()[0]
            metrics["oldest"] = conn.execute(f"SELECT min(_derived_at) FROM {ref} WHERE {open_}").fetchone()[0]
            metrics["newest"] = conn.execute(f"SELECT max(_derived_at) FROM {ref} WHERE {open_}").fetchone()[0]
        out[name] = metrics
    return out


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_health", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import psycopg

    from airflow_provider_refdata.services.health import ReferenceHealthService
    from devtools.servers import PostgresServer

    names = [f"{SCHEMA}.{t}" for t in TABLES]
    service = ReferenceHealthService()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="refdata-bench-health-") as tmp:
        server = PostgresServer(Path(tmp) / "postgres", database="bench")
        try:
            server.start()
            with psycopg.connect(server.dsn) as conn:
                print(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]} on loopback", flush=True)
            started = time.perf_counter()
            setup(server.dsn, args.rows)
            print(f"4 tables of {args.rows:,} rows generated in {time.perf_counter() - started:.1f} s", flush=True)
            with psycopg.connect(server.dsn) as conn:
                conn.execute("DROP TABLE IF EXISTS refdata.placeholder")
                conn.commit()
                check = service.table_health(conn, names, store=False)
                assert all(h.ok for h in check), [h.error for h in check]
                base = per_metric_baseline(conn, names)
                for h in check:  # the two approaches agree
                    b = base[h.table]
                    assert (h.total_rows, h.auto_derived_rows, h.needs_review_rows, h.open_placeholders) == (
                        b["total"],
                        b["auto_derived"],
                        b["needs_review"],
                        b["open"],
                    ), (h, b)
                results["refdata, tracking columns"] = timed(lambda: service.table_health(conn, names), args.repeat)
                results["per_metric baseline (15 queries per table)"] = timed(
                    lambda: per_metric_baseline(conn, names), args.repeat
                )
                placeholders = add_placeholders(server.dsn)
                print(f"refdata.placeholder: {placeholders:,} open placeholders", flush=True)
                check = service.table_health(conn, names, store=False)
                assert all(h.ok and h.placeholder_source == "provenance" for h in check)
                assert sum(h.open_placeholders for h in check) == placeholders
                results["refdata, with refdata.placeholder"] = timed(
                    lambda: service.table_health(conn, names), args.repeat
                )
        finally:
            server.stop()

    print(f"\n| approach (4 tables × {args.rows:,} rows) | median s ({args.repeat} runs) | min–max s |")
    print("|---|---:|---:|")
    for label, runs in results.items():
        print(f"| {label} | {statistics.median(runs):.3f} | {min(runs):.3f}–{max(runs):.3f} |")
    failures = 0
    for label in ("refdata, tracking columns", "refdata, with refdata.placeholder"):
        median = statistics.median(results[label])
        ok = median <= TARGET_SECONDS
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}: {label}: health of 4 tables {median:.3f} s (target ≤ {TARGET_SECONDS} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
