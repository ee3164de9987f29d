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

from dataclasses import dataclass


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
