"""DAG ``refdata_reference_sync``: the daily authoritative pre-load of the reference tables.

Runs at 01:00 Asia/Shanghai (``CronTriggerTimetable``, no catch-up), before the fact DAGs, which can schedule
on :data:`airflow_provider_refdata.assets.REFERENCE_SYNC_ASSET` (every successful sync) or on exactly the
reference tables they need (:func:`airflow_provider_refdata.assets.table_asset`: an event only when that table
synced).  The trigger form takes ``tables`` (empty = all), ``plan_only`` and ``force_full``.

Three tasks:

* ``check_enabled`` reads ``$REFDATA_CONFIG_DIR/reference_sync.yml`` (only at run time: parsing this file
  does no I/O) and skips the run cleanly, with the reason, when the file says ``enabled: false``;
* ``sync_reference_tables`` syncs every selected table, one transaction per table, and emits the Asset
  events: the run-level Asset and one event per table that synced, with its counts and watermark.  It fails
  only when no table synced (``fail_on="all"``), because Airflow records no Asset event for a failed task;
* ``check_all_synced`` fails when any table failed, naming each one and its cause, so the run is red
  although the other tables' Assets fired.

Why one task and not a mapped task per table: the table list lives in the configuration, which may not be
read at parse time, and the tables must run in configuration order (portfolios reference plans).  Isolation
does not need separate tasks: each table has its own transaction and a failed table never stops the others.
One task also gives one summary and one XCom list.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET, REFERENCE_TABLES_ALIAS
from airflow_provider_refdata.operators.sync import ReferenceSyncOperator

TIMEZONE = "Asia/Shanghai"


@task
def check_enabled() -> str:
    """Return the configuration path, or skip the run when the configuration disables the sync."""
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_provider_refdata.config import load_sync_config
    from airflow_provider_refdata.operators.sync import default_config_path

    path = default_config_path()
    config = load_sync_config(path)
    if not config.enabled:
        raise AirflowSkipException(f"reference sync is disabled in {path} (enabled: false)")
    return str(path)


@task
def check_all_synced(results: list) -> None:
    """Fail, naming each failed table and its cause, when any table of the sync failed."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_refdata.operators.sync import failed_tables_message

    # AirflowFailException: retrying this check cannot fix a table; re-run the sync (or the DAG) instead
    if message := failed_tables_message(results):
        raise AirflowFailException(message)


with DAG(
    dag_id="refdata_reference_sync",
    description="Authoritative pre-load of reference tables (legacy MySQL + YAML) into the warehouse",
    schedule=CronTriggerTimetable("0 1 * * *", timezone=TIMEZONE),
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["refdata", "reference-data"],
    doc_md=__doc__,
    params={
        "tables": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Tables",
            description="Names of the reference_sync.yml table entries to sync; empty = every enabled table.",
        ),
        "plan_only": Param(False, type="boolean", title="Plan only", description="Compute the counts, write nothing."),
        "force_full": Param(
            False,
            type="boolean",
            title="Force full read",
            description="Ignore the incremental watermarks and read every source row.",
        ),
    },
) as dag:
    config_path = check_enabled()
    sync = ReferenceSyncOperator(
        task_id="sync_reference_tables",
        config_path=config_path,
        tables="{{ params.tables }}",
        plan_only="{{ params.plan_only }}",
        force_full="{{ params.force_full }}",
        fail_on="all",
        outlets=[REFERENCE_SYNC_ASSET, REFERENCE_TABLES_ALIAS],
    )
    check_all_synced(sync.output)
