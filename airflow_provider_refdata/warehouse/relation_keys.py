"""SQL for facts that stay in the warehouse: key extraction and derivation as ``psycopg.sql`` compositions.

Pure composition (no statement is executed here); :mod:`~airflow_provider_refdata.services.relation_facts`
runs them.  Every identifier is a :class:`psycopg.sql.Identifier`, every value a named bound parameter
(``%(refdata_p<n>)s``, collected by :class:`Params`); a fact query is embedded as the subquery
``(<query>) AS f`` with its own parameters bound in the same statement.

The normalisation reproduces the DataFrame path's (:func:`~airflow_provider_refdata.services.derivation.normalize_codes`
on the frame that ``SELECT *`` would give pandas through psycopg), per PostgreSQL type:

- text types (and any type not listed below): trimmed of the characters Python's ``str.strip()`` removes
  (:data:`~airflow_provider_refdata.warehouse.aliases.WHITESPACE`, U+3000 and NBSP included); empty is blank;
- ``smallint``/``integer``/``bigint``: their text (a NULL is blank; pandas' float upcast changes no text);
- ``numeric``: its text as PostgreSQL writes it (``1.50`` stays ``1.50``: psycopg gives pandas a ``Decimal``,
  whose ``str`` is the same); ``NaN`` is blank;
- ``real``/``double precision``: integral values below 2**53 without ``.0`` (``1001.0`` → ``1001``), others as
  numpy prints them (the shortest digits, positional from 1e-4 to below 1e16, e.g. ``9007199254740994.0``,
  else with an exponent: ``1e+20``), ``Infinity`` → ``inf``; ``NaN`` is blank;
- ``boolean``: ``True``/``False`` (Python's text); ``date``: ``YYYY-MM-DD``.

Timestamps and other types are compared as their trimmed PostgreSQL text (pandas would print them its own
way): use text, numbers or dates for key and backfill columns whose text matters.

Key extraction groups the **raw** column first (one hash aggregate, no per-row function) and normalises the
distinct values afterwards; key aliases and blank tokens apply to those distinct values too, so their cost
does not grow with the fact rows.  The derivation joins the facts to the raw values of the selected keys,
bound as an array (a hash join on the column itself, which parallel workers may run: no temporary table is
read), and computes every aggregation of the selected candidates in one statement; ``first`` values of a table
in physical order can instead be located by the key aggregate (``min(ctid)``) and read by a TID scan
(:func:`locators_statement`, :func:`locate_statement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from airflow_provider_refdata.warehouse.aliases import WHITESPACE

__all__ = [
    "AliasStep",
    "FactColumn",
    "Params",
    "RelationShape",
    "derive_statement",
    "key_map_statement",
    "key_stage_statement",
    "locate_statement",
    "locators_statement",
    "normalized_text",
    "numeric_weight",
]

INT_OIDS = frozenset({20, 21, 23, 26})  # bigint, smallint, integer, oid
FLOAT_OIDS = frozenset({700, 701})
NUMERIC_OID = 1700
BOOL_OID = 16
DATE_OID = 1082
#: Largest integer a float64 holds exactly: integral floats below it lose their ``.0`` (derivation's rule).
EXACT_INT_LIMIT = 9007199254740992
#: What ``pd.to_numeric`` turns into a number once trimmed and stripped of thousands commas.
NUMBER_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
#: The alias of the relation in every statement.
FACTS = "f"
#: Column of the numbered subquery that gives a view or query without ``order_by`` its row order.
ORDINAL_COLUMN = "refdata_o"


class Params:
    """Collects the bound parameters of one statement under unique ``refdata_p<n>`` names.

    :param initial: parameters already in the statement (a fact query's own).
    """

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(initial or {})
        self._n = 0

    def add(self, value: Any) -> sql.Placeholder:
        """A placeholder bound to ``value``."""
        name = f"refdata_p{self._n}"
        self._n += 1
        self.values[name] = value
        return sql.Placeholder(name)


@dataclass(frozen=True)
class FactColumn:
    """A column of the fact relation: its name and PostgreSQL type OID."""

    name: str
    type_oid: int


@dataclass(frozen=True)
class RelationShape:
    """What the statements need to know about the relation.

    ``source`` is the ``FROM`` item (``schema.table AS f`` or ``(<query>) AS f``), ``query_params`` the
    query's own parameters; ``row_order`` says how rows are ordered without ``order_by``: ``"ctid"`` (a table or
    materialized view), ``"partitioned"`` (``tableoid, ctid``) or ``"returned"`` (a view or query: the order
    it returns its rows in).
    """

    source: sql.Composable
    query_params: Mapping[str, Any]
    columns: Mapping[str, FactColumn]
    row_order: str
    order_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class AliasStep:
    """One FK configuration's aliases applied to a column: normalised ``from`` texts and their targets."""

    sources: list[str]
    targets: list[str]


