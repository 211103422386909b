"""Run-state records from DAG runs, and writing one of them to etcd with per-run ordering.

Shared by the listener's background writer and by the explicit task (``operator``).

Rules:
- **No Airflow import**: the dag run is duck-typed (``dag_id``, ``run_id``, ``logical_date``, ``partition_date``,
  ``partition_key``, ``clear_number``, ``start_date``, ``end_date``, ``run_type``, ``run_after``,
  ``consumed_asset_events``), so Airflow's ORM object, the Task SDK's ``DagRun`` and a test stand-in all work.
- **Partitions by one rule.** A run is recorded under the partitions :mod:`coordinator.core.run_partition` gives it
  (the REST audit applies the same rule): its logical date as always; a partitioned run's date and segment; an
  asset-triggered run's consumed events' source runs (Airflow 3.3's ``AssetEvent.source_dag_run``, read on the ORM
  object's own session, the one the scheduler's hook runs in: no connection of its own, no lock; in a task process the
  Task SDK's supervisor answers), one key per partition with the same record. A run of no partition, or one the key
  layout cannot name (a sub-second or naive date), is not recorded: :func:`run_writes_from_dag_run` says why
  (:class:`NotRecorded`) instead of raising; callers count and log it.
- **One writer.** Every write goes through the one run-record writer
  (:func:`coordinator.writers.run_records.write_run_record`): a compare-and-swap guarded by
  :func:`~coordinator.core.model.should_replace`, so an older attempt never overwrites a newer one and an identical
  rewrite is skipped (it would make a new generation and rerun every dependent). Of several runs of one partition the
  newest stands (semantics `newest-run-stands`: each record carries its run's ``run_after``), so a late hook or a
  clear of an older run never overwrites a newer run's record. A lost race re-decides. Every etcd call has a short
  timeout.
- **Configuration**: :mod:`coordinator.airflow_plugin.config` builds the :class:`WriterConfig` of the
  listener, the task and check-plugin (``COORDINATOR_*`` > ``[coordinator]`` > the etcd connection > defaults);
  :func:`config_from_env` reads ``COORDINATOR_*`` alone (``COORDINATOR_INSTANCE``, ``COORDINATOR_PLUGIN_QUEUE_SIZE``,
  ``COORDINATOR_PLUGIN_TASKS_TTL_S`` and the :class:`~coordinator.runtime.settings.Settings` ones).
- **Task instances alike.** Task instances (semantics `edge-task`) are duck-typed the same way: Airflow 3's task-SDK
  ``RuntimeTaskInstance`` (the DAG run under ``_ti_context_from_server.dag_run``), Airflow 2's and Airflow 3's ORM
  ``TaskInstance`` (``dag_run``). The keys are the DAG run's partitions; the value carries the DAG run's ``run_id`` and
  ``clear_number`` and the task's ``try_number``, written with :func:`~coordinator.core.task_facts.should_replace_task`.
  A mapped task instance (``map_index`` >= 0) is not one task state and is not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.core.model import (
    DEFAULT_INSTANCE,
    NAME_RE,
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
)
from coordinator.core.run_partition import (
    ASSET_TRIGGERED,
    AirflowRun,
    ConsumedEvent,
    Unrecorded,
    own_partition,
    run_partitions,
)
from coordinator.core.task_facts import TaskRecord, parse_task_record, should_replace_task
from coordinator.errors import ConfigError, StoreError, StoreUnavailable
from coordinator.runtime.retry import RetryAttempt, RetryPolicy, retry_call
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.writers.run_records import RunWriteStatus, write_run_record

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore

log = logging.getLogger(__name__)

INSTANCE_ENV = "COORDINATOR_INSTANCE"
QUEUE_SIZE_ENV = "COORDINATOR_PLUGIN_QUEUE_SIZE"
TASKS_TTL_ENV = "COORDINATOR_PLUGIN_TASKS_TTL_S"
# Errors that are not about reachability (permission denied, a bug) are retried this often, then given up.
MAX_OTHER_ATTEMPTS = 5


@dataclass(frozen=True)
class WriterConfig:
    """Where and how the plugin writes. Built by :mod:`coordinator.airflow_plugin.config` (environment,
    ``[coordinator]``, the etcd connection), or from the environment alone by :func:`config_from_env`."""

    etcd: EtcdSettings
    keys: KeyLayout = field(default_factory=KeyLayout)
    instance: str = DEFAULT_INSTANCE
    # 10 000 records (under 1 KiB each, so < 10 MiB): hours of run-state changes of a large deployment while etcd is
    # down; beyond that the scheduler's memory matters more and the REST audit repairs what was dropped.
    queue_size: int = 10_000
    # 2 s per etcd call: a healthy etcd answers in milliseconds; a hung call must not hold up the records behind it.
    op_timeout_s: float = 2.0
    # Backoff while etcd is down: 0.2 s doubling to 5 s, so a restart of etcd is noticed within seconds without
    # hammering it (and without filling the scheduler's log).
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    # At interpreter exit wait at most 2 s: the scheduler's shutdown must stay fast; what is left is logged.
    exit_flush_s: float = 2.0
    # Who wrote the record (``source`` field): the listener, or the explicit task (operator).
    source_kind: str = "airflow-plugin"
    # How old the list of named upstream tasks (the adopted graph's ``upstream_tasks``) may be before a process reads
    # it again: 30 s keeps the cost to one etcd read per worker host and half-minute, whatever the number of tasks
    # (every task process shares the host's cache file), and a task named by a new graph is recorded within 30 s of
    # its adoption; the leader's REST audit repairs a state missed meanwhile.
    tasks_ttl_s: float = 30.0
    # Where the host's copy of that list lives (None: the system's temporary directory); see ``task_names``.
    tasks_cache_dir: Path | None = None
    # A task process waits at most this long for its final state to reach etcd before it exits (its last chance:
    # nothing flushes a process that ends with os._exit). etcd answers in milliseconds; 2 s covers a reconnect.
    task_flush_s: float = 2.0

    @property
    def source(self) -> str:
        return f"{self.source_kind}:{self.instance}"

    def delivery_policy(self, deadline_s: float | None = None) -> RetryPolicy:
        """The backoff of the background writer (no deadline: it retries while the process lives) and of the
        operator (``deadline_s``): ``backoff_initial_s`` doubling to ``backoff_max_s``, each delay drawn from
        [0.8 d, d] so several schedulers cut off from etcd together do not retry in lockstep."""
        return RetryPolicy(
            initial_s=self.backoff_initial_s, max_s=self.backoff_max_s, jitter=0.2, deadline_s=deadline_s
        )


def make_config(
    settings: Settings,
    instance: str = DEFAULT_INSTANCE,
    queue_size: int = WriterConfig.queue_size,
    tasks_ttl_s: float = WriterConfig.tasks_ttl_s,
) -> WriterConfig:
    """The writer's configuration from coordinator settings; raise ConfigError if invalid."""
    if not NAME_RE.match(instance):
        raise ConfigError(f"invalid instance name {instance!r}: use letters, digits, '_', '.', '-'")
    if queue_size < 1:
        raise ConfigError(f"queue size must be at least 1, got {queue_size}")
    if not 0 <= tasks_ttl_s <= 3600:
        raise ConfigError(f"tasks TTL must be between 0 and 3600 seconds, got {tasks_ttl_s:g}")
    etcd = settings.etcd()
    # The store's own per-call timeout must not exceed the writer's: the writer's is the short one on purpose.
    etcd = etcd.model_copy(update={"timeout_s": min(etcd.timeout_s, WriterConfig.op_timeout_s)})
    return WriterConfig(
        etcd=etcd, keys=settings.keys, instance=instance, queue_size=queue_size, tasks_ttl_s=tasks_ttl_s
    )


