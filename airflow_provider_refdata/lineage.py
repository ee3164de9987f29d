"""OpenLineage facets of the sync and backfill operators (used when the ``openlineage`` extra is installed).

``ReferenceSyncOperator`` and ``HybridReferenceOperator`` get their ``get_openlineage_facets_on_complete``
from the mixins at the end of this module; the OpenLineage provider's listener calls it after ``execute``
(on failure too: the provider falls back to it).  Everything else here is pure: it turns a run's results and
the connection facts (scheme, ``host:port``, database of each source and of the warehouse; never a user or
a password) into an ``OperatorLineage``:

* **sync**: one input per table that synced (its MySQL / PostgreSQL / ``sql`` table or YAML file) with
  ``dataQualityMetrics`` (``rowCount`` = rows read), and one output per reference table written with
  ``outputStatistics`` (``rowCount`` = rows inserted + updated).  A failed or skipped table is neither: no data
  of it reached the warehouse (its failure is in the task's logs, its Asset event and metrics).  A
  ``plan_only`` run lists its inputs and no outputs;
* **backfill**: the facts as input (a file, a warehouse table, or the tables a ``sql`` query reads, plus the
  query as the ``sql`` job facet) with ``dataQualityMetrics`` (``rowCount`` = fact rows; per FK column its
  distinct non-blank values and blank rows), and the reference tables as outputs, each with
  ``dataQualityAssertions``: per FK ``fk_coverage`` (every distinct key of the facts is in the table after
  the task; column = the table's key) and per table ``auto_derived_ratio`` (at most its threshold, the
  operator's warning rule).  In ``plan_only`` / ``coverage_only`` runs nothing is written: the reference
  tables are inputs, with the same assertions.

Dataset names follow the OpenLineage naming spec: ``postgres://host:port`` + ``database.schema.table``,
``mysql://host:port`` + ``database.table``, ``file`` + the absolute path.  Without the extra, the methods
return ``None`` and nothing here imports OpenLineage.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_refdata.config import ForeignKeyConfig, SyncTableConfig
    from airflow_provider_refdata.results import HybridResult, SyncResult

logger = logging.getLogger(__name__)

#: OpenLineage scheme per DSN scheme / Airflow connection type.
_SCHEMES = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "refdata_mysql": "mysql",
    "sqlite": "sqlite",
}
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


@dataclass(frozen=True)
class DatasetRef:
    """An OpenLineage dataset identity."""

    namespace: str
    name: str


@dataclass(frozen=True)
class DatabaseLocation:
    """Where a database is, as OpenLineage names it: ``scheme://authority`` and the database.

    :param scheme: ``postgres``, ``mysql``, ``sqlite``, or another connection type.
    :param authority: ``host:port`` (never credentials); ``None`` for a scheme without one.
    :param database: the database name (the first part of a dataset name).
    """

    scheme: str
    authority: str | None = None
    database: str | None = None

    @property
    def namespace(self) -> str:
        return f"{self.scheme}://{self.authority}" if self.authority else self.scheme

    def table(self, *parts: str | None) -> DatasetRef:
        """The dataset of a table: ``database.<parts…>`` (empty parts left out)."""
        return DatasetRef(self.namespace, ".".join(p for p in (self.database, *parts) if p))


def _authority(host: str | None, port: int | None, scheme: str) -> str | None:
    if not host:
        return None
    port = port or _DEFAULT_PORTS.get(scheme)
    return f"{host}:{port}" if port else host


def location_from_dsn(dsn: str) -> DatabaseLocation:
    """The location in a ``postgresql://``, ``mysql://`` or ``sqlite:///path`` DSN (user and password ignored)."""
    parts = urlsplit(dsn)
    raw = parts.scheme.lower().split("+", 1)[0]
    scheme = _SCHEMES.get(raw, raw)
    if scheme == "sqlite":
        path = unquote(parts.path)[1:]  # SQLAlchemy style: sqlite:///relative, sqlite:////absolute
        absolute = str(Path(path).absolute()) if path else None
        return DatabaseLocation("sqlite", absolute, Path(path).stem if path else None)
    return DatabaseLocation(scheme, _authority(parts.hostname, parts.port, scheme), unquote(parts.path.lstrip("/")))


