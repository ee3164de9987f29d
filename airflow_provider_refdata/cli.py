"""Command line: the reference sync and the steward loop without Airflow (``refdata`` / ``python -m …``).

::

    refdata sync --config config/reference_sync.yml [--tables annuity_plan product_line] [--plan-only]
                 [--force-full] [--warehouse-dsn postgresql://...] [--mysql-dsn mysql://...]
                 [--source NAME=DSN ...]

The warehouse and legacy MySQL DSNs default to ``$REFDATA_PG_DSN`` and ``$REFDATA_MYSQL_DSN`` (prefer the
environment for passwords: arguments show up in ``ps``).  ``--source NAME=DSN`` (repeatable) gives the source
of the tables whose ``source_config.conn_id`` is NAME, or of every table of ``source_type`` NAME
(``legacy_mysql``, ``postgres``, ``sql``); the DSN is ``mysql://…``, ``postgresql://…`` or
``sqlite:////abs/path.db``.  A conn_id entry wins over a source_type entry, and ``--source legacy_mysql=…``
over ``--mysql-dsn``.  Tables with ``connection_env_prefix`` read their connection from the environment.
``--config`` defaults to ``$REFDATA_CONFIG_DIR/reference_sync.yml``.  Prints the same summary table as the
operator; the exit status is 0 when no table failed, 1 when at least one failed, 2 for a configuration or
usage error.

The steward commands (``health``, ``export-review``, ``apply-review``, ``approve``, ``reject``, ``remap``)
are in :mod:`airflow_provider_refdata.cli_steward`; a refused review action (nothing changed) exits 1.
Uses only the plain-Python services (no Airflow import).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_refdata.cli_steward import add_commands
from airflow_provider_refdata.config.paths import SYNC_CONFIG_FILE, config_path
from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataError, RefdataReviewError


def _default_config() -> Path:
    return config_path(SYNC_CONFIG_FILE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refdata", description="Reference data tools (airflow-provider-refdata).")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="sync the reference tables from their authoritative sources")
    sync.add_argument("--config", type=Path, default=None, help="reference_sync.yml (default: $REFDATA_CONFIG_DIR)")
    sync.add_argument(
        "--tables", nargs="+", default=[], help="table entries to sync (names, space or comma separated); default all"
    )
    sync.add_argument("--plan-only", action="store_true", help="compute the counts, write nothing")
    sync.add_argument("--force-full", action="store_true", help="ignore watermarks, read every source row")
    sync.add_argument("--warehouse-dsn", default=None, help="PostgreSQL DSN (default: $REFDATA_PG_DSN)")
    sync.add_argument("--mysql-dsn", default=None, help="legacy MySQL DSN mysql://… (default: $REFDATA_MYSQL_DSN)")
    sync.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=DSN",
        help="source of the tables whose conn_id or source_type is NAME (repeatable): mysql://…, postgresql://…, "
        "sqlite:////abs/path.db",
    )
    sync.add_argument("--yaml-base-path", type=Path, default=None, help="folder for relative reference-file paths")
    sync.add_argument("--retries", type=int, default=3, help="retries per table after a MySQL error (3)")
    sync.add_argument("--retry-wait", type=float, default=2.0, help="first wait between attempts in seconds (2)")
    sync.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    sync.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sync.set_defaults(run=run_sync)
    add_commands(commands)
    return parser


def parse_sources(values: Sequence[str]) -> dict[str, str]:
    """``NAME=DSN`` arguments as a mapping (the last one of a NAME wins).

    :param values: the ``--source`` arguments.
    :raises RefdataConfigError: an argument is not ``NAME=DSN`` with a DSN containing ``://`` (the message
        never repeats the value, which may hold a password).
    """
    sources: dict[str, str] = {}
    for i, value in enumerate(values, 1):
        name, sep, dsn = value.partition("=")
        name, dsn = name.strip(), dsn.strip()
        if not sep or not name or "://" not in dsn:
            shown = f" (for {name!r})" if name and sep else ""
            raise RefdataConfigError(
                f"--source argument {i}{shown} must be NAME=DSN, NAME a conn_id or source_type and DSN "
                "mysql://…, postgresql://… or sqlite:////abs/path.db"
            )
        sources[name] = dsn
    return sources


def run_sync(args: argparse.Namespace) -> int:
    from airflow_provider_refdata.config import load_sync_config
    from airflow_provider_refdata.services.source_mysql import MySqlSource
    from airflow_provider_refdata.services.source_resolver import source_from_dsn
    from airflow_provider_refdata.services.source_yaml import YamlFileSource
    from airflow_provider_refdata.services.sync import ReferenceSyncService
    from airflow_provider_refdata.services.sync_outcome import format_summary

    config_path = args.config or _default_config()
    warehouse = args.warehouse_dsn or os.environ.get("REFDATA_PG_DSN")
    if not warehouse:
        print("error: no warehouse DSN: pass --warehouse-dsn or set REFDATA_PG_DSN", file=sys.stderr)
        return 2
    named = parse_sources(args.source)
    config = load_sync_config(config_path)
    if not config.enabled:
        print(f"reference sync is disabled in {config_path} (enabled: false); nothing synced")
        return 0
    tables = [part.strip() for item in args.tables for part in item.split(",") if part.strip()]
    sources: dict[str, object] = {"config_file": YamlFileSource(base_path=args.yaml_base_path)}
    mysql_dsn = args.mysql_dsn or os.environ.get("REFDATA_MYSQL_DSN")
    if mysql_dsn:
        sources["legacy_mysql"] = MySqlSource.from_dsn(mysql_dsn)
    for name, dsn in named.items():
        # Built now (no connection is opened), so an unknown scheme is a usage error before anything runs.
        sources[name] = source_from_dsn(dsn)
    known = {t.source_type for t in config.tables} | {
        c for t in config.tables if (c := getattr(t.source_config, "conn_id", None))
    }
    for name in sorted(set(named) - known):
        print(f"warning: --source {name}=…: no table has conn_id or source_type {name!r}", file=sys.stderr)
    service = ReferenceSyncService(
        config,
        sources,
        retries=args.retries,
        retry_wait_seconds=args.retry_wait,
        retry_max_wait_seconds=max(args.retry_wait * 4, args.retry_wait),
    )
    results = service.sync_all(conn=warehouse, plan_only=args.plan_only, force_full=args.force_full, tables=tables)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in results], ensure_ascii=False, indent=2))
    else:
        print(format_summary(results))
    return 1 if any(r.error for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``refdata`` console script.

    :param argv: arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except RefdataReviewError as exc:  # the action was refused and nothing changed: not a usage error
        print(f"refused: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except RefdataError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # every failure ends on one line a person can act on, never a traceback
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            where = _warehouse_address(args.warehouse_dsn or os.environ.get("REFDATA_PG_DSN") or "")
            print(f"error: cannot reach the warehouse {where}: {_one_line(str(exc))}", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 2


def _one_line(text: str) -> str:
    """The first non-empty line of a message (libpq adds hints such as "Is the server running …" below it)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def _warehouse_address(dsn: str) -> str:
    """``host:port/database`` of a DSN, never its user or password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


if __name__ == "__main__":
    raise SystemExit(main())
