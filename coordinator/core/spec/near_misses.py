"""Warnings about a valid ``dependencies.json``: things that load but are probably not what the author meant.

Rules:
- **Warnings only.** Pure: a validated :class:`Graph` (with where the file wrote each DAG and edge) in,
  :class:`SpecWarning` values out. A warning never makes the file invalid: ``coordinator validate`` prints it on stderr
  and still exits 0, and the watcher adopts the graph as written.
- **Independent checks.** Each rule is an independent function ``Graph -> list[SpecWarning]`` listed in :data:`RULES`;
  :func:`spec_warnings` runs them all, in that order. A rule reads only the graph, so rules can be added without
  touching one another.
- **Path and hint.** A warning names the JSON path of what it is about and ends with what to do, like a problem of
  ``spec.py`` (``file: $.path: warning: what — hint``).
- **Near misses** (:func:`near_miss_references`): a DAG that no key declares (so it became a root) and
  whose id is within a small edit distance of another DAG of the graph is probably a typo (``"04_pipline"`` for
  ``"04_pipeline"``): the dependent would wait for a DAG that never runs. The rarer of the two spellings is the suspect.
  Names that differ in a number (``01_pipeline``/``02_pipeline``) or in a short label (``load_a``/``load_b``) are a
  series of distinct DAGs, never a near miss (:func:`near_misses`).
- **Exact dates across grids** (:func:`exact_dates_across_grids`): an edge that joins equal
  logical dates while only one side declares a grid triggers the dependent at the upstream's dates, which its own
  schedule has only if the two schedules line up (a sensor without ``execution_delta`` between DAGs on different cron
  times).
- **Impossible deadlines** (:func:`impossible_deadlines`): a DAG whose ``expected_by`` deadline
  for a partition is earlier than an upstream's deadline for a partition it needs plus this DAG's fixed ``duration`` (0
  when learned) promises what the upstream's own promise does not allow. Checked on one sample partition
  (:data:`PROMISE_SAMPLE`): deadlines repeat with the grid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coordinator.core.graph import Graph
from coordinator.core.model import PARTITION_FORMAT, NodeId
from coordinator.core.spec.source import JsonPath, format_path

#: A label this short (``a``, ``v``, ``eu``) that differs between two names makes them a series, not a typo.
SHORT_LABEL = 2
_NUMBER_RE = re.compile(r"[0-9]+")
_WORD_RE = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class SpecWarning:
    """Something in a valid file that is probably a mistake: where (a JSON path such as ``$.06_pipeline[3]``), what,
    and what to do."""

    path: str
    message: str
    hint: str

    def format(self, source: str) -> str:
        """``file: $.path: warning: what — hint`` (**Path and hint**)."""
        return f"{source}: {self.path}: warning: {self.message} — {self.hint}"


def max_distance(name: str) -> int:
    """How many edits still look like a typo of ``name``: one for short ids, two from eight characters on."""
    return 1 if len(name) < 8 else 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap two neighbours), or ``limit + 1`` as soon
    as it must exceed ``limit`` (names differing in length by more cannot be close)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _numbers(name: str) -> tuple[int, ...]:
    """The numbers in ``name``, as numbers (``6`` and ``06`` are the same)."""
    return tuple(int(n) for n in _NUMBER_RE.findall(name))


def _series(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` read as two members of a series (**Near misses**): different numbers (compared as
    numbers, so ``6`` and ``06`` are the same), or the same words but for a short label."""
    if _numbers(a) != _numbers(b):
        return True
    words_a, words_b = _WORD_RE.findall(a.lower()), _WORD_RE.findall(b.lower())
    if len(words_a) != len(words_b):
        return False
    return any(x != y and max(len(x), len(y)) <= SHORT_LABEL for x, y in zip(words_a, words_b, strict=True))