def location_from_env(prefix: str, source_type: str, environ: Mapping[str, str] | None = None) -> DatabaseLocation:
    """The location of a ``connection_env_prefix`` source (``<P>_HOST``, ``<P>_PORT``, ``<P>_DATABASE``)."""
    env = os.environ if environ is None else environ
    scheme = "mysql" if source_type == "legacy_mysql" else "postgres"
    port = env.get(f"{prefix}_PORT")
    return DatabaseLocation(
        scheme,
        _authority(env.get(f"{prefix}_HOST"), int(port) if port else None, scheme),
        env.get(f"{prefix}_DATABASE"),
    )


def location_from_connection(connection: Any) -> DatabaseLocation:
    """The location of an Airflow connection: its hook's ``get_openlineage_database_info`` when it has one
    (the postgres and mysql providers do), else the connection's type, host, port and schema."""
    try:
        info = connection.get_hook().get_openlineage_database_info(connection)
    except Exception:  # no hook for the type, or no OpenLineage support in it: use the connection's fields
        info = None
    if info is not None:
        # the mysql provider leaves the database out: the connection's schema is it
        return DatabaseLocation(info.scheme, info.authority or None, info.database or connection.schema or None)
    scheme = _SCHEMES.get(connection.conn_type or "", connection.conn_type or "unknown")
    return DatabaseLocation(scheme, _authority(connection.host, connection.port, scheme), connection.schema or None)


def file_dataset(path: str | os.PathLike[str]) -> DatasetRef:
    """A local file: namespace ``file``, the absolute path as its name."""
    return DatasetRef("file", str(Path(path).absolute()))


def source_table(location: DatabaseLocation, table_config: SyncTableConfig) -> DatasetRef:
    """The dataset of a database sync table's source (MySQL: ``database.table``; others ``database.schema.table``).

    :param location: the source's database location.
    :param table_config: the sync table.
    """
    source = table_config.source_config
    if table_config.source_type == "legacy_mysql":
        return DatabaseLocation(location.scheme, location.authority, source.database or location.database).table(
            source.table
        )
    return location.table(getattr(source, "schema_", None), source.table)


# ----------------------------------------------------------------------------------------------------------
# OperatorLineage builders (pure; they import OpenLineage, so call them only when it is installed)
# ----------------------------------------------------------------------------------------------------------


def _metrics_facet(row_count: int | None, columns: Mapping[str, tuple[int, int]] | None = None) -> Any:
    from openlineage.client.facet_v2 import data_quality_metrics_input_dataset as dq

    return dq.DataQualityMetricsInputDatasetFacet(
        rowCount=row_count,
        columnMetrics={
            name: dq.ColumnMetrics(nullCount=blank, distinctCount=distinct)
            for name, (distinct, blank) in (columns or {}).items()
        },
    )


def _statistics_facet(rows: int) -> Any:
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

    return stats.OutputStatisticsOutputDatasetFacet(rowCount=rows)


def sync_lineage(
    results: Sequence[SyncResult],
    sources: Mapping[str, DatasetRef],
    targets: Mapping[str, DatasetRef],
    *,
    plan_only: bool = False,
) -> OperatorLineage:
    """The lineage of a sync run.

    :param results: the sync's results.
    :param sources: each table's source dataset, by the result's ``table`` (a table missing here has no input).
    :param targets: each table's warehouse dataset, by the result's ``table``.
    :param plan_only: nothing was written: no outputs.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    from airflow_provider_refdata.metrics import sync_status

    inputs, outputs = [], []
    for result in results:
        if sync_status(result) != "ok":
            continue
        if (source := sources.get(result.table)) is not None:
            inputs.append(
                InputDataset(
                    source.namespace, source.name, inputFacets={"dataQualityMetrics": _metrics_facet(result.rows_read)}
                )
            )
        if not plan_only and not result.plan_only and (target := targets.get(result.table)) is not None:
            written = result.rows_inserted + result.rows_updated
            outputs.append(
                OutputDataset(
                    target.namespace, target.name, outputFacets={"outputStatistics": _statistics_facet(written)}
                )
            )
    return OperatorLineage(inputs=inputs, outputs=outputs)


def threshold_for(table: str, fk_names: Sequence[str], default: float, table_thresholds: Mapping[str, float]) -> float:
    """The auto-derived threshold of a table, as ``HybridReferenceService`` picks it: the table's own, else one
    of its FK names', else the global one."""
    if table in table_thresholds:
        return float(table_thresholds[table])
    for name in fk_names:
        if name in table_thresholds:
            return float(table_thresholds[name])
    return default


