"""Command line of the steward loop: health, review export and import, approve / reject / remap.

::

    refdata health [--tables T ...] [--table-source both|sync|foreign_keys] [--domain D] [--no-store] [--json]
    refdata export-review TABLE --output PATH [--format csv|xlsx] [--domain D] [--since 2024-06-01|7d]
    refdata apply-review PATH --actor A [--dry-run] [--partial]
    refdata approve TABLE KEY... --actor A [--set COL=VALUE ...] [--authoritative]
    refdata reject TABLE KEY... --actor A
    refdata remap TABLE FROM TO --actor A

Same conventions as ``refdata sync``: the warehouse is ``--warehouse-dsn`` or ``$REFDATA_PG_DSN``;
``--config`` (``reference_sync.yml``: tables, ``health:`` rules, sensitive columns) and ``--fk-config``
(``foreign_keys.yml``: FK targets, ``fact_tables``) default to ``$REFDATA_CONFIG_DIR`` (else ``./config``)
and are skipped when those defaults do not exist.  Exit status: 0 done; 1 a ``fail``-level health alert, an
invalid review row (also in a dry run) or a refused action (nothing changed); 2 a configuration or usage
error.  Errors end on one line.  Uses only the plain-Python services (no Airflow import).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow_provider_refdata.config.paths import config_path
from airflow_provider_refdata.exceptions import RefdataConfigError

_DAYS = re.compile(r"(\d+(?:\.\d+)?)\s*d", re.IGNORECASE)


def add_commands(commands: Any) -> None:
    """Add the steward commands to the ``refdata`` parser's subcommands.

    :param commands: the ``add_subparsers`` object of the ``refdata`` parser.
    """
    health = commands.add_parser("health", help="health of the reference tables, with the configured alerts")
    _common(health)
    health.add_argument("--tables", nargs="+", default=[], help="schema.table or reference_sync.yml entry names")
    health.add_argument(
        "--table-source",
        choices=("both", "sync", "foreign_keys"),
        default="both",
        help="without --tables: tables of reference_sync.yml, targets of foreign_keys.yml, or both (default)",
    )
    health.add_argument("--domain", default=None, help="count only this domain's auto-derived rows and placeholders")
    health.add_argument("--no-store", action="store_true", help="do not write refdata.health_snapshot")
    health.add_argument("--json", action="store_true", help="print the health and alerts as JSON")
    health.set_defaults(run=run_health)

    export = _table_command(
        commands,
        "export-review",
        "write the open placeholders of a table to a review file",
        "schema-qualified reference table, e.g. business.年金计划",
    )
    export.add_argument("--output", required=True, type=Path, help="the review file to write")
    export.add_argument("--format", choices=("csv", "xlsx"), default=None, help="default: from --output's suffix")
    export.add_argument("--domain", default=None, help="only placeholders this domain derived or uses")
    export.add_argument("--since", default=None, help="only placeholders first seen since: a date/time or Nd")
    export.set_defaults(run=run_export)

    apply = commands.add_parser("apply-review", help="apply a review file a steward filled in")
    _common(apply)
    apply.add_argument("path", type=Path, help="the review file (.csv or .xlsx)")
    _actor(apply)
    apply.add_argument("--dry-run", action="store_true", help="validate and report; change nothing")
    apply.add_argument("--partial", action="store_true", help="apply the valid rows even when some are invalid")
    apply.set_defaults(run=run_apply)

    approve = _table_command(commands, "approve", "approve placeholders (they stay, _needs_review=false)")
    approve.add_argument("keys", nargs="+", metavar="KEY", help="the keys to approve")
    _actor(approve)
    approve.add_argument(
        "--set", action="append", default=[], metavar="COL=VALUE", help="complete a business column (repeatable)"
    )
    approve.add_argument("--authoritative", action="store_true", help="make the rows authoritative")
    approve.set_defaults(run=run_action, action="approve")

    reject = _table_command(commands, "reject", "delete placeholders nothing references")
    reject.add_argument("keys", nargs="+", metavar="KEY", help="the keys to reject")
    _actor(reject)
    reject.set_defaults(run=run_action, action="reject")

    remap = _table_command(commands, "remap", "replace a placeholder by an existing key everywhere it is used")
    remap.add_argument("from_key", metavar="FROM", help="the placeholder (e.g. the typo P0O1)")
    remap.add_argument("to_key", metavar="TO", help="the existing key it stands for (e.g. P001)")
    _actor(remap)
    remap.set_defaults(run=run_action, action="remap")


def _table_command(
    commands: Any, name: str, help_text: str, table_help: str = "schema-qualified reference table"
) -> argparse.ArgumentParser:
    """A subcommand that acts on one reference table: the common options, then its ``table`` argument.

    :param commands: the ``add_subparsers`` object of the ``refdata`` parser.
    :param name: the subcommand's name.
    :param help_text: its help line.
    :param table_help: the help of its ``table`` argument.
    """
    parser = commands.add_parser(name, help=help_text)
    _common(parser)
    parser.add_argument("table", help=table_help)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse-dsn", default=None, help="PostgreSQL DSN (default: $REFDATA_PG_DSN)")
    parser.add_argument(
        "--config", type=Path, default=None, help="reference_sync.yml (default: $REFDATA_CONFIG_DIR, if it exists)"
    )
    parser.add_argument(
        "--fk-config", type=Path, default=None, help="foreign_keys.yml (default: $REFDATA_CONFIG_DIR, if it exists)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", required=True, help="who decides (recorded in refdata.review_log)")


# --------------------------------------------------------------------------------------------------------


def run_health(args: argparse.Namespace) -> int:
    from airflow_provider_refdata.notifications.text import alert_lines, health_table
    from airflow_provider_refdata.services.alerts import check_alerts
    from airflow_provider_refdata.services.health import ReferenceHealthService
    from airflow_provider_refdata.services.health_tables import health_tables

    warehouse = _warehouse(args)
    names = [part.strip() for item in args.tables for part in item.split(",") if part.strip()]
    tables, rules = health_tables(
        names,
        args.config or _config_file("reference_sync.yml"),
        args.fk_config or _config_file("foreign_keys.yml"),
        table_source=args.table_source,
        sync_given=args.config is not None,
        fk_given=args.fk_config is not None,
    )
    health = ReferenceHealthService().table_health(warehouse, tables, domain=args.domain, store=not args.no_store)
    alerts = check_alerts(health, rules)
    if args.json:
        payload = {"tables": [h.model_dump(mode="json") for h in health], "alerts": [a.model_dump() for a in alerts]}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print("\n".join(health_table(health)))
        print("\n".join(["", *alert_lines(alerts)]) if alerts else "\nno alerts")
    return 1 if any(a.level == "fail" for a in alerts) else 0


def run_export(args: argparse.Namespace) -> int:
    from airflow_provider_refdata.services.review_export import export_review

    warehouse = _warehouse(args)
    fmt = args.format or ("xlsx" if args.output.suffix.lower() == ".xlsx" else "csv")
    result = export_review(
        warehouse,
        args.table,
        args.output,
        format=fmt,
        domain=args.domain,
        since=parse_since(args.since),
        review=_given_or_default(args.config, "reference_sync.yml"),
    )
    left_out = f"; sensitive columns left out: {', '.join(result.excluded_columns)}" if result.excluded_columns else ""
    print(f"exported {result.rows:,} open placeholder(s) of {result.table} to {result.path} ({fmt}){left_out}")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    result = _service(args).apply_review_file(args.path, actor=args.actor, dry_run=args.dry_run, partial=args.partial)
    return _print_result(result)


def run_action(args: argparse.Namespace) -> int:
    service = _service(args)
    if args.action == "approve":
        values = parse_assignments(args.set)
        result = service.approve(
            args.table, args.keys, actor=args.actor, values=values, authoritative=args.authoritative
        )
    elif args.action == "reject":
        result = service.reject(args.table, args.keys, actor=args.actor)
    else:
        result = service.remap(args.table, args.from_key, args.to_key, actor=args.actor)
    return _print_result(result)


# --------------------------------------------------------------------------------------------------------


def parse_since(text: str | None) -> datetime | date | timedelta | None:
    """``--since``: ``7d`` (that many days before now), an ISO date (``2024-06-01``) or date-time.

    :param text: the argument, or ``None``.
    :raises RefdataConfigError: anything else.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    days = _DAYS.fullmatch(text)
    if days:
        return timedelta(days=float(days.group(1)))
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise RefdataConfigError(f"--since must be a date (2024-06-01), a date-time or Nd (7d), got {text!r}") from None


