"""Fixtures of the DAG tests."""

from __future__ import annotations

import pytest

from tests.integration.steward_scenario import scenario_in_env


@pytest.fixture
def scenario(airflow_db, airflow_connections, pg_server, pg_schema, tmp_path, monkeypatch):
    """The steward scenario (:class:`~tests.integration.steward_scenario.StewardScenario`) with the metadata
    database and the provider's connections, ``$REFDATA_CONFIG_DIR`` pointing at its config folder."""
    yield from scenario_in_env(pg_server, pg_schema, tmp_path, monkeypatch)
