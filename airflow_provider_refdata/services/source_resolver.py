"""Which source reads a sync table: per-table connections, DSNs, environment prefixes, Airflow connections.

A sync table's source is found, in this order:

1. ``source_config.connection_env_prefix: P`` (the existing configuration format): a MySQL or PostgreSQL
   source built from ``P_HOST``, ``P_PORT``, ``P_USER``, ``P_PASSWORD`` and ``P_DATABASE``;
2. ``source_config.conn_id`` (else the type's default connection id, e.g. ``refdata_legacy_postgres``) as a
   key of the ``sources`` mapping;
3. the table's ``source_type`` as a key of ``sources`` (today's form: one source per type);
4. ``config_file`` tables: a :class:`~.source_yaml.YamlFileSource` reading the configured path;
5. the ``connection_factory`` with ``(source_type, conn_id or the type's default connection id)``; by
   default, where Airflow is installed, Airflow connections (``hooks.connections.source_for_connection``,
   imported only then: this is the one place the services reach into the Airflow layer, so that a
   configuration alone is enough to sync inside Airflow).

A value of ``sources`` is either a source object (anything with the ``stream`` method) or a DSN string:
``mysql://``, ``postgresql://`` / ``postgres://``, or ``sqlite:///path`` for the generic SQL source.  Sources
are built once per connection and shared by every table that names it.  Nothing here imports Airflow, and no
message ever contains a password or a full DSN.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataSourceError

#: Default connection id per database source type (an Airflow connection, or a key of ``sources``).
DEFAULT_CONN_IDS: dict[str, str] = {
    "legacy_mysql": "refdata_legacy_mysql",
    "postgres": "refdata_legacy_postgres",
}
ENV_SUFFIXES = ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")
_REQUIRED_ENV_SUFFIXES = ("HOST", "USER", "DATABASE")

ConnectionFactory = Callable[[str, str | None], Any]


_DSN_KINDS = {"legacy_mysql": ("mysql", "mariadb"), "postgres": ("postgresql", "postgres"), "sql": ("sqlite",)}


def source_from_dsn(dsn: str, source_type: str | None = None) -> Any:
    """Build a plain-Python source from a DSN (the scheme picks the kind; it must suit ``source_type``).

    :param dsn: ``mysql://…``, ``postgresql://…`` / ``postgres://…`` or ``sqlite:///path``.
    :param source_type: the table's ``source_type``; a DSN of another kind is refused.
    """
    scheme = urlsplit(dsn).scheme.lower().split("+", 1)[0]
    kind = next((t for t, schemes in _DSN_KINDS.items() if scheme in schemes), None)
    if kind is None or (source_type not in (None, kind)):
        expected = _DSN_KINDS.get(source_type or "", ("mysql", "postgresql", "sqlite"))
        raise RefdataConfigError(
            f"a DSN with scheme {scheme + '://' if scheme else '(none)'} cannot feed a "
            f"{source_type or 'database'} source; expected {' or '.join(e + '://' for e in expected)}"
            + (" (other databases: an Airflow connection via conn_id)" if source_type == "sql" else ""),
            value=scheme or None,
        )
    if kind == "legacy_mysql":
        from airflow_provider_refdata.services.source_mysql import MySqlSource

        return MySqlSource.from_dsn(dsn)
    if kind == "postgres":
        from airflow_provider_refdata.services.source_postgres import PostgresSource

        return PostgresSource.from_dsn(dsn)
    from airflow_provider_refdata.services.source_sql import SqlSource

    return SqlSource.from_sqlite_url(dsn)


def source_from_env(prefix: str, source_type: str, environ: Mapping[str, str] | None = None) -> Any:
    """A MySQL or PostgreSQL source from ``<prefix>_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD``, ``_DATABASE``.

    :param prefix: the configured ``connection_env_prefix``.
    :param source_type: ``legacy_mysql`` or ``postgres``.
    :param environ: the environment (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    missing = [f"{prefix}_{suffix}" for suffix in _REQUIRED_ENV_SUFFIXES if not env.get(f"{prefix}_{suffix}")]
    if missing:
        raise RefdataConfigError(
            f"connection_env_prefix {prefix!r}: environment variable(s) {', '.join(missing)} not set "
            f"(read: {', '.join(f'{prefix}_{s}' for s in ENV_SUFFIXES)})",
            key_path="source_config.connection_env_prefix",
            value=prefix,
        )
    port_text = env.get(f"{prefix}_PORT")
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        raise RefdataConfigError(
            f"connection_env_prefix {prefix!r}: {prefix}_PORT is not a port number",
            key_path="source_config.connection_env_prefix",
            value=prefix,
        ) from None
    fields = {
        "host": env[f"{prefix}_HOST"],
        "user": env[f"{prefix}_USER"],
        "password": env.get(f"{prefix}_PASSWORD") or None,
        "database": env[f"{prefix}_DATABASE"],
    }
    if source_type == "legacy_mysql":
        from airflow_provider_refdata.services.source_mysql import MySqlSource

        return MySqlSource(port=port or 3306, **fields)
    if source_type == "postgres":
        from airflow_provider_refdata.services.source_postgres import PostgresSource

        return PostgresSource(port=port or 5432, **fields)
    raise RefdataConfigError(
        f"connection_env_prefix is supported for legacy_mysql and postgres sources, not {source_type!r}; use conn_id",
        key_path="source_config.connection_env_prefix",
        value=prefix,
    )


def _airflow_connections() -> ConnectionFactory | None:
    """``hooks.connections.source_for_connection`` when Airflow is installed, else ``None`` (imported lazily)."""
    import importlib.util

    if importlib.util.find_spec("airflow") is None:
        return None

    def factory(source_type: str, conn_id: str | None) -> Any:
        from airflow_provider_refdata.hooks.connections import source_for_connection

        return source_for_connection(source_type, conn_id)

    return factory


class SourceResolver:
    """Finds (and builds once) the source of each sync table; see the module docstring for the order.

    :param sources: sources or DSNs by ``conn_id`` or ``source_type``.
    :param connection_factory: builds a source from ``(source_type, conn_id)`` when nothing else names one
        (the operator passes one backed by Airflow connections); ``None`` = no fallback.
    :param environ: the environment for ``connection_env_prefix`` (default ``os.environ``).
    :param use_airflow: without a ``connection_factory``, fall back to Airflow connections when Airflow is
        installed (default); ``False``: only what is given.
    """

    def __init__(
        self,
        sources: Mapping[str, Any] | None = None,
        *,
        connection_factory: ConnectionFactory | None = None,
        environ: Mapping[str, str] | None = None,
        use_airflow: bool = True,
    ) -> None:
        self._given = dict(sources or {})
        self._factory = connection_factory
        if connection_factory is None and use_airflow:
            self._factory = _airflow_connections()
        self._environ = environ
        self._built: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # tables may resolve from several threads (concurrency > 1)

    def for_table(self, table_config: Any) -> Any:
        """The source of one table; raises RefdataConfigError/RefdataSourceError saying what is missing.

        :param table_config: a ``SyncTableConfig``.
        """
        source_type = table_config.source_type
        source_config = table_config.source_config
        prefix = getattr(source_config, "connection_env_prefix", None)
        conn_id = getattr(source_config, "conn_id", None)
        with self._lock:
            if prefix:
                return self._memo(
                    ("env", f"{source_type}:{prefix}"), lambda: source_from_env(prefix, source_type, self._environ)
                )
            # The table's connection (its conn_id, else its type's default connection id), then its type.
            for key in (conn_id or DEFAULT_CONN_IDS.get(source_type), source_type):
                if key and key in self._given:
                    value = self._given[key]
                    if isinstance(value, str):
                        return self._memo(("dsn", key), lambda v=value: source_from_dsn(v, source_type))
                    return value
            if source_type == "config_file":
                from airflow_provider_refdata.services.sources import YamlFileSource

                return self._memo(("file", ""), YamlFileSource)
            default = conn_id or DEFAULT_CONN_IDS.get(source_type)
            if self._factory is not None:
                return self._memo(("factory", f"{source_type}:{default}"), lambda: self._factory(source_type, default))
        named = f"conn_id {conn_id!r}" if conn_id else f"source_type {source_type!r}"
        raise RefdataSourceError(
            f"no source for {table_config.qualified_table}: {named} is not among the given sources "
            f"({', '.join(sorted(self._given)) or 'none'}) and no connection factory (Airflow) is available",
            table=table_config.qualified_table,
        )

    def _memo(self, key: tuple[str, str], build: Callable[[], Any]) -> Any:
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]
