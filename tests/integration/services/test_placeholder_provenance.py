"""Placeholder provenance (issue 11 §1) on the real PostgreSQL: ``refdata.placeholder`` through
``HybridReferenceService().ensure_references`` and its closing by the authoritative sync."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService
from airflow_provider_refdata.services.source_yaml import YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.integration.refdata_business_tables import (
    DOMAIN,
    PLAN,
    create_business_tables,
    insert,
    plan_facts,
    plan_fk_configs,
    plan_sync_config,
)

OTHER_DOMAIN = "other_domain"  # sorts after DOMAIN ("annuity_performance")
COLUMNS = (
    "key, first_seen_at, first_seen_run, last_seen_at, last_seen_run, domains, fact_rows_total, fact_rows_last, "
    "resolution, resolved_at, resolved_by"
)


def _placeholders(conn: psycopg.Connection, schema: str, table: str = PLAN) -> dict[str, dict]:
    """The placeholder rows of ``schema.table`` by key (empty when the table does not exist yet)."""
    with conn.transaction():
        if conn.execute("SELECT to_regclass('refdata.placeholder') IS NULL").fetchone()[0]:
            return {}
        cur = conn.execute(
            f"SELECT {COLUMNS} FROM refdata.placeholder WHERE table_name = %s ORDER BY key", (f"{schema}.{table}",)
        )
        names = [d.name for d in cur.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def _ensure(conn, schema: str, codes: list, domain: str = DOMAIN, **kwargs):
    result = HybridReferenceService().ensure_references(
        domain, plan_facts(codes), plan_fk_configs(schema), conn, **kwargs
    )
    assert not result.degraded_mode, result.degradation_reason
    return result


def test_runs_record_first_and_last_seen_domains_and_counts(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "A", "计划名称": "权威计划"}])

    first = _ensure(pg_conn, pg_schema, ["A", "B", "C", " B ", "", None, "A"])

    assert str(uuid.UUID(first.run_id)) == first.run_id
    assert first.backfill_count == 2
    seen = _placeholders(pg_conn, pg_schema)
    assert sorted(seen) == ["B", "C"]  # the authoritative A is never tracked
    b, c = seen["B"], seen["C"]
    assert (b["first_seen_run"], b["last_seen_run"], b["domains"]) == (first.run_id, first.run_id, [DOMAIN])
    assert (b["fact_rows_total"], b["fact_rows_last"]) == (2, 2)  # " B " is B after trimming
    assert (c["fact_rows_total"], c["fact_rows_last"]) == (1, 1)
    assert b["first_seen_at"] == b["last_seen_at"] and b["resolution"] is None
    assert (b["resolved_at"], b["resolved_by"]) == (None, None)
    with pg_conn.transaction():
        logged = pg_conn.execute(
            "SELECT result->>'run_id' FROM refdata.run_log WHERE run_type = 'ensure_references' "
            "AND result->>'run_id' = %s",
            (first.run_id,),
        ).fetchall()
    assert logged == [(first.run_id,)]

    # Another domain, other counts; B already exists (auto-derived, seen), D is new, A stays untracked.
    second = _ensure(pg_conn, pg_schema, ["B", "B", "B", "D", "A"], domain=OTHER_DOMAIN)

    assert second.run_id != first.run_id and second.backfill_count == 1
    after = _placeholders(pg_conn, pg_schema)
    assert sorted(after) == ["B", "C", "D"]
    b2 = after["B"]
    assert (b2["first_seen_at"], b2["first_seen_run"]) == (b["first_seen_at"], first.run_id)
    assert b2["last_seen_run"] == second.run_id and b2["last_seen_at"] > b["last_seen_at"]
    assert b2["domains"] == [DOMAIN, OTHER_DOMAIN]
    assert (b2["fact_rows_total"], b2["fact_rows_last"]) == (5, 3)
    assert after["C"] == c  # not in the second run's facts: untouched
    d = after["D"]
    assert (d["first_seen_run"], d["domains"], d["fact_rows_total"], d["fact_rows_last"]) == (
        second.run_id,
        [OTHER_DOMAIN],
        1,
        1,
    )

    # The first domain again: domains stay distinct and sorted.
    third = _ensure(pg_conn, pg_schema, ["B"])
    b3 = _placeholders(pg_conn, pg_schema)["B"]
    assert (b3["domains"], b3["last_seen_run"], b3["fact_rows_total"], b3["fact_rows_last"]) == (
        [DOMAIN, OTHER_DOMAIN],
        third.run_id,
        6,
        1,
    )


def test_rerun_of_the_same_facts_adds_up_the_counts(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    codes = ["X", "X", "Y"]
    first = _ensure(pg_conn, pg_schema, codes)
    second = _ensure(pg_conn, pg_schema, codes)

    assert (first.backfill_count, second.backfill_count) == (2, 0)
    seen = _placeholders(pg_conn, pg_schema)
    # Summed over runs (each run's facts count), the last run's alone; one row per key whatever the runs.
    assert {k: (v["fact_rows_total"], v["fact_rows_last"]) for k, v in seen.items()} == {"X": (4, 2), "Y": (2, 1)}
    assert {v["first_seen_run"] for v in seen.values()} == {first.run_id}
    assert {v["last_seen_run"] for v in seen.values()} == {second.run_id}


def test_plan_only_and_coverage_only_record_nothing(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)

    planned = _ensure(pg_conn, pg_schema, ["P1", "P2"], plan_only=True)
    assert planned.backfill_count == 2 and planned.run_id
    assert _placeholders(pg_conn, pg_schema) == {}

    _ensure(pg_conn, pg_schema, ["P1"])
    before = _placeholders(pg_conn, pg_schema)
    assert sorted(before) == ["P1"]

    checked = _ensure(pg_conn, pg_schema, ["P1", "P1", "P2"], coverage_only=True)
    assert checked.coverage_metrics[0].auto_derived_values == 1
    again = _ensure(pg_conn, pg_schema, ["P1", "P2"], plan_only=True)
    assert again.backfill_count == 1
    assert _placeholders(pg_conn, pg_schema) == before


def test_two_fk_configurations_on_one_table_add_up_in_one_run(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    (plan,) = plan_fk_configs(pg_schema)
    second_column = plan.model_copy(update={"name": "fk_plan_2", "source_column": "计划代码2"})
    facts = plan_facts(["M", "N", "M"])
    facts["计划代码2"] = ["M", "M", "O"]

    result = HybridReferenceService().ensure_references(DOMAIN, facts, [plan, second_column], pg_conn)

    assert not result.degraded_mode, result.degradation_reason
    seen = _placeholders(pg_conn, pg_schema)
    # M: 2 rows in each column; the second configuration's rows add to the same run's count.
    assert {k: (v["fact_rows_total"], v["fact_rows_last"]) for k, v in seen.items()} == {
        "M": (4, 4),
        "N": (1, 1),
        "O": (1, 1),
    }
    assert {v["last_seen_run"] for v in seen.values()} == {result.run_id}


def _close(conn, schema: str, key: str, resolution: str) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE refdata.placeholder SET resolution = %s, resolved_at = now(), resolved_by = 'test'"
            " WHERE table_name = %s AND key = %s",
            (resolution, f"{schema}.{PLAN}", key),
        )


def test_a_rejected_key_auto_derived_again_is_reopened_an_approved_one_stays_closed(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["R", "R", "V"])
    # What a reject and an approve leave behind (the review service does this in issue 11 §5).
    _close(pg_conn, pg_schema, "R", "rejected")
    _close(pg_conn, pg_schema, "V", "approved")
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE 年金计划号 = 'R'").format(sql.Identifier(pg_schema), sql.Identifier(PLAN))
        )
        pg_conn.execute(
            sql.SQL("UPDATE {}.{} SET _needs_review = false WHERE 年金计划号 = 'V'").format(
                sql.Identifier(pg_schema), sql.Identifier(PLAN)
            )
        )

    later = _ensure(pg_conn, pg_schema, ["R", "V", "V", "V"], domain=OTHER_DOMAIN)

    assert later.backfill_count == 1  # R inserted again
    seen = _placeholders(pg_conn, pg_schema)
    r, v = seen["R"], seen["V"]
    # Reopened as a fresh placeholder: this run's first seen, counts and domains.
    assert (r["resolution"], r["resolved_at"], r["resolved_by"]) == (None, None, None)
    assert (r["first_seen_run"], r["last_seen_run"], r["domains"]) == (later.run_id, later.run_id, [OTHER_DOMAIN])
    assert (r["fact_rows_total"], r["fact_rows_last"]) == (1, 1)
    # Approved stays approved; its usage keeps being counted.
    assert (v["resolution"], v["resolved_by"]) == ("approved", "test")
    assert (v["last_seen_run"], v["fact_rows_total"], v["fact_rows_last"]) == (later.run_id, 4, 3)
    assert v["domains"] == [DOMAIN, OTHER_DOMAIN]


def test_sync_promotion_closes_the_placeholder(pg_conn, pg_dsn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "A", "计划名称": "权威计划"}])
    first = _ensure(pg_conn, pg_schema, ["A", "B", "C"])
    cfg = plan_sync_config(tmp_path, pg_schema, {c: f"权威{c}" for c in ["A", "B", "Z"]})

    synced = ReferenceSyncService().sync_table(cfg, YamlFileSource(), pg_dsn)

    assert synced.error is None and synced.rows_promoted == 1
    seen = _placeholders(pg_conn, pg_schema)
    assert sorted(seen) == ["B", "C"]  # the sync's own new key Z is authoritative: never a placeholder
    b = seen["B"]
    assert (b["resolution"], b["resolved_by"]) == ("promoted", "sync")
    assert b["resolved_at"] is not None and b["last_seen_run"] == first.run_id
    assert seen["C"]["resolution"] is None

    # Now authoritative: a later run does not touch the closed placeholder; a plan-only sync closes nothing.
    _ensure(pg_conn, pg_schema, ["B", "C"])
    after = _placeholders(pg_conn, pg_schema)
    assert after["B"] == b
    assert after["C"]["fact_rows_total"] == 2
    again = ReferenceSyncService().sync_table(cfg, YamlFileSource(), pg_dsn)
    assert again.error is None and again.rows_promoted == 0
    assert _placeholders(pg_conn, pg_schema)["B"] == b


def test_plan_only_sync_does_not_close_placeholders(pg_conn, pg_dsn, pg_schema, tmp_path):
    create_business_tables(pg_conn, pg_schema)
    _ensure(pg_conn, pg_schema, ["B"])
    cfg = plan_sync_config(tmp_path, pg_schema, {"B": "权威B"})

    planned = ReferenceSyncService().sync_table(cfg, YamlFileSource(), pg_dsn, plan_only=True)

    assert planned.error is None and planned.rows_promoted == 1
    assert _placeholders(pg_conn, pg_schema)["B"]["resolution"] is None
