"""Which reference tables a health check covers: the one rule the health operator and ``refdata health`` share.

In this order of precedence: the tables named (``schema.table``, or the name of a ``reference_sync.yml``
entry); else the tables of ``reference_sync.yml`` and the targets of ``foreign_keys.yml``
(``table_source``: ``both``, ``sync`` or ``foreign_keys``), each file only when it exists, unless it was
given explicitly (then a missing file is an error).  The loaded ``reference_sync.yml`` is returned too: its
``health:`` section holds the alert rules.  Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_refdata.exceptions import RefdataConfigError

TABLE_SOURCES = ("both", "sync", "foreign_keys")


def health_tables(
    tables: Sequence[str],
    sync_path: str | os.PathLike[str],
    fk_path: str | os.PathLike[str],
    *,
    table_source: str = "both",
    sync_given: bool = False,
    fk_given: bool = False,
) -> tuple[list[str], Any]:
    """(the schema-qualified tables to check, the loaded ``ReferenceSyncConfig`` or ``None``).

    :param tables: names given by the user (``schema.table`` or entry names); empty = the configured tables.
    :param sync_path: the ``reference_sync.yml``.
    :param fk_path: the ``foreign_keys.yml``.
    :param table_source: which configured tables without ``tables``: ``both``, ``sync`` or ``foreign_keys``.
    :param sync_given: ``sync_path`` was given explicitly (it must exist).
    :param fk_given: ``fk_path`` was given explicitly (it must exist, and it is read whatever ``tables``).
    :raises RefdataConfigError: an unknown entry name, an invalid file, or no table at all.
    """
    from airflow_provider_refdata.config import load_fk_domains, load_sync_config
    from airflow_provider_refdata.services.health import resolve_tables

    if table_source not in TABLE_SOURCES:
        raise ValueError(f"table_source must be one of {', '.join(TABLE_SOURCES)}, got {table_source!r}")
    sync_path, fk_path = Path(sync_path), Path(fk_path)
    sync_config = load_sync_config(sync_path) if sync_given or sync_path.is_file() else None
    names = [n.strip() for n in tables if n and n.strip()]
    if names:
        entries = {t.name: f"{t.target_schema}.{t.target_table}" for t in (sync_config.tables if sync_config else [])}
        unknown = [n for n in names if "." not in n and n not in entries]
        if unknown:
            known = ", ".join(entries) or f"none: {sync_path} does not exist"
            raise RefdataConfigError(
                f"unknown table(s) {', '.join(unknown)}: give schema.table or a reference_sync.yml entry name "
                f"(known entries: {known})"
            )
        return list(dict.fromkeys(entries.get(n, n) for n in names)), sync_config
    found: list[Any] = []
    if sync_config is not None and table_source in ("both", "sync"):
        found.extend(sync_config.tables)
    if table_source in ("both", "foreign_keys") and (fk_given or fk_path.is_file()):
        found.extend(fk for fks in load_fk_domains(fk_path).values() for fk in fks)
    if not found:
        raise RefdataConfigError(
            f"no tables to check: name them, or provide {sync_path} or {fk_path} (table source: {table_source})"
        )
    return [f"{s}.{t}" for s, t in resolve_tables(found)], sync_config
