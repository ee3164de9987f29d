"""Per-table connections over the real servers: the operator's ``source_connections``, Airflow connections
by ``conn_id``, ``connection_env_prefix``, and the CLI's ``--source NAME=DSN``.

One configuration mixes every way a table can name its source:

* ``annuity_plan`` (legacy_mysql, ``conn_id: crm``): ``source_connections["crm"]`` = an Airflow connection id
  (operator) or a DSN (CLI);
* ``portfolio_plan`` (legacy_mysql, no conn_id): by source type (``source_connections["legacy_mysql"]``, a DSN);
* ``organization`` (legacy_mysql, ``connection_env_prefix: LEGACY_ORG``): ``LEGACY_ORG_HOST`` … from the
  environment;
* ``product_line`` (sql, ``conn_id: files``): a real SQLite file, by DSN ``sqlite:////abs/path``;
* ``channel`` (sql, ``conn_id: legacy_pg``, incremental): named by no mapping, so the Airflow connection
  ``legacy_pg`` (a ``postgres`` connection: an SqlSource over its PostgresHook);
* ``orphan`` (sql without conn_id): fails, naming itself; the other tables still sync.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import datetime
from urllib.parse import unquote, urlsplit

import pytest
from airflow.sdk.exceptions import AirflowException
from psycopg import sql

from airflow_provider_refdata.config import load_sync_config
from airflow_provider_refdata.exceptions import RefdataConfigError
from airflow_provider_refdata.hooks.connections import ConnectionSource, source_for_connection, sources_from_mapping
from airflow_provider_refdata.operators.sync import ReferenceSyncOperator
from airflow_provider_refdata.services.source_sql import SqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import airflow_conn_uri, run_cli
from tests.integration.services.sync_env import ORG, PLAN, PORTFOLIO, PRODUCT_LINE, SyncEnv

CHANNEL, ORPHAN = "渠道", "无连接"
SECRET = "refdata-secret-pw"

CONFIG = """
schema_version: "1.0"
batch_size: 2
tables:
  - name: annuity_plan
    target_schema: {schema}
    target_table: 年金计划
    primary_key: 年金计划号
    source_type: legacy_mysql
    source_config:
      conn_id: crm
      table: annuity_plan
      database: {db}
      columns:
        - {{ source: plan_code, target: 年金计划号 }}
        - {{ source: plan_name, target: 计划名称 }}
  - name: portfolio_plan
    target_schema: {schema}
    target_table: 组合计划
    primary_key: 组合代码
    source_type: legacy_mysql
    source_config:
      table: portfolio_plan
      database: {db}
      columns:
        - {{ source: portfolio_code, target: 组合代码 }}
        - {{ source: portfolio_name, target: 组合名称 }}
  - name: organization
    target_schema: {schema}
    target_table: 组织架构
    primary_key: 机构代码
    source_type: legacy_mysql
    source_config:
      connection_env_prefix: LEGACY_ORG
      table: organization
      columns:
        - {{ source: "机构 代码", target: 机构代码 }}
        - {{ source: org_name, target: 机构名称 }}
  - name: product_line
    target_schema: {schema}
    target_table: 产品线
    primary_key: 产品线代码
    source_type: sql
    sync_mode: delete_insert
    source_config:
      conn_id: files
      table: product lines
      columns:
        - {{ source: code, target: 产品线代码 }}
        - {{ source: name, target: 产品线名称 }}
        - {{ source: category, target: 业务大类 }}
  - name: channel
    target_schema: {schema}
    target_table: 渠道
    primary_key: 渠道代码
    source_type: sql
    source_config:
      conn_id: legacy_pg
      schema: {schema}
      table: legacy channels
      columns:
        - {{ source: Code, target: 渠道代码 }}
        - {{ source: name, target: 渠道名称 }}
      incremental: {{ updated_at_column: changed_at, lookback_seconds: 0 }}
  - name: orphan
    target_schema: {schema}
    target_table: 无连接
    primary_key: 代码
    source_type: sql
    source_config:
      table: anything
      columns:
        - {{ source: code, target: 代码 }}
