"""YamlFileSource: versioned reference data files, read as the person wrote them, in constant memory.

A reference data file is a mapping with ``schema_version`` (checked against the configuration),
``description`` (ignored) and ``data``: a list of mappings, one per row, column → value.  Other top-level
keys are allowed and ignored (a place for anchors that rows merge with ``<<: *defaults``).

How values are read (docs/configuration.md, "Reference data files: how values are read"):

* **A scalar is its text exactly as written** — no YAML 1.1 implicit typing: ``0123``, ``12:30``, ``NO``,
  ``1_000``, ``1.50``, ``2024-01-15``, ``0x1F`` are those characters, never 83, 750, false, 1000, 1.5, a date
  or 31.  Quoted and block scalars are their value.  Text is trimmed (``str.strip``) like every source's.
  PostgreSQL's COPY then reads the text into the target column's type (the stage and the target have the
  column's own type for non-text columns): ``0123`` → 123 in an ``integer`` column and ``'0123'`` in a
  ``text`` one; ``true/false/yes/no/on/off/1/0`` (any case) in a ``boolean`` column; ``1.50`` keeps its scale
  in ``numeric``; a value that is not valid input for the type fails the table.
* **NULL** is a plain (unquoted) ``~``, ``null``, ``Null``, ``NULL``, an empty value, or ``.nan``/``.NaN``/
  ``.NAN`` (NaN is NULL for every source); quoted, these are text.  An empty quoted string stays ``''``.
* **A list or mapping** goes into a ``json``/``jsonb`` column as JSON (nested plain scalars are typed the
  JSON way when they spell a JSON number, ``true``/``false`` (any of YAML 1.2's spellings) or a null, else
  they are strings: ``{a: 1.50, b: 0123, c: "1"}`` → ``{"a": 1.50, "b": "0123", "c": "1"}``) and a list into
  an array column (``text[]``, ``integer[]`` …) as a PostgreSQL array literal.  Into any other column, or
  when the reader was not told the target's types (:attr:`~.sources.SourceRead.target_types`, which the
  service fills before it reads the rows), it is refused naming the file, line, row and column.
* **Refused** (the table is skipped with :class:`~.sources.SourceSkipped`, nothing changes): a key twice in
  one mapping (PyYAML would silently keep the last one), a row without its key or with an unknown column, a
  NUL character (PostgreSQL text cannot hold it), an undefined or recursive alias, an explicit tag other than
  YAML's standard scalar ones, nesting deeper than :data:`MAX_DEPTH`, and alias expansion producing more than
  :attr:`YamlFileSource.max_alias_nodes` nodes in one row (or in one other top-level value): a "billion
  laughs" file is refused at once, in constant memory.  Every message names the file, the line, the key path
  (``data[3].code``) and the value.

The file is **streamed**: libyaml's parser emits events that this module turns into one row at a time, and
rows go to the service in ``batch_size`` batches, so memory depends on the batch size, not on the file size
(a 200 MB file of 2.5 M rows stays well under 300 MB RSS).  When the configuration lists no ``columns``, the
file is read twice: once for the set of columns (the union of the rows' keys, in order of appearance), once
for the rows.  Plain Python; nothing here imports Airflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import yaml

from airflow_provider_refdata.services.sources import SourceRead, SourceSkipped

if TYPE_CHECKING:
    from airflow_provider_refdata.config import SyncTableConfig

#: Nodes that alias expansion may produce in one data row (or one other top-level value) of a data file.
MAX_ALIAS_NODES = 10_000
#: Deepest nesting of lists and mappings in a data file (a row is depth 1).
MAX_DEPTH = 64

_EventParser: Callable[[BinaryIO], Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it

_NULL_PLAIN = frozenset({"", "~", "null", "Null", "NULL", ".nan", ".NaN", ".NAN"})
_JSON_TRUE = frozenset({"true", "True", "TRUE"})
_JSON_FALSE = frozenset({"false", "False", "FALSE"})
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_TAG = "tag:yaml.org,2002:"
# Explicit scalar tags taken as text (``!!str 0123`` is '0123'); ``!!null`` is NULL; anything else is refused.
_TEXT_TAGS = frozenset({"!", *(_TAG + t for t in ("str", "int", "float", "bool", "timestamp", "binary"))})
_NULL_TAG = _TAG + "null"
_MERGE_KEY = "<<"

_Scalar, _Alias = yaml.ScalarEvent, yaml.AliasEvent
_SeqStart, _SeqEnd = yaml.SequenceStartEvent, yaml.SequenceEndEvent
_MapStart, _MapEnd = yaml.MappingStartEvent, yaml.MappingEndEvent


class _Plain(str):
    """A plain (unquoted) scalar inside a list or mapping value: JSON output may type it (number, boolean)."""

    __slots__ = ()


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _DataFile:
    """The event-driven reader of one data file: :meth:`rows` yields ``(index, line, row, key lines)``."""

    def __init__(self, stream: BinaryIO, label: str, expected_version: str, max_alias_nodes: int) -> None:
        self._parser = _EventParser(stream)
        self._get = self._parser.get_event
        self.label = label
        self.expected_version = expected_version
        self.max_alias_nodes = max_alias_nodes
        self._anchors: dict[str, tuple[Any, int]] = {}  # name → (value, nodes it expands to)
        self._building: set[str] = set()
        self._nodes = 0  # nodes composed in the current scope, alias expansion included
        self._alias_nodes = 0  # of which produced by alias expansion

    def close(self) -> None:
        self._parser.dispose()

    def refuse(self, line: int | None, path: Sequence[str | int], message: str) -> SourceSkipped:
        where = f"reference file {self.label}" + (f", line {line}" if line is not None else "")
        at = _key_path(path)
        return SourceSkipped(f"{where}: {at + ': ' if at else ''}{message}", source=self.label)

    # -- the document ---------------------------------------------------------------------------------------

    def rows(self) -> Iterator[tuple[int, int, dict[str, Any], dict[str, int]]]:
        get = self._get
        get()  # StreamStart
        event = get()
        if type(event) is yaml.StreamEndEvent:
            raise self.refuse(None, (), "the top level must be a mapping (schema_version, data); the file is empty")
        event = get()  # after DocumentStart
        if type(event) is not _MapStart:
            raise self.refuse(
                event.start_mark.line + 1, (), "the top level must be a mapping (schema_version, description, data)"
            )
        seen: dict[str, int] = {}
        while True:
            key_event = get()
            if type(key_event) is _MapEnd:
                break
            line = key_event.start_mark.line + 1
            if type(key_event) is not _Scalar:
                raise self.refuse(line, (), "a top-level key must be a plain name")
            key = key_event.value
            if key in seen:
                raise self.refuse(line, (key,), f"duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = line
            value_event = get()
            self._nodes = self._alias_nodes = 0
            if key == "data":
                yield from self._data(value_event)
            else:
                value = self._compose(value_event, (), key, 1, True)
                if key == "schema_version":
                    self._check_version(value, line)
        get()  # DocumentEnd
        if type(get()) is yaml.DocumentStartEvent:
            raise self.refuse(None, (), "the file holds more than one YAML document; expected one")
        if "data" not in seen:
            raise self.refuse(None, ("data",), "'data' must be a list of mappings (the key is missing)")
        if "schema_version" not in seen:
            self._check_version(None, None)

    def _check_version(self, version: Any, line: int | None) -> None:
        if version is None or str(version) != str(self.expected_version):
            where = f"reference file {self.label}" + (f", line {line}," if line is not None else "")
            raise SourceSkipped(
                f"{where} declares schema_version {None if version is None else str(version)!r}, the "
                f"configuration expects {self.expected_version!r}",
                source=self.label,
            )

    def _data(self, event: Any) -> Iterator[tuple[int, int, dict[str, Any], dict[str, int]]]:
        if type(event) is not _SeqStart:
            raise self.refuse(event.start_mark.line + 1, ("data",), "'data' must be a list of mappings")
        get = self._get
        index = 0
        while True:
            event = get()
            cls = type(event)
            if cls is _SeqEnd:
                return
            self._nodes = self._alias_nodes = 0
            line = event.start_mark.line + 1
            lines: dict[str, int] = {}
            if cls is _MapStart:
                row = self._mapping(event, ("data",), index, 1, False, lines)
            else:
                row = self._compose(event, ("data",), index, 1, False)
                if not isinstance(row, dict):
                    raise self.refuse(
                        line, ("data", index), f"'data' must be a list of mappings; this row is {_short(row)}"
                    )
                lines = dict.fromkeys(row, line)
            yield index, line, row, lines
            index += 1

    # -- values ---------------------------------------------------------------------------------------------

    def _compose(self, event: Any, parent: tuple, key: str | int, depth: int, nested: bool) -> Any:
        """The value of the node starting with ``event`` (at ``parent`` + ``key``)."""
        cls = type(event)
        if cls is _Scalar:
            self._nodes += 1
            if event.implicit[0]:  # plain, untagged
                value = event.value
                value = None if value in _NULL_PLAIN else (_Plain(value) if nested else value)
            elif event.tag is None or event.implicit[1] or event.tag in _TEXT_TAGS:
                value = event.value
            elif event.tag == _NULL_TAG:
                value = None
            else:
                raise self.refuse(
                    event.start_mark.line + 1,
                    (*parent, key),
                    f"unsupported tag {event.tag!r} on {_short(event.value)} (write the value as plain text)",
                )
            if event.anchor is not None:
                self._anchors[event.anchor] = (value, 1)
            return value
        if cls is _Alias:
            return self._alias(event, parent, key)
        if cls is _MapStart:
            return self._mapping(event, parent, key, depth, True, {})
        if cls is _SeqStart:
            return self._sequence(event, parent, key, depth)
        raise self.refuse(event.start_mark.line + 1, (*parent, key), f"unexpected YAML event {cls.__name__}")

    def _alias(self, event: Any, parent: tuple, key: str | int) -> Any:
        name = event.anchor
        line = event.start_mark.line + 1
        if name in self._building:
            raise self.refuse(line, (*parent, key), f"recursive alias *{name} (a value cannot contain itself)")
        if name not in self._anchors:
            raise self.refuse(line, (*parent, key), f"undefined alias *{name} (no &{name} before it)")
        value, size = self._anchors[name]
        self._nodes += size
        self._alias_nodes += size
        if self._alias_nodes > self.max_alias_nodes:
            raise self.refuse(
                line,
                (*parent, key),
                f"alias *{name} expands to {size} nodes, and aliases here expand to more than "
                f"{self.max_alias_nodes} nodes in all (an alias bomb?); refused",
            )
        return value

    def _enter(self, event: Any, parent: tuple, key: str | int, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise self.refuse(
                event.start_mark.line + 1, (*parent, key), f"lists/mappings nested deeper than {MAX_DEPTH} levels"
            )
        if event.anchor is not None:
            self._building.add(event.anchor)
        self._nodes += 1
        return self._nodes

    def _leave(self, event: Any, value: Any, start: int) -> None:
        if event.anchor is not None:
            self._building.discard(event.anchor)
            self._anchors[event.anchor] = (value, self._nodes - start + 1)

    def _sequence(self, start: Any, parent: tuple, key: str | int, depth: int) -> list[Any]:
        before = self._enter(start, parent, key, depth)
        path = (*parent, key)
        items: list[Any] = []
        get = self._get
        while True:
            event = get()
            if type(event) is _SeqEnd:
                break
            items.append(self._compose(event, path, len(items), depth + 1, True))
        self._leave(start, items, before)
        return items

    def _mapping(
        self, start: Any, parent: tuple, key: str | int, depth: int, nested: bool, lines: dict[str, int]
    ) -> dict[str, Any]:
        """A mapping; ``lines`` gets each key's line.  ``nested=False`` for a data row (plain values stay str)."""
        before = self._enter(start, parent, key, depth)
        result: dict[str, Any] = {}
        merges: list[tuple[Any, int]] = []
        get = self._get
        while True:
            key_event = get()
            cls = type(key_event)
            if cls is _MapEnd:
                break
            line = key_event.start_mark.line + 1
            if cls is not _Scalar:
                raise self.refuse(
                    line, (*parent, key), "a key must be a plain value (a column name), not a list, mapping or alias"
                )
            name = key_event.value
            value_event = get()
            if name == _MERGE_KEY and key_event.implicit[0]:
                merges.append((self._compose(value_event, (*parent, key), name, depth + 1, nested), line))
                continue
            if name in lines:
                raise self.refuse(
                    line,
                    (*parent, key, name),
                    f"duplicate key {name!r} (first at line {lines[name]}; YAML would silently keep only the last "
                    "value)",
                )
            lines[name] = line
            if type(value_event) is _Scalar and value_event.implicit[0] and value_event.anchor is None:
                self._nodes += 1  # the common case, inlined: a plain scalar
                value = value_event.value
                result[name] = None if value in _NULL_PLAIN else (_Plain(value) if nested else value)
            else:
                result[name] = self._compose(value_event, (*parent, key), name, depth + 1, nested)
        for merged, line in merges:  # explicit keys win; earlier merged mappings win over later ones
            for source in merged if isinstance(merged, list) else [merged]:
                if not isinstance(source, dict):
                    raise self.refuse(
                        line,
                        (*parent, key, _MERGE_KEY),
                        f"'<<' merges a mapping or a list of them, not {_short(source)}",
                    )
                for name, value in source.items():
                    if name not in result:
                        result[name] = value
                        lines[name] = line
        self._leave(start, result, before)
        return result


