"""Coverage-and-backfill benchmark: ``HybridReferenceService.ensure_references`` beside a per-value baseline.

``python -m benchmarks hybrid`` (or ``python -m benchmarks.bench_hybrid --rows 10000 100000 1000000 --repeat 3``).

It starts its own throwaway PostgreSQL (``devtools.servers.PostgresServer``) in a temporary folder and stops it
at the end.  Four reference tables of 100,000 rows each (plan, portfolio with a real FK to plan,
organization, product line; Chinese identifiers, tracking columns) are generated in SQL.  Fact frames of
10K, 100K and 1M rows have four FK columns plus their backfill sources; per FK about 5% of the distinct
values are missing from the reference table.

Every measurement runs in a **fresh Python process** against a **fresh state** (the auto-derived rows of the
previous run deleted, tables vacuumed): the child builds the frame (seeded, outside the timing), makes one
warm-up call on a 10-row frame whose keys all exist (imports, plan caches), then times one call end to end —
coverage, backfill, ratios and the run-log row — while a psutil thread samples RSS every 5 ms; memory
growth = peak RSS during the call − RSS before it.

* ``refdata`` — ``HybridReferenceService().ensure_references(...)``: COPY of the distinct keys into a temp
  stage, one join for coverage, derivation of the missing keys only, COPY + ``INSERT … ON CONFLICT DO
  NOTHING``, one ratio query per table, one run-log row;
* ``per_value`` — the naive baseline (10K only): the same vectorised derivation, then one existence query
  per distinct value and one ``INSERT`` per missing value.
* key aliases (issue 11 §5, at ``--alias-rows``, default 1M): ``no_alias_step`` is ``refdata`` with the alias
  step switched off (the code before it), so ``refdata`` − ``no_alias_step`` is what the step costs when no
  alias exists (``refdata.key_alias`` present, no row for these tables); ``aliases`` has ``ALIASES`` alias
  rows (a quarter per reference table, each to an existing key) and 1% of each FK column's fact rows holding
  one of their ``from_key``.  The alias step's own time (read + mapping, inside the call) is printed too.

The issue-5 targets are checked and printed as PASS/FAIL, followed by a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_sync import run_module_child
from benchmarks.memory import PeakRss

SCHEMA = "bench"
DOMAIN = "annuity_performance"
REF_ROWS = 100_000
MISSING_SHARE = 0.05
TARGETS = {10_000: 0.25, 1_000_000: 2.0}
MEMORY_TARGET_MB = 400
ALIASES = 1_000
ALIAS_SHARE = 0.01
FK_COLUMNS = [
    ("计划代码", "年金计划", "P"),
    ("组合代码", "组合计划", "Q"),
    ("机构代码", "组织架构", "G"),
    ("产品线代码", "产品线", "L"),
]

# (table, key, prefix, DDL of the other columns)
TABLES = [
    ("年金计划", "年金计划号", "P", '"计划名称" varchar(200), "主拓代码" varchar(32), "管理资格" varchar(200)'),
    ("组合计划", "组合代码", "Q", '"组合名称" varchar(200), "年金计划号" varchar(32) REFERENCES bench."年金计划"'),
    ("组织架构", "机构代码", "G", '"机构名称" varchar(200)'),
    ("产品线", "产品线代码", "L", '"产品线名称" varchar(200)'),
]
TRACKING_DDL = (
    "_source varchar(20) NOT NULL DEFAULT 'authoritative', _needs_review boolean NOT NULL DEFAULT false, "
    "_derived_from_domain varchar(64), _derived_at timestamptz"
)


def fk_configs() -> list:
    from airflow_provider_refdata.config import ForeignKeyConfig

    def fk(name: str, column: str, table: str, key: str, columns: list[dict], **extra: Any) -> ForeignKeyConfig:
        return ForeignKeyConfig(
            name=name,
            source_column=column,
            target_schema=SCHEMA,
            target_table=table,
            target_key=key,
            backfill_columns=columns,
            **extra,
        )

    return [
        fk(
            "fk_plan",
            "计划代码",
            "年金计划",
            "年金计划号",
            [
                {"source": "计划名称", "target": "计划名称"},
                {
                    "source": "主拓代码",
                    "target": "主拓代码",
                    "aggregation": {"type": "max_by", "order_column": "期末资产规模"},
                },
                {"source": "业务类型", "target": "管理资格", "aggregation": {"type": "concat_distinct"}},
            ],
        ),
        fk(
            "fk_portfolio",
            "组合代码",
            "组合计划",
            "组合代码",
            [{"source": "组合名称", "target": "组合名称"}, {"source": "计划代码", "target": "年金计划号"}],
            depends_on=["fk_plan"],
        ),
        fk(
            "fk_organization",
            "机构代码",
            "组织架构",
            "机构代码",
            [{"source": "机构名称", "target": "机构名称"}],
            skip_blank_values=True,
        ),
        fk(
            "fk_product_line",
            "产品线代码",
            "产品线",
            "产品线代码",
            [
                {
                    "source": "产品线代码",
                    "target": "产品线名称",
                    "aggregation": {"type": "template", "template": "待确认 {产品线代码}"},
                }
            ],
        ),
    ]


# ------------------------------------------------------------------------------------------------------------
# fact frames
# ------------------------------------------------------------------------------------------------------------


def _codes(prefix: str, numbers) -> Any:
    import numpy as np

    return np.char.add(prefix, np.char.zfill(numbers.astype(str), 6))


def _fk_values(rng, n: int, prefix: str):
    """``n`` fact values over ``d`` distinct keys (each at least once), ~5% of them absent from the table."""
    import numpy as np

    distinct = max(1, min(n // 2, REF_ROWS))
    new = max(1, round(distinct * MISSING_SHARE))
    existing = rng.choice(REF_ROWS, distinct - new, replace=False)
    pool = np.concatenate([_codes(prefix, existing), _codes(prefix + "N", np.arange(new))])
    values = np.concatenate([pool, pool[rng.integers(0, len(pool), n - len(pool))]])
    rng.shuffle(values)
    return values


def make_facts(n: int, seed: int = 5):
    """A fact frame of ``n`` rows with 4 FK columns and their backfill sources (deterministic)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed + n)
    plan = _fk_values(rng, n, "P")
    portfolio = _fk_values(rng, n, "Q")
    org = _fk_values(rng, n, "G")
    blank = rng.random(n) < 0.01
    org = np.where(blank, "(空白)", org)
    return pd.DataFrame(
        {
            "月度": "202406",
            "计划代码": plan,
            "计划名称": np.char.add("计划", plan),
            "期末资产规模": rng.random(n) * 1e6,
            "主拓代码": _codes("B", rng.integers(0, 500, n)),
            "业务类型": rng.choice(np.array(["企年受托", "企年投资", "职年受托"]), n),
            "组合代码": portfolio,
            "组合名称": np.char.add("组合", portfolio),
            "机构代码": org,
            "机构名称": np.char.add("机构", org),
            "产品线代码": _fk_values(rng, n, "L"),
        }
    )


