"""Stage a month's fact file and load the staged facts as Airflow tasks (the steps around the coverage check).

``FactStageOperator`` resolves the month (empty = the previous month), finds the month's file, COPYs it into
a staging table and returns that table's name (``"schema"."table"``) for ``HybridReferenceOperator(table=…)``;
``FactLoadOperator`` replaces the month's rows of the fact table with the staged rows in one ``INSERT …
SELECT``.  The work is :mod:`airflow_provider_refdata.services.fact_load`; a month not written ``YYYY-MM`` or
a missing file fails the task at once (no retry) with one line naming the value, the file and the months
whose files exist.

Defaults read at run time, never at parse time: ``$REFDATA_FACT_DIR`` (folder of the fact files, default
``data/facts``), ``$REFDATA_STAGING_SCHEMA`` (default ``staging``), ``$REFDATA_FACT_SCHEMA`` (default ``business``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_refdata.exceptions import RefdataFactFileError
from airflow_provider_refdata.operators.hybrid import read_fact_file, split_table_name

if TYPE_CHECKING:
    from airflow.sdk import Context


def _hook(conn_id: str) -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id)


class FactStageOperator(BaseOperator):
    """COPY the month's fact file into a staging table (all columns ``text``); returns ``"schema"."table"``.

    :param domain: the fact domain; names the files (``<domain>_<YYYYMM>.csv``) and the staging table.
    :param month: ``YYYY-MM``; empty = the previous month in ``timezone`` (templated).
    :param fact_file: the file to stage (CSV, Parquet or Excel); empty = ``fact_dir/<domain>_<YYYYMM>.csv``
        (templated).
    :param fact_dir: folder of the monthly fact files (default ``$REFDATA_FACT_DIR``, else ``data/facts``).
    :param staging_schema: schema of the staging table (default ``$REFDATA_STAGING_SCHEMA``, else ``staging``).
    :param timezone: the calendar that decides the previous month.
    :param warehouse_conn_id: Airflow connection of the PostgreSQL warehouse.
    """

    template_fields: Sequence[str] = ("month", "fact_file", "fact_dir")

    def __init__(
        self,
        *,
        domain: str,
        month: str | None = None,
        fact_file: str | None = None,
        fact_dir: str | None = None,
        staging_schema: str | None = None,
        timezone: str = "Asia/Shanghai",
        warehouse_conn_id: str = "refdata_warehouse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.domain = domain
        self.month = month
        self.fact_file = fact_file
        self.fact_dir = fact_dir
        self.staging_schema = staging_schema
        self.timezone = timezone
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context: Context) -> str:
        from airflow_provider_refdata.services.fact_load import find_fact_file, resolve_month, stage_facts
        from airflow_provider_refdata.warehouse.connection import warehouse_connection

        fact_dir = self.fact_dir or os.environ.get("REFDATA_FACT_DIR", "data/facts")
        try:
            month = resolve_month(self.month, timezone=self.timezone)
            path = find_fact_file(self.domain, month, fact_dir=fact_dir, fact_file=self.fact_file or None)
        except RefdataFactFileError as err:
            # A wrong month or a missing file is not transient: fail once, with the one line that says why.
            raise AirflowFailException(str(err)) from None
        facts = read_fact_file(path)
        schema = self.staging_schema or os.environ.get("REFDATA_STAGING_SCHEMA", "staging")
        table = f"{self.domain}_{month.replace('-', '')}"
        with warehouse_connection(_hook(self.warehouse_conn_id)) as pg:
            rows = stage_facts(pg, facts, schema=schema, table=table)
        self.log.info("Staged %d fact rows of %s from %s into %s.%s", rows, month, path, schema, table)
        return f'"{schema}"."{table}"'


class FactLoadOperator(BaseOperator):
    """Replace the staged month's rows of the fact table with the staged rows; returns the rows loaded.

    :param staging_table: the staging table, ``schema.table`` (templated; e.g. a ``FactStageOperator``'s output).
    :param fact_table: the fact table's name.
    :param fact_schema: its schema (default ``$REFDATA_FACT_SCHEMA``, else ``business``).
    :param replace_column: the column whose staged values (the month) are replaced; ``None`` only appends.
    :param warehouse_conn_id: Airflow connection of the PostgreSQL warehouse.
    """

    template_fields: Sequence[str] = ("staging_table",)

    def __init__(
        self,
        *,
        staging_table: Any,
        fact_table: str,
        fact_schema: str | None = None,
        replace_column: str | None = None,
        warehouse_conn_id: str = "refdata_warehouse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staging_table = staging_table
        self.fact_table = fact_table
        self.fact_schema = fact_schema
        self.replace_column = replace_column
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context: Context) -> int:
        from airflow_provider_refdata.services.fact_load import load_staged_facts
        from airflow_provider_refdata.warehouse.connection import warehouse_connection

        stage = split_table_name(str(self.staging_table))
        fact = (self.fact_schema or os.environ.get("REFDATA_FACT_SCHEMA", "business"), self.fact_table)
        with warehouse_connection(_hook(self.warehouse_conn_id)) as pg:
            loaded = load_staged_facts(pg, stage, fact, replace_column=self.replace_column)
        self.log.info("Loaded %d fact rows into %s.%s", loaded, *fact)
        return loaded
