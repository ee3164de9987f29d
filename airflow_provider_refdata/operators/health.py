"""ReferenceHealthOperator: check the health of the reference tables, store the snapshot, raise the alerts.

One task: :meth:`~airflow_provider_refdata.services.health.ReferenceHealthService.table_health` for the
tables (one aggregate statement per table, a failing table reported and the others still answered), stored
in ``refdata.health_snapshot``; then :func:`~airflow_provider_refdata.services.alerts.check_alerts` with the
``health:`` rules of ``reference_sync.yml``.  Every alert is logged.  When there are alerts, every notifier
is called with the task context plus ``refdata_alerts``, ``refdata_health`` and ``refdata_message`` (the
alerts as text), so any ``BaseNotifier`` can template them; ``webhook_conn_id`` adds our
:class:`~airflow_provider_refdata.notifications.ReferenceHealthNotifier`.  After notifying, a ``fail``-level
alert fails the task (``AirflowFailException``: retrying cannot fix the data) unless ``fail_on_alerts`` is
off.  The alerts are also pushed to XCom under :attr:`ReferenceHealthOperator.alerts_xcom_key` before the
task can fail, so a ``ReferenceHealthNotifier`` used as ``on_failure_callback`` lists them.

The tables are chosen by :func:`~airflow_provider_refdata.health_tables.health_tables`: ``tables``
(schema-qualified names, or names of ``reference_sync.yml`` entries); else the tables of
``reference_sync.yml`` and the targets of ``foreign_keys.yml`` (``table_source``), each file only when it
exists.  The return value (XCom) is
``{"tables": [TableHealth, ...], "alerts": [Alert, ...]}``, the models registered with ``allow_class``.
Nothing is read or connected in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.serde import allow_class

from airflow_provider_refdata.operators.templated import as_bool, as_name_list
from airflow_provider_refdata.results import Alert, TableHealth

if TYPE_CHECKING:
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import Context

for _result_class in (TableHealth, Alert):
    allow_class(_result_class)


class ReferenceHealthOperator(BaseOperator):
    """Compute reference-data health, store the snapshot, notify on alerts, fail on ``fail`` alerts.

    :param tables: the tables (templated; list or comma-separated): ``schema.table`` names or names of
        ``reference_sync.yml`` entries; empty = the configured tables (``table_source``).
    :param config_path: ``reference_sync.yml`` (templated): the alert rules and the sync tables; default
        ``$REFDATA_CONFIG_DIR/reference_sync.yml`` (skipped when that does not exist).
    :param fk_config_path: ``foreign_keys.yml`` (templated) whose targets are checked too; default
        ``$REFDATA_CONFIG_DIR/foreign_keys.yml`` (skipped when that does not exist).
    :param table_source: which configured tables without ``tables``: ``both``, ``sync`` or ``foreign_keys``.
    :param domain: count only the auto-derived rows and placeholders of this domain (templated).
    :param store: write the check to ``refdata.health_snapshot``.
    :param fail_on_alerts: fail the task on a ``fail``-level alert (templated; default true).
    :param notifiers: ``BaseNotifier`` objects (or callables taking a context) called when there are alerts.
    :param webhook_conn_id: an HTTP connection: adds a ``ReferenceHealthNotifier`` posting to it.
    :param webhook_format: ``payload_format`` of that notifier (``text``, ``wecom``, ``dingtalk``, ``feishu``;
        default: the connection's ``payload_format`` extra, else ``text``).
    :param fail_on_notify_error: fail the task when a notifier raised (after calling all of them).
    :param warehouse_conn_id: ``postgres`` connection of the warehouse.
    :param kwargs: ``BaseOperator`` arguments.
    """

    template_fields: Sequence[str] = ("tables", "config_path", "fk_config_path", "domain", "fail_on_alerts")
    ui_color = "#fdebd0"
    #: XCom key of the alerts (pushed before the task can fail).
    alerts_xcom_key = "refdata_alerts"

    def __init__(
        self,
        *,
        tables: Sequence[str] | str | None = None,
        config_path: str | None = None,
        fk_config_path: str | None = None,
        table_source: str = "both",
        domain: str | None = None,
        store: bool = True,
        fail_on_alerts: bool | str = True,
        notifiers: Sequence[Callable[[Any], Any]] = (),
        webhook_conn_id: str | None = None,
        webhook_format: str | None = None,
        fail_on_notify_error: bool = True,
        warehouse_conn_id: str = "refdata_warehouse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_provider_refdata.services.health_tables import TABLE_SOURCES

        if table_source not in TABLE_SOURCES:
            raise ValueError(f"table_source must be one of {', '.join(TABLE_SOURCES)}, got {table_source!r}")
        notifiers = list(notifiers)
        for notifier in notifiers:
            if not callable(notifier):
                raise TypeError(f"notifiers must be BaseNotifier objects or callables, got {notifier!r}")
        if webhook_conn_id:
            from airflow_provider_refdata.notifications.webhook import ReferenceHealthNotifier

            notifiers.append(ReferenceHealthNotifier(webhook_conn_id=webhook_conn_id, payload_format=webhook_format))
        self.tables = tables
        self.config_path = config_path
        self.fk_config_path = fk_config_path
        self.table_source = table_source
        self.domain = domain
        self.store = store
        self.fail_on_alerts = fail_on_alerts
        self.notifiers = notifiers
        self.fail_on_notify_error = fail_on_notify_error
        self.warehouse_conn_id = warehouse_conn_id

    @cached_property
    def hook(self) -> PostgresHook:
        """The warehouse hook (created on first use, never at DAG parse time)."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.warehouse_conn_id)

    # ----------------------------------------------------------------------------------------------------

    def resolve(self) -> tuple[list[str], Any]:
        """(the schema-qualified tables to check, the alert rules: a ``ReferenceSyncConfig`` or ``None``)."""
        from airflow_provider_refdata.operators.hybrid import default_fk_config_path
        from airflow_provider_refdata.operators.sync import default_config_path
        from airflow_provider_refdata.services.health_tables import health_tables

        return health_tables(
            as_name_list(self.tables, "tables"),
            self.config_path or default_config_path(),
            self.fk_config_path or default_fk_config_path(),
            table_source=self.table_source,
            sync_given=bool(self.config_path),
            fk_given=bool(self.fk_config_path),
        )

    def execute(self, context: Context) -> dict[str, list[Any]]:
        from airflow_provider_refdata.metrics import emit_health_metrics
        from airflow_provider_refdata.notifications.text import alert_lines, alerts_message, health_table
        from airflow_provider_refdata.services.alerts import check_alerts
        from airflow_provider_refdata.services.health import ReferenceHealthService

        fail_on_alerts = as_bool(self.fail_on_alerts, "fail_on_alerts")
        tables, rules = self.resolve()
        self.log.info("Checking the health of %d table(s): %s", len(tables), ", ".join(tables))
        health = ReferenceHealthService().table_health(self.hook, tables, domain=self.domain or None, store=self.store)
        self.log.info("Reference data health:\n%s", "\n".join(health_table(health)))
        emit_health_metrics(health)
        alerts = check_alerts(health, rules)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            ti.xcom_push(key=self.alerts_xcom_key, value=alerts)
        failures: list[str] = []
        if alerts:
            for line in alert_lines(alerts):
                (self.log.error if line.startswith("[FAIL]") else self.log.warning)("Health alert %s", line)
            failures = self.notify(context, health, alerts, alerts_message(alerts, _where(context)))
        else:
            self.log.info("No health alerts")
        fail = [a for a in alerts if a.level == "fail"]
        unsent = f" (and {len(failures)} notifier(s) failed: {'; '.join(failures)})" if failures else ""
        if fail and fail_on_alerts:
            raise AirflowFailException(
                f"{len(fail)} fail-level health alert(s): " + "; ".join(a.message for a in fail) + unsent
            )
        if failures and self.fail_on_notify_error:
            raise AirflowException(f"{len(failures)} notifier(s) failed: {'; '.join(failures)}")
        return {"tables": health, "alerts": alerts}

    def notify(self, context: Any, health: list[TableHealth], alerts: list[Alert], message: str) -> list[str]:
        """Call every notifier with the context plus the alerts; return the failures (one line each).

        :param context: the task context.
        :param health: the health results.
        :param alerts: the alerts (not empty).
        :param message: the alerts as text (``refdata_message``).
        """
        failures = []
        for notifier in self.notifiers:
            extended = {**context, "refdata_alerts": alerts, "refdata_health": health, "refdata_message": message}
            name = type(notifier).__name__
            try:
                notifier(extended)
            except Exception as exc:  # one notifier down must not keep the others from being called
                first = next((line for line in str(exc).splitlines() if line.strip()), "")
                failures.append(f"{name}: {type(exc).__name__}: {first}")
                self.log.error("Notifier %s failed: %s", name, first)
            else:
                self.log.info("Notified %s of %d alert(s)", name, len(alerts))
        return failures


def _where(context: Any) -> str | None:
    ti = context.get("ti") if hasattr(context, "get") else None
    return f"{ti.dag_id}.{ti.task_id}" if ti is not None else None
