"""Typed, validated configuration: ``foreign_keys.yml`` (FK backfill rules) and ``reference_sync.yml``.

Plain Python (pydantic v2 + PyYAML), no Airflow import. Every problem in a file raises
:class:`~airflow_provider_refdata.exceptions.RefdataConfigError` naming the file, the key path
(``domains.annuity_performance.foreign_keys[1].depends_on``), the offending value and, when known, the line.

Nothing in the configuration is ever evaluated as code: aggregations are a closed set of types and
templates only substitute ``{column}`` placeholders.

The reference for every key is ``docs/configuration.md``; the JSON Schemas in ``schemas/`` are generated
from the models below by :mod:`airflow_provider_refdata.config_schema`.
"""

from __future__ import annotations

import difflib
import heapq
import logging
import os
import re
import string
import zoneinfo
from collections.abc import Iterable, Sequence
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from airflow_provider_refdata.exceptions import RefdataConfigError

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "Aggregation",
    "AggregationType",
    "BackfillColumn",
    "ColumnMapping",
    "ConfigFileSourceConfig",
    "DomainConfig",
    "ForeignKeyConfig",
    "ForeignKeysFileConfig",
    "IncrementalConfig",
    "LegacyMySqlSourceConfig",
    "ReferenceSyncConfig",
    "SyncTableConfig",
    "load_fk_configs",
    "load_fk_domains",
    "load_sync_config",
    "processing_order",
]

logger = logging.getLogger(__name__)

#: ``schema_version`` values this release understands, for both ``foreign_keys.yml`` and ``reference_sync.yml``.
SUPPORTED_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0",)

# Columns the provider manages itself on every reference table: never a configured target.
_TRACKING_COLUMNS = frozenset({"_source", "_needs_review", "_derived_from_domain", "_derived_at"})
_PG_MAX_IDENTIFIER_BYTES = 63
_MISSING: Any = object()

try:  # libyaml is several times faster; the pure-Python loader behaves the same.
    _YamlLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader


# --------------------------------------------------------------------------------------------------------
# Errors inside validators
# --------------------------------------------------------------------------------------------------------


class _FieldError(ValueError):
    """A validation problem located *below* the model that detected it.

    Pydantic locates a model validator's error at the model itself; ``loc`` lets the loaders extend the path
    to the exact key (``foreign_keys[2].name``). ``message`` already contains the offending value.
    """

    def __init__(self, message: str, *, loc: Sequence[str | int] = (), value: Any = _MISSING) -> None:
        self.message = message
        self.loc = tuple(loc)
        self.value = value
        super().__init__(f"{_format_key_path(self.loc)}: {message}" if self.loc else message)


def _format_key_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------------------


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{value!r} contains a control character")
    return value


def _check_sql_identifier(value: str) -> str:
    _no_control_chars(value)
    if len(value.encode("utf-8")) > _PG_MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"{value!r} is longer than PostgreSQL's {_PG_MAX_IDENTIFIER_BYTES}-byte identifier limit "
            f"({len(value.encode('utf-8'))} bytes in UTF-8); PostgreSQL would silently truncate it"
        )
    return value


def _not_tracking_column(value: str) -> str:
    if value in _TRACKING_COLUMNS:
        raise ValueError(
            f"{value!r} is a tracking column managed by the provider "
            f"({', '.join(sorted(_TRACKING_COLUMNS))}) and cannot be configured"
        )
    return value


def _version_string(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'must be a quoted string such as "1.0", got the number {value!r}')
    return value


def _supported_version(value: str) -> str:
    if value not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(
            f"unsupported schema_version {value!r}; this release supports "
            f"{', '.join(repr(v) for v in SUPPORTED_SCHEMA_VERSIONS)}"
        )
    return value


def _str_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _unique(values: list[str]) -> list[str]:
    dupes = [v for i, v in enumerate(values) if v in values[:i]]
    if dupes:
        raise ValueError(f"lists {', '.join(repr(d) for d in dict.fromkeys(dupes))} more than once")
    return values


