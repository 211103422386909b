"""The Grafana dashboard of the watchers, built with Grafana's own ``grafana-foundation-sdk`` and written as JSON to
the chart's ``files/grafana-dashboard.json`` (the file the release ships and the tests evaluate).

    python -m devtools.dashboard            # rewrite the file
    python -m devtools.dashboard --check    # exit 1 if the file is not what this module builds

Rules:
1. Every panel's query uses only series the watcher exports (the same as the alert rules', runtime/metrics.py) and
   two variables: ``$datasource`` (a Prometheus) and ``$job`` (the scrape job of the watchers).
2. The JSON is deterministic (sorted keys, two-space indent), so the committed file is checked, not regenerated, by
   the tests: a change to the panels is a change to this module and the file together.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "charts" / "airflow-etcd-coordinator" / "files" / "grafana-dashboard.json"
UID = "airflow-etcd-coordinator"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job=~"$job"'

#: (title, unit, [(query, legend)]): the state first (what the alerts watch), then the work and its costs.
STATS: list[tuple[str, str, str]] = [
    ("Leaders", "none", f"sum(coordinator_leader{{{JOB}}})"),
    ("Watchers (leader + standbys)", "none", f"max(coordinator_watchers{{{JOB}}})"),
    ("etcd up", "none", f"min(coordinator_etcd_up{{{JOB}}})"),
    ("etcd alarms raised", "none", f"max(coordinator_etcd_alarm{{{JOB}}})"),
    ("Failed intents", "none", f"max(coordinator_failed_intents{{{JOB}}})"),
    ("Graph invalid", "none", f"max(coordinator_graph_invalid{{{JOB}}})"),
]
SERIES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Pending and failed intents", "none", [
        (f"max(coordinator_pending_intents{{{JOB}}})", "pending"),
        (f"max(coordinator_failed_intents{{{JOB}}})", "failed"),
    ]),
    ("Triggers by result", "ops", [
        (f"sum by (action, result) (rate(coordinator_triggers_total{{{JOB}}}[$__rate_interval]))",
         "{{action}} {{result}}"),
    ]),
    ("Airflow requests by instance and status", "reqps", [
        (f"sum by (exported_instance, status) (rate(coordinator_airflow_requests_total{{{JOB}}}[$__rate_interval]))",
         "{{exported_instance}} {{status}}"),
    ]),
    ("Airflow request latency p99", "s", [
        ("histogram_quantile(0.99, sum by (exported_instance, le) "
         f"(rate(coordinator_airflow_request_seconds_bucket{{{JOB}}}[$__rate_interval])))", "{{exported_instance}}"),
    ]),
    ("etcd errors by operation", "ops", [
        (f"sum by (op, code) (rate(coordinator_etcd_errors_total{{{JOB}}}[$__rate_interval]))", "{{op}} {{code}}"),
    ]),
    ("Reconcile pass p99", "s", [
        ("histogram_quantile(0.99, sum by (le) "
         f"(rate(coordinator_reconcile_seconds_bucket{{{JOB}}}[$__rate_interval])))", "p99"),
    ]),
    ("Watch revision behind etcd", "none", [
        (f"coordinator_etcd_revision{{{JOB}}} - coordinator_watch_revision{{{JOB}}}", "{{instance}}"),
    ]),
    ("View keys", "none", [(f"coordinator_view_keys{{{JOB}}}", "{{instance}}")]),
]  # fmt: skip


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    board = (
        dashboard.Dashboard("airflow-etcd-coordinator")
        .uid(UID)
        .tags(["airflow-etcd-coordinator"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Job")
            .datasource(DATASOURCE)
            .query("label_values(coordinator_leader, job)")
            .multi(True)
            .include_all(True)
        )
    )
    for title, unit, query in STATS:
        board = board.with_panel(
            stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(4).span(4)
            .with_target(prometheus.Dataquery().expr(query).ref_id("A"))
        )  # fmt: skip
    for title, unit, queries in SERIES:
        panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(12)
        for ref, (query, legend) in zip("ABCDEFGH", queries, strict=False):
            panel = panel.with_target(prometheus.Dataquery().expr(query).legend_format(legend).ref_id(ref))
        board = board.with_panel(panel)
    model: dict[str, Any] = _without_nulls(json.loads(json.dumps(board.build(), cls=JSONEncoder)))
    return model


def _without_nulls(value: Any) -> Any:
    """The model without the SDK's unset fields (``"options": null``): Grafana fills its own defaults for a missing
    key, and a null is no default."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel target."""
    return [(p["title"], t["expr"]) for p in model["panels"] for t in p.get("targets", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from what is built")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if DASHBOARD.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{DASHBOARD.relative_to(REPO)} is stale: run python -m devtools.dashboard\n")
            return 1
        return 0
    DASHBOARD.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
