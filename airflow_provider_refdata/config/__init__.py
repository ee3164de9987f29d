"""Typed, validated configuration: ``foreign_keys.yml`` (FK backfill rules) and ``reference_sync.yml``.

Plain Python (pydantic v2 + PyYAML), no Airflow import. Every problem in a file raises
:class:`~airflow_provider_refdata.exceptions.RefdataConfigError` naming the file, the key path
(``domains.annuity_performance.foreign_keys[1].depends_on``), the offending value and, when known, the line.

Nothing in the configuration is ever evaluated as code: aggregations are a closed set of types and
templates only substitute ``{column}`` placeholders (with an optional date or number format spec).

The modules: :mod:`._common` (field types, base model), :mod:`.foreign_keys` (FK models, processing
order), :mod:`.sync` (sync table and source models), :mod:`.health` (the ``health:`` alert rules of
``reference_sync.yml``), :mod:`.review` (the ``review:`` section), :mod:`.loading` (YAML, line numbers, errors).
The reference for every key is ``docs/configuration.md``; the JSON Schemas in ``schemas/`` are generated
from the models by :mod:`airflow_provider_refdata.config_schema`.
"""

from __future__ import annotations

from airflow_provider_refdata.config._common import SUPPORTED_SCHEMA_VERSIONS
from airflow_provider_refdata.config.foreign_keys import (
    Aggregation,
    AggregationType,
    BackfillColumn,
    DomainConfig,
    ForeignKeyConfig,
    ForeignKeysFileConfig,
    processing_order,
)
from airflow_provider_refdata.config.health import (
    CountLevels,
    DaysLevels,
    HealthConfig,
    HealthTableRules,
    RatioLevels,
)
from airflow_provider_refdata.config.loading import load_fk_configs, load_fk_domains, load_sync_config
from airflow_provider_refdata.config.relation import WarehouseRelation
from airflow_provider_refdata.config.review import ReviewConfig, resolve_review_config
from airflow_provider_refdata.config.sync import (
    ColumnMapping,
    ConfigFileSourceConfig,
    DatabaseSourceConfig,
    IncrementalConfig,
    LegacyMySqlSourceConfig,
    PostgresSourceConfig,
    ReferenceSyncConfig,
    SqlSourceConfig,
    SyncTableConfig,
)

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "Aggregation",
    "AggregationType",
    "BackfillColumn",
    "ColumnMapping",
    "ConfigFileSourceConfig",
    "CountLevels",
    "DatabaseSourceConfig",
    "DaysLevels",
    "DomainConfig",
    "ForeignKeyConfig",
    "ForeignKeysFileConfig",
    "HealthConfig",
    "HealthTableRules",
    "IncrementalConfig",
    "LegacyMySqlSourceConfig",
    "PostgresSourceConfig",
    "RatioLevels",
    "ReferenceSyncConfig",
    "ReviewConfig",
    "SqlSourceConfig",
    "SyncTableConfig",
    "WarehouseRelation",
    "load_fk_configs",
    "load_fk_domains",
    "load_sync_config",
    "processing_order",
    "resolve_review_config",
]
