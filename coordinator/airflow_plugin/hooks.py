"""The bodies of the plugin's listener hooks: what each Airflow event records, handed to the process's writer.

:mod:`coordinator.airflow_plugin.listener` registers the hooks with Airflow and calls these; the writer
(:mod:`coordinator.airflow_plugin.writer`) delivers what they hand it. No Airflow import at module level, so the
hooks can be tested without Airflow.

Rules:
- **Hooks never block.** :func:`record_dag_run` is the body of every listener hook. It runs inside Airflow's scheduler
  loop, so it only reads a few attributes, builds a record and enqueues it: no I/O, no waiting, and it never raises
  (everything is caught and logged).
- **Task states alike.** Task states (:func:`record_task_instance`, semantics `edge-task`) go through the
  same queue; the writer thread drops those of tasks the adopted graph does not name (``task_names``: a cached list,
  etcd read at most every ``tasks_ttl_s``). A task process ends with ``os._exit`` (Airflow 2 and 3), so no exit handler
  runs there: the hook of a task's final state waits for the queue, at most ``task_flush_s``, and logs once if that ran
  out. Nowhere else does a hook wait (the scheduler and the api-server fire task hooks too).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from coordinator.airflow_plugin.records import (
    SOURCE_UNREADABLE,
    NotRecorded,
    SourceLookup,
    asset_change,
    run_writes_from_dag_run,
    task_state_of,
    task_writes_from_task_instance,
)
from coordinator.airflow_plugin.writer import WriterStats, get_writer
from coordinator.core.model import RunState

log = logging.getLogger(__name__)


def announce_start(component: Any) -> None:
    """Log one line saying where this process records run states (instance, prefix, etcd endpoints), or why it does
    not. Called when an Airflow job starts (scheduler, dag-processor, triggerer); task processes are not jobs and stay
    quiet (Airflow 2 calls the hook for a task with a TaskInstance: one line per task, acceptable there). Creates the
    writer (a cheap object; its thread starts with the first record). Never raises."""
    try:
        kind = type(component).__name__
        if kind == "TaskRunnerMarker":  # a task process (the Task SDK's marker): one line per task would be noise
            return
        # A Job announces itself before its runner sets job_type (SchedulerJob, DagProcessorJob, ...): the host tells
        # the processes apart instead.
        kind = getattr(component, "job_type", None) or f"{kind}@{getattr(component, 'hostname', '?')}"
        writer = get_writer()
        if writer is None:  # get_writer logged plugin.disabled with the reason
            return
        config = writer.config
        endpoints = ",".join(f"{'https' if e.tls else 'http'}://{e.host}:{e.port}" for e in config.etcd.endpoints)
        log.info(
            "coordinator.plugin_started component=%s instance=%s prefix=%s etcd=%s etcd_user=%s",
            kind,
            config.instance,
            config.keys.prefix,
            endpoints,
            config.etcd.username or "-",
        )
    except Exception:  # never into Airflow's start-up
        log.exception("plugin.announce_failed")


def record_dag_run(dag_run: Any, state: RunState) -> None:
    """Hook body: record ``state`` for ``dag_run`` under each partition it stands for. Returns in microseconds (an
    asset-triggered run without a partition of its own: a few indexed reads on the hook's own session); never blocks,
    never raises."""
    try:
        writer = get_writer()
        if writer is None:
            return
        items, why = run_writes_from_dag_run(dag_run, state, writer.config, datetime.now(UTC))
        for item in items:
            writer.submit(item)
        if why is not None:
            dag_id, run_id = getattr(dag_run, "dag_id", "?"), getattr(dag_run, "run_id", "?")
            _count_not_recorded(writer.stats, why, dag_id, run_id, state)
    except Exception:  # never into Airflow: a listener exception would only be logged there anyway
        log.exception("plugin.record_failed")


def _count_not_recorded(stats: WriterStats, why: NotRecorded, dag_id: object, run_id: object, state: RunState) -> None:
    """Count a run that is not recorded and log it: runs of no partition (normal for manual runs given nothing) and
    unusable keys (one line each kind at first, then debug only: each run fires three hooks), a source that could not
    be read and a run the layout cannot name (a warning each)."""
    if why.reason in ("no_partition", "unusable_partition_key"):
        if why.reason == "no_partition":
            stats.no_partition += 1
            count = stats.no_partition
        else:
            stats.unusable_partition_key += 1
            count = stats.unusable_partition_key
        level = (logging.INFO if why.reason == "no_partition" else logging.WARNING) if count == 1 else logging.DEBUG
        log.log(
            level,
            "plugin.not_recorded reason=%s dag_id=%s run_id=%s state=%s skipped_so_far=%d detail=%r",
            why.reason, dag_id, run_id, state, count, why.detail,
        )  # fmt: skip
        return
    if why.reason == SOURCE_UNREADABLE:
        stats.source_errors += 1
    else:
        stats.unrecordable += 1
    log.warning(
        "plugin.not_recorded reason=%s dag_id=%s run_id=%s state=%s detail=%r", why.reason, dag_id, run_id, state,
        why.detail,
    )  # fmt: skip


#: The ``extra`` field of the events the coordinator delivered (core/assets.MARKER; not imported: the plugin loads
#: nothing it does not need in every Airflow process).
DELIVERY_MARKER = "coordinator_delivery"


def record_asset_change(uri: Any, partition_key: Any = None, extra: Any = None) -> None:
    """Hook body for asset events (semantics `asset-facts`): hand a hint to the writer so the leader lists this
    Airflow's events now. An event the coordinator delivered here (its marker in ``extra``) is not hinted: it never
    travels on. Never blocks, never raises."""
    try:
        if isinstance(extra, dict) and DELIVERY_MARKER in extra:
            return
        writer = get_writer()
        if writer is None or not uri:
            return
        key = str(partition_key) if partition_key is not None else None
        writer.submit(asset_change(writer.config, str(uri), key, datetime.now(UTC)))
    except Exception:  # never into Airflow
        log.exception("plugin.record_failed")


def record_outlets_done(ti: Any) -> None:
    """Hook body for a successful task instance (semantics `asset-facts`): a task with asset outlets hints the leader
    once more. Airflow 3.3 calls the asset hook in the api-server BEFORE its transaction commits, so the round that
    hint wakes may list nothing yet (it rechecks a second later); the task's success hook runs in the task process
    after its terminal state (and with it the outlets' events) was committed by the api-server, so the round this
    hint wakes lists the event at once. One hint per task, whatever its outlets: the hint only wakes the round,
    which lists every event. Never blocks, never raises."""
    try:
        task = getattr(ti, "task", None)
        uris = [str(uri) for outlet in getattr(task, "outlets", None) or () if (uri := getattr(outlet, "uri", None))]
        if uris:
            record_asset_change(uris[0])
    except Exception:  # never into Airflow
        log.exception("plugin.record_failed")


#: Why a task state is not recorded -> log level (the common, expected reasons are debug only: its run's hooks
#: already said why the run has no partition).
_TASK_SKIP_LEVELS = {
    "no_partition": logging.DEBUG,
    "unusable_partition_key": logging.DEBUG,
    "mapped_task_instance": logging.DEBUG,
}


def supervisor_lookup(ti: Any) -> SourceLookup | None:
    """In an Airflow 3 task process, the source runs of its run's consumed events come from the Task SDK's supervisor
    (``GetDagRun``: the api-server reads them; a task process has no database); elsewhere the ORM events carry them."""
    if getattr(ti, "_ti_context_from_server", None) is None:
        return None

    def lookup(dag_id: str, run_id: str) -> Any:
        # Imported here: only Airflow 3's task processes have a supervisor (and the plugin loads in every process).
        from airflow.sdk.execution_time.comms import GetDagRun
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        return SUPERVISOR_COMMS.send(GetDagRun(dag_id=dag_id, run_id=run_id))

    return lookup


def _in_task_process(ti: Any) -> bool:
    """True in the process that runs this task instance (Airflow 3's task runner holds its run context; Airflow 2
    exports ``AIRFLOW_CTX_TASK_ID`` into the environment of the task it runs), False in a scheduler or api-server."""
    if getattr(ti, "_ti_context_from_server", None) is not None:
        return True
    return os.environ.get("AIRFLOW_CTX_TASK_ID") == str(getattr(ti, "task_id", "")) and os.environ.get(
        "AIRFLOW_CTX_DAG_RUN_ID"
    ) == str(getattr(ti, "run_id", ""))


def record_task_instance(ti: Any, state: RunState) -> None:
    """Hook body for task instances (**Task states alike**): hand the state to the writer; in the task's own process,
    wait for a final state to be written (bounded). Never raises."""
    try:
        writer = get_writer()
        if writer is None:
            return
        fact_state = task_state_of(ti, state)
        if fact_state is None:
            return  # up_for_retry: the task runs again; its try is not a fact
        lookup = supervisor_lookup(ti)
        items, why = task_writes_from_task_instance(ti, fact_state, writer.config, datetime.now(UTC), lookup)
        if why is not None:
            writer.stats.unrecordable += 1
            log.log(
                _TASK_SKIP_LEVELS.get(why.reason, logging.WARNING),
                "plugin.task_not_recorded dag_id=%s task_id=%s state=%s reason=%s detail=%r",
                getattr(ti, "dag_id", "?"),
                getattr(ti, "task_id", "?"),
                fact_state,
                why.reason,
                why.detail,
            )
            return
        for item in items:
            writer.submit(item)
        if not items:
            return
        if fact_state is RunState.RUNNING or not _in_task_process(ti):
            return
        timeout_s = writer.config.task_flush_s
        if not writer.flush(timeout_s):
            writer.stats.task_flush_timeouts += 1
            if writer.stats.task_flush_timeouts == 1:
                log.warning(
                    "plugin.task_state_unconfirmed %s waited_s=%g last_error=%r detail=%r",
                    item.describe(),
                    timeout_s,
                    getattr(writer, "last_error", None),
                    "the process exits now; the watcher's REST audit repairs the state",
                )
    except Exception:  # never into Airflow
        log.exception("plugin.record_failed")
