"""The sweep: every partition planned in the watcher's loop a slice per turn of the triggers' queue, and a pass's plan
of many partitions in slices that yield to the event loop (``watcher/triggers.py`` plans with it).

Rules:
- **Sweep.** Every partition, in the watcher's loop, is a sweep: ``AllPartitions`` starts one (and starts over one under
  way), and each turn of the queue plans its next slice of about ``SWEEP_SLICE_FACTS`` facts, newest partitions first,
  submits what that slice found, and queues ``NextSlice`` behind whatever the watch brought meanwhile. So an event waits
  for one slice, never for the whole plan of a big store, and the newest partitions' triggers go out first. The result
  is the full pass's: a slice plans its partitions whole at the view's current revision, and a change to a partition
  already planned reaches the queue as its own key (level-triggered). A sweep ends with the full pass's line
  (``dirty=all``, ``slices=``, ``sweep_ms=``); it counts as the term's full pass (``watcher/triggers.py``'s **Start and
  settle**) only when every slice was planned leading in this term. A one-shot pass (``reconcile``) plans every
  partition at once. Within a pass, planning yields to the event loop every ``PLAN_SLICE_FACTS`` facts, with the view
  held still (``view_lock``) so the pass sees one revision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields

from coordinator.core.actions import Action, Plan
from coordinator.core.model import NodeId
from coordinator.core.view import View
from coordinator.watcher.keys import DagKey

log = logging.getLogger("coordinator.watcher.triggers")  # the summary lines are the trigger reconciler's

#: **Sweep**: a full pass plans this many facts (about 30-60 ms) between two yields to the event loop: on a big store a
#: pass takes seconds, and the lease keepalive (leader TTL 10 s), the watch and the probes must not wait for it.
PLAN_SLICE_FACTS = 5000

#: **Sweep**: a sweep plans about this many facts in one turn of the queue (tens of milliseconds), then lets the view
#: go: an event waits for at most one slice, and the newest partitions' triggers go out after the first slice, not
#: after the whole estate's plan (seconds at a million facts).
SWEEP_SLICE_FACTS = 20000


@dataclass(frozen=True, slots=True)
class PassCounts:
    """What one pass did, as its summary line and a sweep's totals count it (**Sweep**)."""

    actions: int
    triggers: int
    resumes: int
    submitted: int
    plan_s: float


@dataclass
class PassSummary:
    """The planner's passes since the last summary line (``watcher/pass_summary.py``'s **One line a minute**): the
    planner adds to it, the pass summary's concern says it."""

    passes: int = 0
    full: int = 0
    actions: int = 0
    triggers: int = 0
    resumes: int = 0
    submitted: int = 0
    first_revision: int = 0
    last_revision: int = 0
    leading: bool = False
    plan_s_max: float = 0.0

    def add(self, revision: int, counts: PassCounts, *, leading: bool) -> None:
        """One more pass at ``revision`` that did ``counts``."""
        if not self.passes:
            self.first_revision = revision
        self.passes += 1
        self.last_revision = revision
        self.actions += counts.actions
        self.triggers += counts.triggers
        self.resumes += counts.resumes
        self.submitted += counts.submitted
        self.plan_s_max = max(self.plan_s_max, counts.plan_s)
        self.leading = leading

    def planned_everything(self) -> None:
        """One of the passes (or a sweep of them) planned every partition."""
        self.full += 1

    def line(self, *, in_flight: int, errors: int) -> str | None:
        """The summary line of the passes so far (None: no pass), and a new count from here."""
        if not self.passes:
            return None
        revisions = (
            str(self.last_revision)
            if self.first_revision == self.last_revision
            else f"{self.first_revision}..{self.last_revision}"
        )
        text = (
            f"reconcile.summary passes={self.passes} full={self.full} revisions={revisions} actions={self.actions} "
            f"triggers={self.triggers} resumes={self.resumes} submitted={self.submitted} in_flight={in_flight} "
            f"errors={errors} leader={self.leading} plan_ms_max={self.plan_s_max * 1000:.1f}"
        )
        for each in fields(self):  # a new count from here: every field back to its default
            setattr(self, each.name, each.default)
        return text


