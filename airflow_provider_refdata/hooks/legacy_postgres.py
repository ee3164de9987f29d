"""LegacyPostgresHook: a legacy PostgreSQL database as a reference source, configured by an Airflow connection.

The hook is a :class:`~airflow.providers.postgres.hooks.postgres.PostgresHook` (so ``get_records``,
``get_conn`` and the rest work as usual) that also implements the sync service's source protocol:
:meth:`stream` and :meth:`describe_columns` delegate to
:class:`~airflow_provider_refdata.services.source_postgres.PostgresSource`, built once (on first use) from
the connection's host, port, login, password, schema (the database) and extras: ``connect_timeout``,
``statement_timeout`` (seconds) and any libpq parameter (``sslmode``, ``sslrootcert``, ``options`` …).  The
hook only supplies connection parameters; the COPY, cleaning rules and error wording live in the plain-Python
source, so the CLI and tests use the same code without Airflow.  Retries are the service's job.

A normal ``postgres`` connection serves: the default connection id is ``refdata_legacy_postgres``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from airflow_provider_refdata.services.source_postgres import PostgresSource
from airflow_provider_refdata.services.sources import DEFAULT_TIMEOUT_SECONDS, SourceColumn, SourceRead

# Extras the hook reads itself, and PostgresHook extras that are not libpq parameters.
_OWN_EXTRAS = frozenset({"connect_timeout", "statement_timeout"})


def _libpq_keywords() -> frozenset[str]:
    from psycopg import pq

    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


class LegacyPostgresHook(PostgresHook):
    """Read reference tables from a legacy PostgreSQL database.

    :param postgres_conn_id: Airflow connection id (type ``postgres``); default ``refdata_legacy_postgres``.
    :param connect_timeout: seconds to wait for a connection (default: the connection's extra, else 30).
    :param statement_timeout: seconds the legacy server may spend on one statement (default: the
        connection's extra, else the server's setting).
    :param kwargs: passed to ``PostgresHook`` (e.g. ``database`` to override the connection's database).
    """

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "refdata_legacy_postgres"
    conn_type = "postgres"
    hook_name = "Refdata legacy PostgreSQL"

    def __init__(
        self,
        postgres_conn_id: str = default_conn_name,
        *,
        connect_timeout: int | None = None,
        statement_timeout: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(postgres_conn_id=postgres_conn_id, **kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout

    @cached_property
    def source(self) -> PostgresSource:
        """The plain-Python reader for this connection (looked up once, on first use)."""
        conn = self.get_connection(self.postgres_conn_id)
        extra = conn.extra_dejson or {}
        keywords = _libpq_keywords()
        conninfo = {
            name: str(value)
            for name, value in extra.items()
            if name in keywords and name not in _OWN_EXTRAS and name not in self.ignored_extra_options
        }
        statement_timeout = self.statement_timeout or extra.get("statement_timeout")
        return PostgresSource(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 5432),
            user=conn.login or "postgres",
            password=conn.password or None,
            database=self.database or conn.schema or None,
            connect_timeout=int(self.connect_timeout or extra.get("connect_timeout") or DEFAULT_TIMEOUT_SECONDS),
            statement_timeout=int(statement_timeout) if statement_timeout else None,
            conninfo=conninfo,
        )

    def describe(self) -> str:
        """``host:port/database`` of the connection (no credentials)."""
        return self.source.describe()

    @contextmanager
    def stream(self, table_config: Any, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Open a COPY read of the configured table (see ``PostgresSource.stream``).

        :param table_config: a ``postgres`` ``SyncTableConfig``.
        :param since: read only rows with ``updated_at >= since``; ``None`` reads all.
        :param batch_size: at most this many rows per chunk.
        """
        with self.source.stream(table_config, since, batch_size) as read:
            yield read

    def describe_columns(self, table_config: Any) -> list[SourceColumn]:
        """The configured columns as PostgreSQL columns (see ``PostgresSource.describe_columns``).

        :param table_config: a ``postgres`` ``SyncTableConfig``.
        """
        return self.source.describe_columns(table_config)