def _assertion(**fields: Any) -> Any:
    """An ``Assertion`` with the fields this openlineage-python has (``name``, ``expected``, ``actual``,
    ``params``, ... came with 1.47; older clients get ``assertion``, ``success`` and ``column``)."""
    import attr
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa

    known = attr.fields_dict(dqa.Assertion)
    return dqa.Assertion(**{k: v for k, v in fields.items() if k in known})


def coverage_assertions(result: HybridResult, fks: Sequence[ForeignKeyConfig], threshold: float) -> list[Any]:
    """The ``dataQualityAssertions`` of one reference table: ``fk_coverage`` per FK, ``auto_derived_ratio`` once.

    :param result: the run's result.
    :param fks: the FK configurations on this table that ran (not skipped).
    :param threshold: the table's auto-derived threshold.
    """
    metrics = {m.fk_name: m for m in result.coverage_metrics}
    backfills = {t.fk_name: t for t in (result.backfill_result.tables if result.backfill_result else [])}
    wrote = not (result.plan_only or result.coverage_only)
    assertions = []
    for fk in fks:
        m = metrics[fk.name]
        backfill = backfills.get(fk.name)
        error = m.error or (backfill.error if backfill else None)
        # keys still missing after the task: all of them when nothing was written (or its unit rolled back);
        # else the ones left out (rejected)
        written = wrote and backfill is not None and error is None
        remaining = min(m.missing_values, backfill.rejected) if written and backfill else m.missing_values
        after = (m.total_fk_values - remaining) / m.total_fk_values if m.total_fk_values else 1.0
        assertions.append(
            _assertion(
                assertion="fk_coverage",
                success=error is None and remaining == 0,
                column=fk.target_key,
                severity="error",
                name=fk.name,
                description=f"every distinct non-blank {fk.source_column} of the facts is a {fk.target_key} "
                f"of {fk.qualified_table} after the task",
                expected="1.0",
                actual=str(round(after, 6)),
                params={
                    "source_column": fk.source_column,
                    "coverage_before": m.coverage_rate,
                    "total_fk_values": m.total_fk_values,
                    "covered_values": m.covered_values,
                    "missing_values": m.missing_values,
                    "backfilled": backfill.inserted if backfill else 0,
                    "rejected": backfill.rejected if backfill else 0,
                    "blank_rows": m.blank_rows,
                    "remapped_values": m.remapped_values,
                    **({"error": error} if error else {}),
                },
            )
        )
    table = fks[0].qualified_table
    if table in result.per_table_ratio:
        ratio = result.per_table_ratio[table]
        assertions.append(
            _assertion(
                assertion="auto_derived_ratio",
                success=ratio <= threshold,
                severity="warn",
                name=f"auto_derived_ratio {table}",
                description="auto-derived rows / all rows of the table at most the threshold (warns when above)",
                expected=str(threshold),
                actual=str(ratio),
                params={"plan_only": result.plan_only},
            )
        )
    return assertions


