"""LegacyMySqlHook: the legacy MySQL database as a reference source, configured by an Airflow connection.

The hook is a :class:`~airflow.providers.mysql.hooks.mysql.MySqlHook` (so ``get_records``, ``get_conn`` and
the rest work as usual) that also implements the sync service's source protocol: :meth:`stream` delegates
to :class:`~airflow_provider_refdata.services.source_mysql.MySqlSource`, built from the connection's host, port,
login, password, schema (database) and extras ``connect_timeout`` / ``read_timeout`` / ``charset``.  The
hook only supplies connection parameters; streaming, COPY rendering and error wording live in the plain
Python source so the CLI and tests use the same code without Airflow.  Retries are the service's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow.providers.mysql.hooks.mysql import MySqlHook

from airflow_provider_refdata.services.source_mysql import MySqlSource
from airflow_provider_refdata.services.sources import DEFAULT_TIMEOUT_SECONDS, SourceColumn, SourceRead


class LegacyMySqlHook(MySqlHook):
    """Read reference tables from the legacy MySQL database.

    :param mysql_conn_id: Airflow connection id (type ``refdata_mysql`` or ``mysql``); default
        ``refdata_legacy_mysql``.
    :param connect_timeout: seconds to wait for a connection (default: the connection's extra, else 30).
    :param read_timeout: seconds to wait for each read (default: the connection's extra, else 30).
    :param kwargs: passed to ``MySqlHook`` (e.g. ``schema`` to override the database).
    """

    conn_name_attr = "mysql_conn_id"
    default_conn_name = "refdata_legacy_mysql"
    conn_type = "refdata_mysql"
    hook_name = "Refdata legacy MySQL"

    def __init__(
        self,
        mysql_conn_id: str = default_conn_name,
        *,
        connect_timeout: int | None = None,
        read_timeout: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(mysql_conn_id=mysql_conn_id, **kwargs)
        self.mysql_conn_id = mysql_conn_id
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    @cached_property
    def source(self) -> MySqlSource:
        """The plain-Python reader for this connection (looked up once, on first use)."""
        conn = self.get_connection(self.mysql_conn_id)
        extra = conn.extra_dejson or {}
        return MySqlSource(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 3306),
            user=conn.login or "root",
            password=conn.password or None,
            database=self.schema or conn.schema or None,
            connect_timeout=int(self.connect_timeout or extra.get("connect_timeout") or DEFAULT_TIMEOUT_SECONDS),
            read_timeout=int(self.read_timeout or extra.get("read_timeout") or DEFAULT_TIMEOUT_SECONDS),
            charset=extra.get("charset") or "utf8mb4",
        )

    def describe(self) -> str:
        """``host:port/database`` of the connection (no credentials)."""
        return self.source.describe()

    @contextmanager
    def stream(self, table_config: Any, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Open an unbuffered read of the configured table (see ``MySqlSource.stream``).

        :param table_config: a ``legacy_mysql`` ``SyncTableConfig``.
        :param since: read only rows with ``updated_at >= since``; ``None`` reads all.
        :param batch_size: rows per fetch.
        """
        with self.source.stream(table_config, since, batch_size) as read:
            yield read

    def describe_columns(self, table_config: Any) -> list[SourceColumn]:
        """The configured columns as PostgreSQL columns (``create_table: true``; see ``MySqlSource``).

        :param table_config: a ``legacy_mysql`` ``SyncTableConfig``.
        """
        return self.source.describe_columns(table_config)
