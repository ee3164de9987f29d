"""HybridReferenceService against the real PostgreSQL: coverage, selective backfill, ratios, degradation."""

from __future__ import annotations

import threading

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata import HybridReferenceService, HybridResult, SyncResult
from tests.integration.refdata_business_tables import (
    DOMAIN,
    ORG,
    PLAN,
    PORTFOLIO,
    PRODUCT,
    create_business_tables,
    fk_configs,
    insert,
    plan_facts,
    plan_fk_configs,
    rows,
)


def _select(conn, schema: str, table: str, columns: str, where: str = "TRUE") -> list[tuple]:
    with conn.transaction():
        return conn.execute(
            sql.SQL("SELECT {} FROM {}.{} WHERE {} ORDER BY 1").format(
                sql.SQL(columns), sql.Identifier(schema), sql.Identifier(table), sql.SQL(where)
            )
        ).fetchall()


def test_coverage_example_backfills_only_missing_and_is_idempotent(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "A", "计划名称": "权威计划", "计划类型": "集合计划"}])
    before_a = rows(pg_conn, pg_schema, PLAN, "年金计划号")
    df = plan_facts(["A", "B", "C", "B", "", None, "  "])
    service = HybridReferenceService()

    result = service.ensure_references(DOMAIN, df, plan_fk_configs(pg_schema), pg_conn)

    assert isinstance(result, HybridResult)
    (metrics,) = result.coverage_metrics
    assert (metrics.total_fk_values, metrics.covered_values, metrics.missing_values, metrics.blank_rows) == (3, 1, 2, 3)
    assert (metrics.authoritative_values, metrics.auto_derived_values) == (1, 0)
    assert metrics.coverage_rate == pytest.approx(1 / 3)
    assert result.backfill_count == 2 and not result.degraded_mode
    assert result.pre_load_coverage == pytest.approx(1 / 3)
    derived = _select(
        pg_conn,
        pg_schema,
        PLAN,
        "年金计划号, 计划名称, _source, _needs_review, _derived_from_domain, _derived_at IS NOT NULL",
        "_source = 'auto_derived'",
    )
    # B's name comes from its first fact row (index 1), C's from index 2.
    assert derived == [
        ("B", "计划1", "auto_derived", True, DOMAIN, True),
        ("C", "计划2", "auto_derived", True, DOMAIN, True),
    ]
    after_first = rows(pg_conn, pg_schema, PLAN, "年金计划号")
    assert after_first[0] == before_a[0]  # A: same text and same xmin, i.e. never rewritten

    again = service.ensure_references(DOMAIN, df, plan_fk_configs(pg_schema), pg_conn)

    assert again.backfill_count == 0
    assert again.backfill_result.tables[0].skipped == 3
    assert again.coverage_metrics[0].covered_values == 3
    assert again.coverage_metrics[0].auto_derived_values == 2
    assert rows(pg_conn, pg_schema, PLAN, "年金计划号") == after_first
    assert pg_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_full_domain_parents_first_with_real_fk_and_run_log(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema, org_tracking=False)
    insert(pg_conn, pg_schema, ORG, [{"机构代码": "G01", "机构名称": "北京分公司"}])
    df = pd.DataFrame(
        {
            "月度": ["202406"] * 4,
            "计划代码": ["P9", "P9", 1001.0, None],
            "计划名称": ["新计划", "新计划", "数字计划", None],
            "计划类型": ["单一计划"] * 4,
            "客户名称": ["客户甲", "客户甲", "客户乙", None],
            "组合代码": ["Q9", "Q8", "Q7", None],
            "组合名称": ["组合九", "组合八", "组合七", None],
            "组合类型": ["固收"] * 4,
            "机构代码": ["G01", "(空白)", " G02 ", "G02"],
            "机构名称": ["北京", "?", "上海", "上海分公司"],
            "产品线代码": ["PL1", "PL1", "PL2", "PL2"],
            "业务类型": ["企年受托", "企年投资", "企年受托", None],
            "期末资产规模": ["1,000", "2000", None, None],
            "主拓代码": ["G01", "G02", "G03", None],
            "主拓机构": ["北京", "上海", "广州", None],
        }
    )
    configs = fk_configs(pg_schema)
    # Children first on purpose: depends_on must still put the plan first.
    configs = [configs[1], configs[0], *configs[2:]]

    result = HybridReferenceService().ensure_references(DOMAIN, df, configs, pg_conn)

    assert not result.degraded_mode, result.degradation_reason
    assert result.backfill_result.processing_order == ["fk_plan", "fk_portfolio", "fk_organization", "fk_product_line"]
    assert result.backfill_count == 2 + 3 + 1 + 2
    assert _select(pg_conn, pg_schema, PLAN, "年金计划号, 计划名称, 主拓代码, 主拓机构, 管理资格") == [
        ("1001", "数字计划", "G03", "广州", "企年受托"),
        ("P9", "新计划", "G02", "上海", "企年受托+企年投资"),
    ]
    assert _select(pg_conn, pg_schema, PORTFOLIO, "组合代码, 年金计划号") == [
        ("Q7", "1001"),
        ("Q8", "P9"),
        ("Q9", "P9"),
    ]
    org = next(m for m in result.coverage_metrics if m.fk_name == "fk_organization")
    assert (org.total_fk_values, org.covered_values, org.blank_rows) == (2, 1, 1)  # "(空白)" is blank
    # the organization table lacked the tracking columns: added, existing row authoritative
    assert _select(pg_conn, pg_schema, ORG, "机构代码, 机构名称, _source, _needs_review") == [
        ("G01", "北京分公司", "authoritative", False),
        ("G02", "上海", "auto_derived", True),
    ]
    assert _select(pg_conn, pg_schema, PRODUCT, "产品线名称") == [("待确认产品线 PL1",), ("待确认产品线 PL2",)]
    assert result.per_table_ratio[f"{pg_schema}.{ORG}"] == 0.5
    assert result.total_auto_derived == 8 and result.total_authoritative == 1
    with pg_conn.transaction():
        logged = pg_conn.execute(
            "SELECT run_type, status, result FROM refdata.run_log WHERE subject = %s AND result::text LIKE %s",
            (DOMAIN, f"%{pg_schema}%"),
        ).fetchall()
    assert len(logged) == 1
    run_type, status, payload = logged[0]
    assert (run_type, status) == ("ensure_references", "success")
    assert HybridResult.model_validate(payload) == result


