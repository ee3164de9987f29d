"""Airflow Assets the reference sync produces, so domain DAGs can schedule on fresh reference data.

``REFERENCE_SYNC_ASSET`` (``refdata://reference_sync``) gets an event each time the DAG
``refdata_reference_sync`` (or any :class:`~airflow_provider_refdata.operators.sync.ReferenceSyncOperator`
with default outlets) finishes; the event's ``extra`` lists the tables and their outcome.  Per-table assets
(:func:`table_asset`, ``refdata://<schema>/<table>``) get an event when listed in an operator's ``outlets``::

    from airflow_provider_refdata.assets import REFERENCE_SYNC_ASSET, table_asset

    with DAG("annuity_performance", schedule=[REFERENCE_SYNC_ASSET]): ...
    with DAG("plans_only", schedule=[table_asset("business", "年金计划")]): ...

Airflow must be importable (this module is part of the Airflow layer, not of the services).
"""

from __future__ import annotations

from airflow.sdk import Asset

REFERENCE_SYNC_URI = "refdata://reference_sync"


def table_asset_uri(schema: str, table: str) -> str:
    """``refdata://<schema>/<table>`` for one reference table.

    :param schema: the table's schema.
    :param table: the table's name (Chinese names are fine).
    """
    return f"refdata://{schema}/{table}"


def table_asset(schema: str, table: str) -> Asset:
    """The Asset of one reference table (name ``refdata.<schema>.<table>``).

    :param schema: the table's schema.
    :param table: the table's name.
    """
    return Asset(name=f"refdata.{schema}.{table}", uri=table_asset_uri(schema, table), group="refdata")


#: Updated after every reference sync run (all configured tables).
REFERENCE_SYNC_ASSET = Asset(name="refdata_reference_sync", uri=REFERENCE_SYNC_URI, group="refdata")
