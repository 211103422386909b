"""Airflow 3.2+ partitioned assets: what a ``PartitionedAssetTimetable`` consumer waits for, computed by Airflow.

Rules (``docs/import-dags.md``, "Partitioned assets"):
- **The scheduler's own objects.** Runs inside Airflow 3.2+, with the loader. The consumer's timetable and the
  producer's ``CronPartitionTimetable`` are turned into the scheduler's own objects the way the dag-processor stores
  them (serialized, then decoded), so the mapper's ``to_downstream``, ``to_upstream`` and ``to_partition_date`` are the
  code the scheduler runs.
- **Keys from the producer's runs.** For each sample run of the producer (its cron ticks,
  ``core/importer/schedule.py``'s **Sample partitions**) the producer's partition key is the one its timetable formats,
  and the mapper gives the consumer's key and partition date. A rollup (``RollupMapper`` waiting for all:
  ``WaitForAll``) makes the consumer's run wait for every producer key of its window (``to_upstream``); any other mapper
  makes a consumer run as soon as one producer key arrives, which is an edge only when no two producer runs share a
  consumer key.
- **Dates or labels.** A producer's keys are dates when it runs on a ``CronPartitionTimetable`` (without ``run_offset``:
  its key is its tick) or is itself a partitioned consumer on one temporal mapper (a chained rollup: its keys are that
  mapper's periods). What is not a date mapping is said, with the mapper's name: a fan-out, another wait policy, a key
  with no date, a producer whose keys are not dates.
- **Never raises**: an error of Airflow's code becomes the mapping's problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coordinator.core.grid import Grid
from coordinator.core.importer.facts import AssetMapping, DateSample, ProducerSamples
from coordinator.core.importer.schedule import PERIOD_CRONS, sample_partitions


def scheduler_timetable(timetable: Any) -> Any:
    """The scheduler's object for a DAG file's timetable (**The scheduler's own objects**): serialized and decoded, as
    the dag-processor stores it and the scheduler reads it."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    return decode_timetable(encode_timetable(timetable))


def mapper_name(mapper: Any) -> str:
    kind = type(mapper).__name__
    if getattr(mapper, "is_rollup", False):
        inner = type(getattr(mapper, "upstream_mapper", None)).__name__
        return f"{kind}({inner}, {type(getattr(mapper, 'window', None)).__name__})"
    return kind


def asset_mapping(consumer: Any, uri: str, producers: list[Any]) -> AssetMapping:
    """**Keys from the producer's runs** to **Never raises** for one asset of a partitioned consumer (``consumer`` is
    the scheduler's timetable)."""
    try:
        mapper = consumer.get_partition_mapper(uri=uri)
    except Exception as exc:
        return AssetMapping(uri, "?", problem=f"its partition mapper could not be read: {type(exc).__name__}: {exc}")
    name = mapper_name(mapper)
    counted = getattr(mapper, "is_rollup", False) and type(mapper.wait_policy).__name__ == "MinimumCount"
    if counted and len(producers) > 1:
        try:
            return _counted(mapper, name, uri, producers)
        except Exception as exc:  # **Never raises**
            return AssetMapping(uri, name, problem=f"{name} could not be evaluated: {type(exc).__name__}: {exc}")
    if type(mapper).__name__ == "IdentityMapper" or len(producers) != 1:
        return AssetMapping(uri, name)  # equal keys; no or several producers are reported by the translation
    try:
        return _sampled(mapper, name, uri, producers[0])
    except Exception as exc:  # Airflow's mapper or timetable raised: a finding, not a crash (**Never raises**)
        return AssetMapping(uri, name, problem=f"{name} could not be evaluated: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class _Keys:
    """A producer's partition keys: its grid, the key of its run at a point, the date of a key
    (**Keys from the producer's runs**)."""

    grid: Grid
    key_of: Callable[[datetime], str]
    date_of: Callable[[str], datetime]


def _keys(producer: Any) -> _Keys | str:
    """How ``producer`` keys its runs, or why its keys are not dates: a ``CronPartitionTimetable`` formats its cron
    ticks; a partitioned consumer on one temporal mapper (a chained rollup: hourly -> daily -> monthly) keys its runs
    by that mapper's periods."""
    timetable = scheduler_timetable(producer.timetable)
    kind = type(timetable).__name__
    if kind == "CronPartitionTimetable":
        if getattr(timetable, "_run_offset", 0):
            return f"{producer.dag_id}'s CronPartitionTimetable has a run_offset (its key is not its run's date)"
        import pendulum

        zone = timetable._timezone
        return _Keys(
            Grid(str(timetable._expression), str(getattr(zone, "name", zone))),
            lambda at: str(timetable._get_partition_info(pendulum.instance(at))[1]),
            lambda key: _utc(timetable._decode_partition_date(key)),
        )
    if kind == "PartitionedAssetTimetable":
        uris = [key.uri for key, _ in timetable.asset_condition.iter_assets()]
        inners = {_period_mapper(timetable.get_partition_mapper(uri=uri)) for uri in uris}
        if len(inners) == 1:
            (inner,) = inners
            if inner is not None:
                zone = inner._timezone
                cron = PERIOD_CRONS[type(inner).__name__]
                return _Keys(
                    Grid(cron, str(getattr(zone, "name", zone))),
                    lambda at: str(inner.format(at.astimezone(inner._timezone))),
                    lambda key: _utc(inner.to_partition_date(key)),
                )
    return (
        f"{producer.dag_id} runs on a {kind}, not a CronPartitionTimetable or a temporal mapper: its partition keys "
        f"are not dates"
    )


def _period_mapper(mapper: Any) -> Any:
    """The temporal mapper whose periods a consumer's keys are (a rollup's upstream mapper), or None."""
    inner = mapper.upstream_mapper if getattr(mapper, "is_rollup", False) else mapper
    return inner if type(inner).__name__ in PERIOD_CRONS else None


def _sampled(mapper: Any, name: str, uri: str, producer: Any) -> AssetMapping:
    keys = _keys(producer)
    if isinstance(keys, str):
        return AssetMapping(uri, name, problem=f"{name}: {keys}; keep the asset schedule")
    rollup = bool(getattr(mapper, "is_rollup", False))
    if rollup and type(mapper.wait_policy).__name__ != "WaitForAll":
        policy = _policy(mapper.wait_policy)
        return AssetMapping(uri, name, problem=f"{name} with {policy}: the consumer runs once part of "
                            f"{producer.dag_id}'s runs in its window have arrived; a condition group counts DAGs (or "
                            "their tasks), not runs of one DAG, so part of one producer's window has no exact form; "
                            "keep the asset schedule", policy=policy)  # fmt: skip
    runs: dict[str, list[datetime]] = {}
    for partition in sample_partitions(keys.grid):
        key = keys.key_of(partition)
        down = mapper.to_downstream(key)
        targets: list[str] = [down] if isinstance(down, str) else [str(k) for k in down]
        if len(targets) != 1:
            why = f"fans {producer.dag_id}'s key {key} out to {len(targets)} consumer runs: an edge maps a run"
            return AssetMapping(uri, name, problem=f"{name} {why} to the runs it waits for; keep the asset schedule")
        runs.setdefault(targets[0], []).append(partition)
    samples = []
    for key, found in sorted(runs.items()):
        at = mapper.to_partition_date(key)
        if at is None:
            return AssetMapping(uri, name, problem=f"{name}: the consumer's key {key!r} has no date")
        if rollup:
            dates = tuple(sorted(keys.date_of(k) for k in mapper.to_upstream(key)))
        elif len(found) > 1:
            shown = ", ".join(f"{p:%Y-%m-%dT%H:%M:%SZ}" for p in found[:3])
            return AssetMapping(uri, name, problem=f"{name} gives {producer.dag_id}'s runs at {shown}... one consumer "
                                f"key {key!r}: Airflow runs the consumer when the first of them arrives (and again for "
                                "later ones), an edge waits for all; to wait for all, use RollupMapper; keep the asset "
                                "schedule")  # fmt: skip
        else:
            dates = tuple(found)
        samples.append(DateSample(_utc(at), dates))
    inner = _period_mapper(mapper)
    period = type(inner).__name__ if inner is not None else None
    zone = getattr(inner, "_timezone", "UTC")
    return AssetMapping(uri, name, tuple(samples), period, str(getattr(zone, "name", zone)))


def _policy(policy: Any) -> str:
    n = getattr(policy, "n", None)
    return type(policy).__name__ if n is None else f"{type(policy).__name__}({n})"


def _counted(mapper: Any, name: str, uri: str, producers: list[Any]) -> AssetMapping:
    """A rollup with ``MinimumCount(n)`` over an asset of several producers (facts' **Counted rollups**): for each
    consumer key the producers' runs give, its window must hold exactly one run of every producer, no two with the same
    key, and the policy's threshold (n, or the window's size + n for a negative n) must be the same on every sample;
    the mapping then needs that many of the producers."""
    policy = _policy(mapper.wait_policy)

    def refused(why: str) -> AssetMapping:
        return AssetMapping(uri, name, problem=f"{name} with {policy}: {why}; keep the asset schedule", policy=policy)

    found: dict[str, _Keys] = {}
    for producer in producers:
        keys = _keys(producer)
        if isinstance(keys, str):
            return refused(keys)
        found[str(producer.dag_id)] = keys
    consumer_keys: set[str] = set()
    for keys in found.values():
        for partition in sample_partitions(keys.grid):
            down = mapper.to_downstream(keys.key_of(partition))
            consumer_keys.update([down] if isinstance(down, str) else [str(k) for k in down])
    per: dict[str, list[DateSample]] = {dag_id: [] for dag_id in found}
    needs: set[int] = set()
    for key in sorted(consumer_keys):
        at = mapper.to_partition_date(key)
        if at is None:
            return refused(f"the consumer's key {key!r} has no date")
        expected = frozenset(mapper.to_upstream(key))
        owner: dict[str, str] = {}
        for dag_id, keys in found.items():
            mine = sorted(
                k for k in expected if keys.grid.contains(keys.date_of(k)) and keys.key_of(keys.date_of(k)) == k
            )
            if len(mine) != 1:
                return refused(f"{dag_id} has {len(mine)} runs in the window of the consumer's key {key!r} (a group "
                               "member is one run of each producer)")  # fmt: skip
            if mine[0] in owner:
                return refused(
                    f"{dag_id} and {owner[mine[0]]} both produce the key {mine[0]!r}, which Airflow counts once"
                )
            owner[mine[0]] = dag_id
            per[dag_id].append(DateSample(_utc(at), (keys.date_of(mine[0]),)))
        n = int(mapper.wait_policy.n)
        needs.add(n if n > 0 else max(0, len(expected) + n))
    if len(needs) != 1:
        return refused(f"it needs {' or '.join(map(str, sorted(needs)))} keys as its window's size changes")
    (need,) = needs
    if not 1 <= need <= len(found):
        return refused(f"it needs {need} keys of its window, and only {len(found)} DAGs produce one each")
    inner = _period_mapper(mapper)
    period = type(inner).__name__ if inner is not None else None
    zone = getattr(inner, "_timezone", "UTC")
    counted = tuple(ProducerSamples(dag_id, tuple(samples)) for dag_id, samples in sorted(per.items()))
    return AssetMapping(
        uri, name, (), period, str(getattr(zone, "name", zone)), need=need, producers=counted, policy=policy
    )


def _produces(keys: _Keys, key: str) -> bool:
    """Whether a run of the producer has ``key``: its date is on the producer's grid and formats back to it."""
    at = keys.date_of(key)
    return keys.grid.contains(at) and keys.key_of(at) == key


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), UTC)
