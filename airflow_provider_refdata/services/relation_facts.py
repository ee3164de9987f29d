"""Facts that stay in PostgreSQL: the in-warehouse side of ``ensure_references`` for a ``WarehouseRelation``.

:class:`RelationFacts` stands in for the fact DataFrame in
:meth:`~airflow_provider_refdata.services.backfill.GenericBackfillService.process_table`: the same unit
(lock, savepoint, coverage join, candidate stage, type and length checks, ``INSERT … ON CONFLICT DO
NOTHING``, placeholder provenance) runs, but the work that touches fact rows happens in SQL
(:mod:`~airflow_provider_refdata.warehouse.relation_keys`):

1. **keys** (:meth:`RelationFacts.extract_keys`, inside the FK's unit, under its lock when it writes): one
   ``GROUP BY`` of the raw FK column into a temporary map table (raw value, fact rows, normalised key after
   the key aliases and blank tokens, whether this FK's aliases mapped it) — ``total_fk_values``,
   ``blank_rows`` and ``remapped_values`` come from it;
2. the **key stage** (:meth:`RelationFacts.stage_keys`) is filled from the map table with one ``INSERT …
   SELECT`` instead of COPY: the same ``(_i, _k)`` stage the coverage join reads, so coverage and backfill
   statements are the DataFrame path's own;
3. **derivation** (:meth:`RelationFacts.derive_rows`) of the selected (missing) keys only, planned by
   :meth:`RelationFacts.plan`:

   - an output over the FK's own column is the key itself (a template such as ``待确认 {产品线代码}`` reads
     nothing more);
   - when every other output is a ``first`` (a copied column or a template placeholder) and the facts are a
     table in physical order, step 1's ``GROUP BY`` also keeps each such column's first non-NULL row per raw
     value (``min(ctid)``) and the values are read from those rows by one TID scan: **one scan of the facts
     per FK**.  A key whose located value is blank once normalised (``'  '``, ``NaN``), or whose row another
     transaction has moved since, is derived by the scan below;
   - otherwise their raw values are read from the map table and bound as an array, and one statement filters
     the facts to them (a hashed ``= ANY`` in the scan, parallel workers allowed) and computes every
     aggregation over those rows — ``first`` and ``max_by`` as ``DISTINCT ON``, ``concat_distinct`` as
     ``string_agg`` of the distinct values (in code point or first-seen order), ``count_distinct`` — and a
     template's placeholders as their ``first`` value.

   Only one row per missing key comes back (a few thousand, never the facts); the template placeholders are
   then formatted by the DataFrame path's own code, so a format spec means exactly the same on both paths.

Row order ("the first row"): the relation's ``order_by`` columns (ascending, NULLs last; ties in a table's
physical order), else a table's physical order (``ctid``) or, for a view or query, the order it returns its
rows in.  Keys are numbered in key order (code points), so a message's example key is the smallest one
concerned, where the DataFrame path names the first one in fact order.

Key aliases (``refdata.key_alias``) are read in each FK's unit (under its lock when it writes), chains
resolved, and applied to the distinct values: every FK configuration on the same fact column maps it in
processing order, as the DataFrame path maps its frame, so a backfill column copied from an FK column (e.g.
``fk_portfolio`` copying 计划代码) carries the mapped key too.  ``HybridResult.fact_rows`` is counted by SQL.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata.config import ForeignKeyConfig
from airflow_provider_refdata.config.relation import WarehouseRelation
from airflow_provider_refdata.exceptions import RefdataConfigError
from airflow_provider_refdata.services.aliases import read_key_aliases
from airflow_provider_refdata.services.derivation import (
    DerivedRows,
    UnparsedTemplateValues,
    _agg_template,
    _missing_columns,
    extract_keys,
)
from airflow_provider_refdata.warehouse.catalog import ColumnInfo
from airflow_provider_refdata.warehouse.relation_keys import (
    AliasStep,
    DerivedColumn,
    FactColumn,
    RelationShape,
    derive_statement,
    key_map_statement,
    key_stage_statement,
    locate_statement,
    locators_statement,
)
from airflow_provider_refdata.warehouse.staging import create_stage, stage_type

__all__ = ["RelationFacts", "RelationKeys"]

logger = logging.getLogger(__name__)

MAP_TABLE = "refdata_fk_values"


@dataclass
class StagedKeys:
    """The key texts of the key stage, fetched by position when a message or the provenance needs them."""

    pg: psycopg.Connection
    stage: str | None = None

    def fetch(self, positions: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, fact rows)`` at ``positions`` (in that order)."""
        wanted = [int(p) for p in np.atleast_1d(np.asarray(positions))]
        if not wanted or self.stage is None:
            return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
        rows = self.pg.execute(
            sql.SQL(
                "SELECT s._t, s._n FROM unnest(CAST(%s AS integer[])) WITH ORDINALITY AS u(i, o)"
                " JOIN {} s ON s._i = u.i ORDER BY u.o"
            ).format(sql.Identifier(self.stage)),
            (wanted,),
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=np.int64)

    def __getitem__(self, positions: Any) -> Any:
        keys, _ = self.fetch(positions)
        return keys[0] if np.ndim(positions) == 0 else keys


