"""The page's shared assets (``page/service.py``'s **Read-only, one load** (e)) from an informer of one family (the
assets: events and deliveries) kept current by its watch, so that a page view reads neither ``{prefix}/assets/`` nor
``{prefix}/deliveries/``.

The page is served by a long-lived process (the Airflow api-server's plugin app); a view that read and parsed both
prefixes whole would grow with the history until retention runs (seconds at 100,000 recorded events). Here one
:class:`~coordinator.core.asset_index.AssetIndex` per process follows them instead, loaded and watched by the
informer as the watcher's is (``informer.read_model.load``, ``Informer.watch``): no list or watch code of its own.

Rules:
- **Started at the first view.** Started at the first view that asks, per event loop (gRPC channels belong to one), etcd
  connection and prefix: a load of the assets family (a snapshot of each of the two prefixes) into the index, then the
  informer's watch of each from its snapshot's revision. A relist (after a compaction) diffs only the keys of its own
  prefix, so one prefix's relist never deletes the other's (``Informer.watch``).
- **Views ask the index.** A view asks the index, not etcd: the index keeps the page's counts per asset and target
  current as keys change (``AssetIndex.shared``, the same nodes as ``page/assets.asset_nodes``), so a view costs the
  assets and their targets, not the history. The nodes are rebuilt only when the index changed since the last view:
  a load, or a watch batch whose changes name asset events or delivery entries (``AssetIndex.KEYS``, the informer's
  **Changes name what moved**).
- **Wait for the load.** Until the index is loaded a view waits for it; a load that fails (etcd unreachable, refused)
  fails that view as a read did (the page's 503) and the next view starts over, as it does after a watch that stopped
  for good. The index may trail etcd by the watch's latency: the page draws what the watch has brought, like the watcher
  acts on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetKeys
from coordinator.core.model import KeyLayout
from coordinator.errors import CoordinatorError
from coordinator.informer import Changes, Informer
from coordinator.informer.read_model import Family, load
from coordinator.page.assets import AssetNode, AssetTarget
from coordinator.runtime.settings import EtcdSettings

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore

log = logging.getLogger(__name__)


@dataclass
class AssetFeed:
    """One process's asset index of one prefix, loaded at first use and followed by the informer's watch (every rule of
    the module)."""

    etcd: EtcdSettings
    keys: AssetKeys
    index: AssetIndex = field(init=False)
    _informer: Informer | None = field(default=None, init=False, repr=False)
    _ready: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    #: **Views ask the index**: the nodes of the last view, until a load or a watch batch moves the index (None).
    _nodes: tuple[AssetNode, ...] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = AssetIndex(self.keys)

    async def nodes(self) -> tuple[AssetNode, ...]:
        """**Views ask the index**: the shared assets as the index holds them now."""
        if self._task is None or self._task.done():
            self._start()
        assert self._ready is not None
        await asyncio.shield(self._ready)
        if self._nodes is None:
            self._nodes = nodes_from(self.index)
        return self._nodes

    async def load(self, store: EtcdStore) -> dict[str, int]:
        """**Started at the first view**: the assets family into a fresh informer and its index; each prefix's snapshot
        revision."""
        model = await load(store, KeyLayout(self.keys.prefix), {Family.ASSETS})
        assert model.assets is not None  # asked for
        self.index, self._informer, self._nodes = model.assets, model.informer, None
        return dict(model.revisions)

    async def follow(self, store: EtcdStore, prefix: str, revision: int) -> None:
        """**Started at the first view**: the informer's watch of ``prefix`` (one of the two) from ``revision``, until
        it fails."""
        assert self._informer is not None, "load first"
        await self._informer.run(store, prefix, revision, then=self._moved)

    def _moved(self, changes: Changes) -> None:
        """**Views ask the index**: a batch that moved an asset event or a delivery entry makes the next view derive
        the nodes again."""
        if changes.of(AssetIndex.KEYS):
            self._nodes = None

    def _start(self) -> None:
        self._nodes = None
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(self._ready), name=f"page-assets:{self.keys.prefix}")

    async def _run(self, ready: asyncio.Future[None]) -> None:
        from coordinator.etcd import EtcdStore  # the gRPC import only when the page is asked for

        try:
            async with await EtcdStore.connect(self.etcd) as store:
                start = await self.load(store)
                log.info("page.assets_loaded prefix=%s events=%d deliveries=%d", self.keys.prefix,
                         len(self.index.events), len(self.index.ledger))  # fmt: skip
                ready.set_result(None)
                await asyncio.gather(*(self.follow(store, prefix, rev) for prefix, rev in start.items()))
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        # **Wait for the load**: the next view starts over (a view waiting for the load gets the error)
        except Exception as exc:
            log.warning("page.assets_unread prefix=%s error=%s", self.keys.prefix, exc)
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, CoordinatorError) else CoordinatorError(str(exc)))


#: **Started at the first view**: per event loop, the feeds by (etcd connection, prefix); a loop's feeds go with it.
_FEEDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], AssetFeed]] = (
    weakref.WeakKeyDictionary()
)


def _connection(etcd: EtcdSettings) -> str:
    """Which etcd connection (endpoints, user, credentials' digest): another user may read other keys."""
    secret = etcd.password.get_secret_value() if etcd.password is not None else ""
    return f"{etcd.model_dump_json()}|{hashlib.sha256(secret.encode()).hexdigest()}"


async def shared_assets(etcd: EtcdSettings, prefix: str) -> tuple[AssetNode, ...]:
    """The page's shared assets under ``prefix`` (every rule of the module), from this process's feed for them."""
    feeds = _FEEDS.setdefault(asyncio.get_running_loop(), {})
    key = (_connection(etcd), prefix)
    feed = feeds.get(key)
    if feed is None:
        feed = feeds[key] = AssetFeed(etcd, AssetKeys(prefix))
    return await feed.nodes()


def nodes_from(index: AssetIndex) -> tuple[AssetNode, ...]:
    """**Views ask the index**: ``page/assets.asset_nodes`` of what ``index`` holds, from its counts per asset and
    target."""
    nodes = []
    for shared in index.shared():
        targets = []
        for t in shared.targets:
            head = t.next_record
            targets.append(AssetTarget(t.target, t.delivered, t.pending, next_event=t.next_event,
                                       next_status=head.status if head is not None else None,
                                       retry_at=head.retry_at if head is not None else None,
                                       last_error=t.last_error))  # fmt: skip
        nodes.append(AssetNode(shared.uri, shared.source, tuple(targets), shared.producers))
    return tuple(nodes)
