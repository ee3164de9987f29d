"""The delete guard of ``delete_insert``: rows other tables still reference are never deleted.

A ``delete_insert`` sync removes the authoritative rows its source no longer has.  If a foreign key of
another table (a fact table, a child reference table) still points at such a row, deleting it would — by the
constraint's ``ON DELETE`` action — fail (``NO ACTION``/``RESTRICT``), or silently delete (``CASCADE``) or
change (``SET NULL``/``SET DEFAULT``) fact rows.  So the guard looks at every referencing constraint itself,
whatever its action, before anything is deleted, and either

* **keeps** the referenced rows for review (``still_referenced: keep_for_review``, the default): they stay,
  become ``_source='auto_derived'``, ``_needs_review=true``, ``_derived_at=now()`` (the authoritative source no
  longer vouches for them, the facts still need them: a steward decides), counted in
  ``SyncResult.rows_kept_referenced``; or
* **fails** the table (``still_referenced: fail``) naming the constraint and the first keys; nothing changes.

The same holds for a key that an ``ensure_references`` used within the table's ``protect_confirmed_hours``
(its facts may not be loaded yet, so no constraint can see them): ``refdata.key_confirmation``.

The referencing tables are locked in ``SHARE`` mode first (readers pass; writers wait, bounded by
``lock_timeout``), so no fact row can appear unseen while the guard decides, and the ``DELETE`` itself also
excludes every still-referenced row: no ``ON DELETE`` action can fire.  Every statement is set-based, inside
the table's transaction; when the source lacks no row, nothing is locked or checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from airflow_provider_refdata.warehouse.catalog import TableInfo
from airflow_provider_refdata.warehouse.sqlbits import table_ref
from airflow_provider_refdata.warehouse.tracking import AUTHORITATIVE, AUTO_DERIVED, DERIVED_AT, NEEDS_REVIEW, SOURCE

_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class ReferencingConstraint:
    """A foreign key of another table (or of the same one) pointing at the reference table.

    :param name: constraint name.
    :param schema: schema of the referencing table.
    :param table: the referencing table.
    :param columns: its referencing columns, in constraint order.
    :param referenced: the reference table's columns they point at, same order.
    :param on_delete: the constraint's ``ON DELETE`` action (``NO ACTION``, ``CASCADE``, …).
    """

    name: str
    schema: str
    table: str
    columns: tuple[str, ...]
    referenced: tuple[str, ...]
    on_delete: str

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"


def referencing_constraints(conn: psycopg.Connection, info: TableInfo) -> list[ReferencingConstraint]:
    """Every foreign key pointing at ``info``'s table (on a partitioned table: the parent's constraint only)."""
    rows = conn.execute(
        """
        SELECT c.conname, rn.nspname, rc.relname,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(num, pos)
                       JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.pos),
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(num, pos)
                       JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.pos),
               c.confdeltype
          FROM pg_constraint AS c
          JOIN pg_class AS fc ON fc.oid = c.confrelid
          JOIN pg_namespace AS fn ON fn.oid = fc.relnamespace
          JOIN pg_class AS rc ON rc.oid = c.conrelid
          JOIN pg_namespace AS rn ON rn.oid = rc.relnamespace
         WHERE c.contype = 'f' AND c.conparentid = 0 AND fn.nspname = %s AND fc.relname = %s
         ORDER BY c.conname
        """,
        (info.schema, info.table),
    ).fetchall()
    return [
        ReferencingConstraint(name, schema, table, tuple(columns), tuple(referenced), _ON_DELETE.get(action, action))
        for name, schema, table, columns, referenced, action in rows
    ]


def _referenced(alias: str, constraint: ReferencingConstraint) -> sql.Composable:
    """``EXISTS`` a row of the referencing table pointing at ``alias``'s row through ``constraint``."""
    match = sql.SQL(" AND ").join(
        sql.SQL("r.{} = {}").format(sql.Identifier(col), sql.Identifier(alias, ref))
        for col, ref in zip(constraint.columns, constraint.referenced, strict=True)
    )
    return sql.SQL("EXISTS (SELECT 1 FROM {} AS r WHERE {})").format(
        table_ref(constraint.schema, constraint.table), match
    )


def _absent_authoritative(info: TableInfo, stage: str, key: Sequence[str]) -> sql.Composable:
    """Rows ``t`` of the table that are authoritative and whose key is not staged."""
    match = sql.SQL(" AND ").join(sql.SQL("s.{0} = t.{0}").format(sql.Identifier(k)) for k in key)
    return sql.SQL("t.{src} = {auth} AND NOT EXISTS (SELECT 1 FROM {s} AS s WHERE {match})").format(
        src=sql.Identifier(SOURCE), auth=sql.Literal(AUTHORITATIVE), s=sql.Identifier(stage), match=match
    )


def recently_confirmed(conn: psycopg.Connection, table: str, key: Sequence[str], hours: float) -> sql.Composable | None:
    """Predicate on ``t``: its key was used by the facts of an ``ensure_references`` within ``hours`` (those facts
    may not be loaded yet); ``None`` when there is no such protection (0 hours, a composite key, no records).

    :param conn: the sync's connection.
    :param table: the schema-qualified table, as ``ensure_references`` records it.
    :param key: the table's key column(s); confirmations are of single-column keys.
    :param hours: the protection window.
    """
    if hours <= 0 or len(key) != 1:
        return None
    if conn.execute("SELECT to_regclass('refdata.key_confirmation') IS NULL").fetchone()[0]:
        return None
    return sql.SQL(
        "t.{k}::text IN (SELECT unnest(c.keys) FROM refdata.key_confirmation AS c"
        " WHERE c.table_name = {name} AND c.confirmed_at > now() - make_interval(secs => {secs}))"
    ).format(k=sql.Identifier(key[0]), name=sql.Literal(table), secs=sql.Literal(hours * 3600.0))


