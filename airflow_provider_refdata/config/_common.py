"""Shared building blocks of the configuration models: field types, the base model, located errors.

``_FieldError`` lets a validator point below the model that detected the problem; the loaders turn it into
a :class:`~airflow_provider_refdata.exceptions.RefdataConfigError` naming file, key path, value and line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

#: ``schema_version`` values this release understands, for both ``foreign_keys.yml`` and ``reference_sync.yml``
#: (what each added: docs/configuration.md, "Format versions").
SUPPORTED_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2")

# Columns the provider manages itself on every reference table: never a configured target.
_TRACKING_COLUMNS = frozenset({"_source", "_needs_review", "_derived_from_domain", "_derived_at"})
_PG_MAX_IDENTIFIER_BYTES = 63
_MISSING: Any = object()


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
        major = value.split(".", 1)[0]
        known_majors = {v.split(".", 1)[0] for v in SUPPORTED_SCHEMA_VERSIONS}
        why = "a newer minor version than this release knows" if major in known_majors else "another major version"
        raise ValueError(
            f"unsupported schema_version {value!r} ({why}); this release supports "
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
        allowed = [f.alias or k for k, f in cls.model_fields.items() if not (from_file and k in cls._loader_fields)]
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
