"""Review-file benchmark: ``apply_review_file`` of a 10,000-row review file beside a naive per-row baseline.

``python -m benchmarks review_apply`` (or ``python -m benchmarks.bench_review_apply --rows 10000 --repeat 3``).

It starts its own throwaway PostgreSQL (``devtools.servers.PostgresServer``) in a temporary folder and stops it
at the end.  Before every measured run the data set is rebuilt in SQL (outside the timing):

* ``bench.年金计划`` (Chinese identifiers, tracking columns): ``--authoritative`` authoritative rows and
  ``--rows`` open placeholders (auto-derived, in review, with their ``refdata.placeholder`` rows);
* ``bench.组合计划``: a real FK to the plan — one portfolio per remapped placeholder, one per authoritative row;
* ``bench.规模明细``: a fact table (index on its plan code) named in ``fact_tables`` — ``--facts`` rows on
  authoritative plans plus 5 per approved and 5 per remapped placeholder.

The review file (CSV, UTF-8 with BOM, in the export's layout) has one row per placeholder: 60% ``approve``
(half of them with an edited name and amount), 20% ``reject`` (unreferenced keys), 20% ``remap`` to an
authoritative key (5 fact rows and one portfolio each to rewrite).

* ``refdata`` — ``apply_review_file(conn, path, actor=…, foreign_keys=[fk with fact_tables])``: read the file
  once, COPY its rows into a stage, validate and apply set-based (fixed number of statements);
* ``refdata, re-apply`` — the same file again: every row ``unchanged`` (the idempotency check's cost);
* ``refdata, dry run`` — validation and counts only;
* ``per_row`` — the naive baseline: the same file read the same way, then per row a ``SELECT … FOR UPDATE``,
  the reference checks, the ``UPDATE``/``DELETE``, the fact and child rewrites, the audit row, the
  placeholder update and the alias (5–8 statements per row), in one transaction.

Both approaches end in the same state (rows left, fact rows rewritten, audit rows: checked).  Peak memory is
RSS growth during the call (psutil thread, 5 ms).  The target (issue 11): ≤ 5 s for 10,000 rows.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from airflow_provider_refdata.services.review_file import PROVENANCE_COLUMNS, STEWARD_COLUMNS, TABLE_COLUMN
from benchmarks.memory import PeakRss

SCHEMA = "bench"
PLAN, PORTFOLIO, FACT = "年金计划", "组合计划", "规模明细"
TABLE = f"{SCHEMA}.{PLAN}"
TARGET_SECONDS = 5.0
TARGET_ROWS = 10_000
TRACKING = (
    "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
    "_derived_from_domain varchar(64), _derived_at timestamptz"
)
#: The export's layout (services/review_file.py): steward columns, key, business columns, provenance, table.
HEADER = [*STEWARD_COLUMNS, "年金计划号", "计划名称", "计划类型", "规模", "成立日期", *PROVENANCE_COLUMNS, TABLE_COLUMN]


def decision(g: int, authoritative: int) -> tuple[str, str | None]:
    """The action of placeholder ``g`` and its remap target."""
    kind = g % 10
    if kind < 6:
        return "approve", None
    if kind < 8:
        return "reject", None
    return "remap", f"A{(g % authoritative) + 1:07d}"


def setup(dsn: str, rows: int, authoritative: int, facts: int) -> None:
    import psycopg

    from airflow_provider_refdata.warehouse.state import ensure_state_tables

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        ensure_state_tables(conn)
        conn.execute("TRUNCATE refdata.placeholder, refdata.review_log, refdata.key_alias")
        conn.execute(
            f'CREATE TABLE {SCHEMA}."{PLAN}" ("年金计划号" varchar(32) PRIMARY KEY, "计划名称" varchar(200), '
            f'"计划类型" varchar(50), "规模" numeric(18,2), "成立日期" date, {TRACKING})'
        )
        conn.execute(
            f"""INSERT INTO {SCHEMA}."{PLAN}" SELECT 'A' || lpad(g::text, 7, '0'), '权威计划' || g, '单一计划',
                       g * 10, DATE '2020-01-01' + (g % 1000)
                  FROM generate_series(1, {authoritative}) AS g"""
        )
        conn.execute(
            f"""INSERT INTO {SCHEMA}."{PLAN}" SELECT 'P' || lpad(g::text, 7, '0'), '推导计划' || g, '集合计划',
                       NULL, NULL, 'auto_derived', true, 'annuity_performance', now() - make_interval(secs => g)
                  FROM generate_series(1, {rows}) AS g"""
        )
        conn.execute(
            f'CREATE TABLE {SCHEMA}."{PORTFOLIO}" ("组合代码" varchar(32) PRIMARY KEY, '
            f'"年金计划号" varchar(32) REFERENCES {SCHEMA}."{PLAN}" ("年金计划号"))'
        )
        conn.execute(
            f"""INSERT INTO {SCHEMA}."{PORTFOLIO}"
                SELECT 'QA' || g, 'A' || lpad(g::text, 7, '0') FROM generate_series(1, {authoritative}) AS g
                UNION ALL
                SELECT 'QP' || g, 'P' || lpad(g::text, 7, '0') FROM generate_series(1, {rows}) AS g
                 WHERE g % 10 >= 8"""
        )
        conn.execute(
            f'CREATE TABLE {SCHEMA}."{FACT}" (id bigserial PRIMARY KEY, "计划代码" varchar(32), "金额" numeric)'
        )
        conn.execute(
            f"""INSERT INTO {SCHEMA}."{FACT}" ("计划代码", "金额")
                SELECT 'A' || lpad((1 + g % {authoritative})::text, 7, '0'), g FROM generate_series(1, {facts}) AS g
                UNION ALL
                SELECT 'P' || lpad(g::text, 7, '0'), i FROM generate_series(1, {rows}) AS g, generate_series(1, 5) AS i
                 WHERE g % 10 < 6 OR g % 10 >= 8"""
        )
        conn.execute(f'CREATE INDEX ON {SCHEMA}."{FACT}" ("计划代码")')
        conn.execute(f'CREATE INDEX ON {SCHEMA}."{PORTFOLIO}" ("年金计划号")')
        conn.execute(
            f"""INSERT INTO refdata.placeholder (table_name, key, first_seen_at, first_seen_run, last_seen_at,
                                                 last_seen_run, domains, fact_rows_total, fact_rows_last)
                SELECT %s, "年金计划号", _derived_at, 'bench', _derived_at, 'bench', ARRAY[_derived_from_domain], 5, 5
                  FROM {SCHEMA}."{PLAN}" WHERE _source = 'auto_derived'""",
            (TABLE,),
        )
        for table in (PLAN, PORTFOLIO, FACT):
            conn.execute(f'VACUUM ANALYZE {SCHEMA}."{table}"')
        conn.execute("VACUUM ANALYZE refdata.placeholder")


def write_file(path: Path, rows: int, authoritative: int) -> None:
    """The steward's file: the export's layout, every placeholder decided."""
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for g in range(1, rows + 1):
            action, target = decision(g, authoritative)
            edited = action == "approve" and g % 2 == 0
            name = f"审核后的计划{g}" if edited else f"推导计划{g}"
            amount = f"{g}.50" if edited else ""
            provenance = ["5", "5", "2026-12-01 08:00:00+08", "2026-12-01 08:00:00+08", "annuity_performance"]
            writer.writerow(
                [action, target or "", f"P{g:07d}", name, "集合计划", amount, "", *provenance, "annuity_performance"]
                + ["2026-12-01 08:00:00+08", TABLE]
            )


def fk_configs():
    from airflow_provider_refdata.config import ForeignKeyConfig

    return [
        ForeignKeyConfig.model_validate(
            {
                "name": "fk_plan",
                "source_column": "计划代码",
                "target_schema": SCHEMA,
                "target_table": PLAN,
                "target_key": "年金计划号",
                "fact_tables": [f"{SCHEMA}.{FACT}.计划代码"],
            }
        )
    ]


def per_row_baseline(conn, path: Path, actor: str) -> dict[str, int]:
    """What a review applier written without care does: every decision on its own, 5–8 statements per row."""
    from airflow_provider_refdata.services.review_file import read_review_file
    from airflow_provider_refdata.warehouse.state import lock_name

    review_id = str(uuid.uuid4())
    plan, fact, child = f'{SCHEMA}."{PLAN}"', f'{SCHEMA}."{FACT}"', f'{SCHEMA}."{PORTFOLIO}"'
    counts = {"approve": 0, "reject": 0, "remap": 0, "fact_rows": 0}
    log = (
        "INSERT INTO refdata.review_log (review_id, table_name, key, action, actor, before, after, remap_to,"
        " source_file) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    close = (
        "UPDATE refdata.placeholder SET resolution = %s, resolved_at = now(), resolved_by = %s"
        " WHERE table_name = %s AND key = %s"
    )
    with conn.transaction():
        lock_name(conn, TABLE)
        for _line, cells in read_review_file(path):
            action, key, target = cells["action"], cells["年金计划号"], cells["remap_to"]
            row = conn.execute(
                f'SELECT to_jsonb(t)::text, _source FROM {plan} t WHERE "年金计划号" = %s FOR UPDATE', (key,)
            ).fetchone()
            if row is None or row[1] != "auto_derived":
                continue
            if action == "approve":
                after = conn.execute(
                    f'UPDATE {plan} t SET "计划名称" = %s, "规模" = %s::numeric, _needs_review = false'
                    f' WHERE "年金计划号" = %s RETURNING to_jsonb(t)::text',
                    (cells["计划名称"], cells["规模"], key),
                ).fetchone()[0]
                conn.execute(log, (review_id, TABLE, key, "approve", actor, row[0], after, None, str(path)))
                conn.execute(close, ("approved", actor, TABLE, key))
            elif action == "reject":
                held = conn.execute(f'SELECT count(*) FROM {child} WHERE "年金计划号" = %s', (key,)).fetchone()[0]
                held += conn.execute(f'SELECT count(*) FROM {fact} WHERE "计划代码" = %s', (key,)).fetchone()[0]
                if held:
                    continue
                conn.execute(f'DELETE FROM {plan} WHERE "年金计划号" = %s', (key,))
                conn.execute(log, (review_id, TABLE, key, "reject", actor, row[0], None, None, str(path)))
                conn.execute(close, ("rejected", actor, TABLE, key))
            elif action == "remap":
                if conn.execute(f'SELECT 1 FROM {plan} WHERE "年金计划号" = %s', (target,)).fetchone() is None:
                    continue
                counts["fact_rows"] += conn.execute(
                    f'UPDATE {fact} SET "计划代码" = %s WHERE "计划代码" = %s', (target, key)
                ).rowcount
                counts["fact_rows"] += conn.execute(
                    f'UPDATE {child} SET "年金计划号" = %s WHERE "年金计划号" = %s', (target, key)
                ).rowcount
                conn.execute(f'DELETE FROM {plan} WHERE "年金计划号" = %s', (key,))
                conn.execute(log, (review_id, TABLE, key, "remap", actor, row[0], None, target, str(path)))
                conn.execute(close, ("remapped", actor, TABLE, key))
                conn.execute(
                    "INSERT INTO refdata.key_alias (table_name, from_key, to_key, created_by, review_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (TABLE, key, target, actor, review_id),
                )
            counts[action] += 1
    return counts


def final_state(conn) -> tuple:
    with conn.transaction():
        return (
            conn.execute(f'SELECT count(*), count(*) FILTER (WHERE _needs_review) FROM {SCHEMA}."{PLAN}"').fetchone(),
            conn.execute(f'SELECT count(*) FROM {SCHEMA}."{FACT}" WHERE "计划代码" LIKE \'P%%\'').fetchone()[0],
            conn.execute("SELECT action, count(*) FROM refdata.review_log GROUP BY 1 ORDER BY 1").fetchall(),
            conn.execute("SELECT count(*) FROM refdata.key_alias").fetchone()[0],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_review_apply", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=TARGET_ROWS, help="review-file rows (= placeholders)")
    parser.add_argument("--authoritative", type=int, default=100_000)
    parser.add_argument("--facts", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import psycopg

    from airflow_provider_refdata.services.review import apply_review_file
    from devtools.servers import PostgresServer

    actor = "bench"
    measured: dict[str, list[tuple[float, float]]] = {}
    states: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="refdata-bench-review-") as tmp:
        path = Path(tmp) / "review.csv"
        write_file(path, args.rows, args.authoritative)
        server = PostgresServer(Path(tmp) / "postgres", database="bench")
        try:
            server.start()
            with psycopg.connect(server.dsn) as conn:
                print(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]} on loopback", flush=True)
            configs = fk_configs()
            for run in range(args.repeat):
                started = time.perf_counter()
                setup(server.dsn, args.rows, args.authoritative, args.facts)
                print(f"run {run + 1}: data set rebuilt in {time.perf_counter() - started:.1f} s", flush=True)
                with psycopg.connect(server.dsn) as conn:
                    if run == 0:  # warm-up of imports and plans on a throwaway copy is the dry run itself
                        apply_review_file(conn, path, actor=actor, dry_run=True, foreign_keys=configs)
                    for label, kwargs in (
                        ("refdata, dry run", {"dry_run": True}),
                        ("refdata", {}),
                        ("refdata, re-apply (all unchanged)", {}),
                    ):
                        with PeakRss() as rss:
                            began = time.perf_counter()
                            result = apply_review_file(conn, path, actor=actor, foreign_keys=configs, **kwargs)
                            elapsed = time.perf_counter() - began
                        assert result.errors == [], result.errors[:3]
                        measured.setdefault(label, []).append((elapsed, rss.growth_mb))
                        if label == "refdata":
                            counts = (result.approved, result.rejected, result.remapped)
                            rewritten = sum(result.fact_rows_rewritten.values())
                            print(f"  refdata: {counts} approve/reject/remap, {rewritten} fact rows", flush=True)
                    states["refdata"] = final_state(conn)
            setup(server.dsn, args.rows, args.authoritative, args.facts)
            with psycopg.connect(server.dsn) as conn:
                with PeakRss() as rss:
                    began = time.perf_counter()
                    counts = per_row_baseline(conn, path, actor)
                    elapsed = time.perf_counter() - began
                measured["per_row baseline"] = [(elapsed, rss.growth_mb)]
                print(f"  per_row: {counts}", flush=True)
                states["per_row"] = final_state(conn)
        finally:
            server.stop()

    assert states["refdata"] == states["per_row"], states
    print(f"\nsame final state: {states['refdata']}")
    print(f"\n| approach ({args.rows:,}-row review file) | median s | min–max s | rows/s | peak RSS growth MB |")
    print("|---|---:|---:|---:|---:|")
    for label, runs in measured.items():
        times = [t for t, _ in runs]
        median = statistics.median(times)
        print(
            f"| {label} | {median:.3f} | {min(times):.3f}–{max(times):.3f} | {args.rows / median:,.0f} |"
            f" {max(m for _, m in runs):.1f} |"
        )
    median = statistics.median(t for t, _ in measured["refdata"])
    baseline = measured["per_row baseline"][0][0]
    if args.rows != TARGET_ROWS:
        print(
            f"apply of a {args.rows:,}-row review file {median:.3f} s (the target is for {TARGET_ROWS:,} rows); "
            f"{baseline / median:.1f}× faster than the per-row baseline"
        )
        return 0
    ok = median <= TARGET_SECONDS
    print(
        f"{'PASS' if ok else 'FAIL'}: apply of a {args.rows:,}-row review file {median:.3f} s "
        f"(target ≤ {TARGET_SECONDS} s); {baseline / median:.1f}× faster than the per-row baseline"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
