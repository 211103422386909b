"""What a start plans first (semantics `checkpoint-first`): what changed after the plan checkpoint, before the full
pass.

The checkpoint (``core/checkpoint.py``) says the leader had planned through revision R. A start plans first what
changed after R, and every partition a few seconds later (``watcher/warm.py``'s **Start**).

Rules:
- **Changes first.** First: each (DAG, partition) whose run state, ledger entry, task state or backfill request was
  written after R, and each unfinished ledger entry whatever its revision (an intent in flight plans as a resume);
  nothing else. A key deleted after R is not among them (a loaded view keeps no tombstones): the full pass judges its
  partition.
- **Everything when unsure.** Everything instead, at once, when the checkpoint cannot say what changed: none recorded or
  unreadable, a graph other than the one in force, a first adoption still to make, an activation or a retention floor
  written after R (each re-judges every partition), R beyond the view's own revision (the store was restored from an
  older backup), or more changed keys than ``MAX_FIRST_KEYS`` (a long downtime: planning every partition at once is
  cheaper then).
- **Pure**: the view, the graph's digest and whether a first adoption is due in; keys out. The shell queues them, and
  the full pass after them.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.core.model import NodeId, TriggerStatus
from coordinator.core.view import View

#: **Everything when unsure**: above this many changed (DAG, partition) keys a start plans every partition at once.
MAX_FIRST_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class FirstWork:
    """What a start plans before its full pass: ``keys``, unless ``everything`` (**Everything when unsure**)."""

    everything: bool
    #: Why everything (**Everything when unsure**), or the checkpoint the keys are counted from: for the start's log
    #: line.
    reason: str
    keys: frozenset[tuple[NodeId, str]] = frozenset()


def first_work(view: View, digest: str, *, first_adoption: bool) -> FirstWork:
    """**Changes first** and **Everything when unsure**: what to plan first at a start, from the view's checkpoint and
    the graph in force (``digest``)."""
    checkpoint = view.checkpoint
    if checkpoint is None:
        return FirstWork(True, "no plan checkpoint" if view.checkpoint_rev == 0 else "unreadable plan checkpoint")
    since = checkpoint.revision
    reasons = (
        (first_adoption, "the first adoption is still to make"),
        (checkpoint.digest != digest, "the checkpoint was planned with another graph"),
        (view.activation_rev > since, "the activation changed after the checkpoint"),
        (view.floor_rev > since, "the retention floor changed after the checkpoint"),
        (since > view.revision, "the checkpoint is ahead of the store (restored from a backup?)"),
    )
    for holds, reason in reasons:
        if holds:
            return FirstWork(True, reason)
    keys = changed_after(view, since)
    if len(keys) > MAX_FIRST_KEYS:
        return FirstWork(True, f"{len(keys)} keys changed after the checkpoint (more than {MAX_FIRST_KEYS})")
    return FirstWork(False, checkpoint.describe(), frozenset(keys))


def changed_after(view: View, revision: int) -> set[tuple[NodeId, str]]:
    """**Changes first**' keys: (DAG, partition) with a run state, ledger entry, task state or backfill written after
    ``revision``, and every unfinished ledger entry. One scan of the facts (a fraction of a second at millions)."""
    found: set[tuple[NodeId, str]] = set()
    for partition, runs in view.runs.by_partition.items():
        found.update((node, partition) for node, fact in runs.items() if fact.rev > revision)
    done = TriggerStatus.DONE
    for partition, ledger in view.ledger.by_partition.items():
        found.update(
            (node, partition) for node, entry in ledger.items() if entry.mod_rev > revision or entry.status is not done
        )
    found.update((node, partition) for (node, _, partition), fact in view.tasks.items() if fact.rev > revision)
    found.update(at for at, rev in view.backfills.items() if rev > revision)
    return found
