"""Task-level facts (semantics `edge-task`): the state of one named task of a DAG run, and who writes it.

A task-state key ``{prefix}/tasks/{instance}/{dag_id}/{task_id}/{partition}`` holds the run-state value format of
``{prefix}/runs/...`` (``run_id`` and ``clear_number`` are the DAG run's) plus the writer's ``try_number``. Only the
tasks the adopted graph names (its ``upstream_tasks`` field) are recorded, so etcd does not grow with every task.

Rules (pure: no I/O, no clock):
- **A run record with a try.** The value parses as a :class:`TaskRecord`: a RunRecord with an optional ``try_number``
  (readers that only know RunRecord ignore it, so the format stays the run-state format).
- **Ordered by try.** Per-run ordering (:func:`should_replace_task`) is ``should_replace`` with the TRY as the attempt
  when both records carry one: Airflow raises ``try_number`` on every retry and every clear of a task within one DAG
  run, while the DAG run's ``clear_number`` does not move when a task of a still-running run is cleared on Airflow 2. A
  newer try replaces an older one whatever the states (a cleared task goes success -> running -> success: two
  generations, each dependent reruns once); within one try a state never goes backwards and is never rewritten
  unchanged. Without a try on either side (``mark``, another team's writer) the rule is exactly ``should_replace``.
- **A retry is no fact.** ``up_for_retry`` is not a fact: a task that will run again has not failed (a "finished"
  condition or a failure route must not fire on it). Writers record running, success and failed only; queued and every
  other Airflow state are never written.
- **Names from the graph.** The names come from the adopted graph value's ``upstream_tasks`` (``{"instance/dag_id":
  ["task", ...]}``; absent = none). Entries that do not parse are skipped and reported, never fatal: a bad entry must
  not stop the others.
- **The audit's rule.** (:func:`audit_task_record`) Airflow is the truth; REST reports the try but not
  the DAG run's ``clear_number``, so an audit write keeps the recorded ``clear_number`` and carries the try it saw.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field, ValidationError

from coordinator.core.model import NAME_RE, NodeId, RunRecord, RunState, should_replace

#: Airflow's task states that are facts here (**A retry is no fact**); the rest (queued, up_for_retry, skipped, ...) are
#: not written.
TASK_FACT_STATES = {"running": RunState.RUNNING, "success": RunState.SUCCESS, "failed": RunState.FAILED}
#: The field of the adopted graph value that names the recorded tasks (**Names from the graph**).
UPSTREAM_TASKS_FIELD = "upstream_tasks"
#: Operators Airflow's scheduler marks success itself, without a task process, when they have no callbacks, inlets or
#: outlets (``EmptyOperator``; Airflow 2's deprecated alias ``DummyOperator``): no plugin code records such a task
#: (semantics `edge-task`), so the audit writes it and ``import-dags`` notes an edge on one.
NOT_RUN_OPERATORS = frozenset({"EmptyOperator", "DummyOperator"})

_RANK = {RunState.QUEUED: 0, RunState.RUNNING: 1, RunState.SUCCESS: 2, RunState.FAILED: 2}


class TaskRecord(RunRecord):
    """Value of a task-state key: the run-state format plus the try that produced it (**A run record with a try**)."""

    try_number: int | None = Field(default=None, ge=0)


def parse_task_record(raw: bytes) -> tuple[TaskRecord | None, str | None]:
    """Parse a task-state value; return (record, None) or (None, reason). Never raises."""
    try:
        return TaskRecord.model_validate_json(raw), None
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return None, f"{where}: {first.get('msg', 'invalid')}"


def should_replace_task(old: RunRecord | None, new: RunRecord) -> bool:
    """Whether a writer should overwrite ``old`` with ``new`` on a task-state key (**Ordered by try**)."""
    old_try = getattr(old, "try_number", None)
    new_try = getattr(new, "try_number", None)
    if old is None or old_try is None or new_try is None or old.run_id != new.run_id:
        return should_replace(old, new)
    if new_try != old_try:
        return bool(new_try > old_try)
    if old.state is new.state:
        return False  # same try, same state: a rewrite would be a new generation (reruns every dependent)
    return _RANK[new.state] >= _RANK[old.state]


@dataclass(frozen=True)
class NamedTasks:
    """The tasks the adopted graph names as upstreams, per DAG (**Names from the graph**); ``problems`` lists the
    entries skipped."""

    by_node: Mapping[NodeId, frozenset[str]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def names(self, node: NodeId, task_id: str) -> bool:
        return task_id in self.by_node.get(node, frozenset())

    def __len__(self) -> int:
        return sum(len(tasks) for tasks in self.by_node.values())


def named_tasks_from_graph(raw: bytes | None) -> NamedTasks:
    """The ``upstream_tasks`` of an adopted graph value (None: no graph adopted -> nothing named). Never raises."""
    if raw is None:
        return NamedTasks()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return NamedTasks(problems=(f"graph value is not JSON: {exc}",))
    return named_tasks_from_mapping(data.get(UPSTREAM_TASKS_FIELD) if isinstance(data, dict) else None)


def named_tasks_from_mapping(field_value: object) -> NamedTasks:
    """The named tasks of an ``upstream_tasks`` value as read from JSON (None: none). Never raises."""
    if field_value is None:
        return NamedTasks()
    if not isinstance(field_value, dict):
        return NamedTasks(problems=(f"{UPSTREAM_TASKS_FIELD} is {type(field_value).__name__}, not an object",))
    by_node: dict[NodeId, frozenset[str]] = {}
    problems: list[str] = []
    for ref, tasks in field_value.items():
        try:
            node = NodeId.parse(str(ref))
        except ValueError as exc:
            problems.append(f"{UPSTREAM_TASKS_FIELD}.{ref}: {exc}")
            continue
        if not isinstance(tasks, list | tuple):  # JSON gives lists; a parsed activation may hold tuples
            problems.append(f"{UPSTREAM_TASKS_FIELD}.{ref}: expected a list of task ids")
            continue
        good = frozenset(t for t in tasks if isinstance(t, str) and NAME_RE.match(t))
        if len(good) != len(tasks):
            problems.append(f"{UPSTREAM_TASKS_FIELD}.{ref}: task ids that cannot be part of a key were skipped")
        if good:
            by_node[node] = good
    return NamedTasks(by_node, tuple(problems))


def audit_task_record(
    existing: RunRecord | None,
    *,
    run_id: str,
    state: str,
    try_number: int | None,
    start_date: datetime | None,
    end_date: datetime | None,
    source: str,
    now: datetime,
    run_after: datetime | None = None,
) -> TaskRecord | None:
    """The record to write for a task instance Airflow reports (``run_after``: its DAG run's, the run order of
    semantics `newest-run-stands`), or None when etcd already says enough (**The audit's rule**)."""
    mapped = TASK_FACT_STATES.get(state)
    if mapped is None:
        return None
    same_run = existing is not None and existing.run_id == run_id
    if existing is not None and not same_run and not existing.source.startswith(("airflow-plugin", "audit")):
        return None  # a record from mark or another team's job under another run id is theirs
    candidate = TaskRecord(
        state=mapped,
        run_id=run_id,
        clear_number=existing.clear_number if existing is not None and same_run else 0,
        updated_at=now,
        source=source,
        start_date=start_date,
        end_date=end_date if mapped is not RunState.RUNNING else None,
        try_number=try_number,
        run_after=run_after,
    )
    # A record without a try (mark, a writer without tries) cannot tell which try it was: only a lagging state counts.
    if existing is not None and same_run and getattr(existing, "try_number", None) is None and mapped is existing.state:
        return None
    return candidate if should_replace_task(existing, candidate) else None
