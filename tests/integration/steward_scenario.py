"""Shared scenario of the steward-loop Airflow and CLI tests: reference tables with real open placeholders.

``StewardScenario.create`` builds the business tables (年金计划, 组合计划, 组织架构, 产品线) in a fresh schema,
two authoritative plans, and open placeholders made by a real ``ensure_references`` (so ``refdata.placeholder``
holds their provenance), plus a config folder: ``reference_sync.yml`` (tables of the schema, a ``health:``
section) and ``foreign_keys.yml`` (the shipped file re-targeted at the schema).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.services.hybrid import HybridReferenceService
from tests.integration.refdata_business_tables import (
    DOMAIN,
    PLAN,
    create_business_tables,
    insert,
    plan_facts,
    plan_fk_configs,
    write_fk_yaml,
)

#: Plan codes of the facts: P001 is authoritative; X9 is used 3 times, P0O1 (a typo of P001) twice, Y1 once.
FACT_CODES = ["P001", "X9", "X9", "X9", "P0O1", "P0O1", "Y1"]
AUTHORITATIVE = ["P001", "P002"]

SYNC_CONFIG = """
schema_version: "1.0"
enabled: true
tables:
{tables}
health:
{health}
review:
  sensitive_columns:
    {schema}.年金计划: [客户名称]
"""

SYNC_TABLE = """  - name: {name}
    target_schema: {schema}
    target_table: {table}
    primary_key: {key}
    source_type: legacy_mysql
    sync_mode: upsert
    source_config:
      table: {name}
      columns:
        - {{ source: code, target: {key} }}
"""

TABLES = [
    ("annuity_plan", "年金计划", "年金计划号"),
    ("portfolio_plan", "组合计划", "组合代码"),
    ("organization", "组织架构", "机构代码"),
    ("product_line", "产品线", "产品线代码"),
]

#: 年金计划 has 5 rows: 2 authoritative, 3 open placeholders (ratio 0.6, 3 need review); the others are empty.
HEALTH_WARN_ONLY = """  auto_derived_ratio: {warn: 0.5}
  needs_review_count: {warn: 100}"""
HEALTH_WITH_FAIL = """  auto_derived_ratio: {warn: 0.5}
  needs_review_count: {warn: 100}
  tables:
    %(schema)s.年金计划:
      needs_review_count: {warn: 1, fail: 2}"""


@dataclass
class StewardScenario:
    dsn: str
    schema: str
    config_dir: Path

    @classmethod
    def create(cls, dsn: str, schema: str, folder: Path, *, health: str = HEALTH_WARN_ONLY) -> StewardScenario:
        scenario = cls(dsn, schema, folder / "config")
        scenario.config_dir.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(dsn) as conn:
            create_business_tables(conn, schema)
            insert(conn, schema, PLAN, [{"年金计划号": k, "计划名称": f"权威{k}"} for k in AUTHORITATIVE])
            result = HybridReferenceService().ensure_references(
                DOMAIN, plan_facts(FACT_CODES), plan_fk_configs(schema), conn
            )
            assert not result.degraded_mode, result.degradation_reason
        scenario.write_sync_config(health)
        write_fk_yaml(scenario.config_dir / "foreign_keys.yml", schema)
        return scenario

    @property
    def plan(self) -> str:
        return f"{self.schema}.{PLAN}"

    @property
    def sync_config(self) -> Path:
        return self.config_dir / "reference_sync.yml"

    def write_sync_config(self, health: str) -> None:
        tables = "".join(SYNC_TABLE.format(name=n, schema=self.schema, table=t, key=k) for n, t, k in TABLES)
        text = SYNC_CONFIG.format(tables=tables, health=health % {"schema": self.schema}, schema=self.schema)
        self.sync_config.write_text(text, encoding="utf-8")

    def query(self, statement: str | sql.Composable, params: object = None) -> list[tuple]:
        with psycopg.connect(self.dsn) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def plan_rows(self) -> dict[str, tuple]:
        """年金计划 by key: (计划名称, _source, _needs_review)."""
        rows = self.query(
            sql.SQL("SELECT 年金计划号, 计划名称, _source, _needs_review FROM {}.{} ORDER BY 1").format(
                sql.Identifier(self.schema), sql.Identifier(PLAN)
            )
        )
        return {r[0]: tuple(r[1:]) for r in rows}

    def placeholders(self) -> dict[str, tuple]:
        """refdata.placeholder of 年金计划 by key: (fact_rows_total, resolution, resolved_by)."""
        rows = self.query(
            "SELECT key, fact_rows_total, resolution, resolved_by FROM refdata.placeholder WHERE table_name = %s",
            (self.plan,),
        )
        return {r[0]: tuple(r[1:]) for r in rows}

    def snapshots(self) -> list[tuple]:
        """refdata.health_snapshot rows of this schema: (table_name, total_rows, open_placeholders, error)."""
        return self.query(
            "SELECT table_name, total_rows, open_placeholders, error FROM refdata.health_snapshot "
            "WHERE table_name LIKE %s ORDER BY id",
            (f"{self.schema}.%",),
        )

    def review_log(self) -> list[tuple]:
        """refdata.review_log rows of 年金计划: (key, action, actor, remap_to), in order."""
        return self.query(
            "SELECT key, action, actor, remap_to FROM refdata.review_log WHERE table_name = %s ORDER BY id",
            (self.plan,),
        )

    def cleanup(self) -> None:
        """Remove this schema's rows from the shared state tables."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for table in ("placeholder", "health_snapshot", "review_log", "key_alias"):
                if conn.execute("SELECT to_regclass(%s)", (f"refdata.{table}",)).fetchone()[0] is not None:
                    conn.execute(
                        sql.SQL("DELETE FROM refdata.{} WHERE table_name LIKE %s").format(sql.Identifier(table)),
                        (f"{self.schema}.%",),
                    )


def scenario_in_env(
    dsn: str, schema: str, folder: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Iterator[StewardScenario]:
    """The body of the tests' ``scenario`` fixtures: create the scenario, point ``$REFDATA_CONFIG_DIR`` (and the
    extra variables ``env``) at it, yield it, then remove its state rows.

    :param dsn: the PostgreSQL DSN.
    :param schema: the test's schema.
    :param folder: where the config folder goes.
    :param monkeypatch: the test's monkeypatch (the variables are restored after the test).
    :param env: more environment variables to set (name → value).
    """
    made = StewardScenario.create(dsn, schema, folder)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REFDATA_CONFIG_DIR", str(made.config_dir))
    yield made
    made.cleanup()


def fill_review_file(path: Path, decisions: dict[str, tuple[str, str]]) -> None:
    """Fill in an exported CSV review file as a steward does: ``{key: (action, remap_to)}``.

    :param path: the exported CSV file (rewritten in place, same encoding).
    :param decisions: the action and remap target per key (the third column); other rows are left as they are.
    """
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        if row[2] in decisions:
            row[0], row[1] = decisions[row[2]]
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)


def dag_in_metadata_db(folder: Path, dag_id: str, source: str):
    """Write a DAG file into ``folder``, load it and serialize it to the metadata DB (``dag.test()`` needs that).

    :param folder: where the DAG file goes.
    :param dag_id: the DAG's id (also the file name).
    :param source: the file's Python source.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    (folder / f"{dag_id}.py").write_text(source, encoding="utf-8")
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="dags-folder")
    assert bag.import_errors == {}, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags[dag_id]
