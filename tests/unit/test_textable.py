"""Text tables line up by display width, numbers to the right."""

from __future__ import annotations

from airflow_provider_refdata.textable import display_width, text_table


def test_display_width_counts_cjk_as_two_columns():
    assert display_width("business.年金计划") == len("business.") + 8
    assert display_width("abc") == 3


def test_text_table_aligns_chinese_names_and_right_aligns_numbers():
    lines = text_table(["table", "rows"], [["business.年金计划", 1200], ["s.t", 5], ["business.产品线", None]])
    assert lines == [
        "table               rows",
        "business.年金计划  1,200",
        "s.t                    5",
        "business.产品线",
    ]