def test_ratios_thresholds_and_per_table_override(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    for table, key in ((ORG, "机构代码"), (PRODUCT, "产品线代码")):
        insert(pg_conn, pg_schema, table, [{key: f"A{i:02d}"} for i in range(15)])
        insert(
            pg_conn,
            pg_schema,
            table,
            [{key: f"D{i:02d}", "_source": "auto_derived", "_needs_review": True} for i in range(5)],
        )
    configs = [fk for fk in fk_configs(pg_schema) if fk.name in ("fk_organization", "fk_product_line")]
    df = pd.DataFrame({"机构代码": ["A00", "D00"], "机构名称": ["x", "y"], "产品线代码": ["A01", "A02"]})
    org, product = f"{pg_schema}.{ORG}", f"{pg_schema}.{PRODUCT}"

    at_threshold = HybridReferenceService(auto_derived_threshold=0.25).ensure_references(DOMAIN, df, configs, pg_conn)
    assert at_threshold.auto_derived_ratio == 0.25
    assert at_threshold.per_table_ratio == {org: 0.25, product: 0.25}
    assert (at_threshold.total_auto_derived, at_threshold.total_authoritative) == (10, 30)
    assert at_threshold.threshold_warnings == []
    assert at_threshold.backfill_count == 0

    above = HybridReferenceService().ensure_references(DOMAIN, df, configs, pg_conn, auto_derived_threshold=0.2)
    assert len(above.threshold_warnings) == 3
    assert above.threshold_warnings[0].startswith("overall")

    by_table = HybridReferenceService(table_thresholds={org: 0.3}).ensure_references(
        DOMAIN, df, configs, pg_conn, auto_derived_threshold=0.2
    )
    assert [w.split(":")[0] for w in by_table.threshold_warnings] == ["overall", product]

    by_fk_name = HybridReferenceService(auto_derived_threshold=0.2, table_thresholds={"fk_product_line": 0.5})
    assert [w.split(":")[0] for w in by_fk_name.ensure_references(DOMAIN, df, configs, pg_conn).threshold_warnings] == [
        "overall",
        org,
    ]


def test_missing_table_and_failing_insert_degrade_without_poisoning(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    with pg_conn.transaction():
        pg_conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(ORG)))
        # Every auto-derived product-line name starts with 待确认: this constraint makes its insert fail.
        pg_conn.execute(
            sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT no_placeholder CHECK (产品线名称 NOT LIKE '待确认%%')").format(
                sql.Identifier(pg_schema), sql.Identifier(PRODUCT)
            )
        )
    df = pd.DataFrame(
        {
            "计划代码": ["P1"],
            "计划名称": ["计划一"],
            "计划类型": ["单一"],
            "客户名称": ["客户"],
            "主拓代码": ["G1"],
            "主拓机构": ["北京"],
            "期末资产规模": [1.0],
            "业务类型": ["受托"],
            "组合代码": ["Q1"],
            "组合名称": ["组合一"],
            "组合类型": ["固收"],
            "机构代码": ["G1"],
            "机构名称": ["北京"],
            "产品线代码": ["PL9"],
        }
    )
    # The caller has an open transaction: our per-table units become savepoints inside it.
    pg_conn.execute("SELECT 1")

    result = HybridReferenceService().ensure_references(DOMAIN, df, fk_configs(pg_schema), pg_conn)

    assert result.degraded_mode
    reason = result.degradation_reason
    assert f"{pg_schema}.{ORG} (fk_organization)" in reason and "does not exist" in reason
    assert f"{pg_schema}.{PRODUCT} (fk_product_line)" in reason and "no_placeholder" in reason
    by_fk = {m.fk_name: m for m in result.coverage_metrics}
    assert by_fk["fk_organization"].error and by_fk["fk_product_line"].error
    assert by_fk["fk_plan"].error is None and by_fk["fk_portfolio"].error is None
    assert result.backfill_count == 2
    assert result.tables_processed == 2
    # The caller's transaction is alive, not aborted; after its commit the good tables' rows are there.
    assert pg_conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    pg_conn.commit()
    assert _select(pg_conn, pg_schema, PORTFOLIO, "组合代码, 年金计划号") == [("Q1", "P1")]
    assert _select(pg_conn, pg_schema, PRODUCT, "count(*)") == [(0,)]


