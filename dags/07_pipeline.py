"""07_pipeline: the end of the chain; depends on 06_pipeline (dependencies.json).

Started only by the coordinator (schedule=None): never by Airflow's scheduler.
Its one task logs the partition and the conf inputs (see example_pipeline.py).
"""

from __future__ import annotations

from example_pipeline import example_dag

# Airflow DAG: started only by the coordinator (schedule=None).
dag = example_dag("07_pipeline", "publish", __doc__)
