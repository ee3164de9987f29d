"""The review file: what ``export_review`` writes and ``apply_review_file`` reads back (CSV or XLSX).

One file per reference table, one row per open placeholder, columns in this order:

1. ``action`` and ``remap_to``: empty in the export, filled in by the steward (``approve``, ``reject``,
   ``remap``; ``remap_to`` is the authoritative key a ``remap`` points at).  A row without an action is left
   alone.
2. the table's key column, under its own name (e.g. ``年金计划号``);
3. the table's business columns in table order, under their own names, without the tracking columns and
   without the columns configured as sensitive for the table.  For an ``approve`` the steward may complete or
   correct them: a cell that differs from the stored value is written (an empty cell is NULL);
4. provenance, read-only and prefixed with ``_``: :data:`PROVENANCE_COLUMNS`;
5. ``_table``: the schema-qualified table, the same in every row, so the file alone says where it belongs.

Line numbers are those a spreadsheet shows: the header is line 1, the first placeholder line 2.
"""

from __future__ import annotations

ACTION = "action"
REMAP_TO = "remap_to"
STEWARD_COLUMNS = (ACTION, REMAP_TO)

APPROVE = "approve"
REJECT = "reject"
REMAP = "remap"
ACTIONS = (APPROVE, REJECT, REMAP)

#: Read-only provenance columns of the export (from ``refdata.placeholder`` and the tracking columns).
PROVENANCE_COLUMNS = (
    "_fact_rows_total",
    "_fact_rows_last",
    "_first_seen_at",
    "_last_seen_at",
    "_domains",
    "_derived_from_domain",
    "_derived_at",
)
TABLE_COLUMN = "_table"

FORMATS = ("csv", "xlsx")
#: CSV files start with a UTF-8 byte-order mark so that Excel opens Chinese text correctly.
CSV_ENCODING = "utf-8-sig"
