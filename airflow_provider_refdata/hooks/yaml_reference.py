"""YamlReferenceHook: versioned reference YAML files as a sync source, with the base folder from a connection.

Relative ``file_path`` values resolve against ``base_path``: the argument, else the ``base_path`` extra of
the ``refdata_yaml`` connection when one is defined, else the path stays as configured (the configuration
loader already makes paths absolute relative to ``reference_sync.yml``).  Reading and checking the file is
done by :class:`~airflow_provider_refdata.services.source_yaml.YamlFileSource`, which streams it and reads
values as the text written (no YAML 1.1 typing; see docs/configuration.md, "Reference data files: how values
are read"): a missing file, bad YAML, a ``schema_version`` mismatch, a duplicate key, an alias bomb, a row
without its key or with an unknown column, or a list/mapping value its column cannot hold skip the table with
a reason naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk.bases.hook import BaseHook

from airflow_provider_refdata.services.source_yaml import YamlFileSource
from airflow_provider_refdata.services.sources import SourceRead


class YamlReferenceHook(BaseHook):
    """Read reference data files.

    :param yaml_conn_id: connection (type ``refdata_yaml``) whose extra ``base_path`` is the base folder;
        it is optional: a missing connection just means no base folder.
    :param base_path: base folder; wins over the connection.
    """

    conn_name_attr = "yaml_conn_id"
    default_conn_name = "refdata_yaml"
    conn_type = "refdata_yaml"
    hook_name = "Refdata YAML reference files"

    def __init__(self, yaml_conn_id: str = default_conn_name, base_path: str | Path | None = None) -> None:
        super().__init__()
        self.yaml_conn_id = yaml_conn_id
        self._base_path = base_path

    @cached_property
    def base_path(self) -> Path | None:
        """The base folder (argument, else the connection's ``base_path`` extra, else ``None``)."""
        if self._base_path is not None:
            return Path(self._base_path)
        try:
            conn = self.get_connection(self.yaml_conn_id)
        except Exception:  # the connection is optional; Airflow raises different errors per version/backend
            self.log.debug("No connection %s; reference file paths are used as configured", self.yaml_conn_id)
            return None
        value = (conn.extra_dejson or {}).get("base_path")
        return Path(value) if value else None

    def get_conn(self) -> YamlFileSource:
        """The plain-Python file reader."""
        return YamlFileSource(base_path=self.base_path)

    @contextmanager
    def stream(self, table_config: Any, since: datetime | None, batch_size: int) -> Iterator[SourceRead]:
        """Stream the configured file (always in full, one batch in memory at a time).

        :param table_config: a ``config_file`` ``SyncTableConfig``.
        :param since: ignored.
        :param batch_size: rows per batch.
        """
        with self.get_conn().stream(table_config, since, batch_size) as read:
            yield read
