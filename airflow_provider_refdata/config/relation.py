"""``WarehouseRelation``: facts that stay in PostgreSQL (a table, a view or a query with parameters).

:meth:`~airflow_provider_refdata.services.hybrid.HybridReferenceService.ensure_references` accepts one
instead of a DataFrame and then runs the coverage check and the backfill entirely in the warehouse
(:mod:`~airflow_provider_refdata.services.relation_facts`): no fact row travels to the worker.

- ``table``: a table, view or materialized view, ``schema.table`` (a part may be double-quoted to hold a dot;
  a bare name means ``public``); it is always quoted as an identifier in SQL.
- ``query``: one ``SELECT`` (or ``WITH … SELECT``, ``VALUES``, ``TABLE``) statement, used as the subquery
  ``(<query>) AS f``; a trailing ``;`` is dropped, anything else after a ``;`` is refused.  ``params`` are
  bound by psycopg: a mapping for ``%(name)s`` placeholders or a sequence for ``%s`` placeholders.  Without
  ``params`` the query is taken literally (a ``%`` needs no doubling).
- ``order_by``: fact columns that give the rows their order (ascending, NULLs last); the "first" row of the
  ``first``, ``max_by`` (ties) and ``template`` aggregations and the first-seen order of an unsorted
  ``concat_distinct`` follow it.  Without it: a plain table's physical row order (``ctid``, i.e. insertion
  order for a table that was only appended to), and for a view or a query the order the relation returns
  its rows in (``row_number() OVER ()``, e.g. the query's own ``ORDER BY``).
- ``work_mem``: the least ``work_mem`` the statements that read the facts run with (default ``64MB``: a
  100,000-key ``GROUP BY`` fits; at PostgreSQL's default 4MB it spills in batches).  A session that already has
  more keeps its own; ``None`` leaves the session's setting alone.  It is raised for those statements only and
  set back after each.

Nothing here touches a database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_refdata.config._common import _check_sql_identifier
from airflow_provider_refdata.exceptions import RefdataConfigError

__all__ = ["WarehouseRelation", "split_relation_name"]

#: Parameter names the in-warehouse statements use for their own values; a query's names may not start so.
RESERVED_PARAM_PREFIX = "refdata_"
_FIRST_KEYWORDS = ("select", "with", "values", "table")
# psycopg's placeholder grammar: "%%", "%(name)s" or "%s" (format s, b or t).
_PLACEHOLDER = re.compile(r"%(?:\(([^)]*)\))?(.)", re.S)
_MEMORY = re.compile(r"[1-9][0-9]{0,9}\s*(kB|MB|GB)")


def split_relation_name(name: str) -> tuple[str, str]:
    """``schema.table`` (or ``table`` → ``public``) into its parts; double quotes around a part are removed.

    :raises ValueError: not one or two non-empty parts, or an unclosed quote.
    """
    text = name.strip()
    parts: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and text[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    if quoted or len(parts) > 2 or not all(p.strip() for p in parts):
        raise ValueError(f"table must be 'schema.table' or 'table', got {name!r}")
    for part in parts:
        _check_sql_identifier(part)
    return ("public", parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _code_only(query: str) -> str:
    """``query`` with string literals, quoted identifiers and dollar quotes as ``x`` and comments as spaces.

    What is left is the statement's own tokens, so a ``;`` or a keyword inside a literal is not mistaken for
    one; every character keeps its position.  Raises ValueError for an unterminated literal or comment.
    """
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch == "-" and query.startswith("--", i):
            end = query.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif ch == "/" and query.startswith("/*", i):
            start, depth, i = i, 1, i + 2
            while i < n and depth:
                if query.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif query.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise ValueError("has an unterminated /* comment")
            out.append(" " * (i - start))
        elif ch in "'\"":
            backslash = ch == "'" and i > 0 and query[i - 1] in "eE" and (i < 2 or not query[i - 2].isalnum())
            j = i + 1
            while True:
                if j >= n:
                    raise ValueError(f"has an unterminated {'string' if ch == chr(39) else 'quoted identifier'}")
                if backslash and query[j] == "\\":
                    j += 2
                    continue
                if query[j] == ch:
                    if query[j + 1 : j + 2] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append("x" * (j + 1 - i))
            i = j + 1
        elif ch == "$" and (match := re.match(r"\$([A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$", query[i:])):
            tag = match.group(0)
            end = query.find(tag, i + len(tag))
            if end < 0:
                raise ValueError(f"has an unterminated dollar-quoted string {tag}")
            out.append("x" * (end + len(tag) - i))
            i = end + len(tag)
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _check_query(query: str) -> str:
    """The query without a trailing ``;``; raises RefdataConfigError unless it is one SELECT-like statement."""
    try:
        code = _code_only(query)
    except ValueError as exc:
        raise RefdataConfigError(f"fact query {exc}", key_path="query") from None
    stripped = code.rstrip()
    while stripped.endswith(";"):
        stripped = stripped[:-1].rstrip()
    if ";" in stripped:
        raise RefdataConfigError(
            "fact query must be a single statement (found ';' followed by more text); give one SELECT",
            key_path="query",
        )
    first = re.match(r"[\s(]*([A-Za-z]+)", stripped)
    if not first or first.group(1).lower() not in _FIRST_KEYWORDS:
        word = first.group(1) if first else stripped.strip()[:20]
        raise RefdataConfigError(
            f"fact query must be a SELECT (or WITH … SELECT, VALUES, TABLE) statement, not {word!r}",
            key_path="query",
            value=word,
        )
    return query[: len(stripped)]


class WarehouseRelation(BaseModel):
    """Facts held in PostgreSQL: a ``table`` (or view) or a ``query`` with ``params``; optional ``order_by``.

    :param table: ``schema.table`` of a table, view or materialized view.
    :param query: one SELECT statement returning the facts.
    :param params: the query's parameters (mapping for ``%(name)s``, sequence for ``%s``).
    :param order_by: fact columns whose ascending order (NULLs last) decides which row comes first.
    :param work_mem: the least ``work_mem`` for the statements that read the facts (``None``: the session's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(None, description="schema.table of a table, view or materialized view.")
    query: str | None = Field(None, description="One SELECT statement returning the facts.")
    params: Mapping[str, Any] | Sequence[Any] | None = Field(None, description="Parameters of the query.")
    order_by: list[str] = Field(default_factory=list, description="Columns giving the fact rows their order.")
    work_mem: str | None = Field("64MB", description="The least work_mem of the statements reading the facts.")

    @field_validator("work_mem")
    @classmethod
    def _check_work_mem(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.fullmatch(value):
            raise RefdataConfigError(
                "work_mem must be a PostgreSQL memory size such as '64MB' (units kB, MB, GB)",
                key_path="work_mem",
                value=value,
            )
        return value

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                split_relation_name(value)
            except ValueError as exc:
                raise RefdataConfigError(str(exc), key_path="table", value=value) from None
        return value

    @field_validator("query")
    @classmethod
    def _check_query_text(cls, value: str | None) -> str | None:
        return None if value is None else _check_query(value)

    @field_validator("params", mode="before")
    @classmethod
    def _check_params(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            raise RefdataConfigError("params must be a mapping or a sequence, not a string", key_path="params")
        if isinstance(value, Mapping):
            clash = [k for k in value if str(k).startswith(RESERVED_PARAM_PREFIX)]
            if clash:
                raise RefdataConfigError(
                    f"query parameter {clash[0]!r}: names starting with {RESERVED_PARAM_PREFIX!r} are reserved",
                    key_path="params",
                    value=clash[0],
                )
            return dict(value)
        return None if value is None else list(value)

    @field_validator("order_by", mode="before")
    @classmethod
    def _check_order_by(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else list(value or [])
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise RefdataConfigError("order_by must name fact columns", key_path="order_by", value=name)
            try:
                _check_sql_identifier(name)
            except ValueError as exc:
                raise RefdataConfigError(str(exc), key_path="order_by", value=name) from None
        return names

    @model_validator(mode="after")
    def _one_source(self) -> WarehouseRelation:
        if (self.table is None) == (self.query is None):
            raise RefdataConfigError("give exactly one of table or query", key_path="table")
        if self.table is not None and self.params:
            raise RefdataConfigError("params only apply to a query", key_path="params")
        return self

    @property
    def qualified_name(self) -> tuple[str, str] | None:
        """``(schema, table)`` for a table relation, else ``None``."""
        return None if self.table is None else split_relation_name(self.table)

    def describe(self) -> str:
        """A short description for logs and messages (never the parameters' values)."""
        if self.table is not None:
            schema, table = split_relation_name(self.table)
            return f"{schema}.{table}"
        text = " ".join((self.query or "").split())
        return f"query {text[:60]!r}" + ("…" if len(text) > 60 else "")

    def bound_query(self) -> tuple[str, dict[str, Any]]:
        """The query text with psycopg named placeholders only, and its parameters.

        Positional ``%s`` placeholders become ``%(refdata_q<i>)s``; without parameters every ``%`` is doubled,
        so the text can sit in a statement that binds the service's own (``refdata_``-named) parameters.

        :raises RefdataConfigError: placeholders do not match ``params`` (mixed, or wrong count).
        """
        text = self.query or ""
        if not self.params:
            return text.replace("%", "%%"), {}
        if isinstance(self.params, Mapping):
            for match in _PLACEHOLDER.finditer(text):
                if match.group(2) != "%" and match.group(1) is None:
                    raise RefdataConfigError("fact query mixes %s placeholders with named params", key_path="params")
            return text, dict(self.params)
        values = list(self.params)
        out: list[str] = []
        bound: dict[str, Any] = {}
        last = 0
        for match in _PLACEHOLDER.finditer(text):
            out.append(text[last : match.start()])
            last = match.end()
            if match.group(2) == "%" and match.group(1) is None:
                out.append("%%")
                continue
            if match.group(1) is not None:
                raise RefdataConfigError("fact query mixes %(name)s placeholders with positional params")
            name = f"{RESERVED_PARAM_PREFIX}q{len(bound)}"
            if len(bound) >= len(values):
                raise RefdataConfigError(
                    f"fact query has more placeholders than the {len(values)} params", key_path="params"
                )
            bound[name] = values[len(bound)]
            out.append(f"%({name}){match.group(2)}")
        out.append(text[last:])
        if len(bound) != len(values):
            raise RefdataConfigError(
                f"fact query has {len(bound)} placeholder(s) for {len(values)} params", key_path="params"
            )
        return "".join(out), bound
