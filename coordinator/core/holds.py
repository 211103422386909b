"""Holds and the audit trail as values: ``{prefix}/holds/{id}`` and ``{prefix}/history/{time}-{id}`` (docs/keys.md).

A hold is an operator's brake on a part of the graph during an incident: while it stands, the leading
watcher triggers and clears nothing inside it. This module says what a hold is, which (DAG, partition) it covers and
what the audit trail records; the watcher (``watcher/triggers.py``) and the commands (``cli/incident_cmds.py``) act.

Rules:
- **Pure.** No I/O, no clock: ``now`` is an argument, ids are made by the caller.
- **Selectors.** A hold names a DAG (``dag_id`` or ``instance/dag_id``), a task (``instance/dag_id:task_id``: its
   DAG is held; the watcher triggers runs, not tasks), an instance (``instance:NAME``: every DAG of it) or an
   OpenLineage node (``lineage:NAMESPACE/JOB``: the node its mapping names). The selector is resolved to nodes when
   the hold is written (:func:`resolve_selector`) and both are recorded, so a graph change never widens a hold silently;
   the recorded ``nodes`` are what hold.
- **Range.** ``from_partition`` .. ``to_partition`` (both inclusive, either open) are partitions of the selected
   nodes. Without ``downstream`` only those nodes are held. With it every DAG below them (success edges,
   ``Graph.descendants``) is held too, for each partition that maps to a held partition of a selected node through
   the partition grids (``Graph.source_partitions``, walked upstream from the asked partition); without a range every
   partition of every DAG below is held.
- **Standing.** A hold holds from its record's existence until ``released_at`` is set or ``until`` is reached
   (``until`` exclusive). A released hold stays recorded (``coordinator holds --all``, the history).
- **First hold wins the name.** When several holds cover a key, the one created first is named (then by id), so a
   log line or ``why`` names the same hold each time.
- **Still in the way.** A release starts only what no other standing hold covers: ``release-hold`` names each other
  standing hold over DAGs the released one covered, in ranges that meet (:func:`still_in_the_way`).
- **Never raise on parse.** Unknown fields are ignored (``core/model.py``'s rule), a bad value is (None, why).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from coordinator.core.graph import Graph
from coordinator.core.model import NAME_RE, NodeId, parse_value

#: Hold ids: the key's last segment, so a name (``NAME_RE``) that the commands make short enough to type.
HOLD_ID_PREFIX = "h-"


class SelectorKind(StrEnum):
    DAG = "dag"
    TASK = "task"
    INSTANCE = "instance"
    LINEAGE = "lineage"


class Selector(BaseModel):
    """**Selectors**: what the operator typed, parsed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: SelectorKind
    #: As typed (shown by ``holds`` and ``why``).
    text: str
    #: DAG and task: the DAG (``instance/dag_id`` or a bare ``dag_id`` before resolution).
    dag: str | None = None
    task: str | None = None
    instance: str | None = None
    namespace: str | None = None
    job: str | None = None


def parse_selector(text: str) -> Selector:
    """**Selectors**: a selector from the command line; raises ValueError naming what is wrong and the forms."""
    forms = "a DAG (dag_id, instance/dag_id), a task (instance/dag_id:task_id), instance:NAME, lineage:NAMESPACE/JOB"
    raw = text.strip()
    if raw.startswith("instance:"):
        name = raw.removeprefix("instance:")
        if not NAME_RE.match(name):
            raise ValueError(f"invalid instance name {name!r} in selector {text!r}: use letters, digits, '_', '.', '-'")
        return Selector(kind=SelectorKind.INSTANCE, text=raw, instance=name)
    if raw.startswith("lineage:"):
        namespace, sep, job = raw.removeprefix("lineage:").partition("/")
        if not (sep and namespace and job):
            raise ValueError(f"invalid OpenLineage selector {text!r}: expected lineage:NAMESPACE/JOB")
        return Selector(kind=SelectorKind.LINEAGE, text=raw, namespace=namespace, job=job)
    dag, sep, task = raw.partition(":")
    if sep and not NAME_RE.match(task):
        raise ValueError(f"invalid task id {task!r} in selector {text!r}: expected {forms}")
    try:
        NodeId.parse(dag)
    except ValueError as exc:
        raise ValueError(f"invalid selector {text!r}: {exc}; expected {forms}") from None
    if sep:
        return Selector(kind=SelectorKind.TASK, text=raw, dag=dag, task=task)
    return Selector(kind=SelectorKind.DAG, text=raw, dag=dag)


