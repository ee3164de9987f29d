"""OpenLineage events of the sync and backfill operators, from a real ``dag.test()`` run, read back from the file
transport; and the operators without the ``openlineage`` extra.

The run happens in a fresh process configured as a deployment would be (``AIRFLOW__OPENLINEAGE__TRANSPORT``:
the file transport, ``AIRFLOW__OPENLINEAGE__NAMESPACE``), so the provider's plugin and listener load from that
configuration, not from this test process (where OpenLineage stays disabled: no transport is set).  The DAG
syncs legacy MySQL tables and a YAML file into PostgreSQL (one MySQL table is dropped: that table fails) and
then backfills the organization and product-line keys of a fact file; what the events say is compared with
the rows the run left in the warehouse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import psycopg
from psycopg import sql

from tests.conftest import REPO_ROOT
from tests.integration.refdata_business_tables import ORG_AND_PRODUCT_LINE, write_fk_yaml
from tests.integration.services.sync_env import ORG, PLAN, PORTFOLIO, PRODUCT_LINE, SyncEnv

JOB_NAMESPACE = "refdata_lineage_test"
FACT_TABLE = "事实"

DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_refdata.operators import HybridReferenceOperator, ReferenceSyncOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    sync = ReferenceSyncOperator(task_id="sync", config_path={config!r}, fail_on="all")
    ensure = HybridReferenceOperator(
        task_id="ensure",
        domain="annuity_performance",
        fact_file={facts!r},
        fk_config_path={fk_config!r},
        auto_derived_threshold=0.2,
        table_thresholds={{{product_table!r}: 0.5}},
    )
    check = HybridReferenceOperator(
        task_id="check",
        domain="annuity_performance",
        sql={query!r},
        fk_config_path={fk_config!r},
        coverage_only=True,
    )
    # fails (portfolio_plan is gone): its FAIL event still names what it synced
    resync = ReferenceSyncOperator(
        task_id="resync", config_path={config!r}, tables=["organization", "portfolio_plan"], force_full=True
    )
    sync >> ensure >> check >> resync
"""

# As tests.integration.steward_scenario.dag_in_metadata_db (not imported: tests.conftest would make a new
# AIRFLOW_HOME in that process).
RUNNER = """
import json, sys
from pathlib import Path
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

folder, dag_id = Path(sys.argv[1]), sys.argv[2]
(folder / f"{dag_id}.py").write_text((folder.parent / "dag_source.txt").read_text(encoding="utf-8"), encoding="utf-8")
DagBundlesManager().sync_bundles_to_db()
bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="dags-folder")
assert bag.import_errors == {}, bag.import_errors
sync_bag_to_db(bag, "dags-folder", None)
run = bag.dags[dag_id].test()
print("STATES " + json.dumps({ti.task_id: str(ti.state) for ti in run.get_task_instances()}))
"""


def run_dag_with_file_transport(folder: Path, dag_id: str, source: str, events: Path) -> dict[str, str]:
    """Run the DAG with ``dag.test()`` in a fresh process whose OpenLineage transport is the file ``events``."""
    (folder.parent / "dag_source.txt").write_text(source, encoding="utf-8")
    env = os.environ | {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": JOB_NAMESPACE,
    }
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(folder), dag_id],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("STATES ")), None)
    assert done.returncode == 0 and line, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(line.removeprefix("STATES "))


def complete_event(events: Path, job_name: str, event_type: str = "COMPLETE") -> dict:
    """The one COMPLETE (or ``event_type``) event of ``job_name`` in the file transport's output."""
    found = [
        e
        for e in map(json.loads, events.read_text(encoding="utf-8").splitlines())
        if e.get("eventType") == event_type and e.get("job", {}).get("name") == job_name
    ]
    assert len(found) == 1, f"{len(found)} {event_type} events of {job_name}"
    return found[0]


def by_name(datasets: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in datasets}


