"""``make airflow`` for real: ``airflow standalone`` on a free port, both DAGs triggered through the REST API.

What a user does in the UI, done over HTTP: log in (SimpleAuthManager token), see both DAGs with their
trigger-form params (each with a description and a type), unpause them, ``POST /api/v2/dags/{dag_id}/dagRuns``
with ``logical_date: null`` and params, and wait for ``success``.  The standalone process group is stopped
the way Ctrl-C stops ``make airflow``, and the test checks that no process of it is left.

The fact file is written for the previous month, the DAG's default: when the sync run emits its Asset, the
scheduler also starts an annuity-performance run with default params, and that one must find its file too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
from psycopg import sql

from devtools import demo, sample_data
from devtools.airflow_standalone import Standalone, process_group
from devtools.sample_data import SampleSpec
from devtools.servers import free_port

RUN_TIMEOUT_SECONDS = 420  # generous: the suite may run on a busy 2-core machine


class Api:
    """A minimal client of the Airflow REST API with a bearer token."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token: str | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def login(self, username: str, password: str) -> None:
        status, body = self.call("POST", "/auth/token", {"username": username, "password": password})
        assert status == 201, body
        self.token = body["access_token"]

    def wait_for(self, path: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.call("GET", path)
            if status == 200:
                return body
            assert time.monotonic() < deadline, f"GET {path} kept answering {status}: {body}"
            time.sleep(2)

    def run_to_end(self, dag_id: str, conf: dict, timeout: float) -> dict:
        status, run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        assert status == 200, run
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"
        deadline = time.monotonic() + timeout
        while run["state"] not in ("success", "failed"):
            assert time.monotonic() < deadline, f"{dag_id} run still {run['state']} after {timeout}s"
            time.sleep(2)
            status, run = self.call("GET", path)
            assert status == 200, run
        return run

    def wait_until_idle(self, timeout: float) -> None:
        """Wait until no DAG run is queued or running (the sync's Asset starts the fact and health DAGs on its
        own): stopping standalone while a task is starting is what once needed SIGKILL."""
        deadline = time.monotonic() + timeout
        while True:
            _, body = self.call("GET", "/api/v2/dags/~/dagRuns?state=queued&state=running&limit=20")
            active = [(r["dag_id"], r["state"]) for r in body["dag_runs"]]
            if not active:
                return
            assert time.monotonic() < deadline, f"DAG runs still active after {timeout}s: {active}"
            time.sleep(2)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        _status, body = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


@pytest.fixture
def demo_databases(pg_server, mysql_server):
    with demo.isolated_databases(pg_server, mysql_server, f"api_{uuid.uuid4().hex[:10]}") as dsns:
        yield dsns


@pytest.fixture
def metadata_dsn(pg_server):
    """Airflow's own metadata database in PostgreSQL, as ``make airflow`` uses (dropped afterwards): the API
    server, scheduler and workers write at once, which SQLite answers with "Database error"."""
    name = f"airflow_meta_{uuid.uuid4().hex[:10]}"
    yield demo.create_database(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_trigger_both_dags_through_the_rest_api(tmp_path, demo_databases, metadata_dsn):
    pg_dsn, mysql_dsn = demo_databases
    spec = SampleSpec.small(fact_rows=1500)
    world = sample_data.generate(spec)
    demo.create_warehouse_schema(pg_dsn)
    demo.ensure_legacy_loaded(mysql_dsn, world)
    facts_file = sample_data.write_facts(world, tmp_path / "data" / sample_data.facts_file_name(spec))
    env = demo.airflow_env(
        tmp_path / "airflow", pg_dsn, mysql_dsn, facts_dir=facts_file.parent, metadata_dsn=metadata_dsn
    )
    standalone = Standalone(env, free_port(), tmp_path / "standalone.log")
    standalone.start()
    try:
        standalone.wait_ready(timeout=300)
        api = Api(standalone.port)
        api.login("admin", standalone.password())
        for dag_id in (demo.SYNC_DAG_ID, demo.FACTS_DAG_ID):
            api.wait_for(f"/api/v2/dags/{dag_id}", timeout=120)
            details = api.wait_for(f"/api/v2/dags/{dag_id}/details", timeout=10)
            assert details["params"], dag_id
            for name, param in details["params"].items():
                # What the UI trigger form shows: a description and a typed field.
                assert param.get("description"), (dag_id, name)
                assert param.get("schema", {}).get("type"), (dag_id, name)
            status, body = api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            assert status == 200, body

        sync_run = api.run_to_end(demo.SYNC_DAG_ID, {"force_full": True}, RUN_TIMEOUT_SECONDS)
        assert sync_run["state"] == "success", api.task_states(demo.SYNC_DAG_ID, sync_run["dag_run_id"])
        conf = {"month": f"{spec.month:%Y-%m}", "fact_file": str(facts_file), "auto_derived_threshold": 0.5}
        facts_run = api.run_to_end(demo.FACTS_DAG_ID, conf, RUN_TIMEOUT_SECONDS)
        states = api.task_states(demo.FACTS_DAG_ID, facts_run["dag_run_id"])
        assert facts_run["state"] == "success", states
        assert facts_run["conf"] == conf
        assert states["load_facts"] == "success", states
        assert demo.fact_rows_in_warehouse(pg_dsn, spec.month) == spec.fact_rows
        api.wait_until_idle(RUN_TIMEOUT_SECONDS)
    finally:
        how = standalone.stop()
    leader = standalone.process.pid
    assert [pid for pid, state in process_group(leader) if state != "Z"] == []
    assert how == "SIGINT", f"standalone needed {how} to stop; log {standalone.log_file}"
