"""``release-flap``: an operator releases a run state the leading watcher held because it flapped (semantics
`flap-held`, ``core/flaps.py``; docs/howto/incidents.md).

Rules:
- **A fact, not an action.** The command marks the record ``{prefix}/config/flaps/{instance}/{dag_id}/{partition}``
  released (``released_at``, ``released_by``, ``release_reason``) by compare-and-swap on its mod revision, and appends
  one history entry (``action`` ``release``, ``target`` ``flap DAG@PARTITION``); no Airflow call. The leading watcher
  reads the release through its informer and plans the partition again: each dependent held starts once, on the
  generation that stands then.
- **Idempotent.** A record released already changes nothing and says so; no record is an error naming where the
  records are listed (``coordinator doctor``, ``coordinator status``).
- **Exit codes.** A DAG or partition that is no name exits 2; no such record exits 2; etcd trouble exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from coordinator.cli.app import OPERATE, EtcdOpt, PrefixOpt, app, build_settings, fail, out, run_async
from coordinator.cli.incident_cmds import ByOpt, who_acts
from coordinator.core.flaps import FlapRecord, parse_flap
from coordinator.core.holds import HistoryAction, HistoryEntry
from coordinator.core.model import KeyLayout, NodeId, any_partition, dump_record
from coordinator.errors import StoreError
from coordinator.writers.history import append_history, new_id

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore


@dataclass(frozen=True)
class _Released:
    record: FlapRecord
    already: bool


async def _release(
    store: EtcdStore, keys: KeyLayout, node: NodeId, partition: str, who: str, why: str, now: datetime
) -> _Released:
    """**A fact, not an action**; LookupError when there is no record."""
    key = keys.flap_key(node, partition)
    for _ in range(5):
        kv = await store.get(key)
        if kv is None:
            raise LookupError(f"no flap is recorded for {node} {partition} ({key}); `coordinator doctor` lists the "
                              "held ones")  # fmt: skip
        found, problem = parse_flap(kv.value)
        if found is None:
            raise StoreError(f"{key} holds an unreadable value ({problem}): it holds nothing; delete it")
        if not found.standing:
            return _Released(found, already=True)
        released = found.model_copy(update={"released_at": now, "released_by": who, "release_reason": why or None})
        if (await store.cas(key, dump_record(released), kv.mod_revision)).succeeded:
            entry = HistoryEntry(id=new_id(), action=HistoryAction.RELEASE, by=who, at=now, why=why,
                                 target=f"flap {node.qualified}@{partition}",
                                 affected=(f"{node.qualified} {partition}: runs {found.runs_text()}",))  # fmt: skip
            await append_history(store, keys, entry)
            return _Released(released, already=False)
    raise StoreError(f"{key} kept changing; run `coordinator release-flap {node.qualified} -p {partition}` again")


@app.command("release-flap", rich_help_panel=OPERATE)
def release_flap(
    dag: Annotated[str, typer.Argument(metavar="DAG", help="instance/dag_id (or dag_id of instance default)")],
    partition: Annotated[str, typer.Option("--partition", "-p", metavar="PARTITION", help="the partition held")],
    reason: Annotated[str, typer.Option("--reason", metavar="WHY", show_default="none", help="why (recorded)")] = "",
    by: ByOpt = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Release a run state the leading watcher held because it flapped: each dependent it held then starts once."""
    try:
        node = NodeId.parse(dag)
        p = any_partition(partition)
    except ValueError as exc:
        fail(str(exc))
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    who, now = who_acts(by, settings), datetime.now(UTC)

    async def work() -> _Released | str:
        from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import

        async with await EtcdStore.connect(settings.etcd()) as store:
            try:
                return await _release(store, settings.keys, node, p, who, reason.strip(), now)
            except LookupError as exc:
                return str(exc)

    done = run_async(work)
    if isinstance(done, str):
        fail(done)
    if done.already:
        at = done.record.released_at.isoformat(timespec="seconds") if done.record.released_at else "?"
        out.print(f"the flap of {node} {p} was released already ({at} by {done.record.released_by}): nothing to do",
                  markup=False, soft_wrap=True)  # fmt: skip
        return
    out.print(f"released the flap of {node} {p} (runs {done.record.runs_text()}): the leading watcher starts each "
              "dependent it held, once; a flap that goes on is held again", markup=False, soft_wrap=True)  # fmt: skip
