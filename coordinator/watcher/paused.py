"""Which DAGs of one Airflow instance are paused: one list request shared by every trigger (and the deadline pass,
``watcher/deadline_facts.py``) for a few seconds.

The actuator warns after a trigger when the DAG is paused (semantics `trigger-confirm`, a courtesy: the run exists and
waits). Asking per DAG cost a second Airflow request per trigger, and a per-DAG cache almost never hits when each DAG
runs hourly or daily. One ``GET /dags?paused=true`` per instance answers for every DAG at once.

Rules:
- **One list in flight.** At most one list request per instance is in flight: concurrent triggers (a cascade) wait for
  the same answer.
- **Answers reused.** An answer is reused for ``ttl_s``; so is a failure, so an Airflow that refuses the list is not
  asked per trigger.
- **A failure is unknown.** A failure (any AirflowError) answers None, "unknown": the caller falls back to asking about
  its own DAG. Nothing here raises an Airflow error, so the courtesy check never fails a trigger.
- **Paused is a hint.** "Paused" is only a hint the caller re-checks for its DAG (an unpause must show at once); "not
  paused" is trusted for ``ttl_s``: a DAG paused meanwhile misses its warning for at most that long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from coordinator.airflow.client import AirflowClient
from coordinator.errors import AirflowError

log = logging.getLogger(__name__)

#: Seconds a paused-DAG list is reused: long enough that a cascade shares one request, short enough that a DAG paused
#: a moment ago is reported on its next trigger.
PAUSED_LIST_TTL_S = 5.0


class PausedDags:
    """The paused DAGs of one instance, listed by ``fetch`` (``AirflowClient.paused_dags``) and cached
    (**One list in flight** and **Answers reused**)."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[frozenset[str]]],
        *,
        instance: str,
        ttl_s: float = PAUSED_LIST_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._instance = instance
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._paused: frozenset[str] | None = None  # None: the last list failed (**A failure is unknown**)
        self._until = float("-inf")

    async def is_paused(self, dag_id: str) -> bool | None:
        """Whether the list had ``dag_id`` as paused; None when the list failed (**A failure is unknown**)."""
        paused = await self.listed()
        return None if paused is None else dag_id in paused

    async def listed(self) -> frozenset[str] | None:
        """The paused DAG ids, listed at most once per ``ttl_s`` (**One list in flight** and **Answers reused**); None
        when the list failed (**A failure is unknown**)."""
        if self._clock() >= self._until:
            async with self._lock:  # **One list in flight**: whoever waited here finds the answer the first one fetched
                if self._clock() >= self._until:
                    await self._refresh()
        return self._paused

    async def _refresh(self) -> None:
        try:
            self._paused = await self._fetch()
        except AirflowError as exc:
            log.info("actuator.paused_list_failed instance=%s error=%s", self._instance, exc)
            self._paused = None
        # From the answer, not the request: a slow list must not be reused for less than ttl_s.
        self._until = self._clock() + self._ttl_s


def paused_lists(
    clients: Mapping[str, AirflowClient], clock: Callable[[], float] = time.monotonic
) -> dict[str, PausedDags]:
    """One cached list per instance, shared by the actuator and the deadline pass."""
    return {name: PausedDags(client.paused_dags, instance=name, clock=clock) for name, client in clients.items()}
