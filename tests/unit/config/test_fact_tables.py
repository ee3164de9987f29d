"""``ForeignKeyConfig.fact_tables``: ``schema.table.column`` entries, validated when the file is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_refdata.config import ForeignKeyConfig, load_fk_domains
from airflow_provider_refdata.config.foreign_keys import split_fact_column
from airflow_provider_refdata.exceptions import RefdataConfigError


def _file(tmp_path: Path, entries: str) -> Path:
    path = tmp_path / "foreign_keys.yml"
    path.write_text(
        'schema_version: "1.0"\n'
        "domains:\n"
        "  annuity_performance:\n"
        "    foreign_keys:\n"
        "      - name: fk_plan\n"
        "        source_column: 计划代码\n"
        "        target_schema: business\n"
        "        target_table: 年金计划\n"
        "        target_key: 年金计划号\n"
        f"        fact_tables: {entries}\n",
        encoding="utf-8",
    )
    return path


def test_entries_load_and_split_into_three_unquoted_parts(tmp_path):
    path = _file(tmp_path, '[business.规模明细.计划代码, \'business."月度.明细".计划代码\', " b . 收入 . 计划代码 "]')

    (fk,) = load_fk_domains(path)["annuity_performance"]

    assert fk.fact_tables == ["business.规模明细.计划代码", 'business."月度.明细".计划代码', "b . 收入 . 计划代码"]
    assert fk.fact_columns == [
        ("business", "规模明细", "计划代码"),
        ("business", "月度.明细", "计划代码"),
        ("b", "收入", "计划代码"),
    ]


def test_absent_means_none():
    fk = ForeignKeyConfig.model_validate({"name": "fk", "source_column": "c", "target_table": "t", "target_key": "k"})
    assert (fk.fact_tables, fk.fact_columns) == ([], [])


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ("[business.收入]", "has 2 part(s)"),
        ("[a.b.c.d]", "has 4 part(s)"),
        ("[a..c]", "has an empty part"),
        ("['a.\"b.c']", "has an unclosed double quote"),
        ("['a.\"b\"x.c']", "has text after the quoted part 'b'"),
        (f"[a.{'长' * 30}.c]", "longer than PostgreSQL's 63-byte identifier limit"),
        ("[a.b.c, ' a . b . c']", "names the same column as fact_tables[0]"),
    ],
)
def test_a_bad_entry_names_the_fk_the_entry_and_the_line(tmp_path, entries, problem):
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_domains(_file(tmp_path, entries))
    error = raised.value
    assert "foreign key 'fk_plan': fact_tables entry" in str(error) and problem in str(error)
    assert error.key_path.startswith("domains.annuity_performance.foreign_keys[0].fact_tables[")
    assert error.line == 10


def test_split_fact_column_unescapes_doubled_quotes():
    assert split_fact_column('s."a""b".c') == ("s", 'a"b', "c")
