"""Models of ``foreign_keys.yml``: FK backfill rules per fact domain, and their processing order."""

from __future__ import annotations

import heapq
import string
from collections.abc import Iterable
from graphlib import TopologicalSorter
from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator

from airflow_provider_refdata.config._common import (
    Name,
    SchemaVersion,
    SqlIdentifier,
    TargetColumn,
    _ConfigModel,
    _FieldError,
    _find_cycle,
    _RawText,
)
from airflow_provider_refdata.exceptions import RefdataConfigError

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
