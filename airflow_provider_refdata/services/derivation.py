"""Derive reference-row candidates from a fact DataFrame: pure, vectorised pandas/numpy functions.

For one :class:`~airflow_provider_refdata.config.ForeignKeyConfig` the fact rows collapse to one candidate
per distinct non-blank FK value, each with the configured ``backfill_columns`` computed by their
aggregation.  Nothing here touches a database.

Normalisation (architecture §5): ``None``, ``NaN``, empty and whitespace-only strings are blank; for the FK
value the configured ``blank_tokens`` are blank too.  Text is trimmed.  Numbers become text, integral
floats without the ``.0`` suffix (``1001.0`` → ``"1001"``); ``NaN`` never becomes text.

Every column is first *factorised* (one integer code per row, ``-1`` for blank): the work per row happens in
pandas/numpy, and the little Python that remains runs once per distinct value or per candidate, never per
fact row.

Aggregations (on the rows of each candidate, in fact order, ignoring blank values):

``first``
    the first non-blank value.
``max_by``
    the value of the row with the largest numeric ``order_column`` (text such as ``" 1,234.5 "`` is
    coerced; what cannot be coerced counts as NULL).  Ties go to the row that comes first; when no row with
    a non-blank value has a numeric order value, the result falls back to ``first``.
``concat_distinct``
    the distinct values joined with ``separator``, sorted as text when ``sort`` else in first-seen order.
``count_distinct``
    the number of distinct values (``0`` when there are none).
``template``
    the template with each ``{column}`` replaced by that column's ``first`` value (blank → empty text);
    a template without placeholders is a constant.  An empty result is NULL.  A placeholder with a format
    spec formats that value: ``{月度:%y%m}`` as a date (strftime; dates, datetimes, ISO 8601 text, ``YYYY-MM``
    and ``YYYYMM`` parse), ``{金额:,.2f}`` as a number (format-spec mini-language on a ``Decimal``; numbers
    and numeric text, thousands commas allowed, parse).  When the value does not parse the candidate's
    template value is NULL and reported in :attr:`DerivedRows.unparsed` (never an exception).

A required column (``source``, the ``order_column`` of ``max_by``, a template's placeholders) missing from
the facts raises :class:`~airflow_provider_refdata.exceptions.RefdataBackfillError` naming the FK and the
column; for an ``optional`` backfill column the target is NULL instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_refdata.config import BackfillColumn, ForeignKeyConfig
from airflow_provider_refdata.config.foreign_keys import TemplateField, format_number
from airflow_provider_refdata.exceptions import RefdataBackfillError

__all__ = [
    "DerivedRows",
    "FactKeys",
    "UnparsedTemplateValues",
    "candidates_frame",
    "derive_candidates",
    "derive_rows",
    "extract_keys",
    "format_template_value",
    "normalize_codes",
    "normalize_text",
]

# Integral floats beyond 2**53 are not exact any more; they keep their float text.
_EXACT_INT_LIMIT = float(2**53)
# ``YYYY-MM`` and ``YYYYMM`` (month values of the facts): the first day of that month.
_YEAR_MONTH = re.compile(r"(\d{4})-?(\d{2})")
# A number spec formats the whole value: "1e999999" with "f" would be a million-digit string; values this
# large are no reference-data attribute, so they count as not parsed instead.
_MAX_NUMBER_EXPONENT = 100


# --------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------


def _scalar_text(value: Any) -> str:
    """Text of one (non-NA) value of a mixed-type object column."""
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < _EXACT_INT_LIMIT:
            return str(int(number))
        return repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _distinct_as_text(uniques: Any) -> np.ndarray:
    """The distinct (non-NA) values of a column as an object array of ``str``, numbers without ``.0``."""
    array = np.asarray(uniques)
    kind = array.dtype.kind
    if kind == "f":
        integral = np.isfinite(array) & (np.floor(array) == array) & (np.abs(array) < _EXACT_INT_LIMIT)
        out = array.astype(str).astype(object)
        out[integral] = array[integral].astype(np.int64).astype(str)
        return out
    if kind in "iub":
        return array.astype(str).astype(object)
    if kind in "mM":
        return pd.Series(uniques).astype(str).to_numpy(dtype=object)
    array = np.asarray(uniques, dtype=object)
    if pd.api.types.infer_dtype(array, skipna=True) == "string":
        return array
    # Mixed object column (e.g. Excel: ints, floats and strings together): one conversion per distinct value.
    return np.array([_scalar_text(v) for v in array], dtype=object)


def normalize_codes(values: pd.Series, blank_tokens: Iterable[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Factorise a column into normalised text: ``(codes, uniques)``.

    ``codes[i]`` is the index into ``uniques`` of row ``i``'s trimmed text, or ``-1`` when the row is blank.
    ``uniques`` (object array of ``str``) is in order of first appearance in the column.

    :param values: the fact column.
    :param blank_tokens: extra values (compared after trimming) that count as blank.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) == 0:
        return np.full(len(values), -1, dtype=np.intp), np.empty(0, dtype=object)
    text = pd.Series(_distinct_as_text(uniques), dtype=object).str.strip()
    tokens = [t for t in blank_tokens]
    blank = text.isna() | (text == "")
    if tokens:
        blank |= text.isin(tokens)
    # Trimming can merge distinct raw values (" A" and "A"): factorise the normalised texts once more.
    norm_codes, norm_uniques = pd.factorize(text.where(~blank, None), use_na_sentinel=True)
    lookup = np.append(norm_codes, -1)  # raw code -1 (NA) indexes the appended -1
    return lookup[codes], np.asarray(norm_uniques, dtype=object)


def normalize_text(values: pd.Series, blank_tokens: Iterable[str] = ()) -> pd.Series:
    """The column as trimmed text with blanks as ``None`` (object dtype, same index).

    :param values: the fact column.
    :param blank_tokens: extra values (compared after trimming) that count as blank.
    """
    codes, uniques = normalize_codes(values, blank_tokens)
    return pd.Series(np.append(uniques, None)[codes], index=values.index, dtype=object)


# --------------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactKeys:
    """The distinct non-blank FK values of a fact frame for one FK configuration.

    ``codes[i]`` is the candidate index of fact row ``i`` (``-1`` when its FK value is blank); ``keys`` are
    the distinct normalised values in order of first appearance.
    """

    fk_name: str
    codes: np.ndarray
    keys: np.ndarray
    blank_rows: int

    @property
    def total(self) -> int:
        return len(self.keys)


def _required_columns(fk: ForeignKeyConfig, column: BackfillColumn) -> list[str]:
    needed = [column.source]
    if column.aggregation.type == "max_by" and column.aggregation.order_column:
        needed.append(column.aggregation.order_column)
    needed.extend(column.aggregation.template_columns)
    return list(dict.fromkeys(needed))


def _missing_columns(df: pd.DataFrame, fk: ForeignKeyConfig, column: BackfillColumn) -> list[str]:
    """Fact columns the backfill column needs but the frame lacks; raises when the column is required."""
    missing = [c for c in _required_columns(fk, column) if c not in df.columns]
    if missing and not column.optional:
        raise RefdataBackfillError(
            f"foreign key {fk.name!r}: required fact column {missing[0]!r} (for target {column.target!r}) "
            f"is missing from the facts",
            fk_name=fk.name,
            table=fk.qualified_table,
            column=missing[0],
        )
    return missing


def extract_keys(
    df: pd.DataFrame, fk: ForeignKeyConfig, normalized: tuple[np.ndarray, np.ndarray] | None = None
) -> FactKeys:
    """Normalise the FK column and collect its distinct non-blank values.

    Also checks that every required backfill source column is present, so a bad frame fails before any
    database work.

    :param df: the fact frame.
    :param fk: the foreign-key configuration.
    :param normalized: :func:`normalize_codes` of the FK column with the FK's blank tokens, when the caller
        already has it for the column as it is now (the key-alias mapping does), so the rows are not
        factorised twice.
    :raises RefdataBackfillError: the FK column or a required backfill column is missing.
    """
    if fk.source_column not in df.columns:
        raise RefdataBackfillError(
            f"foreign key {fk.name!r}: fact column {fk.source_column!r} is missing from the facts",
            fk_name=fk.name,
            table=fk.qualified_table,
            column=fk.source_column,
        )
    for column in fk.backfill_columns:
        _missing_columns(df, fk, column)
    codes, keys = normalized if normalized is not None else normalize_codes(df[fk.source_column], fk.blank_tokens)
    return FactKeys(fk_name=fk.name, codes=codes, keys=keys, blank_rows=int((codes < 0).sum()))


# --------------------------------------------------------------------------------------------------------
# Aggregations.  Each takes the fact rows of the selected candidates: ``key`` (candidate position 0..m-1
# per row, never -1 here) and the column(s), and returns one value per candidate (object array, length m).
# --------------------------------------------------------------------------------------------------------


def _first_positions(key: np.ndarray, valid: np.ndarray, m: int) -> np.ndarray:
    """Per candidate, the first row (index into ``key``) where ``valid`` holds, else -1."""
    rows = np.flatnonzero(valid)
    out = np.full(m, -1, dtype=np.intp)
    if len(rows):
        first_keys, first_idx = np.unique(key[rows], return_index=True)
        out[first_keys] = rows[first_idx]
    return out


def _pick(uniques: np.ndarray, vcodes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = np.full(len(positions), None, dtype=object)
    hit = positions >= 0
    out[hit] = uniques[vcodes[positions[hit]]]
    return out


def _agg_first(key: np.ndarray, values: pd.Series, m: int) -> np.ndarray:
    vcodes, uniques = normalize_codes(values)
    return _pick(uniques, vcodes, _first_positions(key, vcodes >= 0, m))


def _numeric(values: pd.Series) -> np.ndarray:
    """Numeric coercion of an order column: numbers as they are; text trimmed, thousands commas dropped."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    text = normalize_text(values).str.replace(",", "", regex=False)
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _agg_max_by(key: np.ndarray, values: pd.Series, order: pd.Series, m: int) -> np.ndarray:
    vcodes, uniques = normalize_codes(values)
    weight = _numeric(order)
    valid = vcodes >= 0
    ranked = valid & ~np.isnan(weight)
    positions = _first_positions(key, valid, m)  # fallback: first non-blank value
    rows = np.flatnonzero(ranked)
    if len(rows):
        # Sort by candidate, then weight descending, then fact order: the first row per candidate wins.
        order_idx = np.lexsort((rows, -weight[rows], key[rows]))
        sorted_rows = rows[order_idx]
        best_keys, best_idx = np.unique(key[sorted_rows], return_index=True)
        positions[best_keys] = sorted_rows[best_idx]
    return _pick(uniques, vcodes, positions)


