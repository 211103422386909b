"""Declarations -> the graph's DAGs and edges: every reference resolved to a node, and the checks that need every
declaration of the file at once (references, repeated edges, gates, date mappings, segments, groups, cycles).

:mod:`coordinator.core.spec.loader` reads a ``dependencies.json`` into declarations
(:mod:`coordinator.core.spec.declared`: one DAG as written) and hands them here; what this module finds wrong goes to
the same report, so the loader still raises every problem at once.

Rules:
- **References.** A reference is ``dag_id`` or ``instance/dag_id`` (``/`` is outside Airflow's dag id charset, so the
  split is unambiguous). A bare id resolves to the unique declared DAG with that id, else to an undeclared root in the
  ``default`` instance; an id declared in two instances must be qualified. Undeclared DAGs become roots.
- **Acyclic.** The graph must be acyclic over success AND failure edges: the planner orders work along both.
- **Extended edges.** An edge object may also carry ``shift``, ``member``, ``task`` and ``condition``
  (``docs/dependencies.md``). A DAG may name itself in ``upstreams`` only through an edge that points strictly into the
  past (a negative offset or shift, neither positive): a GATE on its own earlier partitions, not an input and not a
  cycle. "Listed twice" is about (DAG, task): a sensor on two tasks of one DAG is two edges. Every edge to one upstream
  DAG maps dates the same way (offset, shift, member), and a member needs grids on both sides.
- **Segments and counts.** Every edge relates its DAGs' partitions (a time to a time, a segment to a segment), a
  written ``"segments": "all"`` has the upstream's segments to take, and a cutoff (of a group or of a partition count)
  has a time to start from.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from coordinator.core.conditions import GroupSpec, Member
from coordinator.core.graph import Condition, DagSpec, EdgeSpec
from coordinator.core.grid import Grid, SegmentMap
from coordinator.core.model import DEFAULT_INSTANCE, NAME_RE, NODE_SEP, NodeId
from coordinator.core.segments import SEGMENT_EDGE_HINT, Segments, segment_edge_problem
from coordinator.core.spec.conditions import time_cutoff_problem
from coordinator.core.spec.cycles import Edge, acyclic, cycle_text, shortest_cycles
from coordinator.core.spec.deadline import ExpectedBy
from coordinator.core.spec.declared import Decl, Ref, Report
from coordinator.core.spec.grid import edge_offsets, mapping_problem
from coordinator.core.spec.source import JsonPath, format_path

#: Airflow's ID_LEN: a longer dag id does not fit its database columns.
MAX_DAG_ID_LEN = 250
NAME_HINT = "use letters, digits, '_', '.', '-'"
CYCLE_HINT = "a DAG cannot wait for itself; remove one of these dependencies"


def split_ref(text: str, path: JsonPath, report: Report, *, shorthand: bool) -> tuple[str | None, str] | None:
    """(instance or None when bare, dag id) of a reference or key; None after reporting why it is invalid."""
    instance, sep, dag_id = text.rpartition(NODE_SEP)
    if sep and shorthand:
        report.add(
            path,
            f"qualified reference {text!r} in the shorthand form",
            'the shorthand has only the "default" instance; use the extended form ("version": 1, "instances", '
            '"dags") to name instances',
        )
        return None
    valid = True
    if sep and not NAME_RE.match(instance):
        report.add(path, f"invalid instance name {instance!r} in {text!r}", NAME_HINT)
        valid = False
    if not NAME_RE.match(dag_id):
        report.add(path, f"invalid dag id {dag_id!r}", NAME_HINT + ("; '/' separates instance/dag_id" * bool(sep)))
        valid = False
    elif len(dag_id) > MAX_DAG_ID_LEN:
        report.add(path, f"dag id {dag_id[:30]!r}... is {len(dag_id)} characters long", "Airflow allows at most 250")
        valid = False
    return ((instance if sep else None), dag_id) if valid else None


def instance_hint(name: str, instances: Iterable[str]) -> str:
    declared = sorted(instances)
    close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
    prefix = f"did you mean {close[0]!r}? Otherwise " if close else ""
    return f'{prefix}declare it under "instances" (declared: {", ".join(declared)})'


@dataclass(slots=True)
class _Resolver:
    """Turns references into nodes (**References**), reporting invalid, ambiguous, self and repeated references."""

    declared: Mapping[NodeId, Decl]
    instances: set[str]
    shorthand: bool
    report: Report
    by_dag_id: dict[str, list[NodeId]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in sorted(self.declared):
            self.by_dag_id.setdefault(node.dag_id, []).append(node)

    def resolve(self, ref: Ref) -> NodeId | None:
        split = split_ref(ref.text, ref.path, self.report, shorthand=self.shorthand)
        if split is None:
            return None
        instance, dag_id = split
        if instance is not None:
            node = NodeId(instance, dag_id)
            # A declared node in an undeclared instance was already reported at its declaration.
            if node not in self.declared and instance not in self.instances:
                hint = instance_hint(instance, self.instances)
                self.report.add(ref.path, f"undeclared instance {instance!r} in {ref.text!r}", hint)
                return None
            return node
        matches = self.by_dag_id.get(dag_id, [])
        if len(matches) > 1:
            where = ", ".join(n.instance for n in matches)
            options = " or ".join(n.qualified for n in matches)
            self.report.add(
                ref.path, f"ambiguous reference {dag_id!r}: declared in {where}", f"qualify it as {options}"
            )
            return None
        return matches[0] if matches else NodeId(DEFAULT_INSTANCE, dag_id)

    def sources(self, owner: NodeId, refs: Iterable[Ref], *, failure: bool) -> list[tuple[NodeId, Ref]]:
        """Every accepted edge of a list, in order: distinct (DAG, task), a self-reference only as a gate."""
        found: dict[tuple[NodeId, str | None], Ref] = {}
        for ref in refs:
            node = self.resolve(ref)
            if node is None:
                continue
            if node == owner and not self._gate_ok(ref, failure):
                continue
            key = (node, ref.task)
            if key in found:
                first = format_path(found[key].path)
                what = f"{node} task {ref.task!r}" if ref.task is not None else str(node)
                self.report.add(ref.path, f"{what} is listed twice (also at {first})", "remove one of them")
            else:
                found[key] = ref
        return [(node, ref) for (node, _), ref in found.items()]

    def _gate_ok(self, ref: Ref, failure: bool) -> bool:
        """Whether a self-reference is a valid gate (**Extended edges**), reporting why not."""
        example = f'write {{"dag": "{ref.text}", "offset": -1}} (its previous partition) or a negative "shift"'
        if failure:
            self.report.add(
                ref.path, f"self-dependency: {ref.text!r} is this DAG", "a DAG cannot handle its own failure"
            )
            return False
        edge = ref.edge
        if edge is None:
            self.report.add(ref.path, f"self-dependency: {ref.text!r} is this DAG", f"remove it, or {example}")
            return False
        if edge.member is not None:
            self.report.add(
                ref.field_path("member"),
                "member on a self-dependency",
                "a DAG's own window has one partition; use offset or shift alone",
            )
            return False
        offset, shift = edge.offset or 0, edge.shift or 0
        if offset > 0 or shift > 0 or (offset == 0 and shift == 0):
            self.report.add(
                ref.path,
                f"self-dependency on {ref.text!r} does not point strictly into the past",
                f"a DAG can only wait for its own earlier partitions: {example}",
            )
            return False
        return True


def resolve(
    decls: Sequence[Decl], instances: set[str], shorthand: bool, report: Report
) -> tuple[dict[NodeId, DagSpec], list[Edge], set[NodeId]]:
    """The DAGs (declared ones and roots only referenced), every edge with where it is written, the declared DAGs."""
    declared = _index_declarations(decls, report)
    resolver = _Resolver(declared, instances, shorthand, report)
    grids = {node: decl.grid for node, decl in declared.items()}
    segments = {node: decl.segments for node, decl in declared.items()}
    specs: dict[NodeId, DagSpec] = {}
    edges: list[Edge] = []
    for node, decl in declared.items():
        success = resolver.sources(node, decl.upstreams, failure=False)
        failing = resolver.sources(node, decl.on_failure_of, failure=True)
        written = [(src, ref, False) for src, ref in success] + [(src, ref, True) for src, ref in failing]
        firsts: dict[NodeId, Ref] = {}
        for src, ref, _ in written:
            firsts.setdefault(src, ref)
        upstreams = sorted({src for src, _ in success if src != node})
        on_failure_of = sorted({src for src, _ in failing})
        edges += [Edge(src, node, False, firsts[src].path) for src in upstreams]
        edges += [Edge(src, node, True, firsts[src].path) for src in on_failure_of]
        offsets = edge_offsets(
            node, decl.grid, {src: (ref.path, ref.offset) for src, ref in firsts.items()}, grids, report.add
        )
        extended = _check_edges(node, decl.grid, written, grids, report)
        extended = _check_segments(node, decl, written, segments, extended, report)
        late = sorted({src for src, _ in resolver.sources(node, decl.on_late_of, failure=True)})
        specs[node] = DagSpec(
            node, tuple(upstreams), tuple(on_failure_of), decl.description, decl.grid, offsets, extended,
            _resolve_levels(node, decl.expected_by, decl.path, resolver), tuple(late),
            _groups(node, decl, success, report), decl.segments, decl.key_format, decl.data_interval, decl.scheduled,
        )  # fmt: skip
    for edge in edges:
        specs.setdefault(edge.source, DagSpec(edge.source))  # referenced only: a root
    _check_cycles(specs, edges, report)
    return specs, edges, set(declared)


def _groups(node: NodeId, decl: Decl, success: Sequence[tuple[NodeId, Ref]], report: Report) -> tuple[GroupSpec, ...]:
    """The DAG's ``any``/``at_least`` groups over its accepted members (``loader``'s **Condition groups**)."""
    members: dict[int, list[Member]] = {}
    for src, ref in success:
        if ref.group is None:
            continue
        if src == node:
            report.add(
                ref.path,
                f"self-dependency {ref.text!r} in a condition group",
                "a gate on its own earlier partitions is no input: list it in upstreams, outside the group",
            )
            continue
        members.setdefault(ref.group, []).append((src, ref.task))
    result = []
    for index, written in enumerate(decl.groups):
        found = tuple(sorted(members.get(index, []), key=lambda m: (m[0], m[1] or "")))
        assert written.rule is not None  # an all group without a cutoff is flattened, never collected
        if written.at_time is not None and (problem := time_cutoff_problem(decl.grid)) is not None:
            report.add(written.at_path, problem, 'use a duration after the partition\'s start, e.g. "cutoff": "6h"')
        elif len(found) >= max(written.need, 2):  # otherwise a member was refused above (or at its reference)
            grid = decl.grid if written.at_time is not None else None
            cut, least, late = written.cutoff, written.minimum, written.late
            result.append(GroupSpec(written.rule, written.need, found, cut, least, late, written.at_time, grid))
    return tuple(result)


def _resolve_levels(node: NodeId, rule: ExpectedBy | None, path: JsonPath, resolver: _Resolver) -> ExpectedBy | None:
    """The rule with each escalation level's handlers resolved to qualified names (``spec.deadline``'s
    **Escalation levels**), reported like ``on_late_of``'s references (unknown, ambiguous, this DAG itself)."""
    if rule is None or not rule.levels:
        return rule
    levels = []
    for index, level in enumerate(rule.levels):
        where: JsonPath = (*path, "expected_by", "levels", index, "handlers")
        refs = tuple(Ref(text, (*where, j)) for j, text in enumerate(level.handlers))
        found = sorted({src for src, _ in resolver.sources(node, refs, failure=True)})
        levels.append(replace(level, handlers=tuple(n.qualified for n in found)))
    return replace(rule, levels=tuple(levels))


