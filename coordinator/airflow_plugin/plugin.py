"""The Airflow plugin, found through the ``airflow.plugins`` entry point of this package (see pyproject.toml).

Installing the package into the Airflow environment is the whole set-up: no file is copied into
``$AIRFLOW_HOME/plugins``. The package must be importable by the scheduler and the api-server (they fire the hooks)
and by the workers (they import plugins too). Configuration comes from the environment:
``COORDINATOR_ETCD_ENDPOINTS``, ``COORDINATOR_PREFIX``, ``COORDINATOR_INSTANCE`` and the ``COORDINATOR_ETCD_*`` auth
and TLS settings. Airflow only logs a plugin that fails to import: run ``coordinator check-plugin`` after installing.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from coordinator.airflow_plugin.listener import LISTENER


class EtcdCoordinatorPlugin(AirflowPlugin):
    """Records every DAG run's state in etcd for the coordinator's watcher."""

    name = "etcd_coordinator"
    listeners = [LISTENER]
