"""Asset conditions -> condition groups (semantics `condition-groups`; ``docs/import-dags.md``, "Asset conditions").

Rules:
- **Same meaning or reported.** Airflow's ``|`` (``AssetAny``) becomes an ``any`` group, ``&`` (``AssetAll``) required
  edges, and a rollup whose ``MinimumCount(n)`` counts one key per producer DAG an ``at_least n`` group (facts'
  **Counted rollups**). Anything whose meaning would differ is reported with why and nothing is written for that
  schedule or group: a condition is never half converted into something that runs more or less often.
- **One level.** Nested ``&`` of ``&`` and ``|`` of ``|`` are flattened as Airflow evaluates them; then an ``all`` of
  assets and ``any`` groups of assets maps onto the groups; an ``all`` inside an ``any`` ("(A and B) or C"), or a
  counted rollup inside an ``any``, is deeper than the groups nest and is reported.
- **Each asset as today.** An asset becomes the edge to its one producing task, fitted to the producer's dates or to
  Airflow's mapper's (``operators.asset_edge``); an asset with several producers, none in the folder or a mapping
  that is no edge is reported as for an AND schedule. In an ``any`` group such an asset leaves the whole group out
  (without it the group would not run when that asset updates). Required assets keep today's rule: each is an
  edge or a finding of its own.
- **Said in the report.** A note says what became a condition: ``schedule (a | b) became any of [producer_a,
  producer_b]``.
- **Pure**.
"""

from __future__ import annotations

from coordinator.core.importer.edges import ImportedGroup, Work
from coordinator.core.importer.facts import AssetCondition, ConditionOp, DagFact, FindingKind
from coordinator.core.importer.fit import Edge
from coordinator.core.importer.operators import asset_edge, assets_note, fitted_edge

#: The groups' own words for a condition deeper than one level (``docs/dependencies.md``, "One level").
DEEPER = (
    'groups nest one level (an any or at_least group lists edges beside the required ones): "(A and B) or C" '
    "cannot be written"
)


def asset_conditions(work: Work, dag: DagFact) -> bool:
    """Write the groups of ``dag``'s asset condition when it has an OR or a counted rollup; False when it has neither
    (a plain AND: ``operators.asset_edges`` writes it)."""
    schedule = dag.schedule
    tree = schedule.condition
    counted = {m.uri for m in schedule.mappings if m.producers and m.need is not None}
    if tree is None or (schedule.assets is not None and not counted):
        return False
    shape = one_level(tree)
    if isinstance(shape, str):
        work.add(FindingKind.INEXPRESSIBLE, dag, f"schedule {tree.text()}: {shape}; keep the asset schedule")
        return True
    required, anys = shape
    said: list[str] = []
    for uri in required:
        if uri in counted:
            said += _counted(work, dag, uri)
            continue
        edge = asset_edge(work, dag, uri)
        if isinstance(edge, str):
            work.add(FindingKind.INEXPRESSIBLE, dag, edge)
            continue
        work.edge(dag.dag_id, edge, dag)
        said.append(f"{uri}: the edge {_name(edge)}")
    plain = work.upstream_edges(dag.dag_id)
    for uris in anys:
        written = f"({' | '.join(uris)})"
        if any(uri in counted for uri in uris):
            work.add(FindingKind.INEXPRESSIBLE, dag, f"{written}: a counted rollup inside an OR: {DEEPER}")
            continue
        members: list[Edge] = []
        problems: list[str] = []
        for uri in uris:
            edge = asset_edge(work, dag, uri)
            if isinstance(edge, str):
                problems.append(edge)
            elif edge not in members:
                members.append(edge)
        if problems:
            work.add(
                FindingKind.INEXPRESSIBLE,
                dag,
                f"{written} not converted: {'; '.join(problems)}; an any group without it would not run when it "
                "updates",
            )
            continue
        if any(m in plain for m in members):
            said.append(f"{written}: holds whenever the required input does (one producer), nothing more")
            continue
        if len(members) == 1:
            work.edge(dag.dag_id, members[0], dag)
            said.append(f"{written}: the edge {_name(members[0])} (one producing task)")
            continue
        group = ImportedGroup("any", 1, tuple(members))
        work.group(dag.dag_id, group, dag)
        said.append(f"{written}: {group.describe()}")
    if said:
        whole = f"({tree.text()})" if tree.op is ConditionOp.ANY else tree.text()
        became = said[0].split(": ", 1)[1] if len(said) == 1 else "; ".join(said)
        work.add(FindingKind.NOTE, dag, f"schedule {whole} became {became}; {assets_note(schedule)}")
    return True


def _counted(work: Work, dag: DagFact, uri: str) -> list[str]:
    """A counted rollup's ``at_least`` group (facts' **Counted rollups**), or its findings."""
    mapping = dag.schedule.mapping(uri)
    assert mapping is not None and mapping.need is not None
    members: list[Edge] = []
    for producer in mapping.producers:
        fact = work.dags.get(producer.dag_id)
        tasks = [task for task, out in fact.outlets if out == uri] if fact is not None else []
        if len(tasks) != 1:
            work.add(FindingKind.INEXPRESSIBLE, dag, f"asset {uri!r}: {producer.dag_id} has {len(tasks)} producing "
                     "tasks (a member is one task)")  # fmt: skip
            return []
        edge = fitted_edge(work, dag, uri, producer.dag_id, tasks[0], producer.samples)
        if isinstance(edge, str):
            work.add(FindingKind.INEXPRESSIBLE, dag, edge)
            return []
        members.append(edge)
    rule = f"{mapping.mapper} with {mapping.policy}"
    if mapping.need == len(members):
        for edge in members:
            work.edge(dag.dag_id, edge, dag)
        return [f"{uri}: the edges to all {len(members)} producers ({rule}, one key of the window each)"]
    group = ImportedGroup("at_least", mapping.need, tuple(members))
    work.group(dag.dag_id, group, dag)
    return [f"{uri}: {group.describe()} ({rule}, one key of the window each)"]


def _name(edge: Edge) -> str:
    return edge.dag if edge.task is None else f"{edge.dag}.{edge.task}"


def one_level(tree: AssetCondition) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]] | str:
    """(required assets, any groups of assets), or why the condition is deeper than one level (**One level**)."""
    flat = _flatten(tree)
    if flat.op is ConditionOp.ASSET:
        return (str(flat.uri),), ()
    if flat.op is ConditionOp.ANY:
        if any(item.op is not ConditionOp.ASSET for item in flat.items):
            return f"an AND inside an OR ({flat.text()}): {DEEPER}"
        return (), (flat.uris(),)
    required: list[str] = []
    anys: list[tuple[str, ...]] = []
    for item in flat.items:
        if item.op is ConditionOp.ASSET:
            required.append(str(item.uri))
        elif any(inner.op is not ConditionOp.ASSET for inner in item.items):
            return f"an AND inside an OR inside an AND ({item.text()}): {DEEPER}"
        else:
            anys.append(item.uris())
    return tuple(dict.fromkeys(required)), tuple(anys)


def _flatten(tree: AssetCondition) -> AssetCondition:
    """``a & (b & c)`` is ``a & b & c``, ``a | (b | c)`` is ``a | b | c``, one item is that item, repeats go."""
    if tree.op is ConditionOp.ASSET:
        return tree
    items: list[AssetCondition] = []
    for item in (_flatten(i) for i in tree.items):
        for inner in item.items if item.op is tree.op else (item,):
            if inner not in items:
                items.append(inner)
    if len(items) == 1:
        return items[0]
    return AssetCondition(tree.op, items=tuple(items))
