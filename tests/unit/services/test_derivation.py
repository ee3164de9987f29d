"""Derivation of candidate reference rows: blank handling, normalisation and every aggregation type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_provider_refdata import ForeignKeyConfig, RefdataBackfillError
from airflow_provider_refdata.services.derivation import derive_candidates, extract_keys, normalize_text


def _fk(*columns: dict, **extra) -> ForeignKeyConfig:
    return ForeignKeyConfig(
        name="fk_plan",
        source_column="计划代码",
        target_schema="business",
        target_table="年金计划",
        target_key="年金计划号",
        backfill_columns=list(columns) or [{"source": "计划名称", "target": "计划名称"}],
        **extra,
    )


def _derive(df: pd.DataFrame, *columns: dict, **extra) -> dict[str, dict]:
    frame = derive_candidates(df, _fk(*columns, **extra)).frame
    records = frame.to_dict("records")
    return {record.pop("年金计划号"): record for record in records}


def test_blank_values_trimming_and_first_appearance_order():
    df = pd.DataFrame({"计划代码": ["B", " A ", "", None, np.nan, "  ", "A", "(空白)"], "计划名称": list("abcdefgh")})
    keys = extract_keys(df, _fk())
    assert list(keys.keys) == ["B", "A", "(空白)"]
    assert keys.blank_rows == 4
    with_tokens = extract_keys(df, _fk(skip_blank_values=True))
    assert list(with_tokens.keys) == ["B", "A"] and with_tokens.blank_rows == 5


def test_numeric_codes_become_text_without_dot_zero_and_nan_never_text():
    assert normalize_text(pd.Series([1001.0, np.nan, 2.5, -3.0])).tolist() == ["1001", None, "2.5", "-3"]
    assert normalize_text(pd.Series([7, 8], dtype="int64")).tolist() == ["7", "8"]
    assert normalize_text(pd.Series(["P1", 1001.0, 12, None, float("nan")], dtype=object)).tolist() == [
        "P1",
        "1001",
        "12",
        None,
        None,
    ]
    assert normalize_text(pd.Series([1.0, None], dtype="Float64")).tolist() == ["1", None]
    df = pd.DataFrame({"计划代码": [1001.0, 1001, np.nan], "计划名称": [np.nan, "名", None]})
    assert _derive(df) == {"1001": {"计划名称": "名"}}


def test_first_takes_first_non_blank_in_fact_order_and_none_when_all_blank():
    df = pd.DataFrame({"计划代码": ["A", "A", "A", "B"], "计划名称": [None, "  ", " 甲 ", np.nan]})
    assert _derive(df) == {"A": {"计划名称": "甲"}, "B": {"计划名称": None}}


MAX_BY = {"source": "主拓代码", "target": "主拓代码", "aggregation": {"type": "max_by", "order_column": "规模"}}


def test_max_by_numeric_coercion_ties_all_null_and_strings():
    df = pd.DataFrame(
        {
            "计划代码": ["A", "A", "A", "B", "B", "B", "C", "C", "D", "D"],
            "主拓代码": ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", None, "d2"],
            "规模": ["9", " 1,000.5 ", "abc", "5", "7", "7", None, "n/a", "100", "1"],
        }
    )
    derived = _derive(df, MAX_BY)
    assert derived["A"]["主拓代码"] == "a2"  # " 1,000.5 " coerces to 1000.5; "abc" counts as NULL
    assert derived["B"]["主拓代码"] == "b2"  # tie on 7: the first row in fact order wins
    assert derived["C"]["主拓代码"] == "c1"  # no numeric order value at all: first row
    assert derived["D"]["主拓代码"] == "d2"  # the largest order value has a blank value: next best non-blank


def test_max_by_on_numeric_order_column():
    df = pd.DataFrame({"计划代码": ["A"] * 3, "主拓代码": ["x", "y", "z"], "规模": [1.5, np.nan, 3.25]})
    assert _derive(df, MAX_BY)["A"]["主拓代码"] == "z"


def test_concat_distinct_sorted_unsorted_and_separator():
    df = pd.DataFrame({"计划代码": ["A", "A", "A", "A", "B"], "业务类型": ["投资", "受托", "投资", " ", None]})
    sorted_ = {"source": "业务类型", "target": "管理资格", "aggregation": {"type": "concat_distinct"}}
    unsorted = {
        "source": "业务类型",
        "target": "资格",
        "aggregation": {"type": "concat_distinct", "separator": " / ", "sort": False},
    }
    derived = _derive(df, sorted_, unsorted)
    assert derived["A"] == {"管理资格": "受托+投资", "资格": "投资 / 受托"}
    assert derived["B"] == {"管理资格": None, "资格": None}


def test_count_distinct():
    df = pd.DataFrame({"计划代码": ["A", "A", "A", "B"], "组合代码": ["Q1", "Q2", " Q1", None]})
    column = {"source": "组合代码", "target": "组合数", "aggregation": {"type": "count_distinct"}}
    assert _derive(df, column) == {"A": {"组合数": 2}, "B": {"组合数": 0}}


def test_template_with_placeholders_constant_and_blank_values():
    df = pd.DataFrame({"计划代码": ["A", "B"], "计划名称": ["甲", None]})
    template = {
        "source": "计划代码",
        "target": "说明",
        "aggregation": {"type": "template", "template": "{计划代码}-{计划名称} {{原样}}"},
    }
    constant = {"source": "计划代码", "target": "状态", "aggregation": {"type": "template", "template": "待确认"}}
    assert _derive(df, template, constant) == {
        "A": {"说明": "A-甲 {原样}", "状态": "待确认"},
        "B": {"说明": "B- {原样}", "状态": "待确认"},
    }


def test_missing_required_column_names_fk_and_column_optional_gives_null():
    df = pd.DataFrame({"计划代码": ["A"]})
    with pytest.raises(RefdataBackfillError) as info:
        derive_candidates(df, _fk())
    assert info.value.fk_name == "fk_plan" and info.value.column == "计划名称"
    assert "fk_plan" in str(info.value) and "计划名称" in str(info.value)
    with pytest.raises(RefdataBackfillError) as order_missing:
        derive_candidates(df.assign(主拓代码="x"), _fk(MAX_BY))
    assert order_missing.value.column == "规模"
    optional = {"source": "计划名称", "target": "计划名称", "optional": True}
    assert _derive(df, optional) == {"A": {"计划名称": None}}
    with pytest.raises(RefdataBackfillError) as fk_missing:
        derive_candidates(pd.DataFrame({"x": [1]}), _fk())
    assert fk_missing.value.column == "计划代码"


def test_large_frame_is_vectorised():
    n = 300_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "计划代码": rng.integers(0, 20_000, n).astype(str),
            "计划名称": rng.integers(0, 50, n).astype(str),
            "主拓代码": rng.integers(0, 50, n).astype(str),
            "规模": rng.random(n),
        }
    )
    import time

    started = time.perf_counter()
    frame = derive_candidates(df, _fk({"source": "计划名称", "target": "计划名称"}, MAX_BY)).frame
    assert len(frame) == df["计划代码"].nunique()
    assert time.perf_counter() - started < 5  # a per-row Python loop would take far longer on 2 busy cores
