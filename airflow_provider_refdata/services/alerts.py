"""Alerts on reference-data health: the ``health:`` rules of ``reference_sync.yml`` applied to ``TableHealth``s.

``check_alerts(health, rules)`` returns one :class:`~airflow_provider_refdata.results.Alert` per table and
rule whose value is **strictly above** a threshold (as the hybrid service's ``auto_derived_threshold``):

* ``auto_derived_ratio`` — ``TableHealth.auto_derived_ratio``;
* ``needs_review_count`` — ``TableHealth.needs_review_rows``;
* ``placeholder_age_days`` — the age in days of the table's oldest open placeholder (an open placeholder is
  older than N days exactly when the oldest one is); no open placeholder, no alert.

When both levels are exceeded only the ``fail`` alert is returned.  A table whose health check failed gives a
``health_check_failed`` alert of its own (level ``on_error``, default ``fail``) and no rule alerts.  Every
alert is logged (``warning`` / ``error``) and returned; notifying is the Airflow layer's job.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_refdata.config.health import RULE_NAMES, HealthConfig, RuleName
from airflow_provider_refdata.results import Alert, TableHealth

logger = logging.getLogger("airflow_provider_refdata.services.alerts")


def _rules(rules: Any) -> HealthConfig:
    if rules is None:
        return HealthConfig()
    if isinstance(rules, HealthConfig):
        return rules
    if isinstance(rules, Mapping):
        return HealthConfig.model_validate(rules)
    if hasattr(rules, "health"):  # ReferenceSyncConfig
        return rules.health if rules.health is not None else HealthConfig()
    raise TypeError(
        f"rules must be a HealthConfig, a ReferenceSyncConfig, a mapping or None, got {type(rules).__name__}"
    )


def _value(health: TableHealth, rule: RuleName) -> float | None:
    if rule == "auto_derived_ratio":
        return health.auto_derived_ratio
    if rule == "needs_review_count":
        return float(health.needs_review_rows)
    return health.oldest_open_placeholder_age_days


def _message(health: TableHealth, rule: RuleName, level: str, value: float, threshold: float) -> str:
    if rule == "auto_derived_ratio":
        what = (
            f"auto-derived ratio {value:.2%} ({health.auto_derived_rows:,} of {health.total_rows:,} rows) "
            f"is above the {level} threshold {threshold:.2%}"
        )
    elif rule == "needs_review_count":
        what = f"{int(value):,} rows need review, above the {level} threshold {threshold:g}"
    else:
        what = (
            f"the oldest of {health.open_placeholders:,} open placeholders is {value:.1f} days old "
            f"(since {health.oldest_open_placeholder_at:%Y-%m-%d %H:%M %Z}), above the {level} threshold "
            f"{threshold:g} days"
        )
    return f"{health.table}: {what}"


def check_alerts(health: Iterable[TableHealth], rules: Any = None) -> list[Alert]:
    """The alerts the ``rules`` raise on ``health`` (table order, then rule order); each one is logged.

    :param health: the results of ``ReferenceHealthService().table_health``.
    :param rules: a :class:`~airflow_provider_refdata.config.HealthConfig`, a ``ReferenceSyncConfig`` (its
        ``health`` section), the section as a mapping, or ``None`` (only failed checks alert).
    """
    config = _rules(rules)
    alerts: list[Alert] = []
    for item in health:
        if item.error is not None:
            alerts.append(
                Alert(
                    table=item.table,
                    rule="health_check_failed",
                    level=config.on_error,
                    message=f"{item.table}: health check failed: {item.error}",
                )
            )
            continue
        for rule in RULE_NAMES:
            value = _value(item, rule)
            if value is None:
                continue
            warn, fail = config.levels(item.table, rule)
            for level, threshold in (("fail", fail), ("warn", warn)):
                if threshold is not None and value > threshold:
                    alerts.append(
                        Alert(
                            table=item.table,
                            rule=rule,
                            level=level,
                            value=value,
                            threshold=float(threshold),
                            message=_message(item, rule, level, value, float(threshold)),
                        )
                    )
                    break
    for alert in alerts:
        logger.log(
            logging.ERROR if alert.level == "fail" else logging.WARNING,
            "health alert [%s] %s",
            alert.level,
            alert.message,
        )
    return alerts
