"""The legacy MySQL/MariaDB reader: MySQL renders each row as one PostgreSQL COPY CSV record (no Python rows).

How values arrive (trimming, zero dates, FLOAT, BIT, spatial types, character sets) is described in
:mod:`~airflow_provider_refdata.services.sources` and docs/configuration.md ("MySQL types: what arrives").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airflow_provider_refdata.exceptions import RefdataSourceError
from airflow_provider_refdata.services.sources import (
    DEFAULT_TIMEOUT_SECONDS,
    STRIP_CHARACTERS,
    SourceColumn,
    SourceRead,
    SourceUnavailableError,
)

if TYPE_CHECKING:
    from airflow_provider_refdata.config import SyncTableConfig

logger = logging.getLogger(__name__)


# MySQL/MariaDB error codes another attempt may fix: the connection (refused, lost, server gone or shutting
# down, too many connections, network read/write errors and timeouts), lock waits and deadlocks, a statement
# timeout or interruption.  Every other code — credentials, unknown objects, syntax, and every data or type
# error (1366 incorrect value, 1292 truncated, 4079 illegal data type, 3140 invalid JSON …) — is permanent:
# the table fails at once, never retried.
_TRANSIENT_MYSQL_ERRORS = frozenset(
    {
        1040,  # too many connections
        1041,  # out of memory
        1043,  # bad handshake
        1053,  # server shutdown in progress
        1080,  # forcing close of thread (shutdown)
        1152,  # aborted connection
        1158,  # net read error
        1159,  # net read timeout
        1160,  # net write error
        1161,  # net write timeout
        1184,  # aborted new connection
        1203,  # max_user_connections reached
        1205,  # lock wait timeout
        1213,  # deadlock
        1317,  # query execution interrupted
        1412,  # table definition changed (concurrent DDL)
        1615,  # prepared statement needs re-preparing
        1927,  # MariaDB: connection killed
        1969,  # MariaDB: max_statement_time exceeded
        2001,  # client: cannot create UNIX socket
        2002,  # client: cannot connect through the socket
        2003,  # client: cannot connect to the server
        2004,  # client: cannot create TCP/IP socket
        2005,  # client: unknown server host (DNS)
        2006,  # client: server has gone away
        2011,  # client: TCP/IP connection error
        2012,  # client: error in server handshake
        2013,  # client: lost connection during query
        2027,  # client: malformed packet
        2055,  # client: lost connection (system error)
        3024,  # MySQL: max_execution_time exceeded
        3169,  # MySQL: session killed
    }
)

_CHAR_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"})
_DATE_TYPES = frozenset({"date", "datetime", "timestamp"})
_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
# White space at the edges of a key: exactly what str.strip() removes (STRIP_CHARACTERS, as the hybrid path trims
# fact keys).  The gate reads the UTF-8 bytes that can start (first) or end (last) one of those characters, so
# the regular expression, which strips them, only runs on a key that may need it.
_WS_FIRST_BYTES = ", ".join(str(b) for b in sorted({c.encode()[0] for c in STRIP_CHARACTERS}))
_WS_LAST_BYTES = ", ".join(str(b) for b in sorted({c.encode()[-1] for c in STRIP_CHARACTERS}))
_WS_CLASS = "[" + STRIP_CHARACTERS + "]"
_WS_EDGES_REGEXP = f"^{_WS_CLASS}+|{_WS_CLASS}+$"
# Character sets whose bytes are UTF-8: the gate reads a key column of any other (latin1, gbk, ucs2 …) through
# CONVERT(… USING utf8mb4), so the same key is trimmed the same way whatever its column's character set.
_UTF8_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8"})
# Types rendered with CAST(v AS CHAR): MySQL's own exact text.
_CAST_TYPES = frozenset(
    {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric", "double", "real"}
    | {"year", "time", "uuid", "inet4", "inet6"}
)
# Spatial columns: WKT text (ST_AsText) for a text target or when the target's types are not known, WKB
# (ST_AsBinary, as bytea hex) for a bytea target; any other target type is refused naming the column.
_SPATIAL_TYPES = frozenset(
    {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon"}
    | {"geometrycollection", "geomcollection"}
)
_TEXT_TARGET_PREFIXES = ("text", "character", "varchar", "citext")


def _is_text_target(target_type: str) -> bool:
    """A PostgreSQL text type (``text``, ``character varying(n)``, ``character(n)``, ``citext``; not arrays)."""
    return target_type.startswith(_TEXT_TARGET_PREFIXES) and not target_type.endswith("]")


def _mysql_error_class(exc: Exception, code: int | None) -> type[RefdataSourceError]:
    """:class:`SourceUnavailableError` (retried) for the transient codes, else :class:`RefdataSourceError`.

    An error without a code (the driver's own ``InterfaceError``/``OperationalError`` on a dead connection) is
    transient too; every other coded error is permanent.
    """
    if code in _TRANSIENT_MYSQL_ERRORS:
        return SourceUnavailableError
    if not code and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        return SourceUnavailableError
    return RefdataSourceError


# How MySQL types whose rendering suits only some targets are rendered (warehouse.conversions converts them).
_MYSQL_FORMATS = {"bit": "mysql_bit", "set": "mysql_set"}


def _mysql_ident(name: str) -> str:
    """Backtick-quote a MySQL identifier (doubling embedded backticks); MySQLdb has no identifier quoting."""
    return "`" + name.replace("`", "``") + "`"


@dataclass
class MySqlSource:
    """Reads legacy MySQL tables with mysqlclient's unbuffered cursor, rendered as COPY CSV by MySQL.

    :param host: server host.
    :param port: server port.
    :param user: login.
    :param password: password (only handed to the driver; never part of a message).
    :param database: default database (``source_config.database`` overrides it per table).
    :param connect_timeout: seconds to wait for the connection.
    :param read_timeout: seconds to wait for each network read.
    :param charset: client character set.
    :param fetch_size: rows per ``fetchmany`` (the table's ``batch_size`` is used when larger).
    """

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str | None = None
    database: str | None = None
    connect_timeout: int = DEFAULT_TIMEOUT_SECONDS
    read_timeout: int = DEFAULT_TIMEOUT_SECONDS
    charset: str = "utf8mb4"
    fetch_size: int = 10_000

    def __repr__(self) -> str:  # the dataclass repr would show the password
        return f"MySqlSource({self.describe()!r})"

    @classmethod
    def from_dsn(cls, dsn: str, **kwargs: Any) -> MySqlSource:
        """Build from ``mysql://user:password@host:port/database``.

        :param dsn: the URL; user and password are URL-decoded.
        :param kwargs: further fields (timeouts, charset, fetch_size).
        """
        parts = urlsplit(dsn)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username) if parts.username else "root",
            password=unquote(parts.password) if parts.password else None,
            database=parts.path.lstrip("/") or None,
            **kwargs,
        )

    def describe(self, database: str | None = None) -> str:
        """``host:port/database`` — safe for messages."""
        return f"{self.host}:{self.port}/{database or self.database or ''}"

    def _error(self, exc: Exception, database: str | None, table: str) -> RefdataSourceError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        cause = exc.args[1] if len(exc.args) > 1 else str(exc)
        cause = str(cause)
        if self.password:
            cause = cause.replace(self.password, "***")
        message = f"legacy MySQL {self.describe(database)}, table {table}: {type(exc).__name__} ({code}) {cause}"
        return _mysql_error_class(exc, code)(message, source=self.describe(database), table=table)

    def connect(self, database: str | None = None) -> Any:
        """A new MySQLdb connection (bytes results, UTC session, autocommit off); raises MySQLdb errors."""
        import MySQLdb

        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": int(self.port),
            "user": self.user,
            "connect_timeout": int(self.connect_timeout),
            "read_timeout": int(self.read_timeout),
            "charset": self.charset,
            # Rows arrive as the UTF-8 bytes COPY wants; decoding and re-encoding 1M rows costs ~0.5 s.
            "use_unicode": False,
            "autocommit": False,
        }
        if self.password is not None:
            kwargs["password"] = self.password
        if database or self.database:
            kwargs["database"] = database or self.database
        conn = MySQLdb.connect(**kwargs)
        # TIMESTAMP columns render in UTC, so watermarks mean the same instant whatever the server's zone.
        conn.cursor().execute("SET time_zone = '+00:00'")
        return conn

    def _column_types(self, cur: Any, database: str | None, table: str) -> tuple[dict[str, str], dict[str, str]]:
        """``DATA_TYPE`` (lower case) and ``CHARACTER_SET_NAME`` (string columns only) by column name."""
        if database:
            cur.execute(
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            )
        else:
            cur.execute(
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
        rows = cur.fetchall()
        types = {_text(name): _text(dtype).lower() for name, dtype, _ in rows}
        charsets = {_text(name): _text(charset).lower() for name, _, charset in rows if charset is not None}
        return types, charsets

    @staticmethod
    def _copy_expression(
        column: str,
        data_type: str,
        params: list[Any],
        *,
        key: bool = False,
        charset: str | None = None,
        target_type: str | None = None,
    ) -> str:
        """SQL rendering one column as a COPY CSV field; appends its bound values to ``params``.

        Strings (and WKT) are quoted, their own double quotes doubled; tab, newline, carriage return and
        backslash need nothing in CSV, so one ``REPLACE`` does what took four in COPY's text format (measured:
        the 1M-row read 15 % faster, while PostgreSQL spends ~0.1 s more parsing, in parallel with it).  Other
        values never hold a comma, a quote or a line break and go bare.  NULL is an unquoted empty field,
        ``''`` the quoted ``""``.

        :param column: the MySQL column.
        :param data_type: its ``information_schema`` ``DATA_TYPE`` (lower case).
        :param params: the query's bound values so far (this expression's are appended in text order).
        :param key: a key column: a blank string (after trimming) is rendered as NULL, so the warehouse can
            reject it (the service then fails the table naming it).
        :param charset: the column's ``CHARACTER_SET_NAME`` (string columns; ``None`` = unknown: converted).
        :param target_type: the target column's type when known (spatial columns: ``bytea`` → WKB, else WKT).
        """
        q = _mysql_ident(column)
        if data_type in _CHAR_TYPES:
            # Trim, then quote; every literal is a bound parameter.  Key columns
            # are trimmed of Unicode white space like Python's str.strip() (as the hybrid path trims fact
            # keys, so the same key matches; NBSP, U+3000, tab, newline ...) and a blank key becomes NULL.
            # The regular expression only runs when the first or last byte can start/end white space; it
            # still costs ~0.03 s per column per 1M rows over TRIM, so other columns only lose their edge
            # spaces (TRIM): measured, the full treatment on every string column slowed the 1M-row initial
            # load by 17 %.
            if key:
                # The gate reads UTF-8 bytes: a column in another character set (latin1's NBSP is the single
                # byte 0xA0, gbk's U+3000 is 0xA1A1) is converted first; utf8 columns skip the conversion
                # (it costs ~0.05 s per 1M rows).  The regular expression handles every character set.
                gate = q if charset in _UTF8_CHARSETS else f"CONVERT({q} USING utf8mb4)"
                value = (
                    f"IF(ASCII({gate}) IN ({_WS_FIRST_BYTES}) OR ASCII(RIGHT(CAST({gate} AS BINARY), 1)) IN "
                    f"({_WS_LAST_BYTES}), REGEXP_REPLACE({gate}, %s, %s), {q})"
                )
                value = f"NULLIF({value}, %s)"
                own = [_WS_EDGES_REGEXP, "", ""]
            else:
                value, own = f"TRIM({q})", []
            value = f"CONCAT(%s, REPLACE({value}, %s, %s), %s)"
            params.extend(['"', *own, '"', '""', '"'])
        elif data_type in _DATE_TYPES:
            # Zero dates ('0000-00-00', '2020-00-00') are not dates anywhere else: NULL.
            value = f"IF(YEAR({q}) = 0 OR MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0, NULL, CAST({q} AS CHAR))"
            if data_type == "timestamp":
                # The session renders TIMESTAMP in UTC; say so, so a timestamptz target stores the right instant.
                value = f"CONCAT({value}, %s)"
                params.append("+00")
        elif data_type in _BINARY_TYPES:
            value = f"CONCAT(%s, HEX({q}))"
            params.append("\\x")
        elif data_type == "bit":
            # CAST(bit AS CHAR) would be the raw byte; the number renders as text (BIT(1) → 0/1 → boolean).
            value = f"CAST({q} + 0 AS CHAR)"
        elif data_type == "float":
            # CAST(float AS CHAR) prints 6 significant digits (16777216 → 16777200).  As a DOUBLE (exact: every
            # float32 is a double) MySQL prints the shortest text that reads back as that double, which a
            # real target reads back as the very float32 and a double precision target as its exact value
            # (30.123456 stored as float32 is 30.123455047607422).  "+ 0e0" rather than CAST(… AS DOUBLE),
            # which MySQL only has since 8.0.17.
            value = f"CAST({q} + 0e0 AS CHAR)"
        elif data_type in _SPATIAL_TYPES:
            if target_type == "bytea":
                value = f"CONCAT(%s, HEX(ST_AsBinary({q})))"
                params.append("\\x")
            else:
                value = f"CONCAT(%s, ST_AsText({q}), %s)"  # WKT separates coordinates with commas
                params.extend(('"', '"'))
        else:
            value = f"CAST({q} AS CHAR)"
        params.append("")
        return f"IFNULL({value}, %s)"

    def build_query(
        self,
        table_config: SyncTableConfig,
        types: dict[str, str],
        since: datetime | None,
        *,
        charsets: dict[str, str] | None = None,
        target_types: dict[str, str] | None = None,
    ) -> tuple[str, list[Any], list[str]]:
        """The SELECT, its parameters, and the target columns.

        Its one result column is the row rendered as one COPY CSV record (the watermark comes from
        :meth:`max_query`, in the same snapshot).

        :param charsets: ``CHARACTER_SET_NAME`` by MySQL column (``None``: every string key is converted).
        :param target_types: the target's column types by target column, when known (spatial columns).
        :raises RefdataSourceError: a configured column is missing, or its type cannot be carried (an unknown
            type, or a spatial column whose target is neither text nor ``bytea``), naming the column.
        """
        source = table_config.source_config
        missing = [m.source for m in source.columns if m.source not in types]
        incremental = source.incremental
        if incremental is not None and incremental.updated_at_column not in types:
            missing.append(incremental.updated_at_column)
        if missing:
            raise RefdataSourceError(
                f"legacy MySQL {self.describe(source.database)}: table {source.table} has no column(s) "
                f"{', '.join(missing)}" + ("" if types else " (or the table does not exist)"),
                source=self.describe(source.database),
                table=source.table,
            )
        self._refuse_uncarried(table_config, types, target_types)
        params: list[Any] = [","]
        keys = set(table_config.primary_key)
        charsets = charsets or {}
        target_types = target_types or {}
        parts = [
            self._copy_expression(
                m.source,
                types[m.source],
                params,
                key=m.target in keys,
                charset=charsets.get(m.source),
                target_type=target_types.get(m.target),
            )
            for m in source.columns
        ]
        select = f"CONCAT_WS(%s, {', '.join(parts)})"
        where, where_params = self._since_filter(table_config, since)
        query = f"SELECT {select} FROM {self._table_sql(table_config)}{where}"  # noqa: S608 - quoted, bound
        return query, [*params, *where_params], [m.target for m in source.columns]

    def max_query(
        self, table_config: SyncTableConfig, since: datetime | None, *, skip_zero_dates: bool = False
    ) -> tuple[str, list[Any]]:
        """The largest ``updated_at`` of the rows :meth:`build_query` reads, as ISO text (NULL: no rows).

        ``MAX`` of the bare column is one step down its index, when it has one.  A date with a zero day or
        month sorts among the real ones ('2024-06-00' after '2024-05-31') and can be the largest, though it is
        no instant (nor is '0000-00-00'): ``skip_zero_dates`` then asks again, leaving such dates out.

        :param table_config: an incremental ``legacy_mysql`` table entry.
        :param since: as for :meth:`build_query`.
        :param skip_zero_dates: leave zero dates out (a scan of the rows, not the index).
        """
        q = _mysql_ident(table_config.source_config.incremental.updated_at_column)
        value = f"IF(YEAR({q}) = 0 OR MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0, NULL, {q})" if skip_zero_dates else q
        where, params = self._since_filter(table_config, since)
        return f"SELECT CAST(MAX({value}) AS CHAR) FROM {self._table_sql(table_config)}{where}", params  # noqa: S608

    @staticmethod
    def _table_sql(table_config: SyncTableConfig) -> str:
        source = table_config.source_config
        table_sql = _mysql_ident(source.table)
        return f"{_mysql_ident(source.database)}.{table_sql}" if source.database else table_sql

    @staticmethod
    def _since_filter(table_config: SyncTableConfig, since: datetime | None) -> tuple[str, list[Any]]:
        incremental = table_config.source_config.incremental
        if incremental is None or since is None:
            return "", []
        return f" WHERE {_mysql_ident(incremental.updated_at_column)} >= %s", [since]

    def _max_updated_at_in_snapshot(
        self, conn: Any, table_config: SyncTableConfig, since: datetime | None
    ) -> datetime | None:
        """Start the read's snapshot (``REPEATABLE READ``, whatever the server's default) and read the watermark."""
        conn.commit()
        cur = conn.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        for skip_zero_dates in (False, True):
            cur.execute(*self.max_query(table_config, since, skip_zero_dates=skip_zero_dates))
            (latest,) = cur.fetchone()
            try:
                return None if latest is None else datetime.fromisoformat(_text(latest))
            except ValueError:  # a zero date was the largest value: ask again without them
                continue
        return None

    def _refuse_uncarried(
        self, table_config: SyncTableConfig, types: dict[str, str], target_types: dict[str, str] | None
    ) -> None:
        """Refuse, before anything is read, a configured column whose type the sync cannot carry."""
        source = table_config.source_config
        for m in source.columns:
            data_type = types[m.source]
            target_type = (target_types or {}).get(m.target)
            if data_type in _SPATIAL_TYPES:
                if target_type is None or target_type == "bytea" or _is_text_target(target_type):
                    continue
                why = (
                    f"is MySQL {data_type}, which arrives as WKT text (a text/varchar target) or as WKB "
                    f"(a bytea target), not as {target_type}"
                )
            elif data_type in _CHAR_TYPES | _DATE_TYPES | _BINARY_TYPES | _CAST_TYPES | {"bit", "float"}:
                continue
            else:
                why = f"has MySQL type {data_type!r}, which the sync cannot carry; leave the column out"
            raise RefdataSourceError(
                f"legacy MySQL {self.describe(source.database)}: table {source.table}, column {m.source!r} "
                f"(target {table_config.qualified_table}.{m.target}) {why}; nothing was read",
                source=self.describe(source.database),
                table=source.table,
            )

    @contextmanager
    def _connection(self, database: str | None, table: str) -> Iterator[Any]:
        """A new connection (errors as :class:`RefdataSourceError`), closed quietly when the block ends."""
        import MySQLdb

        try:
            conn = self.connect(database)
        except (MySQLdb.OperationalError, MySQLdb.InterfaceError) as exc:
            raise self._error(exc, database, table) from None
        try:
            yield conn
        finally:
            try:
                conn.close()
            except MySQLdb.Error:
                pass

    def describe_columns(self, table_config: SyncTableConfig) -> list[SourceColumn]:
        """The configured columns as PostgreSQL columns (``create_table: true``), in configuration order.

        Types come from ``information_schema.COLUMNS`` and are mapped by
        :func:`~airflow_provider_refdata.services.type_mapping.mysql_to_postgres`; a MariaDB ``JSON`` column
        (``longtext`` with the ``json_valid`` check MariaDB adds) is described as ``json``.

        :param table_config: a ``legacy_mysql`` table entry.
        :raises RefdataSourceError: a configured column is missing, or its type cannot be mapped (naming the
            source and target column and the type); :class:`SourceUnavailableError` when MySQL cannot be reached.
        """
        import MySQLdb

        from airflow_provider_refdata.services.type_mapping import MySqlType, UnmappableTypeError, mysql_to_postgres

        source = table_config.source_config
        database = source.database
        with self._connection(database, source.table) as conn:
            try:
                cur = conn.cursor()
                cur.execute(
                    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION,"
                    " NUMERIC_SCALE, DATETIME_PRECISION, IS_NULLABLE FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
                    (database, source.table),
                )
                described = {
                    _text(row[0]): (
                        MySqlType(
                            data_type=_text(row[1]).lower(),
                            column_type=_text(row[2]).lower(),
                            character_maximum_length=row[3],
                            numeric_precision=row[4],
                            numeric_scale=row[5],
                            datetime_precision=row[6],
                        ),
                        _text(row[7]).upper() == "YES",
                    )
                    for row in cur.fetchall()
                }
                json_columns: set[str] = set()
                if any(t.data_type == "longtext" for t, _ in described.values()):
                    try:  # MariaDB only (MySQL's CHECK_CONSTRAINTS has no TABLE_NAME; its JSON is its own type)
                        cur.execute(
                            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
                            " WHERE CONSTRAINT_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
                            (database, source.table),
                        )
                        json_columns = {_text(clause) for (clause,) in cur.fetchall()}
                    except MySQLdb.Error:
                        json_columns = set()
                conn.commit()
            except MySQLdb.Error as exc:
                raise self._error(exc, database, source.table) from None
        where = f"legacy MySQL {self.describe(database)}"
        missing = [m.source for m in source.columns if m.source not in described]
        if missing:
            raise RefdataSourceError(
                f"{where}: table {source.table} has no column(s) {', '.join(missing)}"
                + ("" if described else " (or the table does not exist)"),
                source=self.describe(database),
                table=source.table,
            )
        columns: list[SourceColumn] = []
        for mapping in source.columns:
            mysql_type, nullable = described[mapping.source]
            if mysql_type.data_type == "longtext" and f"json_valid({_mysql_ident(mapping.source)})" in json_columns:
                mysql_type = MySqlType(data_type="json", column_type="json")
            try:
                pg_type = mysql_to_postgres(mysql_type)
            except UnmappableTypeError as exc:
                raise RefdataSourceError(
                    f"{where}: table {source.table}, column {mapping.source!r} (target {mapping.target!r}) has type "
                    f"{exc}; create_table cannot create a column for it: create {table_config.qualified_table} "
                    "yourself or leave the column out",
                    source=self.describe(database),
                    table=source.table,
                ) from None
            columns.append(
                SourceColumn(name=mapping.target, pg_type=pg_type, nullable=nullable, source_type=mysql_type.text)
            )
        return columns

    @contextmanager
    def stream(self, table_config: SyncTableConfig, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Open an unbuffered read of the configured table; see the module docstring for the batch format.

        :param table_config: a ``legacy_mysql`` table entry.
        :param since: read only rows with ``updated_at >= since`` (incremental tables); ``None`` = all rows.
        :param batch_size: rows per fetch (at least :attr:`fetch_size`).
        """
        import MySQLdb
        import MySQLdb.cursors

        source = table_config.source_config
        database = source.database
        with self._connection(database, source.table) as conn:
            try:
                if since is not None and source.incremental is not None:
                    _prefer_key_ordered_lookups(conn)
                types, charsets = self._column_types(conn.cursor(), database, source.table)
                query, params, columns = self.build_query(table_config, types, since, charsets=charsets)
                latest = None
                if source.incremental is not None:
                    # The watermark and the rows from one snapshot (InnoDB), so it is exactly the largest
                    # updated_at read; asked first, so that without snapshots (MyISAM) it can only be lower,
                    # which re-reads a few rows next time instead of missing one.  Cheaper than carrying
                    # updated_at on every row (measured: 0.3 s per 1M rows, read and compared in Python).
                    latest = self._max_updated_at_in_snapshot(conn, table_config, since)
                # A spatial column is rendered for its target's type (WKB for bytea, else WKT), which the
                # consumer sets on the read before it iterates: such a read starts with the first batch.
                cur = None
                if not any(types[m.source] in _SPATIAL_TYPES for m in source.columns):
                    cur = conn.cursor(MySQLdb.cursors.SSCursor)
                    cur.execute(query, params)
            except MySQLdb.Error as exc:
                raise self._error(exc, database, source.table) from None
            read = SourceRead(
                columns=columns,
                batches=iter(()),
                description=f"legacy MySQL {self.describe(database)} table {source.table}",
                max_updated_at=latest,
                copy_format="csv",
                formats={
                    m.target: _MYSQL_FORMATS[types[m.source]]
                    for m in source.columns
                    if types[m.source] in _MYSQL_FORMATS
                },
            )

            def start() -> Any:
                query, params, _ = self.build_query(
                    table_config, types, since, charsets=charsets, target_types=read.target_types
                )
                started = conn.cursor(MySQLdb.cursors.SSCursor)
                started.execute(query, params)
                return started

            read.batches = self._batches(
                conn, start if cur is None else cur, max(batch_size, self.fetch_size), database, source.table
            )
            yield read

    def _batches(self, conn: Any, cur: Any, size: int, database: str | None, table: str) -> Iterator[bytes]:
        import MySQLdb

        try:
            if callable(cur):  # a deferred read (see stream)
                cur = cur()
            while True:
                rows = cur.fetchmany(size)
                if not rows:
                    break
                yield b"\n".join([row[0] for row in rows]) + b"\n"
            cur.close()
            # End the read transaction at once: an open unbuffered read holds a metadata lock on the table.
            conn.commit()
        except MySQLdb.Error as exc:
            raise self._error(exc, database, table) from None


