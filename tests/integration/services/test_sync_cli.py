"""The CLI (``python -m airflow_provider_refdata sync``) in a fresh process against the real servers."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.integration.services.sync_env import PLAN, PRODUCT_LINE, SyncEnv


def test_cli_sync_plan_only_then_real_run(pg_server, mysql_server, pg_schema, mysql_db, tmp_path):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    dsns = {"REFDATA_PG_DSN": pg_server, "REFDATA_MYSQL_DSN": mysql_server}
    planned = run_cli("sync", "--config", str(env.config_path), "--plan-only", env_vars=dsns)
    assert planned.returncode == 0, planned.stderr
    assert "planned" in planned.stdout and f"{env.schema}.{PLAN}" in planned.stdout
    assert env.rows(PLAN) == []
    done = run_cli(
        "sync", "--config", str(env.config_path), "--tables", "annuity_plan,product_line", "--json", env_vars=dsns
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [(r["table"], r["rows_inserted"]) for r in results] == [
        (f"{env.schema}.{PLAN}", 3),
        (f"{env.schema}.{PRODUCT_LINE}", 3),
    ]
    assert "refdata-secret-pw" not in done.stdout + done.stderr


def test_cli_reports_failures_and_usage_errors(pg_server, mysql_server, pg_schema, mysql_db, tmp_path):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    bad_mysql = mysql_server.rsplit(":", 1)[0] + ":1/x"  # nothing listens on port 1
    failed = run_cli(
        "sync",
        "--config",
        str(env.config_path),
        "--warehouse-dsn",
        pg_server,
        "--mysql-dsn",
        bad_mysql,
        "--tables",
        "organization",
        "--retries",
        "1",
        "--retry-wait",
        "0.01",
        env_vars={},
    )
    assert failed.returncode == 1 and "FAILED" in failed.stdout and ":1/" in failed.stdout
    assert "refdata-secret-pw" not in failed.stdout + failed.stderr
    missing = run_cli("sync", "--config", str(env.config_path), env_vars={})
    assert missing.returncode == 2 and "REFDATA_PG_DSN" in missing.stderr
    unknown = run_cli(
        "sync", "--config", str(env.config_path), "--tables", "nope", env_vars={"REFDATA_PG_DSN": pg_server}
    )
    assert unknown.returncode == 2 and "unknown sync table" in unknown.stderr


def test_cli_unreachable_warehouse_ends_on_one_line_naming_host_port_database(
    pg_server, mysql_server, pg_schema, mysql_db, tmp_path
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    unreachable = "postgresql://refdata:refdata-secret-pw@127.0.0.1:1/warehouse_db?connect_timeout=2"
    result = run_cli("sync", "--config", str(env.config_path), env_vars={"REFDATA_PG_DSN": unreachable})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach the warehouse 127.0.0.1:1/warehouse_db: ")
    assert "Traceback" not in result.stderr and "refdata-secret-pw" not in result.stderr + result.stdout
