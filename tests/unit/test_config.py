"""Configuration models and loaders: shipped files, dependency order, and every invalid case on real files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_refdata.config import (
    SUPPORTED_SCHEMA_VERSIONS,
    Aggregation,
    BackfillColumn,
    ConfigFileSourceConfig,
    ForeignKeyConfig,
    LegacyMySqlSourceConfig,
    ReferenceSyncConfig,
    SyncTableConfig,
    load_fk_configs,
    load_fk_domains,
    load_sync_config,
    processing_order,
)
from airflow_provider_refdata.config_schema import build_schemas, render
from airflow_provider_refdata.exceptions import RefdataConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"


# ---------------------------------------------------------------------------------------------------------
# helpers: small valid documents, written to real files
# ---------------------------------------------------------------------------------------------------------


def fk(name: str, **overrides: Any) -> dict[str, Any]:
    """A valid FK config dict named ``name``."""
    return {
        "name": name,
        "source_column": f"{name}_code",
        "target_table": f"{name}_table",
        "target_key": "code",
        "backfill_columns": [{"source": f"{name}_name", "target": "name"}],
        **overrides,
    }


def fk_file(*fks: dict[str, Any], domain: str = "d", **top: Any) -> dict[str, Any]:
    return {"schema_version": "1.0", "domains": {domain: {"foreign_keys": list(fks)}}, **top}


def mysql_table(name: str, **overrides: Any) -> dict[str, Any]:
    """A valid legacy_mysql sync table dict."""
    return {
        "name": name,
        "target_schema": "business",
        "target_table": f"{name}_t",
        "primary_key": "code",
        "source_type": "legacy_mysql",
        "source_config": {
            "table": name,
            "columns": [{"source": "c", "target": "code"}, {"source": "n", "target": "name"}],
        },
        **overrides,
    }


def sync_file(*tables: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"schema_version": "1.0", "tables": list(tables), **top}


def write(tmp_path: Path, name: str, content: dict[str, Any] | str) -> Path:
    path = tmp_path / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def config(**fields: Any) -> ForeignKeyConfig:
    return ForeignKeyConfig.model_validate(fk(**fields))


# ---------------------------------------------------------------------------------------------------------
# shipped configuration
# ---------------------------------------------------------------------------------------------------------


def test_shipped_foreign_keys_load() -> None:
    domains = load_fk_domains(CONFIG_DIR / "foreign_keys.yml")
    assert set(domains) == {"annuity_performance", "annuity_income"}
    perf = {c.name: c for c in load_fk_configs(CONFIG_DIR / "foreign_keys.yml", "annuity_performance")}
    plan = perf["fk_plan"]
    assert plan.qualified_table == "business.年金计划"
    assert (plan.source_column, plan.target_key) == ("计划代码", "年金计划号")
    columns = {c.target: c for c in plan.backfill_columns}
    assert columns["主拓代码"].aggregation.type == "max_by"
    assert columns["主拓代码"].aggregation.order_column == "期末资产规模"
    assert columns["管理资格"].source == "业务类型"
    assert columns["管理资格"].aggregation.type == "concat_distinct"
    assert perf["fk_portfolio"].depends_on == ["fk_plan"]
    assert perf["fk_organization"].blank_tokens == frozenset({"(空白)"})
    assert perf["fk_plan"].blank_tokens == frozenset()
    assert perf["fk_product_line"].qualified_table == "business.产品线"


def test_shipped_reference_sync_loads() -> None:
    cfg = load_sync_config(CONFIG_DIR / "reference_sync.yml")
    assert (cfg.enabled, cfg.schedule, cfg.timezone, cfg.batch_size) == (True, "0 1 * * *", "Asia/Shanghai", 5000)
    assert [t.target_table for t in cfg.tables] == ["年金计划", "组合计划", "组织架构", "产品线"]
    for name in ("annuity_plan", "portfolio_plan", "organization"):
        table = cfg.table(name)
        assert (table.source_type, table.sync_mode) == ("legacy_mysql", "upsert")
        assert table.source_config.incremental.updated_at_column == "updated_at"
    product = cfg.table("product_line")
    assert (product.source_type, product.sync_mode) == ("config_file", "delete_insert")
    assert product.source_config.file_path == CONFIG_DIR / "reference_data" / "product_lines.yml"
    assert product.source_config.file_path.is_file()
    assert cfg.source_path == CONFIG_DIR / "reference_sync.yml"


def test_shipped_product_lines_file() -> None:
    data = yaml.safe_load((CONFIG_DIR / "reference_data" / "product_lines.yml").read_text(encoding="utf-8"))
    assert data["schema_version"] == "1.0"
    codes = [row["产品线代码"] for row in data["data"]]
    assert codes == [f"PL{n}" for n in range(201, 212)] + ["PL301"]
    assert all(set(row) == {"产品线代码", "产品线名称", "业务大类"} for row in data["data"])


def test_shipped_files_point_editors_at_the_schemas() -> None:
    for name in ("foreign_keys", "reference_sync"):
        first_line = (CONFIG_DIR / f"{name}.yml").read_text(encoding="utf-8").splitlines()[0]
        assert first_line == f"# yaml-language-server: $schema=../schemas/{name}.schema.json"


@pytest.mark.parametrize("file_name", sorted(build_schemas()))
def test_committed_json_schema_is_current(file_name: str) -> None:
    committed = (REPO / "schemas" / file_name).read_text(encoding="utf-8")
    assert committed == render(build_schemas()[file_name]), (
        "schemas/ is stale: run `python -m airflow_provider_refdata.config_schema`"
    )


# ---------------------------------------------------------------------------------------------------------
# dependency order
# ---------------------------------------------------------------------------------------------------------


def test_processing_order_puts_plan_before_portfolio() -> None:
    configs = load_fk_configs(CONFIG_DIR / "foreign_keys.yml", "annuity_performance")
    names = [c.name for c in processing_order(list(reversed(configs)))]
    assert names.index("fk_plan") < names.index("fk_portfolio")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"c": ["b"], "b": ["a"], "a": []}, ["a", "b", "c"], id="chain c->b->a"),
        pytest.param({"x": [], "y": [], "z": []}, ["x", "y", "z"], id="independent keep input order"),
        pytest.param({"p": [], "c": ["p"], "x": []}, ["p", "c", "x"], id="valid order comes back unchanged"),
        pytest.param({"c": ["p"], "x": [], "p": []}, ["x", "p", "c"], id="child waits, others keep order"),
        pytest.param({"c": ["gone"], "a": []}, ["c", "a"], id="dependency outside the input ignored"),
    ],
)
def test_processing_order(given: dict[str, list[str]], expected: list[str]) -> None:
    configs = [config(name=name, depends_on=deps) for name, deps in given.items()]
    assert [c.name for c in processing_order(configs)] == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"a": ["b"], "b": ["a"]}, "dependency cycle: a -> b -> a", id="cycle"),
        pytest.param({"a": [], "a ": []}, "duplicate foreign key name 'a'", id="duplicate"),
    ],
)
def test_processing_order_rejects(given: dict[str, list[str]], expected: str) -> None:
    configs = [ForeignKeyConfig.model_construct(name=n.strip(), depends_on=d) for n, d in given.items()]
    with pytest.raises(RefdataConfigError, match=expected):
        processing_order(configs)


# ---------------------------------------------------------------------------------------------------------
# invalid foreign_keys.yml
# ---------------------------------------------------------------------------------------------------------

P = "domains.d.foreign_keys"

INVALID_FK_FILES = [
    pytest.param(
        fk_file(fk("a"), fk("b"), fk("a"), fk("b")),
        [f"{P}[2].name", "duplicate foreign key names", "'a' at foreign_keys[0], foreign_keys[2]", "'b'"],
        id="duplicate names",
    ),
    pytest.param(
        fk_file(fk("a"), fk("b", depends_on=["a", "nope"])),
        [f"{P}[1].depends_on[1]", "unknown foreign key 'nope'"],
        id="unknown dependency",
    ),
    pytest.param(
        fk_file(fk("fk_a", depends_on=["fk_b"]), fk("fk_b", depends_on=["fk_a"])),
        [f"{P}[0].depends_on", "fk_a -> fk_b -> fk_a"],
        id="cycle",
    ),
    pytest.param(
        fk_file(fk("x"), fk("a", depends_on=["b"]), fk("b", depends_on=["c"]), fk("c", depends_on=["a"])),
        [f"{P}[1].depends_on", "a -> b -> c -> a"],
        id="longer cycle",
    ),
    pytest.param(
        fk_file(fk("a", depends_on=["a"])),
        [f"{P}[0].depends_on[0]", "depends on itself", "'a'"],
        id="self-reference",
    ),
    pytest.param(
        fk_file(fk("a", depends_on=["b", "b"]), fk("b")),
        [f"{P}[0].depends_on[1]", "'b' is listed twice"],
        id="dependency listed twice",
    ),
    pytest.param(
        fk_file(fk("a", backfill_columns=[{"source": "s", "target": "t", "aggregation": {"type": "max_by"}}])),
        [f"{P}[0].backfill_columns[0].aggregation", "'max_by'", "order_column"],
        id="max_by without order_column",
    ),
    pytest.param(
        fk_file(fk("a", colour="red")),
        [f"{P}[0].colour", "unknown key 'colour'", "allowed keys: name"],
        id="unknown key",
    ),
    pytest.param(
        fk_file(fk("a", depend_on=["b"])),
        [f"{P}[0].depend_on", "did you mean 'depends_on'?"],
        id="misspelt key",
    ),
    pytest.param(
        fk_file(fk("a", mode="upsert_all")),
        [f"{P}[0].mode", "'insert_missing' or 'fill_null_only'", "'upsert_all'"],
        id="unknown mode",
    ),
    pytest.param(
        fk_file(fk("  ")),
        [f"{P}[0].name", "at least 1 character", "'  '"],
        id="blank name",
    ),
    pytest.param(
        fk_file({k: v for k, v in fk("a").items() if k != "target_key"}),
        [f"{P}[0].target_key", "required key is missing"],
        id="missing key",
    ),
    pytest.param(
        fk_file(fk("a", skip_blank_values="yes")),
        [f"{P}[0].skip_blank_values", "valid boolean", "'yes'"],
        id="string for a boolean",
    ),
    pytest.param(
        fk_file(fk("a", blank_values=["N/A"])),
        [f"{P}[0].blank_values", "['N/A']", "skip_blank_values is true"],
        id="blank_values without skip_blank_values",
    ),
    pytest.param(
        fk_file(fk("a", target_key="_source")),
        [f"{P}[0].target_key", "'_source' is a tracking column"],
        id="tracking column as target",
    ),
    pytest.param(
        fk_file(fk("a", target_table="表" * 22)),
        [f"{P}[0].target_table", "63-byte", "表表表"],
        id="identifier too long for PostgreSQL",
    ),
    pytest.param(
        fk_file(fk("a", backfill_columns=[{"source": "s", "target": "t"}, {"source": "u", "target": "t"}])),
        [f"{P}[0].backfill_columns[1].target", "'t' is already filled by backfill_columns[0]"],
        id="duplicate backfill target",
    ),
    pytest.param(
        fk_file(fk("a", backfill_columns=[{"source": "s", "target": "code"}])),
        [f"{P}[0].backfill_columns[0].source", "target_key 'code' from 's'", "source_column 'a_code'"],
        id="backfill target is the key from another source",
    ),
    pytest.param(
        fk_file(fk("a", backfill_columns=[{"source": "s", "target": "t", "aggregation": {"order_column": "x"}}])),
        [f"{P}[0].backfill_columns[0].aggregation.order_column", "only applies to type 'max_by'", "'x'"],
        id="order_column on first",
    ),
    pytest.param(
        fk_file(
            fk("a", backfill_columns=[{"source": "s", "target": "t", "aggregation": {"type": "first", "sort": False}}])
        ),
        [f"{P}[0].backfill_columns[0].aggregation.sort", "only applies to type 'concat_distinct'"],
        id="sort on first",
    ),
    pytest.param(
        fk_file(fk("a", backfill_columns=[{"source": "s", "target": "t", "aggregation": {"type": "template"}}])),
        [f"{P}[0].backfill_columns[0].aggregation", "requires 'template'"],
        id="template without template",
    ),
    pytest.param(
        fk_file(fk("a", backfill_columns=[{"source": "s", "target": "t", "aggregation": {"type": "sum"}}])),
        [f"{P}[0].backfill_columns[0].aggregation.type", "'sum'"],
        id="unknown aggregation type",
    ),
    pytest.param(
        fk_file(fk("a"), schema_version="2.0"),
        ["schema_version", "unsupported schema_version '2.0'"],
        id="wrong schema_version",
    ),
    pytest.param(
        fk_file(fk("a"), schema_version=1.0),
        ["schema_version", 'quoted string such as "1.0"', "1.0"],
        id="schema_version as a number",
    ),
    pytest.param({"schema_version": "1.0"}, ["domains", "required key is missing"], id="no domains"),
    pytest.param(
        fk_file(fk("a"), comment="x"),
        ["comment", "unknown key 'comment'"],
        id="unknown top-level key",
    ),
]


@pytest.mark.parametrize(("document", "expected"), INVALID_FK_FILES)
def test_invalid_foreign_keys_file(tmp_path: Path, document: dict[str, Any], expected: list[str]) -> None:
    path = write(tmp_path, "foreign_keys.yml", document)
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_configs(path, "d")
    text = str(raised.value)
    assert text.startswith(str(path))
    for fragment in expected:
        assert fragment in text
    assert raised.value.file == str(path)
    assert raised.value.key_path and raised.value.key_path in text


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("{a.b}", "attribute access or indexing", id="attribute"),
        pytest.param("{a[0]}", "attribute access or indexing", id="index"),
        pytest.param("{a!r}", "uses a conversion", id="conversion"),
        pytest.param("{a:abc}", "not a valid number format spec", id="format spec"),
        pytest.param("x {} y", "is empty", id="empty"),
        pytest.param("{0}", "is positional", id="positional"),
        pytest.param("{ a }", "whitespace", id="whitespace"),
        pytest.param("oops {a", "malformed", id="unclosed brace"),
        pytest.param("a } b", "malformed", id="single closing brace"),
    ],
)
def test_template_with_bad_placeholder(tmp_path: Path, template: str, expected: str) -> None:
    column = {"source": "s", "target": "t", "aggregation": {"type": "template", "template": template}}
    path = write(tmp_path, "foreign_keys.yml", fk_file(fk("a", backfill_columns=[column])))
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_configs(path, "d")
    text = str(raised.value)
    assert "foreign_keys.yml" in text
    assert f"{P}[0].backfill_columns[0].aggregation.template" in text
    assert repr(template) in text
    assert expected in text


def test_bad_yaml_reports_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "foreign_keys.yml",
        'schema_version: "1.0"\ndomains:\n  d:\n    foreign_keys: [ {name: a\n  e: {}\n',
    )
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_configs(path, "d")
    assert raised.value.line == 5
    assert f"{path}, line 5: invalid YAML: did not find expected ',' or '}}'" in str(raised.value)
    assert "flow mapping started at line 4" in str(raised.value)
    assert "offending line: 'e: {}'" in str(raised.value)
    assert raised.value.value == "e: {}"


def test_unterminated_string_points_at_where_it_started(tmp_path: Path) -> None:
    path = write(tmp_path, "foreign_keys.yml", 'schema_version: "1.0"\ndomains:\n  d: "oops\n')
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_configs(path, "d")
    assert "line 4: invalid YAML" in str(raised.value)
    assert "started at line 3" in str(raised.value)
    assert """offending line: 'd: "oops'""" in str(raised.value)


def test_duplicate_yaml_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    text = 'schema_version: "1.0"\ndomains:\n  d:\n    foreign_keys: []\n  d:\n    foreign_keys: []\n'
    path = write(tmp_path, "foreign_keys.yml", text)
    with pytest.raises(RefdataConfigError, match=r"line 5: domains\.d: duplicate key 'd'"):
        load_fk_configs(path, "d")


def test_validation_error_carries_the_line(tmp_path: Path) -> None:
    text = (
        'schema_version: "1.0"\n'
        "domains:\n"
        "  d:\n"
        "    foreign_keys:\n"
        "      - name: a\n"
        "        source_column: c\n"
        "        target_table: t\n"
        "        target_key: k\n"
        "        mode: replace\n"
        "        backfill_columns: [{source: s, target: t}]\n"
    )
    path = write(tmp_path, "foreign_keys.yml", text)
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_configs(path, "d")
    assert raised.value.line == 9
    assert raised.value.key_path == "domains.d.foreign_keys[0].mode"
    assert raised.value.value == "replace"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("", "file is empty", id="empty file"),
        pytest.param("- a\n- b\n", "top level must be a mapping", id="list at the top"),
    ],
)
def test_file_that_is_not_a_mapping(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path, "foreign_keys.yml", content)
    with pytest.raises(RefdataConfigError, match=expected):
        load_fk_configs(path, "d")


@pytest.mark.parametrize("loader", [lambda p: load_fk_configs(p, "d"), load_sync_config], ids=["fk", "sync"])
def test_missing_file_names_the_path(tmp_path: Path, loader: Any) -> None:
    path = tmp_path / "nowhere" / "missing.yml"
    with pytest.raises(RefdataConfigError, match="configuration file not found") as raised:
        loader(path)
    assert str(path) in str(raised.value)


def test_absent_domain_returns_empty_list_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "foreign_keys.yml", fk_file(fk("a")))
    with caplog.at_level(logging.WARNING, logger="airflow_provider_refdata.config"):
        assert load_fk_configs(path, "other") == []
    assert "'other'" in caplog.text


def test_domain_without_foreign_keys_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path, "foreign_keys.yml", {"schema_version": "1.0", "domains": {"d": {"foreign_keys": []}}})
    assert load_fk_configs(path, "d") == []


def test_loaded_values_are_trimmed(tmp_path: Path) -> None:
    document = fk_file(fk(" a ", source_column=" 计划代码 ", skip_blank_values=True, blank_values=[" (空白) ", "-"]))
    [loaded] = load_fk_configs(write(tmp_path, "foreign_keys.yml", document), "d")
    assert (loaded.name, loaded.source_column) == ("a", "计划代码")
    assert loaded.blank_tokens == frozenset({"(空白)", "-"})


# ---------------------------------------------------------------------------------------------------------
# models used directly
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "columns"),
    [
        ("{计划代码}-{计划名称}", ["计划代码", "计划名称"]),
        ("{a} and {a}", ["a"]),
        ("待确认", []),
        ("{{literal}} {b}", ["b"]),
    ],
)
def test_template_columns(template: str, columns: list[str]) -> None:
    assert Aggregation(type="template", template=template).template_columns == columns


def test_defaults() -> None:
    column = BackfillColumn(source="s", target="t")
    assert column.aggregation == Aggregation(type="first")
    assert (column.optional, column.aggregation.separator, column.aggregation.sort) == (False, "+", True)
    loaded = config(name="a")
    assert (loaded.target_schema, loaded.mode, loaded.depends_on) == ("public", "insert_missing", [])
    assert (loaded.skip_blank_values, loaded.blank_values) == (False, ["(空白)"])
    assert SUPPORTED_SCHEMA_VERSIONS == ("1.0", "1.1", "1.2")


def test_separator_is_not_trimmed() -> None:
    assert Aggregation(type="concat_distinct", separator=", ").separator == ", "


def test_models_are_frozen() -> None:
    loaded = config(name="a")
    with pytest.raises(ValueError, match="frozen"):
        loaded.name = "b"  # type: ignore[misc]


def test_sync_table_model_helpers() -> None:
    table = SyncTableConfig.model_validate(mysql_table("t", primary_key=["code", "name"], batch_size=10))
    assert isinstance(table.source_config, LegacyMySqlSourceConfig)
    assert table.primary_key == ["code", "name"]
    assert table.target_columns == ["code", "name"]
    assert table.qualified_table == "business.t_t"
    cfg = ReferenceSyncConfig(tables=[table, SyncTableConfig.model_validate(mysql_table("u"))])
    assert (cfg.effective_batch_size("t"), cfg.effective_batch_size(cfg.table("u"))) == (10, 5000)
    assert cfg.source_path is None
    assert "source_path" not in cfg.model_dump()
    with pytest.raises(KeyError, match="no sync table named 'x'; known: t, u"):
        cfg.table("x")


# ---------------------------------------------------------------------------------------------------------
# reference_sync.yml
# ---------------------------------------------------------------------------------------------------------


def file_table(name: str, **source: Any) -> dict[str, Any]:
    return {
        "name": name,
        "target_table": name,
        "primary_key": "code",
        "source_type": "config_file",
        "sync_mode": "delete_insert",
        "source_config": {"file_path": "data/x.yml", "schema_version": "1.0", **source},
    }


INVALID_SYNC_FILES = [
    pytest.param(
        sync_file(
            mysql_table(
                "t",
                sync_mode="delete_insert",
                source_config={**mysql_table("t")["source_config"], "incremental": {"updated_at_column": "u"}},
            )
        ),
        ["tables[0].sync_mode", "'delete_insert'", "incremental"],
        id="incremental with delete_insert",
    ),
    pytest.param(
        sync_file(mysql_table("t", primary_key="nope")),
        ["tables[0].primary_key", "'nope'", "not among the mapped target columns (code, name)"],
        id="primary key not mapped",
    ),
    pytest.param(
        sync_file(mysql_table("t", primary_key=["code", "nope"])),
        ["tables[0].primary_key[1]", "'nope'"],
        id="composite primary key not mapped",
    ),
    pytest.param(
        sync_file(file_table("t", columns=["a", "b"])),
        ["tables[0].primary_key", "'code'", "(a, b)"],
        id="primary key not among config_file columns",
    ),
    pytest.param(
        sync_file(mysql_table("t"), mysql_table("t", target_table="other")),
        ["tables[1].name", "duplicate table name 't'"],
        id="duplicate names",
    ),
    pytest.param(
        sync_file(mysql_table("a"), mysql_table("b", target_table="a_t")),
        ["tables[1].target_table", "'business.a_t'", "already synced by tables[0]"],
        id="duplicate targets",
    ),
    pytest.param(
        sync_file(file_table("t", incremental={"updated_at_column": "u"})),
        ["tables[0].source_config.incremental", "only supported with source_type 'legacy_mysql'"],
        id="incremental on config_file",
    ),
    pytest.param(
        sync_file(
            mysql_table("t", source_config={"table": "t", "columns": [{"source": "c", "target": "code"}], "x": 1})
        ),
        ["tables[0].source_config.x", "unknown key 'x'"],
        id="unknown key in source_config",
    ),
    pytest.param(
        sync_file(mysql_table("t", source_config={"table": "t", "columns": []})),
        ["tables[0].source_config.columns", "at least 1 item", "[]"],
        id="no column mappings",
    ),
    pytest.param(
        sync_file(
            mysql_table(
                "t",
                source_config={
                    "table": "t",
                    "columns": [{"source": "a", "target": "code"}, {"source": "b", "target": "code"}],
                },
            )
        ),
        ["tables[0].source_config.columns[1].target", "'code' is already mapped by columns[0]"],
        id="duplicate mapped target",
    ),
    pytest.param(
        sync_file(mysql_table("t", source_type="csv")),
        ["tables[0].source_type", "'csv'"],
        id="unknown source_type",
    ),
    pytest.param(
        sync_file(mysql_table("t", sync_mode="merge")),
        ["tables[0].sync_mode", "'upsert' or 'delete_insert'", "'merge'"],
        id="unknown sync_mode",
    ),
    pytest.param(
        sync_file(mysql_table("t", batch_size=0)),
        ["tables[0].batch_size", "greater than 0", "got 0"],
        id="table batch_size 0",
    ),
    pytest.param(sync_file(mysql_table("t"), batch_size=-5), ["batch_size", "-5"], id="batch_size negative"),
    pytest.param(
        sync_file(mysql_table("t"), schedule="0 25 * * *"),
        ["schedule", "'0 25 * * *'", "hour field '25'"],
        id="hour out of range",
    ),
    pytest.param(
        sync_file(mysql_table("t"), schedule="daily at one"),
        ["schedule", "'daily at one'", "5-field cron"],
        id="not cron",
    ),
    pytest.param(
        sync_file(mysql_table("t"), timezone="Mars/Olympus"),
        ["timezone", "'Mars/Olympus'"],
        id="unknown timezone",
    ),
    pytest.param(
        sync_file(mysql_table("t"), schema_version="0.9"),
        ["schema_version", "'0.9'"],
        id="wrong schema_version",
    ),
    pytest.param(
        sync_file(mysql_table("t"), source_path="/etc"),
        ["source_path", "unknown key 'source_path'"],
        id="source_path is not a file key",
    ),
    pytest.param(
        sync_file(file_table("t", file_path="  ")),
        ["tables[0].source_config.file_path", "must not be empty"],
        id="empty file_path",
    ),
]


@pytest.mark.parametrize(("document", "expected"), INVALID_SYNC_FILES)
def test_invalid_reference_sync_file(tmp_path: Path, document: dict[str, Any], expected: list[str]) -> None:
    path = write(tmp_path, "reference_sync.yml", document)
    with pytest.raises(RefdataConfigError) as raised:
        load_sync_config(path)
    text = str(raised.value)
    assert text.startswith(str(path))
    for fragment in expected:
        assert fragment in text


@pytest.mark.parametrize(
    "schedule", ["0 1 * * *", "*/15 0-6 1,15 JAN-MAR mon-fri", "30 2 * * 7", "@daily", "0 0 1 */3 *"]
)
def test_valid_schedules(tmp_path: Path, schedule: str) -> None:
    path = write(tmp_path, "reference_sync.yml", sync_file(mysql_table("t"), schedule=schedule))
    assert load_sync_config(path).schedule == schedule


def test_relative_file_path_resolves_against_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(config_dir, "reference_sync.yml", sync_file(file_table("t", file_path="data/x.yml")))
    monkeypatch.chdir(elsewhere)
    cfg = load_sync_config(Path("..") / "conf" / "reference_sync.yml")
    source = cfg.table("t").source_config
    assert isinstance(source, ConfigFileSourceConfig)
    assert source.file_path.is_absolute()
    assert source.file_path == (config_dir / "data" / "x.yml").resolve()
    assert cfg.source_path == (config_dir / "reference_sync.yml").resolve()
    assert cfg.table("t").target_columns is None


def test_absolute_file_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "x.yml"
    path = write(tmp_path, "reference_sync.yml", sync_file(file_table("t", file_path=str(target))))
    assert load_sync_config(path).table("t").source_config.file_path == target
