"""Template placeholders with a format spec: ``{月度:%y%m}`` formats a date, ``{金额:,.2f}`` a number.

Each case is one fact value (the only row of key ``K``), the template, and the derived value; a value that
does not parse gives NULL and is counted in ``template_unparsed``, never an exception.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from airflow_provider_refdata import ForeignKeyConfig
from airflow_provider_refdata.services.derivation import derive_candidates

LAMBDA_REPLACEMENT = "{月度:%y%m}新建"  # was: lambda of the month: month.strftime("%y%m") + "新建"


def _fk(template: str) -> ForeignKeyConfig:
    return ForeignKeyConfig(
        name="fk_portfolio",
        source_column="组合代码",
        target_table="组合计划",
        target_key="组合代码",
        backfill_columns=[
            {"source": "月度", "target": "说明", "aggregation": {"type": "template", "template": template}}
        ],
    )


def _one(template: str, column: str, value: object) -> tuple[object, int]:
    """(derived value, template_unparsed) for one fact row of key K with ``column`` = ``value``."""
    facts = pd.DataFrame({"组合代码": ["K"], "月度": ["2025-10"], column: pd.Series([value], dtype=object)})
    candidates = derive_candidates(facts, _fk(template))
    return candidates.frame.loc[0, "说明"], candidates.template_unparsed


DATE_CASES = [
    # value                                             template              expected
    (pd.Timestamp("2025-10-01"), LAMBDA_REPLACEMENT, "2510新建"),
    (dt.date(2025, 10, 31), LAMBDA_REPLACEMENT, "2510新建"),
    (dt.datetime(2025, 10, 3, 14, 5), LAMBDA_REPLACEMENT, "2510新建"),
    (pd.Timestamp("2025-10-01 08:00", tz="Asia/Shanghai"), "{月度:%Y-%m-%d %H:%M%z}", "2025-10-01 08:00+0800"),
    ("2025-10-15", LAMBDA_REPLACEMENT, "2510新建"),
    ("2025-10-15 08:30:00", "{月度:%Y%m%d%H%M}", "202510150830"),
    ("2025-10-15T08:30:00+08:00", "{月度:%H:%M}", "08:30"),
    ("2025-10", LAMBDA_REPLACEMENT, "2510新建"),
    ("202510", LAMBDA_REPLACEMENT, "2510新建"),
    (202510, LAMBDA_REPLACEMENT, "2510新建"),  # an integer month column: normalised to "202510" first
    (202510.0, LAMBDA_REPLACEMENT, "2510新建"),  # Excel reads it as a float: "202510", not "202510.0"
    (" 2025-10 ", "{月度:%Y年%m月}", "2025年10月"),  # trimmed like every value
    ("2025-10", "{月度:%%%m}", "%10"),
]


@pytest.mark.parametrize(("value", "template", "expected"), DATE_CASES, ids=[repr(c[0]) for c in DATE_CASES])
def test_date_spec_formats_every_date_shape(value: object, template: str, expected: str) -> None:
    assert _one(template, "月度", value) == (expected, 0)


NUMBER_CASES = [
    # value          template          expected
    (1234.5, "{金额:,.2f}", "1,234.50"),
    ("1,234.5", "{金额:,.2f}", "1,234.50"),  # thousands commas dropped, as for max_by
    ("  12 ", "{金额:,.2f}", "12.00"),
    (7, "{金额:,.2f}元", "7.00元"),
    (0.1, "{金额:.2f}", "0.10"),  # Decimal from the text "0.1": no float noise
    (1234567, "{金额:,}", "1,234,567"),
    (42, "{金额:08d}", "00000042"),
    (42.0, "{金额:d}", "42"),  # integral float for an integer spec
    ("1e3", "{金额:d}", "1000"),
    (0.125, "{金额:.1%}", "12.5%"),  # a trailing % is the number percent type, not a date code
    (-3.5, "{金额:+.1f}", "-3.5"),
    (255, "{金额:x}", "ff"),
]


@pytest.mark.parametrize(("value", "template", "expected"), NUMBER_CASES, ids=[repr(c[0]) + c[1] for c in NUMBER_CASES])
def test_number_spec_formats_numbers_and_numeric_text(value: object, template: str, expected: str) -> None:
    assert _one(template, "金额", value) == (expected, 0)


UNPARSED_CASES = [
    # value             template               why it does not parse
    ("2025/10", LAMBDA_REPLACEMENT),  # not ISO, not YYYY-MM, not YYYYMM
    ("202513", LAMBDA_REPLACEMENT),  # month 13
    ("十月", LAMBDA_REPLACEMENT),
    (45931, LAMBDA_REPLACEMENT),  # an Excel serial day number is not a date here
    ("abc", "{金额:,.2f}"),
    ("NaN", "{金额:,.2f}"),  # text "NaN" is not a finite number
    ("1e999999", "{金额:,.2f}"),  # would format to a million digits
    (42.5, "{金额:08d}"),  # a fraction for an integer spec
    (True, "{金额:,.2f}"),
]


@pytest.mark.parametrize(("value", "template"), UNPARSED_CASES, ids=[repr(c[0]) for c in UNPARSED_CASES])
def test_value_that_does_not_parse_gives_null_and_is_counted(value: object, template: str) -> None:
    column = "月度" if "月度" in template else "金额"
    assert _one(template, column, value) == (None, 1)


def test_blank_value_is_empty_text_like_a_plain_placeholder_and_not_counted() -> None:
    assert _one(LAMBDA_REPLACEMENT, "月度", None) == ("新建", 0)
    assert _one("{月度:%y%m}", "月度", "  ") == (None, 0)  # empty result: NULL, as for every template


def test_first_non_blank_value_of_the_key_is_formatted() -> None:
    facts = pd.DataFrame({"组合代码": ["K", "K", "K"], "月度": [None, "2025-10", "2025-11"]})
    assert derive_candidates(facts, _fk(LAMBDA_REPLACEMENT)).frame.loc[0, "说明"] == "2510新建"


def test_one_unparsed_placeholder_makes_the_whole_value_null_and_counts_the_row_once() -> None:
    facts = pd.DataFrame(
        {
            "组合代码": ["A", "B", "C", "D"],
            "月度": ["2025-10", "2025/10", "bad", "202511"],
            "金额": ["1000", "x", "2000", "y"],
        }
    )
    candidates = derive_candidates(facts, _fk("{月度:%y%m}新建 {金额:,.0f}"))
    assert dict(zip(candidates.frame["组合代码"], candidates.frame["说明"], strict=True)) == {
        "A": "2510新建 1,000",
        "B": None,
        "C": None,
        "D": None,
    }
    assert candidates.template_unparsed == 3
    (report,) = candidates.unparsed
    assert report.target == "说明" and report.template == "{月度:%y%m}新建 {金额:,.0f}"
    # Per row: the first placeholder that did not parse and its value (B fails on both: the month is named).
    named = [(p.placeholder, v) if p is not None else None for p, v in zip(report.pieces, report.values, strict=True)]
    assert named == [None, ("{月度:%y%m}", "2025/10"), ("{月度:%y%m}", "bad"), ("{金额:,.0f}", "y")]


def test_formatting_runs_per_distinct_value_on_a_large_frame() -> None:
    n = 200_000
    months = np.array(["2025-10", "202511", "2025/12"], dtype=object)[np.arange(n) % 3]
    facts = pd.DataFrame({"组合代码": [f"Q{i % 1000}" for i in range(n)], "月度": months})
    candidates = derive_candidates(facts, _fk(LAMBDA_REPLACEMENT))
    # Key Q{i} first appears at row i: month index i % 3.
    expected = {0: "2510新建", 1: "2511新建", 2: None}
    assert [candidates.frame.loc[i, "说明"] for i in range(6)] == [expected[i % 3] for i in range(6)]
    assert candidates.template_unparsed == sum(1 for i in range(1000) if i % 3 == 2)


def test_plain_placeholders_are_unchanged() -> None:
    assert _one("{金额}-{月度}", "金额", 1234.5) == ("1234.5-2025-10", 0)
