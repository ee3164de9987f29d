"""LegacyPostgresHook built from an Airflow connection (AIRFLOW_CONN_REFDATA_LEGACY_POSTGRES), syncing a
legacy PostgreSQL table into the real warehouse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

from airflow_provider_refdata.hooks import LegacyPostgresHook
from airflow_provider_refdata.services.source_postgres import PostgresSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import airflow_conn_uri
from tests.integration.services.test_source_postgres import LEGACY_SCHEMA, Env, legacy_dsn  # noqa: F401

ENV_VAR = "AIRFLOW_CONN_REFDATA_LEGACY_POSTGRES"


def test_hook_constructs_without_arguments_and_without_io():
    hook = LegacyPostgresHook()
    assert hook.postgres_conn_id == "refdata_legacy_postgres" and hook.conn_type == "postgres"
    assert LegacyPostgresHook.default_conn_name == "refdata_legacy_postgres"
    assert "source" not in vars(hook)  # the source is built lazily, on first use


def test_hook_reads_its_settings_from_the_connection(monkeypatch):
    monkeypatch.setenv(
        ENV_VAR,
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "legacy.example",
                "port": 6543,
                "login": "reader",
                "password": "h00k-secret-pw",
                "schema": "旧库",
                "extra": {"connect_timeout": 7, "statement_timeout": 120, "sslmode": "require", "iam": False},
            }
        ),
    )
    hook = LegacyPostgresHook()
    source = hook.source
    assert isinstance(source, PostgresSource) and hook.source is source  # cached
    assert (source.host, source.port, source.user, source.password, source.database) == (
        "legacy.example",
        6543,
        "reader",
        "h00k-secret-pw",
        "旧库",
    )
    assert (source.connect_timeout, source.statement_timeout) == (7, 120)
    assert source.conninfo == {"sslmode": "require"}  # libpq parameters only; iam is the hook's own
    assert hook.describe() == "legacy.example:6543/旧库" and "h00k-secret-pw" not in repr(source)
    assert LegacyPostgresHook(database="另一个库", connect_timeout=3).source.describe().endswith("/另一个库")


def test_hook_streams_describes_and_syncs_from_the_airflow_connection(legacy_dsn, pg_server, pg_schema, monkeypatch):  # noqa: F811
    monkeypatch.setenv(ENV_VAR, airflow_conn_uri(legacy_dsn, "postgres"))
    env = Env(pg_server, legacy_dsn, pg_schema)
    env.legacy('CREATE TABLE {s}."机构" ("机构代码" varchar(8) PRIMARY KEY, "机构名称" text, "更新时间" timestamptz)')
    env.legacy(
        'INSERT INTO {s}."机构" VALUES (%s, %s, %s)',
        many=[
            (" G01 ", " 总部 ", datetime(2024, 1, 1, 8, tzinfo=UTC)),
            ("G02", "分部\t一", datetime(2024, 1, 2, 8, tzinfo=UTC)),
        ],
    )
    env.create_target("组织架构", '"机构代码" varchar(8) PRIMARY KEY, "机构名称" text')
    cfg = env.table_config(
        "机构",
        [("机构代码", "机构代码"), ("机构名称", "机构名称")],
        key="机构代码",
        target="组织架构",
        incremental={"updated_at_column": "更新时间"},
    )
    hook = LegacyPostgresHook()
    assert hook.describe() == f"127.0.0.1:{urlsplit(legacy_dsn).port}/{urlsplit(legacy_dsn).path.lstrip('/')}"
    with hook.stream(cfg, None, 100) as read:
        assert read.columns == ["机构代码", "机构名称"]
        lines = sorted(b"".join(read.batches).decode().splitlines())
        assert read.max_updated_at == datetime(2024, 1, 2, 8)
    assert lines == ["G01\t总部", "G02\t分部\\t一"]
    assert [(c.name, c.pg_type, c.nullable) for c in hook.describe_columns(cfg)] == [
        ("机构代码", "character varying(8)", False),
        ("机构名称", "text", True),
    ]
    # the hook is a PostgresHook: ordinary DB-API helpers still work
    assert hook.get_records(f'SELECT count(*) FROM "{LEGACY_SCHEMA}"."机构"')[0][0] == 2
    result = ReferenceSyncService().sync_table(cfg, hook, pg_server)
    assert result.error is None and (result.rows_inserted, result.watermark_after) == (2, datetime(2024, 1, 2, 8))
    assert env.rows("组织架构", '"机构代码", "机构名称"') == [("G01", "总部"), ("G02", "分部\t一")]
