"""The DDL builder of ``create_table: true`` (warehouse/ddl.py) without a server: quoting, key, type checks.

The integration test ``tests/integration/services/test_sync_create_table.py`` runs the statement for real.
"""

from __future__ import annotations

import pytest

from airflow_provider_refdata.exceptions import RefdataSyncError
from airflow_provider_refdata.services.sources import SourceColumn
from airflow_provider_refdata.warehouse.ddl import create_table_statement, valid_type_text
from airflow_provider_refdata.warehouse.tracking import TRACKING_COLUMNS

COLUMNS = [
    SourceColumn("计划代码", "varchar(16)", nullable=False, source_type="varchar(16)"),
    SourceColumn("组合代码", "varchar(16)"),
    SourceColumn("规模", "numeric(18,2)"),
    SourceColumn('odd "name"', "timestamp(3) with time zone"),
]


def test_statement_quotes_names_keys_not_null_tracking_columns_and_index() -> None:
    text = create_table_statement("业务 库", "年金计划", COLUMNS, ["计划代码", "组合代码"]).as_string(None)
    assert text.startswith('CREATE TABLE "业务 库"."年金计划" (\n')
    assert '    "计划代码" varchar(16) NOT NULL,\n' in text
    assert '    "组合代码" varchar(16) NOT NULL,\n' in text
    assert '    "规模" numeric(18,2),\n' in text  # not a key: nullable whatever the source says
    assert '    "odd ""name""" timestamp(3) with time zone,\n' in text
    for name, definition in TRACKING_COLUMNS.items():  # the definitions of warehouse/tracking.py, reused
        assert f'    "{name}" {definition},\n' in text
    assert '    PRIMARY KEY ("计划代码", "组合代码"),\n' in text
    assert """CONSTRAINT "年金计划__source_check" CHECK ("_source" IN ('authoritative', 'auto_derived'))""" in text
    assert text.endswith('CREATE INDEX ON "业务 库"."年金计划" ("_needs_review");')
    assert "CREATE SCHEMA" not in text


def test_create_schema_first_when_asked() -> None:
    text = create_table_statement("新", "t", COLUMNS[:1], "计划代码", create_schema=True).as_string(None)
    assert text.startswith('CREATE SCHEMA IF NOT EXISTS "新";\nCREATE TABLE "新"."t" (')


@pytest.mark.parametrize(
    "pg_type",
    [
        "text",
        "varchar(16)",
        "character varying(16)",
        "numeric(18,2)",
        "numeric(18, 2)",
        "double precision",
        "timestamptz(3)",
        "timestamp(0) without time zone",
        "timestamp(6) with time zone",
        "interval(2)",
        "interval day to second(3)",
        "interval year to month",
        "time(3) without time zone",
        "text[]",
        "integer[][]",
        "bit varying(5)",
        "public.citext",
        "INTEGER",
    ],
)
def test_type_names_accepted(pg_type: str) -> None:
    assert valid_type_text(pg_type)


@pytest.mark.parametrize(
    "pg_type",
    [
        "",
        "text NOT NULL",
        "text PRIMARY KEY",
        "text REFERENCES other",
        "text); DROP TABLE x; --",
        "varchar(16",
        "numeric(1,2,3)",
        "numeric(1)(2)",
        "text collate C",
        '"Mood"',
        "text -- comment",
        "int4 DEFAULT 1",
        "text\n",
        "a" * 101,
    ],
)
def test_anything_but_a_type_name_is_refused(pg_type: str) -> None:
    assert not valid_type_text(pg_type)
    with pytest.raises(RefdataSyncError, match="not a PostgreSQL type name") as info:
        create_table_statement("s", "t", [SourceColumn("k", "text"), SourceColumn("值", pg_type)], "k")
    assert info.value.column == "值"


@pytest.mark.parametrize(
    ("columns", "key", "message"),
    [
        ([], "k", "described no columns"),
        ([SourceColumn("k", "text")], [], "no primary key"),
        ([SourceColumn("k", "text")], "id", r"primary key column\(s\) id are not among"),
        ([SourceColumn("k", "text"), SourceColumn("k", "integer")], "k", "appears twice"),
        ([SourceColumn("k", "text"), SourceColumn("_needs_review", "boolean")], "k", "tracking column"),
    ],
)
def test_bad_definitions_are_refused(columns: list[SourceColumn], key, message: str) -> None:
    with pytest.raises(RefdataSyncError, match=message):
        create_table_statement("s", "t", columns, key)