def resolve_selector(selector: Selector, graph: Graph) -> tuple[NodeId, ...]:
    """**Selectors**: the graph's nodes the selector names, sorted; raises LookupError naming what is missing."""
    if selector.kind is SelectorKind.INSTANCE:
        nodes = tuple(sorted(n for n in graph.dags if n.instance == selector.instance))
        if not nodes:
            known = ", ".join(sorted({n.instance for n in graph.dags})) or "none"
            raise LookupError(f"no DAG of instance {selector.instance!r} in the graph (instances: {known})")
        return nodes
    if selector.kind is SelectorKind.LINEAGE:
        for job in graph.lineage_jobs:
            if (
                selector.namespace is not None
                and selector.job is not None
                and job.matches(selector.namespace, selector.job)
            ):
                node = job.node_for(selector.job)
                if node is not None and node in graph.dags:
                    return (node,)
        raise LookupError(f"no OpenLineage mapping of the graph maps {selector.namespace}/{selector.job} to a DAG")
    assert selector.dag is not None
    node = graph.resolve(selector.dag)
    if node is None:
        raise LookupError(f"DAG {selector.dag!r} is not in the graph (or its dag_id is in several instances: "
                          "write instance/dag_id)")  # fmt: skip
    return (node,)


class Hold(BaseModel):
    """Value of ``{prefix}/holds/{id}`` (docs/keys.md): written by ``coordinator hold`` (and ``retract``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    selector: Selector
    #: **Selectors**: the nodes the selector named when the hold was written, qualified (``instance/dag_id``).
    nodes: tuple[str, ...]
    from_partition: str | None = None
    to_partition: str | None = None
    downstream: bool = False
    reason: str = Field(min_length=1)
    by: str = Field(min_length=1)
    created_at: datetime
    until: datetime | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None
    #: Set by ``retract``: the (node, partition) whose success was withdrawn.
    retracted: str | None = None

    def standing(self, now: datetime) -> bool:
        """**Standing**."""
        return self.released_at is None and (self.until is None or now < self.until)

    def in_range(self, partition: str) -> bool:
        """**Range**: canonical partitions compare as text."""
        low, high = self.from_partition, self.to_partition
        return (low is None or partition >= low) and (high is None or partition <= high)

    def span(self) -> str:
        """The range in words, for lines."""
        if self.from_partition is None and self.to_partition is None:
            return "every partition"
        if self.from_partition == self.to_partition:
            return f"partition {self.from_partition}"
        return f"partitions {self.from_partition or '(any)'} .. {self.to_partition or '(any)'}"

    def describe(self) -> str:
        """``why`` and ``status``: "held by hold H since T by alice: REASON"."""
        until = f" (until {self.until.isoformat(timespec='seconds')})" if self.until is not None else ""
        since = self.created_at.isoformat(timespec="seconds")
        return (f"held by hold {self.id} since {since} by {self.by}: {self.reason}{until}; "
                f"`coordinator release-hold {self.id}` lets each held run start once")  # fmt: skip


def parse_hold(raw: bytes) -> tuple[Hold | None, str | None]:
    """**Never raise on parse**."""
    return parse_value(Hold, raw)


@dataclass
class HoldSet:
    """The standing holds against one graph: answers "is (DAG, partition) held, and by which hold" (**Range**,
    **Standing** and **First hold wins the name**).

    Built per pass (cheap: holds are few); the node sets are computed once per hold."""

    graph: Graph
    holds: Sequence[Hold]
    _selected: list[tuple[Hold, frozenset[NodeId], frozenset[NodeId]]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        ordered = sorted(self.holds, key=lambda h: (h.created_at, h.id))
        for hold in ordered:
            selected = frozenset(_nodes(hold.nodes) & self.graph.dags.keys())
            below: set[NodeId] = set()
            if hold.downstream:
                for node in selected:
                    below |= self.graph.descendants(node)
            self._selected.append((hold, selected, frozenset(below - selected)))

    def __bool__(self) -> bool:
        return bool(self._selected)

    def held_by(self, node: NodeId, partition: str) -> Hold | None:
        """The first standing hold (by creation) that covers ``node``'s ``partition``, or None."""
        for hold, selected, below in self._selected:
            if node in selected and hold.in_range(partition):
                return hold
            if node in below and self._reaches(hold, selected, node, partition, {}):
                return hold
        return None

    def _reaches(
        self, hold: Hold, selected: frozenset[NodeId], node: NodeId, partition: str,
        seen: dict[tuple[NodeId, str], bool],
    ) -> bool:  # fmt: skip
        """**Range** with ``downstream``: some upstream path from (node, partition) reaches a selected node in a
        partition in range, each step mapped through the grids."""
        if hold.from_partition is None and hold.to_partition is None:
            return True
        key = (node, partition)
        if key in seen:
            return seen[key]
        seen[key] = False
        spec = self.graph.dags[node]
        found = False
        for source in spec.upstreams:
            if source not in self.graph.dags:
                continue
            for up in self.graph.source_partitions(node, source, partition):
                direct = source in selected and hold.in_range(up)
                found = direct or (source != node and self._reaches(hold, selected, source, up, seen))
                if found:
                    break
            if found:
                break
        seen[key] = found
        return found


