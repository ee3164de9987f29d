"""Models of ``reference_sync.yml``: the reference tables to sync and the settings of each source type."""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from airflow_provider_refdata.config._common import (
    Name,
    PositiveInt,
    SchemaVersion,
    SqlIdentifier,
    TargetColumn,
    VersionString,
    _ConfigModel,
    _FieldError,
    _find_cycle,
    _str_or_list,
    _Stripped,
    _unique,
)
from airflow_provider_refdata.config.health import HealthConfig
from airflow_provider_refdata.config.review import ReviewConfig

# --------------------------------------------------------------------------------------------------------
# reference_sync.yml
# --------------------------------------------------------------------------------------------------------


class ColumnMapping(_ConfigModel):
    """A legacy column ``source`` copied into the reference column ``target``."""

    source: Name = Field(description="Column of the legacy MySQL table.")
    target: TargetColumn = Field(description="Column of the PostgreSQL reference table.")


def _env_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"{value!r} is not an environment variable prefix (letters, digits and '_')")
    return value


# The one ``incremental.where`` the existing configuration format uses: "<updated_at_column> >= :last_synced_at".
_INCREMENTAL_WHERE = re.compile(r'\s*(?:"(?P<quoted>[^"]+)"|(?P<column>[^\s"<>=!;()\']+))\s*>=\s*:last_synced_at\s*')


class IncrementalConfig(_ConfigModel):
    """Read only rows with ``updated_at_column >= watermark - lookback_seconds``.

    ``where`` is accepted for configurations written in the existing format, and only in its one documented
    shape ``<updated_at_column> >= :last_synced_at`` (a synonym of ``updated_at_column``); any other SQL is
    refused here, so it is never executed.
    """

    updated_at_column: Name = Field(description="Legacy column holding the row's last change time.")
    lookback_seconds: Annotated[StrictInt, Field(ge=0)] = Field(
        0, description="Re-read this many seconds before the watermark (late commits, clock skew)."
    )
    where: Name | None = Field(
        None,
        description="Existing-format synonym, only of the shape '<updated_at_column> >= :last_synced_at'; "
        "any other SQL is refused.",
    )

    @model_validator(mode="before")
    @classmethod
    def _where_synonym(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("where") is None:
            return data
        where = data["where"]
        match = _INCREMENTAL_WHERE.fullmatch(where) if isinstance(where, str) else None
        column = data.get("updated_at_column")
        expected = f"{column if isinstance(column, str) else '<updated_at_column>'} >= :last_synced_at"
        named = match and (match.group("quoted") or match.group("column"))
        if match is None or (isinstance(column, str) and named != column.strip()):
            raise _FieldError(
                f"only the shape {expected!r} is supported (a synonym of updated_at_column), got {where!r}; "
                "other SQL is never executed: express the filter with updated_at_column and lookback_seconds",
                loc=("where",),
                value=where,
            )
        if column is None:
            return {**data, "updated_at_column": named}
        return data


class _DatabaseSource(_ConfigModel):
    """Connection settings shared by the database sources (legacy MySQL, PostgreSQL, generic SQL)."""

    conn_id: Name | None = Field(
        None,
        description="Connection of this table's source: an Airflow connection id, or a key of the sources "
        "mapping given to the operator/CLI; default: the source type's default connection.",
    )
    connection_env_prefix: Annotated[str, _Stripped, AfterValidator(_env_prefix)] | None = Field(
        None,
        description="Existing-format connection: read <P>_HOST, <P>_PORT, <P>_USER, <P>_PASSWORD and "
        "<P>_DATABASE from the environment.",
    )

    @model_validator(mode="after")
    def _one_connection(self) -> _DatabaseSource:
        if self.conn_id is not None and self.connection_env_prefix is not None:
            raise _FieldError(
                f"set conn_id ({self.conn_id!r}) or connection_env_prefix ({self.connection_env_prefix!r}), not both",
                loc=("connection_env_prefix",),
                value=self.connection_env_prefix,
            )
        return self

    @field_validator("columns", check_fields=False)
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
        return [m.target for m in self.columns]  # type: ignore[attr-defined]


class LegacyMySqlSourceConfig(_DatabaseSource):
    """``source_type: legacy_mysql``: a table of the legacy MySQL database."""

    table: Name = Field(description="Legacy MySQL table.")
    database: Name | None = Field(None, description="Database; default: the connection's database.")
    columns: list[ColumnMapping] = Field(description="Column mappings (at least one, unique targets).", min_length=1)
    incremental: IncrementalConfig | None = Field(None, description="Incremental reads; absent = full reads.")


class PostgresSourceConfig(_DatabaseSource):
    """``source_type: postgres``: a table of a legacy PostgreSQL database (default conn ``refdata_legacy_postgres``)."""

    schema_: SqlIdentifier = Field("public", alias="schema", description="Schema of the legacy table.")
    table: SqlIdentifier = Field(description="Legacy PostgreSQL table.")
    columns: list[ColumnMapping] = Field(description="Column mappings (at least one, unique targets).", min_length=1)
    incremental: IncrementalConfig | None = Field(None, description="Incremental reads; absent = full reads.")

    model_config = ConfigDict(populate_by_name=True)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema_}.{self.table}"