@dataclass
class Sweep:
    """**Sweep**: a plan of every partition under way in the watcher's loop, a slice per turn of the queue."""

    #: The partitions not planned yet, oldest first: slices are taken from the end, so the newest (where a start's or
    #: a resync's due work almost always is) go first.
    todo: list[str]
    started: float
    partitions: int = 0
    slices: int = 0
    actions: int = 0
    triggers: int = 0
    resumes: int = 0
    submitted: int = 0
    plan_s: float = 0.0
    #: Every slice so far planned while leading in this term (the sweep is then this term's full pass,
    #: ``watcher/triggers.py``'s **Start and settle**), or none (its due keys are then the standby's warm work,
    #: ``watcher/warm.py``).
    led: bool = True
    standby: bool = True
    #: A standby's due keys since the sweep began: its slices' and the passes' between them (``watcher/warm.py``).
    due: set[DagKey] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.partitions = len(self.todo)

    def take(self, facts: Mapping[str, Collection[NodeId]]) -> list[str]:
        """The next slice: the newest partitions left, about ``SWEEP_SLICE_FACTS`` facts (``facts``: the view's
        nodes per partition); empty once every partition is taken."""
        taken: list[str] = []
        size = 0
        while self.todo and size < SWEEP_SLICE_FACTS:
            partition = self.todo.pop()
            taken.append(partition)
            size += len(facts.get(partition, ())) or 1
        return taken

    def add(self, counts: PassCounts, *, leading: bool) -> None:
        """A pass that planned one of its slices did ``counts``."""
        self.slices += 1
        self.actions += counts.actions
        self.triggers += counts.triggers
        self.resumes += counts.resumes
        self.submitted += counts.submitted
        self.plan_s += counts.plan_s
        self.led = self.led and leading
        self.standby = self.standby and not leading


@dataclass
class Sweeper:
    """**Sweep**: the sweep under way in the watcher's loop, if any."""

    current: Sweep | None = None

    def begin(self, partitions: list[str]) -> Sweep:
        """A new sweep of ``partitions`` (oldest first), replacing one under way: it plans everything again."""
        self.current = Sweep(partitions, time.perf_counter())
        return self.current

    def drop(self) -> None:
        """A failed pass is retried as a whole (``AllPartitions``): a new sweep."""
        self.current = None

    def new_term(self) -> None:
        """This process took the lead: a sweep under way began before this term (it goes on, and now acts on what it
        finds), so it is not this term's full pass."""
        if self.current is not None:
            self.current.led = False

    def swept(self, counts: PassCounts, *, leading: bool, revision: int, busy: int, errors: int) -> Sweep | None:
        """One more slice planned by a pass that did ``counts``: the sweep, now ended (logged with the full pass's
        line), or None while slices are left (the caller queues ``NextSlice`` behind the watch's keys)."""
        sweep = self.current
        assert sweep is not None
        sweep.add(counts, leading=leading)
        if sweep.todo:
            return None
        self.current = None
        log.debug(  # bookkeeping: counted in the minute's summary (``watcher/pass_summary.py``)
            "reconcile revision=%d dirty=all partitions=%d actions=%d triggers=%d resumes=%d submitted=%d "
            "in_flight=%d errors=%d leader=%s plan_ms=%.1f slices=%d sweep_ms=%.1f",
            revision, sweep.partitions, sweep.actions, sweep.triggers, sweep.resumes, sweep.submitted,
            busy, errors, sweep.led, sweep.plan_s * 1000, sweep.slices,
            (time.perf_counter() - sweep.started) * 1000,
        )  # fmt: skip
        return sweep


async def plan_in_slices(view: View, parts: Sequence[str], decide: Callable[[list[str]], Plan]) -> Plan:
    """``decide`` of ``parts`` in slices of about ``PLAN_SLICE_FACTS`` facts, yielding to the event loop between them
    (**Sweep**). Same actions in the same order: partitions are planned independently, and through partition grids a
    slice only re-judges what another slice judged too."""
    actions: list[Action] = []
    chunk: list[str] = []
    size = 0
    for index, partition in enumerate(parts):
        chunk.append(partition)
        size += len(view.partitions.get(partition, ())) or 1
        if size >= PLAN_SLICE_FACTS or index == len(parts) - 1:
            actions += decide(chunk).actions
            chunk, size = [], 0
            await asyncio.sleep(0)
    return Plan(view.revision, tuple(actions))
