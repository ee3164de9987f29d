"""Reference sources for the sync: the protocol the service reads through, and its two plain-Python readers.

A *source* turns one ``SyncTableConfig`` into a :class:`SourceRead`: the staging columns (target names, in
order) and an iterator of batches.  A batch is either

* ``bytes`` — lines already in PostgreSQL ``COPY`` text format (tab separated, ``\\N`` for NULL, one row per
  ``\\n``), passed through to COPY untouched; :class:`MySqlSource` asks MySQL to render them, so one million
  rows never become Python objects; or
* ``list[tuple]`` — rows of Python values (``None`` is NULL) that COPY's ``write_row`` encodes
  (:class:`YamlFileSource`, small files).

Both readers clean values alike: strings are trimmed (keys of both and YAML values of leading/trailing
Unicode white space, as ``str.strip``: also tab, newline, NBSP and the ideographic space U+3000; non-key MySQL
string columns of leading/trailing spaces, MySQL ``TRIM``, for speed), ``NaN`` and MySQL zero dates
(``0000-00-00``, ``2020-00-15``, ``0000-00-00 00:00:00``) become NULL.  An empty string (also one that was only
whitespace) stays ``''`` in a non-key column: it is a value, distinct from NULL.  A blank key never is: the
MySQL reader renders it as NULL, which the service reports as a table failure naming the table and the key
column; the YAML reader skips the table naming the row.

MySQL values arrive exactly: numbers as MySQL's own text (DECIMAL and BIGINT never pass through a float;
``BIT`` as its number, so ``BIT(1)``/``TINYINT(1)`` fill ``boolean`` columns), ``DATETIME``/``DATE`` as their
naive text with fractional seconds, ``TIMESTAMP`` as UTC text with ``+00`` (the session time zone is
``+00:00`` whatever the server's global ``time_zone``, so a ``timestamptz`` target stores the right instant and
a naive ``timestamp`` target the UTC wall time), binary types as ``bytea`` hex input (``\\x…`` in COPY text,
byte-exact in a ``bytea`` target).  A source that cannot be used *as configured* (missing file, bad YAML, wrong
``schema_version``) raises :class:`SourceSkipped`: the table is skipped and nothing changes.  A transient
failure (connection refused, lost connection, timeout) raises :class:`SourceUnavailableError`, which the
service retries; anything else fails the table at once.

The Airflow hooks (``airflow_provider_refdata.hooks``) implement the same protocol by building these readers
from an Airflow connection.  Nothing here imports Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from airflow_provider_refdata.exceptions import RefdataSourceError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from airflow_provider_refdata.config import SyncTableConfig

DEFAULT_TIMEOUT_SECONDS = 30

Batch = bytes | list[tuple]


class SourceSkipped(RefdataSourceError):  # a skip is an outcome, not an error
    """The source cannot be used as configured; the table is skipped (``SyncResult.skipped_reason``)."""


class SourceUnavailableError(RefdataSourceError):
    """A transient failure reaching the source (connection or query error): worth another attempt."""


@dataclass
class SourceRead:
    """One open read of a source table.

    :param columns: target column names, in the order of the values in each batch.
    :param batches: iterator of COPY-text ``bytes`` or lists of row tuples, in ``columns`` order.
    :param description: safe description of where the rows come from (no credentials).
    :param max_updated_at: for incremental tables, the largest ``updated_at`` among the rows yielded so far
        (complete once ``batches`` is exhausted); ``None`` when unknown or no rows.
    """

    columns: list[str]
    batches: Iterator[Batch]
    description: str
    max_updated_at: datetime | None = None


@runtime_checkable
class ReferenceSource(Protocol):
    """What the sync service reads through (implemented by the readers below and by the Airflow hooks)."""

    def stream(
        self, table_config: SyncTableConfig, since: datetime | None, batch_size: int
    ) -> AbstractContextManager[SourceRead]:
        """Open a read of the table's source rows; ``since`` filters ``updated_at >= since`` when given."""
        ...


