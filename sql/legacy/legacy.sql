-- Legacy MySQL/MariaDB source (database `legacy`): the authoritative reference data that
-- config/reference_sync.yml reads.  Works on MariaDB 10.6+ (make demo, tests) and MySQL 8 (docker-compose).
--
-- `updated_at` drives the incremental sync; like many legacy systems it moves on every UPDATE.
-- Like many legacy systems there is no FK from portfolio_plan to annuity_plan: the warehouse has one.
-- Statements are separated by ";" at the end of a line (devtools/sample_data.py splits on that).

CREATE TABLE IF NOT EXISTS `annuity_plan` (
    `plan_code`        varchar(32)  NOT NULL,
    `plan_name`        varchar(200) NOT NULL,
    `plan_type`        varchar(32)  NOT NULL,
    `client_name`      varchar(200) NOT NULL,
    `main_branch_code` varchar(16)  NULL,
    `main_branch_name` varchar(64)  NULL,
    `qualification`    varchar(200) NULL,
    `updated_at`       datetime(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (`plan_code`),
    KEY `annuity_plan_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `portfolio_plan` (
    `portfolio_code` varchar(32)  NOT NULL,
    `portfolio_name` varchar(200) NOT NULL,
    `portfolio_type` varchar(32)  NOT NULL,
    `plan_code`      varchar(32)  NOT NULL,
    `updated_at`     datetime(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (`portfolio_code`),
    KEY `portfolio_plan_plan_code` (`plan_code`),
    KEY `portfolio_plan_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `organization` (
    `org_code`   varchar(16) NOT NULL,
    `org_name`   varchar(64) NOT NULL,
    `updated_at` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (`org_code`),
    KEY `organization_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Bookkeeping of the sample-data generator: how many "second run" mutations were applied, so each
-- `make demo` after the first changes a few new rows.  Not read by the provider.
CREATE TABLE IF NOT EXISTS `sample_data_mutations` (
    `round`      int         NOT NULL,
    `applied_at` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    `summary`    text        NOT NULL,
    PRIMARY KEY (`round`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
