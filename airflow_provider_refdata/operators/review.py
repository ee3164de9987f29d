"""The data steward's review as Airflow tasks: apply a review file, export one, decide in the Airflow UI.

* :class:`ReviewFileOperator` applies a review file the steward filled in
  (:func:`~airflow_provider_refdata.services.review.apply_review_file`): every row validated first, every
  invalid row logged with its line; ``dry_run`` and ``partial`` as in the service.  Invalid rows fail the
  task (after logging all of them; the :class:`~airflow_provider_refdata.results.ReviewResult` is pushed
  to XCom under ``review_result`` first).
* :class:`ReviewExportOperator` writes the open placeholders of a table to a CSV/XLSX file under a folder
  (:func:`~airflow_provider_refdata.services.review_export.export_review`); sensitive columns of
  ``reference_sync.yml`` never appear.
* :class:`ReviewDecisionOperator` (Airflow ≥ 3.1, the standard provider's ``HITLOperator``) shows the
  most-used open placeholders of a table in the Airflow UI and waits for a steward's decision —
  ``approve`` / ``reject`` / ``remap`` on the keys the steward enters, or ``skip`` — then applies it through
  :class:`~airflow_provider_refdata.services.review.ReviewService` as the responding user.  Without
  human-in-the-loop support it skips with the reason.

The actor of a review file or an export is ``actor`` when given, else the user who triggered the run.
Nothing is read or connected in ``__init__``; the results are returned through XCom as the models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk.serde import allow_class

from airflow_provider_refdata.operators.templated import as_bool, as_float, as_name_list
from airflow_provider_refdata.results import ReviewExportResult, ReviewResult, ReviewRowError

if TYPE_CHECKING:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

for _result_class in (ReviewResult, ReviewRowError, ReviewExportResult):
    allow_class(_result_class)

try:  # Airflow >= 3.1 with the standard provider's human-in-the-loop operators
    from airflow.providers.standard.operators.hitl import HITLOperator

    HITL_AVAILABLE = True
except Exception:  # ImportError, or AirflowOptionalProviderFeatureException on Airflow < 3.1
    HITLOperator = None  # type: ignore[assignment,misc]
    HITL_AVAILABLE = False

#: The steward's choices in the Airflow UI.
APPROVE, REJECT, REMAP, SKIP = "approve", "reject", "remap", "skip"
DECISIONS = (APPROVE, REJECT, REMAP, SKIP)


class _WarehouseMixin:
    """The warehouse hook and the configuration files every review operator uses."""

    warehouse_conn_id: str
    fk_config_path: str | None
    config_path: str | None

    @cached_property
    def hook(self) -> PostgresHook:
        """The warehouse hook (created on first use, never at DAG parse time)."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.warehouse_conn_id)

    def service(self) -> Any:
        """A :class:`~airflow_provider_refdata.services.review.ReviewService` on the warehouse."""
        from airflow_provider_refdata.services.review import ReviewService

        return ReviewService(self.hook, foreign_keys=self.fk_config_path or None, review=self.config_path or None)


def actor_of(actor: Any, context: Any) -> str:
    """``actor`` when given, else the user who triggered the DAG run; fails the task when neither is known.

    :param actor: the ``actor`` argument after templating.
    :param context: the task context.
    """
    text = str(actor).strip() if actor is not None else ""
    if text:
        return text
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    raise AirflowFailException("no actor: pass actor (the review is audited by who made it)")


