"""``make test-celery``: the sync DAG and three domain DAGs at once on two Celery workers, checked row by row.

:class:`devtools.celery_cluster.CeleryCluster` starts Redis, PostgreSQL (warehouse, Airflow metadata, Celery
results), MariaDB (the legacy source), the scheduler, dag-processor, API server and two Celery workers
(``worker-a``, ``worker-b``, two slots each) with the example DAGs and ``tests/celery/dags`` as DAG bundles.
Then, through the REST API as a user would: unpause, and trigger at once ``refdata_reference_sync`` and the
domain DAGs ``refdata_celery_annuity_performance``, ``refdata_celery_annuity_income`` (both backfill
``business.年金计划`` and ``business.组合计划``, with missing keys that overlap) and
``refdata_celery_branch_report`` (branches and product lines); wait for every run, the sync's own scheduled
01:00 run included, and check

- every DAG run and task instance succeeded;
- which worker ran each task: the worker's own log (``Executing workload in Celery: … task_id … dag_id …``)
  and the task instance's ``hostname`` from the REST API (``<worker>@<host>``) must agree for every task, and
  both workers must have run tasks (four runs start at once on four slots, and a worker holds at most its
  two slots: the other worker always gets work);
- the rows, against expectations computed here from the files and the legacy data (not from the provider):
  reference keys unique; the authoritative keys exactly the legacy/YAML ones; the auto-derived keys exactly
  the fact keys the sources lack, flagged for review and derived by a domain that uses them; every fact key
  of every domain present; ``refdata.placeholder`` one row per (table, key), the open ones exactly the
  auto-derived keys with the domains that used each and their fact rows added up exactly; the closed ones
  promoted by the sync; the performance facts loaded through real foreign keys.

Run by ``make test-celery``; ``make test`` does not collect it (see ``collect_ignore`` in tests/conftest.py).  The
run folder is ``.test-celery/test/`` (git-ignored); logs stay there, and their tails are printed when it fails.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg
from psycopg import sql

from airflow_provider_refdata import load_fk_configs
from devtools import demo, sample_data
from devtools.celery_cluster import DEFAULT_ROOT, REPO_ROOT, CeleryCluster
from devtools.sample_data import BLANK_MARKER, SampleSpec, SampleWorld
from tests.integration.test_airflow_api import Api

# `make test` does not collect this module (collect_ignore in tests/conftest.py): it neither runs nor skips it.

DAGS = Path(__file__).resolve().parent / "dags"
SYNC_DAG_ID = "refdata_reference_sync"
WORKERS = ("worker-a", "worker-b")
FK_FILES = {
    "annuity_performance": REPO_ROOT / "config" / "foreign_keys.yml",
    "annuity_income": REPO_ROOT / "config" / "foreign_keys.yml",
    "branch_report": DAGS / "branch_report.yml",
}
PLAN, PORTFOLIO, ORG, PRODUCT = "business.年金计划", "business.组合计划", "business.组织架构", "business.产品线"
INCOME_COLUMNS = ["月度", "计划代码", "计划名称", "组合代码", "组合名称", "机构代码", "机构名称", "产品线代码",
                  "收入金额"]  # fmt: skip
BRANCH_COLUMNS = ["月度", "机构代码", "机构名称", "产品线代码", "人数"]
RUN_TIMEOUT_SECONDS = 600
_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[test-celery {time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


# --- the facts --------------------------------------------------------------------------------------------
def write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def income_rows(world: SampleWorld) -> list[dict]:
    """Income facts: every other new plan and new portfolio of the performance facts (the overlap; the others
    stay performance-only), a third of the remaining rows, and keys only this domain has: two new plans with
    a new portfolio each and a new portfolio of a legacy plan."""
    new_plans = sorted(p.code for p in world.held_back_plans)
    new_portfolios = sorted(p.code for p in world.portfolios if not p.in_legacy)
    # Every other new plan with its portfolios, and every other new portfolio of a legacy plan.
    performance_only = set(new_plans[1::2])
    performance_only |= {p.code for p in world.portfolios if p.plan_code in performance_only}
    performance_only |= set(
        sorted(p.code for p in world.portfolios if not p.in_legacy and p.plan_code not in new_plans)[1::2]
    )
    rows = []
    for index, fact in enumerate(world.fact_rows()):
        if fact["计划代码"] in performance_only or fact["组合代码"] in performance_only:
            continue
        if fact["计划代码"] in new_plans or fact["组合代码"] in new_portfolios or index % 3 == 0:
            amount = float(fact["期末资产规模"]) * 0.004
            rows.append({c: fact[c] for c in INCOME_COLUMNS[:-1]} | {"收入金额": f"{amount:.2f}"})
    legacy_plan = world.legacy_plans[0]
    branch = world.branches[1]
    line = sorted(world.product_lines)[0]
    month = world.spec.month.isoformat()
    own = [
        ("PI9001", "收入专项计划一", "SI90001", "收入专项组合一"),
        ("PI9002", "收入专项计划二", "SI90002", "收入专项组合二"),
        (legacy_plan.code, legacy_plan.name, "SI90003", "收入新增组合"),
    ]
    for plan, plan_name, portfolio, portfolio_name in own:
        for amount in ("1200.00", "800.50"):
            rows.append(dict(zip(INCOME_COLUMNS, [month, plan, plan_name, portfolio, portfolio_name, branch.code,
                                                  branch.name, line, amount], strict=True)))  # fmt: skip
    return rows


def branch_rows(world: SampleWorld) -> list[dict]:
    """Head counts per branch and product line: every legacy branch, two new branches, a blank and a
    ``(空白)`` branch, the YAML product lines and two new ones."""
    month = world.spec.month.isoformat()
    lines = sorted(world.product_lines)
    branches = [(b.code, b.name) for b in world.branches] + [("G90", "新设分公司甲"), ("G91", "新设分公司乙")]
    rows = [
        dict(zip(BRANCH_COLUMNS, [month, code, name, lines[i % len(lines)], str(10 + i)], strict=True))
        for i, (code, name) in enumerate(branches)
    ]
    extra = [("G90", "新设分公司甲", "PL990"), ("", "", "PL991"), (BLANK_MARKER, BLANK_MARKER, "PL990")]
    for code, name, line in extra:
        rows.append(dict(zip(BRANCH_COLUMNS, [month, code, name, line, "3"], strict=True)))
    return rows


def write_facts(world: SampleWorld, fact_dir: Path) -> dict[str, Path]:
    """The month's file of each domain, ``<domain>_<YYYYMM>.csv`` (the name FactStageOperator looks for)."""
    stamp = f"{world.spec.month:%Y%m}"
    return {
        "annuity_performance": sample_data.write_facts(world, fact_dir / f"annuity_performance_{stamp}.csv"),
        "annuity_income": write_csv(fact_dir / f"annuity_income_{stamp}.csv", INCOME_COLUMNS, income_rows(world)),
        "branch_report": write_csv(fact_dir / f"branch_report_{stamp}.csv", BRANCH_COLUMNS, branch_rows(world)),
    }


