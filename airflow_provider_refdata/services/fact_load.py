"""Load a month of facts into the warehouse: find the month's file, stage it with COPY, insert it in one statement.

The public home of what a fact DAG does around :class:`~airflow_provider_refdata.services.hybrid.HybridReferenceService`
(plain Python, no Airflow; :mod:`airflow_provider_refdata.operators.fact_load` wraps it as tasks):

- :func:`resolve_month` turns ``""``/``None`` into the previous month and rejects anything not ``YYYY-MM``
  with a message naming the value;
- :func:`find_fact_file` finds ``<domain>_<YYYYMM>.csv`` (or the file given) and, when it is missing, raises one
  line naming the file and the months whose files do exist;
- :func:`stage_facts` COPYs the facts into a staging table whose columns are all ``text`` (a regular table,
  because the coverage check and the load run as later tasks on other connections);
- :func:`load_staged_facts` replaces the month's rows of the fact table with one ``INSERT … SELECT`` from the
  stage, converting to the fact columns' types (never truncating text), in one transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from psycopg import sql

from airflow_provider_refdata.exceptions import RefdataFactFileError
from airflow_provider_refdata.warehouse.catalog import table_info
from airflow_provider_refdata.warehouse.sqlbits import ident_list, table_ref
from airflow_provider_refdata.warehouse.staging import converted_value, copy_frame

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
#: The suffixes :func:`~airflow_provider_refdata.operators.hybrid.read_fact_file` reads.
FACT_FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".xlsx", ".xlsm")


def resolve_month(value: str | None, *, timezone: str = "Asia/Shanghai", today: dt.date | None = None) -> str:
    """``value`` checked as ``YYYY-MM``; empty or ``None`` → the month before ``today`` in ``timezone``.

    :param value: the month as the user typed it (a trigger form's ``month``).
    :param timezone: the time zone whose calendar decides which month is the previous one.
    :param today: the date to count back from (default: now in ``timezone``).
    """
    text = "" if value is None else str(value).strip()
    if not text:
        today = today or dt.datetime.now(ZoneInfo(timezone)).date()
        return f"{(today.replace(day=1) - dt.timedelta(days=1)):%Y-%m}"
    if not _MONTH.match(text):
        raise RefdataFactFileError(f"month must be YYYY-MM, got {text!r}", month=text)
    return text


def fact_file_name(domain: str, month: str) -> str:
    """``<domain>_<YYYYMM>.csv``, the name monthly fact files carry, e.g. ``annuity_performance_202611.csv``.

    :param domain: the fact domain.
    :param month: ``YYYY-MM``.
    """
    return f"{domain}_{month.replace('-', '')}.csv"


def fact_months(folder: str | Path, domain: str) -> list[str]:
    """The months (``YYYY-MM``, sorted) that have a ``<domain>_<YYYYMM>.<suffix>`` file in ``folder``.

    :param folder: the folder of the fact files.
    :param domain: the fact domain.
    """
    pattern = re.compile(rf"^{re.escape(domain)}_(\d{{4}})(0[1-9]|1[0-2])\.[A-Za-z]+$")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    months = {
        f"{m[1]}-{m[2]}"
        for p in folder.iterdir()
        if p.suffix.lower() in FACT_FILE_SUFFIXES and (m := pattern.match(p.name))
    }
    return sorted(months)


def find_fact_file(domain: str, month: str, *, fact_dir: str | Path, fact_file: str | None = None) -> Path:
    """The month's fact file: ``fact_file`` when given, else ``fact_dir/<domain>_<YYYYMM>.csv``; it must exist.

    :param domain: the fact domain (names the files and the months listed when one is missing).
    :param month: ``YYYY-MM`` (from :func:`resolve_month`).
    :param fact_dir: the folder of the monthly fact files.
    :param fact_file: an explicit file, used instead of the month's default name.
    :raises RefdataFactFileError: the file does not exist; one line naming it and the months that do exist.
    """
    path = Path(fact_file) if fact_file else Path(fact_dir) / fact_file_name(domain, month)
    if path.is_file():
        return path
    months = fact_months(path.parent, domain)
    found = f"fact files exist for {', '.join(months)}" if months else f"there are no {domain}_<YYYYMM> files"
    raise RefdataFactFileError(
        f"fact file for {month} not found: {path} ({found} in {path.parent})",
        file=str(path),
        month=month,
        months=months,
    )


def stage_facts(conn: psycopg.Connection, facts: pd.DataFrame, *, schema: str, table: str) -> int:
    """Replace ``schema.table`` with a table of the facts' columns (all ``text``) filled by COPY; returns the rows.

    :param conn: the warehouse connection (the stage is written in its own transaction).
    :param facts: the month's facts, one column per fact column.
    :param schema: the staging schema (created when missing).
    :param table: the staging table's name.
    """
    target = table_ref(schema, table)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                target, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(str(c))) for c in facts.columns)
            )
        )
        return copy_frame(conn, table, facts, schema=schema)


def load_staged_facts(
    conn: psycopg.Connection,
    stage: tuple[str, str],
    fact: tuple[str, str],
    *,
    replace_column: str | None = None,
) -> int:
    """Insert the staged rows into the fact table in one ``INSERT … SELECT``; returns the rows inserted.

    The fact table is created ``LIKE`` the stage when missing.  Only columns both tables have are loaded,
    each converted to the fact column's type (text is assigned, so an over-long value fails instead of being
    cut).  With ``replace_column``, the fact rows whose value in it occurs in the stage (the month) are deleted
    first, in the same transaction, so re-running a month replaces its rows instead of duplicating them.

    :param conn: the warehouse connection.
    :param stage: ``(schema, table)`` of the staging table from :func:`stage_facts`.
    :param fact: ``(schema, table)`` of the fact table.
    :param replace_column: the column whose staged values are replaced (e.g. the month column), or ``None``.
    """
    stage_ref, fact_ref = table_ref(*stage), table_ref(*fact)
    with conn.transaction():
        staged = table_info(conn, *stage)
        if staged is None:
            raise RefdataFactFileError(f"staging table {stage[0]}.{stage[1]} does not exist; stage the facts first")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(fact[0])))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(fact_ref, stage_ref))
        fact_columns = table_info(conn, *fact).columns
        columns = [c for c in staged.columns if c in fact_columns]

        def typed(column: str) -> sql.Composable:
            return converted_value(sql.Identifier("s", column), fact_columns[column])

        if replace_column in columns:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} IN (SELECT DISTINCT {} FROM {} AS s)").format(
                    fact_ref, sql.Identifier(replace_column), typed(replace_column), stage_ref
                )
            )
        return conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} AS s").format(
                fact_ref, ident_list(columns), sql.SQL(", ").join(typed(c) for c in columns), stage_ref
            )
        ).rowcount
