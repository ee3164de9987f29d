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