def near_misses(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates that ``name`` is probably a typo of, closest first (ties by name); never ``name`` itself."""
    scored = []
    for candidate in set(candidates):
        if candidate == name or _series(name, candidate):
            continue
        limit = max_distance(min(name, candidate, key=len))
        distance = edit_distance(name.lower(), candidate.lower(), limit)
        if distance <= limit:
            scored.append((distance, candidate))
    return [candidate for _, candidate in sorted(scored)]


def close_dags(name: str, nodes: Iterable[NodeId]) -> list[NodeId]:
    """The DAGs whose id ``name`` (a dag id, or ``instance/dag_id``) is probably a typo of, closest first."""
    return CloseDags(nodes).of(name)


#: The most edits :func:`max_distance` ever allows: how deep :class:`CloseDags` indexes each name's deletions.
MOST_EDITS = 2


def _deletions(word: str, depth: int) -> set[str]:
    """``word`` and every string that deleting up to ``depth`` of its characters makes."""
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


class CloseDags:
    """The DAGs of a graph, indexed to answer :func:`close_dags` for many names at once (**Near misses** of a whole
    file) without comparing each name with every DAG.

    Ids whose numbers differ from the name's are a series, never a near miss (``_series``): the DAGs are grouped by
    their numbers, and a name is looked up only among the ids with its own. Within a group the index is the
    symmetric-deletion one of spelling correctors (SymSpell): every DAG id (lowercased, as :func:`near_misses`
    compares) is filed under each string that deleting up to :data:`MOST_EDITS` of its characters makes. A
    substitution, an insertion or deletion, and a swap of neighbours each cost at most one deletion on either side, so
    two ids within :data:`MOST_EDITS` edits always share a filed string: a name is compared only with the ids it shares
    one with, by :func:`near_misses` itself (the same checks, so the same answer as a scan of every DAG). A group is
    filed when a name first asks for it: a watcher's start checks only the undeclared DAGs, and in a graph whose ids
    are numbered (``l3_d042``) most groups hold one id, so it files a few ids, not every id of the graph.
    """

    def __init__(self, nodes: Iterable[NodeId]) -> None:
        self._by_id: dict[str, list[NodeId]] = {}
        for node in nodes:
            self._by_id.setdefault(node.dag_id, []).append(node)
        self._by_numbers: dict[tuple[int, ...], list[str]] = {}
        for dag_id in self._by_id:
            self._by_numbers.setdefault(_numbers(dag_id), []).append(dag_id)
        self._filed: dict[tuple[int, ...], dict[str, list[str]]] = {}

    def _filed_with(self, numbers: tuple[int, ...]) -> dict[str, list[str]]:
        """The deletion index of the ids whose numbers are ``numbers``, filed on first use."""
        filed = self._filed.get(numbers)
        if filed is None:
            filed = self._filed[numbers] = {}
            for dag_id in self._by_numbers.get(numbers, ()):
                for variant in _deletions(dag_id.lower(), MOST_EDITS):
                    filed.setdefault(variant, []).append(dag_id)
        return filed

    def of(self, name: str) -> list[NodeId]:
        """The DAGs whose id ``name`` (a dag id, or ``instance/dag_id``) is probably a typo of, closest first (never
        one of that id: :func:`near_misses` leaves ``name`` out)."""
        dag_id = name.rpartition("/")[2]
        numbers = _numbers(dag_id)
        if self._by_numbers.get(numbers, [dag_id]) == [dag_id]:  # alone with its numbers: no other id to be close to
            return []
        filed = self._filed_with(numbers)
        pool = {other for variant in _deletions(dag_id.lower(), MOST_EDITS) for other in filed.get(variant, ())}
        return [node for close in near_misses(dag_id, pool) for node in sorted(self._by_id[close])]


# ---- rules --------------------------------------------------------------------------------------------------------


def near_miss_references(graph: Graph) -> list[SpecWarning]:
    """**Near misses**: each reference to an undeclared DAG whose id is a near miss of another DAG's id.

    A typo is the rarer spelling: the undeclared id is a suspect only if it is written at most as often as the other
    (its references, plus one for a declaration), so a root used consistently in several places is taken as meant,
    and two spellings used equally are both suspects. Only a graph read from a file knows what was declared; any
    other yields nothing.
    """
    if not graph.edge_paths:
        return []
    # How often each DAG is written as a source; where, only for the suspects (a big graph has 100,000 edges and
    # next to no suspect).
    written: dict[NodeId, int] = {}
    for source, _ in graph.edge_paths:
        written[source] = written.get(source, 0) + 1
    warnings = []
    paths: dict[NodeId, list[tuple[NodeId, JsonPath]]] | None = None
    close = CloseDags(graph.dags)
    for node in sorted(set(graph.dags) - graph.declared):
        candidates = [
            other
            for other in close.of(node.dag_id)
            if written.get(other, 0) + (other in graph.declared) >= written.get(node, 0)
        ]
        if not candidates:
            continue
        suggestion = " or ".join(repr(str(c)) for c in candidates[:3])
        if paths is None:  # the first suspect: each source's references, once
            paths = {}
            for (source, target), path in graph.edge_paths.items():
                paths.setdefault(source, []).append((target, path))
        uses = sorted(paths.get(node, []), key=lambda use: use[0])  # by dependent: one reference each
        for target, path in uses:
            role = "handles the failures of" if node in graph.dags[target].on_failure_of else "waits for"
            what = f"{str(node)!r} is declared nowhere in this file, so it is a root that {target} {role}"
            warnings.append(SpecWarning(format_path(path), what, f"did you mean {suggestion}?"))
    return warnings


def exact_dates_across_grids(graph: Graph) -> list[SpecWarning]:
    """**Exact dates across grids**: each exact-date edge with a grid on one side only (no shift, member or offset says
    how dates map)."""
    found: list[SpecWarning] = []
    for node in sorted(graph.dags):
        spec = graph.dags[node]
        for edge in spec.all_edges():
            if edge.source == node or not edge.mapping.plain or edge.mapping.offset:
                continue
            up = graph.dags[edge.source].grid
            if (spec.grid is None) == (up is None):
                continue
            gridded, plain = (node, edge.source) if up is None else (edge.source, node)  # exactly one has a grid
            grid = spec.grid if up is None else up
            path = graph.edge_paths.get((edge.source, node))
            if path and path[-1] == "dag":  # an edge object: the warning is about the whole edge, not its reference
                path = path[:-1]
            found.append(
                SpecWarning(
                    format_path(path) if path is not None else f"$.dags[{str(node)!r}]",
                    f"{node} waits for {edge.source} on the exact same logical date, but only {gridded} has "
                    f"partitions ({grid}): {node} is triggered at {edge.source}'s logical dates, which {node}'s own "
                    "schedule has only if the two schedules line up",
                    f'declare "partitions" on {plain} too (its cron), so whole periods are matched, or add '
                    f'"shift" to say which upstream date each run waits for (check with `coordinator inputs {node} '
                    "-p DATE`)",
                )
            )
    return found


#: The partition a deadline promise is checked on (**Impossible deadlines**): a fixed date (checks stay pure and
#: repeatable), the first grid point at or after it for a gridded DAG.
PROMISE_SAMPLE = datetime(2026, 1, 5, tzinfo=UTC)


def impossible_deadlines(graph: Graph) -> list[SpecWarning]:
    """**Impossible deadlines**: each DAG whose deadline is earlier than an upstream's deadline plus its own fixed
    duration."""
    found: list[SpecWarning] = []
    for node in sorted(graph.dags):
        spec = graph.dags[node]
        rule = spec.expected_by
        if rule is None:
            continue
        start = spec.grid.floor(PROMISE_SAMPLE) if spec.grid is not None else PROMISE_SAMPLE
        partition = start.strftime(PARTITION_FORMAT)
        mine = rule.deadline(spec.grid, partition)
        duration = timedelta(seconds=rule.duration or 0)
        for up in spec.upstreams:
            up_spec = graph.dags[up]
            up_rule = up_spec.expected_by
            if up_rule is None:
                continue
            for source_partition in graph.source_partitions(node, up, partition):
                theirs = up_rule.deadline(up_spec.grid, source_partition)
                if theirs + duration <= mine:
                    continue
                late = theirs + duration - mine
                found.append(
                    SpecWarning(
                        f"$.dags[{str(node)!r}].expected_by",
                        f"{node}'s deadline for {partition} ({mine:%Y-%m-%d %H:%M}Z) is {late} earlier than {up}'s "
                        f"deadline for {source_partition} ({theirs:%Y-%m-%d %H:%M}Z) plus {node}'s expected duration "
                        f"({duration}): if {up} only just makes its deadline, {node} cannot make its own",
                        f"move {node}'s deadline later, {up}'s earlier, or shorten {node}'s \"duration\"",
                    )
                )
                break
    return found


Rule = Callable[[Graph], list[SpecWarning]]
#: Every rule, in the order their warnings are printed (**Independent checks**).
RULES: Sequence[Rule] = (near_miss_references, exact_dates_across_grids, impossible_deadlines)


def spec_warnings(graph: Graph, rules: Sequence[Rule] = RULES) -> list[SpecWarning]:
    """The warnings of every rule about ``graph`` (**Independent checks**)."""
    return [warning for rule in rules for warning in rule(graph)]
