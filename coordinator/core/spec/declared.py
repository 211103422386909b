"""What the ``dependencies.json`` loader reads a file into before it resolves references: one DAG as written
(:class:`Decl`), its references (:class:`Ref`, each list field's wording in :class:`RefField`), the lists a field is
read into (:class:`RefList`) and the report every check adds its problems to (:class:`Report`).

Values only: the reading is :mod:`coordinator.core.spec.loader`'s, the resolving and the checks across DAGs are
:mod:`coordinator.core.spec.resolve`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.core.data_interval import IntervalKind
from coordinator.core.grid import EdgeMap, Grid
from coordinator.core.model import NodeId
from coordinator.core.partition_count import PartitionCount
from coordinator.core.segments import Segments
from coordinator.core.spec.conditions import WrittenGroup
from coordinator.core.spec.deadline import ExpectedBy
from coordinator.core.spec.grid import WrittenEdge
from coordinator.core.spec.source import JsonPath, Problem


@dataclass(frozen=True, slots=True)
class RefField:
    """How one list-of-references field explains its mistakes."""

    name: str
    empty_hint: str
    example: str


SHORTHAND = RefField(
    "upstream",
    "list at least one upstream; a DAG without upstreams is a root and needs no entry",
    'write "b": "a" or "b": ["a", "c"]; fields such as "upstreams" need the extended form ("version": 1, "dags")',
)
UPSTREAMS = RefField(
    "upstreams",
    'list at least one upstream, or remove "upstreams" to declare a root',
    'write "upstreams": "a" or "upstreams": ["a", "team_b/c"]',
)
ON_LATE_OF = RefField(
    "on_late_of",
    'list at least one DAG whose deadline state runs this one, or remove "on_late_of"',
    'write "on_late_of": "a" or "on_late_of": ["a", "team_b/c"]',
)
ON_FAILURE_OF = RefField(
    "on_failure_of",
    'list at least one DAG whose failure runs this one, or remove "on_failure_of"',
    'write "on_failure_of": "a" or "on_failure_of": ["a", "team_b/c"]',
)


@dataclass(frozen=True, slots=True)
class Ref:
    text: str
    path: JsonPath
    #: None when the reference did not write one (a string, or an object without "offset").
    offset: int | None = None
    #: The edge object's fields; None for a plain string reference.
    edge: WrittenEdge | None = None
    #: The index of its condition group in the DAG's ``groups`` (``loader``'s **Condition groups**); None: required.
    group: int | None = None
    #: How many of its mapped partitions satisfy it (``resolve``'s **Segments and counts**); None: all.
    count: PartitionCount | None = None

    @property
    def mapping(self) -> EdgeMap:
        edge = self.edge
        if edge is None:
            return EdgeMap()
        return EdgeMap(edge.offset or 0, edge.shift, edge.member, edge.segments)

    @property
    def task(self) -> str | None:
        return self.edge.task if self.edge is not None else None

    @property
    def extended(self) -> bool:
        return (self.edge is not None and self.edge.extended) or self.count is not None

    def field_path(self, name: str) -> JsonPath:
        """The JSON path of one field of this edge object (``path`` is its ``dag`` value)."""
        return (*self.path[:-1], name)


@dataclass(slots=True)
class Decl:
    """One DAG as written, before references are resolved. ``node`` is None when its key was invalid."""

    node: NodeId | None
    path: JsonPath
    upstreams: tuple[Ref, ...] = ()
    on_failure_of: tuple[Ref, ...] = ()
    description: str | None = None
    grid: Grid | None = None
    expected_by: ExpectedBy | None = None
    on_late_of: tuple[Ref, ...] = ()
    #: Each ``any``/``at_least`` group as written, indexed by :attr:`Ref.group`.
    groups: tuple[WrittenGroup, ...] = ()
    segments: Segments | None = None
    key_format: str | None = None
    #: ``data_interval`` as written (semantics `triggered-data-interval`); None: not written.
    data_interval: IntervalKind | None = None
    #: ``"runs": "scheduled"`` (:mod:`coordinator.core.spec.scheduled`).
    scheduled: bool = False


@dataclass(frozen=True, slots=True)
class RefList:
    """Where the loader's ``_read_refs`` collects references and, for ``upstreams``, condition groups."""

    refs: list[Ref] = field(default_factory=list)
    groups: list[WrittenGroup] = field(default_factory=list)


class Report:
    """Collects problems; checks append and carry on so that one run reports everything."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: JsonPath, what: str, hint: str) -> None:
        self.problems.append(Problem(path, what, hint))
