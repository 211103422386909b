"""Expectations: the leader's own writes that the informer has not seen come back through the watch yet.

controller-runtime's expectations (and client-go's ``ControllerExpectations``), for a model with one writer.

Rules:
- **Only the informer writes the model.** A reconciler never writes what it wrote into the model: the write comes back
  through the watch like anyone's. Until it has, the model is behind the leader's own write, and a reconciler that
  would act on that stale model (write again, alert again, deliver again) asks here first.
- **Recorded by the executor.** Every write of the executor that lands (``watcher/executor.py``) records an
  expectation: (key, the revision it landed at). Nobody else records one.
- **Observed by revision.** etcd's watch delivers events in revision order, so once the informer has passed revision R
  (the end of a load or of a watch batch: ``observe``), every write at R or below is in the model: each expectation at
  or below R is met. A relist passes its revision too, so a compaction never strands an expectation.
- **Never stuck.** An expectation is met by revision, not by the key's value: a later write of the key by anyone, a
  delete, or a relist that no longer holds it meets it all the same. A write of a term that ended stays a fact and is
  met the same way; a new informer (a restart) starts with none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Expectations:
    """key -> the revision of this leader's write of it that the informer has not observed yet."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        #: The newest revision the informer has passed (**Observed by revision**).
        self.observed = 0
        #: Set (and replaced) each time ``observe`` moves: what ``seen`` waits on.
        self._moved = asyncio.Event()

    def expect(self, key: str, revision: int) -> None:
        """The executor's write of ``key`` landed at ``revision`` (**Recorded by the executor**)."""
        if revision > self.observed:
            self._pending[key] = max(revision, self._pending.get(key, 0))

    def expect_all(self, keys: Iterable[str], revision: int) -> None:
        """One transaction wrote ``keys`` at ``revision``."""
        for key in keys:
            self.expect(key, revision)

    def observe(self, revision: int) -> None:
        """The informer has applied every key up to ``revision`` (**Observed by revision**)."""
        if revision <= self.observed:
            return
        self.observed = revision
        if self._pending:
            self._pending = {key: rev for key, rev in self._pending.items() if rev > revision}
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def pending(self, key: str) -> bool:
        """Whether this leader wrote ``key`` and the model does not show that write yet."""
        return key in self._pending

    def after(self, key: str, revision: int) -> bool:
        """Whether this leader wrote ``key`` after ``revision`` and the model does not show that write yet: a decision
        taken on the model at ``revision`` did not see it (the actuator's **Own writes**)."""
        return self._pending.get(key, 0) > revision

    async def seen(self, key: str, timeout_s: float) -> bool:
        """Wait until ``key`` is not pending (the informer brought this leader's write back); False after
        ``timeout_s`` (the informer is not following the store: nothing will bring it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pending(key):
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._moved.wait(), left)
            except TimeoutError:
                return not self.pending(key)
        return True

    def pending_under(self, prefix: str) -> bool:
        """Whether any key under ``prefix`` is pending (a stream's or a partition's keys)."""
        return any(key.startswith(prefix) for key in self._pending)

    def awaited(self) -> int:
        """How many writes the model has not shown yet (a metric, a test's check)."""
        return len(self._pending)