def standing_holds(holds: Iterable[Hold], now: datetime) -> list[Hold]:
    """**Standing**: the holds that hold at ``now``."""
    return [h for h in holds if h.standing(now)]


@dataclass(frozen=True, slots=True)
class InTheWay:
    """A standing hold that still covers DAGs a released hold covered (**Still in the way**)."""

    hold: Hold
    #: The DAGs both cover, sorted.
    dags: tuple[NodeId, ...]


def still_in_the_way(released: Hold, holds: Iterable[Hold], graph: Graph | None, now: datetime) -> list[InTheWay]:
    """**Still in the way**: each other standing hold (oldest first) that covers a DAG ``released`` covered, for
    partition ranges that meet, with those DAGs. ``graph`` (the graph in force) adds the DAGs below a ``downstream``
    hold; without one only the recorded nodes are compared. The ranges are compared as written (partitions of the
    selected DAGs): a grid below a downstream hold may map them elsewhere, which this does not walk, so the answer is
    what an operator should look at, not the watcher's verdict (that is ``HoldSet.held_by``, per run)."""
    mine = _covered(released, graph)
    found = []
    for other in sorted(standing_holds(holds, now), key=lambda h: (h.created_at, h.id)):
        if other.id == released.id or not _ranges_meet(released, other):
            continue
        both = mine & _covered(other, graph)
        if both:
            found.append(InTheWay(other, tuple(sorted(both))))
    return found


def _covered(hold: Hold, graph: Graph | None) -> set[NodeId]:
    selected = _nodes(hold.nodes)
    if graph is None or not hold.downstream:
        return selected
    return selected | {d for n in selected if n in graph.dags for d in graph.descendants(n)}


def _ranges_meet(a: Hold, b: Hold) -> bool:
    """Whether two holds' **Range**s share a partition (open ends reach everything; canonical partitions compare as
    text)."""
    below = a.from_partition is None or b.to_partition is None or a.from_partition <= b.to_partition
    above = b.from_partition is None or a.to_partition is None or b.from_partition <= a.to_partition
    return below and above


def next_expiry(holds: Iterable[Hold], now: datetime) -> datetime | None:
    """The earliest ``until`` still ahead among the standing holds: the watcher plans again then."""
    ahead = [h.until for h in holds if h.released_at is None and h.until is not None and h.until > now]
    return min(ahead) if ahead else None


def _nodes(qualified: Iterable[str]) -> set[NodeId]:
    found: set[NodeId] = set()
    for ref in qualified:
        try:
            found.add(NodeId.parse(ref))
        except ValueError:
            continue  # a value written by hand with a bad name holds nothing of it
    return found


class HistoryAction(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    RERUN = "rerun"
    RETRACT = "retract"


class HistoryEntry(BaseModel):
    """Value of ``{prefix}/history/{time}-{id}`` (docs/keys.md): one operator action of an incident, written once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    action: HistoryAction
    by: str = Field(min_length=1)
    at: datetime
    why: str = ""
    #: What it named (a selector, a hold id, a node and partition), as typed.
    target: str = ""
    #: What it affected, one line each (runs held, cleared, listed; the hold it released).
    affected: tuple[str, ...] = ()
    #: The hold it made or released, if any.
    hold: str | None = None


def parse_history(raw: bytes) -> tuple[HistoryEntry | None, str | None]:
    """**Never raise on parse**."""
    return parse_value(HistoryEntry, raw)
