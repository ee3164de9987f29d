"""The XLSX writer of the review export: PostgreSQL renders every row as SpreadsheetML, Python only zips it.

:func:`write_sheet` writes a workbook of one sheet for a :class:`Sheet` (a header, one SQL expression per column,
the query's ``FROM … WHERE …`` and order).  An XLSX file is a zip of XML parts; all but one are small and
fixed (``[Content_Types].xml``, the relationships, ``xl/workbook.xml``, ``xl/styles.xml`` with the bold
header style) and are written from Python.  The sheet, ``xl/worksheets/sheet1.xml``, is the data: one
``COPY (SELECT …) TO STDOUT`` makes the server render each row as a ``<row>`` element, and its chunks are
deflated straight into the zip entry (``zipfile`` streams it), so no cell is handled in Python and memory
stays constant whatever the number of rows.

* Every text is an inline-string cell (``t="inlineStr"``), so a code ``001`` stays ``001`` and a text such as
  ``=1+1`` or ``#N/A`` never becomes a formula or an error value; the columns named in ``Sheet.numbers`` are
  number cells.  NULL, and an empty text, is no cell at all.  Each cell carries its reference (``C7``).
* Escaping is the server's, with ``replace()``: ``&``, ``<``, ``>`` as entities; backslash, newline, carriage
  return and tab as character references, because ``COPY``'s text format would otherwise escape them itself
  (and an XML reader would turn a raw carriage return into a newline): every text reads back exactly.
  ``xml:space="preserve"`` keeps leading and trailing spaces.
* What XML 1.0 cannot hold is refused, as openpyxl refused it: a control character other than tab, newline
  and carriage return, U+FFFE or U+FFFF; so is a text longer than the 32,767 characters of an Excel cell.
  The server renders such a row as a marker line (starting with byte 0x01, which no rendered row contains)
  naming the problem, the column and the key; the writer looks for that byte in each block it writes (one
  ``bytes.find``) and raises :class:`RefdataReviewError` naming the key and the column.
* The header row is bold and frozen; :attr:`Sheet.choices` become drop-down lists (data validations) over
  the rows written.

Plain Python: no Airflow import, and no openpyxl (the tests read the files back with it).
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import psycopg
from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataReviewError

#: Characters one Excel cell holds.
MAX_CELL_CHARS = 32_767
#: Bytes of rendered rows collected before they are checked for a marker and written to the zip entry (fewer,
#: larger writes: the server sends one message per row).
WRITE_BYTES = 1 << 20
#: zlib level of the zip entries: 1 deflates the repetitive sheet XML about as well as 6, several times faster.
COMPRESS_LEVEL = 1
#: Largest sheet XML a zip entry without the Zip64 extension holds; Zip64 is avoided because Excel is picky
#: about it, and a review sheet that large is better exported as CSV.
SHEET_MAX_BYTES = zipfile.ZIP64_LIMIT

SHEET_PART = "xl/worksheets/sheet1.xml"
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

#: Characters XML 1.0 does not allow (besides NUL, which a PostgreSQL text cannot hold), as regular expressions
#: that PostgreSQL and Python read alike: the control characters openpyxl refuses, and two non-characters.
_CONTROL_RE = r"[\x01-\x08\x0b\x0c\x0e-\x1f]"
_NONCHAR_RE = r"[\ufffe\uffff]"
_UNFIT_RE = r"[\x01-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"
_UNFIT = re.compile(_UNFIT_RE)
#: The first byte of the server's line for a row it cannot render; the escaping leaves no such byte in a row.
_MARKER = b"\x01"
_PROBLEMS = {
    "long": f"is longer than the {MAX_CELL_CHARS:,} characters an Excel cell holds",
    "control": "holds a control character",
    "nonchar": "holds U+FFFE or U+FFFF, a character XML does not allow",
}
#: What ``replace()`` escapes, in this order (``&`` first): entities for XML, character references for what
#: ``COPY``'s text format would escape itself (backslash, newline, tab) and for the carriage return, which an
#: XML reader would read as a newline.
_ESCAPES = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ("\\", "&#92;"),
    ("\n", "&#10;"),
    ("\r", "&#13;"),
    ("\t", "&#9;"),
)
_HEADER_STYLE = 1  # index of the bold style in the cellXfs of :data:`_STYLES`

_CONTENT_TYPES = (
    _DECLARATION + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    f'<Override PartName="/{SHEET_PART}" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    _DECLARATION + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    _DECLARATION + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
# Excel expects the two first fills (none, gray125); style 0 is the default, style 1 the bold header.
_STYLES = (
    _DECLARATION + f'<styleSheet xmlns="{_MAIN_NS}">'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)


@dataclass(frozen=True)
class Sheet:
    """One sheet: its header and the query whose rows it shows.

    :param table: the schema-qualified table (named in errors; its name, the sheet's title).
    :param columns: the header, one name per column.
    :param values: one SQL expression per column, of type text (an integer for the columns of ``numbers``).
    :param key: the column whose value names a row in an error.
    :param source: the query's ``FROM … WHERE …``.
    :param order: the query's order, (expression, direction) pairs such as ``(total, "DESC NULLS LAST")``; it
        must order the rows totally (end with a unique key), as each row's number is taken from it.
    :param params: the query's parameters.
    :param numbers: the columns written as number cells.
    :param choices: drop-down lists by column: the values a cell of that column may take (or empty).
    """

    table: str
    columns: Sequence[str]
    values: Sequence[sql.Composable]
    key: str
    source: sql.Composable
    order: Sequence[tuple[sql.Composable, str]]
    params: Mapping[str, Any]
    numbers: frozenset[str] = frozenset()
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)


def write_sheet(pg: psycopg.Connection, sheet: Sheet, fh: BinaryIO) -> int:
    """Write the workbook of ``sheet`` to ``fh``; return the rows below the header.

    :param pg: the connection (the query runs in its current transaction).
    :param sheet: what to write.
    :param fh: a binary file open for writing (and seekable: each zip entry's header is completed after it).
    :raises RefdataReviewError: a value XLSX cannot hold (naming key and column), or a sheet too large for a zip.
    """
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _workbook(sheet))
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/styles.xml", _STYLES)
        with archive.open(SHEET_PART, "w") as part:
            part.write(_sheet_head(sheet).encode())
            rows = _stream_rows(pg, sheet, part)
            part.write(_sheet_tail(sheet, rows).encode())
    return rows


# --------------------------------------------------------------------------------------------------------
# The fixed parts, from Python
# --------------------------------------------------------------------------------------------------------


def _workbook(sheet: Sheet) -> str:
    """``xl/workbook.xml``: the one sheet, under the table's name."""
    return (
        _DECLARATION + f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        '<bookViews><workbookView activeTab="0"/></bookViews>'
        f'<sheets><sheet name="{_xml(sheet_title(sheet.table), sheet)}" sheetId="1" r:id="rId1"/>'
        "</sheets></workbook>"
    )


def _sheet_head(sheet: Sheet) -> str:
    """The sheet up to its first data row: the frozen header, column widths, and the bold header row."""
    widths = "".join(
        f'<col min="{i}" max="{i}" width="{min(40, max(10, display_width(c) + 2))}" customWidth="1"/>'
        for i, c in enumerate(sheet.columns, 1)
    )
    header = "".join(
        f'<c r="{column_letter(i)}1" s="{_HEADER_STYLE}" t="inlineStr"><is><t>{_xml(c, sheet)}</t></is></c>'
        for i, c in enumerate(sheet.columns)
    )
    return (
        _DECLARATION + f'<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        '<sheetViews><sheetView tabSelected="1" workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
        '<sheetFormatPr defaultRowHeight="15"/>'
        f"<cols>{widths}</cols><sheetData>"
        f'<row r="1">{header}</row>\n'
    )


def _sheet_tail(sheet: Sheet, rows: int) -> str:
    """The sheet after its last row: the drop-down lists over the rows written, the page margins."""
    last = rows + 1 if rows else 2  # an empty sheet still offers the lists on its first line
    validations = "".join(_validation(sheet, column, allowed, last) for column, allowed in sheet.choices.items())
    if validations:
        validations = f'<dataValidations count="{len(sheet.choices)}">{validations}</dataValidations>'
    margins = '<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>'
    return f"</sheetData>{validations}{margins}</worksheet>"


def _validation(sheet: Sheet, column: str, allowed: Sequence[str], last: int) -> str:
    """A list validation of ``column`` from row 2 to ``last``: Excel shows a drop-down of ``allowed``."""
    letter = column_letter(list(sheet.columns).index(column))
    error = f"{column} is one of {', '.join(allowed)}, or empty"
    return (
        f'<dataValidation type="list" allowBlank="1" showErrorMessage="1" '
        f'errorTitle="{_xml(column, sheet)}" error="{_xml(error, sheet)}" sqref="{letter}2:{letter}{last}">'
        f'<formula1>"{_xml(",".join(allowed), sheet)}"</formula1></dataValidation>'
    )


def _xml(text: str, sheet: Sheet) -> str:
    """``text`` escaped for XML content or a double-quoted attribute; refused when XML 1.0 cannot hold it."""
    if _UNFIT.search(text):
        raise RefdataReviewError(
            f"{sheet.table}: the name {text!r} holds a character XML does not allow; export with format='csv'",
            table=sheet.table,
        )
    for char, reference in (*_ESCAPES[:3], ('"', "&quot;"), *_ESCAPES[4:]):
        text = text.replace(char, reference)
    return text


# --------------------------------------------------------------------------------------------------------
# The rows, rendered by the server
# --------------------------------------------------------------------------------------------------------


def _rows_statement(sheet: Sheet) -> sql.Composed:
    """``COPY (SELECT <row XML, or the marker of a row XLSX cannot hold> …) TO STDOUT``, one line per row.

    The inner query computes each value once (``c0``, ``c1``, …; a query with a window function is not merged
    into the outer one, whose XML refers to each value several times), the sort keys (``o0``, …) and the row's
    number in the sheet (``n``; the header is row 1).  Ordering the outer query by the sort keys costs no
    second sort: the window's sort already delivers the rows in that order.
    """
    order = [sql.SQL("{} {}").format(sql.Identifier(f"o{i}"), sql.SQL(d)) for i, (_, d) in enumerate(sheet.order)]
    window = sql.SQL(", ").join(sql.SQL("{} {}").format(e, sql.SQL(d)) for e, d in sheet.order)
    inner = [
        sql.SQL("{} AS {}").format(v if c in sheet.numbers else sql.SQL("nullif({}, '')").format(v), _value(i))
        for i, (c, v) in enumerate(zip(sheet.columns, sheet.values, strict=True))
    ]
    inner += [sql.SQL("{} AS {}").format(e, sql.Identifier(f"o{i}")) for i, (e, _) in enumerate(sheet.order)]
    inner.append(sql.SQL("(row_number() OVER (ORDER BY {}) + 1)::text AS n").format(window))
    return sql.SQL(
        "COPY (SELECT coalesce({problem}, {row}) FROM (SELECT {inner} {source}) AS x ORDER BY {order}) "
        "TO STDOUT WITH (ENCODING 'UTF8')"
    ).format(
        problem=_problem(sheet),
        row=_row(sheet),
        inner=sql.SQL(", ").join(inner),
        source=sheet.source,
        order=sql.SQL(", ").join(order),
    )


def _value(index: int) -> sql.Identifier:
    """The inner query's name of the value of column ``index`` (NULL for an empty text: no cell)."""
    return sql.Identifier(f"c{index}")


def _row(sheet: Sheet) -> sql.Composable:
    """The ``<row>`` element of one row: a number cell or an inline-string cell per value that is not NULL."""
    cells = []
    for i, column in enumerate(sheet.columns):
        # The markup is this module's constant text, not data: composed into the statement as literals.
        ref = sql.SQL("{} || n").format(sql.Literal(f'<c r="{column_letter(i)}'))
        if column in sheet.numbers:
            cells.append(sql.SQL("{} || '\"><v>' || {} || '</v></c>'").format(ref, _value(i)))
        else:
            open_text = sql.Literal('" t="inlineStr"><is><t xml:space="preserve">')
            cells.append(sql.SQL("{} || {} || {} || '</t></is></c>'").format(ref, open_text, _escaped(_value(i))))
    # A NULL value makes its cell NULL, which array_to_string leaves out (concat would too, but takes at most
    # 100 arguments).
    return sql.SQL("'<row r=\"' || n || '\">' || array_to_string(ARRAY[{}]::text[], '') || '</row>'").format(
        sql.SQL(", ").join(cells)
    )


def _escaped(text: sql.Composable) -> sql.Composable:
    """``text`` with each of :data:`_ESCAPES` replaced, by the server."""
    for char, reference in _ESCAPES:
        text = sql.SQL("replace({}, {}, {})").format(text, sql.Literal(char), sql.Literal(reference))
    return text


def _problem(sheet: Sheet) -> sql.Composable:
    """The marker line of a row with a text XLSX cannot hold (NULL for every other row).

    ``\\x01<problem> <column index> <key as hex UTF-8>``: one regular expression over the row's texts and
    their byte lengths (cheap) find the suspect rows; only those are looked at cell by cell.
    """
    texts = [i for i, c in enumerate(sheet.columns) if c not in sheet.numbers]
    if not texts:
        return sql.SQL("NULL")
    limit = sql.Literal(MAX_CELL_CHARS)
    suspect = sql.SQL("array_to_string(ARRAY[{}], '') ~ {} OR greatest({}) > {}").format(
        sql.SQL(", ").join(_value(i) for i in texts),
        sql.Literal(_UNFIT_RE),
        sql.SQL(", ").join(sql.SQL("octet_length({})").format(_value(i)) for i in texts),
        limit,
    )
    per_cell = [
        sql.SQL(
            "CASE WHEN length({v}) > {limit} THEN 'long' WHEN {v} ~ {control} THEN 'control' "
            "WHEN {v} ~ {nonchar} THEN 'nonchar' END || {index}"
        ).format(
            v=_value(i),
            limit=limit,
            control=sql.Literal(_CONTROL_RE),
            nonchar=sql.Literal(_NONCHAR_RE),
            index=sql.Literal(f" {i}"),
        )
        for i in texts
    ]
    key = _value(list(sheet.columns).index(sheet.key))
    return sql.SQL(
        "CASE WHEN {} THEN chr(1) || coalesce({}) || ' ' || encode(convert_to(coalesce({}, ''), 'UTF8'), 'hex') END"
    ).format(suspect, sql.SQL(", ").join(per_cell), key)


def _stream_rows(pg: psycopg.Connection, sheet: Sheet, part: BinaryIO) -> int:
    """Copy the server's rows into the sheet entry, in blocks of about :data:`WRITE_BYTES` whole lines."""
    written = 0
    pending = bytearray()

    def flush(block: bytes | bytearray) -> None:
        nonlocal written
        at = block.find(_MARKER)
        if at >= 0:
            raise _marker_error(sheet, bytes(block[at + 1 : block.index(b"\n", at)]))
        written += len(block)
        if written > SHEET_MAX_BYTES:
            raise RefdataReviewError(
                f"{sheet.table}: the sheet's XML is larger than the {SHEET_MAX_BYTES:,} bytes a zip entry holds; "
                "export with format='csv', or narrow the export with domain= or since=",
                table=sheet.table,
            )
        part.write(block)

    with pg.cursor() as cur:
        with cur.copy(_rows_statement(sheet), sheet.params) as copy:
            for chunk in copy:
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    cut = pending.rfind(b"\n") + 1  # whole lines only: a marker line is never split
                    flush(pending[:cut])
                    del pending[:cut]
        flush(pending)
        return cur.rowcount


def _marker_error(sheet: Sheet, line: bytes) -> RefdataReviewError:
    """The error for the server's marker line ``<problem> <column index> <key as hex>``."""
    problem, index, key_hex = line.decode("ascii").split(" ")
    key = bytes.fromhex(key_hex).decode("utf-8")
    return RefdataReviewError(
        f"{sheet.table}, key {key!r}: the value of {sheet.columns[int(index)]!r} {_PROBLEMS[problem]}, which an "
        "XLSX file cannot hold; export with format='csv'",
        table=sheet.table,
        keys=[key],
    )


# --------------------------------------------------------------------------------------------------------
# Names and widths
# --------------------------------------------------------------------------------------------------------


def column_letter(index: int) -> str:
    """The letters of the column at ``index`` (0 → ``A``, 26 → ``AA``)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def sheet_title(table: str) -> str:
    """The table's name as a worksheet title (at most 31 characters, none of ``[]:*?/\\``)."""
    name = table.split(".", 1)[1]
    return "".join("_" if ch in "[]:*?/\\" else ch for ch in name)[:31] or "review"


def display_width(text: str) -> int:
    """Width of ``text`` in Excel's character units: wide (CJK) characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)
