"""PostgresSource: a table of a legacy PostgreSQL database as a reference source (``source_type: postgres``).

The legacy server renders every row itself: one ``COPY (SELECT …) TO STDOUT`` whose text-format bytes pass
through Python untouched (joined into chunks of about :attr:`PostgresSource.chunk_bytes`) into the
warehouse's ``COPY … FROM STDIN``.  No row ever becomes a Python object, and COPY does the escaping (tab,
newline, backslash, ``\\N`` for NULL) on both sides, so text arrives byte-exact.

Cleaning, done in the SELECT, as the MySQL reader does it (``sources.MySqlSource``):

* key string columns are trimmed of every character for which ``str.isspace()`` is true (``btrim`` with
  that set as a bound parameter: tab, newline, NBSP, U+3000 …, like ``str.strip()`` and the hybrid path's
  fact keys), and a blank key becomes NULL, which the sync service reports as a table failure naming the
  table and key column;
* other string columns (``text``, ``varchar``, ``char``, domains over them, ``citext`` …) lose their
  leading/trailing spaces (``btrim``); an empty string stays ``''``, NULL stays NULL (each trim only runs
  when a cheap test of the value's edges says it may change something);
* ``NaN`` in ``numeric``, ``real`` and ``double precision`` columns (and domains over them) becomes NULL.

Everything else is PostgreSQL's own output text, made exact by the read's settings: ``DateStyle ISO``,
``TimeZone UTC`` (``timestamptz`` as ``…+00``, the right instant in any target), ``IntervalStyle
postgres``, ``bytea_output hex``, ``extra_float_digits 3`` (floats round-trip), ``client_encoding UTF8``
(whatever the legacy database's encoding).  numeric, arrays, jsonb, bytea, dates and booleans therefore
arrive exactly as stored.

The read is one ``REPEATABLE READ READ ONLY`` transaction: the catalog lookup, ``max(updated_at)`` (the
exact incremental watermark) and the COPY see the same snapshot, so the watermark is the largest
``updated_at`` among exactly the rows copied.  Incremental tables read ``updated_at >= since``; the
watermark is returned as naive UTC (like the MySQL reader's), which is what ``refdata.sync_state`` stores.

Errors: connection failures and lost connections (refused, timeout, server shutting down or restarting,
too many connections, a connection closed mid-read, serialization failures) raise
:class:`~.sources.SourceUnavailableError`, which the service retries; a table or column that does not
exist, a failed authentication, an unknown database or role, a syntax or permission error raise
:class:`~airflow_provider_refdata.exceptions.RefdataSourceError` at once.  Messages name
``host:port/database`` and the table, never the password.  Identifiers are quoted with
``psycopg.sql.Identifier``; every value (the ``since`` watermark, the white-space set, ``'NaN'``) is a
bound parameter (psycopg merges the parameters of a COPY client-side, with proper literal quoting).

Nothing here imports Airflow: :class:`~airflow_provider_refdata.hooks.LegacyPostgresHook` builds this
reader from an Airflow connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql

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


# Session settings that make the output text exact and independent of the legacy server's configuration
# (set for the read's transaction only, with set_config(…, true)).
SESSION_SETTINGS: tuple[tuple[str, str], ...] = (
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "3"),
)

_NAN_TYPE_OIDS = frozenset({700, 701, 1700})  # real, double precision, numeric
_WATERMARK_TYPE_OIDS = frozenset({1082, 1114, 1184})  # date, timestamp, timestamptz
_READABLE_RELKINDS = ("r", "v", "m", "p", "f")  # table, view, materialized view, partitioned, foreign

# SQLSTATE classes/codes that another attempt may fix: connection exceptions, insufficient resources,
# operator intervention (shutdown, crash, cannot connect now, statement timeout / cancel), transaction
# rollbacks (serialization failure, deadlock), lock not available, system (I/O) errors.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40", "58")
_TRANSIENT_SQLSTATES = frozenset({"55P03"})
_PERMANENT_SQLSTATES = frozenset({"57P04"})  # database dropped

# A connection attempt that the server *refused* carries no SQLSTATE in libpq.  These phrases mean it is about
# the credentials, the database or the role, which another attempt will not change; any other failure to
# connect (refused, timeout, unknown host, "starting up", "shutting down", "too many clients") is transient.
_PERMANENT_CONNECT_MESSAGES = re.compile(
    r"authentication failed|password|does not exist|pg_hba\.conf|not permitted to log in|permission denied"
    r"|invalid connection option|invalid \w+ value|certificate|does not support SSL|SSL is not enabled",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PgColumn:
    """One column of the legacy table as the catalog describes it.

    :param name: column name.
    :param declared: ``format_type`` of the declared type (for messages and ``SourceColumn.source_type``).
    :param not_null: ``attnotnull``.
    :param base_oid: OID of the type after resolving domains (``numeric`` for a domain over ``numeric``).
    :param base_type: ``format_type`` of that type with its modifier (``character varying(16)``).
    :param category: ``typcategory`` (``S`` string, ``N`` numeric, ``A`` array …; a domain has its base's).
    :param builtin: the base type (an array's element type) lives in ``pg_catalog``, so it exists in any
        warehouse; enums, composites and extension types do not.
    """

    name: str
    declared: str
    not_null: bool
    base_oid: int
    base_type: str
    category: str
    builtin: bool

    @property
    def is_string(self) -> bool:
        return self.category == "S"

    @property
    def can_be_nan(self) -> bool:
        return self.base_oid in _NAN_TYPE_OIDS

    @property
    def warehouse_type(self) -> str:
        """The type a created target column gets: the base type, or ``text`` for a type only the legacy
        database has (its values arrive as their text)."""
        if self.builtin:
            return self.base_type
        return "text[]" if self.category == "A" else "text"


_COLUMNS_SQL = """
SELECT c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atttypid, a.atttypmod,
       t.typtype
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE n.nspname = %s AND c.relname = %s AND c.relkind = ANY(%s)
 ORDER BY a.attnum
"""

# Resolve types through (possibly nested) domains: the innermost base type and the modifier in force.
_BASE_TYPES_SQL = """
WITH RECURSIVE chain(start, start_mod, oid, typmod, depth) AS (
    SELECT x.oid, x.typmod, x.oid, x.typmod, 0 FROM unnest(%s::oid[], %s::int[]) AS x(oid, typmod)
  UNION ALL
    SELECT ch.start, ch.start_mod, t.typbasetype, CASE WHEN ch.typmod = -1 THEN t.typtypmod ELSE ch.typmod END,
           ch.depth + 1
      FROM chain ch JOIN pg_catalog.pg_type t ON t.oid = ch.oid
     WHERE t.typtype = 'd' AND ch.depth < 32
)
SELECT ch.start, ch.start_mod, ch.oid, format_type(ch.oid, ch.typmod), b.typcategory,
       COALESCE(e.typnamespace, b.typnamespace) = 'pg_catalog'::regnamespace
          AND COALESCE(e.typtype, b.typtype) IN ('b', 'r', 'm')
  FROM chain ch
  JOIN pg_catalog.pg_type b ON b.oid = ch.oid
  LEFT JOIN pg_catalog.pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
 WHERE b.typtype <> 'd'
"""


@dataclass
class PostgresSource:
    """Reads legacy PostgreSQL tables with ``COPY (SELECT …) TO STDOUT`` (see the module docstring).

    :param host: server host (or a Unix-socket folder).
    :param port: server port.
    :param user: login.
    :param password: password (only handed to libpq; never part of a message or the repr).
    :param database: database name.
    :param connect_timeout: seconds to wait for the connection.
    :param statement_timeout: seconds the legacy server may spend on one statement (the COPY of a big
        table included); ``None`` = the server's setting.
    :param chunk_bytes: the COPY text is handed on in chunks of about this many bytes (or ``batch_size``
        rows, whichever comes first).
    :param conninfo: further libpq connection parameters (``sslmode``, ``sslrootcert``, ``options`` …).
    :param application_name: shown in the legacy server's ``pg_stat_activity``.
    """

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    database: str | None = None
    connect_timeout: int = DEFAULT_TIMEOUT_SECONDS
    statement_timeout: int | None = None
    chunk_bytes: int = 1 << 20
    conninfo: dict[str, str] = field(default_factory=dict)
    application_name: str = "airflow-provider-refdata"

    def __repr__(self) -> str:  # the dataclass repr would show the password
        return f"PostgresSource({self.describe()!r})"

    @classmethod
    def from_dsn(cls, dsn: str, **kwargs: Any) -> PostgresSource:
        """Build from ``postgresql://user:password@host:port/database?sslmode=…``.

        :param dsn: the URL (``postgres://`` and ``postgresql+driver://`` too); user and password are
            URL-decoded; query parameters become libpq parameters (``connect_timeout`` and
            ``statement_timeout`` set the fields of the same name).
        :param kwargs: further fields (timeouts, chunk_bytes, conninfo).
        """
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        fields: dict[str, Any] = {
            "host": query.pop("host", None) or parts.hostname or "127.0.0.1",
            "port": int(query.pop("port", None) or parts.port or 5432),
            "user": unquote(parts.username) if parts.username else query.pop("user", "postgres"),
            "password": unquote(parts.password) if parts.password else query.pop("password", None),
            "database": unquote(parts.path.lstrip("/")) or query.pop("dbname", None),
        }
        for name in ("connect_timeout", "statement_timeout"):
            if name in query:
                fields[name] = int(query.pop(name))
        if query:
            fields["conninfo"] = query
        fields.update(kwargs)
        return cls(**fields)

    def describe(self) -> str:
        """``host:port/database`` — safe for messages."""
        return f"{self.host}:{self.port}/{self.database or ''}"

    # ------------------------------------------------------------------------------------------------------
    # connection and errors
    # ------------------------------------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        """A new connection (UTF-8, not autocommit, the next transaction ``REPEATABLE READ READ ONLY``);
        raises psycopg errors."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": int(self.port),
            "user": self.user,
            "connect_timeout": int(self.connect_timeout),
            "client_encoding": "UTF8",
            "application_name": self.application_name,
            # A silently vanished server is noticed within about a minute, not after the OS default of hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            **self.conninfo,
        }
        if self.password is not None:
            params["password"] = self.password
        if self.database:
            params["dbname"] = self.database
        conn = psycopg.connect(autocommit=False, **params)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        return conn

    def _mask(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def error(self, exc: BaseException, table: str, *, connecting: bool = False) -> RefdataSourceError:
        """The provider's error for a psycopg error: transient ones as :class:`SourceUnavailableError`.

        :param exc: the psycopg (or OS) error.
        :param table: ``schema.table`` of the legacy table.
        :param connecting: the error came from opening the connection (libpq gives no SQLSTATE there).
        """
        sqlstate = getattr(exc, "sqlstate", None)
        diag = getattr(exc, "diag", None)
        text = (diag.message_primary if diag is not None and diag.message_primary else None) or str(exc)
        if diag is not None and diag.message_detail:
            text += f" ({diag.message_detail})"
        text = self._mask(" ".join(text.split()))
        if sqlstate:
            transient = sqlstate not in _PERMANENT_SQLSTATES and (
                sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
            )
        elif connecting:
            transient = not _PERMANENT_CONNECT_MESSAGES.search(text)
        else:
            # No SQLSTATE after the connection was made: the connection broke (closed, reset, timed out).
            transient = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError)
        message = (
            f"legacy PostgreSQL {self.describe()}, table {table}: {type(exc).__name__}"
            f"{f' ({sqlstate})' if sqlstate else ''} {text}"
        )
        error_cls = SourceUnavailableError if transient else RefdataSourceError
        return error_cls(message, source=self.describe(), table=table)

    # ------------------------------------------------------------------------------------------------------
    # catalog
    # ------------------------------------------------------------------------------------------------------

    def columns(self, cur: psycopg.Cursor, schema: str, table: str) -> dict[str, PgColumn] | None:
        """The table's columns by name (in table order), or ``None`` when there is no such table or view.

        :param cur: a cursor of a connection from :meth:`connect`.
        :param schema: the legacy schema (exact name, no case folding).
        :param table: the legacy table, view or materialized view.
        """
        rows = cur.execute(_COLUMNS_SQL, (schema, table, list(_READABLE_RELKINDS))).fetchall()
        if not rows:
            return None
        attrs = [r for r in rows if r[1] is not None]
        if not attrs:
            return {}
        types = {(oid, typmod) for *_, oid, typmod, _typtype in attrs}
        base: dict[tuple[int, int], tuple[int, str, str, bool]] = {}
        for start, start_mod, oid, text, category, builtin in cur.execute(
            _BASE_TYPES_SQL, ([t[0] for t in types], [t[1] for t in types])
        ).fetchall():
            base[(start, start_mod)] = (oid, text, category, bool(builtin))
        result: dict[str, PgColumn] = {}
        for _relkind, name, declared, not_null, oid, typmod, _typtype in attrs:
            base_oid, base_type, category, builtin = base[(oid, typmod)]
            result[name] = PgColumn(name, declared, bool(not_null), base_oid, base_type, category, builtin)
        return result

    def _checked_columns(
        self, cur: psycopg.Cursor, table_config: SyncTableConfig, *, include_updated_at: bool = True
    ) -> dict[str, PgColumn]:
        source = table_config.source_config
        label = source.qualified_table
        columns = self.columns(cur, source.schema_, source.table)
        if columns is None:
            raise RefdataSourceError(
                f"legacy PostgreSQL {self.describe()}: table {label} does not exist (no table or view "
                f"{source.table!r} in schema {source.schema_!r})",
                source=self.describe(),
                table=label,
            )
        missing = [m.source for m in source.columns if m.source not in columns]
        incremental = source.incremental
        if include_updated_at and incremental is not None and incremental.updated_at_column not in columns:
            missing.append(incremental.updated_at_column)
        if missing:
            raise RefdataSourceError(
                f"legacy PostgreSQL {self.describe()}: table {label} has no column(s) {', '.join(missing)} "
                f"(it has: {', '.join(columns) or 'no columns'})",
                source=self.describe(),
                table=label,
            )
        if include_updated_at and incremental is not None:
            updated_at = columns[incremental.updated_at_column]
            if updated_at.base_oid not in _WATERMARK_TYPE_OIDS:
                raise RefdataSourceError(
                    f"legacy PostgreSQL {self.describe()}: incremental column {label}.{updated_at.name} is "
                    f"{updated_at.declared}; it must be a timestamp, timestamptz or date column",
                    source=self.describe(),
                    table=label,
                )
        return columns

    def describe_columns(self, table_config: SyncTableConfig) -> list[SourceColumn]:
        """The configured columns as the PostgreSQL columns that would hold them (``create_table: true``).

        The type is the legacy column's own (``format_type``: lengths, precision, array dimensions kept);
        a domain gives its base type, and a type that only the legacy database has (an enum, a composite,
        an extension type) gives ``text`` (``text[]`` for arrays of it), since its values arrive as text.

        :param table_config: a ``postgres`` table entry.
        """
        source = table_config.source_config
        label = source.qualified_table
        try:
            conn = self.connect()
        except psycopg.Error as exc:
            raise self.error(exc, label, connecting=True) from None
        try:
            with conn.cursor() as cur:
                columns = self._checked_columns(cur, table_config, include_updated_at=False)
            conn.rollback()
        except psycopg.Error as exc:
            raise self.error(exc, label) from None
        finally:
            conn.close()
        return [
            SourceColumn(
                name=m.target,
                pg_type=columns[m.source].warehouse_type,
                nullable=not columns[m.source].not_null,
                source_type=columns[m.source].declared,
            )
            for m in source.columns
        ]

    # ------------------------------------------------------------------------------------------------------
    # the read
    # ------------------------------------------------------------------------------------------------------

    @staticmethod
    def _select_expression(
        column: PgColumn, params: list[Any], *, key: bool, ident: Callable[..., sql.Identifier]
    ) -> sql.Composable:
        """The SELECT expression of one column (cleaned as the module docstring says); appends its values."""
        q = sql.SQL("{}::text").format(ident(column.name))
        if column.is_string:
            # Each trim is guarded by a cheap test of the edges that skips it for the usual value (measured on
            # 1M rows: ~0.1 s less CPU on the legacy server per key column, ~0.02 s per other string column).
            if key:
                # First and last character printable ASCII: str.strip() would change nothing, not blank.
                params.extend((33, 126, 33, 126, STRIP_CHARACTERS, ""))
                return sql.SQL(
                    "CASE WHEN ascii({q}) BETWEEN %s AND %s AND ascii(right({q}, 1)) BETWEEN %s AND %s THEN {q} "
                    "ELSE NULLIF(btrim({q}, %s), %s) END"
                ).format(q=q)
            # No space at either edge: btrim would change nothing.  (COLLATE "C": LIKE also works on a column
            # with a nondeterministic collation.)
            params.extend((32, "% "))
            return sql.SQL('CASE WHEN ascii({q}) = %s OR {q} COLLATE "C" LIKE %s THEN btrim({q}) ELSE {q} END').format(
                q=q
            )
        if column.can_be_nan:
            params.append("NaN")
            return sql.SQL("NULLIF({}, %s)").format(ident(column.name))
        return ident(column.name)

    def build_query(
        self, table_config: SyncTableConfig, columns: Mapping[str, PgColumn], since: datetime | None
    ) -> tuple[sql.Composed, list[Any], sql.Composed | None, list[Any]]:
        """The COPY statement and its values, and (incremental tables) the ``max(updated_at)`` query and its.

        The ``max`` query is meant for ``cursor.execute(query, values)`` with its list of values (maybe
        empty), the COPY for ``cursor.copy(statement, values)``; both have every ``%`` of an identifier
        doubled where psycopg will read the statement for placeholders (a COPY only when it has values).

        :param table_config: a ``postgres`` table entry.
        :param columns: the legacy table's columns (:meth:`columns`).
        :param since: read only rows with ``updated_at >= since``; ``None`` = all rows.
        """
        source = table_config.source_config
        keys = set(table_config.primary_key)

        def compose(ident: Callable[..., sql.Identifier]) -> tuple[sql.Composed, list[Any], sql.Composed | None]:
            params: list[Any] = []
            select = sql.SQL(", ").join(
                self._select_expression(columns[m.source], params, key=m.target in keys, ident=ident)
                for m in source.columns
            )
            table_sql = ident(source.schema_, source.table)
            where: sql.Composable = sql.SQL("")
            max_query: sql.Composed | None = None
            if source.incremental is not None:
                updated_at = ident(source.incremental.updated_at_column)
                if since is not None:
                    where = sql.SQL(" WHERE {} >= %s").format(updated_at)
                max_query = sql.SQL("SELECT max({}) FROM {}{}").format(updated_at, table_sql, where)
            copy = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT").format(select, table_sql, where)
            return copy, params, max_query

        where_params: list[Any] = [since] if source.incremental is not None and since is not None else []
        copy, params, _ = compose(sql.Identifier)
        escaped_copy, _, max_query = compose(_placeholder_safe_identifier)
        params += where_params
        return (escaped_copy if params else copy), params, max_query, where_params

    @contextmanager
    def stream(self, table_config: SyncTableConfig, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Open a read of the configured table; batches are COPY-text ``bytes`` chunks.

        :param table_config: a ``postgres`` table entry.
        :param since: read only rows with ``updated_at >= since`` (incremental tables); ``None`` = all rows.
        :param batch_size: at most this many rows per chunk (and at most about :attr:`chunk_bytes` bytes).
        """
        source = table_config.source_config
        label = source.qualified_table
        try:
            conn = self.connect()
        except psycopg.Error as exc:
            raise self.error(exc, label, connecting=True) from None
        with ExitStack() as stack:
            stack.callback(conn.close)
            try:
                cur = stack.enter_context(conn.cursor())
                cur.execute(
                    sql.SQL("SELECT {}").format(
                        sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in self._settings())
                    ),
                    [value for pair in self._settings() for value in pair],
                )
                columns = self._checked_columns(cur, table_config)
                copy_sql, params, max_sql, max_params = self.build_query(table_config, columns, since)
                latest = None
                if max_sql is not None:
                    latest = _naive_utc(cur.execute(max_sql, max_params).fetchone()[0])
                copy_stack = stack.enter_context(ExitStack())
                copy = copy_stack.enter_context(cur.copy(copy_sql, params))
            except psycopg.Error as exc:
                raise self.error(exc, label) from None
            # Unwinding runs this first: a COPY left unfinished (the consumer failed or stopped) is abandoned
            # by closing the connection, instead of being drained to its end.
            stack.callback(conn.close)
            yield SourceRead(
                columns=[m.target for m in source.columns],
                batches=self._batches(conn, copy, copy_stack, max(int(batch_size), 1), label),
                description=f"legacy PostgreSQL {self.describe()} table {label}",
                max_updated_at=latest,
            )

    def _settings(self) -> list[tuple[str, str]]:
        settings = list(SESSION_SETTINGS)
        if self.statement_timeout is not None:
            settings.append(("statement_timeout", f"{int(self.statement_timeout)}s"))
        return settings

    def _batches(
        self, conn: psycopg.Connection, copy: psycopg.Copy, copy_stack: ExitStack, rows_per_chunk: int, table: str
    ) -> Iterator[bytes]:
        """The COPY text in chunks of at most ``rows_per_chunk`` rows / about :attr:`chunk_bytes` bytes.

        COPY TO sends one message per row.  Rows libpq already holds are taken with the non-blocking
        ``PGconn.get_copy_data`` (a third of the CPU of ``Copy.read()`` per row, which matters when the
        source, this process and the warehouse share the cores); only when libpq would block does
        ``Copy.read()`` wait for the next row, in psycopg's own interruptible way.  A bytearray collects the
        rows (joining lists of memoryviews took ~0.4 s longer per million rows).
        """
        pgconn = conn.pgconn
        get_buffered = pgconn.get_copy_data
        wait_for_row = copy.read
        limit = self.chunk_bytes
        buffer = bytearray()
        rows = 0
        try:
            while True:
                nbytes, data = get_buffered(1)
                if nbytes == 0:  # nothing buffered: wait for the next row (b"" once the COPY has ended)
                    data = wait_for_row()
                    if not data:
                        break
                elif nbytes < 0:  # the end of the data, already buffered: collect the COPY's final result
                    _finish_copy_out(pgconn, conn.info.encoding)
                    break
                buffer += data
                rows += 1
                if rows >= rows_per_chunk or len(buffer) >= limit:
                    yield bytes(buffer)
                    buffer.clear()
                    rows = 0
            if buffer:
                yield bytes(buffer)
            copy_stack.close()  # the COPY block holds the connection's lock
        except psycopg.Error as exc:
            raise self.error(exc, table) from None
        try:
            conn.rollback()  # end the read-only transaction (and its snapshot) at once: nothing to commit
        except psycopg.Error:
            pass  # every row arrived (COPY reported success); the connection is closed next anyway


def _finish_copy_out(pgconn: Any, encoding: str) -> None:
    """After ``get_copy_data`` returned -1: read the COPY's results; raise its error if it failed."""
    failed = None
    while (result := pgconn.get_result()) is not None:
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK and failed is None:
            failed = psycopg.errors.error_from_result(result, encoding=encoding)
    if failed is not None:
        raise failed


def _placeholder_safe_identifier(*names: str) -> sql.Identifier:
    """``sql.Identifier`` for a statement psycopg reads for ``%s`` placeholders: ``%`` in a name doubled."""
    return sql.Identifier(*(name.replace("%", "%%") for name in names))


def _naive_utc(value: Any) -> datetime | None:
    """A watermark as ``refdata.sync_state`` stores it: naive UTC (a date is its midnight)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise TypeError(f"not a date/time watermark: {value!r}")
