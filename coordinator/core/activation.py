"""The graph activation (``{prefix}/config/graph``, docs/keys.md): which graph the leading watcher adopted, and
since which revision each DAG's current definition applies (semantics `run-confirms-intent`, `first-adoption`).

Rules:
- **Pure**: :func:`adopt` takes the graph's shapes and digest, the activation in force and the revision, and returns the
  activation to write (None when nothing changed); :func:`dump_activation` is its stored form.
- **Unchanged shapes keep their dates.** A DAG whose shape is unchanged keeps its ``since`` and ``history_from``: a
  restart or an unrelated edit never re-dates it. Fields that are not part of the shape (the deadline fields) are
  rewritten at every adoption.
- **Compressed only when large.** The value is the activation's JSON, or, when that JSON is more than
  :data:`PLAIN_MAX_BYTES`, the same JSON gzip-compressed (:func:`dump_activation`): etcd refuses a request over its
  ``--max-request-bytes`` (1.5 MiB by default), and the JSON takes about 170 bytes a DAG, so an estate of about 9,000
  DAGs and more could not be adopted at all. Compressed, about ten times as many fit. A graph that fits as JSON writes
  the value it always wrote; every reader takes either (:func:`load_activation`).
- **Enough to rebuild the graph.** What a reader without ``dependencies.json`` needs to rebuild the graph in force is
  recorded beside each shape (edges, grid, offsets, extended edges, deadline fields, condition groups), each only when
  present, so a graph without them writes the value it always wrote. Readers ignore unknown fields, and a value
  written before a field existed parses with it None.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from coordinator.core.conditions import GroupSpec
from coordinator.core.deadline.rules import RuleItem
from coordinator.core.graph import DagSpec, upstream_tasks
from coordinator.core.grid import DEFAULT_TIMEZONE, Grid
from coordinator.core.model import NodeId


class NodeActivation(BaseModel):
    """Since which revision a DAG's current set of sources is in effect, and which history it also processes.

    ``history_from`` is set only by the FIRST adoption of a graph under a prefix (semantics `first-adoption`): successes
    at or before ``since`` still count for partitions at or after it ("" = every partition), because before the first
    adoption there was no coordinator to process them. None (every later change, and every value written before
    this field existed) keeps the activation rule: history only through ``coordinator backfill``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    shape: str
    since: int
    history_from: str | None = None
    #: The sources ``shape`` fingerprints (qualified ids), recorded so ``coordinator diff`` can name the edges of the
    #: graph in force. None in values written before they were recorded: then only the shape is known.
    upstreams: tuple[str, ...] | None = None
    on_failure_of: tuple[str, ...] | None = None
    #: The partition grid (``cron`` or ``cron timezone``; None: no grid) and the non-zero edge offsets, recorded with
    #: the edges (meaningful when ``upstreams`` is not None).
    grid: str | None = None
    offsets: dict[str, int] | None = None
    #: The DAG's extended edges (``EdgeSpec.shape_item``: shift, member, task, condition, gates), recorded only for a
    #: DAG that has them, so readers without the file (the page in Airflow's api-server) decide on exactly the graph
    #: in force. None: none, or a value written before they were recorded.
    edges: tuple[tuple[Any, ...], ...] | None = None
    #: The DAG's ``expected_by`` (``ExpectedBy.item``) and ``on_late_of`` (``DagSpec.deadline_item``), recorded only
    #: for a DAG that has either; not part of the shape, so rewritten at every adoption without re-dating the DAG.
    deadline: tuple[RuleItem | None, tuple[str, ...]] | None = None
    #: The DAG's condition groups (``GroupSpec.item``: rule, need, members, and cutoff, min, late when it has one),
    #: recorded only for a DAG that has them; part of the shape, so a changed group re-dates the DAG like any edge.
    #: None: none, or a value written before they were recorded.
    groups: tuple[tuple[Any, ...], ...] | None = None
    #: The DAG's declared segments (``Segments.item``) and Airflow ``key_format`` (semantics `segment-partitions`),
    #: recorded only for a DAG that declares them; part of the shape.
    segments: tuple[Any, ...] | None = None
    key_format: str | None = None
    #: ``"scheduled"`` for a DAG that keeps its own timetable (``DagSpec.scheduled``, semantics `scheduled-permit`),
    #: recorded only for such a DAG; part of the shape. None: triggered.
    runs: str | None = None
    #: The DAG's declared ``data_interval`` (semantics `triggered-data-interval`), recorded only for a DAG that
    #: declares it; not part of the shape, so rewritten at every adoption without re-dating the DAG (like
    #: ``deadline``). None: not declared (the default applies), or a value written before it was recorded.
    data_interval: str | None = None

    def grid_spec(self) -> Grid | None:
        """The recorded grid as a :class:`Grid` (None: no grid)."""
        if self.grid is None:
            return None
        fields = self.grid.split()  # "cron" (5 fields) or "cron timezone" (Grid.__str__)
        return Grid(" ".join(fields[:5]), fields[5] if len(fields) > 5 else DEFAULT_TIMEZONE)

    def group_specs(self) -> tuple[GroupSpec, ...]:
        """The recorded groups (() when none); a time-of-day cutoff reads the recorded grid. ValueError for a
        damaged record."""
        if not self.groups:
            return ()
        return tuple(GroupSpec.from_item(item, self.grid_spec()) for item in self.groups)

    def covers_history(self, partition: str) -> bool:
        """Whether successes older than ``since`` count for ``partition`` (canonical partitions sort by time)."""
        return self.history_from is not None and partition >= self.history_from