# --- what the rows must be ------------------------------------------------------------------------------------
def key_usage(files: dict[str, Path]) -> dict[str, dict[str, Counter]]:
    """table -> key -> Counter(domain -> fact rows), from the files and the FK configurations (blank rules
    applied as documented: trimmed, empty and ``blank_values`` not keys)."""
    usage: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for domain, path in files.items():
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for fk in load_fk_configs(FK_FILES[domain], domain):
            blanks = set(fk.blank_values) if fk.skip_blank_values else set()
            for row in rows:
                value = (row.get(fk.source_column) or "").strip()
                if value and value not in blanks:
                    usage[f"{fk.target_schema}.{fk.target_table}"][value][domain] += 1
    return usage


def authoritative_keys(world: SampleWorld) -> dict[str, set[str]]:
    """The keys the sync copies: the legacy tables and product_lines.yml."""
    return {
        PLAN: {p.code for p in world.legacy_plans},
        PORTFOLIO: {p.code for p in world.legacy_portfolios},
        ORG: {b.code for b in world.branches},
        PRODUCT: set(world.product_lines),
    }


# --- the REST API -----------------------------------------------------------------------------------------
def trigger(api: Api, dag_id: str, conf: dict) -> str:
    status, run = api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    assert status == 200, (dag_id, run)
    return run["dag_run_id"]


