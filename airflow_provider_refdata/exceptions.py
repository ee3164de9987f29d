"""Errors raised by the provider.

Every error carries structured fields (file, key path, table, value, ...) besides its message, so callers
and tests can react to *what* failed without parsing text, in the style of dlt's exceptions module.
"""

from __future__ import annotations

from typing import Any


class RefdataError(Exception):
    """Base class of every error this provider raises on purpose."""


class RefdataConfigError(RefdataError):
    """A configuration file is missing, unreadable or invalid.

    :param message: what is wrong, in words.
    :param file: the configuration file's path (or name).
    :param key_path: dotted key path inside the file, e.g. ``domains.x.foreign_keys[1].depends_on``.
    :param value: the offending value, when there is one.
    :param line: the 1-based line number, when YAML parsing failed.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: str | None = None,
        value: Any = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key_path = key_path
        self.value = value
        self.line = line
        self.reason = message
        location = ""
        if file:
            location = str(file)
            if line is not None:
                location += f", line {line}"
            location += ": "
        if key_path:
            location += f"{key_path}: "
        super().__init__(f"{location}{message}")


class RefdataSourceError(RefdataError):
    """A reference source (legacy MySQL, YAML file) could not be read.

    :param message: what went wrong; never contains a password or a full DSN.
    :param source: a safe description of the source (``host:port/database`` or a file path).
    :param table: the source table or file, when known.
    :param attempts: how many attempts were made before giving up.
    """

    def __init__(self, message: str, *, source: str | None = None, table: str | None = None, attempts: int = 1) -> None:
        self.source = source
        self.table = table
        self.attempts = attempts
        super().__init__(message)


class RefdataSyncError(RefdataError):
    """A reference table's sync failed and was rolled back.

    :param message: the cause.
    :param table: the schema-qualified target table.
    :param key: the primary key value concerned, when one row is at fault.
    :param column: the column concerned, when one column is at fault.
    """

    def __init__(self, message: str, *, table: str, key: Any = None, column: str | None = None) -> None:
        self.table = table
        self.key = key
        self.column = column
        super().__init__(message)


class RefdataBackfillError(RefdataError):
    """Deriving or inserting reference rows from fact data failed for one FK configuration.

    :param message: the cause.
    :param fk_name: the foreign-key configuration's name.
    :param table: the schema-qualified target table.
    :param column: the fact column concerned, when one is.
    """

    def __init__(self, message: str, *, fk_name: str, table: str | None = None, column: str | None = None) -> None:
        self.fk_name = fk_name
        self.table = table
        self.column = column
        super().__init__(message)


class RefdataReviewError(RefdataError):
    """A steward action (approve, reject, remap) was refused; nothing was changed.

    :param message: why, in words.
    :param table: the schema-qualified reference table.
    :param keys: the keys concerned.
    :param referencing_table: for a refused reject or remap, the table (``schema.table.column``) that still
        holds the key.
    :param count: how many rows of ``referencing_table`` hold it.
    """

    def __init__(
        self,
        message: str,
        *,
        table: str,
        keys: list[str] | None = None,
        referencing_table: str | None = None,
        count: int | None = None,
    ) -> None:
        self.table = table
        self.keys = list(keys or [])
        self.referencing_table = referencing_table
        self.count = count
        super().__init__(message)


class RefdataNotifyError(RefdataError):
    """A webhook did not accept the message.

    :param message: what went wrong (names the target as ``scheme://host:port`` only, never the URL).
    :param target: ``scheme://host:port`` of the webhook.
    :param status: the HTTP status, when the server answered.
    """

    def __init__(self, message: str, *, target: str | None = None, status: int | None = None) -> None:
        self.target = target
        self.status = status
        super().__init__(message)


class RefdataFactFileError(RefdataError):
    """A fact month or fact file that cannot be loaded: a month not written ``YYYY-MM``, or a missing file.

    :param message: one line naming the month or file and, for a missing file, the months whose files exist.
    :param file: the fact file's path, when one was looked for.
    :param month: the month asked for, as given.
    :param months: the months (``YYYY-MM``) whose fact files exist in the file's folder.
    """

    def __init__(
        self, message: str, *, file: str | None = None, month: str | None = None, months: list[str] | None = None
    ) -> None:
        self.file = file
        self.month = month
        self.months = list(months or [])
        super().__init__(message)
