"""ReferenceSyncOperator: run the authoritative reference sync as one Airflow task.

The operator loads ``reference_sync.yml`` (path templated; default ``$REFDATA_CONFIG_DIR/reference_sync.yml``),
builds each table's source from Airflow connections and the warehouse from a ``postgres`` connection, and
calls :class:`~airflow_provider_refdata.services.sync.ReferenceSyncService`.  A table's source is found as
:mod:`~airflow_provider_refdata.services.source_resolver` says: ``connection_env_prefix``, then
``source_connections`` (by the table's ``conn_id``, then by its ``source_type``; a value is an Airflow
connection id or a DSN), then the Airflow connection the table's ``conn_id`` names (default per type:
``mysql_conn_id``, ``refdata_legacy_postgres``), built by
:func:`~airflow_provider_refdata.hooks.connections.source_for_connection` (``LegacyMySqlHook``,
``LegacyPostgresHook``, an ``SqlSource`` over a ``DbApiHook``, ``YamlReferenceHook``).
Nothing is read or connected in ``__init__``: hooks are created on first use during ``execute``.

It returns the list of :class:`~airflow_provider_refdata.results.SyncResult` (XCom), logs one summary table,
emits the metrics of :mod:`~airflow_provider_refdata.metrics`, and — after every table was attempted, each in
its own transaction — fails when any table failed (``fail_on="any"``, the default) or only when no table
synced (``fail_on="all"``); the message names each failed table and its cause.  ``fail_on_error`` (a bool,
before ``fail_on``) still works: ``True`` is ``"any"``, ``False`` is ``"all"``.

Its outlets default to :data:`~airflow_provider_refdata.assets.REFERENCE_SYNC_ASSET` (extra: each table's
outcome) and :data:`~airflow_provider_refdata.assets.REFERENCE_TABLES_ALIAS`, through which each table that
synced gets an event on its own Asset (:func:`~airflow_provider_refdata.assets.table_asset`) with the counts and
the watermark.  A per-table Asset listed in ``outlets`` itself gets its table's result as extra instead (and,
as any declared outlet, an event on every successful run).  Airflow records outlet events only for a task that
succeeds: to have the synced tables' Assets fire while a failed table still turns the DAG run red, run the
sync with ``fail_on="all"`` and fail a downstream task on its results (:func:`failed_tables_message` or
:func:`raise_for_failed_tables`), as the DAG ``refdata_reference_sync`` does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.serde import allow_class

from airflow_provider_refdata.assets import (
    REFERENCE_SYNC_ASSET,
    REFERENCE_TABLES_ALIAS,
    table_asset_for,
)
from airflow_provider_refdata.config.paths import SYNC_CONFIG_FILE, config_path
from airflow_provider_refdata.lineage import ReferenceSyncLineageMixin
from airflow_provider_refdata.metrics import emit_sync_metrics, sync_status
from airflow_provider_refdata.operators.templated import as_bool, as_name_list
from airflow_provider_refdata.results import SyncResult

allow_class(SyncResult)

FAIL_ON = ("any", "all")
FailOn = Literal["any", "all"]


def default_config_path() -> Path:
    """``$REFDATA_CONFIG_DIR/reference_sync.yml``, else ``config/reference_sync.yml`` of the working directory."""
    return config_path(SYNC_CONFIG_FILE)


def resolve_fail_on(fail_on: str | None, fail_on_error: bool | None) -> FailOn:
    """The effective ``fail_on`` from the new argument and the older ``fail_on_error`` bool.

    :param fail_on: ``"any"`` or ``"all"``, or None (not given).
    :param fail_on_error: the older bool (``True`` = ``"any"``, ``False`` = ``"all"``), or None (not given).
    """
    if fail_on is not None and fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}")
    if fail_on_error is None:
        return fail_on or "any"  # type: ignore[return-value]
    legacy: FailOn = "any" if fail_on_error else "all"
    if fail_on is not None and fail_on != legacy:
        raise ValueError(f"fail_on={fail_on!r} contradicts fail_on_error={fail_on_error!r}; give only fail_on")
    warnings.warn("fail_on_error is deprecated: use fail_on='any' or 'all'", DeprecationWarning, stacklevel=3)
    return legacy


def as_sync_results(results: Sequence[SyncResult | dict[str, Any]]) -> list[SyncResult]:
    """The sync's results as models (an XCom read without the registered class gives dicts).

    :param results: models or their dicts.
    """
    return [r if isinstance(r, SyncResult) else SyncResult.model_validate(r) for r in results]


def failed_tables_message(results: Sequence[SyncResult | dict[str, Any]]) -> str | None:
    """``"2 of 4 reference table(s) failed: a: cause; b: cause"``, or None when no table failed.

    :param results: the sync's results (models or their dicts).
    """
    results = as_sync_results(results)
    failed = [r for r in results if r.error]
    if not failed:
        return None
    # most causes start with a source's name; some already start with the table's (not repeated then)
    causes = [r.error if r.error.startswith(f"{r.table}:") else f"{r.table}: {r.error}" for r in failed]
    return f"{len(failed)} of {len(results)} reference table(s) failed: " + "; ".join(causes)


def raise_for_failed_tables(results: Sequence[SyncResult | dict[str, Any]], fail_on: FailOn = "any") -> None:
    """Raise ``AirflowException`` naming each failed table and its cause, as ``fail_on`` says.

    :param results: the sync's results (an XCom of the sync task works: the models or their dicts).
    :param fail_on: ``"any"``: when any table failed; ``"all"``: only when tables failed and none synced
        (skipped tables count neither way).
    """
    parsed = as_sync_results(results)
    message = failed_tables_message(parsed)
    if message is None:
        return
    if fail_on == "any" or not any(sync_status(r) == "ok" for r in parsed):
        raise AirflowException(message)


class ReferenceSyncOperator(ReferenceSyncLineageMixin, BaseOperator):
    """Sync the configured reference tables into the warehouse.

    :param config_path: ``reference_sync.yml`` (templated, or an XComArg); default :func:`default_config_path`.
    :param tables: names of the table entries to sync (templated; list or comma-separated); empty = all.
    :param plan_only: compute the counts and write nothing (templated).
    :param force_full: ignore watermarks, read every source row (templated).
    :param warehouse_conn_id: ``postgres`` connection of the warehouse.
    :param mysql_conn_id: connection of the legacy MySQL database (``legacy_mysql`` tables without
        ``conn_id``; it replaces the default ``refdata_legacy_mysql``).
    :param yaml_conn_id: optional ``refdata_yaml`` connection (``base_path`` extra).
    :param source_connections: connections of the sources, by a configuration ``conn_id`` or a ``source_type``
        (``legacy_mysql``, ``postgres``, ``sql``, ``config_file``); each value is an Airflow connection id,
        or a DSN (it contains ``://``: ``mysql://…``, ``postgresql://…``, ``sqlite:////abs/path.db``).  A
        table's ``conn_id`` key wins over its ``source_type`` key; a table matching neither reads the Airflow
        connection its ``conn_id`` names (else its type's default connection).  Default: none.
    :param fail_on: ``"any"`` (default): fail the task when any table failed; ``"all"``: only when no table
        synced.  Either way every table is attempted first, and the message names the failed tables.
    :param fail_on_error: deprecated bool form of ``fail_on`` (``True`` = ``"any"``, ``False`` = ``"all"``).
    :param source_retries: retries per table after a transient MySQL error (default 3: at most 4 attempts).
        Not to be confused with the task's own ``retries``, which re-run the whole task.
    :param source_retry_wait_seconds: first wait between attempts (doubles each time).
    :param source_retry_max_wait_seconds: longest wait between attempts.
    :param kwargs: ``BaseOperator`` arguments; ``outlets`` defaults to
        ``[REFERENCE_SYNC_ASSET, REFERENCE_TABLES_ALIAS]``.
    """

    template_fields: Sequence[str] = ("config_path", "tables", "plan_only", "force_full")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        config_path: str | os.PathLike[str] | None = None,
        tables: Sequence[str] | str | None = None,
        plan_only: bool | str = False,
        force_full: bool | str = False,
        warehouse_conn_id: str = "refdata_warehouse",
        mysql_conn_id: str = "refdata_legacy_mysql",
        yaml_conn_id: str = "refdata_yaml",
        fail_on: FailOn | None = None,
        fail_on_error: bool | None = None,
        source_retries: int = 3,
        source_retry_wait_seconds: float = 2.0,
        source_retry_max_wait_seconds: float = 8.0,
        source_connections: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [REFERENCE_SYNC_ASSET, REFERENCE_TABLES_ALIAS])
        super().__init__(**kwargs)
        self.config_path = config_path  # may be an XComArg (resolved before execute)
        self.tables = tables
        self.plan_only = plan_only
        self.force_full = force_full
        self.warehouse_conn_id = warehouse_conn_id
        self.mysql_conn_id = mysql_conn_id
        self.yaml_conn_id = yaml_conn_id
        self.fail_on: FailOn = resolve_fail_on(fail_on, fail_on_error)
        self.source_retries = source_retries
        self.source_retry_wait_seconds = source_retry_wait_seconds
        self.source_retry_max_wait_seconds = source_retry_max_wait_seconds
        if source_connections:
            from airflow_provider_refdata.hooks.connections import sources_from_mapping

            sources_from_mapping(source_connections)  # a malformed mapping fails when the DAG is parsed
        self.source_connections = dict(source_connections) if source_connections else None

    @cached_property
    def mysql_hook(self) -> Any:
        from airflow_provider_refdata.hooks.legacy_mysql import LegacyMySqlHook

        return LegacyMySqlHook(mysql_conn_id=self.mysql_conn_id)

    def source_for_connection(self, source_type: str, conn_id: str | None) -> Any:
        """The ``connection_factory`` given to the sync: :func:`~.hooks.connections.source_for_connection`,
        with ``mysql_conn_id`` as the connection of ``legacy_mysql`` tables that name none.

        :param source_type: the table's ``source_type``.
        :param conn_id: the table's ``conn_id``, else the type's default connection id.
        """
        from airflow_provider_refdata.hooks.connections import source_for_connection
        from airflow_provider_refdata.services.source_resolver import DEFAULT_CONN_IDS

        if source_type == "legacy_mysql" and conn_id in (None, DEFAULT_CONN_IDS["legacy_mysql"]):
            conn_id = self.mysql_conn_id
        return source_for_connection(source_type, conn_id)

    def sources(self, config: Any) -> dict[str, Any]:
        """The service's ``sources``: ``source_connections`` (DSNs as given, connection ids built on first
        use) and the YAML hook for ``config_file`` tables.

        :param config: the loaded configuration (keys naming no table's ``conn_id`` or ``source_type`` are
            logged as a warning).
        """
        from airflow_provider_refdata.hooks.connections import sources_from_mapping

        mapping = self.source_connections or {}
        known = {t.source_type for t in config.tables} | {
            c for t in config.tables if (c := getattr(t.source_config, "conn_id", None))
        }
        unused = sorted(set(mapping) - known)
        if unused:
            self.log.warning(
                "source_connections: %s name(s) no table's conn_id or source_type (known: %s)",
                ", ".join(unused),
                ", ".join(sorted(known)),
            )
        return {"config_file": self.yaml_hook, **sources_from_mapping(mapping, self.source_for_connection)}

    @cached_property
    def yaml_hook(self) -> Any:
        from airflow_provider_refdata.hooks.yaml_reference import YamlReferenceHook

        return YamlReferenceHook(yaml_conn_id=self.yaml_conn_id)

    @cached_property
    def warehouse_hook(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.warehouse_conn_id)

    def execute(self, context: Any) -> list[SyncResult]:
        from airflow_provider_refdata.config import load_sync_config
        from airflow_provider_refdata.services.sync import ReferenceSyncService
        from airflow_provider_refdata.services.sync_outcome import format_summary

        path = Path(self.config_path) if self.config_path else default_config_path()
        config = load_sync_config(path)
        plan_only, force_full = as_bool(self.plan_only, "plan_only"), as_bool(self.force_full, "force_full")
        tables = as_name_list(self.tables, "tables")
        if not config.enabled:
            self.log.info("Reference sync is disabled in %s (enabled: false); nothing synced", path)
            return []
        service = ReferenceSyncService(
            config,
            self.sources(config),
            retries=self.source_retries,
            retry_wait_seconds=self.source_retry_wait_seconds,
            retry_max_wait_seconds=self.source_retry_max_wait_seconds,
        )
        self.log.info(
            "Syncing %s from %s (plan_only=%s, force_full=%s)",
            ", ".join(tables) or "all tables",
            path,
            plan_only,
            force_full,
        )
        results = service.sync_all(
            conn=self.warehouse_hook,
            plan_only=plan_only,
            force_full=force_full,
            tables=tables,
            connection_factory=self.source_for_connection,
        )
        self.log.info("Reference sync summary:\n%s", format_summary(results))
        emit_sync_metrics(results)
        self._lineage_result = results  # for get_openlineage_facets_on_complete (also when failing below)
        raise_for_failed_tables(results, self.fail_on)
        if message := failed_tables_message(results):
            self.log.warning("%s (fail_on='all': the task succeeds)", message)
        self._record_asset_events(context, results, plan_only)
        return results

    def _record_asset_events(self, context: Any, results: list[SyncResult], plan_only: bool) -> None:
        """Attach each run's outcome to the outlet events (extra must be JSON-serialisable).

        :param context: the task context (``outlet_events``; absent when ``execute`` is called directly).
        :param results: the sync's results.
        :param plan_only: a plan-only run: no per-table event through the alias (nothing was written).
        """
        events = context.get("outlet_events") if hasattr(context, "get") else None
        if events is None:
            return
        by_uri = {table_asset_for(r.table).uri: r for r in results}
        declared = set()
        for outlet in self.outlets or []:
            uri = getattr(outlet, "uri", None)
            if uri == REFERENCE_SYNC_ASSET.uri:
                events[outlet].extra = {
                    "plan_only": plan_only,
                    "tables": {r.table: sync_status(r) for r in results},
                }
            elif uri in by_uri:
                declared.add(uri)
                events[outlet].extra = table_event_extra(by_uri[uri])
        for outlet in self.outlets or []:
            if not isinstance(outlet, AssetAlias) or outlet.name != REFERENCE_TABLES_ALIAS.name:
                continue
            for uri, result in by_uri.items():
                if uri not in declared and sync_status(result) == "ok" and not plan_only:
                    events[outlet].add(table_asset_for(result.table), extra=table_event_extra(result))


def table_event_extra(result: SyncResult) -> dict[str, Any]:
    """The extra of a table's Asset event: its counts, watermarks, duration and status (JSON values only).

    :param result: the table's sync result.
    """
    return {"status": sync_status(result), **result.model_dump(mode="json", exclude_none=True)}
