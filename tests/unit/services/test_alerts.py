"""check_alerts: readable rules + health → the expected alerts, levels and per-table overrides."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_refdata.config import HealthConfig
from airflow_provider_refdata.results import TableHealth
from airflow_provider_refdata.services.alerts import check_alerts

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

RULES = {
    "auto_derived_ratio": {"warn": 0.10, "fail": 0.30},
    "needs_review_count": {"warn": 100, "fail": 1000},
    "placeholder_age_days": {"warn": 7, "fail": 30},
    "tables": {
        "business.年金计划": {"auto_derived_ratio": {"fail": 0.50}},  # warn 0.10 inherited
        "business.产品线": {"placeholder_age_days": {"fail": None}, "needs_review_count": {"warn": 5}},
    },
}


def health(
    table: str,
    *,
    total: int = 1000,
    auto: int = 0,
    review: int = 0,
    oldest_days: float | None = None,
    error: str | None = None,
) -> TableHealth:
    return TableHealth(
        table=table,
        taken_at=NOW,
        total_rows=total,
        authoritative_rows=total - auto,
        auto_derived_rows=auto,
        needs_review_rows=review,
        auto_derived_ratio=auto / total if total else 0.0,
        open_placeholders=review,
        oldest_open_placeholder_at=None if oldest_days is None else NOW - timedelta(days=oldest_days),
        oldest_open_placeholder_age_days=oldest_days,
        error=error,
    )


# (health, expected [(rule, level, value, threshold)])
CASES = {
    "healthy": (health("business.组织架构", auto=100, review=100, oldest_days=7), []),
    "ratio warn": (health("business.组织架构", auto=101), [("auto_derived_ratio", "warn", 0.101, 0.10)]),
    "ratio fail wins over warn": (health("business.组织架构", auto=400), [("auto_derived_ratio", "fail", 0.4, 0.30)]),
    "override raises fail, inherits warn": (
        health("business.年金计划", auto=400),
        [("auto_derived_ratio", "warn", 0.4, 0.10)],
    ),
    "override fail reached": (health("business.年金计划", auto=600), [("auto_derived_ratio", "fail", 0.6, 0.50)]),
    "review warn and age fail": (
        health("business.组织架构", review=101, oldest_days=31),
        [("needs_review_count", "warn", 101, 100), ("placeholder_age_days", "fail", 31, 30)],
    ),
    "review fail": (health("business.组织架构", review=1001), [("needs_review_count", "fail", 1001, 1000)]),
    "override lowers warn, switches age fail off": (
        health("business.产品线", review=6, oldest_days=400),
        [("needs_review_count", "warn", 6, 5), ("placeholder_age_days", "warn", 400, 7)],
    ),
    "no open placeholder, no age alert": (health("business.组织架构", oldest_days=None), []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rules_give_the_expected_alerts(name: str) -> None:
    item, expected = CASES[name]
    alerts = check_alerts([item], RULES)
    assert [(a.rule, a.level, a.value, a.threshold) for a in alerts] == [
        (rule, level, pytest.approx(value), threshold) for rule, level, value, threshold in expected
    ]
    assert all(a.table == item.table and a.message.startswith(item.table + ": ") for a in alerts)


def test_messages_name_the_value_and_threshold() -> None:
    (ratio,) = check_alerts([health("business.组织架构", auto=400)], RULES)
    assert ratio.message == (
        "business.组织架构: auto-derived ratio 40.00% (400 of 1,000 rows) is above the fail threshold 30.00%"
    )
    (age,) = check_alerts([health("business.组织架构", review=3, oldest_days=45)], RULES)
    assert "oldest of 3 open placeholders is 45.0 days old" in age.message and "30 days" in age.message


def test_failed_tables_alert_on_their_own_and_alerts_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    items = [health("business.missing", error="table business.missing does not exist"), health("b.ok", auto=500)]
    with caplog.at_level(logging.WARNING, logger="airflow_provider_refdata.services.alerts"):
        alerts = check_alerts(items, RULES)
    assert [(a.table, a.rule, a.level, a.value) for a in alerts] == [
        ("business.missing", "health_check_failed", "fail", None),
        ("b.ok", "auto_derived_ratio", "fail", 0.5),
    ]
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR"]
    assert "does not exist" in caplog.records[0].getMessage()
    warn_only = check_alerts(items[:1], {**RULES, "on_error": "warn"})
    assert warn_only[0].level == "warn"


def test_rules_as_model_sync_config_or_none() -> None:
    item = health("b.t", auto=500, review=5000, oldest_days=99)
    assert check_alerts([item], None) == []
    assert check_alerts([item], HealthConfig()) == []
    assert len(check_alerts([item], HealthConfig.model_validate(RULES))) == 3


def test_a_value_equal_to_a_threshold_does_not_reach_it() -> None:
    alerts = check_alerts([health("b.t", auto=300, review=1000, oldest_days=30)], RULES)  # exactly at every fail
    assert [(a.rule, a.level) for a in alerts] == [
        ("auto_derived_ratio", "warn"),
        ("needs_review_count", "warn"),
        ("placeholder_age_days", "warn"),
    ]
