"""Runs inside Airflow: records run states in etcd as facts; never decides, never blocks, never raises.

- ``plugin``: the ``AirflowPlugin`` registered through the package's ``airflow.plugins`` entry point.
- ``listener``: the pluggy hooks Airflow calls on every DAG run state change (in the scheduler loop).
- ``config``: the plugin's settings: ``COORDINATOR_*`` > Airflow's ``[coordinator]`` > the etcd connection >
  defaults, and where each came from.
- ``hooks``: the bodies of the listener's hooks: what each event records, handed to the writer (no Airflow import).
- ``writer``: hands records to one background thread that writes them with per-run ordering (no Airflow import).
- ``operator``: the explicit alternative, a task that writes the state synchronously and can be retried.
- ``check``: the self-check behind ``coordinator check-plugin``.
- ``permit_wait``: ``WaitForPermitOperator`` and its trigger, the wait of a scheduled dependent (deferred in the
  triggerer); ``permit_hub``: the one etcd connection and watch its waits share (no Airflow import).

Importing this package imports nothing from Airflow, so the writer can be tested and reused without it.

The rest of the package reaches the plugin only through what is exported here: :func:`check_plugin` (and the name
of the variable that names the instance). The import-linter contracts in pyproject.toml keep the CLI out of the
modules above.
"""

from coordinator.airflow_plugin.check import check_plugin
from coordinator.airflow_plugin.records import INSTANCE_ENV

__all__ = ["INSTANCE_ENV", "check_plugin"]
