"""Read a sensor that polls another system's job (dbt Cloud, Glue, EMR, Spark on Kubernetes...) into a fact.

Rules (``docs/import-dags.md``, "Sensors on other systems' jobs"):
- **By class name.** Recognised by the name of a class among the task's classes
  (:data:`coordinator.core.importer.jobs.JOB_SENSORS`), as the loader recognises ``ExternalTaskSensor``: no provider
  module is imported here. A DAG file whose provider is not installed fails to import, and is reported with its cause
  like any other.
- **Arguments as written.** Each argument naming the job or its run is read from the task's attribute, as the DAG file
  gave it (never rendered): a string with Jinja markers is a template; an ``XComArg`` (``start.output``) or a template
  calling ``xcom_pull`` names the task whose output it is, with that task's operator class when it is in the DAG;
  anything else is a literal, as text.
- **Never raises**: an attribute the class does not have, or None, is MISSING.
"""

from __future__ import annotations

import re
from typing import Any

from coordinator.core.importer.facts import JobArgument, JobFact, ValueKind
from coordinator.core.importer.jobs import JOB_SENSORS

#: ``xcom_pull(task_ids="start")``, ``xcom_pull("start")``, ``xcom_pull(key="k", task_ids=["start"])``.
_PULL_KEYWORD = re.compile(r"xcom_pull\([^)]*?task_ids\s*=\s*[\[(]?\s*['\"]([^'\"]+)['\"]")
_PULL_POSITIONAL = re.compile(r"xcom_pull\(\s*[\[(]?\s*['\"]([^'\"]+)['\"]")


def job_fact(task: Any, dag: Any) -> JobFact | None:
    """The job a task of ``dag`` polls, when one of its classes is a known job sensor (**By class name**); else None."""
    for cls in type(task).__mro__:
        kind = JOB_SENSORS.get(cls.__name__)
        if kind is not None:
            arguments = tuple(_argument(name, getattr(task, name, None), dag) for name in kind.arguments)
            return JobFact(cls.__name__, str(cls.__module__), type(task).__name__, arguments)
    return None


def _argument(name: str, value: Any, dag: Any) -> JobArgument:
    """**Arguments as written**."""
    if value is None:
        return JobArgument(name, ValueKind.MISSING)
    operator = getattr(value, "operator", None)
    if "XComArg" in type(value).__name__ or getattr(operator, "task_id", None) is not None:
        task_id = getattr(operator, "task_id", None)
        text = f"{task_id}.output" if task_id is not None else type(value).__name__
        return _pulled(name, text, str(task_id) if task_id is not None else None, dag)
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        found = _PULL_KEYWORD.search(value) or _PULL_POSITIONAL.search(value)
        if found is not None:
            return _pulled(name, value, found.group(1), dag)
        return JobArgument(name, ValueKind.TEMPLATE, value)
    return JobArgument(name, ValueKind.LITERAL, str(value))


def _pulled(name: str, text: str, task_id: str | None, dag: Any) -> JobArgument:
    task = (getattr(dag, "task_dict", None) or {}).get(task_id) if task_id is not None else None
    return JobArgument(name, ValueKind.XCOM, text, task_id, type(task).__name__ if task is not None else None)