_Stripped = StringConstraints(strip_whitespace=True, min_length=1)
#: A trimmed, non-empty name (FK names, fact columns, MySQL names).
Name = Annotated[str, _Stripped, AfterValidator(_no_control_chars)]
#: A trimmed, non-empty PostgreSQL identifier (schema, table, column), at most 63 bytes.
SqlIdentifier = Annotated[str, _Stripped, AfterValidator(_check_sql_identifier)]
#: A PostgreSQL column the configuration writes to (never a tracking column).
TargetColumn = Annotated[str, _Stripped, AfterValidator(_check_sql_identifier), AfterValidator(_not_tracking_column)]
VersionString = Annotated[str, BeforeValidator(_version_string), _Stripped]
SchemaVersion = Annotated[
    str,
    BeforeValidator(_version_string),
    _Stripped,
    AfterValidator(_supported_version),
    WithJsonSchema({"type": "string", "enum": list(SUPPORTED_SCHEMA_VERSIONS)}),
]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
_RawText = Annotated[str, StringConstraints(strip_whitespace=False)]


class _ConfigModel(BaseModel):
    """Shared settings: unknown keys rejected (with a suggestion), frozen, strings trimmed."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    #: Keys with a dedicated explanation when they appear where they do not belong.
    _misplaced_key_hints: ClassVar[dict[str, str]] = {}
    #: Fields a file may not set (they are filled in by the loader).
    _loader_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        from_file = bool(info.context and info.context.get("from_file"))
        allowed = [k for k in cls.model_fields if not (from_file and k in cls._loader_fields)]
        unknown = [k for k in data if k not in allowed]
        if not unknown:
            return data
        key = unknown[0]
        if key in cls._misplaced_key_hints:
            message = f"unknown key {key!r}: {cls._misplaced_key_hints[key]}"
        else:
            message = f"unknown key {key!r}"
            close = difflib.get_close_matches(str(key), allowed, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            message += f"; allowed keys: {', '.join(allowed)}"
        if len(unknown) > 1:
            message += f"; other unknown keys here: {', '.join(repr(k) for k in unknown[1:])}"
        raise _FieldError(message, loc=(key,), value=key)


# --------------------------------------------------------------------------------------------------------
# foreign_keys.yml
# --------------------------------------------------------------------------------------------------------

AggregationType = Literal["first", "max_by", "concat_distinct", "count_distinct", "template"]

# Which optional Aggregation keys apply to which type; any other combination is a dead key and rejected.
_AGGREGATION_KEYS: dict[str, str] = {
    "order_column": "max_by",
    "separator": "concat_distinct",
    "sort": "concat_distinct",
    "template": "template",
}


def _template_columns(template: str) -> list[str]:
    """The ``{column}`` placeholders of a template, in order, each once; raises ValueError when invalid."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"template {template!r} is malformed: {exc} (write '{{{{' or '}}}}' for a literal brace)"
        ) from None
    columns: list[str] = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        placeholder = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not field.strip():
            problem = "is empty; name a column, e.g. '{计划代码}'"
        elif conversion is not None or spec:
            problem = "uses a conversion or format spec ('!' or ':'); only plain '{column}' is allowed"
        elif any(ch in field for ch in ".[]"):
            problem = "uses attribute access or indexing ('.' or '[...]'); only plain '{column}' is allowed"
        elif field.isdigit():
            problem = "is positional; name a column instead"
        elif field != field.strip():
            problem = "has leading or trailing whitespace"
        else:
            if field not in columns:
                columns.append(field)
            continue
        raise ValueError(f"placeholder {placeholder!r} in template {template!r} {problem}")
    return columns


