"""Fit an edge to a sensor's dates: the edge whose ``required_inputs`` equal what the sensor waits for, on every sample.

Rules (``docs/import-dags.md``, "How dates are matched"):
- **Known by samples.** The sensor is known only by samples: for D's run at P, the upstream dates its own code returned.
  An edge fits when, for every sample, :func:`coordinator.core.inputs.required_inputs` of D at P (through a graph
  holding just D, the upstream and this edge, parsed by the real loader) returns exactly those dates, sorted, canonical
  UTC. Nothing is assumed about what an edge field means: the candidates are judged by the same code the watcher runs.
- **Simplest candidate first.** Candidates, simplest first (the first that fits wins): the plain edge; a constant shift
  (when every sample waits for one date at a constant distance); an offset of a few of D's periods; one member of the
  mapped window (first, last, or an index found on the first sample, from the start and from the end), with offsets -1,
  0, 1.
- **Loader-rejected candidates.** A candidate the loader rejects (an offset without grids, a shift that never lands on
  the upstream's grid) is not a fit. When nothing fits, the caller reports the sensor as inexpressible with a sample
  where the simplest candidate differs.
- **Pure and cached.** Pure and deterministic; parsed candidate graphs are cached by (grids, edge): a folder has few
  distinct pairs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.importer.facts import DateSample
from coordinator.core.inputs import OffGrid, required_inputs
from coordinator.core.model import PARTITION_FORMAT, NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError

OFFSETS = (-1, 1, -2, 2, -3, 3)
MEMBER_OFFSETS = (0, -1, 1)
_DOWN = "d"
_UP = "u"


@dataclass(frozen=True, slots=True)
class Edge:
    """One entry of a DAG's ``upstreams`` (the edge syntax of docs/dependencies.md)."""

    dag: str
    task: str | None = None
    condition: str = "success"
    shift: str | None = None
    offset: int = 0
    member: str | int | None = None
    #: Segment partitions (semantics `segment-partitions`): the edge's rule when it is not the default one, and how
    #: many of the edge's mapped upstream partitions suffice (Airflow's ``MinimumCount``).
    segments: str | None = None
    at_least: int | None = None

    def to_json(self) -> str | dict[str, object]:
        """A plain reference when nothing else is said, else the edge object (fields in a fixed order)."""
        body: dict[str, object] = {"dag": self.dag}
        if self.shift is not None:
            body["shift"] = self.shift
        if self.offset:
            body["offset"] = self.offset
        if self.member is not None:
            body["member"] = self.member
        if self.task is not None:
            body["task"] = self.task
        if self.condition != "success":
            body["condition"] = self.condition
        if self.segments is not None:
            body["segments"] = self.segments
        if self.at_least is not None:
            body["at_least"] = self.at_least
        return self.dag if len(body) == 1 else body

    def describe(self) -> str:
        return json.dumps(self.to_json())


def key(at: datetime) -> str:
    return at.astimezone(UTC).strftime(PARTITION_FORMAT)


def format_shift(delta: timedelta) -> str:
    """A signed duration in the compact form ``-4h``, ``+6d``, ``-5d16h``, ``+30m``."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else "+"
    rest = abs(total)
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return sign + ("".join(parts) or "0s")


@lru_cache(maxsize=4096)
def _graph(down: Grid | None, up: Grid | None, self_edge: bool, edge_json: str) -> Graph | None:
    """D (and U) with their grids and the one edge, through the real loader; None when it rejects the edge."""
    dags: dict[str, dict[str, object]] = {_DOWN: {"upstreams": [json.loads(edge_json)]}}
    if down is not None:
        dags[_DOWN]["partitions"] = {"cron": down.cron, "timezone": down.timezone}
    if not self_edge:
        dags[_UP] = {} if up is None else {"partitions": {"cron": up.cron, "timezone": up.timezone}}
    try:
        return parse_spec(json.dumps({"version": 1, "dags": dags}), "candidate")
    except SpecError:
        return None


@lru_cache(maxsize=262_144)
def _answer(
    down: Grid | None, up: Grid | None, self_edge: bool, edge_json: str, partition: str
) -> tuple[str, ...] | None:
    """The partitions of the upstream that D's ``partition`` waits for through the candidate graph (None: the loader
    rejects the edge, or the partition is off D's grid)."""
    graph = _graph(down, up, self_edge, edge_json)
    if graph is None:
        return None
    up_id = _DOWN if self_edge else _UP
    try:
        found = required_inputs(graph, NodeId("default", _DOWN), partition)
    except OffGrid:
        return None
    return tuple(sorted({p for item in found if item.dag.dag_id == up_id for p in item.partitions}))


