"""Airflow's own view of DAG folders, for tests/test_import_rewrite_estates.py: ``python shape_oracle.py FOLDER...``
loads each folder with this interpreter's Airflow (3.x or 2.x) DagBag and prints one JSON line after ``SHAPES ``:
per folder, each DAG's timetable (class and serialized form), its tasks (id -> operator class) and its task edges, and
the files that failed to import.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _bag(folder: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag  # Airflow 2

        return DagBag(folder, include_examples=False)
    return DagBag(folder)


def _state(timetable: Any) -> str:
    """The timetable's whole state: Airflow 2's ``serialize()``, else (Airflow 3's SDK classes) its public
    attributes."""
    serialize = getattr(timetable, "serialize", None)
    if serialize is not None:
        return json.dumps(serialize(), sort_keys=True, default=str)
    names = [n for n in dir(timetable) if not n.startswith("_") and not callable(getattr(timetable, n, None))]
    return json.dumps({n: str(getattr(timetable, n, None)) for n in names}, sort_keys=True)


def shape(folder: str) -> dict[str, Any]:
    bag = _bag(folder)
    dags = {}
    for dag_id, dag in sorted(bag.dags.items()):
        timetable = dag.timetable
        dags[dag_id] = {
            "timetable": [type(timetable).__name__, str(getattr(timetable, "summary", "")), _state(timetable)],
            "tasks": {task.task_id: type(task).__name__ for task in dag.tasks},
            "edges": sorted([task.task_id, down] for task in dag.tasks for down in task.downstream_task_ids),
        }
    return {"dags": dags, "errors": {str(f): str(e).splitlines()[-1:] for f, e in bag.import_errors.items()}}


if __name__ == "__main__":
    sys.stdout.write("SHAPES " + json.dumps([shape(folder) for folder in sys.argv[1:]]) + "\n")
