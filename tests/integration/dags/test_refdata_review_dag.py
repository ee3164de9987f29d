"""The DAG refdata_review: parses without I/O; export, apply and the steward's decision in the UI run for real.

The human-in-the-loop test answers the waiting task the way the Airflow API's ``PATCH …/hitlDetails`` does
(the same ``HITLDetail`` columns and ``handle_event_submit``), from a thread, while ``dag.test()`` waits.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from airflow._shared.timezones import timezone
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models import import_all_models
from airflow.models.hitl import HITLDetail
from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import handle_event_submit
from airflow.triggers.base import TriggerEvent
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import configure_mappers

from airflow_provider_refdata.results import ReviewExportResult, ReviewResult
from tests.integration.dags.dag_runs import load_dag, parsed_without_io, task_states, xcom_result
from tests.integration.steward_scenario import fill_review_file

DAG_ID = "refdata_review"
DAG_MODULE = f"dags.{DAG_ID}"
TASKS = ["check_form", "apply_review_file", "export_review", "steward_decision"]


@pytest.fixture(autouse=True)
def _restore_dag_module():
    yield
    load_dag(DAG_MODULE)


def test_dag_shape_and_no_io_at_parse_time(monkeypatch):
    from airflow.providers.standard.operators.hitl import HITLOperator

    dag = parsed_without_io(monkeypatch, DAG_ID)
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert set(dag.params) == {
        "table", "review_file", "dry_run", "partial", "actor", "export", "export_folder", "export_format", "decide",
        "limit",
    }  # fmt: skip
    assert all(dag.params.get_param(p).description for p in dag.params)
    # An empty trigger form submits: the optional text fields accept null (a plain "string" type makes the
    # Airflow UI mark them required and keep the Trigger button disabled).
    for name in ("table", "review_file", "actor"):
        param = dag.params.get_param(name)
        assert "null" in param.schema["type"] and param.value is None, name
    assert dag.params.validate()["table"] is None
    assert sorted(t.task_id for t in dag.tasks) == sorted(TASKS)
    decision = dag.get_task("steward_decision")
    assert isinstance(decision, HITLOperator)  # the human-in-the-loop task exists on this Airflow
    assert (decision.defaults, decision.response_timeout) == (["skip"], timedelta(days=3))
    assert set(decision.params) == {"keys", "remap_to", "authoritative"}
    assert dag.get_task("export_review").upstream_task_ids == {"apply_review_file"}
    assert dag.get_task("steward_decision").upstream_task_ids == {"export_review"}


def test_export_then_apply_the_filled_in_file(scenario, tmp_path):
    folder = tmp_path / "exports"
    exported, _ = _run({"table": scenario.plan, "export": True, "export_folder": str(folder)})
    assert task_states(exported) == {
        "check_form": "success",
        "apply_review_file": "skipped",
        "export_review": "success",
        "steward_decision": "skipped",
    }
    export = xcom_result(exported, "export_review")
    assert isinstance(export, ReviewExportResult) and export.rows == 3 and export.excluded_columns == ["客户名称"]
    path = Path(export.path)
    assert path.parent == folder and path.suffix == ".csv"
    fill_review_file(path, {"X9": ("approve", ""), "P0O1": ("remap", "P001"), "Y1": ("reject", "")})

    dry, _ = _run({"table": scenario.plan, "review_file": str(path), "dry_run": True, "actor": "王芳"})
    assert task_states(dry)["apply_review_file"] == "success" and scenario.review_log() == []

    applied, _ = _run({"table": scenario.plan, "review_file": str(path)})  # actor: the triggering user
    assert task_states(applied) == {
        "check_form": "success",
        "apply_review_file": "success",
        "export_review": "skipped",
        "steward_decision": "skipped",
    }
    result = xcom_result(applied, "apply_review_file")
    assert isinstance(result, ReviewResult) and (result.approved, result.rejected, result.remapped) == (1, 1, 1)
    assert sorted(scenario.review_log()) == [
        ("P0O1", "remap", "dag_test", "P001"),
        ("X9", "approve", "dag_test", None),
        ("Y1", "reject", "dag_test", None),
    ]
    assert set(scenario.plan_rows()) == {"P001", "P002", "X9"}


def test_invalid_file_fails_and_empty_forms_do_nothing(scenario, tmp_path):
    path = tmp_path / "review.csv"
    done, _ = _run({"table": scenario.plan, "export": True, "export_folder": str(tmp_path)})
    Path(xcom_result(done, "export_review").path).rename(path)
    fill_review_file(path, {"X9": ("promote", "")})
    failed, _ = _run({"review_file": str(path), "export": True, "table": scenario.plan})
    states = task_states(failed)
    assert states["apply_review_file"] == "failed" and states["export_review"] == "upstream_failed"
    assert scenario.review_log() == []
    nothing, _ = _run()
    assert task_states(nothing) == {"check_form": "success"} | {t: "skipped" for t in TASKS[1:]}
    no_table, _ = _run({"decide": True})
    assert task_states(no_table) == {"check_form": "failed"} | {t: "upstream_failed" for t in TASKS[1:]}


def _respond(dag_id: str, answer: dict | None, outcome: dict, stop: threading.Event, timeout: float) -> None:
    """While ``dag.test()`` runs: answer the decision task as the API does once it waits; with no ``answer``
    (or after ``timeout``) fail a waiting task instead, so that a run never waits forever."""
    deadline = time.monotonic() + timeout
    waiting = select(TaskInstance).where(
        TaskInstance.dag_id == dag_id, TaskInstance.state == TaskInstanceState.AWAITING_INPUT
    )
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            with create_session() as session:
                ti = session.scalar(waiting)
                detail = session.get(HITLDetail, ti.id) if ti is not None else None
                if detail is not None and answer is None:
                    outcome["unexpected"] = ti.task_id
                    break
                if detail is not None and answer.get("time_out"):
                    # The scheduler's own sweep resolves it: the deadline is moved into the past first.
                    ti.trigger_timeout = timezone.utcnow() - timedelta(seconds=1)
                    session.commit()
                    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()
                    outcome["timed_out"] = True
                    return
                if detail is not None:
                    outcome.update(subject=detail.subject, body=detail.body, options=detail.options)
                    detail.responded_by = answer["user"]
                    detail.responded_at = timezone.utcnow()
                    detail.chosen_options = answer["chosen_options"]
                    detail.params_input = answer["params_input"]
                    session.add(detail)
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                    outcome["answered"] = True
                    return
            time.sleep(0.5)
    except Exception as exc:  # reported by the test; the run is ended below
        outcome["error"] = repr(exc)
    with create_session() as session:
        for ti in session.scalars(waiting):
            ti.state = TaskInstanceState.FAILED


def _run(conf: dict | None = None, answer: dict | None = None, timeout: float = 120.0):
    """``dag.test(run_conf=conf)`` of a freshly loaded DAG, with a responder thread; returns (the run, what
    the responder saw).  Fresh, because a run's conf is written into the DAG object's params in-process."""
    dag = load_dag(DAG_MODULE)
    # Every model imported and mapped before a second thread queries: two threads importing Airflow's models
    # at once deadlock on SQLAlchemy's registry (dag.test() imports more of them as it goes).
    import_all_models()
    configure_mappers()
    outcome: dict = {}
    stop = threading.Event()
    responder = threading.Thread(target=_respond, args=(DAG_ID, answer, outcome, stop, timeout), daemon=True)
    responder.start()
    try:
        run = dag.test(run_conf=conf)
    finally:
        stop.set()
        responder.join(timeout=10)
    assert "unexpected" not in outcome and "error" not in outcome, outcome
    return run, outcome


def test_the_steward_decides_in_the_ui_and_the_remap_is_applied(scenario):
    answer = {
        "user": {"id": "7", "name": "王芳"},
        "chosen_options": ["remap"],
        "params_input": {"keys": ["P0O1"], "remap_to": "P001", "authoritative": False},
    }
    run, outcome = _run({"table": scenario.plan, "decide": True, "limit": 5}, answer)
    assert outcome.get("answered"), outcome
    assert outcome["subject"] == f"Review the open placeholders of {scenario.plan}"
    assert outcome["options"] == ["approve", "reject", "remap", "skip"]
    body = outcome["body"].splitlines()
    assert "The 3 most-used open placeholder(s)" in body[0]
    assert [line.split("|")[1].strip() for line in body[4:]] == ["`X9`", "`P0O1`", "`Y1`"]
    assert task_states(run) == {
        "check_form": "success",
        "apply_review_file": "skipped",
        "export_review": "skipped",
        "steward_decision": "success",
    }
    result = xcom_result(run, "steward_decision")
    assert isinstance(result, ReviewResult) and (result.action, result.remapped, result.actor) == ("remap", 1, "王芳")
    assert scenario.review_log() == [("P0O1", "remap", "王芳", "P001")]
    assert scenario.placeholders()["P0O1"] == (2, "remapped", "王芳")
    assert "P0O1" not in scenario.plan_rows()


def test_an_unanswered_decision_times_out_to_skip_and_changes_nothing(scenario):
    before = scenario.plan_rows()
    run, outcome = _run({"table": scenario.plan, "decide": True}, {"time_out": True})
    assert outcome.get("timed_out"), outcome
    assert task_states(run)["steward_decision"] == "success"
    with pytest.raises(NoResultFound):  # skip returns None: no return value is stored
        xcom_result(run, "steward_decision")
    assert scenario.plan_rows() == before and scenario.review_log() == []
    assert all(resolution is None for _, resolution, _ in scenario.placeholders().values())