# ------------------------------------------------------------------------------------------------------------
# child process: one measurement
# ------------------------------------------------------------------------------------------------------------


def per_value_baseline(df, configs, conn) -> int:
    """The naive design: one existence query per distinct value, one INSERT per missing value."""
    from psycopg import sql

    from airflow_provider_refdata.config import processing_order
    from airflow_provider_refdata.services.derivation import derive_candidates

    inserted = 0
    for fk in processing_order(configs):
        frame = derive_candidates(df, fk).frame
        table = sql.SQL("{}.{}").format(sql.Identifier(fk.target_schema), sql.Identifier(fk.target_table))
        key = sql.Identifier(fk.target_key)
        exists = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} = %s)").format(table, key)
        columns = [str(c) for c in frame.columns]
        insert = sql.SQL(
            "INSERT INTO {} ({}, _source, _needs_review, _derived_from_domain, _derived_at) "
            "VALUES ({}, 'auto_derived', true, %s, now()) ON CONFLICT ({}) DO NOTHING"
        ).format(
            table,
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL(", ").join(sql.Placeholder() for _ in columns),
            key,
        )
        with conn.transaction():
            for row in frame.itertuples(index=False, name=None):
                if not conn.execute(exists, (row[0],)).fetchone()[0]:
                    inserted += conn.execute(insert, (*row, DOMAIN)).rowcount
    return inserted


def alias_pairs() -> list[tuple[str, str, str]]:
    """``(table, from_key, to_key)``: ``ALIASES`` aliases, a quarter per reference table, to existing keys."""
    per_table = ALIASES // len(FK_COLUMNS)
    return [
        (f"{SCHEMA}.{table}", f"{prefix}A{i:06d}", f"{prefix}{i:06d}")
        for _, table, prefix in FK_COLUMNS
        for i in range(per_table)
    ]


