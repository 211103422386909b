"""The view: what the watcher knows at etcd revision R, built from a snapshot and advanced by watch events.

Rules:
- **Pure apply.** Pure: ``apply`` takes a key, a value (None = deleted) and the write's revision, and returns the
  partitions whose plan may have changed. No I/O, no clock, no logging; problems are collected in ``problems`` for the
  shell to report.
- **Snapshot equals events.** A view built from a snapshot at R and a view built from events up to R hold exactly the
  same facts: only the latest value of each key and its mod revision are kept, because that is all a relist can recover.
  This is what makes downtime of any length end in the same decisions as running throughout. Of a value, only what
  decisions, the audit and ``status`` read is kept (``RunFact``, ``LedgerFact``): a big store holds millions of them.
- **Every success a generation.** Every success write is a new generation, even a rewrite of the same attempt (a relist
  could not tell the two apart). Writers therefore never rewrite an unchanged state (``should_replace``), and ``mark``
  refuses to unless told to start a new generation.
- **Bad values never raise**: an unparsable run-state or ledger value is recorded as a problem and the key is treated as
  absent, so one team's garbage cannot stop the others' pipelines.
- **Task states.** Task-instance states (``{prefix}/tasks/{instance}/{dag_id}/{task_id}/{partition}``, the run-state
  value format) are facts of their DAG in their partition like run states (``tasks``; a malformed key or value is a
  problem like a run key's), so a change of one re-plans what depends on that DAG there.
- **No-cascade records are facts.** A rerun's no-cascade record (``{prefix}/config/no_cascade/...``, semantics
  `no-cascade-once`) is a fact of its DAG in its partition (``no_cascade``), read with the run state it waives; an
  unparsable one is a problem and the key is treated as absent (its rerun cascades as usual).
- **Flap records are facts.** A flapping run state's record (``{prefix}/config/flaps/...``, semantics `flap-held`) is a
  fact of its DAG in its partition (``flaps``, released ones too: the leader counts from a release); its partition is
  re-planned when it is written, released or deleted. An unparsable one is a problem and holds nothing.
- **The floor is a fact.** The retention floor (``{prefix}/config/retention``) is a fact of the view (``floor``), read
  at the same revision as the facts it retires, so a decision never pairs a floor with run states from another moment
  (``coordinator.core.decide``). An unparsable floor is a problem; the last valid one stays.
- **It names what moved.** After ``apply`` touched partitions, ``moved`` names them for a watch batch's changes in the
  view's two kinds (``core/kinds.py``): the (DAG, partition) of a fact key (``NODES``), else the partitions to re-plan
  (``PARTITIONS``; ``ALL``: every one).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import ValidationError

from coordinator.core import canonical
from coordinator.core.activation import Activation, load_activation
from coordinator.core.budget_state import BudgetState, parse_budget
from coordinator.core.canonical import done_ledger_fact, no_long_fraction, run_fact
from coordinator.core.checkpoint import PlanCheckpoint
from coordinator.core.fact_index import FactIndex, PartitionMaps
from coordinator.core.facts import LedgerFact as LedgerFact  # the view's facts, read from here by its readers
from coordinator.core.facts import RunFact as RunFact
from coordinator.core.flaps import Flap, parse_flap
from coordinator.core.floor import RetentionFloor, parse_floor
from coordinator.core.kinds import Kind, Moves
from coordinator.core.model import (
    NAME_RE,
    KeyLayout,
    NodeId,
    parse_run_record,
    parse_trigger_record,
    parse_value,
)
from coordinator.core.no_cascade import NoCascade, parse_no_cascade
from coordinator.core.partition import is_partition

#: Returned by ``apply`` when every partition must be re-planned (graph activation or backfill changed).
ALL = "*"

#: A partition's slot in a snapshot page (``View.load_page``): its facts of one kind (run states or ledger entries:
#: ``FactIndex.by_partition``'s mapping) and its nodes in ``View.partitions``.
_Slot = tuple[MutableMapping[NodeId, Any], MutableMapping[NodeId, None]]
_value = itemgetter(1)


@runtime_checkable
class PackedPage(Protocol):
    """A snapshot page as etcd sent it (``etcd.range_page.PackedItems``): ``packed`` is the response's bytes and the
    compiled range reader's table of where each item lies in them, which ``View.load_page``'s compiled loop reads in
    place (``core/_load.c``'s **Triples or rows, the same**); sliced, the items' (key, value, mod_revision) triples."""

    packed: tuple[bytes, bytes]

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> list[tuple[str, bytes, int]]: ...


@dataclass
class View:
    """Everything known at ``revision``. Mutated only through ``apply`` / ``load``."""

    #: **It names what moved**: (DAG, partition) whose run state, ledger entry or task state changed (only it and
    #: what depends on it need re-planning), and the other partitions to re-plan (``ALL``: every one).
    NODES: ClassVar[Kind[tuple[NodeId, str]]] = Kind("nodes")
    PARTITIONS: ClassVar[Kind[str]] = Kind("partitions")

    keys: KeyLayout
    revision: int = 0
    #: (DAG, partition) -> fact, kept per partition (``core.fact_index``): no tuple key per fact.
    runs: FactIndex[RunFact] = field(default_factory=FactIndex)
    ledger: FactIndex[LedgerFact] = field(default_factory=FactIndex)
    #: (DAG, task id, partition) -> the task instance's latest state (**Task states**).
    tasks: dict[tuple[NodeId, str, str], RunFact] = field(default_factory=dict)
    backfills: dict[tuple[NodeId, str], int] = field(default_factory=dict)
    #: (DAG, partition) -> revision of each run state Airflow ran as a backfill (``RunFact.backfill``): what the
    #: trigger budget reads as explained (``core.budget_allowance``' **Backfills explain themselves**) without a scan
    #: of the runs.
    run_backfills: dict[tuple[NodeId, str], int] = field(default_factory=dict)
    activation: Activation | None = None
    activation_rev: int = 0
    #: The retention floor (``{prefix}/config/retention``, semantics `retention-retires`) read with the same revision as
    #: the facts it retires; an unparsable value is a problem and the last valid floor stays (a garbage value must not
    #: bring retired partitions back).
    floor: RetentionFloor | None = None
    floor_rev: int = 0
    #: instance -> the trigger budget's state (``{prefix}/config/budget/{instance}``, semantics `trigger-budget`) and
    #: its mod revision; an unparsable value is a problem and the last valid state stays.
    budgets: dict[str, tuple[BudgetState, int]] = field(default_factory=dict)
    #: (DAG, partition) -> its rerun's no-cascade record (**No-cascade records are facts**).
    no_cascade: dict[tuple[NodeId, str], NoCascade] = field(default_factory=dict)
    #: (DAG, partition) -> the record of its flapping run state, standing or released (**Flap records are facts**).
    flaps: dict[tuple[NodeId, str], Flap] = field(default_factory=dict)
    #: The plan checkpoint (``{prefix}/config/checkpoint``, semantics `checkpoint-first`) and its mod revision: the
    #: revision the leader had planned through. Unparsable: a problem, None here, and ``checkpoint_rev`` still set (the
    #: start says the checkpoint was unreadable, not missing).
    checkpoint: PlanCheckpoint | None = None
    checkpoint_rev: int = 0
    #: key -> what is wrong with its value (reported by the shell, shown by ``status``).
    problems: dict[str, str] = field(default_factory=dict)
    #: partition -> nodes with any fact in it (so a reconcile pass touches only what exists), as the keys of a mapping
    #: made as the facts' are (``fact_index``' **A partition's facts in slots**: where compiled, an array by DAG once
    #: most DAGs are there, 40 KB at the estate's 5,000, where a dict took 147 KB and a set 512 KB); read as a set is
    #: (``in``, iteration, ``len``), never combined with another.
    partitions: dict[str, MutableMapping[NodeId, None]] = field(default_factory=dict)
    #: Parsed key parts, shared: 100,000 keys name only ~1,000 DAGs and ~100 partitions, so one NodeId per DAG and
    #: one string per partition save tens of MB, and a part validated once is not validated again. Not facts.
    _nodes: dict[tuple[str, str], NodeId] = field(default_factory=dict, init=False, repr=False, compare=False)
    _parts: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _input_names: dict[tuple[str, ...], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: ``keys.runs`` and ``keys.triggers`` (properties that format a string at every call).
    _bases: tuple[str, str] = field(init=False, repr=False, compare=False)
    #: Makes every per-partition mapping of this view over one index of the DAGs' slots (``fact_index.PartitionMaps``).
    _maps: PartitionMaps = field(default_factory=PartitionMaps, init=False, repr=False, compare=False)
    #: The facts a snapshot's compiled loop read and keeps by partition until they are stored together
    #: (``core/_load.c``'s **Stored by partition**): between ``load_page`` and ``end_load`` only, else None.
    _pending: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._bases = (self.keys.runs, self.keys.triggers)
        self.runs.fresh = self.ledger.fresh = self._maps.fresh

    @property
    def graph_key(self) -> str:
        return self.keys.config_key("graph")

    @property
    def floor_key(self) -> str:
        return self.keys.config_key("retention")

    @property
    def checkpoint_key(self) -> str:
        return self.keys.config_key("checkpoint")

    @property
    def backfill_prefix(self) -> str:
        return self.keys.config_key("backfill/")

    def load(self, revision: int, items: Iterable[tuple[str, bytes, int]]) -> None:
        """Replace everything with a snapshot: (key, value, mod_revision) triples read at ``revision``."""
        if self._pending is not None:  # a load starting over: what it kept belongs to dicts dropped below
            self._pending.drop()
        self.runs.clear()
        self.ledger.clear()
        self.tasks.clear()
        self.backfills.clear()
        self.run_backfills.clear()
        self.no_cascade.clear()
        self.flaps.clear()
        self.problems.clear()
        self.partitions.clear()
        self.activation = None
        self.activation_rev = 0
        self.floor, self.floor_rev = None, 0
        self.budgets.clear()
        self.checkpoint, self.checkpoint_rev = None, 0
        self.load_page(items)
        self.end_load()
        self.revision = revision

    def load_page(self, items: Iterable[tuple[str, bytes, int]]) -> None:
        """Apply one page of a snapshot: (key, value, mod_revision) triples, as ``apply`` of each in turn would.

        The same facts as ``apply`` of each (**Snapshot equals events**), without the sets of partitions to re-plan (a
        snapshot re-plans everything): this runs for every key of a snapshot, millions of them. Where the package is
        compiled, the common keys (a run state or a done ledger entry of a known DAG and partition, in the writers'
        shape) are loaded by ``core/_load.c``, which stops at any other and leaves it to the loop below
        (``_load_items``), then goes on after it. A :class:`PackedPage` (the compiled range reader's) is read by that
        loop in place, without a triple per key.

        **Loaded at the end.** The compiled loop keeps the facts it read by partition and stores them a partition at a
        time (``core/_load.c``'s **Stored by partition**): a load's pages are all in the view once ``end_load`` ran,
        which every load does (``load``, the informer's loads), and before anything else changes the view (``apply``,
        and this loop's own items in Python).
        """
        page: list[tuple[str, bytes, int]] | PackedPage
        source: list[tuple[str, bytes, int]] | tuple[bytes, bytes]
        if isinstance(items, PackedPage):
            page, source = items, items.packed
        else:
            page = source = items if isinstance(items, list) else list(items)
        runs, triggers = self._bases
        fast = canonical.native_load
        if fast is None or not (runs.isascii() and triggers.isascii()):
            self._load_items(page if isinstance(page, list) else list(page))
            return
        if self._pending is None:
            self._pending = canonical.native_pending()
        state = (runs, triggers, self._nodes, self._parts, self.runs.by_partition, self.ledger.by_partition,
                 self.partitions, self.problems, self.run_backfills, self._input_names, self._pending,
                 self._maps.index, self._maps.nodes)  # fmt: skip
        at, end, top = 0, len(page), self.revision
        while at < end:
            at, top = fast(source, at, top, state)
            if at < end:  # an item the compiled loop leaves to this one
                self.revision = max(self.revision, top)
                self._pending.flush()  # what came before it first, as one by one
                self._load_items(list(page[at : at + 1]))
                at, top = at + 1, self.revision
        if top > self.revision:
            self.revision = top

    def end_load(self) -> None:
        """Store the facts the last pages' compiled loop keeps by partition (**Loaded at the end**); a load's pages
        are all in the view after it."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.flush()

    def _load_items(self, page: list[tuple[str, bytes, int]]) -> None:
        """``load_page``'s loop in Python: every item of ``page``, those the compiled loop leaves and, without it, all.

        Long because it is that one hot loop: its steps are inlined on purpose (locals, no call per key), since a
        helper per key or per kind would be paid millions of times at a start.
        """
        # ``core.canonical``'s **UTC times, six digits** for every value at once
        # (not asked where the compiled reader reads the values: only a value it declines takes the search, on its own)
        native_run, native_ledger = canonical.native_run_fact, canonical.native_done_ledger_fact
        scanned = native_run is None and no_long_fraction(map(_value, page))
        runs, triggers = self._bases
        nodes, parts, names = self._nodes, self._parts, self._input_names
        # The per-partition mappings of the facts written directly (``FactIndex``' **Empty partitions dropped** holds: a
        # fact is added).
        runs_by, ledger_by = self.runs.by_partition, self.ledger.by_partition
        index, problems = self.partitions, self.problems  # ``apply`` below adds to this same dict
        run_of, ledger_of = RunFact.of, LedgerFact.of
        fresh = self._maps.fresh
        run_backfills = self.run_backfills
        # A page holds the keys of one DAG after another (etcd returns a range sorted by key): the key's parts are
        # parsed when the DAG changes, and for the next keys of the same DAG only the partition is looked up, in
        # the page's slots: partition -> (its facts of the DAG's kind, its nodes in ``partitions``), one lookup
        # where there were three. A slot is made when a fact is added (``FactIndex``' **Empty partitions dropped**), and
        # all are dropped after an ``apply``, which may drop a partition's mapping of facts.
        last: str | None = None  # the previous key's "{base}{instance}/{dag_id}" when it named a known DAG
        kind, node = 0, None
        run_slots: dict[str, _Slot] = {}
        ledger_slots: dict[str, _Slot] = {}
        no_slots: dict[str, _Slot] = {}  # a key of no known DAG: never written
        slots = no_slots
        top = self.revision  # the page's highest revision, kept in a local: an attribute store per key costs more
        for key, value, mod_rev in page:
            head, _, suffix = key.rpartition("/")  # one C call where ``startswith`` and a slice were two
            if head != last:
                kind = 1 if key.startswith(runs) else 2 if key.startswith(triggers) else 0
                split = key[len(runs if kind == 1 else triggers) :].split("/") if kind else []
                node = nodes.get((split[0], split[1])) if len(split) == 3 else None
                last, slots = (None, no_slots) if node is None else (head, run_slots if kind == 1 else ledger_slots)
            slot = slots.get(suffix)
            partition = ""  # not looked up ("" is never a partition)
            if problems and key in problems:
                slot = None  # ``apply`` clears the problem or words it again
            elif slot is None and node is not None:
                partition = parts.get(suffix, "")  # only valid ones are kept: a first key there takes ``apply``
            if node is not None and (slot is not None or partition):
                # A value in the writers' canonical shape becomes its fact without a pydantic record (the same fact:
                # ``core.canonical``'s **Exactly equivalent or nothing**); any other value takes the pydantic path,
                # which also words any problem.
                fact: RunFact | LedgerFact | None
                if kind == 1:
                    fact = None if native_run is None else native_run(value, mod_rev)
                    if fact is None:
                        fact = run_fact(value, mod_rev, scanned)
                    if fact is None:
                        record, _ = parse_run_record(value)
                        fact = None if record is None else run_of(record, mod_rev)
                    backfill = fact is not None and fact.backfill
                    # As ``_apply_run``: a backfill's fact is indexed, any other drops an earlier one's (the lookup only
                    # while there are any: most stores have none).
                    if backfill or (run_backfills and fact is not None):
                        at_key = (node, partition or parts[suffix])
                        if backfill:
                            run_backfills[at_key] = mod_rev
                        else:
                            run_backfills.pop(at_key, None)
                else:
                    fact = None if native_ledger is None else native_ledger(value, mod_rev, names)
                    if fact is None:
                        fact = done_ledger_fact(value, mod_rev, names, scanned)
                    if fact is None:
                        entry, _ = parse_trigger_record(value)
                        fact = None if entry is None else ledger_of(entry, mod_rev, names)
                if fact is not None:
                    if slot is None:
                        facts_by: dict[str, MutableMapping[NodeId, Any]] = runs_by if kind == 1 else ledger_by
                        facts = facts_by.get(partition)
                        if facts is None:
                            facts = facts_by[partition] = fresh()
                        at = index.get(partition)
                        if at is None:
                            at = index[partition] = fresh()
                        slot = slots[suffix] = (facts, at)
                    facts, at = slot
                    facts[node] = fact
                    at[node] = None
                    if mod_rev > top:
                        top = mod_rev
                    continue
            self.apply(key, value, mod_rev)  # anything but a good run state or ledger entry of known parts
            run_slots.clear()
            ledger_slots.clear()
        if top > self.revision:  # ``apply`` above may have raised it too
            self.revision = top

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        """Apply one put (value) or delete (None) at ``mod_rev``; return the partitions to re-plan."""
        if self._pending:  # a load's facts kept by partition go first (**Loaded at the end**)
            self._pending.flush()
        if mod_rev > self.revision:
            self.revision = mod_rev
        if self.problems:
            self.problems.pop(key, None)
        # This runs once per key of a snapshot (millions): the two common kinds first, each prefix tested once.
        runs, triggers = self._bases
        if key.startswith(runs):
            parsed = self._parse(key, runs)
            if parsed is not None:
                return self._apply_run(key, parsed, value, mod_rev)
        elif key.startswith(triggers):
            parsed = self._parse(key, triggers)
            if parsed is not None:
                return self._apply_ledger(key, parsed, value, mod_rev)
        elif key.startswith(self.keys.tasks):
            return self._apply_task(key, value, mod_rev)
        if key == self.graph_key:
            return self._apply_activation(key, value, mod_rev)
        if key.startswith(self.backfill_prefix):
            return self._apply_backfill(key, value, mod_rev)
        if key == self.floor_key:
            return self._apply_floor(key, value, mod_rev)
        if key.startswith(self.keys.budgets):
            return self._apply_budget(key, value, mod_rev)
        if key.startswith(self.keys.no_cascade):
            return self._apply_no_cascade(key, value, mod_rev)
        if key.startswith(self.keys.flaps):
            return self._apply_flap(key, value, mod_rev)
        if key == self.checkpoint_key:
            return self._apply_checkpoint(key, value, mod_rev)
        if key.startswith((self.keys.runs, self.keys.triggers)):
            self.problems[key] = "malformed key: expected {kind}/{instance}/{dag_id}/{YYYY-MM-DDTHH:MM:SSZ}"
        return set()

    def moved(self, key: str, touched: set[str], into: Moves) -> None:
        """**It names what moved**: ``key`` just applied touched ``touched`` (``apply``'s answer, not empty)."""
        at = self.node_of(key)
        if at is not None:
            into.add(View.NODES, at)
        else:
            into.update(View.PARTITIONS, touched)

    def known(self) -> dict[str, int]:
        """key -> mod revision of every key this view holds a fact or a problem of (problems: -1, so a relist hands
        them out again). What a relist after a compaction diffs against (``etcd.watch.watch_prefix``): the view
        keeps no key strings, so they are rebuilt here, only when needed."""
        found = {key: -1 for key in self.problems}
        found.update((self.keys.run_key(n, p), fact.rev) for (n, p), fact in self.runs.items())
        found.update((self.keys.trigger_key(n, p), fact.mod_rev) for (n, p), fact in self.ledger.items())
        found.update((self.keys.task_key(n, t, p), fact.rev) for (n, t, p), fact in self.tasks.items())
        found.update(
            (f"{self.backfill_prefix}{n.instance}/{n.dag_id}/{p}", rev) for (n, p), rev in self.backfills.items()
        )
        if self.activation is not None:
            found[self.graph_key] = self.activation_rev
        if self.floor is not None:
            found[self.floor_key] = self.floor_rev
        found.update((self.keys.budget_key(i), rev) for i, (_, rev) in self.budgets.items())
        found.update((self.keys.no_cascade_key(n, p), fact.rev) for (n, p), fact in self.no_cascade.items())
        found.update((self.keys.flap_key(n, p), flap.rev) for (n, p), flap in self.flaps.items())
        if self.checkpoint is not None:
            found[self.checkpoint_key] = self.checkpoint_rev
        return found

    def budget_states(self) -> dict[str, BudgetState]:
        """instance -> its trigger budget state (semantics `trigger-budget`)."""
        return {instance: state for instance, (state, _) in self.budgets.items()}

    def intern_nodes(self, nodes: Iterable[NodeId]) -> None:
        """Use these NodeId objects (the graph's) for the DAGs they name: equal either way, but a lookup of the same
        object skips the comparison, which the planner does a million times on a big store. They are given their slots
        in the partitions' mappings too (``PartitionMaps.know``)."""
        nodes = list(nodes)
        for node in nodes:
            self._nodes.setdefault((node.instance, node.dag_id), node)
        self._maps.know(self._nodes[(node.instance, node.dag_id)] for node in nodes)

    def node_of(self, key: str) -> tuple[NodeId, str] | None:
        """(DAG, partition) of a run-state, ledger or task-state key; None for any other key (activation, backfill,
        malformed)."""
        found = self._parse(key, self._bases[0]) or self._parse(key, self._bases[1])
        if found is None and key.startswith(self.keys.tasks):
            task = self.keys.parse_task_key(key)
            return None if task is None else (task[0], task[2])
        return found

    def _parse(self, key: str, base: str) -> tuple[NodeId, str] | None:
        """``KeyLayout.parse_run_key`` / ``parse_trigger_key`` (same answers), with the parts interned."""
        if not key.startswith(base):
            return None
        parts = key[len(base) :].split("/")
        if len(parts) != 3:
            return None
        node = self._nodes.get((parts[0], parts[1]))
        partition = self._parts.get(parts[2])
        if node is None or partition is None:
            # Not seen yet: the key layout validates; only valid parts are remembered.
            parsed = self.keys.parse_run_key(key) if base == self._bases[0] else self.keys.parse_trigger_key(key)
            if parsed is None:
                return None
            node = self._nodes.setdefault((parts[0], parts[1]), parsed[0])
            partition = self._parts.setdefault(parts[2], parsed[1])
        return node, partition

    def _index(self, node: NodeId, partition: str) -> None:
        nodes = self.partitions.get(partition)
        if nodes is None:  # not setdefault: that builds an empty dict for every key of a snapshot
            nodes = self.partitions[partition] = self._maps.fresh()
        nodes[node] = None

    def _apply_run(self, key: str, at: tuple[NodeId, str], value: bytes | None, mod_rev: int) -> set[str]:
        node, partition = at
        if value is None:
            self.runs.pop(at, None)
            self.run_backfills.pop(at, None)
            return {partition}
        record, problem = parse_run_record(value)
        if record is None:
            self.problems[key] = f"unparsable run state ({problem}); ignored until rewritten"
            self.runs.pop(at, None)
            self.run_backfills.pop(at, None)
            return {partition}
        fact = self.runs[at] = RunFact.of(record, mod_rev)
        if fact.backfill:
            self.run_backfills[at] = mod_rev
        else:
            self.run_backfills.pop(at, None)
        self._index(node, partition)
        return {partition}

    def _apply_ledger(self, key: str, at: tuple[NodeId, str], value: bytes | None, mod_rev: int) -> set[str]:
        node, partition = at
        if value is None:
            self.ledger.pop(at, None)
            return {partition}
        record, problem = parse_trigger_record(value)
        if record is None:
            self.problems[key] = f"unparsable trigger ledger entry ({problem}); ignored"
            self.ledger.pop(at, None)
            return {partition}
        self.ledger[at] = LedgerFact.of(record, mod_rev, self._input_names)
        self._index(node, partition)
        return {partition}

    def _apply_task(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        parsed = self.keys.parse_task_key(key)
        if parsed is None:
            self.problems[key] = "malformed key: expected tasks/{instance}/{dag_id}/{task_id}/{YYYY-MM-DDTHH:MM:SSZ}"
            return set()
        node, task, partition = parsed
        node = self._nodes.setdefault((node.instance, node.dag_id), node)
        partition = self._parts.setdefault(partition, partition)
        at = (node, task, partition)
        if value is None:
            self.tasks.pop(at, None)
            return {partition}
        record, problem = parse_run_record(value)
        if record is None:
            self.problems[key] = f"unparsable task state ({problem}); ignored until rewritten"
            self.tasks.pop(at, None)
            return {partition}
        self.tasks[at] = RunFact.of(record, mod_rev)
        self._index(node, partition)
        return {partition}

    def _apply_activation(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        if value is None:
            self.activation, self.activation_rev = None, 0
            return {ALL}
        try:
            self.activation = load_activation(value)
            self.activation_rev = mod_rev
        except ValueError as exc:  # pydantic's ValidationError, or a compressed value that does not inflate
            why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            self.problems[key] = f"unparsable graph activation ({why}); will be rewritten"
            self.activation, self.activation_rev = None, 0
        return {ALL}

    def _apply_budget(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        instance = key[len(self.keys.budgets) :]
        if not NAME_RE.match(instance):
            self.problems[key] = "malformed budget key: expected config/budget/{instance}"
            return set()
        if value is None:
            self.budgets.pop(instance, None)
            return {ALL}
        state, problem = parse_budget(value)
        if state is None:
            self.problems[key] = f"unparsable trigger budget state ({problem}); the last valid state stays"
            return set()
        previous = self.budgets.get(instance)
        self.budgets[instance] = (state, mod_rev)
        # A release (or a new hold) changes what passes in every partition; the window's count alone does not.
        return {ALL} if state.affects_plans(previous[0] if previous else None) else set()

    def _apply_no_cascade(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        """**No-cascade records are facts**: the partition is re-planned (its waived success may already be in)."""
        at = self.keys.parse_no_cascade_key(key)
        if at is None:
            self.problems[key] = "malformed no-cascade key: expected no_cascade/{instance}/{dag_id}/{partition}"
            return set()
        node = self._nodes.setdefault((at[0].instance, at[0].dag_id), at[0])
        partition = self._parts.setdefault(at[1], at[1])
        if value is None:
            self.no_cascade.pop((node, partition), None)
            return {partition}
        record, problem = parse_no_cascade(value)
        if record is None:
            self.problems[key] = f"unparsable no-cascade record ({problem}); ignored: the rerun cascades"
            self.no_cascade.pop((node, partition), None)
            return {partition}
        self.no_cascade[(node, partition)] = NoCascade(record, mod_rev)
        self._index(node, partition)
        return {partition}

    def _apply_flap(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        """**Flap records are facts**: the partition is re-planned (its dependents wait, or start once released)."""
        at = self.keys.parse_flap_key(key)
        if at is None:
            self.problems[key] = "malformed flap key: expected flaps/{instance}/{dag_id}/{partition}"
            return set()
        node = self._nodes.setdefault((at[0].instance, at[0].dag_id), at[0])
        partition = self._parts.setdefault(at[1], at[1])
        if value is None:
            self.flaps.pop((node, partition), None)
            return {partition}
        record, problem = parse_flap(value)
        if record is None:
            self.problems[key] = f"unparsable flap record ({problem}); it holds nothing"
            self.flaps.pop((node, partition), None)
            return {partition}
        self.flaps[(node, partition)] = Flap(record, mod_rev)
        return {partition}

    def standing_flaps(self) -> list[tuple[NodeId, str, Flap]]:
        """The flap records that hold now (semantics `flap-held`), by DAG then partition."""
        held = [(n, p, f) for (n, p), f in self.flaps.items() if f.record.standing]
        return sorted(held, key=lambda item: (item[0].qualified, item[1]))

    def _apply_floor(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        if value is None:  # a deleted floor is an explicit lowering
            self.floor, self.floor_rev = None, 0
            return {ALL}
        floor, problem = parse_floor(value)
        if floor is None:
            self.problems[key] = f"unparsable retention floor ({problem}); the last valid floor stays"
            return set()
        self.floor, self.floor_rev = floor, mod_rev
        return {ALL}

    def _apply_checkpoint(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        """Semantics `checkpoint-first`: nothing to re-plan; only a start reads it (``core/first_work.py``)."""
        if value is None:
            self.checkpoint, self.checkpoint_rev = None, 0
            return set()
        self.checkpoint, problem = parse_value(PlanCheckpoint, value)
        self.checkpoint_rev = mod_rev
        if problem is not None:
            self.problems[key] = f"unparsable plan checkpoint ({problem}); the next start plans every partition at once"
        return set()

    def _apply_backfill(self, key: str, value: bytes | None, mod_rev: int) -> set[str]:
        rest = key[len(self.backfill_prefix) :].split("/")
        if len(rest) != 3 or not is_partition(rest[2]):
            self.problems[key] = "malformed backfill key: expected backfill/{instance}/{dag_id}/{partition}"
            return set()
        try:
            node = NodeId.parse(f"{rest[0]}/{rest[1]}")
        except ValueError as exc:
            self.problems[key] = str(exc)
            return set()
        at = (node, rest[2])
        if value is None:
            self.backfills.pop(at, None)
        else:
            self.backfills[at] = mod_rev
            self._index(node, rest[2])
        return {rest[2]}

    def all_partitions(self) -> list[str]:
        return sorted(self.partitions)
