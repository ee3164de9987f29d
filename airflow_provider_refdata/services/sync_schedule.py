"""The order and parallelism of a multi-table sync: dependencies first, up to ``concurrency`` at once.

Each table runs through the ``run(entry, connection)`` callback (one table, one transaction); these functions
only decide when and on which warehouse connection.  Results come back by entry name; the caller orders them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, ExitStack
from graphlib import TopologicalSorter
from typing import Any

import psycopg

from airflow_provider_refdata.results import SyncResult
from airflow_provider_refdata.warehouse.connection import WarehouseLike, warehouse_connection
from airflow_provider_refdata.warehouse.state import ensure_state_tables

logger = logging.getLogger("airflow_provider_refdata.services.sync")


def run_in_order(
    order: list[Any],
    conn: WarehouseLike,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    run: Callable[[Any, WarehouseLike], SyncResult],
) -> dict[str, SyncResult]:
    """Run every entry, parents first, on one connection; a lost connection is replaced for the next."""
    results: dict[str, SyncResult] = {}
    with warehouse_connection(conn) as pg, ExitStack() as fresh:
        for entry in order:
            if pg.closed or pg.broken:
                # The server restarted or the connection dropped: later tables get a working connection.
                logger.warning("Warehouse connection lost; reconnecting for %s", entry.name)
                pg = fresh.enter_context(connect())
            results[entry.name] = run(entry, pg)
    return results


def run_in_parallel(
    entries: list[Any],
    order: list[Any],
    workers: int,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    run: Callable[[Any, WarehouseLike], SyncResult],
    plan_only: bool,
) -> dict[str, SyncResult]:
    """Run independent entries at once on up to ``workers`` connections; an entry starts after its
    ``depends_on`` entries (within ``entries``) finished, whatever their outcome."""
    if not plan_only:
        # Once, up front: concurrent CREATE … IF NOT EXISTS of the same table can collide.
        with connect() as pg:  # committed when the block ends
            ensure_state_tables(pg)
    names = {entry.name for entry in entries}
    position = {entry.name: i for i, entry in enumerate(order)}
    by_name = {entry.name: entry for entry in entries}
    sorter: TopologicalSorter[str] = TopologicalSorter(
        {entry.name: [d for d in entry.depends_on if d in names] for entry in entries}
    )
    sorter.prepare()

    def run_on_own_connection(entry: Any) -> SyncResult:
        with connect() as pg:
            return run(entry, pg)

    results: dict[str, SyncResult] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refdata-sync") as pool:
        running: dict[Future[SyncResult], str] = {}
        while sorter.is_active():
            for name in sorted(sorter.get_ready(), key=position.__getitem__):
                running[pool.submit(run_on_own_connection, by_name[name])] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                results[name] = future.result()
                sorter.done(name)
    return results