def with_alias_keys(df, seed: int = 11):
    """``ALIAS_SHARE`` of each FK column's rows set to one of its table's ``from_key`` (outside the timing)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    per_table = ALIASES // len(FK_COLUMNS)
    for column, _, prefix in FK_COLUMNS:
        rows = rng.choice(len(df), max(1, round(len(df) * ALIAS_SHARE)), replace=False)
        values = df[column].to_numpy(dtype=object, copy=True)
        values[rows] = [f"{prefix}A{i % per_table:06d}" for i in range(len(rows))]
        df[column] = pd.Series(values, index=df.index, dtype=df[column].dtype)  # the column's dtype, as before
    return df


def child(approach: str, rows: int, dsn: str) -> dict[str, Any]:
    import psycopg

    import airflow_provider_refdata.services.hybrid as hybrid
    from airflow_provider_refdata.services.hybrid import HybridReferenceService

    configs = fk_configs()
    df = make_facts(rows)
    if approach == "aliases":
        df = with_alias_keys(df)
    alias_seconds: list[float] = []
    mapped = hybrid._map_aliases
    if approach == "no_alias_step":
        hybrid._map_aliases = lambda *args: (None, {})  # the call as it was before the step
    else:

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            out = mapped(*args)
            alias_seconds.append(time.perf_counter() - started)
            return out

        hybrid._map_aliases = timed
    with psycopg.connect(dsn) as conn:
        # Warm-up on keys that all exist: imports, catalog and plan caches; inserts nothing.
        existing = conn.execute('SELECT "年金计划号" FROM bench."年金计划" LIMIT 1').fetchone()[0]
        conn.rollback()
        warm = df.head(10).assign(计划代码=existing, 组合代码="Q000001", 机构代码="G000001", 产品线代码="L000001")
        if approach != "per_value":
            HybridReferenceService().ensure_references("warmup", warm, configs, conn)
        alias_seconds.clear()
        remapped = 0
        with PeakRss() as rss:
            started = time.perf_counter()
            if approach != "per_value":
                result = HybridReferenceService().ensure_references(DOMAIN, df, configs, conn)
                inserted = result.backfill_count
                degraded = result.degradation_reason
                remapped = sum(m.remapped_values for m in result.coverage_metrics)
            else:
                inserted = per_value_baseline(df, configs, conn)
                degraded = None
            seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "growth_mb": rss.growth_mb,
        "inserted": inserted,
        "degraded": degraded,
        "remapped": remapped,
        "alias_ms": sum(alias_seconds) * 1000,
    }


# ------------------------------------------------------------------------------------------------------------
# parent: servers, state, runs, report
# ------------------------------------------------------------------------------------------------------------


def setup_reference_tables(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for table, key, prefix, columns in TABLES:
            conn.execute(
                f'CREATE TABLE {SCHEMA}."{table}" ("{key}" varchar(32) PRIMARY KEY, {columns}, {TRACKING_DDL})'
            )
            other = [c.split('"')[1] for c in columns.split(", ")]
            values = ", ".join("'P' || lpad(g::text, 6, '0')" if c == "年金计划号" else f"'{c}' || g" for c in other)
            conn.execute(
                f'INSERT INTO {SCHEMA}."{table}" ("{key}", {", ".join(f"{chr(34)}{c}{chr(34)}" for c in other)}) '
                f"SELECT '{prefix}' || lpad(g::text, 6, '0'), {values} FROM generate_series(0, {REF_ROWS - 1}) g"
            )
            conn.execute(f'VACUUM ANALYZE {SCHEMA}."{table}"')


def reset_state(dsn: str, aliases: bool = False) -> None:
    """Fresh state: remove the auto-derived rows of the previous run (children first) and vacuum; the alias
    table exists (as after any earlier run) and holds the benchmark's aliases only when ``aliases``."""
    import psycopg

    from airflow_provider_refdata.warehouse.state import ensure_state_tables

    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_state_tables(conn)
        conn.execute("DELETE FROM refdata.key_alias WHERE table_name LIKE %s", (f"{SCHEMA}.%",))
        if aliases:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO refdata.key_alias (table_name, from_key, to_key, created_by, review_id)"
                    " VALUES (%s, %s, %s, 'bench', 'bench')",
                    alias_pairs(),
                )
        for table, *_ in reversed(TABLES):
            conn.execute(f"DELETE FROM {SCHEMA}.\"{table}\" WHERE _source = 'auto_derived'")
        for table, *_ in TABLES:
            conn.execute(f'VACUUM ANALYZE {SCHEMA}."{table}"')


def run_child(approach: str, rows: int, dsn: str) -> dict[str, Any]:
    return run_module_child(
        "benchmarks.bench_hybrid", ["--child", approach, "--rows", str(rows), "--dsn", dsn], f"{approach} {rows}"
    )


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pandas as pd
    import psycopg

    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, pandas {pd.__version__}, "
        f"psycopg {psycopg.__version__}"
    )