# ----------------------------------------------------------------------------------------------------------
# Values → COPY input
# ----------------------------------------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    """JSON for a list/mapping value (nested plain scalars typed when they spell a JSON number/boolean)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}: {_json_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    if type(value) is _Plain:
        if value in _JSON_TRUE:
            return "true"
        if value in _JSON_FALSE:
            return "false"
        if _JSON_NUMBER.fullmatch(value):
            return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def _array_text(value: list[Any], element_type: str, refuse: Callable[[str], SourceSkipped]) -> str:
    """A PostgreSQL array literal (``{"a","b",NULL}``; nested lists are nested arrays)."""
    json_elements = element_type in ("json", "jsonb")
    parts = []
    for item in value:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list) and not json_elements:
            parts.append(_array_text(item, element_type, refuse))
        else:
            if json_elements:
                text = _json_text(item)
            elif isinstance(item, dict):
                raise refuse(f"holds a mapping {_short(item)}, which an array of {element_type} cannot hold")
            else:
                text = str(item).strip()
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _refuser(reader: _DataFile, line: int, path: tuple) -> Callable[[str], SourceSkipped]:
    return lambda message: reader.refuse(line, path, message)


def _nested_value(value: Any, target_type: str | None, refuse: Callable[[str], SourceSkipped]) -> str:
    """A list or mapping value as COPY input for a column of ``target_type`` (``format_type`` text), or refused."""
    kind = "a list" if isinstance(value, list) else "a mapping"
    base = target_type.strip().lower() if target_type else None
    if base in ("json", "jsonb"):
        text = _json_text(value)
    elif base is not None and base.endswith("[]") and isinstance(value, list):
        element = base
        while element.endswith("[]"):
            element = element[:-2]
        text = _array_text(value, element, refuse)
    elif target_type is None:
        raise refuse(
            f"is {kind} ({_short(value)}); a list or mapping goes only into a json/jsonb column (as JSON) or an "
            "array column (a list, as an array), and the target's column types were not given to the reader"
        )
    else:
        raise refuse(
            f"is {kind} ({_short(value)}), which a column of type {target_type} cannot hold; write one (quoted) text "
            "value, "
            "or make the column json/jsonb" + (" or an array" if kind == "a list" else "")
        )
    if "\x00" in text:
        raise refuse("contains a NUL character (\\0), which PostgreSQL cannot store")
    return text


