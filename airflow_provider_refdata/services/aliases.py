"""Key aliases: map remapped placeholder keys in the facts to their authoritative keys.

When a steward remaps the placeholder ``P0O1`` of ``business.年金计划`` to the authoritative ``P001``, the pair
is kept in ``refdata.key_alias``.  From then on the facts' ``P0O1`` must become ``P001`` before coverage is
measured, or the typo comes back as a new placeholder with the next load.

:func:`apply_key_aliases` does that for a fact frame: one query reads the aliases of every reference table
of the given FK configurations, and each FK's ``source_column`` is rewritten **in place** — a value whose
normalised text (the coverage's own normalisation,
:func:`~airflow_provider_refdata.services.derivation.normalize_codes`: trimmed, the FK's blank tokens and
``None``/``NaN``/empty blank) equals a ``from_key`` becomes its ``to_key``.  Blank values are never touched.
The work is per distinct value (factorised in pandas), then one vectorised assignment; a table without
aliases costs nothing beyond the query, and a frame is not even normalised then.  The normalised codes the
mapping computes are handed on to the coverage (``map_key_aliases(normalized=…)``), so a column with
aliases is still factorised once per call.

The column keeps its dtype when the targets can be stored in it exactly (an ``int64`` column of plan numbers
stays ``int64`` when the targets are integers whose text is the key); otherwise (a target ``"P001"`` or
``"01002"`` in a numeric column) the column becomes ``object`` with the targets as text.  A categorical
column gains the target categories.  A chain of aliases (``A → B`` and ``B → C``) maps ``A`` to ``C``.

:class:`~airflow_provider_refdata.services.hybrid.HybridReferenceService` maps the facts this way before its
FK loop (see its module docstring for the transaction and lock scope of the read).  The same rewrite for a
warehouse fact table is :func:`rewrite_table_aliases` (one ``UPDATE … FROM refdata.key_alias`` per column).

Plain Python: no Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg

from airflow_provider_refdata.config import ForeignKeyConfig
from airflow_provider_refdata.exceptions import RefdataError
from airflow_provider_refdata.services.derivation import normalize_codes
from airflow_provider_refdata.warehouse.aliases import read_aliases, rewrite_fact_column
from airflow_provider_refdata.warehouse.catalog import table_info
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.state import lock_names

__all__ = [
    "KeyAliases",
    "apply_key_aliases",
    "map_column",
    "map_key_aliases",
    "read_key_aliases",
    "refresh_key_aliases",
    "rewrite_table_aliases",
]


@dataclass(frozen=True)
class KeyAliases:
    """The aliases read for one call: ``{table: {from_key: to_key}}`` (chains resolved).

    ``exists`` is false when ``refdata.key_alias`` did not exist; ``tables`` then is empty.
    """

    exists: bool
    tables: dict[str, dict[str, str]]

    def for_table(self, table: str) -> dict[str, str]:
        """The aliases of one schema-qualified table (empty when it has none)."""
        return self.tables.get(table, {})


def _resolve_chains(aliases: Mapping[str, str]) -> dict[str, str]:
    """Follow ``A → B → C`` to ``A → C`` (a remap collapses chains itself; rows written otherwise may not).

    Runs once per alias, never per fact row; a cycle (only possible by hand) stops where it would repeat.
    """
    resolved: dict[str, str] = {}
    for start, target in aliases.items():
        seen = {start}
        while target in aliases and target not in seen:
            seen.add(target)
            target = aliases[target]
        resolved[start] = target
    return {k: v for k, v in resolved.items() if k != v}


def read_key_aliases(pg: psycopg.Connection, fk_configs: Iterable[ForeignKeyConfig]) -> KeyAliases:
    """The aliases of the FK configurations' reference tables, in one query (inside the caller's transaction).

    :param pg: a psycopg connection; the read runs in whatever transaction the caller holds.
    :param fk_configs: the FK configurations whose reference tables matter.
    """
    found = read_aliases(pg, [fk.qualified_table for fk in fk_configs])
    if found is None:
        return KeyAliases(exists=False, tables={})
    return KeyAliases(exists=True, tables={table: _resolve_chains(pairs) for table, pairs in found.items()})


def _typed(texts: np.ndarray, dtype: object) -> object | None:
    """``texts`` as values of ``dtype`` when each converts and its normalised text is exactly the key again."""
    try:
        converted = pd.Series(texts, dtype=object).astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return None
    codes, uniques = normalize_codes(converted)
    back = np.append(uniques, None)[codes]
    return converted.array if bool((back == texts).all()) else None


def _assigned(values: pd.Series, rows: np.ndarray, positions: np.ndarray, targets: np.ndarray) -> pd.Series:
    """A copy of ``values`` with ``rows`` set to ``targets[positions]``, in the column's dtype when possible."""
    used, inverse = np.unique(positions, return_inverse=True)  # the distinct targets the rows need
    texts = targets[used]
    out = values.copy()
    typed: object = texts
    if isinstance(values.dtype, pd.CategoricalDtype):
        known = set(values.cat.categories)
        new = [t for t in texts if t not in known]
        out = out.cat.add_categories(new) if new else out
    elif not (pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype)):
        typed = _typed(texts, values.dtype)  # numbers (and other typed columns): only an exact round trip
    if typed is not None:
        try:
            out.iloc[rows] = np.asarray(typed)[inverse]
            return out
        except (TypeError, ValueError):
            pass  # the dtype refuses the value: store the key as text below
    out = values.astype(object)
    out.iloc[rows] = texts[inverse]
    return out


