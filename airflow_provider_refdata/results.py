"""Result models returned by the services and passed between Airflow tasks through XCom.

They are small pydantic models that round-trip through JSON unchanged (``model_dump(mode="json")`` and
``model_validate``) and carry only counts, ratios and messages (never DataFrames).  Airflow's serde has a
pydantic serializer; the operators register these classes with ``airflow.sdk.serde.allow_class`` so that a
downstream task receives the model itself, not a dict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: The counts of what a table sync wrote (all 0 when its transaction rolled back).
SYNC_WRITE_COUNTS = (
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_deleted",
    "rows_promoted",
    "rows_kept_referenced",
)


class SyncResult(_Result):
    """What one reference table's sync did (or, with ``plan_only``, would do)."""

    table: str = Field(description="schema-qualified target table")
    source_type: Literal["legacy_mysql", "postgres", "sql", "config_file"]
    sync_mode: Literal["upsert", "delete_insert"]
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_deleted: int = 0
    rows_promoted: int = Field(0, description="auto-derived rows made authoritative by this sync")
    rows_kept_referenced: int = Field(
        0,
        description="delete_insert: rows the source no longer has that a foreign key still references (or "
        "whose key recently checked facts use: protect_confirmed_hours), kept as auto-derived rows to review "
        "instead of being deleted",
    )
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    attempts: int = 0
    duration_seconds: float = 0.0
    plan_only: bool = False
    ddl: str | None = Field(
        None,
        description="the DDL that created the missing target table (create_table: true), or with plan_only "
        "would create it; None when the table existed",
    )
    skipped_reason: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None


class CoverageMetrics(_Result):
    """FK coverage of one foreign-key configuration, on distinct non-blank values."""

    fk_name: str
    table: str = Field(description="schema-qualified reference table")
    total_fk_values: int = 0
    covered_values: int = 0
    missing_values: int = 0
    coverage_rate: float = 1.0
    authoritative_values: int = 0
    auto_derived_values: int = 0
    blank_rows: int = 0
    remapped_values: int = Field(
        0, description="fact rows whose key was a remapped placeholder (refdata.key_alias), mapped to its target"
    )
    skipped_reason: str | None = None
    error: str | None = None


class BackfillTableResult(_Result):
    """Backfill outcome for one FK configuration."""

    fk_name: str
    table: str
    candidates: int = 0
    inserted: int = 0
    skipped: int = 0
    updated: int = Field(0, description="rows whose NULL columns were filled (fill_null_only mode)")
    rejected: int = Field(
        0,
        description="missing keys left out: the key is too long, or a value for a NOT NULL column is too long "
        "or not valid for the column's type",
    )
    template_unparsed: int = Field(
        0,
        description="derived template values stored as NULL: a formatted placeholder's value "
        "({月度:%y%m}, {金额:,.2f}) did not parse as a date or number",
    )
    error: str | None = None


class BackfillResult(_Result):
    """Outcome of one ``GenericBackfillService.run``."""

    processing_order: list[str] = Field(default_factory=list)
    tables: list[BackfillTableResult] = Field(default_factory=list)
    total_inserted: int = 0
    total_skipped: int = 0
    duration_seconds: float = 0.0
    rows_per_second: float = 0.0
    plan_only: bool = False


class HybridResult(_Result):
    """Outcome of ``HybridReferenceService.ensure_references``: coverage, backfill and ratios."""

    domain: str
    run_id: str | None = Field(
        None,
        description="the call's run id (uuid4): first_seen_run / last_seen_run of refdata.placeholder rows",
    )
    fact_rows: int | None = Field(None, description="fact rows the call was given (None: not counted)")
    pre_load_available: bool = False
    pre_load_coverage: float = 1.0
    coverage_metrics: list[CoverageMetrics] = Field(default_factory=list)
    backfill_result: BackfillResult | None = None
    backfill_count: int = 0
    tables_processed: int = 0
    total_auto_derived: int = 0
    total_authoritative: int = 0
    auto_derived_ratio: float = 0.0
    per_table_ratio: dict[str, float] = Field(default_factory=dict)
    threshold_warnings: list[str] = Field(default_factory=list)
    degraded_mode: bool = False
    degradation_reason: str | None = None
    duration_seconds: float = 0.0
    plan_only: bool = False
    coverage_only: bool = Field(False, description="a coverage check: measured only, nothing backfilled")


