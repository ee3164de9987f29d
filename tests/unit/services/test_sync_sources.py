"""Unit tests of the sync sources and summary that need no server: DSN parsing, query rendering, YAML checks."""

from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path

import pytest

from airflow_provider_refdata.config import ReferenceSyncConfig
from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.services.sources import (
    MySqlSource,
    SourceSkipped,
    YamlFileSource,
    clean_value,
)
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.services.sync_outcome import format_summary
from airflow_provider_refdata.textable import display_width


def _config(tmp_path: Path, **source) -> ReferenceSyncConfig:
    return ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "plans",
                    "target_table": "年金计划",
                    "primary_key": "年金计划号",
                    "source_type": "legacy_mysql",
                    "source_config": {
                        "table": "annuity`plan",
                        "columns": [{"source": "plan code", "target": "年金计划号"}, {"source": "n", "target": "名"}],
                        "incremental": {"updated_at_column": "updated_at", "lookback_seconds": 5},
                    },
                },
                {
                    "name": "lines",
                    "target_table": "产品线",
                    "primary_key": "代码",
                    "source_type": "config_file",
                    "sync_mode": "delete_insert",
                    "source_config": {"file_path": str(tmp_path / "lines.yml"), "schema_version": "1.0", **source},
                },
            ]
        }
    )


def test_mysql_source_from_dsn_hides_the_password():
    source = MySqlSource.from_dsn("mysql://u%40x:p%2Fw@db.example:3307/legacy", read_timeout=5)
    assert (source.host, source.port, source.user, source.password, source.database) == (
        "db.example",
        3307,
        "u@x",
        "p/w",
        "legacy",
    )
    assert source.read_timeout == 5 and source.connect_timeout == 30
    assert "p/w" not in repr(source) and repr(source) == "MySqlSource('db.example:3307/legacy')"


def test_mysql_query_quotes_identifiers_and_binds_every_value(tmp_path):
    table = _config(tmp_path).table("plans")
    since = datetime(2024, 1, 1)
    types = {"plan code": "varchar", "n": "datetime", "updated_at": "timestamp"}
    query, params, columns = MySqlSource().build_query(table, types, since)
    assert columns == ["年金计划号", "名"]
    assert "updated_at`)" not in query.split(" FROM ")[0]  # one result column: the watermark is max_query's
    assert "FROM `annuity``plan`" in query and "REGEXP_REPLACE(CONVERT(`plan code` USING utf8mb4), %s, %s)" in query
    assert "NULLIF(" in query  # the key column: blank → NULL, rejected by the warehouse
    assert query.endswith("WHERE `updated_at` >= %s") and params[-1] == since
    assert query.count("%s") == len(params)
    assert "'" not in query  # no literal in the SQL text: all values are parameters


def test_mysql_query_names_missing_columns(tmp_path):
    table = _config(tmp_path).table("plans")
    with pytest.raises(Exception, match="has no column"):
        MySqlSource().build_query(table, {"plan code": "varchar"}, None)


def test_clean_value():
    assert clean_value("  a b \t") == "a b"
    assert clean_value(math.nan) is None
    assert clean_value(3) == 3


def test_yaml_source_reads_and_checks(tmp_path):
    table = _config(tmp_path, columns=["代码", "名称"]).table("lines")
    (tmp_path / "lines.yml").write_text("schema_version: '1.0'\ndata:\n  - {代码: 1, 名称: ' x '}\n  - {代码: b}\n")
    columns, rows = YamlFileSource().load(table)
    assert columns == ["代码", "名称"] and rows == [("1", "x"), ("b", None)]  # values are the text written
    (tmp_path / "lines.yml").write_text("schema_version: '1.1'\ndata: []\n")
    with pytest.raises(SourceSkipped, match="schema_version '1.1'"):
        YamlFileSource().load(table)


def test_yaml_relative_path_uses_base_path(tmp_path):
    cfg = ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "lines",
                    "target_table": "产品线",
                    "primary_key": "代码",
                    "source_type": "config_file",
                    "source_config": {"file_path": "data/lines.yml", "schema_version": "1.0"},
                }
            ]
        }
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "lines.yml").write_text("schema_version: '1.0'\ndata:\n  - {代码: A}\n")
    with YamlFileSource(base_path=tmp_path).stream(cfg.table("lines"), None, 10) as read:
        assert read.columns == ["代码"] and list(read.batches) == [[("A",)]]


def test_service_rejects_unknown_table_names_and_needs_a_connection(tmp_path):
    service = ReferenceSyncService(_config(tmp_path), {})
    with pytest.raises(Exception, match="unknown sync table"):
        service.sync_all(conn="postgresql://unused", tables=["nope"])
    with pytest.raises(Exception, match="needs the warehouse"):
        service.sync_all()


def test_format_summary_lists_every_table():
    text = format_summary(
        [
            SyncResult(table="s.甲", source_type="legacy_mysql", sync_mode="upsert", rows_read=5, rows_inserted=5),
            SyncResult(table="s.乙", source_type="config_file", sync_mode="delete_insert", skipped_reason="missing"),
            SyncResult(table="s.丙", source_type="legacy_mysql", sync_mode="upsert", error="boom"),
        ]
    )
    lines = text.splitlines()
    assert len(lines) == 4 and "FAILED" in lines[3] and "skipped" in lines[2] and "ok" in lines[1]
    # columns line up although the table names are double-width characters
    second_column = ["mode", "upsert", "delete_insert", "upsert"]
    assert len({display_width(line[: line.index(word)]) for line, word in zip(lines, second_column, strict=True)}) == 1
    assert lines[1].split()[3:5] == ["5", "5"]


def test_core_modules_do_not_import_airflow():
    import subprocess

    code = (
        "import sys, airflow_provider_refdata.services.sync, airflow_provider_refdata.services.sources;"
        "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