def parse_assignments(values: Sequence[str]) -> dict[str, str | None]:
    """``--set COL=VALUE`` arguments as ``{column: value}``; ``COL=`` stores NULL; the last one of a column wins.

    :param values: the arguments.
    :raises RefdataConfigError: an argument without ``=`` or without a column name.
    """
    out: dict[str, str | None] = {}
    for value in values:
        column, sep, cell = value.partition("=")
        if not sep or not column.strip():
            raise RefdataConfigError(f"--set must be COL=VALUE, got {value!r}")
        out[column.strip()] = cell if cell != "" else None
    return out


def _warehouse(args: argparse.Namespace) -> str:
    dsn = args.warehouse_dsn or os.environ.get("REFDATA_PG_DSN")
    if not dsn:
        raise RefdataConfigError("no warehouse DSN: pass --warehouse-dsn or set REFDATA_PG_DSN")
    return dsn


def _config_file(name: str) -> Path:
    return config_path(name)


def _given_or_default(given: Path | None, name: str) -> Path | None:
    """The file given, else the default one when it exists, else None (the service's own default)."""
    if given is not None:
        if not given.is_file():
            raise RefdataConfigError(f"configuration file not found: {given}", file=str(given))
        return given
    default = _config_file(name)
    return default if default.is_file() else None


def _service(args: argparse.Namespace) -> Any:
    from airflow_provider_refdata.services.review import ReviewService

    return ReviewService(
        _warehouse(args),
        foreign_keys=_given_or_default(args.fk_config, "foreign_keys.yml"),
        review=_given_or_default(args.config, "reference_sync.yml"),
    )


def _print_result(result: Any) -> int:
    """Print a review's counts, then every refused row with its line (to stderr); return the exit status.

    :param result: the action's or the file's :class:`~airflow_provider_refdata.results.ReviewResult`.
    """
    from airflow_provider_refdata.notifications.text import describe_row_error, review_summary

    print(review_summary(result))
    for column, n in result.fact_rows_rewritten.items():
        print(f"  remap rewrote {n:,} row(s) of {column}")
    for error in result.errors:
        print(f"invalid: {describe_row_error(error)}", file=sys.stderr)
    return 1 if result.errors else 0
