"""Expectations (``coordinator/informer/expectations.py``): a leader's own write is pending until the informer's watch
has passed its revision, against a real etcd; the executor records every write that lands and none that does not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from coordinator.core.model import KeyLayout
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.informer import Informer
from coordinator.informer.expectations import Expectations
from coordinator.runtime.settings import EtcdSettings
from coordinator.watcher.executor import Executor


def test_an_expectation_is_met_once_the_informer_has_passed_its_revision() -> None:
    """A write at R is pending until ``observe`` reaches R; a write at or below what was observed is never pending."""
    expectations = Expectations()
    expectations.expect("a", 10)
    expectations.expect_all(["b", "c"], 12)
    assert expectations.pending("a") and expectations.pending_under("b") and expectations.awaited() == 3
    expectations.observe(11)
    assert not expectations.pending("a") and expectations.pending("b") and expectations.pending("c")
    expectations.observe(12)
    assert expectations.awaited() == 0
    expectations.expect("a", 12)  # already observed: the model holds it
    assert not expectations.pending("a")


def test_the_executors_write_is_pending_until_the_informers_watch_brings_it_back(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A fenceless executor's cas and delete are expected by key; a refused cas expects nothing; the informer's watch
    of the prefix meets each expectation, and the model then holds the write."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            informer = Informer(View(KeyLayout(etcd_prefix)))
            loaded = await informer.load(store, etcd_prefix)
            executor = Executor(store, {}, fence=lambda: None, expectations=informer.expectations)
            key = f"{etcd_prefix}/graph/x"
            refused = await executor.cas(key, b"1", 99)
            assert not refused.succeeded and not informer.expectations.pending(key)
            wrote = await executor.cas(key, b"1", 0)
            assert wrote.succeeded and informer.expectations.pending(key)

            async def until_met() -> None:
                async for _ in informer.watch(store, etcd_prefix, loaded.revision):
                    if not informer.expectations.pending(key):
                        return

            await asyncio.wait_for(until_met(), timeout=30)
            assert informer.expectations.observed >= wrote.revision
            deleted = await executor.delete_unchanged([(key, wrote.revision)])
            assert deleted.succeeded and informer.expectations.pending(key)

    arun(scenario())