class Aggregation(_ConfigModel):
    """How the values of a fact column become one value for a new reference row.

    ``first``: first non-blank value in fact order. ``max_by``: the value from the row with the largest
    numeric ``order_column``. ``concat_distinct``: distinct non-blank values joined with ``separator``
    (sorted when ``sort``). ``count_distinct``: number of distinct non-blank values. ``template``:
    ``template`` with ``{column}`` placeholders filled from the fact row (no placeholders = a constant).
    """

    type: AggregationType = Field("first", description="Aggregation type.")
    order_column: Name | None = Field(
        None, description="max_by only (required): numeric fact column whose largest value picks the row."
    )
    separator: _RawText = Field("+", description="concat_distinct only: separator (not trimmed).")
    sort: StrictBool = Field(True, description="concat_distinct only: sort the distinct values before joining.")
    template: _RawText | None = Field(
        None,
        description="template only (required): text with {column} placeholders; no placeholders = a constant.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": "max_by"}}, "required": ["type"]},
                    "then": {"required": ["order_column"]},
                },
                {
                    "if": {"properties": {"type": {"const": "template"}}, "required": ["type"]},
                    "then": {"required": ["template"]},
                },
            ]
        }
    )

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            _template_columns(value)
        return value

    @model_validator(mode="after")
    def _check_type_keys(self) -> Aggregation:
        for key, applies_to in _AGGREGATION_KEYS.items():
            if key in self.model_fields_set and self.type != applies_to and getattr(self, key) is not None:
                raise _FieldError(
                    f"{key!r} only applies to type {applies_to!r}, not {self.type!r} "
                    f"(got {key}={getattr(self, key)!r})",
                    loc=(key,),
                    value=getattr(self, key),
                )
        if self.type == "max_by" and self.order_column is None:
            raise _FieldError(
                "type 'max_by' requires 'order_column' (the numeric fact column whose largest value picks "
                "the row), got type='max_by' without it",
                value="max_by",
            )
        if self.type == "template" and self.template is None:
            raise _FieldError(
                "type 'template' requires 'template' (text with {column} placeholders), got type='template' without it",
                value="template",
            )
        return self

    @property
    def template_columns(self) -> list[str]:
        """Columns named by the template's placeholders, in order (empty for other types or a constant)."""
        if self.type != "template" or self.template is None:
            return []
        return _template_columns(self.template)


class BackfillColumn(_ConfigModel):
    """One column of an auto-derived reference row: fact column ``source`` → reference column ``target``.

    For a ``template`` aggregation the value is built from the placeholders' columns; ``source`` still names
    the primary fact column (and ``optional`` applies to it).
    """

    source: Name = Field(description="Fact column read (for template: the primary column).")
    target: TargetColumn = Field(description="Column of the reference table written.")
    optional: StrictBool = Field(
        False, description="When true, a fact dataset without the source column leaves the target NULL."
    )
    aggregation: Aggregation = Field(default_factory=Aggregation, description="Default: type first.")


ForeignKeyMode = Literal["insert_missing", "fill_null_only"]


class ForeignKeyConfig(_ConfigModel):
    """A fact column that references a reference table, and how to backfill its missing keys."""

    name: Name = Field(description="Unique name within the domain; used by depends_on and in results.")
    source_column: Name = Field(description="Fact column holding the FK value.")
    target_table: SqlIdentifier = Field(description="Reference table (unquoted name).")
    target_schema: SqlIdentifier = Field("public", description="Schema of the reference table.")
    target_key: TargetColumn = Field(description="Key column of the reference table.")
    mode: ForeignKeyMode = Field(
        "insert_missing",
        description="insert_missing: insert missing keys; fill_null_only: also fill NULL business columns "
        "of existing rows.",
    )
    depends_on: list[Name] = Field(
        default_factory=list, description="Names of FKs of the same domain to process first."
    )
    skip_blank_values: StrictBool = Field(False, description="Treat blank_values tokens as blank.")
    blank_values: list[str] = Field(
        default_factory=lambda: ["(空白)"],
        description="Extra blank tokens (trimmed), used only when skip_blank_values is true.",
    )
    backfill_columns: list[BackfillColumn] = Field(
        description="Columns filled on auto-derived rows (at least one).", min_length=1
    )

    @field_validator("backfill_columns", mode="before")
    @classmethod
    def _backfill_not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one column, got []")
        return value

    @model_validator(mode="after")
    def _check_fk(self) -> ForeignKeyConfig:
        seen: set[str] = set()
        for i, dep in enumerate(self.depends_on):
            if dep == self.name:
                raise _FieldError(
                    f"foreign key {self.name!r} depends on itself (depends_on contains {dep!r})",
                    loc=("depends_on", i),
                    value=dep,
                )
            if dep in seen:
                raise _FieldError(f"{dep!r} is listed twice", loc=("depends_on", i), value=dep)
            seen.add(dep)
        if "blank_values" in self.model_fields_set and not self.skip_blank_values:
            raise _FieldError(
                f"blank_values {self.blank_values!r} have no effect unless skip_blank_values is true",
                loc=("blank_values",),
                value=self.blank_values,
            )
        targets: dict[str, int] = {}
        for i, column in enumerate(self.backfill_columns):
            if column.target == self.target_key:
                raise _FieldError(
                    f"target {column.target!r} is the target_key; the key is always filled from source_column",
                    loc=("backfill_columns", i, "target"),
                    value=column.target,
                )
            if column.target in targets:
                raise _FieldError(
                    f"target {column.target!r} is already filled by backfill_columns[{targets[column.target]}]",
                    loc=("backfill_columns", i, "target"),
                    value=column.target,
                )
            targets[column.target] = i
        return self

    @property
    def qualified_table(self) -> str:
        """``schema.table``, unquoted (for messages and result fields, never for SQL)."""
        return f"{self.target_schema}.{self.target_table}"

    @property
    def blank_tokens(self) -> frozenset[str]:
        """The configured blank tokens (trimmed) when ``skip_blank_values``, else an empty set."""
        if not self.skip_blank_values:
            return frozenset()
        return frozenset(t for t in (v.strip() for v in self.blank_values) if t)


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, a]`` (``a`` depends on ``b`` depends on ``a``), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps[node]:
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for name in deps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