@pytest.mark.parametrize("mode", ["backfill", "plan_only", "coverage_only"])
def test_over_long_key_is_left_out_named_and_the_rest_inserted(pg_conn, pg_schema, mode):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P0"}])
    long_key = "P" + "9" * 39  # 年金计划号 is varchar(32)
    df = plan_facts(["P0", "P1", long_key, "P2", long_key, "长" * 33])
    configs = [fk for fk in fk_configs(pg_schema) if fk.name in ("fk_plan", "fk_product_line")]
    df["产品线代码"] = "PL1"

    result = HybridReferenceService().ensure_references(
        DOMAIN, df, configs, pg_conn, plan_only=mode == "plan_only", coverage_only=mode == "coverage_only"
    )

    plan = next(m for m in result.coverage_metrics if m.fk_name == "fk_plan")
    assert (plan.total_fk_values, plan.covered_values, plan.missing_values) == (5, 1, 4)  # too long is missing
    for message in (plan.error, result.degradation_reason):
        assert "fk_plan" in message and f"{pg_schema}.{PLAN}" in message and "'年金计划号'" in message
        assert "2 key(s) longer than the 32 characters" in message and repr(long_key) in message
    assert result.degraded_mode
    assert result.tables_processed == 2  # measured, only partly backfilled
    assert result.pre_load_coverage == pytest.approx(1 / 6, abs=1e-6)
    expected = [("P0",)] if mode != "backfill" else [("P0",), ("P1",), ("P2",)]
    assert _select(pg_conn, pg_schema, PLAN, "年金计划号") == expected
    if mode != "coverage_only":
        tables = {t.fk_name: t for t in result.backfill_result.tables}
        assert (tables["fk_plan"].inserted, tables["fk_plan"].rejected, tables["fk_plan"].skipped) == (2, 2, 1)
        assert tables["fk_product_line"].inserted == 1 and tables["fk_product_line"].error is None
        assert result.per_table_ratio[f"{pg_schema}.{PLAN}"] == pytest.approx(2 / 3, abs=1e-6)


