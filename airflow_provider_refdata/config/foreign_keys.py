"""Models of ``foreign_keys.yml``: FK backfill rules per fact domain, and their processing order."""

from __future__ import annotations

import heapq
import logging
import string
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from graphlib import TopologicalSorter
from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator

from airflow_provider_refdata.config._common import (
    Name,
    SchemaVersion,
    SqlIdentifier,
    TargetColumn,
    _check_sql_identifier,
    _ConfigModel,
    _FieldError,
    _find_cycle,
    _RawText,
)
from airflow_provider_refdata.exceptions import RefdataConfigError

logger = logging.getLogger("airflow_provider_refdata.config")

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


# strftime codes a date format spec may use: the portable ones (C standard plus ISO week fields). Platform
# extensions such as glibc's "%-d" would work on one worker and print literally on another, so they are refused.
_STRFTIME_CODES = "YmdyHMSfbBaAjUWGVuwpzZcxX%"  # in the order the error message lists them
# Integer presentation types of the format-spec mini-language: the value must be integral (formatted as int);
# every other number spec formats a Decimal (exact for amounts, unlike float).
_INTEGER_SPEC_TYPES = frozenset("bdoxX")

TemplateSpecKind = Literal["date", "number"]


@dataclass(frozen=True)
class TemplateField:
    """One piece of a template: ``literal`` text, then optionally a placeholder ``{column[:spec]}``.

    ``kind`` says how a placeholder's value is formatted: ``None`` (as text), ``"date"`` (strftime ``spec``)
    or ``"number"`` (format-spec mini-language ``spec``).
    """

    literal: str
    column: str | None = None
    spec: str = ""
    kind: TemplateSpecKind | None = None

    @property
    def placeholder(self) -> str:
        """The placeholder as written (``{月度:%y%m}``), for messages."""
        return "{" + (self.column or "") + (f":{self.spec}" if self.spec else "") + "}"


def template_spec_kind(spec: str) -> TemplateSpecKind:
    """``"date"`` when ``spec`` uses a strftime code (a ``%`` before its last character), else ``"number"``.

    A ``%`` as the *last* character alone is the mini-language's percent type (``.1%``), a number spec.
    """
    return "date" if "%" in spec[:-1] else "number"


def _check_date_spec(spec: str) -> None:
    """Raise ValueError unless every ``%`` of ``spec`` starts a portable strftime code."""
    i = 0
    while i < len(spec):
        if spec[i] == "%":
            code = spec[i + 1 : i + 2]
            if not code:
                raise ValueError("ends with a lone '%' (write '%%' for a literal percent sign)")
            if code not in _STRFTIME_CODES:
                raise ValueError(
                    f"uses the unknown or non-portable strftime code '%{code}' (portable codes: "
                    f"{' '.join('%' + c for c in _STRFTIME_CODES)})"
                )
            i += 2
        else:
            i += 1


def format_number(value: Decimal, spec: str) -> str:
    """``value`` formatted with a number ``spec``; raises ValueError when an integer spec meets a fraction.

    Shared by config validation (with a sample value) and derivation, so a spec accepted at load time is
    exactly one that formats at run time.
    """
    if spec[-1:] in _INTEGER_SPEC_TYPES:
        if value != value.to_integral_value():
            raise ValueError(f"{value} is not an integer (spec {spec!r} formats integers)")
        return format(int(value), spec)
    return format(value, spec)


def _check_number_spec(spec: str) -> None:
    """Raise ValueError unless ``spec`` is a format-spec mini-language spec that formats numbers.

    Probed with a sample value through :func:`format_number` itself: string types (``s``) and ``c`` fail there.
    """
    try:
        format_number(Decimal("-1234"), spec)
    except ValueError as exc:
        raise ValueError(f"is not a valid number format spec ({exc}); e.g. ',.2f' or '08d'") from None


def _check_spec(spec: str) -> TemplateSpecKind:
    if "{" in spec or "}" in spec:
        raise ValueError("nests a placeholder inside its format spec")
    kind = template_spec_kind(spec)
    (_check_date_spec if kind == "date" else _check_number_spec)(spec)
    return kind


def template_fields(template: str) -> list[TemplateField]:
    """The pieces of a template in order; raises ValueError naming the placeholder when one is invalid.

    Allowed placeholders: ``{column}`` and ``{column:spec}`` (a date spec with strftime codes, or a number
    spec). Conversions, attribute access, indexing and positional fields are refused: a template only ever
    substitutes column values, it never evaluates anything.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"template {template!r} is malformed: {exc} (write '{{{{' or '}}}}' for a literal brace)"
        ) from None
    fields: list[TemplateField] = []
    for literal, field, spec, conversion in parsed:
        if field is None:
            fields.append(TemplateField(literal=literal))
            continue
        placeholder = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not field.strip():
            problem = "is empty; name a column, e.g. '{计划代码}'"
        elif conversion is not None:
            problem = "uses a conversion ('!'); only '{column}' or '{column:format spec}' is allowed"
        elif any(ch in field for ch in ".[]"):
            problem = "uses attribute access or indexing ('.' or '[...]'); only plain column names are allowed"
        elif field.isdigit():
            problem = "is positional; name a column instead"
        elif field != field.strip():
            problem = "has leading or trailing whitespace"
        else:
            try:
                kind = _check_spec(spec) if spec else None
            except ValueError as exc:
                problem = f"has format spec {spec!r} that {exc}"
            else:
                fields.append(TemplateField(literal=literal, column=field, spec=spec or "", kind=kind))
                continue
        raise ValueError(f"placeholder {placeholder!r} in template {template!r} {problem}")
    return fields


def _template_columns(template: str) -> list[str]:
    """The columns named by a template's placeholders, in order, each once; raises ValueError when invalid."""
    return list(dict.fromkeys(f.column for f in template_fields(template) if f.column is not None))