def config_from_env() -> WriterConfig:
    """Read ``COORDINATOR_ETCD_*``, ``COORDINATOR_PREFIX``, ``COORDINATOR_INSTANCE`` and
    ``COORDINATOR_PLUGIN_QUEUE_SIZE`` from the process environment; raise ConfigError if invalid."""
    env = os.environ
    try:
        settings = Settings()  # reads every COORDINATOR_* it knows: etcd endpoints, auth, TLS, prefix
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid coordinator settings: {exc}") from exc
    raw_size = env.get(QUEUE_SIZE_ENV)
    try:
        queue_size = int(raw_size) if raw_size else WriterConfig.queue_size
    except ValueError as exc:
        raise ConfigError(f"{QUEUE_SIZE_ENV}={raw_size!r}: expected an integer") from exc
    raw_ttl = env.get(TASKS_TTL_ENV)
    try:
        tasks_ttl_s = float(raw_ttl) if raw_ttl else WriterConfig.tasks_ttl_s
    except ValueError as exc:
        raise ConfigError(f"{TASKS_TTL_ENV}={raw_ttl!r}: expected a number of seconds") from exc
    instance = env.get(INSTANCE_ENV, "").strip() or DEFAULT_INSTANCE
    try:
        return make_config(settings, instance, queue_size, tasks_ttl_s)
    except ConfigError as exc:
        raise ConfigError(f"{INSTANCE_ENV} / {QUEUE_SIZE_ENV} / {TASKS_TTL_ENV}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class RunStateWrite:
    """One run state of one run attempt, ready to write: the run-state key and its :class:`RunRecord`."""

    key: str
    record: RunRecord

    def describe(self) -> str:
        r = self.record
        return f"key={self.key} state={r.state} run_id={r.run_id} clear_number={r.clear_number}"


def run_type_of(dag_run: Any) -> str | None:
    """The run's type as Airflow names it (``DagRunType``'s value: ``backfill``, ``scheduled``, ``manual``, ...); None
    when the run does not say. Airflow 2.11's and 3's ``DagRunType`` are str enums with the same values."""
    kind = getattr(dag_run, "run_type", None)
    if kind is None:
        return None
    return str(getattr(kind, "value", kind)) or None


#: Consumed events read for one asset-triggered run: a consumer paused for weeks may have merged thousands; each
#: costs one read of its source run, inside the scheduler's loop. Beyond this bound the rest are left to the audit
#: (``plugin.consumed_truncated``): 200 indexed reads take milliseconds.
MAX_CONSUMED_EVENTS = 200
#: How many asset-triggered runs deep a source is followed (A's event -> asset-triggered B -> its sources): chains
#: in one deployment are short; a bound keeps one hook from walking a long history.
MAX_SOURCE_DEPTH = 3

#: Reads one source run (dag id, run id) -> a duck-typed DagRun or None: the Task SDK's supervisor call in a task
#: process (its events carry no source run); the ORM's events carry theirs (``AssetEvent.source_dag_run``).
SourceLookup = Callable[[str, str], Any]


@dataclass(frozen=True, slots=True)
class NotRecorded:
    """Why a run (or a task's run) is not recorded: ``reason`` is the ``reason=`` of ``plugin.not_recorded``
    (``docs/keys.md``, "Partitions"), ``detail`` says what was wrong."""

    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return self.detail or self.reason


#: ``reason`` of a run whose consumed events' source runs could not be read (an ORM error): counted, logged, left to
#: the REST audit.
SOURCE_UNREADABLE = "source_unreadable"
#: ``reason`` of a run the key layout cannot name for another cause (a dag id that is no name, an odd attribute).
UNRECORDABLE = "unrecordable"
#: ``reason`` of a mapped task instance (``map_index`` >= 0): no single task state.
MAPPED = "mapped_task_instance"


def airflow_run_of(dag_run: Any, lookup: SourceLookup | None = None, depth: int = 0) -> AirflowRun:
    """What ``dag_run`` (Airflow 3's ORM ``DagRun``, the Task SDK's, Airflow 2's, a stand-in) says about its
    partition. Its consumed events are read only when its own columns name no partition and it is asset-triggered
    (**Consumed partitions** of :mod:`coordinator.core.run_partition`): no other run costs a read. Raises what the
    ORM raises."""
    key = getattr(dag_run, "partition_key", None)
    run = AirflowRun(
        logical_date=getattr(dag_run, "logical_date", None),
        partition_date=getattr(dag_run, "partition_date", None),
        partition_key=str(key) if key else None,
        run_type=run_type_of(dag_run) or "",
    )
    if run.run_type != ASSET_TRIGGERED or depth >= MAX_SOURCE_DEPTH:
        return run
    if own_partition(run).unrecorded is not Unrecorded.NO_PARTITION:
        return run
    events = list(getattr(dag_run, "consumed_asset_events", None) or ())
    if len(events) > MAX_CONSUMED_EVENTS:
        log.warning(
            "plugin.consumed_truncated dag_id=%s run_id=%s events=%d read=%d",
            getattr(dag_run, "dag_id", "?"),
            getattr(dag_run, "run_id", "?"),
            len(events),
            MAX_CONSUMED_EVENTS,
        )
    consumed = tuple(_consumed(event, lookup, depth) for event in events[:MAX_CONSUMED_EVENTS])
    return replace(run, consumed=consumed)


def _consumed(event: Any, lookup: SourceLookup | None, depth: int) -> ConsumedEvent:
    key = getattr(event, "partition_key", None)
    source = getattr(event, "source_dag_run", None)  # the ORM's relationship (Airflow 3.3's AssetEvent)
    if source is None and lookup is not None:
        dag_id, run_id = getattr(event, "source_dag_id", None), getattr(event, "source_run_id", None)
        if dag_id and run_id:
            source = lookup(str(dag_id), str(run_id))
    return ConsumedEvent(
        partition_key=str(key) if key else None,
        source=None if source is None else airflow_run_of(source, lookup, depth + 1),
    )


def partitions_of(dag_run: Any, lookup: SourceLookup | None = None) -> tuple[tuple[str, ...], NotRecorded | None]:
    """The partitions ``dag_run`` is recorded under (:func:`coordinator.core.run_partition.run_partitions`), or
    why none. Never raises."""
    try:
        run = airflow_run_of(dag_run, lookup)
    except Exception as exc:  # a detached ORM object, a failed query, a supervisor that did not answer
        return (), NotRecorded(SOURCE_UNREADABLE, f"{type(exc).__name__}: {exc}")
    found = run_partitions(run)
    if found.unrecorded is not None:
        reason = UNRECORDABLE if found.unrecorded is Unrecorded.UNNAMEABLE_DATE else str(found.unrecorded)
        return (), NotRecorded(reason, found.detail)
    return found.partitions, None


def _run_after(dag_run: Any) -> datetime | None:
    """The run's place among several runs of its partition (semantics `newest-run-stands`): Airflow 3's
    ``run_after``, aware; None on Airflow 2 (no such column) or when it is not an aware date."""
    value = getattr(dag_run, "run_after", None)
    return value if isinstance(value, datetime) and value.utcoffset() is not None else None


def run_writes_from_dag_run(
    dag_run: Any, state: RunState, config: WriterConfig, now: datetime, lookup: SourceLookup | None = None
) -> tuple[tuple[RunStateWrite, ...], NotRecorded | None]:
    """The records of a dag run, one per partition it stands for (a run that consumed several partitions counts
    for each, with the same run id and clear number); or () and why it cannot be recorded. Never raises."""
    try:
        dag_id = str(dag_run.dag_id)
        run_id = str(dag_run.run_id)
        if not NAME_RE.match(dag_id):  # Airflow enforces this too; a '/' would silently change the key's meaning
            return (), NotRecorded(UNRECORDABLE, f"dag id {dag_id!r} cannot be part of a key")
        partitions, why = partitions_of(dag_run, lookup)
        if why is not None:
            return (), why
        record = RunRecord(
            state=state,
            run_id=run_id,
            clear_number=int(getattr(dag_run, "clear_number", 0) or 0),
            updated_at=now,
            source=config.source,
            start_date=getattr(dag_run, "start_date", None),
            end_date=getattr(dag_run, "end_date", None) if state in (RunState.SUCCESS, RunState.FAILED) else None,
            run_type=run_type_of(dag_run),
            run_after=_run_after(dag_run),
        )
        node = NodeId(config.instance, dag_id)
        writes = tuple(RunStateWrite(config.keys.run_key(node, p), record) for p in partitions)
    except Exception as exc:  # any odd attribute (a bad dag id, ...) is one skip
        return (), NotRecorded(UNRECORDABLE, f"{type(exc).__name__}: {exc}")
    return writes, None


def run_write_from_dag_run(
    dag_run: Any, state: RunState, config: WriterConfig, now: datetime
) -> tuple[RunStateWrite | None, str | None]:
    """The one record of a run of one partition (the explicit task's and the tests' shape of
    :func:`run_writes_from_dag_run`); (None, why) for a run of none or of several. Never raises."""
    writes, why = run_writes_from_dag_run(dag_run, state, config, now)
    if why is not None:
        return None, str(why)
    if len(writes) != 1:
        return None, f"stands for {len(writes)} partitions"
    return writes[0], None


@dataclass(frozen=True, slots=True)
class TaskStateWrite:
    """One state of one task try, ready to write if the adopted graph names the task (the writer thread decides)."""

    key: str
    record: TaskRecord
    node: NodeId
    task_id: str

    def describe(self) -> str:
        r = self.record
        return (
            f"key={self.key} state={r.state} run_id={r.run_id} clear_number={r.clear_number} try_number={r.try_number}"
        )


@dataclass(frozen=True, slots=True)
class AssetChange:
    """A hint that an asset event just happened in this Airflow (semantics `asset-facts`): the leader lists this
    instance's events at once instead of at its next round. Not a run state: the listener does not see the event's id,
    the REST listing stays the one source of asset events, and a lost hint only costs latency."""

    key: str
    value: bytes
    uri: str

    def describe(self) -> str:
        return f"key={self.key} asset={self.uri}"


PluginWrite = RunStateWrite | TaskStateWrite | AssetChange


def _task_dag_run(ti: Any) -> Any:
    """The DAG run of a task instance: the task SDK's run context (Airflow 3 task process) or the ORM relation."""
    context = getattr(ti, "_ti_context_from_server", None)
    run = getattr(context, "dag_run", None)
    if run is not None:
        return run
    return ti.dag_run


def task_state_of(ti: Any, hook_state: RunState) -> RunState | None:
    """The state a hook reports for ``ti``: None when its failure is only a try (``up_for_retry``,
    :mod:`coordinator.core.task_facts`' **A retry is no fact**). Airflow sets the instance's state before the failure
    hook in 2.x and 3.x."""
    if hook_state is not RunState.FAILED:
        return hook_state
    # str() of Airflow 2's TaskInstanceState may be "TaskInstanceState.UP_FOR_RETRY"; Airflow 3's is the value.
    state = str(getattr(ti, "state", "") or "").rsplit(".", 1)[-1].lower()
    return None if state == "up_for_retry" else RunState.FAILED


def task_writes_from_task_instance(
    ti: Any, state: RunState, config: WriterConfig, now: datetime, lookup: SourceLookup | None = None
) -> tuple[tuple[TaskStateWrite, ...], NotRecorded | None]:
    """The records of a task instance, one per partition its DAG run stands for (the run's partitions, by the same
    rule as the run's own records); or () and why it cannot be recorded. Never raises."""
    try:
        dag_id, task_id = str(ti.dag_id), str(ti.task_id)
        if not NAME_RE.match(dag_id) or not NAME_RE.match(task_id):
            return (), NotRecorded(UNRECORDABLE, f"dag id {dag_id!r} / task id {task_id!r} cannot be part of a key")
        map_index = getattr(ti, "map_index", -1)
        if map_index is not None and int(map_index) >= 0:
            return (), NotRecorded(MAPPED, "mapped task instance")
        dag_run = _task_dag_run(ti)
        partitions, why = partitions_of(dag_run, lookup)
        if why is not None:
            return (), why
        raw_try = getattr(ti, "try_number", None)
        record = TaskRecord(
            state=state,
            run_id=str(getattr(dag_run, "run_id", None) or ti.run_id),
            clear_number=int(getattr(dag_run, "clear_number", 0) or 0),
            updated_at=now,
            source=config.source,
            start_date=getattr(ti, "start_date", None),
            end_date=getattr(ti, "end_date", None) if state in (RunState.SUCCESS, RunState.FAILED) else None,
            try_number=int(raw_try) if raw_try is not None else None,
            run_after=_run_after(dag_run),
        )
        node = NodeId(config.instance, dag_id)
        writes = tuple(
            TaskStateWrite(config.keys.task_key(node, task_id, p), record, node, task_id) for p in partitions
        )
    except Exception as exc:  # a detached ORM object, a naive date, ...: one skip, never into Airflow
        return (), NotRecorded(UNRECORDABLE, f"{type(exc).__name__}: {exc}")
    return writes, None


class WriteOutcome(StrEnum):
    WRITTEN = "written"
    SKIPPED = "skipped"  # should_replace refused: identical rewrite or an older attempt
    NOT_NAMED = "not_named"  # a task state of a task the adopted graph does not name: not recorded


async def write_one(store: EtcdStore, item: PluginWrite, timeout_s: float) -> tuple[WriteOutcome, int]:
    """Write one record with per-run ordering through the one run-record writer (**One writer**,
    **Task instances alike**).

    Returns the outcome and the revision written (or of the record that won). Raises StoreError or TimeoutError.
    """
    if isinstance(item, AssetChange):
        # A plain put: each hint is a new revision, which is what wakes the leader; there is nothing to order.
        return WriteOutcome.WRITTEN, await asyncio.wait_for(store.put(item.key, item.value), timeout_s)
    if isinstance(item, TaskStateWrite):
        done = await write_run_record(
            store,
            item.key,
            lambda _old: item.record,
            op_timeout_s=timeout_s,
            parse=parse_task_record,
            rule=should_replace_task,
        )
    else:
        done = await write_run_record(store, item.key, lambda _old: item.record, op_timeout_s=timeout_s)
    if done.unreadable is not None:
        # The plugin is the authority on its own runs' keys: a value nobody can read is replaced.
        log.warning("plugin.unreadable_replaced key=%s problem=%r", item.key, done.unreadable)
    if done.status is RunWriteStatus.WRITTEN:
        return WriteOutcome.WRITTEN, done.revision
    if done.status is RunWriteStatus.UNCHANGED:
        return WriteOutcome.SKIPPED, done.revision
    raise StoreError(f"gave up after {done.rounds} lost compare-and-swap rounds on {item.key}")


def is_unreachable(exc: BaseException) -> bool:
    """True for errors that mean "etcd is not reachable right now" (retried for as long as the process lives)."""
    # TimeoutError and ConnectionError are OSErrors; asyncio.wait_for raises TimeoutError.
    return isinstance(exc, StoreUnavailable | OSError)


async def connect_store(settings: EtcdSettings) -> EtcdStore:
    # Imported here so that importing the plugin (in every Airflow process and CLI call) does not load gRPC.
    from coordinator.etcd import EtcdStore

    return await EtcdStore.connect(settings)


def asset_change(config: WriterConfig, uri: str, partition_key: str | None, now: datetime) -> AssetChange:
    """The hint for an event of asset ``uri`` in this instance."""
    body = {"uri": uri, "partition_key": partition_key, "at": now.isoformat(), "source": config.source}
    return AssetChange(f"{config.keys.prefix}/asset_changes/{config.instance}", json.dumps(body).encode(), uri)


def write_now(config: WriterConfig, item: RunStateWrite, timeout_s: float) -> tuple[WriteOutcome, int]:
    """Write one record synchronously (the operator's path): same ordering rule, retries while etcd is unreachable.

    Raises StoreError (StoreUnavailable when etcd stayed unreachable for ``timeout_s``). Must not be called from a
    running event loop.
    """

    attempts = 0

    async def attempt() -> tuple[WriteOutcome, int]:
        nonlocal attempts
        attempts += 1
        store: EtcdStore | None = None
        try:
            store = await asyncio.wait_for(connect_store(config.etcd), config.op_timeout_s)
            return await write_one(store, item, config.op_timeout_s)
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(store.close(), 1.0)

    def retrying(retry: RetryAttempt) -> None:
        log.warning(
            "plugin.write_retry %s attempt=%d error=%r",
            item.describe(),
            retry.number,
            f"{type(retry.error).__name__}: {retry.error}",
        )

    async def attempt_until_deadline() -> tuple[WriteOutcome, int]:
        try:
            return await retry_call(attempt, config.delivery_policy(timeout_s), is_unreachable, on_retry=retrying)
        except StoreError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise StoreUnavailable(f"{item.key}: {error} (after {attempts} attempt(s))") from exc

    return asyncio.run(attempt_until_deadline())