@pytest.mark.parametrize("plan_only", [False, True])
def test_two_fk_configs_on_one_table_measure_against_the_table_before_the_call(pg_conn, pg_schema, plan_only):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, PLAN, [{"年金计划号": "P0", "计划名称": "权威"}])
    plan = next(fk for fk in fk_configs(pg_schema) if fk.name == "fk_plan")
    trustee = plan.model_copy(
        update={
            "name": "fk_trustee_plan",
            "source_column": "受托计划代码",
            "depends_on": ["fk_plan"],
            "backfill_columns": plan.backfill_columns[:1],
        }
    )
    df = plan_facts(["P0", "P1", "P2", None]).assign(受托计划代码=["P1", "P2", "P3", "P3"])

    result = HybridReferenceService().ensure_references(DOMAIN, df, [trustee, plan], pg_conn, plan_only=plan_only)

    assert not result.degraded_mode, result.degradation_reason
    by_fk = {m.fk_name: m for m in result.coverage_metrics}
    counts = {name: (m.total_fk_values, m.covered_values, m.missing_values) for name, m in by_fk.items()}
    # Both against the table before this call: P1 and P2, inserted for fk_plan, are missing for the trustee too.
    assert counts == {"fk_plan": (3, 1, 2), "fk_trustee_plan": (3, 0, 3)}
    assert by_fk["fk_trustee_plan"].auto_derived_values == 0
    assert result.pre_load_coverage == pytest.approx(1 / 6, abs=1e-6)
    tables = {t.fk_name: (t.inserted, t.skipped) for t in result.backfill_result.tables}
    assert tables == {"fk_plan": (2, 1), "fk_trustee_plan": (1, 2)}  # each key inserted (or planned) once
    assert result.backfill_count == 3
    # The table counts once: 3 auto-derived of 4 rows, whether written or projected.
    assert result.per_table_ratio == {f"{pg_schema}.{PLAN}": 0.75}
    assert (result.total_auto_derived, result.total_authoritative, result.auto_derived_ratio) == (3, 1, 0.75)
    assert result.tables_processed == 1
    written = [("P0",)] if plan_only else [("P0",), ("P1",), ("P2",), ("P3",)]
    assert _select(pg_conn, pg_schema, PLAN, "年金计划号") == written


