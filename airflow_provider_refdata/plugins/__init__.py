"""The Airflow UI plugin of the provider: the "Reference data" page in Airflow's navigation.

:class:`ReferenceDataPlugin` mounts the FastAPI app of :mod:`airflow_provider_refdata.plugins.app` at
``/refdata`` in the API server and adds the page as an external view at the top level of the navigation
(Airflow shows it framed inside its own UI at ``/plugin/reference-data``).  Declared in
``get_provider_info()`` under ``plugins``.  The page itself is behind Airflow's login (see the app module).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_refdata.plugins.app import app

URL_PREFIX = "/refdata"


class ReferenceDataPlugin(AirflowPlugin):
    """Reference-data health, history and review queue in the Airflow UI."""

    name = "refdata"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Reference data"}]
    external_views = [
        {
            "name": "Reference data",
            "href": f"{URL_PREFIX}/",
            "url_route": "reference-data",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX}/static/icon.svg",
        }
    ]