class DomainConfig(_ConfigModel):
    """The FK configurations of one fact domain (``domains.<domain>``)."""

    foreign_keys: list[ForeignKeyConfig] = Field(default_factory=list, description="FK configurations.")

    @model_validator(mode="after")
    def _check_domain(self) -> DomainConfig:
        first_index: dict[str, int] = {}
        duplicates: dict[str, list[int]] = {}
        for i, fk in enumerate(self.foreign_keys):
            if fk.name in first_index:
                duplicates.setdefault(fk.name, [first_index[fk.name]]).append(i)
            else:
                first_index[fk.name] = i
        if duplicates:
            listed = "; ".join(
                f"{name!r} at " + ", ".join(f"foreign_keys[{i}]" for i in idx) for name, idx in duplicates.items()
            )
            name, idx = next(iter(duplicates.items()))
            raise _FieldError(
                f"duplicate foreign key names: {listed}", loc=("foreign_keys", idx[1], "name"), value=name
            )
        for i, fk in enumerate(self.foreign_keys):
            for j, dep in enumerate(fk.depends_on):
                if dep not in first_index:
                    raise _FieldError(
                        f"{fk.name!r} depends on unknown foreign key {dep!r}; this domain has "
                        f"{', '.join(repr(n) for n in first_index)}",
                        loc=("foreign_keys", i, "depends_on", j),
                        value=dep,
                    )
        cycle = _find_cycle({fk.name: list(fk.depends_on) for fk in self.foreign_keys})
        if cycle:
            text = " -> ".join(cycle)
            raise _FieldError(
                f"dependency cycle: {text}", loc=("foreign_keys", first_index[cycle[0]], "depends_on"), value=text
            )
        return self


class ForeignKeysFileConfig(_ConfigModel):
    """The whole ``foreign_keys.yml``: ``schema_version`` and ``domains.<domain>.foreign_keys``."""

    schema_version: SchemaVersion = Field("1.0", description="Format version of this file.")
    domains: dict[Name, DomainConfig] = Field(description="FK configurations per fact domain.")


# --------------------------------------------------------------------------------------------------------
# reference_sync.yml
# --------------------------------------------------------------------------------------------------------


class ColumnMapping(_ConfigModel):
    """A legacy column ``source`` copied into the reference column ``target``."""

    source: Name = Field(description="Column of the legacy MySQL table.")
    target: TargetColumn = Field(description="Column of the PostgreSQL reference table.")