class ReviewFileOperator(_WarehouseMixin, BaseOperator):
    """Apply a review file (CSV/XLSX) a steward filled in.

    :param review_file: the file (templated).
    :param actor: who applies it (templated; default the user who triggered the run).
    :param table: when given (templated), the file's ``_table`` must be this table, else the task fails
        before anything is applied.
    :param dry_run: validate and count, change nothing (templated).
    :param partial: apply the valid rows even when some are invalid (templated).
    :param fail_on_invalid: fail the task when a row is invalid (after logging every one).
    :param fk_config_path: ``foreign_keys.yml`` with the ``fact_tables`` (templated; default
        ``$REFDATA_CONFIG_DIR/foreign_keys.yml`` when it exists).
    :param config_path: ``reference_sync.yml`` with the sensitive columns (templated; default
        ``$REFDATA_CONFIG_DIR/reference_sync.yml`` when it exists).
    :param warehouse_conn_id: ``postgres`` connection of the warehouse.
    :param kwargs: ``BaseOperator`` arguments.
    """

    template_fields: Sequence[str] = (
        "review_file", "actor", "table", "dry_run", "partial", "fk_config_path", "config_path",
    )  # fmt: skip
    ui_color = "#e8daef"

    def __init__(
        self,
        *,
        review_file: str,
        actor: str | None = None,
        table: str | None = None,
        dry_run: bool | str = False,
        partial: bool | str = False,
        fail_on_invalid: bool = True,
        fk_config_path: str | None = None,
        config_path: str | None = None,
        warehouse_conn_id: str = "refdata_warehouse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.review_file = review_file
        self.actor = actor
        self.table = table
        self.dry_run = dry_run
        self.partial = partial
        self.fail_on_invalid = fail_on_invalid
        self.fk_config_path = fk_config_path
        self.config_path = config_path
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context: Any) -> ReviewResult:
        from airflow_provider_refdata.notifications import text
        from airflow_provider_refdata.services.review_file import TABLE_COLUMN, read_review_file

        path = str(self.review_file or "").strip()
        if not path:
            raise AirflowSkipException("no review file given")
        actor = actor_of(self.actor, context)
        dry_run, partial = as_bool(self.dry_run, "dry_run"), as_bool(self.partial, "partial")
        expected = str(self.table or "").strip()
        if expected:
            first = next(iter(read_review_file(path)), None)  # reads one row, not the file
            named = (first[1].get(TABLE_COLUMN) or "").strip() if first else ""
            if first and named != expected:
                raise AirflowFailException(
                    f"{path}, line {first[0]}: the file is for {named or '(no table)'}, not for {expected}"
                )
        self.log.info("Applying review file %s as %s (dry_run=%s, partial=%s)", path, actor, dry_run, partial)
        result = self.service().apply_review_file(path, actor=actor, dry_run=dry_run, partial=partial)
        log_review_result(self.log, result)
        if result.errors and self.fail_on_invalid:
            ti = context.get("ti") if hasattr(context, "get") else None
            if ti is not None:
                ti.xcom_push(key="review_result", value=result)
            done = "applied the valid rows" if result.applied else "applied nothing"
            raise AirflowFailException(
                f"{path}: {len(result.errors)} invalid row(s), {done}: "
                + "; ".join(text.describe_row_error(e) for e in result.errors[:20])
                + (f"; … and {len(result.errors) - 20} more (see the log)" if len(result.errors) > 20 else "")
            )
        return result


class ReviewExportOperator(_WarehouseMixin, BaseOperator):
    """Export the open placeholders of a table to a review file under ``output_dir``.

    The file is ``<output_dir>/<schema.table>_<run's ts_nodash>.<format>`` unless ``file_name`` is given.

    :param table: the schema-qualified reference table (templated).
    :param output_dir: the folder (templated; created when missing); empty skips the task (no export asked for).
    :param format: ``csv`` or ``xlsx`` (templated).
    :param file_name: the file's name inside ``output_dir`` (templated).
    :param domain: only placeholders this domain derived or uses (templated).
    :param since_days: only placeholders first seen in the last N days (templated).
    :param config_path: ``reference_sync.yml`` with the sensitive columns (templated; default
        ``$REFDATA_CONFIG_DIR/reference_sync.yml`` when it exists).
    :param warehouse_conn_id: ``postgres`` connection of the warehouse.
    :param kwargs: ``BaseOperator`` arguments.
    """

    template_fields: Sequence[str] = (
        "table",
        "output_dir",
        "format",
        "file_name",
        "domain",
        "since_days",
        "config_path",
    )
    ui_color = "#e8daef"

    def __init__(
        self,
        *,
        table: str,
        output_dir: str,
        format: str = "csv",
        file_name: str | None = None,
        domain: str | None = None,
        since_days: float | str | None = None,
        config_path: str | None = None,
        warehouse_conn_id: str = "refdata_warehouse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.output_dir = output_dir
        self.format = format
        self.file_name = file_name
        self.domain = domain
        self.since_days = since_days
        self.config_path = config_path
        self.fk_config_path = None
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context: Any) -> ReviewExportResult:
        from airflow_provider_refdata.services.review_export import export_review

        folder = str(self.output_dir or "").strip()
        if not folder:
            raise AirflowSkipException("no output folder given: no export asked for")
        table = str(self.table or "").strip()
        if not table:
            raise AirflowFailException("no table given: the export needs a schema-qualified table")
        fmt = str(self.format or "csv").strip().lower()
        days = as_float(self.since_days, "since_days")
        stamp = context.get("ts_nodash") if hasattr(context, "get") else None
        name = str(self.file_name or "").strip() or f"{table}_{stamp or 'export'}.{fmt}"
        path = Path(folder).expanduser() / name
        result = export_review(
            self.hook,
            table,
            path,
            format=fmt,
            domain=str(self.domain or "").strip() or None,
            since=timedelta(days=days) if days is not None else None,
            review=self.config_path or None,
        )
        self.log.info(
            "Exported %d open placeholder(s) of %s to %s%s",
            result.rows,
            result.table,
            result.path,
            f" (left out the sensitive columns {', '.join(result.excluded_columns)})"
            if result.excluded_columns
            else "",
        )
        return result


