"""``dependencies.json`` -> a validated :class:`Graph`. The format is documented in ``docs/dependencies.md``.

Rules:
- **Pure**: :func:`parse_spec` takes text and a source name (for messages) and does no I/O; reading the file is the
  shell's job (``coordinator.runtime.spec_file.load_spec``).
- **Every problem at once.** Never stop at the first problem: every problem is collected and raised together in one
  :class:`SpecError`, each formatted ``<file>[:line]: <JSON path>: <what is wrong> — <how to fix it>``. Only a JSON
  syntax error stops early (there is no document to check yet); it carries ``line:col`` instead of a path.
- **Two forms**. The proof of concept's shorthand ``{"b": "a", "c": ["a", "b"]}`` keeps loading unchanged (every DAG in
  the ``default`` instance). Any of the top-level keys ``version``, ``instances``, ``dags`` selects the extended form,
  so a DAG with one of those names can only be declared in the extended form.
- **References.** A reference is ``dag_id`` or ``instance/dag_id`` (``/`` is outside Airflow's dag id charset, so the
  split is unambiguous). A bare id resolves to the unique declared DAG with that id, else to an undeclared root in the
  ``default`` instance; an id declared in two instances must be qualified. Undeclared DAGs become roots.
- **Acyclic.** The graph must be acyclic over success AND failure edges: the planner orders work along both.
- **Dependent or handler.** A DAG is either a success dependent (``upstreams``) or a failure handler
  (``on_failure_of``), never both: the two trigger on different events for the same partition, and one Airflow run per
  partition cannot serve both.
- **No URLs or credentials.** URLs and credentials are refused here: this file is shared and committed; connection
  settings live in the instances settings file and the environment (see ``coordinator/runtime/settings.py``).
- **Grids and offsets.** A DAG may declare a partition grid (``partitions``) and an edge may be ``{"dag": REF, "offset":
  k}`` (``coordinator.core.spec.grid``). An offset needs grids on both sides of its edge: without them the edge keeps
  the exact-date join, where an offset has no meaning. A file without grids yields exactly today's graph.
- **Extended edges.** An edge object may also carry ``shift``, ``member``, ``task`` and ``condition``
  (``docs/dependencies.md``). A DAG may name itself in ``upstreams`` only through an edge that points strictly into the
  past (a negative offset or shift, neither positive): a GATE on its own earlier partitions, not an input and not a
  cycle. "Listed twice" is about (DAG, task): a sensor on two tasks of one DAG is two edges. Every edge to one upstream
  DAG maps dates the same way (offset, shift, member), and a member needs grids on both sides.
- **Assets and OpenLineage.** The extended form may also share assets (``"assets"``,
  :mod:`coordinator.core.spec.routes`) and name OpenLineage jobs as nodes (``"openlineage"``,
  :mod:`coordinator.core.spec.lineage`); the latter is read after references are resolved, because an entry is judged
  against the DAGs it maps.
- **External instances.** An instance may declare ``"kind": "external"`` (no Airflow,
  :mod:`coordinator.core.spec.instances`): its DAGs are never triggered, so the graph may not make one a dependent;
  judged after references are resolved, like **Assets and OpenLineage**.
- **Condition groups.** An ``upstreams`` entry may be a group (``any``, ``all``, ``at_least`` … ``of``,
  :mod:`coordinator.core.spec.conditions`); its members are edges like any other (listed once per (DAG, task) across
  the whole list), an ``all`` group is flattened into the list, and the others become the DAG's
  :attr:`DagSpec.groups`. A member may not be the DAG itself (a gate is no input), nor is a group allowed in
  ``on_failure_of``, ``on_late_of`` or the shorthand.
- **Scheduled dependents.** ``"runs": "scheduled"`` (:mod:`coordinator.core.spec.scheduled`) keeps a dependent on its
  own Airflow timetable; judged after references are resolved (it needs upstreams and is no handler).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from coordinator.core.conditions import GroupSpec, Member
from coordinator.core.graph import Condition, DagSpec, EdgeSpec, Graph
from coordinator.core.grid import Grid, SegmentMap
from coordinator.core.model import DEFAULT_INSTANCE, NAME_RE, NODE_SEP, NodeId
from coordinator.core.segments import SEGMENT_EDGE_HINT, Segments, segment_edge_problem
from coordinator.core.spec.conditions import is_group, read_count, read_group, time_cutoff_problem
from coordinator.core.spec.cycles import Edge, cycle_text, shortest_cycles
from coordinator.core.spec.deadline import ExpectedBy, read_expected_by
from coordinator.core.spec.declared import (
    ON_FAILURE_OF,
    ON_LATE_OF,
    SHORTHAND,
    UPSTREAMS,
    Decl,
    Ref,
    RefField,
    RefList,
    Report,
)
from coordinator.core.spec.grid import (
    COUNT_FIELDS,
    DeclaredPartitions,
    edge_offsets,
    mapping_problem,
    read_data_interval,
    read_declared_partitions,
    read_edge,
)
from coordinator.core.spec.grid import describe as _describe
from coordinator.core.spec.instances import InstanceKind, check_external, read_kind
from coordinator.core.spec.lineage import read_lineage
from coordinator.core.spec.routes import read_routes
from coordinator.core.spec.scheduled import check_scheduled, read_runs
from coordinator.core.spec.source import (
    JsonPath,
    JsonSyntaxError,
    Problem,
    decode,
    duplicate_keys,
    format_path,
    value_lines,
)
from coordinator.errors import SpecError

SPEC_VERSION = 1
#: Airflow's ID_LEN: a longer dag id does not fit its database columns.
MAX_DAG_ID_LEN = 250
#: Any of these at the top level selects the extended form.
FORM_KEYS = ("version", "instances", "dags")
#: ``$schema`` lets editors find docs/dependencies.schema.json; the loader ignores its value.
TOP_FIELDS = ("$schema", *FORM_KEYS, "assets", "openlineage")
INSTANCE_FIELDS = ("description", "kind")
DAG_FIELDS = (
    "upstreams", "on_failure_of", "partitions", "instance", "description", "expected_by", "on_late_of", "data_interval",
    "runs",
)  # fmt: skip
#: Field names that carry connection data; matched exactly or, for the last group, anywhere in the name.
CONNECTION_FIELDS = frozenset({"host", "port", "user", "username", "login", "auth", "api", "conn", "conn_id"})
SECRET_WORDS = ("url", "password", "passwd", "secret", "token", "credential", "connection", "api_key")
NAME_HINT = "use letters, digits, '_', '.', '-'"
CONNECTION_HINT = (
    "this file is shared and committed: put Airflow URLs and credentials in the instances settings file "
    "(COORDINATOR_INSTANCES_FILE) or the environment (COORDINATOR_AIRFLOW_URL, COORDINATOR_AIRFLOW_PASSWORD_FILE)"
)
CYCLE_HINT = "a DAG cannot wait for itself; remove one of these dependencies"


def parse_spec(text: str, source: str = "dependencies.json") -> Graph:
    """Validate the text of a dependencies file and return its graph; raise SpecError listing every problem."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        empty = Problem((), "the file is empty", "write {} for no dependencies; see docs/dependencies.md")
        raise SpecError([empty.format(source)])
    try:
        doc = decode(text)
    except JsonSyntaxError as exc:
        raise SpecError([exc.problem.format(source)]) from None  # the JSON error is already in the message
    duplicates = list(duplicate_keys(doc))
    report = Report()
    graph = _build(doc, source, report)
    if graph is not None and not duplicates:
        return graph
    lines = value_lines(text)  # only paid for on failure
    problems = [_duplicate_problem(path, key, lines) for path, key in duplicates]
    # File order reads best; a problem without a line (about the whole document) comes first.
    problems += sorted((_locate(problem, lines) for problem in report.problems), key=lambda p: p.line or 0)
    raise SpecError([problem.format(source) for problem in problems])


