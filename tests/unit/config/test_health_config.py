"""The health: section of reference_sync.yml: loading, overrides, and errors with file, line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_refdata.config import HealthConfig, load_sync_config
from airflow_provider_refdata.exceptions import RefdataConfigError

TABLES = """
tables:
  - name: products
    target_schema: business
    target_table: 产品线
    primary_key: 产品线代码
    source_type: config_file
    source_config: {file_path: products.yml, schema_version: "1.0"}
"""


def write(folder: Path, health: str) -> Path:
    path = folder / "reference_sync.yml"
    path.write_text('schema_version: "1.2"\n' + textwrap.dedent(health) + TABLES, encoding="utf-8")
    return path


def test_loads_global_rules_and_per_table_overrides(tmp_path: Path) -> None:
    config = load_sync_config(
        write(
            tmp_path,
            """
            health:
              auto_derived_ratio: {warn: 0.1, fail: 0.3}
              needs_review_count: {warn: 100, fail: 1000}
              placeholder_age_days: {warn: 7}
              on_error: warn
              tables:
                business.产品线:
                  auto_derived_ratio: {fail: 0.5}
                  placeholder_age_days: {warn: null, fail: 60}
            """,
        )
    )
    rules = config.health
    assert isinstance(rules, HealthConfig) and rules.on_error == "warn"
    assert rules.levels("business.产品线", "auto_derived_ratio") == (0.1, 0.5)
    assert rules.levels("business.产品线", "placeholder_age_days") == (None, 60)
    assert rules.levels("business.产品线", "needs_review_count") == (100, 1000)
    assert rules.levels("business.other", "auto_derived_ratio") == (0.1, 0.3)


def test_health_is_optional(tmp_path: Path) -> None:
    assert load_sync_config(write(tmp_path, "")).health is None


@pytest.mark.parametrize(
    ("health", "key_path", "line", "text"),
    [
        (
            "health:\n  auto_derived_ratio: {warn: 0.5, fail: 0.3}\n",
            "health.auto_derived_ratio.warn",
            3,
            "warn (0.5) is above fail (0.3)",
        ),
        (
            "health:\n  auto_derived_ratio: {warn: 1.5}\n",
            "health.auto_derived_ratio.warn",
            3,
            "less than or equal to 1",
        ),
        ("health:\n  needs_review_count: {warn: 2.5}\n", "health.needs_review_count.warn", 3, "whole number"),
        ("health:\n  needs_review_count: {warn: '10'}\n", "health.needs_review_count.warn", 3, "must be a number"),
        ("health:\n  placeholder_age_days: {fail: -1}\n", "health.placeholder_age_days.fail", 3, "greater than"),
        ("health:\n  placeholder_age: {warn: 7}\n", "health.placeholder_age", 3, "did you mean 'placeholder_age_days'"),
        (
            "health:\n  auto_derived_ratio: {warn: 0.1, fail: 0.3}\n  tables:\n    business.产品线:\n"
            "      auto_derived_ratio: {warn: 0.4}\n",
            "health.tables.business.产品线.auto_derived_ratio.warn",
            6,
            "after applying this table's override, warn (0.4) is above fail (0.3)",
        ),
        (
            "health:\n  tables:\n    产品线:\n      needs_review_count: {warn: 1}\n",
            "health.tables.产品线",
            4,
            "not a schema-qualified table",
        ),
        ("health:\n  on_error: panic\n", "health.on_error", 3, "'warn' or 'fail'"),
    ],
)
def test_errors_name_file_line_and_key_path(tmp_path: Path, health: str, key_path: str, line: int, text: str) -> None:
    path = write(tmp_path, health)
    with pytest.raises(RefdataConfigError) as info:
        load_sync_config(path)
    message = str(info.value)
    assert "reference_sync.yml" in message and key_path in message and f"line {line}" in message, message
    assert text in message, message
