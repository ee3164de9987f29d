"""The README's example DAG is real code: it imports and builds the DAG it describes."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_readme_example_dag_loads(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    readme = (REPO_ROOT / "README.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "with DAG(" in block)
    (tmp_path / "readme_example.py").write_text(example)
    bag = DagBag(dag_folder=str(tmp_path), safe_mode=False)
    assert bag.import_errors == {}
    dag = bag.dags["my_annuity_pipeline"]
    assert set(dag.task_ids) == {"sync_reference_data", "stage_facts", "ensure_references", "load_facts", "report"}
    assert dag.get_task("stage_facts").upstream_task_ids == {"sync_reference_data"}
    assert dag.get_task("ensure_references").upstream_task_ids == {"stage_facts"}
    assert dag.get_task("load_facts").upstream_task_ids == {"stage_facts", "ensure_references"}
    # Every param a template uses is declared, and an empty trigger form is valid.
    used = set(re.findall(r"params\.(\w+)", example))
    assert used and used <= set(dag.params.keys()), (used, set(dag.params.keys()))
    assert dag.params.validate() == {"month": None}


def test_readme_names_the_two_commands_at_the_top():
    top = (REPO_ROOT / "README.md").read_text().split("## ", 1)[0]
    assert "make demo" in top and "make test" in top