"""


class Setup:
    """SyncEnv's MySQL tables and targets, plus a SQLite file, a legacy PostgreSQL table, two more targets."""

    def __init__(self, env: SyncEnv, tmp_path) -> None:
        self.env = env
        self.sqlite_path = tmp_path / "legacy files.db"
        with sqlite3.connect(self.sqlite_path) as conn:
            conn.execute('CREATE TABLE "product lines" (code text PRIMARY KEY, name varchar(50), category text)')
            conn.executemany(
                'INSERT INTO "product lines" VALUES (?, ?, ?)',
                [
                    ("PL201", " 企业年金受托 ", "企业年金"),
                    ("PL202", "企业年金投资", None),
                    ("\u3000PL301 ", "团体养老", ""),
                ],
            )
        conn.close()
        schema = env.schema
        env.pg(
            sql.SQL("CREATE TABLE {}.{} ({} text, {} text, {} timestamp)").format(
                sql.Identifier(schema),
                sql.Identifier("legacy channels"),
                *map(sql.Identifier, ["Code", "name", "changed_at"]),
            )
        )
        env.pg(
            sql.SQL(
                "INSERT INTO {}.{} VALUES ('C1', ' 银行 ', '2024-03-01 10:00'), ('C2', '网销', '2024-03-02 10:00')"
            ).format(sql.Identifier(schema), sql.Identifier("legacy channels"))
        )
        env.pg(
            sql.SQL("CREATE TABLE {}.{} ({} varchar(16) PRIMARY KEY, {} text)").format(
                sql.Identifier(schema), sql.Identifier(CHANNEL), sql.Identifier("渠道代码"), sql.Identifier("渠道名称")
            )
        )
        env.pg(
            sql.SQL("CREATE TABLE {}.{} ({} text PRIMARY KEY)").format(
                sql.Identifier(schema), sql.Identifier(ORPHAN), sql.Identifier("代码")
            )
        )
        self.config_path = tmp_path / "connections_sync.yml"
        self.config_path.write_text(CONFIG.format(schema=schema, db=env.database), encoding="utf-8")

    @property
    def sqlite_dsn(self) -> str:
        return f"sqlite://{self.sqlite_path}"

    def mysql_env(self, prefix: str = "LEGACY_ORG") -> dict[str, str]:
        parts = urlsplit(self.env.mysql_dsn)
        return {
            f"{prefix}_HOST": parts.hostname or "127.0.0.1",
            f"{prefix}_PORT": str(parts.port or 3306),
            f"{prefix}_USER": unquote(parts.username or "root"),
            f"{prefix}_PASSWORD": unquote(parts.password or ""),
            f"{prefix}_DATABASE": self.env.database,
        }

    def rows(self, table: str) -> list[tuple]:
        return [row[:2] for row in self.env.rows(table)]


@pytest.fixture
def setup(airflow_connections, pg_server, mysql_server, pg_schema, mysql_db, tmp_path, monkeypatch) -> Setup:
    env = SyncEnv.create(pg_server, mysql_server, pg_schema, mysql_db, tmp_path)
    built = Setup(env, tmp_path)
    for name, value in built.mysql_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_CRM", airflow_conn_uri(mysql_server, "mysql"))
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_PG", airflow_conn_uri(pg_server, "postgres"))
    return built


def _assert_synced(setup: Setup, results: list) -> None:
    by_name = {r.table.split(".", 1)[1]: r for r in results}
    schema = setup.env.schema
    assert [r.table for r in results] == [
        f"{schema}.{t}" for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE, CHANNEL, ORPHAN)
    ], "results in configuration order"
    for table in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE, CHANNEL):
        assert by_name[table].error is None, f"{table}: {by_name[table].error}"
    assert [by_name[t].rows_inserted for t in (PLAN, PORTFOLIO, ORG, PRODUCT_LINE, CHANNEL)] == [3, 2, 2, 3, 2]
    orphan = by_name[ORPHAN].error
    assert orphan is not None and f"{schema}.{ORPHAN}" in orphan and "conn_id" in orphan
    assert setup.rows(PLAN)[0] == ("P001", "甲计划")
    assert setup.rows(ORG) == [("G01", "总部"), ("G02", "分部")]
    assert setup.rows(PRODUCT_LINE) == [("PL201", "企业年金受托"), ("PL202", "企业年金投资"), ("PL301", "团体养老")]
    assert setup.rows(CHANNEL) == [("C1", "银行"), ("C2", "网销")]
    assert setup.env.watermark(CHANNEL) == datetime(2024, 3, 2, 10)
    for result in results:
        assert SECRET not in (result.error or "")


# ----------------------------------------------------------------------------------------------------------
# operator
# ----------------------------------------------------------------------------------------------------------


