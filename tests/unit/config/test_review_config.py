"""The review: section of reference_sync.yml (sensitive columns) and resolve_review_config's inputs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from airflow_provider_refdata.config import ReferenceSyncConfig, ReviewConfig, load_sync_config, resolve_review_config
from airflow_provider_refdata.config_schema import build_schemas
from airflow_provider_refdata.exceptions import RefdataConfigError
from tests.conftest import REPO_ROOT

TABLES = """
tables:
  - name: plans
    target_schema: business
    target_table: 年金计划
    primary_key: 年金计划号
    source_type: config_file
    source_config: {file_path: plans.yml, schema_version: "1.0"}
"""


def write(folder: Path, review: str) -> Path:
    path = folder / "reference_sync.yml"
    path.write_text('schema_version: "1.0"\n' + TABLES + textwrap.dedent(review), encoding="utf-8")
    return path


def test_loads_sensitive_columns_per_table(tmp_path: Path) -> None:
    config = load_sync_config(
        write(
            tmp_path,
            """
            review:
              sensitive_columns:
                business.年金计划: [客户名称, 主拓机构]
                business.组合计划: [组合名称]
            """,
        )
    )
    review = config.review
    assert isinstance(review, ReviewConfig)
    assert review.sensitive("business.年金计划") == ["客户名称", "主拓机构"]
    assert review.sensitive("business.组合计划") == ["组合名称"]
    assert review.sensitive("business.产品线") == [] and review.sensitive("年金计划") == []
    assert review.source_path is None  # set by resolve_review_config, which knows the file


def test_review_is_optional_and_empty_by_default(tmp_path: Path) -> None:
    review = load_sync_config(write(tmp_path, "")).review
    assert review == ReviewConfig() and review.sensitive_columns == {}


@pytest.mark.parametrize(
    ("review", "key_path", "line", "text"),
    [
        (
            "review:\n  sensitive_column: {business.年金计划: [客户名称]}\n",
            "review.sensitive_column",
            11,
            "unknown key 'sensitive_column' (did you mean 'sensitive_columns'?)",
        ),
        (
            "review:\n  sensitive_columns: {年金计划: [客户名称]}\n",
            "review.sensitive_columns.年金计划",
            11,
            "'年金计划' is not a schema-qualified table (schema.table)",
        ),
        (
            "review:\n  sensitive_columns:\n    business.年金计划: [_derived_at]\n",
            "review.sensitive_columns.business.年金计划[0]",
            12,
            "'_derived_at' is a tracking column",
        ),
        (
            "review:\n  sensitive_columns:\n    business.年金计划: [客户名称, 客户名称]\n",
            "review.sensitive_columns.business.年金计划",
            12,
            "lists '客户名称' more than once",
        ),
        (
            "review:\n  sensitive_columns:\n    business.年金计划: ['']\n",
            "review.sensitive_columns.business.年金计划[0]",
            12,
            "at least 1 character",
        ),
        ("review:\n  source_path: /etc/x.yml\n", "review.source_path", 11, "unknown key 'source_path'"),
    ],
)
def test_invalid_review_section(tmp_path: Path, review: str, key_path: str, line: int, text: str) -> None:
    path = write(tmp_path, review)
    with pytest.raises(RefdataConfigError) as caught:
        load_sync_config(path)
    error = caught.value
    assert text in error.reason, error.reason
    assert (error.file, error.key_path, error.line) == (str(path), key_path, line)


def test_resolve_review_config_accepts_every_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "review:\n  sensitive_columns: {business.年金计划: [客户名称]}\n")
    wanted = {"business.年金计划": ["客户名称"]}
    direct = ReviewConfig(sensitive_columns=wanted)

    assert resolve_review_config(direct) is direct
    for given in (path, str(path), load_sync_config(path)):
        resolved = resolve_review_config(given)
        assert resolved.sensitive_columns == wanted
        assert resolved.source_path == path.resolve()  # errors about these settings can name the file

    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path))
    assert resolve_review_config(None).sensitive_columns == wanted
    assert resolve_review_config().source_path == path.resolve()
    # Fails closed: a configuration folder that is named but lacks the file (a worker without the mount)
    # must not export review files with no sensitive columns masked.
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(RefdataConfigError, match="nothing-here/reference_sync.yml: no such file") as raised:
        resolve_review_config(None)
    assert raised.value.file == str(tmp_path / "nothing-here" / "reference_sync.yml")
    # Without the variable: ./config/reference_sync.yml of the working directory, when there is one.
    monkeypatch.delenv("REFDATA_CONFIG_DIR")
    (tmp_path / "cwd" / "config").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_review_config(None) == ReviewConfig()
    write(tmp_path / "cwd" / "config", "review:\n  sensitive_columns: {business.年金计划: [客户名称]}\n")
    assert resolve_review_config(None).sensitive_columns == wanted

    with pytest.raises(RefdataConfigError, match="configuration file not found"):
        resolve_review_config(tmp_path / "missing.yml")
    with pytest.raises(TypeError, match="got dict"):
        resolve_review_config({"sensitive_columns": wanted})


def test_sync_config_built_in_code_has_an_empty_review() -> None:
    config = ReferenceSyncConfig.model_validate({"tables": []})
    assert config.review == ReviewConfig()
    assert resolve_review_config(config) == ReviewConfig()
    assert "review" not in json.dumps(config.model_dump(mode="json", exclude_defaults=True))


def test_shipped_config_keeps_the_client_name_out_of_review_files() -> None:
    review = resolve_review_config(REPO_ROOT / "config" / "reference_sync.yml")
    assert review.sensitive_columns == {"business.年金计划": ["客户名称"]}


def test_json_schema_describes_the_review_section() -> None:
    schema = build_schemas()["reference_sync.schema.json"]
    assert schema["properties"]["review"]["$ref"] == "#/$defs/ReviewConfig"
    review = schema["$defs"]["ReviewConfig"]
    assert review["additionalProperties"] is False
    assert set(review["properties"]) == {"sensitive_columns"}  # source_path is not a key of the file
    columns = review["properties"]["sensitive_columns"]
    assert "schema-qualified" in columns["description"]
    assert columns["additionalProperties"] == {"items": {"minLength": 1, "type": "string"}, "type": "array"}
    committed = json.loads((REPO_ROOT / "schemas" / "reference_sync.schema.json").read_text(encoding="utf-8"))
    assert committed["$defs"]["ReviewConfig"] == review
