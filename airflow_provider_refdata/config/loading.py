"""Reading the configuration files: YAML with line numbers and duplicate-key checks, validation, errors.

Every problem raises :class:`~airflow_provider_refdata.exceptions.RefdataConfigError` naming the file, the
key path (``domains.annuity_performance.foreign_keys[1].depends_on``), the offending value and the line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_provider_refdata.config._common import _MISSING, _FieldError, _format_key_path, _short_repr
from airflow_provider_refdata.config.foreign_keys import ForeignKeyConfig, ForeignKeysFileConfig
from airflow_provider_refdata.config.sync import ReferenceSyncConfig
from airflow_provider_refdata.exceptions import RefdataConfigError

logger = logging.getLogger("airflow_provider_refdata.config")

try:  # libyaml is several times faster; the pure-Python loader behaves the same.
    _YamlLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader

#: Nodes that alias expansion may produce in one configuration file: ``*defaults`` shared by many tables
#: stays far below it, a "billion laughs" file (nested aliases expanding to 10⁹ nodes) is refused at once.
MAX_ALIAS_NODES = 100_000

# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


def _check_alias_expansion(text: str, file: str, limit: int = MAX_ALIAS_NODES) -> None:
    """Refuse a file whose aliases expand to more than ``limit`` nodes, before anything is composed.

    One pass over the parser's events (constant memory): every node counts 1 and an alias counts the nodes
    of what it names, the expansions of aliases inside that included; the alias that crosses ``limit`` is
    named with its line.  An alias inside the node it names (a recursive structure) is refused too.
    Otherwise the walk over the composed nodes, the constructor and the validation would each visit the
    expanded document (60 s and 3 GB for a small bomb, before this check).
    """
    parser = _YamlLoader(text)
    sizes: dict[str, int] = {}  # anchor → nodes its node expands to
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, node count at its start) of the open collections
    nodes = produced = 0
    starts, ends = (yaml.MappingStartEvent, yaml.SequenceStartEvent), (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    try:
        while not isinstance(event := parser.get_event(), yaml.StreamEndEvent):
            if isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, starts):
                nodes += 1
                open_nodes.append((event.anchor, nodes))
            elif isinstance(event, ends):
                anchor, start = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = nodes - start + 1
            elif isinstance(event, yaml.AliasEvent):
                name, line = event.anchor, event.start_mark.line + 1
                if any(anchor == name for anchor, _ in open_nodes):
                    raise RefdataConfigError(
                        f"recursive alias *{name}: the value of &{name} contains itself",
                        file=file,
                        value=f"*{name}",
                        line=line,
                    )
                size = sizes.get(name, 0)  # an undefined alias is reported by the composer
                nodes += size
                produced += size
                if produced > limit:
                    raise RefdataConfigError(
                        f"alias *{name} expands to {size} nodes, and the file's aliases to more than {limit} in all "
                        "(an alias bomb?); write the values out or share fewer/smaller anchors",
                        file=file,
                        value=f"*{name}",
                        line=line,
                    )
    finally:
        parser.dispose()


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
        if "&" in text:  # without an anchor there is no alias
            _check_alias_expansion(text, file)
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
