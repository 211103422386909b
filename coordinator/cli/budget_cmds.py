"""``coordinator release INSTANCE``: let the runs the trigger budget held go ahead (semantics rule 15).

Rules:
1. The release is one compare-and-swap of ``{prefix}/config/budget/{instance}``: ``held`` false and
   ``released_through`` the store's current revision, so every trigger caused so far passes the budget once; a
   trigger caused later counts against it again, in a window emptied by the release (counting starts again from
   the operator's confirmation). The leader re-plans every partition when the key changes. A conflict (the leader
   counted runs in the meantime) reads the key again, a few times, before giving up with a message.
2. Nothing else is written and nothing is triggered here: the leading watcher acts, exactly once, through the ledger.
3. A bad instance name exits 2; an instance that is not held says so and writes nothing (exit 0); etcd trouble exits 1.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Annotated

import typer

from coordinator.cli.app import EtcdOpt, PrefixOpt, app, build_settings, fail, run_async
from coordinator.core.budget_state import BudgetState, dump_budget, parse_budget
from coordinator.core.model import NAME_RE
from coordinator.errors import StoreError
from coordinator.settings import Settings


@app.command()
def release(
    instance: Annotated[str, typer.Argument(help="the Airflow instance whose held runs may start")],
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Release the runs the trigger budget holds for INSTANCE: the leading watcher then starts them, once each."""
    if not NAME_RE.match(instance):
        fail(f"instance {instance!r} is not a valid instance name ([A-Za-z0-9_.-]+, not . or ..)")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    typer.echo(run_async(lambda: _release(settings, instance)))


#: Rule 1: the leader writes the key only while the instance is not held, so one conflict at most is expected.
RELEASE_ATTEMPTS = 3


async def _release(settings: Settings, instance: str) -> str:
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
            if not state.held:
                return f"{instance} is not held by the trigger budget: nothing to release"
            revision = await store.current_revision()
            by = f"release@{socket.gethostname()}"
            released = state.model_copy(
                update={"held": False, "released_through": revision, "by": by, "at": datetime.now(UTC), "started": ()}
            )
            done = await store.cas(key, dump_budget(released), kv.mod_revision if kv is not None else 0)
            if done.succeeded:
                return (f"released {instance}: the {state.held_count} run(s) held at limit {state.limit}, and every "
                        f"trigger caused up to revision {revision}, start on the leader's next pass")  # fmt: skip
    raise StoreError(f"{key} kept changing while releasing; run `coordinator release {instance}` again")
