"""The harness is real: both servers answer, Chinese identifiers round-trip, Airflow sees the provider."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from psycopg import sql

from tests.conftest import REPO_ROOT, mysql_connect

PLAN = "年金计划"
PLAN_KEY = "年金计划号"


def _create_plan_table(cur, schema: str) -> None:
    cur.execute(
        sql.SQL("CREATE TABLE {}.{} ({} varchar(32) PRIMARY KEY, {} text)").format(
            sql.Identifier(schema), sql.Identifier(PLAN), sql.Identifier(PLAN_KEY), sql.Identifier("计划名称")
        )
    )


def test_postgres_chinese_identifiers_through_psycopg(pg_conn, pg_schema):
    with pg_conn.cursor() as cur:
        _create_plan_table(cur, pg_schema)
        cur.execute(
            sql.SQL("INSERT INTO {}.{} VALUES (%s, %s)").format(sql.Identifier(pg_schema), sql.Identifier(PLAN)),
            ("P0001", "测试计划"),
        )
        cur.execute(
            sql.SQL("SELECT {}, {} FROM {}.{}").format(
                sql.Identifier(PLAN_KEY), sql.Identifier("计划名称"), sql.Identifier(pg_schema), sql.Identifier(PLAN)
            )
        )
        assert cur.fetchall() == [("P0001", "测试计划")]
    pg_conn.commit()


def test_postgres_chinese_identifiers_through_postgres_hook(airflow_connections, pg_schema):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id="refdata_warehouse")
    with hook.get_conn() as conn, conn.cursor() as cur:
        _create_plan_table(cur, pg_schema)
        conn.commit()
    hook.insert_rows(f'"{pg_schema}"."{PLAN}"', [("P0002", "职业年金计划")], target_fields=[PLAN_KEY, "计划名称"])
    rows = hook.get_records(
        sql.SQL("SELECT {} , {} FROM {}.{}")
        .format(sql.Identifier(PLAN_KEY), sql.Identifier("计划名称"), sql.Identifier(pg_schema), sql.Identifier(PLAN))
        .as_string()
    )
    assert [tuple(r) for r in rows] == [("P0002", "职业年金计划")]


def test_mysql_chinese_identifiers_through_mysql_hook(airflow_connections, mysql_db):
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    hook = MySqlHook(mysql_conn_id="refdata_legacy_mysql", schema=mysql_db)
    hook.run(f"CREATE TABLE `{PLAN}` (`{PLAN_KEY}` varchar(32) PRIMARY KEY, `计划名称` text) CHARACTER SET utf8mb4")
    hook.run(f"INSERT INTO `{PLAN}` VALUES (%s, %s)", parameters=("P0003", "企业年金计划"))
    assert [tuple(r) for r in hook.get_records(f"SELECT * FROM `{PLAN}`")] == [("P0003", "企业年金计划")]
    # and the same row seen over a plain driver connection
    conn = mysql_connect(airflow_connections["refdata_legacy_mysql"].replace("mysql://", "mysql://", 1), mysql_db)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT `计划名称` FROM `{PLAN}` WHERE `{PLAN_KEY}` = %s", ("P0003",))
        assert cur.fetchone() == ("企业年金计划",)
    finally:
        conn.close()


def test_providers_manager_lists_the_provider():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-provider-refdata" in providers
    assert providers["airflow-provider-refdata"].version == version("airflow-provider-refdata")


def test_airflow_providers_list_cli_shows_the_provider():
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-refdata" in result.stdout
    assert version("airflow-provider-refdata") in result.stdout


def test_every_dag_file_imports_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags"), safe_mode=False)
    assert dagbag.import_errors == {}
    dag_files = sorted(p.name for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    assert len(dagbag.dags) >= len(dag_files)


def test_provider_registers_its_connection_types_and_form_fields():
    import warnings

    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hooks = manager.hooks
    assert hooks["refdata_mysql"].hook_class_name == "airflow_provider_refdata.hooks.legacy_mysql.LegacyMySqlHook"
    assert hooks["refdata_yaml"].hook_class_name == "airflow_provider_refdata.hooks.yaml_reference.YamlReferenceHook"
    assert {
        "extra__refdata_mysql__connect_timeout",
        "extra__refdata_mysql__read_timeout",
        "extra__refdata_yaml__base_path",
    } <= set(manager.connection_form_widgets)
    assert "password" in manager.field_behaviours["refdata_yaml"]["hidden_fields"]
