"""The UI plugin's JSON API on its own: FastAPI's TestClient, Airflow's real SimpleAuthManager and JWTs, real PG.

The plugin app is mounted at ``/refdata`` in a bare FastAPI app (as the API server mounts it); the warehouse is
a real one after a real sync and backfill (:mod:`tests.integration.dashboard_world`), reached through the
Airflow connection ``refdata_warehouse`` (``AIRFLOW_CONN_REFDATA_WAREHOUSE``).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_provider_refdata import get_provider_info
from airflow_provider_refdata.services.dashboard import DashboardService
from devtools import demo
from tests.integration.dashboard_world import build_world

PLAN = "business.年金计划"
ROUTES = ["/refdata/", "/refdata/api/summary", f"/refdata/api/tables/{quote(PLAN)}", "/refdata/static/app.js"]


@pytest.fixture(scope="module")
def world(pg_server, mysql_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin_api")
    with demo.isolated_databases(pg_server, mysql_server, f"ui_api_{uuid.uuid4().hex[:10]}") as (pg_dsn, mysql_dsn):
        yield build_world(pg_dsn, mysql_dsn, folder)


@pytest.fixture(scope="module")
def environment(world, airflow_db):
    """The API server's environment: the warehouse connection, the configuration folder, a JWT secret (and the
    migrated metadata database: token validation checks its revoked tokens)."""
    values = {
        "AIRFLOW_CONN_REFDATA_WAREHOUSE": demo.airflow_conn_uri(world.pg_dsn, "postgres"),
        "REFDATA_CONFIG_DIR": str(world.config_dir),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def client(environment):
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app

    from airflow_provider_refdata.plugins.app import create_app

    server = FastAPI()
    server.mount("/refdata", create_app())
    auth_manager = init_auth_manager(server)
    with TestClient(server) as test_client:
        test_client.auth_manager = auth_manager
        yield test_client
    purge_cached_app()


@pytest.fixture(scope="module")
def token(client):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return client.auth_manager.generate_jwt(SimpleAuthManagerUser(username="steward", role="viewer"))


@pytest.mark.parametrize("path", ROUTES)
def test_anonymous_and_forged_requests_are_refused(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403
    assert client.get(path, headers={"Cookie": "_token=not-a-jwt"}).status_code == 403


def test_summary_with_the_bearer_token_is_the_services_dashboard(client, token, world):
    response = client.get("/refdata/api/summary", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    data = response.json()
    expected = DashboardService(world.config_dir).summary(world.pg_dsn).model_dump(mode="json")
    for key in ("tables", "tables_from", "counts", "alerts", "ratio_series", "coverage_series", "last_syncs"):
        assert data[key] == expected[key], key
    assert [p["key"] for p in data["placeholders"]] == [p["key"] for p in expected["placeholders"]]
    assert data["tables"] == world.tables and data["alerts"]


def test_the_ui_cookie_authenticates_the_page_the_table_api_and_the_static_files(client, token):
    cookies = {"Cookie": f"_token={token}"}  # what the browser sends (the UI sets _token)
    page = client.get("/refdata/", headers=cookies)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/chart.umd.min.js"' in page.text and "chart-ratio" in page.text
    one = client.get(f"/refdata/api/tables/{quote(PLAN)}", headers=cookies)
    assert one.status_code == 200, one.text
    assert one.json()["tables"] == [PLAN] and {p["table"] for p in one.json()["placeholders"]} == {PLAN}
    assert client.get("/refdata/api/tables/business.nope", headers=cookies).status_code == 404
    chart = client.get("/refdata/static/chart.umd.min.js", headers=cookies)
    assert chart.status_code == 200 and "Chart.js v4." in chart.text[:200]
    assert client.get("/refdata/static/index.html", headers=cookies).status_code == 404  # only listed files
    assert client.get("/refdata/static/..%2F__init__.py", headers=cookies).status_code == 404


def test_an_unreadable_warehouse_is_a_503_naming_the_connection(client, token, monkeypatch):
    monkeypatch.setenv("AIRFLOW__REFDATA__WAREHOUSE_CONN_ID", "refdata_no_such_conn")
    response = client.get("/refdata/api/summary", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert "refdata_no_such_conn" in response.json()["detail"]


def test_the_plugin_is_declared_by_the_provider():
    from airflow.plugins_manager import is_valid_plugin

    from airflow_provider_refdata.plugins import ReferenceDataPlugin

    (declared,) = get_provider_info()["plugins"]
    assert declared["plugin-class"] == "airflow_provider_refdata.plugins.ReferenceDataPlugin"
    assert is_valid_plugin(ReferenceDataPlugin)
    (app,) = ReferenceDataPlugin.fastapi_apps
    (view,) = ReferenceDataPlugin.external_views
    assert app["url_prefix"] == "/refdata" and view["href"] == "/refdata/" and view["destination"] == "nav"
