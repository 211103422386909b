"""What the CLI says and does about shared assets (semantics `assets-by-route` and `asset-exactly-once`): the ``status``
table of their streams, ``why asset URI``, and ``coordinator skip-event URI EVENT_ID --from SOURCE --to TARGET``, which
gives up one asset delivery an operator knows will never succeed (semantics `asset-skip` and `delivery-skip`), so its
stream's later events move on.

Rules (of ``skip-event``):
- **Only adds skip.** The request is one compare-and-swap on the delivery's ledger entry that only adds ``skip`` (who,
  when, why); the status stays as it is. The leading watcher applies it at its next attempt, where it would POST: after
  a look-up that finds nothing (then the entry becomes ``skipped``), or confirms ``done`` when the event is found in the
  target. Nothing is posted or deleted here, so a skip can never hide a delivery that happened.
- **Only attempted deliveries.** Only a delivery that was attempted has an entry: one that was not (the stream is held
  by an earlier event) exits 1 and names that; one already ``done`` or ``skipped`` says so and writes nothing (exit 0).
- **Exit codes.** Bad arguments exit 2 before etcd is reached; etcd trouble, or the entry changing three times in a row,
  exits 1.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from coordinator.cli.app import OPERATE, EtcdOpt, PrefixOpt, app, build_settings, fail, out, run_async
from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import (
    AssetKeys,
    DeliveryStatus,
    SkipRequest,
    StreamState,
    parse_delivery,
    why_asset,
)
from coordinator.core.graph import Graph
from coordinator.core.model import NAME_RE
from coordinator.errors import CoordinatorError, SpecError, StoreError
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec

#: **Exit codes**: compare-and-swap attempts before giving up (the leader writes the entry at each step of an attempt).
ATTEMPTS = 3


@app.command("skip-event", rich_help_panel=OPERATE)
def skip_event(
    uri: Annotated[str, typer.Argument(metavar="URI", help="the asset's URI, as `coordinator why asset` shows it")],
    event_id: Annotated[
        int, typer.Argument(metavar="EVENT_ID", help="the event's id in its source Airflow (`why asset`: next #ID)")
    ],
    source: Annotated[str, typer.Option("--from", metavar="INSTANCE", help="the instance that produced the event")],
    target: Annotated[str, typer.Option("--to", metavar="INSTANCE", help="the instance the delivery is to")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", metavar="REASON", show_default="none", help="why it is given up (kept in the ledger entry)"
        ),
    ] = "",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Give up one asset delivery (an event the --to instance will never accept): the leading watcher skips it at
    its next attempt, unless it finds the event there, and the stream's later events go on.

    Exit 0 when requested (or already delivered or skipped), 1 when the delivery was never attempted or etcd
    fails, 2 for bad arguments.
    """
    for what, name in (("--from", source), ("--to", target)):
        if not NAME_RE.match(name):
            fail(f"{what} {name!r} is not a valid instance name ([A-Za-z0-9_.-]+, not . or ..)")
    if event_id < 1:
        fail(f"EVENT_ID must be a positive event id, got {event_id}")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    typer.echo(run_async(lambda: _skip(settings, uri, event_id, source, target, reason)))


async def _skip(settings: Settings, uri: str, event_id: int, source: str, target: str, reason: str) -> str:
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import

    key = AssetKeys(settings.keys.prefix).delivery_key(target, source, uri, event_id)
    what = f"event #{event_id} of {uri} from {source} to {target}"
    request = SkipRequest(by=f"{getpass.getuser()}@{socket.gethostname()}", at=datetime.now(UTC), reason=reason)
    async with await EtcdStore.connect(settings.etcd()) as store:
        for _ in range(ATTEMPTS):
            kv = await store.get(key)
            if kv is None:
                raise CoordinatorError(
                    f"{what} has no delivery entry ({key}): it was never attempted, so there is nothing to skip; "
                    f"`coordinator why asset {uri}` shows which event holds the stream"
                )
            record = parse_delivery(kv.value)
            if record is None:
                raise StoreError(f"{key} holds an unreadable delivery entry; `coordinator why asset {uri}`")
            if record.status is DeliveryStatus.DONE:
                return f"{what} is already delivered (target event #{record.target_event_id}): nothing to skip"
            if record.status is DeliveryStatus.SKIPPED:
                return f"{what} is already skipped: nothing to do"
            # Semantics `delivery-term-wait` needs the revision of the leader's last write, not of this unfenced one.
            entry_rev = record.skip.entry_rev if record.skip is not None else kv.mod_revision
            updated = record.model_copy(update={"skip": request.model_copy(update={"entry_rev": entry_rev})})
            if (await store.cas(key, updated.model_dump_json().encode(), kv.mod_revision)).succeeded:
                return (
                    f"skip requested for {what} (it was {record.status.value}): the leading watcher gives it up at its "
                    f"next attempt unless it finds the event in {target}; `coordinator why asset {uri}` shows it"
                )
    raise StoreError(f"{key} changed {ATTEMPTS} times while requesting the skip; run the command again")


