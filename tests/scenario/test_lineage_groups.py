"""OpenLineage nodes as members of condition groups (semantics `condition-groups` with `lineage-upstreams`), through a
real watcher, a real ``coordinator lineage serve`` fed by the OpenLineage client (as dbt-ol sends), real etcd and the
fake Airflow: a dbt model's node counts in an ``any`` or ``at_least`` group exactly as a DAG does, beside DAGs, and a
new run of a consumed model (a new runId for the partition) reruns each dependent once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import RunState

from coordinator.core.model import NodeId, canonical_partition
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, client, event, new_run_id
from tests.scenario.conftest import Stack, wait_for

pytestmark = pytest.mark.scenario

DAILY = {"cron": "0 0 * * *"}
MODELS = ("orders", "customers", "payments")
GRAPH: dict[str, Any] = {
    "version": 1,
    "instances": {"default": {}, "analytics": {"kind": "external", "description": "dbt, through OpenLineage"}},
    "dags": {
        **{f"analytics/{model}": {"partitions": DAILY} for model in MODELS},
        "feed": {"partitions": DAILY},
        # Two dbt models, either will do.
        "either": {"partitions": DAILY, "upstreams": [{"any": ["analytics/orders", "analytics/customers"]}]},
        # Two of a model, another model and an Airflow DAG.
        "rollup": {
            "partitions": DAILY,
            "upstreams": [{"at_least": 2, "of": ["analytics/orders", "analytics/payments", "feed"]}],
        },
    },
    "openlineage": [
        {"namespace": "dbt_prod", "job": f"jaffle.main.jaffle.{model}.build.run", "instance": "analytics", "dag": model}
        for model in MODELS
    ],
}


def test_dbt_models_count_in_any_and_at_least_groups_like_dags_and_a_rerun_model_reruns_each_dependent_once(
    stack: Stack, tmp_path: Path
) -> None:
    """``any`` of two models runs its dependent once on the first model's success, consuming it alone, and not again
    when the other lands; ``at_least 2`` of two models and a DAG waits at one, runs once when the DAG is the second,
    and not again for the third; a new dbt run (new runId) of the consumed model reruns each dependent exactly once."""
    for dag in ("feed", "either", "rollup"):
        stack.fake.add_dag(dag)
    stack.set_deps(GRAPH)
    stack.start_watcher()
    receiver = ReceiverProc(stack.endpoint, stack.prefix, tmp_path).start()
    stack.add_cleanup(receiver.stop)
    dbt = client(receiver.url, TOKENS["dbt"][0])
    # Builds at noon yesterday, a second apart (a rerun must start after the run it replaces): slot "previous" on a
    # daily grid places them on the day before.
    base = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    p = canonical_partition((base - timedelta(days=1)).strftime("%Y-%m-%d"))
    sent = iter(range(1, 100))

    def build(model: str) -> None:
        """A dbt run of ``model`` succeeds (COMPLETE under a new runId); returns once the receiver wrote it for p."""
        run_id, key = new_run_id(), stack.keys.run_key(NodeId("analytics", model), p)
        at = base + timedelta(seconds=next(sent))
        dbt.emit(event(RunState.COMPLETE, run_id, job=f"jaffle.main.jaffle.{model}.build.run", at=at))
        wait_for(lambda: json.loads(stack.etcd.get(key) or "{}").get("run_id") == run_id, f"{model}'s run for {p}")

    def inputs(dag: str) -> set[str]:
        ledger = stack.ledger(dag, p)
        assert ledger is not None, f"{dag}: no ledger for {p}"
        return set(ledger["inputs"])

    build("orders")
    stack.wait_success("either", p)
    stack.settle(confirmed=True)
    assert inputs("either") == {"analytics/orders"}
    assert stack.fake_runs("rollup", p) == [], "one of two is not enough"

    build("customers")  # the other model lands after the decision: not consumed
    stack.trigger_root(p, "feed")  # the rollup's second member: a DAG
    stack.wait_success("rollup", p)
    stack.settle(confirmed=True)
    assert inputs("either") == {"analytics/orders"} and (stack.ledger("either", p) or {})["trigger_count"] == 1
    assert inputs("rollup") == {"analytics/orders", "default/feed"}

    build("payments")  # the rollup's third member, not consumed: nothing reruns
    stack.settle(confirmed=True)
    stack.assert_once(p, ("either", "rollup"))

    build("orders")  # a new dbt run of the consumed model: a new generation
    stack.wait_success("either", p, attempt=1)
    stack.wait_success("rollup", p, attempt=1)
    stack.settle(confirmed=True)
    stack.assert_once(p, ("either", "rollup"), clears=1)
    assert inputs("either") == {"analytics/orders", "analytics/customers"}
    assert inputs("rollup") == {"analytics/orders", "analytics/payments", "default/feed"}