def _check_edges(
    node: NodeId,
    grid: Grid | None,
    written: Sequence[tuple[NodeId, Ref, bool]],
    grids: Mapping[NodeId, Grid | None],
    report: Report,
) -> tuple[EdgeSpec, ...]:
    """The DAG's extended edges (``graph``'s **Sources are other DAGs**), after checking **Extended edges**' per-edge
    conditions."""
    first_of: dict[NodeId, Ref] = {}
    keep: set[NodeId] = set()
    for src, ref, failure in written:
        first = first_of.setdefault(src, ref)
        if first is not ref and first.mapping != ref.mapping:
            report.add(
                ref.path,
                f"this edge to {src} maps dates differently from the one at {format_path(first.path)}",
                "give every edge to one DAG the same offset, shift and member",
            )
        if ref.extended or src == node:
            keep.add(src)
        edge = ref.edge
        if edge is None:
            continue
        if failure and (edge.task is not None or edge.condition is not None):
            name = "task" if edge.task is not None else "condition"
            report.add(
                ref.field_path(name),
                f'"{name}" on a failure source',
                "a failure handler runs when the whole run of its source fails; remove it",
            )
        up_grid = grids.get(src)
        if edge.member is not None and (grid is None or up_grid is None):
            ungridded = node if grid is None else src
            report.add(
                ref.field_path("member"),
                f"member on an edge without grids on both sides ({ungridded} has no partitions)",
                'declare "partitions": {"cron": ...} on both DAGs: a member is one partition of the mapped window',
            )
        elif edge.shift is not None or edge.member is not None:
            problem = mapping_problem(grid, up_grid, ref.mapping, str(src))
            if problem is not None:
                report.add(ref.field_path("member" if edge.member is not None else "shift"), *problem)
    return tuple(
        sorted(
            (
                EdgeSpec(src, ref.task, (ref.edge.condition if ref.edge else None) or Condition.SUCCESS, ref.mapping,
                         failure, ref.count)
                for src, ref, failure in written
                if src in keep
            ),
            key=lambda e: (e.source, e.task or ""),
        )
    )  # fmt: skip