async def _read_assets(settings: Settings) -> tuple[AssetIndex, int | None]:
    """The recorded asset events and the delivery ledger (semantics `assets-by-route` and `asset-exactly-once`) in the
    watcher's asset index (one load of the assets family: only the two asset prefixes, not the whole store), and the
    leader key's create revision (the current term, semantics `delivery-term-wait`; None while nobody leads: a point
    read, since the presence index keeps the key's mod revision), over one connection."""
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import
    from coordinator.informer.read_model import Family, load

    async with await EtcdStore.connect(settings.etcd()) as store:
        model = await load(store, settings.keys, {Family.ASSETS})
        term = await store.get(settings.keys.leader)
    assert model.assets is not None  # asked for
    return model.assets, term.create_revision if term is not None else None


def why_asset_lines(uri: str, etcd: str | None, prefix: str | None, deps: Path | None) -> None:
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps)
    try:
        graph = load_spec(settings.deps)
    except SpecError as exc:
        fail(str(exc))
    index, leader = run_async(lambda: _read_assets(settings))
    for line in why_asset(uri, graph.asset_routes, index.recorded(), index.whole_ledger(), leader):
        out.print(line, markup=False, soft_wrap=True)


class AssetStreamRow(BaseModel):
    """One (target, source, asset) stream of the routed assets, as `status` shows it (semantics `asset-order`)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    asset: str
    source: str = Field(serialization_alias="from")
    target: str = Field(serialization_alias="to")
    delivered: int
    pending: int
    next_event_id: int | None  # the oldest undelivered event of the source, None when all are delivered
    next_error: str | None  # why that event is not delivered yet, as the ledger last recorded it
    skipped: int = 0  # given up on an operator's request (`coordinator skip-event`, semantics `asset-skip`)

    @classmethod
    def of(cls, stream: StreamState) -> AssetStreamRow:
        head = stream.head
        return cls(
            asset=stream.uri, source=stream.source, target=stream.target, delivered=stream.delivered,
            pending=stream.pending, next_event_id=head.event.fact.event_id if head is not None else None,
            next_error=stream.head_error, skipped=stream.skipped,
        )  # fmt: skip


def asset_rows(graph: Graph, assets: AssetIndex | None) -> list[AssetStreamRow]:
    """The streams of the routed assets from the recorded events and the delivery ledger (the asset index read with
    the rest of ``status``'s model); none without a route."""
    if not graph.asset_routes or assets is None:
        return []  # nothing to show: a graph without routes never recorded a delivery
    return [AssetStreamRow.of(stream) for stream in assets.streams(graph.asset_routes)]


def print_assets(graph: Graph, rows: list[AssetStreamRow]) -> None:
    """`status`: one row per (target, source, asset) stream of the routed assets (semantics `asset-order`)."""
    if not rows:
        out.print(f"assets: {len(graph.asset_routes)} route(s), no event recorded yet", markup=False)
        return
    table = Table(title="shared assets (why asset <uri> explains one)")
    for column in ("asset", "from", "to", "delivered", "pending", "next"):
        table.add_column(column, overflow="fold")
    for row in rows:
        nxt = "-"
        if row.next_event_id is not None:
            nxt = f"#{row.next_event_id}" + (f": {row.next_error}" if row.next_error else "")
        if row.skipped:
            nxt += f" ({row.skipped} skipped)"
        table.add_row(row.asset, row.source, row.target, str(row.delivered), str(row.pending), nxt)
    out.print(table)
