"""The demo's third act: a data steward works through the auto-derived rows the fact load left behind.

After the two DAGs of :mod:`devtools.demo` ran, this act

1. takes the health of every reference table (``ReferenceHealthService``, stored in ``refdata.health_snapshot``)
   and checks the alert rules of ``reference_sync.yml``;
2. lets a second domain, ``annuity_income``, bring in a handful of *late corrections*: one plan code typed
   with the letter ``O`` for a zero (a typo of an authoritative plan) and one plan code nobody knows.  Its facts
   are not loaded, so nothing references them yet;
3. shows the open placeholders of ``business.年金计划``, most used first, and writes the review export under
   ``.demo/review/`` (CSV with BOM, the sensitive ``客户名称`` left out);
4. fills in a copy of the export as a steward would (**approve** the most-used placeholder with its name
   completed, **remap** the typo to the plan it means, **reject** the unknown code) and applies it with
   ``apply_review_file``, first as a dry run;
5. runs the late corrections again without the rejected code: the typo is now mapped to its plan by the alias
   (no new placeholder);
6. reports the audit rows of ``refdata.review_log``.

Every run of ``make demo`` makes new late corrections (their codes carry the run number), so the act has
something to review each time.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql

from airflow_provider_refdata.textable import text_table

PLAN_TABLE = "business.年金计划"
PLAN_KEY = "年金计划号"
LATE_DOMAIN = "annuity_income"
STEWARD = "demo-steward"
AUDIT_QUERY = "SELECT table_name, key, action, actor, at, remap_to FROM refdata.review_log ORDER BY id DESC LIMIT 10"


@dataclass
class StewardReport:
    """What the act did, for the report and the tests."""

    health: list = field(default_factory=list)  # TableHealth
    alerts: list = field(default_factory=list)  # Alert
    open_placeholders: list[dict] = field(default_factory=list)
    export: object | None = None  # ReviewExportResult
    review_file: Path | None = None
    decisions: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # key -> (action, remap_to)
    dry_run: object | None = None  # ReviewResult
    applied: object | None = None  # ReviewResult
    late_again: object | None = None  # HybridResult of the late corrections after the review
    audit: list[tuple] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def typo_of(code: str) -> str:
    """The code as somebody types it with the letter O for its first zero (``P0012`` → ``PO012``)."""
    return code.replace("0", "O", 1) if "0" in code else code + "O"


def late_corrections(conn: psycopg.Connection, run_number: int) -> pd.DataFrame:
    """Two income rows of this run: a typo of an authoritative plan, and a plan code nobody knows."""
    query = sql.SQL("SELECT {k} FROM {t} WHERE _source = %s AND {k} LIKE %s ORDER BY {k} LIMIT %s").format(
        k=sql.Identifier(PLAN_KEY), t=sql.Identifier("business", "年金计划")
    )
    codes = [row[0] for row in conn.execute(query, ("authoritative", "%0%", run_number))]
    if len(codes) < run_number:
        raise RuntimeError("the demo world has too few authoritative plans with a zero in their code")
    typo = typo_of(codes[run_number - 1])
    unknown = f"ZZ{run_number:03d}"
    return pd.DataFrame(
        {
            "计划代码": [typo, unknown],
            "计划名称": ["（录入错误）", "未知计划"],
            "_intended": [codes[run_number - 1], None],
        }
    )


def fill_review_file(export: Path, target: Path, decisions: dict[str, tuple[str, str | None]], names: dict[str, str]):
    """Copy the export, writing the steward's ``action``/``remap_to`` (and a completed name) into the rows."""
    with open(export, encoding="utf-8-sig", newline="") as source:
        rows = list(csv.DictReader(source))
    header = list(rows[0]) if rows else []
    for row in rows:
        decision = decisions.get(row[PLAN_KEY])
        if decision:
            row["action"], row["remap_to"] = decision[0], decision[1] or ""
            if row[PLAN_KEY] in names:
                row["计划名称"] = names[row[PLAN_KEY]]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8-sig", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return target


