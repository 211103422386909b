"""What the watcher's concerns share: one frozen value handed to every concern's ``setup(manager, deps)``
(``watcher/concerns.py``'s ``CONCERNS``).

Rules:
- **Shared, not owned.** Everything here is built once by the service and used by more than one concern, or is the
  process's own (its settings, id, clock, store, Airflow clients, metrics, health): the informer (the view, its lock),
  the executor and the leadership. What only one concern uses, that concern's setup builds.
- **Indexes are asked for.** A concern's setup asks for the indexes it reads by their typed need (``deps.index(
  HOLD_INDEX)``: ``informer/informer.py``'s **Asked for, built once**); the first ask builds the index and the informer
  feeds it from then on. Nothing here, nor in the service, lists them.
- **No concern in here.** A concern's reconciler never appears here; a concern that needs another's is handed it
  through the manager (``manager/manager.py``'s **Handles**), so the order of the list of setups is the only order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from coordinator.airflow.client import AirflowClient
from coordinator.core.graph import Graph
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.etcd.election import Election
from coordinator.informer import Informer, Need
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.health import Health
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import Settings
from coordinator.watcher.coverage import Coverage
from coordinator.watcher.executor import Executor
from coordinator.watcher.paused import PausedDags
from coordinator.watcher.reachability import Reachability
from coordinator.watcher.refusals import Refusals

T = TypeVar("T")


@dataclass(frozen=True)
class Deps:
    """**Shared, not owned**."""

    settings: Settings
    watcher_id: str
    #: The one wall clock of the setups (a test may hand another).
    clock: Callable[[], datetime]
    store: EtcdStore
    #: One client per configured Airflow instance.
    clients: Mapping[str, AirflowClient]
    graphs: GraphSource
    metrics: Metrics
    health: Health
    #: The informer's model: the view, the lock held while a pass plans and while a watch batch is applied, and the
    #: informer that feeds both and the indexes asked for (``index``).
    view: View
    view_lock: asyncio.Lock
    informer: Informer
    #: Every etcd write while leading and every Airflow call of the exactly-once protocols.
    executor: Executor
    election: Election
    #: Which Airflow instances answer, which refuse our credentials, which DAGs are paused, which instances of the
    #: graph have a client.
    reachability: Reachability
    refusals: Refusals
    paused: Mapping[str, PausedDags]
    coverage: Coverage

    def graph(self) -> Graph:
        """The graph in force now (a reload replaces it)."""
        return self.graphs.graph

    def index(self, need: Need[T]) -> T:
        """The index ``need`` names, fed by the informer from its first ask (**Indexes are asked for**)."""
        return self.informer.index(need)

    def leading(self) -> bool:
        """Whether this process leads now (**Only the leader acts**)."""
        return self.election.is_leader