class Aggregation(_ConfigModel):
    """How the values of a fact column become one value for a new reference row.

    ``first``: first non-blank value in fact order. ``max_by``: the value from the row with the largest
    numeric ``order_column``. ``concat_distinct``: distinct non-blank values joined with ``separator``
    (sorted when ``sort``). ``count_distinct``: number of distinct non-blank values. ``template``:
    ``template`` with ``{column}`` placeholders filled from the fact row (no placeholders = a constant);
    ``{column:%y%m}`` formats a date, ``{column:,.2f}`` a number.
    """

    type: AggregationType = Field("first", description="Aggregation type.")
    order_column: Name | None = Field(
        None, description="max_by only (required): numeric fact column whose largest value picks the row."
    )
    separator: _RawText = Field("+", description="concat_distinct only: separator (not trimmed).")
    sort: StrictBool = Field(True, description="concat_distinct only: sort the distinct values before joining.")
    template: _RawText | None = Field(
        None,
        description="template only (required): text with {column} or {column:format spec} placeholders "
        "(a spec with % codes formats a date, any other spec a number); no placeholders = a constant.",
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

    @property
    def template_fields(self) -> list[TemplateField]:
        """The template's pieces (literal text, placeholder and its format), in order (empty for other types)."""
        if self.type != "template" or self.template is None:
            return []
        return template_fields(self.template)


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


def split_fact_column(entry: str) -> tuple[str, str, str]:
    """``"schema.table.column"`` → ``(schema, table, column)``; raises ValueError saying what is wrong.

    A part may be double-quoted to hold a dot (``"a""b"`` is ``a"b``); unquoted parts are trimmed.  Each part
    must be a valid PostgreSQL identifier (non-empty, no control character, at most 63 bytes).
    """
    parts: list[str] = []
    i, n = 0, len(entry)
    while True:
        while i < n and entry[i] == " ":
            i += 1
        if i < n and entry[i] == '"':
            i += 1
            part = ""
            while True:
                end = entry.find('"', i)
                if end < 0:
                    raise ValueError("has an unclosed double quote; expected schema.table.column")
                part += entry[i:end]
                if entry[end + 1 : end + 2] == '"':  # "" inside quotes is one quote
                    part += '"'
                    i = end + 2
                    continue
                i = end + 1
                break
            while i < n and entry[i] == " ":
                i += 1
            if i < n and entry[i] != ".":
                raise ValueError(f"has text after the quoted part {part!r}; expected schema.table.column")
        else:
            end = entry.find(".", i)
            end = n if end < 0 else end
            part = entry[i:end].strip()
            i = end
        if not part:
            raise ValueError("has an empty part; expected schema.table.column, e.g. business.组合计划.年金计划号")
        try:
            _check_sql_identifier(part)
        except ValueError as exc:
            raise ValueError(f"has an invalid part: {exc}") from None
        parts.append(part)
        if i >= n:
            break
        i += 1  # the dot
    if len(parts) != 3:
        raise ValueError(
            f"has {len(parts)} part(s) {parts!r}; expected schema.table.column, e.g. business.组合计划.年金计划号 "
            "(double-quote a part that contains a dot)"
        )
    return parts[0], parts[1], parts[2]


_MIGRATION_DOC = 'docs/configuration.md, "foreign_keys.yml in the existing format"'


def _legacy_aggregation_message(kind: str, fk_name: str, target: str, source: str) -> str | None:
    """Why an aggregation type of the existing format is refused and what to write instead (None: not one)."""
    where = f"foreign key {fk_name!r}, backfill column {target!r}: aggregation type {kind!r}"
    if kind == "lambda":
        return (
            f"{where} runs Python code from the configuration, which this provider never does; build the value "
            f"with a template and a format spec instead, e.g. "
            f'{{type: template, template: "{{{source}:%y%m}}新建"}} for the month as YYMM followed by 新建 '
            f"(strftime codes format a date, a spec such as ',.2f' a number; see {_MIGRATION_DOC})"
        )
    if kind == "jsonb_append":
        return (
            f"{where} (appending values to a JSONB column) is not supported; use "
            f'{{type: concat_distinct, separator: ","}}, which writes the distinct values joined by the '
            f"separator into a text column (a jsonb target column must become text or varchar; see {_MIGRATION_DOC})"
        )
    return None


def _text_or(value: Any, default: str) -> str:
    return value.strip() if isinstance(value, str) and value.strip() else default


def _check_key_column(column: BackfillColumn, index: int, source_column: str, target_key: str) -> None:
    """Raise unless a backfill column targeting the key says what the key already is: source_column, as is."""
    if column.source != source_column:
        raise _FieldError(
            f"backfill column {{source: {column.source}, target: {target_key}}} writes the target_key "
            f"{target_key!r} from {column.source!r}, but the key is always filled from source_column "
            f"{source_column!r}; map {source_column!r} to {target_key!r} (it adds nothing) or remove the column",
            loc=(index, "source"),
            value=column.source,
        )
    if column.aggregation != Aggregation():
        raise _FieldError(
            f"the key column {target_key!r} is always source_column {source_column!r}'s value; aggregation "
            f"type {column.aggregation.type!r} on it would have no effect (remove the aggregation or the column)",
            loc=(index, "aggregation"),
            value=column.aggregation.type,
        )


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
        default_factory=list,
        description="Columns filled on auto-derived rows besides the key; empty or absent: key-only rows. "
        "A column mapping source_column to target_key (the existing format's way of listing the key) is "
        "accepted and dropped.",
    )
    fact_tables: list[Name] = Field(
        default_factory=list,
        description="Fact columns holding this FK's key, as schema.table.column (a part containing a dot in "
        "double quotes: 'business.\"月度.明细\".计划代码'); a review remap rewrites them and a reject is refused "
        "while one still holds the key.",
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_code_aggregations(cls, data: Any) -> Any:
        # Checked on the raw document, before the Aggregation model sees it: there the FK's name and the
        # column are unknown and the message would only be "unknown key 'code'" or a Literal error.
        columns = data.get("backfill_columns") if isinstance(data, dict) else None
        if not isinstance(columns, list):
            return data
        for i, column in enumerate(columns):
            aggregation = column.get("aggregation") if isinstance(column, dict) else None
            kind = aggregation.get("type") if isinstance(aggregation, dict) else None
            if not isinstance(kind, str):
                continue
            message = _legacy_aggregation_message(
                kind.strip(),
                _text_or(data.get("name"), "<unnamed>"),
                _text_or(column.get("target"), "<no target>"),
                _text_or(column.get("source"), "column"),
            )
            if message:
                raise _FieldError(message, loc=("backfill_columns", i, "aggregation", "type"), value=kind)
        return data

    @field_validator("backfill_columns")
    @classmethod
    def _check_backfill_columns(cls, columns: list[BackfillColumn], info: ValidationInfo) -> list[BackfillColumn]:
        # A field validator (not the model validator) so the key column can be dropped from the frozen model;
        # name, source_column and target_key are validated before it (field order) and in info.data unless
        # they failed, in which case their own error is reported.
        source_column, target_key = info.data.get("source_column"), info.data.get("target_key")
        kept: list[BackfillColumn] = []
        targets: dict[str, int] = {}
        for i, column in enumerate(columns):
            if column.target in targets:
                raise _FieldError(
                    f"target {column.target!r} is already filled by backfill_columns[{targets[column.target]}]",
                    loc=(i, "target"),
                    value=column.target,
                )
            targets[column.target] = i
            if target_key is None or column.target != target_key:
                kept.append(column)
            elif source_column is not None:
                _check_key_column(column, i, source_column, target_key)
                logger.debug(
                    "foreign key %r: backfill_columns[%d] {source: %s, target: %s} maps source_column to "
                    "target_key, which is always filled from source_column; it adds nothing and is dropped",
                    info.data.get("name"),
                    i,
                    column.source,
                    column.target,
                )
        return kept

    @field_validator("fact_tables")
    @classmethod
    def _check_fact_tables(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        name = info.data.get("name", "<unnamed>")
        seen: dict[tuple[str, str, str], int] = {}
        for i, entry in enumerate(entries):
            try:
                parts = split_fact_column(entry)
            except ValueError as exc:
                raise _FieldError(
                    f"foreign key {name!r}: fact_tables entry {entry!r} {exc}", loc=(i,), value=entry
                ) from None
            if parts in seen:
                raise _FieldError(
                    f"foreign key {name!r}: fact_tables entry {entry!r} names the same column as "
                    f"fact_tables[{seen[parts]}]",
                    loc=(i,),
                    value=entry,
                )
            seen[parts] = i
        return entries

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
        return self

    @property
    def qualified_table(self) -> str:
        """``schema.table``, unquoted (for messages and result fields, never for SQL)."""
        return f"{self.target_schema}.{self.target_table}"

    @property
    def fact_columns(self) -> list[tuple[str, str, str]]:
        """``fact_tables`` as (schema, table, column) triples, unquoted, in configuration order."""
        return [split_fact_column(entry) for entry in self.fact_tables]

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
