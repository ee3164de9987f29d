"""Key aliases (issue 11 §5, the second half of a remap) on the real PostgreSQL: ``ensure_references`` maps
the facts' remapped placeholder keys (``refdata.key_alias``) to their authoritative keys before coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus

from airflow_provider_refdata import GenericBackfillService, HybridReferenceService, apply_key_aliases
from airflow_provider_refdata.warehouse.state import ensure_state_tables, lock_name
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    PLAN,
    PORTFOLIO,
    create_business_tables,
    fk_configs,
    insert,
    insert_key_aliases,
    plan_facts,
    plan_fk_configs,
)


def _alias(conn: psycopg.Connection, schema: str, table: str, pairs: dict[str, str]) -> None:
    """Record aliases as a steward's remap leaves them (the review service writes the same row)."""
    with conn.transaction():
        insert_key_aliases(conn, [(f"{schema}.{table}", f, t) for f, t in pairs.items()])


def _remap(conn: psycopg.Connection, schema: str, from_key: str, to_key: str) -> None:
    """What a remap of a plan placeholder leaves behind: the row gone, its placeholder closed, the alias."""
    with conn.transaction():
        conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE 年金计划号 = %s").format(sql.Identifier(schema), sql.Identifier(PLAN)),
            (from_key,),
        )
        conn.execute(
            "UPDATE refdata.placeholder SET resolution = 'remapped', resolved_at = now(), resolved_by = 'steward'"
            " WHERE table_name = %s AND key = %s",
            (f"{schema}.{PLAN}", from_key),
        )
    _alias(conn, schema, PLAN, {from_key: to_key})


def _keys(conn: psycopg.Connection, schema: str, table: str, key: str) -> dict[str, str]:
    """``{key: _source}`` of a reference table."""
    with conn.transaction():
        return dict(
            conn.execute(
                sql.SQL("SELECT {}, _source FROM {}.{}").format(
                    sql.Identifier(key), sql.Identifier(schema), sql.Identifier(table)
                )
            ).fetchall()
        )


def _placeholders(conn: psycopg.Connection, schema: str, table: str = PLAN) -> dict[str, str | None]:
    """``{key: resolution}`` of the table's provenance rows."""
    with conn.transaction():
        ensure_state_tables(conn)
        return dict(
            conn.execute(
                "SELECT key, resolution FROM refdata.placeholder WHERE table_name = %s", (f"{schema}.{table}",)
            ).fetchall()
        )


def _logged_remapped(conn: psycopg.Connection, run_id: str) -> dict[str, int]:
    """``remapped_values`` per FK as stored in the run's ``refdata.run_log`` row."""
    with conn.transaction():
        (result,) = conn.execute(
            "SELECT result FROM refdata.run_log WHERE result->>'run_id' = %s", (run_id,)
        ).fetchone()
    return {m["fk_name"]: m["remapped_values"] for m in result["coverage_metrics"]}


def _metric(result, name: str = "fk_plan"):
    return next(m for m in result.coverage_metrics if m.fk_name == name)


