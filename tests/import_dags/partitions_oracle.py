"""The oracle of ``tests/test_import_partitions.py``: what Airflow's own partition mappers make a partitioned consumer
wait for.

Run with the Python of an Airflow 3.3 environment: ``python partitions_oracle.py DAGS_FOLDER < requests.json``. A
request ``{"dag", "asset", "producer", "partitions"}`` names a ``PartitionedAssetTimetable`` consumer, one of its
assets, the DAG producing it and sample partitions of that producer (canonical UTC times, or segment names for a
producer keyed by names). The answer gives each sample's partition key as the producer's timetable formats it
(``keys``), and for every consumer key Airflow's mapper gives (``to_downstream``): its ``partition_date``, the producer
partitions the scheduler makes it wait for (a rollup: ``to_upstream`` of the key; any other mapper: the samples whose
keys it maps there), how many of them fire it (the wait policy's threshold; None: all), whether it is a rollup and
whether the consumer's run carries its producer's partition date (the identity mapper). Every object is the
scheduler's (serialized and decoded, as the dag-processor stores it). Nothing here imports the coordinator.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import pendulum

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _scheduler(timetable: Any) -> Any:
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    return decode_timetable(encode_timetable(timetable))


def _utc(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(FORMAT)


def _mapper(timetable: Any, uri: str) -> Any:
    ((key, _),) = [(k, v) for k, v in timetable.asset_condition.iter_assets() if k.uri == uri] or [(None, None)]
    return timetable.get_partition_mapper(name=getattr(key, "name", ""), uri=uri)


def _producer(bag: Any, dag_id: str) -> tuple[Any, Any]:
    """(partition -> key, key -> partition) of a producer: its CronPartitionTimetable's own keys; a consumer's, its
    mapper's periods or its fixed key; a DAG whose keys its tasks name (PartitionedAtRuntime), the name itself."""
    timetable = _scheduler(bag.dags[dag_id].timetable)
    kind = type(timetable).__name__
    if kind == "CronPartitionTimetable":

        def key_of(partition: str) -> str:
            at = pendulum.instance(datetime.strptime(partition, FORMAT).replace(tzinfo=UTC))
            return str(timetable._get_partition_info(at)[1])

        return key_of, lambda key: _utc(timetable._decode_partition_date(key))
    if kind == "PartitionedAssetTimetable":
        mapper = timetable.default_partition_mapper
        inner = mapper.upstream_mapper if mapper.is_rollup else mapper
        if type(inner).__name__ == "FixedKeyMapper":
            return (lambda partition: partition), (lambda key: key)

        def period(partition: str) -> str:
            at = datetime.strptime(partition, FORMAT).replace(tzinfo=UTC)
            return str(inner.format(pendulum.instance(at).in_timezone(inner._timezone)))

        return period, lambda key: _utc(inner.to_partition_date(key))
    return (lambda partition: partition), (lambda key: key)


def _answer(bag: Any, request: dict[str, Any]) -> dict[str, Any]:
    mapper = _mapper(_scheduler(bag.dags[request["dag"]].timetable), request["asset"])
    key_of, partition_of = _producer(bag, request["producer"])
    keys = {p: key_of(p) for p in request["partitions"]}
    reached: dict[str, list[str]] = {}
    for partition, key in keys.items():
        down = mapper.to_downstream(key)
        for target in [down] if isinstance(down, str) else list(down):
            reached.setdefault(str(target), []).append(partition)
    consumers: dict[str, Any] = {}
    for target, found in sorted(reached.items()):
        date = mapper.to_partition_date(target)
        need = None
        if mapper.is_rollup:
            expected = sorted(partition_of(k) for k in mapper.to_upstream(target))
            policy = mapper.wait_policy
            if type(policy).__name__ == "MinimumCount":
                need = policy.n if policy.n > 0 else max(0, len(expected) + policy.n)
        else:
            expected = sorted(found)
        consumers[target] = {
            "date": None if date is None else _utc(date),
            "upstream": expected,
            "need": need,
            "rollup": bool(mapper.is_rollup),
            # The identity mapper carries its producer's partition_date (``carry_partition_date``).
            "carries": type(mapper).__name__ == "IdentityMapper",
        }
    return {"keys": keys, "consumers": consumers}


def main() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(sys.argv[1])
    answers = [_answer(bag, request) for request in json.load(sys.stdin)]
    sys.stdout.write("ORACLE " + json.dumps(answers) + "\n")


if __name__ == "__main__":
    main()