def _duplicate_problem(path: JsonPath, key: str, lines: Mapping[JsonPath, list[int]]) -> Problem:
    seen_at = lines.get((*path, key), [])
    distinct = sorted(set(seen_at))
    where = f" (lines {', '.join(map(str, distinct))})" if len(distinct) > 1 else ""
    hint = "JSON keeps only the last value and drops the others silently; merge them into one entry"
    return Problem((*path, key), f"duplicate key {key!r}{where}", hint, seen_at[-1] if seen_at else None)


def _locate(problem: Problem, lines: Mapping[JsonPath, list[int]]) -> Problem:
    """Add the line of the value a problem points at (the last one, which is the one JSON keeps)."""
    if not problem.path or problem.path not in lines:
        return problem
    return dataclasses.replace(problem, line=lines[problem.path][-1])


def _build(doc: Any, source: str, report: Report) -> Graph | None:
    if not isinstance(doc, dict):
        report.add(
            (),
            f"the top level is {_describe(doc)}, not an object",
            'write {"downstream_dag": "upstream_dag", ...} or {"version": 1, "dags": {...}}',
        )
        return None
    shorthand = not any(key in doc for key in FORM_KEYS)
    external: set[str] = set()  # **External instances**: filled by _read_instances
    if shorthand:
        instances, decls = {DEFAULT_INSTANCE}, _read_shorthand(doc, report)
    else:
        instances, decls = _read_extended(doc, report, external)
    dags, edges, declared = _resolve(decls, instances, shorthand, report)
    routes = () if shorthand else read_routes(doc, instances, report.add)  # semantics `asset-routes`
    # Semantics `lineage-mapping`; after _resolve, because an entry is judged against the DAGs it maps.
    lineage = () if shorthand else read_lineage(doc, instances, dags, report.add)
    edge_paths = {(edge.source, edge.target): edge.path for edge in edges}
    declared_at = {decl.node: decl.path for decl in reversed(decls) if decl.node is not None}  # the first one wins
    check_external(frozenset(external), dags, declared_at, edge_paths, doc, report.add)  # **External instances**
    check_scheduled(dags, declared_at, report.add)  # **Scheduled dependents**
    if report.problems:
        return None
    return Graph(
        dags=dags,
        instances=frozenset(instances),
        asset_routes=routes,
        lineage_jobs=lineage,
        source=source,
        declared=frozenset(declared),
        edge_paths=edge_paths,
        external_instances=frozenset(external),
    )


