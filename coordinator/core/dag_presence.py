"""Do the graph's DAGs exist in their Airflow? The comparison behind ``coordinator validate --airflow``.

Rules:
- **Pure**: the graph, an instance name and what that Airflow lists (dag id -> paused) in, a :class:`DagPresence` out;
  listing the DAGs is the caller's I/O.
- **Missing DAGs.** A DAG of the instance that Airflow does not list is missing: the watcher's trigger would fail with a
  404 and its dependents would wait. Each missing DAG carries the Airflow DAG ids it is probably a typo of (the same
  near-miss rule as ``spec.near_misses``), so a misspelling on either side shows up as "did you mean".
- **Paused DAGs apart.** A listed but paused DAG is reported apart: it exists, but a run the coordinator creates waits
  in ``queued`` until someone unpauses it. Not a root: the coordinator never starts a root (its own schedule or a
  person does), so that warning would not be true of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.spec.near_misses import near_misses


@dataclass(frozen=True, slots=True)
class MissingDag:
    node: NodeId
    #: Airflow DAG ids it is probably a typo of, closest first.
    did_you_mean: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DagPresence:
    """What one instance's Airflow lists of the graph's DAGs in that instance."""

    instance: str
    checked: tuple[NodeId, ...]
    missing: tuple[MissingDag, ...]
    paused: tuple[NodeId, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


def dag_presence(graph: Graph, instance: str, listed: Mapping[str, bool]) -> DagPresence:
    """**Missing DAGs** and **Paused DAGs apart** for the DAGs of ``instance``; ``listed`` maps every DAG id Airflow
    lists to its paused flag."""
    nodes = tuple(sorted(n for n in graph.dags if n.instance == instance))
    missing = tuple(MissingDag(n, tuple(near_misses(n.dag_id, listed))) for n in nodes if n.dag_id not in listed)
    paused = tuple(n for n in nodes if listed.get(n.dag_id, False) and not graph.dags[n].is_root)
    return DagPresence(instance, nodes, missing, paused)