def alias_checks(measured: dict[tuple[str, int], list[dict[str, Any]]], rows: int) -> int:
    """PASS/FAIL of the alias step: no measurable cost without aliases; the 1M target still met with them."""
    with_step, without = measured.get(("refdata", rows)), measured.get(("no_alias_step", rows))
    if not with_step or not without:
        return 0
    failures = 0
    secs = [r["seconds"] for r in with_step]
    base = [r["seconds"] for r in without]
    diff = statistics.median(secs) - statistics.median(base)
    noise = max(max(secs) - min(secs), max(base) - min(base))
    ok = diff <= noise
    failures += not ok
    step = statistics.median(r["alias_ms"] for r in with_step)
    print(
        f"{'PASS' if ok else 'FAIL'}: {rows:,} facts without aliases: {diff * 1000:+.0f} ms against the call "
        f"without the alias step (noise: {noise * 1000:.0f} ms min–max spread; the step itself {step:.1f} ms)"
    )
    aliased = measured.get(("aliases", rows))
    if aliased:
        median = statistics.median(r["seconds"] for r in aliased)
        step = statistics.median(r["alias_ms"] for r in aliased)
        target = TARGETS.get(rows)
        ok = target is None or median <= target
        failures += not ok
        print(
            f"{'PASS' if ok else 'FAIL'}: {rows:,} facts with {ALIASES:,} aliases "
            f"({aliased[0]['remapped']:,} rows remapped): {median:.3f} s end to end "
            f"({(median - statistics.median(base)) * 1000:+.0f} ms; alias step {step:.1f} ms)"
            + (f", target ≤ {target} s" if target else "")
        )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_hybrid", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--alias-rows", type=int, default=1_000_000, help="fact rows of the alias runs; 0: none")
    parser.add_argument("--child", choices=["refdata", "per_value", "no_alias_step", "aliases"])
    parser.add_argument("--dsn")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows[0], args.dsn)))
        return 0

    from devtools.servers import PostgresServer

    with tempfile.TemporaryDirectory(prefix="refdata-bench-hybrid-") as tmp:
        server = PostgresServer(Path(tmp) / "postgres", database="bench")
        try:
            server.start()
            import psycopg

            with psycopg.connect(server.dsn) as conn:
                pg_version = conn.execute("SHOW server_version").fetchone()[0]
            print(f"machine: {machine()}, PostgreSQL {pg_version} on loopback", flush=True)
            setup_reference_tables(server.dsn)
            measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
            plan = [("refdata", n) for n in args.rows]
            if args.baseline_rows:
                plan.insert(
                    1 if args.rows and args.rows[0] <= args.baseline_rows else 0, ("per_value", args.baseline_rows)
                )
            if args.alias_rows:
                if ("refdata", args.alias_rows) not in plan:
                    plan.append(("refdata", args.alias_rows))
                plan += [("no_alias_step", args.alias_rows), ("aliases", args.alias_rows)]
            for i in range(args.repeat):
                # Interleaved rounds: a drift of the machine's speed hits every approach alike.
                for approach, rows in plan:
                    reset_state(server.dsn, aliases=approach == "aliases")
                    m = run_child(approach, rows, server.dsn)
                    measured.setdefault((approach, rows), []).append(m)
                    print(
                        f"{approach:13s} {rows:>9,} facts run {i + 1}: {m['seconds']:.3f} s, "
                        f"+{m['growth_mb']:.0f} MB, {m['inserted']} inserted, {m['remapped']} remapped, "
                        f"alias step {m['alias_ms']:.1f} ms"
                        + (f", DEGRADED: {m['degraded']}" if m["degraded"] else ""),
                        flush=True,
                    )
        finally:
            server.stop()

    failures = 0
    print(
        f"\n| approach | facts | median s ({args.repeat} runs) | min–max s | peak memory growth MB (median) "
        "| rows inserted "
        "| rows remapped | alias step ms (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (approach, rows), runs in measured.items():
        secs = [r["seconds"] for r in runs]
        mem = statistics.median(r["growth_mb"] for r in runs)
        alias_ms = statistics.median(r["alias_ms"] for r in runs)
        print(
            f"| {approach} | {rows:,} | {statistics.median(secs):.3f} | {min(secs):.3f}–{max(secs):.3f} | "
            f"{mem:.0f} | {runs[0]['inserted']:,} | {runs[0]['remapped']:,} | {alias_ms:.1f} |"
        )
    print()
    for rows, target in TARGETS.items():
        runs = measured.get(("refdata", rows))
        if not runs:
            continue
        median = statistics.median(r["seconds"] for r in runs)
        ok = median <= target
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}: {rows:,} facts end to end {median:.3f} s (target ≤ {target} s)")
    runs = measured.get(("refdata", 1_000_000))
    if runs:
        mem = statistics.median(r["growth_mb"] for r in runs)
        ok = mem <= MEMORY_TARGET_MB
        failures += not ok
        print(
            f"{'PASS' if ok else 'FAIL'}: 1,000,000 facts peak memory growth {mem:.0f} MB "
            f"(target ≤ {MEMORY_TARGET_MB} MB)"
        )
    failures += alias_checks(measured, args.alias_rows)
    if any(r["degraded"] for runs in measured.values() for r in runs):
        failures += 1
        print("FAIL: a run was degraded")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
