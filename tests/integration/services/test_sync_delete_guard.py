"""delete_insert never deletes or changes a fact row, whatever the referencing constraint's ON DELETE action.

A MariaDB table of product lines is synced with ``delete_insert`` into a reference table that a fact table
references; then a referenced line and an unreferenced one disappear from the source.  For every ``ON DELETE``
action the fact rows stay exactly as they were, the unreferenced row is deleted, and the referenced one is
kept for review (default) or the table fails and nothing changes (``still_referenced: fail``).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import SyncTableConfig
from airflow_provider_refdata.services.sources import MySqlSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
from tests.conftest import mysql_connect

REF, FACT = "产品线", "规模明细"


@pytest.fixture
def legacy(mysql_server: str, mysql_db: str) -> Iterator[tuple[str, str]]:
    conn = mysql_connect(mysql_server, mysql_db)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE product_line (code varchar(16) PRIMARY KEY, name varchar(50))")
        cur.executemany(
            "INSERT INTO product_line VALUES (%s, %s)",
            [("PL201", "受托"), ("PL202", "投资"), ("PL203", "托管"), ("DEFAULT", "默认")],
        )
    finally:
        conn.close()
    yield mysql_server, mysql_db


def _table(schema: str, database: str, still_referenced: str) -> SyncTableConfig:
    return SyncTableConfig.model_validate(
        {
            "name": "product_line",
            "target_schema": schema,
            "target_table": REF,
            "primary_key": "代码",
            "source_type": "legacy_mysql",
            "sync_mode": "delete_insert",
            "still_referenced": still_referenced,
            "source_config": {
                "database": database,
                "table": "product_line",
                "columns": [{"source": "code", "target": "代码"}, {"source": "name", "target": "名称"}],
            },
        }
    )


def _q(pg: psycopg.Connection, statement: str, schema: str, *params: object) -> list[tuple]:
    cur = pg.execute(
        sql.SQL(statement).format(s=sql.Identifier(schema), ref=sql.Identifier(REF), fact=sql.Identifier(FACT)),
        params or None,
    )
    return cur.fetchall() if cur.description else []


@pytest.mark.parametrize("on_delete", ["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"])
@pytest.mark.parametrize("still_referenced", ["keep_for_review", "fail"])
def test_delete_insert_keeps_every_fact_row(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str], on_delete: str, still_referenced: str
) -> None:
    mysql_dsn, database = legacy
    source = MySqlSource.from_dsn(mysql_dsn)
    cfg = _table(pg_schema, database, still_referenced)
    service = ReferenceSyncService(retries=0)
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        _q(pg, 'CREATE TABLE {s}.{ref} ("代码" varchar(16) PRIMARY KEY, "名称" text)', pg_schema)
        assert service.sync_table(cfg, source, pg_dsn).rows_inserted == 4
        _q(
            pg,
            "CREATE TABLE {s}.{fact} (id int PRIMARY KEY, \"产品线代码\" varchar(16) DEFAULT 'DEFAULT' "
            f'REFERENCES {{s}}.{{ref}} ("代码") ON DELETE {on_delete})',
            pg_schema,
        )
        _q(pg, "INSERT INTO {s}.{fact} VALUES (1, 'PL201'), (2, 'PL201'), (3, 'PL203')", pg_schema)
        facts_before = _q(pg, "SELECT * FROM {s}.{fact} ORDER BY id", pg_schema)
        refs_before = _q(pg, "SELECT *, xmin::text FROM {s}.{ref} ORDER BY 1", pg_schema)

        # PL201 (referenced twice) and PL202 (unreferenced) leave the source.
        conn = mysql_connect(mysql_dsn, database)
        try:
            conn.cursor().execute("DELETE FROM product_line WHERE code IN ('PL201', 'PL202')")
        finally:
            conn.close()
        result = service.sync_table(cfg, source, pg_dsn)

        assert _q(pg, "SELECT * FROM {s}.{fact} ORDER BY id", pg_schema) == facts_before
        if still_referenced == "fail":
            assert result.error is not None and result.rows_deleted == 0
            assert "PL201" in result.error and f"ON DELETE {on_delete}" in result.error
            assert f"{pg_schema}.{FACT}" in result.error and "nothing was changed" in result.error
            assert _q(pg, "SELECT *, xmin::text FROM {s}.{ref} ORDER BY 1", pg_schema) == refs_before
            return
        assert result.error is None
        assert (result.rows_deleted, result.rows_kept_referenced) == (1, 1)
        rows = _q(
            pg, 'SELECT "代码", "名称", _source, _needs_review, _derived_at IS NOT NULL FROM {s}.{ref}', pg_schema
        )
        assert sorted(rows) == [
            ("DEFAULT", "默认", "authoritative", False, False),
            ("PL201", "受托", "auto_derived", True, True),
            ("PL203", "托管", "authoritative", False, False),
        ]
        # Again: nothing more to delete or keep, nothing rewritten.
        before = _q(pg, "SELECT *, xmin::text FROM {s}.{ref} ORDER BY 1", pg_schema)
        again = service.sync_table(cfg, source, pg_dsn)
        assert (again.error, again.rows_deleted, again.rows_kept_referenced, again.rows_updated) == (None, 0, 0, 0)
        assert _q(pg, "SELECT *, xmin::text FROM {s}.{ref} ORDER BY 1", pg_schema) == before
        # When PL201 comes back to the source it is promoted to authoritative again.
        conn = mysql_connect(mysql_dsn, database)
        try:
            conn.cursor().execute("INSERT INTO product_line VALUES ('PL201', '受托')")
        finally:
            conn.close()
        back = service.sync_table(cfg, source, pg_dsn)
        assert (back.rows_promoted, back.rows_deleted) == (1, 0)
        assert _q(pg, 'SELECT _source, _needs_review FROM {s}.{ref} WHERE "代码" = %s', pg_schema, "PL201") == [
            ("authoritative", False)
        ]


def test_a_fact_row_committed_while_the_sync_deletes_is_not_cascaded_away(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str]
) -> None:
    import threading

    mysql_dsn, database = legacy
    source = MySqlSource.from_dsn(mysql_dsn)
    cfg = _table(pg_schema, database, "keep_for_review")
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        _q(pg, 'CREATE TABLE {s}.{ref} ("代码" varchar(16) PRIMARY KEY, "名称" text)', pg_schema)
        assert ReferenceSyncService(retries=0).sync_table(cfg, source, pg_dsn).rows_inserted == 4
        _q(
            pg,
            'CREATE TABLE {s}.{fact} (id int PRIMARY KEY, "产品线代码" varchar(16) '
            'REFERENCES {s}.{ref} ("代码") ON DELETE CASCADE)',
            pg_schema,
        )
    conn = mysql_connect(mysql_dsn, database)
    try:
        conn.cursor().execute("DELETE FROM product_line WHERE code = 'PL202'")
    finally:
        conn.close()
    # A fact load is under way: its row references PL202 and commits while the sync is running.
    with psycopg.connect(pg_dsn) as loader:
        _q(loader, "INSERT INTO {s}.{fact} VALUES (1, 'PL202')", pg_schema)
        threading.Timer(0.5, loader.commit).start()
        result = ReferenceSyncService(retries=0, lock_timeout_seconds=5).sync_table(cfg, source, pg_dsn)
    assert result.error is None and (result.rows_deleted, result.rows_kept_referenced) == (0, 1)
    with psycopg.connect(pg_dsn) as pg:
        assert _q(pg, "SELECT * FROM {s}.{fact}", pg_schema) == [(1, "PL202")]
        assert _q(pg, 'SELECT _source FROM {s}.{ref} WHERE "代码" = %s', pg_schema, "PL202") == [("auto_derived",)]


@pytest.mark.parametrize(
    ("protect_hours", "still_referenced", "expected"),
    [(24, "keep_for_review", "kept"), (0, "keep_for_review", "deleted"), (24, "fail", "failed")],
)
def test_keys_checked_by_ensure_references_are_kept_until_their_facts_can_load(
    pg_dsn: str, pg_schema: str, legacy: tuple[str, str], protect_hours: float, still_referenced: str, expected: str
) -> None:
    import pandas as pd

    from airflow_provider_refdata import ForeignKeyConfig, HybridReferenceService

    mysql_dsn, database = legacy
    source = MySqlSource.from_dsn(mysql_dsn)
    cfg = _table(pg_schema, database, still_referenced).model_copy(update={"protect_confirmed_hours": protect_hours})
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        _q(pg, 'CREATE TABLE {s}.{ref} ("代码" varchar(16) PRIMARY KEY, "名称" text)', pg_schema)
    assert ReferenceSyncService(retries=0).sync_table(cfg, source, pg_dsn).rows_inserted == 4
    fk = ForeignKeyConfig(
        name="fk_line", source_column="产品线代码", target_schema=pg_schema, target_table=REF, target_key="代码"
    )
    facts = pd.DataFrame({"产品线代码": ["PL202", "PL203"]})
    # A plan-only run confirms nothing; the real check does (its facts will be loaded by a later task).
    HybridReferenceService().ensure_references("d", facts, [fk], pg_dsn, plan_only=True)
    with psycopg.connect(pg_dsn) as pg:
        assert pg.execute(
            "SELECT count(*) FROM refdata.key_confirmation WHERE table_name = %s", (cfg.qualified_table,)
        ).fetchone() == (0,)
    checked = HybridReferenceService().ensure_references("d", facts, [fk], pg_dsn)
    assert checked.coverage_metrics[0].covered_values == 2 and checked.backfill_count == 0
    # Before the facts are loaded, PL202 and PL201 leave the source: PL201 goes, PL202 is kept (or fails).
    conn = mysql_connect(mysql_dsn, database)
    try:
        conn.cursor().execute("DELETE FROM product_line WHERE code IN ('PL201', 'PL202')")
    finally:
        conn.close()
    result = ReferenceSyncService(retries=0).sync_table(cfg, source, pg_dsn)
    with psycopg.connect(pg_dsn) as pg:
        codes = dict(_q(pg, 'SELECT "代码", _source FROM {s}.{ref}', pg_schema))
    if expected == "failed":
        assert result.error is not None and "PL202" in result.error and "protect_confirmed_hours" in result.error
        assert set(codes) == {"PL201", "PL202", "PL203", "DEFAULT"}
    elif expected == "kept":
        assert (result.error, result.rows_deleted, result.rows_kept_referenced) == (None, 1, 1)
        assert codes == {"PL202": "auto_derived", "PL203": "authoritative", "DEFAULT": "authoritative"}
    else:
        assert (result.error, result.rows_deleted, result.rows_kept_referenced) == (None, 2, 0)
        assert codes == {"PL203": "authoritative", "DEFAULT": "authoritative"}
