"""Airflow Assets the reference sync produces, so domain DAGs can schedule on fresh reference data.

Two kinds of events, both from :class:`~airflow_provider_refdata.operators.sync.ReferenceSyncOperator` (default
outlets) and so from the DAG ``refdata_reference_sync``:

* ``REFERENCE_SYNC_ASSET`` (``refdata://reference_sync``): one event each time the sync task succeeds; its
  ``extra`` maps every selected table to ``ok`` / ``failed`` / ``skipped``;
* one Asset per reference table (:func:`table_asset`: name ``refdata.<schema>.<table>``, URI
  ``refdata://<schema>/<table>`` percent-encoded), with an event only for a
  table that synced in that run (not failed, not skipped, not ``plan_only``); the event's ``extra`` carries the
  counts and the watermark (``rows_inserted``, ``rows_updated``, ``watermark_after``, …).

The table list lives in ``reference_sync.yml``, which may not be read when a DAG file is parsed, so the sync
task cannot declare one outlet per table.  It declares the alias :data:`REFERENCE_TABLES_ALIAS` instead and
adds the concrete table Assets at run time (``outlet_events[alias].add(asset, extra=…)``, Airflow's way to
emit events for Assets known only at run time).  A consumer schedules on the concrete Asset::

    from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET, table_asset

    with DAG("annuity_performance", schedule=[REFERENCE_SYNC_ASSET]): ...
    with DAG("plans_only", schedule=[table_asset("business", "年金计划")]): ...
    with DAG("plans_and_orgs", schedule=table_asset("business", "年金计划") & table_asset("business", "组织架构")): ...

The ``refdata`` URI scheme is declared in the provider's ``asset-uris`` (:func:`normalize_uri` checks it).
Airflow must be importable (this module is part of the Airflow layer, not of the services).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, AssetAlias

if TYPE_CHECKING:
    from urllib.parse import SplitResult

REFERENCE_SYNC_URI = "refdata://reference_sync"
REFERENCE_TABLES_ALIAS_NAME = "refdata_reference_tables"


# Defined before the module's Assets are built (at the bottom): Airflow imports this handler (``asset-uris``)
# the first time it sanitizes a ``refdata://`` URI, which can happen while this very module is being imported.
def normalize_uri(uri: SplitResult) -> SplitResult:
    """Check a ``refdata://`` URI (Airflow's ``asset-uris`` handler): ``refdata://reference_sync`` or
    ``refdata://<schema>/<table>``.

    :param uri: the URI as Airflow split it (scheme lower-cased, trailing slashes removed).
    """
    segments = [s for s in uri.path.split("/") if s]
    if not uri.netloc or len(segments) > 1 or (not segments and uri.netloc != "reference_sync"):
        raise ValueError(
            f"a refdata asset URI is refdata://reference_sync or refdata://<schema>/<table>, got {uri.geturl()!r}"
        )
    return uri


def create_asset(*, schema: str, table: str, extra: dict[str, Any] | None = None) -> Asset:
    """Airflow's ``asset-uris`` factory: the Asset of one reference table (see :func:`table_asset`).

    :param schema: the table's schema.
    :param table: the table's name.
    :param extra: the Asset's own extra (not an event's).
    """
    return table_asset(schema, table, extra=extra)


def table_asset_uri(schema: str, table: str) -> str:
    """``refdata://<schema>/<table>`` for one reference table, each part percent-encoded (UTF-8).

    Airflow stores only ASCII asset URIs, so ``business.年金计划`` is
    ``refdata://business/%E5%B9%B4%E9%87%91%E8%AE%A1%E5%88%92``; the Asset's name (:func:`table_asset`) keeps
    the readable form.

    :param schema: the table's schema.
    :param table: the table's name (Chinese names are fine).
    """
    return f"refdata://{quote(schema, safe='')}/{quote(table, safe='')}"


def table_asset(schema: str, table: str, *, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of one reference table (name ``refdata.<schema>.<table>``, group ``refdata``).

    :param schema: the table's schema.
    :param table: the table's name.
    :param extra: the Asset's own extra (not an event's); default none.
    """
    return Asset(
        name=f"refdata.{schema}.{table}", uri=table_asset_uri(schema, table), group="refdata", extra=extra or {}
    )


def table_asset_for(qualified: str) -> Asset:
    """The Asset of a schema-qualified table name as the results carry it (``business.年金计划``).

    :param qualified: ``schema.table`` (the first dot separates them; the table name may contain dots).
    """
    schema, _, table = qualified.partition(".")
    return table_asset(schema, table)


#: Updated after every successful reference sync task (all selected tables).
REFERENCE_SYNC_ASSET = Asset(name="refdata_reference_sync", uri=REFERENCE_SYNC_URI, group="refdata")

#: Declared by the sync task; resolves at run time to the table Assets of the tables that synced.
REFERENCE_TABLES_ALIAS = AssetAlias(name=REFERENCE_TABLES_ALIAS_NAME, group="refdata")
