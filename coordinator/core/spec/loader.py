"""``dependencies.json`` -> a validated :class:`Graph`. The format is documented in ``docs/dependencies.md``.

The loader reads the file into declarations (:mod:`coordinator.core.spec.declared`: each DAG as written, checked on
its own) and hands them to :mod:`coordinator.core.spec.resolve`, which resolves references and makes the checks that
need every declaration at once (``resolve``'s **References**, **Acyclic**, **Extended edges**, **Segments and
counts**); the checks that need the resolved DAGs (external instances, assets, OpenLineage jobs, scheduled
dependents) are made here after that.

Rules:
- **Pure**: :func:`parse_spec` takes text and a source name (for messages) and does no I/O; reading the file is the
  shell's job (``coordinator.runtime.spec_file.load_spec``).
- **Every problem at once.** Never stop at the first problem: every problem is collected and raised together in one
  :class:`SpecError`, each formatted ``<file>[:line]: <JSON path>: <what is wrong> — <how to fix it>``. Only a JSON
  syntax error stops early (there is no document to check yet); it carries ``line:col`` instead of a path.
- **Two forms**. The proof of concept's shorthand ``{"b": "a", "c": ["a", "b"]}`` keeps loading unchanged (every DAG in
  the ``default`` instance). Any of the top-level keys ``version``, ``instances``, ``dags`` selects the extended form,
  so a DAG with one of those names can only be declared in the extended form.
- **Dependent or handler.** A DAG is either a success dependent (``upstreams``) or a failure handler
  (``on_failure_of``), never both: the two trigger on different events for the same partition, and one Airflow run per
  partition cannot serve both.
- **No URLs or credentials.** URLs and credentials are refused here: this file is shared and committed; connection
  settings live in the instances settings file and the environment (see ``coordinator/runtime/settings.py``).
- **Grids and offsets.** A DAG may declare a partition grid (``partitions``) and an edge may be ``{"dag": REF, "offset":
  k}`` (``coordinator.core.spec.grid``). An offset needs grids on both sides of its edge: without them the edge keeps
  the exact-date join, where an offset has no meaning. A file without grids yields exactly today's graph.
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
from collections.abc import Mapping, Sequence
from typing import Any

from coordinator.core.graph import Graph
from coordinator.core.model import DEFAULT_INSTANCE, NAME_RE, NodeId
from coordinator.core.spec.conditions import is_group, read_count, read_group
from coordinator.core.spec.deadline import read_expected_by
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
    read_data_interval,
    read_declared_partitions,
    read_edge,
)
from coordinator.core.spec.grid import describe as _describe
from coordinator.core.spec.instances import InstanceKind, check_external, read_kind
from coordinator.core.spec.lineage import read_lineage
from coordinator.core.spec.resolve import NAME_HINT, instance_hint, resolve, split_ref
from coordinator.core.spec.routes import read_routes
from coordinator.core.spec.scheduled import check_scheduled, read_runs
from coordinator.core.spec.source import (
    JsonPath,
    JsonSyntaxError,
    Problem,
    decode,
    duplicate_keys,
    value_lines,
)
from coordinator.errors import SpecError

SPEC_VERSION = 1
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
CONNECTION_HINT = (
    "this file is shared and committed: put Airflow URLs and credentials in the instances settings file "
    "(COORDINATOR_INSTANCES_FILE) or the environment (COORDINATOR_AIRFLOW_URL, COORDINATOR_AIRFLOW_PASSWORD_FILE)"
)


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
    dags, edges, declared = resolve(decls, instances, shorthand, report)
    routes = () if shorthand else read_routes(doc, instances, report.add)  # semantics `asset-routes`
    # Semantics `lineage-mapping`; after resolve, because an entry is judged against the DAGs it maps.
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
        split = split_ref(key, path, report, shorthand=True)
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
    split = split_ref(key, path, report, shorthand=False)
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
        report.add(where, f"undeclared instance {instance!r}", instance_hint(instance, instances))
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