class AgeBuckets(_Result):
    """Open placeholders by age (exclusive buckets; the age is taken at ``TableHealth.taken_at``)."""

    up_to_1d: int = Field(0, description="open placeholders at most 1 day old")
    up_to_7d: int = Field(0, description="older than 1 day, at most 7 days")
    up_to_30d: int = Field(0, description="older than 7 days, at most 30 days")
    older: int = Field(0, description="older than 30 days")
    unknown: int = Field(0, description="no derivation time recorded (_derived_at NULL)")


class HealthFilters(_Result):
    """The filters a health check ran with (``None`` = not filtered on that)."""

    domain: str | None = None
    source: Literal["authoritative", "auto_derived"] | None = None
    since: datetime | None = None
    until: datetime | None = None


class TableHealth(_Result):
    """Health of one reference table: how much of it is auto-derived, in review, and how old the open keys are."""

    table: str = Field(description="schema-qualified reference table")
    taken_at: datetime | None = Field(None, description="database time of the check (ages are measured from it)")
    total_rows: int = 0
    authoritative_rows: int = 0
    auto_derived_rows: int = 0
    needs_review_rows: int = 0
    auto_derived_ratio: float = Field(0.0, description="auto-derived rows / all rows (0.0 for an empty table)")
    open_placeholders: int = 0
    oldest_open_placeholder_at: datetime | None = None
    newest_open_placeholder_at: datetime | None = None
    oldest_open_placeholder_age_days: float | None = None
    newest_open_placeholder_age_days: float | None = None
    age_buckets: AgeBuckets = Field(default_factory=AgeBuckets)
    domains: list[str] = Field(default_factory=list, description="domains that derived rows or use open placeholders")
    rows_by_domain: dict[str, int] = Field(
        default_factory=dict, description="auto-derived rows per _derived_from_domain"
    )
    placeholder_source: Literal["provenance", "tracking_columns"] | None = Field(
        None,
        description="where the open placeholders were read: refdata.placeholder (provenance) or, before it "
        "exists, the table's own auto-derived rows in review (tracking_columns)",
    )
    filters: HealthFilters | None = None
    duration_seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Alert(_Result):
    """One alert raised by ``check_alerts`` on a table's health."""

    table: str = Field(description="schema-qualified reference table")
    rule: Literal["auto_derived_ratio", "needs_review_count", "placeholder_age_days", "health_check_failed"]
    level: Literal["warn", "fail"]
    value: float | None = Field(None, description="the measured value (None for a failed health check)")
    threshold: float | None = Field(None, description="the threshold it is strictly above")
    message: str


class ReviewRowError(_Result):
    """One review decision that was refused, with where it came from."""

    line: int | None = Field(None, description="1-based line of the review file (the header is line 1)")
    key: str | None = None
    action: str | None = None
    message: str


class ReviewResult(_Result):
    """What a steward action (approve, reject, remap, or a review file of them) did, or would do."""

    review_id: str = Field(description="shared by this call's rows in refdata.review_log")
    table: str | None = Field(None, description="schema-qualified reference table")
    action: Literal["approve", "reject", "remap", "apply_review_file"]
    actor: str
    source_file: str | None = None
    dry_run: bool = False
    applied: bool = Field(False, description="the changes were committed (False for a dry run or refused rows)")
    approved: int = 0
    rejected: int = 0
    remapped: int = 0
    unchanged: int = Field(0, description="review-file rows without an action, or already in the asked state")
    fact_rows_rewritten: dict[str, int] = Field(
        default_factory=dict, description="rows rewritten by remaps, per schema.table.column"
    )
    errors: list[ReviewRowError] = Field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


class ReviewExportResult(_Result):
    """A review export written by ``export_review``."""

    table: str = Field(description="schema-qualified reference table")
    path: str
    format: Literal["csv", "xlsx"]
    rows: int = Field(0, description="open placeholders exported")
    columns: list[str] = Field(default_factory=list, description="the file's columns, in order")
    excluded_columns: list[str] = Field(default_factory=list, description="sensitive columns left out")
    duration_seconds: float = 0.0