def _protected(constraints: Sequence[ReferencingConstraint], confirmed: sql.Composable | None) -> sql.Composable | None:
    """Predicate on ``t``: a constraint still references the row, or a recent ``ensure_references`` used its key."""
    parts = [_referenced("t", c) for c in constraints] + ([confirmed] if confirmed is not None else [])
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts)) if parts else None


def confirmed_keys(
    conn: psycopg.Connection,
    info: TableInfo,
    stage: str,
    key: Sequence[str],
    confirmed: sql.Composable,
    *,
    limit: int = 5,
) -> tuple[int, list[tuple]]:
    """(how many, the first ``limit`` keys) of the rows absent from ``stage`` that ``confirmed`` protects."""
    return _absent_where(conn, info, stage, key, confirmed, limit)


def _absent_where(
    conn: psycopg.Connection, info: TableInfo, stage: str, key: Sequence[str], predicate: sql.Composable, limit: int
) -> tuple[int, list[tuple]]:
    """(how many, the first ``limit`` keys) of the absent authoritative rows ``t`` for which ``predicate`` holds."""
    query = sql.SQL(
        "SELECT count(*) OVER (), {keys} FROM {t} AS t WHERE {absent} AND {predicate} ORDER BY {keys} LIMIT {limit}"
    ).format(
        keys=sql.SQL(", ").join(sql.Identifier("t", k) for k in key),
        t=table_ref(info.schema, info.table),
        absent=_absent_authoritative(info, stage, key),
        predicate=predicate,
        limit=sql.Literal(limit),
    )
    rows = conn.execute(query).fetchall()
    return (rows[0][0] if rows else 0), [tuple(row[1:]) for row in rows]


def absent_rows_exist(conn: psycopg.Connection, info: TableInfo, stage: str, key: Sequence[str]) -> bool:
    """Whether any authoritative row's key is not staged (a ``delete_insert`` has something to delete)."""
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} AS t WHERE {absent})").format(
        t=table_ref(info.schema, info.table), absent=_absent_authoritative(info, stage, key)
    )
    return bool(conn.execute(query).fetchone()[0])


def hold_referencing_tables(
    conn: psycopg.Connection, info: TableInfo, constraints: Sequence[ReferencingConstraint]
) -> None:
    """``LOCK … IN SHARE MODE`` the other tables that reference ``info``, to the end of the transaction.

    Without it a fact row inserted by a transaction that commits while the guarded ``DELETE`` runs is invisible
    to the guard's snapshot, and its ``ON DELETE CASCADE`` would remove it.  SHARE lets readers through and
    waits for (bounded by ``lock_timeout``) or holds off writers of those tables for the rest of this sync.
    """
    others = sorted({(c.schema, c.table) for c in constraints} - {(info.schema, info.table)})
    if others:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(", ").join(table_ref(s, t) for s, t in others))
        )


def still_referenced_keys(
    conn: psycopg.Connection,
    info: TableInfo,
    stage: str,
    key: Sequence[str],
    constraint: ReferencingConstraint,
    *,
    limit: int = 5,
) -> tuple[int, list[tuple]]:
    """(how many, the first ``limit`` keys) of the rows absent from ``stage`` that ``constraint`` still needs."""
    return _absent_where(conn, info, stage, key, _referenced("t", constraint), limit)


def keep_referenced_for_review(
    conn: psycopg.Connection,
    info: TableInfo,
    stage: str,
    key: Sequence[str],
    constraints: Sequence[ReferencingConstraint],
    confirmed: sql.Composable | None = None,
) -> int:
    """Turn the absent authoritative rows that are still referenced (or recently confirmed) into auto-derived
    rows to review; returns how many."""
    protected = _protected(constraints, confirmed)
    if protected is None:
        return 0
    query = sql.SQL(
        "UPDATE {t} AS t SET {src} = {auto}, {review} = true, {at} = now() WHERE {absent} AND {referenced}"
    ).format(
        t=table_ref(info.schema, info.table),
        src=sql.Identifier(SOURCE),
        auto=sql.Literal(AUTO_DERIVED),
        review=sql.Identifier(NEEDS_REVIEW),
        at=sql.Identifier(DERIVED_AT),
        absent=_absent_authoritative(info, stage, key),
        referenced=protected,
    )
    return conn.execute(query).rowcount


def delete_absent_unreferenced(
    conn: psycopg.Connection,
    info: TableInfo,
    stage: str,
    key: Sequence[str],
    constraints: Sequence[ReferencingConstraint],
    confirmed: sql.Composable | None = None,
) -> int:
    """Delete authoritative rows whose key is not staged and that nothing protects; returns rows deleted.

    No ``TRUNCATE``, so readers are never locked out and auto-derived rows survive.
    """
    protected = _protected(constraints, confirmed)
    guard = sql.SQL(" AND NOT {}").format(protected) if protected is not None else sql.SQL("")
    query = sql.SQL("DELETE FROM {t} AS t WHERE {absent}{guard}").format(
        t=table_ref(info.schema, info.table), absent=_absent_authoritative(info, stage, key), guard=guard
    )
    return conn.execute(query).rowcount
