"""Leader election on one key, built only on the client's public API (leases, create-if-absent, get, wait_deleted).

The package's **Fenced leadership**: leadership is a lease-bound key created only if absent. A leader stops claiming
leadership (``is_leader``) as soon as a keepalive fails and for good once ``last keepalive + TTL - margin`` has passed,
i.e. before any standby can acquire the key; every leader write carries a Fence that etcd checks in the same
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from coordinator.errors import ConfigError, CoordinatorError, LeadershipLost, StoreError
from coordinator.etcd.types import Fence
from coordinator.etcd.wire import decode

if TYPE_CHECKING:
    from coordinator.etcd.client import EtcdStore

log = logging.getLogger(__name__)

#: While a keepalive is failing, try again every 0.25 s (at most): leadership is in doubt until one succeeds, and the
#: lease deadline is close; the regular interval is TTL / 3 (two more tries before etcd could expire the lease).
SUSPECT_RETRY_S = 0.25
#: At most this long for the best-effort revoke after losing leadership: a standby otherwise waits for the TTL.
REVOKE_TIMEOUT_S = 1.0


class Election:
    """Leader election on one key; see the module docstring. Create with :meth:`EtcdStore.election`."""

    def __init__(self, store: EtcdStore, key: str, identity: str, ttl: int) -> None:
        if ttl < 1:
            raise ConfigError(f"leader TTL must be at least 1 s, got {ttl}")
        self._store = store
        self.key = key
        self.identity = identity
        self.ttl = ttl
        #: Set when leadership ends (lease lost, key deleted or replaced, keepalives failing past the deadline, resign).
        self.lost = asyncio.Event()
        self._fence: Fence | None = None
        self._lease_id = 0
        self._deadline = 0.0  # monotonic time after which etcd may already have expired our lease
        #: Monotonic time the current term began: when our create of the key was answered. Any earlier leader's lease
        #: had expired in etcd before that create committed, so whatever it sent while leading was sent before this.
        self.term_started = 0.0
        self._suspect = False  # the last keepalive failed; not leading until one succeeds
        self._task: asyncio.Task[None] | None = None

    def _margin(self, granted_ttl: int) -> float:
        # Stop acting this long before etcd could expire the lease: covers clock-rate drift and the time a standby's
        # create needs, so two leaders never act at once. 20% of the TTL, between 0.5 s and 2 s.
        return min(2.0, max(0.5, granted_ttl * 0.2))

    @property
    def is_leader(self) -> bool:
        return (
            self._fence is not None
            and not self.lost.is_set()
            and not self._suspect
            and time.monotonic() < self._deadline
        )

    @property
    def holding(self) -> bool:
        """Won and not lost yet (leading, or keepalives in doubt): what ``EtcdStore.close`` resigns."""
        return self._fence is not None and not self.lost.is_set()

    @property
    def fence(self) -> Fence:
        """The proof to pass to fenced writes; raises LeadershipLost if leadership was never acquired."""
        if self._fence is None:
            raise LeadershipLost(f"{self.identity} does not hold {self.key}")
        return self._fence

    # A timeout parameter, not asyncio.timeout: running out of time is an answer (False), not an error.
    async def acquire(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Become leader; wait up to ``timeout`` seconds (None: forever). True when acquired."""
        if self.is_leader:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while True:
            sent = time.monotonic()
            lease = await self._store.grant_lease(self.ttl)
            result = await self._store.create(self.key, self.identity.encode(), lease=lease.id)
            if result.succeeded:
                self._won(Fence(self.key, result.revision), lease.id, sent + lease.ttl - self._margin(lease.ttl))
                return True
            # Someone holds it. Give our lease back (no keepalives while waiting) and wait for the key to go.
            with contextlib.suppress(StoreError):
                await self._store.revoke_lease(lease.id)
            log.log(
                logging.DEBUG if waited else logging.INFO,
                "election.wait key=%s identity=%s holder=%s",
                self.key,
                self.identity,
                decode(result.current.value) if result.current is not None else "?",
            )
            waited = True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # Re-check at least every TTL even without a delete event, in case the watch misses it.
            wait = self.ttl if remaining is None else min(remaining, self.ttl)
            await self._store.wait_deleted(self.key, result.revision, wait)

    def _won(self, fence: Fence, lease_id: int, deadline: float) -> None:
        self._fence, self._lease_id, self._deadline, self._suspect = fence, lease_id, deadline, False
        self.term_started = time.monotonic()
        self.lost = asyncio.Event()
        self._task = asyncio.create_task(self._keep_alive(), name=f"election-keepalive:{self.key}")
        log.info(
            "election.acquired key=%s identity=%s create_rev=%d lease=%x",
            self.key,
            self.identity,
            fence.create_revision,
            lease_id,
        )

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            log.warning("election.lost key=%s identity=%s reason=%s", self.key, self.identity, reason)
            self.lost.set()

    async def _keep_alive(self) -> None:
        interval = self.ttl / 3
        fence = self._fence
        assert fence is not None
        try:
            while True:
                await asyncio.sleep(min(interval, SUSPECT_RETRY_S) if self._suspect else interval)
                now = time.monotonic()
                if now >= self._deadline:
                    self._lose("no successful keepalive before the lease deadline")
                    break
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the answer when it arrives as the
                    # task is cancelled, swallowing the cancel (gh-86296). resign() stops this loop only by cancelling
                    # it: a swallowed cancel would keep the lease alive and resign() waiting for ever.
                    async with asyncio.timeout(self._deadline - now):
                        ttl = await self._store.keepalive_once(self._lease_id, timeout_s=self._deadline - now)
                    async with asyncio.timeout(max(0.05, self._deadline - now)):
                        holder = await self._store.get(self.key, retry=False)
                except (StoreError, TimeoutError) as exc:
                    self._suspect = True
                    log.warning(
                        "election.keepalive_failed key=%s identity=%s left_s=%.2f error=%s",
                        self.key,
                        self.identity,
                        self._deadline - time.monotonic(),
                        exc,
                    )
                    continue
                if ttl <= 0:
                    self._lose("lease expired")
                    break
                if holder is None or holder.create_revision != fence.create_revision:
                    self._lose("leader key deleted or replaced")
                    break
                self._deadline = now + ttl - self._margin(ttl)
                self._suspect = False
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an unexpected bug must not leave a leader that believes it leads
            self._lose(f"keepalive task failed: {exc!r}")
            raise
        # Lost: give the lease back so a standby does not wait for it to expire (best effort).
        with contextlib.suppress(CoordinatorError, TimeoutError):
            await asyncio.wait_for(self._store.revoke_lease(self._lease_id), REVOKE_TIMEOUT_S)

    async def resign(self) -> None:
        """Stop leading and delete the key (by revoking its lease) so a standby takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._fence is not None:
            self.lost.set()
            self._fence = None
            await self._store.revoke_lease(self._lease_id)
            log.info("election.resigned key=%s identity=%s", self.key, self.identity)

    async def leader_identity(self) -> str | None:
        """The identity written by the current leader, None when nobody leads."""
        kv = await self._store.get(self.key)
        return decode(kv.value) if kv is not None else None