class SqlSourceConfig(_DatabaseSource):
    """``source_type: sql``: a table any Airflow ``DbApiHook`` reaches (SQLite, Oracle, MSSQL, ...)."""

    schema_: Name | None = Field(None, alias="schema", description="Schema of the table; default: none.")
    table: Name = Field(description="Table (quoted as an identifier; never a query).")
    columns: list[ColumnMapping] = Field(description="Column mappings (at least one, unique targets).", min_length=1)
    incremental: IncrementalConfig | None = Field(None, description="Incremental reads; absent = full reads.")

    model_config = ConfigDict(populate_by_name=True)


def file_path_candidates(path: Path, config_dir: Path) -> list[Path]:
    """Where a relative data ``file_path`` may be, in order: the config file's folder, the project root (the
    folder holding the ``config/`` folder the config file is in), the current directory."""
    candidates = [(config_dir / path).resolve()]
    for ancestor in (config_dir, *config_dir.parents):
        if ancestor.name == "config":
            candidates.append((ancestor.parent / path).resolve())
            break
    candidates.append((Path.cwd() / path).resolve())
    return list(dict.fromkeys(candidates))


class ConfigFileSourceConfig(_ConfigModel):
    """``source_type: config_file``: a versioned YAML data file (``schema_version`` checked when read)."""

    _misplaced_key_hints: ClassVar[dict[str, str]] = {
        "incremental": "incremental reads are only supported with source_type 'legacy_mysql'; "
        "a config_file is always read in full",
    }

    file_path: Path = Field(
        description="Data file; a relative path is looked up in this config file's folder, then the project root "
        "(the folder holding config/), then the current directory."
    )
    schema_version: VersionString = Field(description="schema_version the data file must declare.")
    columns: list[TargetColumn] | None = Field(
        None, description="Allowed target columns; default: the target table's columns.", min_length=1
    )
    _search_paths: tuple[Path, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _record_search_paths(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        model = handler(data)
        base = info.context.get("base_dir") if info.context else None
        raw = data.get("file_path") if isinstance(data, dict) else None
        if base is not None and isinstance(raw, str) and not Path(raw.strip()).is_absolute():
            model._search_paths = tuple(file_path_candidates(Path(raw.strip()), Path(base)))
        return model

    @field_validator("file_path", mode="before")
    @classmethod
    def _resolve_path(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"must not be empty, got {value!r}")
        if isinstance(value, str | os.PathLike):
            path = Path(os.fspath(value).strip() if isinstance(value, str) else value)
            base = info.context.get("base_dir") if info.context else None
            if base is not None and not path.is_absolute():
                candidates = file_path_candidates(path, Path(base))
                return next((c for c in candidates if c.exists()), candidates[0])
            return path
        return value

    @property
    def tried_paths(self) -> list[Path]:
        """Where a relative ``file_path`` was looked for (first existing wins), for "not found" messages."""
        return list(self._search_paths) or [self.file_path]

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _unique(value)


SourceType = Literal["legacy_mysql", "postgres", "sql", "config_file"]
_SOURCE_MODELS: dict[str, type[_ConfigModel]] = {
    "legacy_mysql": LegacyMySqlSourceConfig,
    "postgres": PostgresSourceConfig,
    "sql": SqlSourceConfig,
    "config_file": ConfigFileSourceConfig,
}
#: The source_config models of the database sources (they have ``columns`` mappings and ``conn_id``).
DatabaseSourceConfig = LegacyMySqlSourceConfig | PostgresSourceConfig | SqlSourceConfig

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
    source_config: LegacyMySqlSourceConfig | PostgresSourceConfig | SqlSourceConfig | ConfigFileSourceConfig = Field(
        description="Settings of the source, by source_type."
    )
    sync_mode: Literal["upsert", "delete_insert"] = Field(
        "upsert",
        description="upsert: insert/update, never delete; delete_insert: make authoritative rows equal the source.",
    )
    batch_size: PositiveInt | None = Field(None, description="Rows per batch; default: the file's batch_size.")
    enabled: StrictBool = Field(True, description="false skips this table.")
    depends_on: list[Name] = Field(
        default_factory=list,
        description="Names of sync tables that must finish before this one starts (with concurrency > 1).",
    )
    still_referenced: Literal["keep_for_review", "fail"] = Field(
        "keep_for_review",
        description="delete_insert, a row the source no longer has that a foreign key still references (whatever "
        "its ON DELETE action): keep_for_review keeps it as an auto-derived row with _needs_review; fail fails "
        "the table. It is never deleted.",
    )
    protect_confirmed_hours: Annotated[float, Field(ge=0)] = Field(
        24,
        description="delete_insert: a key the facts of an ensure_references used within this many hours (they may "
        "not be loaded yet) is treated like a still-referenced row (see still_referenced); 0 disables.",
    )
    create_table: StrictBool = Field(
        False,
        description="Create a missing target table from the source's columns (types per docs/configuration.md).",
    )

    # The JSON Schema's "source_config by source_type" rule is added by config_schema (it needs $defs refs).

    @field_validator("source_config", mode="before")
    @classmethod
    def _build_source_config(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        model = _SOURCE_MODELS.get(info.data.get("source_type", ""))
        if model is None:
            raise ValueError(
                f"cannot be checked until source_type is valid ({', '.join(repr(t) for t in _SOURCE_MODELS)})"
            )
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
                        f"{'source columns' if self.source_type == 'config_file' else 'mapped target columns'} "
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
        """Mapped target columns (database sources), ``columns`` (config_file; None = the table's columns)."""
        if not isinstance(self.source_config, ConfigFileSourceConfig):
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
    concurrency: PositiveInt = Field(
        1,
        description="Tables synced at once, each on its own warehouse connection and in its own transaction; "
        "a table starts only after its depends_on tables finished.",
    )
    tables: list[SyncTableConfig] = Field(description="Reference tables to sync.")
    health: HealthConfig | None = Field(
        None,
        description="Alert rules on the health of the reference tables (auto-derived ratio, needs review, "
        "placeholder age); absent = only failed health checks alert.",
    )
    review: ReviewConfig = Field(
        default_factory=ReviewConfig,
        description="Settings of the review files exported for the data steward (columns never exported).",
    )
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
        for i, table in enumerate(self.tables):
            seen: set[str] = set()
            for j, dep in enumerate(table.depends_on):
                if dep not in names or dep == table.name or dep in seen:
                    problem = (
                        "depends on itself"
                        if dep == table.name
                        else "is listed twice"
                        if dep in seen
                        else f"is not a table of this file ({', '.join(repr(n) for n in names)})"
                    )
                    raise _FieldError(f"depends_on {dep!r} {problem}", loc=("tables", i, "depends_on", j), value=dep)
                seen.add(dep)
        cycle = _find_cycle({t.name: list(t.depends_on) for t in self.tables})
        if cycle:
            text = " -> ".join(cycle)
            raise _FieldError(f"dependency cycle: {text}", loc=("tables", names[cycle[0]], "depends_on"), value=text)
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
