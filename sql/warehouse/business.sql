-- Warehouse DDL for the demo, the docker-compose stack and the end-to-end test: schema "business" with the
-- four reference tables that config/reference_sync.yml and config/foreign_keys.yml point at, and the
-- monthly annuity-performance fact table.
--
-- Idempotent (IF NOT EXISTS everywhere) so `make demo` can run it on every start.  Every reference table
-- carries the provider's tracking columns (ARCHITECTURE.md section 4) with the same CHECK constraint name
-- that airflow_provider_refdata.warehouse.tracking would add, so the provider sees nothing to add.
-- All identifiers are double-quoted: they are Chinese.

CREATE SCHEMA IF NOT EXISTS "business";

CREATE TABLE IF NOT EXISTS "business"."年金计划" (
    "年金计划号"            varchar(32)  PRIMARY KEY,
    "计划名称"              varchar(200),
    "计划类型"              varchar(32),
    "客户名称"              varchar(200),
    "主拓代码"              varchar(16),
    "主拓机构"              varchar(64),
    "管理资格"              varchar(200),
    "_source"               varchar(20)  NOT NULL DEFAULT 'authoritative',
    "_needs_review"         boolean      NOT NULL DEFAULT false,
    "_derived_from_domain"  varchar(64),
    "_derived_at"           timestamptz,
    CONSTRAINT "年金计划__source_check" CHECK ("_source" IN ('authoritative', 'auto_derived'))
);

CREATE TABLE IF NOT EXISTS "business"."组合计划" (
    "组合代码"              varchar(32)  PRIMARY KEY,
    "组合名称"              varchar(200),
    "组合类型"              varchar(32),
    -- A real constraint: a portfolio can only point at a plan that exists, so plans must be synced and
    -- backfilled before portfolios (foreign_keys.yml: fk_portfolio depends_on fk_plan).
    "年金计划号"            varchar(32)  REFERENCES "business"."年金计划" ("年金计划号"),
    "_source"               varchar(20)  NOT NULL DEFAULT 'authoritative',
    "_needs_review"         boolean      NOT NULL DEFAULT false,
    "_derived_from_domain"  varchar(64),
    "_derived_at"           timestamptz,
    CONSTRAINT "组合计划__source_check" CHECK ("_source" IN ('authoritative', 'auto_derived'))
);
CREATE INDEX IF NOT EXISTS "组合计划_年金计划号_idx" ON "business"."组合计划" ("年金计划号");

CREATE TABLE IF NOT EXISTS "business"."组织架构" (
    "机构代码"              varchar(16)  PRIMARY KEY,
    "机构名称"              varchar(64),
    "_source"               varchar(20)  NOT NULL DEFAULT 'authoritative',
    "_needs_review"         boolean      NOT NULL DEFAULT false,
    "_derived_from_domain"  varchar(64),
    "_derived_at"           timestamptz,
    CONSTRAINT "组织架构__source_check" CHECK ("_source" IN ('authoritative', 'auto_derived'))
);

CREATE TABLE IF NOT EXISTS "business"."产品线" (
    "产品线代码"            varchar(16)  PRIMARY KEY,
    "产品线名称"            varchar(64),
    "业务大类"              varchar(32),
    "_source"               varchar(20)  NOT NULL DEFAULT 'authoritative',
    "_needs_review"         boolean      NOT NULL DEFAULT false,
    "_derived_from_domain"  varchar(64),
    "_derived_at"           timestamptz,
    CONSTRAINT "产品线__source_check" CHECK ("_source" IN ('authoritative', 'auto_derived'))
);

-- Monthly annuity-performance facts (one row per plan / portfolio / branch / product line of a month).
-- The columns are the fact file's; the organization code may be blank or '(空白)', so it has no FK.
-- 月度 and 期末资产规模 are text types because the example DAG loads this table with
-- INSERT … SELECT from an all-text staging table, and PostgreSQL has no implicit text → date/numeric cast.
CREATE TABLE IF NOT EXISTS "business"."规模明细" (
    "id"            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "月度"          date          NOT NULL,  -- the first day of the month
    "计划代码"      varchar(32)   NOT NULL REFERENCES "business"."年金计划" ("年金计划号"),
    "计划名称"      varchar(200),
    "计划类型"      varchar(32),
    "客户名称"      varchar(200),
    "组合代码"      varchar(32)   REFERENCES "business"."组合计划" ("组合代码"),
    "组合名称"      varchar(200),
    "组合类型"      varchar(32),
    "机构代码"      varchar(16),
    "机构名称"      varchar(64),
    "产品线代码"    varchar(16)   REFERENCES "business"."产品线" ("产品线代码"),
    "业务类型"      varchar(32),
    "期末资产规模"  numeric(18, 2),
    "主拓代码"      varchar(16),
    "主拓机构"      varchar(64)
);
CREATE INDEX IF NOT EXISTS "规模明细_月度_idx" ON "business"."规模明细" ("月度");