def col(name: str, alias: str = FACTS) -> sql.Composable:
    return sql.Identifier(alias, name)


def normalized_text(value: sql.Composable, type_oid: int, params: Params) -> sql.Composable:
    """The normalised text of ``value`` (a column of type ``type_oid``), NULL when blank (no blank tokens)."""
    if type_oid in INT_OIDS:
        return sql.SQL("CAST({} AS text)").format(value)
    if type_oid == NUMERIC_OID:
        return sql.SQL("CAST(NULLIF({}, 'NaN') AS text)").format(value)
    if type_oid in FLOAT_OIDS:
        return sql.SQL(
            "CASE WHEN {v} = 'NaN' THEN NULL WHEN {v} = 'Infinity' THEN 'inf' WHEN {v} = '-Infinity' THEN '-inf' "
            "WHEN {v} = trunc({v}) AND abs({v}) < {limit} THEN CAST(CAST({v} AS bigint) AS text) "
            # numpy prints 1e15 <= |x| < 1e16 positionally ("9007199254740994.0"), PostgreSQL with an exponent;
            # both print the same shortest digits, which numeric's input places exactly.
            "WHEN abs({v}) >= 1e15 AND abs({v}) < 1e16 THEN CAST(CAST(CAST({v} AS text) AS numeric) AS text)"
            " || CASE WHEN {v} = trunc({v}) THEN '.0' ELSE '' END "
            "ELSE CAST({v} AS text) END"
        ).format(v=value, limit=sql.SQL("CAST({} AS double precision)").format(sql.Literal(EXACT_INT_LIMIT)))
    if type_oid == BOOL_OID:
        return sql.SQL("CASE WHEN {v} THEN 'True' WHEN NOT {v} THEN 'False' END").format(v=value)
    if type_oid == DATE_OID:
        return sql.SQL("to_char({}, 'YYYY-MM-DD')").format(value)
    return sql.SQL("NULLIF(btrim(CAST({} AS text), {}), '')").format(value, params.add(WHITESPACE))


def numeric_weight(value: sql.Composable, type_oid: int, params: Params) -> sql.Composable:
    """``max_by``'s order value as ``double precision`` (NULL when it is not a number), as ``_numeric`` does:
    numbers as they are, anything else as trimmed text without thousands commas."""
    if type_oid in INT_OIDS or type_oid in FLOAT_OIDS:
        return sql.SQL("NULLIF(CAST({} AS double precision), 'NaN')").format(value)
    text = sql.SQL("replace({}, ',', '')").format(normalized_text(value, type_oid, params))
    return sql.SQL(
        "CASE WHEN {t} ~ {pattern} THEN CASE WHEN abs(CAST({t} AS numeric)) < 1e308 THEN CAST({t} AS double precision)"
        " ELSE sign(CAST({t} AS numeric)) * CAST('Infinity' AS double precision) END END"
    ).format(t=text, pattern=params.add(NUMBER_PATTERN))


def _mapped(
    text: sql.Composable, steps: Sequence[AliasStep], params: Params, prefix: str
) -> tuple[sql.Composable, list[sql.Composable], list[str]]:
    """``text`` mapped through each alias step in order: ``(expression, LEFT JOINs, join aliases)``."""
    joins: list[sql.Composable] = []
    names: list[str] = []
    for n, step in enumerate(steps):
        name = f"{prefix}{n}"
        joins.append(
            sql.SQL("LEFT JOIN unnest(CAST({} AS text[]), CAST({} AS text[])) AS {a} (f, t) ON {a}.f = {v}").format(
                params.add(step.sources), params.add(step.targets), a=sql.Identifier(name), v=text
            )
        )
        text = sql.SQL("COALESCE({}.t, {})").format(sql.Identifier(name), text)
        names.append(name)
    return text, joins, names


def _tokens_blank(text: sql.Composable, tokens: Sequence[str], params: Params) -> sql.Composable:
    if not tokens:
        return text
    return sql.SQL("CASE WHEN {v} = ANY(CAST({t} AS text[])) THEN NULL ELSE {v} END").format(
        v=text, t=params.add(list(tokens))
    )


