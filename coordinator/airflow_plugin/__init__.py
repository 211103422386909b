"""Runs inside Airflow: records run states in etcd as facts; never decides, never blocks, never raises.

- ``plugin``: the ``AirflowPlugin`` registered through the package's ``airflow.plugins`` entry point.
- ``listener``: the pluggy hooks Airflow calls on every DAG run state change (in the scheduler loop).
- ``writer``: hands records to one background thread that writes them with per-run ordering (no Airflow import).
- ``operator``: the explicit alternative, a task that writes the state synchronously and can be retried.

Importing this package imports nothing from Airflow, so the writer can be tested and reused without it.
"""
