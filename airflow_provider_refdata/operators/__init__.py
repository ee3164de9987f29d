"""Airflow operators: authoritative reference sync, coverage check / selective backfill, health, review,
staging and loading a month of facts."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReferenceSyncOperator": "airflow_provider_refdata.operators.sync",
    "HybridReferenceOperator": "airflow_provider_refdata.operators.hybrid",
    "ReferenceHealthOperator": "airflow_provider_refdata.operators.health",
    "ReviewFileOperator": "airflow_provider_refdata.operators.review",
    "ReviewExportOperator": "airflow_provider_refdata.operators.review",
    "ReviewDecisionOperator": "airflow_provider_refdata.operators.review",
    "FactStageOperator": "airflow_provider_refdata.operators.fact_load",
    "FactLoadOperator": "airflow_provider_refdata.operators.fact_load",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
