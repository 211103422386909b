"""The listener Airflow calls on every DAG run and task instance state change (registered by
:mod:`coordinator.airflow_plugin.plugin`).

Rules:
- **Synchronous hooks.** Airflow 3.3 calls these hooks synchronously inside the scheduler loop (and in the api-server
  when a user sets a run's state), BEFORE its transaction commits. Each hook only hands a record to the writer: no I/O,
  no waiting.
- **Never raises.** A hook never raises: :func:`~coordinator.airflow_plugin.hooks.record_dag_run` catches and logs
  everything.
- **Facts, not decisions.** Hooks record facts and decide nothing: which DAG runs next is the watcher's business.
- **No queued.** ``queued`` is never reported by Airflow (no hook), so the plugin records running, success and failed
  only.
- **Task hooks** (semantics `edge-task`) fire in the task's own process (Airflow 3.3: the task-SDK runner,
  after the task's terminal state went to the api-server and before the process exits; Airflow 2.9-2.11: the raw task
  process, after the state is committed), and in the api-server when a user sets a task's state, and in the scheduler
  when it fails a task it lost. Their parameters are the ones both versions pass: Airflow 2 also passes ``session``,
  Airflow 3 has no such argument, and pluggy lets an implementation take a subset of the spec's arguments. Only tasks
  the adopted graph names are written (the writer decides, never the hook), and only the task process waits, bounded,
  for its final state to be written (``record_task_instance``).
- **Asset hints.** Asset hooks (semantics `asset-facts`) only hint the leader that an event happened
  (``record_asset_change``): Airflow 3.3's ``on_asset_event_emitted(asset_event)`` (the api-server, when a task's outlet
  or a REST call registers the event; it carries ``extra`` and ``partition_key`` but not the event's id) and Airflow
  2.8+'s ``on_dataset_changed(dataset)`` (the task process, before the task's final state hook, which flushes the
  queue). pluggy lets each version ignore the other's hook. A task with asset outlets also hints from its success hook
  (``record_outlets_done``), which runs after the api-server committed the task's events: the round it wakes lists them
  at once instead of a second later.
"""

from __future__ import annotations

from typing import Any

from airflow.listeners import hookimpl

from coordinator.airflow_plugin.hooks import (
    announce_start,
    record_asset_change,
    record_dag_run,
    record_outlets_done,
    record_task_instance,
)
from coordinator.airflow_plugin.writer import current_writer
from coordinator.core.model import RunState

# How long Airflow's shutdown may wait for queued records (the atexit flush is the safety net for hard exits).
STOP_FLUSH_S = 2.0


class CoordinatorListener:
    """Pluggy listener object. Argument names must match Airflow's hookspecs (``dag_run``, ``msg``)."""

    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        record_dag_run(dag_run, RunState.RUNNING)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        record_dag_run(dag_run, RunState.SUCCESS)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        record_dag_run(dag_run, RunState.FAILED)

    @hookimpl
    def on_starting(self, component: Any) -> None:
        """One ``coordinator`` line per start of a scheduler (or other Airflow job): where this process records run
        states, so "the scheduler log has coordinator lines" holds from the first second. Never secrets."""
        announce_start(component)

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        record_task_instance(task_instance, RunState.RUNNING)

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        # The hint first: the task process's bounded wait for its final state then flushes it as well (**Asset hints**).
        record_outlets_done(task_instance)
        record_task_instance(task_instance, RunState.SUCCESS)

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        record_task_instance(task_instance, RunState.FAILED)

    @hookimpl
    def on_asset_event_emitted(self, asset_event: Any) -> None:
        asset = getattr(asset_event, "asset", None)
        uri = getattr(asset, "uri", None)
        record_asset_change(uri, getattr(asset_event, "partition_key", None), getattr(asset_event, "extra", None))

    @hookimpl
    def on_dataset_changed(self, dataset: Any) -> None:
        record_asset_change(getattr(dataset, "uri", None))

    @hookimpl
    def before_stopping(self, component: Any) -> None:
        """Give records queued by this process a short chance to reach etcd before the component stops.

        Also called at the end of every task process (which recorded nothing): it must stay a no-op there."""
        try:
            writer = current_writer()
            # A task process whose bounded wait already ran out (etcd unreachable) does not wait a second time.
            if writer is not None and writer.stats.submitted and not writer.stats.task_flush_timeouts:
                writer.flush(STOP_FLUSH_S)
        except Exception:  # pragma: no cover - flush does not raise; never into Airflow's shutdown anyway
            return


#: The one listener instance; Airflow registers it once per process (pluggy refuses duplicates).
LISTENER = CoordinatorListener()
