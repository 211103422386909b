"""The one run-record writer: read the key, decide with ``should_replace``, compare-and-swap on the revision read.

The Airflow plugin (:func:`coordinator.airflow_plugin.records.write_one`), ``coordinator mark`` and the watcher's
REST audit all write run-state records through :func:`write_run_record`, so the ordering rules hold whoever writes.

Rules:
- **Compare-and-swap.** Every write is a compare-and-swap on the mod revision just read: a concurrent writer is never
  overwritten blindly.
- **Never older, never unchanged.** The caller proposes the record to write given the one found (``propose(current) ->
  record | None``); the writer writes it only if :func:`~coordinator.core.model.should_replace` allows it, so an older
  fact never overwrites a newer one and a state is never rewritten unchanged (that would be a new generation and rerun
  every dependent).
- **Bounded re-decide.** A lost race re-decides with the record the failed CAS found (no extra read), at most
  ``max_rounds`` times in a row (:data:`LOST_RACE_RETRY`); then the outcome is ``CONTENDED`` and nothing was written.
- **Unreadable is absent.** A value nobody can read counts as absent (the watcher ignores it too) and is replaced; the
  outcome says why.
- **Task keys alike.** Task-state keys (``{prefix}/tasks/...``) use the same writer with their own parse and ordering
  rule (``parse=parse_task_record, rule=should_replace_task`` from :mod:`coordinator.core.task_facts`).
- **Public calls only.** Only the store's public ``get`` and ``cas`` (``etcd.Writes``: the store, or the leader's fenced
  executor): importing this module loads no gRPC (the plugin imports it in every Airflow process). etcd errors propagate
  (StoreError; TimeoutError when ``op_timeout_s`` runs out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from coordinator.core.model import RunRecord, dump_record, parse_run_record, should_replace
from coordinator.runtime.retry import RetryPolicy, retry_call

if TYPE_CHECKING:
    from coordinator.etcd import KV, Writes

T = TypeVar("T")

#: A lost race means another writer (the audit, a user's mark, the plugin of a rerun) changed the key between our read
#: and our write; re-deciding at once with what it wrote is right, waiting would only let more writes in. Eight losses
#: in a row mean something is looping, which is reported (CONTENDED) instead of tried forever.
LOST_RACE_RETRY = RetryPolicy(initial_s=0.0, max_s=0.0, max_attempts=8)

#: What to write over the current record (None when absent or unreadable); None: nothing to write.
Propose = Callable[[RunRecord | None], RunRecord | None]
#: Parses a stored value: (record, None) or (None, why not).
Parse = Callable[[bytes], "tuple[RunRecord | None, str | None]"]
#: Whether the proposal may replace the record found (the per-run ordering rule of the key's kind).
ReplaceRule = Callable[[RunRecord | None, RunRecord], bool]


class RunWriteStatus(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"  # nothing proposed, or should_replace refused the proposal: etcd already says enough
    CONTENDED = "contended"  # every round lost its race: nothing written


@dataclass(frozen=True, slots=True)
class RunWrite:
    """What :func:`write_run_record` did."""

    status: RunWriteStatus
    #: WRITTEN: the revision of the write; otherwise the mod revision of the record found (0: absent).
    revision: int
    #: WRITTEN: the record written; UNCHANGED: the one proposed (None: nothing was); CONTENDED: None.
    record: RunRecord | None
    #: The record found in the last round (None: absent or unreadable).
    previous: RunRecord | None
    #: Why the value found in the last round could not be read (it was treated as absent); None when it could.
    unreadable: str | None
    #: Read-decide-CAS rounds it took (1 without a lost race).
    rounds: int


class _LostRace(Exception):
    """The CAS found another revision than the one read: re-decide (internal to the retry loop)."""


def _parse(kv: KV | None, parse: Parse = parse_run_record) -> tuple[RunRecord | None, str | None]:
    if kv is None:
        return None, None
    return parse(kv.value)


async def write_run_record(
    store: Writes,
    key: str,
    propose: Propose,
    *,
    max_rounds: int | None = None,
    op_timeout_s: float | None = None,
    parse: Parse = parse_run_record,
    rule: ReplaceRule = should_replace,
) -> RunWrite:
    """Read ``key``, write ``propose(current)`` if ``rule`` (should_replace) allows it, by CAS; re-decide on a lost
    race.

    ``max_rounds`` overrides :data:`LOST_RACE_RETRY`'s bound; ``op_timeout_s`` bounds every etcd call; ``parse`` and
    ``rule`` are the value format and ordering of the key's kind (**Task keys alike**).
    """

    async def timed(call: Awaitable[T]) -> T:
        return await (call if op_timeout_s is None else asyncio.wait_for(call, op_timeout_s))

    found = await timed(store.get(key))
    rounds = 0

    async def one_round() -> RunWrite:
        nonlocal found, rounds
        rounds += 1
        previous, unreadable = _parse(found, parse)
        expected = found.mod_revision if found is not None else 0
        proposed = propose(previous)
        if proposed is None or not rule(previous, proposed):
            return RunWrite(RunWriteStatus.UNCHANGED, expected, proposed, previous, unreadable, rounds)
        result = await timed(store.cas(key, dump_record(proposed), expected))
        if result.succeeded:
            return RunWrite(RunWriteStatus.WRITTEN, result.revision, proposed, previous, unreadable, rounds)
        found = result.current
        raise _LostRace(key)

    policy = LOST_RACE_RETRY if max_rounds is None else replace(LOST_RACE_RETRY, max_attempts=max_rounds)
    try:
        return await retry_call(one_round, policy, lambda exc: isinstance(exc, _LostRace))
    except _LostRace:
        previous, unreadable = _parse(found, parse)
        revision = found.mod_revision if found is not None else 0
        return RunWrite(RunWriteStatus.CONTENDED, revision, None, previous, unreadable, rounds)
