"""The asset index (``core/asset_index.py``: the recorded asset events and the delivery ledger) as a reader asks the
informer for it; the index itself is pure and lives in the core (``informer/index.py``'s **A need lives beside its
index**: this is as close as the layers allow)."""

from __future__ import annotations

from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetKeys
from coordinator.informer.index import Need, indexed

#: Semantics `assets-by-route` and `asset-exactly-once`: the recorded events and the delivery ledger, by stream.
ASSET_INDEX: Need[AssetIndex] = Need("asset", lambda view: indexed(AssetIndex(AssetKeys(view.keys.prefix))))
