"""Model of the ``review:`` section of ``reference_sync.yml``: what the data steward's review files leave out.

Columns configured as sensitive for a table never reach a review file (neither its header nor its values),
keyed like the ``health.tables`` overrides by the schema-qualified table (``business.年金计划``)::

    review:
      sensitive_columns:
        business.年金计划: [客户名称]

The key column and the tracking columns cannot be sensitive (the key identifies the row; the tracking columns
are never exported anyway).  Whether a named column exists is checked against the table when a file is
exported (``RefdataConfigError`` naming the file, the table and the column).

:func:`resolve_review_config` turns whatever a caller passes as "the review settings" into a
:class:`ReviewConfig`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from airflow_provider_refdata.config._common import TargetColumn, _ConfigModel, _FieldError, _unique
from airflow_provider_refdata.config.paths import CONFIG_DIR_ENV, SYNC_CONFIG_FILE, config_path
from airflow_provider_refdata.exceptions import RefdataConfigError


class ReviewConfig(_ConfigModel):
    """The ``review:`` section: settings of the review files exported for the data steward."""

    _loader_fields: ClassVar[frozenset[str]] = frozenset({"source_path"})

    sensitive_columns: dict[str, Annotated[list[TargetColumn], AfterValidator(_unique)]] = Field(
        default_factory=dict,
        description="Columns never written to a review file (neither header nor values), per table: keyed by "
        "the schema-qualified table (schema.table), a list of its column names. The key column cannot be "
        "sensitive; a column the table lacks fails the export.",
    )
    source_path: SkipJsonSchema[Path | None] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_tables(self) -> ReviewConfig:
        for name in self.sensitive_columns:
            schema, dot, table = name.partition(".")
            if not dot or not schema.strip() or not table.strip():
                raise _FieldError(
                    f"{name!r} is not a schema-qualified table (schema.table)",
                    loc=("sensitive_columns", name),
                    value=name,
                )
        return self

    def sensitive(self, table: str) -> list[str]:
        """The sensitive columns of ``table`` (schema-qualified), in configuration order; ``[]`` when none."""
        return list(self.sensitive_columns.get(table, ()))


def default_sync_config_path() -> Path | None:
    """The default ``reference_sync.yml`` (:func:`~airflow_provider_refdata.config.paths.config_path`) when it
    exists, else None.

    Fails closed: with ``$REFDATA_CONFIG_DIR`` set, a missing file raises ``RefdataConfigError`` naming it — a
    worker whose configuration folder is not mounted must not export review files without the sensitive
    columns' masking.
    """
    path = config_path(SYNC_CONFIG_FILE)
    if path.is_file():
        return path
    if os.environ.get(CONFIG_DIR_ENV):
        raise RefdataConfigError(
            f"no such file; ${CONFIG_DIR_ENV} names the folder of {SYNC_CONFIG_FILE}, whose review: "
            "section says which columns a review file must leave out",
            file=str(path),
        )
    return None


def resolve_review_config(review: Any = None) -> ReviewConfig:
    """The review settings ``review`` stands for.

    :param review: a :class:`ReviewConfig`; a ``ReferenceSyncConfig`` (its ``review`` section); the path of a
        ``reference_sync.yml`` (``str`` or path-like; loaded and validated whole); or None:
        the default ``reference_sync.yml`` (:func:`default_sync_config_path`: ``$REFDATA_CONFIG_DIR``, which
        must then hold it, else ``./config``) when it exists, else no sensitive columns.
        The result's ``source_path`` is the file the settings came from, when known.
    """
    # Imported here: the loader imports the sync models, which import this module.
    from airflow_provider_refdata.config.loading import load_sync_config
    from airflow_provider_refdata.config.sync import ReferenceSyncConfig

    if isinstance(review, ReviewConfig):
        return review
    if review is None:
        path = default_sync_config_path()
        if path is None:
            return ReviewConfig()
        review = path
    if isinstance(review, str | os.PathLike):
        review = load_sync_config(review)
    if isinstance(review, ReferenceSyncConfig):
        section = review.review
        if review.source_path is not None and section.source_path is None:
            section = section.model_copy(update={"source_path": review.source_path})
        return section
    raise TypeError(
        f"review must be a ReviewConfig, a ReferenceSyncConfig, the path of a reference_sync.yml or None, "
        f"got {type(review).__name__}"
    )
