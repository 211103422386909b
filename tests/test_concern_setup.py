"""A concern in one module, registered with one line (``watcher/service.py``'s **One module, one line**): a toy
concern's ``setup`` (``tests/support/toy_concern.py``) added to the watcher's list of setups is handed its keys from
real watch batches of a real etcd through the informer's typed changes, and the manager's watches, delays and handles
behave as its rules say (``manager/manager.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.view import View
from coordinator.etcd import EtcdStore, WatchBatch
from coordinator.etcd.types import Event, EventKind
from coordinator.informer import Informer
from coordinator.informer.deadlines import DEADLINE_INDEX
from coordinator.informer.holds import HOLD_INDEX, HoldIndex
from coordinator.manager import Controller, Handle, Manager, Watch, WorkQueue
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.watcher.concerns import CONCERNS
from coordinator.watcher.service import Watcher
from tests.support import toy_concern
from tests.support.changes import changes_of
from tests.test_controller import FakeClock, Greeter, due_after
from tests.test_informer import hold_value

A, B = NodeId("default", "a"), NodeId("default", "b")
P1, P2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


def run_value(run_id: str) -> bytes:
    return dump_record(RunRecord(state=RunState.SUCCESS, run_id=run_id))


def test_a_concern_added_with_one_line_is_handed_its_keys_from_the_watch(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path, arun: Callable[..., Any]
) -> None:
    """A toy concern added to the watcher's list of setups reconciles, once each, a key per partition whose run states
    the watch changed and a key per hold the watch put or deleted, reading the model as it is after those batches;
    what was there before the load brings nothing, and a watcher without that line has no such controller."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({"version": 1, "instances": {"default": {}}, "dags": {}}))
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")
    keys = KeyLayout(etcd_prefix)

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.run_key(A, P1), run_value("a1"))  # loaded, not a change
            plain = Watcher(settings, store, GraphSource(deps), {}, watcher_id="w0")
            assert "tally" not in plain.manager.controllers
            watcher = Watcher(settings, store, GraphSource(deps), {}, watcher_id="w1",
                              concerns=(*CONCERNS, toy_concern.setup))  # fmt: skip
            revision = await watcher.load()
            await store.put(keys.run_key(B, P1), run_value("b1"))
            await store.put(keys.run_key(A, P2), run_value("a2"))
            await store.put(keys.run_key(B, P1), run_value("b1-again"))
            await store.put(keys.hold_key("h1"), hold_value("h1"))
            assert await store.delete(keys.hold_key("h1"))
            last = await store.put(keys.hold_key("h2"), hold_value("h2"))
            async for batch in store.watch_prefix(keys.root, revision, watcher.informer.known):
                watcher._apply_batch(batch)
                if batch.revision >= last:
                    break
            tally = watcher.manager.get(toy_concern.TALLY)
            assert tally.seen == []  # nothing reconciles before its controller's turn
            assert await watcher.manager.controllers["tally"].drain_ready() == 4
            assert sorted(tally.seen) == [
                ("hold", "h1", ()),
                ("hold", "h2", ("standing",)),
                ("partition", P1, ("a", "b")),
                ("partition", P2, ("a",)),
            ]

    arun(main())


def test_a_watch_with_a_delay_adds_its_keys_that_much_later_and_one_without_at_once() -> None:
    """Two watches of one controller on the same changes: the plain one's keys are ready at once, the delayed one's
    (a concern that takes every change of one moment in one pass) exactly ``after_s`` later, each key once."""
    clock = FakeClock()
    manager = Manager()
    now: Controller[str] = Controller("now", Greeter(), queue=WorkQueue(clock=clock))
    later: Controller[str] = Controller("later", Greeter(), queue=WorkQueue(clock=clock))
    manager.register(now, Watch(lambda changes: sorted(changes.of(View.PARTITIONS))))
    manager.register(later, Watch(lambda changes: sorted(changes.of(View.PARTITIONS)), after_s=2.5))
    manager.dispatch(changes_of(5, partitions={"p1", "p2"}))
    manager.dispatch(changes_of(6, partitions={"p1"}))
    assert sorted(now.queue.get_nowait()) == ["p1", "p2"]
    assert later.queue.get_nowait() == []
    assert sorted(due_after(later.queue, clock, 2.5)) == ["p1", "p2"]


def test_a_handle_finds_what_a_setup_provided_and_names_what_nothing_provides() -> None:
    """``get`` returns what a setup provided under a handle; a handle nothing provided (a concern that is off) is
    None to ``find`` and a named error to ``get``; a handle is provided once."""
    manager = Manager()
    seen: Handle[list[str]] = Handle("seen")
    off: Handle[int] = Handle("off")
    value = manager.provide(seen, ["a"])
    assert manager.get(seen) is value and manager.find(off) is None
    with pytest.raises(LookupError, match="nothing provides Handle\\('off'\\)"):
        manager.get(off)
    with pytest.raises(ValueError, match="provided already"):
        manager.provide(seen, [])


def test_an_index_asked_for_is_built_once_fed_by_the_informer_and_refused_once_it_has_started() -> None:
    """Two asks for one index's need get the same index, which the informer feeds from then on (a hold put by a watch
    batch is in it and named in the batch's changes); an index not asked for is not built, and a first ask after a
    watch batch was applied is refused with the need named."""
    keys = KeyLayout("/t")
    informer = Informer(View(keys))
    holds = informer.index(HOLD_INDEX)
    assert informer.index(HOLD_INDEX) is holds and informer.indexes == (holds,)
    put = Event(EventKind.PUT, keys.hold_key("h1"), hold_value("h1"), 3)
    changes = informer.apply(WatchBatch((put,), 3))
    assert "h1" in holds.holds and list(changes.of(HoldIndex.HOLDS)) == ["h1"]
    assert informer.index(HOLD_INDEX) is holds
    with pytest.raises(RuntimeError, match="Need\\('deadline'\\) asked for after the informer started"):
        informer.index(DEADLINE_INDEX)
    assert informer.indexes == (holds,)