def hybrid_lineage(
    result: HybridResult,
    fk_configs: Sequence[ForeignKeyConfig],
    warehouse: DatabaseLocation,
    *,
    facts: Sequence[DatasetRef] = (),
    query: str | None = None,
    threshold: float = 0.10,
    table_thresholds: Mapping[str, float] | None = None,
) -> OperatorLineage:
    """The lineage of an ``ensure_references`` run.

    :param result: its result (``fact_rows``: the facts' row count, when the service counted them).
    :param fk_configs: the domain's FK configurations (key columns, source columns).
    :param warehouse: the warehouse's location (reference tables; fact tables).
    :param facts: the fact datasets (a file, a table, the tables a query reads); the metrics go on the facts
        only when there is exactly one.
    :param query: the facts' query (the ``sql`` job facet).
    :param threshold: the global auto-derived threshold; ``table_thresholds`` per table or FK name.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa
    from openlineage.client.facet_v2 import sql_job

    ran = {m.fk_name for m in result.coverage_metrics if not m.skipped_reason}
    columns: dict[str, tuple[int, int]] = {}
    for m in result.coverage_metrics:
        fk = next((f for f in fk_configs if f.name == m.fk_name), None)
        if fk is not None and m.fk_name in ran:
            columns.setdefault(fk.source_column, (m.total_fk_values, m.blank_rows))
    inputs = []
    for ref in facts:  # the metrics describe the facts as a whole: on their dataset only when it is the one
        facets = {"dataQualityMetrics": _metrics_facet(result.fact_rows, columns)} if len(facts) == 1 else {}
        inputs.append(InputDataset(ref.namespace, ref.name, inputFacets=facets))
    by_table: dict[str, list[ForeignKeyConfig]] = {}
    for fk in fk_configs:
        if fk.name in ran:
            by_table.setdefault(fk.qualified_table, []).append(fk)
    backfills = {t.fk_name: t for t in (result.backfill_result.tables if result.backfill_result else [])}
    wrote = not (result.plan_only or result.coverage_only)
    outputs = []
    for table, fks in by_table.items():
        limit = threshold_for(table, [f.name for f in fks], threshold, table_thresholds or {})
        ref = warehouse.table(fks[0].target_schema, fks[0].target_table)
        facets = {
            "dataQualityAssertions": dqa.DataQualityAssertionsDatasetFacet(coverage_assertions(result, fks, limit))
        }
        if wrote:
            written = sum(backfills[f.name].inserted + backfills[f.name].updated for f in fks if f.name in backfills)
            outputs.append(
                OutputDataset(
                    ref.namespace,
                    ref.name,
                    facets=facets,
                    outputFacets={"outputStatistics": _statistics_facet(written)},
                )
            )
        else:
            inputs.append(InputDataset(ref.namespace, ref.name, facets=facets))
    job_facets = {"sql": sql_job.SQLJobFacet(query=query, dialect="postgres")} if query else {}
    return OperatorLineage(inputs=inputs, outputs=outputs, job_facets=job_facets)


def query_tables(query: str, warehouse: DatabaseLocation) -> list[DatasetRef]:
    """The warehouse tables a facts query reads (the OpenLineage SQL parser; none when it cannot parse it)."""
    try:
        from airflow.providers.openlineage.sqlparser import SQLParser

        # bound-parameter placeholders (%s, %(name)s) are not SQL the parser reads: parse NULL in their place
        meta = SQLParser(dialect="postgres", default_schema="public").parse(_PLACEHOLDER.sub("NULL", query))
    except Exception:  # the parser is optional (openlineage-sql) and refuses some SQL: the job facet remains
        logger.debug("OpenLineage: the facts query could not be parsed", exc_info=True)
        return []
    tables = meta.in_tables if meta else []
    return sorted({warehouse.table(t.schema or "public", t.name) for t in tables}, key=lambda d: d.name)


# ----------------------------------------------------------------------------------------------------------
# The operators' side: connection facts from Airflow, then the builders above
# ----------------------------------------------------------------------------------------------------------


def _airflow_location(conn_id: str) -> DatabaseLocation:
    from airflow.sdk import BaseHook

    return location_from_connection(BaseHook.get_connection(conn_id))


def warehouse_location(conn_id: str) -> DatabaseLocation:
    """The warehouse's location from its ``postgres`` connection."""
    return _airflow_location(conn_id)


def _openlineage_installed() -> bool:
    try:
        import airflow.providers.openlineage.extractors  # noqa: F401
        import openlineage.client.facet_v2  # noqa: F401
    except ImportError:
        return False
    return True


