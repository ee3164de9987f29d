"""Airflow metrics of the reference data: sync counts and durations, coverage, ratios, review backlog.

The operators call :func:`emit_sync_metrics`, :func:`emit_hybrid_metrics` and :func:`emit_health_metrics`
with their results; the values go through Airflow's own metrics facade (``airflow.sdk.observability.stats``),
so they reach whatever backend Airflow is configured with (``[metrics] statsd_on``, ``statsd_datadog_enabled``,
``otel_on``) under Airflow's prefix (``statsd_prefix``, default ``airflow``): ``airflow.refdata.<metric>``.

Every metric carries tags (``table``, ``domain``, ``fk``, ``status``).  Plain StatsD has no tags: enable
``[metrics] statsd_influxdb_enabled`` (tags appended as ``,table=…``), DogStatsD or OpenTelemetry to keep them.
Airflow accepts only ASCII letters, digits and ``_ . - /`` in a metric line, so a tag value is passed through
:func:`tag_value`: each dot-separated part that is not ASCII is punycode-encoded with the IDNA prefix
(``business.年金计划`` → ``business.xn--wbrs51akl9a9ff``; ``python -c "print(b'wbrs51akl9a9ff'.decode('punycode'))"``
gives the name back), other characters become ``_``.

Metrics (type; tags):

* ``refdata.sync.rows_read`` / ``rows_inserted`` / ``rows_updated`` / ``rows_unchanged`` / ``rows_deleted`` /
  ``rows_promoted`` / ``rows_kept_referenced`` (counter; table): rows of one table that synced;
* ``refdata.sync.tables`` (counter; table, status ``ok``/``failed``/``skipped``): tables attempted;
* ``refdata.sync.duration`` (timer; table, status): one table's sync;
* ``refdata.coverage.rate`` and ``refdata.coverage.missing_values`` (gauge; domain, table, fk): covered share
  of a FK's distinct fact values, and the values missing before the backfill;
* ``refdata.coverage.auto_derived_ratio`` (gauge; domain, table): auto-derived share of the facts' keys;
* ``refdata.backfill.inserted`` (counter; domain, table, fk): reference rows auto-derived;
* ``refdata.domain.pre_load_coverage``, ``refdata.domain.auto_derived_ratio``, ``refdata.domain.degraded``
  (gauge, 1 = degraded; domain) and ``refdata.domain.duration`` (timer; domain): one ``ensure_references``;
* ``refdata.health.total_rows`` / ``authoritative_rows`` / ``auto_derived_rows`` / ``needs_review_rows`` /
  ``auto_derived_ratio`` / ``open_placeholders`` / ``oldest_placeholder_age_days`` (gauge; table) and
  ``refdata.health.duration`` (timer; table): one table's health; ``refdata.health.failed`` (counter; table).

``plan_only`` runs write nothing and emit no sync or backfill counts (coverage is measured all the same).
Emitting never fails a task: a broken metrics backend is logged and ignored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_refdata.results import SYNC_WRITE_COUNTS

if TYPE_CHECKING:
    from airflow_provider_refdata.results import HybridResult, SyncResult, TableHealth

log = logging.getLogger(__name__)

PREFIX = "refdata"
SYNC_COUNTS = ("rows_read", *SYNC_WRITE_COUNTS)
HEALTH_GAUGES = (
    "total_rows",
    "authoritative_rows",
    "auto_derived_rows",
    "needs_review_rows",
    "auto_derived_ratio",
    "open_placeholders",
)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_./-]")


def tag_value(value: object) -> str:
    """A tag value every Airflow metrics backend accepts (see the module docstring).

    :param value: a table, domain or FK name.
    """
    parts = []
    for part in str(value).split("."):
        if not part.isascii():
            part = "xn--" + part.encode("punycode").decode("ascii")
        parts.append(_NOT_ALLOWED.sub("_", part))
    return ".".join(parts)


def _tags(**tags: object) -> dict[str, str]:
    return {key: tag_value(value) for key, value in tags.items() if value is not None}


def _stats() -> Any:
    from airflow.sdk.observability import stats

    return stats


def _guarded(emit: Callable[..., None]) -> Callable[..., None]:
    """Run ``emit``; log and swallow any error, so metrics never decide a task's outcome."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            emit(*args, **kwargs)
        except Exception:
            log.warning("refdata metrics not emitted by %s", emit.__name__, exc_info=True)

    wrapper.__name__ = emit.__name__
    wrapper.__doc__ = emit.__doc__
    return wrapper