def test_a_remapped_typo_is_mapped_to_its_target_and_never_comes_back(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P001", "计划名称": "权威计划"}])
    first = HybridReferenceService().ensure_references(
        DOMAIN, plan_facts(["P0O1"]), plan_fk_configs(pg_schema), pg_conn
    )
    assert first.backfill_count == 1 and _placeholders(pg_conn, pg_schema) == {"P0O1": None}
    _remap(pg_conn, pg_schema, "P0O1", "P001")

    facts = plan_facts(["P0O1", " P0O1 ", "P001", "P002", "", None, "  "])
    result = HybridReferenceService().ensure_references(DOMAIN, facts, plan_fk_configs(pg_schema), pg_conn)

    assert not result.degraded_mode, result.degradation_reason
    metric = _metric(result)
    assert metric.remapped_values == 2  # "P0O1" and " P0O1 " (trimmed like the coverage does)
    assert (metric.total_fk_values, metric.covered_values, metric.missing_values) == (2, 1, 1)  # P001, P002
    assert result.backfill_count == 1  # P002 only
    # The caller's frame now carries the authoritative key; blank cells are untouched.
    codes = facts["计划代码"].tolist()
    assert codes[:4] == ["P001", "P001", "P001", "P002"]
    assert codes[4] == "" and pd.isna(codes[5]) and codes[6] == "  "
    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {"P001": "authoritative", "P002": "auto_derived"}
    # The remapped placeholder stays closed, no new one for the typo.
    assert _placeholders(pg_conn, pg_schema) == {"P0O1": "remapped", "P002": None}
    assert _logged_remapped(pg_conn, result.run_id) == {"fk_plan": 2}
    assert _logged_remapped(pg_conn, first.run_id) == {"fk_plan": 0}


def _all_facts(plans: list, portfolios: list, orgs: list) -> pd.DataFrame:
    """Facts for every shipped FK configuration of the domain."""
    n = len(plans)
    return plan_facts(plans).assign(
        组合代码=portfolios,
        组合名称=[f"组合{i}" for i in range(n)],
        组合类型=["固收"] * n,
        机构代码=orgs,
        机构名称=["机构"] * n,
        产品线代码=["PL1"] * n,
    )


def test_derived_child_rows_carry_the_target_key_and_each_fk_maps_its_own_column(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P001"}])
    insert(pg_conn, pg_schema, PORTFOLIO, [{"组合代码": "Q9", "年金计划号": "P001"}])
    _alias(pg_conn, pg_schema, PLAN, {"P0O1": "P001"})
    _alias(pg_conn, pg_schema, PORTFOLIO, {"QX": "Q9"})
    # fk_organization counts "(空白)" as blank: an alias of that text must not touch it.
    _alias(pg_conn, pg_schema, ORG, {"(空白)": "G01", "G0l": "G01"})
    insert(pg_conn, pg_schema, ORG, [{"机构代码": "G01"}])
    facts = _all_facts(
        plans=["P0O1", "P0O1", "P001", "P0O1"],
        portfolios=["Q1", "QX", "Q2", "QX"],
        orgs=["(空白)", "G0l", None, "G01"],
    )

    result = HybridReferenceService().ensure_references(DOMAIN, facts, fk_configs(pg_schema), pg_conn)

    assert not result.degraded_mode, result.degradation_reason
    remapped = {m.fk_name: m.remapped_values for m in result.coverage_metrics}
    assert remapped == {"fk_plan": 3, "fk_portfolio": 2, "fk_organization": 1, "fk_product_line": 0}
    assert facts["计划代码"].tolist() == ["P001"] * 4
    assert facts["组合代码"].tolist() == ["Q1", "Q9", "Q2", "Q9"]
    assert facts["机构代码"].tolist()[:2] == ["(空白)", "G01"] and pd.isna(facts["机构代码"][2])
    # The portfolios derived from the facts copy 计划代码 — already mapped, so they reference P001.
    with pg_conn.transaction():
        children = pg_conn.execute(
            sql.SQL("SELECT 组合代码, 年金计划号, _source FROM {}.{} ORDER BY 1").format(
                sql.Identifier(pg_schema), sql.Identifier(PORTFOLIO)
            )
        ).fetchall()
    assert children == [("Q1", "P001", "auto_derived"), ("Q2", "P001", "auto_derived"), ("Q9", "P001", "authoritative")]
    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {"P001": "authoritative"}
    assert _placeholders(pg_conn, pg_schema) == {}
    assert _placeholders(pg_conn, pg_schema, PORTFOLIO) == {"Q1": None, "Q2": None}
    assert _logged_remapped(pg_conn, result.run_id) == remapped


def test_numeric_fact_columns_keep_their_dtype_when_the_target_fits(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "2001"}, {"年金计划号": "P1002"}])
    _alias(pg_conn, pg_schema, PLAN, {"1001": "2001", "1003": "P1002"})
    service = HybridReferenceService()

    ints = plan_facts([1001, 1001, 1002])
    assert ints["计划代码"].dtype == np.int64
    result = service.ensure_references(DOMAIN, ints, plan_fk_configs(pg_schema), pg_conn)
    assert ints["计划代码"].dtype == np.int64 and ints["计划代码"].tolist() == [2001, 2001, 1002]
    assert _metric(result).remapped_values == 2 and result.backfill_count == 1

    floats = plan_facts([1001.0, np.nan, 1002.0])
    result = service.ensure_references(DOMAIN, floats, plan_fk_configs(pg_schema), pg_conn)
    assert floats["计划代码"].dtype == np.float64
    assert floats["计划代码"].tolist()[0] == 2001.0 and np.isnan(floats["计划代码"][1])
    assert _metric(result).remapped_values == 1 and result.backfill_count == 0  # 1002 exists since the last run

    # A text target cannot live in an integer column: the column becomes object, the key as text.
    mixed = plan_facts([1003, 1002, 1001])
    result = service.ensure_references(DOMAIN, mixed, plan_fk_configs(pg_schema), pg_conn)
    assert mixed["计划代码"].dtype == object and mixed["计划代码"].tolist() == ["P1002", 1002, "2001"]
    assert _metric(result).remapped_values == 2 and result.backfill_count == 0
    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {
        "2001": "authoritative",
        "P1002": "authoritative",
        "1002": "auto_derived",
    }
    assert _placeholders(pg_conn, pg_schema) == {"1002": None}