#: ``normalize_codes`` of an FK column with its blank tokens: ``(codes, uniques)``.
Normalized = tuple[np.ndarray, np.ndarray]


def _normalized_after(
    codes: np.ndarray, mapped: np.ndarray, used: np.ndarray, blank_tokens: Iterable[str]
) -> Normalized | None:
    """The column's ``normalize_codes`` after the mapping, from the codes before it (no second pass over the
    rows): the distinct texts with their targets (``mapped``), factorised once more (a target can merge with
    a key already there).  ``None`` when a target ``used`` would not normalise to itself (surrounding spaces,
    a blank token)."""
    blank = set(blank_tokens)
    if any(t != t.strip() or not t or t in blank for t in set(used)):
        return None
    norm_codes, norm_uniques = pd.factorize(pd.Index(mapped, dtype=object))
    lookup = np.append(norm_codes, -1)  # a blank row (code -1) stays blank
    return lookup[codes], np.asarray(norm_uniques, dtype=object)


def map_column(
    df: pd.DataFrame, column: str, aliases: Mapping[str, str], blank_tokens: Iterable[str] = ()
) -> tuple[int, Normalized | None]:
    """Rewrite ``df[column]`` in place with ``aliases`` (``{from_key: to_key}``).

    Returns the rows mapped and the column's normalised codes as they are now (``None`` when the column was
    not normalised: no aliases or no such column), so the coverage need not factorise the column again.

    :param df: the fact frame (its column is replaced by the mapped one).
    :param column: the fact column.
    :param aliases: normalised key text → target key.
    :param blank_tokens: values that count as blank (never mapped), as for the FK's coverage.
    """
    if not aliases or column not in df.columns:
        return 0, None
    values = df[column]
    codes, uniques = normalize_codes(values, blank_tokens)
    sources = pd.Index(list(aliases), dtype=object)
    targets = np.asarray(list(aliases.values()), dtype=object)
    per_unique = sources.get_indexer(pd.Index(uniques, dtype=object))  # alias position, -1 for none
    hit = per_unique >= 0
    if not hit.any():
        return 0, (codes, uniques)
    per_row = np.append(per_unique, -1)[codes]  # a blank row (code -1) indexes the appended -1
    rows = np.flatnonzero(per_row >= 0)
    df[column] = _assigned(values, rows, per_row[rows], targets)
    mapped = uniques.copy()
    mapped[hit] = used = targets[per_unique[hit]]
    return len(rows), _normalized_after(codes, mapped, used, blank_tokens)


