"""airflow-provider-refdata: keep reference (dimension) data in a PostgreSQL warehouse complete.

Airflow reads :func:`get_provider_info` through the ``apache_airflow_provider`` entry point, so this module
must stay cheap to import: the public names below are loaded lazily on first access (PEP 562), and nothing
here imports Airflow, pandas or a database driver.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it.  Users import these from the package root.
_EXPORTS: dict[str, str] = {
    # configuration
    "Aggregation": "airflow_provider_refdata.config",
    "BackfillColumn": "airflow_provider_refdata.config",
    "ForeignKeyConfig": "airflow_provider_refdata.config",
    "ReferenceSyncConfig": "airflow_provider_refdata.config",
    "SyncTableConfig": "airflow_provider_refdata.config",
    "load_fk_configs": "airflow_provider_refdata.config",
    "load_sync_config": "airflow_provider_refdata.config",
    "processing_order": "airflow_provider_refdata.config",
    "WarehouseRelation": "airflow_provider_refdata.config",
    # results
    "SyncResult": "airflow_provider_refdata.results",
    "CoverageMetrics": "airflow_provider_refdata.results",
    "BackfillResult": "airflow_provider_refdata.results",
    "BackfillTableResult": "airflow_provider_refdata.results",
    "HybridResult": "airflow_provider_refdata.results",
    # errors
    "RefdataError": "airflow_provider_refdata.exceptions",
    "RefdataConfigError": "airflow_provider_refdata.exceptions",
    "RefdataSourceError": "airflow_provider_refdata.exceptions",
    "RefdataSyncError": "airflow_provider_refdata.exceptions",
    "RefdataBackfillError": "airflow_provider_refdata.exceptions",
    "RefdataReviewError": "airflow_provider_refdata.exceptions",
    "RefdataFactFileError": "airflow_provider_refdata.exceptions",
    # services
    "ReferenceSyncService": "airflow_provider_refdata.services.sync",
    "GenericBackfillService": "airflow_provider_refdata.services.backfill",
    "HybridReferenceService": "airflow_provider_refdata.services.hybrid",
    # a month of facts: find the file, stage it with COPY, load it with one INSERT … SELECT
    "resolve_month": "airflow_provider_refdata.services.fact_load",
    "find_fact_file": "airflow_provider_refdata.services.fact_load",
    "stage_facts": "airflow_provider_refdata.services.fact_load",
    "load_staged_facts": "airflow_provider_refdata.services.fact_load",
    "apply_key_aliases": "airflow_provider_refdata.services.aliases",
    "ReferenceHealthService": "airflow_provider_refdata.services.health",
    "check_alerts": "airflow_provider_refdata.services.alerts",
    "TableHealth": "airflow_provider_refdata.results",
    "Alert": "airflow_provider_refdata.results",
    # the steward loop: review exports, approve / reject / remap, review files
    "ReviewConfig": "airflow_provider_refdata.config",
    "ReviewService": "airflow_provider_refdata.services.review",
    "apply_review_file": "airflow_provider_refdata.services.review",
    "export_review": "airflow_provider_refdata.services.review_export",
    "read_review_file": "airflow_provider_refdata.services.review_file",
    "ReviewResult": "airflow_provider_refdata.results",
    "ReviewRowError": "airflow_provider_refdata.results",
    "ReviewExportResult": "airflow_provider_refdata.results",
}

__all__ = ["__version__", "get_provider_info", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager (``airflow providers list`` and the UI)."""
    return {
        "package-name": "airflow-provider-refdata",
        "name": "Reference data (refdata)",
        "description": (
            "Keeps reference tables in a PostgreSQL warehouse complete: authoritative sync from a legacy "
            "MySQL database and versioned YAML files, plus auto-derived backfill of missing foreign keys."
        ),
        "versions": [__version__],
        "hooks": [
            {
                "integration-name": "Reference data",
                "python-modules": [
                    "airflow_provider_refdata.hooks.legacy_mysql",
                    "airflow_provider_refdata.hooks.yaml_reference",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Reference data",
                "python-modules": [
                    "airflow_provider_refdata.operators.sync",
                    "airflow_provider_refdata.operators.hybrid",
                    "airflow_provider_refdata.operators.health",
                    "airflow_provider_refdata.operators.review",
                    "airflow_provider_refdata.operators.fact_load",
                ],
            }
        ],
        "notifications": ["airflow_provider_refdata.notifications.webhook.ReferenceHealthNotifier"],
        # The "Reference data" page: a FastAPI app at /refdata and a navigation entry (airflow_provider_refdata/plugins)
        "plugins": [{"name": "refdata", "plugin-class": "airflow_provider_refdata.plugins.ReferenceDataPlugin"}],
        "integrations": [
            {
                "integration-name": "Reference data",
                "external-doc-url": "https://pypi.org/project/airflow-provider-refdata/",
                "tags": ["service"],
            }
        ],
        # refdata://reference_sync (every sync) and refdata://<schema>/<table> (one reference table)
        "asset-uris": [
            {
                "schemes": ["refdata"],
                "handler": "airflow_provider_refdata.assets.normalize_uri",
                "factory": "airflow_provider_refdata.assets.create_asset",
            }
        ],
        "connection-types": [
            {
                "connection-type": "refdata_mysql",
                "hook-class-name": "airflow_provider_refdata.hooks.legacy_mysql.LegacyMySqlHook",
                "hook-name": "Refdata legacy MySQL",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Database"},
                    "placeholders": {
                        "host": "legacy-mysql.internal",
                        "port": "3306",
                        "schema": "legacy",
                        "login": "refdata_reader",
                    },
                },
                "conn-fields": {
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "description": "Seconds to wait for the TCP connection (default 30).",
                        "schema": {"type": ["integer", "null"], "default": 30},
                    },
                    "read_timeout": {
                        "label": "Read timeout (s)",
                        "description": "Seconds to wait for a result batch (default 30).",
                        "schema": {"type": ["integer", "null"], "default": 30},
                    },
                    "charset": {
                        "label": "Charset",
                        "description": "Client character set (default utf8mb4).",
                        "schema": {"type": ["string", "null"], "default": "utf8mb4"},
                    },
                },
            },
            {
                "connection-type": "refdata_yaml",
                "hook-class-name": "airflow_provider_refdata.hooks.yaml_reference.YamlReferenceHook",
                "hook-name": "Refdata YAML reference files",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "password", "port"],
                    "relabeling": {},
                    "placeholders": {},
                },
                "conn-fields": {
                    "base_path": {
                        "label": "Base path",
                        "description": "Folder that relative reference-file paths resolve against.",
                        "schema": {"type": ["string", "null"]},
                    }
                },
            },
        ],
    }
