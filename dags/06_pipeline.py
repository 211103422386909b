"""06_pipeline: the fan-in; depends on 02, 03, 04 and 05_pipeline for the same partition (dependencies.json).

Started only by the coordinator (schedule=None): never by Airflow's scheduler. It runs once all four upstreams
succeeded for the partition.
Its one task logs the partition and the conf inputs (see example_pipeline.py).
"""

from __future__ import annotations

from example_pipeline import example_dag

# Airflow DAG: started only by the coordinator (schedule=None).
dag = example_dag("06_pipeline", "join", __doc__)
