"""``coordinator release INSTANCE [--dag DAG]``: let the runs the trigger budget held go ahead (semantics
`trigger-budget`).

Rules:
- **One compare-and-swap.** The release is one compare-and-swap of ``{prefix}/config/budget/{instance}``: ``held`` false
  and ``released_through`` the store's current revision, so every trigger caused so far passes the budget once; a
  trigger caused later counts against it again, in a window emptied by the release (counting starts again from the
  operator's confirmation). The leader re-plans every partition when the key changes. A conflict (the leader counted
  runs in the meantime) reads the key again, a few times, before giving up with a message. Every DAG hold of the
  instance is released with it, as ``--dag`` would. ``--dag DAG`` releases that DAG's hold alone (semantics
  `budget-per-dag`): its ``released_through``, an emptied count and its held range as the released range (its partitions
  then pass for that DAG and the DAGs below it, so the released runs' successes do not hold their dependents again), in
  the same record; the ceiling and the other DAGs' holds stay.
- **Nothing else written.** Nothing else is written and nothing is triggered here: the leading watcher acts, exactly
  once, through the ledger.
- **Exit codes.** A bad instance or DAG name exits 2; an instance (DAG) that is not held says so and writes nothing
  (exit 0); etcd trouble exits 1.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Annotated

import typer

from coordinator.cli.app import OPERATE, EtcdOpt, PrefixOpt, app, build_settings, fail, run_async
from coordinator.core.budget_state import BudgetState, DagBudget, dump_budget, parse_budget
from coordinator.core.model import NAME_RE
from coordinator.errors import StoreError
from coordinator.runtime.settings import Settings


@app.command(rich_help_panel=OPERATE)
def release(
    instance: Annotated[str, typer.Argument(metavar="INSTANCE", help="the Airflow instance whose held runs may start")],
    dag: Annotated[
        str | None,
        typer.Option(
            "--dag", metavar="DAG_ID", show_default="every hold of the instance", help="release only this DAG's hold"
        ),
    ] = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Release the runs the trigger budget holds for INSTANCE (or only its DAG): the leading watcher then starts
    them, once each."""
    if not NAME_RE.match(instance):
        fail(f"instance {instance!r} is not a valid instance name ([A-Za-z0-9_.-]+, not . or ..)")
    if dag is not None and not NAME_RE.match(dag):
        fail(f"--dag {dag!r} is not a valid dag_id ([A-Za-z0-9_.-]+, not . or ..)")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    typer.echo(run_async(lambda: _release(settings, instance, dag)))


#: **One compare-and-swap**: the leader writes the key on every pass that starts runs of the instance (a DAG hold leaves
#: the others running and counted), one write per pass: ten reads outlast a busy few seconds of passes.
RELEASE_ATTEMPTS = 10


def _free(dag: DagBudget, revision: int) -> DagBudget:
    """A stopped DAG's entry once released: not stopped, its count emptied, its stopped range now the released range."""
    return dag.model_copy(update={
        "stopped": False, "released_through": revision, "started": (), "reran": (),
        "stopped_first": None, "stopped_last": None,
        "released_first": dag.stopped_first, "released_last": dag.stopped_last,
    })  # fmt: skip


def _released(state: BudgetState, instance: str, dag: str | None, revision: int, by: str) -> tuple[BudgetState, str]:
    """**One compare-and-swap**'s new value and what to print; raises LookupError with the message when nothing of it is
    held."""
    at = datetime.now(UTC)
    if dag is not None:
        found = state.dags.get(dag)
        if found is None or not found.stopped:
            raise LookupError(f"DAG {instance}/{dag} is not held by the trigger budget: nothing to release")
        freed = _free(found, revision)
        return state.model_copy(update={"dags": {**state.dags, dag: freed}, "by": by, "at": at}), (
            f"released {instance}/{dag}: the {found.stopped_count} run(s) held beyond its allowance of "
            f"{found.allowance}, "
            f"and every trigger of it caused up to revision {revision}, start on the leader's next pass"
        )
    if not state.stopped_anywhere():
        raise LookupError(f"{instance} is not held by the trigger budget: nothing to release")
    dags = ", ".join(state.stopped_dags())
    # Every stopped DAG is released as by --dag (its range then declared for its dependents); a DAG released before
    # keeps its range; the others' counts go with the instance's.
    kept = {
        d: _free(e, revision) if e.stopped else e.model_copy(update={"started": (), "reran": ()})
        for d, e in state.dags.items()
    }
    kept = {d: e for d, e in kept.items() if e.released_first is not None}
    released = state.model_copy(
        update={"stopped": False, "released_through": revision, "by": by, "at": at, "started": (), "dags": kept}
    )
    what = f"the {state.stopped_count} run(s) held at limit {state.limit}" if state.stopped else "the held runs"
    return released, (f"released {instance}: {what}" + (f" (DAGs {dags})" if dags else "") + ", and every trigger "
                      f"caused up to revision {revision}, start on the leader's next pass")  # fmt: skip


async def _release(settings: Settings, instance: str, dag: str | None = None) -> str:
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import

    key = settings.keys.budget_key(instance)
    async with await EtcdStore.connect(settings.etcd()) as store:
        for _ in range(RELEASE_ATTEMPTS):
            kv = await store.get(key)
            state = BudgetState()
            if kv is not None:
                parsed, problem = parse_budget(kv.value)
                if parsed is None:
                    raise StoreError(f"{key} holds an unreadable value ({problem}); delete it to release {instance}")
                state = parsed
            revision = await store.current_revision()
            try:
                released, message = _released(state, instance, dag, revision, f"release@{socket.gethostname()}")
            except LookupError as exc:
                return str(exc)
            done = await store.cas(key, dump_budget(released), kv.mod_revision if kv is not None else 0)
            if done.succeeded:
                return message
    again = f"coordinator release {instance}" + (f" --dag {dag}" if dag is not None else "")
    raise StoreError(f"{key} kept changing while releasing; run `{again}` again")
