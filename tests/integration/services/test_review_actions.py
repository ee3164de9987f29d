"""Review actions (issue 11 §5) on the real PostgreSQL: approve, reject, remap — rows, audit, placeholders.

Placeholders are made by a real ``HybridReferenceService().ensure_references``; the plan table has a real FK
child (组合计划.年金计划号) and a fact table (规模明细.计划代码) that only ``fact_tables`` names.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService
from airflow_provider_refdata.config import ForeignKeyConfig
from airflow_provider_refdata.config.review import ReviewConfig
from airflow_provider_refdata.exceptions import RefdataReviewError
from airflow_provider_refdata.services.review import ReviewService
from airflow_provider_refdata.services.source_yaml import YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from airflow_provider_refdata.warehouse.state import lock_name
from tests.integration.refdata_business_tables import PLAN, PORTFOLIO, insert, plan_sync_config
from tests.integration.services.review_env import (
    ACTOR,
    FACT,
    add_facts,
    add_portfolios,
    aliases,
    column_values,
    ensure,
    fk_with_facts,
    placeholders,
    plan,
    plans,
    review_log,
    rows,
    setup,
)


def _service(conn, schema: str, **kwargs) -> ReviewService:
    return ReviewService(conn, foreign_keys=fk_with_facts(schema), **kwargs)


# --- approve -------------------------------------------------------------------------------------------------
def test_approve_completes_columns_keeps_auto_derived_audits_and_closes(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A", "B", "C"])
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "N", "_source": "auto_derived", "_needs_review": True}])
    before = plans(pg_conn, pg_schema)

    result = _service(pg_conn, pg_schema).approve(
        plan(pg_schema), ["A", "N", "A"], actor=ACTOR, values={"计划名称": "审核后名称", "主拓机构": None}
    )

    assert (result.approved, result.unchanged, result.applied, result.errors) == (2, 0, True, [])
    after = plans(pg_conn, pg_schema)
    for key in ("A", "N"):
        row = after[key]
        assert (row["_source"], row["_needs_review"], row["计划名称"], row["主拓机构"]) == (
            "auto_derived",
            False,
            "审核后名称",
            None,
        )
        assert row["计划类型"] == before[key]["计划类型"]  # columns not given are kept
    assert after["B"] == before["B"] and after["C"] == before["C"]
    log = review_log(pg_conn, plan(pg_schema))
    assert [(e["key"], e["action"], e["actor"], e["review_id"]) for e in log] == [
        ("A", "approve", ACTOR, result.review_id),
        ("N", "approve", ACTOR, result.review_id),
    ]
    a = log[0]
    assert (a["before"]["计划名称"], a["before"]["_needs_review"], a["before"]["主拓机构"]) == ("计划0", True, "北京")
    assert (a["after"]["计划名称"], a["after"]["_needs_review"], a["after"]["主拓机构"]) == ("审核后名称", False, None)
    assert (a["remap_to"], a["source_file"]) == (None, None)
    seen = placeholders(pg_conn, plan(pg_schema))
    assert (seen["A"]["resolution"], seen["A"]["resolved_by"], seen["A"]["fact_rows_total"]) == ("approved", ACTOR, 1)
    # N had no provenance: its placeholder row is inserted closed.
    assert (seen["N"]["resolution"], seen["N"]["fact_rows_total"], seen["N"]["first_seen_run"]) == (
        "approved",
        0,
        result.review_id,
    )
    assert seen["B"]["resolution"] is None


def test_approve_again_is_unchanged_and_writes_nothing(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A", "B"])
    service = _service(pg_conn, pg_schema)
    service.approve(plan(pg_schema), ["A", "B"], actor=ACTOR, values={"计划名称": "定稿"})
    before, log, seen = (
        plans(pg_conn, pg_schema),
        review_log(pg_conn, plan(pg_schema)),
        placeholders(pg_conn, plan(pg_schema)),
    )

    again = service.approve(plan(pg_schema), ["B", "A"], actor="someone else", values={"计划名称": "定稿"})
    bare = service.approve(plan(pg_schema), ["A"], actor="someone else")

    assert (again.approved, again.unchanged, again.errors) == (0, 2, [])
    assert (bare.approved, bare.unchanged) == (0, 1)
    assert plans(pg_conn, pg_schema) == before  # same xmin: not one row rewritten
    assert review_log(pg_conn, plan(pg_schema)) == log
    assert placeholders(pg_conn, plan(pg_schema)) == seen
    # A different value is a new decision on an approved key: applied and audited.
    changed = service.approve(plan(pg_schema), ["A"], actor=ACTOR, values={"计划名称": "再改"})
    assert changed.approved == 1 and plans(pg_conn, pg_schema)["A"]["计划名称"] == "再改"
    assert [e["key"] for e in review_log(pg_conn, plan(pg_schema))] == ["A", "B", "A"]


def test_approve_refuses_missing_and_authoritative_keys_and_bad_columns_changing_nothing(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A"], authoritative={"P001": "权威"})
    service = _service(pg_conn, pg_schema)
    before = plans(pg_conn, pg_schema)

    with pytest.raises(RefdataReviewError) as refused:
        service.approve(plan(pg_schema), ["A", "NOPE", "P001"], actor=ACTOR)
    assert refused.value.keys == ["NOPE", "P001"] and refused.value.table == plan(pg_schema)
    assert "'NOPE' is not in" in str(refused.value) and "'P001' is authoritative" in str(refused.value)

    for column, why in [
        ("年金计划号", "is the key column"),
        ("_source", "is a tracking column"),
        ("不存在", "is not a column of the table"),
    ]:
        with pytest.raises(RefdataReviewError, match=f"{column!r}: it {why}"):
            service.approve(plan(pg_schema), ["A"], actor=ACTOR, values={column: "x"})
    with pytest.raises(RefdataReviewError, match="column '计划类型': value '.*' is longer than the 50 characters"):
        service.approve(plan(pg_schema), ["A"], actor=ACTOR, values={"计划类型": "长" * 51})

    assert plans(pg_conn, pg_schema) == before  # A was not approved either: one transaction
    assert review_log(pg_conn, plan(pg_schema)) == []
    assert placeholders(pg_conn, plan(pg_schema))["A"]["resolution"] is None


def test_approve_authoritative_then_a_sync_still_overwrites(pg_conn, pg_dsn, pg_schema, tmp_path):
    setup(pg_conn, pg_schema, ["A", "B"])
    service = _service(pg_conn, pg_schema)

    made = service.approve(plan(pg_schema), ["A"], actor=ACTOR, values={"计划名称": "人工确认"}, authoritative=True)
    kept = service.approve(plan(pg_schema), ["B"], actor=ACTOR, values={"计划名称": "人工确认B"})

    assert made.approved == 1 and kept.approved == 1
    after = plans(pg_conn, pg_schema)
    assert (after["A"]["_source"], after["A"]["_needs_review"], after["A"]["计划名称"]) == (
        "authoritative",
        False,
        "人工确认",
    )
    assert (after["B"]["_source"], after["B"]["_needs_review"]) == ("auto_derived", False)
    # Repeating it is unchanged (not refused as "authoritative"); changing its values is refused.
    assert (
        service.approve(
            plan(pg_schema), ["A"], actor=ACTOR, values={"计划名称": "人工确认"}, authoritative=True
        ).unchanged
        == 1
    )
    with pytest.raises(RefdataReviewError, match="'A' is authoritative .*made authoritative by an approval"):
        service.approve(plan(pg_schema), ["A"], actor=ACTOR, values={"计划名称": "又改"}, authoritative=True)

    synced = ReferenceSyncService().sync_table(
        plan_sync_config(tmp_path, pg_schema, {"A": "系统名称A", "B": "系统名称B"}), YamlFileSource(), pg_dsn
    )

    assert synced.error is None and (synced.rows_updated, synced.rows_promoted) == (2, 1)
    final = plans(pg_conn, pg_schema)
    assert (final["A"]["计划名称"], final["A"]["_source"]) == ("系统名称A", "authoritative")
    assert (final["B"]["计划名称"], final["B"]["_source"]) == ("系统名称B", "authoritative")


# --- reject --------------------------------------------------------------------------------------------------
def test_reject_deletes_unreferenced_placeholders_audits_and_is_idempotent(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A", "B", "C"])
    service = _service(pg_conn, pg_schema)
    before = plans(pg_conn, pg_schema)

    result = service.reject(plan(pg_schema), ["A", "B"], actor=ACTOR)

    assert (result.rejected, result.unchanged, result.action) == (2, 0, "reject")
    assert sorted(plans(pg_conn, pg_schema)) == ["C"]
    log = review_log(pg_conn, plan(pg_schema))
    assert [(e["key"], e["action"], e["after"]) for e in log] == [("A", "reject", None), ("B", "reject", None)]
    assert log[0]["before"]["计划名称"] == before["A"]["计划名称"] and log[0]["before"]["_source"] == "auto_derived"
    seen = placeholders(pg_conn, plan(pg_schema))
    assert [(seen[k]["resolution"], seen[k]["resolved_by"]) for k in "ABC"] == [
        ("rejected", ACTOR),
        ("rejected", ACTOR),
        (None, None),
    ]

    again = service.reject(plan(pg_schema), ["A", "B", "NEVER"], actor=ACTOR)

    assert (again.rejected, again.unchanged) == (0, 3)
    assert len(review_log(pg_conn, plan(pg_schema))) == 2
    assert placeholders(pg_conn, plan(pg_schema)) == seen


def test_reject_refused_while_a_foreign_key_or_a_fact_table_holds_the_key(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A", "B", "C"], authoritative={"P001": "权威"})
    add_portfolios(pg_conn, pg_schema, {"Q1": "A", "Q2": "A"})
    add_facts(pg_conn, pg_schema, ["B", "B", "B"])
    service = _service(pg_conn, pg_schema)
    before = plans(pg_conn, pg_schema)

    with pytest.raises(RefdataReviewError) as by_constraint:
        service.reject(plan(pg_schema), ["A", "C"], actor=ACTOR)
    holder = f"{pg_schema}.{PORTFOLIO}.年金计划号"
    assert (by_constraint.value.referencing_table, by_constraint.value.count) == (holder, 2)
    assert by_constraint.value.keys == ["A"]
    assert f"'A' is still held by 2 row(s) of {pg_schema}.{PORTFOLIO}.年金计划号" in str(by_constraint.value)

    with pytest.raises(RefdataReviewError) as by_fact_table:
        service.reject(plan(pg_schema), ["B"], actor=ACTOR)
    assert (by_fact_table.value.referencing_table, by_fact_table.value.count) == (f"{pg_schema}.{FACT}.计划代码", 3)
    assert "fact_tables of fk_plan" in str(by_fact_table.value)

    with pytest.raises(RefdataReviewError, match="'P001' is authoritative"):
        service.reject(plan(pg_schema), ["P001"], actor=ACTOR)

    assert plans(pg_conn, pg_schema) == before  # C was not deleted either
    assert review_log(pg_conn, plan(pg_schema)) == []
    # Without the configuration the fact table is invisible: only constraints guard the reject.
    assert ReviewService(pg_conn, foreign_keys=[]).reject(plan(pg_schema), ["B"], actor=ACTOR).rejected == 1


def test_reject_and_remap_refused_by_a_multi_column_foreign_key(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A"], authoritative={"P001": "权威"})
    ref = sql.SQL("{}.{}").format(sql.Identifier(pg_schema), sql.Identifier(PLAN))
    child = sql.SQL("{}.{}").format(sql.Identifier(pg_schema), sql.Identifier("计划合同"))
    with pg_conn.transaction():
        pg_conn.execute(sql.SQL("ALTER TABLE {} ADD UNIQUE (年金计划号, 计划类型)").format(ref))
        pg_conn.execute(
            sql.SQL(
                "CREATE TABLE {} (合同号 text PRIMARY KEY, 年金计划号 varchar(32), 计划类型 varchar(50),"
                " FOREIGN KEY (年金计划号, 计划类型) REFERENCES {} (年金计划号, 计划类型))"
            ).format(child, ref)
        )
        pg_conn.execute(sql.SQL("INSERT INTO {} VALUES ('H1', 'A', '单一计划')").format(child))

    with pytest.raises(RefdataReviewError) as refused:
        _service(pg_conn, pg_schema).reject(plan(pg_schema), ["A"], actor=ACTOR)
    assert (refused.value.referencing_table, refused.value.count) == (f"{pg_schema}.计划合同.(年金计划号, 计划类型)", 1)
    with pytest.raises(RefdataReviewError, match="multi-column foreign key a remap cannot rewrite"):
        _service(pg_conn, pg_schema).remap(plan(pg_schema), "A", "P001", actor=ACTOR)
    assert sorted(plans(pg_conn, pg_schema)) == ["A", "P001"]


# --- remap ---------------------------------------------------------------------------------------------------
def test_remap_rewrites_fact_tables_and_fk_children_and_records_the_alias(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["P0O1", "X"], authoritative={"P001": "权威计划"})
    add_portfolios(pg_conn, pg_schema, {"Q1": "P0O1", "Q2": "P0O1", "Q3": "X"})
    add_facts(pg_conn, pg_schema, ["P0O1", "P0O1", "P0O1", "X", "P001"])
    service = _service(pg_conn, pg_schema)
    before = plans(pg_conn, pg_schema)

    result = service.remap(plan(pg_schema), "P0O1", "P001", actor=ACTOR)

    assert (result.remapped, result.unchanged, result.action) == (1, 0, "remap")
    assert result.fact_rows_rewritten == {f"{pg_schema}.{FACT}.计划代码": 3, f"{pg_schema}.{PORTFOLIO}.年金计划号": 2}
    assert sorted(plans(pg_conn, pg_schema)) == ["P001", "X"]
    assert plans(pg_conn, pg_schema)["P001"] == before["P001"]  # the target is untouched
    portfolios = rows(pg_conn, pg_schema, PORTFOLIO, "组合代码")
    assert {k: v["年金计划号"] for k, v in portfolios.items()} == {"Q1": "P001", "Q2": "P001", "Q3": "X"}
    assert column_values(pg_conn, pg_schema, FACT, "计划代码") == ["P001"] * 4 + ["X"]
    assert aliases(pg_conn, plan(pg_schema)) == {"P0O1": "P001"}
    (entry,) = review_log(pg_conn, plan(pg_schema))
    assert (entry["key"], entry["action"], entry["remap_to"], entry["after"]) == ("P0O1", "remap", "P001", None)
    assert entry["before"]["年金计划号"] == "P0O1"
    assert placeholders(pg_conn, plan(pg_schema))["P0O1"]["resolution"] == "remapped"

    again = service.remap(plan(pg_schema), "P0O1", "P001", actor=ACTOR)

    assert (again.remapped, again.unchanged, again.fact_rows_rewritten) == (0, 1, {})
    assert len(review_log(pg_conn, plan(pg_schema))) == 1
    with pytest.raises(RefdataReviewError, match=r"'P0O1' is not in .* \(already remapped to 'P001'\)"):
        service.remap(plan(pg_schema), "P0O1", "X", actor=ACTOR)


def test_remap_collapses_alias_chains(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A", "B"], authoritative={"P001": "权威"})
    add_facts(pg_conn, pg_schema, ["A", "B"])
    service = _service(pg_conn, pg_schema)

    service.remap(plan(pg_schema), "A", "B", actor=ACTOR)  # a placeholder may be the target (any source)
    assert aliases(pg_conn, plan(pg_schema)) == {"A": "B"}
    service.remap(plan(pg_schema), "B", "P001", actor=ACTOR)

    assert aliases(pg_conn, plan(pg_schema)) == {"A": "P001", "B": "P001"}
    assert column_values(pg_conn, pg_schema, FACT, "计划代码") == ["P001", "P001"]
    assert sorted(plans(pg_conn, pg_schema)) == ["P001"]


def test_remap_refusals_change_nothing(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A"], authoritative={"P001": "权威", "P002": "权威2"})
    add_facts(pg_conn, pg_schema, ["A"])
    service = _service(pg_conn, pg_schema)
    before = plans(pg_conn, pg_schema)

    for from_key, to_key, message in [
        ("A", "MISSING", "remap target 'MISSING' is not in"),
        ("A", "A", "remap_to 'A' is the key itself"),
        ("P001", "P002", "'P001' is authoritative"),
        ("NOPE", "P001", "'NOPE' is not in"),
    ]:
        with pytest.raises(RefdataReviewError, match=message) as refused:
            service.remap(plan(pg_schema), from_key, to_key, actor=ACTOR)
        assert refused.value.keys == [from_key]

    assert plans(pg_conn, pg_schema) == before
    assert column_values(pg_conn, pg_schema, FACT, "计划代码") == ["A"]
    assert (review_log(pg_conn, plan(pg_schema)), aliases(pg_conn, plan(pg_schema))) == ([], {})


def test_a_missing_configured_fact_column_stops_reject_and_remap(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A"], authoritative={"P001": "权威"})
    (fk,) = fk_with_facts(pg_schema)
    broken = fk.model_copy(update={"fact_tables": [f"{pg_schema}.{FACT}.不存在"]})
    service = ReviewService(pg_conn, foreign_keys=[broken])

    missing = f"fact_tables entry {pg_schema}.{FACT}.不存在 of foreign key 'fk_plan'"
    with pytest.raises(RefdataReviewError, match=missing):
        service.reject(plan(pg_schema), ["A"], actor=ACTOR)
    assert sorted(plans(pg_conn, pg_schema)) == ["A", "P001"]
    assert service.approve(plan(pg_schema), ["A"], actor=ACTOR).approved == 1  # approvals need no fact tables


# --- open placeholders, locking ------------------------------------------------------------------------------
def test_open_placeholders_most_used_first_without_sensitive_columns(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["A", "B", "B", "B", "C", "C"], authoritative={"P001": "权威"})
    ensure(pg_conn, pg_schema, ["C", "C"])
    review = ReviewConfig(sensitive_columns={plan(pg_schema): ["客户名称"]})
    service = _service(pg_conn, pg_schema, review=review)
    service.approve(plan(pg_schema), ["A"], actor=ACTOR)

    listed = service.open_placeholders(plan(pg_schema))

    assert [(p["key"], p["provenance"]["_fact_rows_total"]) for p in listed] == [("C", 4), ("B", 3)]
    assert list(listed[0]["columns"]) == ["计划名称", "计划类型", "主拓代码", "主拓机构", "管理资格"]
    assert listed[0]["provenance"]["_domains"] == ["annuity_performance"]
    assert listed[0]["provenance"]["_derived_from_domain"] == "annuity_performance"
    assert [p["key"] for p in service.open_placeholders(plan(pg_schema), limit=1)] == ["C"]
    assert service.open_placeholders(plan(pg_schema), domain="other") == []


def test_a_review_waits_for_the_tables_lock_held_by_a_backfill(pg_conn, pg_dsn, pg_schema):
    setup(pg_conn, pg_schema, ["A"])
    holder = psycopg.connect(pg_dsn)
    done: dict = {}

    def review() -> None:
        with psycopg.connect(pg_dsn) as conn:
            done["result"] = _service(conn, pg_schema).approve(plan(pg_schema), ["A"], actor=ACTOR)
            done["at"] = time.monotonic()

    try:
        with holder.transaction():
            lock_name(holder, plan(pg_schema))  # what a running sync or backfill of the table holds
            worker = threading.Thread(target=review)
            worker.start()
            time.sleep(0.5)
            assert "result" not in done
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
            assert waiting == 1
            released = time.monotonic()
        worker.join(10)
    finally:
        holder.close()
    assert done["result"].approved == 1 and done["at"] >= released
    assert plans(pg_conn, pg_schema)["A"]["_needs_review"] is False


def test_an_integer_key_is_reviewed_by_its_text(pg_conn, pg_schema):
    s = sql.Identifier(pg_schema)
    with pg_conn.transaction():
        pg_conn.execute(
            sql.SQL(
                "CREATE TABLE {}.机构 (机构号 integer PRIMARY KEY, 名称 text, _source varchar(20) NOT NULL DEFAULT"
                " 'authoritative', _needs_review boolean NOT NULL DEFAULT false, _derived_from_domain varchar(64),"
                " _derived_at timestamptz)"
            ).format(s)
        )
        pg_conn.execute(sql.SQL("INSERT INTO {}.机构 (机构号, 名称) VALUES (100, '总部')").format(s))
        pg_conn.execute(sql.SQL("CREATE TABLE {}.业绩 (id serial, 机构号 integer)").format(s))
        pg_conn.execute(sql.SQL("INSERT INTO {}.业绩 (机构号) VALUES (7), (7), (100)").format(s))
    fk = ForeignKeyConfig.model_validate(
        {
            "name": "fk_org",
            "source_column": "机构号",
            "target_schema": pg_schema,
            "target_table": "机构",
            "target_key": "机构号",
            "fact_tables": [f"{pg_schema}.业绩.机构号"],
        }
    )
    ensured = HybridReferenceService().ensure_references("d", pd.DataFrame({"机构号": [7, 8, 9]}), [fk], pg_conn)
    assert ensured.backfill_count == 3
    service = ReviewService(pg_conn, foreign_keys=[fk])
    table = f"{pg_schema}.机构"

    assert service.approve(table, [8], actor=ACTOR, values={"名称": "分部"}).approved == 1
    assert service.reject(table, ["9"], actor=ACTOR).rejected == 1
    remapped = service.remap(table, 7, 100, actor=ACTOR)

    assert remapped.fact_rows_rewritten == {f"{pg_schema}.业绩.机构号": 2}
    assert column_values(pg_conn, pg_schema, "业绩", "机构号") == [100, 100, 100]
    assert {k: (v["名称"], v["_needs_review"]) for k, v in rows(pg_conn, pg_schema, "机构", "机构号").items()} == {
        8: ("分部", False),
        100: ("总部", False),
    }
    assert aliases(pg_conn, table) == {"7": "100"}
    assert [(e["key"], e["action"]) for e in review_log(pg_conn, table)] == [
        ("8", "approve"),
        ("9", "reject"),
        ("7", "remap"),
    ]


def test_a_write_postgresql_refuses_is_a_review_error_and_changes_nothing(pg_conn, pg_schema):
    setup(pg_conn, pg_schema, ["P0O1", "A"], authoritative={"P00001": "权威"})
    s, plan_table = sql.Identifier(pg_schema), sql.Identifier(PLAN)
    with pg_conn.transaction():
        pg_conn.execute(sql.SQL("ALTER TABLE {}.{} ADD CHECK (计划类型 <> '禁止')").format(s, plan_table))
        pg_conn.execute(sql.SQL("CREATE TABLE {}.短表 (计划代码 varchar(4))").format(s))
        pg_conn.execute(sql.SQL("INSERT INTO {}.短表 VALUES ('P0O1')").format(s))
    (fk,) = fk_with_facts(pg_schema)
    service = ReviewService(
        pg_conn, foreign_keys=[fk.model_copy(update={"fact_tables": [f"{pg_schema}.短表.计划代码"]})]
    )
    before = plans(pg_conn, pg_schema)

    with pytest.raises(RefdataReviewError, match=r"could not be written, nothing changed: .*check constraint"):
        service.approve(plan(pg_schema), ["A"], actor=ACTOR, values={"计划类型": "禁止"})
    with pytest.raises(RefdataReviewError, match=r"value too long for type character varying\(4\)"):
        service.remap(plan(pg_schema), "P0O1", "P00001", actor=ACTOR)

    assert plans(pg_conn, pg_schema) == before
    assert column_values(pg_conn, pg_schema, "短表", "计划代码") == ["P0O1"]
    assert (review_log(pg_conn, plan(pg_schema)), aliases(pg_conn, plan(pg_schema))) == ([], {})
