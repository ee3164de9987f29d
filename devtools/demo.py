"""``make demo``: the whole product end to end on local servers, with a readable report.

1. starts a throwaway PostgreSQL (the warehouse) and MariaDB (the legacy source) under ``.demo/servers``
   (``devtools.servers``; no Docker), or reuses them when they are already running;
2. creates the warehouse schema ``business`` from ``sql/warehouse/business.sql``;
3. the first time, loads the legacy database from ``devtools.sample_data``; every later time applies one
   *mutation round* instead (a few rows change, ``updated_at`` bumped), so the sync has something new to read;
4. writes the month's fact file (``.demo/data/annuity_performance_<YYYYMM>.csv``, the previous month: the
   annuity-performance DAG's default);
5. runs the DAG ``refdata_reference_sync`` and then ``refdata_annuity_performance`` with ``airflow dags test``
   (real operators, connections through ``AIRFLOW_CONN_*``, an ``AIRFLOW_HOME`` under ``.demo/airflow`` with a
   SQLite metadata database);
6. prints the report: the run's results from ``refdata.run_log``, the coverage measured again directly
   against the tables, the rows per ``_source``, the fact rows the DAG loaded into ``business."规模明细"``
   (real foreign keys: that load fails if a key is missing), and how to query ``refdata.run_log`` and
   ``refdata.sync_state`` and where the DAG logs are;
7. the third act (:mod:`devtools.demo_steward`): the health of the reference tables and the open
   placeholders, a review export under ``.demo/review/``, a filled-in review file (one approve, one remap, one
   reject) applied, and the audit rows of ``refdata.review_log``.

Usage::

    python -m devtools.demo          # run (what `make demo` does)
    python -m devtools.demo down     # stop the servers (`make demo-down`); the data stays for the next run

The functions are also what ``tests/integration/test_demo.py`` runs, on a smaller world.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from airflow_provider_refdata.textable import text_table
from devtools import sample_data
from devtools.demo_steward import StewardReport, format_steward_report, run_steward_act
from devtools.sample_data import MutationSummary, SampleSpec, SampleWorld

REPO_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_DDL = REPO_ROOT / "sql" / "warehouse" / "business.sql"
SYNC_DAG_ID = "refdata_reference_sync"
FACTS_DAG_ID = "refdata_annuity_performance"
FACTS_DOMAIN = "annuity_performance"
FACT_SCHEMA = "business"
FACT_TABLE = "规模明细"
# Printed at the end of the report: where to look at the run history.
RUN_LOG_QUERY = "SELECT id, run_type, subject, status, finished_at FROM refdata.run_log ORDER BY id DESC LIMIT 10"
SYNC_STATE_QUERY = "SELECT table_name, watermark, last_status, rows_read, rows_promoted FROM refdata.sync_state"
# How long one `airflow dags test` may take before the demo gives up on it.
DAG_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class DemoLayout:
    """Where the demo keeps its state: everything under one folder (``.demo`` in the repo, git-ignored).

    ``airflow_home_dir`` puts AIRFLOW_HOME elsewhere (the tests reuse their session's migrated home)."""

    root: Path
    airflow_home_dir: Path | None = None

    @property
    def servers(self) -> Path:
        return self.root / "servers"

    @property
    def airflow_home(self) -> Path:
        return self.airflow_home_dir or self.root / "airflow"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def review(self) -> Path:
        return self.root / "review"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def facts_file(self, spec: SampleSpec) -> Path:
        return self.data / sample_data.facts_file_name(spec)


DEFAULT_LAYOUT = DemoLayout(REPO_ROOT / ".demo")


# --- servers and schemas -------------------------------------------------------------------------------
def start_servers(layout: DemoLayout) -> tuple[str, str]:
    """Start (or reuse) the demo's PostgreSQL and MariaDB; returns their DSNs (warehouse, legacy)."""
    from devtools.servers import start_both

    pg, mariadb = start_both(layout.servers)
    return pg.dsn, mariadb.dsn


def stop_servers(layout: DemoLayout) -> None:
    from devtools.servers import stop_both

    stop_both(layout.servers)


def create_warehouse_schema(pg_dsn: str) -> None:
    """Run ``sql/warehouse/business.sql`` (idempotent) in one transaction."""
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(WAREHOUSE_DDL.read_text(encoding="utf-8"))


def _admin(pg_server_dsn: str, mysql_server_dsn: str, pg_statement: sql.Composable, mysql_statement: str) -> None:
    """Run one server-level statement on each server (CREATE/DROP DATABASE cannot run in a transaction)."""
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(pg_statement)
    mysql = sample_data.mysql_connect(urlsplit(mysql_server_dsn)._replace(path="/").geturl())
    try:
        mysql.cursor().execute(mysql_statement)
    finally:
        mysql.close()


@contextmanager
def isolated_databases(pg_server_dsn: str, mysql_server_dsn: str, name: str) -> Iterator[tuple[str, str]]:
    """A new PostgreSQL database and a new MySQL database called ``name`` (letters, digits, ``_``) on the
    given servers, dropped afterwards; yields their DSNs.  The tests run the demo in these so that schema
    ``business`` and ``refdata`` of other tests are never touched."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    pg_dsn = urlsplit(pg_server_dsn)._replace(path="/" + name).geturl()
    mysql_dsn = urlsplit(mysql_server_dsn)._replace(path="/" + name).geturl()
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    _admin(pg_server_dsn, mysql_server_dsn, create, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield pg_dsn, mysql_dsn
    finally:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        _admin(pg_server_dsn, mysql_server_dsn, drop, f"DROP DATABASE IF EXISTS `{name}`")


def create_database(pg_server_dsn: str, name: str) -> str:
    """Create PostgreSQL database ``name`` on the server if it is missing; returns its DSN."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(pg_server_dsn)._replace(path="/" + name).geturl()


@dataclass
class LegacyPreparation:
    """What the demo did to the legacy database before this run's sync."""

    first_load: bool
    row_counts: dict[str, int]
    mutation: MutationSummary | None = None


def prepare_legacy(mysql_dsn: str, world: SampleWorld, *, mutate: bool = True) -> LegacyPreparation:
    """Load the legacy database when it is empty; otherwise apply the next mutation round (if ``mutate``)."""
    conn = sample_data.mysql_connect(mysql_dsn)
    try:
        sample_data.create_legacy_tables(conn)
        if sample_data.legacy_row_counts(conn)["annuity_plan"] == 0:
            return LegacyPreparation(first_load=True, row_counts=sample_data.load_legacy(conn, world))
        mutation = sample_data.mutate(conn, world) if mutate else None
        return LegacyPreparation(first_load=False, row_counts=sample_data.legacy_row_counts(conn), mutation=mutation)
    finally:
        conn.close()


def ensure_legacy_loaded(mysql_dsn: str, world: SampleWorld) -> LegacyPreparation:
    """Load the legacy database when it is empty; leave it as it is otherwise."""
    return prepare_legacy(mysql_dsn, world, mutate=False)


def write_facts(layout: DemoLayout, world: SampleWorld) -> Path:
    """Write the month's fact file unless an identical one is there (it is deterministic)."""
    path = layout.facts_file(world.spec)
    if not path.exists():
        sample_data.write_facts(world, path)
    return path


# --- Airflow ---------------------------------------------------------------------------------------------
def airflow_conn_uri(dsn: str, conn_type: str) -> str:
    """``postgresql://…`` / ``mysql://…`` DSN -> Airflow connection URI of ``conn_type``."""
    return urlsplit(dsn)._replace(scheme=conn_type).geturl()


def airflow_env(
    airflow_home: Path,
    pg_dsn: str,
    mysql_dsn: str,
    *,
    config_dir: Path | None = None,
    facts_dir: Path | None = None,
    metadata_dsn: str | None = None,
    base: Mapping | None = None,
) -> dict[str, str]:
    """The environment for every Airflow command of the demo (and of ``make airflow``).

    Connections come from ``AIRFLOW_CONN_*``; the DAGs are the repo's ``dags/``; the metadata database is a
    SQLite file in ``airflow_home`` (enough for ``airflow dags test``), or the PostgreSQL database
    ``metadata_dsn`` for ``airflow standalone``, whose API server, scheduler and workers write at the same
    time (SQLite then answers triggers with "Database error").  ``PATH`` gets the interpreter's folder first
    because ``airflow standalone`` starts its components as ``airflow …`` from ``PATH``.
    """
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": bindir + os.pathsep + env.get("PATH", ""),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                urlsplit(metadata_dsn)._replace(scheme="postgresql+psycopg2").geturl()
                if metadata_dsn
                else f"sqlite:///{airflow_home / 'airflow.db'}"
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"airflow_provider_refdata\..*",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
            "AIRFLOW_CONN_REFDATA_WAREHOUSE": airflow_conn_uri(pg_dsn, "postgres"),
            "AIRFLOW_CONN_REFDATA_LEGACY_MYSQL": airflow_conn_uri(mysql_dsn, "mysql"),
            "REFDATA_CONFIG_DIR": str(config_dir or REPO_ROOT / "config"),
            # Where the month's fact files are (the annuity-performance DAG's default, as in docker-compose).
            "REFDATA_FACT_DIR": str(facts_dir or DEFAULT_LAYOUT.data),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    # The test harness sets unit-test mode; the demo is a real run.
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    return env


def migrate_airflow_db(env: Mapping[str, str]) -> float:
    """``airflow db migrate`` unless this Airflow version already migrated this home; returns seconds spent."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    stamp = home / ".migrated"
    wanted = version("apache-airflow")
    if stamp.exists() and stamp.read_text() == wanted and (home / "airflow.db").exists():
        return 0.0
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=dict(env), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise DemoError(f"airflow db migrate failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    stamp.write_text(wanted)
    return time.monotonic() - started


@dataclass
class DagRunOutcome:
    dag_id: str
    returncode: int
    seconds: float
    log_file: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_dag(
    dag_id: str, env: Mapping[str, str], log_dir: Path, *, conf: Mapping | None = None, timeout: float | None = None
) -> DagRunOutcome:
    """Run one DAG with ``airflow dags test`` (all tasks in this process tree); output goes to a log file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{dag_id}-{dt.datetime.now():%Y%m%dT%H%M%S}.log"
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf:
        command += ["--conf", json.dumps(dict(conf), ensure_ascii=False)]
    started = time.monotonic()
    with open(log_file, "wb") as log:
        try:
            result = subprocess.run(
                command,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout or DAG_TIMEOUT_SECONDS,
                check=False,
            )
            returncode = result.returncode
        except subprocess.TimeoutExpired:
            returncode = -1
    return DagRunOutcome(dag_id, returncode, time.monotonic() - started, log_file)


def dag_run_state(log_file: Path) -> str | None:
    """The final DAG-run state from the ``DagRun Finished: … state=…`` line of ``airflow dags test``."""
    text = log_file.read_text(encoding="utf-8", errors="replace")
    states = re.findall(r"DagRun Finished:.*?\bstate=(\w+)", text)
    return states[-1] if states else None


# --- facts -------------------------------------------------------------------------------------------------
def fact_rows_in_warehouse(pg_dsn: str, month: dt.date) -> int | None:
    """Rows of the month in ``business."规模明细"`` (loaded by the DAG's ``load_facts`` task); None if no table."""
    with psycopg.connect(pg_dsn) as conn:
        if conn.execute("SELECT to_regclass(%s) IS NULL", (f'"{FACT_SCHEMA}"."{FACT_TABLE}"',)).fetchone()[0]:
            return None
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            sql.Identifier(FACT_SCHEMA, FACT_TABLE), sql.Identifier("月度")
        )
        return conn.execute(query, (month.isoformat(),)).fetchone()[0]