# ---- reading the two forms -------------------------------------------------------------------------------------


def _read_shorthand(doc: Mapping[str, Any], report: Report) -> list[Decl]:
    decls = []
    for key, value in doc.items():
        path: JsonPath = (key,)
        split = _split_ref(key, path, report, shorthand=True)
        refs = _read_refs(value, path, report, SHORTHAND)
        node = NodeId(DEFAULT_INSTANCE, split[1]) if split else None
        decls.append(Decl(node, path, upstreams=refs))
    return decls


def _read_extended(doc: Mapping[str, Any], report: Report, external: set[str]) -> tuple[set[str], list[Decl]]:
    _check_fields(doc, (), TOP_FIELDS, report, fallback='DAGs are declared under "dags" in the extended form')
    _check_version(doc, report)
    instances = _read_instances(doc, report, external)
    if "dags" not in doc:
        report.add((), 'missing "dags"', 'add "dags": {"my_dag": {"upstreams": ["other_dag"]}, ...}')
        return instances, []
    dags = doc["dags"]
    if not isinstance(dags, dict):
        report.add(("dags",), f"expected an object, got {_describe(dags)}", 'write "dags": {"my_dag": {...}, ...}')
        return instances, []
    return instances, [_read_dag(key, body, instances, report) for key, body in dags.items()]


def _check_version(doc: Mapping[str, Any], report: Report) -> None:
    if "version" not in doc:
        report.add(
            (),
            'missing "version"',
            f'add "version": {SPEC_VERSION} (a top level with "dags" or "instances" is the extended form; '
            "a DAG named dags, instances or version can only be declared inside it)",
        )
        return
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        report.add(("version",), f"expected the number {SPEC_VERSION}, got {_describe(version)}", "write it unquoted")
    elif version != SPEC_VERSION:
        report.add(
            ("version",),
            f"unsupported version {version}",
            f'this coordinator reads version {SPEC_VERSION}: write "version": {SPEC_VERSION} or upgrade it',
        )


def _read_instances(doc: Mapping[str, Any], report: Report, external: set[str]) -> set[str]:
    """The declared instance names; those of ``"kind": "external"`` are added to ``external``
    (**External instances**)."""
    names = {DEFAULT_INSTANCE}  # implicitly declared: the shorthand's DAGs and bare undeclared references live there
    if "instances" not in doc:
        return names
    value = doc["instances"]
    if not isinstance(value, dict):
        report.add(
            ("instances",),
            f"expected an object, got {_describe(value)}",
            'write "instances": {"team_a": {"description": "..."}}',
        )
        return names
    for name, body in value.items():
        path: JsonPath = ("instances", name)
        if not NAME_RE.match(name):
            report.add(path, f"invalid instance name {name!r}", NAME_HINT)
            continue
        names.add(name)
        if not isinstance(body, dict):
            report.add(path, f"expected an object, got {_describe(body)}", 'write {} or {"description": "..."}')
            continue
        _check_fields(body, path, INSTANCE_FIELDS, report)
        _read_description(body, path, report)
        if read_kind(body, path, report.add) is InstanceKind.EXTERNAL:
            external.add(name)
    return names


