"""The Grafana dashboard (devtools/dashboard.py, built with grafana-foundation-sdk) as shipped in the chart's
files/grafana-dashboard.json: current, and querying only series the watcher exports. That each query returns data
from a real Prometheus is tests/scenario/test_prometheus_alerts.py's."""

from __future__ import annotations

import json
import re

from coordinator.runtime.metrics import Metrics
from devtools import dashboard
from tests.test_metrics_http import STATE


def test_the_committed_dashboard_is_what_the_builder_builds() -> None:
    """files/grafana-dashboard.json is byte for byte devtools.dashboard's output (`python -m devtools.dashboard`)."""
    assert dashboard.DASHBOARD.read_text(encoding="utf-8") == dashboard.render()
    assert dashboard.main(["--check"]) == 0


def test_every_panel_queries_series_the_watcher_exports() -> None:
    """Every panel has a query, on the datasource variable, and every coordinator_* series a query names is one the
    watcher exports."""
    metrics = Metrics()
    metrics.bind_state(lambda: STATE)
    metrics.airflow_request("default", "GET", "200", 0.01)
    metrics.action_result("default", "create", "ok")
    metrics.etcd_error("get", "UNAVAILABLE")
    metrics.etcd_probe(1)
    metrics.etcd_alarms(())
    metrics.reconcile_seconds.observe(0.01)
    exported = {s.name for family in metrics.registry.collect() for s in family.samples}
    model = json.loads(dashboard.DASHBOARD.read_text(encoding="utf-8"))
    assert model["uid"] == dashboard.UID
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in model["panels"])
    assert all(p.get("targets") for p in model["panels"]), "a panel without a query"
    used = {name for _, expr in dashboard.queries(model) for name in re.findall(r"\bcoordinator_\w+", expr)}
    assert used and used <= exported, f"not exported: {sorted(used - exported)}"
    assert {v["name"] for v in model["templating"]["list"]} == {"datasource", "job"}
