"""The ``"openlineage"`` section of ``dependencies.json``: which OpenLineage jobs are nodes of the graph (semantics
semantics `lineage-mapping`). What each field means is :mod:`coordinator.core.lineage.mapping`'s docstring; this module
reads the section and refuses what could never work, like :mod:`coordinator.core.spec.routes` does for ``"assets"``.

```json
"openlineage": [{"namespace": "dbt_prod", "job": "jaffle.main.jaffle.orders.build.run", "instance": "analytics",
                 "dag": "orders", "partitions": {"cron": "0 0 * * *"}}]
```

Rules:
- **Pure and exhaustive**, like the loader: every problem goes to ``report(path, what, hint)`` with its JSON path (the
  loader adds the line), and the file does not load. Read after the DAGs are resolved: an entry is judged against the
  nodes it maps.
- **Patterns.** ``namespace`` and ``job`` are ``fnmatch`` patterns: non-empty, at most :data:`MAX_PATTERN_LEN`
  characters, no control characters. ``instance`` must be declared; ``dag`` is a dag id (the instance is its own field).
- **Fixed nodes.** The node an entry maps is FIXED when it has ``dag``, or a ``job`` without wildcards, which must then
  be a dag id itself (``lineage.mapping``'s **The node**). A wildcard ``job`` without ``dag`` maps the instance's DAGs
  whose id it matches; the DAGs of this file are the ones it can check.
- **The grid**: a fixed node's own ``partitions`` win, and the entry's may only repeat them (one node placed on one grid
  and waited for on another would never line up). A DAG matched by a wildcard that declares a grid must declare the
  entry's. ``"partition": "auto"`` without a grid is refused: an event without ``nominalTime`` (dbt-ol sends none) could
  not be placed.
- **Producers run mapped nodes.** A mapped node runs when its producer runs it, never because the coordinator triggers
  it: it may have no upstreams (a self-dependency included), no ``on_failure_of``, no ``on_late_of``, and no deadline
  level may name it as a handler.
- **Duplicate patterns.** Two entries with the same ``namespace`` and ``job`` patterns: the second never matches
  (``lineage.mapping``'s **First match**).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from coordinator.core.graph import DagSpec
from coordinator.core.grid import Grid
from coordinator.core.lineage.mapping import LineageJob, PartitionSource, Slot
from coordinator.core.model import NAME_RE, NodeId
from coordinator.core.partition import segment_problem
from coordinator.core.spec.grid import check_fields, describe, read_partitions
from coordinator.core.spec.resolve import MAX_DAG_ID_LEN, NAME_HINT
from coordinator.core.spec.routes import Report
from coordinator.core.spec.source import JsonPath, format_path
from coordinator.core.spec.triggered import level_handlers, trigger_reasons

LINEAGE_FIELDS = ("namespace", "job", "instance", "dag", "partition", "slot", "partitions", "segment", "description")
LINEAGE_HINT = '"openlineage": [{"namespace": "dbt_prod", "job": "jaffle.main.*", "instance": "analytics"}]'
#: Real names are short (``jaffle.main.jaffle.orders.build.run``, a dbt model's, has 35 characters); the bound keeps a
#: pasted blob out of messages and out of the receiver's per-event matching.
MAX_PATTERN_LEN = 1000
#: What makes a pattern match more than one name (``fnmatch``).
WILDCARDS = frozenset("*?[")
PARTITION_HINT = 'write "auto" (nominalTime, else the run\'s time on the grid) or "nominal" (nominalTime only)'
SLOT_HINT = 'write "previous" (the interval that ended, Airflow\'s logical date) or "current" (the latest grid point)'
_Choice = TypeVar("_Choice", PartitionSource, Slot)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One entry as written, its fields valid one by one; **Fixed nodes**, **The grid** and
    **Producers run mapped nodes** are judged against the graph afterwards."""

    path: JsonPath
    namespace: str
    job: str
    instance: str
    dag: str | None
    partition: PartitionSource
    slot: Slot
    #: The entry's own ``partitions``; None when absent.
    grid: Grid | None
    #: The segment its runs are recorded in (semantics `segment-partitions`); None: none.
    segment: str | None = None

    @property
    def wildcard(self) -> bool:
        return not WILDCARDS.isdisjoint(self.job)

    @property
    def fixed(self) -> NodeId | None:
        """The one node the entry maps (**Fixed nodes**), or None for a wildcard job without ``dag``."""
        if self.dag is not None:
            return NodeId(self.instance, self.dag)
        return None if self.wildcard else NodeId(self.instance, self.job)

    @property
    def node_path(self) -> JsonPath:
        """Where the entry names its node: ``dag``, else ``job``."""
        return (*self.path, "dag" if self.dag is not None else "job")