class Activation(BaseModel):
    """Value of ``{prefix}/config/graph``: the adopted graph and, per DAG, when its sources last changed.

    Successes at or before ``since`` predate the DAG's current definition and never trigger it by themselves
    (no surprise storm of history after a graph change); ``coordinator backfill`` processes them on request.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    digest: str
    nodes: dict[str, NodeActivation]
    adopted_by: str = ""
    #: ``instance/dag_id`` -> the tasks the graph names as task-level upstreams (``Graph.upstream_tasks``): the Airflow
    #: plugin records the states of exactly these. Absent (in values written before task-level edges) means none.
    upstream_tasks: dict[str, tuple[str, ...]] = {}


def adopt(
    graph_shapes: Mapping[NodeId, str],
    digest: str,
    current: Activation | None,
    revision: int,
    by: str = "",
    *,
    history_from: str | None = None,
    sources: Mapping[NodeId, DagSpec] | None = None,
) -> Activation | None:
    """The activation to write when ``graph`` is loaded at ``revision``, or None when nothing changed.

    A DAG keeps its entry (``since`` and ``history_from``) while its sources are unchanged, so a restart or an
    unrelated edit never re-dates it (downtime recovery still applies to it); a new DAG or one whose sources changed
    starts at ``revision`` with no history. ``history_from`` applies only to a first adoption (``current`` None):
    see ``coordinator.core.adoption``. ``sources`` (the graph's DAGs) records each DAG's edges beside its shape.
    """
    if current is not None and current.digest == digest:
        return None
    old = current.nodes if current is not None else {}
    first_history = history_from if current is None else None
    nodes: dict[str, NodeActivation] = {}
    for node, shape in graph_shapes.items():
        prev = old.get(node.qualified)
        spec = sources.get(node) if sources is not None else None
        edges = _recorded_edges(spec) if spec is not None else {}
        if prev is not None and prev.shape == shape:
            # Same sources: keep the dates; an entry written before edges were recorded gains them.
            gained = (prev.edges is None and "edges" in edges) or (prev.groups is None and "groups" in edges)
            if edges and (prev.upstreams is None or gained):
                prev = prev.model_copy(update=edges)
            if spec is not None and prev.deadline != spec.deadline_item():
                prev = prev.model_copy(update={"deadline": spec.deadline_item()})  # not in the shape: no re-dating
            if spec is not None and prev.data_interval != spec.data_interval:
                prev = prev.model_copy(update={"data_interval": spec.data_interval})  # likewise
            nodes[node.qualified] = prev
        else:
            nodes[node.qualified] = NodeActivation(shape=shape, since=revision, history_from=first_history, **edges)
    tasks = upstream_tasks(sources.values()) if sources is not None else {}
    return Activation(digest=digest, nodes=nodes, adopted_by=by, upstream_tasks=tasks)


def _recorded_edges(spec: DagSpec) -> dict[str, Any]:
    """What an activation entry records of a DAG's definition for ``coordinator diff``: edges, grid, offsets."""
    recorded: dict[str, Any] = {
        "upstreams": tuple(n.qualified for n in spec.upstreams),
        "on_failure_of": tuple(n.qualified for n in spec.on_failure_of),
        "grid": str(spec.grid) if spec.grid is not None else None,
        "offsets": {n.qualified: k for n, k in spec.offsets},
    }
    if spec.edges:
        recorded["edges"] = tuple(tuple(edge.shape_item()) for edge in spec.edges)
    if spec.deadline_item() is not None:
        recorded["deadline"] = spec.deadline_item()
    if spec.groups:
        recorded["groups"] = tuple(tuple(group.item()) for group in spec.groups)
    if spec.segments is not None:
        recorded["segments"] = tuple(spec.segments.item())
    if spec.key_format is not None:
        recorded["key_format"] = spec.key_format
    if spec.scheduled:
        recorded["runs"] = "scheduled"
    if spec.data_interval is not None:
        recorded["data_interval"] = spec.data_interval
    return recorded


#: **Compressed only when large**: the largest value written as plain JSON. Under etcd's default request limit (1.5
#: MiB) with room for the rest of the write's request.
PLAIN_MAX_BYTES = 1024 * 1024
#: The largest JSON a compressed value may hold when read: a bound on what a damaged or hostile value costs a reader
#: (about 1.5 million DAGs).
INFLATED_MAX_BYTES = 256 * 1024 * 1024
#: gzip's magic number: no JSON value starts with it.
GZIP_MAGIC = b"\x1f\x8b"


def load_activation(value: bytes) -> Activation:
    """The activation stored as ``value``, JSON or gzip-compressed JSON (**Compressed only when large**); ValueError
    (pydantic's ``ValidationError`` among them) for a value that is neither."""
    if value.startswith(GZIP_MAGIC):
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # 16 +: the gzip container
        try:
            value = inflate.decompress(value, INFLATED_MAX_BYTES)
        except zlib.error as exc:
            raise ValueError(f"compressed graph activation does not inflate: {exc}") from exc
        if inflate.unconsumed_tail:
            raise ValueError(f"compressed graph activation inflates to more than {INFLATED_MAX_BYTES} bytes")
        if not inflate.eof:
            raise ValueError("compressed graph activation is cut short")
    return Activation.model_validate_json(value)


def dump_activation(activation: Activation) -> bytes:
    """The value of ``{prefix}/config/graph`` for ``activation``: its JSON, compressed when large (**Compressed only
    when large**)."""
    data = activation.model_dump(mode="json")
    if not data["upstream_tasks"]:  # a graph without task-level edges writes the value it always wrote
        del data["upstream_tasks"]
    for entry in data["nodes"].values():
        for extra in ("edges", "deadline", "groups", "segments", "key_format", "runs", "data_interval"):
            if entry[extra] is None:  # so does a DAG without extended edges, deadlines or groups
                del entry[extra]
    plain = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    if len(plain) <= PLAIN_MAX_BYTES:
        return plain
    return gzip.compress(plain, mtime=0)  # mtime 0: the same activation is the same bytes
