"""LegacyMySqlHook and YamlReferenceHook built from Airflow connections, syncing into the real warehouse."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from airflow_provider_refdata.hooks import LegacyMySqlHook, YamlReferenceHook
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.integration.services.sync_env import PLAN, PRODUCT_LINE, SyncEnv


def test_hooks_construct_without_arguments_and_without_io():
    mysql, files = LegacyMySqlHook(), YamlReferenceHook()
    assert mysql.mysql_conn_id == "refdata_legacy_mysql" and mysql.conn_type == "refdata_mysql"
    assert files.yaml_conn_id == "refdata_yaml"


def test_legacy_mysql_hook_streams_from_the_airflow_connection(
    airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch
):
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    uri = airflow_connections["refdata_legacy_mysql"] + "?connect_timeout=7&read_timeout=9"
    monkeypatch.setenv("AIRFLOW_CONN_REFDATA_LEGACY_MYSQL", uri)
    hook = LegacyMySqlHook()
    assert (hook.source.connect_timeout, hook.source.read_timeout) == (7, 9)
    assert hook.describe().endswith("/legacy") and "secret" not in hook.describe()
    table = env.config.table("annuity_plan")
    with hook.stream(table, None, 100) as read:
        assert read.columns == ["年金计划号", "计划名称", "计划类型", "客户名称"]
        assert read.copy_format == "csv"
        records = list(csv.reader(io.StringIO(b"".join(read.batches).decode())))
        assert read.max_updated_at == datetime(2024, 1, 3, 8, 0)
    assert len(records) == 3 and records[0][:2] == ["P001", "甲计划"] and records[2][1] == "丙计划\nline2"
    # the hook is a MySqlHook: ordinary DB-API helpers still work
    assert hook.get_records(f"SELECT count(*) FROM `{mysql_db}`.annuity_plan")[0][0] == 3
    results = ReferenceSyncService().sync_all(
        env.config, {"legacy_mysql": hook, "config_file": YamlReferenceHook()}, env.pg_dsn
    )
    assert [r.error for r in results] == [None] * 4
    assert len(env.rows(PLAN)) == 3 and len(env.rows(PRODUCT_LINE)) == 3


def test_yaml_hook_base_path_from_connection_extra(tmp_path, monkeypatch):
    (tmp_path / "lines.yml").write_text("schema_version: '1.0'\ndata:\n  - {代码: A}\n", encoding="utf-8")
    monkeypatch.setenv(
        "AIRFLOW_CONN_REFDATA_YAML", json.dumps({"conn_type": "refdata_yaml", "extra": {"base_path": str(tmp_path)}})
    )
    assert YamlReferenceHook().base_path == tmp_path
    assert YamlReferenceHook(base_path="/elsewhere").base_path.as_posix() == "/elsewhere"
    monkeypatch.delenv("AIRFLOW_CONN_REFDATA_YAML")
    assert YamlReferenceHook().base_path is None


def test_legacy_mysql_hook_creates_a_missing_target_table(
    airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path
):
    import psycopg
    from psycopg import sql

    from airflow_provider_refdata.services.sources import DescribableSource

    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    with psycopg.connect(pg_server, autocommit=True) as pg:
        pg.execute(sql.SQL("DROP TABLE {}.{} CASCADE").format(sql.Identifier(pg_schema), sql.Identifier(PLAN)))
    hook = LegacyMySqlHook()
    assert isinstance(hook, DescribableSource)
    table = env.config.table("annuity_plan").model_copy(update={"create_table": True})
    result = ReferenceSyncService().sync_table(table, hook, env.pg_dsn)
    assert result.error is None and result.rows_inserted == 3
    assert result.ddl is not None and '"年金计划号" varchar(16) NOT NULL' in result.ddl
