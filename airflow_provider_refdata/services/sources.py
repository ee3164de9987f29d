"""Reference sources for the sync: the protocol the service reads through, and its two plain-Python readers.

A *source* turns one ``SyncTableConfig`` into a :class:`SourceRead`: the staging columns (target names, in
order) and an iterator of batches.  A batch is either

* ``bytes`` — rows already in a PostgreSQL ``COPY`` format, passed through to COPY untouched:
  :attr:`SourceRead.copy_format` ``text`` (tab separated, ``\\N`` for NULL, one row per ``\\n``) or ``csv``
  (comma separated, strings in double quotes, NULL an unquoted empty field); :class:`MySqlSource` asks MySQL
  to render CSV, so one million rows never become Python objects; or
* ``list[tuple]`` — rows of Python values (``None`` is NULL) that COPY's ``write_row`` encodes
  (:class:`~.source_yaml.YamlFileSource`, which streams its file and yields every value as text, exactly as
  written, for COPY to read into the target column's type; re-exported here).

Both readers clean values alike: strings are trimmed (keys of both and YAML values of leading/trailing
Unicode white space, as ``str.strip``: also tab, newline, NBSP and the ideographic space U+3000; non-key MySQL
string columns of leading/trailing spaces, MySQL ``TRIM``, for speed), ``NaN`` and MySQL zero dates
(``0000-00-00``, ``2020-00-15``, ``0000-00-00 00:00:00``) become NULL.  An empty string (also one that was only
whitespace) stays ``''`` in a non-key column: it is a value, distinct from NULL.  A blank key never is: the
MySQL reader renders it as NULL, which the service reports as a table failure naming the table and the key
column; the YAML reader skips the table naming the row.

MySQL values arrive exactly: numbers as MySQL's own text (DECIMAL and BIGINT never pass through a float;
``FLOAT`` as the exact value of its float32, ``BIT`` as its number, so ``BIT(1)``/``TINYINT(1)`` fill ``boolean``
columns, spatial types as WKT text, or WKB for a ``bytea`` target), ``DATETIME``/``DATE`` as their
naive text with fractional seconds, ``TIMESTAMP`` as UTC text with ``+00`` (the session time zone is
``+00:00`` whatever the server's global ``time_zone``, so a ``timestamptz`` target stores the right instant and
a naive ``timestamp`` target the UTC wall time), binary types as ``bytea`` hex input (``\\x…``, byte-exact
in a ``bytea`` target).  A source that cannot be used *as configured* (missing file, bad YAML, wrong
``schema_version``) raises :class:`SourceSkipped`: the table is skipped and nothing changes.  A transient
failure (connection refused, lost connection, timeout) raises :class:`SourceUnavailableError`, which the
service retries; anything else fails the table at once.

The Airflow hooks (``airflow_provider_refdata.hooks``) implement the same protocol by building these readers
from an Airflow connection.  Nothing here imports Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from airflow_provider_refdata.exceptions import RefdataSourceError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from airflow_provider_refdata.config import SyncTableConfig

DEFAULT_TIMEOUT_SECONDS = 30

#: Every character for which ``str.isspace()`` is true (what ``str.strip()`` removes, and so what the hybrid
#: path trims from fact keys): the database readers trim keys of exactly these; a test checks the set.
STRIP_CHARACTERS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

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
    :param max_updated_at: for incremental tables, the largest ``updated_at`` of the rows read (complete once
        ``batches`` is exhausted; the database readers know it before the first batch, from the read's own
        snapshot); ``None`` when unknown or no rows.
    :param formats: columns the stage converts for some target types (see ``warehouse.conversions``).
    :param copy_format: the ``COPY`` format of ``bytes`` batches: ``text`` or ``csv``.
    :param target_types: the target's column types (``format_type`` text, ``jsonb``, ``text[]``) by column
        name, set by the consumer *before* it iterates ``batches``, so a reader whose values have no types of
        their own can encode them the target's way (:class:`~.source_yaml.YamlFileSource`: a list or mapping
        becomes JSON for ``json``/``jsonb`` and an array literal for array columns); ``None`` = not told.
    """

    columns: list[str]
    batches: Iterator[Batch]
    description: str
    max_updated_at: datetime | None = None
    target_types: dict[str, str] | None = None
    #: Columns rendered in a source-specific way that the stage converts for some target types (target column
    #: → ``warehouse.conversions`` format, e.g. ``mysql_bit``: the number; ``mysql_set``: ``a,b``).
    formats: dict[str, str] = field(default_factory=dict)
    copy_format: Literal["text", "csv"] = "text"


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
# The readers live in their own modules (source_mysql, source_yaml); re-exported here for existing imports.
# ----------------------------------------------------------------------------------------------------------

# Lazily (PEP 562), so that importing either module first works: source_yaml imports this module.
_MOVED = {
    "YamlFileSource": "airflow_provider_refdata.services.source_yaml",
    "MySqlSource": "airflow_provider_refdata.services.source_mysql",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
