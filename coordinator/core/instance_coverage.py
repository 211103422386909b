"""Which instances of the graph in force have no Airflow configured, and what to set so they have one.

The watcher is not ready while any has none (``runtime/health.py``'s **Ready**), ``doctor`` fails naming each, and
the Helm chart refuses to render the same mismatch when it can see both sides (``charts/.../_helpers.tpl``,
``coordinator.instancesMatch``).

Rules:
- **Instances in use.** An instance needs an Airflow when a DAG of the graph lives in it or an asset route names it,
  unless the graph declares it ``"kind": "external"`` (no Airflow to configure). An instance the file only declares
  (or the implicit ``default`` of a graph whose DAGs all name their instance) needs none.
- **Both sides named.** A verdict names the instances the graph uses without an Airflow and the instances that are
  configured: "team_a and team_b configured, the graph's DAGs all in default" is one mismatch, seen at a glance.
- **Every way to configure.** ``default`` may come from ``COORDINATOR_AIRFLOW_URL`` (the chart's ``airflow.url``) or
  an entry of the instances file (``COORDINATOR_INSTANCES_FILE``, the chart's ``airflow.instances``); any other
  instance only from the instances file. With other instances configured the graph may be the side that is wrong: the
  fix says how dependencies.json names a DAG's instance, and how an instance without Airflow is declared.
- **Pure.** Names in, words out: the callers log, serve and print them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from coordinator.core.graph import Graph
from coordinator.core.model import DEFAULT_INSTANCE

#: Where each way of configuring an Airflow is set, for a plain process and for the Helm chart.
INSTANCES_FILE = "COORDINATOR_INSTANCES_FILE, or the Helm chart's airflow.instances"
AIRFLOW_URL = "COORDINATOR_AIRFLOW_URL (the Helm chart's airflow.url)"


def instances_in_use(graph: Graph) -> frozenset[str]:
    """**Instances in use**: the instances holding a DAG of ``graph`` or named by one of its asset routes, less the
    external ones."""
    used = {node.instance for node in graph.dags}
    for route in graph.asset_routes:
        used |= {route.source, *route.targets}
    return frozenset(used - graph.external_instances)


@dataclass(frozen=True)
class Unconfigured:
    """Instances the graph uses with no Airflow configured (**Both sides named**)."""

    #: The graph's instances without an Airflow, sorted.
    missing: tuple[str, ...]
    #: The instances an Airflow is configured for, sorted (empty: none at all).
    configured: tuple[str, ...]
    #: The instances file the settings name (``COORDINATOR_INSTANCES_FILE``), None when none is.
    instances_file: str | None = None

    @property
    def detail(self) -> str:
        """One sentence: which instances lack an Airflow, and which have one."""
        have = ", ".join(self.configured) or "none"
        return (
            f"dependencies.json has DAGs in instance(s) {', '.join(self.missing)} with no Airflow configured "
            f"(configured: {have}); nothing of theirs is triggered"
        )

    @property
    def fix(self) -> str:
        """**Every way to configure**, for each missing instance."""
        return missing_airflow_fix(self.missing, self.configured, self.instances_file)


def unconfigured(graph: Graph, configured: Collection[str], instances_file: str | None = None) -> Unconfigured | None:
    """The instances of ``graph`` in use without an Airflow among ``configured`` (**Instances in use**); None when
    every one has one."""
    missing = tuple(sorted(instances_in_use(graph) - set(configured)))
    if not missing:
        return None
    return Unconfigured(missing, tuple(sorted(configured)), instances_file)


def missing_airflow_fix(missing: Collection[str], configured: Collection[str], instances_file: str | None) -> str:
    """What to set so each of ``missing`` has an Airflow (**Every way to configure**)."""
    names = ", ".join(repr(name) for name in sorted(missing))
    where = f"the instances file {instances_file}" if instances_file else "the instances file"
    fix = f"add {names} to {where} ({INSTANCES_FILE})"
    if DEFAULT_INSTANCE in missing:
        fix += f", or for 'default' alone set {AIRFLOW_URL}"
    others = sorted(set(configured) - set(missing))
    if others:
        example = others[0]
        fix += (
            f"; if those DAGs run in a configured Airflow ({', '.join(others)}), name its instance in "
            f'dependencies.json ("{example}/DAG_ID", or "instance": "{example}")'
        )
    external = ", ".join(f'"{name}": {{"kind": "external"}}' for name in sorted(missing))
    return (
        f"{fix}; if it has no Airflow (its DAGs are OpenLineage jobs or written by `coordinator mark`), declare "
        f'{external} under "instances" in dependencies.json'
    )