def _read_dag(key: str, body: Any, instances: set[str], report: Report) -> Decl:
    path: JsonPath = ("dags", key)
    if not isinstance(body, dict):
        report.add(
            path,
            f"expected an object, got {_describe(body)}",
            'declare a DAG as {"upstreams": [...]} and a root as {}; the "b": "a" shorthand cannot be mixed in',
        )
        return Decl(None, path)
    _check_fields(body, path, DAG_FIELDS, report)
    node = _declared_node(key, body, path, instances, report)
    groups = RefList()
    upstreams = (
        _read_refs(body["upstreams"], (*path, "upstreams"), report, UPSTREAMS, groups) if "upstreams" in body else ()
    )
    on_failure_of = (
        _read_refs(body["on_failure_of"], (*path, "on_failure_of"), report, ON_FAILURE_OF)
        if "on_failure_of" in body
        else ()
    )
    if "upstreams" in body and "on_failure_of" in body:
        report.add(
            path,
            'both "upstreams" and "on_failure_of"',
            "a failure handler runs when a source fails, never after upstreams succeed; declare a separate DAG "
            "for each role",
        )
    declared = (
        read_declared_partitions(body["partitions"], (*path, "partitions"), report.add)
        if "partitions" in body
        else None
    )
    broken = "partitions" in body and declared is None  # already reported: a period's grid is not judged
    declared = declared or DeclaredPartitions()
    expected = (
        read_expected_by(body["expected_by"], (*path, "expected_by"), report.add) if "expected_by" in body else None
    )
    late = _read_refs(body["on_late_of"], (*path, "on_late_of"), report, ON_LATE_OF) if "on_late_of" in body else ()
    description = _read_description(body, path, report)
    interval = (
        read_data_interval(body["data_interval"], (*path, "data_interval"), declared.grid, report.add)
        if "data_interval" in body and not broken
        else None
    )
    return Decl(
        node, path, upstreams, on_failure_of, description, declared.grid, expected, late, tuple(groups.groups),
        declared.segments, declared.key_format, interval, read_runs(body, path, report.add),
    )  # fmt: skip


def _declared_node(
    key: str, body: Mapping[str, Any], path: JsonPath, instances: set[str], report: Report
) -> NodeId | None:
    """The node a ``dags`` key declares, from a qualified key or the ``instance`` field (default: ``default``)."""
    split = _split_ref(key, path, report, shorthand=False)
    field_instance = None
    if "instance" in body:
        field_instance = body["instance"]
        if not isinstance(field_instance, str):
            shown = _describe(field_instance)
            report.add((*path, "instance"), f"expected an instance name, got {shown}", 'write "instance": "team_a"')
            return None
        if not NAME_RE.match(field_instance):
            report.add((*path, "instance"), f"invalid instance name {field_instance!r}", NAME_HINT)
            return None
    if split is None:
        return None
    key_instance, dag_id = split
    if key_instance and field_instance and key_instance != field_instance:
        report.add(
            (*path, "instance"),
            f"instance {field_instance!r} contradicts the key's instance {key_instance!r}",
            f'remove "instance" or write the key as "{field_instance}/{dag_id}"',
        )
    instance = key_instance or field_instance or DEFAULT_INSTANCE
    if instance not in instances:
        where = path if key_instance else (*path, "instance")
        report.add(where, f"undeclared instance {instance!r}", _instance_hint(instance, instances))
    return NodeId(instance, dag_id)