def log_review_result(log: Any, result: ReviewResult) -> None:
    """Log a review's counts and every refused row.

    :param log: the task logger.
    :param result: the review's result.
    """
    from airflow_provider_refdata.notifications.text import describe_row_error, review_summary

    log.info("Review %s: %s", result.review_id, review_summary(result))
    for column, n in result.fact_rows_rewritten.items():
        log.info("Remap rewrote %d row(s) of %s", n, column)
    for error in result.errors:
        log.error("Invalid review row: %s", describe_row_error(error))


# --------------------------------------------------------------------------------------------------------
# Human in the loop
# --------------------------------------------------------------------------------------------------------


def decision_params() -> dict[str, Param]:
    """The form the steward fills in the Airflow UI next to the decision (task-level params)."""
    return {
        "keys": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Keys",
            source="task",
            description="The placeholder keys the decision applies to (one per line); remap takes exactly one.",
        ),
        "remap_to": Param(
            "",
            type="string",
            title="Remap to",
            source="task",
            description="For remap: the existing key the placeholder stands for (e.g. P001 for the typo P0O1).",
        ),
        "authoritative": Param(
            False,
            type="boolean",
            title="Make authoritative",
            source="task",
            description="For approve: make the rows authoritative (a later sync still overwrites them).",
        ),
    }  # source="task": HITLOperator shows only the task's own params in the form


def apply_decision(
    service: Any, table: str, decision: str, params_input: Mapping[str, Any], actor: str
) -> ReviewResult | None:
    """Apply a steward's decision from the Airflow UI; ``None`` for ``skip``.

    :param service: a :class:`~airflow_provider_refdata.services.review.ReviewService`.
    :param table: the schema-qualified reference table.
    :param decision: ``approve``, ``reject``, ``remap`` or ``skip``.
    :param params_input: the form: ``keys`` (list, or text with one key per line or comma-separated),
        ``remap_to``, ``authoritative``.
    :param actor: who decided (the responding user).
    :raises ValueError: an unknown decision, no keys, or a remap without exactly one key and a target.
    :raises RefdataReviewError: the service refused the action (nothing changed).
    """
    if decision == SKIP:
        return None
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}")
    raw = params_input.get("keys")
    if isinstance(raw, str):
        raw = [part for line in raw.splitlines() for part in line.split(",")]
    keys = list(dict.fromkeys(as_name_list(raw, "keys")))
    if not keys:
        raise ValueError(f"{decision}: enter the keys it applies to")
    if decision == APPROVE:
        authoritative = as_bool(params_input.get("authoritative", False), "authoritative")
        return service.approve(table, keys, actor=actor, authoritative=authoritative)
    if decision == REJECT:
        return service.reject(table, keys, actor=actor)
    target = str(params_input.get("remap_to") or "").strip()
    if len(keys) != 1 or not target:
        raise ValueError(f"remap: enter exactly one key and the key it stands for (got {len(keys)} key(s))")
    return service.remap(table, keys[0], target, actor=actor)