def read_lineage(
    doc: Mapping[str, Any], instances: set[str], dags: Mapping[NodeId, DagSpec], report: Report
) -> tuple[LineageJob, ...]:
    """The entries of ``doc["openlineage"]`` (none when absent), in file order; each problem goes to ``report``."""
    if "openlineage" not in doc:
        return ()
    value = doc["openlineage"]
    if not isinstance(value, list):
        report(("openlineage",), f"expected a list, got {describe(value)}", LINEAGE_HINT)
        return ()
    handlers = level_handlers(dags.values())
    seen: dict[tuple[str, str], JsonPath] = {}
    jobs: list[LineageJob] = []
    for index, body in enumerate(value):
        entry = _read_entry(body, ("openlineage", index), instances, report)
        if entry is None:
            continue
        first = seen.setdefault((entry.namespace, entry.job), entry.path)
        if first != entry.path:  # **Duplicate patterns**
            report(
                entry.path,
                f"the same namespace and job patterns as {format_path(first)}: this entry never matches",
                "the first matching entry names the node; remove one of them or merge them",
            )
            continue
        job = _judge(entry, index, dags, handlers, report)
        if job is not None:
            jobs.append(job)
    return tuple(jobs)


def _read_entry(body: Any, path: JsonPath, instances: set[str], report: Report) -> _Entry | None:
    """The entry's fields (**Patterns**); None after reporting what is wrong."""
    if not isinstance(body, dict):
        report(path, f"expected an object, got {describe(body)}", LINEAGE_HINT)
        return None
    problems: list[JsonPath] = []

    def note(where: JsonPath, what: str, hint: str) -> None:
        problems.append(where)
        report(where, what, hint)

    check_fields(body, path, LINEAGE_FIELDS, note)
    namespace = _read_pattern(body, path, "namespace", note)
    job = _read_pattern(body, path, "job", note)
    instance = body.get("instance")
    if instance is None:
        note(path, 'missing "instance"', f"name the Airflow instance the node belongs to; {_declare_hint(instances)}")
    elif not isinstance(instance, str) or instance not in instances:
        note((*path, "instance"), f"undeclared instance {describe(instance)}", _declare_hint(instances))
    dag = body.get("dag")
    if dag is not None and not (isinstance(dag, str) and _is_dag_id(dag)):
        hint = f"{NAME_HINT}, at most {MAX_DAG_ID_LEN}; the instance is its own field"
        note((*path, "dag"), f"invalid dag id {describe(dag)}", hint)
    partition = _read_choice(body, path, "partition", PartitionSource.AUTO, PARTITION_HINT, note)
    slot = _read_choice(body, path, "slot", Slot.PREVIOUS, SLOT_HINT, note)
    grid = read_partitions(body["partitions"], (*path, "partitions"), note) if "partitions" in body else None
    raw_segment = body.get("segment")
    segment = raw_segment if isinstance(raw_segment, str) else None
    problem = (
        segment_problem(segment) if segment is not None else f"expected a segment name, got {describe(raw_segment)}"
    )
    if "segment" in body and problem is not None:
        note((*path, "segment"), problem, 'write the segment its runs stand for, e.g. "segment": "eu"')
    if "description" in body and not isinstance(body["description"], str):
        note((*path, "description"), f"expected a string, got {describe(body['description'])}", "quote the text")
    if namespace is None or job is None or problems:
        return None
    assert isinstance(instance, str) and partition is not None and slot is not None
    return _Entry(
        path, namespace, job, instance, dag, partition, slot, grid, segment if isinstance(segment, str) else None
    )