@dataclass(frozen=True, slots=True)
class FitProblem:
    """Why no edge fits: the simplest candidate's answer against the sensor's on one sample."""

    partition: datetime
    sensor: tuple[str, ...]
    edge: tuple[str, ...] | None


class Fitter:
    """Fits edges between one dependent and one upstream (**Known by samples**, **Simplest candidate first** and
    **Loader-rejected candidates**)."""

    def __init__(self, down: Grid | None, up: Grid | None, self_edge: bool) -> None:
        self.down = down
        self.up = up
        self.self_edge = self_edge
        self._up_id = _DOWN if self_edge else _UP

    def answer(self, edge: Edge, partition: datetime) -> tuple[str, ...] | None:
        edge_json = json.dumps(replace(edge, dag=self._up_id).to_json())
        return _answer(self.down, self.up, self.self_edge, edge_json, key(partition))

    def wanted(self, sample: DateSample) -> tuple[str, ...]:
        """What an edge must answer for this sample: the sensor's dates, or nothing when one of them is not a point
        of the upstream's grid (the sensor then waits forever, and so does an edge that maps to nothing)."""
        if self.up is not None and not all(on_grid(self.up, d) for d in sample.dates):
            return ()
        return _wanted(sample)

    def fits(self, edge: Edge, samples: Sequence[DateSample]) -> bool:
        return all(self.answer(edge, s.partition) == self.wanted(s) for s in samples)

    def candidates(self, samples: Sequence[DateSample]) -> Iterator[Edge]:
        """**Simplest candidate first**' candidates for these samples, lazily: most sensors fit the first or second, and
        every window the member candidates need costs a graph and a mapping."""
        yield Edge(_UP)
        if samples and all(len(s.dates) == 1 for s in samples):
            distances = {s.dates[0] - s.partition for s in samples}
            if len(distances) == 1:
                (distance,) = distances
                if distance:
                    yield Edge(_UP, shift=format_shift(distance))
        for k in OFFSETS:
            yield Edge(_UP, offset=k)
        if not samples or len(samples[0].dates) != 1:
            return
        first = samples[0]
        wanted = key(first.dates[0])
        for k in MEMBER_OFFSETS:
            window = self.answer(Edge(_UP, offset=k), first.partition)
            if not window or wanted not in window:
                continue
            i = window.index(wanted)
            members: list[str | int] = []
            if i == 0:
                members.append("first")
            if i == len(window) - 1:
                members.append("last")
            members += [i, i - len(window)]
            for member in members:
                yield Edge(_UP, offset=k, member=member)

    def fit(self, samples: Sequence[DateSample]) -> Edge | FitProblem:
        """The first candidate that fits every sample, or what the plain edge answered where it differs."""
        for candidate in self.candidates(samples):
            if self.fits(candidate, samples):
                return candidate
        for sample in samples:
            answer = self.answer(Edge(_UP), sample.partition)
            if answer != self.wanted(sample):
                return FitProblem(sample.partition, _wanted(sample), answer)
        return FitProblem(samples[0].partition, _wanted(samples[0]), None)  # pragma: no cover - the plain edge fit


@lru_cache(maxsize=262_144)
def on_grid(grid: Grid, at: datetime) -> bool:
    """Cached: a folder's sensors ask about the same upstream dates again and again (a cron step is ~0.1 ms)."""
    return grid.contains(at)


def _wanted(sample: DateSample) -> tuple[str, ...]:
    return tuple(sorted({key(d) for d in sample.dates}))