def test_operator_reads_each_table_through_its_own_connection(setup, caplog, capsys):
    op = ReferenceSyncOperator(
        task_id="sync_connections",
        config_path=str(setup.config_path),
        fail_on="all",  # the orphan table fails by design
        source_connections={
            "crm": "legacy_crm",  # an Airflow connection id, for the tables with conn_id: crm
            "legacy_mysql": setup.env.mysql_dsn,  # a DSN, for the other legacy_mysql tables
            "files": setup.sqlite_dsn,
            "unused_key": "whatever",
        },
    )
    with caplog.at_level("WARNING"):
        results = op.execute({})
    _assert_synced(setup, results)
    logged = caplog.text + "".join(capsys.readouterr())
    assert "unused_key" in logged, "a key naming no table is reported"

    # a rerun rewrites nothing, the incremental sql table reads from its watermark
    before = {t: setup.env.rows(t, with_xmin=True) for t in (PLAN, PRODUCT_LINE, CHANNEL)}
    again = op.execute({})
    assert [r.rows_updated + r.rows_inserted for r in again[:5]] == [0] * 5
    assert {t: setup.env.rows(t, with_xmin=True) for t in before} == before
    assert again[4].rows_read == 1  # the channel changed at the watermark only


def test_operator_defaults_read_airflow_connections_by_conn_id(setup, monkeypatch):
    # No mapping at all: conn_id crm is the Airflow connection "crm", the other legacy_mysql table reads
    # mysql_conn_id, files has no Airflow connection: only that table fails, naming the connection.
    monkeypatch.setenv("AIRFLOW_CONN_CRM", airflow_conn_uri(setup.env.mysql_dsn, "mysql"))
    op = ReferenceSyncOperator(task_id="sync_defaults", config_path=str(setup.config_path), fail_on="all")
    results = op.execute({})
    errors = {r.table.split(".", 1)[1]: r.error for r in results}
    assert [errors[t] for t in (PLAN, PORTFOLIO, ORG, CHANNEL)] == [None] * 4
    assert "'files'" in errors[PRODUCT_LINE] and "isn't defined" in errors[PRODUCT_LINE]
    assert f"{setup.env.schema}.{ORPHAN}" in errors[ORPHAN]