def _check_segments(
    node: NodeId,
    decl: Decl,
    written: Sequence[tuple[NodeId, Ref, bool]],
    segments: Mapping[NodeId, Segments | None],
    extended: tuple[EdgeSpec, ...],
    report: Report,
) -> tuple[EdgeSpec, ...]:
    """**Segments and counts**: every edge relates its DAGs' partitions (a time to a time, a segment to a segment), a
    written ``"segments": "all"`` has the upstream's segments to take, a cutoff has a time to start from. Returns
    ``extended`` with a count's time-of-day cutoff given the DAG's grid."""
    mine = decl.segments
    if mine is not None and not mine.timed:
        if decl.expected_by is not None:
            report.add(
                (*decl.path, "expected_by"),
                f"a deadline on {node}, whose partitions are segments without a time",
                'a deadline counts from the partition\'s time: add a "cron" to its partitions, or remove "expected_by"',
            )
        if any(group.cutoff is not None or group.at_time is not None for group in decl.groups):
            report.add(
                (*decl.path, "upstreams"),
                f"a cutoff on {node}, whose partitions are segments without a time",
                'a cutoff counts from the partition\'s time: add a "cron" to its partitions, or remove "cutoff"',
            )
    for src, ref, _ in written:
        if src == node:
            continue
        theirs = segments.get(src)
        rule = ref.mapping.segments
        if rule is SegmentMap.ALL and theirs is None:
            report.add(
                ref.field_path("segments"),
                f'"segments": "all" but {src} declares no segments',
                f'declare "partitions": {{"segments": [...]}} on {src}, or remove "segments"',
            )
            continue
        if (problem := segment_edge_problem(mine, theirs, rule)) is not None:
            report.add(ref.path, f"{problem} ({node} -> {src})", SEGMENT_EDGE_HINT)
            continue
        count = ref.count
        if count is not None and count.has_cutoff and mine is not None and not mine.timed:
            report.add(
                ref.field_path("cutoff"),
                f"a cutoff on {node}, whose partitions are segments without a time",
                'a cutoff counts from the partition\'s time: add a "cron" to its partitions, or remove "cutoff"',
            )
        elif count is not None and count.at_time is not None and (problem := time_cutoff_problem(decl.grid)):
            report.add(ref.field_path("cutoff"), problem, 'use a duration after the partition\'s start, e.g. "6h"')
    return tuple(
        replace(e, count=replace(e.count, grid=decl.grid)) if e.count is not None and e.count.at_time is not None else e
        for e in extended
    )


def _index_declarations(decls: Sequence[Decl], report: Report) -> dict[NodeId, Decl]:
    declared: dict[NodeId, Decl] = {}
    for decl in decls:
        if decl.node is None:
            continue
        first = declared.get(decl.node)
        if first is None:
            declared[decl.node] = decl
        else:
            report.add(
                decl.path,
                f"DAG {decl.node.qualified} is declared twice (also at {format_path(first.path)})",
                "keep one declaration and merge their fields",
            )
    return declared


def _check_cycles(nodes: Iterable[NodeId], edges: Sequence[Edge], report: Report) -> None:
    """Report one shortest cycle per strongly connected component, starting from its smallest node."""
    nodes = list(nodes)
    if acyclic(nodes, edges):  # nearly every file: the ordered search below is for the message of a cycle
        return
    out: dict[NodeId, list[Edge]] = {node: [] for node in sorted(nodes)}
    for edge in sorted(edges, key=lambda e: (e.source, e.target)):
        out[edge.source].append(edge)
    for cycle in shortest_cycles(out):
        report.add(cycle[-1].path, f"cycle {cycle_text(cycle)}", CYCLE_HINT)
