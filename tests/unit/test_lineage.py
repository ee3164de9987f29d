"""The pure lineage builders: dataset names from DSNs and results, the cases a small DAG run does not reach."""

from __future__ import annotations

from airflow_provider_refdata.config import ForeignKeyConfig
from airflow_provider_refdata.lineage import (
    DatabaseLocation,
    DatasetRef,
    hybrid_lineage,
    location_from_dsn,
    location_from_env,
    query_tables,
    sync_lineage,
    threshold_for,
)
from airflow_provider_refdata.results import (
    BackfillResult,
    BackfillTableResult,
    CoverageMetrics,
    HybridResult,
    SyncResult,
)

WAREHOUSE = DatabaseLocation("postgres", "db.internal:5432", "warehouse")


def fk(name: str, table: str, key: str, column: str) -> ForeignKeyConfig:
    return ForeignKeyConfig(
        name=name, source_column=column, target_schema="business", target_table=table, target_key=key
    )


FKS = [
    fk("fk_plan", "年金计划", "年金计划号", "计划代码"),
    fk("fk_plan_2", "年金计划", "年金计划号", "原计划代码"),
    fk("fk_org", "组织架构", "机构代码", "机构代码"),
    fk("fk_line", "产品线", "产品线代码", "产品线代码"),
]


def hybrid_result(**fields) -> HybridResult:
    return HybridResult(
        domain="annuity_performance",
        fact_rows=10,
        coverage_metrics=[
            CoverageMetrics(fk_name="fk_plan", table="business.年金计划", total_fk_values=4, covered_values=2,
                            missing_values=2, coverage_rate=0.5, blank_rows=1),
            CoverageMetrics(fk_name="fk_plan_2", table="business.年金计划", total_fk_values=2, covered_values=2,
                            missing_values=0),
            CoverageMetrics(fk_name="fk_org", table="business.组织架构", total_fk_values=3, missing_values=3,
                            coverage_rate=0.0, error="permission denied"),
            CoverageMetrics(fk_name="fk_line", table="business.产品线", skipped_reason="skip_tables"),
        ],
        backfill_result=BackfillResult(
            tables=[
                BackfillTableResult(fk_name="fk_plan", table="business.年金计划", candidates=2, inserted=1, rejected=1),
                BackfillTableResult(fk_name="fk_plan_2", table="business.年金计划"),
                BackfillTableResult(fk_name="fk_org", table="business.组织架构", error="permission denied"),
            ]
        ),
        per_table_ratio={"business.年金计划": 0.3, "business.组织架构": 0.0},
        **fields,
    )  # fmt: skip


def assertions(dataset) -> dict[tuple[str, str], object]:
    return {(a.assertion, a.name): a for a in dataset.facets["dataQualityAssertions"].assertions}


def test_namespaces_come_from_host_and_port_never_credentials():
    dsn = location_from_dsn("postgresql+psycopg://admin:s3cr%40t@pg.internal/warehouse?sslmode=require")
    assert (dsn.namespace, dsn.table("business", "年金计划").name) == (
        "postgres://pg.internal:5432",
        "warehouse.business.年金计划",
    )
    my = location_from_dsn("mariadb://u:pw@legacy:3307/crm")
    assert (my.namespace, my.database) == ("mysql://legacy:3307", "crm")
    assert location_from_dsn("sqlite:////data/ref.db").table("codes") == DatasetRef(
        "sqlite:///data/ref.db", "ref.codes"
    )
    env = {"LEGACY_HOST": "10.0.0.5", "LEGACY_USER": "u", "LEGACY_PASSWORD": "pw", "LEGACY_DATABASE": "crm"}
    assert location_from_env("LEGACY", "legacy_mysql", env) == DatabaseLocation("mysql", "10.0.0.5:3306", "crm")


def test_sync_lists_only_tables_that_synced_and_no_outputs_in_plan_only():
    results = [
        SyncResult(table="business.年金计划", source_type="legacy_mysql", sync_mode="upsert", rows_read=7,
                   rows_inserted=2, rows_updated=3, rows_unchanged=2),
        SyncResult(table="business.组合计划", source_type="legacy_mysql", sync_mode="upsert", error="lost connection"),
        SyncResult(table="business.产品线", source_type="config_file", sync_mode="upsert", skipped_reason="no file"),
    ]  # fmt: skip
    sources = {r.table: DatasetRef("mysql://legacy:3306", f"crm.{r.table}") for r in results}
    targets = {r.table: WAREHOUSE.table(*r.table.split(".")) for r in results}

    lineage = sync_lineage(results, sources, targets)

    assert [(d.name, d.inputFacets["dataQualityMetrics"].rowCount) for d in lineage.inputs] == [
        ("crm.business.年金计划", 7)
    ]
    assert [(d.name, d.outputFacets["outputStatistics"].rowCount) for d in lineage.outputs] == [
        ("warehouse.business.年金计划", 5)
    ]
    planned = sync_lineage(results, sources, targets, plan_only=True)
    assert len(planned.inputs) == 1 and planned.outputs == []


