"""A DAG a graph keys by mistake, for ``validate --airflow`` and ``doctor`` against a real Airflow 3.3
(tests/e2e/test_partition_keys_e2e.py; semantics `segment-partitions`):

- ``e2e_keyed_unpartitioned`` (schedule None): a graph gives it a ``key_format``, so the coordinator would trigger it
  with a ``partition_key``, which Airflow refuses for a DAG that is not partitioned. Nothing ever runs it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, task


@task
def work() -> None:
    pass


with DAG(
    dag_id="e2e_keyed_unpartitioned",
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-test"],
):
    work()
