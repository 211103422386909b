"""03_pipeline: depends on 01_pipeline (dependencies.json); one of the four branches of the fan-out.

Started only by the coordinator (schedule=None): never by Airflow's scheduler.
Its one task logs the partition and the conf inputs (see example_pipeline.py).
"""

from __future__ import annotations

from example_pipeline import example_dag

# Airflow DAG: started only by the coordinator (schedule=None).
dag = example_dag("03_pipeline", "enrich", __doc__)
