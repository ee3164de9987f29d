"""Sync sources from Airflow connections: the ``connection_factory`` the operator gives the sync service.

:func:`source_for_connection` turns ``(source_type, conn_id)`` into a source:

==================  ============================================================================================
``source_type``     source
==================  ============================================================================================
``legacy_mysql``    :class:`~airflow_provider_refdata.hooks.legacy_mysql.LegacyMySqlHook` (``mysql_conn_id``)
``postgres``        :class:`~airflow_provider_refdata.hooks.legacy_postgres.LegacyPostgresHook` (``postgres_conn_id``)
``sql``             :class:`~airflow_provider_refdata.services.source_sql.SqlSource` over the connection's own hook
                    (``BaseHook.get_connection(conn_id).get_hook()``, a ``DbApiHook``): its ``get_conn``, its
                    ``placeholder`` and its dialect's ``escape_word_format`` (always quoting, embedded quotes
                    doubled); a ``sql`` table must name its ``conn_id``
``config_file``     :class:`~airflow_provider_refdata.hooks.yaml_reference.YamlReferenceHook` (``yaml_conn_id``)
==================  ============================================================================================

Every failure is a :class:`~airflow_provider_refdata.exceptions.RefdataSourceError` (an undefined connection,
a connection type whose provider is not installed, a hook that is not a ``DbApiHook``), so only the tables
reading through that connection fail.  :func:`sources_from_mapping` turns the operator's ``source_connections``
(conn ids and DSNs by config ``conn_id`` or ``source_type``) into the service's ``sources``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataError, RefdataSourceError
from airflow_provider_refdata.services.source_resolver import DEFAULT_CONN_IDS
from airflow_provider_refdata.services.sources import SourceColumn, SourceRead

SourceFactory = Callable[[str, str | None], Any]

#: The source types :func:`source_for_connection` can build a source for.
SOURCE_TYPES = ("legacy_mysql", "postgres", "sql", "config_file")


def _get_connection(conn_id: str, source_type: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or a secrets backend's own error
        raise RefdataSourceError(
            f"Airflow connection {conn_id!r} (source_type {source_type}) cannot be used: {type(exc).__name__}: {exc}",
            source=conn_id,
        ) from None


def source_for_connection(source_type: str, conn_id: str | None) -> Any:
    """The source of ``source_type`` tables reading through the Airflow connection ``conn_id``.

    :param source_type: the table's ``source_type``.
    :param conn_id: the Airflow connection id; ``None`` = the type's default (``legacy_mysql``:
        ``refdata_legacy_mysql``, ``postgres``: ``refdata_legacy_postgres``, ``config_file``: ``refdata_yaml``;
        ``sql`` has none: such a table fails, naming itself, when read).
    :raises RefdataSourceError: the connection is not defined or cannot give a source of this type (every
        failure is one, so only the tables reading through this connection fail).
    """
    try:
        return _source_for_connection(source_type, conn_id)
    except RefdataError:
        raise
    except Exception as exc:  # e.g. a hook module that cannot be imported
        raise RefdataSourceError(
            f"no {source_type} source for Airflow connection {conn_id!r}: {type(exc).__name__}: {exc}",
            source=conn_id,
        ) from None


def _source_for_connection(source_type: str, conn_id: str | None) -> Any:
    if source_type == "legacy_mysql":
        from airflow_provider_refdata.hooks.legacy_mysql import LegacyMySqlHook

        conn_id = conn_id or DEFAULT_CONN_IDS["legacy_mysql"]
        _get_connection(conn_id, source_type)  # an undefined connection fails here, naming it
        return LegacyMySqlHook(mysql_conn_id=conn_id)
    if source_type == "postgres":
        from airflow_provider_refdata.hooks.legacy_postgres import LegacyPostgresHook

        conn_id = conn_id or DEFAULT_CONN_IDS["postgres"]
        _get_connection(conn_id, source_type)
        return LegacyPostgresHook(postgres_conn_id=conn_id)
    if source_type == "sql":
        if not conn_id:
            return _NoConnId()
        return sql_source_for_connection(conn_id)
    if source_type == "config_file":
        from airflow_provider_refdata.hooks.yaml_reference import YamlReferenceHook

        return YamlReferenceHook(yaml_conn_id=conn_id) if conn_id else YamlReferenceHook()
    raise RefdataConfigError(
        f"no Airflow source for source_type {source_type!r} (known: {', '.join(SOURCE_TYPES)})", value=source_type
    )


def sql_source_for_connection(conn_id: str) -> Any:
    """A :class:`~airflow_provider_refdata.services.source_sql.SqlSource` over the ``DbApiHook`` of ``conn_id``.

    :param conn_id: an Airflow connection whose type has a ``DbApiHook`` (``postgres``, ``mysql``, ``sqlite``,
        ``oracle``, ``mssql``, ... with its provider installed).
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_refdata.services.source_sql import SqlSource, quoter_from_format

    connection = _get_connection(conn_id, "sql")
    conn_type = connection.conn_type or "(none)"
    try:
        hook = connection.get_hook()
    except Exception as exc:  # "Unknown hook type": the connection type's provider is not installed
        raise RefdataSourceError(
            f"Airflow connection {conn_id!r} of type {conn_type!r} has no hook ({type(exc).__name__}: {exc}); "
            "install the provider of that connection type",
            source=conn_id,
        ) from None
    if not isinstance(hook, DbApiHook):
        raise RefdataSourceError(
            f"Airflow connection {conn_id!r} of type {conn_type!r} gives a {type(hook).__name__}, not a DbApiHook; "
            "source_type sql needs a SQL database connection",
            source=conn_id,
        )
    try:
        escape_format = hook.dialect.escape_word_format
    except Exception:  # a dialect whose provider is missing: the hook's own format
        escape_format = hook.escape_word_format
    where = "/".join(part for part in (connection.host, connection.schema) if part)
    sqlite = conn_type == "sqlite"
    return SqlSource(
        connect=hook.get_conn,
        placeholder=hook.placeholder,
        quote_identifier=quoter_from_format(escape_format),
        name=f"{conn_type} connection {conn_id}" + (f" ({where})" if where else ""),
        secrets=(connection.password,) if connection.password else (),
        sqlite=sqlite,
        bind_datetime=(lambda value: value.isoformat(sep=" ")) if sqlite else None,
    )


