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
and fails the task only when every table failed, or when ``fail_on_error=True`` and any table failed.  Its
outlets default to :data:`~airflow_provider_refdata.assets.REFERENCE_SYNC_ASSET`; per-table assets listed in
``outlets`` get an event extra describing that table's result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.serde import allow_class

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET, table_asset_uri
from airflow_provider_refdata.operators.templated import as_bool, as_name_list
from airflow_provider_refdata.results import SyncResult

allow_class(SyncResult)

CONFIG_DIR_ENV = "REFDATA_CONFIG_DIR"
CONFIG_FILE_NAME = "reference_sync.yml"


def default_config_path() -> Path:
    """``$REFDATA_CONFIG_DIR/reference_sync.yml``, else the ``config/`` folder next to the package (checkout)."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    base = Path(folder) if folder else Path(__file__).resolve().parents[2] / "config"
    return base / CONFIG_FILE_NAME


class ReferenceSyncOperator(BaseOperator):
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
    :param fail_on_error: fail the task when any table failed (default: only when all failed).
    :param source_retries: retries per table after a transient MySQL error (default 3: at most 4 attempts).
        Not to be confused with the task's own ``retries``, which re-run the whole task.
    :param source_retry_wait_seconds: first wait between attempts (doubles each time).
    :param source_retry_max_wait_seconds: longest wait between attempts.
    :param kwargs: ``BaseOperator`` arguments; ``outlets`` defaults to ``[REFERENCE_SYNC_ASSET]``.
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
        fail_on_error: bool = False,
        source_retries: int = 3,
        source_retry_wait_seconds: float = 2.0,
        source_retry_max_wait_seconds: float = 8.0,
        source_connections: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [REFERENCE_SYNC_ASSET])
        super().__init__(**kwargs)
        self.config_path = config_path  # may be an XComArg (resolved before execute)
        self.tables = tables
        self.plan_only = plan_only
        self.force_full = force_full
        self.warehouse_conn_id = warehouse_conn_id
        self.mysql_conn_id = mysql_conn_id
        self.yaml_conn_id = yaml_conn_id
        self.fail_on_error = fail_on_error
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
        from airflow_provider_refdata.services.sync import ReferenceSyncService, format_summary

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
        self._record_asset_events(context, results)
        failed = [r for r in results if r.error]
        if failed and (self.fail_on_error or len(failed) == len(results)):
            raise AirflowException(
                f"{len(failed)} of {len(results)} reference table(s) failed: "
                + "; ".join(f"{r.table}: {r.error}" for r in failed)
            )
        return results

    def _record_asset_events(self, context: Any, results: list[SyncResult]) -> None:
        """Attach each run's outcome to the outlet events (extra must be JSON-serialisable)."""
        events = context.get("outlet_events") if hasattr(context, "get") else None
        if events is None:
            return
        by_uri = {table_asset_uri(*r.table.split(".", 1)): r for r in results}
        for outlet in self.outlets or []:
            uri = getattr(outlet, "uri", None)
            if uri is None:
                continue
            if uri.rstrip("/") == REFERENCE_SYNC_ASSET.uri.rstrip("/"):
                events[outlet].extra = {
                    "plan_only": as_bool(self.plan_only, "plan_only"),
                    "tables": {
                        r.table: "failed" if r.error else "skipped" if r.skipped_reason else "ok" for r in results
                    },
                }
            elif uri in by_uri:
                events[outlet].extra = by_uri[uri].model_dump(mode="json")