def test_operator_mysql_conn_id_replaces_the_default_connection(setup, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_REFDATA_LEGACY_MYSQL")
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_MYSQL", airflow_conn_uri(setup.env.mysql_dsn, "mysql"))
    op = ReferenceSyncOperator(
        task_id="sync_other", config_path=str(setup.config_path), mysql_conn_id="other_mysql", tables="portfolio_plan"
    )
    [result] = op.execute({})
    assert (result.error, result.rows_inserted) == (None, 2)
    # a source_type key may name an Airflow connection too
    setup.env.pg(sql.SQL("DELETE FROM {}.{}").format(sql.Identifier(setup.env.schema), sql.Identifier(PORTFOLIO)))
    by_type = ReferenceSyncOperator(
        task_id="sync_by_type",
        config_path=str(setup.config_path),
        mysql_conn_id="not_defined_anywhere",
        source_connections={"legacy_mysql": "other_mysql"},
        tables="portfolio_plan",
    )
    [result] = by_type.execute({})
    assert (result.error, result.rows_inserted) == (None, 2)


def test_operator_undefined_connection_fails_only_its_tables(setup):
    op = ReferenceSyncOperator(
        task_id="sync_missing",
        config_path=str(setup.config_path),
        source_connections={"crm": "no_such_connection"},
        tables=["annuity_plan"],
    )
    with pytest.raises(AirflowException, match="no_such_connection"):
        op.execute({})
    assert setup.rows(PLAN) == []


def test_source_connections_are_checked_when_the_dag_is_parsed():
    with pytest.raises(RefdataConfigError, match="source_connections"):
        ReferenceSyncOperator(task_id="bad", source_connections={"crm": ""})
    op = ReferenceSyncOperator(task_id="ok", source_connections={"crm": "legacy_crm"})
    assert op.source_connections == {"crm": "legacy_crm"}
    assert ReferenceSyncOperator(task_id="none").source_connections is None


def test_source_for_connection_builds_each_kind(setup, monkeypatch):
    from airflow_provider_refdata.hooks.legacy_mysql import LegacyMySqlHook
    from airflow_provider_refdata.hooks.yaml_reference import YamlReferenceHook

    assert isinstance(source_for_connection("legacy_mysql", "legacy_crm"), LegacyMySqlHook)
    assert isinstance(source_for_connection("legacy_mysql", None), LegacyMySqlHook)  # refdata_legacy_mysql
    assert isinstance(source_for_connection("config_file", None), YamlReferenceHook)
    pg = source_for_connection("sql", "legacy_pg")
    assert isinstance(pg, SqlSource) and pg.placeholder == "%s" and pg.quote_identifier('a"b') == '"a""b"'
    my = source_for_connection("sql", "legacy_crm")  # a mysql connection is a DbApiHook too
    assert isinstance(my, SqlSource) and my.quote_identifier("a`b") == "`a``b`"
    assert SECRET not in repr(my) and SECRET not in my.name
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_SQLITE", f"sqlite:///{setup.sqlite_path}")
    with pytest.raises(Exception, match="install the provider") as caught:
        source_for_connection("sql", "legacy_sqlite")  # no sqlite provider installed
    assert "legacy_sqlite" in str(caught.value)
    with pytest.raises(RefdataConfigError, match="source_type 'nope'"):
        source_for_connection("nope", "x")
    mapped = sources_from_mapping({"crm": "legacy_crm", "files": setup.sqlite_dsn})
    assert isinstance(mapped["crm"], ConnectionSource) and mapped["files"] == setup.sqlite_dsn


# ----------------------------------------------------------------------------------------------------------
# connection_env_prefix (plain service)
# ----------------------------------------------------------------------------------------------------------


def test_connection_env_prefix_syncs_from_the_environment(setup):
    config = load_sync_config(setup.config_path)
    [result] = ReferenceSyncService().sync_all(config, conn=setup.env.pg_dsn, tables=["organization"])
    assert (result.error, result.rows_inserted) == (None, 2)
    assert setup.rows(ORG) == [("G01", "总部"), ("G02", "分部")]


def test_connection_env_prefix_names_missing_variables_never_values(setup, monkeypatch):
    monkeypatch.delenv("LEGACY_ORG_USER")
    monkeypatch.delenv("LEGACY_ORG_DATABASE")
    host = os.environ["LEGACY_ORG_HOST"]
    config = load_sync_config(setup.config_path)
    [result] = ReferenceSyncService().sync_all(config, conn=setup.env.pg_dsn, tables=["organization"])
    assert result.error is not None
    assert "LEGACY_ORG_USER" in result.error and "LEGACY_ORG_DATABASE" in result.error
    assert "LEGACY_ORG_HOST" in result.error  # the variables read are listed, their values never
    assert SECRET not in result.error and host not in result.error
    assert setup.rows(ORG) == []


# ----------------------------------------------------------------------------------------------------------
# CLI --source NAME=DSN
# ----------------------------------------------------------------------------------------------------------


def _cli(*args: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_cli(*args, env_vars=extra_env, drop=("REFDATA_", "AIRFLOW_CONN_"))


def test_cli_source_arguments(setup):
    pg = {"REFDATA_PG_DSN": setup.env.pg_dsn}
    done = _cli(
        "sync",
        "--config",
        str(setup.config_path),
        "--source",
        f"crm={setup.env.mysql_dsn}",
        "--source",
        f"legacy_mysql={setup.env.mysql_dsn}",
        "--source",
        f"files={setup.sqlite_dsn}",
        "--tables",
        "annuity_plan,portfolio_plan,organization,product_line,orphan",
        "--json",
        extra_env=pg,
    )
    assert done.returncode == 1, done.stderr  # the orphan table fails
    results = json.loads(done.stdout)
    assert [r["error"] is None for r in results] == [True] * 4 + [False]
    assert [r["rows_inserted"] for r in results[:4]] == [3, 2, 2, 3]
    assert SECRET not in done.stdout + done.stderr


def test_cli_source_usage_errors_never_echo_the_value(setup):
    pg = {"REFDATA_PG_DSN": setup.env.pg_dsn}
    config = ["sync", "--config", str(setup.config_path)]
    for bad in ("no-equals-sign", f"crm=user:{SECRET}@host", "=mysql://x/y"):
        run = _cli(*config, "--source", bad, extra_env=pg)
        assert run.returncode == 2 and "NAME=DSN" in run.stderr, run.stderr
        assert SECRET not in run.stdout + run.stderr
    scheme = _cli(*config, "--source", f"crm=ftp://u:{SECRET}@h/x", extra_env=pg)
    assert scheme.returncode == 2 and "ftp://" in scheme.stderr and SECRET not in scheme.stderr
    # a table whose source nobody names fails (no Airflow here), the others still sync
    partial = _cli(
        *config, "--tables", "annuity_plan,product_line", "--source", f"files={setup.sqlite_dsn}", extra_env=pg
    )
    assert partial.returncode == 1 and "FAILED" in partial.stdout and "crm" in partial.stdout
    assert setup.rows(PRODUCT_LINE)[0] == ("PL201", "企业年金受托")
