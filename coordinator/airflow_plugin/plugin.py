"""The Airflow plugin, found through the ``airflow.plugins`` entry point of this package (see pyproject.toml).

Installing the package into the Airflow environment is the whole set-up: no file is copied into
``$AIRFLOW_HOME/plugins``. On Airflow 3 it also adds the "Dependencies" page (``page_app``: ``/coordinator/``,
shown in Airflow's navigation) for logged-in users. The package must be importable by the scheduler and the
api-server (they fire the hooks) and by the workers (they import plugins too). Settings (``etcd_endpoints``,
``prefix``, ``instance``, etcd auth and TLS) come from ``COORDINATOR_*`` variables, Airflow's ``[coordinator]``
section or the ``coordinator_etcd`` connection (:mod:`coordinator.airflow_plugin.config`). Airflow only logs a plugin
that fails to import: run ``coordinator check-plugin`` after installing.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from coordinator.airflow_plugin.listener import LISTENER

# The dependencies page needs Airflow 3's FastAPI api-server; on Airflow 2 (no FastAPI) the plugin only records.
if importlib.util.find_spec("fastapi") is not None:
    from coordinator.airflow_plugin.page_app import EXTERNAL_VIEWS, FASTAPI_APPS
else:  # pragma: no cover - Airflow 2 environments
    EXTERNAL_VIEWS, FASTAPI_APPS = [], []


class EtcdCoordinatorPlugin(AirflowPlugin):
    """Records every DAG run's state in etcd for the coordinator's watcher; serves the "Dependencies" page."""

    name = "etcd_coordinator"
    listeners = [LISTENER]
    fastapi_apps: list[Any] = FASTAPI_APPS
    external_views: list[Any] = EXTERNAL_VIEWS
