"""``plan rerun`` of a DAG the dependencies file does not name: what its clear cascades to through Airflow's asset
schedules, or exactly why that cannot be said (``cli/rerun_cmds.py``'s **Outside the graph**).

Rules:
- **Its runs first.** The DAG must have run states in the store (the plugin records every DAG of an Airflow where it
  is installed): with none, nothing the coordinator knows depends on it, and the command says so (exit 2). A bare dag
  id is looked up in every instance; found in several, the command asks for ``instance/dag_id``.
- **Airflow's asset schedules.** The graph has no edge from a DAG it does not name; its clear reaches other DAGs only
  through Airflow: the assets its tasks produce (``producing_tasks`` of the asset listing) and the DAGs scheduled on
  them, in its own instance and in each instance a route of the graph carries the asset to (semantics
  `asset-routes`). These are read from those Airflows (one asset listing each); its instance with no Airflow
  configured is refused with how to configure it (exit 2), a route target with none is named as unknown.
- **The planner decides the rest** (``core/rerun.py``'s ``preview_outside``): depth 0 its runs cleared, depth 1 the
  asset-scheduled DAGs Airflow starts, depth 2 on what the watchers start after the ones the graph names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.airflow.assets import AssetInfo
from coordinator.airflow.client import AirflowClient
from coordinator.cli.app import EXIT_FAILURE, fail, out, run_async
from coordinator.core.assets import targets_of
from coordinator.core.graph import Graph
from coordinator.core.model import DEFAULT_INSTANCE, NodeId
from coordinator.core.rerun import AssetConsumer, RerunPreview, preview_outside
from coordinator.errors import ConfigError, CoordinatorError
from coordinator.etcd import EtcdStore
from coordinator.informer.holds import read_holds
from coordinator.informer.read_model import VIEW, StoreModel, load
from coordinator.runtime.settings import Settings


@dataclass(frozen=True, slots=True)
class OutsidePreview:
    """The preview of a DAG outside the graph, with what was read to make it."""

    node: NodeId
    preview: RerunPreview
    #: The assets its tasks produce, as its Airflow lists them (uri).
    produced: tuple[str, ...]
    #: Route targets of those assets whose Airflow is not configured: their consumers are not known.
    unknown: tuple[str, ...]

    def json(self) -> dict[str, Any]:
        return {"node": self.node.qualified, "in_graph": False, "produces": list(self.produced),
                "unknown_targets": list(self.unknown)}  # fmt: skip

    def print(self, lo: str, hi: str, print_preview: Callable[[RerunPreview, NodeId, str, str], None]) -> None:
        """The text: what the preview rests on, then the runs by instance and depth (``print_preview``: the one
        printer of previews, ``rerun_cmds``')."""
        out.print(f"{self.node} is not in the graph; the plugin records its runs. Its clear reaches other DAGs only "
                  "through Airflow's asset schedules: " + (f"it produces {', '.join(self.produced)}" if self.produced
                  else "it produces no asset its Airflow lists, so a rerun reruns it alone"),
                  markup=False, soft_wrap=True)  # fmt: skip
        for target in self.unknown:
            note = f"note: a route carries its assets to instance {target}, whose Airflow is not configured here"
            out.print(f"{note}: what runs there on them is not shown (instances file)", markup=False, soft_wrap=True)
        print_preview(self.preview, self.node, lo, hi)


def outside_preview(settings: Settings, graph: Graph, target: str, lo: str, hi: str, now: datetime) -> OutsidePreview:
    """The module's rules for ``target``, or exit 2 (1 when an Airflow cannot be read) saying why not."""
    model, holds = run_async(lambda: _read(settings))
    node = _recorded(model, target, settings, graph)
    configured = _instances(settings)
    if node.instance not in configured:
        how = "--airflow-url (COORDINATOR_AIRFLOW_URL)" if node.instance == DEFAULT_INSTANCE else "--instances"
        fail(f"{target!r} is not a DAG in {settings.deps}: what its clear cascades to runs through Airflow's asset "
             f"schedules, which the coordinator reads from instance {node.instance}'s Airflow, and none is configured "
             f"here: give its URL with {how}, or add {node.instance!r} to the instances file")  # fmt: skip
    try:
        own = run_async(lambda: _assets(settings, node.instance))
    except CoordinatorError as exc:
        fail(f"cannot list the assets of instance {node.instance}'s Airflow: {exc}", EXIT_FAILURE)
    made = [a for a in own if node.dag_id in a.producers]
    consumers = [AssetConsumer(NodeId(node.instance, dag), a.uri) for a in made for dag in a.consumers]
    unknown: list[str] = []
    for instance in sorted({t for a in made for t in targets_of(graph.asset_routes, node.instance, a.uri, a.name)}):
        if instance not in configured:
            unknown.append(instance)
            continue
        try:
            theirs = {a.uri: a for a in run_async(lambda i=instance: _assets(settings, i))}  # type: ignore[misc]
        except CoordinatorError as exc:
            fail(f"cannot list the assets of instance {instance}'s Airflow: {exc}", EXIT_FAILURE)
        routed = [a for a in made if instance in targets_of(graph.asset_routes, node.instance, a.uri, a.name)]
        consumers += [AssetConsumer(NodeId(instance, dag), a.uri) for a in routed for dag in _consumers(theirs, a)]
    targets = [(n, p) for (n, p) in model.view.runs if n == node and lo <= p <= hi]
    result = preview_outside(graph, model.view, targets, consumers, now=now, holds=holds.hold_set(graph, now))
    return OutsidePreview(node, result, tuple(sorted({a.uri for a in made})), tuple(unknown))


def _consumers(theirs: dict[str, AssetInfo], asset: AssetInfo) -> tuple[str, ...]:
    found = theirs.get(asset.uri)
    return found.consumers if found is not None else ()


async def _read(settings: Settings) -> tuple[StoreModel, Any]:
    async with await EtcdStore.connect(settings.etcd()) as store:
        model = await load(store, settings.keys, VIEW)
        holds, _ = await read_holds(store, settings.keys)
    return model, holds


def _recorded(model: StoreModel, target: str, settings: Settings, graph: Graph) -> NodeId:
    """**Its runs first**: the node whose runs the store holds, or exit 2 saying why."""
    recorded = {n for n, _ in model.view.runs}
    if "/" in target:
        try:
            wanted = NodeId.parse(target)
        except ValueError as exc:
            fail(f"{target!r}: {exc}")
        found = [wanted] if wanted in recorded else []
    else:
        found = sorted(n for n in recorded if n.dag_id == target)
    if len(found) > 1:
        fail(f"{target!r} has runs in several instances ({', '.join(n.instance for n in found)}): name one as "
             f"instance/dag_id")  # fmt: skip
    if not found:
        where = f"{settings.keys.runs}<instance>/{target.rsplit('/', 1)[-1]}/"
        fail(f"{target!r} is not a DAG in {settings.deps}, and the store holds no run of it (no run state under "
             f"{where}): nothing the coordinator knows depends on it. Check the name (`coordinator status` lists the "
             "DAGs), or install the plugin in its Airflow")  # fmt: skip
    return found[0]


def _instances(settings: Settings) -> dict[str, Any]:
    try:
        return dict(settings.instances())
    except ConfigError as exc:
        fail(str(exc))


async def _assets(settings: Settings, instance: str) -> list[AssetInfo]:
    async with AirflowClient(settings.instances()[instance], name=instance) as client:
        return await client.assets()
