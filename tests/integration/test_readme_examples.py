"""The README's REST example, run as written: its ``conf`` triggers the shipped fact DAG on a fresh demo's files.

A fresh demo writes only the previous month's fact file (``devtools/sample_data.py``), so the README's
``conf`` must check and load that month.  The REST call itself is covered by ``test_airflow_api.py``; here
the same ``conf`` goes through ``dag.test()`` against the harness database.
"""

from __future__ import annotations

import json
import re

from airflow_provider_refdata import resolve_month
from tests.conftest import REPO_ROOT
from tests.integration.dags.dag_runs import task_states
from tests.integration.dags.test_annuity_performance_dag import _count, _fact_csv, annuity_dag  # noqa: F401
from tests.integration.refdata_business_tables import PLAN

DAG_RUNS = "/api/v2/dags/refdata_annuity_performance/dagRuns"


def readme_dag_run_body() -> dict:
    """The JSON body the README posts to ``dagRuns`` (the first ``{…}`` after the endpoint)."""
    readme = (REPO_ROOT / "README.md").read_text()
    after = readme.split(f"`POST {DAG_RUNS}` with `", 1)[1]
    return json.loads(after.split("`", 1)[0])


def test_readme_rest_body_loads_the_month_a_fresh_demo_writes(annuity_dag, pg_conn, pg_schema, tmp_path, monkeypatch):  # noqa: F811
    body = readme_dag_run_body()
    assert set(body) == {"logical_date", "conf"} and body["logical_date"] is None
    # The demo's only fact file: the previous month, named as devtools.sample_data names it.
    month = resolve_month(None)
    fact_dir = tmp_path / "demo_data"
    fact_dir.mkdir()
    _fact_csv(fact_dir / f"annuity_performance_{month.replace('-', '')}.csv")
    monkeypatch.setenv("REFDATA_FACT_DIR", str(fact_dir))

    run = annuity_dag.test(run_conf={**body["conf"], "auto_derived_threshold": 1.0})

    states = task_states(run)
    assert states["load_staging"] == "success" and states["load_facts"] == "success", states
    assert _count(pg_conn, pg_schema, "规模明细") == 4
    assert _count(pg_conn, pg_schema, PLAN, "_source = 'auto_derived'") == 2


def test_readme_names_the_file_a_given_month_needs():
    readme = (REPO_ROOT / "README.md").read_text()
    months = re.findall(r'"conf": \{"month": "(\d{4})-(\d{2})"\}', readme)
    assert months, "the README shows how to ask for one month"
    for year, month in months:
        assert f".demo/data/annuity_performance_{year}{month}.csv" in readme
