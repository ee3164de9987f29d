"""Turn whatever the caller calls "the warehouse" into a psycopg 3 connection.

Accepted: a ``psycopg.Connection``, an Airflow ``PostgresHook`` (anything with ``get_conn()`` returning a
psycopg connection), a SQLAlchemy ``Connection`` or ``Engine`` on the psycopg dialect, or a DSN string.
Connections we open ourselves are closed again; connections the caller hands in are left open.

:func:`warehouse_connector` opens *further* connections to the same warehouse, for work that runs on several
connections at once (the sync's ``concurrency``) or that needs a fresh connection after the old one broke.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg

from airflow_provider_refdata.exceptions import RefdataError

WarehouseLike = Any  # psycopg.Connection | PostgresHook | sqlalchemy Connection/Engine | str


def _from_sqlalchemy_connection(sa_conn: Any) -> psycopg.Connection | None:
    dbapi = getattr(sa_conn.connection, "driver_connection", None)
    return dbapi if isinstance(dbapi, psycopg.Connection) else None


@contextmanager
def warehouse_connection(conn: WarehouseLike) -> Iterator[psycopg.Connection]:
    """Yield a psycopg 3 connection for ``conn``; close it afterwards only if it was opened here.

    :param conn: the warehouse, in any of the forms listed in the module docstring.
    """
    if isinstance(conn, psycopg.Connection):
        yield conn
        return
    if isinstance(conn, str):
        with psycopg.connect(conn) as owned:
            yield owned
        return
    # SQLAlchemy Connection: borrow its DBAPI connection, the caller owns it.
    if hasattr(conn, "connection") and hasattr(conn, "engine") and not hasattr(conn, "connect"):
        borrowed = _from_sqlalchemy_connection(conn)
        if borrowed is None:
            raise RefdataError("the SQLAlchemy connection must use the psycopg 3 driver (postgresql+psycopg://)")
        yield borrowed
        return
    # SQLAlchemy Engine: check a connection out of its pool for the duration.
    if hasattr(conn, "raw_connection") and hasattr(conn, "dialect"):
        raw = conn.raw_connection()
        try:
            driver = getattr(raw, "driver_connection", None)
            if not isinstance(driver, psycopg.Connection):
                raise RefdataError("the SQLAlchemy engine must use the psycopg 3 driver (postgresql+psycopg://)")
            yield driver
        finally:
            raw.close()
        return
    # Airflow PostgresHook (or any DbApiHook-like object handing out psycopg connections).
    if hasattr(conn, "get_conn"):
        owned = conn.get_conn()
        if not isinstance(owned, psycopg.Connection):
            owned.close()
            raise RefdataError(
                "the hook returned a non-psycopg-3 connection; install SQLAlchemy 2 so PostgresHook uses psycopg 3"
            )
        try:
            yield owned
        finally:
            owned.close()
        return
    raise RefdataError(f"unsupported warehouse connection object: {type(conn).__name__}")


def warehouse_connector(conn: WarehouseLike) -> Callable[[], AbstractContextManager[psycopg.Connection]]:
    """A factory of *new* connections to the warehouse ``conn`` names, each closed when its block ends.

    A DSN, hook or engine opens a new connection each time; for a connection handed in (psycopg or
    SQLAlchemy) a new one is opened with its connection parameters (password included, never logged).

    :param conn: the warehouse, in any of the forms listed in the module docstring.
    """
    if (
        isinstance(conn, str)
        or hasattr(conn, "get_conn")
        or (hasattr(conn, "raw_connection") and hasattr(conn, "dialect"))
    ):
        return lambda: warehouse_connection(conn)
    if hasattr(conn, "connection") and hasattr(conn, "engine") and not hasattr(conn, "connect"):
        return warehouse_connector(conn.engine)
    if isinstance(conn, psycopg.Connection):
        params = {**conn.info.get_parameters(), "port": conn.info.port}
        if conn.info.password:
            params["password"] = conn.info.password

        @contextmanager
        def reconnect() -> Iterator[psycopg.Connection]:
            with psycopg.connect(**params) as owned:
                yield owned

        return reconnect
    raise RefdataError(f"unsupported warehouse connection object: {type(conn).__name__}")
