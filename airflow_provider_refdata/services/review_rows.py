"""The rows of a review: a key as the text PostgreSQL reads, approval columns checked, and the messages
of refused rows and refused actions (:mod:`~airflow_provider_refdata.services.review` uses them).

Plain Python: no Airflow import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as clock
from decimal import Decimal
from typing import Any

from airflow_provider_refdata.exceptions import RefdataReviewError
from airflow_provider_refdata.results import ReviewRowError
from airflow_provider_refdata.warehouse import review as rq
from airflow_provider_refdata.warehouse.catalog import TableInfo
from airflow_provider_refdata.warehouse.tracking import TRACKING_COLUMN_NAMES


@dataclass
class ReviewTable:
    """The reference table a call works on."""

    name: str  # schema-qualified, unquoted
    info: TableInfo
    key: str

    @property
    def business_columns(self) -> list[str]:
        return [c for c in self.info.columns if c != self.key and c not in TRACKING_COLUMN_NAMES]


@dataclass
class Outcome:
    """What the statements found and did, before it becomes a :class:`ReviewResult`."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[ReviewRowError] = field(default_factory=list)
    referenced: list[tuple[str, str, int]] = field(default_factory=list)  # (key, holder, rows)
    fact_rows: dict[str, int] = field(default_factory=dict)


def value_text(value: Any) -> str | None:
    """A Python value as the text PostgreSQL reads for a column (the stage is text; the update casts)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | clock):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def key_text(key: Any) -> str | None:
    text = value_text(key)
    return text.strip() or None if text is not None else None


def numbered_keys(keys: Iterable[Any]) -> Iterator[tuple[int, str | None]]:
    """(1-based position, key text) of the distinct keys (a single string is one key)."""
    if isinstance(keys, str | bytes):
        keys = [keys]
    seen: set[str | None] = set()
    for key in map(key_text, keys):
        if key not in seen:
            seen.add(key)
            yield len(seen), key


def check_approval_columns(target: ReviewTable, columns: Sequence[str]) -> None:
    """Refuse approval values for the key, a tracking column or a column the table lacks."""
    for column in columns:
        if column == target.key:
            why = "is the key column"
        elif column in TRACKING_COLUMN_NAMES:
            why = "is a tracking column managed by the provider"
        elif column not in target.info.columns:
            why = "is not a column of the table"
        else:
            continue
        raise RefdataReviewError(
            f"{target.name}: cannot approve with a value for {column!r}: it {why} "
            f"(business columns: {', '.join(target.business_columns)})",
            table=target.name,
        )


MESSAGES = {
    "err_action": "unknown action {action!r}; expected approve, reject or remap (or leave it empty)",
    "err_no_key": "no key",
    "err_no_target": "remap without remap_to (the existing key it stands for)",
    "err_same_key": "remap_to {target!r} is the key itself",
    "err_target_missing": "remap target {target!r} is not in {table}",
    "err_target_in_file": "remap target {target!r} is itself rejected or remapped in the same review",
}


def row_errors(
    rows: list[tuple], problems: list[rq.ValueProblem], referenced: dict[int, list[str]], table: str
) -> list[ReviewRowError]:
    """One :class:`ReviewRowError` per problem, by line."""
    errors: list[ReviewRowError] = []
    duplicates: dict[str, list[int]] = {}
    for line, key, _action, _target, status, *_ in rows:
        if status == "err_duplicate":
            duplicates.setdefault(key, []).append(line)
    by_line = {}
    for p in problems:
        by_line.setdefault(p.line, []).append(p)
    for line, key, action, target, status, resolution, alias in rows:
        if status == "err_duplicate":
            messages = [f"key {key!r} has a decision on several lines ({', '.join(map(str, duplicates[key]))})"]
        elif status == "err_missing":
            message = f"key {key!r} is not in {table}"
            if alias is not None:
                message += f" (already remapped to {alias!r})"
            elif resolution is not None:
                message += f" (its placeholder was {resolution})"
            messages = [message]
        elif status == "err_authoritative":
            why = {"promoted": " (promoted by the sync)", "approved": " (made authoritative by an approval)"}
            messages = [f"key {key!r} is authoritative in {table}{why.get(resolution, '')}, not a placeholder"]
        elif status == "err_value":
            messages = [
                f"column {p.column!r}" + (f": value {p.value!r} " if p.value is not None else " ") + p.reason
                for p in by_line.get(line, [])
            ]
        elif status == "err_referenced":
            messages = [f"key {key!r} is still held by " + "; ".join(referenced.get(line, []))]
        else:
            messages = [MESSAGES[status].format(action=action, target=target, table=table)]
        errors.extend(ReviewRowError(line=line, key=key, action=action, message=m) for m in messages)
    return errors


def refusal(action: str, table: str, outcome: Outcome) -> RefdataReviewError:
    """The error a refused API action raises: every key's problem, the first referencing table and count."""
    details = "; ".join(e.message for e in outcome.errors)
    first = outcome.referenced[0] if outcome.referenced else (None, None, None)
    return RefdataReviewError(
        f"{table}: {action} refused, nothing changed: {details}",
        table=table,
        keys=list(dict.fromkeys(e.key for e in outcome.errors if e.key is not None)),
        referencing_table=first[1],
        count=first[2],
    )