def map_key_aliases(
    df: pd.DataFrame,
    fk_configs: Sequence[ForeignKeyConfig],
    aliases: KeyAliases,
    *,
    normalized: dict[str, Normalized] | None = None,
) -> dict[str, int]:
    """Rewrite each FK's ``source_column`` of ``df`` in place with its table's aliases.

    Returns ``{fk name: fact rows mapped}`` for every configuration (0 without aliases or without the column,
    whose absence the coverage reports).  Configurations are applied in the given order.

    :param df: the fact frame.
    :param fk_configs: the FK configurations.
    :param aliases: the aliases read by :func:`read_key_aliases`.
    :param normalized: filled with ``{fk name: normalised codes of its column, as mapped}`` for the columns
        that were normalised and are still current (a later FK mapping the same column drops the earlier
        ones), for :func:`~airflow_provider_refdata.services.derivation.extract_keys`.
    """
    counts: dict[str, int] = {}
    for fk in fk_configs:
        counts[fk.name], codes = map_column(
            df, fk.source_column, aliases.for_table(fk.qualified_table), fk.blank_tokens
        )
        if normalized is None:
            continue
        if counts[fk.name]:
            for other in fk_configs:
                if other.source_column == fk.source_column:
                    normalized.pop(other.name, None)
        if codes is not None:
            normalized[fk.name] = codes
    return counts


def apply_key_aliases(conn: WarehouseLike, df: pd.DataFrame, fk_configs: Sequence[ForeignKeyConfig]) -> dict[str, int]:
    """Map the remapped placeholder keys in ``df`` to their authoritative keys, in place.

    One query reads ``refdata.key_alias`` for all the configurations' reference tables (nothing when the
    table does not exist); then each FK's ``source_column`` is rewritten as described in the module
    docstring.  Returns ``{fk name: fact rows mapped}`` for every configuration.

    :param conn: the warehouse (psycopg connection, PostgresHook, SQLAlchemy Connection/Engine, DSN); inside
        a caller's transaction the read is a savepoint of it.
    :param df: the fact frame, rewritten in place.
    :param fk_configs: the FK configurations.
    """
    with warehouse_connection(conn) as pg, pg.transaction():
        aliases = read_key_aliases(pg, fk_configs)
    return map_key_aliases(df, fk_configs, aliases)


def refresh_key_aliases(pg: psycopg.Connection, df: pd.DataFrame, fk: ForeignKeyConfig, aliases: KeyAliases) -> int:
    """Under the FK's table lock, re-read the table's aliases and map ``df`` again if a remap committed since.

    For a call whose table units each commit on their own (an idle connection): the aliases read before the
    loop may predate a remap that committed before this unit took its lock; re-reading them here makes the
    unit's coverage consistent with its table.  Returns the rows mapped now (0 when nothing changed).

    :param pg: the connection inside the unit's transaction, holding the table's lock.
    :param df: the fact frame (rewritten in place when the aliases changed).
    :param fk: the unit's FK configuration.
    :param aliases: what :func:`read_key_aliases` read before the loop.
    """
    now = read_key_aliases(pg, [fk]).for_table(fk.qualified_table)
    if now == aliases.for_table(fk.qualified_table):
        return 0
    return map_column(df, fk.source_column, now, fk.blank_tokens)[0]


def rewrite_table_aliases(
    conn: WarehouseLike, schema: str, table: str, fk_configs: Sequence[ForeignKeyConfig]
) -> dict[str, int]:
    """Rewrite the aliased keys in a warehouse fact table, one ``UPDATE … FROM refdata.key_alias`` per FK column.

    For facts staged in a table that is loaded into the fact table next: after the rewrite its FK columns
    hold the authoritative keys.  One transaction, holding the reference tables' locks (the ones a remap
    takes), so a remap committing meanwhile is either fully applied or not at all.  Each value follows one
    alias (a remap collapses chains; the frame's mapping also follows hand-written ones).  FK configurations
    whose column the table lacks are left out.  Returns ``{"schema.table.column": rows updated}``.

    :param conn: the warehouse.
    :param schema: the fact table's schema.
    :param table: the fact table.
    :param fk_configs: the FK configurations whose columns to rewrite (e.g. those with remapped values).
    """
    counts: dict[str, int] = {}
    with warehouse_connection(conn) as pg, pg.transaction():
        info = table_info(pg, schema, table)
        if info is None:
            raise RefdataError(f"fact table {schema}.{table} does not exist")
        lock_names(pg, [fk.qualified_table for fk in fk_configs])
        for fk in fk_configs:
            if not info.has_column(fk.source_column):
                continue
            column = info.columns[fk.source_column]
            name = f"{schema}.{table}.{fk.source_column}"
            rows = rewrite_fact_column(pg, schema, table, column, fk.qualified_table, sorted(fk.blank_tokens))
            counts[name] = counts.get(name, 0) + rows
    return counts
