"""SqlSource: a reference table of any DB-API 2 database (SQLite, Oracle, MSSQL, ...), read in constant memory.

The source is given a *connection factory* (``connect()`` returning a new DB-API connection), the driver's
placeholder and an identifier quoting function; it never runs SQL from the configuration.  Per read it

1. probes the table's columns (``SELECT * FROM <table> WHERE 1 = 0``, names from ``cursor.description``),
   so a configured column the table lacks fails the table at once, naming the table and the column(s)
   (SQLite would otherwise read a double-quoted unknown column as a string literal);
2. runs ``SELECT <columns> FROM <schema>.<table> [WHERE <updated_at> >= <placeholder>]`` — every name quoted
   as an identifier, the watermark a bound parameter — on an iterating cursor (a server-side cursor for
   psycopg/psycopg2, ``SSCursor`` for MySQLdb/PyMySQL, the plain cursor elsewhere: SQLite's steps through the
   result), and yields ``fetchmany(batch_size)`` batches as lists of cleaned tuples that COPY's ``write_row``
   encodes: one batch in memory at a time.

Values are cleaned as the other readers do (:func:`~.sources.clean_value`): strings trimmed as ``str.strip``
(all Unicode white space), ``NaN`` → NULL; a key that is blank after trimming becomes NULL, so the service
fails the table naming it and the key column.  An empty non-key string stays ``''``.  For incremental tables
the largest ``updated_at`` read so far is kept in :attr:`~.sources.SourceRead.max_updated_at` (a naive
datetime; zone-aware values are converted to UTC first, as the MySQL reader does; ISO text is parsed).

Errors: a connection error — a DB-API ``OperationalError`` or ``InterfaceError`` (any class of that name
in the exception's MRO, whatever the driver) — raises :class:`~.sources.SourceUnavailableError`, which the
service retries, unless its message shows it cannot be fixed by another attempt (``no such table``, ``no such
column``, ``syntax error``, ``access denied``, ...: SQLite and MySQL report these as ``OperationalError``
too); anything else raises :class:`~airflow_provider_refdata.exceptions.RefdataSourceError`, which fails the
table at once.  Messages name the source and the table (and the column when it is known: unknown columns,
an unreadable ``updated_at``), never a password (``secrets`` are masked).

:meth:`SqlSource.from_sqlite_url` builds one over the standard library's :mod:`sqlite3` (read-only).
:meth:`SqlSource.describe_columns` is best effort: SQLite's ``PRAGMA table_info`` declared types, or the
cursor description elsewhere, mapped by the pure function :func:`sql_type_to_postgres`.  Nothing here imports
Airflow (``airflow_provider_refdata.hooks.connections`` builds one from a ``DbApiHook``).
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from urllib.request import pathname2url

from airflow_provider_refdata.exceptions import RefdataSourceError
from airflow_provider_refdata.services.sources import (
    DEFAULT_TIMEOUT_SECONDS,
    SourceColumn,
    SourceRead,
    SourceUnavailableError,
    clean_value,
)
from airflow_provider_refdata.services.type_mapping import (
    NUMERIC_TYPE_NAMES,
    sql_type_to_postgres,
    type_from_description,
)

if TYPE_CHECKING:
    from airflow_provider_refdata.config import SyncTableConfig

# DB-API exception class names that mean "the connection failed": worth another attempt.
_TRANSIENT_ERROR_NAMES = frozenset({"OperationalError", "InterfaceError"})
# ... unless the message says another attempt cannot help (several drivers raise OperationalError for these).
_PERMANENT_MESSAGES = re.compile(
    r"no such table|no such column|syntax error|unknown column|unknown database|unknown table|does not exist|"
    r"doesn't exist|access denied|permission denied|not authorized|authentication failed|invalid object name|"
    r"invalid identifier|could not decode|not a database|file is encrypted",
    re.IGNORECASE,
)


# ----------------------------------------------------------------------------------------------------------
# identifiers and placeholders
# ----------------------------------------------------------------------------------------------------------


def quote_ansi(name: str) -> str:
    """``"name"`` with embedded double quotes doubled (SQL standard; SQLite, PostgreSQL, Oracle, ...)."""
    return '"' + name.replace('"', '""') + '"'


def identifier_quoter(open_quote: str, close_quote: str | None = None) -> Callable[[str], str]:
    """A quoting function wrapping a name in ``open_quote``/``close_quote``, doubling embedded close quotes.

    :param open_quote: e.g. ``"``, ````` (MySQL) or ``[`` (MSSQL).
    :param close_quote: default: the same as ``open_quote``.
    """
    close = open_quote if close_quote is None else close_quote

    def quote(name: str) -> str:
        return open_quote + name.replace(close, close + close) + close

    return quote


def quoter_from_format(escape_word_format: str | None) -> Callable[[str], str]:
    """A quoting function from a format like Airflow's ``escape_word_format`` (``"{}"``, ```{}```, ``[{}]``).

    Always quotes (unlike ``Dialect.escape_word``, which quotes only reserved or unusual words and does not
    double embedded quote characters).  A format that is not ``<open>{}<close>`` gives ANSI double quotes.

    :param escape_word_format: the format, ``None`` = ANSI.
    """
    if not escape_word_format or escape_word_format.count("{}") != 1:
        return quote_ansi
    open_quote, close_quote = escape_word_format.split("{}")
    if not open_quote or not close_quote:
        return quote_ansi
    return identifier_quoter(open_quote, close_quote)


#: The placeholder of each DB-API ``paramstyle`` (the only parameter bound is the watermark).
PARAMSTYLE_PLACEHOLDERS = {
    "qmark": "?",
    "format": "%s",
    "numeric": ":1",
    "named": ":since",
    "pyformat": "%(since)s",
}


def placeholder_for_paramstyle(paramstyle: str) -> str:
    """The placeholder text for a DB-API ``paramstyle`` (``qmark`` → ``?``, ``format`` → ``%s``, ...).

    :param paramstyle: the driver module's ``paramstyle``.
    """
    try:
        return PARAMSTYLE_PLACEHOLDERS[paramstyle]
    except KeyError:
        raise ValueError(
            f"unknown DB-API paramstyle {paramstyle!r}; one of {', '.join(PARAMSTYLE_PLACEHOLDERS)}"
        ) from None


def _bind(placeholder: str, *values: Any) -> tuple[list[str], Any, bool]:
    """Placeholders and parameters for ``values``, and whether ``%`` in the query text must be doubled.

    :param placeholder: the driver's placeholder (``?``, ``%s``, ``:1``, ``:name``, ``%(name)s``).
    :param values: the values to bind, in query order.
    """
    percent = placeholder.startswith("%")
    named = re.fullmatch(r":([A-Za-z_]\w*)|%\(([A-Za-z_]\w*)\)s", placeholder)
    if named:
        base = named.group(1) or named.group(2)
        names = [base if i == 0 else f"{base}_{i + 1}" for i in range(len(values))]
        texts = [f":{n}" if placeholder.startswith(":") else f"%({n})s" for n in names]
        return texts, dict(zip(names, values, strict=True)), percent
    if re.fullmatch(r"[:$]\d+", placeholder):
        return [f"{placeholder[0]}{i + 1}" for i in range(len(values))], tuple(values), percent
    return [placeholder] * len(values), tuple(values), percent


def _driver_module(conn: Any) -> Any:
    return sys.modules.get(type(conn).__module__.split(".")[0])


def _driver_name(conn: Any) -> str:
    return type(conn).__module__.split(".")[0]


def iterating_cursor(conn: Any) -> Any:
    """A cursor that fetches rows as they are consumed (constant memory) for the drivers that need asking.

    psycopg 3 / psycopg2: a named (server-side) cursor; MySQLdb and PyMySQL: ``SSCursor`` (their default
    cursors load the whole result); any other driver (sqlite3 steps through the result): ``conn.cursor()``.

    :param conn: a DB-API connection.
    """
    driver = _driver_name(conn)
    if driver in ("psycopg", "psycopg2"):
        return conn.cursor(name=f"refdata_sql_{uuid.uuid4().hex[:12]}")
    if driver == "MySQLdb":
        import MySQLdb.cursors

        return conn.cursor(MySQLdb.cursors.SSCursor)
    if driver == "pymysql":
        import pymysql.cursors

        return conn.cursor(pymysql.cursors.SSCursor)
    return conn.cursor()


def _is_zoned(column: Any) -> bool:
    """Whether a ``cursor.description`` entry is a zone-aware timestamp (psycopg's ``type_display``)."""
    display = getattr(column, "type_display", None)
    return isinstance(display, str) and ("with time zone" in display or display.startswith("timestamptz"))


def _as_naive_utc(value: Any) -> datetime | None:
    """An ``updated_at`` value as a naive datetime (UTC for zone-aware values); ``None`` for NULL/blank."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        value = datetime.fromisoformat(text)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise TypeError(f"{type(value).__name__} {value!r} is not a date/time")


# ----------------------------------------------------------------------------------------------------------
# the source
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SqlSource:
    """Reads ``source_type: sql`` tables through a DB-API 2 connection factory.

    :param connect: returns a new DB-API connection (called once per read; the read closes it).
    :param placeholder: the driver's placeholder for the one bound value (the watermark): ``?`` (qmark),
        ``%s`` (format), ``:1`` (numeric), ``:name`` (named) or ``%(name)s`` (pyformat); see
        :func:`placeholder_for_paramstyle`.
    :param quote_identifier: quotes one identifier (default :func:`quote_ansi`: ANSI double quotes, doubled).
    :param name: safe description of the database for messages (no credentials), e.g. ``SQLite /x.db``.
    :param cursor: makes the reading cursor from a connection (default :func:`iterating_cursor`).
    :param bind_datetime: converts the watermark before binding it (default: passed as a ``datetime``);
        SQLite stores date/times as text, so :meth:`from_sqlite_url` binds ISO text.
    :param secrets: strings masked as ``***`` in every message (the connection's password).
    :param sqlite: the database is SQLite (``PRAGMA table_info`` for :meth:`describe_columns`).
    """

    connect: Callable[[], Any]
    placeholder: str = "?"
    quote_identifier: Callable[[str], str] = quote_ansi
    name: str = "SQL database"
    cursor: Callable[[Any], Any] = iterating_cursor
    bind_datetime: Callable[[datetime], Any] | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    sqlite: bool = False

    def __repr__(self) -> str:
        return f"SqlSource({self.name!r})"

    @classmethod
    def from_sqlite_url(cls, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> SqlSource:
        """A source over a SQLite database file, opened read-only with the standard library's ``sqlite3``.

        :param url: ``sqlite:///abs/path.db`` (the path after ``sqlite://``) or SQLAlchemy's ``sqlite:////abs/path.db``;
            the path must be absolute.  Nothing is opened until a read (a missing file then fails the table;
            it is never created).
        :param timeout: seconds to wait for a locked database.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc not in ("", "localhost"):
            raise RefdataSourceError(f"not a SQLite URL (sqlite:///absolute/path.db): scheme {parts.scheme!r}")
        path_text = unquote(parts.path)
        if path_text.startswith("//"):
            path_text = path_text[1:]  # SQLAlchemy's absolute form sqlite:////abs/path
        path = Path(path_text)
        if not path_text or not path.is_absolute() or path_text == "/:memory:":
            raise RefdataSourceError(f"a SQLite URL needs an absolute file path (sqlite:///abs/path.db), got {url!r}")

        def connect() -> Any:
            import sqlite3

            if not path.is_file():
                raise RefdataSourceError(f"SQLite database file not found: {path}", source=str(path))
            return sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True, timeout=timeout)

        return cls(
            connect=connect,
            placeholder="?",
            name=f"SQLite {path}",
            bind_datetime=lambda value: value.isoformat(sep=" "),
            sqlite=True,
        )

    # ------------------------------------------------------------------------------------------------------

    def table_label(self, source_config: Any) -> str:
        """``schema.table`` as configured (for messages, never SQL)."""
        schema = getattr(source_config, "schema_", None)
        return f"{schema}.{source_config.table}" if schema else str(source_config.table)

    def table_sql(self, source_config: Any) -> str:
        """The quoted table reference."""
        schema = getattr(source_config, "schema_", None)
        table = self.quote_identifier(source_config.table)
        return f"{self.quote_identifier(schema)}.{table}" if schema else table

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, exc: BaseException, table: str) -> RefdataSourceError:
        """The provider error for a driver error: SourceUnavailableError when another attempt may help."""
        message = self._mask(str(exc).strip()) or type(exc).__name__
        names = {cls.__name__ for cls in type(exc).__mro__}
        transient = bool(names & _TRANSIENT_ERROR_NAMES) and not _PERMANENT_MESSAGES.search(message)
        error_cls = SourceUnavailableError if transient else RefdataSourceError
        return error_cls(f"{self.name}, table {table}: {type(exc).__name__}: {message}", source=self.name, table=table)

    def _open(self, table: str) -> Any:
        try:
            return self.connect()
        except RefdataSourceError:
            raise
        except Exception as exc:
            raise self._error(exc, table) from None

    def _table_description(self, conn: Any, source_config: Any) -> dict[str, Any]:
        """The table's ``cursor.description`` entries by column name (``SELECT * … WHERE 1 = 0``)."""
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT * FROM {self.table_sql(source_config)} WHERE 1 = 0")  # noqa: S608 - quoted
            described = {str(column[0]): column for column in cur.description or ()}
            cur.fetchall()
            return described
        finally:
            _close_quietly(cur)

    def _table_columns(self, conn: Any, source_config: Any) -> list[str]:
        """The table's column names; driver errors propagate."""
        return list(self._table_description(conn, source_config))

    def check_columns(self, table_config: SyncTableConfig, available: Sequence[str]) -> None:
        """Fail (permanently) naming the table and every configured column it lacks.

        :param table_config: the ``sql`` table entry.
        :param available: the table's column names.
        """
        source = table_config.source_config
        wanted = [m.source for m in source.columns]
        if source.incremental is not None:
            wanted.append(source.incremental.updated_at_column)
        missing = list(dict.fromkeys(c for c in wanted if c not in available))
        if not missing:
            return
        folded = {c.casefold(): c for c in available}
        hints = [f"{c!r} (the table has {folded[c.casefold()]!r})" for c in missing if c.casefold() in folded]
        table = self.table_label(source)
        raise RefdataSourceError(
            f"{self.name}: table {table} has no column(s) {', '.join(missing)}"
            + (f"; names are quoted, so case matters: {', '.join(hints)}" if hints else "")
            + (f" (columns: {', '.join(available)})" if available else ""),
            source=self.name,
            table=table,
        )

    def build_query(self, table_config: SyncTableConfig, since: datetime | None) -> tuple[str, Any]:
        """The SELECT and its parameters (``None`` when nothing is bound).

        The configured source columns come first, in configuration order; incremental tables get the
        ``updated_at`` column last (for the watermark).

        :param table_config: the ``sql`` table entry.
        :param since: the watermark to read from (``updated_at >= since``), or ``None`` for every row.
        """
        source = table_config.source_config
        selected = [self.quote_identifier(m.source) for m in source.columns]
        incremental = source.incremental
        if incremental is not None:
            selected.append(self.quote_identifier(incremental.updated_at_column))
        query = f"SELECT {', '.join(selected)} FROM {self.table_sql(source)}"  # noqa: S608 - identifiers quoted
        if incremental is None or since is None:
            return query, None
        value = self.bind_datetime(since) if self.bind_datetime is not None else since
        (marker,), params, percent = _bind(self.placeholder, value)
        column = self.quote_identifier(incremental.updated_at_column)
        if percent:  # format/pyformat drivers read '%' in the query text as a placeholder
            query, column = query.replace("%", "%%"), column.replace("%", "%%")
        return f"{query} WHERE {column} >= {marker}", params

    @contextmanager
    def stream(self, table_config: SyncTableConfig, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Open an iterating read of the configured table; batches are lists of cleaned row tuples.

        :param table_config: a ``sql`` table entry (``source_config``: ``schema``, ``table``, ``columns``,
            ``incremental``).
        :param since: read only rows with ``updated_at >= since`` (incremental tables); ``None`` = all rows.
        :param batch_size: rows per ``fetchmany`` (and per batch).
        """
        source = table_config.source_config
        table = self.table_label(source)
        conn = self._open(table)
        try:
            try:
                described = self._table_description(conn, source)
                self.check_columns(table_config, list(described))
                if since is not None and source.incremental is not None and since.tzinfo is None:
                    # A zone-aware updated_at (psycopg: timestamptz) is compared as the instant the watermark
                    # means (UTC), whatever the session's time zone.
                    if _is_zoned(described.get(source.incremental.updated_at_column)):
                        since = since.replace(tzinfo=UTC)
                query, params = self.build_query(table_config, since)
                cur = self.cursor(conn)
                if params is None:
                    cur.execute(query)
                else:
                    cur.execute(query, params)
            except RefdataSourceError:
                raise
            except Exception as exc:
                raise self._error(exc, table) from None
            keys = set(table_config.primary_key)
            read = SourceRead(
                columns=[m.target for m in source.columns],
                batches=iter(()),
                description=f"{self.name} table {table}",
            )
            read.batches = self._batches(
                cur,
                read,
                max(int(batch_size), 1),
                key_positions=[i for i, m in enumerate(source.columns) if m.target in keys],
                incremental_column=source.incremental.updated_at_column if source.incremental else None,
                table=table,
            )
            yield read
        finally:
            _close_quietly(conn)

    def _batches(
        self,
        cur: Any,
        read: SourceRead,
        size: int,
        *,
        key_positions: list[int],
        incremental_column: str | None,
        table: str,
    ) -> Iterator[list[tuple]]:
        width = len(read.columns)
        latest: datetime | None = None
        try:
            while True:
                try:
                    rows = cur.fetchmany(size)
                except Exception as exc:
                    raise self._error(exc, table) from None
                if not rows:
                    break
                batch: list[tuple] = []
                for row in rows:
                    values = list(row.values()) if isinstance(row, Mapping) else list(row)
                    cleaned = [clean_value(v) for v in values[:width]]
                    for i in key_positions:
                        if cleaned[i] == "":
                            cleaned[i] = None  # a blank key: the service fails the table naming it
                    if incremental_column is not None:
                        try:
                            changed = _as_naive_utc(values[width])
                        except (TypeError, ValueError) as exc:
                            raise RefdataSourceError(
                                f"{self.name}, table {table}: column {incremental_column} (incremental."
                                f"updated_at_column) holds a value that is not a date/time: {exc}",
                                source=self.name,
                                table=table,
                            ) from None
                        if changed is not None and (latest is None or changed > latest):
                            latest = changed
                            read.max_updated_at = latest
                    batch.append(tuple(cleaned))
                yield batch
        finally:
            _close_quietly(cur)

    # ------------------------------------------------------------------------------------------------------

    def describe_columns(self, table_config: SyncTableConfig) -> list[SourceColumn]:
        """The configured columns as PostgreSQL columns (best effort, see :func:`sql_type_to_postgres`).

        SQLite: the declared types of ``PRAGMA table_info``.  Other databases: the SQL-standard
        ``information_schema.columns`` (PostgreSQL, MySQL/MariaDB, MSSQL, ...: type names, lengths in
        characters, precision, nullability) when it knows the table in exactly one schema, else
        ``cursor.description`` of a ``SELECT … WHERE 1 = 0`` (psycopg's type names, a driver's type name
        text, else the DB-API type objects ``STRING``/``NUMBER``/``DATETIME``/``BINARY`` with the reported
        size — which some drivers give in bytes — and precision).

        :param table_config: the ``sql`` table entry.
        """
        source = table_config.source_config
        table = self.table_label(source)
        conn = self._open(table)
        try:
            try:
                available = self._table_columns(conn, source)
                self.check_columns(table_config, available)
                if self.sqlite or _driver_name(conn) == "sqlite3":
                    described = self._sqlite_types(conn, source)
                else:
                    described = self._description_types(conn, table_config)
                    described.update(self._information_schema_types(conn, source))
            except RefdataSourceError:
                raise
            except Exception as exc:
                raise self._error(exc, table) from None
        finally:
            _close_quietly(conn)
        columns = []
        for mapping in source.columns:
            pg_type, nullable, source_type = described.get(mapping.source, ("text", True, ""))
            columns.append(
                SourceColumn(name=mapping.target, pg_type=pg_type, nullable=nullable, source_type=source_type)
            )
        return columns

    def _sqlite_types(self, conn: Any, source_config: Any) -> dict[str, tuple[str, bool, str]]:
        schema = getattr(source_config, "schema_", None)
        pragma = f"PRAGMA {self.quote_identifier(schema)}.table_info" if schema else "PRAGMA table_info"
        cur = conn.cursor()
        try:
            cur.execute(f"{pragma}({self.quote_identifier(source_config.table)})")
            rows = cur.fetchall()
        finally:
            _close_quietly(cur)
        # cid, name, type, notnull, dflt_value, pk
        return {
            str(name): (sql_type_to_postgres(declared, sqlite=True), not notnull and not pk, str(declared or ""))
            for _, name, declared, notnull, _default, pk in rows
        }

    def _information_schema_types(self, conn: Any, source_config: Any) -> dict[str, tuple[str, bool, str]]:
        """Types from ``information_schema.columns``; ``{}`` when the view is missing or the table ambiguous."""
        schema = getattr(source_config, "schema_", None)
        values = [source_config.table] + ([schema] if schema else [])
        markers, params, _ = _bind(self.placeholder, *values)  # no '%' in this query text
        where = f"table_name = {markers[0]}" + (f" AND table_schema = {markers[1]}" if schema else "")
        columns = "table_schema, column_name, data_type, character_maximum_length, numeric_precision, numeric_scale"
        query = f"SELECT {columns}, is_nullable FROM information_schema.columns WHERE {where}"  # noqa: S608
        cur = conn.cursor()
        try:
            cur.execute(query, params)
            rows = cur.fetchall()
        except Exception:  # no such view (Oracle, ...): the description's types stand
            _rollback_quietly(conn)
            return {}
        finally:
            _close_quietly(cur)
        if len({_text(row[0]) for row in rows}) != 1:
            return {}  # unknown here, or a table of that name in several schemas: do not guess
        described: dict[str, tuple[str, bool, str]] = {}
        for _schema, name, data_type, length, precision, scale, nullable in rows:
            data_type = _text(data_type).lower()
            if length is not None and int(length) > 0:
                declared = f"{data_type}({int(length)})"
            elif data_type in NUMERIC_TYPE_NAMES and precision is not None:
                declared = f"{data_type}({int(precision)},{int(scale or 0)})"
            else:
                declared = data_type
            described[_text(name)] = (sql_type_to_postgres(declared), _text(nullable).upper() != "NO", declared)
        return described

    def _description_types(self, conn: Any, table_config: SyncTableConfig) -> dict[str, tuple[str, bool, str]]:
        source = table_config.source_config
        columns = [m.source for m in source.columns]
        cur = conn.cursor()
        try:
            selected = ", ".join(self.quote_identifier(c) for c in columns)
            cur.execute(f"SELECT {selected} FROM {self.table_sql(source)} WHERE 1 = 0")  # noqa: S608 - quoted
            description = list(cur.description or ())
            cur.fetchall()
        finally:
            _close_quietly(cur)
        module = _driver_module(conn)
        described: dict[str, tuple[str, bool, str]] = {}
        for name, column in zip(columns, description, strict=False):
            pg_type, source_type = type_from_description(column, module)
            null_ok = column[6] if len(column) > 6 else None
            described[name] = (pg_type, True if null_ok is None else bool(null_ok), source_type)
        return described


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def _rollback_quietly(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # nothing to roll back, or the driver has no transactions
        pass


def _close_quietly(resource: Any) -> None:
    try:
        resource.close()
    except Exception:  # closing after an error: the first error is the one to report
        pass
