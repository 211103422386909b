"""Commands that write run state by hand: ``mark``.

Rules:
1. ``mark`` writes the same RunRecord the Airflow plugin writes, to the same key, through the same run-record writer
   (:func:`coordinator.writers.run_records.write_run_record`, a compare-and-swap): a concurrent writer is never
   overwritten blindly; the command re-decides on a lost race (a few rounds at most).
2. It follows :func:`should_replace` like every writer: rewriting the same state of the same attempt would be a new
   generation (every dependent would rerun), so it is refused unless ``--force``, which records a NEW attempt
   (``clear_number`` + 1) on purpose.
3. Bad input (dag id, partition, state, flags) exits 2; etcd unreachable or a refused write exits 1; no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer

from coordinator.cli.app import EXIT_FAILURE, OPERATE, EtcdOpt, PrefixOpt, app, build_settings, fail, out, run_async
from coordinator.core.model import (
    DEFAULT_INSTANCE,
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    any_partition,
    should_replace,
)
from coordinator.errors import ConfigError, CoordinatorError
from coordinator.runtime.settings import EtcdSettings
from coordinator.writers.run_records import RunWriteStatus, write_run_record

#: CAS rounds before giving up: each lost round means another writer changed the key in between; more than a few in
#: a row means something is looping, and a human should look.
MAX_CAS_ROUNDS = 5
SOURCE = "mark"


@dataclass(frozen=True, slots=True)
class MarkOutcome:
    """What ``mark`` did: wrote ``record`` at ``revision``, or refused (``refused`` says why)."""

    record: RunRecord
    previous: RunRecord | None
    revision: int = 0
    refused: str | None = None


def plan_mark(
    old: RunRecord | None,
    *,
    state: RunState,
    partition: str,
    run_id: str | None,
    clear_number: int | None,
    force: bool,
    now: datetime,
) -> MarkOutcome:
    """Decide the record to write over ``old`` (pure; the CAS loop calls it once per round)."""
    chosen_run = run_id or (old.run_id if old is not None else f"manual__{partition}")
    same_run = old is not None and old.run_id == chosen_run
    if clear_number is None:
        clear_number = old.clear_number if old is not None and same_run else 0
    record = RunRecord(
        state=state,
        run_id=chosen_run,
        clear_number=clear_number,
        updated_at=now,
        source=SOURCE,
        start_date=old.start_date if old is not None and same_run else None,
        end_date=None if state.active else now,
    )
    if should_replace(old, record):
        return MarkOutcome(record, old)
    assert old is not None  # should_replace accepts anything over a missing record
    if force:
        return MarkOutcome(record.model_copy(update={"clear_number": old.clear_number + 1}), old)
    attempt = f"run {old.run_id}, attempt {old.clear_number}"
    if old.same_attempt_state(record):
        why = (
            f"it is already {old.state} ({attempt}); writing it again would count as a new result and rerun its "
            f"dependents"
        )
    else:
        why = f"it holds {old.state} ({attempt}); {state} for attempt {record.clear_number} would go back in time"
    return MarkOutcome(record, old, refused=f"{why}. Use --force to record a new attempt.")


async def mark_run(
    etcd: EtcdSettings,
    keys: KeyLayout,
    node: NodeId,
    partition: str,
    *,
    state: RunState,
    run_id: str | None = None,
    clear_number: int | None = None,
    force: bool = False,
) -> MarkOutcome:
    """Write (or refuse) the run record of ``node`` for ``partition``; see the module rules."""
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import

    key = keys.run_key(node, partition)
    planned: MarkOutcome | None = None

    def propose(old: RunRecord | None) -> RunRecord | None:
        nonlocal planned
        planned = plan_mark(
            old,
            state=state,
            partition=partition,
            run_id=run_id,
            clear_number=clear_number,
            force=force,
            now=datetime.now(UTC),
        )
        return None if planned.refused else planned.record

    async with await EtcdStore.connect(etcd) as store:
        done = await write_run_record(store, key, propose, max_rounds=MAX_CAS_ROUNDS)
    if done.unreadable is not None:
        # An unreadable value counts as absent (the watcher ignores it too); marking repairs it.
        out.print(f"note: replacing an unreadable record at {key} ({done.unreadable})")
    if done.status is RunWriteStatus.CONTENDED:
        raise CoordinatorError(f"{key} kept changing during {MAX_CAS_ROUNDS} attempts to mark it; try again")
    assert planned is not None  # every round that does not lose a race calls propose
    if done.status is RunWriteStatus.WRITTEN:
        return MarkOutcome(planned.record, done.previous, revision=done.revision)
    assert planned.refused is not None  # plan_mark proposes only what should_replace accepts
    return planned


StateOpt = Annotated[
    str,
    typer.Option("--state", "-s", metavar="queued|running|success|failed", help="the run's state", show_default=False),
]
PartitionOpt = Annotated[
    str,
    typer.Option(
        "--partition", "-p", metavar="PARTITION", show_default=False,
        help="logical date in UTC (2026-01-01T00:00:00Z), a segment (eu) or both (2026-01-01~eu)",
    ),
]  # fmt: skip


MarkInstanceOpt = Annotated[
    str | None,
    typer.Option(
        "--instance",
        metavar="INSTANCE",
        show_default=f"the DAG's (instance/dag_id), else {DEFAULT_INSTANCE}",
        help="Airflow instance name",
    ),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option(
        "--run-id", metavar="RUN_ID", show_default="the stored record's, else manual__PARTITION", help="run id"
    ),
]
ClearNumberOpt = Annotated[
    int | None,
    typer.Option(
        "--clear-number",
        metavar="N",
        min=0,
        show_default="the stored record's for that run, else 0",
        help="attempt number",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="record a new attempt even if the state would not change")]


@app.command(rich_help_panel=OPERATE)
def mark(
    dag_id: Annotated[str, typer.Argument(metavar="DAG", help="DAG id, or instance/dag_id", show_default=False)],
    partition: PartitionOpt,
    state: StateOpt,
    instance: MarkInstanceOpt = None,
    run_id: RunIdOpt = None,
    clear_number: ClearNumberOpt = None,
    force: ForceOpt = False,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Record a DAG run's state for a partition by hand (as the Airflow plugin would); dependents react to it.

    A rewrite of the state the run already has is refused (exit 1): it would rerun every dependent. --force records a
    new attempt instead. Exit 2 for bad input, 1 when etcd cannot be reached.
    """
    try:
        node = NodeId.parse(dag_id, default_instance=instance or DEFAULT_INSTANCE)
    except ValueError as exc:
        fail(str(exc))
    if instance is not None and node.instance != instance:
        fail(f"{dag_id!r} names instance {node.instance!r} but --instance is {instance!r}")
    try:
        canonical = any_partition(partition)
    except ValueError as exc:
        fail(str(exc))
    try:
        run_state = RunState(state.strip().lower())
    except ValueError:
        fail(f"invalid state {state!r}: choose one of {', '.join(s.value for s in RunState)}")
    if run_id is not None and not run_id.strip():
        fail("--run-id must not be empty")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    try:
        etcd_settings = settings.etcd()
    except ConfigError as exc:
        fail(str(exc))

    outcome = run_async(
        lambda: mark_run(
            etcd_settings,
            settings.keys,
            node,
            canonical,
            state=run_state,
            run_id=run_id,
            clear_number=clear_number,
            force=force,
        )
    )
    if outcome.refused:
        fail(f"not marked: {node} {canonical}: {outcome.refused}", EXIT_FAILURE)
    rec = outcome.record
    was = f"; was {outcome.previous.state}" if outcome.previous is not None else ""
    out.print(
        f"marked {node} {canonical} {rec.state} (run {rec.run_id}, attempt {rec.clear_number}{was}) "
        f"at revision {outcome.revision}"
    )