def test_dag_run_emits_sources_targets_row_counts_and_assertions(
    airflow_db, airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    env.mysql("DROP TABLE portfolio_plan")  # this table fails: neither input nor output
    facts = tmp_path / "facts.csv"
    rows = {
        "机构代码": ["G01", "G03", "", "G03"],
        "机构名称": ["总部", "新机构", "", "新机构"],
        "产品线代码": ["PL201", "PL999", "PL201", "301"],
    }
    pd.DataFrame(rows).to_csv(facts, index=False)
    fact_table = sql.Identifier(pg_schema, FACT_TABLE)
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in rows)
    env.pg(sql.SQL("CREATE TABLE {} ({})").format(fact_table, columns))
    insert = sql.SQL("INSERT INTO {} SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])").format(fact_table)
    env.pg(insert, list(rows.values()))  # one statement for all rows
    query = f'SELECT * FROM "{pg_schema}"."{FACT_TABLE}" WHERE "产品线代码" IS NOT NULL'
    fk_config = write_fk_yaml(tmp_path / "foreign_keys.yml", pg_schema, only=ORG_AND_PRODUCT_LINE)
    dag_id = f"test_lineage_{pg_schema}"
    (tmp_path / "dags").mkdir()
    source = DAG_SOURCE.format(
        dag_id=dag_id,
        config=str(env.config_path),
        facts=str(facts),
        fk_config=str(fk_config),
        product_table=f"{pg_schema}.{PRODUCT_LINE}",
        query=query,
    )
    events = tmp_path / "openlineage.jsonl"

    states = run_dag_with_file_transport(tmp_path / "dags", dag_id, source, events)

    assert states == {"sync": "success", "ensure": "success", "check": "success", "resync": "failed"}
    pg, my = urlsplit(pg_server), urlsplit(mysql_server)
    pg_ns, my_ns = f"postgres://{pg.hostname}:{pg.port}", f"mysql://{my.hostname}:{my.port}"
    database = pg.path.lstrip("/")
    text = events.read_text(encoding="utf-8")
    for secret in (pg.password, my.password):
        assert not secret or secret not in text, "a password reached the events"

    sync = complete_event(events, f"{dag_id}.sync")
    assert sync["job"]["namespace"] == JOB_NAMESPACE
    inputs = by_name(sync["inputs"])
    product_file = str((tmp_path / "reference_data" / "product_lines.yml").absolute())
    assert set(inputs) == {f"{mysql_db}.annuity_plan", f"{mysql_db}.organization", product_file}
    assert inputs[f"{mysql_db}.annuity_plan"]["namespace"] == my_ns
    assert inputs[product_file]["namespace"] == "file"
    rows_read = {n: d["inputFacets"]["dataQualityMetrics"]["rowCount"] for n, d in inputs.items()}
    assert rows_read == {f"{mysql_db}.annuity_plan": 3, f"{mysql_db}.organization": 2, product_file: 3}
    outputs = by_name(sync["outputs"])
    table = {t: f"{database}.{pg_schema}.{t}" for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE)}
    assert set(outputs) == {table[PLAN], table[ORG], table[PRODUCT_LINE]}  # 组合计划 failed
    assert {d["namespace"] for d in outputs.values()} == {pg_ns}
    written = {n: d["outputFacets"]["outputStatistics"]["rowCount"] for n, d in outputs.items()}
    assert written == {table[PLAN]: 3, table[ORG]: 2, table[PRODUCT_LINE]: 3}

    ensure = complete_event(events, f"{dag_id}.ensure")
    [fact_input] = ensure["inputs"]
    assert (fact_input["namespace"], fact_input["name"]) == ("file", str(facts.absolute()))
    metrics = fact_input["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 4
    assert metrics["columnMetrics"]["机构代码"] == {"nullCount": 1, "distinctCount": 2, "quantiles": {}}
    assert metrics["columnMetrics"]["产品线代码"] == {"nullCount": 0, "distinctCount": 3, "quantiles": {}}
    outputs = by_name(ensure["outputs"])
    assert set(outputs) == {table[ORG], table[PRODUCT_LINE]}
    ratios = auto_derived_ratios(pg_server, pg_schema)
    assert ratios == {ORG: (1, 3), PRODUCT_LINE: (1, 4)}  # G03 and PL999 were backfilled

    org = {a["assertion"]: a for a in outputs[table[ORG]]["facets"]["dataQualityAssertions"]["assertions"]}
    assert org["fk_coverage"]["success"] is True and org["fk_coverage"]["column"] == "机构代码"
    assert org["fk_coverage"]["name"] == "fk_organization" and org["fk_coverage"]["actual"] == "1.0"
    assert {k: org["fk_coverage"]["params"][k] for k in ("missing_values", "backfilled", "blank_rows")} == {
        "missing_values": 1,
        "backfilled": 1,
        "blank_rows": 1,
    }
    ratio = org["auto_derived_ratio"]
    assert (ratio["success"], ratio["expected"], float(ratio["actual"])) == (False, "0.2", round(1 / 3, 6))
    product = {a["assertion"]: a for a in outputs[table[PRODUCT_LINE]]["facets"]["dataQualityAssertions"]["assertions"]}
    assert product["fk_coverage"]["success"] is True and product["fk_coverage"]["column"] == "产品线代码"
    ratio = product["auto_derived_ratio"]
    assert (ratio["success"], ratio["expected"], float(ratio["actual"])) == (True, "0.5", 0.25)
    assert outputs[table[ORG]]["outputFacets"]["outputStatistics"]["rowCount"] == 1

    # the coverage check on a query: the fact table and the reference tables it read, nothing written
    check = complete_event(events, f"{dag_id}.check")
    assert check["outputs"] == [] and check["job"]["facets"]["sql"]["query"] == query
    inputs = by_name(check["inputs"])
    assert set(inputs) == {f"{database}.{pg_schema}.{FACT_TABLE}", table[ORG], table[PRODUCT_LINE]}
    assert inputs[f"{database}.{pg_schema}.{FACT_TABLE}"]["inputFacets"]["dataQualityMetrics"]["rowCount"] == 4
    for name in (table[ORG], table[PRODUCT_LINE]):
        [coverage] = [
            a for a in inputs[name]["facets"]["dataQualityAssertions"]["assertions"] if a["assertion"] == "fk_coverage"
        ]
        assert (coverage["success"], coverage["params"]["missing_values"]) == (True, 0)  # backfilled by ensure

    failed = complete_event(events, f"{dag_id}.resync", "FAIL")
    assert [d["name"] for d in failed["inputs"]] == [f"{mysql_db}.organization"]
    assert failed["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"] == 2  # G01 and G02: a full read
    assert [d["name"] for d in failed["outputs"]] == [table[ORG]]  # not 组合计划, which failed


def auto_derived_ratios(dsn: str, schema: str) -> dict[str, tuple[int, int]]:
    """``{table: (auto-derived rows, all rows)}`` of the organization and product-line tables."""
    counts = {}
    with psycopg.connect(dsn) as conn:
        for table in (ORG, PRODUCT_LINE):
            counts[table] = conn.execute(
                sql.SQL("SELECT count(*) FILTER (WHERE _source = 'auto_derived'), count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            ).fetchone()
    return counts


WITHOUT_OPENLINEAGE = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        # the client and the provider's code; its provider info stays (Airflow's provider discovery reads it)
        if name.split(".")[0] == "openlineage" or (
            name.startswith("airflow.providers.openlineage.") and not name.endswith(".get_provider_info")
        ):
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
from airflow_provider_refdata.operators import HybridReferenceOperator, ReferenceSyncOperator
from airflow_provider_refdata.results import HybridResult, SyncResult

sync = ReferenceSyncOperator(task_id="sync")
ensure = HybridReferenceOperator(task_id="ensure", domain="d", fact_file="facts.csv")
before = [sync.get_openlineage_facets_on_complete(None), ensure.get_openlineage_facets_on_complete(None)]
sync._lineage_result = [SyncResult(table="s.t", source_type="config_file", sync_mode="upsert", rows_read=1)]
ensure._lineage_result = HybridResult(domain="d")
after = [sync.get_openlineage_facets_on_complete(None), ensure.get_openlineage_facets_on_complete(None)]
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "openlineage" or "openlineage.extractors" in m)
print("RESULT " + json.dumps({"before": before, "after": after, "loaded": loaded}))
"""


def test_without_the_extra_the_operators_import_and_return_no_lineage():
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENLINEAGE],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert done.returncode == 0 and line, done.stderr[-3000:]
    assert json.loads(line.removeprefix("RESULT ")) == {"before": [None, None], "after": [None, None], "loaded": []}
