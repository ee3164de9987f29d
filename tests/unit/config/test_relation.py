"""WarehouseRelation: table names, the single-SELECT check, parameters and order_by (no database)."""

from __future__ import annotations

import pytest

from airflow_provider_refdata import WarehouseRelation
from airflow_provider_refdata.exceptions import RefdataConfigError


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT 1; DELETE FROM x", "single statement"),
        ("DELETE FROM x", "not 'DELETE'"),
        ("INSERT INTO x SELECT 1", "not 'INSERT'"),
        ("SELECT 'unterminated", "unterminated string"),
        ("SELECT 1 /* open", "unterminated /\\* comment"),
        ("SELECT $a$ x", "unterminated dollar-quoted"),
    ],
)
def test_a_query_must_be_one_select(query, message):
    with pytest.raises(RefdataConfigError, match=message):
        WarehouseRelation(query=query)


def test_semicolons_and_keywords_inside_literals_and_comments_are_not_the_statements():
    ok = WarehouseRelation(
        query="WITH x AS (SELECT ';' AS \"a;b\", $$;$$ AS c, E'\\';' AS d /* ; */) SELECT * FROM x -- ;\n;"
    )
    assert ok.query.endswith("SELECT * FROM x")  # the trailing comment and ';' are cut off
    assert WarehouseRelation(query="(SELECT 1)").query == "(SELECT 1)"
    assert WarehouseRelation(query="values (1)").query == "values (1)"


def test_table_names_sources_and_params():
    assert WarehouseRelation(table='"my.schema".表').qualified_name == ("my.schema", "表")
    assert WarehouseRelation(table="事实").qualified_name == ("public", "事实")
    assert WarehouseRelation(table="s.t").describe() == "s.t"
    with pytest.raises(RefdataConfigError, match="schema.table"):
        WarehouseRelation(table="a.b.c")
    with pytest.raises(RefdataConfigError, match="exactly one"):
        WarehouseRelation(table="a.b", query="SELECT 1")
    with pytest.raises(RefdataConfigError, match="exactly one"):
        WarehouseRelation()
    with pytest.raises(RefdataConfigError, match="only apply to a query"):
        WarehouseRelation(table="a.b", params={"x": 1})
    with pytest.raises(RefdataConfigError, match="reserved"):
        WarehouseRelation(query="SELECT %(refdata_x)s", params={"refdata_x": 1})
    with pytest.raises(RefdataConfigError, match="order_by"):
        WarehouseRelation(table="a.b", order_by=[""])


def test_bound_query_leaves_only_named_placeholders():
    # No params: the text is literal, so its % is doubled for the statement that binds the service's values.
    assert WarehouseRelation(query="SELECT 1 WHERE 'a' LIKE '%'").bound_query() == (
        "SELECT 1 WHERE 'a' LIKE '%%'",
        {},
    )
    named = WarehouseRelation(query="SELECT %(m)s WHERE 'a' LIKE '%%'", params={"m": "202406"})
    assert named.bound_query() == ("SELECT %(m)s WHERE 'a' LIKE '%%'", {"m": "202406"})
    positional = WarehouseRelation(query="SELECT %s, %s WHERE 'a' LIKE '%%'", params=["x", 2])
    assert positional.bound_query() == (
        "SELECT %(refdata_q0)s, %(refdata_q1)s WHERE 'a' LIKE '%%'",
        {"refdata_q0": "x", "refdata_q1": 2},
    )
    with pytest.raises(RefdataConfigError, match="1 placeholder"):
        WarehouseRelation(query="SELECT %s", params=[1, 2]).bound_query()
    with pytest.raises(RefdataConfigError, match="mixes"):
        WarehouseRelation(query="SELECT %s, %(a)s", params={"a": 1}).bound_query()


@pytest.mark.parametrize("value", ["64MB", "512kB", "1GB", "32 MB", None])
def test_work_mem_is_a_memory_size_or_none(value):
    assert WarehouseRelation(table="s.t", work_mem=value).work_mem == value


@pytest.mark.parametrize("value", ["64", "64mb", "lots", "0MB", "64MB; SET role x", ""])
def test_work_mem_that_is_not_a_memory_size_is_refused_naming_the_key(value):
    with pytest.raises(RefdataConfigError) as caught:
        WarehouseRelation(table="s.t", work_mem=value)
    assert caught.value.key_path == "work_mem" and "work_mem" in str(caught.value)


def test_work_mem_defaults_to_64mb():
    assert WarehouseRelation(table="s.t").work_mem == "64MB"
