"""reference_sync.yml written in the users' existing format: what loads, with which meaning, and what is refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_refdata.config import load_fk_domains, load_sync_config
from airflow_provider_refdata.exceptions import RefdataConfigError

MYSQL_TABLE = """
  - name: plans
    target_table: 年金计划
    primary_key: 年金计划号
    source_type: {source_type}
    source_config:
      table: annuity_plan
      columns: [{{ source: plan_code, target: 年金计划号 }}]
      incremental: {incremental}
"""


def write(folder: Path, text: str, name: str = "reference_sync.yml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def sync_file(folder: Path, *, version: str = "1.2", source_type: str = "legacy_mysql", incremental: str) -> Path:
    body = MYSQL_TABLE.format(source_type=source_type, incremental=incremental)
    return write(folder, f'schema_version: "{version}"\nconcurrency: 1\ntables:{body}')


@pytest.mark.parametrize(
    ("where", "column"),
    [
        ("updated_at >= :last_synced_at", "updated_at"),
        ("  updated_at>=:last_synced_at ", "updated_at"),
        ('"修改 时间" >= :last_synced_at', "修改 时间"),
    ],
)
def test_incremental_where_of_the_documented_shape_is_a_synonym(tmp_path: Path, where: str, column: str) -> None:
    incremental = f"{{ where: '{where}', lookback_seconds: 60 }}"
    table = load_sync_config(sync_file(tmp_path, incremental=incremental)).tables[0]
    assert table.source_config.incremental.updated_at_column == column
    assert table.source_config.incremental.lookback_seconds == 60
    both = f"{{ where: '{where}', updated_at_column: '{column}' }}"
    assert load_sync_config(sync_file(tmp_path, incremental=both)).tables[0].source_config.incremental.where


@pytest.mark.parametrize(
    "where",
    [
        "updated_at >= :last_synced_at OR 1=1",
        "updated_at > :last_synced_at",
        "updated_at >= now() - interval '1 day'",
        "updated_at >= :last_synced_at; DROP TABLE annuity_plan",
        "modified >= :last_synced_at",  # names another column than updated_at_column
    ],
)
def test_other_incremental_sql_is_refused_at_load_naming_file_line_and_value(tmp_path: Path, where: str) -> None:
    incremental = f'{{ updated_at_column: updated_at, where: "{where}" }}'
    path = sync_file(tmp_path, incremental=incremental)
    with pytest.raises(RefdataConfigError) as info:
        load_sync_config(path)  # refused here: no connection can have been opened
    error = info.value
    assert error.key_path == "tables[0].source_config.incremental.where"
    assert error.line == 11 and error.value == where
    assert "updated_at >= :last_synced_at" in str(error) and "reference_sync.yml" in str(error)


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_schema_versions_1_0_to_1_2_load(tmp_path: Path, version: str) -> None:
    path = sync_file(tmp_path, version=version, incremental="{ updated_at_column: updated_at }")
    assert load_sync_config(path).schema_version == version
    fk = write(tmp_path, f'schema_version: "{version}"\ndomains: {{}}\n', "foreign_keys.yml")
    assert load_fk_domains(fk) == {}


@pytest.mark.parametrize(("version", "why"), [("2.0", "another major version"), ("1.3", "newer minor version")])
def test_other_schema_versions_are_refused_naming_file_and_supported(tmp_path: Path, version: str, why: str) -> None:
    path = sync_file(tmp_path, version=version, incremental="{ updated_at_column: updated_at }")
    with pytest.raises(RefdataConfigError) as info:
        load_sync_config(path)
    message = str(info.value)
    assert str(path) in message and why in message and "'1.0', '1.1', '1.2'" in message
    assert info.value.key_path == "schema_version" and info.value.line == 1


def test_postgres_and_sql_sources_and_per_table_connections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        schema_version: "1.2"
        concurrency: 4
        tables:
          - name: plans
            target_table: 年金计划
            primary_key: 年金计划号
            source_type: postgres
            source_config:
              schema: legacy
              table: 年金计划
              conn_id: legacy_pg_crm
              columns: [{ source: 计划代码, target: 年金计划号 }]
              incremental: { where: "updated_at >= :last_synced_at", updated_at_column: updated_at }
          - name: orgs
            target_table: 组织架构
            primary_key: 机构代码
            source_type: legacy_mysql
            depends_on: [plans]
            source_config:
              table: organization
              connection_env_prefix: LEGACY_MYSQL
              columns: [{ source: org_code, target: 机构代码 }]
          - name: branches
            target_table: 分支
            primary_key: 代码
            source_type: sql
            source_config: { conn_id: legacy_sqlite, table: branch, columns: [{ source: code, target: 代码 }] }
        """,
    )
    config = load_sync_config(path)
    plans, orgs, branches = config.tables
    assert config.concurrency == 4
    assert (plans.source_config.schema_, plans.source_config.table, plans.source_config.conn_id) == (
        "legacy",
        "年金计划",
        "legacy_pg_crm",
    )
    assert orgs.depends_on == ["plans"] and orgs.source_config.connection_env_prefix == "LEGACY_MYSQL"
    assert branches.source_config.conn_id == "legacy_sqlite" and branches.target_columns == ["代码"]


