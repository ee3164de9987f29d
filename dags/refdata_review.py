"""DAG ``refdata_review``: the data steward's review of auto-derived placeholders (manual trigger only).

The trigger form chooses what a run does.  ``check_form`` checks it (export and decide need ``table``) and
logs the steps asked for; then, in this order, each step only when asked for (the others skip):

1. ``apply_review_file`` — when ``review_file`` is given: apply a review file the steward filled in
   (``action`` = approve / reject / remap, ``remap_to``).  Every row is validated first and every invalid row
   is logged with its line; nothing is applied when one is invalid unless ``partial``; ``dry_run`` only
   reports.  Invalid rows fail the task.  With ``table`` set, the file must be that table's.
2. ``export_review`` — when ``export`` is on: write the open placeholders of ``table``, most-used first, to
   ``<export_folder>/<table>_<run time>.csv|xlsx`` for the steward (sensitive columns never appear).
3. ``steward_decision`` — when ``decide`` is on (Airflow ≥ 3.1): show the ``limit`` most-used open
   placeholders of ``table`` in the Airflow UI (Required actions) and wait for a steward's decision —
   approve, reject, or remap one key to an existing key, or skip — then apply it as the responding user.
   Unanswered for 3 days, it skips.  On older Airflow the task skips with the reason.

``actor`` (the name in the audit trail ``refdata.review_log``) defaults to the user who triggered the run.
Every action takes the table's advisory lock, so a review never races a sync, a backfill or another review
run (several runs may be active: one waiting for a decision does not hold up a review file).  Tasks do not
retry: a review is applied once.  Parsing this file does no I/O.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_refdata.operators.review import (
    ReviewDecisionOperator,
    ReviewExportOperator,
    ReviewFileOperator,
)

TIMEZONE = "Asia/Shanghai"
#: Where exports go unless the form says otherwise (read from the environment, no I/O).
DEFAULT_EXPORT_FOLDER = os.environ.get("REFDATA_REVIEW_DIR", "/tmp/refdata-review")


@task
def check_form(**context) -> list[str]:
    """The steps the form asks for, in order; fails when export or decide lacks the table."""
    from airflow.sdk.exceptions import AirflowFailException

    params = context["params"]
    steps = [
        step
        for step, wanted in (
            ("apply_review_file", str(params.get("review_file") or "").strip()),
            ("export_review", params.get("export")),
            ("steward_decision", params.get("decide")),
        )
        if wanted
    ]
    needs_table = [s for s in steps if s != "apply_review_file"]
    if needs_table and not str(params.get("table") or "").strip():
        raise AirflowFailException(f"{', '.join(needs_table)} need(s) a table (schema.table, e.g. business.年金计划)")
    log = logging.getLogger(__name__)
    if steps:
        log.info("Steps of this run: %s", ", ".join(steps))
    else:
        log.warning("Nothing to do: give a review file, or turn on export or decide")
    return steps


with DAG(
    dag_id="refdata_review",
    description="Data steward review of auto-derived placeholders: apply a review file, export one, decide in the UI",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    tags=["refdata", "reference-data", "steward"],
    doc_md=__doc__,
    # Optional text fields take null: with type "string" the Airflow UI marks them required and an empty form
    # cannot be submitted.
    params={
        "table": Param(
            None,
            type=["null", "string"],
            title="Table",
            description="The reference table, schema-qualified (business.年金计划): needed by export and decide; "
            "with a review file, the file must be this table's.",
        ),
        "review_file": Param(
            None,
            type=["null", "string"],
            title="Review file",
            description="Path of a filled-in review file (.csv or .xlsx) to apply; empty = none.",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Validate the review file and report, change nothing."
        ),
        "partial": Param(
            False,
            type="boolean",
            title="Apply valid rows",
            description="Apply the valid rows of the review file even when some rows are invalid.",
        ),
        "actor": Param(
            None,
            type=["null", "string"],
            title="Actor",
            description="Who is recorded in the audit trail; empty = the user who triggered this run.",
        ),
        "export": Param(
            False,
            type="boolean",
            title="Export",
            description="Write the open placeholders of the table to a review file under the export folder.",
        ),
        "export_folder": Param(
            DEFAULT_EXPORT_FOLDER,
            type="string",
            title="Export folder",
            description="Folder of the exported review file (created when missing).",
        ),
        "export_format": Param(
            "csv", type="string", enum=["csv", "xlsx"], title="Export format", description="csv (UTF-8) or xlsx."
        ),
        "decide": Param(
            False,
            type="boolean",
            title="Decide in the UI",
            description="Show the most-used open placeholders of the table and wait for a steward's decision "
            "(Airflow 3.1 or later).",
        ),
        "limit": Param(
            20, type="integer", minimum=1, maximum=200, title="Placeholders shown", description="How many to show."
        ),
    },
) as dag:
    # A step that was not asked for skips itself: the review file is empty, the export gets no folder, the
    # decision no table.  (A branch would not do: it never skips a task downstream of a chosen one.)
    form = check_form()
    apply_file = ReviewFileOperator(
        task_id="apply_review_file",
        review_file="{{ params.review_file or '' }}",
        table="{{ params.table or '' }}",
        actor="{{ params.actor or '' }}",
        dry_run="{{ params.dry_run }}",
        partial="{{ params.partial }}",
    )
    export = ReviewExportOperator(
        task_id="export_review",
        table="{{ params.table or '' }}",
        output_dir="{{ params.export_folder if params.export else '' }}",
        format="{{ params.export_format }}",
        trigger_rule="none_failed",  # runs after an applied (or skipped) review file
    )
    decide = ReviewDecisionOperator(
        task_id="steward_decision",
        table="{{ (params.table or '') if params.decide else '' }}",
        limit="{{ params.limit }}",
        defaults="skip",  # what an unanswered request decides when it times out
        response_timeout=timedelta(days=3),
        trigger_rule="none_failed",
    )
    form >> apply_file >> export >> decide
