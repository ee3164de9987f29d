"""Plain-text renderings of the steward loop's results: the CLI's output, the task logs, the chat message.

One place formats a :class:`~airflow_provider_refdata.results.TableHealth` list, an
:class:`~airflow_provider_refdata.results.Alert` list and a
:class:`~airflow_provider_refdata.results.ReviewResult`, so ``refdata health`` / ``refdata apply-review``,
the operators' logs and the webhook message say the same thing.  Plain Python: no Airflow import (the CLI
uses it).
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_refdata.results import Alert, ReviewResult, ReviewRowError, TableHealth
from airflow_provider_refdata.textable import text_table

HEALTH_HEADER = "table rows auth derived ratio review open oldest_d <=1d <=7d <=30d older status".split()


def health_table(health: Sequence[TableHealth]) -> list[str]:
    """The lines of a table with one row per table: counts, ratio, open placeholders by age, status.

    :param health: the results of ``ReferenceHealthService().table_health``.
    """
    rows = []
    for h in health:
        if h.error:
            rows.append([h.table, *([None] * 11), f"FAILED: {h.error}"])
            continue
        b = h.age_buckets
        oldest = None if h.oldest_open_placeholder_age_days is None else f"{h.oldest_open_placeholder_age_days:.1f}"
        rows.append(
            [h.table, h.total_rows, h.authoritative_rows, h.auto_derived_rows, f"{h.auto_derived_ratio:.2%}",
             h.needs_review_rows, h.open_placeholders, oldest, b.up_to_1d, b.up_to_7d, b.up_to_30d, b.older, "ok"]
        )  # fmt: skip
    return text_table(HEALTH_HEADER, rows)


def alert_counts(alerts: Sequence[Alert]) -> tuple[int, int]:
    """(fail, warn) counts of ``alerts``.

    :param alerts: the alerts of ``check_alerts``.
    """
    fail = sum(1 for a in alerts if a.level == "fail")
    return fail, len(alerts) - fail


def alert_lines(alerts: Sequence[Alert]) -> list[str]:
    """One line per alert, ``fail`` alerts first: ``[FAIL] business.年金计划: …``.

    :param alerts: the alerts of ``check_alerts``.
    """
    ordered = sorted(alerts, key=lambda a: a.level != "fail")  # stable: table/rule order within a level
    return [f"[{a.level.upper()}] {a.message}" for a in ordered]


def alerts_title(alerts: Sequence[Alert], where: str | None = None) -> str:
    """``Reference data health: 2 alerts (1 fail, 1 warn)``, with `` in <where>`` when given.

    :param alerts: the alerts of ``check_alerts``.
    :param where: e.g. the DAG and task that found them.
    """
    fail, warn = alert_counts(alerts)
    place = f" in {where}" if where else ""
    noun = "alert" if len(alerts) == 1 else "alerts"
    return f"Reference data health{place}: {len(alerts)} {noun} ({fail} fail, {warn} warn)"


def alerts_message(alerts: Sequence[Alert], where: str | None = None, *, max_bytes: int | None = None) -> str:
    """The title and one line per alert; cut at whole lines to at most ``max_bytes`` UTF-8 bytes.

    Chat webhooks limit a message's size (WeCom text: 2,048 bytes), so the alerts that do not fit are
    summarised as ``… and N more alerts`` instead of being cut mid-line.

    :param alerts: the alerts of ``check_alerts``.
    :param where: e.g. the DAG and task that found them.
    :param max_bytes: the largest message, in UTF-8 bytes; ``None`` = no limit.
    """
    return fit_lines([alerts_title(alerts, where), *alert_lines(alerts)], max_bytes, noun="alerts")


def fit_lines(lines: Sequence[str], max_bytes: int | None, *, noun: str = "lines") -> str:
    """``lines`` joined by newlines; when longer than ``max_bytes``, the first line and as many next lines
    as fit, then ``… and N more <noun>`` (a first line longer than the limit is cut, with ``…``).

    :param lines: the message's lines, the most important first.
    :param max_bytes: the largest result, in UTF-8 bytes; ``None`` = no limit.
    :param noun: what the left-out lines are, for the summary line.
    """
    text = "\n".join(lines)
    if max_bytes is None or len(text.encode()) <= max_bytes:
        return text
    head = _cut(lines[0], max_bytes)
    kept = [head]
    size = len(head.encode())
    for i, line in enumerate(lines[1:], 1):
        rest = len(lines) - i - 1
        more = f"\n… and {rest} more {noun}" if rest else ""
        if size + 1 + len(line.encode()) + len(more.encode()) > max_bytes:
            summary = f"… and {len(lines) - i} more {noun}"
            if size + 1 + len(summary.encode()) <= max_bytes:
                kept.append(summary)
            break
        kept.append(line)
        size += 1 + len(line.encode())
    return "\n".join(kept)


def _cut(line: str, max_bytes: int) -> str:
    """``line`` cut to at most ``max_bytes`` UTF-8 bytes, ending with ``…`` when cut (never mid-character)."""
    if len(line.encode()) <= max_bytes:
        return line
    budget = max(max_bytes - len("…".encode()), 0)
    return line.encode()[:budget].decode(errors="ignore") + "…"


def review_summary(result: ReviewResult) -> str:
    """``approve business.年金计划 by 王芳: 2 approved, 0 rejected, 0 remapped, 1 unchanged, 0 invalid; applied``.

    :param result: a review action's result.
    """
    state = "dry run, nothing changed" if result.dry_run else ("applied" if result.applied else "nothing applied")
    return (
        f"{result.action} {result.table or '?'} by {result.actor}: {result.approved} approved, {result.rejected} "
        f"rejected, {result.remapped} remapped, {result.unchanged} unchanged, {len(result.errors)} invalid; {state}"
    )


def describe_row_error(error: ReviewRowError) -> str:
    """``line 3, key P0O1 (remap): remap target P999 does not exist``.

    :param error: a refused review row.
    """
    where = [f"line {error.line}"] if error.line is not None else []
    if error.key is not None:
        where.append(f"key {error.key}")
    head = ", ".join(where) + (f" ({error.action})" if error.action else "")
    return f"{head}: {error.message}" if head else error.message
