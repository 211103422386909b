"""``ReportRunStateOperator``: the explicit alternative to the listener, a task that writes its run's state.

When to prefer it (the listener is the default):
- The listener needs the package installed in the scheduler's environment and records every state change of every
  DAG (running, success, failed, a user's mark-success) with no change to the DAGs. Its writes are best effort: a
  failed send is logged in the scheduler, not shown on the run, and the watcher's REST audit repairs it.
- This operator needs nothing in the scheduler, only the package and the plugin's settings in the workers. Its write is
  synchronous, visible in the task log, and retried like any task; if etcd stays down the task fails and the run
  shows it. Place it LAST with the default ``state="success"``: the record says the data is ready once every other
  task succeeded. It cannot see scheduler-side outcomes (a run marked failed by a timeout, a manual mark-success) and
  runs a moment before the run itself is final; add a second one with ``state="failed"`` and
  ``trigger_rule="one_failed"`` if dependents must also learn about failures.
- Both together are safe: the writes follow the same per-run ordering, and the listener's identical success is
  skipped instead of making a second generation.

Rules: the records are built and written by the same code as the listener's (``run_writes_from_dag_run``,
``write_one``): one per partition the run stands for (an asset-triggered run that consumed two dates writes both);
the task fails (and retries) when etcd cannot be reached within ``timeout_s``; it never changes Airflow state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from coordinator.airflow_plugin.config import resolve_now
from coordinator.airflow_plugin.hooks import supervisor_lookup
from coordinator.airflow_plugin.records import run_writes_from_dag_run, write_now
from coordinator.core.model import RunState


class ReportRunStateOperator(BaseOperator):
    """Write this DAG run's state (``success`` by default) to etcd, synchronously; fail the task if it cannot."""

    template_fields: Sequence[str] = ()
    ui_color = "#d9f2e6"

    def __init__(self, *, state: RunState | str = RunState.SUCCESS, timeout_s: float = 30.0, **kwargs: Any) -> None:
        # Retries make a short etcd outage invisible to the run; 30 s apart matches the listener's patience.
        kwargs.setdefault("retries", 3)
        kwargs.setdefault("retry_delay", timedelta(seconds=30))
        super().__init__(**kwargs)
        self.state = RunState(state)
        self.timeout_s = timeout_s

    def execute(self, context: Any) -> dict[str, Any]:
        # The same settings as the listener's (environment, [coordinator], the etcd connection); a task may wait for
        # the secrets backend, within its own timeout.
        config = dataclasses.replace(resolve_now(timeout_s=self.timeout_s).writer, source_kind="airflow-task")
        now = datetime.now(UTC)
        task = context.get("ti") or context.get("task_instance")
        items, why = run_writes_from_dag_run(context["dag_run"], self.state, config, now, supervisor_lookup(task))
        if why is not None:
            # A run without a partition cannot satisfy anything; failing would only make retries that cannot help.
            self.log.warning("plugin.not_recorded reason=%s detail=%r", why.reason, why.detail)
            return {"recorded": False, "reason": str(why)}
        written: list[dict[str, Any]] = []
        for item in items:
            if self.state in (RunState.SUCCESS, RunState.FAILED) and item.record.end_date is None:
                # The run is not over while this task runs: its end is "now" from the dependents' point of view.
                item = dataclasses.replace(item, record=item.record.model_copy(update={"end_date": now}))
            outcome, revision = write_now(config, item, self.timeout_s)
            self.log.info("plugin.operator_write outcome=%s %s revision=%d", outcome, item.describe(), revision)
            written.append({"key": item.key, "outcome": str(outcome), "revision": revision})
        return {"recorded": True, **written[0], "records": written}