# ----------------------------------------------------------------------------------------------------------
# The source
# ----------------------------------------------------------------------------------------------------------


@dataclass
class YamlFileSource:
    """Reads versioned reference data files (``schema_version``, ``description``, ``data: [ {...}, ... ]``).

    See the module docstring for how values are read and what is refused.

    :param base_path: folder that relative ``file_path`` values resolve against (the configuration loader
        already makes them absolute; this matters for hand-built configurations).
    :param max_alias_nodes: nodes alias expansion may produce in one row (or one other top-level value).
    """

    base_path: Path | str | None = None
    max_alias_nodes: int = MAX_ALIAS_NODES

    def resolve(self, file_path: Path | str) -> Path:
        path = Path(file_path)
        if not path.is_absolute() and self.base_path is not None:
            path = Path(self.base_path) / path
        return path

    def _tried(self, source: Any, path: Path) -> list[Path]:
        tried = [path]
        for candidate in getattr(source, "tried_paths", None) or []:
            candidate = self.resolve(candidate)
            if candidate not in tried:
                tried.append(candidate)
        return tried

    @contextmanager
    def _open(self, table_config: SyncTableConfig) -> Iterator[_DataFile]:
        source = table_config.source_config
        path = self.resolve(source.file_path)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            tried = self._tried(source, path)
            where = f" (tried: {', '.join(map(str, tried))})" if len(tried) > 1 else ""
            raise SourceSkipped(f"reference file not found: {path}{where}", source=str(path)) from None
        except OSError as exc:
            raise SourceSkipped(f"reference file {path} cannot be read: {exc}", source=str(path)) from None
        reader = _DataFile(stream, str(path), str(source.schema_version), self.max_alias_nodes)
        try:
            yield reader
        except yaml.MarkedYAMLError as exc:
            raise SourceSkipped(_syntax_message(path, exc), source=str(path)) from None
        except yaml.YAMLError as exc:  # reader errors: not UTF-8, control characters
            raise SourceSkipped(f"reference file {path} is not valid YAML: {exc}", source=str(path)) from None
        except OSError as exc:
            raise SourceSkipped(f"reference file {path} cannot be read: {exc}", source=str(path)) from None
        finally:
            reader.close()
            stream.close()

    def _checked_rows(
        self, table_config: SyncTableConfig, reader: _DataFile
    ) -> Iterator[tuple[int, int, dict[str, Any], dict[str, int]]]:
        """The file's rows, each checked for its key and (with configured ``columns``) unknown columns."""
        known = table_config.source_config.columns
        known_set = set(known) if known is not None else None
        primary_key = list(table_config.primary_key)
        for index, line, row, lines in reader.rows():
            for key in primary_key:
                value = row.get(key)
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise reader.refuse(
                        lines.get(key, line),
                        (),
                        f"data[{index}] has no value for primary key column {key!r}"
                        + ("" if value is None else f" (got {_short(value)})"),
                    )
            if known_set is not None:
                for column in row:
                    if column not in known_set:
                        raise reader.refuse(
                            lines[column],
                            (),
                            f"data[{index}] has unknown column {column!r} (known: {', '.join(known)})",
                        )
            yield index, line, row, lines

    def columns(self, table_config: SyncTableConfig) -> list[str]:
        """The staging columns: the configured ``columns``, else every key of the rows in order of appearance
        (one streaming pass over the file)."""
        known = table_config.source_config.columns
        if known is not None:
            return list(known)
        columns: dict[str, None] = {}
        with self._open(table_config) as reader:
            for _, _, row, _ in self._checked_rows(table_config, reader):
                for column in row:
                    if column not in columns:
                        columns[column] = None
        return list(columns)

    def _batches(
        self, table_config: SyncTableConfig, read: SourceRead, batch_size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        columns = read.columns
        target_types: Mapping[str, str] = read.target_types or {}
        types_known = read.target_types is not None
        size = max(batch_size, 1)
        batch: list[tuple[Any, ...]] = []
        with self._open(table_config) as reader:
            for index, line, row, lines in self._checked_rows(table_config, reader):
                values: list[Any] = []
                for column in columns:
                    value = row.get(column)
                    if value is None:
                        values.append(None)
                        continue
                    if isinstance(value, str):
                        value = str.strip(value)
                        if "\x00" in value:
                            raise reader.refuse(
                                lines.get(column, line),
                                ("data", index, column),
                                f"{_short(value)} contains a NUL character (\\0), which PostgreSQL cannot store",
                            )
                        values.append(value)
                        continue
                    refuse = _refuser(reader, lines.get(column, line), ("data", index, column))
                    values.append(_nested_value(value, target_types.get(column) if types_known else None, refuse))
                batch.append(tuple(values))
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def load(self, table_config: SyncTableConfig) -> tuple[list[str], list[tuple]]:
        """Read and check the whole file into memory: ``(columns, rows)`` or :class:`SourceSkipped`.

        For tests and small files; the sync uses :meth:`stream`, which holds one batch at a time.
        """
        with self.stream(table_config, None, 10_000) as read:
            return read.columns, [row for batch in read.batches for row in batch]

    @contextmanager
    def stream(self, table_config: SyncTableConfig, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Open a streaming read of the whole file (``since`` is ignored) in ``batch_size`` row batches.

        The columns are known (and the file checked, when they come from the rows) before the read is
        yielded; the rows are parsed while the consumer iterates ``batches``, after it has set
        :attr:`~.sources.SourceRead.target_types`.  A problem found mid-file raises :class:`SourceSkipped`
        from the iteration: the consumer's transaction rolls back, so nothing changes.

        :param table_config: a ``config_file`` table entry.
        :param since: ignored (files carry no change times).
        :param batch_size: rows per batch.
        """
        columns = self.columns(table_config)
        path = self.resolve(table_config.source_config.file_path)
        read = SourceRead(columns=columns, batches=iter(()), description=f"reference file {path}")
        read.batches = self._batches(table_config, read, batch_size)
        yield read


def _syntax_message(path: Path, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    message = f"reference file {path} is not valid YAML{where}: {exc.problem or exc.context or 'syntax error'}"
    if exc.context and exc.problem:
        message += f" ({exc.context}"
        if exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            message += f" started at line {exc.context_mark.line + 1}"
        message += ")"
    return message
