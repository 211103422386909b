"""``coordinator doctor``'s verdicts: facts gathered by the shell in, one :class:`Check` per line out.

Rules:
- **Pure.** :func:`diagnose` takes :class:`DoctorFacts` (what the CLI probed: settings and their sources, etcd's
  answers, the view, the leader, the watchers' presence records, each instance's probe) and the time; no I/O here.
- **Fixed order.** Checks come in a fixed order (configuration, etcd, permissions, etcd alarms, graph, graph warnings,
  leader, standbys, watcher graphs, instances, DAGs, instances without Airflow, plugin records, unknown instances,
  retention, intents, trigger budget, flapping run states, holds, plan checkpoint, bad values). A check whose premise
  failed is ``skip``, never a second failure for the same cause (etcd down is one failure, not ten).
- **Every problem has a fix.** Every ``fail`` and ``warn`` carries ``fix``: the exact setting or command that resolves
  it. Secrets never appear: a secret setting shows where it comes from, never its value.
- **Stable result.** ``ok`` and ``warn`` pass; any ``fail`` makes the command exit 1. The JSON form (:func:`to_json`) is
  stable and documented in docs/howto/doctor.md; fields are only ever added.
- **What watchers saw.** A watcher's own start check of each Airflow instance (``coordinator.informer.presence_value``)
  shows here too; so do the graph each watcher runs (watchers on different digests fail: a failover would change the
  graph) and the warnings of the graphs in force (an upstream declared nowhere whose name is close to a DAG's: "did you
  mean").
- **Partial roles.** Under a role that may read only part of the prefix (``coordinator roles``), a check whose keys the
  user may not read is ``skip`` naming them, never judged on missing facts; a user that may read but not write gets a
  warning (doctor's own role is read-only), not a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from coordinator.diagnosis.airflow_checks import (
    dags_check,
    instance_check,
    keys_check,
    plugin_records_check,
    unknown_instances_check,
)
from coordinator.diagnosis.graph_checks import (
    asset_routes_check,
    external_check,
    graph_check,
    graph_nodes,
    graph_warnings_check,
    leader_check,
    standbys_check,
    watcher_graphs_check,
)
from coordinator.diagnosis.hold_checks import holds_check
from coordinator.diagnosis.lineage_checks import lineage_check, with_ignored
from coordinator.diagnosis.model import (
    JSON_VERSION,
    Check,
    CheckStatus,
    DoctorFacts,
    EtcdAlarm,
    LineageProbe,
    SettingSource,
    passed,
    skipped,
    to_json,
    to_text,
)
from coordinator.diagnosis.permit_checks import permits_check
from coordinator.diagnosis.state_checks import (
    bad_values_check,
    budget_check,
    checkpoint_check,
    flaps_check,
    intents_check,
    retention_check,
)
from coordinator.diagnosis.store_checks import alarms_check, configuration_check, etcd_check, permissions_check

__all__ = [
    "JSON_VERSION",
    "Check",
    "CheckStatus",
    "DoctorFacts",
    "EtcdAlarm",
    "LineageProbe",
    "SettingSource",
    "diagnose",
    "passed",
    "to_json",
    "to_text",
]


def diagnose(facts: DoctorFacts, now: datetime) -> list[Check]:
    """Every check, in the **Fixed order**."""
    checks = [configuration_check(facts), etcd_check(facts)]
    reached = facts.etcd_revision is not None
    checks.append(permissions_check(facts) if reached else skipped("etcd permissions", "etcd not reached"))
    checks.append(alarms_check(facts) if reached else skipped("etcd alarms", "etcd not reached"))
    checks.append(graph_check(facts))
    checks.append(graph_warnings_check(facts))
    if reached and facts.view is not None:
        checks += [
            _unless_unreadable(facts, "leader", ("leader", "watchers/"), lambda: leader_check(facts)),
            _unless_unreadable(facts, "standbys", ("leader", "watchers/"), lambda: standbys_check(facts)),
            _unless_unreadable(facts, "watcher graphs", ("watchers/",), lambda: watcher_graphs_check(facts)),
        ]
    else:
        checks += [skipped("leader", "etcd not reached"), skipped("standbys", "etcd not reached"),
                   skipped("watcher graphs", "etcd not reached")]  # fmt: skip
    for probe in facts.instances:
        checks += [instance_check(probe, facts), dags_check(probe)]
        if probe.keyed_checked:
            checks.append(keys_check(probe))
    if facts.local_graph is not None and facts.local_graph.external_instances:
        checks.append(external_check(facts.local_graph, facts.only_instance))
    if facts.local_graph is not None and facts.local_graph.asset_routes:
        checks.append(asset_routes_check(facts.local_graph, facts))
    if facts.lineage is not None:
        checks.append(with_ignored(lineage_check(facts.lineage), facts.lineage, facts.local_graph))
    if reached and facts.view is not None:
        view = facts.view
        checks += [
            _unless_unreadable(facts, "plugin records", ("runs/",), lambda: plugin_records_check(facts, view, now)),
            _unless_unreadable(facts, "unknown instances", ("runs/",), lambda: unknown_instances_check(facts, view)),
            _unless_unreadable(facts, "retention", ("config/retention",), lambda: retention_check(facts)),
            _unless_unreadable(
                facts, "intents", ("triggers/",), lambda: intents_check(view, facts.only_instance, graph_nodes(facts))
            ),
            _unless_unreadable(facts, "trigger budget", ("config/budget/",), lambda: budget_check(view)),
            _unless_unreadable(
                facts, "flapping run states", ("config/flaps/",), lambda: flaps_check(view, facts.only_instance)
            ),
            _unless_unreadable(facts, "holds", ("holds/",), lambda: holds_check(facts.holds, now, facts.holds_error)),
            _unless_unreadable(facts, "plan checkpoint", ("config/checkpoint",), lambda: checkpoint_check(view)),
            bad_values_check(view, facts.bad_values),
        ]
        if facts.local_graph is not None and facts.local_graph.scheduled:
            checks.append(permits_check(facts.local_graph, view, facts.only_instance))
    return checks


def _unless_unreadable(f: DoctorFacts, name: str, needs: Sequence[str], check: Callable[[], Check]) -> Check:
    """**Partial roles**: a check whose keys this user may not read is skipped, saying which, instead of judged on
    nothing."""
    missing = [f"{f.prefix}/{n}" for n in needs if f"{f.prefix}/{n}" in f.unreadable]
    if missing:
        return skipped(name, f"user {f.etcd_user} may not read {', '.join(missing)}")
    return check()