def _fact_values(
    shape: RelationShape, names: Sequence[str], steps: Mapping[str, Sequence[AliasStep]], params: Params
) -> tuple[list[sql.Composable], list[sql.Composable]]:
    """Each of the fact columns ``names`` normalised and alias-mapped (by its ``steps``): ``(expressions, the
    LEFT JOINs they need)``, as the derivation reads backfill values."""
    values: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    for n, name in enumerate(names):
        text = normalized_text(col(name), shape.columns[name].type_oid, params)
        text, extra, _ = _mapped(text, steps.get(name, ()), params, f"a{n}_")
        joins.extend(extra)
        values.append(text)
    return values, joins


def key_map_statement(
    shape: RelationShape,
    map_table: str,
    column: str,
    steps: Sequence[AliasStep],
    own_step: int | None,
    tokens: Sequence[str],
    locators: Sequence[str] = (),
) -> tuple[sql.Composable, dict[str, Any]]:
    """``CREATE TEMP TABLE map_table ON COMMIT DROP AS``: per distinct raw value of ``column`` its fact rows
    ``n``, its key ``k`` (normalised, alias-mapped, NULL when blank), ``hit`` (mapped by ``own_step``) and,
    per column of ``locators``, ``l<n>``: the first row (``ctid``) where that column is not NULL.

    :param shape: the relation.
    :param map_table: the temporary table's name.
    :param column: the FK's fact column.
    :param steps: the alias steps of the FK configurations on this column, in processing order.
    :param own_step: index of this FK's own step in ``steps`` (its remapped rows), or ``None``.
    :param tokens: the FK's blank tokens.
    :param locators: fact columns whose ``first`` value is read later from its row (:func:`locate_statement`),
        so that no second scan of the facts is needed; only for a relation in physical order (``ctid``).
    """
    params = Params(shape.query_params)
    fact = shape.columns[column]
    located = [
        sql.SQL(", min({t}) FILTER (WHERE {c} IS NOT NULL) AS {l}").format(
            t=col("ctid"), c=col(name), l=sql.Identifier(f"l{n}")
        )
        for n, name in enumerate(locators)
    ]
    text = normalized_text(sql.SQL("g.raw"), fact.type_oid, params)
    mapped, joins, names = _mapped(text, steps, params, "a")
    hit = (
        sql.SQL("false") if own_step is None else sql.SQL("({}.t IS NOT NULL)").format(sql.Identifier(names[own_step]))
    )
    statement = sql.SQL(
        """
        CREATE TEMP TABLE {map} ON COMMIT DROP AS
        SELECT g.raw, g.n, {key} AS k, {hit} AS hit{locators}
          FROM (SELECT {c} AS raw, count(*) AS n{located} FROM {source} GROUP BY 1) AS g
          {joins}
        """
    ).format(
        map=sql.Identifier(map_table),
        key=_tokens_blank(mapped, tokens, params),
        hit=hit,
        locators=sql.SQL("").join(sql.SQL(", g.{}").format(sql.Identifier(f"l{n}")) for n in range(len(locators))),
        located=sql.SQL("").join(located),
        c=col(column),
        source=shape.source,
        joins=sql.SQL(" ").join(joins),
    )
    return statement, params.values


def key_stage_statement(stage: str, map_table: str, key_type: str | None) -> sql.Composable:
    """Fill the key stage ``(_i, _k, _t, _n)`` from the map table: one row per key, positions in key order
    (``COLLATE "C"``: code points, as Python sorts text).

    :param stage: the key stage (created with ``_i integer, _k <key type>, _t text, _n bigint``).
    :param map_table: the table made by :func:`key_map_statement`.
    :param key_type: the key column's type when it is not text (the key is cast to it), else ``None``.
    """
    key = sql.SQL("s.k") if key_type is None else sql.SQL("CAST(s.k AS {})").format(sql.SQL(key_type))
    return sql.SQL(
        """
        INSERT INTO {stage} (_i, _k, _t, _n)
        SELECT CAST(row_number() OVER (ORDER BY s.k COLLATE "C") - 1 AS integer), {key}, s.k, s.n
          FROM (SELECT m.k, sum(m.n) AS n FROM {map} m WHERE m.k IS NOT NULL GROUP BY m.k) AS s
        """
    ).format(stage=sql.Identifier(stage), key=key, map=sql.Identifier(map_table))


def locators_statement(stage: str, map_table: str, count: int) -> sql.Composable:
    """Per selected key position (``%s``: an ``integer[]``), the first row of each located column over the raw
    values of that key: ``(position, l0, l1, …)`` as ``tid`` text (NULL: no row has a value)."""
    columns = [sql.SQL(", CAST(min(m.{l}) AS text)").format(l=sql.Identifier(f"l{n}")) for n in range(count)]
    return sql.SQL(
        "SELECT s._i{columns} FROM unnest(CAST(%s AS integer[])) AS u (i)"
        " JOIN {stage} s ON s._i = u.i JOIN {map} m ON m.k = s._t GROUP BY s._i"
    ).format(columns=sql.SQL("").join(columns), stage=sql.Identifier(stage), map=sql.Identifier(map_table))