@dataclass
class CoverageAfter:
    fk_name: str
    table: str
    distinct_values: int
    covered: int
    blank_rows: int

    @property
    def rate(self) -> float:
        return self.covered / self.distinct_values if self.distinct_values else 1.0


def fact_coverage(pg_dsn: str, facts_file: Path, config_dir: Path) -> list[CoverageAfter]:
    """Coverage of the fact file's FK columns measured directly against the tables (independent of the
    provider's own numbers): one set-based query per foreign key."""
    from airflow_provider_refdata.config import load_fk_configs

    fk_configs = load_fk_configs(config_dir / "foreign_keys.yml", FACTS_DOMAIN)
    with open(facts_file, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    results = []
    with psycopg.connect(pg_dsn) as conn:
        for fk in fk_configs:
            blanks = set(fk.blank_values) if fk.skip_blank_values else set()
            values = [(row.get(fk.source_column) or "").strip() for row in rows]
            keys = sorted({v for v in values if v and v not in blanks})
            query = sql.SQL(
                "SELECT count(*) FROM unnest(%s::text[]) AS k(v) WHERE EXISTS (SELECT 1 FROM {} t WHERE t.{} = k.v)"
            )
            covered = conn.execute(
                query.format(sql.Identifier(fk.target_schema, fk.target_table), sql.Identifier(fk.target_key)),
                (keys,),
            ).fetchone()[0]
            results.append(
                CoverageAfter(
                    fk_name=fk.name,
                    table=f"{fk.target_schema}.{fk.target_table}",
                    distinct_values=len(keys),
                    covered=covered,
                    blank_rows=len(values) - sum(1 for v in values if v and v not in blanks),
                )
            )
    return results


# --- the report ----------------------------------------------------------------------------------------------
class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where to look."""


@dataclass
class DemoReport:
    """Everything the demo prints, gathered from the warehouse after the DAG runs."""

    run_number: int
    preparation: LegacyPreparation
    facts_file: Path
    fact_rows: int
    dag_runs: list[DagRunOutcome] = field(default_factory=list)
    sync_results: list = field(default_factory=list)  # SyncResult
    hybrid_results: list = field(default_factory=list)  # HybridResult
    table_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    coverage_after: list[CoverageAfter] = field(default_factory=list)
    facts_loaded: int | None = None
    problems: list[str] = field(default_factory=list)
    pg_dsn: str = ""
    seconds: float = 0.0
    steward: StewardReport | None = None


def read_run_log(pg_dsn: str, since: dt.datetime) -> tuple[list, list]:
    """This run's SyncResult and HybridResult rows from ``refdata.run_log`` (oldest first)."""
    from pydantic import ValidationError

    from airflow_provider_refdata.results import HybridResult, SyncResult

    with psycopg.connect(pg_dsn) as conn:
        exists = conn.execute("SELECT to_regclass('refdata.run_log') IS NOT NULL").fetchone()[0]
        if not exists:
            return [], []
        rows = conn.execute(
            "SELECT result FROM refdata.run_log WHERE started_at >= %s ORDER BY id", (since,)
        ).fetchall()
    syncs, hybrids = [], []
    for (payload,) in rows:
        for model, bucket in ((SyncResult, syncs), (HybridResult, hybrids)):
            try:
                bucket.append(model.model_validate(payload))
                break
            except ValidationError:
                continue
    return syncs, hybrids


def table_sources(pg_dsn: str, tables: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Rows per ``_source`` of each reference table."""
    counts: dict[str, dict[str, int]] = {}
    with psycopg.connect(pg_dsn) as conn:
        for schema, table in tables:
            query = sql.SQL("SELECT {}, count(*) FROM {} GROUP BY 1").format(
                sql.Identifier("_source"), sql.Identifier(schema, table)
            )
            counts[f"{schema}.{table}"] = dict(conn.execute(query).fetchall())
    return counts


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def format_report(report: DemoReport) -> str:
    out: list[str] = []
    prep = report.preparation
    title = "first run: full load" if prep.first_load else f"run {report.run_number}: incremental"
    out.append(f"=== refdata demo — {title} ({report.seconds:.0f} s) ===")
    if prep.first_load:
        counts = ", ".join(f"{t} {n:,}" for t, n in prep.row_counts.items())
        out.append(f"Legacy MySQL loaded from devtools/sample_data.py: {counts}")
    elif prep.mutation:
        changed = ", ".join(f"{t} {n}" for t, n in prep.mutation.changed_rows.items())
        out.append(f"Legacy MySQL mutation round {prep.mutation.round} (updated_at bumped): changed {changed}")
        if prep.mutation.entered_plans:
            out.append(
                f"  plans entered in the legacy system (were auto-derived): {', '.join(prep.mutation.entered_plans)}"
            )
    out.append(f"Fact file: {report.facts_file} ({report.fact_rows:,} rows)")
    for run in report.dag_runs:
        out.append(f"DAG {run.dag_id}: {'ok' if run.ok else 'FAILED'} in {run.seconds:.0f} s (log {run.log_file})")

    out.append("")
    out.append("Reference sync (authoritative pre-load)")
    if report.sync_results:
        rows = []
        for r in report.sync_results:
            mode = "skipped" if r.skipped_reason else ("full" if r.watermark_before is None else "incremental")
            status = "error: " + r.error if r.error else (r.skipped_reason or "ok")
            rows.append([r.table, r.source_type, mode, r.rows_read, r.rows_inserted, r.rows_updated,
                         r.rows_unchanged, r.rows_promoted, r.rows_deleted, status[:60]])  # fmt: skip
        out += text_table(["table", "source", "mode", "rows read", "inserted", "updated", "unchanged", "promoted",
                       "deleted", "status"], rows, "  ")  # fmt: skip
        promoted = sum(r.rows_promoted for r in report.sync_results)
        out.append(f"  auto-derived rows promoted to authoritative: {promoted}")
        if any(r.watermark_before is not None for r in report.sync_results):
            out.append(
                "  incremental = rows with updated_at >= last watermark - lookback, so the previous newest row "
                "is read again (counted unchanged)"
            )
    else:
        out.append("  (no sync results in refdata.run_log for this run)")

    out.append("")
    out.append(f"Coverage of the fact file ({FACTS_DOMAIN})")
    hybrid = report.hybrid_results[-1] if report.hybrid_results else None
    before = {m.fk_name: m for m in hybrid.coverage_metrics} if hybrid else {}
    backfilled = {}
    if hybrid and hybrid.backfill_result:
        backfilled = {t.fk_name: t.inserted for t in hybrid.backfill_result.tables}
    rows = []
    for cov in report.coverage_after:
        metrics = before.get(cov.fk_name)
        rows.append([cov.fk_name, cov.table, cov.distinct_values, _pct(metrics.coverage_rate if metrics else None),
                     _pct(cov.rate), cov.blank_rows, backfilled.get(cov.fk_name, 0)])  # fmt: skip
    out += text_table(
        ["foreign key", "table", "distinct keys", "before", "after", "blank rows", "backfilled"], rows, "  "
    )
    if hybrid:
        out.append(f"  pre-load coverage (all tables): {_pct(hybrid.pre_load_coverage)}; "
                   f"backfill inserted {hybrid.backfill_count} rows")  # fmt: skip
        out.append(f"  auto-derived ratio: {_pct(hybrid.auto_derived_ratio)} "
                   f"({hybrid.total_auto_derived:,} auto-derived / "
                   f"{hybrid.total_auto_derived + hybrid.total_authoritative:,} rows); per table: "
                   + ", ".join(f"{t} {_pct(v)}" for t, v in hybrid.per_table_ratio.items()))  # fmt: skip
        warnings = list(hybrid.threshold_warnings)
        if hybrid.degraded_mode:
            warnings.append(f"degraded mode: {hybrid.degradation_reason}")
        out.append("  warnings: " + ("; ".join(warnings) if warnings else "none"))
    else:
        out.append("  (no ensure_references result in refdata.run_log for this run)")

    out.append("")
    out.append("Reference tables now (rows by _source)")
    out += text_table(
        ["table", "authoritative", "auto_derived"],
        [[t, c.get("authoritative", 0), c.get("auto_derived", 0)] for t, c in report.table_sources.items()],
        "  ",
    )
    if report.facts_loaded is not None:
        out.append(
            f"Fact rows of the month in {FACT_SCHEMA}.{FACT_TABLE} (loaded by the DAG, checked by real FKs): "
            f"{report.facts_loaded:,}"
        )

    if report.steward is not None:
        out += format_steward_report(report.steward, report.pg_dsn)

    out.append("")
    out.append("Run history:")
    for query in (RUN_LOG_QUERY, SYNC_STATE_QUERY):
        out.append(f'  psql "{report.pg_dsn}" -c "{query}"')
    if report.problems:
        out.append("")
        out.append("PROBLEMS:")
        out += [f"  - {p}" for p in report.problems]
    return "\n".join(out)


# --- the whole run ------------------------------------------------------------------------------------------
def reference_tables(config_dir: Path) -> list[tuple[str, str]]:
    from airflow_provider_refdata.config import load_sync_config

    return [(t.target_schema, t.target_table) for t in load_sync_config(config_dir / "reference_sync.yml").tables]


def facts_dag_conf(facts_file: Path, month: dt.date) -> dict[str, object]:
    """The trigger params of the annuity-performance DAG for this fact file."""
    return {"month": f"{month:%Y-%m}", "fact_file": str(facts_file)}


def run_demo(
    layout: DemoLayout,
    spec: SampleSpec,
    *,
    pg_dsn: str,
    mysql_dsn: str,
    config_dir: Path | None = None,
    log=print,
) -> DemoReport:
    """Steps 2–6 of the module docstring against running servers; returns the report (never raises for a
    failed DAG: the report lists the problem)."""
    config_dir = config_dir or REPO_ROOT / "config"
    started = time.monotonic()
    since = dt.datetime.now(dt.UTC)
    create_warehouse_schema(pg_dsn)
    world = sample_data.generate(spec)
    preparation = prepare_legacy(mysql_dsn, world)
    log("legacy database: " + ("loaded" if preparation.first_load else f"mutation round {preparation.mutation.round}"))
    facts_file = write_facts(layout, world)
    report = DemoReport(
        run_number=1 if preparation.first_load else preparation.mutation.round + 1,
        preparation=preparation,
        facts_file=facts_file,
        fact_rows=len(world.fact_rows()),
        pg_dsn=pg_dsn,
    )
    env = airflow_env(layout.airflow_home, pg_dsn, mysql_dsn, config_dir=config_dir, facts_dir=layout.data)
    migrated_in = migrate_airflow_db(env)
    if migrated_in:
        log(f"airflow metadata database migrated in {migrated_in:.0f} s (first run only)")
    for dag_id, conf in ((SYNC_DAG_ID, None), (FACTS_DAG_ID, facts_dag_conf(facts_file, spec.month))):
        log(f"running DAG {dag_id} with airflow dags test…")
        outcome = run_dag(dag_id, env, layout.logs, conf=conf)
        report.dag_runs.append(outcome)
        state = dag_run_state(outcome.log_file)
        if not outcome.ok or state != "success":
            report.problems.append(
                f"DAG {dag_id}: exit {outcome.returncode}, final state {state or 'unknown'}; see {outcome.log_file}"
            )
    report.sync_results, report.hybrid_results = read_run_log(pg_dsn, since)
    tables = reference_tables(config_dir)
    report.table_sources = table_sources(pg_dsn, tables)
    report.coverage_after = fact_coverage(pg_dsn, facts_file, config_dir)
    missing = [c.fk_name for c in report.coverage_after if c.covered < c.distinct_values]
    if missing:
        report.problems.append(f"FK values still missing after the run: {', '.join(missing)}")
    report.facts_loaded = fact_rows_in_warehouse(pg_dsn, spec.month)
    if report.facts_loaded != report.fact_rows:
        report.problems.append(
            f"{FACT_SCHEMA}.{FACT_TABLE} holds {report.facts_loaded} rows of {spec.month:%Y-%m}, "
            f"the fact file {report.fact_rows} (held back by a threshold, or the load failed: see the DAG log)"
        )
    log("third act: the data steward reviews the placeholders…")
    report.steward = run_steward_act(pg_dsn, config_dir, layout.review, report.run_number)
    report.problems += report.steward.problems
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n")[0])
    parser.add_argument("action", nargs="?", default="run", choices=["run", "down"])
    parser.add_argument("--root", type=Path, default=DEFAULT_LAYOUT.root, help="demo state folder (default .demo)")
    args = parser.parse_args(argv)
    layout = DemoLayout(args.root.resolve())
    if args.action == "down":
        stop_servers(layout)
        print(f"demo servers under {layout.servers} stopped (data kept; `rm -rf {layout.root}` to start over)")
        return 0
    print(f"starting the demo servers under {layout.servers}…", flush=True)
    pg_dsn, mysql_dsn = start_servers(layout)
    report = run_demo(layout, SampleSpec(), pg_dsn=pg_dsn, mysql_dsn=mysql_dsn, log=lambda m: print(m, flush=True))
    print()
    print(format_report(report))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