class IncrementalConfig(_ConfigModel):
    """Read only rows with ``updated_at_column >= watermark - lookback_seconds``."""

    updated_at_column: Name = Field(description="Legacy column holding the row's last change time.")
    lookback_seconds: Annotated[StrictInt, Field(ge=0)] = Field(
        0, description="Re-read this many seconds before the watermark (late commits, clock skew)."
    )


class LegacyMySqlSourceConfig(_ConfigModel):
    """``source_type: legacy_mysql``: a table of the legacy MySQL database."""

    table: Name = Field(description="Legacy MySQL table.")
    database: Name | None = Field(None, description="Database; default: the connection's database.")
    columns: list[ColumnMapping] = Field(description="Column mappings (at least one, unique targets).", min_length=1)
    incremental: IncrementalConfig | None = Field(None, description="Incremental reads; absent = full reads.")

    @field_validator("columns")
    @classmethod
    def _unique_targets(cls, value: list[ColumnMapping]) -> list[ColumnMapping]:
        seen: dict[str, int] = {}
        for i, mapping in enumerate(value):
            if mapping.target in seen:
                raise _FieldError(
                    f"target {mapping.target!r} is already mapped by columns[{seen[mapping.target]}]",
                    loc=(i, "target"),
                    value=mapping.target,
                )
            seen[mapping.target] = i
        return value

    @property
    def target_columns(self) -> list[str]:
        return [m.target for m in self.columns]


class ConfigFileSourceConfig(_ConfigModel):
    """``source_type: config_file``: a versioned YAML data file (``schema_version`` checked when read)."""

    _misplaced_key_hints: ClassVar[dict[str, str]] = {
        "incremental": "incremental reads are only supported with source_type 'legacy_mysql'; "
        "a config_file is always read in full",
    }

    file_path: Path = Field(description="Data file; a relative path is relative to this config file's folder.")
    schema_version: VersionString = Field(description="schema_version the data file must declare.")
    columns: list[TargetColumn] | None = Field(
        None, description="Allowed target columns; default: the target table's columns.", min_length=1
    )

    @field_validator("file_path", mode="before")
    @classmethod
    def _resolve_path(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"must not be empty, got {value!r}")
        if isinstance(value, str | os.PathLike):
            path = Path(os.fspath(value).strip() if isinstance(value, str) else value)
            base = info.context.get("base_dir") if info.context else None
            if base is not None and not path.is_absolute():
                path = (Path(base) / path).resolve()
            return path
        return value

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _unique(value)


SourceType = Literal["legacy_mysql", "config_file"]
_SOURCE_MODELS: dict[str, type[_ConfigModel]] = {
    "legacy_mysql": LegacyMySqlSourceConfig,
    "config_file": ConfigFileSourceConfig,
}

_PrimaryKey = Annotated[
    list[TargetColumn],
    BeforeValidator(_str_or_list),
    Field(min_length=1),
    AfterValidator(_unique),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            ]
        }
    ),
]


