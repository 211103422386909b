"""01_pipeline: the root of the example graph in dependencies.json (02..05 wait for it).

Scheduled daily (catchup off) and can be triggered by hand; the coordinator starts its dependents per partition.
Its one task logs the partition (the logical date) and the conf inputs, sleeps about a second and writes a
marker file keyed by partition under $PIPELINE_OUTPUT_DIR (default: <tmp>/coordinator-pipelines), so a rerun
of a partition overwrites the same file.
Tests set PIPELINE_01_SCHEDULE=none so that unpausing it does not start a run nobody asked for.
"""

from __future__ import annotations

import os

from example_pipeline import example_dag

SCHEDULE = os.environ.get("PIPELINE_01_SCHEDULE", "@daily")

# Airflow DAG: the root runs on its own schedule (or by hand).
dag = example_dag("01_pipeline", "extract", __doc__, schedule=None if SCHEDULE.lower() == "none" else SCHEDULE)
