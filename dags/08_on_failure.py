"""08_on_failure: the failure handler of 09_flaky, for the failure-handler scenario. NOT in the top-level
dependencies.json: the end-to-end tests' own dependencies file starts it when 09_flaky FAILED for a partition.

A real handler would alert or clean up the partition's partial output; this one logs what it was given (the
partition and the conf) and writes a marker file keyed by partition. Started only by the coordinator (schedule=None).
"""

from __future__ import annotations

from example_pipeline import example_dag

# Airflow DAG: started only by the coordinator (schedule=None).
dag = example_dag("08_on_failure", "handle_failure", __doc__, tags=("coordinator-test",))
