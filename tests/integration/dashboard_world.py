"""A warehouse with real history for the "Reference data" page tests: real syncs, a real backfill, health checks.

:func:`build_world` loads the demo's sample legacy data (small) into MariaDB, syncs all four reference tables
of the shipped ``reference_sync.yml`` with :class:`ReferenceSyncService` (a full read), stores a health check,
runs ``ensure_references`` on the month's fact file (new plans and portfolios get backfilled as auto-derived
placeholders with provenance), stores a second health check, then syncs again (incremental) and runs
``ensure_references`` again (the same facts: full coverage now, nothing to backfill): so
``refdata.run_log``, ``refdata.sync_state``, ``refdata.health_snapshot`` and ``refdata.placeholder`` all hold
what production runs write.  The configuration folder is a copy of ``config/`` with a ``health:`` section whose
warn threshold the sample data's auto-derived ratios exceed, so the page has active alerts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from airflow_provider_refdata.config import load_fk_configs, load_sync_config
from airflow_provider_refdata.results import HybridResult, SyncResult, TableHealth
from airflow_provider_refdata.services.health import ReferenceHealthService
from airflow_provider_refdata.services.hybrid import HybridReferenceService
from airflow_provider_refdata.services.source_mysql import MySqlSource
from airflow_provider_refdata.services.source_yaml import YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from devtools import demo, sample_data
from devtools.sample_data import SampleSpec

#: Auto-derived ratio above which a table warns (the sample data derives a few percent of plans/portfolios).
WARN_RATIO = 0.01
HEALTH_SECTION = f"""
health:
  auto_derived_ratio: {{warn: {WARN_RATIO}}}
"""


@dataclass
class DashboardWorld:
    pg_dsn: str
    mysql_dsn: str
    config_dir: Path
    spec: SampleSpec
    facts_file: Path
    tables: list[str]
    first_sync: list[SyncResult]
    second_sync: list[SyncResult]
    hybrid: HybridResult
    second_hybrid: HybridResult
    health_after_backfill: list[TableHealth]


def write_config(folder: Path) -> Path:
    """A copy of the shipped ``config/`` with the ``health:`` section above; returns the folder."""
    shutil.copytree(demo.REPO_ROOT / "config", folder)
    sync_file = folder / "reference_sync.yml"
    text = sync_file.read_text(encoding="utf-8")
    assert "\nhealth:" not in text, "the shipped reference_sync.yml got a health section: adapt the test world"
    sync_file.write_text(text.rstrip("\n") + "\n" + HEALTH_SECTION, encoding="utf-8")
    return folder


def build_world(pg_dsn: str, mysql_dsn: str, folder: Path, spec: SampleSpec | None = None) -> DashboardWorld:
    """Sync, health check, backfill, health check, incremental sync (see the module docstring)."""
    spec = spec or SampleSpec.small(fact_rows=1500)
    world = sample_data.generate(spec)
    demo.create_warehouse_schema(pg_dsn)
    demo.ensure_legacy_loaded(mysql_dsn, world)
    facts_file = sample_data.write_facts(world, folder / "data" / sample_data.facts_file_name(spec))
    config_dir = write_config(folder / "config")
    config = load_sync_config(config_dir / "reference_sync.yml")
    tables = [f"{t.target_schema}.{t.target_table}" for t in config.tables]
    sources = {"legacy_mysql": MySqlSource.from_dsn(mysql_dsn), "config_file": YamlFileSource()}
    service = ReferenceSyncService(config, sources)
    first = service.sync_all(conn=pg_dsn, force_full=True)
    assert all(r.ok for r in first), [r.error for r in first]
    health = ReferenceHealthService()
    health.table_health(pg_dsn, tables)
    facts = pd.read_csv(facts_file, dtype=str, keep_default_na=True, encoding="utf-8-sig")
    fks = load_fk_configs(config_dir / "foreign_keys.yml", demo.FACTS_DOMAIN)
    hybrid = HybridReferenceService().ensure_references(demo.FACTS_DOMAIN, facts, fks, pg_dsn)
    assert hybrid.backfill_count > 0 and not hybrid.degraded_mode, hybrid.degradation_reason
    after = health.table_health(pg_dsn, tables)
    second = service.sync_all(conn=pg_dsn)
    assert all(r.ok for r in second), [r.error for r in second]
    again = HybridReferenceService().ensure_references(demo.FACTS_DOMAIN, facts.copy(), fks, pg_dsn)
    assert again.backfill_count == 0 and again.pre_load_coverage == 1.0, again
    return DashboardWorld(
        pg_dsn=pg_dsn,
        mysql_dsn=mysql_dsn,
        config_dir=config_dir,
        spec=spec,
        facts_file=facts_file,
        tables=tables,
        first_sync=first,
        second_sync=second,
        hybrid=hybrid,
        second_hybrid=again,
        health_after_backfill=after,
    )
