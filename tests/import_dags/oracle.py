"""The oracle of the import-dags tests: the dates an ExternalTaskSensor itself waits for, computed by Airflow.

Run with the Python of an Airflow environment (3.x: .venv; 2.x: .venv-airflow2):
``python oracle.py DAGS_FOLDER < requests.json > answers.json``. A request is ``{"dag", "task", "partitions"}``
(canonical UTC partitions of the sensor's DAG); the answer maps each partition to the sorted UTC dates the sensor's
own ``_get_dttm_filter(context)`` returns for a run at that logical date. With ``"field": "logical_date"`` the task is
a marker or a trigger and the answer is the date its templated field renders to for that run. With ``"asset"`` and
``"producer"`` the DAG is a partitioned-asset consumer, the partitions are the producer's, and the answer maps each
consumer partition date reached to the producer dates the scheduler makes it wait for. Airflow 3 gets the
context a task really runs with (``RuntimeTaskInstance.get_template_context()`` fed the DagRun the API server would
send); Airflow 2 gets the context keys its sensor reads (``logical_date``/``execution_date``, the data interval,
``ds``, ``ts``). Nothing here imports the coordinator: the answers are Airflow's alone.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pendulum

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _dagbag(folder: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(folder)
    except ImportError:
        from airflow.models.dagbag import DagBag

        return DagBag(folder, include_examples=False)


def _context_af3(dag: Any, task: Any, at: pendulum.DateTime) -> Any:
    from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    run_id = f"scheduled__{at.isoformat()}"
    dag_run = DagRun(
        dag_id=dag.dag_id, run_id=run_id, logical_date=at, data_interval_start=at, data_interval_end=at,
        run_after=at, start_date=at, end_date=None, run_type="scheduled", state="running",
        consumed_asset_events=[], partition_key=None,
    )  # fmt: skip
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task.task_id, dag_id=dag.dag_id, run_id=run_id, try_number=1,
        dag_version_id=uuid.uuid4(), map_index=-1, task=task, start_date=at, max_tries=0,
    )  # fmt: skip
    ti._ti_context_from_server = TIRunContext(dag_run=dag_run, max_tries=0)
    return ti.get_template_context()


def _context_af2(dag: Any, task: Any, at: pendulum.DateTime) -> dict[str, Any]:
    return {
        "dag": dag, "task": task, "logical_date": at, "execution_date": at, "data_interval_start": at,
        "data_interval_end": at, "ds": at.strftime("%Y-%m-%d"), "ts": at.isoformat(),
    }  # fmt: skip


def _rendered(task: Any, field: str, context: Any) -> list[datetime]:
    """A marker's or trigger's templated date: rendered by the operator with the run's context, then parsed the way
    the operator parses it (TriggerDagRunOperator: ``timezone.parse``; Airflow 2's marker clear: ``pendulum.parse``,
    both in UTC by default)."""
    value = task.render_template(getattr(task, field), context)
    if isinstance(value, datetime):
        return [value]
    return [pendulum.parse(str(value), tz="UTC")]


def _producer_keys(producer: Any) -> tuple[Any, Any]:
    """(the key of the producer's run at a date, the date of a key): a CronPartitionTimetable's own, or, for a
    partitioned consumer producing in turn (a chained rollup), its mapper's periods."""
    if type(producer).__name__ == "CronPartitionTimetable":
        return (lambda at: producer._get_partition_info(at)[1]), producer._decode_partition_date
    mapper = producer.default_partition_mapper
    inner = mapper.upstream_mapper if mapper.is_rollup else mapper
    return (lambda at: inner.format(at.in_timezone(inner._timezone))), inner.to_partition_date


def _partitioned(bag: Any, request: dict[str, Any]) -> dict[str, list[str]]:
    """A partitioned consumer's runs, as the scheduler computes them: for each producer run at the given partitions,
    the consumer's partition key from the mapper, its partition date, and the producer runs it waits for (a rollup:
    ``to_upstream``; any other mapper: the producer's runs within three days whose key maps to the same key)."""
    from datetime import timedelta

    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    consumer = decode_timetable(encode_timetable(bag.dags[request["dag"]].timetable))
    producer = decode_timetable(encode_timetable(bag.dags[request["producer"]].timetable))
    mapper = consumer.get_partition_mapper(uri=request["asset"])
    key_of, date_of = _producer_keys(producer)

    def utc(value: datetime) -> str:
        return value.astimezone(UTC).strftime(FORMAT)

    answers: dict[str, list[str]] = {}
    for partition in request["partitions"]:
        at = pendulum.instance(datetime.strptime(partition, FORMAT).replace(tzinfo=UTC))
        consumer_key = mapper.to_downstream(key_of(at))
        if mapper.is_rollup:
            upstream = [date_of(k) for k in mapper.to_upstream(consumer_key)]
        else:
            near = producer.iter_partition_dagrun_infos(earliest=at - timedelta(days=3), latest=at + timedelta(days=3))
            upstream = [i.partition_date for i in near if mapper.to_downstream(i.partition_key) == consumer_key]
        answers[utc(mapper.to_partition_date(consumer_key))] = sorted({utc(d) for d in upstream})
    return answers


def main() -> None:
    import airflow

    af3 = int(airflow.__version__.split(".")[0]) >= 3
    bag = _dagbag(sys.argv[1])
    answers = []
    for request in json.load(sys.stdin):
        if "asset" in request:
            answers.append({"dag": request["dag"], "task": request["asset"], "dates": _partitioned(bag, request)})
            continue
        dag = bag.dags[request["dag"]]
        task = dag.get_task(request["task"])
        dates: dict[str, list[str]] = {}
        for partition in request["partitions"]:
            at = pendulum.instance(datetime.strptime(partition, FORMAT).replace(tzinfo=UTC)).in_timezone("UTC")
            context = _context_af3(dag, task, at) if af3 else _context_af2(dag, task, at)
            found = _rendered(task, request["field"], context) if "field" in request else task._get_dttm_filter(context)
            dates[partition] = sorted({d.astimezone(UTC).strftime(FORMAT) for d in found})
        answers.append({"dag": request["dag"], "task": request["task"], "dates": dates})
    json.dump({"airflow": airflow.__version__, "answers": answers}, sys.stdout)


if __name__ == "__main__":
    main()
