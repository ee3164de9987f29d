"""Rendered template values become the values they stand for; anything else is refused by name."""

from __future__ import annotations

import pytest

from airflow_provider_refdata.operators.templated import as_bool, as_float, as_name_list


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", True), ("false", False), ("1", True), ("", False), (None, False)],
)
def test_as_bool(value, expected):
    assert as_bool(value, "plan_only") is expected


def test_as_bool_refuses_what_is_not_a_boolean():
    with pytest.raises(ValueError, match="plan_only must be a boolean, got 'maybe'"):
        as_bool("maybe", "plan_only")


@pytest.mark.parametrize(("value", "expected"), [(0.1, 0.1), ("0.25", 0.25), ("", None), (None, None), (1, 1.0)])
def test_as_float(value, expected):
    assert as_float(value, "auto_derived_threshold") == expected


def test_as_float_refuses_text():
    with pytest.raises(ValueError, match="auto_derived_threshold must be a number, got 'ten'"):
        as_float("ten", "auto_derived_threshold")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ("", []),
        ([], []),
        ("['annuity_plan', 'organization']", ["annuity_plan", "organization"]),
        ("annuity_plan, organization", ["annuity_plan", "organization"]),
        (["年金计划", " "], ["年金计划"]),
    ],
)
def test_as_name_list(value, expected):
    assert as_name_list(value, "tables") == expected


@pytest.mark.parametrize("value", ["[__import__('os')]", 42])
def test_as_name_list_refuses_non_lists_and_never_evaluates_code(value):
    with pytest.raises(ValueError, match="tables must be a list of names"):
        as_name_list(value, "tables")
