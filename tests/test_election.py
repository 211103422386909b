"""Election's keepalive loop against a scripted store, for what a real etcd cannot time (the real-etcd election
tests are in test_store.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from coordinator.etcd import KV, CasResult, Election, Lease
from tests.conftest import run_coro

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore

LEASE_ID = 7
#: Granted, not asked for: the asked TTL (1 s) sets the keepalive interval (1/3 s), the granted one the deadline, so
#: a slow machine cannot reach the deadline before the first keepalive.
GRANTED_TTL_S = 60


class ScriptedStore:
    """The calls an Election makes, answered at once, except the keepalive, which waits for the test's answer."""

    def __init__(self) -> None:
        self.keepalive_asked = asyncio.Event()
        self.keepalive_answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reads = 0
        self.revoked: list[int] = []

    async def grant_lease(self, ttl: int) -> Lease:
        return Lease(LEASE_ID, GRANTED_TTL_S)

    async def create(self, key: str, value: bytes, *, lease: int) -> CasResult:
        return CasResult(succeeded=True, revision=1, current=None)

    async def keepalive_once(self, lease_id: int, timeout_s: float) -> int:
        self.keepalive_asked.set()
        return await self.keepalive_answer

    async def get(self, key: str, *, retry: bool = True) -> KV | None:
        self.reads += 1
        return None  # "key gone": ends a loop that missed its cancel, so the test fails instead of hanging

    async def revoke_lease(self, lease_id: int) -> None:
        self.revoked.append(lease_id)


def test_a_resign_as_a_keepalive_is_answered_stops_the_keepalive_loop_there() -> None:
    """A resign cancelling the keepalive loop in the same turn as etcd answers its keepalive stops the loop there:
    no further etcd read, the lease revoked once; Python 3.11's wait_for swallowed that cancel (gh-86296) and the
    loop went on keeping the lease alive (and resign waited for it)."""

    async def scenario() -> tuple[int, list[int], bool]:
        store = ScriptedStore()
        election = Election(cast("EtcdStore", store), "/leader", "me", ttl=1)
        assert await election.acquire(timeout=0)
        await store.keepalive_asked.wait()  # the loop's first keepalive, after 1/3 s, waits for its answer
        store.keepalive_answer.set_result(GRANTED_TTL_S)
        await election.resign()  # cancels the loop before it runs again
        return store.reads, store.revoked, election.holding

    assert run_coro(scenario(), timeout=30.0) == (0, [LEASE_ID], False)