def test_missing_required_fact_column_is_reported_per_table(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    df = pd.DataFrame({"计划代码": ["P1"], "计划名称": ["计划一"], "产品线代码": ["PL1"]})
    configs = [fk for fk in fk_configs(pg_schema) if fk.name in ("fk_plan", "fk_product_line")]

    result = HybridReferenceService().ensure_references(DOMAIN, df, configs, pg_conn)

    assert result.degraded_mode
    assert "fk_plan" in result.degradation_reason and "'计划类型'" in result.degradation_reason
    assert _select(pg_conn, pg_schema, PRODUCT, "产品线代码") == [("PL1",)]
    assert _select(pg_conn, pg_schema, PLAN, "count(*)") == [(0,)]


def test_plan_only_writes_nothing(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema, org_tracking=False)
    insert(pg_conn, pg_schema, ORG, [{"机构代码": "G1", "机构名称": "北京"}])
    df = pd.DataFrame({"机构代码": ["G1", "G2", "G3"], "机构名称": ["a", "b", "c"]})
    configs = [fk for fk in fk_configs(pg_schema) if fk.name == "fk_organization"]
    with pg_conn.transaction():
        pg_conn.execute("CREATE SCHEMA IF NOT EXISTS refdata")  # so counting run_log rows works either way
    before = rows(pg_conn, pg_schema, ORG, "机构代码")

    result = HybridReferenceService().ensure_references(DOMAIN, df, configs, pg_conn, plan_only=True)

    assert result.plan_only and result.backfill_result.plan_only
    assert result.backfill_count == 2
    assert result.backfill_result.tables[0].inserted == 2
    assert result.per_table_ratio == {f"{pg_schema}.{ORG}": pytest.approx(2 / 3, abs=1e-6)}
    assert rows(pg_conn, pg_schema, ORG, "机构代码") == before
    columns = _select(
        pg_conn, "pg_catalog", "pg_attribute", "count(*)", f"attrelid = '{pg_schema}.{ORG}'::regclass AND attnum > 0"
    )
    assert columns == [(2,)]  # tracking columns were not added either


def test_skip_tables(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    df = pd.DataFrame({"机构代码": ["G1"], "机构名称": ["北京"], "产品线代码": ["PL1"]})
    configs = [fk for fk in fk_configs(pg_schema) if fk.name in ("fk_organization", "fk_product_line")]

    result = HybridReferenceService().ensure_references(
        DOMAIN, df, configs, pg_conn, skip_tables=[f"{pg_schema}.{PRODUCT}"]
    )

    assert [m.skipped_reason for m in result.coverage_metrics] == [None, "skipped by skip_tables"]
    assert result.backfill_count == 1
    assert _select(pg_conn, pg_schema, PRODUCT, "count(*)") == [(0,)]
    assert list(result.per_table_ratio) == [f"{pg_schema}.{ORG}"]


def test_coverage_only_measures_without_backfill(pg_conn, pg_schema):
    create_business_tables(pg_conn, pg_schema)
    insert(pg_conn, pg_schema, ORG, [{"机构代码": "G1"}, {"机构代码": "G2", "_source": "auto_derived"}])
    df = pd.DataFrame({"机构代码": ["G1", "G2", "G3"], "机构名称": ["a", "b", "c"]})
    configs = [fk for fk in fk_configs(pg_schema) if fk.name == "fk_organization"]

    result = HybridReferenceService().check_coverage(DOMAIN, df, configs, pg_conn)

    (m,) = result.coverage_metrics
    assert (m.total_fk_values, m.covered_values, m.missing_values, m.authoritative_values, m.auto_derived_values) == (
        3,
        2,
        1,
        1,
        1,
    )
    assert result.backfill_result is None and result.backfill_count == 0
    assert result.auto_derived_ratio == 0.5
    assert _select(pg_conn, pg_schema, ORG, "count(*)") == [(2,)]
    # A check says it is one, in the result and in its run-log row; a backfill says it is not.
    assert result.coverage_only and not result.plan_only
    backfilled = HybridReferenceService().ensure_references(DOMAIN, df, configs, pg_conn)
    assert not backfilled.coverage_only and backfilled.backfill_count == 1
    with pg_conn.transaction():
        logged = pg_conn.execute(
            "SELECT run_type, (result->>'coverage_only')::boolean FROM refdata.run_log "
            "WHERE result::text LIKE %s ORDER BY id",
            (f"%{pg_schema}%",),
        ).fetchall()
    assert logged == [("coverage_check", True), ("ensure_references", False)]
    assert HybridResult.model_validate_json(result.model_dump_json()).coverage_only


class _FakeSync:
    """Stand-in for the sync service: inserts one authoritative row, or raises."""

    def __init__(self, schema: str, fail: bool = False) -> None:
        self.schema, self.fail, self.calls = schema, fail, 0

    def sync_all(self, conn=None, **_kwargs):
        self.calls += 1
        if self.fail:
            conn.execute("SELECT 1/0")  # leaves the connection in an aborted transaction, then raises
        insert(conn, self.schema, ORG, [{"机构代码": "G2", "机构名称": "权威上海"}])
        table = f"{self.schema}.{ORG}"
        return [SyncResult(table=table, source_type="config_file", sync_mode="upsert", rows_inserted=1)]


@pytest.mark.parametrize("fail", [False, True])
def test_pre_load(pg_conn, pg_schema, fail):
    create_business_tables(pg_conn, pg_schema)
    df = pd.DataFrame({"机构代码": ["G1", "G2"], "机构名称": ["北京", "上海"]})
    configs = [fk for fk in fk_configs(pg_schema) if fk.name == "fk_organization"]
    sync = _FakeSync(pg_schema, fail=fail)

    result = HybridReferenceService(sync_service=sync).ensure_references(DOMAIN, df, configs, pg_conn)

    assert sync.calls == 1
    assert result.pre_load_available is not fail
    assert result.degraded_mode is fail
    expected_g2 = ("G2", "上海", "auto_derived") if fail else ("G2", "权威上海", "authoritative")
    assert _select(pg_conn, pg_schema, ORG, "机构代码, 机构名称, _source") == [
        ("G1", "北京", "auto_derived"),
        expected_g2,
    ]
    if fail:
        assert result.degradation_reason.startswith("pre-load: DivisionByZero")


@pytest.mark.parametrize("form", ["psycopg", "postgres_hook", "sqlalchemy_connection", "sqlalchemy_engine"])
def test_every_warehouse_form_backfills_and_commits(pg_server, pg_schema, airflow_connections, form):
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from sqlalchemy import create_engine

    with psycopg.connect(pg_server) as conn:
        create_business_tables(conn, pg_schema)
        insert(conn, pg_schema, ORG, [{"机构代码": "E0", "机构名称": "权威"}])
    configs = [fk for fk in fk_configs(pg_schema) if fk.name == "fk_organization"]
    df = pd.DataFrame({"机构代码": ["E0", "E1", " E2 ", "E1"], "机构名称": ["x", "一", "二", "?"]})
    engine = create_engine(pg_server.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        if form == "psycopg":
            with psycopg.connect(pg_server) as conn:
                result = HybridReferenceService().ensure_references(DOMAIN, df, configs, conn)
        elif form == "postgres_hook":
            hook = PostgresHook(postgres_conn_id="refdata_warehouse")
            result = HybridReferenceService().ensure_references(DOMAIN, df, configs, hook)
        elif form == "sqlalchemy_connection":
            with engine.connect() as sa_conn:  # closed without commit: the service committed its own work
                result = HybridReferenceService().ensure_references(DOMAIN, df, configs, sa_conn)
        else:
            result = HybridReferenceService().ensure_references(DOMAIN, df, configs, engine)
    finally:
        engine.dispose()

    assert not result.degraded_mode, result.degradation_reason
    assert (result.coverage_metrics[0].covered_values, result.backfill_count) == (1, 2)
    with psycopg.connect(pg_server) as conn:
        assert _select(conn, pg_schema, ORG, "机构代码, 机构名称, _source, _derived_from_domain") == [
            ("E0", "权威", "authoritative", None),
            ("E1", "一", "auto_derived", DOMAIN),
            ("E2", "二", "auto_derived", DOMAIN),
        ]
        with conn.transaction():
            logged = conn.execute(
                "SELECT count(*) FROM refdata.run_log WHERE result::text LIKE %s", (f"%{pg_schema}%",)
            ).fetchone()
        assert logged == (1,)


def _together(pg_server: str, callers: int, call, *, open_transaction: bool = False) -> list[HybridResult]:
    """Run ``call(i, conn)`` in ``callers`` threads, each with its own connection, released together by a barrier;
    with ``open_transaction`` each connection is inside an open transaction (committed after the call).
    Asserts that every call returned a HybridResult that is not degraded."""
    results: list = [None] * callers
    barrier = threading.Barrier(callers)

    def run(i: int) -> None:
        try:
            with psycopg.connect(pg_server) as conn:
                if open_transaction:
                    conn.execute("SELECT 1")  # the caller's transaction is open: our units are savepoints
                barrier.wait()
                results[i] = call(i, conn)
                conn.commit()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(r, HybridResult) for r in results), results
    assert not any(r.degraded_mode for r in results), [r.degradation_reason for r in results]
    return results


def test_eight_concurrent_calls_on_overlapping_keys(pg_server, pg_schema):
    with psycopg.connect(pg_server) as conn:
        create_business_tables(conn, pg_schema, org_tracking=False)
        insert(conn, pg_schema, PLAN, [{"年金计划号": f"P{i:03d}"} for i in range(0, 40, 2)])  # evens exist
    configs = fk_configs(pg_schema)
    callers = 8
    frames = []
    for c in range(callers):
        codes = [f"P{i:03d}" for i in range(c * 5, c * 5 + 40)]  # overlapping windows, odd ones are new
        frames.append(
            pd.DataFrame(
                {
                    "计划代码": codes,
                    "计划名称": codes,
                    "计划类型": "t",
                    "客户名称": "c",
                    "主拓代码": "G",
                    "主拓机构": "g",
                    "期末资产规模": 1,
                    "业务类型": "b",
                    "组合代码": [f"Q{x}" for x in codes],
                    "组合名称": "n",
                    "组合类型": "t",
                    "机构代码": [f"G{i % 7}" for i in range(40)],
                    "机构名称": "o",
                    "产品线代码": ["PL1", "PL2"] * 20,
                }
            )
        )
    results = _together(
        pg_server,
        callers,
        lambda i, conn: HybridReferenceService().ensure_references(f"domain{i}", frames[i], configs, conn),
    )

    all_codes = {c for f in frames for c in f["计划代码"]}
    new_plans = {c for c in all_codes if int(c[1:]) % 2 == 1 or int(c[1:]) >= 40}
    expected_inserted = {
        "fk_plan": len(new_plans),
        "fk_portfolio": len(all_codes),
        "fk_organization": 7,
        "fk_product_line": 2,
    }
    for name, expected in expected_inserted.items():
        inserted = sum(t.inserted for r in results for t in r.backfill_result.tables if t.fk_name == name)
        assert inserted == expected, name
    with psycopg.connect(pg_server) as conn:
        assert _select(conn, pg_schema, PLAN, "count(*), count(DISTINCT 年金计划号)") == [(len(all_codes),) * 2]
        assert _select(conn, pg_schema, PORTFOLIO, "count(*)") == [(len(all_codes),)]
        assert _select(conn, pg_schema, ORG, "count(*)") == [(7,)]


def test_callers_inside_open_transactions_with_opposite_table_orders_do_not_deadlock(pg_server, pg_schema):
    with psycopg.connect(pg_server) as conn:
        create_business_tables(conn, pg_schema)
    org, product = (fk for fk in fk_configs(pg_schema) if fk.name in ("fk_organization", "fk_product_line"))
    # The same two tables, in opposite dependency orders.
    orders = [
        [org, product.model_copy(update={"depends_on": ["fk_organization"]})],
        [product, org.model_copy(update={"depends_on": ["fk_product_line"]})],
    ]
    rounds = 3
    for r in range(rounds):
        codes = [f"R{r}K{i}" for i in range(6)]
        frame = pd.DataFrame({"机构代码": codes, "机构名称": codes, "产品线代码": codes})

        results = _together(
            pg_server,
            2,
            lambda i, conn, frame=frame: HybridReferenceService().ensure_references(f"d{i}", frame, orders[i], conn),
            open_transaction=True,
        )

        for name in ("fk_organization", "fk_product_line"):
            inserted = sum(t.inserted for x in results for t in x.backfill_result.tables if t.fk_name == name)
            assert inserted == len(codes), (r, name)
    with psycopg.connect(pg_server) as conn:
        for table, key in ((ORG, "机构代码"), (PRODUCT, "产品线代码")):
            assert _select(conn, pg_schema, table, f"count(*), count(DISTINCT {key})") == [(6 * rounds,) * 2]