def locate_statement(
    shape: RelationShape,
    column: str,
    columns: Sequence[str],
    tids: Sequence[str],
    steps: Mapping[str, Sequence[AliasStep]],
) -> tuple[sql.Composable, dict[str, Any]]:
    """The rows at ``tids`` (a TID scan): ``(tid text, raw FK value as text, value of each of columns…)``, each
    value normalised and alias-mapped as :func:`derive_statement` computes it.

    :param shape: the relation.
    :param column: the FK's fact column (its raw value tells whether the row still carries the key).
    :param columns: the located columns.
    :param tids: the rows, as ``tid`` text.
    :param steps: per fact column, the alias steps mapping it.
    """
    params = Params(shape.query_params)
    values, joins = _fact_values(shape, columns, steps, params)
    statement = sql.SQL(
        "SELECT CAST({tid} AS text), CAST({fk} AS text){values} FROM {source} {joins}"
        " WHERE {tid} = ANY(CAST({tids} AS tid[]))"
    ).format(
        tid=col("ctid"),
        fk=col(column),
        values=sql.SQL("").join(sql.SQL(", {}").format(v) for v in values),
        source=shape.source,
        joins=sql.SQL(" ").join(joins),
        tids=params.add(list(tids)),
    )
    return statement, params.values


@dataclass(frozen=True)
class DerivedColumn:
    """One output of :func:`derive_statement`: a backfill aggregation, or a template placeholder's ``first``.

    ``kind`` is ``first``, ``max_by``, ``concat_distinct`` or ``count_distinct``; ``column`` the fact column
    aggregated, ``order_column`` max_by's, ``separator``/``sort`` concat_distinct's.
    """

    kind: str
    column: str
    order_column: str | None = None
    separator: str = "+"
    sort: bool = True


def _ordinal(shape: RelationShape) -> tuple[sql.Composable, sql.Composable]:
    """``(FROM item, row order expression)`` for the derivation's row order (see the module docstring)."""
    tie: list[sql.Composable] = []
    if shape.row_order == "ctid":
        tie = [col("ctid")]
    elif shape.row_order == "partitioned":
        tie = [col("tableoid"), col("ctid")]
    if shape.order_by:
        keys = [sql.SQL("{} ASC NULLS LAST").format(col(c)) for c in shape.order_by] + tie
        return shape.source, sql.SQL("row_number() OVER (ORDER BY {})").format(sql.SQL(", ").join(keys))
    if shape.row_order == "ctid":
        return shape.source, col("ctid")
    if shape.row_order == "partitioned":
        return shape.source, sql.SQL("row_number() OVER (ORDER BY {})").format(sql.SQL(", ").join(tie))
    numbered = sql.SQL("(SELECT {f}.*, row_number() OVER () AS {o} FROM {source}) AS {f}").format(
        f=sql.Identifier(FACTS), o=sql.Identifier(ORDINAL_COLUMN), source=shape.source
    )
    return numbered, col(ORDINAL_COLUMN)