def wait_for_runs(api: Api, runs: dict[str, str], timeout: float) -> dict[str, dict]:
    """Poll until every (dag_id -> run_id) run is ``success`` or ``failed``; returns the runs."""
    deadline = time.monotonic() + timeout
    finished: dict[str, dict] = {}
    while len(finished) < len(runs):
        for dag_id, run_id in runs.items():
            if dag_id in finished:
                continue
            status, run = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            assert status == 200, run
            if run["state"] in ("success", "failed"):
                finished[dag_id] = run
                say(f"{dag_id}: {run['state']}")
        pending = sorted(set(runs) - set(finished))
        assert time.monotonic() < deadline, f"runs still not finished after {timeout:.0f}s: {pending}"
        if pending:
            time.sleep(2)
    return finished


def all_runs_and_tasks(api: Api) -> tuple[list[dict], list[dict]]:
    _, runs = api.call("GET", "/api/v2/dags/~/dagRuns?limit=100")
    _, tis = api.call("GET", "/api/v2/dags/~/dagRuns/~/taskInstances?limit=500")
    return runs["dag_runs"], tis["task_instances"]


def workers_from_logs(cluster: CeleryCluster) -> dict[tuple[str, str, str, int], str]:
    """(dag_id, run_id, task_id, try_number) -> the worker whose log says it executed that task."""
    ran: dict[tuple[str, str, str, int], str] = {}
    fields = {name: re.compile(rf"\b{name}='([^']*)'") for name in ("dag_id", "run_id", "task_id")}
    try_number = re.compile(r"\btry_number=(\d+)")
    for name in cluster.workers:
        for line in cluster.worker_log(name).read_text(errors="replace").splitlines():
            if "Executing workload in Celery" not in line:
                continue
            values = {k: pattern.search(line) for k, pattern in fields.items()}
            tries = try_number.search(line)
            assert all(values.values()) and tries, f"unexpected workload line in {name}'s log: {line[:300]}"
            ran[(values["dag_id"][1], values["run_id"][1], values["task_id"][1], int(tries[1]))] = name
    return ran


