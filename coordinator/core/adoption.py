"""First adoption of a graph under a prefix: does the watcher process the run states it finds?
(semantics `first-adoption`)

Rules (semantics `first-adoption` refers to them):

- **First adoption processes history.** A FIRST adoption (no graph was ever adopted under the prefix:
  ``{prefix}/config/graph`` does not exist) is not a change of the graph. There was no coordinator before it, so the
  successes already in etcd are processed as if the watcher had been running all along: "the watcher was not running
  yet" is downtime like any other.
- **Later changes keep history out.** Every LATER adoption (a DAG or edge added or changed in a graph in force) keeps
  the activation rule: it applies to upstream successes after the adoption; history only through ``coordinator
  backfill``. A restart adopts nothing.
- **Unreadable is no first adoption.** A graph key that exists but cannot be read is not a first adoption (something was
  adopted before): **Later changes keep history out**.
- **Flood guard.** A long history must not turn a first start into a flood. Before acting, the leader counts the
  triggers the history would cause now (the first wave: the dependents of what already succeeded; the cascade behind
  them follows as they run). In ``auto`` mode, more than ``limit`` HOLDS the adoption: nothing is written, nothing is
  triggered; the leader logs it, ``status`` and ``reconcile --dry-run`` show it, with how to proceed.
- **Explicit choices.** The operator chooses explicitly, with no limit: ``all`` (every partition), ``since P``
  (partitions at or after P), or ``none`` (no history, as **Later changes keep history out**: then ``coordinator
  backfill`` per DAG for the history wanted).
- **Pure**: no I/O, no clock, no logging; the shell writes the activation with a fenced CAS and logs the decision.
- **Retired triggers not counted.** The count of **Flood guard** leaves out the triggers the retention floor retires
  (semantics `retention-retires`): they never run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from coordinator.core.actions import Trigger
from coordinator.core.activation import Activation, adopt
from coordinator.core.graph import Graph
from coordinator.core.model import canonical_partition
from coordinator.core.planner import plan
from coordinator.core.retention import Retirement
from coordinator.core.view import View

#: 100 runs: a first start normally finds the roots' last few runs (a handful of partitions times the DAGs that
#: depend on them). More means months of history; each trigger is a DAG run queued on Airflow's scheduler at once,
#: competing with scheduled work, so the operator decides what to process (**Flood guard**).
DEFAULT_FIRST_START_LIMIT = 100


class HistoryMode(StrEnum):
    AUTO = "auto"
    ALL = "all"
    SINCE = "since"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class HistoryChoice:
    """What a first adoption does with the run states it finds (**Flood guard**, **First adoption processes history**,
    **Flood guard**, **Explicit choices**)."""

    mode: HistoryMode = HistoryMode.AUTO
    #: Canonical partition: the first one processed, with ``SINCE``.
    since: str | None = None

    @classmethod
    def parse(cls, text: str) -> HistoryChoice:
        """``auto``, ``all``, ``none`` or a logical date; ValueError with a message saying what is accepted."""
        value = text.strip()
        if value.lower() in {m.value for m in (HistoryMode.AUTO, HistoryMode.ALL, HistoryMode.NONE)}:
            return cls(HistoryMode(value.lower()))
        try:
            return cls(HistoryMode.SINCE, canonical_partition(value))
        except ValueError as exc:
            raise ValueError(
                f"invalid history choice {text!r}: expected auto, all, none or a logical date such as 2026-01-01"
            ) from exc

    @property
    def history_from(self) -> str | None:
        """The activation's ``history_from`` for this choice ("" = every partition, None = none)."""
        if self.mode is HistoryMode.NONE:
            return None
        if self.mode is HistoryMode.SINCE:
            return self.since
        return ""

    def describe(self) -> str:
        if self.mode is HistoryMode.SINCE:
            return f"history since {self.since}"
        return {HistoryMode.AUTO: "history (auto)", HistoryMode.ALL: "all history", HistoryMode.NONE: "no history"}[
            self.mode
        ]


@dataclass(frozen=True, slots=True)
class FirstAdoption:
    """The decision for a first adoption: the activation to write, or None when paused (**Flood guard**)."""

    activation: Activation | None
    choice: HistoryChoice
    #: What the history makes due now (the first wave).
    triggers: tuple[Trigger, ...]
    limit: int

    @property
    def paused(self) -> bool:
        return self.activation is None

    @property
    def partitions(self) -> list[str]:
        return sorted({t.partition for t in self.triggers})

    def summary(self) -> str:
        """One line: what the first adoption does."""
        parts = self.partitions
        span = f" in {len(parts)} partition(s) {parts[0]} .. {parts[-1]}" if parts else ""
        if self.paused:
            return (
                f"first adoption held: the run states already in etcd would trigger {len(self.triggers)} run(s)"
                f"{span}, over the first-start limit of {self.limit}; nothing is triggered until you choose"
            )
        return f"first adoption with {self.choice.describe()}: {len(self.triggers)} run(s) to trigger now{span}"

    def how_to_proceed(self) -> list[str]:
        """What the operator can do about a paused adoption (**Explicit choices**)."""
        newest = self.partitions[-1] if self.partitions else "2026-01-01"
        oldest = self.partitions[0] if self.partitions else newest
        return [
            f"process recent history only: coordinator watch --adopt-since {newest[:10]} "
            "(or COORDINATOR_ADOPT_HISTORY=<date>)",
            "process all of it: coordinator watch --adopt-all (or COORDINATOR_ADOPT_HISTORY=all)",
            "start from new runs only: coordinator watch --adopt-none (or COORDINATOR_ADOPT_HISTORY=none), then "
            f"coordinator backfill DAG --from {oldest[:10]} --to {newest[:10]} for each DAG whose history you want",
            "raise the limit: COORDINATOR_FIRST_START_LIMIT (the same works for reconcile and the watcher DAG)",
        ]


def is_first_adoption(view: View) -> bool:
    """No graph was ever adopted under this prefix (**First adoption processes history**,
    **First adoption processes history**, **Flood guard**, **Unreadable is no first adoption**)."""
    return view.activation is None and view.graph_key not in view.problems


def first_adoption(graph: Graph, view: View, choice: HistoryChoice, limit: int, by: str = "") -> FirstAdoption:
    """Decide a first adoption at the view's revision (**First adoption processes history**, **Flood guard**,
    **Explicit choices**). Call only when ``is_first_adoption``."""
    proposed = adopt(
        graph.shapes, graph.digest, None, view.revision, by, history_from=choice.history_from, sources=graph.dags
    )
    if proposed is None:  # cannot happen: with no current activation there is always something to adopt
        raise AssertionError("a first adoption always proposes an activation")
    # Retired decisions (semantics `retired-inert`) never trigger, so they do not count: the leader's view has forgotten
    # retired partitions, a reader's snapshot has not, and both must come to the same decision.
    result = Retirement(graph, view.floor).apply(plan(graph, view, activation=proposed, explain=False))
    triggers = tuple(a for a in result.actions if isinstance(a, Trigger))
    paused = choice.mode is HistoryMode.AUTO and len(triggers) > limit
    return FirstAdoption(activation=None if paused else proposed, choice=choice, triggers=triggers, limit=limit)