def derive_statement(
    shape: RelationShape,
    column: str,
    raws: Sequence[str],
    raw_type: str,
    raw_positions: Sequence[int],
    outputs: Sequence[DerivedColumn],
    steps: Mapping[str, Sequence[AliasStep]],
) -> tuple[sql.Composable, dict[str, Any]]:
    """One row per derived key position: ``(position, output values…)`` in position order.

    The facts are joined to the raw values of the selected keys, bound as an array (so the statement reads
    no temporary table and PostgreSQL may scan the facts with parallel workers); every needed column is
    normalised (and alias-mapped when it is an FK column with aliases: ``steps``) on those rows only, and
    each output is one pass over them in the relation's row order: ``first`` and ``max_by`` a ``DISTINCT ON``
    (one sort), ``concat_distinct`` and ``count_distinct`` an aggregate of the distinct ``(key, value)`` pairs.

    :param shape: the relation.
    :param column: the FK's fact column.
    :param raws: the raw values of ``column`` (as text) whose key is to be derived.
    :param raw_type: ``column``'s type (``format_type``), to turn ``raws`` back into values of it.
    :param raw_positions: each raw value's key position.
    :param outputs: the values to compute, in output order.
    :param steps: per fact column, the alias steps mapping it.
    """
    params = Params(shape.query_params)
    source, ordinal = _ordinal(shape)
    needed = list(dict.fromkeys(o.column for o in outputs))
    weights = list(dict.fromkeys(o.order_column for o in outputs if o.kind == "max_by" and o.order_column))
    value_name = {name: f"v{n}" for n, name in enumerate(needed)}
    weight_name = {name: f"w{n}" for n, name in enumerate(weights)}
    texts, joins = _fact_values(shape, needed, steps, params)
    values = [
        sql.SQL("{} AS {}").format(t, sql.Identifier(value_name[name])) for t, name in zip(texts, needed, strict=True)
    ]
    for name in weights:
        expression = numeric_weight(col(name), shape.columns[name].type_oid, params)
        values.append(sql.SQL("{} AS {}").format(expression, sql.Identifier(weight_name[name])))
    # One CTE per output over the matching rows, each a single sort or hash of them: ordered aggregates
    # (array_agg … ORDER BY per key) would sort every key's rows once per output.
    ctes: list[sql.Composable] = []
    for n, out in enumerate(outputs):
        v = sql.Identifier("r", value_name[out.column])
        name = sql.Identifier(f"o{n}")
        if out.kind in ("first", "max_by"):
            order = [sql.SQL("r.o")]
            if out.kind == "max_by":
                order.insert(
                    0, sql.SQL("{} DESC NULLS LAST").format(sql.Identifier("r", weight_name[out.order_column or ""]))
                )
            body = sql.SQL(
                "SELECT DISTINCT ON (r.i) r.i, {v} AS val FROM r WHERE {v} IS NOT NULL ORDER BY r.i, {order}"
            ).format(v=v, order=sql.SQL(", ").join(order))
        elif out.kind == "count_distinct":
            body = sql.SQL(
                "SELECT d.i, count(*) AS val FROM (SELECT DISTINCT r.i, {v} AS v FROM r WHERE {v} IS NOT NULL) AS d"
                " GROUP BY d.i"
            ).format(v=v)
        elif out.kind == "concat_distinct" and out.sort:
            body = sql.SQL(
                'SELECT d.i, string_agg(d.v, {sep} ORDER BY d.v COLLATE "C") AS val'
                " FROM (SELECT DISTINCT r.i, {v} AS v FROM r WHERE {v} IS NOT NULL) AS d GROUP BY d.i"
            ).format(v=v, sep=params.add(out.separator))
        else:  # concat_distinct in first-seen order: distinct values with their first row, then joined
            body = sql.SQL(
                "SELECT d.i, string_agg(d.v, {sep} ORDER BY d.o) AS val FROM (SELECT r.i, {v} AS v, min(r.o) AS o"
                " FROM r WHERE {v} IS NOT NULL GROUP BY r.i, {v}) AS d GROUP BY d.i"
            ).format(v=v, sep=params.add(out.separator))
        ctes.append(sql.SQL(", {} AS ({})").format(name, body))
    selected = [
        sql.SQL("COALESCE({}.val, 0)" if out.kind == "count_distinct" else "{}.val").format(sql.Identifier(f"o{n}"))
        for n, out in enumerate(outputs)
    ]
    joins_out = [sql.SQL("LEFT JOIN {o} ON {o}.i = k.i").format(o=sql.Identifier(f"o{n}")) for n in range(len(outputs))]
    statement = sql.SQL(
        """
        WITH r AS MATERIALIZED (
            SELECT pre.i, {ordinal} AS o{comma}{values}
              FROM {source}
              JOIN unnest(CAST(CAST({raws} AS text[]) AS {raw_type}[]), CAST({positions} AS integer[])) AS pre (raw, i)
                ON {fk} = pre.raw
              {joins}
             WHERE {fk} = ANY(CAST(CAST({raws} AS text[]) AS {raw_type}[]))  -- a hashed filter in the scan itself
        ),
        k AS (SELECT DISTINCT r.i FROM r){ctes}
        SELECT k.i{comma3}{selected}
          FROM k {joins_out}
         ORDER BY k.i
        """
    ).format(
        ordinal=ordinal,
        comma=sql.SQL(", ") if values else sql.SQL(""),
        values=sql.SQL(", ").join(values),
        source=source,
        raws=params.add(list(raws)),
        raw_type=sql.SQL(raw_type),
        positions=params.add([int(p) for p in raw_positions]),
        fk=col(column),
        joins=sql.SQL(" ").join(joins),
        ctes=sql.SQL("").join(ctes),
        comma3=sql.SQL(", ") if selected else sql.SQL(""),
        selected=sql.SQL(", ").join(selected),
        joins_out=sql.SQL(" ").join(joins_out),
    )
    return statement, params.values