def _read_pattern(body: Mapping[str, Any], path: JsonPath, name: str, report: Report) -> str | None:
    value = body.get(name)
    hint = f"write the OpenLineage {name} or a pattern (* ? [...]), e.g. {LINEAGE_HINT}"
    if value is None:
        report(path, f'missing "{name}"', hint)
    elif not isinstance(value, str) or not value.strip():
        report((*path, name), f"expected a non-empty {name} pattern, got {describe(value)}", hint)
    elif len(value) > MAX_PATTERN_LEN:
        report((*path, name), f"the {name} pattern is {len(value)} characters long", f"use at most {MAX_PATTERN_LEN}")
    elif any(unicodedata.category(c) == "Cc" for c in value):
        # A newline or tab never appears in a producer's name: the pattern could only silently match nothing.
        report((*path, name), f"control character in the {name} pattern {describe(value)}", "remove it")
    else:
        return value
    return None


def _read_choice(
    body: Mapping[str, Any], path: JsonPath, name: str, default: _Choice, hint: str, report: Report
) -> _Choice | None:
    """The value of ``body[name]`` (``default`` when absent); None after reporting."""
    kind = type(default)
    value = body.get(name, default)
    if isinstance(value, str) and value in tuple(kind):
        return kind(value)
    report((*path, name), f"expected {' or '.join(json.dumps(str(k)) for k in kind)}, got {describe(value)}", hint)
    return None


def _judge(
    entry: _Entry, index: int, dags: Mapping[NodeId, DagSpec], handlers: frozenset[str], report: Report
) -> LineageJob | None:
    """**Fixed nodes**, **The grid** and **Producers run mapped nodes** for one entry: its nodes, its grid; None after
    reporting."""
    ok = True
    fixed = entry.fixed
    if entry.dag is None and not entry.wildcard and not _is_dag_id(entry.job):
        report(
            (*entry.path, "job"),
            f'job {describe(entry.job)} is not a dag id, and without "dag" it names the node',
            f'add "dag": "<dag id>" to name the node ({NAME_HINT}, at most {MAX_DAG_ID_LEN})',
        )
        return None
    if fixed is not None:
        mapped = [dags[fixed]] if fixed in dags else []
    else:
        mapped = [dags[n] for n in sorted(dags) if n.instance == entry.instance and fnmatchcase(n.dag_id, entry.job)]
    grid = entry.grid
    for spec in mapped:
        ok = _check_untriggered(entry, index, spec, handlers, report) and ok
        if spec.grid is None:
            continue
        if entry.grid is not None and entry.grid != spec.grid:
            how = 'remove "partitions" here (the node\'s are used)' if fixed is not None else "make them equal"
            report(
                (*entry.path, "partitions"),
                f"these partitions ({entry.grid}) differ from those of {spec.node} ({spec.grid})",
                f"a node has one grid: {how}",
            )
            ok = False
        if fixed is not None:
            grid = spec.grid  # **The grid**: the node's own grid wins
    if grid is None and entry.partition is PartitionSource.AUTO:
        where = f"on {fixed} or on this entry" if fixed is not None else "on this entry"
        report(
            entry.path,
            '"partition": "auto" without a grid: a run event without a nominalTime facet (dbt-ol sends none) '
            "could not be placed on a partition",
            f'declare "partitions": {{"cron": ...}} {where}, or write "partition": "nominal" to refuse such events',
        )
        ok = False
    if not ok:
        return None
    return LineageJob(
        entry.namespace, entry.job, entry.instance, entry.dag, entry.partition, entry.slot, grid, index, entry.segment
    )


def _check_untriggered(entry: _Entry, index: int, spec: DagSpec, handlers: frozenset[str], report: Report) -> bool:
    """**Producers run mapped nodes** for one mapped node; False after reporting."""
    why = trigger_reasons(spec, handlers)
    if not why:
        return True
    report(
        entry.node_path,
        f"{spec.node} is mapped by openlineage[{index}] but the coordinator would trigger it ({', '.join(why)})",
        "an OpenLineage job runs when its producer runs it, never when the coordinator says so: remove them (a DAG "
        "that waits for it lists it in its own upstreams), or map another node",
    )
    return False


def _is_dag_id(text: str) -> bool:
    return NAME_RE.match(text) is not None and len(text) <= MAX_DAG_ID_LEN


def _declare_hint(instances: set[str]) -> str:
    # The words of routes' hint: one file, one way of saying it.
    return f'declare it under "instances" (declared: {", ".join(sorted(instances))})'
