"""The oracle of ``tests/test_import_conditions.py``: when Airflow's scheduler runs an asset-triggered DAG.

Run with the Python of an Airflow 3.3 environment: ``python conditions_oracle.py DAGS_FOLDER < requests.json``.
A request ``{"dag", "kind": "condition"}`` is answered with the consumer's assets and, for every subset of them that
has updated, whether the scheduler's own ``AssetEvaluator`` (on the condition as the dag-processor serializes it) runs
the DAG. A request ``{"dag", "kind": "rollup", "producers", "partitions"}`` is answered, for each consumer partition
date, with the subsets of producers whose runs in that window make the rollup's ``wait_policy`` fire
(``is_satisfied_by_keys`` against the mapper's ``to_upstream``), each producer giving the key its
``CronPartitionTimetable`` formats for its run in the window. Nothing here imports the coordinator.
"""

from __future__ import annotations

import itertools
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _scheduler(timetable: Any) -> Any:
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    return decode_timetable(encode_timetable(timetable))


def _subsets(items: list[str]) -> list[list[str]]:
    return [list(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


def _condition(dag: Any) -> dict[str, Any]:
    from airflow.assets.evaluation import AssetEvaluator
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey

    condition = _scheduler(dag.timetable).asset_condition
    keys = {key.uri: SerializedAssetUniqueKey(name=key.name, uri=key.uri) for key, _ in condition.iter_assets()}
    uris = sorted(keys)
    evaluator = AssetEvaluator(None)  # plain assets and &/| never reach the session
    fired = [s for s in _subsets(uris) if evaluator.run(condition, {keys[u]: u in s for u in uris})]
    return {"assets": uris, "satisfied": fired}


def _rollup(bag: Any, dag: Any, producers: list[str], partitions: list[str]) -> dict[str, Any]:
    timetable = _scheduler(dag.timetable)
    ((key, _),) = list(timetable.asset_condition.iter_assets())
    mapper = timetable.get_partition_mapper(name=key.name, uri=key.uri)
    answers: dict[str, Any] = {}
    for partition in partitions:
        start = datetime.strptime(partition, FORMAT).replace(tzinfo=UTC)
        consumer_key = mapper.upstream_mapper.format(start)
        expected = frozenset(mapper.to_upstream(consumer_key))
        runs: dict[str, str] = {}
        for name in producers:
            produced = _scheduler(bag.dags[name].timetable)
            tick = produced._get_next(pendulum.instance(start - timedelta(seconds=1)))
            runs[name] = str(produced._get_partition_info(pendulum.instance(tick))[1])
        fired = [
            s
            for s in _subsets(producers)
            if mapper.wait_policy.is_satisfied_by_keys(matched={runs[p] for p in s}, expected=expected).satisfied
        ]
        answers[partition] = {
            "keys": runs,
            "in_window": sorted(k for k in runs.values() if k in expected),
            "fired": fired,
        }
    return answers


def main() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(sys.argv[1])
    answers = []
    for request in json.load(sys.stdin):
        dag = bag.dags[request["dag"]]
        if request["kind"] == "condition":
            answers.append(_condition(dag))
        else:
            answers.append(_rollup(bag, dag, request["producers"], request["partitions"]))
    sys.stdout.write("ORACLE " + json.dumps(answers) + "\n")


if __name__ == "__main__":
    main()