def sync_status(result: SyncResult) -> str:
    """``ok``, ``failed`` or ``skipped``: one table's outcome, as the metrics, logs and Asset events name it.

    :param result: the table's result.
    """
    return "failed" if result.error else "skipped" if result.skipped_reason else "ok"


@_guarded
def emit_sync_metrics(results: Iterable[SyncResult]) -> None:
    """Row counts, outcome and duration of each synced table (nothing for ``plan_only`` results).

    :param results: the sync's results, one per table.
    """
    stats = _stats()
    for result in results:
        if result.plan_only:
            continue
        status = sync_status(result)
        tags = _tags(table=result.table)
        stats.incr(f"{PREFIX}.sync.tables", tags={**tags, "status": status})
        stats.timing(
            f"{PREFIX}.sync.duration", timedelta(seconds=result.duration_seconds), tags={**tags, "status": status}
        )
        if status == "ok":
            for name in SYNC_COUNTS:
                stats.incr(f"{PREFIX}.sync.{name}", getattr(result, name), tags=tags)


@_guarded
def emit_hybrid_metrics(result: HybridResult) -> None:
    """Coverage per FK, auto-derived ratios, backfill counts and duration of one ``ensure_references``.

    :param result: the service's result.
    """
    stats = _stats()
    domain = _tags(domain=result.domain)
    for metric in result.coverage_metrics:
        if metric.skipped_reason or metric.error:
            continue
        tags = {**domain, **_tags(table=metric.table, fk=metric.fk_name)}
        stats.gauge(f"{PREFIX}.coverage.rate", metric.coverage_rate, tags=tags)
        stats.gauge(f"{PREFIX}.coverage.missing_values", metric.missing_values, tags=tags)
    for table, ratio in result.per_table_ratio.items():
        stats.gauge(f"{PREFIX}.coverage.auto_derived_ratio", ratio, tags={**domain, **_tags(table=table)})
    if result.backfill_result is not None and not result.plan_only:
        for table_result in result.backfill_result.tables:
            tags = {**domain, **_tags(table=table_result.table, fk=table_result.fk_name)}
            stats.incr(f"{PREFIX}.backfill.inserted", table_result.inserted, tags=tags)
    stats.gauge(f"{PREFIX}.domain.pre_load_coverage", result.pre_load_coverage, tags=domain)
    stats.gauge(f"{PREFIX}.domain.auto_derived_ratio", result.auto_derived_ratio, tags=domain)
    stats.gauge(f"{PREFIX}.domain.degraded", int(result.degraded_mode), tags=domain)
    stats.timing(f"{PREFIX}.domain.duration", timedelta(seconds=result.duration_seconds), tags=domain)


@_guarded
def emit_health_metrics(health: Iterable[TableHealth]) -> None:
    """Row counts by source, needs-review count, ratio, open placeholders and the oldest one's age, per table.

    :param health: the health check's results (``ReferenceHealthService.table_health``).
    """
    stats = _stats()
    for table in health:
        tags = _tags(table=table.table)
        if table.error:
            stats.incr(f"{PREFIX}.health.failed", tags=tags)
            continue
        for name in HEALTH_GAUGES:
            stats.gauge(f"{PREFIX}.health.{name}", getattr(table, name), tags=tags)
        if table.oldest_open_placeholder_age_days is not None:
            stats.gauge(
                f"{PREFIX}.health.oldest_placeholder_age_days", table.oldest_open_placeholder_age_days, tags=tags
            )
        stats.timing(f"{PREFIX}.health.duration", timedelta(seconds=table.duration_seconds), tags=tags)
