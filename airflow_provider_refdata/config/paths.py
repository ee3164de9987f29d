"""Where the configuration files are when a caller names none: ``$REFDATA_CONFIG_DIR``, else ``./config``.

One rule for the operators, the services, the command line and the UI plugin, so a worker, the API server
and a steward's shell find the same ``reference_sync.yml`` and ``foreign_keys.yml``.  Read on each call
(never at import), so a task sees the environment it runs in.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable naming the configuration folder.
CONFIG_DIR_ENV = "REFDATA_CONFIG_DIR"
SYNC_CONFIG_FILE = "reference_sync.yml"
FK_CONFIG_FILE = "foreign_keys.yml"


def config_dir() -> Path:
    """``$REFDATA_CONFIG_DIR`` when set, else the ``config`` folder of the working directory."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    return Path(folder) if folder else Path.cwd() / "config"


def config_path(name: str) -> Path:
    """The file ``name`` (e.g. :data:`SYNC_CONFIG_FILE`) in :func:`config_dir`, whether it exists or not."""
    return config_dir() / name
