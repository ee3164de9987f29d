"""Review operators against the real PostgreSQL (execute called directly), and the decision-applying function."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_refdata.exceptions import RefdataReviewError
from airflow_provider_refdata.operators.review import (
    HITL_AVAILABLE,
    ReviewDecisionOperator,
    ReviewExportOperator,
    ReviewFileOperator,
    apply_decision,
    placeholders_markdown,
)
from airflow_provider_refdata.results import ReviewExportResult, ReviewResult
from airflow_provider_refdata.services.review import ReviewService
from tests.integration.steward_scenario import fill_review_file, scenario_in_env


@pytest.fixture
def scenario(airflow_connections, pg_server, pg_schema, tmp_path, monkeypatch):
    yield from scenario_in_env(pg_server, pg_schema, tmp_path, monkeypatch)


class _DagRun:
    """The part of a DAG run the operators read: who triggered it."""

    triggering_user_name = "trigger-user"


def test_init_does_no_io_and_declares_templates(monkeypatch):
    monkeypatch.setenv("REFDATA_CONFIG_DIR", "/does/not/exist")
    apply = ReviewFileOperator(task_id="apply", review_file="{{ params.review_file }}")
    assert {"review_file", "actor", "table", "dry_run", "partial"} <= set(apply.template_fields)
    export = ReviewExportOperator(task_id="export", table="business.年金计划", output_dir="/nowhere")
    assert {"table", "output_dir", "format", "since_days"} <= set(export.template_fields)
    decide = ReviewDecisionOperator(task_id="decide", table="business.年金计划")
    assert HITL_AVAILABLE  # Airflow 3.3 of this environment has the human-in-the-loop operators
    assert decide.options == ["approve", "reject", "remap", "skip"]
    assert set(decide.params) == {"keys", "remap_to", "authoritative"}
    with pytest.raises(ValueError, match="options of ReviewDecisionOperator is fixed"):
        ReviewDecisionOperator(task_id="decide2", table="x.y", options=["yes"])


def test_export_then_apply_as_the_triggering_user(scenario, tmp_path):
    export = ReviewExportOperator(
        task_id="export", table=scenario.plan, output_dir=str(tmp_path / "out"), since_days="30"
    ).execute({"ts_nodash": "20250102T010000"})
    assert isinstance(export, ReviewExportResult) and export.rows == 3 and export.excluded_columns == ["客户名称"]
    path = Path(export.path)
    assert path == tmp_path / "out" / f"{scenario.plan}_20250102T010000.csv" and path.is_file()
    fill_review_file(path, {"X9": ("approve", ""), "P0O1": ("remap", "P001"), "Y1": ("reject", "")})

    dry = ReviewFileOperator(task_id="dry", review_file=str(path), table=scenario.plan, dry_run="true")
    planned = dry.execute({"dag_run": _DagRun()})
    assert (planned.dry_run, planned.applied, planned.approved, planned.remapped, planned.rejected) == (
        True,
        False,
        1,
        1,
        1,
    )
    assert scenario.review_log() == []

    result = ReviewFileOperator(task_id="apply", review_file=str(path)).execute({"dag_run": _DagRun()})
    assert isinstance(result, ReviewResult) and result.applied and result.actor == "trigger-user"
    assert sorted(scenario.review_log()) == [
        ("P0O1", "remap", "trigger-user", "P001"),
        ("X9", "approve", "trigger-user", None),
        ("Y1", "reject", "trigger-user", None),
    ]
    assert set(scenario.plan_rows()) == {"P001", "P002", "X9"}
    assert scenario.placeholders()["X9"] == (3, "approved", "trigger-user")


def test_review_file_refusals(scenario, tmp_path):
    path = Path(
        ReviewExportOperator(task_id="e", table=scenario.plan, output_dir=str(tmp_path), file_name="r.csv")
        .execute({})
        .path
    )
    with pytest.raises(AirflowSkipException, match="no review file"):
        ReviewFileOperator(task_id="none", review_file="  ", actor="a").execute({})
    with pytest.raises(AirflowFailException, match="no actor"):
        ReviewFileOperator(task_id="anon", review_file=str(path)).execute({})
    other = f"{scenario.schema}.组合计划"
    with pytest.raises(AirflowFailException, match=rf"line 2: the file is for {scenario.plan}, not for {other}"):
        ReviewFileOperator(task_id="wrong", review_file=str(path), table=other, actor="a").execute({})
    fill_review_file(path, {"X9": ("promote", ""), "P0O1": ("remap", "P404"), "Y1": ("approve", "")})
    with pytest.raises(
        AirflowFailException, match=r"2 invalid row\(s\), applied nothing: line 2, key X9.*; line 3, key P0O1"
    ):
        ReviewFileOperator(task_id="bad", review_file=str(path), actor="a").execute({})
    assert scenario.review_log() == []
    lenient = ReviewFileOperator(
        task_id="lenient", review_file=str(path), actor="a", partial=True, fail_on_invalid=False
    )
    result = lenient.execute({})
    assert (result.applied, result.approved, len(result.errors)) == (True, 1, 2)
    assert [e.line for e in result.errors] == [2, 3]
    assert scenario.review_log() == [("Y1", "approve", "a", None)]


def test_apply_decision_for_each_choice(scenario):
    service = ReviewService(scenario.dsn)
    assert apply_decision(service, scenario.plan, "skip", {"keys": ["X9"]}, "steward") is None
    approved = apply_decision(service, scenario.plan, "approve", {"keys": "X9\nY1", "authoritative": True}, "steward")
    assert (approved.action, approved.approved, approved.actor) == ("approve", 2, "steward")
    assert scenario.plan_rows()["X9"][1:] == ("authoritative", False)
    with pytest.raises(ValueError, match="exactly one key"):
        apply_decision(service, scenario.plan, "remap", {"keys": ["P0O1", "X9"], "remap_to": "P001"}, "steward")
    with pytest.raises(ValueError, match="enter the keys"):
        apply_decision(service, scenario.plan, "reject", {"keys": []}, "steward")
    with pytest.raises(ValueError, match="unknown decision"):
        apply_decision(service, scenario.plan, "promote", {"keys": ["P0O1"]}, "steward")
    with pytest.raises(RefdataReviewError):
        apply_decision(service, scenario.plan, "remap", {"keys": ["P0O1"], "remap_to": "P404"}, "steward")
    remapped = apply_decision(service, scenario.plan, "remap", {"keys": ["P0O1"], "remap_to": "P001"}, "steward")
    assert remapped.remapped == 1 and "P0O1" not in scenario.plan_rows()
    assert [r[:3] for r in scenario.review_log()] == [
        ("X9", "approve", "steward"),
        ("Y1", "approve", "steward"),
        ("P0O1", "remap", "steward"),
    ]


def test_placeholders_markdown_lists_the_most_used_first(scenario):
    rows = ReviewService(scenario.dsn).open_placeholders(scenario.plan, limit=2)
    text = placeholders_markdown(scenario.plan, rows)
    lines = text.splitlines()
    assert f"**{scenario.plan}**" in lines[0] and "The 2 most-used" in lines[0]
    assert lines[2].startswith("| key | fact rows | first seen | domains | 计划名称 |")
    assert lines[4].startswith("| `X9` | 3 | ") and lines[5].startswith("| `P0O1` | 2 | ")
    assert "annuity_performance" in lines[4] and "客户名称" not in text
    assert (
        placeholders_markdown("s.t", [{"key": "a|b", "columns": {"名称": "x\ny"}, "provenance": {}}]).splitlines()[-1]
        == "| `a\\|b` |  |  |  | x y |"
    )