def test_conn_id_and_env_prefix_together_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        tables:
          - name: orgs
            target_table: 组织架构
            primary_key: 机构代码
            source_type: legacy_mysql
            source_config:
              table: organization
              conn_id: a
              connection_env_prefix: P
              columns: [{ source: org_code, target: 机构代码 }]
        """,
    )
    with pytest.raises(RefdataConfigError, match="set conn_id .* or connection_env_prefix .*, not both") as info:
        load_sync_config(path)
    assert info.value.key_path == "tables[0].source_config.connection_env_prefix"


FILE_TABLE = """
tables:
  - name: product_line
    target_table: 产品线
    primary_key: 产品线代码
    source_type: config_file
    sync_mode: delete_insert
    source_config: {{ file_path: {file_path}, schema_version: "1.0" }}
"""


def test_relative_file_path_config_folder_then_project_root_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    config_file = write(project / "config", FILE_TABLE.format(file_path="config/reference_data/product_lines.yml"))
    data = project / "config" / "reference_data" / "product_lines.yml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # Written relative to the project root (the existing format): found there.
    data.parent.mkdir(parents=True)
    data.write_text("schema_version: '1.0'\ndata: []\n", encoding="utf-8")
    source = load_sync_config(config_file).tables[0].source_config
    assert source.file_path == data.resolve()
    assert source.tried_paths == [
        (project / "config" / "config/reference_data/product_lines.yml").resolve(),
        data.resolve(),
        (elsewhere / "config/reference_data/product_lines.yml").resolve(),
    ]

    # Relative to the config folder wins when it exists there.
    write(project / "config", FILE_TABLE.format(file_path="reference_data/product_lines.yml"))
    assert load_sync_config(config_file).tables[0].source_config.file_path == data.resolve()

    # Only in the current directory.
    (elsewhere / "only_here.yml").write_text("schema_version: '1.0'\ndata: []\n", encoding="utf-8")
    write(project / "config", FILE_TABLE.format(file_path="only_here.yml"))
    assert load_sync_config(config_file).tables[0].source_config.file_path == (elsewhere / "only_here.yml").resolve()

    # Nowhere: the first candidate is kept (the sync skips the table listing every path tried).
    write(project / "config", FILE_TABLE.format(file_path="missing.yml"))
    missing = load_sync_config(config_file).tables[0].source_config
    assert missing.file_path == (project / "config" / "missing.yml").resolve()
    assert missing.tried_paths == [
        (project / "config" / "missing.yml").resolve(),
        (project / "missing.yml").resolve(),
        (elsewhere / "missing.yml").resolve(),
    ]
