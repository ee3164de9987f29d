"""The shipped configuration examples (config/examples/) load unchanged with the meaning their comments give."""

from __future__ import annotations

from airflow_provider_refdata.config import load_fk_configs, load_sync_config
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "config" / "examples"
DOMAIN = "annuity_performance"


def test_shipped_examples_load_unchanged() -> None:
    for folder in ("existing_format", "current_format"):
        config = load_sync_config(EXAMPLES / folder / "reference_sync.yml")
        assert [t.source_type for t in config.tables] == ["legacy_mysql", "postgres", "config_file"]
        assert config.tables[2].source_config.file_path == (REPO_ROOT / "config/reference_data/product_lines.yml")
        fks = load_fk_configs(EXAMPLES / folder / "foreign_keys.yml", DOMAIN)
        assert [fk.name for fk in fks] == ["fk_plan", "fk_portfolio", "fk_product_line"]
        assert [c.target for c in fks[0].backfill_columns] == ["计划名称", "计划类型"]
        assert fks[2].backfill_columns == []
