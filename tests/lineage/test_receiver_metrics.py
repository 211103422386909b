"""The receiver's counters as its alert rules read them (charts/airflow-etcd-coordinator/files/prometheus-rules.yaml,
group airflow-etcd-coordinator-lineage)."""

from __future__ import annotations

from typing import Any, cast

from prometheus_client import generate_latest

from coordinator.core.lineage.facts import Outcome
from coordinator.lineage.receiver import Receiver
from coordinator.runtime.metrics import Metrics


def test_a_fresh_receiver_exports_every_outcome_and_the_503_counter_at_zero() -> None:
    """Before any request, /metrics holds coordinator_lineage_events_total for each outcome and the `unavailable`
    refusals at 0: CoordinatorLineageNoFacts sees an increase of 0 (not a missing series), the first 503 a rise."""
    metrics = Metrics()
    Receiver(cast(Any, None), cast(Any, None), cast(Any, None), metrics)
    lines = set(generate_latest(metrics.registry).decode().splitlines())
    for outcome in Outcome:
        assert f'coordinator_lineage_events_total{{outcome="{outcome.value}"}} 0.0' in lines
    assert 'coordinator_lineage_refused_total{reason="unavailable"} 0.0' in lines