def placeholders_markdown(table: str, placeholders: Sequence[Mapping[str, Any]], max_columns: int = 4) -> str:
    """The decision's body: the open placeholders as a Markdown table, most-used first.

    :param table: the schema-qualified reference table.
    :param placeholders: the rows of ``ReviewService.open_placeholders``.
    :param max_columns: how many business columns to show.
    """
    columns = list(placeholders[0]["columns"])[:max_columns] if placeholders else []
    header = ["key", "fact rows", "first seen", "domains", *columns]
    lines = [
        f"The {len(placeholders)} most-used open placeholder(s) of **{_md(table)}**. Choose a decision, enter "
        "the keys it applies to (and for remap the existing key), then submit.",
        "",
        "| " + " | ".join(_md(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in placeholders:
        provenance = row.get("provenance") or {}
        first = provenance.get("_first_seen_at")
        cells = [
            f"`{row['key']}`",
            provenance.get("_fact_rows_total"),
            first.strftime("%Y-%m-%d") if hasattr(first, "strftime") else first,
            provenance.get("_domains"),
            *(row["columns"].get(c) for c in columns),
        ]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines)


def _md(value: Any) -> str:
    """A Markdown table cell: ``|`` escaped, line breaks as spaces, ``None`` blank."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


if HITL_AVAILABLE:

    class ReviewDecisionOperator(_WarehouseMixin, HITLOperator):  # type: ignore[misc,valid-type]
        """Show the most-used open placeholders of a table in the Airflow UI and apply the steward's decision.

        The body (Markdown) lists up to ``limit`` open placeholders with their fact-row counts; the options
        are ``approve``, ``reject``, ``remap`` and ``skip``; the form takes ``keys``, ``remap_to`` and
        ``authoritative`` (:func:`decision_params`).  The decision is applied by :func:`apply_decision` as
        the responding user (``responded_by_user``), and the :class:`ReviewResult` is returned (``None``
        for ``skip``).  A table without open placeholders skips the task without asking.

        :param table: the schema-qualified reference table (templated); empty skips the task (no decision
            asked for).
        :param limit: how many placeholders to show (templated).
        :param domain: only placeholders this domain derived or uses (templated).
        :param fk_config_path: ``foreign_keys.yml`` with the ``fact_tables`` (templated).
        :param config_path: ``reference_sync.yml`` with the sensitive columns (templated).
        :param warehouse_conn_id: ``postgres`` connection of the warehouse.
        :param subject: the headline (templated; default "Review the open placeholders of <table>").
        :param kwargs: ``HITLOperator`` arguments (``response_timeout``, ``assigned_users``, ``notifiers``,
            ``defaults``, …); ``options``, ``params`` and ``multiple`` are fixed.
        """

        template_fields: Sequence[str] = (
            "table", "limit", "domain", "fk_config_path", "config_path", "subject", "body",
        )  # fmt: skip
        ui_color = "#e8daef"

        def __init__(
            self,
            *,
            table: str,
            limit: int | str = 20,
            domain: str | None = None,
            fk_config_path: str | None = None,
            config_path: str | None = None,
            warehouse_conn_id: str = "refdata_warehouse",
            subject: str | None = None,
            **kwargs: Any,
        ) -> None:
            for fixed in ("options", "multiple"):
                if fixed in kwargs:
                    raise ValueError(f"{fixed} of ReviewDecisionOperator is fixed")
            # The DAG's params arrive merged in; HITLOperator keeps only the task's own (the decision form).
            params = ParamsDict(kwargs.pop("params", None) or {})
            params.update(decision_params())
            super().__init__(
                subject=subject or "Review the open placeholders", options=list(DECISIONS), params=params, **kwargs
            )
            self.default_subject = subject is None
            self.table = table
            self.limit = limit
            self.domain = domain
            self.fk_config_path = fk_config_path
            self.config_path = config_path
            self.warehouse_conn_id = warehouse_conn_id

        def execute(self, context: Any) -> Any:
            table = str(self.table or "").strip()
            if not table:
                raise AirflowSkipException("no table given: no decision asked for")
            limit = int(as_float(self.limit, "limit") or 20)
            rows = self.service().open_placeholders(table, limit=limit, domain=self.domain or None)
            if not rows:
                raise AirflowSkipException(f"{table} has no open placeholders: nothing to decide")
            self.body = placeholders_markdown(table, rows)
            if self.default_subject:
                self.subject = f"Review the open placeholders of {table}"
            self.log.info("Asking for a decision on %d open placeholder(s) of %s", len(rows), table)
            return super().execute(context)

        def execute_complete(self, context: Any, event: dict[str, Any]) -> ReviewResult | None:
            response = super().execute_complete(context, event)
            decision = response["chosen_options"][0]
            user = response.get("responded_by_user") or {}
            actor = user.get("name") or user.get("id") or actor_of(None, context)
            table = str(self.table).strip()
            try:
                result = apply_decision(self.service(), table, decision, response["params_input"] or {}, actor)
            except ValueError as exc:
                raise AirflowFailException(f"{table}: {exc}") from None
            if result is None:
                self.log.info("%s chose skip: nothing changed in %s", actor, table)
                return None
            log_review_result(self.log, result)
            return result

else:

    class ReviewDecisionOperator(BaseOperator):  # type: ignore[no-redef]
        """Stand-in on Airflow without human-in-the-loop operators (< 3.1): skips with the reason.

        :param kwargs: accepted and ignored except ``BaseOperator`` ones, so DAGs parse on any Airflow.
        """

        def __init__(self, *, table: str = "", **kwargs: Any) -> None:
            for name in ("limit", "domain", "fk_config_path", "config_path", "warehouse_conn_id", "subject",
                         "response_timeout", "assigned_users", "notifiers", "defaults", "body"):  # fmt: skip
                kwargs.pop(name, None)
            super().__init__(**kwargs)
            self.table = table

        def execute(self, context: Any) -> None:
            raise AirflowSkipException(
                "the steward's decision in the UI needs Airflow >= 3.1 (human-in-the-loop operators of "
                "apache-airflow-providers-standard); use a review file instead"
            )