@dataclass
class RelationKeys:
    """The distinct non-blank keys of one FK in a relation (the in-warehouse :class:`FactKeys`)."""

    fk_name: str
    total: int
    blank_rows: int
    remapped: int
    fact_rows: int
    keys: StagedKeys
    steps: dict[str, list[AliasStep]] = field(default_factory=dict)
    #: Fact columns whose first row per raw value the map table holds (``l<n>``, see :meth:`RelationFacts.plan`).
    locators: list[str] = field(default_factory=list)

    def keys_and_counts(self, positions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Keys at ``positions`` and the fact rows that used each (for the placeholder provenance)."""
        return self.keys.fetch(positions)


class RelationFacts:
    """A :class:`WarehouseRelation` bound to a connection and the call's FK configurations.

    :param relation: the facts.
    :param pg: the call's connection.
    :param fk_configs: the FK configurations the call processes (their aliases map the columns).
    """

    def __init__(self, relation: WarehouseRelation, pg: psycopg.Connection, fk_configs: list[ForeignKeyConfig]):
        self.relation = relation
        self.pg = pg
        self.fk_configs = list(fk_configs)
        self._shape: RelationShape | None = None
        self._rows: int | None = None

    # ------------------------------------------------------------------------------------------------
    def shape(self) -> RelationShape:
        """The relation's ``FROM`` item, columns and row order (read once: one ``LIMIT 0`` query)."""
        if self._shape is not None:
            return self._shape
        relation = self.relation
        if relation.table is not None:
            schema, table = relation.qualified_name or ("", "")
            source: sql.Composable = sql.SQL("{} AS {}").format(sql.Identifier(schema, table), sql.Identifier("f"))
            params: dict[str, Any] = {}
            kind = self.pg.execute(
                "SELECT c.relkind, c.relhassubclass FROM pg_class c"
                " WHERE c.oid = to_regclass(format('%%I.%%I', CAST(%s AS text), CAST(%s AS text)))",
                (schema, table),
            ).fetchone()
            relkind, children = kind if kind else (None, False)
            row_order = {"r": "ctid", "m": "ctid", "p": "partitioned"}.get(relkind or "", "returned")
            if row_order == "ctid" and children:  # inheritance children: a ctid is unique only per table
                row_order = "partitioned"
        else:
            text, params = relation.bound_query()
            source = sql.SQL("({}) AS {}").format(sql.SQL(text), sql.Identifier("f"))
            row_order = "returned"
        with self.pg.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(source), params or None)
            columns = {d.name: FactColumn(d.name, d.type_code) for d in cur.description or []}
        missing = [c for c in relation.order_by if c not in columns]
        if missing:
            raise RefdataConfigError(
                f"order_by column {missing[0]!r} is not a column of the facts ({relation.describe()})",
                key_path="order_by",
                value=missing[0],
            )
        self._shape = RelationShape(source, params, columns, row_order, tuple(relation.order_by))
        return self._shape

    def __len__(self) -> int:
        """The relation's fact rows (counted with the first FK's keys, else by one ``count(*)``)."""
        if self._rows is None:
            try:
                with self.pg.transaction():
                    shape = self.shape()
                    statement = sql.SQL("SELECT count(*) FROM {}").format(shape.source)
                    self._rows = self.pg.execute(statement, shape.query_params or None).fetchone()[0]
            except Exception as exc:  # the FK units already report why the relation cannot be read
                logger.warning("Could not count the fact rows of %s: %s", self.relation.describe(), exc)
                self._rows = 0
        return self._rows

    @contextmanager
    def work_mem(self, pg: psycopg.Connection) -> Iterator[None]:
        """Run the enclosed statements with at least the relation's ``work_mem``, then set the previous back.

        Transaction-local (``set_config(…, true)``): a failed statement's savepoint rollback undoes it too.
        """
        wanted = self.relation.work_mem
        if wanted is None:
            yield
            return
        previous, lower = pg.execute(
            "SELECT current_setting('work_mem'), pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)",
            (wanted,),
        ).fetchone()
        if not lower:
            yield
            return
        pg.execute("SELECT set_config('work_mem', %s, true)", (wanted,))
        try:
            yield
        finally:
            if pg.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
                pg.execute("SELECT set_config('work_mem', %s, true)", (previous,))

    # ------------------------------------------------------------------------------------------------
    def _steps(self, pg: psycopg.Connection) -> dict[str, list[tuple[str, AliasStep]]]:
        """Per fact column, the ``(fk name, alias step)`` of each FK configuration with aliases on it."""
        aliases = read_key_aliases(pg, self.fk_configs)
        steps: dict[str, list[tuple[str, AliasStep]]] = {}
        for fk in self.fk_configs:
            pairs = aliases.for_table(fk.qualified_table)
            tokens = fk.blank_tokens
            kept = {k: v.strip() for k, v in pairs.items() if k not in tokens}
            if kept:
                step = AliasStep(list(kept), list(kept.values()))
                steps.setdefault(fk.source_column, []).append((fk.name, step))
        return steps

    def extract_keys(self, pg: psycopg.Connection, fk: ForeignKeyConfig) -> RelationKeys:
        """Group the FK column into the map table; the key counts (inside the FK's unit).

        :raises RefdataBackfillError: the FK column or a required backfill column is not in the relation.
        """
        shape = self.shape()
        extract_keys(pd.DataFrame(columns=list(shape.columns)), fk)  # the DataFrame path's own column checks
        by_column = self._steps(pg)
        own = by_column.get(fk.source_column, [])
        own_step = next((n for n, (name, _) in enumerate(own) if name == fk.name), None)
        locators = self.plan(fk).locators
        pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(MAP_TABLE)))
        statement, params = key_map_statement(
            shape, MAP_TABLE, fk.source_column, [s for _, s in own], own_step, sorted(fk.blank_tokens), locators
        )
        with self.work_mem(pg):
            pg.execute(statement, params)
        # Statistics for the joins on it (a fresh temp table has none: the planner would hash the facts instead).
        pg.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(MAP_TABLE)))
        total, blank, remapped, rows = pg.execute(
            sql.SQL(
                # The distinct keys by a hash aggregate: count(DISTINCT …) would sort them.
                "SELECT (SELECT count(*) FROM (SELECT k FROM {map} WHERE k IS NOT NULL GROUP BY k) AS d),"
                " COALESCE(sum(n) FILTER (WHERE k IS NULL), 0), COALESCE(sum(n) FILTER (WHERE hit), 0),"
                " COALESCE(sum(n), 0) FROM {map}"
            ).format(map=sql.Identifier(MAP_TABLE))
        ).fetchone()
        self._rows = int(rows)
        return RelationKeys(
            fk_name=fk.name,
            total=int(total),
            blank_rows=int(blank),
            remapped=int(remapped),
            fact_rows=int(rows),
            keys=StagedKeys(pg),
            steps={column: [s for _, s in entries] for column, entries in by_column.items()},
            locators=locators,
        )

    @staticmethod
    def stage_keys(pg: psycopg.Connection, stage: str, keys: RelationKeys, key_column: ColumnInfo) -> None:
        """Create the key stage ``(_i, _k, _t, _n)`` and fill it from the map table (one ``INSERT … SELECT``)."""
        key_type = stage_type(key_column)
        create_stage(pg, stage, ["_i", "_k", "_t", "_n"], ["integer", key_type, "text", "bigint"])
        pg.execute(key_stage_statement(stage, MAP_TABLE, None if key_type == "text" else key_type))
        pg.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(stage)))
        keys.keys.stage = stage

    def plan(self, fk: ForeignKeyConfig) -> DerivationPlan:
        """What :meth:`derive_rows` computes for ``fk``, and how.

        An output over the FK's own column is the key itself (its rows all carry it, mapped as the key is). When
        every other output is a ``first`` (a plain copy or a template placeholder) and the facts are a table in
        physical order, the key aggregate also records each column's first non-NULL row per raw value
        (``locators``) and the derivation reads those rows by ``ctid``: no second scan of the facts.
        """
        shape = self.shape()
        stub = pd.DataFrame(columns=list(shape.columns))
        outputs: list[DerivedColumn] = []
        slots: dict[str, Any] = {}  # target -> output index, list of (placeholder column, output index), or None
        for column in fk.backfill_columns:
            agg = column.aggregation
            if _missing_columns(stub, fk, column):
                slots[column.target] = None
            elif agg.type == "template":
                placeholders = []
                for name in agg.template_columns:
                    placeholders.append((name, len(outputs)))
                    outputs.append(DerivedColumn("first", name))
                slots[column.target] = placeholders
            else:
                slots[column.target] = len(outputs)
                outputs.append(DerivedColumn(agg.type, column.source, agg.order_column, agg.separator or "", agg.sort))
        others = [o for o in outputs if o.column != fk.source_column]
        locatable = shape.row_order == "ctid" and not shape.order_by and all(o.kind == "first" for o in others)
        locators = list(dict.fromkeys(o.column for o in others)) if locatable and others else []
        return DerivationPlan(outputs, slots, locators)

    def derive_rows(
        self, pg: psycopg.Connection, fk: ForeignKeyConfig, keys: RelationKeys, selected: np.ndarray
    ) -> DerivedRows:
        """The candidate rows of the ``selected`` key positions, as
        :func:`~airflow_provider_refdata.services.derivation.derive_rows` builds them from a frame."""
        plan = self.plan(fk)
        outputs, slots = plan.outputs, plan.slots
        chosen = np.asarray(selected, dtype=np.intp)
        m = len(chosen)
        texts: dict[int, str] = {}
        values: dict[int, dict[int, Any]] = {}  # position -> output index -> value
        if m:
            # The raw values of the selected keys (one row per distinct raw value: a few per key at most).
            pre = pg.execute(
                sql.SQL(
                    "SELECT CAST(m.raw AS text), s._i, s._t FROM unnest(CAST(%s AS integer[])) AS u (i)"
                    " JOIN {stage} s ON s._i = u.i JOIN {map} m ON m.k = s._t"
                ).format(stage=sql.Identifier(keys.keys.stage or ""), map=sql.Identifier(MAP_TABLE)),
                (chosen.tolist(),),
            ).fetchall()
            texts = {int(i): t for _, i, t in pre}
            own = {n: out for n, out in enumerate(outputs) if out.column == fk.source_column}
            for i, key in texts.items():
                values[i] = {n: 1 if out.kind == "count_distinct" else key for n, out in own.items()}
            scanned = [n for n in range(len(outputs)) if n not in own]
            if scanned and keys.locators:
                raws: dict[int, set[str]] = {}
                for raw, i, _ in pre:
                    raws.setdefault(int(i), set()).add(raw)
                unresolved = self._locate(pg, fk, keys, outputs, scanned, raws, values)
            else:
                unresolved = set(texts) if scanned else set()
            if unresolved:
                self._derive(pg, fk, keys, [p for p in pre if int(p[1]) in unresolved], outputs, scanned, values)
        ordered = [values.get(int(p)) for p in chosen]
        key_texts = np.array([texts.get(int(p)) for p in chosen], dtype=object)

        def output(n: int) -> np.ndarray:
            return np.array([r.get(n) if r else None for r in ordered], dtype=object)

        data: dict[str, Any] = {fk.target_key: key_texts}
        unparsed: list[UnparsedTemplateValues] = []
        for column in fk.backfill_columns:
            slot = slots[column.target]
            if slot is None:
                data[column.target] = np.full(m, None, dtype=object)
            elif isinstance(slot, list):
                firsts = pd.DataFrame({name: output(n) for name, n in slot}, dtype=object)
                pieces = column.aggregation.template_fields
                data[column.target], failed, values_ = _agg_template(np.arange(m, dtype=np.intp), firsts, pieces, m)
                report = UnparsedTemplateValues(column.target, column.aggregation.template or "", failed, values_)
                if report.mask.any():
                    unparsed.append(report)
            else:
                data[column.target] = output(slot)
        return DerivedRows(frame=pd.DataFrame(data, dtype=object), unparsed=unparsed)

    def _locate(
        self,
        pg: psycopg.Connection,
        fk: ForeignKeyConfig,
        keys: RelationKeys,
        outputs: list[DerivedColumn],
        scanned: list[int],
        raws: dict[int, set[str]],
        values: dict[int, dict[int, Any]],
    ) -> set[int]:
        """Fill the ``first`` outputs from the rows the key aggregate located; the positions still unresolved.

        :param raws: per selected key position, the raw FK values (as text) that map to it.

        A located row whose value is blank once normalised (``'  '``, ``NaN``) is not the first *non-blank*
        value, and a row that another transaction moved or deleted since is gone: those keys are derived by a
        scan.  (The call's open transaction keeps VACUUM from giving a gone row's ``ctid`` to another row; the
        raw FK value read with the row is checked all the same.)
        """
        slot = {name: n for n, name in enumerate(keys.locators)}
        located = pg.execute(
            locators_statement(keys.keys.stage or "", MAP_TABLE, len(keys.locators)), (sorted(raws),)
        ).fetchall()
        tids = sorted({t for row in located for t in row[1:] if t is not None})
        rows: dict[str, tuple] = {}
        if tids:
            statement, params = locate_statement(self.shape(), fk.source_column, keys.locators, tids, keys.steps)
            with self.work_mem(pg):
                rows = {r[0]: r[1:] for r in pg.execute(statement, params).fetchall()}
        unresolved: set[int] = set()
        for position, *tid_of in located:
            for n in scanned:
                at = slot[outputs[n].column]
                tid = tid_of[at]
                row = rows.get(tid) if tid is not None else None
                if tid is None:  # no row has a value: the scan would find none either
                    values[int(position)][n] = None
                elif row is not None and row[0] in raws[int(position)] and row[1 + at] is not None:
                    values[int(position)][n] = row[1 + at]
                else:
                    unresolved.add(int(position))
        return unresolved

    def _derive(
        self,
        pg: psycopg.Connection,
        fk: ForeignKeyConfig,
        keys: RelationKeys,
        pre: list[tuple],
        outputs: list[DerivedColumn],
        scanned: list[int],
        values: dict[int, dict[int, Any]],
    ) -> None:
        """Fill the ``scanned`` outputs of the keys of ``pre`` (raw value, position, key) by one scan of the facts."""
        raw_type = pg.execute(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'raw'",
            (MAP_TABLE,),
        ).fetchone()[0]
        wanted = [outputs[n] for n in scanned]
        statement, params = derive_statement(
            self.shape(), fk.source_column, [r for r, _, _ in pre], raw_type, [i for _, i, _ in pre], wanted, keys.steps
        )
        with self.work_mem(pg):
            derived = pg.execute(statement, params).fetchall()
        for row in derived:
            for n, value in zip(scanned, row[1:], strict=True):
                values[int(row[0])][n] = value


@dataclass(frozen=True)
class DerivationPlan:
    """The outputs :meth:`RelationFacts.derive_rows` computes for one FK configuration.

    ``slots`` maps each backfill target to its output index, to the ``(placeholder column, output index)`` of a
    template, or to ``None`` (its source column is missing); ``locators`` are the columns whose first row the
    key aggregate records (empty: the derivation scans the facts).
    """

    outputs: list[DerivedColumn]
    slots: dict[str, Any]
    locators: list[str]