class SyncTableConfig(_ConfigModel):
    """One reference table kept equal to an authoritative source."""

    name: Name = Field(description="Unique name of this sync entry.")
    target_schema: SqlIdentifier = Field("public", description="Schema of the reference table.")
    target_table: SqlIdentifier = Field(description="Reference table (unquoted name).")
    primary_key: _PrimaryKey = Field(description="Key column(s): a string or a list.")
    source_type: SourceType = Field(description="Which source reads the data.")
    source_config: LegacyMySqlSourceConfig | ConfigFileSourceConfig = Field(
        description="Settings of the source, by source_type."
    )
    sync_mode: Literal["upsert", "delete_insert"] = Field(
        "upsert",
        description="upsert: insert/update, never delete; delete_insert: make authoritative rows equal the source.",
    )
    batch_size: PositiveInt | None = Field(None, description="Rows per batch; default: the file's batch_size.")
    enabled: StrictBool = Field(True, description="false skips this table.")

    # The JSON Schema's "source_config by source_type" rule is added by config_schema (it needs $defs refs).

    @field_validator("source_config", mode="before")
    @classmethod
    def _build_source_config(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        model = _SOURCE_MODELS.get(info.data.get("source_type", ""))
        if model is None:
            raise ValueError("cannot be checked until source_type is valid ('legacy_mysql' or 'config_file')")
        return model.model_validate(value, context=info.context)

    @model_validator(mode="after")
    def _check_table(self) -> SyncTableConfig:
        expected = _SOURCE_MODELS[self.source_type]
        if not isinstance(self.source_config, expected):
            raise _FieldError(
                f"source_type {self.source_type!r} needs a {expected.__name__}, "
                f"got a {type(self.source_config).__name__}",
                loc=("source_config",),
                value=self.source_type,
            )
        targets = self.target_columns
        if targets is not None:
            for i, column in enumerate(self.primary_key):
                if column not in targets:
                    raise _FieldError(
                        f"primary key column {column!r} is not among the "
                        f"{'mapped target columns' if self.source_type == 'legacy_mysql' else 'source columns'} "
                        f"({', '.join(targets)})",
                        loc=("primary_key",) if len(self.primary_key) == 1 else ("primary_key", i),
                        value=column,
                    )
        incremental = getattr(self.source_config, "incremental", None)
        if self.sync_mode == "delete_insert" and incremental is not None:
            raise _FieldError(
                "sync_mode 'delete_insert' cannot be combined with source_config.incremental: an incremental "
                "read returns only changed rows, so every unchanged row would be deleted; use 'upsert' or "
                "remove incremental",
                loc=("sync_mode",),
                value="delete_insert",
            )
        return self

    @property
    def qualified_table(self) -> str:
        """``schema.table``, unquoted (for messages and result fields, never for SQL)."""
        return f"{self.target_schema}.{self.target_table}"

    @property
    def target_columns(self) -> list[str] | None:
        """Mapped target columns (legacy_mysql), ``columns`` (config_file; None = the table's columns)."""
        if isinstance(self.source_config, LegacyMySqlSourceConfig):
            return self.source_config.target_columns
        return None if self.source_config.columns is None else list(self.source_config.columns)


_CRON_PRESETS = frozenset({"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"})
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_CRON_ITEM = re.compile(r"(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?")


def _check_cron(expr: str) -> str:
    if expr in _CRON_PRESETS:
        return expr
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(
            f"{expr!r} is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 1 * * *'"
        )
    for part, (label, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            match = _CRON_ITEM.fullmatch(item)
            ok = match is not None
            if match:
                step = match.group("step")
                ok = step is None or int(step) > 0
                if match.group("base") != "*":
                    bounds = []
                    for token in match.group("base").split("-"):
                        value = names.get(token.upper()) if not token.isdigit() else int(token)
                        bounds.append(value)
                    ok = ok and all(b is not None and low <= b <= high for b in bounds)
                    ok = ok and (len(bounds) == 1 or bounds[0] <= bounds[1])
            if not ok:
                raise ValueError(f"{expr!r}: {label} field {part!r} is invalid (allowed {low}-{high})")
    return expr


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Asia/Shanghai'") from None
    return name


class ReferenceSyncConfig(_ConfigModel):
    """The whole ``reference_sync.yml``."""

    _loader_fields: ClassVar[frozenset[str]] = frozenset({"source_path"})

    schema_version: SchemaVersion = Field("1.0", description="Format version of this file.")
    enabled: StrictBool = Field(True, description="false disables the whole sync.")
    schedule: Annotated[str, AfterValidator(_check_cron)] = Field(
        "0 1 * * *", description="5-field cron expression (or @daily, @hourly, ...)."
    )
    timezone: Annotated[str, AfterValidator(_check_timezone)] = Field(
        "Asia/Shanghai", description="IANA time zone of the schedule."
    )
    batch_size: PositiveInt = Field(5000, description="Default rows per batch.")
    tables: list[SyncTableConfig] = Field(description="Reference tables to sync.")
    source_path: SkipJsonSchema[Path | None] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_tables(self) -> ReferenceSyncConfig:
        names: dict[str, int] = {}
        targets: dict[tuple[str, str], int] = {}
        for i, table in enumerate(self.tables):
            if table.name in names:
                raise _FieldError(
                    f"duplicate table name {table.name!r} (also tables[{names[table.name]}])",
                    loc=("tables", i, "name"),
                    value=table.name,
                )
            names[table.name] = i
            key = (table.target_schema, table.target_table)
            if key in targets:
                raise _FieldError(
                    f"target {table.qualified_table!r} is already synced by tables[{targets[key]}] "
                    f"({self.tables[targets[key]].name!r})",
                    loc=("tables", i, "target_table"),
                    value=table.qualified_table,
                )
            targets[key] = i
        return self

    def table(self, name: str) -> SyncTableConfig:
        """The table entry called ``name``; KeyError naming the known entries otherwise."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no sync table named {name!r}; known: {', '.join(t.name for t in self.tables)}")

    def effective_batch_size(self, table: str | SyncTableConfig) -> int:
        """The table's own ``batch_size``, else the file's."""
        entry = self.table(table) if isinstance(table, str) else table
        return entry.batch_size if entry.batch_size is not None else self.batch_size

    @property
    def enabled_tables(self) -> list[SyncTableConfig]:
        """Tables that run: none when the file is disabled."""
        return [t for t in self.tables if t.enabled] if self.enabled else []


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


def _index_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str, active: set[int]) -> None:
    """Map key paths to 1-based lines and reject duplicate keys (PyYAML silently keeps the last one)."""
    if id(node) in active:  # recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _index_lines(value_node, path, lines, file, active)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            child = (*path, key_node.value)
            if (key_node.tag, key_node.value) in seen:
                raise RefdataConfigError(
                    f"duplicate key {key_node.value!r} (YAML would silently keep only the last one)",
                    file=file,
                    key_path=_format_key_path(child),
                    value=key_node.value,
                    line=line,
                )
            seen.add((key_node.tag, key_node.value))
            lines.setdefault(child, line)
            _index_lines(value_node, child, lines, file, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _index_lines(item, (*path, i), lines, file, active)
    active.discard(id(node))


def _yaml_syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> RefdataConfigError:
    """The error for a YAML syntax problem: the problem's line, what was expected, the offending line."""
    source = text.splitlines()
    mark, context_mark = exc.problem_mark or exc.context_mark, exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.context and exc.problem:
        message += f" ({exc.context}"
        if context_mark is not None and mark is not None and context_mark.line != mark.line:
            message += f" started at line {context_mark.line + 1}"
        message += ")"
    offending = ""
    for candidate in (mark, context_mark):
        if candidate is not None and candidate.line < len(source) and source[candidate.line].strip():
            offending = source[candidate.line].strip()
            break
    if offending:
        message += f"; offending line: {offending!r}"
    return RefdataConfigError(
        message, file=file, value=offending or None, line=mark.line + 1 if mark is not None else None
    )


def _read_yaml(path: str | os.PathLike[str]) -> tuple[Any, dict[tuple, int], str, Path]:
    """Parse a YAML file: (data, key path → line, file name for messages, path)."""
    file = os.fspath(path)
    p = Path(file)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RefdataConfigError(
            f"configuration file not found: {str(p.absolute())!r}", file=file, value=str(p)
        ) from None
    except UnicodeDecodeError as exc:
        raise RefdataConfigError(f"file is not valid UTF-8: {exc}", file=file, value=str(p)) from None
    except OSError as exc:
        raise RefdataConfigError(f"cannot read configuration file {str(p)!r}: {exc}", file=file, value=str(p)) from None

    loader = _YamlLoader(text)
    lines: dict[tuple, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            raise RefdataConfigError("file is empty; expected a mapping of keys", file=file, value="")
        _index_lines(node, (), lines, file, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_syntax_error(exc, text, file) from exc
    except yaml.YAMLError as exc:
        raise RefdataConfigError(f"invalid YAML: {exc}", file=file) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise RefdataConfigError(
            f"the top level must be a mapping of keys, got {type(data).__name__} {_short_repr(data)}",
            file=file,
            value=data,
            line=1,
        )
    return data, lines, file, p


def _describe(error: dict[str, Any]) -> tuple[tuple, str, Any]:
    """(loc, message containing the value, value) of one pydantic error."""
    loc = tuple(error["loc"])
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldError):
        return loc + ctx_error.loc, ctx_error.message, ctx_error.value
    value = error.get("input", _MISSING)
    if error["type"] == "missing":
        return loc, "required key is missing", _MISSING
    if isinstance(ctx_error, Exception) and error["type"] in ("value_error", "assertion_error"):
        return loc, str(ctx_error), value
    return loc, f"{error['msg']}, got {_short_repr(value)}", value


def _validate(model: type[BaseModel], data: Any, file: str, lines: dict[tuple, int], context: dict) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        loc, message, value = problems[0]
        if len(problems) > 1:
            others = "; ".join(f"{_format_key_path(lc) or '<top>'}: {msg}" for lc, msg, _ in problems[1:6])
            more = f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""
            message += f" [{len(problems) - 1} more problem(s): {others}{more}]"
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        raise RefdataConfigError(
            message,
            file=file,
            key_path=_format_key_path(loc) or None,
            value=None if value is _MISSING else value,
            line=line,
        ) from exc


def _load_fk_file(path: str | os.PathLike[str]) -> ForeignKeysFileConfig:
    data, lines, file, _ = _read_yaml(path)
    return _validate(ForeignKeysFileConfig, data, file, lines, {"from_file": True})


def load_fk_domains(path: str | os.PathLike[str]) -> dict[str, list[ForeignKeyConfig]]:
    """All domains of a ``foreign_keys.yml``: ``{domain: [ForeignKeyConfig, ...]}`` (file order)."""
    return {name: list(domain.foreign_keys) for name, domain in _load_fk_file(path).domains.items()}


def load_fk_configs(path: str | os.PathLike[str], domain: str) -> list[ForeignKeyConfig]:
    """The FK configurations of ``domains.<domain>`` in file order (see :func:`processing_order`).

    The whole file is validated. A domain absent from the file returns ``[]`` and logs a warning.
    """
    parsed = _load_fk_file(path)
    if domain not in parsed.domains:
        logger.warning(
            "Domain %r is not configured in %s (configured: %s); no foreign keys to check",
            domain,
            os.fspath(path),
            ", ".join(parsed.domains) or "none",
        )
        return []
    return list(parsed.domains[domain].foreign_keys)


def load_sync_config(path: str | os.PathLike[str]) -> ReferenceSyncConfig:
    """Load ``reference_sync.yml``; relative ``file_path``s resolve against the file's folder."""
    data, lines, file, p = _read_yaml(path)
    base = p.absolute().parent.resolve()
    config = _validate(ReferenceSyncConfig, data, file, lines, {"from_file": True, "base_dir": base})
    return config.model_copy(update={"source_path": p.resolve()})


# --------------------------------------------------------------------------------------------------------
# Dependency order
# --------------------------------------------------------------------------------------------------------


def processing_order(fk_configs: Iterable[ForeignKeyConfig]) -> list[ForeignKeyConfig]:
    """Parents before children (``depends_on``), otherwise input order.

    Stable: whenever several configs are ready, the one earliest in the input goes first, so an input
    that already respects the dependencies comes back unchanged. A ``depends_on`` naming a config that is
    not in the input (e.g. filtered out by the caller) is ignored. Duplicate names and cycles raise
    :class:`RefdataConfigError`.
    """
    configs = list(fk_configs)
    index: dict[str, int] = {}
    for i, fk in enumerate(configs):
        if fk.name in index:
            raise RefdataConfigError(
                f"duplicate foreign key name {fk.name!r} (also at position {index[fk.name]})",
                key_path=f"foreign_keys[{i}].name",
                value=fk.name,
            )
        index[fk.name] = i
    deps = {fk.name: [d for d in fk.depends_on if d in index] for fk in configs}
    cycle = _find_cycle(deps)
    if cycle:
        text = " -> ".join(cycle)
        raise RefdataConfigError(
            f"dependency cycle: {text}", key_path=f"foreign_keys[{index[cycle[0]]}].depends_on", value=text
        )
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name, parents in deps.items():
        sorter.add(name, *parents)
    sorter.prepare()
    ready: list[int] = []
    order: list[ForeignKeyConfig] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, index[name])
        i = heapq.heappop(ready)
        order.append(configs[i])
        sorter.done(configs[i].name)
    return order
