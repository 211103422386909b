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
- **Counted windows.** A rollup with ``MinimumCount(n)`` over one producer's window is that window as an edge with
  ``at_least``: n, or the window's size + n for a negative n, the same on every sample (else reported).
- **Key formats.** A consumer keyed by a temporal mapper is triggered with its partition key: the mapper's
  ``output_format`` is its ``key_format`` when it is a strftime format (a quarter's ``{quarter}`` is not).
- **Segments.** Keys that are names: ``AllowedKeyMapper(keys)`` keeps each allowed key (both DAGs have those
  segments, the same one on each side); ``RollupMapper(FixedKeyMapper(k), SegmentWindow(s))`` waits for the segments
  ``s`` of the producer under the consumer's one key ``k`` (all of them, or ``at_least`` for ``MinimumCount``);
  ``FanOutMapper(IdentityMapper, SegmentWindow(s), IdentityMapper)`` runs every segment of ``s`` for any producer key,
  which is a partition mapping only from a producer with one key (a ``FixedKeyMapper`` rollup). Each is checked on
  Airflow's mapper, key by key, before it is written.
- **Time fan-out.** A ``FanOutMapper`` over time (a weekly key to its seven days) is known like any other mapper: for
  each consumer key, the sampled producer runs whose keys fan out to it; one run each is an edge when the fit finds
  one (the week containing the day), else it is reported.
- **Distinct keys.** An identity mapper is an edge between equal partitions when no two sampled runs of the
  producer have one key (a ``key_format`` without the hour, or a local hour that repeats when daylight saving ends,
  gives two runs one key, which Airflow runs the consumer once for): else reported.
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


def asset_mapping(consumer: Any, uri: str, producers: list[Any], name: str = "") -> AssetMapping:
    """**Keys from the producer's runs** to **Never raises** for one asset of a partitioned consumer (``consumer`` is
    the scheduler's timetable; ``name``: the asset's name, for a mapper configured on ``Asset.ref(name=...)``)."""
    try:
        mapper = consumer.get_partition_mapper(name=name, uri=uri)
    except Exception as exc:
        return AssetMapping(uri, "?", problem=f"its partition mapper could not be read: {type(exc).__name__}: {exc}")
    name = mapper_name(mapper)
    if _segment_kind(mapper) is not None:
        try:
            return _segments(mapper, name, uri, producers)
        except Exception as exc:  # **Never raises**
            return AssetMapping(uri, name, problem=f"{name} could not be evaluated: {type(exc).__name__}: {exc}")
    counted = getattr(mapper, "is_rollup", False) and type(mapper.wait_policy).__name__ == "MinimumCount"
    if counted and len(producers) > 1:
        try:
            return _counted(mapper, name, uri, producers)
        except Exception as exc:  # **Never raises**
            return AssetMapping(uri, name, problem=f"{name} could not be evaluated: {type(exc).__name__}: {exc}")
    if len(producers) != 1:
        return AssetMapping(uri, name)  # no or several producers are reported by the translation
    if type(mapper).__name__ == "IdentityMapper":
        try:
            return _identity(name, uri, producers[0])
        except Exception as exc:  # **Never raises**
            return AssetMapping(uri, name, problem=f"{name} could not be evaluated: {type(exc).__name__}: {exc}")
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


def _identity(name: str, uri: str, producer: Any) -> AssetMapping:
    """The identity mapper (**Distinct keys**): equal keys, an edge between equal partitions, when no two of the
    producer's runs share a key."""
    keys = _keys(producer)
    if isinstance(keys, str):
        return AssetMapping(uri, name)  # keys that are names or decided at run time pass through unchanged
    seen: dict[str, datetime] = {}
    for partition in sample_partitions(keys.grid):
        key = keys.key_of(partition)
        if key in seen:
            runs = f"{seen[key]:%Y-%m-%dT%H:%M:%SZ} and {partition:%Y-%m-%dT%H:%M:%SZ}"
            return AssetMapping(uri, name, problem=f"{name}: {producer.dag_id}'s runs at {runs} have one key {key!r} "
                                "(its key_format does not tell them apart): Airflow runs the consumer once for both, "
                                "an edge once for each; keep the asset schedule")  # fmt: skip
        seen[key] = partition
    return AssetMapping(uri, name)


def _period_mapper(mapper: Any) -> Any:
    """The temporal mapper whose periods a consumer's keys are (a rollup's upstream mapper, a fan-out's downstream
    mapper), or None."""
    inner = mapper.upstream_mapper if getattr(mapper, "is_rollup", False) else mapper
    if type(mapper).__name__ == "FanOutMapper":
        inner = mapper.downstream_mapper
    return inner if type(inner).__name__ in PERIOD_CRONS else None


def _sampled(mapper: Any, name: str, uri: str, producer: Any) -> AssetMapping:
    keys = _keys(producer)
    if isinstance(keys, str):
        return AssetMapping(uri, name, problem=f"{name}: {keys}; keep the asset schedule")
    rollup = bool(getattr(mapper, "is_rollup", False))
    counted = rollup and type(mapper.wait_policy).__name__ == "MinimumCount"
    policy = _policy(mapper.wait_policy) if counted else None
    needs: set[int] = set()
    runs: dict[str, list[datetime]] = {}
    for partition in sample_partitions(keys.grid):
        key = keys.key_of(partition)
        down = mapper.to_downstream(key)
        targets: list[str] = [down] if isinstance(down, str) else [str(k) for k in down]
        if len(targets) != 1 and type(mapper).__name__ != "FanOutMapper":
            why = f"fans {producer.dag_id}'s key {key} out to {len(targets)} consumer runs: an edge maps a run"
            return AssetMapping(uri, name, problem=f"{name} {why} to the runs it waits for; keep the asset schedule")
        for target in targets:  # **Time fan-out**: each consumer key is known by the producer runs mapped to it
            runs.setdefault(target, []).append(partition)
    samples = []
    for key, found in sorted(runs.items()):
        at = mapper.to_partition_date(key)
        if at is None:
            return AssetMapping(uri, name, problem=f"{name}: the consumer's key {key!r} has no date")
        if rollup:
            dates = tuple(sorted(keys.date_of(k) for k in mapper.to_upstream(key)))
            if counted:  # **Counted windows**
                n = int(mapper.wait_policy.n)
                needs.add(n if n > 0 else max(0, len(dates) + n))
        elif len(found) > 1:
            shown = ", ".join(f"{p:%Y-%m-%dT%H:%M:%SZ}" for p in found[:3])
            return AssetMapping(uri, name, problem=f"{name} gives {producer.dag_id}'s runs at {shown}... one consumer "
                                f"key {key!r}: Airflow runs the consumer when the first of them arrives (and again for "
                                "later ones), an edge waits for all; to wait for all, use RollupMapper; keep the asset "
                                "schedule")  # fmt: skip
        else:
            dates = tuple(found)
        samples.append(DateSample(_utc(at), dates))
    at_least = None
    if counted:
        if len(needs) != 1:
            shown = " or ".join(map(str, sorted(needs)))
            why = f"it needs {shown} of {producer.dag_id}'s runs as its window's size changes"
            return AssetMapping(uri, name, problem=f"{name} with {policy}: {why}, an edge's at_least is one number; "
                                "keep the asset schedule", policy=policy)  # fmt: skip
        (at_least,) = needs
        if not at_least >= 1:
            return AssetMapping(uri, name, problem=f"{name} with {policy} needs no run; keep the asset schedule")
    inner = _period_mapper(mapper)
    period = type(inner).__name__ if inner is not None else None
    zone = getattr(inner, "_timezone", "UTC")
    return AssetMapping(
        uri,
        name,
        tuple(samples),
        period,
        str(getattr(zone, "name", zone)),
        policy=policy,
        at_least=at_least,
        key_format=key_format(inner),
    )


def key_format(inner: Any) -> str | None:
    """**Key formats**: a temporal mapper's ``output_format`` when strftime alone writes it, else None."""
    found = getattr(inner, "output_format", None)
    return found if isinstance(found, str) and "{" not in found and "%Y" in found else None


def _segment_kind(mapper: Any) -> str | None:
    """Which **Segments** form ``mapper`` is (``allowed``, ``rollup``, ``fan-out``), or None for a time mapping."""
    kind = type(mapper).__name__
    if kind == "AllowedKeyMapper":
        return "allowed"
    window = type(getattr(mapper, "window", None)).__name__
    if window != "SegmentWindow":
        return None
    upstream = type(getattr(mapper, "upstream_mapper", None)).__name__
    if getattr(mapper, "is_rollup", False) and upstream == "FixedKeyMapper":
        return "rollup"
    downstream = type(getattr(mapper, "downstream_mapper", None)).__name__
    if kind == "FanOutMapper" and upstream == "IdentityMapper" and downstream == "IdentityMapper":
        return "fan-out"
    return None


def _segments(mapper: Any, name: str, uri: str, producers: list[Any]) -> AssetMapping:
    """**Segments**: the consumer's segments, the producer's, the edge's rule and count, each checked on Airflow's
    mapper; what does not hold is the mapping's problem."""
    kind = _segment_kind(mapper)
    if len(producers) != 1:
        return AssetMapping(uri, name)  # no or several producers: reported by the translation
    (producer,) = producers
    if kind == "allowed":
        allowed = tuple(sorted({str(k) for k in mapper.allowed_keys}))
        wrong = [k for k in allowed if mapper.to_downstream(k) != k]
        if wrong or not allowed:
            return AssetMapping(uri, name, problem=f"{name} does not keep the keys {wrong}; keep the asset schedule")
        return AssetMapping(uri, name, segments=allowed, upstream_segments=allowed)
    window = tuple(sorted(mapper.window.to_upstream(None)))
    if kind == "rollup":
        target = str(mapper.upstream_mapper.downstream_key)
        if any(mapper.to_downstream(k) != target for k in window) or set(mapper.to_upstream(target)) != set(window):
            return AssetMapping(uri, name, problem=f"{name}: its window and key disagree; keep the asset schedule")
        policy = _policy(mapper.wait_policy)
        at_least = None
        if type(mapper.wait_policy).__name__ == "MinimumCount":
            n = int(mapper.wait_policy.n)
            at_least = n if n > 0 else max(0, len(window) + n)
            if not 1 <= at_least <= len(window):
                return AssetMapping(uri, name, problem=f"{name} with {policy} over {len(window)} segments never "
                                    "holds as an edge; keep the asset schedule", policy=policy)  # fmt: skip
        return AssetMapping(uri, name, segments=(target,), upstream_segments=window, segment_rule="all",
                            at_least=at_least, policy=policy)  # fmt: skip
    # **Segments**' fan-out: every segment for any producer key; an edge needs the producer's one key.
    source = _fixed_key(producer)
    if source is None:
        return AssetMapping(uri, name, problem=f"{name} runs every segment of {list(window)} for each key "
                            f"{producer.dag_id} emits, whatever the key: a partition of the consumer needs a run of "
                            f"{producer.dag_id} it cannot name (its keys are not one fixed key); keep the asset "
                            "schedule")  # fmt: skip
    fanned = sorted(str(k) for k in mapper.to_downstream(source))
    if fanned != list(window):
        return AssetMapping(uri, name, problem=f"{name} maps {source!r} to {fanned}; keep the asset schedule")
    return AssetMapping(uri, name, segments=window, upstream_segments=(source,), segment_rule="all")


def _fixed_key(producer: Any) -> str | None:
    """The one partition key every run of ``producer`` has: a consumer on one ``FixedKeyMapper`` rollup."""
    timetable = scheduler_timetable(producer.timetable)
    if type(timetable).__name__ != "PartitionedAssetTimetable":
        return None
    mappers = [timetable.default_partition_mapper]  # every mapper it may use, the default included
    mappers += [*getattr(timetable, "_name_to_partition_mapper", {}).values()]
    mappers += [*getattr(timetable, "_uri_to_partition_mapper", {}).values()]
    keys = set()
    for found in mappers:
        if _segment_kind(found) != "rollup":
            return None
        keys.add(str(found.upstream_mapper.downstream_key))
    return keys.pop() if len(keys) == 1 else None


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