def _distinct_pairs(key: np.ndarray, values: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    vcodes, uniques = normalize_codes(values)
    valid = vcodes >= 0
    pairs = pd.DataFrame({"k": key[valid], "v": vcodes[valid]}).drop_duplicates()  # keeps first-seen order
    return pairs, uniques


def _agg_concat_distinct(key: np.ndarray, values: pd.Series, m: int, separator: str, sort: bool) -> np.ndarray:
    pairs, uniques = _distinct_pairs(key, values)
    out = np.full(m, None, dtype=object)
    if pairs.empty:
        return out
    pairs["t"] = uniques[pairs["v"].to_numpy()]
    if sort:
        pairs = pairs.sort_values(["k", "t"], kind="stable")
    # One join per candidate (not per fact row).
    joined = pairs.groupby("k", sort=False)["t"].agg(separator.join)
    out[joined.index.to_numpy()] = joined.to_numpy(dtype=object)
    return out


def _agg_count_distinct(key: np.ndarray, values: pd.Series, m: int) -> np.ndarray:
    pairs, _ = _distinct_pairs(key, values)
    return np.bincount(pairs["k"].to_numpy(dtype=np.intp), minlength=m).astype(object)


def _parse_date(text: str) -> datetime | None:
    """A date/time from normalised text (ISO 8601, ``YYYY-MM``, ``YYYYMM``), or None when it does not parse."""
    match = _YEAR_MONTH.fullmatch(text)
    try:
        if match:
            return datetime(int(match[1]), int(match[2]), 1)
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _parse_number(text: str) -> Decimal | None:
    """A finite Decimal from normalised text (thousands commas dropped, as for max_by), or None."""
    try:
        number = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    if not number.is_finite() or number.adjusted() > _MAX_NUMBER_EXPONENT:
        return None
    return number


def format_template_value(text: str, piece: TemplateField) -> str | None:
    """One normalised (non-blank) value formatted for a template placeholder; None when it does not parse.

    Without a spec the text is used as is.  Dates, datetimes and pandas Timestamps arrive here as their ISO
    text (see :func:`normalize_codes`), so one text parser serves every input type.
    """
    if piece.kind is None:
        return text
    try:
        if piece.kind == "date":
            moment = _parse_date(text)
            return None if moment is None else moment.strftime(piece.spec)
        number = _parse_number(text)
        return None if number is None else format_number(number, piece.spec)
    except ValueError:  # e.g. a fraction for an integer spec such as "08d"
        return None


def _format_distinct(uniques: np.ndarray, piece: TemplateField) -> tuple[np.ndarray, np.ndarray]:
    """``(formatted, parsed)`` per distinct value: formatting runs once per distinct value, not per row."""
    formatted = np.array([format_template_value(v, piece) for v in uniques], dtype=object)
    parsed = np.array([v is not None for v in formatted], dtype=bool)
    formatted[~parsed] = ""
    return formatted, parsed


def _agg_template(
    key: np.ndarray, frame: pd.DataFrame, pieces: Sequence[TemplateField], m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, pieces, bad_values)``: the filled templates and, per candidate, the first placeholder
    (:class:`TemplateField`) whose value did not parse and that value (``None`` for both when everything
    parsed; the candidate's value is NULL otherwise)."""
    result = pd.Series([""] * m, dtype=object)
    failed_pieces = np.full(m, None, dtype=object)
    bad_values = np.full(m, None, dtype=object)
    for piece in pieces:
        if piece.literal:
            result = result + piece.literal
        if piece.column is None:
            continue
        vcodes, uniques = normalize_codes(frame[piece.column])
        formatted, parsed = _format_distinct(uniques, piece)
        positions = _first_positions(key, vcodes >= 0, m)
        hit = np.flatnonzero(positions >= 0)
        codes = vcodes[positions[hit]]
        text = np.full(m, "", dtype=object)
        text[hit] = formatted[codes]
        result = result + pd.Series(text, dtype=object)
        failed = ~parsed[codes]
        # Report the first placeholder that failed per candidate: earlier pieces keep theirs.
        first = pd.isna(failed_pieces[hit[failed]])
        rows = hit[failed][first]
        failed_pieces[rows] = piece
        bad_values[rows] = uniques[codes[failed][first]]
    out = result.to_numpy(dtype=object, copy=True)
    out[(out == "") | ~pd.isna(failed_pieces)] = None
    return out, failed_pieces, bad_values


def _aggregate(fk: ForeignKeyConfig, column: BackfillColumn, key: np.ndarray, rows: pd.DataFrame, m: int) -> np.ndarray:
    """One value per candidate for a non-template column (templates: :func:`_agg_template`)."""
    agg = column.aggregation
    if agg.type == "first":
        return _agg_first(key, rows[column.source], m)
    if agg.type == "max_by":
        return _agg_max_by(key, rows[column.source], rows[agg.order_column], m)
    if agg.type == "concat_distinct":
        return _agg_concat_distinct(key, rows[column.source], m, agg.separator, agg.sort)
    if agg.type == "count_distinct":
        return _agg_count_distinct(key, rows[column.source], m)
    raise RefdataBackfillError(  # pragma: no cover - the config model only allows the types above
        f"foreign key {fk.name!r}: unknown aggregation {agg.type!r}", fk_name=fk.name, column=column.source
    )


# --------------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnparsedTemplateValues:
    """Template values of one backfill column left NULL because a formatted placeholder's value did not parse.

    ``pieces`` and ``values`` are aligned with the candidate rows: per row the first placeholder
    (:class:`TemplateField`, e.g. ``{月度:%y%m}``) whose value did not parse and that value, ``None`` for rows
    whose template filled normally.
    """

    target: str
    template: str
    pieces: np.ndarray
    values: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Rows whose value is NULL because of an unparsed value."""
        return ~pd.isna(self.pieces)

    def select(self, keep: np.ndarray) -> UnparsedTemplateValues:
        """The same report for the rows ``keep`` (boolean mask) selects."""
        return UnparsedTemplateValues(self.target, self.template, self.pieces[keep], self.values[keep])


@dataclass(frozen=True)
class DerivedRows:
    """Candidate rows and, per template column with unparsed values, what did not parse."""

    frame: pd.DataFrame
    unparsed: list[UnparsedTemplateValues] = field(default_factory=list)

    @property
    def template_unparsed(self) -> int:
        """Values stored as NULL because a formatted placeholder did not parse (over all columns)."""
        return sum(int(u.mask.sum()) for u in self.unparsed)


def derive_rows(
    df: pd.DataFrame,
    fk: ForeignKeyConfig,
    keys: FactKeys,
    selected: Sequence[int] | np.ndarray | None = None,
) -> DerivedRows:
    """The candidate rows (see :func:`candidates_frame`) plus the template values that did not parse.

    :param df: the fact frame ``keys`` was extracted from.
    :param fk: the foreign-key configuration.
    :param keys: the result of :func:`extract_keys` for ``df`` and ``fk``.
    :param selected: candidate indices to derive (e.g. only the keys missing from the reference table).
    """
    chosen = np.arange(keys.total, dtype=np.intp) if selected is None else np.asarray(selected, dtype=np.intp)
    m = len(chosen)
    # Candidate index -> position in ``chosen`` (-1: not selected); index -1 (blank FK) maps to -1 as well.
    position = np.full(keys.total + 1, -1, dtype=np.intp)
    position[chosen] = np.arange(m, dtype=np.intp)
    row_pos = position[keys.codes]
    row_mask = row_pos >= 0
    data: dict[str, Any] = {fk.target_key: keys.keys[chosen]}
    needed: list[str] = []
    absent: dict[str, list[str]] = {}
    for column in fk.backfill_columns:
        absent[column.target] = _missing_columns(df, fk, column)
        if not absent[column.target]:
            needed.extend(_required_columns(fk, column))
    # Only the rows of the selected candidates (a few percent when deriving missing keys) are aggregated.
    rows = df.loc[row_mask, list(dict.fromkeys(needed))].reset_index(drop=True)
    key = row_pos[row_mask]
    unparsed: list[UnparsedTemplateValues] = []
    for column in fk.backfill_columns:
        agg = column.aggregation
        if absent[column.target]:
            data[column.target] = np.full(m, None, dtype=object)
        elif agg.type == "template":
            data[column.target], pieces, values = _agg_template(key, rows, agg.template_fields, m)
            report = UnparsedTemplateValues(column.target, agg.template or "", pieces, values)
            if report.mask.any():
                unparsed.append(report)
        else:
            data[column.target] = _aggregate(fk, column, key, rows, m)
    return DerivedRows(frame=pd.DataFrame(data, dtype=object), unparsed=unparsed)


def candidates_frame(
    df: pd.DataFrame,
    fk: ForeignKeyConfig,
    keys: FactKeys,
    selected: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """The candidate rows: ``target_key`` then each backfill target, one row per selected candidate.

    Values are ``str`` (``int`` for ``count_distinct``) or ``None``; rows follow ``selected`` (default: all
    candidates, in order of first appearance).  Template values that did not parse are NULL here; use
    :func:`derive_rows` to learn which.

    :param df: the fact frame ``keys`` was extracted from.
    :param fk: the foreign-key configuration.
    :param keys: the result of :func:`extract_keys` for ``df`` and ``fk``.
    :param selected: candidate indices to derive (e.g. only the keys missing from the reference table).
    """
    return derive_rows(df, fk, keys, selected).frame


@dataclass(frozen=True)
class Candidates:
    """All candidates of one FK configuration: the keys' summary, the derived rows, unparsed template values."""

    fk_name: str
    frame: pd.DataFrame
    blank_rows: int
    unparsed: list[UnparsedTemplateValues] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return list(self.frame.iloc[:, 0])

    @property
    def template_unparsed(self) -> int:
        """Template values left NULL because a formatted placeholder's value did not parse."""
        return sum(int(u.mask.sum()) for u in self.unparsed)


def derive_candidates(df: pd.DataFrame, fk: ForeignKeyConfig) -> Candidates:
    """One candidate reference row per distinct non-blank FK value of ``df``.

    :param df: the fact frame.
    :param fk: the foreign-key configuration.
    :raises RefdataBackfillError: the FK column or a required backfill column is missing.
    """
    keys = extract_keys(df, fk)
    rows = derive_rows(df, fk, keys)
    return Candidates(fk_name=fk.name, frame=rows.frame, blank_rows=keys.blank_rows, unparsed=rows.unparsed)