@dataclass(frozen=True)
class SourceColumn:
    """One source column as the PostgreSQL column that would hold it (``create_table: true``).

    :param name: the *target* column name (after the configured mapping).
    :param pg_type: PostgreSQL type text (``varchar(16)``, ``numeric(18,2)``, ``timestamptz``, ``text[]``).
    :param nullable: whether the source column admits NULL.
    :param source_type: the source's own type text (for messages and the plan).
    """

    name: str
    pg_type: str
    nullable: bool = True
    source_type: str = ""


@runtime_checkable
class DescribableSource(Protocol):
    """A source that can tell the columns of a table, so a missing target table can be created."""

    def describe_columns(self, table_config: SyncTableConfig) -> list[SourceColumn]:
        """The configured columns of the table's source, in configuration order."""
        ...


def clean_value(value: Any) -> Any:
    """Trim strings (``str.strip``; blank → NULL is *not* done: an empty string is a value) and turn NaN into NULL.

    :param value: one value read from a source.
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ----------------------------------------------------------------------------------------------------------
# MySQL
# ----------------------------------------------------------------------------------------------------------

# MySQL error codes that another attempt will not fix (bad credentials, unknown database/table/column, syntax).
_PERMANENT_MYSQL_ERRORS = frozenset({1044, 1045, 1046, 1049, 1054, 1064, 1142, 1143, 1146, 1227})

_CHAR_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"})
_DATE_TYPES = frozenset({"date", "datetime", "timestamp"})
_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
# Whitespace at the edges of a string value: UTF-8 bytes that can start (first) or end (last) a whitespace
# character (ASCII whitespace; 0xC2/0xA0 for NBSP U+00A0; 0xE3/0x80 for the ideographic space U+3000), and
# the expression that strips it (PCRE in Unicode mode: \s matches Unicode white space, as str.strip does).
_WS_FIRST_BYTES = "9, 10, 11, 12, 13, 32, 194, 227"
_WS_LAST_BYTES = "9, 10, 11, 12, 13, 32, 128, 160"
_WS_EDGES_REGEXP = r"^\s+|\s+$"


def _mysql_ident(name: str) -> str:
    """Backtick-quote a MySQL identifier (doubling embedded backticks); MySQLdb has no identifier quoting."""
    return "`" + name.replace("`", "``") + "`"


@dataclass
class MySqlSource:
    """Reads legacy MySQL tables with mysqlclient's unbuffered cursor, rendered as COPY text by MySQL.

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
        error_cls = SourceUnavailableError if code not in _PERMANENT_MYSQL_ERRORS else RefdataSourceError
        return error_cls(message, source=self.describe(database), table=table)

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

    def _column_types(self, cur: Any, database: str | None, table: str) -> dict[str, str]:
        if database:
            cur.execute(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            )
        else:
            cur.execute(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
        return {_text(name): _text(dtype).lower() for name, dtype in cur.fetchall()}

    @staticmethod
    def _copy_expression(column: str, data_type: str, params: list[Any], *, key: bool = False) -> str:
        """SQL rendering one column as COPY text (NULL → ``\\N``); appends its bound values to ``params``.

        :param column: the MySQL column.
        :param data_type: its ``information_schema`` ``DATA_TYPE`` (lower case).
        :param params: the query's bound values so far (this expression's are appended in text order).
        :param key: a key column: a blank string (after trimming) is rendered as NULL, so the warehouse can
            reject it (the service then fails the table naming it).
        """
        q = _mysql_ident(column)
        if data_type in _CHAR_TYPES:
            # Trim, then escape COPY's special characters; every literal is a bound parameter.  Key columns
            # are trimmed of Unicode white space like Python's str.strip() (as the hybrid path trims fact
            # keys, so the same key matches; NBSP, U+3000, tab, newline ...) and a blank key becomes NULL.
            # The regular expression only runs when the first or last byte can start/end white space; it
            # still costs ~0.03 s per column per 1M rows over TRIM, so other columns only lose their edge
            # spaces (TRIM): measured, the full treatment on every string column slowed the 1M-row initial
            # load by 17 %.
            if key:
                value = (
                    f"IF(ASCII({q}) IN ({_WS_FIRST_BYTES}) OR ASCII(RIGHT(CAST({q} AS BINARY), 1)) IN "
                    f"({_WS_LAST_BYTES}), REGEXP_REPLACE({q}, %s, %s), {q})"
                )
                value = f"NULLIF({value}, %s)"
                params.extend((_WS_EDGES_REGEXP, "", ""))
            else:
                value = f"TRIM({q})"
            for special, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
                value = f"REPLACE({value}, %s, %s)"
                params.extend((special, escaped))
        elif data_type in _DATE_TYPES:
            # Zero dates ('0000-00-00', '2020-00-00') are not dates anywhere else: NULL.
            value = f"IF(YEAR({q}) = 0 OR MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0, NULL, CAST({q} AS CHAR))"
            if data_type == "timestamp":
                # The session renders TIMESTAMP in UTC; say so, so a timestamptz target stores the right instant.
                value = f"CONCAT({value}, %s)"
                params.append("+00")
        elif data_type in _BINARY_TYPES:
            value = f"CONCAT(%s, HEX({q}))"
            params.append("\\\\x")
        elif data_type == "bit":
            # CAST(bit AS CHAR) would be the raw byte; the number renders as text (BIT(1) → 0/1 → boolean).
            value = f"CAST({q} + 0 AS CHAR)"
        else:
            value = f"CAST({q} AS CHAR)"
        params.append("\\N")
        return f"IFNULL({value}, %s)"

    def build_query(
        self, table_config: SyncTableConfig, types: dict[str, str], since: datetime | None
    ) -> tuple[str, list[Any], list[str]]:
        """The SELECT, its parameters, and the target columns.

        The first result column is the row rendered as one COPY line; incremental tables get a second one,
        ``updated_at`` as ISO text (zero dates NULL), from which the stream keeps the maximum.
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
        params: list[Any] = ["\t"]
        keys = set(table_config.primary_key)
        parts = [self._copy_expression(m.source, types[m.source], params, key=m.target in keys) for m in source.columns]
        select = f"CONCAT_WS(%s, {', '.join(parts)})"
        if incremental is not None:
            q = _mysql_ident(incremental.updated_at_column)
            select += f", IF(YEAR({q}) = 0 OR MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0, NULL, CAST({q} AS CHAR))"
        table_sql = _mysql_ident(source.table)
        if source.database:
            table_sql = f"{_mysql_ident(source.database)}.{table_sql}"
        query = f"SELECT {select} FROM {table_sql}"  # noqa: S608 - identifiers quoted, values bound
        if incremental is not None and since is not None:
            query += f" WHERE {_mysql_ident(incremental.updated_at_column)} >= %s"
            params.append(since)
        return query, params, [m.target for m in source.columns]

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
        try:
            conn = self.connect(database)
        except (MySQLdb.OperationalError, MySQLdb.InterfaceError) as exc:
            raise self._error(exc, database, source.table) from None
        try:
            try:
                types = self._column_types(conn.cursor(), database, source.table)
                query, params, columns = self.build_query(table_config, types, since)
                cur = conn.cursor(MySQLdb.cursors.SSCursor)
                cur.execute(query, params)
            except MySQLdb.Error as exc:
                raise self._error(exc, database, source.table) from None
            read = SourceRead(
                columns=columns,
                batches=iter(()),
                description=f"legacy MySQL {self.describe(database)} table {source.table}",
            )
            read.batches = self._batches(conn, cur, read, max(batch_size, self.fetch_size), database, source.table)
            yield read
        finally:
            try:
                conn.close()
            except MySQLdb.Error:
                pass

    def _batches(
        self, conn: Any, cur: Any, read: SourceRead, size: int, database: str | None, table: str
    ) -> Iterator[bytes]:
        import MySQLdb

        latest: bytes | None = None
        try:
            while True:
                rows = cur.fetchmany(size)
                if not rows:
                    break
                if len(rows[0]) > 1:
                    # ISO text of one column type compares like the timestamps it spells.
                    batch_max = max((row[1] for row in rows if row[1] is not None), default=None)
                    if batch_max is not None and (latest is None or batch_max > latest):
                        latest = batch_max
                        read.max_updated_at = datetime.fromisoformat(_text(latest))
                yield b"\n".join([row[0] for row in rows]) + b"\n"
            cur.close()
            # End the read transaction at once: an open unbuffered read holds a metadata lock on the table.
            conn.commit()
        except MySQLdb.Error as exc:
            raise self._error(exc, database, table) from None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


# ----------------------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------------------


@dataclass
class YamlFileSource:
    """Reads versioned reference YAML files (``schema_version``, ``description``, ``data: [ {...}, ... ]``).

    :param base_path: folder that relative ``file_path`` values resolve against (the configuration loader
        already makes them absolute; this matters for hand-built configurations).
    """

    base_path: Path | str | None = None

    def resolve(self, file_path: Path | str) -> Path:
        path = Path(file_path)
        if not path.is_absolute() and self.base_path is not None:
            path = Path(self.base_path) / path
        return path

    def load(self, table_config: SyncTableConfig) -> tuple[list[str], list[tuple]]:
        """Read and check the file; ``(columns, rows)`` or :class:`SourceSkipped` with the reason."""
        import yaml

        source = table_config.source_config
        path = self.resolve(source.file_path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SourceSkipped(f"reference file not found: {path}", source=str(path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceSkipped(f"reference file {path} cannot be read: {exc}", source=str(path)) from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SourceSkipped(f"reference file {path} is not valid YAML: {exc}", source=str(path)) from None
        if not isinstance(document, dict):
            raise SourceSkipped(f"reference file {path}: the top level must be a mapping", source=str(path))
        version = document.get("schema_version")
        if str(version) != str(source.schema_version) or version is None:
            raise SourceSkipped(
                f"reference file {path} declares schema_version {version!r}, the configuration expects "
                f"{source.schema_version!r}",
                source=str(path),
            )
        data = document.get("data")
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise SourceSkipped(f"reference file {path}: 'data' must be a list of mappings", source=str(path))
        known = list(source.columns) if source.columns is not None else None
        columns: list[str] = list(known) if known is not None else []
        for i, row in enumerate(data):
            for key in table_config.primary_key:
                if clean_value(row.get(key)) in (None, ""):
                    raise SourceSkipped(
                        f"reference file {path}: data[{i}] has no value for primary key column {key!r}",
                        source=str(path),
                    )
            for key in row:
                if known is not None and key not in known:
                    raise SourceSkipped(
                        f"reference file {path}: data[{i}] has unknown column {key!r} (known: {', '.join(known)})",
                        source=str(path),
                    )
                if key not in columns:
                    columns.append(str(key))
        rows = [tuple(clean_value(row.get(c)) for c in columns) for row in data]
        return columns, rows

    @contextmanager
    def stream(self, table_config: SyncTableConfig, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Read the whole file (always a full read; ``since`` is ignored) in ``batch_size`` row batches.

        :param table_config: a ``config_file`` table entry.
        :param since: ignored (files carry no change times).
        :param batch_size: rows per batch.
        """
        columns, rows = self.load(table_config)
        path = self.resolve(table_config.source_config.file_path)
        yield SourceRead(columns=columns, batches=_chunks(rows, batch_size), description=f"reference file {path}")


def _chunks(rows: Sequence[tuple], size: int) -> Iterator[list[tuple]]:
    for start in range(0, len(rows), max(size, 1)):
        yield list(rows[start : start + size])