def failed_task_logs(cluster: CeleryCluster, tis: list[dict]) -> str:
    parts = []
    for ti in tis:
        if ti["state"] != "success":
            pattern = f"dag_id={ti['dag_id']}/run_id={ti['dag_run_id']}/task_id={ti['task_id']}/*.log"
            for path in sorted((cluster.airflow_home / "logs").glob(pattern)):
                parts.append(f"----- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(parts)


# --- the warehouse -----------------------------------------------------------------------------------------
def table_rows(conn: psycopg.Connection, table: str, key: str) -> list[tuple]:
    schema, name = table.split(".")
    query = sql.SQL("SELECT {}::text, {}, {}, {} FROM {}").format(
        sql.Identifier(key),
        sql.Identifier("_source"),
        sql.Identifier("_needs_review"),
        sql.Identifier("_derived_from_domain"),
        sql.Identifier(schema, name),
    )
    return conn.execute(query).fetchall()


def uncovered(conn: psycopg.Connection, table: str, key: str, values: list[str]) -> list[str]:
    """The values of ``values`` that are no key of ``table`` (one set-based query)."""
    schema, name = table.split(".")
    query = sql.SQL(
        "SELECT v FROM unnest(%s::text[]) AS k(v) WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.{}::text = k.v)"
    ).format(sql.Identifier(schema, name), sql.Identifier(key))
    return sorted(row[0] for row in conn.execute(query, (values,)).fetchall())


def check_rows(dsn: str, world: SampleWorld, files: dict[str, Path]) -> None:
    usage = key_usage(files)
    authoritative = authoritative_keys(world)
    keys = {f"{fk.target_schema}.{fk.target_table}": fk.target_key
            for domain in files for fk in load_fk_configs(FK_FILES[domain], domain)}  # fmt: skip
    # The scenario this test is about: performance and income share missing plan and portfolio keys, and each
    # also has missing keys of its own.
    for table in (PLAN, PORTFOLIO):
        missing = {k: set(d) for k, d in usage[table].items() if k not in authoritative[table]}
        shared = [k for k, d in missing.items() if d == {"annuity_performance", "annuity_income"}]
        own = {
            domain: [k for k, d in missing.items() if d == {domain}]
            for domain in ("annuity_performance", "annuity_income")
        }
        assert shared and all(own.values()), (table, missing)
        say(f"{table}: missing keys {len(shared)} shared by both domains, "
            + ", ".join(f"{len(found)} only {domain}" for domain, found in own.items()))  # fmt: skip
    with psycopg.connect(dsn) as conn:
        for table, key in keys.items():
            rows = table_rows(conn, table, key)
            duplicates = [k for k, n in Counter(r[0] for r in rows).items() if n > 1]
            assert not duplicates, (table, duplicates)
            auto = {r[0]: r for r in rows if r[1] == "auto_derived"}
            assert {r[0] for r in rows if r[1] == "authoritative"} == authoritative[table], table
            expected_auto = set(usage[table]) - authoritative[table]
            assert set(auto) == expected_auto, (table, sorted(set(auto) ^ expected_auto))
            for k, (_, _, needs_review, derived_from) in auto.items():
                assert needs_review and derived_from in usage[table][k], (table, k, needs_review, derived_from)
            say(f"{table}: {len(rows)} rows, {len(authoritative[table])} authoritative, {len(auto)} auto-derived")
        for domain, path in files.items():
            domain_usage = key_usage({domain: path})
            for table, used in domain_usage.items():
                assert uncovered(conn, table, keys[table], sorted(used)) == [], (domain, table)
        duplicates = conn.execute(
            "SELECT table_name, key, count(*) FROM refdata.placeholder GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
        assert duplicates == []
        placeholders = conn.execute(
            "SELECT table_name, key, domains, fact_rows_total, resolution FROM refdata.placeholder"
        ).fetchall()
        for table in keys:
            open_ = {k: (domains, total) for t, k, domains, total, res in placeholders if t == table and res is None}
            closed = {k: res for t, k, _, _, res in placeholders if t == table and res is not None}
            expected = {
                k: (sorted(d), sum(d.values())) for k, d in usage[table].items() if k not in authoritative[table]
            }
            assert open_ == expected, (table, open_, expected)
            # Keys backfilled before the sync had copied them, then promoted by it.
            assert set(closed.values()) <= {"promoted"} and set(closed) <= authoritative[table], (table, closed)
            say(f"{table}: {len(open_)} open placeholders (domains and fact rows exact), {len(closed)} promoted")
        loaded = demo.fact_rows_in_warehouse(dsn, world.spec.month)
        assert loaded == len(world.fact_rows()), loaded


# --- the test -------------------------------------------------------------------------------------------------
def test_sync_and_three_domains_on_two_celery_workers():
    cluster = CeleryCluster(
        DEFAULT_ROOT / "test",
        {"refdata-examples": REPO_ROOT / "dags", "test-celery": DAGS},
        workers=WORKERS,
        concurrency=2,
    )
    tis: list[dict] = []
    try:
        cluster.start(log=say)
        say(f"cluster ready: API {cluster.url}, workers {', '.join(WORKERS)} (logs {cluster.logs})")
        demo.create_warehouse_schema(cluster.warehouse_dsn)
        world = sample_data.generate(SampleSpec.small(plans=300, fact_rows=4000))
        demo.ensure_legacy_loaded(cluster.legacy_dsn, world)
        files = write_facts(world, cluster.fact_dir)
        month = f"{world.spec.month:%Y-%m}"
        say(f"legacy data loaded; fact files of {month}: {', '.join(p.name for p in files.values())}")

        api = Api(cluster.port)
        api.login("admin", cluster.password())
        dag_ids = [SYNC_DAG_ID, *(f"refdata_celery_{domain}" for domain in files)]
        for dag_id in dag_ids:
            api.wait_for(f"/api/v2/dags/{dag_id}", timeout=180)
            status, body = api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            assert status == 200, body
        started = time.monotonic()
        runs = {dag_id: trigger(api, dag_id, {"month": month}) for dag_id in dag_ids[1:]}
        runs[SYNC_DAG_ID] = trigger(api, SYNC_DAG_ID, {})
        say(f"triggered {', '.join(runs)}")
        finished = wait_for_runs(api, runs, RUN_TIMEOUT_SECONDS)
        api.wait_until_idle(RUN_TIMEOUT_SECONDS)  # the sync's scheduled 01:00 run too
        say(f"all runs finished in {time.monotonic() - started:.0f}s")

        dag_runs, tis = all_runs_and_tasks(api)
        ran_by = workers_from_logs(cluster)
        print_assignments(tis, ran_by)
        print_overlap(tis, ["refdata_celery_annuity_performance", "refdata_celery_annuity_income"])
        assert {dag_id: run["state"] for dag_id, run in finished.items()} == dict.fromkeys(runs, "success")
        assert [(r["dag_id"], r["state"]) for r in dag_runs if r["state"] != "success"] == []
        assert {r["dag_id"] for r in dag_runs} == set(dag_ids)
        for ti in tis:
            assert ti["state"] == "success", ti
            worker = ran_by.get((ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti["try_number"]))
            assert worker is not None, f"no worker log names {ti['dag_id']}.{ti['task_id']}"
            assert ti["hostname"].startswith(f"{worker}@"), (ti["task_id"], ti["hostname"], worker)
        assert {ran_by[k] for k in ran_by} == set(WORKERS), Counter(ran_by.values())

        check_rows(cluster.warehouse_dsn, world, files)
    except BaseException:
        print(cluster.log_tails())
        print(failed_task_logs(cluster, tis))
        raise
    finally:
        stopped = cluster.stop(log=say)
        say("stopped: " + ", ".join(f"{name} {how}" for name, how in stopped.items()))
    assert set(stopped.values()) == {"SIGTERM"}, stopped


def print_assignments(tis: list[dict], ran_by: dict[tuple[str, str, str, int], str]) -> None:
    """Which worker ran each task, in start order (the log's record of where the work went)."""
    say("task instances and the Celery worker that ran each (worker log / REST API hostname), start–end UTC:")
    for ti in sorted(tis, key=lambda t: t.get("start_date") or ""):
        worker = ran_by.get((ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti["try_number"]), "?")
        span = f"{(ti['start_date'] or '')[11:22]}–{(ti['end_date'] or '')[11:22]}"
        print(f"  {ti['dag_id']:<35} {ti['task_id']:<22} {ti['state']:<8} {worker:<9} {ti['hostname']:<24} {span}"
              f"  {ti['dag_run_id']}", flush=True)  # fmt: skip
    say("tasks per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(Counter(ran_by.values()).items())))


def print_overlap(tis: list[dict], dag_ids: list[str]) -> None:
    """Whether the backfills of the overlapping domains ran at the same time (reported, not asserted: the
    scheduler decides; the row checks hold either way)."""
    spans = {ti["dag_id"]: (ti["start_date"], ti["end_date"]) for ti in tis
             if ti["dag_id"] in dag_ids and ti["task_id"] == "ensure_references"}  # fmt: skip
    (start_a, end_a), (start_b, end_b) = (spans[d] for d in dag_ids)
    together = max(start_a, start_b) < min(end_a, end_b)
    how = "overlapped in time" if together else "ran one after the other"
    say(f"ensure_references of {' and '.join(dag_ids)} {how}")