def _read_refs(
    value: Any, path: JsonPath, report: Report, spec: RefField, groups: RefList | None = None
) -> tuple[Ref, ...]:
    """A single reference or a non-empty list of them (a single string is accepted, like the shorthand); in the
    extended form a reference may also be an edge object (**Grids and offsets**) and, where ``groups`` collects
    them (``upstreams``), a condition group (**Condition groups**)."""
    single = isinstance(value, str) or (isinstance(value, dict) and spec is not SHORTHAND)
    value = [value] if single else value
    if not isinstance(value, list):
        report.add(path, f"expected a dag id or a list of them, got {_describe(value)}", spec.example)
        return ()
    if not value:
        report.add(path, f"empty {spec.name} list", spec.empty_hint)
        return ()
    found = RefList()
    for index, item in enumerate(value):
        _read_ref(item, path if single else (*path, index), report, spec, found, groups, None)
    return tuple(found.refs)


def _read_ref(
    item: Any,
    where: JsonPath,
    report: Report,
    spec: RefField,
    found: RefList,
    groups: RefList | None,
    group: int | None,
) -> None:
    """One entry of a reference list into ``found``: a reference, an edge object or (``groups`` given) a group."""
    if isinstance(item, str):
        found.refs.append(Ref(item, where, group=group))
    elif is_group(item) and spec is not SHORTHAND:
        if groups is None:
            report.add(where, f"a condition group in {spec.name}", "groups are for upstreams; list the DAGs here")
            return
        written = read_group(item, where, report.add)
        if written is None:
            return
        if written.rule is not None:  # any / at_least: its members (edges only) belong to a new group
            group = len(groups.groups)
            groups.groups.append(written)
        for member, at in written.members:  # an all group is flattened (**Condition groups**)
            _read_ref(member, at, report, spec, found, groups, group)
    elif isinstance(item, dict) and spec is not SHORTHAND:
        edge = read_edge(item, where, report.add)
        count = read_count(item, where, report.add)
        if edge is not None and (count is not None or not any(key in item for key in COUNT_FIELDS)):
            if count is not None and (spec is not UPSTREAMS or group is not None):
                what = "a condition group member" if group is not None else f"an edge of {spec.name}"
                report.add(where, f"a partition count on {what}", "count the partitions of an upstream edge only")
                return
            found.refs.append(Ref(edge.ref, (*where, "dag"), edge.offset, edge, group, count))
    else:
        report.add(where, f"expected a dag id, got {_describe(item)}", 'quote it: "01_pipeline"')


def _read_description(body: Mapping[str, Any], path: JsonPath, report: Report) -> str | None:
    description = body.get("description")
    if description is None or isinstance(description, str):
        return description
    report.add((*path, "description"), f"expected a string, got {_describe(description)}", "quote the text")
    return None


def _check_fields(
    body: Mapping[str, Any], path: JsonPath, allowed: Sequence[str], report: Report, fallback: str = ""
) -> None:
    """Report every key not in ``allowed``: connection data with where it belongs, typos with a suggestion."""
    for key in body:
        if key in allowed:
            continue
        lowered = key.lower()
        if lowered in CONNECTION_FIELDS or any(word in lowered for word in SECRET_WORDS):
            report.add((*path, key), f"connection setting {key!r} does not belong here", CONNECTION_HINT)
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else (fallback or "remove it")
        report.add((*path, key), f"unknown field {key!r}", f"{hint} (allowed: {', '.join(allowed)})")


def _split_ref(text: str, path: JsonPath, report: Report, *, shorthand: bool) -> tuple[str | None, str] | None:
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


def _instance_hint(name: str, instances: Iterable[str]) -> str:
    declared = sorted(instances)
    close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
    prefix = f"did you mean {close[0]!r}? Otherwise " if close else ""
    return f'{prefix}declare it under "instances" (declared: {", ".join(declared)})'


# ---- resolving references and checking the graph ----------------------------------------------------------------


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
        split = _split_ref(ref.text, ref.path, self.report, shorthand=self.shorthand)
        if split is None:
            return None
        instance, dag_id = split
        if instance is not None:
            node = NodeId(instance, dag_id)
            # A declared node in an undeclared instance was already reported at its declaration.
            if node not in self.declared and instance not in self.instances:
                hint = _instance_hint(instance, self.instances)
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


def _resolve(
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
    """The DAG's ``any``/``at_least`` groups over its accepted members (**Condition groups**)."""
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
    out: dict[NodeId, list[Edge]] = {node: [] for node in sorted(nodes)}
    for edge in sorted(edges, key=lambda e: (e.source, e.target)):
        out[edge.source].append(edge)
    for cycle in shortest_cycles(out):
        report.add(cycle[-1].path, f"cycle {cycle_text(cycle)}", CYCLE_HINT)
