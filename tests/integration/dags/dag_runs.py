"""Shared helpers of the DAG tests: load a shipped DAG, check it parses without I/O, read a ``dag.test()`` run."""

from __future__ import annotations

import importlib
import json

import pytest

from tests.conftest import REPO_ROOT


def load_dag(module_name: str):
    """The ``dag`` of a shipped DAG module, re-imported (so it reads the environment the test set).

    :param module_name: the module, e.g. ``dags.refdata_review``.
    """
    return importlib.reload(importlib.import_module(module_name)).dag


def parsed_without_io(monkeypatch: pytest.MonkeyPatch, dag_id: str):
    """Parse ``dags/<dag_id>.py`` with a DagBag while any database connection fails the test; return the DAG.

    :param monkeypatch: the test's monkeypatch (``psycopg.connect`` and ``$REFDATA_CONFIG_DIR`` are restored).
    :param dag_id: the DAG's id (also its file name).
    """
    import psycopg
    from airflow.dag_processing.dagbag import DagBag

    def boom(*_args, **_kwargs):
        raise AssertionError("database I/O at parse time")

    monkeypatch.setattr(psycopg, "connect", boom)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", "/nonexistent")
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def task_states(run) -> dict[str, str]:
    """``{task_id: state}`` of a DAG run's task instances.

    :param run: the DAG run ``dag.test()`` returned.
    """
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def xcom_result(run, task_id: str, key: str = "return_value"):
    """A task's XCom value of the run, turned back into its models by serde (as a downstream task gets it).

    :param run: the DAG run ``dag.test()`` returned.
    :param task_id: the task that pushed it.
    :param key: the XCom key.
    """
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        value = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key)
            .one()
            .value
        )
    return deserialize(json.loads(value) if isinstance(value, str) else value)
