"""Airflow notifiers of the provider: :class:`ReferenceHealthNotifier` posts health alerts to a chat webhook.

Loaded lazily (PEP 562) so that :mod:`.text`, the plain-text formatting the CLI shares, imports without
Airflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReferenceHealthNotifier": "airflow_provider_refdata.notifications.webhook",
    "RefdataNotifyError": "airflow_provider_refdata.exceptions",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