def test_backfill_assertions_per_fk_and_table():
    lineage = hybrid_lineage(
        hybrid_result(),
        FKS,
        WAREHOUSE,
        facts=[DatasetRef("file", "/data/facts.csv")],
        threshold=0.1,
        table_thresholds={"fk_plan_2": 0.5},
    )

    [facts] = lineage.inputs
    metrics = facts.inputFacets["dataQualityMetrics"]
    assert metrics.rowCount == 10
    assert {c: (m.distinctCount, m.nullCount) for c, m in metrics.columnMetrics.items()} == {
        "计划代码": (4, 1),
        "原计划代码": (2, 0),
        "机构代码": (3, 0),
    }
    outputs = {d.name: d for d in lineage.outputs}
    assert set(outputs) == {"warehouse.business.年金计划", "warehouse.business.组织架构"}  # 产品线 was skipped
    plan = assertions(outputs["warehouse.business.年金计划"])
    first = plan[("fk_coverage", "fk_plan")]
    assert (first.success, first.column, first.actual) == (False, "年金计划号", "0.75")  # one key was rejected
    assert plan[("fk_coverage", "fk_plan_2")].success is True
    ratio = plan[("auto_derived_ratio", "auto_derived_ratio business.年金计划")]
    assert (ratio.success, ratio.expected, ratio.actual) == (True, "0.5", "0.3")  # an FK name's threshold
    org = assertions(outputs["warehouse.business.组织架构"])
    assert org[("fk_coverage", "fk_org")].success is False
    assert org[("fk_coverage", "fk_org")].params["error"] == "permission denied"
    assert outputs["warehouse.business.年金计划"].outputFacets["outputStatistics"].rowCount == 1


def test_plan_only_reads_the_reference_tables_and_asserts_what_is_still_missing():
    lineage = hybrid_lineage(hybrid_result(plan_only=True), FKS, WAREHOUSE, facts=[])

    assert lineage.outputs == []
    tables = {d.name: d for d in lineage.inputs}
    assert set(tables) == {"warehouse.business.年金计划", "warehouse.business.组织架构"}
    first = assertions(tables["warehouse.business.年金计划"])[("fk_coverage", "fk_plan")]
    assert (first.success, first.actual) == (False, "0.5")  # nothing was inserted
    ratio = assertions(tables["warehouse.business.年金计划"])[
        ("auto_derived_ratio", "auto_derived_ratio business.年金计划")
    ]
    assert (ratio.success, ratio.expected) == (False, "0.1")


def test_query_facts_name_the_tables_read_and_carry_the_query():
    query = 'SELECT * FROM "staging"."年金业绩" f JOIN business.机构映射 m USING (机构代码) WHERE "月度" = %(month)s'
    facts = query_tables(query, WAREHOUSE)
    assert [d.name for d in facts] == ["warehouse.business.机构映射", "warehouse.staging.年金业绩"]

    lineage = hybrid_lineage(hybrid_result(), FKS, WAREHOUSE, facts=facts, query=query)

    assert lineage.job_facets["sql"].query == query
    fact_inputs = [d for d in lineage.inputs if d.name in {f.name for f in facts}]
    assert len(fact_inputs) == 2 and all(not d.inputFacets for d in fact_inputs)  # rows of a join: on no table
    assert query_tables("not a query at all", WAREHOUSE) == []


def test_threshold_precedence_table_then_fk_name_then_global():
    assert threshold_for("business.年金计划", ["fk_plan"], 0.1, {"business.年金计划": 0.3, "fk_plan": 0.2}) == 0.3
    assert threshold_for("business.年金计划", ["fk_plan"], 0.1, {"fk_plan": 0.2}) == 0.2
    assert threshold_for("business.年金计划", ["fk_plan"], 0.1, {}) == 0.1


SYNC_CONFIG = """
schema_version: "1.0"
tables:
  - name: plans
    target_schema: business
    target_table: 年金计划
    primary_key: 年金计划号
    source_type: legacy_mysql
    source_config:
      table: annuity_plan
      columns: [{ source: plan_code, target: 年金计划号 }]
  - name: branches
    target_schema: business
    target_table: 组织架构
    primary_key: 机构代码
    source_type: postgres
    source_config:
      connection_env_prefix: HR
      schema: hr
      table: branch
      columns: [{ source: code, target: 机构代码 }]
  - name: lines
    target_schema: business
    target_table: 产品线
    primary_key: 产品线代码
    source_type: config_file
    source_config: { file_path: data/lines.yml, schema_version: "1.0" }
"""


def test_sync_sources_are_named_in_the_order_the_resolver_finds_them(tmp_path, monkeypatch):
    from airflow_provider_refdata.config import load_sync_config
    from airflow_provider_refdata.operators.sync import ReferenceSyncOperator

    (tmp_path / "reference_sync.yml").write_text(SYNC_CONFIG, encoding="utf-8")
    config = load_sync_config(tmp_path / "reference_sync.yml")
    monkeypatch.setenv("HR_HOST", "hr.internal")
    monkeypatch.setenv("HR_USER", "reader")
    monkeypatch.setenv("HR_PASSWORD", "pw")
    monkeypatch.setenv("HR_DATABASE", "hr")
    operator = ReferenceSyncOperator(
        task_id="sync", source_connections={"legacy_mysql": "mysql://u:pw@legacy:3307/crm"}, yaml_conn_id="none"
    )

    names = {t.name: operator._source_dataset(t) for t in config.tables}

    assert names == {
        "plans": DatasetRef("mysql://legacy:3307", "crm.annuity_plan"),  # the DSN's database
        "branches": DatasetRef("postgres://hr.internal:5432", "hr.hr.branch"),  # the environment prefix
        "lines": DatasetRef("file", str(tmp_path / "data" / "lines.yml")),  # relative to the config file
    }