class ReferenceSyncLineageMixin:
    """``get_openlineage_facets_on_complete`` of :class:`~.operators.sync.ReferenceSyncOperator`."""

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The sync's lineage (None without the ``openlineage`` extra or before ``execute`` kept its results)."""
        results = getattr(self, "_lineage_result", None)
        if results is None or not _openlineage_installed():
            return None
        from airflow_provider_refdata.config import load_sync_config
        from airflow_provider_refdata.operators.sync import default_config_path
        from airflow_provider_refdata.operators.templated import as_bool

        op: Any = self
        config = load_sync_config(Path(op.config_path) if op.config_path else default_config_path())
        warehouse = warehouse_location(op.warehouse_conn_id)
        by_table = {t.qualified_table: t for t in config.tables}
        sources: dict[str, DatasetRef] = {}
        targets: dict[str, DatasetRef] = {}
        for result in results:
            table = by_table.get(result.table)
            if table is None:
                continue
            targets[result.table] = warehouse.table(table.target_schema, table.target_table)
            try:
                sources[result.table] = self._source_dataset(table)
            except Exception as exc:  # an input we cannot name is left out; the lineage still goes out
                logger.warning("OpenLineage: no source dataset for %s: %s", result.table, type(exc).__name__)
        return sync_lineage(results, sources, targets, plan_only=as_bool(op.plan_only, "plan_only"))

    def _source_dataset(self, table: SyncTableConfig) -> DatasetRef:
        """The source of one table, found in the order of ``services.source_resolver`` (env prefix, the
        operator's ``source_connections``, YAML file, the table's Airflow connection)."""
        from airflow_provider_refdata.hooks.connections import is_dsn
        from airflow_provider_refdata.services.source_resolver import DEFAULT_CONN_IDS

        op: Any = self
        source, source_type = table.source_config, table.source_type
        if prefix := getattr(source, "connection_env_prefix", None):
            return source_table(location_from_env(prefix, source_type), table)
        conn_id = getattr(source, "conn_id", None)
        mapping = op.source_connections or {}
        for key in (conn_id or DEFAULT_CONN_IDS.get(source_type), source_type):
            if key and key in mapping and source_type != "config_file":
                value = mapping[key]
                return source_table(location_from_dsn(value) if is_dsn(value) else _airflow_location(value), table)
        if source_type == "config_file":
            return file_dataset(op.yaml_hook.get_conn().resolve(source.file_path))
        if source_type == "legacy_mysql" and conn_id in (None, DEFAULT_CONN_IDS["legacy_mysql"]):
            conn_id = op.mysql_conn_id
        return source_table(_airflow_location(conn_id or DEFAULT_CONN_IDS[source_type]), table)


class HybridReferenceLineageMixin:
    """``get_openlineage_facets_on_complete`` of :class:`~.operators.hybrid.HybridReferenceOperator`."""

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The run's lineage (None without the ``openlineage`` extra or before ``execute`` kept its result)."""
        result = getattr(self, "_lineage_result", None)
        if result is None or not _openlineage_installed():
            return None
        from airflow_provider_refdata.config import load_fk_configs
        from airflow_provider_refdata.operators.hybrid import default_fk_config_path, split_table_name
        from airflow_provider_refdata.operators.templated import as_float

        op: Any = self
        fk_configs = load_fk_configs(op.fk_config_path or default_fk_config_path(), op.domain)
        warehouse = warehouse_location(op.warehouse_conn_id)
        if op.fact_file:
            facts = [file_dataset(op.fact_file)]
        elif op.table:
            facts = [warehouse.table(*split_table_name(op.table))]
        else:
            facts = query_tables(op.sql, warehouse)
        threshold = as_float(op.auto_derived_threshold, "auto_derived_threshold")
        return hybrid_lineage(
            result,
            fk_configs,
            warehouse,
            facts=facts,
            query=op.sql or None,
            threshold=0.10 if threshold is None else threshold,
            table_thresholds=op.table_thresholds,
        )