def test_plan_only_and_coverage_only_map_the_frame_and_write_nothing_else(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P001"}])
    _alias(pg_conn, pg_schema, PLAN, {"P0O1": "P001"})
    service = HybridReferenceService()

    planned_facts = plan_facts(["P0O1", "P9"])
    planned = service.ensure_references(DOMAIN, planned_facts, plan_fk_configs(pg_schema), pg_conn, plan_only=True)
    assert planned_facts["计划代码"].tolist() == ["P001", "P9"]
    assert _metric(planned).remapped_values == 1 and planned.backfill_count == 1  # P9 only

    checked_facts = plan_facts(["P0O1", "P0O1", "P9"])
    checked = service.check_coverage(DOMAIN, checked_facts, plan_fk_configs(pg_schema), pg_conn)
    assert checked_facts["计划代码"].tolist() == ["P001", "P001", "P9"]
    assert (_metric(checked).remapped_values, _metric(checked).missing_values) == (2, 1)

    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {"P001": "authoritative"}
    assert _placeholders(pg_conn, pg_schema) == {}
    with pg_conn.transaction():
        assert pg_conn.execute(
            "SELECT count(*) FROM refdata.run_log WHERE result->>'run_id' = %s", (planned.run_id,)
        ).fetchone() == (0,)
    assert _logged_remapped(pg_conn, checked.run_id) == {"fk_plan": 2}


def test_without_aliases_for_the_table_nothing_changes(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    _alias(pg_conn, pg_schema, ORG, {"G0l": "G01"})  # another table's alias: no effect on plans
    facts = plan_facts(["P0O1", " P0O1 ", None])
    before = facts.copy()

    result = HybridReferenceService().ensure_references(DOMAIN, facts, plan_fk_configs(pg_schema), pg_conn)

    assert not result.degraded_mode, result.degradation_reason
    pd.testing.assert_frame_equal(facts, before)
    assert _metric(result).remapped_values == 0 and result.backfill_count == 1
    assert _placeholders(pg_conn, pg_schema) == {"P0O1": None}
    assert apply_key_aliases(pg_conn, facts, plan_fk_configs(pg_schema)) == {"fk_plan": 0}
    pd.testing.assert_frame_equal(facts, before)


def test_without_the_alias_table_nothing_changes(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    _alias(pg_conn, pg_schema, PLAN, {"P0O1": "P001"})
    facts = plan_facts(["P0O1", "P2"])
    before = facts.copy()
    with pg_conn.transaction() as tx:
        # A database where nothing was ever remapped (rolled back at the end: the session shares the table).
        pg_conn.execute("ALTER TABLE refdata.key_alias RENAME TO key_alias_hidden")
        assert apply_key_aliases(pg_conn, facts, plan_fk_configs(pg_schema)) == {"fk_plan": 0}
        result = HybridReferenceService().ensure_references(
            DOMAIN, facts, plan_fk_configs(pg_schema), pg_conn, plan_only=True
        )
        assert not result.degraded_mode, result.degradation_reason
        assert _metric(result).remapped_values == 0 and result.backfill_count == 2
        pd.testing.assert_frame_equal(facts, before)
        assert pg_conn.execute("SELECT to_regclass('refdata.key_alias')").fetchone() == (None,)
        raise psycopg.Rollback(tx)
    assert apply_key_aliases(pg_conn, facts, plan_fk_configs(pg_schema)) == {"fk_plan": 1}


def test_apply_key_aliases_maps_several_fks_of_one_table_and_follows_chains(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    # A chain a remap would have collapsed, written by hand: A → B → C maps A to C.
    _alias(pg_conn, pg_schema, PLAN, {"A": "B", "B": "C", "X": "Y"})
    (plan,) = plan_fk_configs(pg_schema)
    second = plan.model_copy(update={"name": "fk_plan_2", "source_column": "计划代码2"})
    facts = pd.DataFrame(
        {"计划代码": ["A", "B", "X", None], "计划代码2": pd.Categorical(["X", "X", "A", "Z"]), "other": ["A"] * 4}
    )

    assert apply_key_aliases(pg_conn, facts, [plan, second]) == {"fk_plan": 3, "fk_plan_2": 3}

    assert facts["计划代码"].tolist()[:3] == ["C", "C", "Y"] and pd.isna(facts["计划代码"][3])
    assert isinstance(facts["计划代码2"].dtype, pd.CategoricalDtype)
    assert facts["计划代码2"].tolist() == ["Y", "Y", "C", "Z"]
    assert facts["other"].tolist() == ["A"] * 4  # not an FK column
    with pg_conn.transaction():  # the read changed nothing
        assert pg_conn.execute(
            "SELECT count(*) FROM refdata.key_alias WHERE table_name = %s", (f"{pg_schema}.{PLAN}",)
        ).fetchone() == (3,)


class _RemapMidway(GenericBackfillService):
    """Fault injection: a steward's remap commits on another connection right before the fk_plan unit."""

    def __init__(self, domain: str, dsn: str, schema: str) -> None:
        super().__init__(domain)
        self.dsn, self.schema, self.blocked = dsn, schema, None

    def process_table(self, pg, df, fk, **kwargs):
        if fk.name == "fk_plan":
            with psycopg.connect(self.dsn) as other:
                if pg.info.transaction_status == TransactionStatus.INTRANS:
                    # The call holds the table's lock since before its alias read: a remap cannot commit now.
                    other.execute("SET lock_timeout = '200ms'")
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        lock_name(other, fk.qualified_table)
                    other.rollback()
                    self.blocked = True
                else:
                    _remap(other, self.schema, "P0O1", "P001")
        return super().process_table(pg, df, fk, **kwargs)


def test_a_remap_committing_after_the_read_is_seen_under_the_table_lock(pg_conn, pg_dsn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P001"}])
    HybridReferenceService().ensure_references(DOMAIN, plan_facts(["P0O1"]), plan_fk_configs(pg_schema), pg_conn)
    facts = plan_facts(["P0O1", "P0O1", "P3"])

    service = HybridReferenceService(backfill_service=_RemapMidway(DOMAIN, pg_dsn, pg_schema))
    result = service.ensure_references(DOMAIN, facts, plan_fk_configs(pg_schema), pg_conn)

    # Read before the loop: no alias yet.  Under the unit's lock the remap is there: mapped, not re-inserted.
    assert not result.degraded_mode, result.degradation_reason
    assert _metric(result).remapped_values == 2 and result.backfill_count == 1
    assert facts["计划代码"].tolist() == ["P001", "P001", "P3"]
    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {"P001": "authoritative", "P3": "auto_derived"}
    assert _placeholders(pg_conn, pg_schema) == {"P0O1": "remapped", "P3": None}


def test_inside_a_caller_transaction_the_aliases_are_read_under_the_up_front_locks(pg_conn, pg_dsn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P001"}])
    _alias(pg_conn, pg_schema, PLAN, {"P0O1": "P001"})
    facts = plan_facts(["P0O1", "P4"])
    backfill = _RemapMidway(DOMAIN, pg_dsn, pg_schema)

    with pg_conn.transaction():
        result = HybridReferenceService(backfill_service=backfill).ensure_references(
            DOMAIN, facts, plan_fk_configs(pg_schema), pg_conn
        )

    assert backfill.blocked
    assert not result.degraded_mode, result.degradation_reason
    assert _metric(result).remapped_values == 1 and facts["计划代码"].tolist() == ["P001", "P4"]
    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {"P001": "authoritative", "P4": "auto_derived"}
    assert _logged_remapped(pg_conn, result.run_id) == {"fk_plan": 1}


def test_the_mapping_hands_the_coverage_the_codes_of_the_mapped_columns():
    from airflow_provider_refdata.services.aliases import KeyAliases, map_key_aliases
    from airflow_provider_refdata.services.derivation import normalize_codes

    (plan,) = plan_fk_configs("s")
    org = next(fk for fk in fk_configs("s") if fk.name == "fk_organization")
    same_column = org.model_copy(update={"name": "fk_org_2", "target_table": "其他", "source_column": "计划代码"})
    aliases = KeyAliases(
        exists=True,
        tables={
            f"s.{PLAN}": {"A": "B", "C": "D"},
            f"s.{ORG}": {"G1": "G2", "(空白)": "G9"},
            "s.其他": {"B": "E"},
        },
    )
    facts = pd.DataFrame(
        {"计划代码": [" A", "B", None, "C", "Z", "A"], "机构代码": ["G1", "(空白)", "G2", "", "G1", "x"]}
    )
    normalized: dict = {}

    counts = map_key_aliases(facts, [plan, org, same_column], aliases, normalized=normalized)

    assert counts == {"fk_plan": 3, "fk_organization": 2, "fk_org_2": 3}
    assert facts["计划代码"].tolist()[:2] == ["E", "E"] and facts["计划代码"].tolist()[3:] == ["D", "Z", "E"]
    # fk_plan's codes were computed before fk_org_2 rewrote the same column: dropped, not stale.
    assert sorted(normalized) == ["fk_org_2", "fk_organization"]
    for fk in (org, same_column):
        codes, uniques = normalize_codes(facts[fk.source_column], fk.blank_tokens)
        np.testing.assert_array_equal(normalized[fk.name][0], codes)
        assert normalized[fk.name][1].tolist() == uniques.tolist()


def test_after_a_real_remap_the_next_load_maps_the_typo(pg_conn, pg_schema):
    from airflow_provider_refdata.services.review import ReviewService

    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P001", "计划名称": "权威计划"}])
    service = HybridReferenceService()
    service.ensure_references(DOMAIN, plan_facts(["P0O1", "P0O1"]), plan_fk_configs(pg_schema), pg_conn)

    remap = ReviewService(pg_conn, foreign_keys=[]).remap(f"{pg_schema}.{PLAN}", "P0O1", "P001", actor="steward")
    assert remap.remapped == 1, remap.errors

    facts = plan_facts(["P0O1", "P001", "P0O1"])
    result = service.ensure_references(DOMAIN, facts, plan_fk_configs(pg_schema), pg_conn)
    assert not result.degraded_mode, result.degradation_reason
    assert _metric(result).remapped_values == 2 and result.backfill_count == 0
    assert facts["计划代码"].tolist() == ["P001"] * 3
    assert _keys(pg_conn, pg_schema, PLAN, "年金计划号") == {"P001": "authoritative"}
    assert _placeholders(pg_conn, pg_schema) == {"P0O1": "remapped"}
