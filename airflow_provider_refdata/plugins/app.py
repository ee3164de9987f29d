"""The FastAPI app of the "Reference data" page, mounted by Airflow's API server at ``/refdata``.

Routes (every one behind Airflow's own login: :data:`~airflow.api_fastapi.core_api.security.GetUserDep` reads
the JWT from the ``Authorization: Bearer`` header or the UI's ``_token`` cookie; a request without a valid one
gets 401, an invalid token 403 — plugin apps are not protected by Airflow on their own):

* ``GET /refdata/`` — the page (plain HTML; ``static/app.js`` fetches the JSON API and draws the charts);
* ``GET /refdata/api/summary`` — :class:`~airflow_provider_refdata.services.dashboard.Dashboard` of all tables;
* ``GET /refdata/api/tables/{schema.table}`` — the same for one table (404 for a table the page does not show);
* ``GET /refdata/static/{file}`` — the page's script, style sheet, icon and the vendored Chart.js.

The warehouse is the ``postgres`` connection ``refdata_warehouse``, as for the operators; another id is set with
``[refdata] warehouse_conn_id`` (``AIRFLOW__REFDATA__WAREHOUSE_CONN_ID``).  The tables and alert rules come
from ``$REFDATA_CONFIG_DIR``.  A connection is opened per request, in FastAPI's thread pool (the endpoints are
plain ``def``), and closed again; nothing is read or connected at import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse

logger = logging.getLogger("airflow_provider_refdata.plugins.app")

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The files ``/static/{name}`` serves (nothing else under the folder is reachable).
STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
    "chart.umd.min.js": "text/javascript",
}
DEFAULT_WAREHOUSE_CONN_ID = "refdata_warehouse"


def warehouse_conn_id() -> str:
    """``[refdata] warehouse_conn_id`` of the Airflow configuration, default ``refdata_warehouse``."""
    from airflow.configuration import conf

    return conf.get("refdata", "warehouse_conn_id", fallback=DEFAULT_WAREHOUSE_CONN_ID) or DEFAULT_WAREHOUSE_CONN_ID


def _dashboard(tables: list[str] | None = None) -> dict[str, Any]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_provider_refdata.exceptions import RefdataConfigError
    from airflow_provider_refdata.services.dashboard import DashboardService

    conn_id = warehouse_conn_id()
    try:
        dashboard = DashboardService().summary(PostgresHook(postgres_conn_id=conn_id), tables)
    except RefdataConfigError as exc:
        raise HTTPException(status_code=500, detail=f"invalid reference-data configuration: {exc}") from None
    except Exception as exc:  # the warehouse is down, the connection is not defined, …: say which, no DSN
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        logger.warning("reference-data page: warehouse %s not readable: %s", conn_id, first)
        raise HTTPException(
            status_code=503, detail=f"warehouse connection {conn_id!r} not readable: {type(exc).__name__}: {first}"
        ) from None
    return dashboard.model_dump(mode="json")


def create_app() -> FastAPI:
    """The app (every route requires an authenticated Airflow user)."""
    app = FastAPI(
        title="Reference data",
        description="Health, history and review queue of the reference tables (airflow-provider-refdata).",
        dependencies=[Depends(get_user)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/api/summary")
    def summary() -> dict[str, Any]:
        return _dashboard()

    @app.get("/api/tables/{table}")
    def table(table: str) -> dict[str, Any]:
        data = _dashboard([table])
        if not data["tables"]:
            raise HTTPException(status_code=404, detail=f"{table} is not one of the page's reference tables")
        return data

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail="not found")
        folder = STATIC_DIR / "vendor" if name == "chart.umd.min.js" else STATIC_DIR
        return FileResponse(folder / name, media_type=media_type)

    return app


app = create_app()
