"""MySQL/MariaDB column types → the PostgreSQL type of a column created for them (``create_table: true``).

:func:`mysql_to_postgres` is a pure function of what ``information_schema.COLUMNS`` says about one column
(:class:`MySqlType`).  The table it implements is documented in docs/configuration.md ("Creating missing
tables"); each choice holds every value the MySQL type can hold, *as the MySQL source renders it* (see
``MySqlSource._copy_expression``), so the first COPY never fails on a value the source legitimately has:

* ``char(n)`` → ``varchar(n)``, not ``char(n)``: MySQL strips a CHAR's trailing spaces on read (and the
  source trims edges anyway), while PostgreSQL ``char(n)`` would pad them back and compare blank-insensitively;
  ``varchar(n)`` stores exactly the value read.  A zero length (MySQL allows ``CHAR(0)``: only ``''`` and NULL)
  becomes ``varchar(1)``.
* ``tinyint(1)`` (``BOOLEAN``) → ``smallint``, not ``boolean``: the display width does not restrict the values
  (0..255 / -128..127 fit), so ``2`` would fail a ``boolean`` column.  ``bit(1)`` (only 0/1) → ``boolean``.
* unsigned integers take the next larger type (``int unsigned`` → ``bigint``; ``bigint unsigned`` →
  ``numeric(20,0)``); ``decimal(p,s)`` → ``numeric(p,s)`` (``unsigned`` is not enforced).
* ``datetime(n)`` → ``timestamp(n)``, ``timestamp(n)`` → ``timestamptz(n)`` (the source renders TIMESTAMP in
  UTC with ``+00``), fractional-second precision kept (also 0).
* ``time(n)`` → ``interval(n)``: MySQL ``TIME`` is a duration from ``-838:59:59`` to ``838:59:59``; a
  PostgreSQL ``time`` rejects negative values and values past 24 h.
* ``json`` → ``jsonb`` (MariaDB's ``JSON`` is ``longtext`` with a ``json_valid`` check; the MySQL source
  reports such a column with ``data_type='json'``).
* spatial types and anything unknown raise :class:`UnmappableTypeError` (the caller names the column).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class UnmappableTypeError(ValueError):
    """The MySQL type has no PostgreSQL type this provider can create for it (the message says why)."""


@dataclass(frozen=True)
class MySqlType:
    """One column's type as ``information_schema.COLUMNS`` reports it (names as in that view, lower case).

    :param data_type: ``DATA_TYPE``, e.g. ``varchar``, ``int``, ``decimal``, ``datetime``.
    :param column_type: ``COLUMN_TYPE``, e.g. ``varchar(16)``, ``int(10) unsigned``, ``enum('a','b')``.
    :param character_maximum_length: ``CHARACTER_MAXIMUM_LENGTH`` (characters; bytes for binary types).
    :param numeric_precision: ``NUMERIC_PRECISION`` (digits; bits for ``bit``).
    :param numeric_scale: ``NUMERIC_SCALE``.
    :param datetime_precision: ``DATETIME_PRECISION`` (fractional-second digits of datetime/timestamp/time).
    """

    data_type: str
    column_type: str = ""
    character_maximum_length: int | None = None
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    datetime_precision: int | None = None

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type.lower().split()

    @property
    def text(self) -> str:
        """The type as MySQL spells it (for messages)."""
        return self.column_type or self.data_type


# Signed / unsigned integer types → the smallest PostgreSQL type holding every value.
_INTEGERS: dict[str, tuple[str, str]] = {
    "tinyint": ("smallint", "smallint"),
    "smallint": ("smallint", "integer"),
    "mediumint": ("integer", "integer"),
    "int": ("integer", "bigint"),
    "integer": ("integer", "bigint"),
    "bigint": ("bigint", "numeric(20,0)"),
}
_TEXTS = frozenset({"tinytext", "text", "mediumtext", "longtext", "enum", "set"})
_BINARIES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_SPATIAL = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
        "geomcollection",
    }
)
# Types whose rendering needs nothing but the type name.
_PLAIN: dict[str, str] = {
    "float": "real",
    "double": "double precision",
    "real": "double precision",
    "date": "date",
    "year": "smallint",
    "json": "jsonb",
    "uuid": "uuid",  # MariaDB 10.7+
    "inet4": "inet",  # MariaDB 10.10+
    "inet6": "inet",  # MariaDB 10.5+
}


def mysql_to_postgres(column: MySqlType) -> str:
    """The PostgreSQL type text for a column of this MySQL type (see the module docstring for the choices).

    :param column: the column's ``information_schema`` description.
    :raises UnmappableTypeError: spatial and unknown types.
    """
    data_type = column.data_type.strip().lower()
    if data_type in ("char", "varchar"):
        length = column.character_maximum_length
        if length is None:
            raise UnmappableTypeError(f"{column.text}: no CHARACTER_MAXIMUM_LENGTH reported")
        return f"varchar({max(int(length), 1)})"
    if data_type in _TEXTS:
        return "text"
    if data_type in _INTEGERS:
        signed, unsigned = _INTEGERS[data_type]
        return unsigned if column.unsigned else signed
    if data_type in ("decimal", "numeric", "dec", "fixed"):
        precision, scale = column.numeric_precision, column.numeric_scale
        if precision is None:
            raise UnmappableTypeError(f"{column.text}: no NUMERIC_PRECISION reported")
        return f"numeric({int(precision)},{int(scale or 0)})"
    if data_type == "datetime":
        return f"timestamp({_fsp(column)})"
    if data_type == "timestamp":
        return f"timestamptz({_fsp(column)})"
    if data_type == "time":
        return f"interval({_fsp(column)})"
    if data_type == "bit":
        bits = int(column.numeric_precision or 1)
        # The source renders BIT as its number (CAST(b + 0 AS CHAR)): 0/1 for bit(1), up to 2**64 - 1.
        return "boolean" if bits == 1 else "bigint" if bits < 64 else "numeric(20,0)"
    if data_type in _BINARIES:
        return "bytea"
    if data_type in _PLAIN:
        return _PLAIN[data_type]
    if data_type in _SPATIAL:
        raise UnmappableTypeError(
            f"{column.text}: spatial types are not mapped (the warehouse is plain PostgreSQL, without PostGIS)"
        )
    raise UnmappableTypeError(f"{column.text}: no PostgreSQL type is defined for MySQL type {data_type!r}")


def _fsp(column: MySqlType) -> int:
    """Fractional-second precision 0..6 (MySQL's range, also PostgreSQL's)."""
    return min(max(int(column.datetime_precision or 0), 0), 6)


# ----------------------------------------------------------------------------------------------------------
# Generic SQL sources (SqlSource.describe_columns): declared type names and DB-API descriptions
# ----------------------------------------------------------------------------------------------------------

_TYPE_TEXT = re.compile(
    r"\s*(?P<name>[A-Za-z_]\w*(?:\s+[A-Za-z_]\w*)*)\s*(?:\((?P<args>[^)]*)\))?\s*(?P<rest>.*)", re.DOTALL
)
_SIMPLE_TYPES: dict[str, str] = {
    "smallint": "smallint",
    "int2": "smallint",
    "tinyint": "smallint",
    "int": "integer",
    "integer": "integer",
    "int4": "integer",
    "mediumint": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "real": "real",
    "float4": "real",
    "binary_float": "real",
    "float": "double precision",
    "float8": "double precision",
    "double": "double precision",
    "double precision": "double precision",
    "binary_double": "double precision",
    "bool": "boolean",
    "boolean": "boolean",
    "bit": "boolean",
    "date": "date",
    "datetime": "timestamp",
    "datetime2": "timestamp",
    "smalldatetime": "timestamp",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "datetimeoffset": "timestamptz",
    "time": "time",
    "time without time zone": "time",
    "text": "text",
    "ntext": "text",
    "clob": "text",
    "nclob": "text",
    "tinytext": "text",
    "mediumtext": "text",
    "longtext": "text",
    "string": "text",
    "blob": "bytea",
    "bytea": "bytea",
    "binary": "bytea",
    "varbinary": "bytea",
    "image": "bytea",
    "raw": "bytea",
    "longblob": "bytea",
    "json": "jsonb",
    "jsonb": "jsonb",
    "uuid": "uuid",
    "uniqueidentifier": "uuid",
}
_VARCHARS = frozenset(
    {"char", "character", "nchar", "varchar", "character varying", "nvarchar", "varchar2", "nvarchar2", "bpchar"}
)
NUMERIC_TYPE_NAMES = frozenset({"numeric", "decimal", "number", "dec"})


def sql_type_to_postgres(declared: str | None, *, sqlite: bool = False) -> str:
    """The PostgreSQL type for a declared SQL column type (best effort; never raises).

    Declared type (case-insensitive) → PostgreSQL type:

    * ``char(n)``, ``varchar(n)``, ``nvarchar(n)``, ``varchar2(n)`` → ``varchar(n)`` (no length or ``max``:
      ``text``); ``text``, ``clob``, ``ntext``, ``*text``, ``string`` → ``text``;
    * ``smallint``/``tinyint`` → ``smallint``, ``int``/``integer`` → ``integer``, ``bigint`` → ``bigint``;
    * ``numeric(p,s)``, ``decimal(p,s)``, ``number(p,s)`` → ``numeric(p,s)`` (no precision: ``numeric``);
    * ``real``/``float4`` → ``real``; ``float``/``double``/``float8`` → ``double precision``;
    * ``bool``/``boolean``/``bit`` → ``boolean``;
    * ``date`` → ``date``; ``datetime``/``timestamp(n)`` → ``timestamp(n)``; ``timestamp(n) with time zone``
      → ``timestamptz(n)``; ``time(n)`` → ``time(n)`` (fractional digits at most 6);
    * ``blob``/``binary``/``varbinary``/``bytea``/``raw``/``image`` → ``bytea``;
    * ``json`` → ``jsonb``; ``uuid``/``uniqueidentifier`` → ``uuid``;
    * anything else by SQLite's affinity rules: a name containing ``INT`` → ``bigint``, ``CHAR``/``CLOB``/
      ``TEXT`` → ``text``, ``BLOB`` → ``bytea``, ``REAL``/``FLOA``/``DOUB`` → ``double precision``; else
      (and no type at all) ``text``.

    :param declared: the type as the source declares it (``VARCHAR(16)``, ``DECIMAL(18, 2)``), or ``None``.
    :param sqlite: the type is SQLite's: every integer type holds 64 bits (``bigint``), ``REAL``/``FLOAT`` is
        an 8-byte float (``double precision``); an empty type is ``text`` either way.
    """
    text = (declared or "").strip().lower()
    if not text:
        return "text"
    match = _TYPE_TEXT.fullmatch(text)
    name = re.sub(r"\s+", " ", match.group("name")) if match else text
    args = [a.strip() for a in (match.group("args") or "").split(",") if a.strip()] if match else []
    rest = match.group("rest") if match else ""
    if sqlite and "int" in name:
        return "bigint"
    if name in _VARCHARS or name.endswith(" varying"):
        if args and args[0].isdigit() and int(args[0]) > 0:
            return f"varchar({int(args[0])})"
        return "text"
    if name in NUMERIC_TYPE_NAMES:
        digits = [a for a in args if re.fullmatch(r"-?\d+", a)]
        if len(digits) == 2 and int(digits[0]) > 0:
            return f"numeric({int(digits[0])},{max(int(digits[1]), 0)})"
        if len(digits) == 1 and int(digits[0]) > 0:
            return f"numeric({int(digits[0])})"
        return "numeric"
    words = f"{name} {rest}".split()
    if words[0] in ("timestamp", "time", "timestamptz", "timetz"):
        zoned = words[0].endswith("tz") or words[1:4] == ["with", "time", "zone"]
        pg_type = ("timestamp" if words[0].startswith("timestamp") else "time") + ("tz" if zoned else "")
        fraction = args[0] if args and args[0].isdigit() else None
        return f"{pg_type}({min(int(fraction), 6)})" if fraction is not None else pg_type
    if sqlite and name in ("real", "float", "float4", "double"):
        return "double precision"  # SQLite's REAL is an 8-byte float
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    # SQLite's affinity rules (https://www.sqlite.org/datatype3.html), also a fair guess elsewhere.
    if "int" in name:
        return "bigint"
    if any(part in name for part in ("char", "clob", "text")):
        return "text"
    if "blob" in name:
        return "bytea"
    if any(part in name for part in ("real", "floa", "doub")):
        return "double precision"
    return "text"


def type_from_description(column: Sequence[Any], module: Any) -> tuple[str, str]:
    """``(pg_type, source type text)`` from one ``cursor.description`` entry (DB-API type objects)."""
    type_code = column[1] if len(column) > 1 else None
    display = getattr(column, "type_display", None)  # psycopg 3: "character varying(16)", "numeric(18,2)"
    if isinstance(display, str) and display:
        return sql_type_to_postgres(display), display
    if isinstance(type_code, str) and type_code:
        return sql_type_to_postgres(type_code), type_code
    internal_size = column[3] if len(column) > 3 else None
    precision = column[4] if len(column) > 4 else None
    scale = column[5] if len(column) > 5 else None
    for kind in ("STRING", "NUMBER", "DATETIME", "BINARY"):
        type_object = getattr(module, kind, None)
        try:
            matches = type_object is not None and type_code is not None and type_code == type_object
        except Exception:  # a driver's type object that cannot compare
            matches = False
        if not matches:
            continue
        if kind == "STRING":
            size = internal_size if isinstance(internal_size, int) and 0 < internal_size < 10_485_760 else None
            return (f"varchar({size})" if size else "text"), "STRING"
        if kind == "NUMBER":
            if isinstance(precision, int) and precision > 0 and isinstance(scale, int) and scale >= 0:
                return f"numeric({precision},{scale})", "NUMBER"
            return "numeric", "NUMBER"
        return ("timestamp" if kind == "DATETIME" else "bytea"), kind
    return "text", str(type_code) if type_code is not None else ""