def run_steward_act(pg_dsn: str, config_dir: Path, review_dir: Path, run_number: int) -> StewardReport:
    """Steps 1–6 of the module docstring; never raises for a refused step (the report lists the problem)."""
    from airflow_provider_refdata.config import load_fk_configs, load_sync_config
    from airflow_provider_refdata.services.alerts import check_alerts
    from airflow_provider_refdata.services.health import ReferenceHealthService
    from airflow_provider_refdata.services.hybrid import HybridReferenceService
    from airflow_provider_refdata.services.review import ReviewService
    from airflow_provider_refdata.services.review_export import export_review

    report = StewardReport()
    sync_config = load_sync_config(config_dir / "reference_sync.yml")
    fk_file = config_dir / "foreign_keys.yml"
    tables = [f"{t.target_schema}.{t.target_table}" for t in sync_config.tables]
    with psycopg.connect(pg_dsn) as conn:
        report.health = ReferenceHealthService().table_health(conn, tables)
        report.alerts = check_alerts(report.health, sync_config.health)
        income_fks = [fk for fk in load_fk_configs(fk_file, LATE_DOMAIN) if fk.name == "fk_plan"]
        late = late_corrections(conn, run_number)
        intended = dict(zip(late["计划代码"], late.pop("_intended"), strict=True))
        HybridReferenceService().ensure_references(LATE_DOMAIN, late.copy(), income_fks, conn)
        review = ReviewService(conn, foreign_keys=fk_file, review=sync_config)
        report.open_placeholders = review.open_placeholders(PLAN_TABLE, limit=5)
        stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        export_path = review_dir / f"年金计划_review_{stamp}.csv"
        report.export = export_review(conn, PLAN_TABLE, export_path, review=sync_config)
        typo, unknown = late["计划代码"]
        fact_keys = [p["key"] for p in report.open_placeholders if p["key"] not in (typo, unknown)]
        if not fact_keys:
            report.problems.append(f"no open placeholder of {PLAN_TABLE} used by the facts to approve")
            return report
        approved = fact_keys[0]
        report.decisions = {approved: ("approve", None), typo: ("remap", intended[typo]), unknown: ("reject", None)}
        report.review_file = fill_review_file(
            export_path,
            review_dir / f"年金计划_review_{stamp}_filled.csv",
            report.decisions,
            {approved: f"计划 {approved}（已核实）"},
        )
        report.dry_run = review.apply_review_file(report.review_file, actor=STEWARD, dry_run=True)
        report.applied = review.apply_review_file(report.review_file, actor=STEWARD)
        if report.applied.errors:
            report.problems += [f"review file line {e.line}: {e.message}" for e in report.applied.errors]
        # The income team fixed its file: the unknown code is gone, the typo is still there (and now aliased).
        again = late[late["计划代码"] == typo].copy()
        report.late_again = HybridReferenceService().ensure_references(LATE_DOMAIN, again, income_fks, conn)
        report.audit = conn.execute(AUDIT_QUERY).fetchall()
    return report


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def format_steward_report(report: StewardReport, pg_dsn: str) -> list[str]:
    """The third act's part of the demo report."""
    out = ["", "Steward loop: reference-data health"]
    out += text_table(
        ["table", "rows", "auto-derived", "needs review", "ratio", "open placeholders", "oldest (days)"],
        [
            [
                h.table,
                h.total_rows,
                h.auto_derived_rows,
                h.needs_review_rows,
                f"{h.auto_derived_ratio * 100:.1f}%",
                h.open_placeholders,
                "-" if h.oldest_open_placeholder_age_days is None else f"{h.oldest_open_placeholder_age_days:.1f}",
            ]
            for h in report.health
        ],  # fmt: skip
        "  ",
    )
    out.append("  alerts: " + ("; ".join(a.message for a in report.alerts) if report.alerts else "none"))
    out.append("")
    out.append(f"Open placeholders of {PLAN_TABLE}, most used first")
    out += text_table(
        ["key", "name", "fact rows", "domains", "first seen"],
        [
            [
                p["key"],
                p["columns"].get("计划名称"),
                p["provenance"].get("_fact_rows_total"),
                ", ".join(p["provenance"].get("_domains") or []),
                _when(p["provenance"].get("_first_seen_at")),
            ]  # fmt: skip
            for p in report.open_placeholders
        ],
        "  ",
    )
    if report.export is not None:
        left_out = ", ".join(report.export.excluded_columns) or "none"
        out.append(
            f"  review export: {report.export.path} ({report.export.rows} rows; sensitive, left out: {left_out})"
        )
    if report.review_file is not None:
        out.append(f"  filled in by the steward: {report.review_file}")
        for key, (action, target) in report.decisions.items():
            out.append(f"    {action:<8} {key}" + (f" -> {target}" if target else ""))
    for label, result in (("dry run", report.dry_run), ("applied", report.applied)):
        if result is not None:
            rewritten = ", ".join(f"{c} {n}" for c, n in result.fact_rows_rewritten.items()) or "none"
            out.append(
                f"  {label}: approved {result.approved}, remapped {result.remapped}, rejected {result.rejected}, "
                f"unchanged {result.unchanged}, errors {len(result.errors)}; fact rows rewritten: {rewritten}"
            )
    if report.late_again is not None:
        remapped = sum(m.remapped_values for m in report.late_again.coverage_metrics)
        out.append(
            f"  late corrections again: {remapped} fact value(s) mapped by the alias, "
            f"{report.late_again.backfill_count} placeholder(s) inserted"
        )
    if report.audit:
        out.append("  audit (refdata.review_log, newest first):")
        out += text_table(
            ["table", "key", "action", "actor", "at", "remap_to"],
            [[t, k, a, who, f"{at:%Y-%m-%d %H:%M:%S}", to or ""] for t, k, a, who, at, to in report.audit],
            "    ",
        )
        out.append(f'  psql "{pg_dsn}" -c "{AUDIT_QUERY}"')
    return out
