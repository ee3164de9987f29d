"""Airflow hooks for the reference sources: the legacy MySQL and PostgreSQL databases and versioned
YAML files."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LegacyMySqlHook": "airflow_provider_refdata.hooks.legacy_mysql",
    "LegacyPostgresHook": "airflow_provider_refdata.hooks.legacy_postgres",
    "YamlReferenceHook": "airflow_provider_refdata.hooks.yaml_reference",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