class _NoConnId:
    """The source of ``sql`` tables without ``source_config.conn_id``: reading fails, naming the table."""

    def _fail(self, table_config: Any) -> RefdataSourceError:
        return RefdataSourceError(
            f"{table_config.qualified_table}: source_type sql needs source_config.conn_id (an Airflow connection "
            "with a DbApiHook) or a 'sql'/conn_id entry in source_connections; there is no default connection",
            table=table_config.qualified_table,
        )

    @contextmanager
    def stream(self, table_config: Any, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        raise self._fail(table_config)
        yield  # pragma: no cover - a generator for contextmanager

    def describe_columns(self, table_config: Any) -> list[SourceColumn]:
        raise self._fail(table_config)


class ConnectionSource:
    """A source reading through one Airflow connection, built on first use for each table's ``source_type``.

    A ``source_connections`` entry names a connection, not a source type (the same connection id may serve
    ``sql`` and ``postgres`` tables); nothing is looked up until a table is read.

    :param conn_id: the Airflow connection id.
    :param factory: ``(source_type, conn_id) → source`` (default :func:`source_for_connection`).
    """

    def __init__(self, conn_id: str, factory: SourceFactory | None = None) -> None:
        self.conn_id = conn_id
        self._factory = factory or source_for_connection
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConnectionSource({self.conn_id!r})"

    def source(self, source_type: str) -> Any:
        """The source for tables of ``source_type`` (built once)."""
        with self._lock:
            if source_type not in self._built:
                self._built[source_type] = self._factory(source_type, self.conn_id)
            return self._built[source_type]

    @contextmanager
    def stream(self, table_config: Any, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Read through the source for the table's ``source_type`` (see the protocol)."""
        with self.source(table_config.source_type).stream(table_config, since, batch_size) as read:
            yield read

    def describe_columns(self, table_config: Any) -> list[SourceColumn]:
        """The table's columns, when the underlying source can tell them."""
        source = self.source(table_config.source_type)
        describe = getattr(source, "describe_columns", None)
        if describe is None:
            raise RefdataSourceError(
                f"{table_config.qualified_table}: the {table_config.source_type} source of Airflow connection "
                f"{self.conn_id!r} cannot describe its columns; create the table yourself",
                source=self.conn_id,
                table=table_config.qualified_table,
            )
        return describe(table_config)


def is_dsn(value: str) -> bool:
    """Whether a ``source_connections`` value is a DSN (contains ``://``) rather than a connection id."""
    return "://" in value


def sources_from_mapping(mapping: Mapping[str, str] | None, factory: SourceFactory | None = None) -> dict[str, Any]:
    """The sync service's ``sources`` for a ``source_connections`` mapping.

    :param mapping: key: a configuration ``conn_id`` or a ``source_type``; value: an Airflow connection id,
        or a DSN (``mysql://``, ``postgresql://``, ``sqlite:///abs/path.db``: it contains ``://``).
    :param factory: builds the source of a connection-id value per ``source_type`` (default
        :func:`source_for_connection`).
    :raises RefdataConfigError: a key or value is empty or not a string.
    """
    sources: dict[str, Any] = {}
    for key, value in (mapping or {}).items():
        if not isinstance(key, str) or not key.strip() or not isinstance(value, str) or not value.strip():
            raise RefdataConfigError(
                f"source_connections: entry {key!r} must map a conn_id or source_type to a non-empty connection "
                "id or DSN",
                key_path=f"source_connections.{key}",
            )
        value = value.strip()
        sources[key.strip()] = value if is_dsn(value) else ConnectionSource(value, factory)
    return sources