# An incremental read walks the updated_at index and looks every row up in the clustered (primary key) index.
# In index order those lookups land on random pages: on a table larger than the buffer pool each changed row
# costs a page read (measured: 5M rows, 625 MB, buffer pool 256 MB, 100K changed rows spread over the table:
# 5.3 s).  Multi-Range Read sorts the looked-up keys first, so pages are read once each and in order (3.1 s;
# its buffer must hold the keys: with MariaDB's 256 KB default it gained nothing).  MySQL sizes that buffer
# with read_rnd_buffer_size, MariaDB with mrr_buffer_size; mrr_sort_keys is MariaDB's.  Session settings of
# the sync's own read connection; one the server does not know is skipped.
_KEY_ORDERED_LOOKUPS = (
    "SET SESSION optimizer_switch = 'mrr=on,mrr_cost_based=off'",
    "SET SESSION optimizer_switch = 'mrr_sort_keys=on'",
    "SET SESSION mrr_buffer_size = 16777216",
    "SET SESSION read_rnd_buffer_size = 16777216",
)


def _prefer_key_ordered_lookups(conn: Any) -> None:
    """Let the incremental range read look rows up in primary-key order (see ``_KEY_ORDERED_LOOKUPS``)."""
    import MySQLdb

    cur = conn.cursor()
    for statement in _KEY_ORDERED_LOOKUPS:
        try:
            cur.execute(statement)
        except (MySQLdb.OperationalError, MySQLdb.ProgrammingError) as exc:
            logger.debug("Legacy MySQL does not take %r: %s", statement, exc)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
